//! Issue 11, items 19, 20 and 13 (broker part), driving the real binary: one damaged or missing
//! file takes only its own partition, topic or group offline (reported in the log, `topic
//! describe`, its requests' errors and the metrics), never the broker, and nothing is re-created
//! or allocated from a damaged count; a topic creation that fails for want of file descriptors
//! leaves nothing behind, so the broker restarts with every listed topic whole.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{BIN, fails, ok, run_cli};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Kafka's KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;

/// How long a debug broker on a busy machine may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A broker with its console on (for `/metrics`) and optionally a low open-file limit.
struct Node {
    child: Child,
    addr: String,
    http: String,
    kafka: String,
    log: PathBuf,
}

impl Node {
    fn start(data: &Path, extra: &[&str], nofile: Option<u64>) -> Node {
        let log = data.with_extension("broker.log");
        for _ in 0..5 {
            let [addr, http, kafka] = [0; 3].map(|_| format!("127.0.0.1:{}", free_port()));
            let mut cmd = Command::new(BIN);
            cmd.arg("broker")
                .arg("--data-dir")
                .arg(data)
                .args(["--listen", &addr, "--http-listen", &http, "--kafka-listen", &kafka])
                .args(extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            if let Some(n) = nofile {
                // SAFETY: setrlimit(2) is async-signal-safe and touches no memory of the parent;
                // soft and hard both, so raising the soft limit at start-up cannot undo it.
                unsafe {
                    cmd.pre_exec(move || {
                        let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let mut child = cmd.spawn().expect("spawn the broker");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if TcpStream::connect(&addr).is_ok() && TcpStream::connect(&http).is_ok() {
                    return Node { child, addr, http, kafka, log };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("the broker did not start; its log:\n{}", std::fs::read_to_string(&log).unwrap());
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        run_cli(&self.addr, args, None)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One gauge of `/metrics` (no labels).
    fn gauge(&self, name: &str) -> f64 {
        let mut s = TcpStream::connect(&self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
    }

    /// GET an `/api` path; the body.
    fn api(&self, path: &str) -> String {
        let mut s = TcpStream::connect(&self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// One Kafka request and its response body, over a fresh connection.
    fn kafka<Req: Encodable, Resp: Decodable>(&self, key: ApiKey, version: i16, req: &Req) -> Resp {
        let mut s = TcpStream::connect(&self.kafka).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("damage-test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        s.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&buf).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        Resp::decode(&mut body, version).unwrap()
    }

    /// SIGTERM and wait (a clean stop writes the clean-shutdown markers).
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn one_damaged_file_takes_only_its_partition_topic_or_group_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data, &["--segment-bytes", "4096"], None);
    for (t, n) in [("good", "1"), ("seg", "2"), ("ckpt", "1"), ("meta", "1")] {
        ok(node.cli(&["topic", "create", t, "--partitions", n]));
    }
    let big = "x".repeat(1000);
    let values: Vec<&str> = std::iter::repeat_n(big.as_str(), 12).collect();
    for v in &values {
        ok(node.cli(&["produce", "seg", "--partition", "0", v]));
    }
    ok(node.cli(&["produce", "ckpt", "a", "b", "c"]));
    ok(node.cli(&["topic", "trim", "ckpt", "--before", "1"]));
    ok(node.cli(&["produce", "good", "g1"]));
    ok(node.cli(&["consume", "good", "--group", "g1"]));
    ok(node.cli(&["consume", "good", "--group", "g2"]));
    node.stop();

    // The damage: a middle segment's header, a checkpoint, a topic.json, a group file.
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("seg/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "several segments: {segments:?}");
    let middle = segments[1].clone();
    let mut bytes = std::fs::read(&middle).unwrap();
    bytes[..8].fill(0xAB);
    std::fs::write(&middle, &bytes).unwrap();
    let checkpoint = data.join("ckpt/0/log-start-offset");
    std::fs::write(&checkpoint, b"garbage").unwrap();
    let topic_json = data.join("meta/topic.json");
    std::fs::write(&topic_json, b"{\"partit").unwrap();
    let group_file = data.join("@groups/g1.json");
    std::fs::write(&group_file, b"{\"offsets\": [").unwrap();

    let node = Node::start(&data, &["--segment-bytes", "4096"], None);
    let log = node.log();
    for file in [&middle, &checkpoint, &topic_json, &group_file] {
        let name = file.display().to_string();
        assert!(
            log.lines().any(|l| l.contains("ERROR") && l.contains(&name)),
            "an error-level line names {name}:\n{log}"
        );
    }

    // The rest is served: reads and writes of the good topic, the good partition, the good group.
    ok(node.cli(&["produce", "good", "g2"]));
    assert_eq!(ok(node.cli(&["consume", "good", "--from-beginning"])), "g1\ng2\n");
    ok(node.cli(&["produce", "seg", "--partition", "1", "fine"]));
    assert_eq!(ok(node.cli(&["consume", "seg", "--partition", "1", "--from-beginning"])), "fine\n");
    assert!(ok(node.cli(&["group", "describe", "g2"])).contains("good"));

    // The damaged ones fail clearly, naming the file.
    let err = fails(node.cli(&["produce", "seg", "--partition", "0", "lost"]));
    assert!(err.contains("offline") && err.contains(&middle.display().to_string()), "{err}");
    let err = fails(node.cli(&["consume", "seg", "--partition", "0", "--from-beginning"]));
    assert!(err.contains("offline") && err.contains(&middle.display().to_string()), "{err}");
    let err = fails(node.cli(&["consume", "ckpt", "--from-beginning"]));
    assert!(err.contains("log-start-offset"), "{err}");
    let err = fails(node.cli(&["produce", "meta", "x"]));
    assert!(err.contains("offline") && err.contains(&topic_json.display().to_string()), "{err}");
    let err = fails(node.cli(&["group", "describe", "g1"]));
    assert!(err.contains("offline") && err.contains("g1.json"), "{err}");

    // describe: a line per offline part in the table, a field in --json.
    let table = ok(node.cli(&["topic", "describe"]));
    assert!(table.contains("topic seg partition 0 offline: "), "{table}");
    assert!(table.contains("topic meta offline: "), "{table}");
    assert!(table.contains(&topic_json.display().to_string()), "{table}");
    let seg = json(&ok(node.cli(&["topic", "describe", "seg", "--json"])));
    let reason = seg["partitions"][0]["offline"].as_str().expect("an offline reason");
    assert!(reason.contains(&middle.display().to_string()), "{seg}");
    assert!(seg["partitions"][1].get("offline").is_none(), "{seg}");
    let meta = json(&ok(node.cli(&["topic", "describe", "meta", "--json"])));
    assert!(meta["offline"].as_str().unwrap().contains("topic.json"), "{meta}");

    // Kafka clients see KAFKA_STORAGE_ERROR for exactly the damaged parts.
    let topic = |n: &'static str| {
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(n))))
    };
    let md: MetadataResponse = node.kafka(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(Some(vec![topic("seg"), topic("meta")])),
    );
    let seg_md = md.topics.iter().find(|t| t.name.as_deref().map(|n| &**n) == Some("seg")).unwrap();
    let errors: Vec<(i32, i16)> =
        seg_md.partitions.iter().map(|p| (p.partition_index, p.error_code)).collect();
    assert_eq!(errors, [(0, KAFKA_STORAGE_ERROR), (1, 0)]);
    let meta_md =
        md.topics.iter().find(|t| t.name.as_deref().map(|n| &**n) == Some("meta")).unwrap();
    assert_eq!(meta_md.error_code, KAFKA_STORAGE_ERROR);
    let fetch =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("seg")))
                .with_partitions(
                    (0..2)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_partition_max_bytes(1 << 16)
                        })
                        .collect(),
                ),
        ]);
    let fetched: FetchResponse = node.kafka(ApiKey::Fetch, 4, &fetch);
    let errors: Vec<(i32, i16)> =
        fetched.responses[0].partitions.iter().map(|p| (p.partition_index, p.error_code)).collect();
    assert_eq!(errors, [(0, KAFKA_STORAGE_ERROR), (1, 0)]);

    let list = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("seg")))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1)
                    })
                    .collect(),
            ),
    ]);
    let listed: ListOffsetsResponse = node.kafka(ApiKey::ListOffsets, 1, &list);
    let errors: Vec<(i32, i16)> =
        listed.topics[0].partitions.iter().map(|p| (p.partition_index, p.error_code)).collect();
    assert_eq!(errors, [(0, KAFKA_STORAGE_ERROR), (1, 0)]);

    // The console's topic API and the metrics.
    let api = node.api("/api/topics/meta");
    assert!(api.contains("\"offline\"") && api.contains("topic.json"), "{api}");
    let api = node.api("/api/topics/seg");
    assert!(api.contains("\"offline\"") && api.contains(".log"), "{api}");
    let api = node.api("/api/groups/g1");
    assert!(api.contains("offline") && api.contains("g1.json"), "{api}");
    assert_eq!(node.gauge("minikafka_offline_partitions"), 2.0); // seg/0, ckpt/0
    assert_eq!(node.gauge("minikafka_offline_topics"), 1.0);
    assert_eq!(node.gauge("minikafka_offline_groups"), 1.0);

    // The damaged files are left as they were for the operator.
    assert_eq!(std::fs::read(&middle).unwrap(), bytes);
    assert_eq!(std::fs::read(&group_file).unwrap(), b"{\"offsets\": [");
    // Recovery by deleting the topic works.
    ok(node.cli(&["topic", "delete", "meta"]));
    ok(node.cli(&["topic", "create", "meta"]));
    ok(node.cli(&["produce", "meta", "back"]));
}

#[test]
fn a_deleted_partition_directory_is_offline_not_recreated_at_offset_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data, &[], None);
    ok(node.cli(&["topic", "create", "t", "--partitions", "3"]));
    ok(node.cli(&["produce", "t", "--partition", "1", "a", "b", "c"]));
    ok(node.cli(&["consume", "t", "--partition", "1", "--group", "g"]));
    node.stop();
    let p1 = data.join("t/1");
    std::fs::remove_dir_all(&p1).unwrap();

    let node = Node::start(&data, &[], None);
    let err = fails(node.cli(&["produce", "t", "--partition", "1", "reused?"]));
    assert!(err.contains("offline") && err.contains(&p1.display().to_string()), "{err}");
    assert!(!p1.exists(), "the partition directory must not be re-created");
    ok(node.cli(&["produce", "t", "--partition", "0", "p0"]));
    ok(node.cli(&["produce", "t", "--partition", "2", "p2"]));
    let d = json(&ok(node.cli(&["topic", "describe", "t", "--json"])));
    assert!(d["partitions"][1]["offline"].as_str().unwrap().contains("is missing"), "{d}");
    assert_eq!(node.gauge("minikafka_offline_partitions"), 1.0);
    let log = node.log();
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains(&p1.display().to_string())));
}

#[test]
fn a_topic_json_claiming_too_many_partitions_takes_the_topic_offline_and_allocates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data, &[], None);
    for t in ["ok", "many", "huge", "fewer"] {
        ok(node.cli(&["topic", "create", t, "--partitions", "2"]));
    }
    node.stop();
    for (t, n) in [("many", "3000"), ("huge", "4000000000"), ("fewer", "5")] {
        std::fs::write(data.join(t).join("topic.json"), format!("{{\"partitions\": {n}}}"))
            .unwrap();
    }

    let node = Node::start(&data, &[], None);
    ok(node.cli(&["produce", "ok", "fine"]));
    for (t, claim) in [("many", "3000"), ("huge", "4000000000"), ("fewer", "5")] {
        assert_eq!(std::fs::read_dir(data.join(t)).unwrap().count(), 3, "{t}: nothing created");
        let d = json(&ok(node.cli(&["topic", "describe", t, "--json"])));
        let reason = d["offline"].as_str().unwrap_or_else(|| panic!("{t} offline: {d}"));
        assert!(reason.contains("topic.json") && reason.contains(claim), "{reason}");
        let err = fails(node.cli(&["consume", t, "--from-beginning"]));
        assert!(err.contains("offline") && err.contains("topic.json"), "{err}");
    }
    assert_eq!(node.gauge("minikafka_offline_topics"), 3.0);
    assert!(error_lines(&node).contains("topic.json"));
}

fn error_lines(node: &Node) -> String {
    node.log().lines().filter(|l| l.contains("ERROR")).collect::<Vec<_>>().join("\n")
}

/// `topic create NAME --partitions 8`, or why it failed. Out of descriptors, the broker may
/// not even accept the connection: a CLI still waiting after `limit` is killed and counts as
/// a failure too.
fn create_within(node: &Node, name: &str, limit: Duration) -> Result<(), String> {
    let mut child = Command::new(BIN)
        .args(["topic", "create", name, "--partitions", "8"])
        .env("MINIKAFKA_BROKER", &node.addr)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minikafka");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return if status.success() { Ok(()) } else { Err(err) };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn topic_creation_past_the_open_file_limit_leaves_nothing_half_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data, &[], Some(96));
    let mut created = Vec::new();
    let mut failure = None;
    for i in 0..400 {
        let name = format!("t{i}");
        match create_within(&node, &name, Duration::from_secs(30)) {
            Ok(()) => created.push(name),
            Err(err) => {
                failure = Some((name, err));
                break;
            }
        }
    }
    let (failed, err) = failure.expect("creation fails once the broker is out of descriptors");
    assert!(!created.is_empty(), "some topics fit under the limit: {err}");
    drop(node);

    let node = Node::start(&data, &[], None);
    let listed: Vec<String> = ok(node.cli(&["topic", "list"])).lines().map(str::to_owned).collect();
    assert!(!listed.contains(&failed), "the failed topic {failed} is not half there ({err})");
    for t in &created {
        assert!(listed.contains(t), "{t} was created and must be listed: {listed:?}");
    }
    let all = json(&ok(node.cli(&["topic", "describe", "--json"])));
    for t in all.as_array().unwrap() {
        assert!(t.get("offline").is_none(), "{t}");
        let parts = t["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 8, "{t}");
        assert!(parts.iter().all(|p| p.get("offline").is_none()), "{t}");
    }
    // Nothing else is left in the data directory: each entry is a listed topic or the broker's.
    for e in std::fs::read_dir(&data).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with('@') && name != "@creating" && name != "@deleting"
                || listed.contains(&name),
            "leftover {name} in the data directory"
        );
    }
    let last = created.last().unwrap();
    ok(node.cli(&["produce", last, "--partition", "7", "whole"]));
    assert_eq!(ok(node.cli(&["consume", last, "--partition", "7", "--from-beginning"])), "whole\n");
    ok(node.cli(&["topic", "create", &failed, "--partitions", "8"]));
}
