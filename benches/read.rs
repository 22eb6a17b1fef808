//! Read side of the storage engine, from page cache:
//! - `replay/*`: sequential replay from offset 0 of a large log (1 GiB by default) through
//!   `Log::read`, which walks batch headers only (every batch's CRC-32C was checked on append and
//!   at recovery; consumers check it again); records of about 1 KiB and 100 bytes as encoded in
//!   their RecordBatch v2 (length prefix included), in batches of about 1 MiB.
//! - `random/*`: the batch holding a random offset (index lookup + short walk of batch headers).
//! - `open/*`: opening a 10-segment log after a clean shutdown, and after a crash (the last
//!   segment is scanned). Segment size: 128 MiB by default.
//!
//! Run: `cargo bench --bench read -- --quick`. Sizes can be changed with the environment:
//! `MINIKAFKA_BENCH_LOG_BYTES` (replay log size) and `MINIKAFKA_BENCH_OPEN_SEGMENT_BYTES`
//! (e.g. 1073741824 for the 10 GiB open target). Logs are generated once per run in temp dirs.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::batch::Compression;
use minikafka::record::{self, NewRecord};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

fn env_bytes(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, fsync: FsyncPolicy::Never, ..LogConfig::default() }
}

/// Bytes a record takes in a batch besides its value, about: length (2 bytes from 64 bytes on),
/// attributes, timestamp delta (0), offset delta (2 bytes from delta 64 on, 3 from 8192), null
/// key, value length (2 bytes) and header count.
const RECORD_OVERHEAD: usize = 10;
/// About the size of the batches `generate` builds: a little below the default
/// `max_record_bytes` (1 MiB, a whole batch), leaving room for the batch header.
const BATCH_BYTES: usize = (1 << 20) - 4096;

/// Fills a log in `dir` with records of about `encoded_len` bytes, in batches of about 1 MiB,
/// until it holds `total` bytes or has `max_segments` segments with the last one full; closes
/// it cleanly. Returns the number of records.
fn generate(
    dir: &Path,
    segment_bytes: u64,
    total: u64,
    max_segments: usize,
    encoded_len: usize,
) -> u64 {
    let value = vec![0x5au8; encoded_len - RECORD_OVERHEAD];
    let rec =
        NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: Some(&value), headers: &[] };
    let batch = vec![rec; BATCH_BYTES / encoded_len];
    let batch_bytes = record::build_batch(&batch, Compression::None).expect("batch").len() as u64;
    assert!(batch_bytes <= u64::from(record::DEFAULT_MAX_RECORD_BYTES), "{batch_bytes}-byte batch");
    // A segment takes whole batches while header + batches fit in segment_bytes.
    let per_segment = ((segment_bytes - 24) / batch_bytes).max(1);
    let max_batches = per_segment.saturating_mul(max_segments as u64);
    let log = Log::open(dir, config(segment_bytes)).expect("open");
    let mut batches = 0;
    while batches < max_batches && log.describe().size_bytes < total {
        log.append(&batch).expect("append");
        batches += 1;
    }
    log.close().expect("close");
    log.next_offset()
}

fn replay(log: &Log) -> (u64, u64) {
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut at = log.log_start_offset();
    let end = log.next_offset();
    while at < end {
        let slice = log.read(at, 1 << 20).expect("read");
        bytes += slice.len() as u64;
        records += slice.next_offset() - at;
        at = slice.next_offset();
    }
    (records, bytes)
}

/// `replay` as a consumer does it: every batch's CRC-32C checked and its records decoded.
fn replay_verified(log: &Log) -> (u64, u64) {
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut scratch = Vec::new();
    let mut at = log.log_start_offset();
    let end = log.next_offset();
    while at < end {
        let slice = log.read(at, 1 << 20).expect("read");
        bytes += slice.len() as u64;
        record::for_each_record(slice.bytes(), true, &mut scratch, |r| {
            records += u64::from(r.offset >= at as i64);
            std::ops::ControlFlow::Continue(())
        })
        .expect("stored batches pass their CRC");
        at = slice.next_offset();
    }
    (records, bytes)
}

fn bench_replay(c: &mut Criterion) {
    let total = env_bytes("MINIKAFKA_BENCH_LOG_BYTES", 1 << 30);
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for encoded_len in [1024usize, 100] {
        let dir = tempfile::tempdir().expect("temp dir");
        let n = generate(dir.path(), 1 << 30, total, usize::MAX, encoded_len);
        let log = Log::open(dir.path(), config(1 << 30)).expect("open");
        log.advise_sequential();
        let (records, bytes) = replay(&log); // also warms the page cache
        assert_eq!(records, n);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("{encoded_len}B-records/{records}-records/wall"), |b| {
            b.iter(|| black_box(replay(&log)))
        });
        // The same, timed in CPU time of this thread: throughput on one core.
        group.bench_function(format!("{encoded_len}B-records/{records}-records/cpu"), |b| {
            b.iter_custom(|iters| {
                let start = support::thread_cpu_time();
                for _ in 0..iters {
                    black_box(replay(&log));
                }
                support::thread_cpu_time() - start
            })
        });
        // And as a consumer reads it: CRC-32C of every batch, every record decoded.
        assert_eq!(replay_verified(&log).0, n);
        group.bench_function(format!("{encoded_len}B-records/{records}-records/verified"), |b| {
            b.iter(|| black_box(replay_verified(&log)))
        });
    }
    group.finish();
}

fn bench_random(c: &mut Criterion) {
    let total = env_bytes("MINIKAFKA_BENCH_LOG_BYTES", 1 << 30).min(256 << 20);
    let dir = tempfile::tempdir().expect("temp dir");
    let n = generate(dir.path(), 64 << 20, total, usize::MAX, 1024);
    let log = Log::open(dir.path(), config(64 << 20)).expect("open");
    replay(&log);
    let mut group = c.benchmark_group("random");
    group.throughput(Throughput::Elements(1));
    let mut x = 0x9e3779b97f4a7c15u64;
    group.bench_function("1KiB-record", |b| {
        b.iter(|| {
            // xorshift64: cheap and deterministic, so the bench measures the read only.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            black_box(log.read(x % n, 1).expect("read"))
        })
    });
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let segment_bytes = env_bytes("MINIKAFKA_BENCH_OPEN_SEGMENT_BYTES", 128 << 20);
    let dir = tempfile::tempdir().expect("temp dir");
    // Ten full segments: the last one (the one a crash-open scans) is full too.
    generate(dir.path(), segment_bytes, u64::MAX, 10, 1024);
    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let log = Log::open(dir.path(), config(segment_bytes)).expect("open");
    let segments = log.describe().segments;
    log.close().expect("close");
    drop(log);
    // State between iterations: closed cleanly (generate() closed it; each iteration closes).
    group.bench_function(format!("clean/{segments}x{}MiB", segment_bytes >> 20), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = Log::open(dir.path(), config(segment_bytes)).expect("open");
                spent += start.elapsed();
                black_box(log.next_offset());
                log.close().expect("close");
            }
            spent
        })
    });
    // State between iterations: crashed (dropped without close(): no clean marker, so the last
    // segment is scanned).
    drop(Log::open(dir.path(), config(segment_bytes)).expect("open"));
    group.bench_function(format!("crash/{segments}x{}MiB", segment_bytes >> 20), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = Log::open(dir.path(), config(segment_bytes)).expect("open");
                spent += start.elapsed();
                black_box(log.next_offset());
            }
            spent
        })
    });
    group.finish();
}

/// The ceiling CRC checking puts on a consumer (and on append and recovery) on this machine:
/// CRC-32C (RecordBatch v2's checksum) over the same bytes, as one 1 MiB buffer (a batch) and
/// as 100-byte pieces.
fn bench_crc(c: &mut Criterion) {
    let buf = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("crc32c");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("1MiB", |b| b.iter(|| crc32c::crc32c(black_box(&buf))));
    // Far bigger than the CPU caches: the memory-bandwidth ceiling of a CRC-checked replay.
    let big = vec![0x5au8; 1 << 30];
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.sample_size(10);
    group.bench_function("1GiB-buffer", |b| b.iter(|| crc32c::crc32c(black_box(&big))));
    drop(big);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("100B-pieces", |b| {
        b.iter(|| buf.chunks(100).fold(0u32, |acc, c| acc ^ crc32c::crc32c(black_box(c))))
    });
    group.finish();
}

criterion_group!(benches, bench_replay, bench_random, bench_open, bench_crc);
criterion_main!(benches);
