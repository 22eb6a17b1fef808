//! Issue 13: a Kafka client may commit a negative sentinel as a group's offset, as kafkajs's
//! `admin.resetOffsets({earliest: true})` commits -2 and `{latest: true}` -1. The broker keeps it
//! as sent, so OffsetFetch returns it (every version, across a restart), and the native tools
//! read it the way Kafka consumers do: -2 is the log start, -1 the log end, any other negative
//! offset no commit at all (`consume --group`, `group describe`/`list`, `group reset-offsets`).

mod common;

use common::kafka::{KafkaConn, commit_standalone, s};
use common::{BrokerProcess, ok};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::*;

const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;

fn start() -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "never"]);
    (broker, dir)
}

fn connect(broker: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), "kafkajs")
}

/// OffsetFetch at a version before 8 (one group) of `partitions` of `topic`: (partition, offset).
fn fetch(
    c: &mut KafkaConn,
    version: i16,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i64)> {
    let req =
        OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions.to_vec()),
        ]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req);
    assert_eq!(r.error_code, 0, "{r:?}");
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "{r:?}");
            (p.partition_index, p.committed_offset)
        })
        .collect()
}

/// OffsetFetch v8+ of every offset of several groups at once: per group, its
/// (topic, partition, offset).
fn fetch_all(c: &mut KafkaConn, version: i16, groups: &[&str]) -> Vec<Vec<(String, i32, i64)>> {
    let req = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default().with_group_id(GroupId(s(g))).with_topics(None)
            })
            .collect(),
    );
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req);
    r.groups
        .iter()
        .map(|g| {
            assert_eq!(g.error_code, 0, "{g:?}");
            g.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        assert_eq!(p.error_code, 0, "{p:?}");
                        (t.name.to_string(), p.partition_index, p.committed_offset)
                    })
                })
                .collect()
        })
        .collect()
}

fn json(out: String) -> serde_json::Value {
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `group describe G --json` as (partition, committed position, log end, lag) per partition.
fn described(broker: &BrokerProcess, group: &str) -> (Vec<(u64, u64, u64, u64)>, u64) {
    let v = json(ok(broker.cli(&["group", "describe", group, "--json"])));
    let rows = v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let n = |k: &str| o[k].as_u64().unwrap_or_else(|| panic!("{k} in {o}"));
            (n("partition"), n("committed_offset"), n("log_end_offset"), n("lag"))
        })
        .collect();
    (rows, v["total_lag"].as_u64().unwrap())
}

#[test]
fn sentinel_commits_come_back_from_offset_fetch_as_sent_and_survive_a_restart() {
    let (mut broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut c = connect(&broker);

    // kafkajs's resetOffsets: earliest commits -2, latest -1; any i64 is kept as Kafka keeps it.
    assert_eq!(commit_standalone(&mut c, 2, "early", "orders", &[(0, -2), (1, -2)]), [0, 0]);
    assert_eq!(commit_standalone(&mut c, 9, "late", "orders", &[(0, -1), (1, -1)]), [0, 0]);
    assert_eq!(commit_standalone(&mut c, 7, "odd", "orders", &[(0, -7)]), [0]);
    // What Kafka refuses stays refused: a negative partition index.
    assert_eq!(
        commit_standalone(&mut c, 8, "odd", "orders", &[(-1, 5)]),
        [INVALID_COMMIT_OFFSET_SIZE]
    );

    let expect_all = vec![
        vec![("orders".to_string(), 0, -2), ("orders".to_string(), 1, -2)],
        vec![("orders".to_string(), 0, -1), ("orders".to_string(), 1, -1)],
        vec![("orders".to_string(), 0, -7)],
    ];
    let check = |c: &mut KafkaConn| {
        for v in [1, 5, 7] {
            assert_eq!(fetch(c, v, "early", "orders", &[0, 1]), [(0, -2), (1, -2)], "v{v}");
            assert_eq!(fetch(c, v, "late", "orders", &[0, 1]), [(0, -1), (1, -1)], "v{v}");
            assert_eq!(fetch(c, v, "odd", "orders", &[0]), [(0, -7)], "v{v}");
        }
        for v in [8, 9] {
            assert_eq!(fetch_all(c, v, &["early", "late", "odd"]), expect_all, "v{v}");
        }
    };
    check(&mut c);

    drop(c);
    assert!(broker.stop(), "clean shutdown; log:\n{}", broker.log());
    broker.restart();
    let mut c = connect(&broker);
    check(&mut c);

    // A sentinel is replaced by a position like any commit.
    assert_eq!(commit_standalone(&mut c, 8, "early", "orders", &[(0, 0)]), [0]);
    assert_eq!(fetch(&mut c, 5, "early", "orders", &[0, 1]), [(0, 0), (1, -2)]);
}

#[test]
fn native_tools_read_minus_two_as_the_log_start_and_minus_one_as_the_log_end() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let msgs: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let mut produce = vec!["produce", "orders", "--partition", "0"];
    produce.extend(msgs.iter().map(String::as_str));
    ok(broker.cli(&produce));
    ok(broker.cli(&["produce", "orders", "--partition", "1", "a", "b", "c", "d"]));
    // Partition 0's log now starts at 3: "earliest" is 3 there, not 0.
    ok(broker.cli(&["topic", "trim", "orders", "--partition", "0", "--before", "3"]));

    let mut c = connect(&broker);
    assert_eq!(commit_standalone(&mut c, 8, "early", "orders", &[(0, -2), (1, -2)]), [0, 0]);
    assert_eq!(commit_standalone(&mut c, 8, "late", "orders", &[(0, -1), (1, -1)]), [0, 0]);
    assert_eq!(commit_standalone(&mut c, 8, "odd", "orders", &[(0, -5)]), [0]);
    assert_eq!(commit_standalone(&mut c, 8, "shift", "orders", &[(0, -2), (1, -1)]), [0, 0]);

    // Lag counts from the resolved positions: -2 from the log start, -1 from the log end.
    assert_eq!(described(&broker, "early"), (vec![(0, 3, 10, 7), (1, 0, 4, 4)], 11));
    assert_eq!(described(&broker, "late"), (vec![(0, 10, 10, 0), (1, 4, 4, 0)], 0));
    // Another negative offset is no committed position.
    assert_eq!(described(&broker, "odd"), (vec![], 0));
    let listed = json(ok(broker.cli(&["group", "list", "--json"])));
    let lag_of = |g: &str| {
        listed.as_array().unwrap().iter().find(|v| v["group"] == g).unwrap()["total_lag"].clone()
    };
    assert_eq!((lag_of("early"), lag_of("late")), (11.into(), 0.into()));

    // `consume --group` after a -2 starts at the log start, and commits where it stopped.
    let out = ok(broker.cli(&["consume", "orders", "--partition", "0", "--group", "early"]));
    assert_eq!(out.lines().collect::<Vec<_>>(), msgs[3..]);
    assert_eq!(fetch(&mut c, 5, "early", "orders", &[0, 1]), [(0, 10), (1, -2)]);
    // After a -1 it starts at the end: nothing of what is stored.
    let out = ok(broker.cli(&["consume", "orders", "--group", "late"]));
    assert_eq!(out, "", "a group committed at latest reads nothing already stored");
    // With no committed position it starts at the log start, as for a new group.
    let out = ok(broker.cli(&["consume", "orders", "--partition", "0", "--group", "odd"]));
    assert_eq!(out.lines().collect::<Vec<_>>(), msgs[3..]);

    // -1 is the log end as it is when read: it moves on with the log.
    ok(broker.cli(&["produce", "orders", "--partition", "0", "m10"]));
    assert_eq!(described(&broker, "late"), (vec![(0, 11, 11, 0), (1, 4, 4, 0)], 0));

    // reset-offsets shows the resolved positions and shifts from them (clamped to the log).
    let plan = ok(broker.cli(&[
        "group",
        "reset-offsets",
        "shift",
        "--topic",
        "orders",
        "--shift-by",
        "2",
    ]));
    let rows: Vec<Vec<&str>> = plan.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    assert_eq!(rows[1], ["orders", "0", "3", "5"]);
    assert_eq!(rows[2], ["orders", "1", "4", "4"]);
    ok(broker.cli(&[
        "group",
        "reset-offsets",
        "shift",
        "--topic",
        "orders",
        "--shift-by",
        "2",
        "--execute",
    ]));
    assert_eq!(fetch(&mut c, 5, "shift", "orders", &[0, 1]), [(0, 5), (1, 4)]);
}
