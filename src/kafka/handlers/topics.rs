//! Topic administration: CreateTopics, DeleteTopics (by name, or from v6 by topic ID) and
//! ListOffsets.

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

use super::{Ctx, MAX_PARTITIONS_PER_REQUEST, NODE_ID, broker_error_code, code, s};
use crate::broker::topic_config::{ConfigEntry, TopicConfigs};
use crate::broker::{Broker, BrokerError};

/// Most topics one CreateTopics or DeleteTopics request may name; the rest are refused with
/// POLICY_VIOLATION. Each topic is a few fsyncs, so this bounds one request's file work.
pub(crate) const MAX_TOPICS_PER_REQUEST: usize = 1_000;

fn too_many_topics() -> (i16, String) {
    (
        code(ResponseError::PolicyViolation),
        format!("at most {MAX_TOPICS_PER_REQUEST} topics per request; send the rest in another"),
    )
}

/// Creates the topics off the async workers: topic creation is file-system work.
pub(super) async fn create_topics(
    ctx: &Ctx,
    r: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    let names: Vec<_> = r.topics.iter().map(|t| t.name.clone()).collect();
    if names.len() > MAX_TOPICS_PER_REQUEST {
        tracing::warn!(
            topics = names.len(),
            max = MAX_TOPICS_PER_REQUEST,
            "CreateTopics names too many topics; the rest are refused"
        );
    }
    let (broker, default_partitions) = (ctx.broker.clone(), ctx.config.default_partitions);
    match tokio::task::spawn_blocking(move || create_topics_now(&broker, default_partitions, &r, v))
        .await
    {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "CreateTopics task failed");
            let c = code(ResponseError::UnknownServerError);
            CreateTopicsResponse::default().with_topics(
                names
                    .into_iter()
                    .map(|n| CreatableTopicResult::default().with_name(n).with_error_code(c))
                    .collect(),
            )
        }
    }
}

fn create_topics_now(
    broker: &Broker,
    default_partitions: u32,
    r: &CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    let topics = r
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let res = CreatableTopicResult::default().with_name(t.name.clone());
            let created = if i >= MAX_TOPICS_PER_REQUEST {
                Err(too_many_topics())
            } else {
                create_one(broker, default_partitions, t, r.validate_only)
            };
            match created {
                Ok(c) => created_result(res, c, v),
                // From v5: counts -1 (the defaults) and null configs for a topic not created, as Kafka.
                Err((c, msg)) => {
                    let res = res.with_error_code(c).with_error_message(Some(s(&msg)));
                    if v >= FIRST_CONFIGS_VERSION { res.with_configs(None) } else { res }
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// First CreateTopics version whose result carries the counts and configs of the topic.
const FIRST_CONFIGS_VERSION: i16 = 5;
/// First CreateTopics version whose result carries the topic id.
const FIRST_TOPIC_ID_VERSION: i16 = 7;

/// A topic CreateTopics made (or, with validate_only, would make).
struct Created {
    partitions: i32,
    topic_id: [u8; 16],
    /// Every config of the topic with its source, as DescribeConfigs shows them.
    configs: Vec<ConfigEntry>,
}

/// Checks one CreatableTopic and creates it; (error code, message) when refused, with nothing
/// created.
fn create_one(
    broker: &Broker,
    default_partitions: u32,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, (i16, String)> {
    let name = t.name.as_str();
    let invalid_partitions = |m: String| (code(ResponseError::InvalidPartitions), m);
    let invalid_assignment = |m: String| (code(ResponseError::InvalidReplicaAssignment), m);
    let partitions = if t.assignments.is_empty() {
        match t.replication_factor {
            -1 | 1 => {}
            rf => {
                let m = if rf <= 0 {
                    format!(
                        "replication factor {rf}: it must be larger than 0, or -1 for the default"
                    )
                } else {
                    format!("replication factor {rf} is larger than the 1 available broker")
                };
                return Err((code(ResponseError::InvalidReplicationFactor), m));
            }
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
        // Manual replica assignment: the counts come from it, and every replica must be us.
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
        if let Some(a) =
            t.assignments.iter().find(|a| a.broker_ids.iter().map(|b| b.0).ne([NODE_ID]))
        {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            return Err(invalid_assignment(format!(
                "partition {}: replicas {ids:?}; this single broker ({NODE_ID}) holds every \
                 partition, so each assignment must be [{NODE_ID}]",
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
    let would_show = configs.describe(&broker.config().log);
    let d =
        broker.create_topic(name, partitions as u32, configs, validate_only).map_err(refused)?;
    let configs = if validate_only {
        would_show
    } else {
        tracing::info!(topic = name, partitions, configs = pairs.len(), "topic created over Kafka");
        broker.describe_topic_configs(name).unwrap_or(would_show)
    };
    // validate_only: a nil id, as Kafka answers for a topic it did not create.
    Ok(Created { partitions, topic_id: d.topic_id, configs })
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
            .with_replication_factor(1)
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
fn delete_one(broker: &Broker, t: &ToDelete) -> Result<(String, Uuid), (i16, String)> {
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
    broker.delete_topic(&name).map_err(|e| (broker_error_code(&e), e.to_string()))?;
    Ok((name, Uuid::from_bytes(id)))
}

/// Deletes the topics off the async workers, at most [`MAX_TOPICS_PER_REQUEST`] of them.
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
    let broker = ctx.broker.clone();
    let work = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let outcome = if i >= MAX_TOPICS_PER_REQUEST {
                    Err(too_many_topics())
                } else {
                    delete_one(&broker, &t)
                };
                // Set only the fields the version has (trap 12): the ID from v6, the message
                // from v5; before v6 the name is the one the request gave.
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
                res
            })
            .collect()
    });
    match work.await {
        Ok(responses) => DeleteTopicsResponse::default().with_responses(responses),
        Err(e) => {
            tracing::error!(error = %e, "DeleteTopics task failed");
            DeleteTopicsResponse::default()
        }
    }
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
            let listed = list_offset(ctx, &t.name, p.partition_index, p.timestamp, version).await;
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
) -> Result<(i64, i64), i16> {
    let d = ctx.broker.describe_topic(topic).map_err(|e| broker_error_code(&e))?;
    if d.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| d.partitions.get(i))
        .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
    // A damaged (offline) partition has no offsets to tell.
    if p.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    match timestamp {
        -2 => Ok((p.log_start_offset as i64, -1)),
        -1 => Ok((p.next_offset as i64, -1)),
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
