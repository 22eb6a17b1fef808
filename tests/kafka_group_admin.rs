//! Issue 13: consumer-group administration through the Kafka listener of the real binary, as
//! kafka-consumer-groups.sh and AdminClient drive it: groups are listed (with a live member, and
//! with committed offsets only) and described (state, members, their host and bytes); a group is
//! deleted only once its members left; OffsetDelete keeps a subscribed topic's offsets; commit
//! metadata comes back from OffsetFetch (and across a restart); FindCoordinator v4 answers a
//! batch of keys and OffsetFetch v8 several groups at once.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::kafka::{KafkaConn, s};
use common::{BrokerProcess, ok};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

/// (partition, offset, metadata) as OffsetFetch answers.
type Committed = (i32, i64, String);

const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn start() -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "never"]);
    (broker, dir)
}

fn connect(broker: &BrokerProcess, client_id: &str) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), client_id)
}

/// A consumer's JoinGroup metadata: ConsumerProtocolSubscription v1 to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

/// The leader's assignment: ConsumerProtocolAssignment v0 of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut b = BytesMut::new();
    b.put_i16(0);
    a.encode(&mut b, 0).unwrap();
    b.freeze()
}

/// A lone consumer joined to `group` (JoinGroup v9 through MEMBER_ID_REQUIRED, then SyncGroup v5
/// as the leader assigning itself `partitions` of `topic`): (member id, generation).
fn join(c: &mut KafkaConn, group: &str, topic: &str, partitions: &[i32]) -> (String, i32) {
    let req = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_reason(Some(s("test joins")))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription(&[topic])),
            ])
    };
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &req(""));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &req(&member));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader.as_str(), member, "a lone member leads");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(assignment(topic, partitions)),
        ]);
    let synced: SyncGroupResponse = c.call(ApiKey::SyncGroup, 5, &sync);
    assert_eq!(synced.error_code, 0, "{synced:?}");
    assert_eq!(synced.assignment, assignment(topic, partitions));
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member));
    let hb: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb);
    assert_eq!(hb.error_code, 0);
    (member, joined.generation_id)
}

fn leave(c: &mut KafkaConn, group: &str, member: &str) {
    let req = LeaveGroupRequest::default().with_group_id(GroupId(s(group))).with_members(vec![
        leave_group_request::MemberIdentity::default()
            .with_member_id(s(member))
            .with_reason(Some(s("test leaves"))),
    ]);
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 5, &req);
    assert_eq!((r.error_code, r.members[0].error_code), (0, 0), "{r:?}");
}

/// OffsetCommit at `version` of (partition, offset, metadata) of one topic, as a standalone
/// consumer (generation -1) or a member; every partition must succeed.
fn commit(
    c: &mut KafkaConn,
    version: i16,
    group: &str,
    member: Option<(&str, i32)>,
    topic: &str,
    offsets: &[(i32, i64, &str)],
) {
    let (member, generation) = member.unwrap_or(("", -1));
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
                offsets
                    .iter()
                    .map(|(p, o, m)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s(m)))
                    })
                    .collect(),
            ),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, version, &req);
    for p in &r.topics[0].partitions {
        assert_eq!(p.error_code, 0, "{r:?}");
    }
}

/// OffsetFetch v5 of one group's partitions of `topic`: (partition, offset, metadata).
fn fetch(
    c: &mut KafkaConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i64, String)> {
    let req =
        OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions.to_vec()),
        ]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &req);
    assert_eq!(r.error_code, 0);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            let m = p.metadata.as_deref().unwrap_or("").to_string();
            (p.partition_index, p.committed_offset, m)
        })
        .collect()
}

fn list_groups(c: &mut KafkaConn, version: i16, states: &[&str]) -> Vec<(String, String, String)> {
    let req =
        ListGroupsRequest::default().with_states_filter(states.iter().map(|x| s(x)).collect());
    let r: ListGroupsResponse = c.call(ApiKey::ListGroups, version, &req);
    assert_eq!(r.error_code, 0);
    r.groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string(), g.protocol_type.to_string()))
        .collect()
}

fn describe(c: &mut KafkaConn, group: &str) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let mut r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req);
    assert_eq!(r.groups.len(), 1);
    r.groups.remove(0)
}

fn delete_groups(c: &mut KafkaConn, groups: &[&str]) -> Vec<(String, i16)> {
    let req = DeleteGroupsRequest::default()
        .with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect());
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 2, &req);
    r.results.iter().map(|g| (g.group_id.to_string(), g.error_code)).collect()
}

#[test]
fn list_and_describe_show_a_live_member_and_an_offsets_only_group() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut admin = connect(&broker, "admin");
    // "audit" only committed offsets (a standalone consumer): it is listed, Empty.
    commit(&mut admin, 8, "audit", None, "orders", &[(0, 3, "")]);
    let mut consumer = connect(&broker, "billing-app");
    let (member, _) = join(&mut consumer, "billing", "orders", &[0, 1]);

    let all = list_groups(&mut admin, 4, &[]);
    assert_eq!(
        all,
        vec![
            ("audit".to_string(), "Empty".to_string(), String::new()),
            ("billing".to_string(), "Stable".to_string(), "consumer".to_string()),
        ]
    );
    assert_eq!(list_groups(&mut admin, 4, &["Stable"]).len(), 1);
    assert_eq!(list_groups(&mut admin, 4, &["empty"])[0].0, "audit", "the filter ignores case");
    // v0 has neither states nor a filter; v5 adds the group type.
    assert_eq!(list_groups(&mut admin, 0, &[]).len(), 2);
    let r: ListGroupsResponse = admin.call(ApiKey::ListGroups, 5, &ListGroupsRequest::default());
    assert!(r.groups.iter().all(|g| g.group_type.as_str() == "classic"), "{r:?}");

    let d = describe(&mut admin, "billing");
    assert_eq!(d.error_code, 0);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_type.as_str(), "consumer");
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members.len(), 1);
    let m = &d.members[0];
    assert_eq!(m.member_id.as_str(), member);
    assert_eq!(m.client_id.as_str(), "billing-app");
    assert_eq!(m.client_host.as_str(), "/127.0.0.1", "the member's connection address");
    assert_eq!(m.group_instance_id, None);
    assert_eq!(m.member_metadata, subscription(&["orders"]));
    assert_eq!(m.member_assignment, assignment("orders", &[0, 1]));

    let audit = describe(&mut admin, "audit");
    assert_eq!((audit.error_code, audit.group_state.as_str()), (0, "Empty"));
    assert!(audit.members.is_empty());
    let none = describe(&mut admin, "nobody");
    assert_eq!((none.error_code, none.group_state.as_str()), (0, "Dead"));

    // Once the member left, the group has no members (Empty until the coordinator forgets it,
    // then Dead: it never committed).
    leave(&mut consumer, "billing", &member);
    let d = describe(&mut admin, "billing");
    assert!(d.members.is_empty());
    assert!(["Empty", "Dead"].contains(&d.group_state.as_str()), "{d:?}");
}

#[test]
fn a_group_is_deleted_only_once_its_members_left_and_its_offsets_go_with_it() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut consumer = connect(&broker, "billing-app");
    let (member, generation) = join(&mut consumer, "billing", "orders", &[0, 1]);
    commit(
        &mut consumer,
        9,
        "billing",
        Some((&member, generation)),
        "orders",
        &[(0, 5, ""), (1, 6, "")],
    );
    let mut admin = connect(&broker, "admin");

    assert_eq!(
        delete_groups(&mut admin, &["billing", "nobody"]),
        vec![("billing".to_string(), NON_EMPTY_GROUP), ("nobody".to_string(), GROUP_ID_NOT_FOUND)]
    );
    assert_eq!(fetch(&mut admin, "billing", "orders", &[0, 1])[0].1, 5, "nothing was deleted");

    leave(&mut consumer, "billing", &member);
    assert_eq!(delete_groups(&mut admin, &["billing"]), vec![("billing".to_string(), 0)]);
    assert_eq!(
        fetch(&mut admin, "billing", "orders", &[0, 1]),
        vec![(0, -1, String::new()), (1, -1, String::new())],
        "the committed offsets are gone"
    );
    assert!(list_groups(&mut admin, 4, &[]).is_empty());
    assert_eq!(
        delete_groups(&mut admin, &["billing"]),
        vec![("billing".to_string(), GROUP_ID_NOT_FOUND)]
    );
    // And the native CLI agrees.
    let out = ok(broker.cli(&["group", "list"]));
    assert!(!out.contains("billing"), "{out}");
}

#[test]
fn offset_delete_keeps_a_topic_a_live_member_subscribes_to() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    ok(broker.cli(&["topic", "create", "archive"]));
    let mut admin = connect(&broker, "admin");
    commit(&mut admin, 8, "billing", None, "orders", &[(0, 4, ""), (1, 4, "")]);
    commit(&mut admin, 8, "billing", None, "archive", &[(0, 9, "")]);
    let mut consumer = connect(&broker, "billing-app");
    let (member, _) = join(&mut consumer, "billing", "orders", &[0, 1]);

    let req = OffsetDeleteRequest::default().with_group_id(GroupId(s("billing"))).with_topics(
        ["orders", "archive"]
            .iter()
            .map(|t| {
                OffsetDeleteRequestTopic::default().with_name(TopicName(s(t))).with_partitions(
                    vec![OffsetDeleteRequestPartition::default().with_partition_index(0)],
                )
            })
            .collect(),
    );
    let r: OffsetDeleteResponse = admin.call(ApiKey::OffsetDelete, 0, &req);
    assert_eq!(r.error_code, 0, "{r:?}");
    let codes: Vec<(String, i16)> =
        r.topics.iter().map(|t| (t.name.to_string(), t.partitions[0].error_code)).collect();
    assert_eq!(
        codes,
        vec![("orders".to_string(), GROUP_SUBSCRIBED_TO_TOPIC), ("archive".to_string(), 0)]
    );
    assert_eq!(fetch(&mut admin, "billing", "orders", &[0])[0].1, 4, "kept");
    assert_eq!(fetch(&mut admin, "billing", "archive", &[0])[0].1, -1, "deleted");

    // Once the member left, the subscribed topic's offsets can go too.
    leave(&mut consumer, "billing", &member);
    let r: OffsetDeleteResponse = admin.call(ApiKey::OffsetDelete, 0, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0, "{r:?}");
    assert_eq!(
        fetch(&mut admin, "billing", "orders", &[0, 1]),
        vec![(0, -1, String::new()), (1, 4, String::new())]
    );

    let unknown = OffsetDeleteRequest::default().with_group_id(GroupId(s("nobody")));
    let r: OffsetDeleteResponse = admin.call(ApiKey::OffsetDelete, 0, &unknown);
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
}

#[test]
fn commit_metadata_comes_back_from_offset_fetch_and_survives_a_restart() {
    let (mut broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut c = connect(&broker, "app");
    commit(&mut c, 2, "g", None, "orders", &[(0, 10, "host=a;epoch=3")]);
    commit(&mut c, 9, "g", None, "orders", &[(1, 20, "résumé")]);
    assert_eq!(
        fetch(&mut c, "g", "orders", &[0, 1]),
        vec![(0, 10, "host=a;epoch=3".to_string()), (1, 20, "résumé".to_string())]
    );
    // A commit without metadata clears it, as in Kafka.
    commit(&mut c, 8, "g", None, "orders", &[(0, 11, "")]);
    assert_eq!(fetch(&mut c, "g", "orders", &[0])[0], (0, 11, String::new()));

    drop(c);
    assert!(broker.stop(), "clean shutdown; log:\n{}", broker.log());
    broker.restart();
    let mut c = connect(&broker, "app");
    assert_eq!(
        fetch(&mut c, "g", "orders", &[0, 1]),
        vec![(0, 11, String::new()), (1, 20, "résumé".to_string())]
    );
}

#[test]
fn find_coordinator_v4_answers_a_batch_and_offset_fetch_v8_several_groups() {
    let (broker, _dir) = start();
    ok(broker.cli(&["topic", "create", "orders", "--partitions", "2"]));
    let mut c = connect(&broker, "app");
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![s("a"), s("b")]);
    for v in [4, 6] {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
        let keys: Vec<&str> = r.coordinators.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        let port: i32 =
            broker.kafka_addr.as_deref().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        for k in &r.coordinators {
            assert_eq!((k.error_code, k.node_id.0, k.port), (0, 0, port), "{k:?}");
        }
    }

    commit(&mut c, 8, "a", None, "orders", &[(0, 1, "ma"), (1, 2, "")]);
    commit(&mut c, 8, "b", None, "orders", &[(1, 7, "mb")]);
    let req = OffsetFetchRequest::default().with_groups(vec![
        // All of a's offsets.
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("a"))).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("b"))).with_topics(Some(vec![
            OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![0, 1]),
        ])),
    ]);
    for v in [8, 9] {
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
        let got: Vec<(String, Vec<Committed>)> = r
            .groups
            .iter()
            .map(|g| {
                assert_eq!(g.error_code, 0);
                let parts = g.topics[0]
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            p.metadata.as_deref().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                (g.group_id.to_string(), parts)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![(0, 1, "ma".to_string()), (1, 2, String::new())]),
                ("b".to_string(), vec![(0, -1, String::new()), (1, 7, "mb".to_string())]),
            ]
        );
    }
}

/// GET `path` from the HTTP listener (one request per connection, no chunking expected from a
/// small JSON answer; a chunked one is joined).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, mut rest) = raw.split_once("\r\n\r\n").expect("a complete response head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, rest.to_string());
    }
    let mut body = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return (status, body);
        }
        body.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_shows_the_state_and_members_a_kafka_consumer_gives_the_group() {
    use minikafka::broker::topic_config::TopicConfigs;
    use minikafka::broker::{Broker, BrokerConfig};
    use minikafka::http::HttpServer;
    use minikafka::kafka::{KafkaConfig, KafkaServer};

    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() })
            .unwrap();
    broker.create_topic("orders", 2, TopicConfigs::default(), false).unwrap();
    broker.commit_offset("billing", "orders", 0, 0).unwrap();
    let kafka = KafkaServer::bind(KafkaConfig::new("127.0.0.1:0".parse().unwrap()), broker.clone())
        .await
        .unwrap();
    let http =
        HttpServer::bind("127.0.0.1:0".parse().unwrap(), broker.clone(), broker.metrics().clone())
            .await
            .unwrap();
    let (kafka_addr, http_addr) = (kafka.local_addr().to_string(), http.local_addr());
    let (stop_k, rx_k) = tokio::sync::oneshot::channel::<()>();
    let (stop_h, rx_h) = tokio::sync::oneshot::channel::<()>();
    let tk = tokio::spawn(async move { kafka.run(async move { drop(rx_k.await) }).await.unwrap() });
    let th = tokio::spawn(async move { http.run(async move { drop(rx_h.await) }).await.unwrap() });

    let (member, group, list) = tokio::task::spawn_blocking(move || {
        let mut c = KafkaConn::connect(&kafka_addr, "billing-app");
        let (member, _) = join(&mut c, "billing", "orders", &[0, 1]);
        let (status, group) = http_get(http_addr, "/api/groups/billing");
        assert_eq!(status, 200, "{group}");
        let (status, list) = http_get(http_addr, "/api/groups");
        assert_eq!(status, 200, "{list}");
        (member, group, list)
    })
    .await
    .unwrap();
    let g: serde_json::Value = serde_json::from_str(&group).unwrap();
    assert_eq!(g["state"], "Stable");
    assert_eq!(g["members"], serde_json::json!([member]));
    assert_eq!(
        g["member_details"],
        serde_json::json!([{
            "member_id": member,
            "client_id": "billing-app",
            "client_host": "/127.0.0.1",
            "assigned": [["orders", [0, 1]]],
        }])
    );
    let l: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        (&l[0]["group"], &l[0]["state"], &l[0]["members"]),
        (&"billing".into(), &"Stable".into(), &1.into())
    );

    let _ = stop_k.send(());
    let _ = stop_h.send(());
    tk.await.unwrap();
    th.await.unwrap();
}
