//! Issue 13: the admin APIs Kafka tools call, through the Kafka listener of the real binary, each
//! asserting what an admin client sees: CreateTopics with configs, DescribeConfigs (with each
//! value's source), AlterConfigs and IncrementalAlterConfigs, CreatePartitions, DeleteRecords and
//! DescribeCluster.

mod common;

use bytes::Bytes;
use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::record::{self, NewRecord};

/// Kafka's error codes, as a client sees them.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

/// DescribeConfigs resource types and config sources.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The broker's flags: `--retention-ms` makes retention.ms a static broker config.
const FLAGS: &[&str] = &["--fsync", "always", "--retention-ms", "3600000"];

fn start() -> (tempfile::TempDir, BrokerProcess, KafkaConn) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), FLAGS);
    let c = KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), "admin");
    (dir, broker, c)
}

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(s(name).into())
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v)))
                })
                .collect(),
        )
}

fn create(
    c: &mut KafkaConn,
    v: i16,
    t: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(5000)
        .with_validate_only(validate_only);
    let mut r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req);
    r.topics.remove(0)
}

/// Metadata v9 for one topic: (error code, partition count).
fn metadata(c: &mut KafkaConn, name: &str) -> (i16, usize) {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(s(name).into())),
    ]));
    let r: MetadataResponse = c.call(ApiKey::Metadata, 9, &req);
    (r.topics[0].error_code, r.topics[0].partitions.len())
}

fn describe(
    c: &mut KafkaConn,
    v: i16,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> DescribeConfigsResult {
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect())),
        ])
        .with_include_synonyms(v >= 1)
        .with_include_documentation(v >= 3);
    let mut r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req);
    r.results.remove(0)
}

/// A topic's config as DescribeConfigs v4 shows it: (value, source).
fn config(c: &mut KafkaConn, topic: &str, name: &str) -> (String, i8) {
    let r = describe(c, 4, TOPIC, topic, Some(&[name]));
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.configs.len(), 1, "{r:?}");
    let e = &r.configs[0];
    (e.value.as_deref().unwrap_or("<null>").to_string(), e.config_source)
}

fn incremental(
    c: &mut KafkaConn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let req = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    ops.iter()
                        .map(|(k, op, v)| {
                            AlterableConfig::default()
                                .with_name(s(k))
                                .with_config_operation(*op)
                                .with_value(v.map(s))
                        })
                        .collect(),
                ),
        ])
        .with_validate_only(validate_only);
    let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, 1, &req);
    let res = &r.responses[0];
    (res.error_code, res.error_message.as_deref().unwrap_or("").to_string())
}

fn alter(
    c: &mut KafkaConn,
    resource_type: i8,
    name: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> (i16, String) {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let req = AlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default().with_name(s(k)).with_value(Some(s(v)))
                        })
                        .collect(),
                ),
        ])
        .with_validate_only(validate_only);
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, &req);
    let res = &r.responses[0];
    (res.error_code, res.error_message.as_deref().unwrap_or("").to_string())
}

/// One uncompressed batch of these values.
fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        let r =
            NewRecord { timestamp_ms: 1_000, key: None, value: Some(v.as_bytes()), headers: &[] };
        record::push_record(&mut b, &r).unwrap();
    }
    Bytes::from(b.build().unwrap())
}

/// Produce v7 (acks all); (error code, base offset).
fn produce(c: &mut KafkaConn, topic: &str, partition: i32, values: &[&str]) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(s(topic).into()).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(batch(values))),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 7, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetch v11 of one partition from `offset`: (error code, high watermark, log start, bytes).
fn fetch(c: &mut KafkaConn, topic: &str, partition: i32, offset: i64) -> (i16, i64, i64, usize) {
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default().with_topic(s(topic).into()).with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &req);
    let p = &r.responses[0].partitions[0];
    let bytes = p.records.as_ref().map_or(0, |b| b.len());
    (p.error_code, p.high_watermark, p.log_start_offset, bytes)
}

/// ListOffsets v7 of one partition: (error code, offset).
fn list_offset(c: &mut KafkaConn, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    let req = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![
        ListOffsetsTopic::default().with_name(s(topic).into()).with_partitions(vec![
            ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp),
        ]),
    ]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[test]
fn create_topics_with_configs_then_describe_configs_shows_each_value_and_its_source() {
    let (_dir, _broker, mut c) = start();
    let created = create(
        &mut c,
        7,
        topic("orders", 3, &[("cleanup.policy", "compact"), ("segment.bytes", "1048576")]),
        false,
    );
    assert_eq!(created.error_code, 0, "{created:?}");
    // v5+: the counts and every config of the new topic; v7: its id.
    assert_eq!((created.num_partitions, created.replication_factor), (3, 1));
    let configs = created.configs.as_ref().expect("v5+ returns the configs");
    let policy = configs.iter().find(|e| e.name.as_str() == "cleanup.policy").unwrap();
    assert_eq!((policy.value.as_deref(), policy.config_source), (Some("compact"), SOURCE_TOPIC));
    assert!(configs.iter().any(|e| e.name.as_str() == "min.insync.replicas"), "{configs:?}");
    assert!(!created.topic_id.is_nil());
    assert_eq!(metadata(&mut c, "orders"), (0, 3));

    // The values set on the topic, the broker's flags and the defaults, each with its source.
    assert_eq!(config(&mut c, "orders", "cleanup.policy"), ("compact".into(), SOURCE_TOPIC));
    assert_eq!(config(&mut c, "orders", "segment.bytes"), ("1048576".into(), SOURCE_TOPIC));
    assert_eq!(config(&mut c, "orders", "retention.ms"), ("3600000".into(), SOURCE_STATIC_BROKER));
    assert_eq!(
        config(&mut c, "orders", "delete.retention.ms"),
        ("86400000".into(), SOURCE_DEFAULT)
    );

    // All of them when no key is named, with synonyms, types and documentation (v4).
    let all = describe(&mut c, 4, TOPIC, "orders", None);
    assert_eq!(all.error_code, 0);
    let names: Vec<&str> = all.configs.iter().map(|e| e.name.as_str()).collect();
    for name in [
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "max.message.bytes",
        "message.timestamp.type",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "delete.retention.ms",
        "min.cleanable.dirty.ratio",
        "min.insync.replicas",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let policy = all.configs.iter().find(|e| e.name.as_str() == "cleanup.policy").unwrap();
    assert!(!policy.read_only && !policy.is_sensitive);
    assert_eq!(policy.config_type, 7, "LIST");
    assert!(policy.documentation.is_some());
    // The topic's value first, then the broker config it overrides.
    assert_eq!(policy.synonyms[0].source, SOURCE_TOPIC);
    assert!(policy.synonyms.iter().any(|s| s.name.as_str() == "log.cleanup.policy"), "{policy:?}");
    let retention = all.configs.iter().find(|e| e.name.as_str() == "retention.ms").unwrap();
    assert_eq!(retention.config_type, 5, "LONG");
    assert!(
        retention
            .synonyms
            .iter()
            .any(|s| s.source == SOURCE_STATIC_BROKER && s.value.as_deref() == Some("3600000")),
        "{retention:?}"
    );

    // v1 (librdkafka 2.0 sends it): the same values, no types.
    let v1 = describe(&mut c, 1, TOPIC, "orders", Some(&["cleanup.policy"]));
    assert_eq!(v1.configs.len(), 1);
    assert_eq!(v1.configs[0].value.as_deref(), Some("compact"));
    assert_eq!(v1.configs[0].config_source, SOURCE_TOPIC);
    // v0, as sarama before 1.23 sends it (its ListTopics describes every topic): is_default
    // where v1 has the source (the test's decoder reads is_default=true as SOURCE_DEFAULT), no
    // synonyms.
    let v0 = describe(&mut c, 0, TOPIC, "orders", Some(&["cleanup.policy", "delete.retention.ms"]));
    assert_eq!(v0.error_code, 0, "{v0:?}");
    let by_name = |n: &str| v0.configs.iter().find(|e| e.name.as_str() == n).unwrap().clone();
    let policy = by_name("cleanup.policy");
    assert_eq!((policy.value.as_deref(), policy.config_source), (Some("compact"), -1));
    assert!(policy.synonyms.is_empty());
    assert_eq!(by_name("delete.retention.ms").config_source, SOURCE_DEFAULT);

    // An unknown topic is an error of its resource alone.
    let missing = describe(&mut c, 4, TOPIC, "no-such-topic", None);
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(missing.configs.is_empty());

    // The broker resource: its flags, read-only, and which one came from the command line.
    let b = describe(&mut c, 4, BROKER, "0", None);
    assert_eq!(b.error_code, 0, "{b:?}");
    assert!(!b.configs.is_empty());
    assert!(b.configs.iter().all(|e| e.read_only), "{b:?}");
    assert!(b.configs.iter().all(|e| e.config_type != 0), "every type known: {b:?}");
    let flag = b.configs.iter().find(|e| e.name.as_str() == "log.retention.ms").unwrap();
    assert_eq!(
        (flag.value.as_deref(), flag.config_source),
        (Some("3600000"), SOURCE_STATIC_BROKER)
    );
    assert_eq!(describe(&mut c, 4, BROKER, "7", None).error_code, INVALID_REQUEST);
}

#[test]
fn create_topics_refuses_invalid_configs_and_replication_and_creates_nothing() {
    let (_dir, _broker, mut c) = start();
    for (name, value) in
        [("cleanup.policy", "nonsense"), ("no.such.config", "1"), ("retention.ms", "soon")]
    {
        let r = create(&mut c, 5, topic("bad", 1, &[(name, value)]), false);
        assert_eq!(r.error_code, INVALID_CONFIG, "{name}={value}: {r:?}");
        let message = r.error_message.as_deref().unwrap_or("");
        assert!(message.contains(name), "the message names {name}: {message}");
        assert_eq!(metadata(&mut c, "bad").0, UNKNOWN_TOPIC_OR_PARTITION, "nothing created");
    }

    let r = create(&mut c, 5, topic("bad", 1, &[]).with_replication_factor(3), false);
    assert_eq!(r.error_code, INVALID_REPLICATION_FACTOR);
    assert!(r.error_message.as_deref().unwrap().contains("replication factor 3"), "{r:?}");
    assert_eq!(metadata(&mut c, "bad").0, UNKNOWN_TOPIC_OR_PARTITION);

    // Manual assignment: only this broker (0) can hold a replica.
    let assign = |replicas: &[i32]| {
        topic("assigned", -1, &[]).with_assignments(vec![
            CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(replicas.iter().map(|&b| b.into()).collect()),
        ])
    };
    assert_eq!(create(&mut c, 5, assign(&[1]), false).error_code, INVALID_REPLICA_ASSIGNMENT);
    assert_eq!(metadata(&mut c, "assigned").0, UNKNOWN_TOPIC_OR_PARTITION);
    let r = create(&mut c, 5, assign(&[0]), false);
    assert_eq!((r.error_code, r.num_partitions), (0, 1), "{r:?}");
    assert_eq!(metadata(&mut c, "assigned"), (0, 1));

    // validate_only: the answer a creation would get, and no topic.
    let r = create(&mut c, 7, topic("dry", 2, &[("cleanup.policy", "compact")]), true);
    assert_eq!((r.error_code, r.num_partitions, r.replication_factor), (0, 2, 1), "{r:?}");
    assert_eq!(metadata(&mut c, "dry").0, UNKNOWN_TOPIC_OR_PARTITION);
    let r = create(&mut c, 7, topic("dry", 2, &[("cleanup.policy", "nonsense")]), true);
    assert_eq!(r.error_code, INVALID_CONFIG);
}

#[test]
fn alter_configs_and_incremental_alter_configs_change_what_describe_shows() {
    let (_dir, _broker, mut c) = start();
    let created = create(&mut c, 5, topic("events", 1, &[("retention.ms", "1000")]), false);
    assert_eq!(created.error_code, 0, "{created:?}");

    // AlterConfigs replaces the whole set: retention.ms goes back to the broker's flag.
    assert_eq!(alter(&mut c, TOPIC, "events", &[("cleanup.policy", "compact")], false).0, 0);
    assert_eq!(config(&mut c, "events", "cleanup.policy"), ("compact".into(), SOURCE_TOPIC));
    assert_eq!(config(&mut c, "events", "retention.ms"), ("3600000".into(), SOURCE_STATIC_BROKER));

    // IncrementalAlterConfigs changes only what it names.
    let ops = [("cleanup.policy", APPEND, Some("delete")), ("retention.ms", SET, Some("5000"))];
    assert_eq!(incremental(&mut c, TOPIC, "events", &ops, false).0, 0);
    assert_eq!(config(&mut c, "events", "cleanup.policy"), ("compact,delete".into(), SOURCE_TOPIC));
    assert_eq!(config(&mut c, "events", "retention.ms"), ("5000".into(), SOURCE_TOPIC));
    let ops = [("cleanup.policy", SUBTRACT, Some("compact"))];
    assert_eq!(incremental(&mut c, TOPIC, "events", &ops, false).0, 0);
    assert_eq!(config(&mut c, "events", "cleanup.policy"), ("delete".into(), SOURCE_TOPIC));
    assert_eq!(
        incremental(&mut c, TOPIC, "events", &[("cleanup.policy", DELETE, None)], false).0,
        0
    );
    assert_eq!(config(&mut c, "events", "cleanup.policy"), ("delete".into(), SOURCE_DEFAULT));
    assert_eq!(config(&mut c, "events", "retention.ms"), ("5000".into(), SOURCE_TOPIC));

    // validate_only answers as the change would, and changes nothing.
    let ops = [("cleanup.policy", SET, Some("compact"))];
    assert_eq!(incremental(&mut c, TOPIC, "events", &ops, true).0, 0);
    assert_eq!(alter(&mut c, TOPIC, "events", &[("segment.ms", "60000")], true).0, 0);
    assert_eq!(config(&mut c, "events", "cleanup.policy"), ("delete".into(), SOURCE_DEFAULT));
    assert_eq!(config(&mut c, "events", "retention.ms"), ("5000".into(), SOURCE_TOPIC));
    assert_eq!(config(&mut c, "events", "segment.ms").1, SOURCE_DEFAULT);

    // An unknown name or a bad value: INVALID_CONFIG saying which and why, and no change.
    for (name, value) in [("cleanup.policy", "nonsense"), ("no.such.config", "1")] {
        let (code, message) =
            incremental(&mut c, TOPIC, "events", &[(name, SET, Some(value))], false);
        assert_eq!(code, INVALID_CONFIG, "{name}={value}: {message}");
        assert!(message.contains(name), "{message}");
        let (code, message) = alter(&mut c, TOPIC, "events", &[(name, value)], false);
        assert_eq!(code, INVALID_CONFIG, "{name}={value}: {message}");
        assert!(message.contains(name), "{message}");
    }
    assert_eq!(config(&mut c, "events", "retention.ms"), ("5000".into(), SOURCE_TOPIC));
    let (code, _) =
        incremental(&mut c, TOPIC, "missing", &[("retention.ms", SET, Some("1"))], false);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);

    // The broker's configs are its command-line flags: never altered.
    let (code, message) = alter(&mut c, BROKER, "0", &[("log.retention.ms", "1")], false);
    assert_eq!(code, INVALID_REQUEST, "{message}");
    assert!(message.contains("log.retention.ms"), "{message}");
    let ops = [("log.retention.ms", SET, Some("1"))];
    assert_eq!(incremental(&mut c, BROKER, "0", &ops, false).0, INVALID_REQUEST);
    let b = describe(&mut c, 4, BROKER, "0", Some(&["log.retention.ms"]));
    assert_eq!(b.configs[0].value.as_deref(), Some("3600000"));
}

#[test]
fn create_partitions_grows_a_topic_and_the_new_partitions_take_records() {
    let (_dir, _broker, mut c) = start();
    assert_eq!(create(&mut c, 5, topic("grow", 1, &[]), false).error_code, 0);
    let grow = |c: &mut KafkaConn, name: &str, count: i32, validate_only: bool| {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default().with_name(s(name).into()).with_count(count),
            ])
            .with_timeout_ms(5000)
            .with_validate_only(validate_only);
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &req);
        let t = &r.results[0];
        (t.error_code, t.error_message.as_deref().unwrap_or("").to_string())
    };

    assert_eq!(grow(&mut c, "grow", 3, true).0, 0);
    assert_eq!(metadata(&mut c, "grow"), (0, 1), "validate_only adds nothing");
    assert_eq!(grow(&mut c, "grow", 3, false).0, 0);
    assert_eq!(metadata(&mut c, "grow"), (0, 3));

    // The new partitions take records and serve them.
    assert_eq!(produce(&mut c, "grow", 2, &["to the new partition"]), (0, 0));
    let (err, hw, _, bytes) = fetch(&mut c, "grow", 2, 0);
    assert_eq!((err, hw), (0, 1));
    assert!(bytes > 0);

    // A topic never shrinks, and the same count is no change.
    for count in [2, 3] {
        let (code, message) = grow(&mut c, "grow", count, false);
        assert_eq!(code, INVALID_PARTITIONS, "{count}: {message}");
        assert!(message.contains('3'), "{message}");
    }
    assert_eq!(grow(&mut c, "missing", 2, false).0, UNKNOWN_TOPIC_OR_PARTITION);

    // Manual assignment of the new partitions: only to this broker.
    let with_assignment = |replicas: Vec<i32>| {
        CreatePartitionsRequest::default().with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(s("grow").into())
                .with_count(4)
                .with_assignments(Some(vec![
                    CreatePartitionsAssignment::default()
                        .with_broker_ids(replicas.into_iter().map(Into::into).collect()),
                ])),
        ])
    };
    let r: CreatePartitionsResponse =
        c.call(ApiKey::CreatePartitions, 3, &with_assignment(vec![1]));
    assert_eq!(r.results[0].error_code, INVALID_REPLICA_ASSIGNMENT);
    let r: CreatePartitionsResponse =
        c.call(ApiKey::CreatePartitions, 3, &with_assignment(vec![0]));
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    assert_eq!(metadata(&mut c, "grow"), (0, 4));
}

#[test]
fn delete_records_moves_the_log_start_that_list_offsets_and_fetch_see() {
    let (_dir, _broker, mut c) = start();
    assert_eq!(create(&mut c, 5, topic("trimmed", 1, &[]), false).error_code, 0);
    for i in 0..10 {
        assert_eq!(produce(&mut c, "trimmed", 0, &[&format!("record {i}")]), (0, i));
    }
    let delete = |c: &mut KafkaConn, partition: i32, offset: i64| {
        let req = DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![
            DeleteRecordsTopic::default().with_name(s("trimmed").into()).with_partitions(vec![
                DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset),
            ]),
        ]);
        let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };

    assert_eq!(delete(&mut c, 0, 4), (0, 4));
    assert_eq!(list_offset(&mut c, "trimmed", 0, -2), (0, 4), "earliest moved");
    assert_eq!(fetch(&mut c, "trimmed", 0, 2).0, OFFSET_OUT_OF_RANGE);
    let (err, hw, log_start, bytes) = fetch(&mut c, "trimmed", 0, 4);
    assert_eq!((err, hw, log_start), (0, 10, 4));
    assert!(bytes > 0);
    assert_eq!(delete(&mut c, 0, 2), (0, 4), "a log start never moves back");

    // Past the end is out of range; -1 is the high watermark: everything.
    assert_eq!(delete(&mut c, 0, 11).0, OFFSET_OUT_OF_RANGE);
    assert_eq!(delete(&mut c, 0, -1), (0, 10));
    assert_eq!(list_offset(&mut c, "trimmed", 0, -2), (0, 10));
    assert_eq!(list_offset(&mut c, "trimmed", 0, -1), (0, 10));
    assert_eq!(delete(&mut c, 1, 0).0, UNKNOWN_TOPIC_OR_PARTITION);
    // Offsets go on after the trim.
    assert_eq!(produce(&mut c, "trimmed", 0, &["after"]), (0, 10));
}

#[test]
fn describe_cluster_names_this_broker_as_the_controller_at_its_advertised_address() {
    let (_dir, broker, mut c) = start();
    let addr = broker.kafka_addr.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    for v in 0..=2 {
        let r: DescribeClusterResponse =
            c.call(ApiKey::DescribeCluster, v, &DescribeClusterRequest::default());
        assert_eq!(r.error_code, 0, "v{v}: {r:?}");
        assert_eq!(r.cluster_id.as_str(), "minikafka");
        assert_eq!(r.controller_id.0, 0);
        assert_eq!(r.brokers.len(), 1);
        let b = &r.brokers[0];
        assert_eq!(
            (b.broker_id.0, b.host.as_str(), b.port.to_string()),
            (0, host, port.to_string())
        );
    }
    // Asking a broker for the controllers (v1+) is the wrong endpoint.
    let r: DescribeClusterResponse = c.call(
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default().with_endpoint_type(2),
    );
    assert_eq!(r.error_code, MISMATCHED_ENDPOINT_TYPE);

    // Admin clients check ApiVersions before calling: every admin API is advertised.
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let range = |key: ApiKey| {
        r.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::DescribeConfigs), Some((0, 4)));
    assert_eq!(range(ApiKey::AlterConfigs), Some((0, 2)));
    assert_eq!(range(ApiKey::IncrementalAlterConfigs), Some((0, 1)));
    assert_eq!(range(ApiKey::CreatePartitions), Some((0, 3)));
    assert_eq!(range(ApiKey::DeleteRecords), Some((0, 2)));
    assert_eq!(range(ApiKey::DescribeCluster), Some((0, 2)));
    assert_eq!(range(ApiKey::CreateTopics), Some((2, 7)));
}
