//! Log compaction as users see it: a broker whose topic has `cleanup.policy=compact` and tiny
//! segments gets 10 keys x 1,000 versions and tombstones for 3 keys; its log cleaner compacts in
//! the background; afterwards exactly the latest value of each live key is readable, at its
//! original offset, by the real `minikafka consume` binary and by kcat (when installed); the
//! tombstones go once `delete.retention.ms` has passed; `/metrics` shows the cleaner's work; and a
//! consumer that was in the middle of a segment while it was compacted reads on without error.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{Broker, BrokerConfig, CleanerConfig};
use minikafka::client::{
    Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};
use minikafka::http::HttpServer;
use minikafka::kafka::{KafkaConfig, KafkaServer};
use minikafka::metrics::find_sample;
use minikafka::record::{self, NewRecord};
use minikafka::server::{Server, ServerConfig};
use minikafka::storage::{FsyncPolicy, LogConfig};

const TOPIC: &str = "kv";
const KEYS: usize = 10;
const VERSIONS: usize = 1000;
/// Keys 0, 1 and 2 get a tombstone after their last version.
const DELETED: usize = 3;
/// The topic's `delete.retention.ms`.
const DELETE_RETENTION_MS: u64 = 4000;
/// Every wait for the cleaner is bounded by this (a debug build on a busy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(120);

/// One broker in this process with its three listeners (native, Kafka, HTTP) on ephemeral ports.
struct Stack {
    native: SocketAddr,
    kafka: SocketAddr,
    http: SocketAddr,
    broker: Arc<Broker>,
    segment_bytes: u64,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// A broker whose cleaner looks for work every 50 ms, with topic `kv` compacted, its
    /// segments `segment_bytes` long.
    async fn start(segment_bytes: u64) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            log: LogConfig { fsync: FsyncPolicy::Never, ..LogConfig::default() },
            cleaner: CleanerConfig { backoff: Duration::from_millis(50), ..Default::default() },
            ..Default::default()
        })
        .unwrap();
        broker.create_topic(TOPIC, 1, compacted(segment_bytes), false).unwrap();
        let server = Server::bind(
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() },
            broker.clone(),
        )
        .await
        .unwrap();
        let kafka =
            KafkaServer::bind(KafkaConfig::new("127.0.0.1:0".parse().unwrap()), broker.clone())
                .await
                .unwrap();
        let http = HttpServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            broker.clone(),
            broker.metrics().clone(),
        )
        .await
        .unwrap();
        let (native, kafka_addr, http_addr) =
            (server.local_addr(), kafka.local_addr(), http.local_addr());
        let (tx1, rx1) = oneshot::channel::<()>();
        let (tx2, rx2) = oneshot::channel::<()>();
        let (tx3, rx3) = oneshot::channel::<()>();
        let tasks = vec![
            tokio::spawn(async move { server.run(async move { drop(rx1.await) }).await.unwrap() }),
            tokio::spawn(async move { kafka.run(async move { drop(rx2.await) }).await.unwrap() }),
            tokio::spawn(async move { http.run(async move { drop(rx3.await) }).await.unwrap() }),
        ];
        Stack {
            native,
            kafka: kafka_addr,
            http: http_addr,
            broker,
            segment_bytes,
            stops: vec![tx1, tx2, tx3],
            tasks,
            _dir: dir,
        }
    }

    async fn producer(&self) -> Producer {
        let conn = Connection::connect(&self.native.to_string()).await.unwrap();
        Producer::new(conn, TOPIC, ProducerConfig::default()).await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// A GET on the HTTP listener; the body of its 200 answer.
    async fn get(&self, path: &str) -> String {
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            let req =
                format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        };
        let text = tokio::time::timeout(Duration::from_secs(30), fut).await.expect("an answer");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        if chunked { dechunk(body) } else { body.to_string() }
    }

    /// Waits until the cleaner has compacted every sealed segment of `kv` and `done` holds for
    /// the scrape; returns the scrape. The dirty ratio is read from the log, which shows a run's
    /// work as soon as its checkpoint is written, while the run's counters are added just after:
    /// a scrape between the two shows ratio 0 without the last run. So what the counters must
    /// reach belongs in `done`, not in an assertion on the scrape that first shows ratio 0.
    async fn wait_for_cleaner(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.metrics().await;
            let clean =
                find_sample(&text, "minikafka_log_cleaner_dirty_ratio", LABELS) == Some(0.0);
            if clean && done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "the cleaner did not finish; last scrape:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("listeners stop")
                .unwrap();
        }
        self.broker.shutdown().unwrap();
    }
}

const LABELS: &str = r#"topic="kv",partition="0""#;

fn dechunk(body: &str) -> String {
    let (mut s, mut out) = (body, String::new());
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// The compacted topic's configs: compaction as soon as anything is dirty, tombstones kept
/// `DELETE_RETENTION_MS`, segments of `segment_bytes`.
fn compacted(segment_bytes: u64) -> TopicConfigs {
    let pairs: Vec<(String, Option<String>)> = [
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", segment_bytes.to_string()),
        ("delete.retention.ms", DELETE_RETENTION_MS.to_string()),
        ("min.cleanable.dirty.ratio", "0.01".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v)))
    .collect();
    TopicConfigs::parse(&pairs).unwrap()
}

/// What a reader sees of one record: its key and value (`None`: a tombstone).
type Seen = (String, Option<String>);

/// Writes 10 keys x 1,000 versions (one version of every key per batch), then a tombstone for
/// each of keys 0-2. Returns every record written by offset, and when the tombstones were written.
async fn write_versions(p: &Producer) -> (BTreeMap<u64, Seen>, i64) {
    let mut written = BTreeMap::new();
    for v in 0..VERSIONS {
        let kv: Vec<(String, String)> =
            (0..KEYS).map(|k| (format!("k{k}"), format!("k{k}-v{v}"))).collect();
        let records: Vec<NewRecord> = kv
            .iter()
            .map(|(k, v)| NewRecord {
                timestamp_ms: record::now_ms(),
                key: Some(k.as_bytes()),
                value: Some(v.as_bytes()),
                headers: &[],
            })
            .collect();
        let ack = p.send_batch(Some(0), &records).await.unwrap();
        for (i, (k, v)) in kv.into_iter().enumerate() {
            written.insert(ack.first_offset + i as u64, (k, Some(v)));
        }
    }
    let keys: Vec<String> = (0..DELETED).map(|k| format!("k{k}")).collect();
    let at = record::now_ms();
    let tombstones: Vec<NewRecord> = keys
        .iter()
        .map(|k| NewRecord { timestamp_ms: at, key: Some(k.as_bytes()), value: None, headers: &[] })
        .collect();
    let ack = p.send_batch(Some(0), &tombstones).await.unwrap();
    for (i, k) in keys.into_iter().enumerate() {
        written.insert(ack.first_offset + i as u64, (k, None));
    }
    (written, at)
}

/// Writes one record of `key` too big to share a segment, so the segment before it is sealed
/// (and becomes cleanable); returns its offset.
async fn roll(stack: &Stack, p: &Producer, key: &str, written: &mut BTreeMap<u64, Seen>) -> u64 {
    let value = "x".repeat(stack.segment_bytes as usize);
    let rec = NewRecord {
        timestamp_ms: record::now_ms(),
        key: Some(key.as_bytes()),
        value: Some(value.as_bytes()),
        headers: &[],
    };
    let ack = p.send_batch(Some(0), &[rec]).await.unwrap();
    written.insert(ack.first_offset, (key.to_string(), Some(value)));
    ack.first_offset
}

/// The latest record of every key: what a fully compacted log holds, by offset.
fn latest(written: &BTreeMap<u64, Seen>) -> BTreeMap<u64, Seen> {
    let mut by_key: BTreeMap<&str, u64> = BTreeMap::new();
    for (offset, (k, _)) in written {
        by_key.insert(k, *offset);
    }
    by_key.values().map(|o| (*o, written[o].clone())).collect()
}

/// `minikafka consume kv --from-beginning --format json`, the real binary: offset -> record.
fn consume_cli(stack: &Stack) -> BTreeMap<u64, Seen> {
    let out = common::ok(common::run_cli(
        &stack.native.to_string(),
        &["consume", TOPIC, "--from-beginning", "--format", "json"],
        None,
    ));
    let mut seen = BTreeMap::new();
    for line in out.lines() {
        let j: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let offset = j["offset"].as_u64().unwrap();
        let key = j["key"].as_str().unwrap().to_string();
        let value = j["value"].as_str().map(str::to_string);
        assert!(seen.insert(offset, (key, value)).is_none(), "offset {offset} printed twice");
    }
    seen
}

/// kcat reading the topic from the beginning through the Kafka listener, or `None` when kcat
/// is not installed (scripts/kafka-compat installs it).
fn consume_kcat(stack: &Stack) -> Option<BTreeMap<u64, Seen>> {
    let kcat = std::process::Command::new("kcat").arg("-V").output();
    if !kcat.is_ok_and(|o| o.status.success()) {
        eprintln!("kcat is not installed: its part of the compaction test is skipped");
        return None;
    }
    let child = std::process::Command::new("kcat")
        .args(["-C", "-b", &stack.kafka.to_string(), "-t", TOPIC, "-p", "0"])
        .args(["-o", "beginning", "-e", "-q", "-J"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kcat");
    let out = common::wait_with_deadline(child, Duration::from_secs(120), &["kcat"]);
    assert!(out.status.success(), "kcat failed: {}", common::stderr(&out));
    let mut seen = BTreeMap::new();
    for line in common::stdout(&out).lines() {
        let j: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let offset = j["offset"].as_u64().unwrap();
        let key = j["key"].as_str().unwrap().to_string();
        let value = j["payload"].as_str().map(str::to_string);
        assert!(seen.insert(offset, (key, value)).is_none(), "kcat: offset {offset} twice");
    }
    Some(seen)
}

/// Short for failure messages: the big sentinel values are cut.
fn show(m: &BTreeMap<u64, Seen>) -> String {
    m.iter()
        .map(|(o, (k, v))| {
            format!("{o}:{k}={}", v.as_deref().map_or("null", |v| &v[..v.len().min(12)]))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_exactly_the_latest_value_of_each_key_for_every_reader() {
    let stack = Stack::start(4096).await;
    let before = stack.metrics().await;
    assert_eq!(find_sample(&before, "minikafka_log_cleaner_records_removed_total", LABELS), None);
    assert_eq!(find_sample(&before, "minikafka_log_cleaner_last_run_timestamp_seconds", ""), None);

    let p = stack.producer().await;
    let (mut written, tombstoned_at) = write_versions(&p).await;
    roll(&stack, &p, "roll-1", &mut written).await;
    // The cleaner's work shows in the metrics: nearly every superseded version removed, by a
    // run that finished after the last write.
    let superseded = (KEYS * (VERSIONS - 1)) as f64;
    let scrape = stack
        .wait_for_cleaner(|m| {
            let removed = find_sample(m, "minikafka_log_cleaner_records_removed_total", LABELS);
            let last_run = find_sample(m, "minikafka_log_cleaner_last_run_timestamp_seconds", "");
            removed.is_some_and(|r| r >= superseded * 0.9)
                && last_run.is_some_and(|t| t * 1000.0 >= tombstoned_at as f64)
        })
        .await;
    let removed = find_sample(&scrape, "minikafka_log_cleaner_records_removed_total", LABELS);
    assert!(removed.unwrap() >= superseded * 0.9, "{scrape}");
    assert!(
        find_sample(&scrape, "minikafka_log_cleaner_removed_bytes_total", LABELS).unwrap() > 0.0
    );
    assert!(find_sample(&scrape, "minikafka_log_cleaner_runs_total", LABELS).unwrap() >= 1.0);
    let last_run = find_sample(&scrape, "minikafka_log_cleaner_last_run_timestamp_seconds", "");
    assert!(last_run.unwrap() * 1000.0 >= tombstoned_at as f64, "{scrape}");

    // Every reader sees the latest record of each key at its original offset and nothing else.
    // The tombstones may already be gone if the cleaner got to them after delete.retention.ms.
    let want = latest(&written);
    let live: BTreeMap<u64, Seen> =
        want.iter().filter(|(_, (_, v))| v.is_some()).map(|(o, r)| (*o, r.clone())).collect();
    let cli = consume_cli(&stack);
    let cli_live: BTreeMap<u64, Seen> =
        cli.iter().filter(|(_, (_, v))| v.is_some()).map(|(o, r)| (*o, r.clone())).collect();
    assert_eq!(cli_live, live, "minikafka consume after compaction: {}", show(&cli));
    for (o, r) in &cli {
        assert_eq!(want.get(o), Some(r), "minikafka consume: a tombstone, if any, is the latest");
    }
    assert_eq!(live.len(), KEYS - DELETED + 1);
    // The console's message browser pages through the gaps too: from the start, and from an
    // offset whose record was removed (it starts at the next survivor).
    let page: Value = serde_json::from_str(
        &stack.get("/api/topics/kv/partitions/0/records?offset=0&limit=500").await,
    )
    .unwrap();
    let offsets: Vec<u64> =
        page["records"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, cli.keys().copied().collect::<Vec<u64>>(), "browser page: {page}");
    let first_live = *live.keys().next().unwrap();
    let page: Value = serde_json::from_str(
        &stack
            .get(&format!("/api/topics/kv/partitions/0/records?offset={}&limit=1", first_live - 1))
            .await,
    )
    .unwrap();
    assert_eq!(
        page["records"][0]["offset"].as_u64(),
        cli.range(first_live - 1..).next().map(|(o, _)| *o)
    );
    if let Some(kcat) = consume_kcat(&stack) {
        let kcat_live: BTreeMap<u64, Seen> =
            kcat.iter().filter(|(_, (_, v))| v.is_some()).map(|(o, r)| (*o, r.clone())).collect();
        assert_eq!(kcat_live, live, "kcat after compaction: {}", show(&kcat));
    }

    // Once delete.retention.ms has passed, the next compaction removes the tombstones; the live
    // keys stay where they were.
    let retention_over = tombstoned_at + DELETE_RETENTION_MS as i64 + 100;
    while record::now_ms() < retention_over {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    roll(&stack, &p, "roll-2", &mut written).await;
    let scrape = stack
        .wait_for_cleaner(|m| {
            find_sample(m, "minikafka_log_cleaner_tombstones_removed_total", LABELS)
                == Some(DELETED as f64)
        })
        .await;
    let live: BTreeMap<u64, Seen> =
        latest(&written).into_iter().filter(|(_, (_, v))| v.is_some()).collect();
    assert_eq!(consume_cli(&stack), live, "after delete.retention.ms; metrics:\n{scrape}");
    if let Some(kcat) = consume_kcat(&stack) {
        assert_eq!(kcat, live, "kcat after delete.retention.ms");
    }
    // `minikafka perf consume` replays the gapped log to its end too.
    let perf = common::ok(common::run_cli(
        &stack.native.to_string(),
        &["perf", "consume", "--topic", TOPIC, "--json"],
        None,
    ));
    let perf: Value = serde_json::from_str(&perf).unwrap();
    assert_eq!(perf["records"].as_u64(), Some(live.len() as u64), "{perf}");
    let dirty = find_sample(&scrape, "minikafka_log_cleaner_dirty_ratio", LABELS);
    assert_eq!(dirty, Some(0.0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_in_the_middle_of_a_segment_reads_on_while_it_is_compacted() {
    // One segment holds all 10,000 versions, so the consumer is inside the segment compacted.
    let stack = Stack::start(512 * 1024).await;
    let p = stack.producer().await;
    let (mut written, _) = write_versions(&p).await;
    let conn = Connection::connect(&stack.native.to_string()).await.unwrap();
    let config = ConsumerConfig { fetch_max_bytes: 2048, ..Default::default() };
    let mut consumer = Consumer::new(conn, TOPIC, StartFrom::Beginning, config).await.unwrap();
    let mut read = Vec::new();
    while read.len() < 5000 {
        let r = consumer.next().await.unwrap().expect("records below the end");
        read.push(r);
    }
    // A record too big for what is left of the segment seals it; the cleaner compacts it.
    roll(&stack, &p, "roll-1", &mut written).await;
    let scrape = stack
        .wait_for_cleaner(|m| find_sample(m, "minikafka_log_cleaner_runs_total", LABELS).is_some())
        .await;
    while let Some(r) = consumer.next().await.expect("reading on after compaction") {
        read.push(r);
    }
    // Every record read is one that was written at that offset, in offset order, and the
    // consumer saw the compacted log: far fewer records than were written, yet the latest
    // version of every key.
    for w in read.windows(2) {
        assert!(w[0].offset < w[1].offset, "offsets increase");
    }
    for r in &read {
        let value = r.value.as_ref().map(|v| String::from_utf8(v.clone()).unwrap());
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        assert_eq!(written.get(&r.offset), Some(&(key, value)), "offset {}", r.offset);
    }
    assert!(read.len() < KEYS * VERSIONS, "compaction showed: {} records read", read.len());
    // (A tombstone may be gone already if the cleaner came after delete.retention.ms.)
    let live_before_roll: Vec<u64> = latest(&written)
        .into_iter()
        .filter(|(_, (k, v))| k != "roll-1" && v.is_some())
        .map(|(o, _)| o)
        .collect();
    assert_eq!(live_before_roll.len(), KEYS - DELETED);
    for o in live_before_roll {
        assert!(read.iter().any(|r| r.offset == o), "the latest record at {o} was read; {scrape}");
    }
    stack.stop().await;
}
