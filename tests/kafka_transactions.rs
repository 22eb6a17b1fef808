//! Issue 12: transactions are out of scope, so a transactional producer must be refused at once
//! with an error every client treats as fatal, and the broker must log why. Raw InitProducerId and
//! FindCoordinator requests (hand-built with `kafka-protocol` types) go to the real binary; the
//! answer codes, messages and the broker's log are checked. Before, FindCoordinator(TRANSACTION)
//! got COORDINATOR_NOT_AVAILABLE, which clients retry until their own timeout.

mod common;

use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const CLIENT_ID: &str = "txn-test-client";
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
const REFUSED: i16 = 53;

/// A broker with its Kafka listener on, on a temporary data directory.
fn start() -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "never"]);
    (broker, dir)
}

fn connect(broker: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), CLIENT_ID)
}

fn message(m: &Option<StrBytes>) -> String {
    m.as_ref().map(|m| m.to_string()).unwrap_or_default()
}

#[test]
fn init_producer_id_with_a_transactional_id_is_refused_as_fatal_and_logged() {
    let (broker, _dir) = start();
    let mut c = connect(&broker);
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
    let (broker, _dir) = start();
    let mut c = connect(&broker);
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
    let (broker, _dir) = start();
    let mut c = connect(&broker);
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
