//! Topic administration: CreateTopics, DeleteTopics and ListOffsets.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ListOffsetsRequest, ListOffsetsResponse,
};

use super::{Ctx, MAX_PARTITIONS_PER_REQUEST, broker_error_code, code, s};
use crate::broker::{Broker, validate_topic_name};

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
            let name = t.name.to_string();
            let partitions =
                if t.num_partitions == -1 { default_partitions as i32 } else { t.num_partitions };
            let mut res = CreatableTopicResult::default().with_name(t.name.clone());
            let err: Result<(), (i16, String)> = if i >= MAX_TOPICS_PER_REQUEST {
                Err(too_many_topics())
            } else if partitions <= 0 {
                Err((
                    code(ResponseError::InvalidPartitions),
                    "partition count must be positive".to_string(),
                ))
            } else if t.replication_factor != -1 && t.replication_factor != 1 {
                Err((
                    code(ResponseError::InvalidReplicationFactor),
                    "a single broker holds exactly one replica".to_string(),
                ))
            } else if !t.assignments.is_empty() {
                Err((
                    code(ResponseError::InvalidRequest),
                    "manual replica assignment is not supported".to_string(),
                ))
            } else if r.validate_only {
                match (validate_topic_name(&name), broker.describe_topic(&name)) {
                    (Err(e), _) => Err((broker_error_code(&e), e.to_string())),
                    (Ok(()), Ok(_)) => Err((
                        code(ResponseError::TopicAlreadyExists),
                        format!("topic {name} exists"),
                    )),
                    (Ok(()), Err(_)) => Ok(()),
                }
            } else {
                broker
                    .create_topic(
                        &name,
                        partitions as u32,
                        crate::broker::topic_config::TopicConfigs::default(),
                        false,
                    )
                    .map(|_| ())
                    .map_err(|e| (broker_error_code(&e), e.to_string()))
            };
            match err {
                Ok(()) => {
                    if v >= 5 {
                        res = res.with_num_partitions(partitions).with_replication_factor(1);
                    }
                }
                Err((c, msg)) => {
                    res = res.with_error_code(c).with_error_message(Some(s(&msg)));
                }
            }
            res
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// Deletes the topics off the async workers, at most [`MAX_TOPICS_PER_REQUEST`] of them.
pub(super) async fn delete_topics(ctx: &Ctx, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let names = r.topic_names;
    if names.len() > MAX_TOPICS_PER_REQUEST {
        tracing::warn!(
            topics = names.len(),
            max = MAX_TOPICS_PER_REQUEST,
            "DeleteTopics names too many topics; the rest are refused"
        );
    }
    let broker = ctx.broker.clone();
    let work = tokio::task::spawn_blocking(move || {
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let res = DeletableTopicResult::default().with_name(Some(name.clone()));
                if i >= MAX_TOPICS_PER_REQUEST {
                    // DeleteTopics up to v4 has no error message: the code says it.
                    return res.with_error_code(too_many_topics().0);
                }
                match broker.delete_topic(&name) {
                    Ok(()) => res,
                    Err(e) => res.with_error_code(broker_error_code(&e)),
                }
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

/// (offset, timestamp) for a ListOffsets query: -2 = earliest, -1 = latest, -3 = the record with
/// the largest timestamp (v7 on), else by timestamp.
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
