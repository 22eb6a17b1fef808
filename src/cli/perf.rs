//! `minikafka perf`: load generators that measure a running broker, like Kafka's
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test`.
//!
//! - `perf produce`: N producers (one connection each) append batches of fixed-size records with
//!   several batches in flight; prints records/s, MB/s (10^6 bytes of record values) and the
//!   latency from sending a batch to its acknowledgement.
//! - `perf consume`: N consumers (partitions split between them) replay a topic with large
//!   fetches, CRC-checking every record as `crate::client::Consumer` does; prints the same
//!   figures with the fetch round-trip time as latency.
//! - `perf latency`: one producer at a fixed rate and a follower consumer long-polling the same
//!   topic; prints the produce-to-consume latency of every record.
//!
//! Owns load generation and measurement only. It never reads the data directory and cannot see
//! the broker's `--fsync` policy (the native protocol does not carry it), so the report echoes
//! `--broker-fsync` as the caller says the broker was started.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{CliError, ConnectArgs};
use crate::client::{Admin, ClientError, Connection};
use crate::protocol::{FETCH_CONTINUE, Request, Response};
use std::ops::ControlFlow;

use crate::batch::{BatchBuilder, BatchError, Compression};
use crate::record::{self, NewRecord};

/// Largest latency recorded (one minute, in µs); larger values are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Bytes asked for per fetch by default (the broker caps a fetch at half its frame limit).
const DEFAULT_FETCH_BYTES: u32 = 4 * 1024 * 1024;
/// Batches in flight when acks are not waited for (bounded so memory stays bounded).
const FIRE_AND_FORGET_IN_FLIGHT: usize = 256;

#[derive(Debug, Args)]
pub struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(Debug, Subcommand)]
enum PerfCommand {
    /// Append fixed-size records as fast as the broker acknowledges them.
    Produce(ProduceArgs),
    /// Replay a topic from its log start (or the last N records) as fast as possible.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate with a follower consumer; report produce-to-consume latency.
    Latency(LatencyArgs),
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// Topic to use (created with --partitions if missing).
    #[arg(long, default_value = "perf")]
    topic: String,
    /// Bytes of each record's value.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    record_size: usize,
    /// Partitions of the topic when it is created here.
    #[arg(long, value_name = "N", default_value_t = 1)]
    partitions: u32,
    /// The broker's fsync policy, as started (echoed in the report; the protocol cannot tell).
    #[arg(long, value_name = "POLICY", default_value = "unknown")]
    broker_fsync: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Whether a producer waits for acknowledgements before sending more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Acks {
    /// At most --in-flight unacknowledged batches per producer.
    #[value(name = "1", alias = "all")]
    Wait,
    /// Fire and forget: batches are pipelined without waiting (up to 256 in flight, to bound
    /// memory); acknowledgements are still checked for errors as they arrive.
    #[value(name = "0", alias = "none")]
    None,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Records to send in total (split between producers). Default 1,000,000 unless --duration.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    num_records: Option<u64>,
    /// Send for this many seconds instead of a fixed count.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Producers in parallel, one connection each.
    #[arg(long, value_name = "N", default_value_t = 1)]
    producers: usize,
    /// Bytes of encoded records per batch (one append request).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    batch_size: usize,
    /// 1: wait for acknowledgements with at most --in-flight batches outstanding; 0: fire and
    /// forget (pipelined).
    #[arg(long, value_enum, default_value = "1")]
    acks: Acks,
    /// Unacknowledged batches per producer with --acks 1.
    #[arg(long, value_name = "N", default_value_t = 8)]
    in_flight: usize,
    /// Give the records N distinct keys in turn (`key-00000000` ..), a workload for a compacted
    /// topic; without it records have no key.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keys: Option<u64>,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Records to read per partition, from the log start; default: up to the log end as it stands
    /// at start.
    #[arg(long, value_name = "N")]
    num_records: Option<u64>,
    /// Consumers in parallel, one connection each; partitions are split between them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    consumers: usize,
    /// Bytes asked for per fetch.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_FETCH_BYTES)]
    fetch_size: u32,
    /// Fetches in flight per consumer (1: each waits for the one before).
    #[arg(long, value_name = "N", default_value_t = 4)]
    fetch_depth: usize,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Records per second to produce.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    rate: u64,
    /// Seconds to produce for.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Longest a follower's fetch waits for new records (long-poll), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    max_wait_ms: u32,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
struct LatencyReport {
    samples: u64,
    mean_us: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

/// What one run measured; printed as text or JSON.
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    topic: String,
    record_size: usize,
    partitions: u32,
    clients: usize,
    broker_fsync: String,
    records: u64,
    value_bytes: u64,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// What the latency measures, in words.
    latency_of: &'static str,
    latency: LatencyReport,
}

impl Report {
    fn print(&self, json: bool) {
        if json {
            // Serialising plain numbers and strings cannot fail.
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        let l = &self.latency;
        println!(
            "{} {}: {} records of {} B in {:.3} s = {:.0} records/s, {:.1} MB/s \
             ({} clients, {} partitions, broker fsync {})",
            self.mode,
            self.topic,
            self.records,
            self.record_size,
            self.seconds,
            self.records_per_sec,
            self.mb_per_sec,
            self.clients,
            self.partitions,
            self.broker_fsync
        );
        println!(
            "latency ({}): mean {:.0} us, p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} samples)",
            self.latency_of, l.mean_us, l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
        );
    }
}

pub(super) async fn run(args: PerfArgs) -> Result<(), CliError> {
    match args.command {
        PerfCommand::Produce(a) => produce(a).await,
        PerfCommand::Consume(a) => consume(a).await,
        PerfCommand::Latency(a) => latency(a).await,
    }
}

fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn record_latency(h: &mut Histogram<u64>, d: Duration, count: u64) {
    let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    // `us` is clamped into the histogram's range, so recording cannot fail.
    let _ = h.record_n(us, count);
}

fn latency_report(h: &Histogram<u64>) -> LatencyReport {
    LatencyReport {
        samples: h.len(),
        mean_us: h.mean(),
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    mode: &'static str,
    common: &CommonArgs,
    partitions: u32,
    clients: usize,
    records: u64,
    value_bytes: u64,
    elapsed: Duration,
    latency_of: &'static str,
    hist: &Histogram<u64>,
) -> Report {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    Report {
        mode,
        topic: common.topic.clone(),
        record_size: value_bytes.checked_div(records).unwrap_or(0) as usize,
        partitions,
        clients,
        broker_fsync: common.broker_fsync.clone(),
        records,
        value_bytes,
        seconds,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: value_bytes as f64 / seconds / 1e6,
        latency_of,
        latency: latency_report(hist),
    }
}

/// The native address of each partition's leader, in partition order, in a cluster of several
/// brokers; `None` on a single node.
async fn partition_leaders(common: &CommonArgs) -> Result<Option<Vec<String>>, CliError> {
    let conn = common.connect.connect().await?;
    let (brokers, partitions) = Admin::new(conn).describe_partitions(Some(&common.topic)).await?;
    let mut addrs = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let addr = p
            .leader
            .and_then(|l| brokers.iter().find(|b| b.id == l))
            .and_then(|b| b.native_addr.clone())
            .ok_or_else(|| {
                CliError::Broker(format!(
                    "{} partition {} has no leader with a native address right now",
                    common.topic, p.partition
                ))
            })?;
        addrs.push(addr);
    }
    Ok((brokers.len() > 1).then_some(addrs))
}

/// A connection to `addr`, or to the `--broker` list when there is no leader list.
async fn connect_to(common: &CommonArgs, addr: Option<&String>) -> Result<Connection, CliError> {
    match addr {
        Some(addr) => {
            let token = common.connect.token()?;
            Ok(Connection::connect_with_token(addr, token.as_deref()).await?)
        }
        None => common.connect.connect().await,
    }
}

/// Creates the topic if it is missing; returns its partition count.
async fn ensure_topic(conn: &Connection, common: &CommonArgs) -> Result<u32, CliError> {
    if common.partitions == 0 {
        return Err(CliError::Usage("--partitions must be at least 1".to_string()));
    }
    let d = Admin::new(conn.clone()).create_topic(&common.topic, common.partitions, true).await?;
    let n = d.partitions.len() as u32;
    if n != common.partitions {
        tracing::warn!(topic = %common.topic, partitions = n, "topic exists with another partition count; using it");
    }
    Ok(n)
}

/// A value of `size` bytes of printable, not all-equal content.
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i * 7 % 26) as u8).collect()
}

fn encode_err(topic: &str, source: BatchError) -> CliError {
    CliError::Client(ClientError::Encode { topic: topic.to_string(), source })
}

fn appended(resp: Response) -> Result<u64, CliError> {
    match resp {
        Response::Appended { first_offset, next_offset, .. } => Ok(next_offset - first_offset),
        other => Err(CliError::Broker(format!("unexpected response to Append: {other:?}"))),
    }
}

async fn produce(args: ProduceArgs) -> Result<(), CliError> {
    let common = &args.common;
    if args.producers == 0 {
        return Err(CliError::Usage("--producers must be at least 1".to_string()));
    }
    let conn = common.connect.connect().await?;
    let partitions = ensure_topic(&conn, common).await?;
    drop(conn);
    // One record as a batch holds it, plus 2 bytes for the offset deltas' longer varints past the
    // first record: batches stay within --batch-size, header included (the broker's batch limit,
    // Kafka's max.message.bytes, counts the whole batch).
    let value = payload(common.record_size);
    let longest_key = args.keys.map(|n| key_of(n.saturating_sub(1)));
    let one = NewRecord {
        timestamp_ms: record::now_ms(),
        key: longest_key.as_deref(),
        value: Some(&value),
        headers: &[],
    };
    let single =
        record::build_batch(&[one], Compression::None).map_err(|e| encode_err(&common.topic, e))?;
    let record_len = single.len() - crate::batch::HEADER_LEN + 2;
    let batch_records =
        (args.batch_size.saturating_sub(crate::batch::HEADER_LEN) / record_len).max(1) as u64;
    let in_flight = match args.acks {
        Acks::Wait => args.in_flight.max(1),
        Acks::None => FIRE_AND_FORGET_IN_FLIGHT,
    };
    let limit = match (args.num_records, args.duration) {
        (_, Some(secs)) if secs > 0.0 => Limit::Until(Duration::from_secs_f64(secs)),
        (_, Some(_)) => return Err(CliError::Usage("--duration must be positive".to_string())),
        (n, None) => Limit::Count(n.unwrap_or(1_000_000)),
    };
    // In a cluster, partitions have different leaders: producer i then writes only partition
    // i mod N, on a connection to that partition's leader (an append anywhere else is refused).
    let leaders = partition_leaders(common).await?;
    let mut conns = Vec::with_capacity(args.producers);
    for i in 0..args.producers {
        conns.push(connect_to(common, leaders.as_ref().map(|a| &a[i % a.len()])).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.producers);
    for (i, conn) in conns.into_iter().enumerate() {
        let count = match limit {
            Limit::Count(n) => {
                // Split evenly; the first producers take the remainder.
                let p = args.producers as u64;
                Limit::Count(n / p + u64::from((i as u64) < n % p))
            }
            until => until,
        };
        let job = ProduceJob {
            conn,
            topic: common.topic.clone(),
            value: payload(common.record_size),
            partitions,
            first_partition: i as u32,
            pinned: leaders.is_some(),
            batch_records,
            in_flight,
            limit: count,
            started,
            keys: args.keys.map(|n| (n, i as u64)),
        };
        tasks.push(tokio::spawn(job.run()));
    }
    let mut hist = new_histogram();
    let mut records = 0;
    for t in tasks {
        let (n, h) =
            t.await.map_err(|e| CliError::Broker(format!("producer task failed: {e}")))??;
        records += n;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = hist.add(&h);
    }
    let elapsed = started.elapsed();
    build_report(
        "produce",
        common,
        partitions,
        args.producers,
        records,
        records * common.record_size as u64,
        elapsed,
        "batch send to acknowledgement, per record",
        &hist,
    )
    .print(common.json);
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    Count(u64),
    Until(Duration),
}

struct ProduceJob {
    conn: Connection,
    topic: String,
    value: Vec<u8>,
    partitions: u32,
    first_partition: u32,
    /// Always `first_partition` (mod the count) instead of each partition in turn.
    pinned: bool,
    batch_records: u64,
    in_flight: usize,
    limit: Limit,
    started: Instant,
    /// With `--keys N`: N, and where in the keys this producer starts.
    keys: Option<(u64, u64)>,
}

/// The key `--keys` gives record number `i`: fixed width, so every record has the same size.
fn key_of(i: u64) -> Vec<u8> {
    let mut key = Vec::new();
    write_key(&mut key, i);
    key
}

fn write_key(out: &mut Vec<u8>, i: u64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "key-{i:08}");
}

impl ProduceJob {
    /// Sends batches until the limit; returns the records acknowledged and their latencies.
    async fn run(self) -> Result<(u64, Histogram<u64>), CliError> {
        let mut hist = new_histogram();
        let mut pending = VecDeque::new();
        let mut sent = 0u64;
        let mut acked = 0u64;
        let mut batch_no = 0u32;
        loop {
            let n = match self.limit {
                Limit::Count(total) => self.batch_records.min(total - sent),
                Limit::Until(d) if self.started.elapsed() < d => self.batch_records,
                Limit::Until(_) => 0,
            };
            if n == 0 {
                break;
            }
            let buf = self.conn.batch_buffer(n as usize * (self.value.len() + 24) + 64);
            let timestamp_ms = record::now_ms();
            let mut builder = BatchBuilder::in_buffer(Compression::None, buf);
            let mut key = Vec::new();
            for i in 0..n {
                if let Some((keys, first)) = self.keys {
                    key.clear();
                    write_key(&mut key, (first + sent + i) % keys);
                }
                let rec = NewRecord {
                    timestamp_ms,
                    key: self.keys.map(|_| key.as_slice()),
                    value: Some(&self.value),
                    headers: &[],
                };
                record::push_record(&mut builder, &rec).map_err(|e| encode_err(&self.topic, e))?;
            }
            let buf = builder.finish().map_err(|e| encode_err(&self.topic, e))?;
            let partition = (self.first_partition + batch_no) % self.partitions;
            if !self.pinned {
                batch_no = batch_no.wrapping_add(1);
            }
            let req = Request::Append {
                topic: self.topic.clone(),
                partition: Some(partition),
                key_hint: None,
                // The buffer is handed over; the connection keeps it for reuse once written.
                records: bytes::Bytes::from(buf),
            };
            let sent_at = Instant::now();
            let p = self.conn.start(&req).await?;
            drop(req); // so the connection holds the last reference and can reuse the buffer
            pending.push_back((sent_at, n, p));
            sent += n;
            while pending.len() >= self.in_flight {
                acked += wait_ack(&mut pending, &mut hist).await?;
            }
        }
        while !pending.is_empty() {
            acked += wait_ack(&mut pending, &mut hist).await?;
        }
        Ok((acked, hist))
    }
}

async fn wait_ack(
    pending: &mut VecDeque<(Instant, u64, crate::client::Pending)>,
    hist: &mut Histogram<u64>,
) -> Result<u64, CliError> {
    let Some((sent_at, n, p)) = pending.pop_front() else {
        return Ok(0);
    };
    let stored = appended(p.wait().await?)?;
    record_latency(hist, sent_at.elapsed(), n);
    if stored != n {
        return Err(CliError::Broker(format!("sent {n} records, the broker stored {stored}")));
    }
    Ok(n)
}

async fn consume(args: ConsumeArgs) -> Result<(), CliError> {
    let common = &args.common;
    if args.consumers == 0 || args.fetch_depth == 0 {
        return Err(CliError::Usage(
            "--consumers and --fetch-depth must be at least 1".to_string(),
        ));
    }
    let conn = common.connect.connect().await?;
    let description = Admin::new(conn.clone()).describe_topic(&common.topic).await?;
    drop(conn);
    let partitions = description.partitions.len() as u32;
    // (partition, first offset, end offset) per consumer.
    let mut plans: Vec<Vec<(u32, u64, u64)>> = vec![Vec::new(); args.consumers];
    for (i, p) in description.partitions.iter().enumerate() {
        let end = match args.num_records {
            Some(n) => p.next_offset.min(p.log_start_offset.saturating_add(n)),
            None => p.next_offset,
        };
        plans[i % args.consumers].push((p.partition, p.log_start_offset, end));
    }
    let mut conns = Vec::with_capacity(args.consumers);
    for _ in 0..args.consumers {
        conns.push(common.connect.connect().await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (conn, plan) in conns.into_iter().zip(plans) {
        let topic = common.topic.clone();
        let (fetch_size, depth) = (args.fetch_size, args.fetch_depth);
        tasks.push(tokio::spawn(replay(conn, topic, plan, fetch_size, depth)));
    }
    let mut hist = new_histogram();
    let (mut records, mut value_bytes) = (0, 0);
    for t in tasks {
        let (n, b, h) =
            t.await.map_err(|e| CliError::Broker(format!("consumer task failed: {e}")))??;
        records += n;
        value_bytes += b;
        let _ = hist.add(&h);
    }
    let elapsed = started.elapsed();
    build_report(
        "consume",
        common,
        partitions,
        args.consumers,
        records,
        value_bytes,
        elapsed,
        "fetch round trip, per fetch",
        &hist,
    )
    .print(common.json);
    Ok(())
}

/// Reads each planned partition range, CRC-checking every record, with `--fetch-depth` fetches
/// in flight: the first from the offset wanted, the rest continuing where the one before ends
/// (`FETCH_CONTINUE`), so the broker reads the next chunk while this checks the last.
async fn replay(
    conn: Connection,
    topic: String,
    plan: Vec<(u32, u64, u64)>,
    fetch_size: u32,
    depth: usize,
) -> Result<(u64, u64, Histogram<u64>), CliError> {
    let mut hist = new_histogram();
    let (mut total, mut value_bytes) = (0u64, 0u64);
    let mut scratch = Vec::new();
    for (partition, start, mut end) in plan {
        let mut next = start;
        let mut in_flight = VecDeque::with_capacity(depth);
        while next < end {
            while in_flight.len() < depth {
                let offset = if in_flight.is_empty() { next } else { FETCH_CONTINUE };
                let req = Request::Fetch {
                    topic: topic.clone(),
                    partition,
                    offset,
                    max_bytes: fetch_size,
                    max_wait_ms: 0,
                };
                in_flight.push_back((Instant::now(), conn.start(&req).await?));
            }
            // Invariant: the loop above filled it (depth >= 1).
            let (sent_at, pending) = in_flight.pop_front().expect("a fetch in flight");
            let resp = pending.wait().await?;
            record_latency(&mut hist, sent_at.elapsed(), 1);
            let Response::Fetched { records, .. } = resp else {
                return Err(CliError::Broker(format!("unexpected response to Fetch: {resp:?}")));
            };
            if records.is_empty() {
                // The log was cut back below the end we saw at start: nothing more to read.
                end = next;
                continue;
            }
            let out_of_order = replay_batches(
                &records,
                &mut next,
                end,
                &mut scratch,
                &mut total,
                &mut value_bytes,
            )
            .map_err(|source| ClientError::Corrupt {
                topic: topic.clone(),
                partition,
                offset: next,
                source,
            })?;
            if let Some(offset) = out_of_order {
                return Err(CliError::Broker(format!(
                    "fetch of {topic}/{partition} brought a batch from offset {offset} where \
                     {next} was due"
                )));
            }
        }
        // Fetches still in flight past the end are dropped; the connection discards their
        // answers.
    }
    Ok((total, value_bytes, hist))
}

/// Counts the records of fetched `records` from `*next` (below `end`), CRC-checking each batch,
/// and moves `*next` past the last batch read. A compacted log has gaps (removed records, batches
/// left empty) but its batches still follow each other, so a batch starting past `*next` means
/// the fetch was not the continuation expected: its base offset is returned.
fn replay_batches(
    records: &[u8],
    next: &mut u64,
    end: u64,
    scratch: &mut Vec<u8>,
    total: &mut u64,
    value_bytes: &mut u64,
) -> Result<Option<u64>, BatchError> {
    for view in crate::batch::batches(records) {
        let view = view?;
        view.verify_crc()?;
        let after = view.last_offset() as u64 + 1;
        if after <= *next {
            continue;
        }
        if view.base_offset() as u64 > *next {
            return Ok(Some(view.base_offset() as u64));
        }
        if !view.is_control() {
            for r in view.decoded_records(scratch)? {
                let r = r?;
                let offset = r.offset as u64;
                if offset < *next {
                    continue;
                }
                if offset >= end {
                    *next = end;
                    return Ok(None);
                }
                *total += 1;
                *value_bytes += r.value.map_or(0, <[u8]>::len) as u64;
            }
        }
        *next = after.min(end);
        if *next >= end {
            return Ok(None);
        }
    }
    Ok(None)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn latency(args: LatencyArgs) -> Result<(), CliError> {
    let common = &args.common;
    if common.record_size < 8 {
        return Err(CliError::Usage(
            "--record-size must be at least 8 (the send time is stored in the value)".to_string(),
        ));
    }
    if args.rate == 0 || args.duration <= 0.0 {
        return Err(CliError::Usage("--rate and --duration must be positive".to_string()));
    }
    let conn = common.connect.connect().await?;
    let partitions = ensure_topic(&conn, common).await?;
    let description = Admin::new(conn.clone()).describe_topic(&common.topic).await?;
    // In a cluster each partition is written and followed on its leader.
    let leaders = partition_leaders(common).await?;
    let mut producers = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        producers.push(match &leaders {
            Some(addrs) => connect_to(common, addrs.get(p)).await?,
            None => conn.clone(),
        });
    }
    let duration = Duration::from_secs_f64(args.duration);
    let expected = (args.rate as f64 * args.duration).round() as u64;
    // Followers start at the log end, on their own connection, before anything is produced.
    let mut followers = Vec::new();
    let seen_total = Arc::new(AtomicU64::new(0));
    for p in &description.partitions {
        let leader = leaders.as_ref().and_then(|a| a.get(p.partition as usize));
        let fconn = connect_to(common, leader).await?;
        let topic = common.topic.clone();
        let (partition, start) = (p.partition, p.next_offset);
        let deadline = Instant::now() + duration + Duration::from_secs(10);
        let max_wait_ms = args.max_wait_ms;
        let until = Until { seen_total: seen_total.clone(), expected, deadline };
        followers.push(tokio::spawn(follow(fconn, topic, partition, start, until, max_wait_ms)));
    }
    let started = Instant::now();
    let value = payload(common.record_size);
    let mut values = Vec::new();
    let mut pending = VecDeque::new();
    let mut sent = 0u64;
    let mut batch_no = 0u32;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < expected {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(expected);
        if due <= sent {
            continue;
        }
        let n = (due - sent) as usize;
        // Each value carries its send time in µs (the record timestamp has only ms resolution).
        values.clear();
        values.resize(n, value.clone());
        let mut builder = BatchBuilder::in_buffer(
            Compression::None,
            Vec::with_capacity(n * (value.len() + 8) + 64),
        );
        let ts = record::now_ms();
        let t = now_us().to_le_bytes();
        for v in &mut values {
            v[..8].copy_from_slice(&t);
            let rec = NewRecord { timestamp_ms: ts, key: None, value: Some(v), headers: &[] };
            record::push_record(&mut builder, &rec).map_err(|e| encode_err(&common.topic, e))?;
        }
        let buf = builder.finish().map_err(|e| encode_err(&common.topic, e))?;
        let partition = batch_no % partitions;
        let req = Request::Append {
            topic: common.topic.clone(),
            partition: Some(partition),
            key_hint: None,
            records: bytes::Bytes::from(buf),
        };
        batch_no = batch_no.wrapping_add(1);
        pending.push_back(producers[partition as usize].start(&req).await?);
        sent += n as u64;
        // Collect acknowledgements without waiting, so a slow ack never delays the schedule.
        while let Some(front) = pending.front_mut() {
            match front.try_take() {
                Some(r) => {
                    appended(r?)?;
                    pending.pop_front();
                }
                None if pending.len() > FIRE_AND_FORGET_IN_FLIGHT => {
                    if let Some(p) = pending.pop_front() {
                        appended(p.wait().await?)?;
                    }
                }
                None => break,
            }
        }
    }
    for p in pending {
        appended(p.wait().await?)?;
    }
    let produce_elapsed = started.elapsed();
    let mut hist = new_histogram();
    let mut received = 0;
    for f in followers {
        let (n, h) =
            f.await.map_err(|e| CliError::Broker(format!("follower task failed: {e}")))??;
        received += n;
        let _ = hist.add(&h);
    }
    if received < sent {
        tracing::warn!(sent, received, "followers did not see every record before their deadline");
    }
    build_report(
        "latency",
        common,
        partitions,
        1,
        received,
        received * common.record_size as u64,
        produce_elapsed,
        "produce to consume, per record",
        &hist,
    )
    .print(common.json);
    Ok(())
}

/// When followers stop: once all of them together saw every record produced, or at a deadline.
struct Until {
    seen_total: Arc<AtomicU64>,
    expected: u64,
    deadline: Instant,
}

/// Long-polls one partition from `start`, recording each record's age (now minus the send time
/// in its value), until the followers saw every record or the deadline passed.
async fn follow(
    conn: Connection,
    topic: String,
    partition: u32,
    start: u64,
    until: Until,
    max_wait_ms: u32,
) -> Result<(u64, Histogram<u64>), CliError> {
    let mut hist = new_histogram();
    let mut offset = start;
    let mut seen = 0u64;
    let mut scratch = Vec::new();
    while Instant::now() < until.deadline
        && until.seen_total.load(Ordering::Acquire) < until.expected
    {
        let req = Request::Fetch {
            topic: topic.clone(),
            partition,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms,
        };
        let resp = conn.request(&req).await?;
        let Response::Fetched { records, .. } = resp else {
            return Err(CliError::Broker(format!("unexpected response to Fetch: {resp:?}")));
        };
        let now = now_us();
        let mut got = 0;
        record::for_each_record(&records, true, &mut scratch, |view| {
            if (view.offset as u64) < offset {
                return ControlFlow::Continue(());
            }
            offset = view.offset as u64 + 1;
            got += 1;
            if let Some(t) = view.value.and_then(|v| v.get(..8)) {
                let t = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
                record_latency(&mut hist, Duration::from_micros(now.saturating_sub(t)), 1);
            }
            ControlFlow::Continue(())
        })
        .map_err(|source| ClientError::Corrupt {
            topic: topic.clone(),
            partition,
            offset,
            source,
        })?;
        seen += got;
        until.seen_total.fetch_add(got, Ordering::AcqRel);
    }
    Ok((seen, hist))
}
