//! CreatePartitions, DeleteRecords and DescribeCluster: growing a topic, deleting the records
//! before an offset (what `minikafka topic trim` does natively, through `Broker::trim`, on the
//! partition's leader), and the cluster's description (its live brokers and controller). Never
//! touches files itself; the cluster and the broker do.

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeClusterRequest, DescribeClusterResponse,
};

use super::topics::MAX_TOPICS_PER_REQUEST;
use super::{
    CLUSTER_ID, Ctx, MAX_PARTITIONS_PER_REQUEST, broker_error_code, cluster_error_code, code, s,
};
use crate::broker::{BrokerError, validate_topic_name};
use crate::cluster::{Cluster, ClusterError};

/// DeleteRecords' offset meaning "up to the high watermark": every record there is.
const HIGH_WATERMARK: i64 = -1;

/// Grows each topic to its requested total partition count, one after the other, through the
/// cluster (on a single node each new partition is directories and a crash-safe `topic.json`
/// rewrite; in a cluster a metadata commit every broker follows).
pub(super) async fn create_partitions(
    ctx: &Ctx,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<&str> =
        r.topics.iter().map(|t| t.name.as_str()).filter(|n| !seen.insert(*n)).collect();
    let mut results = Vec::with_capacity(r.topics.len());
    for (i, t) in r.topics.iter().enumerate() {
        let res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match grow(&ctx.cluster, t, i, &duplicates, r.validate_only).await {
            Ok(()) => res,
            Err((c, message)) => res.with_error_code(c).with_error_message(Some(s(&message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    cluster: &Cluster,
    t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
    index: usize,
    duplicates: &HashSet<&str>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let name = t.name.as_str();
    if index >= MAX_TOPICS_PER_REQUEST {
        return Err((
            code(ResponseError::PolicyViolation),
            format!(
                "at most {MAX_TOPICS_PER_REQUEST} topics per request; send the rest in another"
            ),
        ));
    }
    if duplicates.contains(name) {
        return Err((
            code(ResponseError::InvalidRequest),
            format!("topic {name:?} appears more than once in the request"),
        ));
    }
    validate_topic_name(name).map_err(|e| (broker_error_code(&e), e.to_string()))?;
    let invalid = |message: String| (code(ResponseError::InvalidPartitions), message);
    let total = u32::try_from(t.count)
        .map_err(|_| invalid(format!("partition count {} must be positive", t.count)))?;
    // Null (or empty) assignments: the cluster places the new partitions.
    let assignments = t
        .assignments
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| a.iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect());
    match cluster.add_partitions(name, total, assignments, validate_only).await {
        Ok(()) => {}
        Err(ClusterError::Broker(BrokerError::PartitionCountNotIncreased {
            current,
            requested,
            ..
        })) => {
            // Kafka's words for both cases: a topic never shrinks, and the same count is no
            // change.
            return Err(invalid(if requested == current {
                format!("topic {name:?} already has {current} partitions")
            } else {
                format!(
                    "topic {name:?} currently has {current} partitions, which is higher than the \
                     requested {requested}"
                )
            }));
        }
        Err(e) => return Err((cluster_error_code(&e), e.to_string())),
    }
    if !validate_only {
        tracing::info!(topic = name, partitions = total, "partitions added");
    }
    Ok(())
}

/// Deletes the records before each requested offset, off the async workers (a trim syncs the log
/// and deletes segment files).
pub(super) async fn delete_records(ctx: &Ctx, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let cluster = ctx.cluster.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut budget = MAX_PARTITIONS_PER_REQUEST;
        r.topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let res = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        if budget == 0 {
                            return res.with_error_code(code(ResponseError::PolicyViolation));
                        }
                        budget -= 1;
                        match delete_before(&cluster, &t.name, p.partition_index, p.offset) {
                            Ok(low) => res.with_low_watermark(low),
                            Err(c) => res.with_error_code(c),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect()
    });
    match work.await {
        Ok(topics) => DeleteRecordsResponse::default().with_topics(topics),
        Err(e) => {
            tracing::error!(error = %e, "DeleteRecords task failed");
            DeleteRecordsResponse::default()
        }
    }
}

/// Deletes the records of one partition before `offset` (-1: the high watermark); the new low
/// watermark (log start offset). An offset past the high watermark is OFFSET_OUT_OF_RANGE. Only
/// the partition's leader deletes (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka).
fn delete_before(cluster: &Cluster, topic: &str, partition: i32, offset: i64) -> Result<i64, i16> {
    let broker = cluster.broker();
    let partition =
        u32::try_from(partition).map_err(|_| code(ResponseError::UnknownTopicOrPartition))?;
    let d = broker.describe_topic(topic).map_err(|e| broker_error_code(&e))?;
    let p =
        d.partitions.get(partition as usize).ok_or(code(ResponseError::UnknownTopicOrPartition))?;
    if p.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    let hw = cluster.high_watermark(topic, partition).map_err(|e| cluster_error_code(&e))?;
    let before = match offset {
        HIGH_WATERMARK => hw,
        o => {
            let o = u64::try_from(o).map_err(|_| code(ResponseError::OffsetOutOfRange))?;
            if o > hw {
                return Err(code(ResponseError::OffsetOutOfRange));
            }
            o
        }
    };
    let low = broker.trim(topic, partition, before).map_err(|e| broker_error_code(&e))?;
    tracing::info!(topic, partition, before, log_start_offset = low, "records deleted");
    Ok(low as i64)
}

/// DescribeCluster's `endpoint_type` for brokers (v1+); 2 asks for the controllers, which a
/// client must not ask a broker for.
const ENDPOINT_BROKERS: i8 = 1;
const FIRST_ENDPOINT_TYPE_VERSION: i16 = 1;

pub(super) fn describe_cluster(
    ctx: &Ctx,
    r: DescribeClusterRequest,
    v: i16,
) -> DescribeClusterResponse {
    let brokers = ctx
        .endpoints()
        .into_iter()
        .map(|e| {
            DescribeClusterBroker::default()
                .with_broker_id(e.node_id.into())
                .with_host(s(&e.host))
                .with_port(e.port)
        })
        .collect();
    let mut res = DescribeClusterResponse::default()
        .with_cluster_id(s(CLUSTER_ID))
        // As in KRaft: clients send controller requests (CreateTopics...) to a broker, which
        // forwards them to the metadata leader, so "the controller" is this live broker. The
        // Raft leader may be fenced or not listed yet, and clients then wait for it in vain.
        .with_controller_id(ctx.node_id().into())
        .with_brokers(brokers);
    if v >= FIRST_ENDPOINT_TYPE_VERSION {
        res = res.with_endpoint_type(ENDPOINT_BROKERS);
        if r.endpoint_type != ENDPOINT_BROKERS {
            // Kafka's broker answers a request for controllers this way (KIP-919).
            res = res
                .with_error_code(code(ResponseError::MismatchedEndpointType))
                .with_error_message(Some(s("this endpoint serves brokers, not controllers")))
                .with_brokers(Vec::new());
        }
    }
    res
}
