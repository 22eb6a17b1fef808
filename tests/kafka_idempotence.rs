//! Issue 12: idempotent producers, for real, through the Kafka listener of the real binary. A
//! ProduceRequest built by hand (producer id from InitProducerId, epoch, base sequence) sent twice
//! gets the first offsets back and is stored once, also when the broker restarts (clean, and after
//! SIGKILL) between the two; a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER; producer ids are
//! never handed out twice across restarts.

mod common;

use bytes::Bytes;
use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::record::{self, NewRecord};

/// OUT_OF_ORDER_SEQUENCE_NUMBER.
const OUT_OF_ORDER: i16 = 45;

fn connect(broker: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), "idem-test")
}

fn producer_id(c: &mut KafkaConn) -> i64 {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
    assert_eq!(r.error_code, 0, "{r:?}");
    r.producer_id.0
}

/// One zstd batch of `n` records from `pid` (epoch 0) starting at sequence `seq`.
fn batch(pid: i64, seq: i32, n: i32) -> Bytes {
    let mut b = BatchBuilder::new(Compression::Zstd).producer(pid, 0, seq);
    for i in seq..seq + n {
        let v = format!("record {i}");
        record::push_record(&mut b, &NewRecord::value(v.as_bytes())).unwrap();
    }
    Bytes::from(b.build().unwrap())
}

/// Produce v7 (acks all) of `records` to partition 0 of `topic`: (error code, base offset).
fn produce(c: &mut KafkaConn, topic: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(records)),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 7, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Partition 0's next offset, as `topic describe --json` shows it.
fn high_watermark(broker: &BrokerProcess, topic: &str) -> u64 {
    let out = common::ok(broker.cli(&["topic", "describe", topic, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["partitions"][0]["next_offset"].as_u64().unwrap_or_else(|| panic!("{out}"))
}

#[test]
fn a_retried_produce_request_is_stored_once_across_restarts_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "always"]);
    common::ok(broker.cli(&["topic", "create", "idem", "--partitions", "1"]));
    let mut c = connect(&broker);
    let pid = producer_id(&mut c);
    assert_eq!(produce(&mut c, "idem", batch(pid, 0, 5)), (0, 0));
    assert_eq!(produce(&mut c, "idem", batch(pid, 5, 5)), (0, 5));
    // The same request again: the first offsets, nothing stored.
    assert_eq!(produce(&mut c, "idem", batch(pid, 5, 5)), (0, 5));
    assert_eq!(high_watermark(&broker, "idem"), 10);
    // A gap is refused and stores nothing.
    assert_eq!(produce(&mut c, "idem", batch(pid, 12, 1)).0, OUT_OF_ORDER);

    // A clean restart between the original and its retry.
    assert!(broker.stop());
    broker.restart();
    let mut c = connect(&broker);
    assert_eq!(produce(&mut c, "idem", batch(pid, 5, 5)), (0, 5));
    assert_eq!(produce(&mut c, "idem", batch(pid, 10, 3)), (0, 10));

    // SIGKILL right after an acknowledged batch: its retry is still recognised.
    broker.kill();
    broker.restart();
    let mut c = connect(&broker);
    assert_eq!(produce(&mut c, "idem", batch(pid, 10, 3)), (0, 10));
    assert_eq!(high_watermark(&broker, "idem"), 13);
    // Every record exactly once, in order, as a consumer reads them.
    let out = common::ok(broker.cli(&["consume", "idem", "--from-beginning"]));
    let want: Vec<String> = (0..13).map(|i| format!("record {i}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);

    // Producer ids are never handed out again, even after a kill.
    let again = producer_id(&mut c);
    assert!(again > pid, "{again} after {pid}");
    broker.kill();
    broker.restart();
    let mut c = connect(&broker);
    assert!(producer_id(&mut c) > again);
}
