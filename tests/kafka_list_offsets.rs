//! Issue 12: ListOffsets through the Kafka listener of the real binary, answered from the time
//! index: by timestamp (the first record at or after it, with its own timestamp) and
//! `MAX_TIMESTAMP` (-3, v7, KIP-734: the offset and timestamp of the first record holding the
//! largest timestamp), across segments and across a clean restart and a SIGKILL.

mod common;

use bytes::Bytes;
use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::record::{self, NewRecord};

/// ListOffsets' MAX_TIMESTAMP.
const MAX_TIMESTAMP: i64 = -3;
/// UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

fn connect(broker: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), "list-offsets")
}

/// One lz4 batch with these record timestamps.
fn batch(stamps: &[i64]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Lz4);
    for (i, &t) in stamps.iter().enumerate() {
        let v = format!("record at {t} ({i})");
        let r = NewRecord { timestamp_ms: t, key: None, value: Some(v.as_bytes()), headers: &[] };
        record::push_record(&mut b, &r).unwrap();
    }
    Bytes::from(b.build().unwrap())
}

/// Produce v7 (acks all) to partition 0 of `topic`; the base offset.
fn produce(c: &mut KafkaConn, topic: &str, records: Bytes) -> i64 {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(records)),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 7, &req);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    p.base_offset
}

/// ListOffsets at `version` for partition 0 of `topic`: (error code, offset, timestamp).
fn list(c: &mut KafkaConn, version: i16, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
        ]),
    ]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn list_offsets_by_timestamp_and_max_timestamp_come_from_the_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start_with_kafka(
        &dir.path().join("data"),
        &["--fsync", "always", "--segment-bytes", "300"],
    );
    common::ok(broker.cli(&["topic", "create", "ts", "--partitions", "1"]));
    let mut c = connect(&broker);
    assert_eq!(list(&mut c, 7, "ts", MAX_TIMESTAMP), (0, -1, -1), "nothing to answer yet");

    // Timestamps that go back and forth; the largest, 9000, first at offset 7 (and again at 14).
    let batches: [&[i64]; 6] = [
        &[1000, 1100, 1050],
        &[1200, 900],
        &[1300, 1400, 9000],
        &[1500, 1600],
        &[1700, 1800, 1900, 2000],
        &[9000, 2100, 2200],
    ];
    let mut model = Vec::new();
    for stamps in batches {
        let base = produce(&mut c, "ts", batch(stamps));
        assert_eq!(base, model.len() as i64);
        model.extend_from_slice(stamps);
    }
    let out = common::ok(broker.cli(&["topic", "describe", "ts", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let segments = v["partitions"][0]["segments"].as_u64().unwrap_or_else(|| panic!("{out}"));
    assert!(segments >= 3, "the records span {segments} segments");

    let check = |c: &mut KafkaConn| {
        assert_eq!(list(c, 7, "ts", MAX_TIMESTAMP), (0, 7, 9000));
        for ts in [0, 1000, 1001, 1150, 1250, 1450, 1999, 2150, 2200, 8999, 9000] {
            let (o, &t) = model.iter().enumerate().find(|&(_, &t)| t >= ts).unwrap();
            assert_eq!(list(c, 7, "ts", ts), (0, o as i64, t), "timestamp {ts}");
        }
        assert_eq!(list(c, 7, "ts", 9001), (0, -1, -1), "no record that new");
        // Before v7 a client cannot ask for the largest timestamp.
        assert_eq!(list(c, 1, "ts", MAX_TIMESTAMP).0, UNSUPPORTED_VERSION);
        assert_eq!(list(c, 7, "ts", -2), (0, 0, -1));
        assert_eq!(list(c, 7, "ts", -1), (0, model.len() as i64, -1));
    };
    check(&mut c);

    // Clean restart: the time indexes are loaded. Kill: the active segment's is rebuilt.
    assert!(broker.stop());
    broker.restart();
    let mut c = connect(&broker);
    check(&mut c);
    broker.kill();
    broker.restart();
    let mut c = connect(&broker);
    check(&mut c);

    // Records past the log start only: the first 9000 (offset 7) is gone, the second (14) counts.
    common::ok(broker.cli(&["topic", "trim", "ts", "--before", "10"]));
    assert_eq!(list(&mut c, 7, "ts", MAX_TIMESTAMP), (0, 14, 9000));
}
