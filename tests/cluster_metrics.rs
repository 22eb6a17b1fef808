//! What an operator's Prometheus sees of a three-broker cluster (`--broker-session-timeout-ms
//! 2000`), scraping every broker's `/metrics`: exactly one broker says it is the controller and
//! every broker has committed metadata; after a SIGKILL of a broker that is not the controller,
//! the survivors count the partitions they lead as under-replicated and the ISR shrinks they
//! committed, the leader shows how far the dead follower falls behind, and the controller alone
//! counts the partition that lost its only replica as offline; after the restart every count
//! returns to 0 and the ISR expansions are counted. And what the console's `/api/cluster` says
//! of a partition moved to a broker that is down, until the move finishes.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::cluster_client::{Attempt, ClusterClient, IdempotentProducer, NONE};
use common::{ok, run_cli};
use minikafka::metrics::find_sample;

/// Liveness bound for every wait (a debug build on a busy 2-core machine).
const LIMIT: Duration = Duration::from_secs(120);
/// The replicated topic: 3 partitions x 3 replicas, so every broker leads one.
const REPLICATED: &str = "replicated";
/// One replica per partition, one partition per broker: the killed broker's goes offline.
const SOLO: &str = "solo";

/// GET `path` of broker `i`'s HTTP listener: the body of a 200, `None` otherwise.
fn get(cluster: &TestCluster, i: usize, path: &str) -> Option<String> {
    let addr = cluster.nodes[i].http_addr.as_deref().expect("started with HTTP");
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// GET `/metrics` of broker `i`: `None` when it does not answer.
fn scrape(cluster: &TestCluster, i: usize) -> Option<String> {
    get(cluster, i, "/metrics")
}

/// GET `/api/cluster` of broker `i`: `None` when it does not answer.
fn cluster_json(cluster: &TestCluster, i: usize) -> Option<serde_json::Value> {
    serde_json::from_str(&get(cluster, i, "/api/cluster")?).ok()
}

/// One sample of broker `i`'s exposition (`labels` as written there, empty for none).
fn sample(cluster: &TestCluster, i: usize, name: &str, labels: &str) -> Option<f64> {
    find_sample(&scrape(cluster, i)?, name, labels)
}

/// Polls `f` until it holds, for at most LIMIT; panics with `what` and the brokers' logs.
fn eventually(cluster: &TestCluster, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "not within {LIMIT:?}: {what}\n{}",
            cluster.logs_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn create(cluster: &TestCluster, topic: &str, partitions: i32, rf: i16) -> ClusterClient {
    let mut admin = ClusterClient::new(&cluster.kafka_addrs(), topic, "admin");
    let deadline = Instant::now() + LIMIT;
    loop {
        match admin.create_topic(partitions, rf) {
            Ok(NONE) => break,
            other => assert!(Instant::now() < deadline, "CreateTopics {topic}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    admin.wait_healthy(partitions, rf as usize, LIMIT).unwrap();
    admin
}

#[test]
fn cluster_health_shows_in_every_brokers_metrics_through_a_follower_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster =
        TestCluster::start_with_http(dir.path(), 3, &["--broker-session-timeout-ms", "2000"]);
    let all: Vec<usize> = (0..3).collect();

    // Exactly one controller, and every broker has committed metadata.
    eventually(&cluster, "one controller, a commit index on every broker", || {
        let leaders: Vec<Option<f64>> =
            all.iter().map(|&i| sample(&cluster, i, "minikafka_controller_leader", "")).collect();
        let committed = all.iter().all(|&i| {
            sample(&cluster, i, "minikafka_raft_commit_index", "").is_some_and(|c| c > 0.0)
        });
        committed
            && leaders.iter().all(|l| matches!(l, Some(v) if *v == 0.0 || *v == 1.0))
            && leaders.iter().filter(|l| **l == Some(1.0)).count() == 1
    });
    let mut admin = create(&cluster, REPLICATED, 3, 3);
    let mut solo = create(&cluster, SOLO, 3, 1);
    let controller = loop {
        if let Some(c) = cluster.controller() {
            break c as i32;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for &i in &all {
        for (name, want) in
            [("minikafka_under_replicated_partitions", 0.0), ("minikafka_offline_partitions", 0.0)]
        {
            assert_eq!(sample(&cluster, i, name, ""), Some(want), "{name} on broker {}", i + 1);
        }
    }

    // The broker to kill leads a partition and follows the two others; it is not the
    // controller, so the survivors keep theirs.
    let leaders: BTreeMap<i32, i32> =
        (0..3).map(|p| (p, admin.leader(p).expect("a leader").0)).collect();
    let victim = (1..=3).find(|&b| b != controller).unwrap();
    let (kept, survivor) =
        leaders.iter().map(|(&p, &l)| (p, l)).find(|&(_, l)| l != victim).unwrap();
    let (v, s) = (cluster.index(victim), cluster.index(survivor));
    let lag_labels = format!(r#"topic="{REPLICATED}",partition="{kept}",replica="{victim}""#);
    eventually(&cluster, "the followers caught up", || {
        sample(&cluster, s, "minikafka_replica_lag_records", &lag_labels) == Some(0.0)
    });
    let counter = |c: &TestCluster, i: usize, name: &str| sample(c, i, name, "").unwrap_or(-1.0);
    let shrinks: Vec<f64> =
        all.iter().map(|&i| counter(&cluster, i, "minikafka_isr_shrinks_total")).collect();
    let expands: Vec<f64> =
        all.iter().map(|&i| counter(&cluster, i, "minikafka_isr_expands_total")).collect();
    let solo_victim = solo
        .meta
        .partitions
        .iter()
        .find(|(_, m)| m.replicas == [victim])
        .map(|(&p, _)| p)
        .expect("one solo partition per broker");

    cluster.kill(v);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != v).collect();
    // Every partition of the replicated topic has the dead broker among its replicas: each
    // survivor leads under-replicated partitions, and committed the ISR shrinks of those it led.
    eventually(&cluster, "under-replicated partitions and ISR shrinks on the survivors", || {
        survivors.iter().all(|&i| {
            sample(&cluster, i, "minikafka_under_replicated_partitions", "")
                .is_some_and(|u| u > 0.0)
                && counter(&cluster, i, "minikafka_isr_shrinks_total") > shrinks[i]
        })
    });
    // The dead follower falls behind by what the survivor's partition takes since.
    let client = ClusterClient::new(&cluster.kafka_addrs(), REPLICATED, "producer");
    let mut producer = IdempotentProducer::new(client, LIMIT).unwrap();
    let values: Vec<String> = (0..10).map(|i| format!("after-kill-{i}")).collect();
    let batch = producer.batch(kept, &values);
    let deadline = Instant::now() + LIMIT;
    loop {
        match producer.attempt(kept, &batch) {
            Attempt::Acked(_) => break,
            Attempt::Retriable(e) => assert!(Instant::now() < deadline, "produce: {e}"),
            Attempt::Fatal(e) => panic!("produce: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    producer.acked(kept, values.len());
    eventually(&cluster, "the dead follower's lag", || {
        sample(&cluster, s, "minikafka_replica_lag_records", &lag_labels).is_some_and(|l| l >= 10.0)
    });
    // Only the controller counts the solo partition that lost its only replica.
    let c = cluster.index(controller);
    eventually(&cluster, "the offline partition counted on the controller only", || {
        survivors.iter().all(|&i| {
            let want = if i == c { 1.0 } else { 0.0 };
            sample(&cluster, i, "minikafka_offline_partitions", "") == Some(want)
        })
    });
    solo.refresh().unwrap();
    assert_eq!(solo.meta.partitions[&solo_victim].leader, -1, "{:?}", solo.meta);

    // Back: it catches up, rejoins every ISR, and its solo partition has its leader again.
    cluster.restart(v);
    admin.wait_healthy(3, 3, LIMIT).unwrap();
    solo.wait_healthy(3, 1, LIMIT).unwrap();
    // Each survivor leads a partition the restarted broker rejoined: each counts an expansion.
    eventually(&cluster, "every count back to 0, ISR expansions counted", || {
        sample(&cluster, s, "minikafka_replica_lag_records", &lag_labels) == Some(0.0)
            && survivors
                .iter()
                .all(|&i| counter(&cluster, i, "minikafka_isr_expands_total") > expands[i])
            && all.iter().all(|&i| {
                sample(&cluster, i, "minikafka_under_replicated_partitions", "") == Some(0.0)
                    && sample(&cluster, i, "minikafka_offline_partitions", "") == Some(0.0)
            })
    });
    let controllers: f64 =
        all.iter().filter_map(|&i| sample(&cluster, i, "minikafka_controller_leader", "")).sum();
    assert_eq!(controllers, 1.0, "exactly one controller after the restart");
}

/// An operator moves a partition to a broker that is down: the console of every live broker
/// lists the move, with the new replica being added and not yet in sync; the leader, which alone
/// knows the copy progress, has none for a replica that never fetched; the throttle asked for
/// shows beside it. Once the broker is back, it catches up, the move finishes, and no console
/// lists it, or a throttle, any more.
#[test]
fn the_console_lists_a_partition_move_until_it_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start_with_http(dir.path(), 3, &["--fsync", "never"]);
    let moving = create(&cluster, "moving", 1, 1);
    let from = moving.meta.partitions[&0].replicas[0];
    let controller = loop {
        if let Some(c) = cluster.controller() {
            break c as i32;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Not the controller: the move is proposed at once, without waiting for an election.
    let to = (1..=3).find(|&b| b != from && b != controller).unwrap();
    let all = cluster.native_addrs();
    let values: String = (0..100).map(|i| format!("v-{i}\n")).collect();
    ok(run_cli(&all, &["produce", "moving"], Some(values.as_bytes())));

    let t = cluster.index(to);
    cluster.kill(t);
    let to_s = to.to_string();
    let reassign = [
        "topic",
        "reassign",
        "moving",
        "--partition",
        "0",
        "--replicas",
        &to_s,
        "--throttle-mb-per-s",
        "5",
    ];
    // Asked within the killed broker's session (9 s by default): once fenced, it could not be
    // added.
    ok(run_cli(&all, &reassign, None));
    let pending = serde_json::json!([{
        "topic": "moving",
        "partition": 0,
        "target": [to],
        "adding": [to],
        "removing": [from],
        "isr": [from],
        "leader": from,
        "behind": [],
    }]);
    let live: Vec<usize> = (0..3).filter(|&i| i != t).collect();
    eventually(&cluster, "every live console lists the move and its throttle", || {
        live.iter().all(|&i| {
            cluster_json(&cluster, i).is_some_and(|c| {
                c["reassignments"] == pending && c["throttle_bytes_per_s"] == 5_000_000
            })
        })
    });
    // Still there a few seconds later: it waits for its target.
    std::thread::sleep(Duration::from_secs(3));
    let c = cluster_json(&cluster, cluster.index(from)).expect("the leader's console answers");
    assert_eq!(c["reassignments"], pending, "{c}");
    assert_eq!(c["throttle_bytes_per_s"], 5_000_000, "{c}");

    cluster.restart(t);
    eventually(
        &cluster,
        "the move finished: no console lists it, the partition is on its target",
        || {
            (0..3).all(|i| {
                cluster_json(&cluster, i).is_some_and(|c| {
                    let p = c["partitions"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["topic"] == "moving"));
                    c["reassignments"] == serde_json::json!([])
                        && c["throttle_bytes_per_s"].is_null()
                        && p.is_some_and(|p| {
                            p["replicas"] == serde_json::json!([to]) && p["leader"] == to
                        })
                })
            })
        },
    );
    let read = ok(run_cli(&all, &["consume", "moving", "--from-beginning"], None));
    assert_eq!(read, values, "the moved partition holds every record");
}

/// An operator retires a broker and watches the console: every broker's console names the
/// controller "controller" and the other voters "voter"; a fourth broker joins as a plain
/// "broker", alive. It holds no replica, so `cluster decommission 4` fences it at once, and
/// every console shows it decommissioned (still a broker, no longer taking replicas).
#[test]
fn the_console_shows_each_brokers_role_and_a_decommissioned_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start_with_http(dir.path(), 3, &["--fsync", "never"]);
    let consoles: Vec<usize> = (0..3).collect();
    // (state, role) of each broker as console `i` lists them, by id.
    let brokers = |cluster: &TestCluster, i: usize| -> Option<BTreeMap<i64, (String, String)>> {
        let c = cluster_json(cluster, i)?;
        c["brokers"]
            .as_array()?
            .iter()
            .map(|b| {
                let text = |k: &str| b[k].as_str().map(str::to_owned);
                Some((b["id"].as_i64()?, (text("state")?, text("role")?)))
            })
            .collect()
    };
    let controller = loop {
        if let Some(c) = cluster.controller() {
            break c as i64;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let fourth = cluster.add_broker(dir.path());
    assert_eq!(cluster.nodes[fourth].id, 4);
    let want = |four: &str| -> BTreeMap<i64, (String, String)> {
        (1..=4)
            .map(|id| {
                let role = match id {
                    4 => "broker",
                    id if id == controller => "controller",
                    _ => "voter",
                };
                let state = if id == 4 { four } else { "alive" };
                (id, (state.to_owned(), role.to_owned()))
            })
            .collect()
    };
    let alive = want("alive");
    eventually(&cluster, "every console lists the newcomer alive and each broker's role", || {
        consoles.iter().all(|&i| brokers(&cluster, i).as_ref() == Some(&alive))
    });

    let out = ok(run_cli(&cluster.native_addrs(), &["cluster", "decommission", "4"], None));
    assert!(out.starts_with("nothing to move\n"), "it holds no replica: {out}");
    let retired = want("decommissioned");
    eventually(&cluster, "every console shows broker 4 decommissioned", || {
        consoles.iter().all(|&i| brokers(&cluster, i).as_ref() == Some(&retired))
    });
    let c = cluster_json(&cluster, 0).expect("broker 1's console answers");
    let four = c["brokers"].as_array().and_then(|bs| bs.iter().find(|b| b["id"] == 4)).cloned();
    let four = four.expect("broker 4 is listed");
    assert_eq!(four["fenced"], true, "emptied, it is fenced: {c}");
    assert_eq!(four["decommissioned"], true, "{c}");
}
