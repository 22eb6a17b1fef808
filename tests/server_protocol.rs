//! Drives a real native-protocol server over TCP with raw frames, as a (possibly hostile) client
//! would: pipelining, bad frames, random bytes, out-of-range fetches, long-poll, limits, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use minikafka::batch::{self, BatchView, Compression};
use minikafka::broker::{AppendBatch, Broker, BrokerConfig};
use minikafka::protocol::{self, ErrorCode, Request, Response};
use minikafka::record::{self, NewRecord};
use minikafka::server::{Server, ServerConfig, ServerError};

/// Every wait in these tests is bounded by this.
const DEADLINE: Duration = Duration::from_secs(20);

struct TestServer {
    addr: SocketAddr,
    broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config };
        let server = Server::bind(config, broker.clone()).await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer { addr, broker, stop: Some(tx), task, _dir: dir }
    }

    async fn default() -> TestServer {
        TestServer::start(ServerConfig::default()).await
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    async fn stop(mut self) -> Result<(), ServerError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, &mut self.task).await.expect("server stops").unwrap()
    }
}

fn frame(id: u32, req: &Request) -> BytesMut {
    let mut buf = BytesMut::new();
    protocol::encode_request(&mut buf, id, req);
    buf
}

/// Reads one response frame, or `None` at end of stream.
async fn read_response(s: &mut TcpStream) -> Option<(u32, Response)> {
    tokio::time::timeout(DEADLINE, async {
        let mut prefix = [0u8; 4];
        if s.read_exact(&mut prefix).await.is_err() {
            return None;
        }
        let len = protocol::frame_len(prefix, protocol::MAX_FRAME_BYTES).unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        Some(protocol::decode_response(&body).unwrap())
    })
    .await
    .expect("a response within the deadline")
}

async fn call(s: &mut TcpStream, id: u32, req: &Request) -> Response {
    s.write_all(&frame(id, req)).await.unwrap();
    let (got, resp) = read_response(s).await.expect("a response");
    assert_eq!(got, id);
    resp
}

/// Reads until the server closes the connection (bounded by the deadline).
async fn expect_closed(s: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// `values` as one RecordBatch v2, as a producer sends it.
fn encoded(values: &[&str]) -> Bytes {
    let records: Vec<_> = values.iter().map(|v| NewRecord::value(v.as_bytes())).collect();
    Bytes::from(record::build_batch(&records, Compression::None).unwrap())
}

fn append(topic: &str, partition: u32, values: &[&str]) -> Request {
    Request::Append {
        topic: topic.into(),
        partition: Some(partition),
        key_hint: None,
        records: encoded(values),
    }
}

fn fetch(topic: &str, offset: u64, max_wait_ms: u32) -> Request {
    Request::Fetch { topic: topic.into(), partition: 0, offset, max_bytes: 1 << 20, max_wait_ms }
}

async fn create(s: &mut TcpStream, name: &str, partitions: u32) {
    let resp = call(
        s,
        1,
        &Request::CreateTopic {
            name: name.into(),
            partitions,
            if_not_exists: false,
            configs: vec![],
        },
    )
    .await;
    assert!(matches!(resp, Response::TopicCreated { .. }), "{resp:?}");
}

/// Every record of the whole batches a fetch returned (a fetch from the middle of a batch
/// brings the whole batch), CRC-checked as a consumer does.
fn fetched_values(resp: &Response) -> Vec<(u64, String)> {
    fetched_values_from(resp, 0)
}

/// The records at `from` and after of the batches a fetch returned, as a consumer hands them out.
fn fetched_values_from(resp: &Response, from: u64) -> Vec<(u64, String)> {
    let Response::Fetched { records, .. } = resp else { panic!("expected Fetched, got {resp:?}") };
    let mut out = Vec::new();
    record::decode_records(records, from, true, &mut out, &mut Vec::new())
        .expect("the stored CRC checks out on the client");
    out.into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value.expect("a value, not a null")).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    // 60 requests of mixed kinds in one write, before reading anything.
    let mut batch = BytesMut::new();
    for i in 0..60u32 {
        let req = match i % 3 {
            0 => append("t", 0, &[&format!("m{i}")]),
            1 => Request::ListTopics,
            _ => Request::Describe { topic: Some("t".into()) },
        };
        protocol::encode_request(&mut batch, 1000 + i, &req);
    }
    s.write_all(&batch).await.unwrap();
    let mut next_offset = 0;
    for i in 0..60u32 {
        let (id, resp) = read_response(&mut s).await.unwrap();
        assert_eq!(id, 1000 + i, "responses come back in request order");
        match (i % 3, resp) {
            (0, Response::Appended { partition: 0, first_offset, next_offset: n }) => {
                assert_eq!(first_offset, next_offset);
                next_offset = n;
            }
            (1, Response::Topics { names }) => assert_eq!(names, vec!["t".to_string()]),
            (2, Response::Described { topics }) => {
                assert_eq!(topics[0].partitions[0].next_offset, next_offset)
            }
            (_, other) => panic!("request {i}: unexpected {other:?}"),
        }
    }
    let resp = call(&mut s, 5, &fetch("t", 0, 0)).await;
    let values: Vec<String> = fetched_values(&resp).into_iter().map(|(_, v)| v).collect();
    let want: Vec<String> = (0..60).step_by(3).map(|i| format!("m{i}")).collect();
    assert_eq!(values, want);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_prefix_is_refused_and_others_are_still_served() {
    let server = TestServer::default().await;
    let mut bad = server.connect().await;
    let mut good = server.connect().await;
    create(&mut good, "t", 1).await;
    bad.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let (id, resp) = read_response(&mut bad).await.expect("an error frame before closing");
    assert_eq!(id, 0);
    assert!(matches!(resp, Response::Error { code: ErrorCode::FrameTooLarge, .. }), "{resp:?}");
    expect_closed(&mut bad).await;
    let resp = call(&mut good, 2, &append("t", 0, &["still here"])).await;
    assert!(matches!(resp, Response::Appended { .. }), "{resp:?}");
    let mut fresh = server.connect().await;
    let resp = call(&mut fresh, 3, &Request::ListTopics).await;
    assert_eq!(resp, Response::Topics { names: vec!["t".into()] });
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_hurt_the_server() {
    let server = TestServer::default().await;
    let mut good = server.connect().await;
    create(&mut good, "t", 1).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..20 {
        let mut s = server.connect().await;
        let len = rng.random_range(1..4096);
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk[..]);
        if round % 2 == 0 {
            // A plausible small length prefix, so the body reaches the decoder.
            let body = (len as u32).saturating_sub(4).max(5);
            junk[..4].copy_from_slice(&body.to_le_bytes());
        }
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
        expect_closed(&mut s).await;
        let resp = call(&mut good, round, &Request::ListTopics).await;
        assert_eq!(resp, Response::Topics { names: vec!["t".into()] }, "after round {round}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_requests_get_errors_and_the_connection_goes_on() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    // Unknown api key, correlation id 77.
    let mut body = 77u32.to_le_bytes().to_vec();
    body.push(250);
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&body);
    s.write_all(&f).await.unwrap();
    let (id, resp) = read_response(&mut s).await.unwrap();
    assert_eq!(id, 77);
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRequest, .. }), "{resp:?}");
    // A string that is not UTF-8.
    let mut body = 78u32.to_le_bytes().to_vec();
    body.push(2); // DeleteTopic
    body.extend_from_slice(&2u16.to_le_bytes());
    body.extend_from_slice(&[0xc3, 0x28]);
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&body);
    s.write_all(&f).await.unwrap();
    let (id, resp) = read_response(&mut s).await.unwrap();
    assert_eq!(id, 78);
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRequest, .. }), "{resp:?}");
    // Bad names and corrupt records are clear errors too.
    let resp = call(
        &mut s,
        79,
        &Request::CreateTopic {
            name: "../x".into(),
            partitions: 1,
            if_not_exists: false,
            configs: vec![],
        },
    )
    .await;
    let Response::Error { code: ErrorCode::InvalidTopicName, message } = resp else {
        panic!("{resp:?}")
    };
    assert!(message.contains("../x"), "{message}");
    create(&mut s, "t", 1).await;
    let resp = call(
        &mut s,
        80,
        &Request::Append {
            topic: "t".into(),
            partition: Some(0),
            key_hint: None,
            records: Bytes::from_static(b"not records at all"),
        },
    )
    .await;
    // Not a RecordBatch v2 (its magic byte is not 2): refused as an invalid record.
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRecord, .. }), "{resp:?}");
    // A batch over the record limit (1 MiB by default: it bounds a whole batch).
    let big = "x".repeat(record::DEFAULT_MAX_RECORD_BYTES as usize + 1);
    let resp = call(&mut s, 80, &append("t", 0, &[&big])).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::RecordTooLarge, .. }), "{resp:?}");
    // A record whose value length runs past its end, in a batch whose CRC-32C is right (so only
    // the layout is wrong). Record 0 of the batch: length, attributes, timestamp delta, offset
    // delta, key length (-1), then the value length (zigzag varint: 3 is 0x06) at +5.
    let mut bad = encoded(&["abc"]).to_vec();
    let value_len_at = batch::RECORDS_POS + 5;
    assert_eq!(bad[value_len_at], 0x06, "the value length of \"abc\"");
    bad[value_len_at] = 100; // zigzag of 50: past the end of the record
    let crc = BatchView::new(&bad).unwrap().compute_crc();
    bad[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    let resp = call(
        &mut s,
        80,
        &Request::Append {
            topic: "t".into(),
            partition: Some(0),
            key_hint: None,
            records: Bytes::from(bad),
        },
    )
    .await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRecord, .. }), "{resp:?}");
    let resp = call(&mut s, 81, &append("missing", 0, &["x"])).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::UnknownTopic, .. }), "{resp:?}");
    // And the connection still works.
    let resp = call(&mut s, 82, &Request::ListTopics).await;
    assert_eq!(resp, Response::Topics { names: vec!["t".into()] });
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_past_the_end_is_out_of_range_with_the_range() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    call(&mut s, 2, &append("t", 0, &["a", "b", "c"])).await;
    let resp = call(&mut s, 3, &fetch("t", 10, 0)).await;
    let Response::Error { code: ErrorCode::OffsetOutOfRange, message } = resp else {
        panic!("{resp:?}")
    };
    assert!(message.contains("10") && message.contains("0..3"), "{message}");
    // At the end exactly: an empty answer with the bounds.
    let resp = call(&mut s, 4, &fetch("t", 3, 0)).await;
    assert_eq!(
        resp,
        Response::Fetched {
            partition: 0,
            log_start_offset: 0,
            high_watermark: 3,
            records: Bytes::new()
        }
    );
    // A fetch from the middle of a batch returns the whole batch; the reader skips what it
    // did not ask for.
    let resp = call(&mut s, 5, &fetch("t", 1, 0)).await;
    assert_eq!(fetched_values(&resp).len(), 3, "the whole stored batch");
    assert_eq!(fetched_values_from(&resp, 1), vec![(1, "b".into()), (2, "c".into())]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_returns_when_another_connection_appends() {
    let server = TestServer::default().await;
    let mut consumer = server.connect().await;
    let mut producer = server.connect().await;
    create(&mut producer, "t", 1).await;
    // A long poll with a 30 s budget: it must come back as soon as the append lands.
    consumer.write_all(&frame(9, &fetch("t", 0, 30_000))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let resp = call(&mut producer, 2, &append("t", 0, &["wake up"])).await;
    assert!(matches!(resp, Response::Appended { .. }));
    let (id, resp) = read_response(&mut consumer).await.unwrap();
    assert_eq!(id, 9);
    assert_eq!(fetched_values(&resp), vec![(0, "wake up".into())]);
    assert!(started.elapsed() < Duration::from_secs(15), "woken by the append, not the timeout");
    // Without data, a short poll times out empty.
    let started = Instant::now();
    let resp = call(&mut consumer, 10, &fetch("t", 1, 200)).await;
    assert!(fetched_values(&resp).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_limit_exceeded() {
    let server =
        TestServer::start(ServerConfig { max_connections: 1, ..ServerConfig::default() }).await;
    let mut first = server.connect().await;
    assert!(matches!(call(&mut first, 1, &Request::ListTopics).await, Response::Topics { .. }));
    let mut second = server.connect().await;
    let (_, resp) = read_response(&mut second).await.expect("a refusal frame");
    assert!(matches!(resp, Response::Error { code: ErrorCode::LimitExceeded, .. }), "{resp:?}");
    expect_closed(&mut second).await;
    // Once the first leaves, a new connection is served (the permit is released).
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = server.connect().await;
        s.write_all(&frame(2, &Request::ListTopics)).await.unwrap();
        if let Some((2, Response::Topics { .. })) = read_response(&mut s).await {
            break;
        }
        assert!(Instant::now() < deadline, "a slot frees up after the first client leaves");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_when_a_token_is_configured() {
    let server = TestServer::start(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    // Anything before authenticating, or a wrong token: Unauthorized, then the server closes.
    let mut s = server.connect().await;
    let resp = call(&mut s, 1, &Request::ListTopics).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::Unauthorized, .. }), "{resp:?}");
    expect_closed(&mut s).await;
    let mut s = server.connect().await;
    let resp = call(&mut s, 2, &Request::Authenticate { token: "wrong".into() }).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::Unauthorized, .. }), "{resp:?}");
    expect_closed(&mut s).await;
    let mut s = server.connect().await;
    assert_eq!(
        call(&mut s, 3, &Request::Authenticate { token: "s3cret".into() }).await,
        Response::Ok
    );
    assert!(matches!(call(&mut s, 4, &Request::ListTopics).await, Response::Topics { .. }));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_trim_and_delete_over_the_wire() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    call(&mut s, 2, &append("t", 0, &["a", "b", "c", "d"])).await;
    let commit =
        Request::CommitOffset { group: "g".into(), topic: "t".into(), partition: 0, offset: 2 };
    assert_eq!(call(&mut s, 3, &commit).await, Response::Ok);
    let get = Request::FetchOffset { group: "g".into(), topic: "t".into(), partition: 0 };
    assert_eq!(call(&mut s, 4, &get).await, Response::Offset { offset: Some(2) });
    let other = Request::FetchOffset { group: "h".into(), topic: "t".into(), partition: 0 };
    assert_eq!(call(&mut s, 5, &other).await, Response::Offset { offset: None });
    let trim = Request::Trim { topic: "t".into(), partition: 0, before: 3 };
    assert_eq!(call(&mut s, 6, &trim).await, Response::Trimmed { log_start_offset: 3 });
    let resp = call(&mut s, 7, &fetch("t", 1, 0)).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::OffsetOutOfRange, .. }), "{resp:?}");
    let again = Request::CreateTopic {
        name: "t".into(),
        partitions: 1,
        if_not_exists: true,
        configs: vec![],
    };
    assert!(matches!(call(&mut s, 8, &again).await, Response::TopicCreated { .. }));
    let dup = Request::CreateTopic {
        name: "t".into(),
        partitions: 1,
        if_not_exists: false,
        configs: vec![],
    };
    let resp = call(&mut s, 9, &dup).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::TopicAlreadyExists, .. }));
    assert_eq!(call(&mut s, 10, &Request::DeleteTopic { name: "t".into() }).await, Response::Ok);
    let resp = call(&mut s, 11, &Request::Describe { topic: Some("t".into()) }).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::UnknownTopic, .. }), "{resp:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_fetches_and_closes_the_broker() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    s.write_all(&frame(7, &fetch("t", 0, 60_000))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let broker = server.broker.clone();
    let addr = server.addr;
    server.stop().await.unwrap();
    // The waiting fetch was answered (empty) rather than dropped.
    let (id, resp) = read_response(&mut s).await.expect("the in-flight fetch is answered");
    assert_eq!(id, 7);
    assert!(fetched_values(&resp).is_empty());
    expect_closed(&mut s).await;
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    let r =
        broker.append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"late")])).await;
    assert!(r.is_err(), "the broker is shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_bytes_are_the_bytes_on_disk() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    call(&mut s, 2, &append("t", 0, &["alpha", "beta", "gamma"])).await;
    let resp = call(&mut s, 3, &fetch("t", 0, 0)).await;
    let Response::Fetched { records, .. } = &resp else { panic!("{resp:?}") };
    let segment = std::fs::read(server._dir.path().join("t/0/00000000000000000000.log")).unwrap();
    assert!(
        segment.windows(records.len()).any(|w| w == &records[..]),
        "the fetched records appear verbatim in the segment file"
    );
    assert_eq!(fetched_values(&resp).len(), 3);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_get_distinct_contiguous_offsets() {
    // fsync=always (the default): concurrent appends share fsyncs and still get unique offsets.
    let server = TestServer::default().await;
    let mut admin = server.connect().await;
    create(&mut admin, "t", 1).await;
    let mut tasks = Vec::new();
    for c in 0..8u32 {
        let mut s = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            for i in 0..25u32 {
                let v = format!("c{c}-{i}");
                match call(&mut s, i, &append("t", 0, &[&v, &v])).await {
                    Response::Appended { first_offset, next_offset, .. } => {
                        assert_eq!(next_offset, first_offset + 2);
                        ranges.push(first_offset);
                    }
                    other => panic!("{other:?}"),
                }
            }
            ranges
        }));
    }
    let mut firsts = Vec::new();
    for t in tasks {
        firsts.extend(tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap());
    }
    firsts.sort();
    assert_eq!(firsts, (0..400).step_by(2).collect::<Vec<u64>>());
    // Replay: 400 records, offsets 0..400, each batch's two records adjacent.
    let mut got = Vec::new();
    while got.len() < 400 {
        let resp = call(&mut admin, 9, &fetch("t", got.len() as u64, 0)).await;
        let vals = fetched_values(&resp);
        assert!(!vals.is_empty());
        got.extend(vals);
    }
    assert!(got.iter().enumerate().all(|(i, (o, _))| *o == i as u64));
    assert!(got.chunks(2).all(|pair| pair[0].1 == pair[1].1));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_long_poll_frees_its_slot() {
    let server =
        TestServer::start(ServerConfig { max_connections: 1, ..ServerConfig::default() }).await;
    let mut s = server.connect().await;
    create(&mut s, "t", 1).await;
    // A 60 s long poll, then the client goes away.
    s.write_all(&frame(2, &fetch("t", 0, 60_000))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // The slot frees well before the 60 s wait would have ended.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut s = server.connect().await;
        s.write_all(&frame(3, &Request::ListTopics)).await.unwrap();
        if let Some((3, Response::Topics { .. })) = read_response(&mut s).await {
            break;
        }
        assert!(Instant::now() < deadline, "the long-polling connection was released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_behind_a_long_poll_are_answered_after_it_in_order() {
    let server = TestServer::default().await;
    let mut consumer = server.connect().await;
    let mut producer = server.connect().await;
    create(&mut producer, "t", 1).await;
    let mut batch = frame(10, &fetch("t", 0, 30_000));
    batch.extend_from_slice(&frame(11, &Request::ListTopics));
    consumer.write_all(&batch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    call(&mut producer, 2, &append("t", 0, &["first"])).await;
    let (id, resp) = read_response(&mut consumer).await.unwrap();
    assert_eq!((id, fetched_values(&resp)), (10, vec![(0, "first".to_string())]));
    let (id, resp) = read_response(&mut consumer).await.unwrap();
    assert_eq!((id, resp), (11, Response::Topics { names: vec!["t".into()] }));
    server.stop().await.unwrap();
}

fn fetch_from(partition: u32, offset: u64, max_bytes: u32) -> Request {
    Request::Fetch { topic: "t".into(), partition, offset, max_bytes, max_wait_ms: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continued_fetches_kept_in_flight_read_each_partition_in_order_exactly_once() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 2).await;
    // 1 KiB values so that 70 KiB fetches go out with sendfile; partition 1 gets fewer.
    let values: Vec<String> = (0..300).map(|i| format!("{i:05}{}", "v".repeat(1019))).collect();
    for chunk in values.chunks(50) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        call(&mut s, 2, &append("t", 0, &refs)).await;
    }
    let few: Vec<&str> = values[..30].iter().map(String::as_str).collect();
    call(&mut s, 3, &append("t", 1, &few)).await;
    // Everything in one write: per partition, one fetch from an offset and continuations
    // behind it, the two partitions interleaved; more continuations than there is data.
    let mut batch = BytesMut::new();
    let mut id = 100;
    for k in 0..8 {
        for partition in [0, 1] {
            let offset = if k == 0 { 0 } else { protocol::FETCH_CONTINUE };
            protocol::encode_request(&mut batch, id, &fetch_from(partition, offset, 70 * 1024));
            id += 1;
        }
    }
    s.write_all(&batch).await.unwrap();
    let mut got: [Vec<(u64, String)>; 2] = [Vec::new(), Vec::new()];
    for i in 0..16 {
        let (rid, resp) = read_response(&mut s).await.unwrap();
        assert_eq!(rid, 100 + i);
        got[(i % 2) as usize].extend(fetched_values(&resp));
    }
    let want = |n: usize| -> Vec<(u64, String)> {
        values[..n].iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect()
    };
    assert_eq!(got[0], want(300), "partition 0: every record once, in order");
    assert_eq!(got[1], want(30), "partition 1: every record once, in order");
    // A fetch from an explicit offset moves where the next continuation starts: even with a
    // one-byte budget it brings the whole batch holding that offset (0..50 here), and the
    // continuation goes on with the next batch.
    let resp = call(&mut s, 200, &fetch_from(0, 10, 1)).await;
    assert_eq!(fetched_values_from(&resp, 10), want(50)[10..].to_vec());
    let resp = call(&mut s, 201, &fetch_from(0, protocol::FETCH_CONTINUE, 1)).await;
    assert_eq!(fetched_values(&resp), want(100)[50..].to_vec());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_fetch_needs_an_earlier_fetch_of_that_partition_on_the_connection() {
    let server = TestServer::default().await;
    let mut s = server.connect().await;
    create(&mut s, "t", 2).await;
    call(&mut s, 2, &append("t", 0, &["a", "b"])).await;
    let resp = call(&mut s, 3, &fetch_from(0, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert!(
        matches!(&resp, Response::Error { code: ErrorCode::InvalidRequest, message }
            if message.contains("no earlier fetch of t/0")),
        "{resp:?}"
    );
    // A failed fetch sets no position either.
    let resp = call(&mut s, 4, &fetch_from(0, 99, 1 << 20)).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::OffsetOutOfRange, .. }), "{resp:?}");
    let resp = call(&mut s, 5, &fetch_from(0, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRequest, .. }), "{resp:?}");
    // Positions belong to a partition and a connection.
    call(&mut s, 6, &fetch_from(0, 0, 1 << 20)).await;
    let resp = call(&mut s, 7, &fetch_from(1, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRequest, .. }), "{resp:?}");
    let mut other = server.connect().await;
    let resp = call(&mut other, 8, &fetch_from(0, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert!(matches!(resp, Response::Error { code: ErrorCode::InvalidRequest, .. }), "{resp:?}");
    // Caught up: a continuation is empty, then sees what is appended later.
    let resp = call(&mut s, 9, &fetch_from(0, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert_eq!(fetched_values(&resp), Vec::<(u64, String)>::new());
    call(&mut s, 10, &append("t", 0, &["c"])).await;
    let resp = call(&mut s, 11, &fetch_from(0, protocol::FETCH_CONTINUE, 1 << 20)).await;
    assert_eq!(fetched_values(&resp), vec![(2, "c".to_string())]);
    server.stop().await.unwrap();
}
