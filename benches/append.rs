//! Append throughput of the storage engine: 1 KiB and 100 B records, batches of 1 and 1000,
//! `FsyncPolicy::Never` and `Always`, through `Log::append` (records: the log builds the
//! RecordBatch v2) and, for batches of 1000, `Log::append_batches` (a batch as a producer sent
//! it: validated, numbered and written, the native and Kafka produce path). Criterion reports
//! bytes/s of the batches as stored (the bytes that land on disk); records/s = that times the
//! batch's record count divided by its stored size, both printed in each benchmark's name.
//!
//! Run: `cargo bench --bench append -- --quick` (add a filter such as `1KiB/batch1000/never`).
//! The log lives in a temp dir and is recreated (outside the timed region) whenever it passes
//! 1 GiB, so a run never fills the disk nor measures writeback of gigabytes of dirty pages.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::batch::Compression;
use minikafka::record::{self, NewRecord};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RECREATE_AFTER_BYTES: u64 = 1 << 30;
/// Segments bigger than the log ever gets between recreations: the timed region measures the
/// append path alone. `append/rolls` measures the cost of sealing (fdatasync of every full
/// segment) separately.
const NO_ROLL_SEGMENT_BYTES: u64 = 2 << 30;
/// Segment size of the `append/rolls` bench.
const ROLL_SEGMENT_BYTES: u64 = 64 << 20;

struct Bench {
    /// Keeps the directory alive (deleted on drop).
    _dir: tempfile::TempDir,
    log: Log,
    config: LogConfig,
}

impl Bench {
    fn new(fsync: FsyncPolicy, segment_bytes: u64) -> Bench {
        let config = LogConfig { segment_bytes, fsync, ..LogConfig::default() };
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(dir.path(), config.clone()).expect("open log");
        Bench { _dir: dir, log, config }
    }

    fn recreate_if_big(&mut self) {
        if self.log.describe().size_bytes > RECREATE_AFTER_BYTES {
            *self = Bench::new(self.config.fsync, self.config.segment_bytes);
        }
    }
}

/// Bytes `records` take on disk as the one batch `Log::append` makes of them.
fn stored_len(records: &[NewRecord<'_>]) -> usize {
    record::build_batch(records, Compression::None).expect("bench records fit a batch").len()
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for (label, value_len) in [("1KiB", 1024usize), ("100B", 100)] {
        let value = vec![0xabu8; value_len];
        let record = NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(&value),
            headers: &[],
        };
        for batch in [1usize, 1000] {
            let records = vec![record; batch];
            let stored = stored_len(&records);
            for (policy_name, policy) in
                [("never", FsyncPolicy::Never), ("always", FsyncPolicy::Always)]
            {
                if policy == FsyncPolicy::Always && batch == 1 {
                    // One fdatasync per record: few samples, or this alone takes minutes.
                    group.sample_size(10);
                } else {
                    group.sample_size(20);
                }
                group.throughput(Throughput::Bytes(stored as u64));
                let name = format!("{label}/batch{batch}/{policy_name}/stored{stored}B");
                let mut bench = Bench::new(policy, NO_ROLL_SEGMENT_BYTES);
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        bench.recreate_if_big();
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(bench.log.append(&records).expect("append"));
                        }
                        start.elapsed()
                    })
                });
            }
        }
        // A producer's batch of 1000, as the produce path hands it over: validated (CRC-32C,
        // records), given its base offset in place, written. The same buffer is appended again
        // each time: the log overwrites the base offset, which the CRC does not cover.
        let mut produced = record::build_batch(&vec![record; 1000], Compression::None).unwrap();
        group.sample_size(20);
        group.throughput(Throughput::Bytes(produced.len() as u64));
        let name = format!("batches/{label}/batch1000/never/stored{}B", produced.len());
        let mut bench = Bench::new(FsyncPolicy::Never, NO_ROLL_SEGMENT_BYTES);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                bench.recreate_if_big();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(bench.log.append_batches(&mut produced).expect("append"));
                }
                start.elapsed()
            })
        });
    }
    // 1KiB/batch1000/never again, timed in CPU time of this thread (throughput on one core;
    // compare with dd's user+sys time). Only meaningful without fsync.
    group.sample_size(20);
    let value = vec![0xabu8; 1024];
    let record =
        NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: Some(&value), headers: &[] };
    let records = vec![record; 1000];
    group.throughput(Throughput::Bytes(stored_len(&records) as u64));
    let mut bench = Bench::new(FsyncPolicy::Never, NO_ROLL_SEGMENT_BYTES);
    group.bench_function("cpu/1KiB/batch1000/never", |b| {
        b.iter_custom(|iters| {
            bench.recreate_if_big();
            let start = support::thread_cpu_time();
            for _ in 0..iters {
                black_box(bench.log.append(&records).expect("append"));
            }
            support::thread_cpu_time() - start
        })
    });
    drop(bench);

    // Same as 1KiB/batch1000/never, but rolling every 64 MiB: each roll fdatasyncs the sealed
    // segment, so this shows what sealing costs on this disk.
    let value = vec![0xabu8; 1024];
    let record =
        NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: Some(&value), headers: &[] };
    let records = vec![record; 1000];
    group.sample_size(20);
    group.throughput(Throughput::Bytes(stored_len(&records) as u64));
    let mut bench = Bench::new(FsyncPolicy::Never, ROLL_SEGMENT_BYTES);
    group.bench_function("rolls/1KiB/batch1000/never/64MiB-segments", |b| {
        b.iter_custom(|iters| {
            bench.recreate_if_big();
            let start = Instant::now();
            for _ in 0..iters {
                black_box(bench.log.append(&records).expect("append"));
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
