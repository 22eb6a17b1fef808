//! Load: 1,000 concurrent client connections against the real broker for a bounded time — a mix
//! of producers, long-polling consumers and describe calls, plus a few deliberate errors — and a
//! set of slow consumers that pipeline large fetches without reading the answers. Asserts that
//! every connection is served (no request starves), that the only errors are the deliberate ones,
//! and that the broker's memory stays bounded (slow readers are backpressured, not buffered);
//! prints the broker's peak RSS (VmHWM).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::BrokerProcess;
use minikafka::batch::Compression;
use minikafka::client::{Admin, Connection};
use minikafka::protocol::{self, ErrorCode, Request, Response};
use minikafka::record::{self, NewRecord};

const CONNECTIONS: usize = 1000;
const PARTITIONS: u32 = 4;
const RUN_FOR: Duration = Duration::from_secs(8);
/// A request slower than this counts as starved (generous: a busy 2-core debug build).
const STARVED: Duration = Duration::from_secs(30);
const SLOW_READERS: usize = 20;

/// Raises this process's open-file limit (inherited by the broker it spawns) to fit both ends of
/// every connection.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(lim.rlim_cur >= want, "RLIMIT_NOFILE hard limit {} is below {want}", lim.rlim_max);
}

/// A line of /proc/PID/status, in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    deliberate: AtomicU64,
    max_latency_us: AtomicU64,
    appended: AtomicU64,
    fetched: AtomicU64,
}

impl Stats {
    fn done(&self, started: Instant) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.max_latency_us.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// One record as a RecordBatch v2, as a producer sends it.
fn encoded(value: &[u8]) -> bytes::Bytes {
    record::build_batch(&[NewRecord::value(value)], Compression::None).unwrap().into()
}

/// One connection's life: connect, then its role's requests until `until`. Returns how many
/// requests it completed.
async fn client(addr: String, i: usize, until: Instant, stats: Arc<Stats>) -> u64 {
    let conn = Connection::connect(&addr).await.expect("every connection is accepted");
    let mut done = 0;
    let mut offset = 0u64;
    let partition = (i as u32) % PARTITIONS;
    let value = vec![b'x'; 100];
    while Instant::now() < until || done == 0 {
        let req = match i % 10 {
            // Producers: 30%.
            0..=2 => Request::Append {
                topic: "load".into(),
                partition: Some(partition),
                key_hint: None,
                records: encoded(&value),
            },
            // Long-polling consumers: 40%.
            3..=6 => Request::Fetch {
                topic: "load".into(),
                partition,
                offset,
                max_bytes: 64 * 1024,
                max_wait_ms: 1000,
            },
            // Describe calls: 29%; 1% ask for a topic that does not exist (deliberate errors).
            _ if i % 100 == 99 => Request::Describe { topic: Some("no-such-topic".into()) },
            _ => Request::Describe { topic: Some("load".into()) },
        };
        let started = Instant::now();
        let resp = tokio::time::timeout(STARVED, conn.request(&req))
            .await
            .unwrap_or_else(|_| panic!("connection {i}: a request starved for {STARVED:?}"));
        stats.done(started);
        done += 1;
        match resp {
            Ok(Response::Appended { .. }) => {
                stats.appended.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Response::Fetched { records, high_watermark, .. }) => {
                // Whole batches from the one holding `offset`: count the records from there.
                let (mut n, mut next) = (0u64, offset);
                record::for_each_record(&records, true, &mut Vec::new(), |r| {
                    if r.offset as u64 >= offset {
                        n += 1;
                        next = r.offset as u64 + 1;
                    }
                    ControlFlow::Continue(())
                })
                .expect("fetched batches pass their CRC");
                stats.fetched.fetch_add(n, Ordering::Relaxed);
                offset = if n == 0 { high_watermark } else { next };
            }
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::UnknownTopic) && i % 100 == 99 => {
                stats.deliberate.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("connection {i}: unexpected error {e}");
            }
        }
        if i % 10 >= 7 {
            // Describe callers pace themselves a little, like a dashboard would.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    done
}

/// A reader that pipelines many large fetches and never reads the answers.
fn slow_reader(addr: &str, partition: u32) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut buf = BytesMut::new();
    for k in 0..200 {
        let req = Request::Fetch {
            topic: "load".into(),
            partition,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        };
        protocol::encode_request(&mut buf, k, &req);
    }
    s.write_all(&buf).unwrap();
    s
}

#[test]
fn a_thousand_connections_are_all_served_with_bounded_memory() {
    raise_nofile(4 * CONNECTIONS as u64 + 256);
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let pid = broker.pid().unwrap();
    let addr = broker.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let rt = rt.unwrap();

    // Some data for the slow readers: ~4 MiB per partition.
    rt.block_on(async {
        let conn = Connection::connect(&addr).await.unwrap();
        Admin::new(conn.clone()).create_topic("load", PARTITIONS, false).await.unwrap();
        let big = vec![b'y'; 64 * 1024];
        for p in 0..PARTITIONS {
            for _ in 0..64 {
                let req = Request::Append {
                    topic: "load".into(),
                    partition: Some(p),
                    key_hint: None,
                    records: encoded(&big),
                };
                conn.request(&req).await.unwrap();
            }
        }
    });
    let rss_before = proc_status_kb(pid, "VmRSS:");

    let slow: Vec<TcpStream> =
        (0..SLOW_READERS).map(|k| slow_reader(&addr, k as u32 % PARTITIONS)).collect();
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let until = started + RUN_FOR;
    let per_conn: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|i| tokio::spawn(client(addr.clone(), i, until, stats.clone())))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let elapsed = started.elapsed();
    let rss_during = proc_status_kb(pid, "VmRSS:");
    let hwm = proc_status_kb(pid, "VmHWM:");
    drop(slow);

    // The broker still answers after it all.
    rt.block_on(async {
        let conn = Connection::connect(&addr).await.unwrap();
        conn.request(&Request::ListTopics).await.unwrap();
    });

    let requests = stats.requests.load(Ordering::Relaxed);
    println!(
        "load: {CONNECTIONS} connections + {SLOW_READERS} slow readers for {:.1}s: {requests} requests \
         ({} appends, {} records long-polled), {} deliberate errors, {} other errors, max latency \
         {:.0} ms; broker RSS {} MiB before, {} MiB after, peak (VmHWM) {} MiB",
        elapsed.as_secs_f64(),
        stats.appended.load(Ordering::Relaxed),
        stats.fetched.load(Ordering::Relaxed),
        stats.deliberate.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.max_latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
        rss_before / 1024,
        rss_during / 1024,
        hwm / 1024,
    );
    assert!(per_conn.iter().all(|&n| n > 0), "every connection was served");
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0, "no errors but the deliberate ones");
    assert!(stats.deliberate.load(Ordering::Relaxed) > 0, "the deliberate errors were answered");
    // 20 readers x 200 pipelined 1 MiB fetches would be ~4 GiB if queued; backpressure keeps the
    // broker to its per-connection buffers. 256 MiB is far above what a bounded broker needs here.
    assert!(hwm < 256 * 1024, "broker peak RSS {} MiB: memory is not bounded", hwm / 1024);
}
