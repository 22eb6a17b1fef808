//! Fetch: reads the named partitions (each once, however often it is named) within the response's
//! byte budget, long-polling when nothing is there yet. The budget is the request's `max_bytes`
//! within the broker's `fetch_max_bytes`, less the partitions' own fields, so a response never
//! outgrows the frame limit nor an i32 length. A long poll re-reads only the partitions that
//! received records, so its cost follows the appends, not the partitions named times wake-ups.
//! From v13 topics are named by ID (an unknown ID is UNKNOWN_TOPIC_ID, which makes clients refresh
//! their metadata); fetch sessions are not kept: every answer is a full one with session id 0.
//! Reads go through the cluster: only the partition's leader answers, only below the high
//! watermark, and (v9+) only for a client that names the current leader epoch, or none.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{
    Ctx, MAX_FETCH_WAIT, MAX_PARTITIONS_PER_REQUEST, cluster_error_code, code, error_kind, s,
};
use crate::kafka::splice::Field;
use crate::metrics::Listener;
use crate::storage::ReadSlice;

/// Bytes a response's own fields take per partition, beyond its records and topic name (index,
/// error, offsets, lengths, tagged fields; about 50), rounded up.
const PARTITION_OVERHEAD: usize = 64;
/// The response header and top-level fields, rounded up.
const RESPONSE_OVERHEAD: usize = 1024;
/// A hard ceiling whatever the configuration says: sizes stay far from i32::MAX.
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// First Fetch version that names topics by ID (KIP-516).
const TOPIC_ID_VERSION: i16 = 13;
/// First Fetch version whose partitions carry the client's current leader epoch (KIP-320).
const LEADER_EPOCH_VERSION: i16 = 9;

/// One partition a Fetch asks for.
struct Wanted {
    /// The topic's name; empty when `unknown_id`.
    topic: String,
    /// The ID the request named the topic by (v13+), else nil.
    topic_id: Uuid,
    /// Named by an ID no topic has.
    unknown_id: bool,
    partition: i32,
    offset: i64,
    /// The partition's own byte limit.
    max_bytes: usize,
    /// The leader epoch the client believes current (v9+; -1 or older versions: none).
    leader_epoch: Option<i32>,
}

/// One partition's fetch outcome.
struct PartFetch {
    error: i16,
    /// Records in `records`.
    count: u64,
    high_watermark: i64,
    log_start_offset: i64,
    /// A view of `slice`, which the response holds.
    records: Bytes,
    /// The stored batches, for sending them from the segment file.
    slice: Option<ReadSlice>,
}

impl PartFetch {
    fn failed(error: i16) -> PartFetch {
        PartFetch {
            error,
            count: 0,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            slice: None,
        }
    }
}

async fn fetch_one(ctx: &Ctx, w: &Wanted, max_bytes: usize) -> PartFetch {
    let fail = PartFetch::failed;
    if w.partition < 0 {
        return fail(code(ResponseError::UnknownTopicOrPartition));
    }
    if w.offset < 0 {
        return fail(code(ResponseError::OffsetOutOfRange));
    }
    let (partition, offset) = (w.partition as u32, w.offset as u64);
    match ctx
        .cluster
        .fetch(&w.topic, partition, offset, max_bytes.max(1), 0, Duration::ZERO, w.leader_epoch)
        .await
    {
        Ok(f) => {
            // Stored batches are Kafka's: sent as they are, straight from the segment's mapping
            // (the response splices them in; see `kafka::splice`).
            let (records, slice) = if f.records.is_empty() {
                (Bytes::new(), None)
            } else {
                (Bytes::from_owner(f.records.clone()), Some(f.records.clone()))
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
                slice,
            }
        }
        Err(e) => fail(cluster_error_code(&e)),
    }
}

/// The partitions a request names, each once (its first mention wins: a partition named twice
/// would be read, and answered, twice), at most [`MAX_PARTITIONS_PER_REQUEST`]. Topics named by
/// ID (v13+) are looked up once per topic entry.
fn wanted_partitions(ctx: &Ctx, r: &FetchRequest, v: i16) -> Vec<Wanted> {
    let mut seen: HashSet<(String, Uuid, i32)> = HashSet::new();
    let mut wanted = Vec::new();
    for t in &r.topics {
        let (topic, unknown_id) = if v >= TOPIC_ID_VERSION {
            match ctx.broker.topic_by_id(*t.topic_id.as_bytes()) {
                Some(name) => (name, false),
                None => (String::new(), true),
            }
        } else {
            (t.topic.to_string(), false)
        };
        for p in &t.partitions {
            if wanted.len() >= MAX_PARTITIONS_PER_REQUEST {
                return wanted;
            }
            if seen.insert((topic.clone(), t.topic_id, p.partition)) {
                wanted.push(Wanted {
                    topic: topic.clone(),
                    topic_id: t.topic_id,
                    unknown_id,
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    leader_epoch: (v >= LEADER_EPOCH_VERSION && p.current_leader_epoch >= 0)
                        .then_some(p.current_leader_epoch),
                });
            }
        }
    }
    wanted
}

/// Bytes of records the response may carry: what the request asks (`max_bytes <= 0`: no limit)
/// within the broker's cap less the response's own fields, so the whole frame fits the cap.
fn record_budget(cap: u32, max_bytes: i32, wanted: &[Wanted]) -> usize {
    let overhead: usize = RESPONSE_OVERHEAD
        + wanted.iter().map(|w| PARTITION_OVERHEAD + w.topic.len()).sum::<usize>();
    let cap = (cap as usize).min(MAX_RESPONSE_BYTES).saturating_sub(overhead);
    if max_bytes <= 0 { cap } else { (max_bytes as usize).min(cap) }
}

/// The answer, and the stored batches it holds (for sending them from their segment files).
pub(super) async fn fetch(ctx: &Ctx, r: FetchRequest, v: i16) -> (FetchResponse, Vec<Field>) {
    let started = Instant::now();
    let wanted = wanted_partitions(ctx, &r, v);
    let budget = record_budget(ctx.broker.config().fetch_max_bytes, r.max_bytes, &wanted);
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = (r.min_bytes.max(0) as usize).max(1);

    let mut results = fetch_all(ctx, &wanted, budget).await;
    let mut got: usize = results.iter().map(|p| p.records.len()).sum();
    let any_error = results.iter().any(|p| p.error != 0);
    if got < min_bytes && !any_error && !max_wait.is_zero() && !wanted.is_empty() {
        // Long-poll: each empty partition gets a waiter that reports its index once records land
        // there; only reported partitions are read again.
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        let mut waits = JoinSet::new();
        for (i, w) in wanted.iter().enumerate() {
            if !results[i].records.is_empty() || w.unknown_id || w.partition < 0 || w.offset < 0 {
                continue;
            }
            let (cluster, topic, partition, offset, epoch, tx) = (
                ctx.cluster.clone(),
                w.topic.clone(),
                w.partition as u32,
                w.offset as u64,
                w.leader_epoch,
                tx.clone(),
            );
            waits.spawn(async move {
                let res = cluster.fetch(&topic, partition, offset, 1, 1, max_wait, epoch).await;
                if res.is_ok_and(|f| !f.records.is_empty()) {
                    let _ = tx.send(i);
                }
            });
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + max_wait;
        // Ends at the deadline, when enough arrived, or when every waiter is done.
        while let Ok(Some(first)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            let mut changed = vec![first];
            while let Ok(i) = rx.try_recv() {
                changed.push(i);
            }
            for i in changed {
                let res =
                    read_partition(ctx, &wanted[i], budget.saturating_sub(got), got == 0).await;
                got += res.records.len();
                results[i] = res;
            }
            if got >= min_bytes {
                break;
            }
        }
        waits.abort_all();
    }

    let metrics = ctx.broker.metrics();
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut fields = Vec::new();
    for (w, res) in wanted.iter().zip(results) {
        let (topic, partition, offset) = (w.topic.as_str(), w.partition, w.offset);
        if res.error == 0 {
            metrics.record_fetch(topic, partition as u32, res.count, res.records.len() as u64);
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
            .with_partition_index(partition)
            .with_error_code(res.error)
            .with_high_watermark(res.high_watermark)
            .with_last_stable_offset(res.high_watermark)
            .with_log_start_offset(res.log_start_offset)
            .with_records(Some(res.records.clone()));
        if let Some(slice) = res.slice {
            fields.push((res.records, slice));
        }
        // From v13 a topic is answered by the ID it was asked by, before by its name: the crate
        // refuses to encode the field a version lacks (trap 12).
        let by_id = v >= TOPIC_ID_VERSION;
        match responses.last_mut() {
            Some(t) if by_id && t.topic_id == w.topic_id => t.partitions.push(pd),
            Some(t) if !by_id && t.topic.as_str() == topic => t.partitions.push(pd),
            _ => {
                let t = FetchableTopicResponse::default().with_partitions(vec![pd]);
                responses.push(if by_id {
                    t.with_topic_id(w.topic_id)
                } else {
                    t.with_topic(s(topic).into())
                });
            }
        }
    }
    metrics.observe_fetch(Listener::Kafka, started.elapsed());
    (FetchResponse::default().with_session_id(0).with_responses(responses), fields)
}

/// Reads one partition into what is left of the response (`room` bytes). The first partition
/// with data (`first`) always gets at least one record, as Kafka does, so a record larger than
/// the budget still moves the consumer on; others get nothing past the budget.
async fn read_partition(ctx: &Ctx, w: &Wanted, room: usize, first: bool) -> PartFetch {
    if w.unknown_id {
        return PartFetch::failed(code(ResponseError::UnknownTopicId));
    }
    let limit = w.max_bytes.min(room);
    let mut res = fetch_one(ctx, w, limit.max(1)).await;
    if w.max_bytes == 0 || (!first && (limit == 0 || res.records.len() > room)) {
        res.records = Bytes::new();
        res.slice = None;
        res.count = 0;
    }
    res
}

/// Reads every partition once without waiting, within the response's byte budget.
async fn fetch_all(ctx: &Ctx, wanted: &[Wanted], budget: usize) -> Vec<PartFetch> {
    let mut got = 0usize;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let res = read_partition(ctx, w, budget.saturating_sub(got), got == 0).await;
        got += res.records.len();
        out.push(res);
    }
    out
}
