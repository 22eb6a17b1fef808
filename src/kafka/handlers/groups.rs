//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, LeaveGroup, OffsetCommit,
//! OffsetFetch (Heartbeat is one line in the dispatch), and their administration: ListGroups,
//! DescribeGroups, DeleteGroups, OffsetDelete. The coordinator's state lives in the broker; in a
//! cluster each group has one coordinating broker (`Cluster::coordinator_for`), and a group
//! request reaching any other is answered NOT_COORDINATOR, so the client finds it again.
//!
//! In a cluster, committed offsets and each group's settled membership live in the replicated
//! metadata: a coordinator commits and reads offsets there, records the group after every
//! completed rebalance, and resumes a group it does not know (or knows only at an older
//! generation) from there, so members keep their generation when the coordinator moves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, TRANSACTIONS_REFUSED, broker_error_code, cluster_error_code, code, s};
use crate::broker::coordinator::{JoinOutcome, JoinParams, Reply, SyncOutcome};
use crate::broker::validate_group_name;
use crate::kafka::consumer_protocol;

/// Longest metadata string an OffsetCommit may carry (Kafka's offset.metadata.max.bytes).
const MAX_COMMIT_METADATA_BYTES: usize = 4096;

/// How long a coordinator waits for a group's membership to be recorded before it answers the
/// leader's SyncGroup anyway (the group works here; only a later move would lose it).
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// NOT_COORDINATOR when this broker does not coordinate `group`, else 0. In a cluster, a group
/// it coordinates is first resumed from the metadata when the metadata knows it better.
fn not_coordinator(ctx: &Ctx, group: &str) -> i16 {
    if !ctx.coordinates(group) {
        return code(ResponseError::NotCoordinator);
    }
    resume(ctx, group);
    0
}

/// In a cluster: installs the group as the metadata last recorded it when this coordinator does
/// not know it, or knows it only at an older generation (it moved here, this broker restarted,
/// or it moved away and back while it went on elsewhere).
fn resume(ctx: &Ctx, group: &str) {
    if !ctx.cluster.is_clustered() {
        return;
    }
    let known = ctx.coordinator().generation(group);
    if let Some(settled) = ctx.cluster.recorded_group(group, known) {
        let (generation, members) = (settled.generation, settled.members.len());
        if ctx.coordinator().install(Instant::now(), group, settled) {
            tracing::info!(group, generation, members, "consumer group resumed from the metadata");
        }
    }
}

/// In a cluster: records the group as it is now settled (Stable or Empty) in the metadata,
/// bounded by [`RECORD_WAIT`].
async fn record(ctx: &Ctx, group: &str) {
    if !ctx.cluster.is_clustered() {
        return;
    }
    let Some(settled) = ctx.coordinator().settled(group) else { return };
    let generation = settled.generation;
    match tokio::time::timeout(RECORD_WAIT, ctx.cluster.record_group(group, &settled)).await {
        Ok(Ok(())) => tracing::debug!(group, generation, "consumer group recorded"),
        Ok(Err(e)) => tracing::warn!(group, generation, error = %e, "recording the group failed"),
        Err(_) => tracing::warn!(group, generation, "recording the group timed out"),
    }
}

/// The coordinator's clock, a few times a second: expires silent members. In a cluster, a group
/// that emptied that way is recorded (as a rebalance's outcome is), and each group the metadata
/// records with members that this broker coordinates but does not hold (it restarted, or the
/// group moved here while nobody asked) is resumed, so that its members' sessions run here and
/// a member that never comes back is expired and recorded gone, not listed forever.
pub(crate) async fn tick(ctx: &Ctx, now: Instant) {
    let emptied = ctx.coordinator().tick(now);
    if !ctx.cluster.is_clustered() {
        return;
    }
    for (group, settled) in emptied {
        let generation = settled.generation;
        match tokio::time::timeout(RECORD_WAIT, ctx.cluster.record_group(&group, &settled)).await {
            Ok(Ok(())) => tracing::info!(group, generation, "consumer group emptied, recorded"),
            Ok(Err(e)) => {
                tracing::warn!(group, generation, error = %e, "recording the group failed")
            }
            Err(_) => tracing::warn!(group, generation, "recording the group timed out"),
        }
    }
    for group in ctx.cluster.recorded_groups_with_members() {
        if ctx.coordinates(&group) {
            resume(ctx, &group);
        }
    }
}

/// Heartbeat: 0 to carry on, else the error code.
pub(super) fn heartbeat(ctx: &Ctx, r: &HeartbeatRequest) -> i16 {
    let refused = not_coordinator(ctx, &r.group_id);
    if refused != 0 {
        return refused;
    }
    ctx.coordinator().heartbeat(Instant::now(), &r.group_id, r.generation_id, &r.member_id)
}

/// The broker coordinating `group`: (node id, host, port, error code). A coordinator that is not
/// (or no longer) live is COORDINATOR_NOT_AVAILABLE, which clients retry.
fn coordinator_of(ctx: &Ctx, group: &str) -> (i32, StrBytes, i32, i16) {
    let id = ctx.cluster.coordinator_for(group);
    match ctx.endpoint(id) {
        Some(e) => (e.node_id, s(&e.host), e.port, 0),
        None => (-1, s(""), -1, code(ResponseError::CoordinatorNotAvailable)),
    }
}

pub(super) fn find_coordinator(
    ctx: &Ctx,
    r: FindCoordinatorRequest,
    v: i16,
    client_id: &str,
) -> FindCoordinatorResponse {
    // key_type 1 asks for a transaction coordinator: we have none, and never will while
    // transactions are out of scope. COORDINATOR_NOT_AVAILABLE would be retried until the client's
    // own timeout; TRANSACTIONAL_ID_AUTHORIZATION_FAILED fails it at once (see
    // `TRANSACTIONS_REFUSED`).
    let refused = r.key_type == 1;
    if refused {
        let ids: Vec<&str> = if v >= 4 {
            r.coordinator_keys.iter().map(|k| k.as_str()).collect()
        } else {
            vec![r.key.as_str()]
        };
        tracing::warn!(
            client_id,
            transactional_id = ids.join(",").as_str(),
            "refused FindCoordinator(TRANSACTION): {TRANSACTIONS_REFUSED}"
        );
    }
    let err = code(ResponseError::TransactionalIdAuthorizationFailed);
    if v >= 4 {
        let coordinators = r
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = find_coordinator_response::Coordinator::default().with_key(k.clone());
                if refused {
                    c.with_error_code(err)
                        .with_error_message(Some(s(TRANSACTIONS_REFUSED)))
                        .with_node_id((-1).into())
                        .with_port(-1)
                } else {
                    let (id, host, port, error) = coordinator_of(ctx, k);
                    c.with_node_id(id.into()).with_host(host).with_port(port).with_error_code(error)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if refused {
        // v0 has no key_type, so a refusal is always v1+, where the message field exists.
        return FindCoordinatorResponse::default()
            .with_error_code(err)
            .with_error_message(Some(s(TRANSACTIONS_REFUSED)))
            .with_node_id((-1).into())
            .with_port(-1);
    }
    let (id, host, port, error) = coordinator_of(ctx, &r.key);
    FindCoordinatorResponse::default()
        .with_node_id(id.into())
        .with_host(host)
        .with_port(port)
        .with_error_code(error)
}

pub(super) async fn join_group(
    ctx: &Ctx,
    r: JoinGroupRequest,
    v: i16,
    client_id: String,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let refused = match validate_group_name(&r.group_id) {
        Err(e) => broker_error_code(&e),
        Ok(()) => not_coordinator(ctx, &r.group_id),
    };
    let outcome = if refused != 0 {
        JoinOutcome {
            error_code: refused,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: r.member_id.to_string(),
            members: Vec::new(),
        }
    } else {
        let session = Duration::from_millis(r.session_timeout_ms.max(0) as u64);
        let rebalance = if v >= 1 {
            Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64)
        } else {
            session
        };
        let params = JoinParams {
            group_id: r.group_id.to_string(),
            member_id: r.member_id.to_string(),
            client_id,
            // As Kafka shows it: "/" and the address of the member's connection.
            client_host: format!("/{}", peer.ip()),
            group_instance_id: if v >= 5 {
                r.group_instance_id.as_ref().map(|i| i.to_string())
            } else {
                None
            },
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: r.protocol_type.to_string(),
            protocols: r
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: v >= 4,
        };
        let reply = ctx.coordinator().join(Instant::now(), params);
        match reply {
            Reply::Now(o) => o,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinOutcome {
                error_code: code(ResponseError::RebalanceInProgress),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id: r.member_id.to_string(),
                members: Vec::new(),
            }),
        }
    };
    tracing::debug!(group = r.group_id.as_str(), member = %outcome.member_id, error = outcome.error_code,
        generation = outcome.generation_id, leader = %outcome.leader, "JoinGroup answered");
    let mut res = JoinGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_generation_id(outcome.generation_id)
        .with_leader(s(&outcome.leader))
        .with_member_id(s(&outcome.member_id))
        .with_members(
            outcome
                .members
                .iter()
                .map(|(id, md)| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_metadata(md.clone())
                })
                .collect(),
        );
    // protocol_name is a non-null string before v7; protocol_type only exists from v7.
    if v >= 7 {
        res = res
            .with_protocol_type(outcome.protocol_type.as_deref().map(s))
            .with_protocol_name(outcome.protocol_name.as_deref().map(s));
    } else {
        res = res.with_protocol_name(Some(s(outcome.protocol_name.as_deref().unwrap_or(""))));
    }
    res
}

pub(super) async fn sync_group(ctx: &Ctx, r: SyncGroupRequest, v: i16) -> SyncGroupResponse {
    let refused = not_coordinator(ctx, &r.group_id);
    if refused != 0 {
        return SyncGroupResponse::default().with_error_code(refused);
    }
    let assignments =
        r.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let reply = ctx.coordinator().sync(
        Instant::now(),
        &r.group_id,
        r.generation_id,
        &r.member_id,
        assignments,
    );
    let outcome = match reply {
        Reply::Now(o) => o,
        Reply::Later(rx) => rx.await.unwrap_or(SyncOutcome {
            error_code: code(ResponseError::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }),
    };
    if outcome.error_code == 0 {
        let settled_by_this_leader = ctx
            .coordinator()
            .settled(&r.group_id)
            .is_some_and(|g| g.generation == r.generation_id && g.leader == r.member_id.as_str());
        // The leader's SyncGroup completed the generation: record it before answering, so a
        // coordinator that takes over knows the generation the members commit with.
        if settled_by_this_leader {
            record(ctx, &r.group_id).await;
        }
    }
    tracing::debug!(group = r.group_id.as_str(), member = %r.member_id, error = outcome.error_code,
        assignment_bytes = outcome.assignment.len(), "SyncGroup answered");
    let mut res = SyncGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_assignment(outcome.assignment);
    if v >= 5 {
        res = res
            .with_protocol_type(outcome.protocol_type.as_deref().map(s))
            .with_protocol_name(outcome.protocol_name.as_deref().map(s));
    }
    res
}

pub(super) async fn leave_group(ctx: &Ctx, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if v >= 3 {
        r.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![r.member_id.to_string()]
    };
    let refused = not_coordinator(ctx, &r.group_id);
    let codes = if refused != 0 {
        vec![refused; ids.len()]
    } else {
        let codes = ctx.coordinator().leave(Instant::now(), &r.group_id, &ids);
        // The last member gone: the group is Empty, and a new coordinator must not resume
        // members that left.
        if ctx.coordinator().describe(&r.group_id).is_some_and(|d| d.members.is_empty()) {
            record(ctx, &r.group_id).await;
        }
        codes
    };
    if v >= 3 {
        let members = r
            .members
            .iter()
            .zip(&codes)
            .map(|(m, c)| {
                leave_group_response::MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(*c)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
    }
}

/// Commits every partition of the request with one write of the group's file, on the blocking
/// pool: an 8,192-partition commit used to rewrite the file once per partition on an async worker.
pub(super) async fn offset_commit(ctx: &Ctx, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_err = match validate_group_name(&r.group_id) {
        Err(e) => broker_error_code(&e),
        Ok(()) if not_coordinator(ctx, &r.group_id) != 0 => code(ResponseError::NotCoordinator),
        Ok(()) => ctx.coordinator().check_commit(
            Instant::now(),
            &r.group_id,
            r.generation_id_or_member_epoch,
            &r.member_id,
        ),
    };
    // Per partition: an error code decided here, or its index in `batch`.
    let mut batch: Vec<(String, u32, i64, String)> = Vec::new();
    let slots: Vec<Vec<Result<usize, i16>>> = r
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| {
                    if group_err != 0 {
                        Err(group_err)
                    } else if p.partition_index < 0 {
                        // The offset itself is kept as sent, as Kafka keeps it: kafkajs's
                        // resetOffsets commits -2 (earliest) and -1 (latest) sentinels.
                        Err(code(ResponseError::InvalidCommitOffsetSize))
                    } else if p
                        .committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_COMMIT_METADATA_BYTES)
                    {
                        Err(code(ResponseError::OffsetMetadataTooLarge))
                    } else {
                        batch.push((
                            t.name.to_string(),
                            p.partition_index as u32,
                            p.committed_offset,
                            p.committed_metadata.as_deref().unwrap_or("").to_string(),
                        ));
                        Ok(batch.len() - 1)
                    }
                })
                .collect()
        })
        .collect();
    let n = batch.len();
    let codes: Vec<i16> = if batch.is_empty() {
        Vec::new()
    } else if ctx.cluster.is_clustered() {
        match ctx.cluster.commit_group_offsets(&r.group_id, &batch).await {
            Ok(known) => known
                .into_iter()
                .map(|k| if k { 0 } else { code(ResponseError::UnknownTopicOrPartition) })
                .collect(),
            Err(e) => {
                tracing::warn!(group = r.group_id.as_str(), error = %e, "offset commit failed");
                // Retriable: the client finds the coordinator again and commits the same offsets.
                vec![code(ResponseError::CoordinatorNotAvailable); n]
            }
        }
    } else {
        let (broker, group) = (ctx.broker.clone(), r.group_id.to_string());
        let commit = move || broker.commit_offsets_with_metadata(&group, &batch);
        match tokio::task::spawn_blocking(commit).await {
            Ok(Ok(checks)) => {
                checks.iter().map(|c| c.as_ref().map_or_else(broker_error_code, |()| 0)).collect()
            }
            Ok(Err(e)) => {
                tracing::warn!(group = r.group_id.as_str(), error = %e, "offset commit failed");
                vec![broker_error_code(&e); n]
            }
            Err(e) => {
                tracing::error!(group = r.group_id.as_str(), error = %e, "offset commit task failed");
                vec![code(ResponseError::UnknownServerError); n]
            }
        }
    };
    let topics = r
        .topics
        .iter()
        .zip(slots)
        .map(|(t, slots)| {
            let partitions = t
                .partitions
                .iter()
                .zip(slots)
                .map(|(p, slot)| {
                    let err = match slot {
                        // One code per offset handed in; a missing one is no success.
                        Ok(i) => codes
                            .get(i)
                            .copied()
                            .unwrap_or(ResponseError::UnknownServerError.code()),
                        Err(c) => c,
                    };
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(err)
                })
                .collect();
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One partition's committed position: (partition, offset or -1, metadata, error code).
type PartitionOffset = (i32, i64, String, i16);
/// One topic's committed offsets.
type TopicOffsets = (String, Vec<PartitionOffset>);

/// The committed offsets of a group: for the named (topic, partitions), or all it has.
fn committed(
    ctx: &Ctx,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, i16> {
    validate_group_name(group).map_err(|e| broker_error_code(&e))?;
    if !ctx.coordinates(group) {
        return Err(code(ResponseError::NotCoordinator));
    }
    let clustered = ctx.cluster.is_clustered();
    let wanted = match wanted {
        Some(w) => w,
        None => {
            let all = if clustered {
                ctx.cluster.group_offsets(group).map_err(|e| cluster_error_code(&e))?
            } else {
                ctx.broker.group_offsets_as_committed(group).map_err(|e| broker_error_code(&e))?
            };
            let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
            for (topic, partition, _) in all {
                match by_topic.last_mut() {
                    Some((t, ps)) if *t == topic => ps.push(partition as i32),
                    _ => by_topic.push((topic, vec![partition as i32])),
                }
            }
            by_topic
        }
    };
    Ok(wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let parts = partitions
                .into_iter()
                .map(|p| {
                    if p < 0 {
                        return (
                            p,
                            -1,
                            String::new(),
                            code(ResponseError::UnknownTopicOrPartition),
                        );
                    }
                    let found = if clustered {
                        ctx.cluster.group_offset(group, &topic, p as u32).map_err(|e| e.to_string())
                    } else {
                        ctx.broker
                            .committed_offset_with_metadata(group, &topic, p as u32)
                            .map_err(|e| e.to_string())
                    };
                    match found {
                        Ok(Some((o, m))) => (p, o, m, 0),
                        Ok(None) => (p, -1, String::new(), 0),
                        // No commit yet for a topic the broker does not know is just "none".
                        Err(_) => (p, -1, String::new(), 0),
                    }
                })
                .collect();
            (topic, parts)
        })
        .collect())
}

pub(super) fn offset_fetch(ctx: &Ctx, r: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    if v >= 8 {
        let groups = r
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect()
                });
                let res = offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match committed(ctx, &g.group_id, wanted) {
                    Ok(topics) => res.with_topics(
                        topics
                            .into_iter()
                            .map(|(t, parts)| {
                                offset_fetch_response::OffsetFetchResponseTopics::default()
                                    .with_name(s(&t).into())
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, m, e)| {
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_metadata(Some(s(&m)))
                                                    .with_error_code(e)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(c) => res.with_error_code(c),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = r
        .topics
        .as_ref()
        .map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
    match committed(ctx, &r.group_id, wanted) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(s(&t).into())
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, m, e)| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_metadata(Some(s(&m)))
                                        .with_error_code(e)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(c) if v >= 2 => OffsetFetchResponse::default().with_error_code(c),
        Err(_) => OffsetFetchResponse::default(),
    }
}

pub(super) fn list_groups(ctx: &Ctx, r: ListGroupsRequest, v: i16) -> ListGroupsResponse {
    // Filters are empty (everything) before the versions that carry them.
    let states: Vec<String> = if v >= 4 {
        r.states_filter.iter().map(|f| f.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> =
        if v >= 5 { r.types_filter.iter().map(|f| f.to_lowercase()).collect() } else { Vec::new() };
    // Every group here is a classic group (KIP-848's "consumer" groups are not served).
    if !types.is_empty() && !types.iter().any(|t| t == "classic") {
        return ListGroupsResponse::default();
    }
    let listed = if ctx.cluster.is_clustered() {
        // The groups the metadata knows that this broker coordinates, as its coordinator sees
        // them when it holds them live.
        let mut all: std::collections::BTreeMap<String, (String, String)> = ctx
            .cluster
            .coordinated_groups()
            .into_iter()
            .map(|(g, state, protocol_type)| (g, (state, protocol_type)))
            .collect();
        let live = ctx.coordinator().list();
        for (g, state, protocol_type) in live {
            if ctx.coordinates(&g) {
                all.insert(g, (state.name().to_owned(), protocol_type));
            }
        }
        all.into_iter().map(|(g, (state, protocol_type))| (g, state, protocol_type)).collect()
    } else {
        ctx.broker.list_group_states()
    };
    let groups = listed
        .into_iter()
        .filter(|(_, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .map(|(group, state, protocol_type)| {
            let mut g = list_groups_response::ListedGroup::default()
                .with_group_id(s(&group).into())
                .with_protocol_type(s(&protocol_type));
            if v >= 4 {
                g = g.with_group_state(s(&state));
            }
            if v >= 5 {
                g = g.with_group_type(s("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe_groups(
    ctx: &Ctx,
    r: DescribeGroupsRequest,
    v: i16,
) -> DescribeGroupsResponse {
    let groups = r
        .groups
        .iter()
        .map(|group_id| {
            let mut g =
                describe_groups_response::DescribedGroup::default().with_group_id(group_id.clone());
            if v >= 3 {
                // Not asked for (or not known): Kafka's "unset" value.
                g = g.with_authorized_operations(i32::MIN);
            }
            if let Err(e) = validate_group_name(group_id) {
                return g.with_error_code(broker_error_code(&e)).with_group_state(s("Dead"));
            }
            if not_coordinator(ctx, group_id) != 0 {
                return g.with_error_code(code(ResponseError::NotCoordinator));
            }
            let described = ctx.coordinator().describe(group_id);
            let Some(d) = described else {
                // Offsets only: Empty (a "simple" group: no protocol type, as ListGroups says);
                // unknown: Dead (error NONE, as Kafka before v6).
                if ctx.cluster.is_clustered() {
                    let offsets = ctx.cluster.group_offsets(group_id).unwrap_or_default();
                    return g.with_group_state(s(if offsets.is_empty() {
                        "Dead"
                    } else {
                        "Empty"
                    }));
                }
                let status = ctx.broker.group_status(group_id, |_| Vec::new());
                return g.with_group_state(s(&status.state));
            };
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    let mut dm = describe_groups_response::DescribedGroupMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_client_id(s(&m.client_id))
                        .with_client_host(s(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if v >= 4 {
                        dm = dm.with_group_instance_id(m.group_instance_id.as_deref().map(s));
                    }
                    dm
                })
                .collect();
            g.with_group_state(s(d.state.name()))
                .with_protocol_type(s(&d.protocol_type))
                .with_protocol_data(s(&d.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) async fn delete_groups(ctx: &Ctx, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for group in &r.groups_names {
        let (broker, name) = (ctx.broker.clone(), group.to_string());
        let err = if validate_group_name(group).is_ok() && not_coordinator(ctx, group) != 0 {
            code(ResponseError::NotCoordinator)
        } else if ctx.cluster.is_clustered() {
            delete_clustered(ctx, group).await
        } else {
            match tokio::task::spawn_blocking(move || broker.delete_group(&name)).await {
                Ok(Ok(())) => {
                    tracing::info!(group = group.as_str(), "consumer group deleted");
                    0
                }
                Ok(Err(e)) => {
                    tracing::debug!(group = group.as_str(), error = %e, "DeleteGroups refused");
                    broker_error_code(&e)
                }
                Err(e) => {
                    tracing::error!(group = group.as_str(), error = %e, "group delete task failed");
                    code(ResponseError::UnknownServerError)
                }
            }
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(group.clone())
                .with_error_code(err),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(super) async fn offset_delete(ctx: &Ctx, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if let Err(e) = validate_group_name(&r.group_id) {
        return OffsetDeleteResponse::default().with_error_code(broker_error_code(&e));
    }
    if not_coordinator(ctx, &r.group_id) != 0 {
        return OffsetDeleteResponse::default()
            .with_error_code(code(ResponseError::NotCoordinator));
    }
    // Topics a live member subscribes to keep their offsets (GROUP_SUBSCRIBED_TO_TOPIC).
    let described = ctx.coordinator().describe(&r.group_id);
    let subscribed: Vec<String> = described
        .iter()
        .flat_map(|d| d.members.iter())
        .flat_map(|m| consumer_protocol::subscribed_topics(&m.metadata))
        .collect();
    if let Some(d) = &described
        && !d.members.is_empty()
        && d.protocol_type != "consumer"
    {
        // Kafka's rule: only a consumer group's subscriptions can be checked.
        return OffsetDeleteResponse::default().with_error_code(code(ResponseError::NonEmptyGroup));
    }
    let mut deletable: Vec<(String, u32)> = Vec::new();
    let mut per_topic: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    for t in &r.topics {
        let busy = subscribed.iter().any(|s| s.as_str() == t.name.as_str());
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let err = if busy {
                    code(ResponseError::GroupSubscribedToTopic)
                } else if p.partition_index < 0 {
                    code(ResponseError::UnknownTopicOrPartition)
                } else {
                    deletable.push((t.name.to_string(), p.partition_index as u32));
                    0
                };
                (p.partition_index, err)
            })
            .collect();
        per_topic.push((t.name.clone(), parts));
    }
    let top = if ctx.cluster.is_clustered() {
        match ctx.cluster.delete_group_offsets(&r.group_id, &deletable).await {
            Ok(true) => 0,
            // No offsets in the metadata: fine for a group this coordinator knows.
            Ok(false) if described.is_some() => 0,
            Ok(false) => code(ResponseError::GroupIdNotFound),
            Err(e) => {
                tracing::warn!(group = r.group_id.as_str(), error = %e, "OffsetDelete failed");
                code(ResponseError::CoordinatorNotAvailable)
            }
        }
    } else {
        offset_delete_local(ctx, &r.group_id, deletable).await
    };
    if top != 0 {
        return OffsetDeleteResponse::default().with_error_code(top);
    }
    let topics = per_topic
        .into_iter()
        .map(|(name, parts)| {
            offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            offset_delete_response::OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// A single node's OffsetDelete: the group's offset file, off the async workers.
async fn offset_delete_local(ctx: &Ctx, group: &str, deletable: Vec<(String, u32)>) -> i16 {
    let (broker, name) = (ctx.broker.clone(), group.to_string());
    let outcome =
        tokio::task::spawn_blocking(move || broker.delete_group_offsets(&name, &deletable)).await;
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::debug!(group, error = %e, "OffsetDelete refused");
            broker_error_code(&e)
        }
        Err(e) => {
            tracing::error!(group, error = %e, "offset delete task failed");
            code(ResponseError::UnknownServerError)
        }
    }
}

/// DeleteGroups in a cluster: refused while the group has members here; else its offsets and
/// recorded membership leave the metadata, and this coordinator forgets it.
async fn delete_clustered(ctx: &Ctx, group: &str) -> i16 {
    if let Err(e) = validate_group_name(group) {
        return broker_error_code(&e);
    }
    if ctx.coordinator().has_members(group) {
        return code(ResponseError::NonEmptyGroup);
    }
    let known_here = ctx.coordinator().describe(group).is_some();
    match ctx.cluster.delete_group(group).await {
        Ok(deleted) if deleted || known_here => {
            ctx.coordinator().forget(group);
            tracing::info!(group, "consumer group deleted");
            0
        }
        Ok(_) => code(ResponseError::GroupIdNotFound),
        Err(e) => {
            tracing::warn!(group, error = %e, "DeleteGroups failed");
            code(ResponseError::CoordinatorNotAvailable)
        }
    }
}
