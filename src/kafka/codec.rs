//! Kafka framing and request/response headers: the i32 big-endian size prefix (checked against a
//! limit before anything is allocated), request header decoding, the table of API versions we
//! accept and advertise, and response encoding. Pure functions on buffers; never does I/O.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::KafkaError;

/// Default largest request frame we accept (Kafka's `socket.request.max.bytes` is 100 MiB).
pub(crate) const DEFAULT_MAX_FRAME_BYTES: u32 = 100 * 1024 * 1024;

/// The APIs we implement: (key, lowest version accepted, highest version advertised).
/// Minimums stay at old versions on purpose: librdkafka 2.0 only enables record format v2 and
/// consumer groups when these exact old versions are in range (KAFKA.md, trap 1). Maxima are what
/// Kafka 3.9 serves (clients such as sarama pick versions from a configured Kafka version instead
/// of negotiating, trap 16), never past what Kafka 4.0 changed: Produce v12 and InitProducerId v5
/// (transactions v2), Metadata v13 (a top-level error), ListOffsets v10 (a timeout). Metadata
/// v10+ and Fetch v13+ carry topic IDs, which librdkafka then fetches by (trap 5): the handlers
/// serve them end to end.
pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    // Leader epochs (KIP-320): consumers check their position after a leader change. The crate
    // speaks v2 (the first with the client's current leader epoch) to v4.
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Configs and topic administration. DescribeConfigs from v0, although Kafka 4.0 dropped it:
    // sarama before 1.23 (Debian's 1.22) sends v0 for every ListTopics (the vendored crate is
    // patched for it).
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    // SASL/PLAIN (see `sasl`). v0 (the credentials then come as a bare size-prefixed frame) must
    // be in range: librdkafka up to at least 2.0 (Debian's kcat) refuses PLAIN without it.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    // Consumer-group administration (kafka-consumer-groups.sh, AdminClient).
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The lowest version we advertise for `key` in ApiVersions, which for Produce is below the
/// lowest we accept. librdkafka before 2.10 (Debian's kcat links 2.0.2) compresses with gzip,
/// snappy or lz4 only if Produce v0 is in the advertised range, and otherwise silently sends the
/// batch uncompressed. Apache Kafka 4.0, which removed Produce v0-v2 (KIP-896), advertises min 0
/// for the same reason (KAFKA-18659) and refuses those versions when they come, as we do
/// ([`supported_range`] still starts at 3; they would carry magic 0/1 message sets).
fn advertised_min(key: ApiKey, min: i16) -> i16 {
    if key == ApiKey::Produce { 0 } else { min }
}

/// The version range we support for `key`, if we implement it at all.
pub(crate) fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

/// What the first bytes of a frame body say, before the rest is trusted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Peeked {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed prefix every request header version shares: api key, version, correlation id.
pub(crate) fn peek_header(body: &[u8]) -> Result<Peeked, KafkaError> {
    if body.len() < 8 {
        return Err(KafkaError::Malformed(format!(
            "request of {} bytes has no header",
            body.len()
        )));
    }
    Ok(Peeked {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        api_version: i16::from_be_bytes([body[2], body[3]]),
        correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

/// Checks a frame's size prefix against the limit. Returns the body length to read.
pub(crate) fn check_frame_size(prefix: [u8; 4], max_frame_bytes: u32) -> Result<usize, KafkaError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 || size as u32 > max_frame_bytes {
        return Err(KafkaError::FrameTooLarge { size: i64::from(size), max: max_frame_bytes });
    }
    Ok(size as usize)
}

/// A request whose header decoded, ready for its handler: the body cursor sits after the header.
#[derive(Debug)]
pub(crate) struct DecodedRequest {
    pub key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// How to handle a frame, decided from its header alone.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request we implement, at a version we accept.
    Request(DecodedRequest),
    /// ApiVersions at a version newer than ours: answer in the v0 shape with UNSUPPORTED_VERSION
    /// (the client then retries with a version we listed).
    ApiVersionsTooNew { correlation_id: i32, client_id: Option<String> },
    /// An API we do not implement, or a version outside our range: a real broker closes the
    /// connection for those. Carries what the operator needs to find the client.
    Unsupported(Unsupported),
}

/// What is known of a request we refuse: enough to log who sent what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsupported {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

impl Unsupported {
    /// The API's name as Kafka spells it (`DescribeConfigs`), or `unknown` for a key no Kafka
    /// version defines.
    pub fn api_name(&self) -> String {
        match ApiKey::try_from(self.api_key) {
            Ok(k) => format!("{k:?}"),
            Err(_) => "unknown".to_string(),
        }
    }
}

/// The client id of a request header, read without knowing the API: every header version but
/// v0 (ControlledShutdown v0 only) has it right after the correlation id, as a nullable string.
/// Lossy: this is for logs only.
pub(crate) fn peek_client_id(body: &[u8]) -> Option<String> {
    let len = i16::from_be_bytes([*body.get(8)?, *body.get(9)?]);
    let len = usize::try_from(len).ok()?;
    let raw = body.get(10..10 + len)?;
    Some(String::from_utf8_lossy(raw).into_owned())
}

/// The client software name and version an ApiVersions v3+ request states (KIP-511), if `req`
/// is one and its body decodes.
pub(crate) fn client_software(req: &DecodedRequest) -> Option<(String, String)> {
    let v = req.header.request_api_version;
    if req.key != ApiKey::ApiVersions || v < 3 {
        return None;
    }
    let r = ApiVersionsRequest::decode(&mut req.body.clone(), v).ok()?;
    Some((r.client_software_name.to_string(), r.client_software_version.to_string()))
}

/// Decodes a frame body's request header. An API we do not implement, or a version outside our
/// range (other than a too new ApiVersions), is `Incoming::Unsupported`.
pub(crate) fn decode_request(mut body: Bytes) -> Result<Incoming, KafkaError> {
    let peeked = peek_header(&body)?;
    let unsupported = || {
        Incoming::Unsupported(Unsupported {
            api_key: peeked.api_key,
            version: peeked.api_version,
            correlation_id: peeked.correlation_id,
            client_id: peek_client_id(&body),
        })
    };
    let Ok(key) = ApiKey::try_from(peeked.api_key) else { return Ok(unsupported()) };
    let Some((min, max)) = supported_range(key) else { return Ok(unsupported()) };
    if peeked.api_version < min || peeked.api_version > max {
        if key == ApiKey::ApiVersions && peeked.api_version > max {
            return Ok(Incoming::ApiVersionsTooNew {
                correlation_id: peeked.correlation_id,
                client_id: peek_client_id(&body),
            });
        }
        return Ok(unsupported());
    }
    let header_version = key.request_header_version(peeked.api_version);
    let header = RequestHeader::decode(&mut body, header_version).map_err(|e| {
        KafkaError::Malformed(format!("{key:?} v{} request header: {e}", peeked.api_version))
    })?;
    Ok(Incoming::Request(DecodedRequest { key, header, body }))
}

/// Decodes a request body of type `T` at `version`. Trailing bytes are ignored, as Kafka does:
/// some clients (librdkafka's first Metadata request) send one.
pub(crate) fn decode_body<T: Decodable>(req: &mut DecodedRequest) -> Result<T, KafkaError> {
    let version = req.header.request_api_version;
    let msg = T::decode(&mut req.body, version).map_err(|e| {
        KafkaError::Malformed(format!("{:?} v{version} request body: {e}", req.key))
    })?;
    if req.body.has_remaining() {
        tracing::trace!(api = ?req.key, version, trailing = req.body.remaining(), "ignored trailing bytes");
    }
    Ok(msg)
}

/// Encodes a whole response frame: size prefix, response header of the right version, body.
pub(crate) fn encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, KafkaError> {
    let mut buf = BytesMut::with_capacity(4096);
    write_response(&mut buf, key, version, correlation_id, body)?;
    Ok(buf.freeze())
}

/// [`encode_response`] in parts to write back to back: `fields` (large byte fields of `body`,
/// such as a Fetch's record batches) become parts of their own instead of being copied.
pub(crate) fn encode_response_spliced<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
    fields: Vec<crate::kafka::splice::Field>,
) -> Result<Vec<crate::kafka::splice::Part>, KafkaError> {
    let mut buf = crate::kafka::splice::SplicingBuf::new(4096, fields);
    write_response(&mut buf, key, version, correlation_id, body)?;
    Ok(buf.into_parts())
}

/// Writes the size prefix, the response header and `body` into `buf`.
fn write_response<B: ByteBufMut, T: Encodable>(
    buf: &mut B,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<(), KafkaError> {
    // ApiVersions answers always carry a v0 header, whatever the request version (trap 4).
    let header_version =
        if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encode_err =
        |e: &dyn std::fmt::Display| KafkaError::Encode(format!("{key:?} v{version} response: {e}"));
    let size = header.compute_size(header_version).map_err(|e| encode_err(&e))?
        + body.compute_size(version).map_err(|e| encode_err(&e))?;
    buf.put_i32(size as i32);
    header.encode(buf, header_version).map_err(|e| encode_err(&e))?;
    body.encode(buf, version).map_err(|e| encode_err(&e))?;
    Ok(())
}

/// Our ApiVersions answer body (error code 0 or UNSUPPORTED_VERSION).
pub(crate) fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(advertised_min(key, min))
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

/// The full frame answering an ApiVersions request newer than we support: a v0-shaped body.
pub(crate) fn api_versions_too_new(correlation_id: i32) -> Result<Bytes, KafkaError> {
    let body = api_versions_response(kafka_protocol::ResponseError::UnsupportedVersion.code());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
    use kafka_protocol::protocol::StrBytes;

    fn request_bytes<T: Encodable>(key: ApiKey, version: i16, corr: i32, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn frame_size_is_checked_before_allocation() {
        assert_eq!(check_frame_size(100i32.to_be_bytes(), 1000).unwrap(), 100);
        assert!(matches!(
            check_frame_size(2000i32.to_be_bytes(), 1000),
            Err(KafkaError::FrameTooLarge { size: 2000, max: 1000 })
        ));
        assert!(check_frame_size((-1i32).to_be_bytes(), 1000).is_err());
    }

    #[test]
    fn decodes_a_metadata_request_header_and_body() {
        let raw = request_bytes(ApiKey::Metadata, 4, 42, &MetadataRequest::default());
        let Incoming::Request(mut req) = decode_request(raw).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.key, ApiKey::Metadata);
        assert_eq!(req.header.correlation_id, 42);
        assert_eq!(req.header.client_id.as_deref(), Some("test"));
        let body: MetadataRequest = decode_body(&mut req).unwrap();
        assert_eq!(body.topics, Some(vec![]));
    }

    #[test]
    fn api_versions_newer_than_ours_gets_the_v0_shaped_error() {
        let raw = request_bytes(ApiKey::ApiVersions, 4, 7, &ApiVersionsRequest::default());
        let Incoming::ApiVersionsTooNew { correlation_id, client_id } =
            decode_request(raw).unwrap()
        else {
            panic!("expected the too-new path")
        };
        assert_eq!(correlation_id, 7);
        assert_eq!(client_id.as_deref(), Some("test"));
        let mut frame = api_versions_too_new(correlation_id).unwrap();
        let size = frame.get_i32() as usize;
        assert_eq!(size, frame.remaining());
        assert_eq!(ResponseHeader::decode(&mut frame, 0).unwrap().correlation_id, 7);
        let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert_eq!(body.error_code, 35);
        let produce = body.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        // Advertised from v0 (see `advertised_min`), accepted from v3.
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
    }

    #[test]
    fn advertised_ranges_keep_the_old_minimums_clients_need() {
        let r = |k| supported_range(k).unwrap();
        assert_eq!(r(ApiKey::Produce).0, 3);
        assert_eq!(r(ApiKey::Fetch), (4, 17));
        assert_eq!(r(ApiKey::Metadata), (0, 12));
        for k in [ApiKey::FindCoordinator, ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::Heartbeat]
        {
            assert_eq!(r(k).0, 0);
        }
        // Every advertised range must be decodable by the crate.
        for &(key, min, max) in SUPPORTED_APIS {
            assert!(min <= max, "{key:?}");
        }
    }

    #[test]
    fn unknown_or_out_of_range_requests_are_refused() {
        // Metadata v13 is Kafka 4.0's.
        let raw = request_bytes(ApiKey::Metadata, 13, 1, &MetadataRequest::default());
        let Ok(Incoming::Unsupported(u)) = decode_request(raw) else { panic!("refused") };
        assert_eq!(
            u,
            Unsupported {
                api_key: 3,
                version: 13,
                correlation_id: 1,
                client_id: Some("test".to_string())
            }
        );
        assert_eq!(u.api_name(), "Metadata");
        let mut raw = BytesMut::new();
        raw.put_i16(999);
        raw.put_i16(0);
        raw.put_i32(1);
        let Ok(Incoming::Unsupported(u)) = decode_request(raw.freeze()) else { panic!("refused") };
        assert_eq!((u.api_key, u.api_name(), u.client_id), (999, "unknown".to_string(), None));
        assert!(decode_request(Bytes::from_static(&[0, 3])).is_err());
    }

    #[test]
    fn the_client_software_of_api_versions_v3_is_read() {
        let body = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("librdkafka"))
            .with_client_software_version(StrBytes::from_static_str("2.0.2"));
        let raw = request_bytes(ApiKey::ApiVersions, 3, 1, &body);
        let Incoming::Request(req) = decode_request(raw).unwrap() else { panic!("a request") };
        assert_eq!(client_software(&req), Some(("librdkafka".into(), "2.0.2".into())));
        let raw = request_bytes(ApiKey::ApiVersions, 2, 1, &body);
        let Incoming::Request(req) = decode_request(raw).unwrap() else { panic!("a request") };
        assert_eq!(client_software(&req), None);
    }

    #[test]
    fn produce_is_advertised_from_v0_for_old_librdkafka_but_refused_below_v3() {
        let body = api_versions_response(0);
        let produce = body.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
        for v in 0..3 {
            // The crate no longer encodes Produce v0-v2: the header alone is what is judged.
            let mut raw = BytesMut::new();
            raw.put_i16(ApiKey::Produce as i16);
            raw.put_i16(v);
            raw.put_i32(1);
            let Ok(Incoming::Unsupported(u)) = decode_request(raw.freeze()) else {
                panic!("v{v} refused")
            };
            assert_eq!((u.api_key, u.version), (0, v));
        }
        let raw = request_bytes(ApiKey::Produce, 3, 1, &ProduceRequest::default());
        assert!(matches!(decode_request(raw), Ok(Incoming::Request(_))));
        // Every other API is advertised exactly as accepted.
        for k in &body.api_keys {
            let key = ApiKey::try_from(k.api_key).unwrap();
            if key != ApiKey::Produce {
                assert_eq!(Some((k.min_version, k.max_version)), supported_range(key), "{key:?}");
            }
        }
    }

    /// Encodes the crate's default request of `key` at `v` as a client would, then takes it
    /// through [`decode_request`] and [`decode_body`] as the server does.
    fn encode_then_decode(key: ApiKey, v: i16) -> Result<(), String> {
        macro_rules! table {
            ($($k:ident => $t:ty),* $(,)?) => {
                match key {
                    $(ApiKey::$k => {
                        let raw = request_bytes(key, v, 5, &<$t>::default());
                        let Incoming::Request(mut req) =
                            decode_request(raw).map_err(|e| e.to_string())?
                        else {
                            return Err("refused".into());
                        };
                        decode_body::<$t>(&mut req).map_err(|e| e.to_string())?;
                        if req.body.has_remaining() {
                            return Err(format!("{} bytes left", req.body.remaining()));
                        }
                        Ok(())
                    })*
                    other => Err(format!("{other:?} is missing from this test's table")),
                }
            };
        }
        use kafka_protocol::messages::*;
        table!(
            Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest, OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest, FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest, Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest, SyncGroup => SyncGroupRequest,
            DescribeGroups => DescribeGroupsRequest, ListGroups => ListGroupsRequest,
            SaslHandshake => SaslHandshakeRequest, ApiVersions => ApiVersionsRequest,
            CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest, InitProducerId => InitProducerIdRequest,
            DescribeConfigs => DescribeConfigsRequest, AlterConfigs => AlterConfigsRequest,
            SaslAuthenticate => SaslAuthenticateRequest,
            CreatePartitions => CreatePartitionsRequest, DeleteGroups => DeleteGroupsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            OffsetDelete => OffsetDeleteRequest, DescribeCluster => DescribeClusterRequest,
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        )
    }

    #[test]
    fn every_version_we_accept_decodes_what_the_crate_encodes_at_it() {
        for &(key, min, max) in SUPPORTED_APIS {
            for v in min..=max {
                if let Err(e) = encode_then_decode(key, v) {
                    panic!("{key:?} v{v}: {e}");
                }
            }
            // One past our maximum is refused (ApiVersions gets its v0-shaped retry answer).
            let mut past = BytesMut::from(&[0u8; 8][..]);
            past[0..2].copy_from_slice(&(key as i16).to_be_bytes());
            past[2..4].copy_from_slice(&(max + 1).to_be_bytes());
            match decode_request(past.freeze()) {
                Ok(Incoming::Unsupported(u)) => assert_eq!(u.version, max + 1, "{key:?}"),
                Ok(Incoming::ApiVersionsTooNew { .. }) => assert_eq!(key, ApiKey::ApiVersions),
                other => panic!("{key:?} v{}: {other:?}", max + 1),
            }
        }
    }

    #[test]
    fn maxima_are_those_of_kafka_3_9_within_the_crate() {
        let r = |k| supported_range(k).unwrap().1;
        assert_eq!(r(ApiKey::Produce), 11);
        assert_eq!(r(ApiKey::Fetch), 17);
        assert_eq!(r(ApiKey::ListOffsets), 9);
        assert_eq!(r(ApiKey::Metadata), 12);
        assert_eq!(r(ApiKey::DeleteTopics), 6);
        assert_eq!(r(ApiKey::InitProducerId), 4);
        assert_eq!(r(ApiKey::ApiVersions), 3);
    }

    #[test]
    fn sasl_handshake_v0_is_offered_for_old_librdkafka() {
        assert_eq!(supported_range(ApiKey::SaslHandshake), Some((0, 1)));
    }

    #[test]
    fn api_versions_response_header_is_v0_even_for_v3() {
        let frame = encode_response(ApiKey::ApiVersions, 3, 9, &api_versions_response(0)).unwrap();
        let mut b = frame.slice(4..);
        assert_eq!(b.get_i32(), 9);
        let body = ApiVersionsResponse::decode(&mut b, 3).unwrap();
        assert_eq!(body.error_code, 0);
        assert!(!b.has_remaining());
    }
}
