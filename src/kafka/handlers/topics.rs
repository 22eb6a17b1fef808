//! Topic administration: CreateTopics, DeleteTopics and ListOffsets.

use std::time::Duration;

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
use crate::broker::validate_topic_name;

pub(super) fn create_topics(ctx: &Ctx, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.to_string();
            let partitions = if t.num_partitions == -1 {
                ctx.config.default_partitions as i32
            } else {
                t.num_partitions
            };
            let mut res = CreatableTopicResult::default().with_name(t.name.clone());
            let err: Result<(), (i16, String)> = if partitions <= 0 {
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
                match (validate_topic_name(&name), ctx.broker.describe_topic(&name)) {
                    (Err(e), _) => Err((broker_error_code(&e), e.to_string())),
                    (Ok(()), Ok(_)) => Err((
                        code(ResponseError::TopicAlreadyExists),
                        format!("topic {name} exists"),
                    )),
                    (Ok(()), Err(_)) => Ok(()),
                }
            } else {
                ctx.broker
                    .create_topic(&name, partitions as u32)
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

pub(super) fn delete_topics(ctx: &Ctx, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let responses = r
        .topic_names
        .iter()
        .map(|name| {
            let res = DeletableTopicResult::default().with_name(Some(name.clone()));
            match ctx.broker.delete_topic(name) {
                Ok(()) => res,
                Err(e) => res.with_error_code(broker_error_code(&e)),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn list_offsets(ctx: &Ctx, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics.iter() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions.iter().take(MAX_PARTITIONS_PER_REQUEST) {
            let res =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            parts.push(match list_offset(ctx, &t.name, p.partition_index, p.timestamp).await {
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

/// (offset, timestamp) for a ListOffsets query: -2 = earliest, -1 = latest, else by timestamp.
async fn list_offset(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), i16> {
    let d = ctx.broker.describe_topic(topic).map_err(|e| broker_error_code(&e))?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| d.partitions.get(i))
        .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
    match timestamp {
        -2 => Ok((p.log_start_offset as i64, -1)),
        -1 => Ok((p.next_offset as i64, -1)),
        ts if ts < 0 => Err(code(ResponseError::InvalidRequest)),
        ts => {
            let found = ctx
                .broker
                .offset_for_timestamp(topic, partition as u32, ts)
                .map_err(|e| broker_error_code(&e))?;
            let Some(offset) = found else { return Ok((-1, -1)) };
            // Kafka answers with the found record's own timestamp.
            let rec_ts = match ctx
                .broker
                .fetch(topic, partition as u32, offset, 1, 0, Duration::ZERO)
                .await
            {
                Ok(f) => {
                    f.records.records().next().and_then(|r| r.ok()).map_or(ts, |r| r.timestamp_ms)
                }
                Err(_) => ts,
            };
            Ok((offset as i64, rec_ts))
        }
    }
}
