//! The crash loop: start the real broker, run concurrent producers and consumers through the
//! client library, SIGKILL the broker at a seeded random moment, restart it, and check that every
//! record ever acknowledged is present exactly once, at the offset it was acknowledged with, in the
//! order it was sent. Repeats (seeded, bounded) with small segments so kills land during rolls,
//! cycling through the --fsync policies (an ack must survive kill -9 under every one).
//! MINIKAFKA_CRASH_ITERATIONS / MINIKAFKA_CRASH_SEED override the count (default 20) and seed.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::BrokerProcess;
use minikafka::client::{
    Admin, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};
use minikafka::protocol::{Request, Response};
use minikafka::record::{self, NewRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Acknowledged records: (partition, offset) -> value.
type Acked = HashMap<(u32, u64), Vec<u8>>;

/// One producer's run until the broker dies: sends values to alternating partitions and returns
/// what was acknowledged, mapped to offsets from the per-partition acknowledgements (batches of
/// one partition are acknowledged in the order they were sent, records in batch order).
async fn produce(addr: String, id: usize, iter: u64, seed: u64, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::new();
    let Ok(conn) = Connection::connect(&addr).await else { return acked };
    let mut rng = StdRng::seed_from_u64(seed);
    let config = ProducerConfig {
        batch_max_records: rng.random_range(1..20),
        linger: Duration::from_millis(1),
        max_in_flight: 4,
        ..ProducerConfig::default()
    };
    let Ok(mut producer) = Producer::new(conn, TOPIC, config).await else { return acked };
    let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
    let mut taken = vec![0usize; PARTITIONS as usize];
    let mut record_acks =
        |acks: Vec<minikafka::client::BatchAck>, acked: &mut Acked, sent: &Vec<Vec<Vec<u8>>>| {
            for a in acks {
                let p = a.partition as usize;
                for (k, offset) in (a.first_offset..a.next_offset).enumerate() {
                    let value = sent[p][taken[p] + k].clone();
                    acked.insert((a.partition, offset), value);
                }
                taken[p] += a.len() as usize;
            }
        };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && seq < 200_000 {
        let p = (seq % u64::from(PARTITIONS)) as u32;
        let value = format!("i{iter}-p{id}-s{seq}").into_bytes();
        sent[p as usize].push(value.clone());
        seq += 1;
        let r = producer.send_record(Some(p), &NewRecord::value(&value)).await;
        let acks = producer.take_acks();
        record_acks(acks, &mut acked, &sent);
        if r.is_err() {
            return acked;
        }
        if seq.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    if let Ok(acks) = producer.flush().await {
        record_acks(acks, &mut acked, &sent);
    }
    acked
}

/// A consumer long-polling from the beginning until the broker dies: whatever it receives must
/// be in order (the client checks every CRC). Returns how many records it read.
async fn consume(addr: String, stop: Arc<AtomicBool>) -> u64 {
    let Ok(conn) = Connection::connect(&addr).await else { return 0 };
    let config = ConsumerConfig {
        stop_at_end: false,
        max_wait: Duration::from_millis(200),
        fetch_max_bytes: 16 * 1024,
        ..ConsumerConfig::default()
    };
    let Ok(mut consumer) = Consumer::new(conn, TOPIC, StartFrom::Beginning, config).await else {
        return 0;
    };
    let mut next = [0u64; PARTITIONS as usize];
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        match consumer.next().await {
            Ok(Some(r)) => {
                assert_eq!(r.offset, next[r.partition as usize], "a consumer saw a gap or reorder");
                next[r.partition as usize] += 1;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

/// Every record of a partition, read with plain fetches.
async fn read_partition(conn: &Connection, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let req = Request::Fetch {
            topic: TOPIC.into(),
            partition,
            offset: at,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        };
        let Response::Fetched { records, high_watermark, .. } = conn.request(&req).await.unwrap()
        else {
            panic!("fetch failed");
        };
        // Whole batches from the one holding `at`; every batch's CRC-32C is checked.
        let mut got = Vec::new();
        record::decode_records(&records, at, true, &mut got, &mut Vec::new())
            .expect("stored batches pass their CRC");
        for r in got {
            assert_eq!(r.offset, at, "offsets are consecutive after recovery");
            out.push((r.offset, r.value.expect("produced with a value")));
            at += 1;
        }
        if at >= high_watermark {
            return out;
        }
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_or_duplicates_an_acknowledged_record() {
    let iterations = env_u64("MINIKAFKA_CRASH_ITERATIONS", 20);
    let seed = env_u64("MINIKAFKA_CRASH_SEED", 0x5EED_C0DE);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let rt = rt.unwrap();
    let policies = ["never", "always", "interval=20"];
    let mut all_acked = Acked::new();
    let mut total_consumed = 0u64;
    let started = Instant::now();
    for iter in 0..iterations {
        let policy = policies[iter as usize % policies.len()];
        let mut broker =
            BrokerProcess::start(&data, &["--fsync", policy, "--segment-bytes", "4096"]);
        let addr = broker.addr.clone();

        // After the restart: everything acknowledged so far is there, exactly once, in order.
        let (verified, holding) = rt.block_on(async {
            let conn = Connection::connect(&addr).await.unwrap();
            if iter == 0 {
                Admin::new(conn.clone()).create_topic(TOPIC, PARTITIONS, false).await.unwrap();
            }
            let mut holding = 0;
            for p in 0..PARTITIONS {
                let stored = read_partition(&conn, p).await;
                holding += stored.len();
                let mut seen: HashMap<&[u8], u64> = HashMap::new();
                for (off, v) in &stored {
                    if let Some(prev) = seen.insert(v, *off) {
                        panic!("iteration {iter}: value stored twice, at {prev} and {off}");
                    }
                }
                for ((ap, off), v) in &all_acked {
                    if *ap != p {
                        continue;
                    }
                    let got = stored.get(*off as usize).map(|(_, v)| v);
                    assert_eq!(
                        got,
                        Some(v),
                        "iteration {iter} ({policy}): acknowledged p{p}@{off} lost or changed"
                    );
                }
            }
            (all_acked.len(), holding)
        });
        assert_eq!(verified, all_acked.len());

        // Load, then SIGKILL at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let mut producers = Vec::new();
        for id in 0..PRODUCERS {
            let s = rng.random();
            producers.push(rt.spawn(produce(addr.clone(), id, iter, s, stop.clone())));
        }
        let consumers: Vec<_> =
            (0..CONSUMERS).map(|_| rt.spawn(consume(addr.clone(), stop.clone()))).collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(100..700)));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        let results = rt.block_on(async {
            let mut acked = Vec::new();
            for p in producers {
                acked.push(tokio::time::timeout(Duration::from_secs(60), p).await);
            }
            let mut consumed = 0;
            for c in consumers {
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(60), c).await {
                    consumed += n;
                }
            }
            (acked, consumed)
        });
        let mut new_acks = 0;
        for r in results.0 {
            let acked = r.expect("a producer hung after the kill").expect("producer task");
            new_acks += acked.len();
            for (k, v) in acked {
                // Offsets are handed out once: an ack may never reuse an acknowledged offset.
                assert!(all_acked.insert(k, v).is_none(), "offset {k:?} acknowledged twice");
            }
        }
        total_consumed += results.1;
        println!(
            "crash loop iteration {iter} ({policy}): {holding} stored records verified, \
             {new_acks} new acks before SIGKILL"
        );
    }
    // Final check after the last kill.
    let broker = BrokerProcess::start(&data, &[]);
    rt.block_on(async {
        let conn = Connection::connect(&broker.addr).await.unwrap();
        for p in 0..PARTITIONS {
            let stored = read_partition(&conn, p).await;
            for ((ap, off), v) in all_acked.iter().filter(|((ap, _), _)| *ap == p) {
                assert_eq!(stored.get(*off as usize).map(|(_, v)| v), Some(v), "p{ap}@{off}");
            }
        }
    });
    assert!(all_acked.len() > 100, "the producers got acknowledgements at all");
    println!(
        "crash loop: {iterations} SIGKILL iterations (seed {seed:#x}), {} acknowledged records \
         verified, {total_consumed} records consumed live, {:.1}s",
        all_acked.len(),
        started.elapsed().as_secs_f64()
    );
}
