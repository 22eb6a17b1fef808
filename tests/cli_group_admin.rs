//! Issue 13: `minikafka group reset-offsets` and `group delete` against the real binary, as an
//! operator uses them: a dry run prints the plan and changes nothing, `--execute` commits it;
//! every mode (earliest, latest, an offset, a time, a shift) lands inside the log's range; both
//! are refused while a Kafka consumer of the group is live (naming it), and work once it left.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::kafka::{KafkaConn, s};
use common::{BrokerProcess, fails, ok};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::record::{self, NewRecord};

fn start() -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "never"]);
    (broker, dir)
}

fn connect(broker: &BrokerProcess, client_id: &str) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), client_id)
}

/// Produces one record per timestamp (ms) to a partition, through the Kafka listener.
fn produce(c: &mut KafkaConn, topic: &str, partition: i32, stamps: &[i64]) {
    let mut b = BatchBuilder::new(Compression::None);
    for &t in stamps {
        let v = format!("at {t}");
        let r = NewRecord { timestamp_ms: t, key: None, value: Some(v.as_bytes()), headers: &[] };
        record::push_record(&mut b, &r).unwrap();
    }
    let records = Bytes::from(b.build().unwrap());
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 7, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{r:?}");
}

/// Commits (partition, offset) of one topic as a standalone consumer.
fn commit(c: &mut KafkaConn, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let codes = common::kafka::commit_standalone(c, 8, group, topic, offsets);
    assert!(codes.iter().all(|&e| e == 0), "{codes:?}");
}

/// A lone Kafka consumer joined to `group`, assigned partition 0 of `topic`; its member id.
fn join(c: &mut KafkaConn, group: &str, topic: &str) -> String {
    let mut sub = BytesMut::new();
    sub.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s(topic)])
        .encode(&mut sub, 0)
        .unwrap();
    let req = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(sub.clone().freeze()),
            ])
    };
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 7, &req(""));
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 7, &req(&member));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let mut a = BytesMut::new();
    a.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![0]),
        ])
        .encode(&mut a, 0)
        .unwrap();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(a.freeze()),
        ]);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    member
}

/// The group's committed offsets of `topic` as `group describe --json` shows them.
fn committed(broker: &BrokerProcess, group: &str) -> Vec<(u64, u64)> {
    let out = ok(broker.cli(&["group", "describe", group, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["partition"].as_u64().unwrap(), o["committed_offset"].as_u64().unwrap()))
        .collect()
}

/// The plan's rows (topic, partition, current, new), header excluded.
fn plan(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    lines
        .take_while(|l| l.starts_with("orders"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row(p: u32, current: &str, new: u64) -> Vec<String> {
    vec!["orders".into(), p.to_string(), current.into(), new.to_string()]
}

#[test]
fn reset_offsets_plans_a_dry_run_and_executes_every_mode_within_the_log() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut c = connect(&broker, "setup");
    // Partition 0: offsets 0..5 stamped 1 s..5 s; partition 1: offsets 0..2 stamped 1 s, 2 s.
    produce(&mut c, "orders", 0, &[1000, 2000, 3000, 4000, 5000]);
    produce(&mut c, "orders", 1, &[1000, 2000]);
    // Partition 0's log now starts at 1.
    ok(broker.cli(&["topic", "trim", "orders", "--before", "1", "--partition", "0"]));
    commit(&mut c, "billing", "orders", &[(0, 3), (1, 1)]);
    let reset = |mode: &[&str], execute: bool| {
        let mut a = vec!["group", "reset-offsets", "billing", "--topic", "orders"];
        a.extend_from_slice(mode);
        if execute {
            a.push("--execute");
        }
        ok(broker.cli(&a))
    };

    // A dry run prints the plan and changes nothing.
    let out = reset(&["--to-earliest"], false);
    assert_eq!(plan(&out), vec![row(0, "3", 1), row(1, "1", 0)], "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(committed(&broker, "billing"), vec![(0, 3), (1, 1)]);

    let out = reset(&["--to-earliest"], true);
    assert_eq!(plan(&out), vec![row(0, "3", 1), row(1, "1", 0)], "{out}");
    assert!(out.contains("reset 2 partitions of orders for group billing"), "{out}");
    assert_eq!(committed(&broker, "billing"), vec![(0, 1), (1, 0)]);

    reset(&["--to-latest"], true);
    assert_eq!(committed(&broker, "billing"), vec![(0, 5), (1, 2)]);

    // Beyond either end: clamped to the log's range.
    reset(&["--to-offset", "100"], true);
    assert_eq!(committed(&broker, "billing"), vec![(0, 5), (1, 2)]);
    let out = reset(&["--to-offset", "0"], true);
    assert_eq!(plan(&out), vec![row(0, "5", 1), row(1, "2", 0)], "{out}");
    assert_eq!(committed(&broker, "billing"), vec![(0, 1), (1, 0)]);

    reset(&["--shift-by", "3"], true);
    assert_eq!(committed(&broker, "billing"), vec![(0, 4), (1, 2)], "shifted, then clamped");
    reset(&["--shift-by", "-2"], true);
    assert_eq!(committed(&broker, "billing"), vec![(0, 2), (1, 0)]);

    // The first record stamped at or after 3 s: offset 2 on partition 0; partition 1 has none,
    // so its log end.
    let out = reset(&["--to-datetime", "1970-01-01T00:00:03Z"], true);
    assert_eq!(plan(&out), vec![row(0, "2", 2), row(1, "0", 2)], "{out}");
    assert_eq!(committed(&broker, "billing"), vec![(0, 2), (1, 2)]);
    reset(&["--to-datetime", "1970-01-01T01:00:01.500+01:00"], true);
    assert_eq!(committed(&broker, "billing"), vec![(0, 1), (1, 1)]);

    // A group without offsets: the plan shows none current; shifting is refused.
    let out =
        ok(broker.cli(&["group", "reset-offsets", "fresh", "--topic", "orders", "--to-latest"]));
    assert_eq!(plan(&out), vec![row(0, "-", 5), row(1, "-", 2)], "{out}");
    let err = fails(broker.cli(&[
        "group",
        "reset-offsets",
        "fresh",
        "--topic",
        "orders",
        "--shift-by",
        "1",
    ]));
    assert!(err.contains("no committed offset"), "{err}");
    let err = fails(broker.cli(&["group", "reset-offsets", "billing", "--topic", "orders"]));
    assert!(err.contains("--to-earliest"), "a mode is required: {err}");
    let err = fails(broker.cli(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-datetime",
        "noon",
    ]));
    assert!(err.contains("is not a time"), "{err}");
}

#[test]
fn reset_and_delete_are_refused_while_a_consumer_is_live_and_work_once_it_left() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut c = connect(&broker, "setup");
    produce(&mut c, "orders", 0, &[1000, 2000]);
    commit(&mut c, "billing", "orders", &[(0, 1)]);
    let mut consumer = connect(&broker, "billing-app");
    let member = join(&mut consumer, "billing", "orders");

    // describe shows the state and the member.
    let out = ok(broker.cli(&["group", "describe", "billing"]));
    assert!(out.contains("state Stable, 1 live member"), "{out}");
    let member_row =
        out.lines().find(|l| l.starts_with(&member)).unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = member_row.split_whitespace().collect();
    assert_eq!(cells, [member.as_str(), "billing-app", "/127.0.0.1", "orders:", "0"]);

    for execute in [false, true] {
        let mut a = vec!["group", "reset-offsets", "billing", "--topic", "orders", "--to-earliest"];
        if execute {
            a.push("--execute");
        }
        let err = fails(broker.cli(&a));
        assert!(err.contains("1 live member"), "{err}");
        assert!(err.contains(&member), "the member is named: {err}");
    }
    let err = fails(broker.cli(&["group", "delete", "billing"]));
    assert!(err.contains("live members") && err.contains(&member), "{err}");
    assert_eq!(committed(&broker, "billing"), vec![(0, 1)], "nothing changed");

    let leave =
        LeaveGroupRequest::default().with_group_id(GroupId(s("billing"))).with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&member)),
        ]);
    let r: LeaveGroupResponse = consumer.call(ApiKey::LeaveGroup, 4, &leave);
    assert_eq!(r.members[0].error_code, 0);

    ok(broker.cli(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-latest",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "billing"), vec![(0, 2), (1, 0)]);
    let out = ok(broker.cli(&["group", "delete", "billing"]));
    assert_eq!(out, "deleted consumer group billing\n");
    let err = fails(broker.cli(&["group", "describe", "billing"]));
    assert!(err.contains("no consumer group billing"), "{err}");
    let err = fails(broker.cli(&["group", "delete", "billing"]));
    assert!(err.contains("no consumer group billing"), "{err}");
    assert!(!ok(broker.cli(&["group", "list"])).contains("billing"));
}
