//! Fetch: reads the named partitions within the response's byte budget, long-polling when
//! nothing is there yet.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::task::JoinSet;

use super::{
    Ctx, MAX_FETCH_WAIT, MAX_PARTITIONS_PER_REQUEST, broker_error_code, code, error_kind, s,
};
use crate::kafka::batch;
use crate::metrics::Listener;

/// One partition's fetch outcome.
struct PartFetch {
    error: i16,
    /// Records in `records`.
    count: u64,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

async fn fetch_one(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> PartFetch {
    let fail = |error| PartFetch {
        error,
        count: 0,
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    };
    if partition < 0 {
        return fail(code(ResponseError::UnknownTopicOrPartition));
    }
    if offset < 0 {
        return fail(code(ResponseError::OffsetOutOfRange));
    }
    match ctx
        .broker
        .fetch(topic, partition as u32, offset as u64, max_bytes.max(1), 0, Duration::ZERO)
        .await
    {
        Ok(f) => {
            let records = match batch::stored_to_kafka(
                f.records.bytes(),
                ctx.config.max_record_bytes,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(topic, partition, offset, error = %e, "stored records failed their checks");
                    return fail(code(ResponseError::KafkaStorageError));
                }
            };
            PartFetch {
                error: 0,
                count: if f.records.is_empty() {
                    0
                } else {
                    f.records.next_offset() - f.records.first_offset()
                },
                high_watermark: f.high_watermark as i64,
                log_start_offset: f.log_start_offset as i64,
                records,
            }
        }
        Err(e) => fail(broker_error_code(&e)),
    }
}

pub(super) async fn fetch(ctx: &Ctx, r: FetchRequest) -> FetchResponse {
    let started = Instant::now();
    let wanted: Vec<(String, i32, i64, usize)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.topic.to_string(),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes.max(0) as usize,
                )
            })
        })
        .take(MAX_PARTITIONS_PER_REQUEST)
        .collect();
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = r.min_bytes.max(0) as usize;

    let mut results = fetch_all(ctx, &wanted, r.max_bytes).await;
    let got: usize = results.iter().map(|p| p.records.len()).sum();
    let any_error = results.iter().any(|p| p.error != 0);
    if got < min_bytes.max(1) && !any_error && !max_wait.is_zero() && !wanted.is_empty() {
        // Long-poll every partition at once; the first one with data (or the deadline) ends the
        // wait, then one more pass collects whatever arrived everywhere.
        let mut waits = JoinSet::new();
        for (topic, partition, offset, _) in &wanted {
            let (broker, topic, partition, offset) =
                (ctx.broker.clone(), topic.clone(), *partition, *offset);
            waits.spawn(async move {
                let _ = broker.fetch(&topic, partition as u32, offset as u64, 1, 1, max_wait).await;
            });
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match tokio::time::timeout_at(deadline, waits.join_next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(_)) => {}
            }
            results = fetch_all(ctx, &wanted, r.max_bytes).await;
            let now_got: usize = results.iter().map(|p| p.records.len()).sum();
            if now_got >= min_bytes.max(1) {
                break;
            }
        }
        waits.abort_all();
    }

    let metrics = ctx.broker.metrics();
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for ((topic, partition, offset, _), res) in wanted.iter().zip(results) {
        if res.error == 0 {
            metrics.record_fetch(topic, *partition as u32, res.count, res.records.len() as u64);
        } else {
            metrics.record_request_error(Listener::Kafka, error_kind(res.error));
        }
        tracing::trace!(
            topic,
            partition,
            offset,
            error = res.error,
            bytes = res.records.len(),
            high_watermark = res.high_watermark,
            "Fetch partition answered"
        );
        let pd = fetch_response::PartitionData::default()
            .with_partition_index(*partition)
            .with_error_code(res.error)
            .with_high_watermark(res.high_watermark)
            .with_last_stable_offset(res.high_watermark)
            .with_log_start_offset(res.log_start_offset)
            .with_records(Some(res.records));
        match responses.last_mut() {
            Some(t) if t.topic.as_str() == topic => t.partitions.push(pd),
            _ => responses.push(
                FetchableTopicResponse::default()
                    .with_topic(s(topic).into())
                    .with_partitions(vec![pd]),
            ),
        }
    }
    metrics.observe_fetch(Listener::Kafka, started.elapsed());
    FetchResponse::default().with_session_id(0).with_responses(responses)
}

/// Reads every partition once without waiting, within the response's byte budget (the first
/// partition with data always gets at least one record, as Kafka does).
async fn fetch_all(
    ctx: &Ctx,
    wanted: &[(String, i32, i64, usize)],
    max_bytes: i32,
) -> Vec<PartFetch> {
    let mut budget = if max_bytes <= 0 { usize::MAX } else { max_bytes as usize };
    let mut out = Vec::with_capacity(wanted.len());
    for (topic, partition, offset, part_max) in wanted {
        let limit = (*part_max).min(budget);
        let mut res = fetch_one(ctx, topic, *partition, *offset, limit.max(1)).await;
        if limit == 0 {
            res.records = Bytes::new();
        }
        budget = budget.saturating_sub(res.records.len());
        out.push(res);
    }
    out
}
