//! Entry points for fuzzers: the cargo-fuzz targets in `fuzz/` and the stable proptest harness in
//! `tests/fuzz_decoders.rs`. Each feeds untrusted bytes to the decoders the broker runs on them,
//! in the order the broker runs them, and returns a short summary; whatever the input, it must
//! return (an error is fine, a panic, a hang or a huge allocation is the bug). Owns no logic of
//! its own and is not a stable API.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;

use crate::batch::{self, Compression};
use crate::kafka::codec::{self, DecodedRequest, Incoming};
use crate::protocol;
use crate::record;
use crate::storage::{Log, LogConfig};

/// What a decoder made of an input, for harnesses that want to assert progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Units that decoded (frames, requests, records, batches).
    pub decoded: usize,
    /// Units refused with an error.
    pub refused: usize,
}

/// The native protocol as the server reads a connection: length-prefixed frames (each checked
/// against the frame limit first), each body decoded as a request; also as the client reads it
/// (responses), and any `Append` record set through the batch validation the log runs before
/// storing it. Every request that decodes must re-encode to a frame that decodes to the same
/// request.
pub fn native_stream(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut rest = data;
    while rest.len() >= protocol::FRAME_PREFIX_LEN {
        let prefix = [rest[0], rest[1], rest[2], rest[3]];
        // A small limit, like a broker run with --max-frame-bytes, so oversized frames are hit.
        let len = match protocol::frame_len(prefix, 1 << 16) {
            Ok(len) => len,
            Err(_) => {
                out.refused += 1;
                break; // the server closes the connection here
            }
        };
        let body_all = &rest[protocol::FRAME_PREFIX_LEN..];
        if body_all.len() < len {
            break; // waits for more bytes
        }
        let body = &body_all[..len];
        rest = &body_all[len..];
        match protocol::decode_request(body) {
            Ok((id, req)) => {
                out.decoded += 1;
                let mut buf = BytesMut::new();
                protocol::encode_request(&mut buf, id, &req);
                let again = protocol::decode_request(&buf[protocol::FRAME_PREFIX_LEN..]);
                assert_eq!(again.ok(), Some((id, req.clone())), "request round trip");
                if let protocol::Request::Append { records, .. } = req {
                    let (ok, refused) = validate_and_renumber(&records);
                    out.decoded += ok;
                    out.refused += refused;
                }
            }
            Err(_) => {
                out.refused += 1;
                let _ = protocol::peek_correlation_id(body);
            }
        }
        if protocol::decode_response(body).is_ok() {
            out.decoded += 1;
        }
    }
    out
}

/// A record set as the log validates one before storing it: each batch through
/// `batch::validate_with`, then given a base offset (as the log does, outside the CRC) and read
/// back, which must give as many records as validation counted. (records of the valid batches,
/// batches refused)
fn validate_and_renumber(data: &[u8]) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    let limits = batch::Limits::default();
    let mut scratch = Vec::new();
    for view in batch::batches(data) {
        let Ok(view) = view else {
            refused += 1;
            break;
        };
        match batch::validate_with(view.as_bytes(), &limits, &mut scratch) {
            Ok(summary) => {
                ok += summary.record_count;
                let mut owned = view.as_bytes().to_vec();
                batch::set_base_offset(&mut owned, 42).expect("a validated batch has its header");
                let mut n = 0;
                record::for_each_record(&owned, true, &mut scratch, |_| {
                    n += 1;
                    std::ops::ControlFlow::Continue(())
                })
                .expect("a validated batch reads back after renumbering");
                assert_eq!(n, summary.record_count, "records read back as counted");
            }
            Err(_) => refused += 1,
        }
    }
    (ok, refused)
}

/// Fetched bytes as a consumer reads them: batches CRC-checked, records decoded.
pub fn records(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut scratch = Vec::new();
    let res = record::for_each_record(data, true, &mut scratch, |v| {
        out.decoded += 1;
        let _ = v.headers().count();
        std::ops::ControlFlow::Continue(())
    });
    if res.is_err() {
        out.refused += 1;
    }
    out
}

/// The Kafka listener's path for one frame body: header (API key, version, header version), the
/// request body of that API at that version, and for Produce every record set through the batch
/// decoder (decompression included) into stored records, and those back into a Kafka batch as a
/// fetch would encode them.
pub fn kafka_request(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let _ = codec::check_frame_size(
        data.get(..4).and_then(|p| p.try_into().ok()).unwrap_or([0; 4]),
        1 << 20,
    );
    let mut req = match codec::decode_request(Bytes::copy_from_slice(data)) {
        Ok(Incoming::Request(r)) => r,
        Ok(Incoming::ApiVersionsTooNew { .. }) => {
            out.decoded += 1;
            return out;
        }
        Ok(Incoming::Unsupported(_)) | Err(_) => {
            out.refused += 1;
            return out;
        }
    };
    out.decoded += 1;
    let ok = match req.key {
        ApiKey::Produce => match codec::decode_body::<ProduceRequest>(&mut req) {
            Ok(p) => {
                for t in &p.topic_data {
                    for part in &t.partition_data {
                        if let Some(recs) = &part.records {
                            let o = kafka_batches(recs);
                            out.decoded += o.decoded;
                            out.refused += o.refused;
                        }
                    }
                }
                true
            }
            Err(_) => false,
        },
        ApiKey::Fetch => body::<FetchRequest>(&mut req),
        ApiKey::ListOffsets => body::<ListOffsetsRequest>(&mut req),
        ApiKey::Metadata => body::<MetadataRequest>(&mut req),
        ApiKey::OffsetCommit => body::<OffsetCommitRequest>(&mut req),
        ApiKey::OffsetFetch => body::<OffsetFetchRequest>(&mut req),
        ApiKey::FindCoordinator => body::<FindCoordinatorRequest>(&mut req),
        ApiKey::JoinGroup => body::<JoinGroupRequest>(&mut req),
        ApiKey::Heartbeat => body::<HeartbeatRequest>(&mut req),
        ApiKey::LeaveGroup => body::<LeaveGroupRequest>(&mut req),
        ApiKey::SyncGroup => body::<SyncGroupRequest>(&mut req),
        ApiKey::ApiVersions => body::<ApiVersionsRequest>(&mut req),
        ApiKey::CreateTopics => body::<CreateTopicsRequest>(&mut req),
        ApiKey::DeleteTopics => body::<DeleteTopicsRequest>(&mut req),
        ApiKey::InitProducerId => body::<InitProducerIdRequest>(&mut req),
        ApiKey::SaslHandshake => body::<SaslHandshakeRequest>(&mut req),
        ApiKey::SaslAuthenticate => body::<SaslAuthenticateRequest>(&mut req),
        _ => false,
    };
    if ok {
        out.decoded += 1;
    } else {
        out.refused += 1;
    }
    out
}

fn body<T: kafka_protocol::protocol::Decodable>(req: &mut DecodedRequest) -> bool {
    codec::decode_body::<T>(req).is_ok()
}

/// A Produce record set as the log validates it and numbers it.
pub fn kafka_batches(data: &Bytes) -> Outcome {
    let (decoded, refused) = validate_and_renumber(data);
    Outcome { decoded, refused }
}

/// Recovery as the broker runs it at start-up: `data` becomes the only segment file of a log
/// directory under `scratch` (which must be empty), the log is opened (tail scan, cut, index
/// rebuild) and read to the end; a second open must give the same log. Returns the records
/// recovered; an open refused with an error counts as refused.
pub fn recover_segment(scratch: &Path, data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let seg = scratch.join("00000000000000000000.log");
    std::fs::write(&seg, data).expect("scratch directory is writable");
    let config = LogConfig { segment_bytes: 1 << 16, ..LogConfig::default() };
    let first = match Log::open(scratch, config.clone()) {
        Ok(log) => read_to_end(&log),
        Err(_) => {
            out.refused += 1;
            return out;
        }
    };
    out.decoded = first.len();
    let second = Log::open(scratch, config).map(|log| read_to_end(&log));
    assert_eq!(second.ok().as_ref(), Some(&first), "reopening a recovered log changed it");
    out
}

fn read_to_end(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let slice = log.read(at, 1 << 16).expect("a recovered log reads to its end");
        let before = at;
        for r in slice.records() {
            let r = r.expect("recovery keeps only batches that pass their checks");
            assert_eq!(r.offset, at, "recovered offsets are consecutive");
            got.push((r.offset, r.value.unwrap_or_default()));
            at += 1;
        }
        assert!(at > before, "a read below the end returns at least one record");
    }
    got
}

/// Valid inputs for mutation-based harnesses: a native stream of one frame of every request kind.
pub fn sample_native_stream() -> Vec<u8> {
    use protocol::Request;
    let values: Vec<[u8; 5]> = (0..3u8).map(|i| [i; 5]).collect();
    let recs: Vec<_> = values
        .iter()
        .map(|v| record::NewRecord { key: Some(b"k"), ..record::NewRecord::value(v) })
        .collect();
    let records = record::build_batch(&recs, Compression::None).expect("tiny records build");
    let requests = [
        Request::Authenticate { token: "secret".into() },
        Request::CreateTopic {
            name: "t".into(),
            partitions: 3,
            if_not_exists: true,
            configs: vec![("retention.ms".into(), "1000".into())],
        },
        Request::AlterTopicConfigs {
            topic: "t".into(),
            set: vec![("cleanup.policy".into(), "compact".into())],
            delete: vec!["retention.ms".into()],
        },
        Request::DescribeTopicConfigs { topic: "t".into() },
        Request::AddPartitions { topic: "t".into(), total: 4 },
        Request::Append {
            topic: "t".into(),
            partition: Some(1),
            key_hint: Some(Bytes::from_static(b"k")),
            records: Bytes::from(records),
        },
        Request::Fetch {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            max_bytes: 100,
            max_wait_ms: 9,
        },
        Request::Describe { topic: Some("t".into()) },
        Request::ListTopics,
        Request::Trim { topic: "t".into(), partition: 0, before: 3 },
        Request::CommitOffset { group: "g".into(), topic: "t".into(), partition: 0, offset: 1 },
        Request::FetchOffset { group: "g".into(), topic: "t".into(), partition: 0 },
        Request::DeleteTopic { name: "t".into() },
    ];
    let mut buf = BytesMut::new();
    for (i, r) in requests.iter().enumerate() {
        protocol::encode_request(&mut buf, i as u32, r);
    }
    buf.to_vec()
}

/// A valid Kafka Produce v3 frame body (header + body) carrying one batch of `n` records.
pub fn sample_kafka_produce(n: u8) -> Vec<u8> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let values: Vec<[u8; 2]> = (0..n.max(1)).map(|i| [b'v', i]).collect();
    let recs: Vec<_> = values
        .iter()
        .map(|v| record::NewRecord { key: Some(b"key"), ..record::NewRecord::value(v) })
        .collect();
    let batch = Bytes::from(record::build_batch(&recs, Compression::None).expect("tiny records"));
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(batch)),
            ]),
    ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(3)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(3))
        .expect("a default header encodes");
    req.encode(&mut buf, 3).expect("a v3 produce request encodes");
    buf.to_vec()
}

/// A valid segment file of `n` records, as a log writes it (made in `scratch`, then removed).
pub fn sample_segment(scratch: &Path, n: u8) -> Vec<u8> {
    let config = LogConfig { segment_bytes: 1 << 16, ..LogConfig::default() };
    let log = Log::open(scratch, config).expect("scratch directory is writable");
    for i in 0..n {
        let value = vec![i; usize::from(i) % 7 + 1];
        log.append(&[record::NewRecord::value(&value)]).expect("append to a fresh log");
    }
    log.close().expect("close a fresh log");
    let path = scratch.join("00000000000000000000.log");
    let bytes = std::fs::read(&path).expect("the segment just written");
    for name in std::fs::read_dir(scratch).expect("scratch").flatten() {
        let _ = std::fs::remove_file(name.path());
    }
    bytes
}

/// A record set as the stored-batch layer (`crate::batch`) sees one: split into batches, each
/// validated under small limits; every valid batch's records are iterated (decompressed when
/// compressed) and must number what the summary says, stay valid with a new base offset, and
/// decode the same (offsets, keys, values) in kafka-protocol's decoder, unless a header key is
/// not UTF-8 (which that decoder refuses). A batch refused only for its CRC is checked again with
/// the CRC made right, so mutations reach the record decoder instead of stopping at the CRC.
pub fn batch_validate(data: &[u8]) -> Outcome {
    use crate::batch::{self, BatchError};
    let mut out = Outcome::default();
    let mut scratch = Vec::new();
    for view in batch::batches(data) {
        let Ok(view) = view else {
            out.refused += 1;
            break;
        };
        match check_batch(view.as_bytes(), &mut scratch) {
            Ok(n) => out.decoded += n,
            Err(BatchError::Crc { computed, .. }) => {
                out.refused += 1;
                let mut fixed = view.as_bytes().to_vec();
                fixed[batch::CRC_POS..batch::ATTRIBUTES_POS]
                    .copy_from_slice(&computed.to_be_bytes());
                match check_batch(&fixed, &mut scratch) {
                    Ok(n) => out.decoded += n,
                    Err(_) => out.refused += 1,
                }
            }
            Err(_) => out.refused += 1,
        }
    }
    out
}

/// What the batch harness compares between decoders: offset, key, value.
type Seen<'a> = Vec<(i64, Option<&'a [u8]>, Option<&'a [u8]>)>;

/// One batch through `batch_validate`'s checks; returns its record count.
fn check_batch(bytes: &[u8], scratch: &mut Vec<u8>) -> Result<usize, crate::batch::BatchError> {
    use crate::batch::{self, BatchView, Limits};
    let limits = Limits { max_records: 10_000, max_decompressed_bytes: 1 << 20 };
    let summary = batch::validate_with(bytes, &limits, scratch)?;
    let view = BatchView::new(bytes)?;
    view.decompress_into(scratch, limits.max_decompressed_bytes)
        .expect("a valid batch decompresses again");
    let mut utf8_keys = true;
    let mine: Seen<'_> = view
        .records_in(scratch)
        .map(|r| {
            let r = r.expect("a valid batch's records read");
            utf8_keys &= r.headers().all(|h| std::str::from_utf8(h.key).is_ok());
            (r.offset, r.key, r.value)
        })
        .collect();
    assert_eq!(mine.len(), summary.record_count, "records read = records validated");

    let mut moved = bytes.to_vec();
    batch::set_base_offset(&mut moved, 1 << 40).expect("a valid batch has a header");
    let again = batch::validate(&moved, &limits).expect("a new base offset keeps it valid");
    assert_eq!(again.base_offset, 1 << 40);
    assert_eq!(BatchView::new(&moved).map(|v| v.crc()).ok(), Some(view.crc()));

    match kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(bytes)) {
        Ok(set) => {
            let theirs: Seen<'_> = set
                .records
                .iter()
                .map(|r| (r.offset, r.key.as_deref(), r.value.as_deref()))
                .collect();
            assert_eq!(mine, theirs, "kafka-protocol reads a valid batch the same");
        }
        Err(e) => assert!(!utf8_keys, "kafka-protocol refused a batch we accept: {e:#}"),
    }
    Ok(summary.record_count)
}

/// Valid inputs for the batch harness: one batch per codec, back to back, with null and empty
/// keys and values and repeated header keys.
pub fn sample_batches() -> Vec<u8> {
    use crate::batch::{BatchBuilder, Compression, Header, NewRecord};
    let headers = [
        Header { key: b"h", value: Some(b"1") },
        Header { key: b"h", value: None },
        Header { key: b"", value: Some(b"") },
    ];
    let mut out = Vec::new();
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let mut b = BatchBuilder::new(c).base_offset(i as i64 * 10).producer(9, 0, 0);
        for j in 0..4u8 {
            let value = [j; 12];
            b.push(&NewRecord {
                timestamp: 1_700_000_000_000 + i64::from(j % 3),
                key: (j % 2 == 0).then_some(&b"key"[..]),
                value: if j == 3 { None } else { Some(&value[..usize::from(j) * 4]) },
                headers: &headers[..usize::from(j) % 4],
            })
            .expect("a tiny record fits");
        }
        b.build_into(&mut out).expect("a non-empty batch builds");
    }
    out
}
