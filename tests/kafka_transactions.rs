//! Issue 12: transactions are out of scope, so a transactional producer must be refused at once
//! with an error every client treats as fatal, and the broker must log why. Raw InitProducerId and
//! FindCoordinator requests (hand-built with `kafka-protocol` types) go to the real binary; the
//! answer codes, messages and the broker's log are checked. Before, FindCoordinator(TRANSACTION)
//! got COORDINATOR_NOT_AVAILABLE, which clients retry until their own timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const BIN: &str = env!("CARGO_BIN_EXE_minikafka");
/// Generous: a debug build on a busy 2-core machine.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
const CLIENT_ID: &str = "txn-test-client";
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
const REFUSED: i16 = 53;

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("its address").port()
}

/// A broker process with its Kafka listener on and its log in a file, killed on drop.
struct KafkaBroker {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl KafkaBroker {
    fn start() -> KafkaBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("broker.log");
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let native = format!("127.0.0.1:{}", free_port());
            let mut child = Command::new(BIN)
                .args(["broker", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen", &native, "--kafka-listen", &addr, "--http-listen", "off"])
                .args(["--fsync", "never"])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the log file"))
                .spawn()
                .expect("spawn the broker");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if TcpStream::connect(&addr).is_ok() {
                    return KafkaBroker { child, addr, log, _dir: dir };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // most likely a port was taken: try others
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the broker did not start");
    }

    fn connect(&self) -> Conn {
        let s = TcpStream::connect(&self.addr).expect("connect to the Kafka listener");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Conn { s }
    }

    /// Waits (generously) for a log line holding every one of `parts`; returns it.
    fn log_line_with(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no log line with {parts:?}; the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

struct Conn {
    s: TcpStream,
}

impl Conn {
    fn call<T: Encodable, R: Decodable>(&mut self, key: ApiKey, v: i16, body: &T) -> R {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(11)
            .with_client_id(Some(s(CLIENT_ID)))
            .encode(&mut buf, key.request_header_version(v))
            .unwrap();
        body.encode(&mut buf, v).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.s.write_all(&frame).expect("send the request");

        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).expect("a response frame");
        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.s.read_exact(&mut body).expect("the response body");
        let mut b = Bytes::from(body);
        let header = ResponseHeader::decode(&mut b, key.response_header_version(v)).unwrap();
        assert_eq!(header.correlation_id, 11);
        R::decode(&mut b, v).expect("the response decodes")
    }
}

fn message(m: &Option<StrBytes>) -> String {
    m.as_ref().map(|m| m.to_string()).unwrap_or_default()
}

#[test]
fn init_producer_id_with_a_transactional_id_is_refused_as_fatal_and_logged() {
    let broker = KafkaBroker::start();
    let mut c = broker.connect();
    // v1 (classic encoding) and v4 (flexible): both the versions clients send.
    for v in [1, 4] {
        let txn_id = format!("orders-txn-v{v}");
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&txn_id))))
            .with_transaction_timeout_ms(60_000);
        let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, v, &req);
        assert_eq!(r.error_code, REFUSED, "v{v}: {r:?}");
        assert_eq!(r.producer_id.0, -1, "v{v}: no producer id is handed out");
        let line = broker.log_line_with(&["WARN", CLIENT_ID, &txn_id]);
        assert!(line.contains("transactions are not supported"), "{line}");
    }
    // An idempotent (non-transactional) producer still gets its id.
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(r.error_code, 0, "{r:?}");
    assert!(r.producer_id.0 > 0, "{r:?}");
}

#[test]
fn find_coordinator_for_a_transaction_is_refused_as_fatal_with_a_message() {
    let broker = KafkaBroker::start();
    let mut c = broker.connect();
    // v1 (the first with key_type, librdkafka's) and v3 (flexible): one key, top-level answer.
    for v in [1, 3] {
        let txn_id = format!("payments-txn-v{v}");
        let req = FindCoordinatorRequest::default().with_key(s(&txn_id)).with_key_type(1);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
        assert_eq!(r.error_code, REFUSED, "v{v}: {r:?}");
        assert!(message(&r.error_message).contains("transactions are not supported"), "{r:?}");
        assert_eq!(r.node_id.0, -1, "v{v}: no coordinator is named");
        broker.log_line_with(&["WARN", CLIENT_ID, &txn_id]);

        // A group coordinator is still found.
        let req = FindCoordinatorRequest::default().with_key(s("a-group")).with_key_type(0);
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
        assert_eq!(r.error_code, 0, "v{v}: {r:?}");
        assert_eq!(r.node_id.0, 0, "v{v}: {r:?}");
    }

    // v4 batches keys: every one is refused, each with the message.
    let keys = ["batched-a", "batched-b"];
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(keys.iter().map(|k| s(k)).collect());
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &req);
    assert_eq!(r.coordinators.len(), 2, "{r:?}");
    for (coordinator, key) in r.coordinators.iter().zip(keys) {
        assert_eq!(coordinator.key.as_str(), key);
        assert_eq!(coordinator.error_code, REFUSED, "{r:?}");
        assert_eq!(coordinator.node_id.0, -1, "{r:?}");
        assert!(
            message(&coordinator.error_message).contains("transactions are not supported"),
            "{r:?}"
        );
    }
    broker.log_line_with(&["WARN", CLIENT_ID, "batched-a", "batched-b"]);

    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s("group-a")]);
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &req);
    assert_eq!(r.coordinators[0].error_code, 0, "{r:?}");
    assert_eq!(r.coordinators[0].node_id.0, 0, "{r:?}");
}

#[test]
fn no_transaction_api_is_advertised() {
    let broker = KafkaBroker::start();
    let mut c = broker.connect();
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    let advertised: Vec<i16> = r.api_keys.iter().map(|k| k.api_key).collect();
    for key in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::WriteTxnMarkers,
        ApiKey::TxnOffsetCommit,
    ] {
        assert!(!advertised.contains(&(key as i16)), "{key:?} is advertised: {advertised:?}");
    }
    // What a transactional producer first needs is there, so it gets our refusal, not a
    // "broker too old" of its own.
    assert!(advertised.contains(&(ApiKey::FindCoordinator as i16)));
    assert!(advertised.contains(&(ApiKey::InitProducerId as i16)));
}
