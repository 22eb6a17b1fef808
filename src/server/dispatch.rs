//! One request in, one response out: translates native requests into cluster and broker calls,
//! and their errors into error codes. Produce, fetch, topic creation, deletion, config changes and
//! added partitions, and the leadership answers go through the [`Cluster`] (so in a cluster they
//! honour leadership and the high watermark, and change every broker); consumer groups go to
//! groups.rs; what stays local to this broker (describing configs, trims) goes to the broker.
//! Blocking broker work runs on the blocking pool. Never reads or writes sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::broker::topic_config::{ConfigOp, TopicConfigs};
use crate::broker::{AppendBatch, BrokerError, FetchResult};
use crate::cluster::{Acks, BrokerView, Cluster, ClusterError, PartitionView};
use crate::metrics::Listener;
use crate::protocol::{
    BrokerInfo, ClusterInfo, ErrorCode, FETCH_CONTINUE, Membership, PartitionState, Request,
    Response,
};
use crate::storage::StorageError;

use super::{PRODUCE_TIMEOUT, ServerConfig, groups};

/// What a request produced: a plain response, or fetched records to send from the mapping.
pub(crate) enum Reply {
    Response(Response),
    Fetched(FetchResult),
    /// Appended, waiting for the in-sync replicas: the connection goes on with its next
    /// requests and sends this reply, in order, once the future resolves.
    Pending(PendingReply),
}

/// A reply that is ready once its future resolves.
pub(crate) type PendingReply = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Response(r)
    }
}

/// The error code a broker error is reported with.
pub fn error_code(e: &BrokerError) -> ErrorCode {
    match e {
        BrokerError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        BrokerError::InvalidGroupName { .. } => ErrorCode::InvalidGroupName,
        BrokerError::UnknownTopic { .. } => ErrorCode::UnknownTopic,
        BrokerError::TopicAlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        BrokerError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        BrokerError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        BrokerError::PartitionCountNotIncreased { .. } => ErrorCode::InvalidPartitions,
        BrokerError::NoPartitions | BrokerError::EmptyBatch => ErrorCode::InvalidRequest,
        BrokerError::TooManyPartitions { .. } | BrokerError::TooManyTopics { .. } => {
            ErrorCode::LimitExceeded
        }
        BrokerError::Storage { source, .. } => match source {
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::RecordTooLarge { .. } | StorageError::BatchTooLarge { .. } => {
                ErrorCode::RecordTooLarge
            }
            StorageError::InvalidBatch { .. } | StorageError::UnsupportedBatch { .. } => {
                ErrorCode::InvalidRecord
            }
            _ => ErrorCode::Storage,
        },
        // Offline (damaged) data: Storage, whose message names the file; no new code, so
        // clients from before offline partitions still decode the error.
        BrokerError::Io { .. }
        | BrokerError::CorruptState { .. }
        | BrokerError::MissingPartitionDir { .. }
        | BrokerError::TopicOffline { .. }
        | BrokerError::PartitionOffline { .. }
        | BrokerError::GroupOffline { .. }
        | BrokerError::DataDirInUse { .. } => ErrorCode::Storage,
        BrokerError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
        BrokerError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
        BrokerError::ShuttingDown => ErrorCode::Internal,
    }
}

/// The error code a cluster error is reported with. Leadership that is elsewhere, moving or
/// behind maps to the retriable codes, so a client refreshes its leaders and tries again.
pub fn cluster_error_code(e: &ClusterError) -> ErrorCode {
    match e {
        ClusterError::NotLeader { .. } => ErrorCode::NotLeader,
        ClusterError::LeaderNotAvailable { .. } => ErrorCode::LeaderNotAvailable,
        ClusterError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        ClusterError::NotEnoughReplicasAfterAppend { .. } => {
            ErrorCode::NotEnoughReplicasAfterAppend
        }
        ClusterError::Timeout { .. } => ErrorCode::RequestTimedOut,
        ClusterError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        // The native protocol has no code of its own for it (its AddPartitions names no
        // replicas, so only a broker fenced while it is placed gets here); the message says why.
        ClusterError::InvalidReplicaAssignment { .. } => ErrorCode::InvalidRequest,
        ClusterError::Reassignment { .. }
        | ClusterError::Membership(_)
        | ClusterError::Throttle { .. } => ErrorCode::InvalidRequest,
        ClusterError::Broker(e) => error_code(e),
        // Native requests carry no leader epoch; these only come from a leadership change
        // racing the request: learn the leaders again.
        ClusterError::FencedLeaderEpoch { .. } => ErrorCode::NotLeader,
        ClusterError::UnknownLeaderEpoch { .. } => ErrorCode::LeaderNotAvailable,
        // The metadata group has no leader right now (an election is under way): retry later.
        ClusterError::NotController => ErrorCode::LeaderNotAvailable,
        // The metadata quorum did not answer in time: the change may or may not be committed.
        ClusterError::Raft(_) => ErrorCode::RequestTimedOut,
        // Leadership moves away at shutdown: the client finds the new leader.
        ClusterError::ShuttingDown => ErrorCode::NotLeader,
        ClusterError::Internal(_) | ClusterError::Start { .. } => ErrorCode::Internal,
    }
}

pub(crate) fn error_response(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error { code, message: message.into() }
}

pub(super) fn broker_error(e: &BrokerError) -> Response {
    let code = error_code(e);
    if matches!(code, ErrorCode::Storage | ErrorCode::Internal) {
        tracing::warn!("request failed: {e}");
    }
    error_response(code, e.to_string())
}

pub(super) fn cluster_error(e: &ClusterError) -> Response {
    let code = cluster_error_code(e);
    if matches!(code, ErrorCode::Storage | ErrorCode::Internal) {
        tracing::warn!("request failed: {e}");
    }
    error_response(code, e.to_string())
}

/// Runs synchronous broker work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| broker_error(&e)),
        Err(join) => {
            tracing::error!("broker task failed: {join}");
            Err(error_response(ErrorCode::Internal, "internal error"))
        }
    }
}

/// Per-connection state a request may read or change.
pub(crate) struct Session {
    pub(crate) authenticated: bool,
    /// Set when the connection must be closed after this response (a failed authentication).
    pub(crate) close: bool,
    /// Where the last successful fetch of each (topic, partition) ended: the start of a
    /// `FETCH_CONTINUE` fetch. One entry per partition this connection has read from (a few
    /// hundred bytes each), for as long as the connection lives.
    pub(crate) fetch_positions: HashMap<(String, u32), u64>,
}

impl Session {
    pub(crate) fn new() -> Session {
        Session { authenticated: false, close: false, fetch_positions: HashMap::new() }
    }
}

/// Handles one decoded request.
pub(crate) async fn handle(
    req: Request,
    cluster: &Arc<Cluster>,
    config: &ServerConfig,
    session: &mut Session,
    stop: &mut watch::Receiver<bool>,
) -> Reply {
    let metrics = cluster.broker().metrics().clone();
    metrics.record_request(Listener::Native, req.api_key().name());
    let reply = handle_request(req, cluster, config, session, stop).await;
    let count_error = move |reply: &Reply| {
        if let Reply::Response(Response::Error { code, .. }) = reply {
            metrics.record_request_error(Listener::Native, code.name());
        }
    };
    match reply {
        Reply::Pending(pending) => Reply::Pending(Box::pin(async move {
            let reply = pending.await;
            count_error(&reply);
            reply
        })),
        reply => {
            count_error(&reply);
            reply
        }
    }
}

async fn handle_request(
    req: Request,
    cluster: &Arc<Cluster>,
    config: &ServerConfig,
    session: &mut Session,
    stop: &mut watch::Receiver<bool>,
) -> Reply {
    if let Request::Authenticate { token } = &req {
        return match &config.auth_token {
            None => Response::Ok.into(),
            Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => {
                session.authenticated = true;
                Response::Ok.into()
            }
            Some(_) => {
                session.close = true;
                error_response(ErrorCode::Unauthorized, "invalid token").into()
            }
        };
    }
    if config.auth_token.is_some() && !session.authenticated {
        // Nothing is served before authentication; the connection is closed after this answer.
        session.close = true;
        return error_response(ErrorCode::Unauthorized, "authenticate first").into();
    }
    match run(req, cluster, config, session, stop).await {
        Ok(reply) => reply,
        Err(resp) => resp.into(),
    }
}

async fn run(
    req: Request,
    cluster: &Arc<Cluster>,
    config: &ServerConfig,
    session: &mut Session,
    stop: &mut watch::Receiver<bool>,
) -> Result<Reply, Response> {
    let broker = cluster.broker();
    let b = broker.clone();
    let reply: Reply = match req {
        Request::Authenticate { .. } => Response::Ok.into(),
        Request::CreateTopic { name, partitions, if_not_exists, configs } => {
            let description =
                create_topic(cluster, name, partitions, None, if_not_exists, configs).await?;
            Response::TopicCreated { description }.into()
        }
        Request::CreateReplicatedTopic {
            name,
            partitions,
            replication_factor,
            if_not_exists,
            configs,
        } => {
            let rf = Some(replication_factor);
            let description =
                create_topic(cluster, name, partitions, rf, if_not_exists, configs).await?;
            Response::TopicCreated { description }.into()
        }
        Request::AlterTopicConfigs { topic, set, delete } => {
            let ops: Vec<ConfigOp> = set
                .into_iter()
                .map(|(k, v)| ConfigOp::Set(k, v))
                .chain(delete.into_iter().map(ConfigOp::Delete))
                .collect();
            // Incremental (only the named configs change), all or nothing.
            cluster
                .alter_topic_configs(&topic, ops, false, false)
                .await
                .map_err(|e| cluster_error(&e))?;
            Response::Ok.into()
        }
        Request::DescribeTopicConfigs { topic } => {
            let entries = blocking(move || b.describe_topic_configs(&topic)).await?;
            Response::TopicConfigs { entries }.into()
        }
        Request::AddPartitions { topic, total } => {
            cluster
                .add_partitions(&topic, total, None, false)
                .await
                .map_err(|e| cluster_error(&e))?;
            let description = blocking(move || b.describe_topic(&topic)).await?;
            Response::PartitionsAdded { description }.into()
        }
        Request::DeleteTopic { name } => {
            cluster.delete_topic(&name).await.map_err(|e| cluster_error(&e))?;
            Response::Ok.into()
        }
        Request::Trim { topic, partition, before } => {
            let log_start_offset = blocking(move || b.trim(&topic, partition, before)).await?;
            Response::Trimmed { log_start_offset }.into()
        }
        Request::Append { topic, partition, key_hint, records } => {
            let started = Instant::now();
            let records = into_mut(records);
            let bytes = records.len() as u64;
            let batch = AppendBatch::Owned(records);
            // A native append is acknowledged once every in-sync replica has it (acks=all).
            let (r, acked) = cluster
                .append(&topic, partition, key_hint.as_deref(), batch, Acks::All, PRODUCE_TIMEOUT)
                .await
                .map_err(|e| cluster_error(&e))?;
            let metrics = broker.metrics().clone();
            let count = r.offsets.next - r.offsets.first;
            metrics.record_append(&topic, r.partition, count, bytes);
            let appended = Response::Appended {
                partition: r.partition,
                first_offset: r.offsets.first,
                next_offset: r.offsets.next,
            };
            match acked {
                None => {
                    metrics.observe_produce(Listener::Native, started.elapsed());
                    appended.into()
                }
                Some(acked) => Reply::Pending(Box::pin(async move {
                    match acked.await {
                        Ok(()) => {
                            metrics.observe_produce(Listener::Native, started.elapsed());
                            appended.into()
                        }
                        Err(e) => cluster_error(&e).into(),
                    }
                })),
            }
        }
        Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
            let started = Instant::now();
            let key = (topic, partition);
            let offset = if offset == FETCH_CONTINUE {
                match session.fetch_positions.get(&key) {
                    Some(&at) => at,
                    None => {
                        let msg = format!(
                            "no earlier fetch of {}/{} on this connection to continue",
                            key.0, key.1
                        );
                        return Err(error_response(ErrorCode::InvalidRequest, msg));
                    }
                }
            } else {
                offset
            };
            let (topic, partition) = (&key.0, key.1);
            // Leave room for the response head within the frame limit the client enforces.
            let max_bytes = (max_bytes as usize).min(config.max_frame_bytes as usize / 2);
            let max_wait = Duration::from_millis(u64::from(max_wait_ms)).min(config.max_wait);
            // Native fetches carry no leader epoch; the cluster checks leadership itself.
            let fetch = |wait| cluster.fetch(topic, partition, offset, max_bytes, 1, wait, None);
            let fetched = if *stop.borrow() {
                fetch(Duration::ZERO).await
            } else {
                tokio::select! {
                    r = fetch(max_wait) => r,
                    // Shutting down: answer now with whatever is there.
                    _ = stop.changed() => fetch(Duration::ZERO).await,
                }
            };
            let fetched = fetched.map_err(|e| cluster_error(&e))?;
            let (records, next) = if fetched.records.is_empty() {
                (0, offset)
            } else {
                let r = &fetched.records;
                (r.next_offset() - r.first_offset(), r.next_offset())
            };
            let metrics = broker.metrics();
            metrics.record_fetch(topic, partition, records, fetched.records.len() as u64);
            session.fetch_positions.insert(key, next);
            metrics.observe_fetch(Listener::Native, started.elapsed());
            Reply::Fetched(fetched)
        }
        Request::Describe { topic: Some(name) } => {
            let d = broker.describe_topic(&name).map_err(|e| broker_error(&e))?;
            Response::Described { topics: vec![d] }.into()
        }
        Request::Describe { topic: None } => {
            Response::Described { topics: broker.describe_all() }.into()
        }
        Request::ListTopics => {
            Response::Topics { names: broker.list_topics().into_iter().map(|t| t.name).collect() }
                .into()
        }
        Request::CommitOffset { group, topic, partition, offset } => {
            groups::commit_offset(cluster, group, topic, partition, offset).await?.into()
        }
        Request::FetchOffset { group, topic, partition } => {
            groups::fetch_offset(cluster, &group, &topic, partition)?.into()
        }
        Request::ListGroups => groups::list_groups(cluster)?.into(),
        Request::GroupOffsets { group } => groups::group_offsets(cluster, &group)?.into(),
        Request::DeleteGroup { group } => groups::delete_group(cluster, group).await?.into(),
        Request::DescribeGroup { group } => groups::describe_group(cluster, &group)?.into(),
        Request::ResetOffsets { group, offsets } => {
            let offsets = offsets.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
            groups::reset_offsets(cluster, group, offsets).await?.into()
        }
        Request::ElectLeaders { topic } => {
            let elections = cluster
                .elect_preferred_leaders(topic.as_deref())
                .await
                .map_err(|e| cluster_error(&e))?;
            Response::LeadersElected { elections }.into()
        }
        Request::ReassignPartitions { moves, throttle_bytes_per_s } => {
            let starts = moves.iter().any(|m| !m.replicas.is_empty());
            for m in moves {
                // Every start carries the throttle: a move ending between two starts may have
                // lifted it, and each start sets it again in the same step.
                let r = if m.replicas.is_empty() {
                    cluster.cancel_reassignment(&m.topic, m.partition).await
                } else {
                    cluster
                        .reassign_partition(
                            &m.topic,
                            m.partition,
                            &m.replicas,
                            throttle_bytes_per_s,
                        )
                        .await
                };
                r.map_err(|e| cluster_error(&e))?;
            }
            if !starts && let Some(t) = throttle_bytes_per_s {
                cluster.set_reassignment_throttle(t).await.map_err(|e| cluster_error(&e))?;
            }
            Response::Ok.into()
        }
        Request::ListReassignments { with_bytes } => Response::Reassignments {
            reassignments: cluster.reassignments(),
            throttle_bytes_per_s: cluster.reassignment_throttle(),
            with_bytes,
        }
        .into(),
        Request::DecommissionBroker { broker, cancel } => {
            cluster.decommission_broker(broker, cancel).await.map_err(|e| cluster_error(&e))?;
            Response::Ok.into()
        }
        Request::ChangeVoter { broker, add } => {
            cluster.change_voter(broker, add).await.map_err(|e| cluster_error(&e))?;
            Response::Ok.into()
        }
        Request::DescribeMembership => {
            let brokers = cluster.brokers();
            let ids = |pick: fn(&BrokerView) -> bool| {
                brokers.iter().filter(|b| pick(b)).map(|b| b.id).collect()
            };
            let membership =
                Membership { voters: ids(|b| b.voter), decommissioned: ids(|b| b.decommissioned) };
            Response::Membership { membership }.into()
        }
        Request::ClusterStatus => {
            let s = cluster.status();
            let status = ClusterInfo {
                node_id: s.node_id,
                clustered: s.clustered,
                controller: s.controller,
                brokers: s.brokers.into_iter().map(broker_info).collect(),
                under_replicated: s.under_replicated.into_iter().map(partition_state).collect(),
                offline: s.offline.into_iter().map(partition_state).collect(),
            };
            Response::ClusterStatus { status }.into()
        }
        Request::DescribePartitions { topic } => {
            let partitions = match topic {
                Some(name) => {
                    let view = cluster.topic_view(&name);
                    if view.is_empty() {
                        // Say why, as Describe would: a bad name, or no such topic. A topic that
                        // is offline here (its topic.json damaged) has no partitions to show:
                        // Describe says why.
                        broker.describe_topic(&name).map_err(|e| broker_error(&e))?;
                    }
                    view
                }
                // The cluster's topics, also those this broker has not created on disk yet.
                None => cluster.topic_names().iter().flat_map(|t| cluster.topic_view(t)).collect(),
            };
            let brokers = cluster.brokers().into_iter().map(broker_info).collect();
            let partitions = partitions.into_iter().map(partition_state).collect();
            Response::Partitions { brokers, partitions }.into()
        }
        Request::OffsetForTimestamp { topic, partition, timestamp_ms } => {
            let ts = i64::try_from(timestamp_ms).unwrap_or(i64::MAX);
            let found = blocking(move || b.record_for_timestamp(&topic, partition, ts)).await?;
            Response::Offset { offset: found.map(|(_, offset)| offset) }.into()
        }
    };
    Ok(reply)
}

/// Creates a topic through the cluster (validating its configs first: an invalid one creates
/// nothing); with `if_not_exists`, an existing topic is described as it is.
async fn create_topic(
    cluster: &Cluster,
    name: String,
    partitions: u32,
    replication_factor: Option<u16>,
    if_not_exists: bool,
    configs: Vec<(String, String)>,
) -> Result<crate::broker::TopicDescription, Response> {
    let pairs: Vec<(String, Option<String>)> =
        configs.into_iter().map(|(k, v)| (k, Some(v))).collect();
    let configs = TopicConfigs::parse(&pairs).map_err(|e| broker_error(&e))?;
    match cluster.create_topic(&name, partitions, replication_factor, configs, false).await {
        Ok(description) => Ok(description),
        Err(ClusterError::Broker(BrokerError::TopicAlreadyExists { .. })) if if_not_exists => {
            let b = cluster.broker().clone();
            blocking(move || b.describe_topic(&name)).await
        }
        Err(e) => Err(cluster_error(&e)),
    }
}

fn broker_info(b: BrokerView) -> BrokerInfo {
    BrokerInfo { id: b.id, native_addr: b.native_addr, kafka_addr: b.kafka_addr, fenced: b.fenced }
}

fn partition_state(p: PartitionView) -> PartitionState {
    PartitionState {
        topic: p.topic,
        partition: p.partition,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        replicas: p.replicas,
        isr: p.isr,
    }
}

/// The append's records as a mutable buffer: the request body's own allocation when nothing
/// else shares it (the usual case), else one copy.
fn into_mut(records: Bytes) -> BytesMut {
    records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

/// Compares secrets in time independent of where they differ.
/// Compares the expected token with a presented one in time that depends only on the presented
/// token's length, so timing tells a client nothing about the secret (not even its length).
pub(crate) fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return presented.is_empty();
    }
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, p) in presented.iter().enumerate() {
        diff |= expected[i % expected.len()] ^ p;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever moved or stalled leadership, a native client is told to learn the leaders again
    /// and retry; a request that can never succeed is not retried.
    #[test]
    fn leadership_errors_are_retriable_and_bad_requests_are_not() {
        let (topic, partition) = ("t".to_string(), 0);
        let moving = [
            ClusterError::NotLeader { topic: topic.clone(), partition, leader: Some(2) },
            ClusterError::LeaderNotAvailable { topic: topic.clone(), partition },
            ClusterError::FencedLeaderEpoch {
                topic: topic.clone(),
                partition,
                requested: 1,
                current: 2,
            },
            ClusterError::UnknownLeaderEpoch {
                topic: topic.clone(),
                partition,
                requested: 3,
                current: 2,
            },
            ClusterError::NotEnoughReplicas { topic: topic.clone(), partition, isr: 1, min: 2 },
            ClusterError::NotEnoughReplicasAfterAppend { topic: topic.clone(), partition },
            ClusterError::Timeout { topic: topic.clone(), partition, timeout: PRODUCE_TIMEOUT },
            ClusterError::NotController,
            ClusterError::Raft("no quorum".into()),
            ClusterError::ShuttingDown,
        ];
        for e in &moving {
            assert!(cluster_error_code(e).is_retriable(), "{e}: {:?}", cluster_error_code(e));
        }
        let final_ = [
            (
                ClusterError::InvalidReplicationFactor { requested: 3, brokers: 1 },
                ErrorCode::InvalidReplicationFactor,
            ),
            (
                ClusterError::Broker(BrokerError::UnknownTopic { name: topic }),
                ErrorCode::UnknownTopic,
            ),
            (ClusterError::Internal("bug".into()), ErrorCode::Internal),
        ];
        for (e, code) in &final_ {
            assert_eq!(cluster_error_code(e), *code, "{e}");
            assert!(!code.is_retriable());
        }
    }
}
