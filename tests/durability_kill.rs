//! Durability under SIGKILL: several concurrent producers write 100,000 messages; the broker is
//! killed with SIGKILL in the middle of the load and restarted on the same data directory. Every
//! acknowledged message must be there exactly once, in order per partition, and producing must
//! continue at the next offset. Run once with `--fsync never` and once with `--fsync always`:
//! in both, an acknowledgement means the bytes reached the OS, which a process kill cannot undo.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::BrokerProcess;
use minikafka::client::{
    Admin, BatchAck, Connection, ConsumedRecord, Consumer, ConsumerConfig, Producer,
    ProducerConfig, StartFrom,
};
use minikafka::record::NewRecord;

const TOPIC: &str = "durable";
const PARTITIONS: u32 = 4;
const WRITERS: u64 = 4;
const TOTAL: u64 = 100_000;
const BATCH: u64 = 50;
/// The broker is killed once this many messages are acknowledged.
const KILL_AFTER: u64 = 40_000;

/// What a writer knows was acknowledged: the batch's offsets and the sequence numbers in it.
#[derive(Debug, Clone, Copy)]
struct Acked {
    ack: BatchAck,
    writer: u64,
    first_seq: u64,
}

fn value(writer: u64, seq: u64) -> String {
    format!("w{writer}-{seq:07}")
}

fn parse(value: &[u8]) -> (u64, u64) {
    let s = std::str::from_utf8(value).expect("values are ASCII");
    let (w, seq) = s[1..].split_once('-').expect("values look like wN-SEQ");
    (w.parse().unwrap(), seq.parse().unwrap())
}

/// Writer `w` sends sequence numbers `seqs` in batches, cycling over the partitions, until done
/// or until the broker stops answering. Returns what was acknowledged and where it stopped.
async fn write(
    addr: String,
    writer: u64,
    seqs: std::ops::Range<u64>,
    acked_total: Arc<AtomicU64>,
) -> (Vec<Acked>, u64) {
    let mut acked = Vec::new();
    let Ok(conn) = Connection::connect(&addr).await else { return (acked, seqs.start) };
    let Ok(producer) = Producer::new(conn, TOPIC, ProducerConfig::default()).await else {
        return (acked, seqs.start);
    };
    let mut seq = seqs.start;
    while seq < seqs.end {
        let n = BATCH.min(seqs.end - seq);
        let values: Vec<String> = (seq..seq + n).map(|s| value(writer, s)).collect();
        let records: Vec<NewRecord> =
            values.iter().map(|v| NewRecord::value(v.as_bytes())).collect();
        let partition = ((seq / BATCH + writer) % u64::from(PARTITIONS)) as u32;
        match producer.send_batch(Some(partition), &records).await {
            Ok(ack) => {
                assert_eq!(ack.len(), n, "a batch is acknowledged whole");
                acked.push(Acked { ack, writer, first_seq: seq });
                acked_total.fetch_add(n, Ordering::Relaxed);
            }
            // The broker died: this batch may or may not be stored, but it was not acknowledged.
            Err(_) => return (acked, seq + n),
        }
        seq += n;
    }
    (acked, seq)
}

/// Reads every partition from offset 0 to its end.
async fn replay(addr: &str) -> HashMap<u32, Vec<ConsumedRecord>> {
    let conn = Connection::connect(addr).await.expect("connect after restart");
    let mut consumer = Consumer::new(conn, TOPIC, StartFrom::Beginning, ConsumerConfig::default())
        .await
        .expect("open a consumer");
    let mut by_partition: HashMap<u32, Vec<ConsumedRecord>> = HashMap::new();
    while let Some(rec) = consumer.next().await.expect("replay without errors") {
        by_partition.entry(rec.partition).or_default().push(rec);
    }
    by_partition
}

/// Checks the replayed log against what was acknowledged; returns each partition's next offset.
fn verify(log: &HashMap<u32, Vec<ConsumedRecord>>, acked: &[Acked]) -> HashMap<u32, u64> {
    let mut seen = HashMap::new();
    let mut next = HashMap::new();
    for p in 0..PARTITIONS {
        let records = log.get(&p).map(Vec::as_slice).unwrap_or(&[]);
        let mut last_seq_of_writer: HashMap<u64, u64> = HashMap::new();
        for (i, rec) in records.iter().enumerate() {
            assert_eq!(rec.offset, i as u64, "partition {p}: offsets start at 0 with no gaps");
            let (w, seq) = parse(rec.value.as_deref().expect("written with a value"));
            assert!(seen.insert((w, seq), (p, rec.offset)).is_none(), "w{w}-{seq} stored twice");
            if let Some(prev) = last_seq_of_writer.insert(w, seq) {
                assert!(prev < seq, "partition {p}: writer {w}'s messages out of order");
            }
        }
        next.insert(p, records.len() as u64);
    }
    let mut acked_messages = 0;
    for a in acked {
        for (i, offset) in (a.ack.first_offset..a.ack.next_offset).enumerate() {
            let seq = a.first_seq + i as u64;
            assert_eq!(
                seen.get(&(a.writer, seq)),
                Some(&(a.ack.partition, offset)),
                "acknowledged w{}-{seq} missing or moved",
                a.writer
            );
            acked_messages += 1;
        }
    }
    assert!(acked_messages > 0);
    next
}

async fn kill_mid_load(fsync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", fsync]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn).create_topic(TOPIC, PARTITIONS, false).await.unwrap();

    // Phase 1: concurrent writers; SIGKILL once enough is acknowledged.
    let per_writer = TOTAL / WRITERS;
    let acked_total = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let seqs = w * per_writer..(w + 1) * per_writer;
            tokio::spawn(write(broker.addr.clone(), w, seqs, acked_total.clone()))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_total.load(Ordering::Relaxed) < KILL_AFTER
        && !writers.iter().all(|w| w.is_finished())
    {
        assert!(Instant::now() < deadline, "load too slow: {acked_total:?} acknowledged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    broker.kill();
    let mut acked = Vec::new();
    let mut resume_at = Vec::new();
    for (w, handle) in writers.into_iter().enumerate() {
        let (a, stopped_at) = handle.await.unwrap();
        acked.extend(a);
        resume_at.push((w as u64, stopped_at));
    }
    let before_kill = acked_total.load(Ordering::Relaxed);
    assert!(before_kill < TOTAL, "the kill should land mid-load ({before_kill} acknowledged)");

    // Phase 2: restart on the same directory; every acknowledged message is there once.
    broker.restart();
    let next = verify(&replay(&broker.addr).await, &acked);
    let stored: u64 = next.values().sum();
    eprintln!(
        "fsync {fsync}: {before_kill} acknowledged before SIGKILL, {stored} stored after restart"
    );

    // Producing continues at the next offset of every partition.
    let conn = Connection::connect(&broker.addr).await.unwrap();
    let producer = Producer::new(conn, TOPIC, ProducerConfig::default()).await.unwrap();
    for p in 0..PARTITIONS {
        let v = value(99, u64::from(p));
        let ack = producer.send_batch(Some(p), &[NewRecord::value(v.as_bytes())]).await.unwrap();
        assert_eq!(ack.first_offset, next[&p], "partition {p} continues at its next offset");
        acked.push(Acked { ack, writer: 99, first_seq: u64::from(p) });
    }

    // Phase 3: the writers finish their share; then the whole log is checked again.
    let writers: Vec<_> = resume_at
        .into_iter()
        .map(|(w, from)| {
            let end = (w + 1) * per_writer;
            tokio::spawn(write(broker.addr.clone(), w, from..end, acked_total.clone()))
        })
        .collect();
    for handle in writers {
        let (a, stopped_at) = handle.await.unwrap();
        acked.extend(a);
        assert_eq!(stopped_at % per_writer, 0, "every writer finishes after the restart");
    }
    verify(&replay(&broker.addr).await, &acked);
    assert!(broker.stop(), "clean shutdown; log:\n{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_message_fsync_never() {
    kill_mid_load("never").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_message_fsync_always() {
    kill_mid_load("always").await;
}

/// A second broker on a running broker's data directory refuses to start (two appenders would
/// corrupt the logs); the lock dies with the process, so a SIGKILLed broker's directory opens
/// again at once.
#[test]
fn a_second_broker_refuses_a_data_dir_in_use_and_a_killed_one_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = BrokerProcess::start(&data, &[]);
    let second = std::process::Command::new(common::BIN)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "off",
            "--http-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run a second broker");
    assert!(!second.status.success(), "the second broker must not start");
    let err = common::stderr(&second);
    assert!(err.contains("in use by another broker"), "{err}");
    broker.kill();
    broker.restart();
    common::ok(broker.cli(&["topic", "list"]));
}
