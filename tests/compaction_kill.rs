//! Compaction under SIGKILL: a real broker whose log cleaner runs every millisecond compacts a
//! topic with tiny segments while a producer overwrites 20 keys; the broker is killed at a seeded
//! random moment (so kills land while segments are cleaned, swapped in or checkpointed) and
//! restarted on the same data directory. After every restart the log reads from start to end
//! without error, offsets increase, every record read is one that was sent at that offset, and
//! for every key the record read last is at least as new as the last one acknowledged (the
//! acknowledged latest value itself, unless a newer record of the key was stored too).
//! MINIKAFKA_COMPACTION_KILL_ITERATIONS / MINIKAFKA_COMPACTION_KILL_SEED override the count
//! (default 20) and the seed.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::BrokerProcess;
use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::client::{
    Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};
use minikafka::record::{self, NewRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "kv";
const KEYS: u64 = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What was sent: offset -> (key, value), for the batches acknowledged; plus every value sent
/// (acknowledged or not), so a record read can always be traced to a send.
#[derive(Default)]
struct Sent {
    acked: BTreeMap<u64, (u64, String)>,
    values: HashMap<String, u64>,
}

/// Creates the compacted topic with tiny segments in `data` (through the library, as a broker
/// started on it would keep it: configs live with the topic).
fn create_topic(data: &Path) {
    let broker = Broker::open(BrokerConfig { data_dir: data.to_path_buf(), ..Default::default() })
        .expect("open the data directory");
    let configs: Vec<(String, Option<String>)> = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "86400000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect();
    let configs = TopicConfigs::parse(&configs).expect("valid topic configs");
    broker.create_topic(TOPIC, 1, configs, false).expect("create the compacted topic");
    broker.shutdown().expect("close the data directory");
}

/// Overwrites the keys in batches of 1-8 records until the broker stops answering or `stop`.
async fn produce(addr: String, iteration: u64, seed: u64, stop: Arc<AtomicBool>) -> Sent {
    let mut sent = Sent::default();
    let Ok(conn) = Connection::connect(&addr).await else { return sent };
    let Ok(producer) = Producer::new(conn, TOPIC, ProducerConfig::default()).await else {
        return sent;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rng.random_range(1..=8u64);
        let batch: Vec<(u64, String)> = (0..n)
            .map(|i| {
                let key = rng.random_range(0..KEYS);
                (key, format!("k{key}-i{iteration}-s{}", seq + i))
            })
            .collect();
        seq += n;
        let keys: Vec<String> = batch.iter().map(|(k, _)| format!("k{k}")).collect();
        let records: Vec<NewRecord> = batch
            .iter()
            .zip(&keys)
            .map(|((_, v), k)| NewRecord {
                timestamp_ms: record::now_ms(),
                key: Some(k.as_bytes()),
                value: Some(v.as_bytes()),
                headers: &[],
            })
            .collect();
        for (k, v) in &batch {
            sent.values.insert(v.clone(), *k);
        }
        match producer.send_batch(Some(0), &records).await {
            Ok(ack) => {
                for (i, (k, v)) in batch.into_iter().enumerate() {
                    sent.acked.insert(ack.first_offset + i as u64, (k, v));
                }
            }
            Err(_) => break,
        }
    }
    sent
}

/// Reads the whole partition and checks it against what was sent; returns how many records it
/// holds.
async fn verify(
    broker: &BrokerProcess,
    acked: &BTreeMap<u64, (u64, String)>,
    values: &HashMap<String, u64>,
    iteration: u64,
) -> usize {
    let conn = Connection::connect(&broker.addr).await.expect("connect after the restart");
    let mut consumer = Consumer::new(conn, TOPIC, StartFrom::Beginning, ConsumerConfig::default())
        .await
        .expect("open a consumer after the restart");
    let mut read: Vec<(u64, u64, String)> = Vec::new();
    while let Some(r) = consumer.next().await.unwrap_or_else(|e| {
        panic!(
            "iteration {iteration}: reading the compacted log after SIGKILL: {e}\n{}",
            broker.log()
        )
    }) {
        let value = String::from_utf8(r.value.expect("no tombstones are written")).unwrap();
        let key: u64 = String::from_utf8(r.key.expect("every record has a key")).unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(values.get(&value), Some(&key), "iteration {iteration}: {value} was never sent");
        if let Some((k, v)) = acked.get(&r.offset) {
            assert_eq!(
                (k, v),
                (&key, &value),
                "iteration {iteration}: offset {} changed",
                r.offset
            );
        }
        if let Some((prev, _, _)) = read.last() {
            assert!(*prev < r.offset, "iteration {iteration}: offsets increase");
        }
        read.push((r.offset, key, value));
    }
    let mut last_read: HashMap<u64, u64> = HashMap::new();
    for (offset, key, _) in &read {
        last_read.insert(*key, *offset);
    }
    let mut last_acked: HashMap<u64, u64> = HashMap::new();
    for (offset, (key, _)) in acked {
        last_acked.insert(*key, *offset);
    }
    for (key, offset) in last_acked {
        let found = last_read.get(&key).copied();
        assert!(
            found.is_some_and(|f| f >= offset),
            "iteration {iteration}: key k{key}: acknowledged at {offset}, latest read {found:?}"
        );
        if found == Some(offset) {
            assert!(read.iter().any(|(o, _, v)| *o == offset && *v == acked[&offset].1));
        }
    }
    read.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_compacting_loses_no_latest_value() {
    let iterations = env_u64("MINIKAFKA_COMPACTION_KILL_ITERATIONS", 20);
    let seed = env_u64("MINIKAFKA_COMPACTION_KILL_SEED", 0xC0FFEE);
    eprintln!("compaction kill loop: {iterations} iterations, seed {seed:#x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_topic(&data);
    let mut broker =
        BrokerProcess::start(&data, &["--fsync", "never", "--log-cleaner-backoff-ms", "1"]);
    let mut acked: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut values: HashMap<String, u64> = HashMap::new();
    let mut held = 0;
    let mut swaps_interrupted = 0;
    for iteration in 0..iterations {
        let stop = Arc::new(AtomicBool::new(false));
        let writer =
            tokio::spawn(produce(broker.addr.clone(), iteration, rng.random(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        let sent = writer.await.unwrap();
        acked.extend(sent.acked);
        values.extend(sent.values);
        broker.restart();
        // Recovery says when the kill interrupted a swap of cleaned segments (it rolls back or
        // completes it); the other kills land between runs or while a run reads and writes.
        if broker.log().contains("compaction swap") {
            swaps_interrupted += 1;
        }
        held = verify(&broker, &acked, &values, iteration).await;
    }
    // The loop proved something only if the cleaner really compacted: far fewer records are
    // left than were acknowledged.
    assert!(held < acked.len() / 2, "{held} records left of {} acknowledged", acked.len());
    eprintln!(
        "{} acknowledged records in {iterations} kills ({swaps_interrupted} inside a segment \
         swap); {held} records left after compaction",
        acked.len()
    );
    assert!(broker.stop(), "clean shutdown; log:\n{}", broker.log());
}
