//! Issue 14, "How it is proven": a three-broker cluster never loses an acknowledged record.
//! Concurrent idempotent `acks=all` producers and consumers run against three real brokers while
//! a seeded nemesis SIGKILLs partition leaders and followers (and restarts them), pauses brokers
//! with SIGSTOP/SIGCONT and — as root with `ip` and `nft` — cuts one broker off the network in
//! its own namespace; after every fault heals, producing must resume. At the end the checker
//! (tests/common/checker.rs) judges the whole history against each partition as read back.
//!
//! `MINIKAFKA_CLUSTER_SEED=N` replays a run (the seed is printed); `MINIKAFKA_CLUSTER_ITERATIONS`
//! (default 20) sets how many faults. The checker itself is tested first, on synthetic histories
//! that must fail, and so is the namespace lab.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::checker::{self, Event, History, Op, value};
use common::cluster::TestCluster;
use common::cluster_client::{
    Attempt, ClusterClient, IdempotentProducer, NONE, TOPIC_ALREADY_EXISTS,
};
use common::netns::{Cut, NetLab};

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 3;
const WRITERS: u32 = 2;
/// Liveness after a fault heals: generous (debug build, 2 busy cores), never a timing claim.
const RESUME_LIMIT: Duration = Duration::from_secs(90);
/// How long a producer keeps retrying its last batch after it is told to stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// splitmix64: a seeded, dependency-free generator; the same seed, the same fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

// --- The checker, on synthetic histories -------------------------------------------------------

fn ack(writer: u32, partition: i32, base: i64, seqs: std::ops::Range<u64>) -> Event {
    let values = seqs.map(|s| value(writer, partition, s)).collect();
    Event { at_ms: 0, op: Op::Ack { writer, partition, base_offset: Some(base), values } }
}

fn read(partition: i32, offset: i64, v: String) -> Event {
    Event { at_ms: 0, op: Op::Read { reader: 0, partition, offset, value: v } }
}

/// Each partition's log as read at the end: (offset, value).
type Finals = BTreeMap<i32, Vec<(i64, String)>>;

/// Two writers on one partition, then a read of some of it: a correct history.
fn good_history() -> (Vec<Event>, Finals) {
    let events = vec![
        ack(0, 0, 0, 0..3),
        ack(1, 0, 3, 0..2),
        ack(0, 0, 5, 3..4),
        read(0, 1, value(0, 0, 1)),
        read(0, 3, value(1, 0, 0)),
    ];
    let log = vec![
        value(0, 0, 0),
        value(0, 0, 1),
        value(0, 0, 2),
        value(1, 0, 0),
        value(1, 0, 1),
        value(0, 0, 3),
    ];
    let finals =
        BTreeMap::from([(0, log.into_iter().enumerate().map(|(i, v)| (i as i64, v)).collect())]);
    (events, finals)
}

fn verdict(events: &[Event], finals: &BTreeMap<i32, Vec<(i64, String)>>) -> String {
    match checker::check(events, finals) {
        Ok(s) => panic!("the checker passed a bad history: {s:?}"),
        Err(report) => report,
    }
}

#[test]
fn checker_passes_a_correct_history_and_counts_it() {
    let (events, finals) = good_history();
    let s = checker::check(&events, &finals).unwrap();
    assert_eq!((s.acked, s.reads, s.final_records, s.unacked_but_stored), (6, 2, 6, 0));
}

#[test]
fn checker_fails_a_lost_acknowledged_record() {
    let (events, mut finals) = good_history();
    // The last acknowledged record is gone (a leader elected without it).
    finals.get_mut(&0).unwrap().pop();
    let report = verdict(&events, &finals);
    assert!(report.contains("lost: \"w0-p0-0000003\""), "{report}");
    // The report shows the acknowledgement it lost.
    assert!(report.contains("Ack { writer: 0, partition: 0, base_offset: Some(5)"), "{report}");
}

#[test]
fn checker_fails_a_duplicated_record() {
    let (events, mut finals) = good_history();
    // An idempotent retry stored twice.
    finals.get_mut(&0).unwrap().push((6, value(0, 0, 3)));
    let report = verdict(&events, &finals);
    assert!(report.contains("duplicated: \"w0-p0-0000003\" at p0@5 and again at p0@6"), "{report}");
}

#[test]
fn checker_fails_reordered_records() {
    let (mut events, mut finals) = good_history();
    // Writer 0's records 1 and 2 swapped in the log (and so acknowledged at swapped offsets).
    let log = finals.get_mut(&0).unwrap();
    log.swap(1, 2);
    log[1].0 = 1;
    log[2].0 = 2;
    events.retain(|e| !matches!(e.op, Op::Read { .. }));
    events[0] = Event {
        at_ms: 0,
        op: Op::Ack {
            writer: 0,
            partition: 0,
            base_offset: Some(0),
            values: vec![value(0, 0, 0), value(0, 0, 2), value(0, 0, 1)],
        },
    };
    let report = verdict(&events, &finals);
    assert!(
        report.contains("reordered: \"w0-p0-0000001\" at p0@2 after \"w0-p0-0000002\""),
        "{report}"
    );
}

#[test]
fn checker_fails_two_values_at_one_offset() {
    let (mut events, finals) = good_history();
    // A consumer saw a different record at an acknowledged offset (a stale leader served it).
    events.push(read(0, 4, value(0, 0, 9)));
    let report = verdict(&events, &finals);
    assert!(report.contains("p0@4 held two values"), "{report}");
}

#[test]
fn checker_fails_a_read_that_later_disappears() {
    let (mut events, finals) = good_history();
    // A consumer read past the end of what survived (it saw a record above the high watermark).
    events.push(read(0, 6, value(1, 0, 2)));
    events.push(Event {
        at_ms: 0,
        op: Op::Abandoned { writer: 1, partition: 0, values: vec![value(1, 0, 2)] },
    });
    let report = verdict(&events, &finals);
    assert!(report.contains("read then lost: r0 read \"w1-p0-0000002\" at p0@6"), "{report}");
}

#[test]
fn checker_fails_gaps_phantoms_and_unexpected_errors() {
    let (mut events, mut finals) = good_history();
    finals.get_mut(&0).unwrap().push((8, value(2, 0, 0)));
    events.push(Event {
        at_ms: 0,
        op: Op::Unexpected { who: "w1".into(), partition: 0, error: "kafka error 45".into() },
    });
    let report = verdict(&events, &finals);
    assert!(report.contains("offsets not consecutive: index 6 holds offset 8"), "{report}");
    assert!(report.contains("phantom: \"w2-p0-0000000\""), "{report}");
    assert!(report.contains("unexpected error kafka error 45"), "{report}");
}

// --- The client, against one broker -------------------------------------------------------------

/// The harness's own Kafka client against a single-node broker: CreateTopics, Metadata,
/// InitProducerId, an idempotent acks=all produce sent twice (stored once, the first offset
/// back), Fetch of everything back; the checker passes the history.
#[test]
fn the_cluster_client_produces_idempotently_and_reads_back_on_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::BrokerProcess::start_with_kafka(&dir.path().join("data"), &[]);
    let addrs = vec![broker.kafka_addr.clone().unwrap()];
    let mut admin = ClusterClient::new(&addrs, "solo", "admin");
    assert_eq!(admin.create_topic(2, 1).unwrap(), NONE);
    admin.wait_healthy(2, 1, Duration::from_secs(30)).unwrap();
    let mut producer =
        IdempotentProducer::new(ClusterClient::new(&addrs, "solo", "w0"), Duration::from_secs(30))
            .unwrap();
    let history = History::new();
    for p in 0..2 {
        for round in 0..3u64 {
            let values: Vec<String> = (round * 2..round * 2 + 2).map(|s| value(0, p, s)).collect();
            let batch = producer.batch(p, &values);
            let Attempt::Acked(first) = producer.attempt(p, &batch) else {
                panic!("not acknowledged")
            };
            // A retry of the same batch: de-duplicated, the same offsets back.
            let Attempt::Acked(again) = producer.attempt(p, &batch) else {
                panic!("retry refused")
            };
            assert!(again.is_none() || again == first, "{again:?} after {first:?}");
            history.push(Op::Ack { writer: 0, partition: p, base_offset: first, values });
            producer.acked(p, 2);
        }
    }
    let finals: BTreeMap<i32, Vec<(i64, String)>> =
        (0..2).map(|p| (p, admin.read_all(p, Duration::from_secs(30)).unwrap())).collect();
    assert_eq!(
        finals[&1].iter().map(|r| r.1.as_str()).collect::<Vec<_>>()[..2],
        ["w0-p1-0000000", "w0-p1-0000001"]
    );
    let s = checker::check(&history.events(), &finals).unwrap();
    assert_eq!((s.acked, s.final_records), (12, 12));
}

// --- The namespace lab ------------------------------------------------------------------------

/// A listener in broker 1's namespace is reachable from the client namespace; a full cut and a
/// cut from peers drop what they should; healing restores it; nothing is left behind.
#[test]
fn netlab_cuts_and_heals_one_namespace_and_removes_everything() {
    if let Some(why) = NetLab::unavailable() {
        println!("skipped: network partitions need root, ip and nft: {why}");
        return;
    }
    let lab = match NetLab::create(3) {
        Ok(lab) => lab,
        // Root in a container without CAP_SYS_ADMIN / CAP_NET_ADMIN: say so, like a missing tool.
        Err(e) if e.contains("Operation not permitted") || e.contains("Permission denied") => {
            println!("skipped: this root cannot make network namespaces: {e}");
            return;
        }
        Err(e) => panic!("build the namespace lab: {e}"),
    };
    let names = lab.existing();
    assert_eq!(names.len(), 5, "bridge, client and three brokers: {names:?}");
    let addr = format!("{}:7070", lab.node_ip(1));
    let (n1, n2, client) = (lab.node_ns(1), lab.node_ns(2), lab.client_ns());
    // A listener inside broker 1's namespace that accepts for the whole test.
    let listener = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            common::netns::enter(&n1).unwrap();
            std::net::TcpListener::bind(&addr).unwrap()
        })
        .join()
        .unwrap()
    };
    std::thread::spawn(move || for _ in listener.incoming() {});
    let reach = |ns: &str| {
        let (ns, addr) = (ns.to_string(), addr.clone());
        std::thread::spawn(move || {
            common::netns::enter(&ns).unwrap();
            let sa = addr.parse().unwrap();
            std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(1500)).is_ok()
        })
        .join()
        .unwrap()
    };
    assert!(reach(&client) && reach(&n2), "the lab connects");
    // The lab's addresses exist only inside its namespaces, never in the host's.
    let out = std::process::Command::new("ip").args(["-4", "addr"]).output().unwrap();
    let host = String::from_utf8_lossy(&out.stdout);
    assert!(!host.contains("10.213."), "a lab address in the host namespace: {host}");

    lab.cut(1, Cut::FromPeers).unwrap();
    assert!(reach(&client) && !reach(&n2), "cut from peers: clients reach it, brokers do not");
    lab.heal(1).unwrap();
    lab.cut(1, Cut::Full).unwrap();
    assert!(!reach(&client) && !reach(&n2), "a full cut drops everyone");
    lab.heal(1).unwrap();
    lab.heal(1).unwrap(); // healing twice is harmless
    assert!(reach(&client) && reach(&n2), "healed");

    let prefix = names[0].rsplit_once('-').unwrap().0.to_string();
    drop(lab);
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&out.stdout);
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
}

// --- The cluster under a nemesis ------------------------------------------------------------------

/// Producers, consumers and what they share.
struct Workload {
    history: Arc<History>,
    stop_producing: Arc<AtomicBool>,
    stop_consuming: Arc<AtomicBool>,
    /// Each consumer's next offset, per partition.
    consumed: Arc<Vec<AtomicI64>>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
}

fn start_workload(addrs: &[String], history: Arc<History>, seed: u64) -> Workload {
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let consumed: Arc<Vec<AtomicI64>> =
        Arc::new((0..PARTITIONS).map(|_| AtomicI64::new(0)).collect());
    let mut producers = Vec::new();
    for w in 0..WRITERS {
        let (addrs, history, stop) = (addrs.to_vec(), history.clone(), stop_producing.clone());
        producers.push(std::thread::spawn(move || produce(w, &addrs, &history, &stop, seed)));
    }
    let mut consumers = Vec::new();
    for p in 0..PARTITIONS {
        let (addrs, history, stop) = (addrs.to_vec(), history.clone(), stop_consuming.clone());
        let consumed = consumed.clone();
        consumers.push(std::thread::spawn(move || {
            consume(p, &addrs, &history, &stop, &consumed[p as usize])
        }));
    }
    Workload { history, stop_producing, stop_consuming, consumed, producers, consumers }
}

/// One idempotent acks=all producer: batches of 1-4 records round-robin over the partitions,
/// each retried unchanged until acknowledged; after `stop`, the batch in hand for DRAIN_LIMIT.
fn produce(w: u32, addrs: &[String], history: &History, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed ^ (0x5eed + w as u64));
    let client = ClusterClient::new(addrs, TOPIC, &format!("w{w}"));
    let mut producer = match IdempotentProducer::new(client, Duration::from_secs(60)) {
        Ok(p) => p,
        Err(e) => {
            history.push(Op::Unexpected {
                who: format!("w{w}"),
                partition: -1,
                error: format!("InitProducerId: {e}"),
            });
            return;
        }
    };
    let mut seqs = [0u64; PARTITIONS as usize];
    let mut p = w as i32 % PARTITIONS;
    while !stop.load(Ordering::Relaxed) {
        let n = 1 + rng.below(4);
        let first = seqs[p as usize];
        let values: Vec<String> = (first..first + n).map(|s| value(w, p, s)).collect();
        let batch = producer.batch(p, &values);
        let mut stopped_at: Option<Instant> = None;
        loop {
            match producer.attempt(p, &batch) {
                Attempt::Acked(base_offset) => {
                    history.push(Op::Ack {
                        writer: w,
                        partition: p,
                        base_offset,
                        values: values.clone(),
                    });
                    producer.acked(p, values.len());
                    seqs[p as usize] += n;
                    break;
                }
                Attempt::Retriable(e) => {
                    history.push(Op::SendFailed {
                        writer: w,
                        partition: p,
                        first: values[0].clone(),
                        error: e.to_string(),
                    });
                    if stop.load(Ordering::Relaxed) {
                        let since = *stopped_at.get_or_insert_with(Instant::now);
                        if since.elapsed() > DRAIN_LIMIT {
                            history.push(Op::Abandoned { writer: w, partition: p, values });
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Attempt::Fatal(e) => {
                    history.push(Op::Unexpected {
                        who: format!("w{w}"),
                        partition: p,
                        error: e.to_string(),
                    });
                    history.push(Op::Abandoned { writer: w, partition: p, values });
                    return;
                }
            }
        }
        p = (p + 1) % PARTITIONS;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One consumer of one partition: fetches from the leader (with its epoch) from where it is,
/// recording every record it is given.
fn consume(p: i32, addrs: &[String], history: &History, stop: &AtomicBool, next: &AtomicI64) {
    let mut client = ClusterClient::new(addrs, TOPIC, &format!("r{p}"));
    let mut offset = 0i64;
    while !stop.load(Ordering::Relaxed) {
        if client.leader(p).is_none() {
            let _ = client.refresh();
        }
        match client.fetch(p, offset, 300) {
            Ok(f) => {
                for (o, v) in f.records {
                    history.push(Op::Read { reader: p as u32, partition: p, offset: o, value: v });
                    offset = o + 1;
                }
                next.store(offset, Ordering::Relaxed);
            }
            Err(_) => {
                let _ = client.refresh();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillFollower,
    Pause,
    Cut(Cut),
}

/// The leader of partition `p` as the brokers that answer say, the highest epoch winning:
/// (leader id, epoch, replicas).
fn current_leader(client: &mut ClusterClient, p: i32) -> Option<(i32, i32, Vec<i32>)> {
    client
        .metadata_everywhere()
        .into_iter()
        .filter_map(|m| m.partitions.get(&p).cloned())
        .filter(|m| m.leader >= 0)
        .max_by_key(|m| m.leader_epoch)
        .map(|m| (m.leader, m.leader_epoch, m.replicas))
}

/// The whole run: a cluster (in `lab` when there is one), the topic, the workload, the nemesis,
/// then the final reads and the checker.
fn run(cluster: &mut TestCluster, lab: Option<&NetLab>, seed: u64, iterations: u64) {
    let started = Instant::now();
    let addrs = cluster.kafka_addrs();
    let mut admin = ClusterClient::new(&addrs, TOPIC, "nemesis");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match admin.create_topic(PARTITIONS, 3) {
            Ok(NONE | TOPIC_ALREADY_EXISTS) => break,
            other => assert!(Instant::now() < deadline, "CreateTopics with 3 replicas: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    admin.wait_healthy(PARTITIONS, 3, Duration::from_secs(120)).unwrap();

    let history = Arc::new(History::new());
    let work = start_workload(&addrs, history.clone(), seed);
    let mut rng = Rng(seed);
    let mut kinds = vec![Fault::KillLeader, Fault::KillFollower, Fault::Pause];
    if lab.is_some() {
        kinds.extend([Fault::Cut(Cut::Full), Fault::Cut(Cut::FromPeers)]);
    }
    std::thread::sleep(Duration::from_secs(1));
    for it in 0..iterations {
        let fault = kinds[rng.below(kinds.len() as u64) as usize];
        let p = rng.below(PARTITIONS as u64) as i32;
        let Some((leader, epoch, replicas)) = current_leader(&mut admin, p) else {
            panic!("no broker names a leader for p{p}; {}", cluster.logs_tail(40));
        };
        let target = match fault {
            Fault::KillFollower => {
                let followers: Vec<i32> =
                    replicas.iter().copied().filter(|&r| r != leader).collect();
                followers[rng.below(followers.len() as u64) as usize]
            }
            Fault::Pause | Fault::Cut(_) if rng.below(2) == 0 => {
                1 + rng.below(cluster.nodes.len() as u64) as i32
            }
            _ => leader,
        };
        let i = cluster.index(target);
        let hold = match fault {
            Fault::KillLeader | Fault::KillFollower => rng.millis(300, 3000),
            Fault::Pause => rng.millis(1000, 5000),
            Fault::Cut(_) => rng.millis(2000, 6000),
        };
        let what = format!(
            "#{it}: {fault:?} broker {target} for {} ms (p{p} leader {leader}, epoch {epoch})",
            hold.as_millis()
        );
        println!("nemesis {what}");
        history.push(Op::Nemesis(format!("start {what}")));
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                cluster.kill(i);
                std::thread::sleep(hold);
                cluster.restart(i);
            }
            Fault::Pause => {
                cluster.pause(i);
                std::thread::sleep(hold);
                cluster.resume(i);
            }
            Fault::Cut(how) => {
                let lab = lab.expect("cuts only with a lab");
                lab.cut(i + 1, how).unwrap();
                std::thread::sleep(hold);
                lab.heal(i + 1).unwrap();
            }
        }
        let healed = history.now_ms();
        history.push(Op::Nemesis(format!("healed #{it}")));
        // Producing resumes on every partition once the fault is healed.
        let resume_deadline = Instant::now() + RESUME_LIMIT;
        loop {
            let acks = history.acks_since(healed);
            if (0..PARTITIONS).all(|p| acks.get(&p).copied().unwrap_or(0) > 0) {
                println!(
                    "nemesis #{it}: every partition acknowledged again {} ms after healing",
                    history.now_ms() - healed
                );
                break;
            }
            if Instant::now() > resume_deadline {
                history.push(Op::Nemesis(format!("no resume after #{it}")));
                let tail: Vec<String> =
                    history.events().iter().rev().take(60).map(|e| format!("{e:?}")).collect();
                panic!(
                    "producing did not resume on every partition within {RESUME_LIMIT:?} after {what} healed \
                     (acks since: {acks:?}); seed {seed}; last events (newest first):\n{}\n{}",
                    tail.join("\n"),
                    cluster.logs_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for j in 0..cluster.nodes.len() {
            assert!(
                cluster.alive(j),
                "broker {} died on its own after {what}:\n{}",
                j + 1,
                cluster.log_tail(j, 80)
            );
        }
        // Let the restarted broker catch up before the next fault (not asserted here).
        let _ = admin.wait_healthy(PARTITIONS, 3, Duration::from_secs(20));
        std::thread::sleep(rng.millis(200, 1000));
    }

    // Stop producing (each producer retries its last batch until acknowledged), then every
    // killed broker is back: each must rejoin the ISR of every partition.
    work.stop_producing.store(true, Ordering::Relaxed);
    for h in work.producers {
        h.join().expect("a producer thread panicked");
    }
    if let Err(e) = admin.wait_healthy(PARTITIONS, 3, Duration::from_secs(120)) {
        panic!(
            "after the faults, not every broker rejoined the ISR: {e}\n{}",
            cluster.logs_tail(60)
        );
    }
    let mut finals = BTreeMap::new();
    for p in 0..PARTITIONS {
        let log = admin
            .read_all(p, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("final read: {e}"));
        finals.insert(p, log);
    }
    // The consumers catch up to the end too (bounded), so their reads cover the whole run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && (0..PARTITIONS)
            .any(|p| work.consumed[p as usize].load(Ordering::Relaxed) < finals[&p].len() as i64)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    work.stop_consuming.store(true, Ordering::Relaxed);
    for h in work.consumers {
        h.join().expect("a consumer thread panicked");
    }

    let events = work.history.events();
    let history_file = std::env::temp_dir().join(format!("minikafka-cluster-history-{seed}.txt"));
    match checker::check(&events, &finals) {
        Ok(s) => println!(
            "seed {seed}: {iterations} faults in {:.1} s; {} records acknowledged, {} stored but never \
             acknowledged, {} reads, {} records in the final logs: no acknowledged record lost, \
             duplicated or reordered",
            started.elapsed().as_secs_f64(),
            s.acked,
            s.unacked_but_stored,
            s.reads,
            s.final_records
        ),
        Err(report) => {
            let all: Vec<String> =
                events.iter().map(|e| format!("{:>7} ms  {:?}", e.at_ms, e.op)).collect();
            let _ = std::fs::write(&history_file, all.join("\n"));
            panic!(
                "seed {seed} (replay: MINIKAFKA_CLUSTER_SEED={seed}): {report}\nthe whole history: {}",
                history_file.display()
            );
        }
    }
    for j in 0..cluster.nodes.len() {
        assert!(
            !cluster.log(j).contains("panicked"),
            "broker {} panicked:\n{}",
            j + 1,
            cluster.log_tail(j, 80)
        );
    }
}

#[test]
fn nemesis_never_loses_an_acknowledged_record() {
    let seed = env_u64("MINIKAFKA_CLUSTER_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let iterations = env_u64("MINIKAFKA_CLUSTER_ITERATIONS").unwrap_or(20);
    println!(
        "cluster nemesis: seed {seed} (replay with MINIKAFKA_CLUSTER_SEED={seed}), {iterations} faults"
    );
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--broker-session-timeout-ms", "2000"];
    // Real network partitions when this machine allows them; kills and pauses either way.
    let lab = match NetLab::unavailable() {
        Some(why) => {
            println!("network partitions skipped: {why}; SIGKILL and SIGSTOP only, on loopback");
            None
        }
        None => match NetLab::create(3) {
            Ok(lab) => Some(lab),
            Err(e) => {
                println!("network partitions skipped: the namespace lab failed: {e}; on loopback");
                None
            }
        },
    };
    match &lab {
        Some(lab) => {
            println!(
                "brokers in network namespaces {}..{} (10.213.1.1-3)",
                lab.node_ns(1),
                lab.node_ns(3)
            );
            // The test's own threads (clients, nemesis) live in the lab's client namespace.
            let (client_ns, dir_path) = (lab.client_ns(), dir.path().to_path_buf());
            std::thread::scope(|s| {
                s.spawn(|| {
                    common::netns::enter(&client_ns).unwrap();
                    let mut cluster = TestCluster::start_in(lab, &dir_path, 3, &flags);
                    run(&mut cluster, Some(lab), seed, iterations);
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            });
        }
        None => {
            let mut cluster = TestCluster::start(dir.path(), 3, &flags);
            run(&mut cluster, None, seed, iterations);
        }
    }
}
