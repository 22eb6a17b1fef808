//! `minikafka cluster status`, `topic create --replication-factor`, `topic describe`'s
//! leadership columns and the comma-separated `--broker` list, against a single broker: a
//! cluster of one, which leads every partition itself (broker 0); and the same commands against
//! three brokers, through a leader's failure, and `topic alter` and `topic add-partitions`
//! changing the topic on all three.

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{BrokerProcess, fails, ok, run_cli, stderr, stdout};

#[test]
fn a_single_broker_is_a_healthy_cluster_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let addr = &broker.addr;
    let w = addr.len().max("ADDRESS".len());
    assert_eq!(
        ok(broker.cli(&["cluster", "status"])),
        format!(
            "BROKER    {:<w$}  KAFKA-ADDRESS  STATE  ROLE\n\
             0 (this)  {:<w$}  -              alive  controller\n\
             \n\
             controller: 0\n\
             under-replicated partitions: none\n\
             offline partitions: none\n",
            "ADDRESS", addr
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(broker.cli(&["cluster", "status", "--json"]))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "node_id": 0,
            "clustered": false,
            "controller": 0,
            "brokers": [{"id": 0, "native_addr": addr, "kafka_addr": null, "fenced": false}],
            "under_replicated": [],
            "offline": [],
            "voters": [0],
            "decommissioned": [],
        })
    );
}

#[test]
fn topics_show_their_leader_replicas_and_isr() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    assert_eq!(
        ok(broker.cli(&["topic", "create", "t", "--partitions", "2", "--replication-factor", "1"])),
        "created topic t with 2 partitions\n"
    );
    let table = ok(broker.cli(&["topic", "describe", "t"]));
    let rows: Vec<Vec<&str>> =
        table.lines().skip(3).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows.iter().map(|r| r[r.len() - 3..].to_vec()).collect::<Vec<_>>(),
        vec![vec!["LEADER", "REPLICAS", "ISR"], vec!["0", "[0]", "[0]"], vec!["0", "[0]", "[0]"]],
        "{table}"
    );
    let d: serde_json::Value =
        serde_json::from_str(&ok(broker.cli(&["topic", "describe", "t", "--json"]))).unwrap();
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["leader"], 0, "{d}");
        assert_eq!(p["leader_epoch"], 0, "{d}");
        assert_eq!(p["replicas"], serde_json::json!([0]), "{d}");
        assert_eq!(p["isr"], serde_json::json!([0]), "{d}");
    }

    // One broker cannot hold three copies: refused, nothing created.
    let err = fails(broker.cli(&["topic", "create", "u", "--replication-factor", "3"]));
    assert!(err.contains("replication factor 3"), "{err}");
    assert_eq!(ok(broker.cli(&["topic", "list"])), "t\n");
    let err = fails(broker.cli(&["topic", "create", "u", "--replication-factor", "0"]));
    assert!(err.contains("--replication-factor must be at least 1"), "{err}");
}

#[test]
fn a_broker_list_bootstraps_from_the_first_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    // Nothing listens on a port just released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let list = format!("{dead},{}", broker.addr);
    ok(run_cli(&list, &["topic", "create", "orders"], None));
    ok(run_cli(&list, &["produce", "orders", "a", "b"], None));
    assert_eq!(ok(run_cli(&list, &["consume", "orders", "--from-beginning"], None)), "a\nb\n");
    // Given only dead brokers, the error names one.
    let err = fails(run_cli(&format!("{dead}"), &["topic", "list"], None));
    assert!(err.contains(&dead.to_string()), "{err}");
}

#[test]
fn completions_know_the_cluster_command() {
    let out = run_cli("127.0.0.1:1", &["completions", "bash"], None);
    let script = ok(out);
    assert!(script.contains("cluster"), "no cluster command in the bash completions");
    assert!(script.contains("--replication-factor"), "no --replication-factor flag");
}

/// `cluster status --json` from `addr`, once it answers.
fn status(addr: &str) -> Option<serde_json::Value> {
    let out = run_cli(addr, &["cluster", "status", "--json"], None);
    out.status.success().then(|| serde_json::from_str(&stdout(&out)).ok()).flatten()
}

/// Runs a CLI command until it succeeds (a controller or a leader is being elected), for at
/// most `limit`; returns its stdout.
#[track_caller]
fn ok_within(cluster: &TestCluster, addr: &str, args: &[&str], limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = run_cli(addr, args, None);
        if out.status.success() {
            return stdout(&out);
        }
        assert!(
            start.elapsed() < limit,
            "{args:?} still fails after {limit:?}: {}\n{}",
            stderr(&out),
            cluster.logs_tail(60)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until `addr` sees three live brokers and no partition under-replicated or offline.
#[track_caller]
fn wait_healthy(cluster: &TestCluster, addr: &str, brokers: usize) {
    let start = Instant::now();
    loop {
        if let Some(s) = status(addr) {
            let live = s["brokers"].as_array().map_or(0, |b| {
                b.iter().filter(|b| b["fenced"] == false && b["native_addr"].is_string()).count()
            });
            let healthy = s["clustered"] == true
                && s["controller"].is_i64()
                && live == brokers
                && s["under_replicated"] == serde_json::json!([])
                && s["offline"] == serde_json::json!([]);
            if healthy {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the cluster is not healthy after 120 s: {:?}\n{}",
            status(addr),
            cluster.logs_tail(60)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A CLI producer writing `prefix-NNNNN` records to a topic, one `produce` at a time, until
/// stopped; it keeps the records that were acknowledged.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(brokers: &str, topic: &str, prefix: &str) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, brokers, topic, prefix) =
            (stop.clone(), brokers.to_string(), topic.to_string(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let v = format!("{prefix}-{i:05}");
                if run_cli(&brokers, &["produce", &topic, &v], None).status.success() {
                    acked.push(v);
                }
                i += 1;
            }
            acked
        });
        Writer { stop, thread }
    }

    /// Stops it; the acknowledged records.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the writer thread")
    }
}

/// Asserts every acknowledged record is in `topic`, read from the beginning through `brokers`
/// (a produce retried after a timeout may have landed twice; nothing acknowledged is missing).
#[track_caller]
fn assert_all_read(brokers: &str, topic: &str, acked: &[String]) {
    assert!(!acked.is_empty(), "nothing was acknowledged");
    let mut read =
        sorted_lines(&ok(run_cli(brokers, &["consume", topic, "--from-beginning"], None)));
    read.dedup();
    for v in acked {
        assert!(read.binary_search(v).is_ok(), "{v} was acknowledged but is not in the log");
    }
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Three brokers: any one of them, given alone, creates a replicated topic, takes records for
/// partitions other brokers lead and reads back everything; the leader of a partition dies, and
/// the CLI goes on with the others, losing nothing acknowledged. (In-sync followers learn the
/// high watermark as it moves, so the new leader starts from what was acknowledged and a
/// `consume` right after the failover reads all of it.)
#[test]
fn the_cli_follows_partition_leaders_across_three_brokers_and_a_leader_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    let all = cluster.native_addrs();
    let one: Vec<String> = all.split(',').map(str::to_string).collect();
    wait_healthy(&cluster, &all, 3);

    let s = status(&one[1]).unwrap();
    assert_eq!(s["node_id"], 2, "each broker answers as itself: {s}");
    let listed: Vec<_> = s["brokers"].as_array().unwrap().iter().map(|b| b["id"].clone()).collect();
    assert_eq!(listed, [1, 2, 3], "{s}");

    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "orders", "--partitions", "3", "--replication-factor", "3"];
    ok_within(&cluster, &one[0], &create, limit);
    wait_healthy(&cluster, &all, 3);
    let d: serde_json::Value = serde_json::from_str(&ok(run_cli(
        &one[2],
        &["topic", "describe", "orders", "--json"],
        None,
    )))
    .unwrap();
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["replicas"].as_array().unwrap().len(), 3, "{d}");
        assert_eq!(p["isr"].as_array().unwrap().len(), 3, "{d}");
    }

    // Given one broker only, records for every partition reach their leaders.
    let first: Vec<String> = (0..30).map(|i| format!("before-{i:02}")).collect();
    let args: Vec<&str> =
        ["produce", "orders"].into_iter().chain(first.iter().map(String::as_str)).collect();
    ok(run_cli(&one[0], &args, None));
    for addr in &one {
        let read = ok(run_cli(addr, &["consume", "orders", "--from-beginning"], None));
        assert_eq!(sorted_lines(&read), first, "read through broker {addr}");
    }

    // Partition 0's leader dies; a new one is elected from the in-sync replicas.
    let leader = d["partitions"][0]["leader"].as_i64().expect("partition 0 has a leader") as i32;
    let dead = cluster.index(leader);
    cluster.kill(dead);
    let live = one.iter().enumerate().filter(|(i, _)| *i != dead).map(|(_, a)| a.clone());
    let live: Vec<String> = live.collect();
    let after: Vec<String> = (0..30).map(|i| format!("after-{i:02}")).collect();
    let args: Vec<&str> =
        ["produce", "orders"].into_iter().chain(after.iter().map(String::as_str)).collect();
    ok_within(&cluster, &all, &args, limit);
    let mut everything = first.clone();
    everything.extend(after.iter().cloned());
    everything.sort();
    for addr in &live {
        let read = ok(run_cli(addr, &["consume", "orders", "--from-beginning"], None));
        let read = sorted_lines(&read);
        // A produce retried after a timeout may have landed twice; nothing may be missing.
        let mut unique = read.clone();
        unique.dedup();
        assert_eq!(unique, everything, "read through broker {addr}\n{}", cluster.logs_tail(60));
    }

    // The dead broker comes back, catches up and rejoins every ISR.
    cluster.restart(dead);
    wait_healthy(&cluster, &all, 3);
}

/// A fourth broker, not a controller, joins a running cluster as a learner of the metadata:
/// `cluster status` lists it alive, new topics place replicas on it, it leads some partitions,
/// and what is produced through it is read back through the others.
#[test]
fn a_broker_outside_the_controllers_joins_as_a_learner_and_takes_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    wait_healthy(&cluster, &cluster.native_addrs(), 3);
    let fourth = cluster.add_broker(dir.path());
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 4);
    let learner = cluster.nodes[fourth].native_addr.clone();
    let s = status(&learner).unwrap();
    assert_eq!(s["node_id"], 4, "{s}");

    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "wide", "--partitions", "4", "--replication-factor", "3"];
    ok_within(&cluster, &learner, &create, limit);
    wait_healthy(&cluster, &all, 4);
    let d: serde_json::Value = serde_json::from_str(&ok(run_cli(
        &learner,
        &["topic", "describe", "wide", "--json"],
        None,
    )))
    .unwrap();
    let parts = d["partitions"].as_array().unwrap();
    let on_fourth = parts.iter().filter(|p| p["replicas"].as_array().unwrap().contains(&4.into()));
    assert_eq!(on_fourth.count(), 3, "4 partitions x 3 replicas over 4 brokers: {d}");
    assert!(parts.iter().any(|p| p["leader"] == 4), "the learner leads a partition: {d}");

    let values: Vec<String> = (0..40).map(|i| format!("v-{i:02}")).collect();
    let args: Vec<&str> =
        ["produce", "wide"].into_iter().chain(values.iter().map(String::as_str)).collect();
    ok_within(&cluster, &learner, &args, limit);
    let first = all.split(',').next().unwrap().to_string();
    let read = ok(run_cli(&first, &["consume", "wide", "--from-beginning"], None));
    // A produce retried after a timeout may have landed twice; nothing may be missing.
    let mut read = sorted_lines(&read);
    read.dedup();
    assert_eq!(read, values, "read through broker 1");
}

/// Consumer groups belong to the cluster, not to the broker asked: a group's position committed
/// by `consume --group` through one broker is listed, described and reset through the others,
/// survives the loss of a broker, and is deleted through any of them.
#[test]
fn a_groups_offsets_are_the_clusters_through_any_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    let all = cluster.native_addrs();
    let one: Vec<String> = all.split(',').map(str::to_string).collect();
    wait_healthy(&cluster, &all, 3);
    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "events", "--partitions", "2", "--replication-factor", "3"];
    ok_within(&cluster, &one[0], &create, limit);
    wait_healthy(&cluster, &all, 3);
    let records: Vec<String> = (0..10).map(|i| format!("event-{i:02}")).collect();
    let args: Vec<&str> =
        ["produce", "events"].into_iter().chain(records.iter().map(String::as_str)).collect();
    ok(run_cli(&all, &args, None));

    // A reader in group "readers" reads everything through broker 1 and commits as it goes.
    let read = ok(run_cli(&one[0], &["consume", "events", "--group", "readers"], None));
    assert_eq!(sorted_lines(&read), records);

    // Brokers 2 and 3 know the group and its position: nothing left to read.
    let describe = |addr: &str| -> serde_json::Value {
        let out = ok(run_cli(addr, &["group", "describe", "readers", "--json"], None));
        serde_json::from_str(&out).unwrap()
    };
    for addr in &one[1..] {
        let list = ok(run_cli(addr, &["group", "list"], None));
        assert!(list.contains("readers"), "group list through {addr}:\n{list}");
        let d = describe(addr);
        let committed: u64 = d["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["committed_offset"].as_u64().unwrap())
            .sum();
        assert_eq!(committed, 10, "through {addr}: {d}");
        assert_eq!(d["total_lag"], 0, "through {addr}: {d}");
    }
    let again = ok(run_cli(&one[2], &["consume", "events", "--group", "readers"], None));
    assert_eq!(again, "", "the group's position is the cluster's");

    // Reset to the start through broker 2; broker 1 dies; the group reads it all again.
    let reset =
        ["group", "reset-offsets", "readers", "--topic", "events", "--to-earliest", "--execute"];
    ok(run_cli(&one[1], &reset, None));
    cluster.kill(0);
    let live = format!("{},{}", one[1], one[2]);
    let read = ok_within(&cluster, &live, &["consume", "events", "--group", "readers"], limit);
    assert_eq!(sorted_lines(&read), records, "after the reset and a broker's loss");
    assert_eq!(describe(&one[2])["total_lag"], 0);

    // Deleted through broker 3, it is gone through broker 2 too.
    ok(run_cli(&one[2], &["group", "delete", "readers"], None));
    let list = ok(run_cli(&one[1], &["group", "list"], None));
    assert!(!list.contains("readers"), "deleted, yet listed:\n{list}");
    let out = run_cli(&one[1], &["group", "describe", "readers"], None);
    assert!(!out.status.success(), "a deleted group is not described: {}", stdout(&out));
}

/// Partition `p` of `topic` as `topic describe --json` through `addr` shows it: (leader,
/// preferred replica, in-sync replica count).
fn leadership(addr: &str, topic: &str, p: usize) -> Option<(i64, i64, usize)> {
    let out = run_cli(addr, &["topic", "describe", topic, "--json"], None);
    let d: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
    let part = &d["partitions"][p];
    Some((part["leader"].as_i64()?, part["replicas"][0].as_i64()?, part["isr"].as_array()?.len()))
}

/// Kills the leader of `topic`'s partition 0 (its preferred replica), waits for another to
/// lead it, restarts the killed broker and waits for it to be in sync again. Returns the
/// preferred replica's id.
fn fail_over_and_back(cluster: &mut TestCluster, all: &str, topic: &str) -> i64 {
    let limit = Duration::from_secs(120);
    let create = ["topic", "create", topic, "--partitions", "3", "--replication-factor", "3"];
    ok_within(cluster, all, &create, limit);
    wait_healthy(cluster, all, 3);
    let (leader, preferred, _) = leadership(all, topic, 0).expect("partition 0 is described");
    assert_eq!(leader, preferred, "a new topic is led by its preferred replicas");
    let i = cluster.index(preferred as i32);
    cluster.kill(i);
    let start = Instant::now();
    while leadership(all, topic, 0).is_none_or(|(l, _, _)| l == preferred) {
        assert!(start.elapsed() < limit, "no failover\n{}", cluster.logs_tail(40));
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster.restart(i);
    wait_healthy(cluster, all, 3);
    preferred
}

/// With the automatic check off, leadership stays where failover put it until an operator
/// runs `cluster elect-leaders`, which moves it back to the returned preferred replica.
#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let dir = tempfile::tempdir().unwrap();
    let flags =
        ["--broker-session-timeout-ms", "2000", "--leader-imbalance-check-interval-ms", "0"];
    let mut cluster = TestCluster::start(dir.path(), 3, &flags);
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 3);
    let preferred = fail_over_and_back(&mut cluster, &all, "ledger");
    std::thread::sleep(Duration::from_secs(2));
    let (leader, _, _) = leadership(&all, "ledger", 0).unwrap();
    assert_ne!(leader, preferred, "nothing moves leadership back on its own");

    let out = ok(run_cli(&all, &["cluster", "elect-leaders", "--json"], None));
    let elections: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p0 = elections
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["topic"] == "ledger" && e["partition"] == 0)
        .unwrap_or_else(|| panic!("partition 0 was not elected: {out}"));
    assert_eq!(p0["elected"], true, "{out}");
    assert_eq!(p0["leader"], preferred, "{out}");
    let (leader, _, isr) = leadership(&all, "ledger", 0).unwrap();
    assert_eq!((leader, isr), (preferred, 3));
    let again = ok(run_cli(&all, &["cluster", "elect-leaders", "--topic", "ledger"], None));
    assert_eq!(again, "every partition is led by its preferred replica\n");
    // What was produced is still all there, through the preferred leaders.
    ok(run_cli(&all, &["produce", "ledger", "after-election"], None));
    let read = ok(run_cli(&all, &["consume", "ledger", "--from-beginning"], None));
    assert_eq!(read, "after-election\n");
}

/// By default the brokers move leadership back on their own once the preferred replica is in
/// sync again (here checked every second).
#[test]
fn leadership_returns_to_a_restarted_preferred_replica_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let flags =
        ["--broker-session-timeout-ms", "2000", "--leader-imbalance-check-interval-ms", "1000"];
    let mut cluster = TestCluster::start(dir.path(), 3, &flags);
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 3);
    let preferred = fail_over_and_back(&mut cluster, &all, "ledger");
    let start = Instant::now();
    while leadership(&all, "ledger", 0).is_none_or(|(l, _, _)| l != preferred) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "leadership did not return to broker {preferred}\n{}",
            cluster.logs_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `topic alter` and `topic add-partitions` given the three brokers change the topic on every
/// one of them: each broker, asked alone, describes the new configs and partitions, every new
/// partition replicated on all three.
#[test]
fn topic_alter_and_add_partitions_change_every_broker_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    let all = cluster.native_addrs();
    let one: Vec<String> = all.split(',').map(str::to_string).collect();
    wait_healthy(&cluster, &all, 3);

    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "events", "--partitions", "1", "--replication-factor", "3"];
    ok_within(&cluster, &all, &create, limit);
    let alter = ["topic", "alter", "events", "--config", "retention.ms=60000"];
    assert_eq!(
        ok_within(&cluster, &all, &alter, limit),
        "altered topic events: set retention.ms=60000\n"
    );
    let grow = ["topic", "add-partitions", "events", "--partitions", "3"];
    assert_eq!(
        ok_within(&cluster, &all, &grow, limit),
        "topic events now has 3 partitions (was 1)\n"
    );

    let start = Instant::now();
    for addr in &one {
        loop {
            let out = run_cli(addr, &["topic", "describe", "events", "--json"], None);
            let d: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
            let parts = d["partitions"].as_array().cloned().unwrap_or_default();
            let converged = d["configs"] == serde_json::json!({"retention.ms": "60000"})
                && parts.len() == 3
                && parts.iter().all(|p| p["replicas"].as_array().is_some_and(|r| r.len() == 3));
            if converged {
                break;
            }
            assert!(
                start.elapsed() < limit,
                "broker {addr} still describes {d}\n{}",
                cluster.logs_tail(40)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Three brokers and a fourth that joined, all healthy, and `topic` with one partition on three
/// of them; the cluster and every broker's address.
fn four_brokers_and_a_topic(dir: &std::path::Path, topic: &str) -> (TestCluster, String) {
    let mut cluster = TestCluster::start(dir, 3, &["--fsync", "never"]);
    wait_healthy(&cluster, &cluster.native_addrs(), 3);
    cluster.add_broker(dir);
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 4);
    let create = ["topic", "create", topic, "--partitions", "1", "--replication-factor", "3"];
    ok_within(&cluster, &all, &create, Duration::from_secs(120));
    wait_healthy(&cluster, &all, 4);
    (cluster, all)
}

/// Partition 0 of `topic` as `topic describe --json` gives it: its replicas, its leader, and
/// the broker of 1-4 that holds no replica of it (the one a move brings in).
fn partition_zero(all: &str, topic: &str) -> (Vec<i64>, i64, i64) {
    let d: serde_json::Value =
        serde_json::from_str(&ok(run_cli(all, &["topic", "describe", topic, "--json"], None)))
            .unwrap();
    let p = &d["partitions"][0];
    let replicas: Vec<i64> =
        p["replicas"].as_array().unwrap().iter().filter_map(|r| r.as_i64()).collect();
    let leader = p["leader"].as_i64().expect("partition 0 has a leader");
    let newcomer = (1..=4).find(|b| !replicas.contains(b)).expect("a broker without a replica");
    (replicas, leader, newcomer)
}

/// The target that drops the leader and puts the newcomer first (it leads once in sync).
fn leader_replaced_by(newcomer: i64, replicas: &[i64], leader: i64) -> Vec<i64> {
    std::iter::once(newcomer).chain(replicas.iter().copied().filter(|&r| r != leader)).collect()
}

/// A partition moves to the broker that does not hold it while a producer keeps writing: the
/// newcomer copies it, joins the in-sync replicas, the dropped broker (its leader) hands over
/// to it, and every acknowledged record is read back through the newcomer, now the leader.
#[test]
fn a_partition_moves_to_another_broker_while_records_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, all) = four_brokers_and_a_topic(dir.path(), "moving");
    let limit = Duration::from_secs(120);
    let describe = || -> serde_json::Value {
        serde_json::from_str(&ok(run_cli(&all, &["topic", "describe", "moving", "--json"], None)))
            .unwrap()
    };
    let (replicas, leader, newcomer) = partition_zero(&all, "moving");
    let target = leader_replaced_by(newcomer, &replicas, leader);
    let before: Vec<String> = (0..200).map(|i| format!("before-{i:03}")).collect();
    let args: Vec<&str> =
        ["produce", "moving"].into_iter().chain(before.iter().map(String::as_str)).collect();
    ok(run_cli(&all, &args, None));

    // A producer keeps going through the move.
    let writer = Writer::start(&all, "moving", "during");
    let list: Vec<String> = target.iter().map(i64::to_string).collect();
    let moved = ok(run_cli(
        &all,
        &["topic", "reassign", "moving", "--partition", "0", "--replicas", &list.join(",")],
        None,
    ));
    assert!(moved.contains("moving moving-0 to"), "{moved}");
    let start = Instant::now();
    loop {
        let p = describe()["partitions"][0].clone();
        let now: Vec<i64> =
            p["replicas"].as_array().unwrap().iter().filter_map(|r| r.as_i64()).collect();
        if now == target && p["isr"].as_array().unwrap().len() == 3 && p["leader"] == newcomer {
            break;
        }
        assert!(start.elapsed() < limit, "the move did not finish: {p}\n{}", cluster.logs_tail(40));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = writer.stop();
    assert!(!during.is_empty(), "the producer got nothing acknowledged during the move");
    assert_eq!(ok(run_cli(&all, &["topic", "reassignments"], None)), "no reassignment under way\n");

    // Everything acknowledged is there, read through the newcomer, which leads now.
    let newcomer_addr = cluster.nodes[cluster.index(newcomer as i32)].native_addr.clone();
    let want: Vec<String> = before.iter().chain(&during).cloned().collect();
    assert_all_read(&newcomer_addr, "moving", &want);
    // The dropped replica's records leave its broker's disk, as Kafka deletes such a replica.
    let dropped = cluster.index(leader as i32);
    let start = Instant::now();
    while !cluster.log(dropped).contains("not a replica here any more: records discarded") {
        assert!(start.elapsed() < limit, "{}", cluster.log_tail(dropped, 40));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A bad target is refused with the reason, and changes nothing.
    let out = run_cli(
        &all,
        &["topic", "reassign", "moving", "--partition", "0", "--replicas", "4,9"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broker 9 is not in the cluster"), "{}", stderr(&out));
}

/// An operator moves a partition onto a new broker under a throttle of 1 MB/s: while the
/// newcomer copies the 4 MB already there, `topic reassignments --json` shows the throttle, a
/// producer keeps going, the move finishes, every record is read back through the new replica
/// set, and the throttle is gone with the move.
#[test]
fn a_throttled_move_copies_at_its_rate_and_the_throttle_goes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, all) = four_brokers_and_a_topic(dir.path(), "slow");
    let limit = Duration::from_secs(120);
    // 4,000 records of 1,000 bytes: 4 MB to copy.
    let bulk: Vec<String> = (0..4000).map(|i| format!("bulk-{i:05}-{}", "x".repeat(989))).collect();
    let mut input = bulk.join("\n");
    input.push('\n');
    ok(run_cli(&all, &["produce", "slow"], Some(input.as_bytes())));
    let (replicas, leader, newcomer) = partition_zero(&all, "slow");
    let target = leader_replaced_by(newcomer, &replicas, leader);
    let list: Vec<String> = target.iter().map(i64::to_string).collect();

    let writer = Writer::start(&all, "slow", "during");
    let started = Instant::now();
    let moved = ok(run_cli(
        &all,
        &[
            "topic",
            "reassign",
            "slow",
            "--partition",
            "0",
            "--replicas",
            &list.join(","),
            "--throttle-mb-per-s",
            "1",
        ],
        None,
    ));
    assert!(moved.contains("throttled to 1 MB/s per broker"), "{moved}");

    // While it copies, the moves listed carry the throttle and, once the newcomer has fetched,
    // what it still has to copy, in records and bytes of the leader's log (every broker applies
    // the throttle once it has the metadata, so ask until the one answering has).
    let under_way = loop {
        let out = ok(run_cli(&all, &["topic", "reassignments", "--json"], None));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["reassignments"][0]["behind"].as_array().is_some_and(|l| !l.is_empty()) {
            break v;
        }
        assert!(started.elapsed() < limit, "the move never showed its progress: {out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(under_way["throttle_bytes_per_s"], 1_000_000, "{under_way}");
    assert_eq!(under_way["reassignments"][0]["topic"], "slow", "{under_way}");
    assert_eq!(under_way["reassignments"][0]["adding"], serde_json::json!([newcomer]));
    let behind = &under_way["reassignments"][0]["behind"][0];
    assert_eq!(behind["replica"], newcomer, "{under_way}");
    let (bytes, log_bytes) =
        (behind["bytes"].as_u64().unwrap(), behind["log_bytes"].as_u64().unwrap());
    assert!(log_bytes >= 4_000_000, "the leader holds the 4 MB of bulk: {under_way}");
    assert!(bytes <= log_bytes && behind["records"].as_u64().unwrap() > 0, "{under_way}");
    let text = ok(run_cli(&all, &["topic", "reassignments"], None));
    assert!(text.contains("throttle: 1 MB/s per broker"), "{text}");
    assert!(
        text.contains(&format!("broker {newcomer}: ")) && text.contains("% copied, "),
        "progress in bytes: {text}"
    );
    // The operator raises the throttle of the move under way (still slow enough to take
    // seconds: 4 MB at 2 MB/s at most).
    let raised = ok(run_cli(&all, &["topic", "reassign", "--throttle-mb-per-s", "2"], None));
    assert_eq!(
        raised,
        "the moves under way are now throttled to 2 MB/s per broker until the last one ends\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(run_cli(&all, &["topic", "reassignments", "--json"], None)))
            .unwrap();
    assert_eq!(v["throttle_bytes_per_s"], 2_000_000, "{v}");

    let after = moves_done(&cluster, &all, "slow");
    // 4 MB at 1-2 MB/s cannot take less than 2 s, whatever the machine's load (a loaded
    // machine only makes it slower); unthrottled, it takes a fraction of a second here.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "4 MB moved in {took:?} under 2 MB/s");
    assert_eq!(after, vec![target.clone()], "the partition is on its new replicas");
    let gone = ok(run_cli(&all, &["topic", "reassignments", "--json"], None));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&gone).unwrap(),
        serde_json::json!({"throttle_bytes_per_s": null, "reassignments": []}),
        "the throttle ended with the last move"
    );
    assert_eq!(ok(run_cli(&all, &["topic", "reassignments"], None)), "no reassignment under way\n");
    // With no move under way there is nothing to throttle: refused, saying so.
    let idle = run_cli(&all, &["topic", "reassign", "--throttle-mb-per-s", "2"], None);
    assert!(!idle.status.success());
    assert!(stderr(&idle).contains("no reassignment under way to throttle"), "{}", stderr(&idle));
    let during = writer.stop();

    // Everything is there, read through the newcomer, which leads the new replica set now.
    let newcomer_addr = cluster.nodes[cluster.index(newcomer as i32)].native_addr.clone();
    let want: Vec<String> = bulk.iter().chain(&during).cloned().collect();
    assert_all_read(&newcomer_addr, "slow", &want);

    // A rate of zero would never finish: refused before anything is asked.
    let zero = run_cli(
        &all,
        &["topic", "reassign", "slow", "--partition", "0", "--replicas", "1,2,3"]
            .into_iter()
            .chain(["--throttle-mb-per-s", "0"])
            .collect::<Vec<_>>(),
        None,
    );
    assert!(!zero.status.success());
    assert!(stderr(&zero).contains("--throttle-mb-per-s"), "{}", stderr(&zero));
    // A partition without its new replicas (or --cancel) is not a move, throttle or not.
    let half = run_cli(
        &all,
        &["topic", "reassign", "slow", "--partition", "0", "--throttle-mb-per-s", "5"],
        None,
    );
    assert!(!half.status.success());
    assert!(stderr(&half).contains("<--replicas <ID,...>|--cancel>"), "{}", stderr(&half));
}

/// Waits until no partition move is under way; returns every partition's replicas.
#[track_caller]
fn moves_done(cluster: &TestCluster, all: &str, topic: &str) -> Vec<Vec<i64>> {
    let start = Instant::now();
    loop {
        let pending = ok(run_cli(all, &["topic", "reassignments"], None));
        if pending == "no reassignment under way\n" {
            let d: serde_json::Value = serde_json::from_str(&ok(run_cli(
                all,
                &["topic", "describe", topic, "--json"],
                None,
            )))
            .unwrap();
            return d["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["replicas"].as_array().unwrap().iter().filter_map(|r| r.as_i64()).collect()
                })
                .collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "moves still under way:\n{pending}\n{}",
            cluster.logs_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A cluster grows from three brokers to four and shrinks back, under a producer: `cluster
/// rebalance` plans moves onto the newcomer (a dry run changes nothing), `--execute` carries them
/// out, `cluster decommission 1` empties broker 1 (refused while the others could not hold the
/// replication factor), and every acknowledged record is read back.
#[test]
fn a_cluster_grows_by_a_broker_and_decommissions_one_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    let three = cluster.native_addrs();
    wait_healthy(&cluster, &three, 3);
    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "spread", "--partitions", "6", "--replication-factor", "3"];
    ok_within(&cluster, &three, &create, limit);
    wait_healthy(&cluster, &three, 3);
    let refused = run_cli(&three, &["cluster", "decommission", "1"], None);
    assert!(!refused.status.success(), "3 replicas cannot live on 2 brokers");
    assert!(stderr(&refused).contains("only 2 other live broker"), "{}", stderr(&refused));

    // A producer runs throughout.
    let writer = Writer::start(&three, "spread", "r");

    cluster.add_broker(dir.path());
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 4);
    let plan: serde_json::Value =
        serde_json::from_str(&ok(run_cli(&all, &["cluster", "rebalance"], None))).unwrap();
    let planned = plan["partitions"].as_array().unwrap().len();
    assert!(planned > 0, "the newcomer holds nothing yet: {plan}");
    assert_eq!(
        moves_done(&cluster, &all, "spread").iter().flatten().filter(|&&r| r == 4).count(),
        0,
        "a dry run moves nothing"
    );
    let started = ok(run_cli(&all, &["cluster", "rebalance", "--execute"], None));
    assert_eq!(started.lines().count(), planned, "{started}");
    let replicas = moves_done(&cluster, &all, "spread");
    let on = |b: i64| replicas.iter().flatten().filter(|&&r| r == b).count();
    assert!((4..=5).contains(&on(4)), "18 replicas over 4 brokers: {replicas:?}");
    assert_eq!(
        ok(run_cli(&all, &["cluster", "rebalance"], None)),
        "{\"partitions\":[],\"version\":1}\n"
    );

    let out = ok(run_cli(&all, &["cluster", "decommission", "1"], None));
    assert!(out.contains("broker 1 is fenced once it holds no replica"), "{out}");
    assert!(out.contains("cluster remove-voter 1"), "broker 1 is a controller: {out}");
    let replicas = moves_done(&cluster, &all, "spread");
    assert!(replicas.iter().all(|r| !r.contains(&1) && r.len() == 3), "{replicas:?}");
    // Emptied, it is fenced and stays out: three brokers serve, new topics avoid it.
    wait_healthy(&cluster, &all, 3);
    let text = ok(run_cli(&all, &["cluster", "status"], None));
    let line = text.lines().find(|l| l.starts_with("1 ")).unwrap_or_default();
    assert!(line.contains("decommissioned"), "{text}");
    let create = ["topic", "create", "later", "--partitions", "3", "--replication-factor", "3"];
    ok_within(&cluster, &all, &create, limit);
    assert!(moves_done(&cluster, &all, "later").iter().all(|r| !r.contains(&1)));
    // A restart does not bring it back: it answers, fenced and empty, until taken back.
    let one = cluster.index(1);
    cluster.kill(one);
    cluster.restart(one);
    let text = ok_within(&cluster, &cluster.nodes[one].native_addr, &["cluster", "status"], limit);
    let line = text.lines().find(|l| l.starts_with("1 ")).unwrap_or_default();
    assert!(line.contains("decommissioned"), "{text}");
    let out = ok(run_cli(&all, &["cluster", "decommission", "1", "--cancel"], None));
    assert_eq!(out, "broker 1 takes replicas again\n");
    wait_healthy(&cluster, &all, 4);

    assert_all_read(&all, "spread", &writer.stop());
}

/// A controller's machine is retired: a fourth broker joins and `cluster add-voter 4` makes it
/// a controller, `cluster remove-voter` takes the active controller out of the quorum (it hands
/// leadership to a voter before the command returns), and with it and a second original
/// controller killed the metadata still commits on the two voters left. A change that would
/// lose the quorum is refused, and restarted brokers keep their new parts.
#[test]
fn a_controller_is_replaced_through_voter_changes_and_the_quorum_follows() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "never", "--broker-session-timeout-ms", "2000"];
    let mut cluster = TestCluster::start(dir.path(), 3, &flags);
    wait_healthy(&cluster, &cluster.native_addrs(), 3);
    let fourth = cluster.add_broker(dir.path());
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 4);
    let voters = |addr: &str| status(addr).map(|s| s["voters"].clone()).unwrap_or_default();
    assert_eq!(voters(&all), serde_json::json!([1, 2, 3]));

    let refused = run_cli(&all, &["cluster", "remove-voter", "4"], None);
    assert!(stderr(&refused).contains("node 4 is not a voter"), "{}", stderr(&refused));
    assert!(
        stderr(&run_cli(&all, &["cluster", "add-voter", "9"], None)).contains("not in the cluster")
    );
    assert_eq!(ok(run_cli(&all, &["cluster", "add-voter", "4"], None)), "broker 4 is a voter\n");
    assert_eq!(voters(&all), serde_json::json!([1, 2, 3, 4]));

    // The active controller leaves the voters: a voter leads once the command returns.
    let retired = status(&all).unwrap()["controller"].as_i64().unwrap();
    assert!((1..=3).contains(&retired), "an original controller leads");
    let id = retired.to_string();
    let out = ok(run_cli(&all, &["cluster", "remove-voter", &id], None));
    assert_eq!(out, format!("broker {retired} is no longer a voter\n"));
    let left: Vec<i64> = (1..=4).filter(|&v| v != retired).collect();
    assert_eq!(voters(&all), serde_json::json!(left));
    let s = status(&all).unwrap();
    assert!(
        left.contains(&s["controller"].as_i64().unwrap_or(0)),
        "a voter leads: {s}\n{}",
        cluster.logs_tail(80)
    );
    let text = ok(run_cli(&all, &["cluster", "status"], None));
    let role = |id: i64| {
        let line = text.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_default();
        line.split_whitespace().last().unwrap_or_default().to_string()
    };
    assert_eq!(role(retired), "broker", "{text}");
    assert!(["voter", "controller"].contains(&role(4).as_str()), "{text}");

    // The retired controller and a second original one die: of the original controllers only
    // one is left, yet with broker 4 it makes a quorum and the metadata still changes.
    let (second, third) = (left[0], left[1]);
    cluster.kill(cluster.index(retired as i32));
    cluster.kill(cluster.index(second as i32));
    let survivors = format!(
        "{},{}",
        cluster.nodes[cluster.index(third as i32)].native_addr,
        cluster.nodes[fourth].native_addr
    );
    // Fenced once their sessions run out: the new voters' controller saw them go.
    wait_healthy(&cluster, &survivors, 2);
    let limit = Duration::from_secs(60);
    let create = ["topic", "create", "after", "--partitions", "2", "--replication-factor", "2"];
    ok_within(&cluster, &survivors, &create, limit);
    ok_within(&cluster, &survivors, &["produce", "after", "a", "b", "c"], limit);
    let mut read =
        sorted_lines(&ok(run_cli(&survivors, &["consume", "after", "--from-beginning"], None)));
    read.dedup();
    assert_eq!(read, ["a", "b", "c"]);

    // Removing another voter would leave the dead one and one live: no quorum. Refused.
    let refused = run_cli(&survivors, &["cluster", "remove-voter", &third.to_string()], None);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("would lose the quorum"), "{}", stderr(&refused));
    assert_eq!(voters(&survivors), serde_json::json!(left));

    // The killed brokers return with their old --controllers flags, broker 4 restarts without
    // itself in them: each keeps the part the membership gave it.
    cluster.restart(cluster.index(retired as i32));
    cluster.restart(cluster.index(second as i32));
    wait_healthy(&cluster, &all, 4);
    cluster.kill(fourth);
    cluster.restart(fourth);
    wait_healthy(&cluster, &all, 4);
    assert_eq!(voters(&all), serde_json::json!(left));
    ok_within(&cluster, &all, &["produce", "after", "d"], limit);
}

/// The broker a partition is moving to dies in the middle of the move: the move waits (the
/// partition keeps its old replicas in sync and serving) and finishes once the broker is back;
/// a second move is cancelled cleanly instead.
#[test]
fn a_move_whose_target_dies_finishes_when_it_returns_or_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "never", "--broker-session-timeout-ms", "2000"];
    let mut cluster = TestCluster::start(dir.path(), 3, &flags);
    wait_healthy(&cluster, &cluster.native_addrs(), 3);
    let fourth = cluster.add_broker(dir.path());
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 4);
    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "target", "--partitions", "1", "--replication-factor", "3"];
    ok_within(&cluster, &all, &create, limit);
    let values: Vec<String> = (0..2000).map(|i| format!("v-{i:05}")).collect();
    let mut input = values.join("\n");
    input.push('\n');
    ok(run_cli(&all, &["produce", "target"], Some(input.as_bytes())));
    let (old, _, newcomer) = partition_zero(&all, "target");
    let target: Vec<String> =
        std::iter::once(newcomer).chain(old[1..].iter().copied()).map(|b| b.to_string()).collect();
    let reassign =
        ["topic", "reassign", "target", "--partition", "0", "--replicas", &target.join(",")];

    // A single-replica topic on a broker that stays, moving to the newcomer as well.
    let create = ["topic", "create", "single", "--partitions", "1", "--replication-factor", "1"];
    ok_within(&cluster, &all, &create, limit);
    let stay = old[0].to_string();
    ok_within(
        &cluster,
        &all,
        &["topic", "reassign", "single", "--partition", "0", "--replicas", &stay],
        limit,
    );
    assert_eq!(moves_done(&cluster, &all, "single"), vec![vec![old[0]]]);
    ok(run_cli(&all, &["produce", "single", "before"], None));

    let i = cluster.index(newcomer as i32);
    cluster.kill(i);
    ok_within(&cluster, &all, &reassign, limit);
    let to_newcomer = newcomer.to_string();
    let single = ["topic", "reassign", "single", "--partition", "0", "--replicas", &to_newcomer];
    ok_within(&cluster, &all, &single, limit);
    std::thread::sleep(Duration::from_secs(3));
    let pending = ok(run_cli(&all, &["topic", "reassignments"], None));
    assert!(
        pending.contains(&format!("broker {newcomer}")),
        "the move waits for {newcomer}:\n{pending}"
    );
    let read = sorted_lines(&ok(run_cli(&all, &["consume", "target", "--from-beginning"], None)));
    assert_eq!(read.len(), values.len(), "the old replicas keep serving");
    // The move does not raise the single replica's bar: its writes are acknowledged by the
    // replica it has while the new one is away (min.insync.replicas counts the replicas the
    // partition had, as Kafka does), and it is not reported under-replicated.
    ok(run_cli(&all, &["produce", "single", "during"], None));
    let s = status(&all).expect("cluster status");
    assert_eq!(s["under_replicated"].as_array().map(Vec::len), Some(0), "{s}");
    cluster.restart(i);
    let replicas = moves_done(&cluster, &all, "target");
    let want: Vec<i64> = target.iter().map(|b| b.parse().unwrap()).collect();
    assert_eq!(replicas, vec![want.clone()], "the move finished once broker {newcomer} returned");
    assert_eq!(moves_done(&cluster, &all, "single"), vec![vec![newcomer]]);
    let read = sorted_lines(&ok(run_cli(&all, &["consume", "single", "--from-beginning"], None)));
    assert_eq!(read, ["before", "during"]);

    // Another move, cancelled while its target is down: the old replicas stay, nothing lost.
    let back: Vec<String> = old.iter().map(i64::to_string).collect();
    cluster.kill(i);
    let undo = ["topic", "reassign", "target", "--partition", "0", "--replicas", &back.join(",")];
    ok_within(&cluster, &all, &undo, limit);
    let cancel = ["topic", "reassign", "target", "--partition", "0", "--cancel"];
    let out = ok(run_cli(&all, &cancel, None));
    assert_eq!(out, "cancelled the move of target-0\n");
    let replicas = moves_done(&cluster, &all, "target");
    assert_eq!(replicas, vec![want], "cancelled: the replicas before it");
    let read = sorted_lines(&ok(run_cli(&all, &["consume", "target", "--from-beginning"], None)));
    assert_eq!(read, values);
    let _ = fourth;
}

/// A rolling restart of all three brokers (SIGTERM, start again, wait for every ISR) under a
/// producer: each broker hands its leaderships over before it exits, no partition is ever seen
/// offline, and every acknowledged record is read back.
#[test]
fn a_rolling_restart_under_load_loses_nothing_and_leaves_no_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(dir.path(), 3, &["--fsync", "never"]);
    let all = cluster.native_addrs();
    wait_healthy(&cluster, &all, 3);
    let limit = Duration::from_secs(120);
    let create = ["topic", "create", "rolling", "--partitions", "3", "--replication-factor", "3"];
    ok_within(&cluster, &all, &create, limit);
    wait_healthy(&cluster, &all, 3);
    let writer = Writer::start(&all, "rolling", "r");
    for i in 0..3 {
        assert!(cluster.terminate(i), "broker {} exits cleanly on SIGTERM", i + 1);
        // The others lead everything while it is down: nothing offline.
        let s = status(&all).expect("a live broker answers");
        assert_eq!(s["offline"], serde_json::json!([]), "with broker {} down: {s}", i + 1);
        cluster.restart(i);
        wait_healthy(&cluster, &all, 3);
    }
    assert_all_read(&all, "rolling", &writer.stop());
}
