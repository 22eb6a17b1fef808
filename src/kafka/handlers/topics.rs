//! Topic administration: CreateTopics (with a replication factor), DeleteTopics (by name, or from
//! v6 by topic ID), through the cluster's metadata; and ListOffsets, answered by the partition's
//! leader (latest = the high watermark).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ListOffsetsRequest, ListOffsetsResponse,
};

use uuid::Uuid;

use super::{Ctx, MAX_PARTITIONS_PER_REQUEST, broker_error_code, cluster_error_code, code, s};
use crate::broker::BrokerError;
use crate::broker::topic_config::{ConfigEntry, TopicConfigs};
use crate::cluster::{Cluster, ClusterError, PartitionView};

/// Most topics one CreateTopics or DeleteTopics request may name; the rest are refused with
/// POLICY_VIOLATION. Each topic is a few fsyncs, so this bounds one request's file work.
pub(crate) const MAX_TOPICS_PER_REQUEST: usize = 1_000;

fn too_many_topics() -> (i16, String) {
    (
        code(ResponseError::PolicyViolation),
        format!("at most {MAX_TOPICS_PER_REQUEST} topics per request; send the rest in another"),
    )
}

/// Creates the topics one after the other (the cluster does the file work off the async
/// workers and, in a cluster, waits for the metadata quorum).
pub(super) async fn create_topics(
    ctx: &Ctx,
    r: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    if r.topics.len() > MAX_TOPICS_PER_REQUEST {
        tracing::warn!(
            topics = r.topics.len(),
            max = MAX_TOPICS_PER_REQUEST,
            "CreateTopics names too many topics; the rest are refused"
        );
    }
    let mut topics = Vec::with_capacity(r.topics.len());
    for (i, t) in r.topics.iter().enumerate() {
        let res = CreatableTopicResult::default().with_name(t.name.clone());
        let created = if i >= MAX_TOPICS_PER_REQUEST {
            Err(too_many_topics())
        } else {
            create_one(&ctx.cluster, ctx.config.default_partitions, t, r.validate_only).await
        };
        topics.push(match created {
            Ok(c) => created_result(res, c, v),
            // From v5: counts -1 (the defaults) and null configs for a topic not created, as Kafka.
            Err((c, msg)) => {
                let res = res.with_error_code(c).with_error_message(Some(s(&msg)));
                if v >= FIRST_CONFIGS_VERSION { res.with_configs(None) } else { res }
            }
        });
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// First CreateTopics version whose result carries the counts and configs of the topic.
const FIRST_CONFIGS_VERSION: i16 = 5;
/// First CreateTopics version whose result carries the topic id.
const FIRST_TOPIC_ID_VERSION: i16 = 7;

/// A topic CreateTopics made (or, with validate_only, would make).
struct Created {
    partitions: i32,
    replication_factor: i16,
    topic_id: [u8; 16],
    /// Every config of the topic with its source, as DescribeConfigs shows them.
    configs: Vec<ConfigEntry>,
}

/// Checks one CreatableTopic and creates it; (error code, message) when refused, with nothing
/// created.
async fn create_one(
    cluster: &Cluster,
    default_partitions: u32,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, (i16, String)> {
    let name = t.name.as_str();
    let me = cluster.node_id();
    let invalid_partitions = |m: String| (code(ResponseError::InvalidPartitions), m);
    let invalid_assignment = |m: String| (code(ResponseError::InvalidReplicaAssignment), m);
    let invalid_rf = |m: String| (code(ResponseError::InvalidReplicationFactor), m);
    let mut replication_factor = None;
    let partitions = if t.assignments.is_empty() {
        match t.replication_factor {
            -1 => {}
            rf if rf <= 0 => {
                return Err(invalid_rf(format!(
                    "replication factor {rf}: it must be larger than 0, or -1 for the default"
                )));
            }
            // The cluster checks it against the live brokers (waiting for those still joining).
            rf => replication_factor = Some(rf as u16),
        }
        match t.num_partitions {
            -1 => default_partitions as i32,
            n if n <= 0 => {
                return Err(invalid_partitions(format!(
                    "partition count {n}: it must be larger than 0, or -1 for the default"
                )));
            }
            n => n,
        }
    } else {
        // Manual replica assignment: the counts come from it, and every replica must be us (a
        // cluster places replicas itself).
        if cluster.is_clustered() {
            return Err(invalid_assignment(
                "manual replica assignment is not supported: give num_partitions and \
                 replication_factor, and the cluster places the replicas"
                    .to_string(),
            ));
        }
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                code(ResponseError::InvalidRequest),
                "with a replica assignment, num_partitions and replication_factor must be -1"
                    .to_string(),
            ));
        }
        let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err(invalid_assignment(format!(
                "partitions {indexes:?}: they must be consecutive from 0"
            )));
        }
        if let Some(a) = t.assignments.iter().find(|a| a.broker_ids.iter().map(|b| b.0).ne([me])) {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            return Err(invalid_assignment(format!(
                "partition {}: replicas {ids:?}; this single broker ({me}) holds every \
                 partition, so each assignment must be [{me}]",
                a.partition_index
            )));
        }
        t.assignments.len() as i32
    };
    let pairs: Vec<(String, Option<String>)> = t
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect();
    let refused = |e: BrokerError| (broker_error_code(&e), e.to_string());
    let configs = TopicConfigs::parse(&pairs).map_err(refused)?;
    // What the topic would show: its set configs over the broker's defaults. A created topic is
    // described from the broker (the same, unless it was altered or deleted in between).
    let broker = cluster.broker();
    let would_show = configs.describe(&broker.config().log);
    let d = cluster
        .create_topic(name, partitions as u32, replication_factor, configs, validate_only)
        .await
        .map_err(|e: ClusterError| (cluster_error_code(&e), e.to_string()))?;
    let configs = if validate_only {
        would_show
    } else {
        tracing::info!(topic = name, partitions, configs = pairs.len(), "topic created over Kafka");
        broker.describe_topic_configs(name).unwrap_or(would_show)
    };
    // The replicas the cluster placed; before they are known here, what was asked for.
    let replication_factor = cluster
        .partition_view(name, 0)
        .map(|p| p.replicas.len() as i16)
        .filter(|&n| n > 0 && !validate_only)
        .or(replication_factor.map(|rf| rf as i16))
        .unwrap_or(1);
    // validate_only: a nil id, as Kafka answers for a topic it did not create.
    Ok(Created { partitions, replication_factor, topic_id: d.topic_id, configs })
}

/// The result of a created topic: from v5 its counts and every config with its source (as
/// DescribeConfigs shows them), from v7 its id.
fn created_result(mut res: CreatableTopicResult, c: Created, v: i16) -> CreatableTopicResult {
    if v >= FIRST_CONFIGS_VERSION {
        let configs = c
            .configs
            .iter()
            .map(|e| {
                CreatableTopicConfigs::default()
                    .with_name(s(&e.name))
                    .with_value(if e.sensitive { None } else { e.value.as_deref().map(s) })
                    .with_read_only(e.read_only)
                    .with_config_source(super::configs::source_code(e.source))
                    .with_is_sensitive(e.sensitive)
            })
            .collect();
        res = res
            .with_num_partitions(c.partitions)
            .with_replication_factor(c.replication_factor)
            .with_configs(Some(configs));
    }
    if v >= FIRST_TOPIC_ID_VERSION {
        res = res.with_topic_id(Uuid::from_bytes(c.topic_id));
    }
    res
}

/// First DeleteTopics version that may name topics by ID (KIP-516).
const DELETE_BY_ID_VERSION: i16 = 6;
/// First DeleteTopics version whose results carry an error message.
const DELETE_MESSAGE_VERSION: i16 = 5;

/// One topic a DeleteTopics request names: by name, or (v6+) by ID.
#[derive(Debug, Clone)]
struct ToDelete {
    name: Option<String>,
    id: Uuid,
}

/// Deletes one topic; the deleted topic's name and ID, or the error code and message.
async fn delete_one(cluster: &Cluster, t: &ToDelete) -> Result<(String, Uuid), (i16, String)> {
    let broker = cluster.broker();
    let name = match (&t.name, t.id.is_nil()) {
        (Some(_), false) => {
            return Err((
                code(ResponseError::InvalidRequest),
                "name a topic by its name or by its ID, not both".to_string(),
            ));
        }
        (Some(name), true) => name.clone(),
        (None, false) => broker.topic_by_id(*t.id.as_bytes()).ok_or_else(|| {
            (code(ResponseError::UnknownTopicId), format!("no topic has the ID {}", t.id))
        })?,
        (None, true) => {
            return Err((
                code(ResponseError::InvalidRequest),
                "a topic without a name nor an ID".into(),
            ));
        }
    };
    let id = broker.topic_id(&name).map_err(|e| (broker_error_code(&e), e.to_string()))?;
    cluster.delete_topic(&name).await.map_err(|e| (cluster_error_code(&e), e.to_string()))?;
    Ok((name, Uuid::from_bytes(id)))
}

/// Deletes the topics one after the other (the cluster does the file work off the async
/// workers), at most [`MAX_TOPICS_PER_REQUEST`] of them.
pub(super) async fn delete_topics(
    ctx: &Ctx,
    r: DeleteTopicsRequest,
    v: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or ID), earlier versions in `topic_names`.
    let wanted: Vec<ToDelete> = if v >= DELETE_BY_ID_VERSION {
        r.topics
            .into_iter()
            .map(|t| ToDelete { name: t.name.map(|n| n.to_string()), id: t.topic_id })
            .collect()
    } else {
        r.topic_names
            .into_iter()
            .map(|n| ToDelete { name: Some(n.to_string()), id: Uuid::nil() })
            .collect()
    };
    if wanted.len() > MAX_TOPICS_PER_REQUEST {
        tracing::warn!(
            topics = wanted.len(),
            max = MAX_TOPICS_PER_REQUEST,
            "DeleteTopics names too many topics; the rest are refused"
        );
    }
    let mut responses = Vec::with_capacity(wanted.len());
    for (i, t) in wanted.into_iter().enumerate() {
        let outcome = if i >= MAX_TOPICS_PER_REQUEST {
            Err(too_many_topics())
        } else {
            delete_one(&ctx.cluster, &t).await
        };
        // Set only the fields the version has (trap 12): the ID from v6, the message from v5;
        // before v6 the name is the one the request gave.
        let (name, id) = match &outcome {
            Ok((name, id)) => (Some(name.clone()), *id),
            Err(_) => (t.name.clone(), t.id),
        };
        let mut res = DeletableTopicResult::default().with_name(name.map(|n| s(&n).into()));
        if v >= DELETE_BY_ID_VERSION {
            res = res.with_topic_id(id);
        }
        if let Err((c, msg)) = outcome {
            res = res.with_error_code(c);
            if v >= DELETE_MESSAGE_VERSION {
                res = res.with_error_message(Some(s(&msg)));
            }
        }
        responses.push(res);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn list_offsets(
    ctx: &Ctx,
    r: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics.iter() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions.iter().take(MAX_PARTITIONS_PER_REQUEST) {
            let res =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            // The client's current leader epoch exists from v4 (-1: none).
            let epoch = (version >= LEADER_EPOCH_VERSION && p.current_leader_epoch >= 0)
                .then_some(p.current_leader_epoch);
            let listed =
                list_offset(ctx, &t.name, p.partition_index, p.timestamp, version, epoch).await;
            parts.push(match listed {
                Ok((offset, ts)) => res.with_offset(offset).with_timestamp(ts),
                Err(c) => res.with_error_code(c),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// First ListOffsets version whose partitions carry the client's current leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;
/// ListOffsets' `MAX_TIMESTAMP`: the record with the largest timestamp (KIP-734, from v7).
const MAX_TIMESTAMP: i64 = -3;
/// First ListOffsets version that may ask for `MAX_TIMESTAMP`.
const MAX_TIMESTAMP_VERSION: i16 = 7;
/// `EARLIEST_LOCAL_TIMESTAMP` (KIP-405, from v8): the first offset on local disk. Every record is
/// local here, so it is the log start offset.
const EARLIEST_LOCAL: i64 = -4;
/// First ListOffsets version that may ask for `EARLIEST_LOCAL`.
const EARLIEST_LOCAL_VERSION: i16 = 8;
/// `LATEST_TIERED_TIMESTAMP` (KIP-1005, from v9): the last offset in tiered storage. Nothing is
/// tiered here: Kafka without tiered storage answers offset -1, as we do.
const LATEST_TIERED: i64 = -5;
/// First ListOffsets version that may ask for `LATEST_TIERED`.
const LATEST_TIERED_VERSION: i16 = 9;

/// (offset, timestamp) for a ListOffsets query: -2 = earliest, -1 = latest, -3 = the record with
/// the largest timestamp (v7 on), -4 = earliest local (v8 on), -5 = latest tiered (v9 on), else
/// by timestamp.
async fn list_offset(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    timestamp: i64,
    version: i16,
    current_leader_epoch: Option<i32>,
) -> Result<(i64, i64), i16> {
    let d = ctx.broker.describe_topic(topic).map_err(|e| broker_error_code(&e))?;
    if d.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| d.partitions.get(i))
        .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
    check_leader(ctx, topic, p.partition, current_leader_epoch)?;
    // A damaged (offline) partition has no offsets to tell.
    if p.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    match timestamp {
        -2 => Ok((p.log_start_offset as i64, -1)),
        // The high watermark: what consumers can read (on a single node, the log's end).
        -1 => {
            let hw = ctx
                .cluster
                .high_watermark(topic, p.partition)
                .map_err(|e| cluster_error_code(&e))?;
            Ok((hw as i64, -1))
        }
        MAX_TIMESTAMP if version < MAX_TIMESTAMP_VERSION => {
            Err(code(ResponseError::UnsupportedVersion))
        }
        EARLIEST_LOCAL if version < EARLIEST_LOCAL_VERSION => {
            Err(code(ResponseError::UnsupportedVersion))
        }
        LATEST_TIERED if version < LATEST_TIERED_VERSION => {
            Err(code(ResponseError::UnsupportedVersion))
        }
        EARLIEST_LOCAL => Ok((p.log_start_offset as i64, -1)),
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            // Read from the time index (one batch), not by scanning the log.
            let found = ctx
                .broker
                .max_timestamp_offset(topic, partition as u32)
                .map_err(|e| broker_error_code(&e))?;
            Ok(found.map_or((-1, -1), |(ts, offset)| (offset as i64, ts)))
        }
        ts if ts < 0 => Err(code(ResponseError::InvalidRequest)),
        ts => {
            // Kafka answers with the found record's own timestamp.
            let found = ctx
                .broker
                .record_for_timestamp(topic, partition as u32, ts)
                .map_err(|e| broker_error_code(&e))?;
            Ok(found.map_or((-1, -1), |(rec_ts, offset)| (offset as i64, rec_ts)))
        }
    }
}

/// Offsets are answered by the partition's leader only, as Kafka does: NOT_LEADER_OR_FOLLOWER
/// elsewhere, LEADER_NOT_AVAILABLE without a leader, and for a client naming a leader epoch,
/// FENCED_LEADER_EPOCH when it is older than the leader's and UNKNOWN_LEADER_EPOCH when newer
/// (KIP-320): the client refreshes its metadata and asks again.
pub(super) fn check_leader(
    ctx: &Ctx,
    topic: &str,
    partition: u32,
    current_leader_epoch: Option<i32>,
) -> Result<PartitionView, i16> {
    let view = ctx
        .cluster
        .partition_view(topic, partition)
        .ok_or(code(ResponseError::LeaderNotAvailable))?;
    match view.leader {
        None => return Err(code(ResponseError::LeaderNotAvailable)),
        Some(l) if l != ctx.node_id() => return Err(code(ResponseError::NotLeaderOrFollower)),
        Some(_) => {}
    }
    match current_leader_epoch {
        Some(e) if e < view.leader_epoch => Err(code(ResponseError::FencedLeaderEpoch)),
        Some(e) if e > view.leader_epoch => Err(code(ResponseError::UnknownLeaderEpoch)),
        _ => Ok(view),
    }
}
