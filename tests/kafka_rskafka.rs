//! The Kafka listener as a Rust Kafka client sees it: a broker and a KafkaServer started in the
//! test on an ephemeral port, driven by `rskafka` (produce, fetch, list offsets, admin) and, for
//! the protocol edges no client library will send on purpose, by raw frames.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::kafka::{KafkaConfig, KafkaServer};
use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker on a temp dir with a Kafka listener on an ephemeral port; stops when dropped.
struct TestBroker {
    addr: String,
    broker: Arc<Broker>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let broker = Broker::open(config).unwrap();
        let server =
            KafkaServer::bind(KafkaConfig::new("127.0.0.1:0".parse().unwrap()), broker.clone())
                .await
                .unwrap();
        let addr = server.local_addr().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestBroker { addr, broker, stop: Some(tx), task: Some(task), _dir: dir }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("the listener stops promptly")
            .unwrap();
        self.broker.shutdown().unwrap();
    }
}

fn record(key: &str, value: &str, ts_ms: i64) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: BTreeMap::from([("h".to_string(), b"v".to_vec())]),
        timestamp: Utc.timestamp_millis_opt(ts_ms).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_creates_produces_fetches_and_lists_offsets() {
    let b = TestBroker::start().await;
    let client = ClientBuilder::new(vec![b.addr.clone()]).build().await.unwrap();
    client.controller_client().unwrap().create_topic("orders", 3, 1, 5_000).await.unwrap();
    let topics = client.list_topics().await.unwrap();
    let orders = topics.iter().find(|t| t.name == "orders").expect("metadata lists the topic");
    assert_eq!(orders.partitions.len(), 3);

    let p1 = client.partition_client("orders", 1, UnknownTopicHandling::Retry).await.unwrap();
    let mut expected = Vec::new();
    let compressions = [
        Compression::NoCompression,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Snappy,
        Compression::Zstd,
    ];
    for (i, c) in compressions.into_iter().enumerate() {
        let batch: Vec<Record> = (0..50)
            .map(|j| record(&format!("k{i}-{j}"), &format!("v{i}-{j}"), 1_700_000_000_000 + j))
            .collect();
        let offsets = p1.produce(batch.clone(), c).await.unwrap();
        assert_eq!(offsets, ((i as i64 * 50)..(i as i64 * 50 + 50)).collect::<Vec<_>>());
        expected.extend(batch);
    }

    assert_eq!(p1.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
    assert_eq!(p1.get_offset(OffsetAt::Latest).await.unwrap(), 250);

    let mut got = Vec::new();
    let mut offset = 0;
    while got.len() < expected.len() {
        let (recs, hw) = p1.fetch_records(offset, 1..100_000, 1_000).await.unwrap();
        assert_eq!(hw, 250, "the high watermark is the log end");
        assert!(!recs.is_empty());
        for r in recs {
            assert_eq!(r.offset, offset, "offsets are contiguous from 0");
            offset += 1;
            got.push(r.record);
        }
    }
    assert_eq!(got, expected, "keys, values, headers and timestamps survive the round trip");

    // The same records through the broker layer: one topic, one log, same offsets.
    let f = b.broker.fetch("orders", 1, 100, 1 << 20, 0, Duration::ZERO).await.unwrap();
    let first = f.records.records().next().unwrap().unwrap();
    assert_eq!(first.offset, 100);
    assert_eq!(first.key.as_deref(), Some(&b"k2-0"[..]));
    assert_eq!(first.value.as_deref(), Some(&b"v2-0"[..]));

    // Fetching past the end is out of range; the other partitions are empty.
    assert!(p1.fetch_records(251, 1..1000, 10).await.is_err());
    let p0 = client.partition_client("orders", 0, UnknownTopicHandling::Retry).await.unwrap();
    assert_eq!(p0.get_offset(OffsetAt::Latest).await.unwrap(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_at_the_end_waits_for_new_records() {
    let b = TestBroker::start().await;
    let client = ClientBuilder::new(vec![b.addr.clone()]).build().await.unwrap();
    client.controller_client().unwrap().create_topic("wait", 1, 1, 5_000).await.unwrap();
    let p = client.partition_client("wait", 0, UnknownTopicHandling::Retry).await.unwrap();
    // A second client, so the produce does not queue behind the fetch on one connection (a
    // Kafka broker serves a connection's requests one at a time).
    let client2 = ClientBuilder::new(vec![b.addr.clone()]).build().await.unwrap();
    let producer = client2.partition_client("wait", 0, UnknownTopicHandling::Retry).await.unwrap();
    let produce = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        producer.produce(vec![record("k", "late", 1)], Compression::NoCompression).await.unwrap();
    });
    // Long-poll far longer than the producer needs: the fetch must return with the record.
    let (recs, hw) = p.fetch_records(0, 1..10_000, 20_000).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].record.value.as_deref(), Some(&b"late"[..]));
    assert_eq!(hw, 1);
    produce.await.unwrap();
    b.stop().await;
}

async fn send_frame(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    corr: i32,
    body: &impl Encodable,
) {
    send_frame_as(s, key, version, version, corr, body).await
}

/// Sends `body` encoded at `body_version` under a header claiming `version` (to ask for versions
/// the crate itself cannot encode).
async fn send_frame_as(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body_version: i16,
    corr: i32,
    body: &impl Encodable,
) {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("raw")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    body.encode(&mut buf, body_version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(buf.len() as i32);
    frame.extend_from_slice(&buf);
    s.write_all(&frame).await.unwrap();
}

async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len)).await.ok()?.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_edges_answer_like_a_real_broker() {
    let b = TestBroker::start().await;
    let mut s = TcpStream::connect(&b.addr).await.unwrap();

    // ApiVersions newer than ours: v0-shaped body, UNSUPPORTED_VERSION, our ranges.
    send_frame_as(&mut s, ApiKey::ApiVersions, 9, 3, 1, &ApiVersionsRequest::default()).await;
    let mut resp = read_frame(&mut s).await.unwrap();
    assert_eq!(ResponseHeader::decode(&mut resp, 0).unwrap().correlation_id, 1);
    let av = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(av.error_code, 35);
    assert!(av.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16 && k.max_version == 17));

    // acks=0 gets no response: the next answer on the connection is the metadata one.
    let produce = ProduceRequest::default().with_acks(0).with_timeout_ms(1000);
    send_frame(&mut s, ApiKey::Produce, 7, 2, &produce).await;
    send_frame(&mut s, ApiKey::Metadata, 9, 3, &MetadataRequest::default().with_topics(None)).await;
    let mut resp = read_frame(&mut s).await.unwrap();
    assert_eq!(ResponseHeader::decode(&mut resp, 1).unwrap().correlation_id, 3);
    let md = MetadataResponse::decode(&mut resp, 9).unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(format!("{}:{}", md.brokers[0].host, md.brokers[0].port), b.addr);
    assert_eq!(i32::from(md.controller_id), 0);

    // A frame claiming more than the limit closes that connection, and only that one.
    let mut bad = TcpStream::connect(&b.addr).await.unwrap();
    bad.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
    assert!(read_frame(&mut bad).await.is_none());
    // An API we do not implement closes the connection too.
    let mut bad2 = TcpStream::connect(&b.addr).await.unwrap();
    send_frame(
        &mut bad2,
        ApiKey::DescribeAcls,
        1,
        1,
        &kafka_protocol::messages::DescribeAclsRequest::default(),
    )
    .await;
    assert!(read_frame(&mut bad2).await.is_none());
    // Garbage after a valid header is a malformed request, not a crash.
    let mut bad3 = TcpStream::connect(&b.addr).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(12);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(9);
    frame.put_i32(5);
    frame.put_i32(0x7fff_ffff);
    bad3.write_all(&frame).await.unwrap();
    assert!(read_frame(&mut bad3).await.is_none());

    // Array lengths that claim billions of elements (the decoder reserves them up front) get
    // the connection closed, not the broker aborted: Metadata v1 (i32 count) and v9 (varint).
    let mut bad4 = TcpStream::connect(&b.addr).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(2 + 2 + 4 + 2 + 1 + 4);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(1);
    frame.put_i32(6);
    frame.put_i16(1);
    frame.put_u8(b'x');
    frame.put_i32(i32::MAX);
    bad4.write_all(&frame).await.unwrap();
    assert!(read_frame(&mut bad4).await.is_none());
    let mut bad5 = TcpStream::connect(&b.addr).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(2 + 2 + 4 + 2 + 1 + 1 + 5);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(9);
    frame.put_i32(7);
    frame.put_i16(1);
    frame.put_u8(b'x');
    frame.put_u8(0); // no tagged fields in the header
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact array of 2^32-2
    bad5.write_all(&frame).await.unwrap();
    assert!(read_frame(&mut bad5).await.is_none());

    // The first connection still works.
    send_frame(&mut s, ApiKey::ApiVersions, 3, 4, &ApiVersionsRequest::default()).await;
    let mut resp = read_frame(&mut s).await.unwrap();
    assert_eq!(resp.get_i32(), 4);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_long_poll_to_run_out() {
    let b = TestBroker::start().await;
    let client = ClientBuilder::new(vec![b.addr.clone()]).build().await.unwrap();
    client.controller_client().unwrap().create_topic("idle", 1, 1, 5_000).await.unwrap();
    let p = client.partition_client("idle", 0, UnknownTopicHandling::Error).await.unwrap();
    p.produce(vec![record("k", "v", 1)], Compression::NoCompression).await.unwrap();
    // A fetch at the end of the log that would wait 25 s.
    let poll = tokio::spawn(async move { p.fetch_records(1, 1..10_000, 25_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // stop() asserts the listener is gone within 10 s (the grace for requests in flight is 5 s).
    b.stop().await;
    poll.abort();
}
