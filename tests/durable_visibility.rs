//! Under `--fsync always` a consumer reads only what is durable. The disk is made slow (every
//! fdatasync held until the test releases it) or failing through the storage layer's file-system
//! seam (`FaultyFs`), and what a concurrent reader sees is checked: in the log itself, through the
//! broker's long-poll fetch, and through the native and Kafka listeners. Under `interval` and
//! `never`, records stay visible as soon as they are written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use minikafka::batch::Compression;
use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{AppendBatch, Broker, BrokerConfig};
use minikafka::client::Connection;
use minikafka::kafka::{KafkaConfig, KafkaServer};
use minikafka::protocol::{Request, Response};
use minikafka::record::{self, NewRecord};
use minikafka::server::{Server, ServerConfig};
use minikafka::storage::{FaultyFs, FsyncPolicy, Log, LogConfig, StorageError};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

/// Generous bound for things that happen within milliseconds.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, fsync, ..LogConfig::default() }
}

/// Holds every fdatasync of `fs` until dropped (also when the test fails, so no thread or
/// blocking task stays stuck in a sync and keeps the test from ending).
struct SlowDisk(FaultyFs);

impl SlowDisk {
    fn hold(fs: &FaultyFs) -> SlowDisk {
        fs.hold_syncs(true);
        SlowDisk(fs.clone())
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        self.0.hold_syncs(false);
    }
}

/// Waits (in a thread) until `cond` holds; panics naming `what` past the deadline.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits (in a task) until `cond` holds; panics naming `what` past the deadline.
async fn wait_until_async(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The offsets and values a log shows a reader from `from`, as far as it lets it read.
fn visible(log: &Log, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let slice = log.read(at, 1 << 20).unwrap();
        if slice.is_empty() {
            return out;
        }
        for r in slice.records() {
            let r = r.unwrap();
            out.push((r.offset, r.value.expect("appended with a value")));
        }
        at = slice.next_offset();
    }
}

/// A reader polling the log from offset 0 until stopped. It checks on every record past the
/// first that `may_see` allowed it (the fdatasync covering it was let through), and publishes in
/// `seen` the offset after the last record it saw.
struct Reader {
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    fn spawn(log: Arc<Log>, may_see: Arc<AtomicBool>) -> Reader {
        let seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // Permission before the read: a record seen now was allowed before it.
                    let allowed = may_see.load(Ordering::SeqCst);
                    let slice = log.read(seen.load(Ordering::SeqCst), 1 << 20).unwrap();
                    for r in slice.records() {
                        let offset = r.unwrap().offset;
                        assert!(
                            offset == 0 || allowed,
                            "saw offset {offset} before it was durable"
                        );
                        seen.store(offset + 1, Ordering::SeqCst);
                    }
                    std::thread::yield_now();
                }
            })
        };
        Reader { seen, stop, thread }
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Stops the reader; fails the test if its checks failed.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the reader's checks held");
        self.seen.load(Ordering::SeqCst)
    }
}

#[test]
fn a_record_becomes_visible_only_once_its_fdatasync_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = Arc::new(
        Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone())).unwrap(),
    );
    log.append(&[NewRecord { timestamp_ms: 1000, ..NewRecord::value(b"first") }]).unwrap();
    let may_see = Arc::new(AtomicBool::new(false));
    let reader = Reader::spawn(log.clone(), may_see.clone());
    wait_until("the reader to see the first record", || reader.seen() == 1);

    // A slow disk: the second record is written, its fdatasync does not return.
    let slow = SlowDisk::hold(&fs);
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            log.append(&[NewRecord { timestamp_ms: 2000, ..NewRecord::value(b"second") }])
        })
    };
    wait_until("the append to be written and syncing", || {
        log.next_offset() == 2 && fs.held_sync_count() > 0
    });
    assert!(!appender.is_finished(), "the producer is not acknowledged yet");
    assert_eq!(visible(&log, 0), vec![(0, b"first".to_vec())], "a read stops at the durable end");
    assert!(log.read(1, 1 << 20).unwrap().is_empty(), "offset 1 is waited for, not refused");
    assert_eq!((log.visible_end(), log.describe().next_offset), (1, 1));
    assert_eq!(log.offset_for_timestamp(2000).unwrap(), None, "no visible record that new");

    may_see.store(true, Ordering::SeqCst);
    drop(slow);
    let range = appender.join().unwrap().unwrap();
    assert_eq!((range.first, range.next), (1, 2));
    assert_eq!(visible(&log, 1), vec![(1, b"second".to_vec())]);
    assert_eq!((log.visible_end(), log.describe().next_offset), (2, 2));
    assert_eq!(log.offset_for_timestamp(2000).unwrap(), Some(1));
    wait_until("the concurrent reader to see the record", || reader.seen() == 2);
    assert_eq!(reader.finish(), 2);
}

#[test]
fn a_record_whose_fdatasync_fails_is_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = Arc::new(
        Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone())).unwrap(),
    );
    log.append(&[NewRecord::value(b"first")]).unwrap();
    let reader = Reader::spawn(log.clone(), Arc::new(AtomicBool::new(false)));
    wait_until("the reader to see the first record", || reader.seen() == 1);

    let slow = SlowDisk::hold(&fs);
    fs.fail_next_syncs(1);
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || log.append(&[NewRecord::value(b"lost")]))
    };
    wait_until("the append to be written and syncing", || {
        log.next_offset() == 2 && fs.held_sync_count() > 0
    });
    drop(slow);
    let err = appender.join().unwrap().unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "the producer gets the fdatasync error: {err}");
    // Give the reader time to look; it must still see only the first record.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(reader.finish(), 1, "the reader never saw the failed record");
    assert_eq!(visible(&log, 0), vec![(0, b"first".to_vec())]);
    assert_eq!((log.visible_end(), log.describe().next_offset), (1, 1));
    assert!(matches!(
        log.append(&[NewRecord::value(b"after")]),
        Err(StorageError::Poisoned { .. })
    ));
}

#[test]
fn a_reopened_log_shows_its_recovered_tail_after_syncing_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    for v in [&b"a"[..], b"b", b"c"] {
        log.append(&[NewRecord::value(v)]).unwrap();
    }
    // A crash: no close, the tail's durability is unknown.
    drop(log);
    let fs = FaultyFs::new();
    let log =
        Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone())).unwrap();
    assert!(fs.sync_count() > 0, "the recovered tail was fdatasynced before being shown");
    assert_eq!((log.visible_end(), log.next_offset()), (3, 3));
    assert_eq!(visible(&log, 0).len(), 3);
    // The disk cannot sync the tail at open (a file already cut to its data, of unknown
    // durability: a clean close whose marker is gone): the log opens for what is durable (the
    // sealed segments; here none), hides the tail and refuses writes.
    log.append(&[NewRecord::value(b"d")]).unwrap();
    log.close().unwrap();
    drop(log);
    std::fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    fs.fail_next_syncs(1);
    let log =
        Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone())).unwrap();
    assert_eq!((log.visible_end(), log.next_offset()), (0, 4));
    assert!(visible(&log, 0).is_empty());
    assert!(matches!(log.append(&[NewRecord::value(b"e")]), Err(StorageError::Poisoned { .. })));
    drop(log);
    let log = Log::open(dir.path(), config(FsyncPolicy::Always)).unwrap();
    assert_eq!((log.visible_end(), visible(&log, 0).len()), (4, 4));
    log.close().unwrap();
    drop(log);
    // After a clean shutdown everything was synced by close.
    let log = Log::open(dir.path(), config(FsyncPolicy::Always)).unwrap();
    assert_eq!((log.visible_end(), visible(&log, 0).len()), (4, 4));
}

#[test]
fn under_interval_and_never_a_record_is_visible_once_written() {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Interval(Duration::from_secs(3600))] {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let log = Log::open_with_fs(dir.path(), config(fsync), Arc::new(fs.clone())).unwrap();
        // A disk that never finishes a sync does not hold these appends or their readers.
        let slow = SlowDisk::hold(&fs);
        log.append(&[NewRecord::value(b"now")]).unwrap();
        assert_eq!(visible(&log, 0), vec![(0, b"now".to_vec())], "{fsync:?}");
        assert_eq!(log.describe().next_offset, 1);
        drop(slow);
    }
}

/// A broker whose partition logs go through `fs`, with `--fsync always`.
fn open_broker(dir: &std::path::Path, fs: &FaultyFs) -> Arc<Broker> {
    let b = Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        log: config(FsyncPolicy::Always),
        fs: Some(Arc::new(fs.clone())),
        ..BrokerConfig::default()
    })
    .unwrap();
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_fetch_wakes_on_the_durable_end_not_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let b = open_broker(dir.path(), &fs);
    let poll = {
        let b = b.clone();
        tokio::spawn(async move { b.fetch("t", 0, 0, 1 << 20, 1, Duration::from_secs(60)).await })
    };
    let slow = SlowDisk::hold(&fs);
    let append = {
        let b = b.clone();
        tokio::spawn(async move {
            b.append("t", Some(0), None, AppendBatch::Owned(encoded(&["slow"]).as_ref().into()))
                .await
        })
    };
    wait_until_async("the append to be syncing", || fs.held_sync_count() > 0).await;
    // The write is done; give a (wrongly) woken long-poll time to answer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the long-poll waits for the fdatasync");
    let now = b.fetch("t", 0, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
    assert!(now.records.is_empty());
    assert_eq!(now.high_watermark, 0);
    assert_eq!(b.describe_topic("t").unwrap().partitions[0].next_offset, 0);

    drop(slow);
    assert_eq!(append.await.unwrap().unwrap().offsets.next, 1);
    let got = tokio::time::timeout(DEADLINE, poll).await.unwrap().unwrap().unwrap();
    assert_eq!(got.records.records().map(|r| r.unwrap().offset).collect::<Vec<_>>(), vec![0]);
    assert_eq!(got.high_watermark, 1);

    // A failing fdatasync: the producer gets the error, a waiting consumer gets nothing.
    let poll = {
        let b = b.clone();
        tokio::spawn(
            async move { b.fetch("t", 0, 1, 1 << 20, 1, Duration::from_millis(500)).await },
        )
    };
    fs.fail_next_syncs(1);
    let err =
        b.append("t", Some(0), None, AppendBatch::Owned(encoded(&["lost"]).as_ref().into())).await;
    assert!(err.is_err(), "the failed fdatasync reaches the producer");
    let got = tokio::time::timeout(DEADLINE, poll).await.unwrap().unwrap().unwrap();
    assert!(got.records.is_empty(), "the consumer never sees the failed record");
    assert_eq!(got.high_watermark, 1);
    let now = b.fetch("t", 0, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
    assert_eq!(now.records.records().count(), 1);
    assert_eq!(b.describe_topic("t").unwrap().partitions[0].next_offset, 1);
}

/// `values` as one uncompressed RecordBatch v2, as a producer sends it.
fn encoded(values: &[&str]) -> Bytes {
    let recs: Vec<NewRecord<'_>> = values.iter().map(|v| NewRecord::value(v.as_bytes())).collect();
    Bytes::from(record::build_batch(&recs, Compression::None).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_kafka_consumers_see_a_record_only_once_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let b = open_broker(dir.path(), &fs);
    let native = Server::bind(
        ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() },
        b.clone(),
    )
    .await
    .unwrap();
    let native_addr = native.local_addr().to_string();
    let kafka = KafkaServer::bind(KafkaConfig::new("127.0.0.1:0".parse().unwrap()), b.clone())
        .await
        .unwrap();
    let kafka_addr = kafka.local_addr().to_string();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let native_task = tokio::spawn(native.run(stopped(stop_rx.clone())));
    let kafka_task = tokio::spawn(kafka.run(stopped(stop_rx)));

    let consumer = Connection::connect(&native_addr).await.unwrap();
    let client = ClientBuilder::new(vec![kafka_addr]).build().await.unwrap();
    let kafka_p = client.partition_client("t", 0, UnknownTopicHandling::Error).await.unwrap();
    let native_poll = tokio::spawn(async move {
        let req = Request::Fetch {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 60_000,
        };
        consumer.request(&req).await
    });

    let slow = SlowDisk::hold(&fs);
    let producer = Connection::connect(&native_addr).await.unwrap();
    let produce = tokio::spawn(async move {
        let req = Request::Append {
            topic: "t".into(),
            partition: Some(0),
            key_hint: None,
            records: encoded(&["slow"]),
        };
        producer.request(&req).await
    });
    wait_until_async("the append to be syncing", || fs.held_sync_count() > 0).await;
    // Kafka: a fetch answers with nothing and a high watermark of 0; the latest offset is 0.
    let (recs, hw) = kafka_p.fetch_records(0, 1..1_000_000, 100).await.unwrap();
    assert!(recs.is_empty(), "Kafka fetch saw an undurable record");
    assert_eq!(hw, 0);
    assert_eq!(kafka_p.get_offset(OffsetAt::Latest).await.unwrap(), 0);
    assert!(!native_poll.is_finished(), "the native long-poll waits for the fdatasync");
    assert!(!produce.is_finished(), "the producer is not acknowledged yet");

    drop(slow);
    let ack = tokio::time::timeout(DEADLINE, produce).await.unwrap().unwrap().unwrap();
    assert!(matches!(ack, Response::Appended { next_offset: 1, .. }), "{ack:?}");
    let got = tokio::time::timeout(DEADLINE, native_poll).await.unwrap().unwrap().unwrap();
    let Response::Fetched { high_watermark, records, .. } = got else { panic!("{got:?}") };
    assert_eq!(high_watermark, 1);
    let mut got = Vec::new();
    record::decode_records(&records, 0, true, &mut got, &mut Vec::new()).unwrap();
    let values: Vec<Option<Vec<u8>>> = got.into_iter().map(|r| r.value).collect();
    assert_eq!(values, vec![Some(b"slow".to_vec())]);
    let (recs, hw) = kafka_p.fetch_records(0, 1..1_000_000, 100).await.unwrap();
    assert_eq!((recs.len(), hw), (1, 1));
    assert_eq!(kafka_p.get_offset(OffsetAt::Latest).await.unwrap(), 1);

    // The native server's run shuts the broker down once both listeners are stopped.
    let _ = stop_tx.send(true);
    tokio::time::timeout(DEADLINE, kafka_task)
        .await
        .expect("Kafka listener stops")
        .unwrap()
        .unwrap();
    tokio::time::timeout(DEADLINE, native_task)
        .await
        .expect("native listener stops")
        .unwrap()
        .unwrap();
}
