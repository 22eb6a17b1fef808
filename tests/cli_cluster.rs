//! `minikafka cluster status`, `topic create --replication-factor`, `topic describe`'s
//! leadership columns and the comma-separated `--broker` list, against a single broker: a
//! cluster of one, which leads every partition itself (broker 0).

mod common;

use common::{BrokerProcess, fails, ok, run_cli};

#[test]
fn a_single_broker_is_a_healthy_cluster_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let addr = &broker.addr;
    let w = addr.len().max("ADDRESS".len());
    assert_eq!(
        ok(broker.cli(&["cluster", "status"])),
        format!(
            "BROKER    {:<w$}  KAFKA-ADDRESS  STATE\n\
             0 (this)  {:<w$}  -              alive\n\
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
