//! The HTTP listener as an operator sees it: a broker, its native server and its HTTP server run
//! in-process on ephemeral ports; a known workload goes through the native client; `/metrics`
//! must then show exactly that workload, and the JSON API must show what was produced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use minikafka::batch::Compression;
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::client::{
    Admin, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};
use minikafka::cluster::Cluster;
use minikafka::http::HttpServer;
use minikafka::metrics::find_sample;
use minikafka::record::{self, Header, NewRecord};
use minikafka::server::{Server, ServerConfig};

/// Every wait in these tests is bounded by this.
const DEADLINE: Duration = Duration::from_secs(20);

struct Stack {
    native: SocketAddr,
    http: SocketAddr,
    broker: Arc<Broker>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() })
                .unwrap();
        // Both listeners share the broker's cluster (of one), as the broker command wires them.
        let cluster = Cluster::single(broker.clone());
        let server = Server::bind_cluster(
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() },
            cluster.clone(),
        )
        .await
        .unwrap();
        let http = HttpServer::bind_cluster(
            "127.0.0.1:0".parse().unwrap(),
            cluster,
            broker.metrics().clone(),
        )
        .await
        .unwrap()
        // Stands in for the Kafka listener's coordinator: one live member in group "billing".
        .with_group_members(Arc::new(|g: &str| {
            if g == "billing" { vec!["rdkafka-00000001".to_string()] } else { Vec::new() }
        }));
        let (native, http_addr) = (server.local_addr(), http.local_addr());
        let (tx1, rx1) = oneshot::channel::<()>();
        let (tx2, rx2) = oneshot::channel::<()>();
        let t1 = tokio::spawn(async move {
            server.run(async move { drop(rx1.await) }).await.unwrap();
        });
        let t2 = tokio::spawn(async move {
            http.run(async move { drop(rx2.await) }).await.unwrap();
        });
        Stack {
            native,
            http: http_addr,
            broker,
            stops: vec![tx2, tx1],
            tasks: vec![t2, t1],
            _dir: dir,
        }
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.native.to_string()).await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http(self.http, "GET", path, None).await
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            tokio::time::timeout(DEADLINE, t).await.expect("servers stop in time").unwrap();
        }
    }
}

/// A minimal HTTP/1.1 exchange (one request per connection) for the test's own use.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, rest) = text.split_once("\r\n\r\n").expect("a complete response head");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        (status, if chunked { dechunk(rest) } else { rest.to_string() })
    };
    tokio::time::timeout(DEADLINE, fut).await.expect("HTTP answer in time")
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

const TOPIC: &str = "orders";

fn value(i: u64) -> String {
    format!("order-{i:04}")
}

/// Appends `batches` batches of `per_batch` records to `partition`; returns the bytes of the
/// batches as sent (and stored: the broker keeps them as they are).
async fn produce(
    producer: &Producer,
    partition: u32,
    start: u64,
    batches: u64,
    per_batch: u64,
) -> u64 {
    let headers = vec![Header { key: b"source".to_vec(), value: Some(b"test".to_vec()) }];
    let mut bytes = 0;
    for b in 0..batches {
        let values: Vec<String> =
            (0..per_batch).map(|i| value(start + b * per_batch + i)).collect();
        let recs: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                timestamp_ms: 1_700_000_000_000,
                key: Some(b"k"),
                value: Some(v.as_bytes()),
                headers: &headers,
            })
            .collect();
        // The producer sends the same batch (uncompressed by default, same timestamps).
        bytes += record::build_batch(&recs, Compression::None).unwrap().len() as u64;
        let ack = producer.send_batch(Some(partition), &recs).await.unwrap();
        assert_eq!(ack.len(), per_batch);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_workload() {
    let stack = Stack::start().await;
    let conn = stack.connect().await;
    let admin = Admin::new(conn.clone());
    admin.create_topic(TOPIC, 2, false).await.unwrap();
    let producer = Producer::new(conn.clone(), TOPIC, ProducerConfig::default()).await.unwrap();
    let bytes0 = produce(&producer, 0, 0, 3, 10).await;
    let bytes1 = produce(&producer, 1, 0, 2, 5).await;

    // A group reads partition 0 to its end and commits.
    let config =
        ConsumerConfig { partitions: Some(vec![0]), group: Some("g".into()), ..Default::default() };
    let mut consumer =
        Consumer::new(conn.clone(), TOPIC, StartFrom::Beginning, config).await.unwrap();
    let mut read = 0;
    while let Some(r) = consumer.next().await.unwrap() {
        assert_eq!(r.value, Some(value(read).into_bytes()));
        read += 1;
    }
    assert_eq!(read, 30);
    consumer.commit().await.unwrap();
    // Then 7 more arrive that the group has not read: lag 7.
    let bytes0_more = produce(&producer, 0, 30, 1, 7).await;
    // One request that fails: describing a topic that does not exist.
    assert!(admin.describe_topic("missing").await.is_err());

    let m = stack.metrics().await;
    let p0 = r#"topic="orders",partition="0""#;
    let p1 = r#"topic="orders",partition="1""#;
    let native = r#"listener="native""#;
    assert_eq!(find_sample(&m, "minikafka_append_records_total", p0), Some(37.0), "{m}");
    assert_eq!(find_sample(&m, "minikafka_append_records_total", p1), Some(10.0));
    assert_eq!(
        find_sample(&m, "minikafka_append_bytes_total", p0),
        Some((bytes0 + bytes0_more) as f64)
    );
    assert_eq!(find_sample(&m, "minikafka_append_bytes_total", p1), Some(bytes1 as f64));
    assert_eq!(find_sample(&m, "minikafka_fetch_records_total", p0), Some(30.0));
    assert_eq!(find_sample(&m, "minikafka_fetch_bytes_total", p0), Some(bytes0 as f64));
    assert_eq!(find_sample(&m, "minikafka_fetch_records_total", p1), Some(0.0), "p1 never read");
    assert_eq!(find_sample(&m, "minikafka_produce_duration_seconds_count", native), Some(6.0));
    assert_eq!(
        find_sample(&m, "minikafka_requests_total", r#"listener="native",api="append""#),
        Some(6.0)
    );
    assert_eq!(
        find_sample(
            &m,
            "minikafka_request_errors_total",
            r#"listener="native",kind="unknown_topic""#
        ),
        Some(1.0)
    );
    assert_eq!(find_sample(&m, "minikafka_log_start_offset", p0), Some(0.0));
    assert_eq!(find_sample(&m, "minikafka_log_end_offset", p0), Some(37.0));
    assert_eq!(find_sample(&m, "minikafka_log_end_offset", p1), Some(10.0));
    assert_eq!(find_sample(&m, "minikafka_log_segments", p0), Some(1.0));
    let d = stack.broker.describe_topic(TOPIC).unwrap();
    assert_eq!(
        find_sample(&m, "minikafka_log_size_bytes", p0),
        Some(d.partitions[0].size_bytes as f64)
    );
    let g = r#"group="g",topic="orders",partition="0""#;
    assert_eq!(find_sample(&m, "minikafka_group_committed_offset", g), Some(30.0));
    assert_eq!(find_sample(&m, "minikafka_group_lag", g), Some(7.0));
    // The default fsync policy is Always: every one of the 6 sequential appends waited for one.
    let fsyncs = find_sample(&m, "minikafka_fsyncs_total", "").unwrap();
    assert!(fsyncs >= 6.0, "fsyncs {fsyncs}");
    assert_eq!(find_sample(&m, "minikafka_fsync_duration_seconds_count", ""), Some(fsyncs));
    assert_eq!(find_sample(&m, "minikafka_connections", native), Some(1.0));
    assert_eq!(find_sample(&m, "minikafka_connections_accepted_total", native), Some(1.0));

    // Closing the connection closes it in the metrics too (the server notices asynchronously).
    drop((producer, consumer, admin, conn));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = stack.metrics().await;
        if find_sample(&m, "minikafka_connections", native) == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "connection still counted as open:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_shows_what_was_produced() {
    let stack = Stack::start().await;
    let conn = stack.connect().await;
    Admin::new(conn.clone()).create_topic(TOPIC, 2, false).await.unwrap();
    let producer = Producer::new(conn.clone(), TOPIC, ProducerConfig::default()).await.unwrap();
    produce(&producer, 0, 0, 2, 10).await;

    let topics = stack.json("/api/topics").await;
    assert_eq!(topics.as_array().unwrap().len(), 1);
    assert_eq!(topics[0]["name"], TOPIC);
    assert_eq!(topics[0]["records"], 20);
    assert_eq!(topics[0]["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(topics[0]["partitions"][0]["next_offset"], 20);
    assert_eq!(topics[0]["partitions"][1]["next_offset"], 0);
    let one = stack.json("/api/topics/orders").await;
    assert_eq!(one["partitions"][0]["records"], 20);

    // The message browser: a page from offset 3, then the next page from where it ended.
    let page = stack.json("/api/topics/orders/partitions/0/records?offset=3&limit=4").await;
    let recs = page["records"].as_array().unwrap();
    assert_eq!(recs.len(), 4);
    for (i, r) in recs.iter().enumerate() {
        let off = 3 + i as u64;
        assert_eq!(r["offset"], off);
        assert_eq!(r["value"]["text"], value(off));
        assert_eq!(r["value"]["hex"], hex(value(off).as_bytes()));
        assert_eq!(r["key"]["text"], "k");
        assert_eq!(r["timestamp_ms"], 1_700_000_000_000_i64);
        assert_eq!(r["headers"][0]["key"]["text"], "source");
        assert_eq!(r["headers"][0]["value"]["text"], "test");
    }
    assert_eq!(page["next_offset"], 7);
    assert_eq!(page["high_watermark"], 20);
    let rest = stack.json("/api/topics/orders/partitions/0/records?offset=7&limit=500").await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 13);
    assert_eq!(rest["next_offset"], 20);
    let default = stack.json("/api/topics/orders/partitions/0/records").await;
    assert_eq!(default["records"][0]["offset"], 0, "defaults to the log start");
    let empty = stack.json("/api/topics/orders/partitions/1/records").await;
    assert_eq!(empty["records"].as_array().unwrap().len(), 0);

    // Errors are JSON with a status that says whose fault it was.
    let (status, body) = stack.get("/api/topics/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = stack.get("/api/topics/orders/partitions/9/records").await;
    assert_eq!(status, 404);
    let (status, _) = stack.get("/api/topics/orders/partitions/0/records?offset=x").await;
    assert_eq!(status, 400);

    // Creating a topic from the console.
    let (status, body) =
        http(stack.http, "POST", "/api/topics", Some(r#"{"name":"web-made","partitions":3}"#))
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(stack.broker.describe_topic("web-made").unwrap().partitions.len(), 3);
    let (status, _) =
        http(stack.http, "POST", "/api/topics", Some(r#"{"name":"web-made","partitions":3}"#))
            .await;
    assert_eq!(status, 409);
    let (status, _) = http(stack.http, "POST", "/api/topics", Some(r#"{"name":"a/b"}"#)).await;
    assert_eq!(status, 400);
    let (status, _) = http(stack.http, "POST", "/api/topics", Some("not json")).await;
    assert_eq!(status, 400);

    // Groups with their lag.
    stack.broker.commit_offset("billing", TOPIC, 0, 15).unwrap();
    let groups = stack.json("/api/groups").await;
    assert_eq!(groups[0]["group"], "billing");
    assert_eq!(groups[0]["total_lag"], 5);
    let g = stack.json("/api/groups/billing").await;
    assert_eq!(g["offsets"][0]["committed_offset"], 15);
    assert_eq!(g["offsets"][0]["log_end_offset"], 20);
    assert_eq!(g["offsets"][0]["lag"], 5);
    assert_eq!(g["members"], serde_json::json!(["rdkafka-00000001"]));
    assert_eq!(groups[0]["members"], 1);
    let (status, _) = stack.get("/api/groups/nobody").await;
    assert_eq!(status, 404);

    // The rate history picks up traffic within a few samples.
    let deadline = Instant::now() + DEADLINE;
    loop {
        produce(&producer, 1, 0, 1, 5).await;
        let rates = stack.json("/api/rates").await;
        let seen = rates["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["topics"][TOPIC]["produce_records"].as_f64().is_some_and(|r| r > 0.0));
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "no produce rate recorded: {rates}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The console itself and its assets.
    let (status, page) = stack.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("minikafka") && page.contains("rate-chart"));
    for asset in ["/assets/app.js", "/assets/chart.js", "/assets/style.css"] {
        let (status, body) = stack.get(asset).await;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty());
    }
    assert_eq!(stack.get("/assets/nope.js").await.0, 404);
    assert_eq!(stack.get("/nope").await.0, 404);

    // A browser keeps its connection open between polls: shutdown must not wait for it.
    let mut idle = TcpStream::connect(stack.http).await.unwrap();
    idle.write_all(b"GET /api/rates HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    drop((producer, conn));
    stack.stop().await;
    drop(idle);
}

/// A Kafka client's sentinel commits (kafkajs's resetOffsets: -2 earliest, -1 latest) show in
/// the console and `/metrics` at the position a consumer would start from, with its lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_metrics_read_sentinel_commits_as_log_start_and_end() {
    let stack = Stack::start().await;
    let conn = stack.connect().await;
    Admin::new(conn.clone()).create_topic(TOPIC, 2, false).await.unwrap();
    let producer = Producer::new(conn.clone(), TOPIC, ProducerConfig::default()).await.unwrap();
    produce(&producer, 0, 0, 2, 10).await;
    produce(&producer, 1, 0, 1, 6).await;
    assert_eq!(stack.broker.trim(TOPIC, 0, 5).unwrap(), 5);
    // What the Kafka listener stores for OffsetCommit: the offsets as sent.
    let sent =
        [(TOPIC.to_string(), 0, -2, String::new()), (TOPIC.to_string(), 1, -1, String::new())];
    let checks = stack.broker.commit_offsets_with_metadata("reset", &sent).unwrap();
    assert!(checks.iter().all(Result::is_ok), "{checks:?}");

    let g = stack.json("/api/groups/reset").await;
    assert_eq!(g["offsets"][0]["committed_offset"], 5, "-2: the log start");
    assert_eq!(g["offsets"][0]["lag"], 15);
    assert_eq!(g["offsets"][1]["committed_offset"], 6, "-1: the log end");
    assert_eq!(g["offsets"][1]["lag"], 0);
    assert_eq!(g["total_lag"], 15);
    let groups = stack.json("/api/groups").await;
    assert_eq!(
        (groups[0]["group"].clone(), groups[0]["total_lag"].clone()),
        ("reset".into(), 15.into())
    );

    let m = stack.metrics().await;
    let p0 = r#"group="reset",topic="orders",partition="0""#;
    let p1 = r#"group="reset",topic="orders",partition="1""#;
    assert_eq!(find_sample(&m, "minikafka_group_committed_offset", p0), Some(5.0), "{m}");
    assert_eq!(find_sample(&m, "minikafka_group_lag", p0), Some(15.0));
    assert_eq!(find_sample(&m, "minikafka_group_committed_offset", p1), Some(6.0));
    assert_eq!(find_sample(&m, "minikafka_group_lag", p1), Some(0.0));
    // The raw commit is untouched: Kafka's OffsetFetch still answers -2 and -1.
    assert_eq!(
        stack.broker.committed_offset_with_metadata("reset", TOPIC, 0).unwrap(),
        Some((-2, String::new()))
    );
    drop((producer, conn));
    stack.stop().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The same counters fill from the Kafka listener: an unmodified Kafka client's produce and
/// fetch show up per partition, its requests and connections under `listener="kafka"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_traffic_is_counted_under_its_listener() {
    use minikafka::kafka::{KafkaConfig, KafkaServer};
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;

    let stack = Stack::start().await;
    let kafka =
        KafkaServer::bind(KafkaConfig::new("127.0.0.1:0".parse().unwrap()), stack.broker.clone())
            .await
            .unwrap();
    let kafka_addr = kafka.local_addr().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move { kafka.run(async move { drop(rx.await) }).await.unwrap() });

    let client = ClientBuilder::new(vec![kafka_addr]).build().await.unwrap();
    client.controller_client().unwrap().create_topic("k", 2, 1, 5_000).await.unwrap();
    let p1 = client.partition_client("k", 1, UnknownTopicHandling::Retry).await.unwrap();
    let batch: Vec<Record> = (0..25)
        .map(|i| Record {
            key: None,
            value: Some(format!("v{i}").into_bytes()),
            headers: Default::default(),
            timestamp: rskafka::chrono::TimeZone::timestamp_millis_opt(
                &rskafka::chrono::Utc,
                1_700_000_000_000,
            )
            .unwrap(),
        })
        .collect();
    p1.produce(batch.clone(), Compression::NoCompression).await.unwrap();
    p1.produce(batch, Compression::NoCompression).await.unwrap();
    let mut offset = 0;
    while offset < 50 {
        let (recs, _) = p1.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        offset += recs.len() as i64;
    }

    let m = stack.metrics().await;
    let p = r#"topic="k",partition="1""#;
    let kafka_l = r#"listener="kafka""#;
    assert_eq!(find_sample(&m, "minikafka_append_records_total", p), Some(50.0), "{m}");
    let stored = stack.broker.describe_topic("k").unwrap().partitions[1].size_bytes;
    let appended = find_sample(&m, "minikafka_append_bytes_total", p).unwrap();
    assert!(appended > 0.0 && appended <= stored as f64, "{appended} of {stored} stored");
    assert_eq!(find_sample(&m, "minikafka_fetch_records_total", p), Some(50.0));
    assert_eq!(find_sample(&m, "minikafka_produce_duration_seconds_count", kafka_l), Some(2.0));
    assert_eq!(
        find_sample(&m, "minikafka_requests_total", r#"listener="kafka",api="produce""#),
        Some(2.0)
    );
    assert!(find_sample(&m, "minikafka_connections", kafka_l).unwrap() >= 1.0);
    assert_eq!(find_sample(&m, "minikafka_log_end_offset", p), Some(50.0));

    drop((p1, client));
    let _ = tx.send(());
    tokio::time::timeout(DEADLINE, task).await.expect("Kafka listener stops").unwrap();
    stack.stop().await;
}

/// With the broker's auth token set, data needs `Authorization: Bearer <token>`; the page
/// itself (no data) still loads so it can ask for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_token_guards_the_api_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() })
            .unwrap();
    let http =
        HttpServer::bind("127.0.0.1:0".parse().unwrap(), broker.clone(), broker.metrics().clone())
            .await
            .unwrap()
            .with_auth_token(Some("s3cret".into()));
    let addr = http.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move { http.run(async move { drop(rx.await) }).await.unwrap() });

    async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let auth = auth.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
        let req =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{auth}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        tokio::time::timeout(DEADLINE, s.read_to_string(&mut raw)).await.unwrap().unwrap();
        let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
        (status, raw)
    }
    for path in ["/metrics", "/api/topics", "/api/groups", "/api/rates", "/api/cluster"] {
        assert_eq!(get(addr, path, None).await.0, 401, "{path} without a token");
        assert_eq!(get(addr, path, Some("Bearer wrong")).await.0, 401, "{path} wrong token");
        assert_eq!(get(addr, path, Some("Bearer s3cret")).await.0, 200, "{path} with the token");
    }
    let (status, raw) = get(addr, "/api/topics", None).await;
    assert_eq!(status, 401);
    assert!(raw.to_ascii_lowercase().contains("www-authenticate: bearer"), "{raw}");
    assert_eq!(get(addr, "/", None).await.0, 200, "the page loads to ask for the token");
    assert_eq!(get(addr, "/assets/app.js", None).await.0, 200);

    let _ = tx.send(());
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    broker.shutdown().unwrap();
}

/// An operator opens the console of a broker started without `--controllers`: it is a healthy
/// cluster of one, its own controller (alive, the only voter), listed at the address native
/// clients use, with nothing under-replicated, offline or moving (and no throttle), and a topic
/// created from the console is led by it. Its metrics carry the cluster series with a cluster of
/// one's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_single_broker_as_a_cluster_of_one() {
    let stack = Stack::start().await;
    let (status, body) =
        http(stack.http, "POST", "/api/topics", Some(r#"{"name": "orders", "partitions": 2}"#))
            .await;
    assert_eq!(status, 201, "{body}");

    let cluster = stack.json("/api/cluster").await;
    let native = stack.native.to_string();
    assert_eq!(
        cluster,
        serde_json::json!({
            "node_id": 0,
            "clustered": false,
            "controller": 0,
            "brokers": [{
                "id": 0,
                "native_addr": native,
                "kafka_addr": null,
                "cluster_addr": null,
                "fenced": false,
                "decommissioned": false,
                "voter": true,
                "state": "alive",
                "role": "controller",
            }],
            "under_replicated": [],
            "offline": [],
            "partitions": [
                { "topic": "orders", "partition": 0, "leader": 0, "leader_epoch": 0,
                  "replicas": [0], "isr": [0], "offline_replicas": [] },
                { "topic": "orders", "partition": 1, "leader": 0, "leader_epoch": 0,
                  "replicas": [0], "isr": [0], "offline_replicas": [] },
            ],
            "reassignments": [],
            "throttle_bytes_per_s": null,
        })
    );
    let m = stack.metrics().await;
    for (series, value) in [
        ("minikafka_controller_leader", 1.0),
        ("minikafka_raft_commit_index", 0.0),
        ("minikafka_under_replicated_partitions", 0.0),
        ("minikafka_offline_partitions", 0.0),
        ("minikafka_isr_shrinks_total", 0.0),
        ("minikafka_isr_expands_total", 0.0),
    ] {
        assert_eq!(find_sample(&m, series, ""), Some(value), "{series} in:\n{m}");
    }
    // No followers: no lag samples (an empty family is not written at all).
    assert!(!m.contains("minikafka_replica_lag_records"), "{m}");

    let (brokers, partitions) = Admin::new(stack.connect().await)
        .describe_partitions(Some("orders"))
        .await
        .expect("the native listener describes the partitions");
    let listed: Vec<_> = brokers.iter().map(|b| (b.id, b.native_addr.clone())).collect();
    assert_eq!(listed, vec![(0, Some(native))]);
    let leaders: Vec<_> = partitions.iter().map(|p| (p.partition, p.leader)).collect();
    assert_eq!(leaders, vec![(0, Some(0)), (1, Some(0))]);
    stack.stop().await;
}
