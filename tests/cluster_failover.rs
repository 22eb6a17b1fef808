//! Issue 14's failover target, measured: three brokers with `--broker-session-timeout-ms 2000`.
//! Each round creates a topic with 3 partitions x 3 replicas (so every broker leads one), and an
//! idempotent `acks=all` producer sends one record at a time to the partition led by the broker
//! about to be SIGKILLed: in even rounds that is the controller (the metadata Raft leader, the
//! worst case: a new controller must be elected before anyone is fenced), in odd rounds another
//! broker. The time from the kill to the next acknowledged produce is printed (the target, under
//! 5 s, is reported, not asserted: timing on a busy 2-core machine is noise). Asserted: it happens
//! within a generous bound, a different broker acknowledges it with a higher leader epoch, the
//! killed broker rejoins the ISR after a restart, and every acknowledged record is read back
//! exactly once, in order.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::checker::{self, History, Op, value};
use common::cluster::TestCluster;
use common::cluster_client::{
    Attempt, ClusterClient, IdempotentProducer, NONE, TOPIC_ALREADY_EXISTS,
};

/// Liveness bound, not the target: the target is 2 x the session timeout.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
const ROUNDS: usize = 4;
const PARTITIONS: i32 = 3;

/// Sends one single-record batch, retrying it unchanged until acknowledged or `limit` passes:
/// Some(base offset) and the time it took, or None.
fn send(
    producer: &mut IdempotentProducer,
    partition: i32,
    history: &History,
    seq: &mut u64,
    limit: Duration,
) -> Option<(Option<i64>, Duration)> {
    let start = Instant::now();
    let values = vec![value(0, partition, *seq)];
    let batch = producer.batch(partition, &values);
    while start.elapsed() < limit {
        match producer.attempt(partition, &batch) {
            Attempt::Acked(base_offset) => {
                history.push(Op::Ack { writer: 0, partition, base_offset, values });
                producer.acked(partition, 1);
                *seq += 1;
                return Some((base_offset, start.elapsed()));
            }
            Attempt::Retriable(e) => {
                history.push(Op::SendFailed {
                    writer: 0,
                    partition,
                    first: values[0].clone(),
                    error: e.to_string(),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            Attempt::Fatal(e) => panic!("an idempotent acks=all producer got {e}"),
        }
    }
    history.push(Op::Abandoned { writer: 0, partition, values });
    None
}

#[test]
fn sigkill_of_the_leader_to_the_next_acks_all_ack_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--broker-session-timeout-ms", "2000"]);
    let mut measured: Vec<(Duration, bool)> = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("failover-{round}");
        let mut admin = ClusterClient::new(&cluster.kafka_addrs(), &topic, "admin");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match admin.create_topic(PARTITIONS, 3) {
                Ok(NONE | TOPIC_ALREADY_EXISTS) => break,
                other => {
                    assert!(Instant::now() < deadline, "CreateTopics with 3 replicas: {other:?}")
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        admin.wait_healthy(PARTITIONS, 3, Duration::from_secs(120)).unwrap();
        let controller = loop {
            if let Some(c) = cluster.controller() {
                break c as i32;
            }
            assert!(Instant::now() < deadline, "no controller known");
            std::thread::sleep(Duration::from_millis(200));
        };
        // Even rounds kill the controller, odd ones another broker; either leads a partition.
        let kill_controller = round % 2 == 0;
        let (partition, old, old_epoch) = (0..PARTITIONS)
            .filter_map(|p| admin.leader(p).map(|(l, e, _)| (p, l, e)))
            .find(|&(_, l, _)| (l == controller) == kill_controller)
            .expect("every broker leads a partition of a new topic");

        let client = ClusterClient::new(&cluster.kafka_addrs(), &topic, "producer");
        let mut producer = IdempotentProducer::new(client, Duration::from_secs(60)).unwrap();
        let history = History::new();
        let mut seq = 0u64;
        for _ in 0..30 {
            send(&mut producer, partition, &history, &mut seq, FAILOVER_LIMIT)
                .expect("a healthy cluster acknowledges");
        }

        let i = cluster.index(old);
        let what = if kill_controller { "leader and controller" } else { "leader" };
        history.push(Op::Nemesis(format!("SIGKILL {what} {old} (epoch {old_epoch})")));
        let killed = Instant::now();
        cluster.kill(i);
        let mut acked = None;
        while acked.is_none() && killed.elapsed() < FAILOVER_LIMIT {
            let left = FAILOVER_LIMIT.saturating_sub(killed.elapsed());
            acked = send(&mut producer, partition, &history, &mut seq, left);
        }
        let took = killed.elapsed();
        assert!(
            acked.is_some(),
            "no acks=all acknowledgement within {FAILOVER_LIMIT:?} of killing {what} {old}:\n{}",
            cluster.logs_tail(60)
        );
        let (new, new_epoch, _) =
            producer.client.leader(partition).expect("the producer acknowledged through a leader");
        assert_ne!(new, old, "the killed broker cannot have acknowledged");
        assert!(new_epoch > old_epoch, "leader epoch {new_epoch} after {old_epoch}");
        println!(
            "failover {round}: SIGKILL of {what} {old} (partition {partition}, epoch {old_epoch}) -> next acks=all ack from broker {new} (epoch {new_epoch}) after {} ms",
            took.as_millis()
        );
        measured.push((took, kill_controller));
        for _ in 0..20 {
            send(&mut producer, partition, &history, &mut seq, FAILOVER_LIMIT)
                .expect("the new leader keeps acknowledging");
        }
        // The killed broker restarts, catches up and rejoins the ISR.
        cluster.restart(i);
        if let Err(e) = admin.wait_healthy(PARTITIONS, 3, Duration::from_secs(120)) {
            panic!("broker {old} did not rejoin the ISR: {e}\n{}", cluster.logs_tail(60));
        }
        let read = admin.read_all(partition, Duration::from_secs(120)).unwrap();
        let finals = BTreeMap::from([(partition, read)]);
        match checker::check(&history.events(), &finals) {
            Ok(s) => assert_eq!(s.acked as u64, seq),
            Err(report) => panic!("{report}"),
        }
    }
    for (name, of_controller) in [("the controller", true), ("another broker", false)] {
        let mut times: Vec<u128> =
            measured.iter().filter(|m| m.1 == of_controller).map(|m| m.0.as_millis()).collect();
        times.sort();
        println!(
            "failover with --broker-session-timeout-ms 2000, SIGKILL of {name} leading the partition: {times:?} ms, max {} ms (target: under 5000 ms)",
            times.last().copied().unwrap_or_default()
        );
    }
}
