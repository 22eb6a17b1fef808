//! Times `Log::open` of an existing log directory, after a clean shutdown and after a crash,
//! with the storage layer's debug logs (which split recovery into its phases).
//!
//! `cargo run --release --example storage_open -- DIR [SEGMENT_BYTES]`: if DIR holds no log, one
//! of ten full segments of 1 KiB records (in RecordBatch v2s of about 1 MiB) is written first
//! (10 GiB with the default segment size).

use minikafka::record::NewRecord;
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::time::{Duration, Instant};

/// CPU time of the calling thread: the machine is shared, so wall time alone overstates.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is supported on Linux; the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "minikafka::storage=debug".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: storage_open DIR [SEGMENT_BYTES]");
    let segment_bytes: u64 = args.next().map_or(1 << 30, |s| s.parse().expect("SEGMENT_BYTES"));
    let config = LogConfig { segment_bytes, fsync: FsyncPolicy::Never, ..LogConfig::default() };
    let fresh = !std::path::Path::new(&dir).exists();
    let log = Log::open(&dir, config.clone()).expect("open");
    if fresh {
        // A value that makes a record of about 1 KiB in its batch (10 bytes of record framing),
        // and batches a little under the default max_record_bytes (1 MiB: a whole batch).
        let value = vec![7u8; 1024 - 10];
        let rec = NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(&value),
            headers: &[],
        };
        let batch = vec![rec; 1020];
        let batch_bytes =
            minikafka::record::build_batch(&batch, minikafka::batch::Compression::None)
                .expect("batch")
                .len() as u64;
        let per_segment = ((segment_bytes - 24) / batch_bytes).max(1);
        for _ in 0..per_segment * 10 {
            log.append(&batch).expect("append");
        }
    }
    log.close().expect("close");
    drop(log);
    for round in 0..3 {
        let (t, c) = (Instant::now(), thread_cpu_time());
        let log = Log::open(&dir, config.clone()).expect("open");
        let clean_ms = t.elapsed().as_secs_f64() * 1e3;
        let clean_cpu_ms = (thread_cpu_time() - c).as_secs_f64() * 1e3;
        let d = log.describe();
        drop(log); // a crash, for the files
        let (t, c) = (Instant::now(), thread_cpu_time());
        let log = Log::open(&dir, config.clone()).expect("open");
        let crash_ms = t.elapsed().as_secs_f64() * 1e3;
        let crash_cpu_ms = (thread_cpu_time() - c).as_secs_f64() * 1e3;
        log.close().expect("close");
        println!(
            "round {round}: {} segments, {} bytes: open after clean shutdown {clean_ms:.1} ms \
             (CPU {clean_cpu_ms:.1} ms), after crash {crash_ms:.1} ms (CPU {crash_cpu_ms:.1} ms)",
            d.segments, d.size_bytes
        );
    }
}
