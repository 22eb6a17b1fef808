//! Issue 14: consumer groups survive the loss of their coordinator's broker. Three broker
//! processes (`--broker-session-timeout-ms 2000`); a consumer joins a group, is assigned the three
//! partitions of an RF-3 topic and commits. Its coordinator's broker is SIGKILLed: FindCoordinator
//! names another live broker, which accepts the member's commits and heartbeats at the generation
//! it already had (no rejoin), and answers the committed offsets. When the killed broker comes
//! back the group may move again; the member's generation still holds there. Leaving and
//! deleting the group then removes its offsets from the cluster.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::cluster::TestCluster;
use common::cluster_client::{CallError, ClusterClient, NONE, TOPIC_ALREADY_EXISTS};
use common::kafka::s;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

const TOPIC: &str = "invoices";
const GROUP: &str = "billing";
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const REQUEST_TIMED_OUT: i16 = 7;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;
/// Liveness bound for each step after a fault (a busy 2-core machine).
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// The coordinator of `GROUP` as the first answering broker of `addrs` names it: (id, address).
fn find_coordinator(client: &mut ClusterClient, addrs: &[String]) -> Option<(i32, String)> {
    let req = FindCoordinatorRequest::default().with_key(s(GROUP));
    for addr in addrs {
        if let Ok(r) =
            client.call::<_, FindCoordinatorResponse>(addr, ApiKey::FindCoordinator, 1, &req)
            && r.error_code == NONE
        {
            return Some((r.node_id.0, format!("{}:{}", r.host.as_str(), r.port)));
        }
    }
    None
}

/// A consumer's subscription or assignment bytes (consumer protocol v0).
fn consumer_bytes(f: impl FnOnce(&mut BytesMut)) -> bytes::Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    f(&mut b);
    b.freeze()
}

/// Joins `GROUP` alone at `addr` and takes all three partitions: (member id, generation).
fn join_and_sync(client: &mut ClusterClient, addr: &str) -> Result<(String, i32), CallError> {
    join_and_sync_for(client, addr, 30_000)
}

/// [`join_and_sync`] with a session timeout of `session_ms`.
fn join_and_sync_for(
    client: &mut ClusterClient,
    addr: &str,
    session_ms: i32,
) -> Result<(String, i32), CallError> {
    let sub = consumer_bytes(|b| {
        ConsumerProtocolSubscription::default()
            .with_topics(vec![s(TOPIC)])
            .encode(b, 0)
            .expect("a subscription encodes")
    });
    let req = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(sub.clone()),
            ])
    };
    let first: JoinGroupResponse = client.call(addr, ApiKey::JoinGroup, 7, &req(""))?;
    if first.error_code != MEMBER_ID_REQUIRED {
        return Err(CallError::Kafka(first.error_code));
    }
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = client.call(addr, ApiKey::JoinGroup, 7, &req(&member))?;
    if joined.error_code != NONE {
        return Err(CallError::Kafka(joined.error_code));
    }
    let assignment = consumer_bytes(|b| {
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(s(TOPIC)))
                    .with_partitions(vec![0, 1, 2]),
            ])
            .encode(b, 0)
            .expect("an assignment encodes")
    });
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(assignment),
        ]);
    let synced: SyncGroupResponse = client.call(addr, ApiKey::SyncGroup, 3, &sync)?;
    if synced.error_code != NONE {
        return Err(CallError::Kafka(synced.error_code));
    }
    Ok((member, joined.generation_id))
}

/// OffsetCommit v5 of `offsets[p]` for partitions 0..3 as `member` at `generation`: the error
/// codes per partition.
fn commit(
    client: &mut ClusterClient,
    addr: &str,
    member: &str,
    generation: i32,
    offsets: [i64; 3],
) -> Result<Vec<i16>, CallError> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(
                    (0..3)
                        .map(|p| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offsets[p as usize])
                        })
                        .collect(),
                ),
        ]);
    let r: OffsetCommitResponse = client.call(addr, ApiKey::OffsetCommit, 5, &req)?;
    Ok(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect())
}

/// OffsetFetch v5 of partitions 0..3: the committed offsets.
fn fetch_offsets(client: &mut ClusterClient, addr: &str) -> Result<Vec<i64>, CallError> {
    let req =
        OffsetFetchRequest::default().with_group_id(GroupId(s(GROUP))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(vec![0, 1, 2]),
        ]));
    let r: OffsetFetchResponse = client.call(addr, ApiKey::OffsetFetch, 5, &req)?;
    if r.error_code != NONE {
        return Err(CallError::Kafka(r.error_code));
    }
    Ok(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.committed_offset)).collect())
}

fn heartbeat(
    client: &mut ClusterClient,
    addr: &str,
    member: &str,
    generation: i32,
) -> Result<i16, CallError> {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    let r: HeartbeatResponse = client.call(addr, ApiKey::Heartbeat, 3, &req)?;
    Ok(r.error_code)
}

/// Commits `offsets` as the member at its generation through whichever broker coordinates the
/// group now (other than `not`, when given), retrying what a client retries, for up to
/// `STEP_LIMIT`. A coordinator that does not know the member or its generation fails the test:
/// that is the bug this test is about. Returns the coordinator that accepted it.
fn commit_through_the_coordinator(
    cluster: &TestCluster,
    client: &mut ClusterClient,
    addrs: &[String],
    not: Option<i32>,
    member: &str,
    generation: i32,
    offsets: [i64; 3],
) -> (i32, String) {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut last = String::from("no coordinator named yet");
    while Instant::now() < deadline {
        let found = find_coordinator(client, addrs);
        match found {
            Some((id, addr)) if Some(id) != not => {
                match commit(client, &addr, member, generation, offsets) {
                    Ok(codes) if codes.iter().all(|c| *c == NONE) && codes.len() == 3 => {
                        return (id, addr);
                    }
                    Ok(codes) => {
                        assert!(
                            !codes
                                .iter()
                                .any(|c| [ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID].contains(c)),
                            "coordinator {id} refused the member's commit at generation \
                             {generation}: {codes:?}\n{}",
                            cluster.logs_tail(40)
                        );
                        assert!(
                            codes.iter().all(|c| [
                                NONE,
                                NOT_COORDINATOR,
                                COORDINATOR_NOT_AVAILABLE,
                                REQUEST_TIMED_OUT
                            ]
                            .contains(c)),
                            "a commit error a client would not retry: {codes:?}"
                        );
                        last = format!("coordinator {id} answered {codes:?}");
                    }
                    Err(e) => last = format!("coordinator {id}: {e}"),
                }
            }
            Some((id, _)) => last = format!("the group is still named at broker {id}"),
            None => last = "no broker named a coordinator".into(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no coordinator took the commit within {STEP_LIMIT:?}: {last}\n{}",
        cluster.logs_tail(60)
    );
}

/// Creates `TOPIC` with 3 partitions x 3 replicas and waits until every partition is in sync.
fn create_topic(client: &mut ClusterClient) {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        match client.create_topic(3, 3) {
            Ok(NONE | TOPIC_ALREADY_EXISTS) => break,
            other if Instant::now() > deadline => panic!("CreateTopics: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    client.wait_healthy(3, 3, STEP_LIMIT).unwrap();
}

#[test]
fn a_member_keeps_committing_at_its_generation_after_its_coordinator_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--broker-session-timeout-ms", "2000"]);
    let addrs = cluster.kafka_addrs();
    let mut client = ClusterClient::new(&addrs, TOPIC, "cluster-groups-test");
    create_topic(&mut client);

    // A consumer joins, takes every partition and commits.
    let deadline = Instant::now() + STEP_LIMIT;
    let (old_id, member, generation) = loop {
        let found = find_coordinator(&mut client, &addrs);
        if let Some((id, addr)) = found
            && let Ok((member, generation)) = join_and_sync(&mut client, &addr)
        {
            break (id, member, generation);
        }
        assert!(Instant::now() < deadline, "the consumer never joined\n{}", cluster.logs_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    };
    let (id, addr) = commit_through_the_coordinator(
        &cluster,
        &mut client,
        &addrs,
        None,
        &member,
        generation,
        [10, 20, 30],
    );
    assert_eq!(id, old_id, "the group did not move without a fault");
    assert_eq!(fetch_offsets(&mut client, &addr).unwrap(), vec![10, 20, 30]);

    // Its coordinator's broker dies. Another takes the group over at the same generation.
    let killed = cluster.index(old_id);
    cluster.kill(killed);
    let survivors: Vec<String> =
        addrs.iter().enumerate().filter(|(i, _)| *i != killed).map(|(_, a)| a.clone()).collect();
    let (new_id, new_addr) = commit_through_the_coordinator(
        &cluster,
        &mut client,
        &survivors,
        Some(old_id),
        &member,
        generation,
        [11, 21, 31],
    );
    assert_ne!(new_id, old_id);
    assert_eq!(
        heartbeat(&mut client, &new_addr, &member, generation).unwrap(),
        NONE,
        "the member heartbeats at its generation without rejoining"
    );
    assert_eq!(fetch_offsets(&mut client, &new_addr).unwrap(), vec![11, 21, 31]);
    let listed: ListGroupsResponse =
        client.call(&new_addr, ApiKey::ListGroups, 4, &ListGroupsRequest::default()).unwrap();
    let states: Vec<(String, String)> =
        listed.groups.iter().map(|g| (g.group_id.to_string(), g.group_state.to_string())).collect();
    assert_eq!(
        states,
        vec![(GROUP.to_string(), "Stable".to_string())],
        "the new coordinator lists it"
    );

    // The killed broker comes back with an empty memory; wherever the group is coordinated now,
    // the member's generation and the committed offsets hold.
    cluster.restart(killed);
    let mut healthy = ClusterClient::new(&addrs, TOPIC, "cluster-groups-check");
    healthy.wait_healthy(3, 3, STEP_LIMIT).unwrap();
    let (_, addr) = commit_through_the_coordinator(
        &cluster,
        &mut client,
        &addrs,
        None,
        &member,
        generation,
        [12, 22, 32],
    );
    assert_eq!(fetch_offsets(&mut client, &addr).unwrap(), vec![12, 22, 32]);

    // The member leaves and the group is deleted: its offsets are gone from the cluster.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(GROUP))).with_members(vec![
        leave_group_request::MemberIdentity::default().with_member_id(s(&member)),
    ]);
    let left: LeaveGroupResponse = client.call(&addr, ApiKey::LeaveGroup, 3, &leave).unwrap();
    assert_eq!(left.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![NONE]);
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]);
    let deleted: DeleteGroupsResponse =
        client.call(&addr, ApiKey::DeleteGroups, 2, &delete).unwrap();
    assert_eq!(deleted.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![NONE]);
    assert_eq!(fetch_offsets(&mut client, &addr).unwrap(), vec![-1, -1, -1]);
}

/// `group describe GROUP --json` through the native listener at `addr`.
fn describe_natively(addr: &str) -> Option<serde_json::Value> {
    let out = common::run_cli(addr, &["group", "describe", GROUP, "--json"], None);
    out.status.success().then(|| serde_json::from_str(&common::stdout(&out)).ok()).flatten()
}

/// A member that vanishes without leaving, together with its coordinator's broker, is expired
/// by the next coordinator (which resumes the group from the metadata) and recorded gone: any
/// broker then describes the group without members and deletes it. While it was a member, the
/// group could not be deleted through another broker.
#[test]
fn a_vanished_member_is_expired_by_the_next_coordinator_and_the_group_deleted_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--broker-session-timeout-ms", "2000"]);
    let addrs = cluster.kafka_addrs();
    let native: Vec<String> = cluster.native_addrs().split(',').map(str::to_string).collect();
    let mut client = ClusterClient::new(&addrs, TOPIC, "cluster-groups-expiry");
    create_topic(&mut client);
    let deadline = Instant::now() + STEP_LIMIT;
    let (coordinator, member, generation) = loop {
        if let Some((id, addr)) = find_coordinator(&mut client, &addrs)
            && let Ok((member, generation)) = join_and_sync_for(&mut client, &addr, 4_000)
        {
            break (id, member, generation);
        }
        assert!(Instant::now() < deadline, "the consumer never joined\n{}", cluster.logs_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    };
    commit_through_the_coordinator(
        &cluster,
        &mut client,
        &addrs,
        None,
        &member,
        generation,
        [1, 2, 3],
    );
    let killed = cluster.index(coordinator);
    let other = &native[(killed + 1) % native.len()];
    let d = describe_natively(other).expect("the group is described through another broker");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(1), "{d}");
    let refused = common::run_cli(other, &["group", "delete", GROUP], None);
    assert!(!refused.status.success(), "a group with a member is not deleted");
    assert!(common::stderr(&refused).contains(&member), "{}", common::stderr(&refused));

    // The member and its coordinator's broker vanish together.
    cluster.kill(killed);
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let d = describe_natively(other);
        let members = d.as_ref().and_then(|d| d["members"].as_array().map(Vec::len));
        if members == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the vanished member is still listed: {d:?}\n{}",
            cluster.logs_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    common::ok(common::run_cli(other, &["group", "delete", GROUP], None));
    let d = describe_natively(other);
    assert!(d.is_none(), "deleted, yet described: {d:?}");
}
