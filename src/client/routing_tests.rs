//! The client in a cluster, against stand-in brokers: requests for a partition go to its
//! leader once a broker refused one as a non-leader, and keep going after the leader moves or
//! its broker disappears. Compiled only for tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use super::stand_in;
use super::{Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, Reconnect, StartFrom};
use crate::broker::{PartitionDescription, TopicDescription};
use crate::protocol::{BrokerInfo, ErrorCode, PartitionState, Request, Response};
use crate::record::NewRecord;

/// What the stand-in cluster shares: each broker's address, the leader of each partition of
/// topic `t`, and every append each broker accepted as (broker, partition, first offset).
#[derive(Default)]
struct World {
    addrs: Mutex<Vec<(i32, String)>>,
    leaders: Mutex<Vec<i32>>,
    appended: Mutex<Vec<(i32, u32, u64)>>,
    /// Records stored per partition (their count), so offsets follow each other.
    ends: Mutex<Vec<u64>>,
}

impl World {
    fn leader(&self, p: u32) -> Option<i32> {
        self.leaders.lock().unwrap().get(p as usize).copied()
    }

    fn answer(&self, me: i32, req: Request) -> Response {
        let not_leader = |p: u32| Response::Error {
            code: ErrorCode::NotLeader,
            message: format!("broker {me} does not lead t/{p}"),
        };
        match req {
            Request::Describe { .. } => {
                let n = self.leaders.lock().unwrap().len() as u32;
                Response::Described { topics: vec![description(n)] }
            }
            Request::DescribePartitions { .. } => {
                let brokers = self
                    .addrs
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, addr)| BrokerInfo {
                        id: *id,
                        native_addr: Some(addr.clone()),
                        kafka_addr: None,
                        fenced: false,
                    })
                    .collect();
                let partitions = self
                    .leaders
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(p, leader)| PartitionState {
                        topic: "t".into(),
                        partition: p as u32,
                        leader: Some(*leader),
                        leader_epoch: 0,
                        replicas: vec![1, 2],
                        isr: vec![1, 2],
                    })
                    .collect();
                Response::Partitions { brokers, partitions }
            }
            Request::Append { partition, records, .. } => {
                // Like a broker, one that picks a partition for a batch that names none: 0.
                let p = partition.unwrap_or(0);
                if self.leader(p) != Some(me) {
                    return not_leader(p);
                }
                let count = crate::batch::BatchView::new(&records)
                    .map(|b| u64::from(b.records_count().max(0) as u32))
                    .unwrap_or(1);
                let mut ends = self.ends.lock().unwrap();
                let first = ends[p as usize];
                ends[p as usize] += count;
                self.appended.lock().unwrap().push((me, p, first));
                Response::Appended { partition: p, first_offset: first, next_offset: first + count }
            }
            Request::Fetch { partition, offset, .. } => {
                if self.leader(partition) != Some(me) {
                    return not_leader(partition);
                }
                let end = self.ends.lock().unwrap()[partition as usize];
                let records = if offset < end {
                    let value = format!("{me}");
                    let rec = NewRecord {
                        timestamp_ms: 0,
                        key: None,
                        value: Some(value.as_bytes()),
                        headers: &[],
                    };
                    let mut b = crate::record::build_batch(&[rec], crate::batch::Compression::None)
                        .unwrap();
                    crate::batch::set_base_offset(&mut b, offset as i64).unwrap();
                    bytes::Bytes::from(b)
                } else {
                    bytes::Bytes::new()
                };
                Response::Fetched { partition, log_start_offset: 0, high_watermark: end, records }
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
}

fn description(n: u32) -> TopicDescription {
    TopicDescription {
        name: "t".into(),
        partitions: (0..n)
            .map(|partition| PartitionDescription {
                partition,
                log_start_offset: 0,
                next_offset: 0,
                segments: 1,
                size_bytes: 0,
                offline: None,
            })
            .collect(),
        offline: None,
        topic_id: [1; 16],
        configs: Vec::new(),
    }
}

/// A stand-in broker `me` of the world; answers while `alive` (once it is cleared, every
/// connection is dropped at its next request and new ones are refused by closing them).
async fn stand_in_broker(world: Arc<World>, me: i32, alive: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    world.addrs.lock().unwrap().push((me, addr.clone()));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            if !alive.load(Ordering::SeqCst) {
                continue; // dropped: closed at once
            }
            let (world, alive) = (world.clone(), alive.clone());
            tokio::spawn(async move {
                while let Some((id, req)) = stand_in::read_request(&mut sock).await {
                    if !alive.load(Ordering::SeqCst) {
                        return;
                    }
                    let resp = world.answer(me, req);
                    stand_in::respond(&mut sock, id, &resp).await;
                }
            });
        }
    });
    addr
}

fn quick_retries() -> Reconnect {
    Reconnect {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        give_up_after: Some(Duration::from_secs(20)),
        listener: None,
    }
}

async fn send_to(producer: &mut Producer, partition: u32, n: usize) {
    for _ in 0..n {
        let rec = NewRecord { timestamp_ms: 0, key: None, value: Some(b"v"), headers: &[] };
        producer.send_record(Some(partition), &rec).await.unwrap();
    }
}

#[tokio::test]
async fn appends_go_to_each_partitions_leader_after_a_not_leader_refusal() {
    let world = Arc::new(World::default());
    *world.leaders.lock().unwrap() = vec![1, 2];
    *world.ends.lock().unwrap() = vec![0, 0];
    let a = stand_in_broker(world.clone(), 1, Arc::new(AtomicBool::new(true))).await;
    stand_in_broker(world.clone(), 2, Arc::new(AtomicBool::new(true))).await;

    // Given only broker 1, as a user might be.
    let conn = Connection::connect(&a).await.unwrap();
    assert!(!conn.is_routing());
    let config = ProducerConfig { batch_max_records: 5, ..ProducerConfig::default() };
    let mut producer = Producer::new(conn.clone(), "t", config).await.unwrap();
    send_to(&mut producer, 0, 10).await;
    send_to(&mut producer, 1, 10).await;
    let acks = producer.flush().await.unwrap();
    assert_eq!(acks.iter().map(|a| a.len()).sum::<u64>(), 20);
    assert!(conn.is_routing(), "the refusal taught the client the leaders");
    let mut appended = world.appended.lock().unwrap().clone();
    appended.sort();
    assert_eq!(appended, vec![(1, 0, 0), (1, 0, 5), (2, 1, 0), (2, 1, 5)]);

    // A batch that names no partition gets one here and goes to its leader.
    let rec = NewRecord { timestamp_ms: 0, key: None, value: Some(b"x"), headers: &[] };
    for _ in 0..4 {
        producer.send_batch(None, std::slice::from_ref(&rec)).await.unwrap();
    }
    let appended = world.appended.lock().unwrap().clone();
    assert_eq!(appended.len(), 8);
    assert!(appended[4..].iter().all(|(broker, p, _)| *broker as u32 == p + 1), "{appended:?}");
}

#[tokio::test]
async fn producing_and_consuming_go_on_after_the_leaders_broker_disappears() {
    let world = Arc::new(World::default());
    *world.leaders.lock().unwrap() = vec![2];
    *world.ends.lock().unwrap() = vec![0];
    let a = stand_in_broker(world.clone(), 1, Arc::new(AtomicBool::new(true))).await;
    let b_alive = Arc::new(AtomicBool::new(true));
    let b = stand_in_broker(world.clone(), 2, b_alive.clone()).await;

    let conn = Connection::connect(&format!("{a},{b}")).await.unwrap();
    let config = ProducerConfig {
        batch_max_records: 1,
        reconnect: Some(quick_retries()),
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn.clone(), "t", config).await.unwrap();
    send_to(&mut producer, 0, 3).await;
    assert_eq!(producer.flush().await.unwrap().len(), 3);
    assert!(world.appended.lock().unwrap().iter().all(|(broker, _, _)| *broker == 2));

    // Broker 2 goes away; the partition's leadership moves to broker 1 a moment later.
    b_alive.store(false, Ordering::SeqCst);
    let moved = world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        *moved.leaders.lock().unwrap() = vec![1];
    });
    send_to(&mut producer, 0, 3).await;
    let acks = producer.flush().await.unwrap();
    assert_eq!(acks.len(), 3, "every batch acknowledged, by the new leader");
    let appended = world.appended.lock().unwrap().clone();
    assert_eq!(appended[3..].iter().map(|(broker, _, _)| *broker).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(appended.iter().map(|(_, _, first)| *first).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);

    // A consumer given both brokers reads from the leader (broker 1 now) without a hitch.
    let config = ConsumerConfig { reconnect: Some(quick_retries()), ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(
        conn.clone(),
        "t",
        StartFrom::Offset(0),
        ConsumerConfig { stop_at_end: false, ..config },
    )
    .await
    .unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!((first.offset, first.value.as_deref()), (0, Some(&b"1"[..])));
}

#[tokio::test]
async fn a_consumer_that_stops_at_the_end_reads_to_the_leaders_end_not_a_lagging_brokers() {
    let world = Arc::new(World::default());
    *world.leaders.lock().unwrap() = vec![2];
    // Broker 2 leads and holds 3 records; broker 1 has copied none yet (it describes the
    // partition as empty, as every stand-in broker does).
    *world.ends.lock().unwrap() = vec![3];
    let a = stand_in_broker(world.clone(), 1, Arc::new(AtomicBool::new(true))).await;
    stand_in_broker(world.clone(), 2, Arc::new(AtomicBool::new(true))).await;

    let conn = Connection::connect(&a).await.unwrap();
    let config = ConsumerConfig { reconnect: Some(quick_retries()), ..ConsumerConfig::default() };
    assert!(config.stop_at_end);
    let mut consumer = Consumer::new(conn, "t", StartFrom::Beginning, config).await.unwrap();
    let mut offsets = Vec::new();
    while let Some(r) = consumer.next().await.unwrap() {
        assert_eq!(r.value.as_deref(), Some(&b"2"[..]), "read from the leader");
        offsets.push(r.offset);
    }
    assert_eq!(offsets, [0, 1, 2], "every record the leader has, though broker 1 had none");
}
