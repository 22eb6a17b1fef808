//! Produce and InitProducerId: Kafka batches appended as produced (the log validates them and
//! assigns their offsets in place) through the cluster, which appends only as the partition's
//! leader and waits for the replicas `acks` asks for; producer ids come from the cluster.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};

use super::{
    Ctx, MAX_PARTITIONS_PER_REQUEST, TRANSACTIONS_REFUSED, broker_error_code, cluster_error_code,
    code, error_kind, s,
};
use crate::broker::AppendBatch;
use crate::cluster::{Acks, ClusterError};
use crate::metrics::Listener;

pub(super) async fn init_producer_id(
    ctx: &Ctx,
    r: InitProducerIdRequest,
    client_id: &str,
) -> InitProducerIdResponse {
    if let Some(txn_id) = r.transactional_id.as_deref() {
        // Transactions are not implemented. TRANSACTIONAL_ID_AUTHORIZATION_FAILED is the one code
        // every client treats as fatal here (see `TRANSACTIONS_REFUSED`); this response has no
        // message field, so the log carries the reason.
        tracing::warn!(
            client_id,
            transactional_id = txn_id.as_str(),
            "refused InitProducerId: {TRANSACTIONS_REFUSED}"
        );
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed))
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
    }
    // A fresh id with epoch 0, as Kafka gives a producer without a transactional id. The id is
    // reserved durably (by the cluster's metadata, or on a single node a small fsync once per
    // 1,000 ids) so no restart and no other broker ever hands it out again.
    match ctx.cluster.next_producer_id().await {
        Ok(id) => {
            InitProducerIdResponse::default().with_producer_id(id.into()).with_producer_epoch(0)
        }
        Err(e) => {
            tracing::warn!(client_id, error = %e, "InitProducerId failed: cannot reserve producer ids");
            InitProducerIdResponse::default()
                .with_error_code(code(ResponseError::CoordinatorNotAvailable))
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }
    }
}

/// Longest a Produce waits for its replicas, whatever the client asks.
const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) async fn produce(ctx: &Ctx, r: ProduceRequest, v: i16) -> ProduceResponse {
    let started = Instant::now();
    let metrics = ctx.broker.metrics();
    let acks = Acks::from_kafka(r.acks);
    let timeout = Duration::from_millis(r.timeout_ms.max(0) as u64).min(MAX_PRODUCE_TIMEOUT);
    let mut seen = 0usize;
    let mut responses = Vec::with_capacity(r.topic_data.len());
    for topic in &r.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            seen += 1;
            let res = PartitionProduceResponse::default().with_index(p.index);
            let err = match acks {
                None => Err((code(ResponseError::InvalidRequiredAcks), None)),
                Some(_) if seen > MAX_PARTITIONS_PER_REQUEST || p.index < 0 => {
                    Err((code(ResponseError::UnknownTopicOrPartition), None))
                }
                Some(acks) => {
                    let (name, index, records) = (&topic.name, p.index as u32, p.records.as_ref());
                    produce_partition(ctx, name, index, records, acks, timeout).await
                }
            };
            parts.push(match err {
                Ok((base, append_time)) => {
                    let res = res.with_base_offset(base as i64);
                    // log_append_time_ms exists from v2; its default -1 means CreateTime.
                    match append_time {
                        Some(t) if v >= 2 => res.with_log_append_time_ms(t),
                        _ => res,
                    }
                }
                Err((c, message)) => {
                    metrics.record_request_error(Listener::Kafka, error_kind(c));
                    let res = res.with_error_code(c);
                    // The error message field exists from v8.
                    if v >= 8 { res.with_error_message(message.map(|m| s(&m))) } else { res }
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(parts),
        );
    }
    metrics.observe_produce(Listener::Kafka, started.elapsed());
    ProduceResponse::default().with_responses(responses)
}

/// Kafka's "no timestamp" in a batch header.
const NO_TIMESTAMP: i64 = -1;

/// Sets `maxTimestamp` where a CreateTime batch left it unset (-1) although its records have
/// timestamps, and recomputes the CRC-32C that covers it, as Kafka's LogValidator rewrites it.
/// sarama before 1.23 (Debian 12's is 1.22.1) never sets it: without this, every batch it sends
/// is INVALID_RECORD. Only a batch whose CRC holds as sent is touched (a damaged one must not get
/// a fresh CRC); anything else is left for the log's validation to judge. Any other wrong
/// `maxTimestamp` stays refused.
fn fill_unset_max_timestamps(set: &mut [u8]) {
    let mut fixes = Vec::new();
    let mut scratch = Vec::new();
    for view in crate::batch::batches(set) {
        let Ok(view) = view else { break };
        let start = fixes.last().map_or(0, |&(end, _, _)| end);
        let end = start + view.len();
        if view.timestamp_type() != crate::batch::TimestampType::CreateTime
            || view.max_timestamp() != NO_TIMESTAMP
            || view.verify_crc().is_err()
        {
            fixes.push((end, start, None));
            continue;
        }
        // The largest record timestamp; none when a record does not decode (validation says why).
        let mut max: Option<i64> = None;
        if let Ok(records) = view.decoded_records(&mut scratch) {
            for r in records {
                let Ok(r) = r else {
                    max = None;
                    break;
                };
                max = Some(max.map_or(r.timestamp, |m| m.max(r.timestamp)));
            }
        }
        fixes.push((end, start, max.filter(|&m| m != NO_TIMESTAMP)));
    }
    for (end, start, max) in fixes {
        let Some(max) = max else { continue };
        let batch = &mut set[start..end];
        batch[crate::batch::MAX_TIMESTAMP_POS..crate::batch::MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&max.to_be_bytes());
        // The view was read from these bytes: it spans a whole header.
        let Ok(view) = crate::batch::BatchView::new(batch) else { continue };
        let crc = view.compute_crc();
        batch[crate::batch::CRC_POS..crate::batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

async fn produce_partition(
    ctx: &Ctx,
    topic: &str,
    partition: u32,
    records: Option<&Bytes>,
    acks: Acks,
    timeout: Duration,
) -> Result<(u64, Option<i64>), (i16, Option<String>)> {
    let Some(records) = records else {
        return Err((code(ResponseError::InvalidRecord), None));
    };
    // The log sets each batch's base offset and leader epoch in place: a private copy of the
    // request's bytes.
    let mut stored = records.to_vec();
    fill_unset_max_timestamps(&mut stored);
    // An unknown topic is retriable for clients (they refresh metadata); Produce never creates.
    ctx.broker.partition_count(topic).map_err(|e| (broker_error_code(&e), None))?;
    let res = ctx
        .cluster
        .produce(topic, Some(partition), None, AppendBatch::Encoded(&mut stored), acks, timeout)
        .await
        .map_err(|e| {
            let c = cluster_error_code(&e);
            if c == code(ResponseError::InvalidRecord) || c == code(ResponseError::CorruptMessage) {
                tracing::debug!(topic, partition, error = %e, "refused a produced batch");
            } else if matches!(e, ClusterError::Broker(_)) {
                tracing::warn!(topic, partition, error = %e, "Kafka produce failed");
            } else {
                // Leadership and replication answers: the client refreshes and retries.
                tracing::debug!(topic, partition, error = %e, "Kafka produce refused");
            }
            (c, Some(e.to_string()))
        })?;
    let count = res.offsets.next - res.offsets.first;
    ctx.broker.metrics().record_append(topic, partition, count, stored.len() as u64);
    Ok((res.offsets.first, res.log_append_time_ms))
}
