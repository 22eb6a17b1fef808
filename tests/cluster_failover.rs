//! Issue 14's failover target, measured: three brokers with `--broker-session-timeout-ms 2000`,
//! one topic with 3 replicas, an idempotent `acks=all` producer sending one record at a time.
//! The partition's leader is SIGKILLed; the time from the kill to the next acknowledged produce
//! is printed (the target, under 5 s, is reported, not asserted: timing on a busy 2-core machine
//! is noise). Asserted: it happens within a generous bound, a different broker acknowledges it
//! with a higher leader epoch, the killed broker rejoins the ISR after a restart, and every
//! acknowledged record is read back exactly once, in order.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::checker::{self, History, Op, value};
use common::cluster::TestCluster;
use common::cluster_client::{
    Attempt, ClusterClient, IdempotentProducer, NONE, TOPIC_ALREADY_EXISTS,
};

const TOPIC: &str = "failover";
/// Liveness bound, not the target: the target is 2 x the session timeout.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
const ROUNDS: usize = 3;

/// Sends one single-record batch, retrying it unchanged until acknowledged or `limit` passes:
/// Some(base offset) and the time it took, or None.
fn send(
    producer: &mut IdempotentProducer,
    history: &History,
    seq: &mut u64,
    limit: Duration,
) -> Option<(Option<i64>, Duration)> {
    let start = Instant::now();
    let values = vec![value(0, 0, *seq)];
    let batch = producer.batch(0, &values);
    while start.elapsed() < limit {
        match producer.attempt(0, &batch) {
            Attempt::Acked(base_offset) => {
                history.push(Op::Ack { writer: 0, partition: 0, base_offset, values });
                producer.acked(0, 1);
                *seq += 1;
                return Some((base_offset, start.elapsed()));
            }
            Attempt::Retriable(e) => {
                history.push(Op::SendFailed {
                    writer: 0,
                    partition: 0,
                    first: values[0].clone(),
                    error: e.to_string(),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            Attempt::Fatal(e) => panic!("an idempotent acks=all producer got {e}"),
        }
    }
    history.push(Op::Abandoned { writer: 0, partition: 0, values });
    None
}

#[test]
fn sigkill_of_the_leader_to_the_next_acks_all_ack_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--broker-session-timeout-ms", "2000"]);
    let mut admin = ClusterClient::new(&cluster.kafka_addrs(), TOPIC, "admin");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match admin.create_topic(1, 3) {
            Ok(NONE | TOPIC_ALREADY_EXISTS) => break,
            other => assert!(Instant::now() < deadline, "CreateTopics with 3 replicas: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    admin.wait_healthy(1, 3, Duration::from_secs(120)).unwrap();
    let client = ClusterClient::new(&cluster.kafka_addrs(), TOPIC, "producer");
    let mut producer = IdempotentProducer::new(client, Duration::from_secs(60)).unwrap();
    let history = History::new();
    let mut seq = 0u64;
    for _ in 0..50 {
        send(&mut producer, &history, &mut seq, FAILOVER_LIMIT)
            .expect("a healthy cluster acknowledges");
    }

    let mut measured = Vec::new();
    for round in 0..ROUNDS {
        admin.wait_healthy(1, 3, Duration::from_secs(120)).unwrap();
        let (old, old_epoch, _) = admin.leader(0).expect("a leader");
        let i = cluster.index(old);
        history.push(Op::Nemesis(format!("SIGKILL leader {old} (epoch {old_epoch})")));
        let killed = Instant::now();
        cluster.kill(i);
        let mut acked = None;
        while acked.is_none() && killed.elapsed() < FAILOVER_LIMIT {
            acked = send(
                &mut producer,
                &history,
                &mut seq,
                FAILOVER_LIMIT.saturating_sub(killed.elapsed()),
            );
        }
        let took = killed.elapsed();
        assert!(
            acked.is_some(),
            "no acks=all acknowledgement within {FAILOVER_LIMIT:?} of killing leader {old}:\n{}",
            cluster.logs_tail(60)
        );
        let (new, new_epoch, _) =
            producer.client.leader(0).expect("the producer acknowledged through a leader");
        assert_ne!(new, old, "the killed broker cannot have acknowledged");
        assert!(new_epoch > old_epoch, "leader epoch {new_epoch} after {old_epoch}");
        println!(
            "failover {round}: SIGKILL of leader {old} (epoch {old_epoch}) -> next acks=all ack from broker {new} (epoch {new_epoch}) after {} ms",
            took.as_millis()
        );
        measured.push(took);
        for _ in 0..20 {
            send(&mut producer, &history, &mut seq, FAILOVER_LIMIT)
                .expect("the new leader keeps acknowledging");
        }
        // The killed broker restarts, catches up and rejoins the ISR.
        cluster.restart(i);
        if let Err(e) = admin.wait_healthy(1, 3, Duration::from_secs(120)) {
            panic!("broker {old} did not rejoin the ISR: {e}\n{}", cluster.logs_tail(60));
        }
    }
    measured.sort();
    println!(
        "failover with --broker-session-timeout-ms 2000 over {ROUNDS} kills: median {} ms, max {} ms (target: under 5000 ms)",
        measured[ROUNDS / 2].as_millis(),
        measured[ROUNDS - 1].as_millis()
    );

    let finals = BTreeMap::from([(0, admin.read_all(0, Duration::from_secs(120)).unwrap())]);
    match checker::check(&history.events(), &finals) {
        Ok(s) => assert_eq!(s.acked as u64, seq),
        Err(report) => panic!("{report}"),
    }
}
