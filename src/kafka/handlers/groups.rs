//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, LeaveGroup, OffsetCommit and
//! OffsetFetch (Heartbeat is one line in the dispatch).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

use super::{Ctx, NODE_ID, TRANSACTIONS_REFUSED, broker_error_code, code, s};
use crate::broker::validate_group_name;
use crate::kafka::group::{JoinOutcome, JoinParams, Reply, SyncOutcome};

pub(super) fn find_coordinator(
    ctx: &Ctx,
    r: FindCoordinatorRequest,
    v: i16,
    client_id: &str,
) -> FindCoordinatorResponse {
    let host = s(&ctx.config.advertised_host);
    let port = ctx.config.advertised_port;
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
                    c.with_node_id(NODE_ID.into()).with_host(host.clone()).with_port(port)
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
    FindCoordinatorResponse::default().with_node_id(NODE_ID.into()).with_host(host).with_port(port)
}

pub(super) async fn join_group(
    ctx: &Ctx,
    r: JoinGroupRequest,
    v: i16,
    client_id: String,
) -> JoinGroupResponse {
    let outcome = if let Err(e) = validate_group_name(&r.group_id) {
        JoinOutcome {
            error_code: broker_error_code(&e),
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

pub(super) fn leave_group(ctx: &Ctx, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if v >= 3 {
        r.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![r.member_id.to_string()]
    };
    let codes = ctx.coordinator().leave(Instant::now(), &r.group_id, &ids);
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
        Ok(()) => ctx.coordinator().check_commit(
            Instant::now(),
            &r.group_id,
            r.generation_id_or_member_epoch,
            &r.member_id,
        ),
    };
    // Per partition: an error code decided here, or its index in `batch`.
    let mut batch: Vec<(String, u32, u64)> = Vec::new();
    let slots: Vec<Vec<Result<usize, i16>>> = r
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| {
                    if group_err != 0 {
                        Err(group_err)
                    } else if p.partition_index < 0 || p.committed_offset < 0 {
                        Err(code(ResponseError::InvalidCommitOffsetSize))
                    } else {
                        batch.push((
                            t.name.to_string(),
                            p.partition_index as u32,
                            p.committed_offset as u64,
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
    } else {
        let (broker, group) = (ctx.broker.clone(), r.group_id.to_string());
        match tokio::task::spawn_blocking(move || broker.commit_offsets(&group, &batch)).await {
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

/// One topic's committed offsets: (partition, offset or -1, error code) per partition.
type TopicOffsets = (String, Vec<(i32, i64, i16)>);

/// The committed offsets of a group: for the named (topic, partitions), or all it has.
fn committed(
    ctx: &Ctx,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, i16> {
    validate_group_name(group).map_err(|e| broker_error_code(&e))?;
    let wanted = match wanted {
        Some(w) => w,
        None => {
            let all = ctx.broker.group_offsets(group).map_err(|e| broker_error_code(&e))?;
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
                        return (p, -1, code(ResponseError::UnknownTopicOrPartition));
                    }
                    match ctx.broker.committed_offset(group, &topic, p as u32) {
                        Ok(o) => (p, o.map_or(-1, |o| o as i64), 0),
                        // No commit yet for a topic the broker does not know is just "none".
                        Err(_) => (p, -1, 0),
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
                                            .map(|(p, o, e)| {
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
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
                                .map(|(p, o, e)| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
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
