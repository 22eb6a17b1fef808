//! Produce and InitProducerId: Kafka batches validated, translated and appended.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};

use super::{Ctx, MAX_PARTITIONS_PER_REQUEST, broker_error_code, code, error_kind};
use crate::kafka::batch::{self, BatchError};
use crate::metrics::Listener;

pub(super) fn init_producer_id(ctx: &Ctx, r: InitProducerIdRequest) -> InitProducerIdResponse {
    if r.transactional_id.is_some() {
        // Transactions are not implemented: refuse clearly rather than pretend.
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    let id = ctx.next_producer_id.fetch_add(1, Ordering::Relaxed);
    InitProducerIdResponse::default().with_producer_id(id.into()).with_producer_epoch(0)
}

pub(super) async fn produce(ctx: &Ctx, r: ProduceRequest) -> ProduceResponse {
    let started = Instant::now();
    let metrics = ctx.broker.metrics();
    let acks_ok = matches!(r.acks, -1..=1);
    let mut seen = 0usize;
    let mut responses = Vec::with_capacity(r.topic_data.len());
    for topic in &r.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            seen += 1;
            let res = PartitionProduceResponse::default().with_index(p.index);
            let err = if !acks_ok {
                Err(code(ResponseError::InvalidRequiredAcks))
            } else if seen > MAX_PARTITIONS_PER_REQUEST || p.index < 0 {
                Err(code(ResponseError::UnknownTopicOrPartition))
            } else {
                produce_partition(ctx, &topic.name, p.index as u32, p.records.as_ref()).await
            };
            parts.push(match err {
                Ok(base) => res.with_base_offset(base as i64),
                Err(c) => {
                    metrics.record_request_error(Listener::Kafka, error_kind(c));
                    res.with_error_code(c)
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

async fn produce_partition(
    ctx: &Ctx,
    topic: &str,
    partition: u32,
    records: Option<&Bytes>,
) -> Result<u64, i16> {
    let Some(records) = records else {
        return Err(code(ResponseError::InvalidRecord));
    };
    let mut stored =
        batch::kafka_to_stored(records, ctx.config.max_record_bytes, crate::record::now_ms())
            .map_err(|e| {
                tracing::debug!(topic, partition, error = %e, "refused a produced batch");
                match e {
                    BatchError::TooLarge(_) => code(ResponseError::MessageTooLarge),
                    BatchError::Invalid(_) | BatchError::Transactional => {
                        code(ResponseError::InvalidRecord)
                    }
                }
            })?;
    // An unknown topic is retriable for clients (they refresh metadata); Produce never creates.
    ctx.broker.partition_count(topic).map_err(|e| broker_error_code(&e))?;
    let res = ctx
        .broker
        .append_encoded(topic, Some(partition), None, &mut stored.encoded)
        .await
        .map_err(|e| {
            tracing::warn!(topic, partition, error = %e, "Kafka produce failed");
            broker_error_code(&e)
        })?;
    let count = res.offsets.next - res.offsets.first;
    ctx.broker.metrics().record_append(topic, partition, count, stored.encoded.len() as u64);
    Ok(res.offsets.first)
}
