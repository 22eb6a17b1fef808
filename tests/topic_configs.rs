//! Per-topic configs, topic ids and added partitions through the broker API: what an admin sets
//! is validated, described with its source, applied to the live logs and kept across restarts;
//! a data directory of an earlier release opens and gets stable topic ids; an add of partitions
//! interrupted by a crash leaves the topic with its old count. The logs honour the configs: a
//! compact-only topic is never deleted by retention, a LogAppendTime topic stamps batches (and
//! the Kafka Produce response says when).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use minikafka::broker::topic_config::{ConfigOp, ConfigSource, TopicConfigs};
use minikafka::broker::{AppendBatch, Broker, BrokerConfig, BrokerError, format_topic_id};
use minikafka::record::NewRecord;
use minikafka::storage::{LogConfig, StorageError};

use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        // A broker flag, so describe shows a Broker source for segment.bytes.
        log: LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() },
        max_partitions: 8,
        ..BrokerConfig::default()
    }
}

fn open(dir: &Path) -> Arc<Broker> {
    Broker::open(config(dir)).unwrap()
}

fn restart(b: Arc<Broker>, dir: &Path) -> Arc<Broker> {
    b.shutdown().unwrap();
    drop(b);
    open(dir)
}

fn configs(pairs: &[(&str, &str)]) -> TopicConfigs {
    let pairs: Vec<(String, Option<String>)> =
        pairs.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect();
    TopicConfigs::parse(&pairs).unwrap()
}

fn set(name: &str, value: &str) -> ConfigOp {
    ConfigOp::Set(name.into(), value.into())
}

/// (value, source) of `name` in the topic's described configs.
fn described(b: &Broker, topic: &str, name: &str) -> (String, ConfigSource) {
    let entries = b.describe_topic_configs(topic).unwrap();
    let e = entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} missing"));
    (e.value.clone().unwrap(), e.source)
}

fn invalid_config(e: BrokerError) -> (String, String) {
    match e {
        BrokerError::InvalidConfig { name, reason } => (name, reason),
        other => panic!("expected InvalidConfig, got {other}"),
    }
}

async fn append(b: &Broker, topic: &str, partition: u32, value: &[u8]) -> Result<u64, BrokerError> {
    let records = [NewRecord::value(value)];
    let r = b.append(topic, Some(partition), None, AppendBatch::Records(&records)).await?;
    Ok(r.offsets.first)
}

/// Appends one record with `key` (compacted topics refuse records without one).
async fn append_keyed(
    b: &Broker,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> Result<u64, BrokerError> {
    let records = [NewRecord { key: Some(key), ..NewRecord::value(value) }];
    let r = b.append(topic, Some(0), None, AppendBatch::Records(&records)).await?;
    Ok(r.offsets.first)
}

#[test]
fn a_topic_created_with_configs_describes_them_and_keeps_them_and_its_id_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let cfg = configs(&[("cleanup.policy", "compact"), ("retention.ms", "3600000")]);
    let d = b.create_topic("orders", 2, cfg, false).unwrap();
    assert_ne!(d.topic_id, [0; 16]);
    assert_eq!(
        d.configs,
        vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "3600000".to_string())
        ]
    );
    assert_eq!(b.topic_id("orders").unwrap(), d.topic_id);
    assert_eq!(b.topic_by_id(d.topic_id).as_deref(), Some("orders"));

    // Every known name is described, with where its value comes from.
    assert_eq!(described(&b, "orders", "cleanup.policy"), ("compact".into(), ConfigSource::Topic));
    assert_eq!(described(&b, "orders", "segment.bytes"), ("1048576".into(), ConfigSource::Broker));
    assert_eq!(described(&b, "orders", "retention.bytes"), ("-1".into(), ConfigSource::Default));
    assert_eq!(b.describe_topic_configs("orders").unwrap().len(), 12);
    let broker = b.describe_broker_configs();
    let seg = broker.iter().find(|e| e.name == "log.segment.bytes").unwrap();
    assert_eq!((seg.value.as_deref(), seg.source), (Some("1048576"), ConfigSource::Broker));

    let b = restart(b, dir.path());
    let again = b.describe_topic("orders").unwrap();
    assert_eq!(again.topic_id, d.topic_id);
    assert_eq!(again.configs, d.configs);
    assert_eq!(described(&b, "orders", "retention.ms"), ("3600000".into(), ConfigSource::Topic));
}

#[test]
fn invalid_configs_are_refused_naming_the_config_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        log: LogConfig {
            compaction: minikafka::storage::CompactionConfig {
                max_compaction_lag_ms: 1000,
                ..Default::default()
            },
            ..LogConfig::default()
        },
        ..config(dir.path())
    })
    .unwrap();
    // A value Kafka would refuse never becomes a TopicConfigs.
    let bad = [("retention.ms".to_string(), Some("soon".to_string()))];
    let (name, reason) = invalid_config(TopicConfigs::parse(&bad).unwrap_err());
    assert_eq!(name, "retention.ms");
    assert!(reason.contains("not a whole number"), "{reason}");
    let unknown = [("retention.mins".to_string(), Some("5".to_string()))];
    assert_eq!(invalid_config(TopicConfigs::parse(&unknown).unwrap_err()).0, "retention.mins");

    // A set value that conflicts with the broker's default: create refuses, creates nothing.
    let cfg = configs(&[("min.compaction.lag.ms", "5000")]);
    let (name, reason) = invalid_config(b.create_topic("t", 1, cfg, false).unwrap_err());
    assert_eq!(name, "min.compaction.lag.ms");
    assert!(reason.contains("greater than max.compaction.lag.ms 1000"), "{reason}");
    assert!(b.list_topics().is_empty());
    assert!(!dir.path().join("t").exists());

    // validate_only checks and creates nothing.
    let d = b.create_topic("t", 3, configs(&[("retention.ms", "10")]), true).unwrap();
    assert_eq!(d.partitions.len(), 3);
    assert!(b.list_topics().is_empty());
    assert!(!dir.path().join("t").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_configs_apply_to_the_live_logs_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    append(&b, "t", 0, &[b'x'; 500]).await.unwrap();

    // A batch over the new max.message.bytes is refused at once: the live log has it.
    b.alter_topic_configs("t", &[set("max.message.bytes", "200")], false, false).unwrap();
    let err = append(&b, "t", 0, &[b'x'; 500]).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::Storage { source: StorageError::RecordTooLarge { .. }, .. }),
        "{err}"
    );

    // One bad op fails the whole alter and changes nothing.
    let ops = [set("retention.ms", "1000"), set("segment.ms", "0")];
    let (name, _) = invalid_config(b.alter_topic_configs("t", &ops, false, false).unwrap_err());
    assert_eq!(name, "segment.ms");
    assert_eq!(described(&b, "t", "retention.ms").1, ConfigSource::Default);
    // validate_only changes nothing either.
    b.alter_topic_configs("t", &[set("retention.ms", "1000")], false, true).unwrap();
    assert_eq!(described(&b, "t", "retention.ms").1, ConfigSource::Default);

    // Incremental ops, a list append on cleanup.policy.
    let ops =
        [set("retention.ms", "1000"), ConfigOp::Append("cleanup.policy".into(), "compact".into())];
    b.alter_topic_configs("t", &ops, false, false).unwrap();
    assert_eq!(described(&b, "t", "cleanup.policy").0, "compact,delete");

    let b = restart(b, dir.path());
    assert_eq!(described(&b, "t", "retention.ms"), ("1000".into(), ConfigSource::Topic));
    assert_eq!(described(&b, "t", "max.message.bytes"), ("200".into(), ConfigSource::Topic));
    assert!(append(&b, "t", 0, &[b'x'; 500]).await.is_err(), "the reopened log keeps the limit");

    // AlterConfigs (replace_all): what is not set returns to the default.
    b.alter_topic_configs("t", &[set("segment.ms", "60000")], true, false).unwrap();
    let d = b.describe_topic("t").unwrap();
    assert_eq!(d.configs, vec![("segment.ms".to_string(), "60000".to_string())]);
    assert_eq!(append(&b, "t", 0, &[b'x'; 500]).await.unwrap(), 1);
    assert!(b.alter_topic_configs("nope", &[], false, false).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_take_appends_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let d = b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    append(&b, "t", 0, b"old").await.unwrap();

    assert!(matches!(
        b.add_partitions("t", 1, false),
        Err(BrokerError::PartitionCountNotIncreased { current: 1, requested: 1, .. })
    ));
    assert!(matches!(b.add_partitions("t", 9, false), Err(BrokerError::TooManyPartitions { .. })));
    b.add_partitions("t", 3, true).unwrap();
    assert_eq!(b.partition_count("t").unwrap(), 1, "validate_only adds nothing");

    b.add_partitions("t", 3, false).unwrap();
    assert_eq!(b.partition_count("t").unwrap(), 3);
    assert_eq!(append(&b, "t", 2, b"new").await.unwrap(), 0);

    let b = restart(b, dir.path());
    let after = b.describe_topic("t").unwrap();
    assert_eq!(after.partitions.len(), 3);
    assert!(after.partitions.iter().all(|p| p.offline.is_none()));
    assert_eq!(after.partitions[0].next_offset, 1);
    assert_eq!(after.partitions[2].next_offset, 1);
    assert_eq!(after.topic_id, d.topic_id);
    let fetched = b.fetch("t", 2, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
    assert!(!fetched.records.is_empty());
}

#[test]
fn an_add_interrupted_before_topic_json_leaves_the_old_count() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 2, TopicConfigs::default(), false).unwrap();
    b.shutdown().unwrap();
    drop(b);
    // A crash after the new partition directories were made, before topic.json got the count.
    std::fs::create_dir(dir.path().join("t/2")).unwrap();
    std::fs::create_dir(dir.path().join("t/3")).unwrap();

    let b = open(dir.path());
    let d = b.describe_topic("t").unwrap();
    assert_eq!(d.offline, None);
    assert_eq!(d.partitions.len(), 2);
    assert!(!dir.path().join("t/2").exists() && !dir.path().join("t/3").exists());
    // The add can be made again.
    b.add_partitions("t", 4, false).unwrap();
    let b = restart(b, dir.path());
    assert_eq!(b.partition_count("t").unwrap(), 4);
}

#[test]
fn a_topic_json_of_an_earlier_release_gets_an_id_that_stays() {
    let dir = tempfile::tempdir().unwrap();
    // The data directory as the previous release wrote it.
    let t = dir.path().join("legacy");
    std::fs::create_dir_all(t.join("0")).unwrap();
    std::fs::create_dir_all(t.join("1")).unwrap();
    std::fs::write(t.join("topic.json"), b"{\n  \"partitions\": 2\n}").unwrap();

    let b = open(dir.path());
    let d = b.describe_topic("legacy").unwrap();
    assert_eq!(d.offline, None);
    assert_eq!(d.partitions.len(), 2);
    assert_ne!(d.topic_id, [0; 16]);
    assert!(d.configs.is_empty());
    let written = std::fs::read_to_string(t.join("topic.json")).unwrap();
    assert!(written.contains(&format_topic_id(&d.topic_id)), "{written}");

    let b = restart(b, dir.path());
    assert_eq!(b.topic_id("legacy").unwrap(), d.topic_id);
    assert_eq!(b.topic_by_id(d.topic_id).as_deref(), Some("legacy"));
}

#[test]
fn a_re_created_topic_gets_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let first = b.create_topic("t", 1, TopicConfigs::default(), false).unwrap().topic_id;
    b.delete_topic("t").unwrap();
    assert_eq!(b.topic_by_id(first), None);
    let second = b.create_topic("t", 1, TopicConfigs::default(), false).unwrap().topic_id;
    assert_ne!(first, second);
    assert_eq!(b.topic_by_id(second).as_deref(), Some("t"));
    // The id's text form is a UUID v4.
    let text = format_topic_id(&second);
    assert_eq!(text.len(), 36);
    assert_eq!(&text[14..15], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_refuses_records_without_a_key_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("state", 1, configs(&[("cleanup.policy", "compact,delete")]), false).unwrap();
    let err = append(&b, "state", 0, b"no key").await.unwrap_err();
    assert!(err.to_string().contains("a record without a key"), "{err}");
    assert_eq!(b.describe_topic("state").unwrap().partitions[0].next_offset, 0, "nothing written");
    assert_eq!(append_keyed(&b, "state", b"k", b"v").await.unwrap(), 0);

    // Once the topic no longer compacts, keyless records are welcome again.
    b.alter_topic_configs("state", &[set("cleanup.policy", "delete")], false, false).unwrap();
    assert_eq!(append(&b, "state", 0, b"no key").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_only_topic_keeps_its_data_when_retention_runs() {
    let dir = tempfile::tempdir().unwrap();
    // The broker's flags delete anything older than 1 ms or past 1 byte.
    let b = Broker::open(BrokerConfig {
        log: LogConfig {
            segment_bytes: 256,
            retention_ms: Some(1),
            retention_bytes: Some(1),
            ..LogConfig::default()
        },
        ..config(dir.path())
    })
    .unwrap();
    b.create_topic("state", 1, configs(&[("cleanup.policy", "compact")]), false).unwrap();
    b.create_topic("events", 1, TopicConfigs::default(), false).unwrap();
    for i in 0..10u8 {
        append_keyed(&b, "state", &[i % 3], &[i; 100]).await.unwrap();
        append(&b, "events", 0, &[i; 100]).await.unwrap();
    }
    let removed = b.enforce_retention();
    assert!(removed > 0, "the delete topic lost its old segments");
    let state = &b.describe_topic("state").unwrap().partitions[0];
    assert_eq!(state.log_start_offset, 0, "the compact-only topic lost nothing");
    assert!(b.describe_topic("events").unwrap().partitions[0].log_start_offset > 0);

    // Switching it to delete (on the live topic) lets retention apply.
    b.alter_topic_configs("state", &[set("cleanup.policy", "delete")], false, false).unwrap();
    b.enforce_retention();
    assert!(b.describe_topic("state").unwrap().partitions[0].log_start_offset > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_append_time_topic_stamps_appends_with_the_broker_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let records = [NewRecord { timestamp_ms: 42, ..NewRecord::value(b"v") }];
    let r = b.append("t", Some(0), None, AppendBatch::Records(&records)).await.unwrap();
    assert_eq!(r.log_append_time_ms, None, "CreateTime keeps the producer's time");

    b.alter_topic_configs("t", &[set("message.timestamp.type", "LogAppendTime")], false, false)
        .unwrap();
    let before = minikafka::record::now_ms();
    let r = b.append("t", Some(0), None, AppendBatch::Records(&records)).await.unwrap();
    let stamped = r.log_append_time_ms.expect("the append time");
    assert!(stamped >= before);
    let fetched = b.fetch("t", 0, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
    let times: Vec<i64> = fetched.records.records().map(|r| r.unwrap().timestamp_ms).collect();
    assert_eq!(times, [42, stamped]);
}

/// Produce v7 of one record to partition 0 of `topic`: its log_append_time_ms.
fn produce_append_time(c: &mut KafkaConn, topic: &str) -> i64 {
    let records = [NewRecord { timestamp_ms: 42, ..NewRecord::value(b"v") }];
    let batch =
        minikafka::record::build_batch(&records, minikafka::batch::Compression::None).unwrap();
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes::Bytes::from(batch))),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 7, &req);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    p.log_append_time_ms
}

#[test]
fn the_kafka_produce_response_carries_the_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b =
        Broker::open(BrokerConfig { data_dir: data.clone(), ..BrokerConfig::default() }).unwrap();
    let stamped = configs(&[("message.timestamp.type", "LogAppendTime")]);
    b.create_topic("stamped", 1, stamped, false).unwrap();
    b.create_topic("plain", 1, TopicConfigs::default(), false).unwrap();
    b.shutdown().unwrap();
    drop(b);

    let broker = BrokerProcess::start_with_kafka(&data, &[]);
    let mut c = KafkaConn::connect(broker.kafka_addr.as_deref().unwrap(), "configs");
    let before = minikafka::record::now_ms();
    assert!(produce_append_time(&mut c, "stamped") >= before);
    assert_eq!(produce_append_time(&mut c, "plain"), -1);
}

#[test]
fn a_topic_json_with_a_bad_config_or_id_takes_only_that_topic_offline() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("good", 1, TopicConfigs::default(), false).unwrap();
    b.shutdown().unwrap();
    drop(b);
    for (name, json) in [
        ("badconfig", r#"{"partitions": 1, "configs": {"retention.ms": "soon"}}"#),
        ("unknown", r#"{"partitions": 1, "configs": {"colour": "blue"}}"#),
        ("badid", r#"{"partitions": 1, "topic_id": "not-a-uuid"}"#),
    ] {
        std::fs::create_dir_all(dir.path().join(name).join("0")).unwrap();
        std::fs::write(dir.path().join(name).join("topic.json"), json).unwrap();
    }
    let b = open(dir.path());
    assert_eq!(b.describe_topic("good").unwrap().offline, None);
    for (name, why) in [("badconfig", "retention.ms"), ("unknown", "colour"), ("badid", "UUID")] {
        let reason = b.describe_topic(name).unwrap().offline.expect("offline");
        assert!(reason.contains("topic.json") && reason.contains(why), "{name}: {reason}");
        assert!(matches!(b.topic_id(name), Err(BrokerError::TopicOffline { .. })));
    }
}
