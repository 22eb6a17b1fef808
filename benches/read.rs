//! Read side of the storage engine, from page cache:
//! - `replay/*`: sequential replay from offset 0 of a large log (1 GiB by default), every record
//!   CRC-checked by `Log::read`; 1 KiB records and 100-byte records (encoded size, prefix
//!   included).
//! - `random/*`: one record at a random offset (index lookup + short scan + CRC).
//! - `open/*`: opening a 10-segment log after a clean shutdown, and after a crash (the last
//!   segment is scanned). Segment size: 128 MiB by default.
//!
//! Run: `cargo bench --bench read -- --quick`. Sizes can be changed with the environment:
//! `MINIKAFKA_BENCH_LOG_BYTES` (replay log size) and `MINIKAFKA_BENCH_OPEN_SEGMENT_BYTES`
//! (e.g. 1073741824 for the 10 GiB open target). Logs are generated once per run in temp dirs.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::record::NewRecord;
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

/// Fills a log in `dir` with records of `encoded_len` bytes, in batches of about 1 MiB, until
/// it holds `total` bytes or has `max_segments` segments with the last one full; closes it
/// cleanly. Returns the number of records.
fn generate(
    dir: &Path,
    segment_bytes: u64,
    total: u64,
    max_segments: usize,
    encoded_len: usize,
) -> u64 {
    let value = vec![0x5au8; encoded_len - minikafka::record::MIN_RECORD_LEN];
    let rec = NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: &value, headers: &[] };
    assert_eq!(rec.encoded_len(), encoded_len);
    let batch = vec![rec; (1 << 20) / encoded_len];
    let batch_bytes = (batch.len() * encoded_len) as u64;
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

/// The ceiling CRC checking puts on replay on this machine: crc32fast over the same bytes,
/// as one 1 MiB buffer and as 100-byte pieces.
fn bench_crc(c: &mut Criterion) {
    let buf = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("crc32fast");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("1MiB", |b| b.iter(|| crc32fast::hash(black_box(&buf))));
    // Far bigger than the CPU caches: the memory-bandwidth ceiling of a CRC-checked replay.
    let big = vec![0x5au8; 1 << 30];
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.sample_size(10);
    group.bench_function("1GiB-buffer", |b| b.iter(|| crc32fast::hash(black_box(&big))));
    drop(big);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("100B-pieces", |b| {
        b.iter(|| buf.chunks(100).fold(0u32, |acc, c| acc ^ crc32fast::hash(black_box(c))))
    });
    group.finish();
}

criterion_group!(benches, bench_replay, bench_random, bench_open, bench_crc);
criterion_main!(benches);
