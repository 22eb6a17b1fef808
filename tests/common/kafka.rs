//! Raw Kafka requests for the end-to-end tests: frames hand-built with `kafka-protocol` types, for
//! the requests no client library would send (hostile sizes, refused features, pipelined floods).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Generous: a debug build on a busy 2-core machine.
const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// Every request carries it; `read_response` checks the answer does too.
const CORRELATION_ID: i32 = 7;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One connection to a Kafka listener, sending as `client_id`.
pub struct KafkaConn {
    pub s: TcpStream,
    client_id: String,
}

impl KafkaConn {
    pub fn connect(addr: &str, client_id: &str) -> KafkaConn {
        let s = TcpStream::connect(addr).expect("connect to the Kafka listener");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        KafkaConn { s, client_id: client_id.to_string() }
    }

    /// The length-prefixed frame of one request (to pipeline several before reading).
    pub fn frame<T: Encodable>(&self, key: ApiKey, v: i16, body: &T) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(CORRELATION_ID)
            .with_client_id(Some(s(&self.client_id)))
            .encode(&mut buf, key.request_header_version(v))
            .unwrap();
        body.encode(&mut buf, v).unwrap();
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// `connect` for brokers a test kills, pauses or cuts off: errors instead of panics, and
    /// gives up on a connect or an answer after `timeout`.
    pub fn try_connect(addr: &str, client_id: &str, timeout: Duration) -> io::Result<KafkaConn> {
        let sa = addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::other("no address"))?;
        let s = TcpStream::connect_timeout(&sa, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(KafkaConn { s, client_id: client_id.to_string() })
    }

    /// `call` that errors instead of panicking (a dead connection, a timeout, a bad answer).
    pub fn try_call<T: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        body: &T,
    ) -> io::Result<R> {
        let frame = self.frame(key, v, body);
        self.s.write_all(&frame)?;
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        // A test talks to its own brokers; still, never trust a length before checking it.
        if !(0..=256 << 20).contains(&len) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame length {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.s.read_exact(&mut body)?;
        let mut b = Bytes::from(body);
        let bad = |e: anyhow::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let header = ResponseHeader::decode(&mut b, key.response_header_version(v)).map_err(bad)?;
        if header.correlation_id != CORRELATION_ID {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong correlation id"));
        }
        R::decode(&mut b, v).map_err(bad)
    }

    /// Sends one request and reads its response.
    pub fn call<T: Encodable, R: Decodable>(&mut self, key: ApiKey, v: i16, body: &T) -> R {
        self.call_sized(key, v, body).0
    }

    /// `call`, also returning the response frame's size.
    pub fn call_sized<T: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        body: &T,
    ) -> (R, usize) {
        let frame = self.frame(key, v, body);
        self.s.write_all(&frame).expect("send the request");
        read_response(&mut self.s, key, v)
    }
}

/// Reads one response frame; returns its body (after the header) and its size.
pub fn read_response<R: Decodable>(s: &mut TcpStream, key: ApiKey, v: i16) -> (R, usize) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a response frame");
    let len = i32::from_be_bytes(len);
    assert!(len >= 0, "negative response length {len}");
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).expect("the response body");
    let mut b = Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, key.response_header_version(v)).unwrap();
    assert_eq!(header.correlation_id, CORRELATION_ID);
    (R::decode(&mut b, v).expect("the response decodes"), len as usize)
}

/// OffsetCommit at `version` of (partition, offset) of one topic as a standalone client (no
/// member, generation -1: what admin tools and kafkajs's `setOffsets` send): each partition's
/// error code.
pub fn commit_standalone(
    c: &mut KafkaConn,
    version: i16,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName};
    let partitions = offsets
        .iter()
        .map(|&(p, o)| {
            OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(o)
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, version, &req);
    r.topics[0].partitions.iter().map(|p| p.error_code).collect()
}
