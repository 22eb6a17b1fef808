//! `minikafka group list|describe` against a real broker: the tables and the JSON show each
//! group's committed offsets and lag, as a user would read them.

use std::sync::Arc;

use tokio::sync::oneshot;

use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{AppendBatch, Broker, BrokerConfig};
use minikafka::record::NewRecord;
use minikafka::server::{Server, ServerConfig};

struct Running {
    addr: String,
    broker: Arc<Broker>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() })
            .unwrap();
    let server = Server::bind(
        ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() },
        broker.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server.run(async move { drop(rx.await) }).await.unwrap();
    });
    Running { addr, broker, stop, task, _dir: dir }
}

/// Runs the CLI off the async workers; returns (exit code, stdout, stderr).
async fn minikafka(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_minikafka"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(addr: &str, a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).chain(["--broker".to_string(), addr.to_string()]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_and_described_with_their_lag() {
    let r = start().await;
    r.broker.create_topic("orders", 2, TopicConfigs::default(), false).unwrap();
    let recs: Vec<NewRecord<'_>> = (0..10).map(|_| NewRecord::value(b"x")).collect();
    r.broker.append("orders", Some(0), None, AppendBatch::Records(&recs)).await.unwrap();
    r.broker.append("orders", Some(1), None, AppendBatch::Records(&recs[..4])).await.unwrap();
    r.broker.commit_offset("billing", "orders", 0, 7).unwrap();
    r.broker.commit_offset("billing", "orders", 1, 4).unwrap();
    r.broker.commit_offset("audit", "orders", 0, 10).unwrap();

    let (code, out, err) = minikafka(args(&r.addr, &["group", "list"])).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["GROUP", "PARTITIONS", "LAG"]);
    assert_eq!(lines[1], ["audit", "1", "0"]);
    assert_eq!(lines[2], ["billing", "2", "3"]);
    assert_eq!(lines.len(), 3);

    let (code, out, err) = minikafka(args(&r.addr, &["group", "describe", "billing"])).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> =
        out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert!(out.starts_with("group billing: 2 partitions, total lag 3"), "{out}");
    assert_eq!(lines[0], ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"]);
    assert_eq!(lines[1], ["orders", "0", "7", "10", "3"]);
    assert_eq!(lines[2], ["orders", "1", "4", "4", "0"]);

    let (code, out, _) =
        minikafka(args(&r.addr, &["group", "describe", "billing", "--json"])).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["group"], "billing");
    assert_eq!(v["total_lag"], 3);
    assert_eq!(v["members"].as_array().unwrap().len(), 0);
    assert_eq!(v["offsets"][0]["committed_offset"], 7);
    assert_eq!(v["offsets"][0]["log_end_offset"], 10);
    assert_eq!(v["offsets"][0]["lag"], 3);

    let (code, out, _) = minikafka(args(&r.addr, &["group", "list", "--json"])).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[1]["group"], "billing");
    assert_eq!(v[1]["total_lag"], 3);

    let (code, out, err) = minikafka(args(&r.addr, &["group", "describe", "nobody"])).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("no consumer group nobody"), "{err}");

    let _ = r.stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(20), r.task).await.unwrap().unwrap();
}
