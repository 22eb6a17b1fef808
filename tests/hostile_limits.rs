//! Limits and names, as a hostile client meets them: every refused request gets a clear error and
//! leaves the data directory exactly as it was (compared file by file, contents included).
//! Covers: topic and group names that try to leave the data directory (`..`, `/`, `\`, NUL, `@`,
//! 250 characters, non-ASCII), names that differ only by case or by `.` vs `_` (both allowed: see
//! README.md's "Durability and safety"), max frame, max record, max fetch bytes, max topics, max
//! partitions.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use minikafka::batch::Compression;
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::client::Connection;
use minikafka::protocol::{self, ErrorCode, Request, Response};
use minikafka::record::{self, NewRecord};
use minikafka::server::{Server, ServerConfig};
use minikafka::storage::LogConfig;

const MAX_FRAME: u32 = 64 * 1024;
const MAX_RECORD: u32 = 16 * 1024;

/// Every file under `dir` with its contents (directories as empty entries).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

struct Fixture {
    addr: String,
    root: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _broker: Arc<Broker>,
}

async fn start() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig {
        data_dir: root.path().join("data"),
        // Small segments: the snapshots read every file (a default segment is a 1 GiB sparse file).
        log: LogConfig {
            max_record_bytes: MAX_RECORD,
            segment_bytes: 256 * 1024,
            ..LogConfig::default()
        },
        max_topics: 3,
        max_partitions: 8,
        ..BrokerConfig::default()
    })
    .unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_frame_bytes: MAX_FRAME,
        ..ServerConfig::default()
    };
    let server = Server::bind(config, broker.clone()).await.unwrap();
    let addr = server.local_addr().to_string();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = rx.await;
            })
            .await;
    });
    Fixture { addr, root, stop, task, _broker: broker }
}

/// One uncompressed RecordBatch v2 of `values`, as a producer sends it.
fn records(values: &[&[u8]]) -> Bytes {
    let recs: Vec<NewRecord<'_>> = values.iter().map(|v| NewRecord::value(v)).collect();
    record::build_batch(&recs, Compression::None).unwrap().into()
}

/// A batch of the record "fine" and one of `fill` bytes, `total` bytes long in all.
fn batch_of_len(total: usize) -> Bytes {
    let mut fill = total;
    for _ in 0..100 {
        let big = vec![b'r'; fill];
        let b = records(&[b"fine", &big]);
        if b.len() == total {
            return b;
        }
        // The varint lengths may change size with the value: step towards the target.
        fill = if b.len() > total { fill - 1.max((b.len() - total) / 2) } else { fill + 1 };
    }
    panic!("no batch of exactly {total} bytes (a varint length changes size there)");
}

/// Sends `req`, asserts it is refused with `code` and that the data directory did not change.
async fn refused(f: &Fixture, conn: &Connection, req: Request, code: ErrorCode, cases: &mut u32) {
    let data = f.root.path().join("data");
    let before = snapshot(&data);
    let what = format!("{req:?}");
    let what = &what[..what.len().min(120)];
    match conn.request(&req).await {
        Err(e) => {
            assert_eq!(e.code(), Some(code), "{what}: {e}");
            assert!(!e.to_string().is_empty());
        }
        Ok(r) => panic!("{what} was accepted: {r:?}"),
    }
    assert_eq!(snapshot(&data), before, "{what}: a refused request changed the data directory");
    // Nothing was created outside the data directory either.
    let mut outside: Vec<_> = std::fs::read_dir(f.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        vec!["data".to_string()],
        "{what}: something appeared next to the data dir"
    );
    *cases += 1;
}

#[test]
fn hostile_names_and_oversized_requests_are_refused_without_touching_the_disk() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    rt.unwrap().block_on(async {
        let f = start().await;
        let conn = Connection::connect(&f.addr).await.unwrap();
        let mut cases = 0u32;
        conn.request(&Request::CreateTopic { name: "ok".into(), partitions: 2, if_not_exists: false, configs: vec![] })
            .await
            .unwrap();

        let long = "a".repeat(250);
        let bad_names = [
            "", ".", "..", "../escape", "..\\escape", "a/b", "/abs", "a\\b", "nul\0byte", "@groups",
            "@creating", "sp ace", "tab\t", "ünïcode", "semi;colon", "star*", "new\nline", &long,
        ];
        for name in bad_names {
            for req in [
                Request::CreateTopic { name: name.into(), partitions: 1, if_not_exists: false, configs: vec![] },
                Request::Append {
                    topic: name.into(),
                    partition: None,
                    key_hint: None,
                    records: records(&[b"x"]),
                },
                Request::Fetch {
                    topic: name.into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 100,
                    max_wait_ms: 0,
                },
                Request::DeleteTopic { name: name.into() },
                Request::Trim { topic: name.into(), partition: 0, before: 0 },
                Request::Describe { topic: Some(name.into()) },
            ] {
                refused(&f, &conn, req, ErrorCode::InvalidTopicName, &mut cases).await;
            }
            let commit = Request::CommitOffset {
                group: name.into(),
                topic: "ok".into(),
                partition: 0,
                offset: 0,
            };
            refused(&f, &conn, commit, ErrorCode::InvalidGroupName, &mut cases).await;
        }
        // 249 characters is the longest valid name, and it fits the file system.
        let longest = "b".repeat(249);
        conn.request(&Request::CreateTopic { name: longest.clone(), partitions: 1, if_not_exists: false, configs: vec![] })
            .await
            .expect("a 249-character name is valid");
        conn.request(&Request::DeleteTopic { name: longest }).await.unwrap();

        // Names differing only by case, or by '.' vs '_', are distinct topics (case-sensitive
        // file system; no metrics namespace where they could collide).
        for (a, b) in [("Foo", "foo"), ("foo.bar", "foo_bar")] {
            for n in [a, b] {
                conn.request(&Request::CreateTopic { name: n.into(), partitions: 1, if_not_exists: false, configs: vec![] })
                    .await
                    .unwrap_or_else(|e| panic!("{n}: {e}"));
            }
            let data = f.root.path().join("data");
            assert!(data.join(a).is_dir() && data.join(b).is_dir());
            for n in [a, b] {
                conn.request(&Request::DeleteTopic { name: n.into() }).await.unwrap();
            }
        }

        // Max topics (3, "ok" is one) and max partitions (8).
        for n in ["t2", "t3"] {
            conn.request(&Request::CreateTopic { name: n.into(), partitions: 1, if_not_exists: false, configs: vec![] })
                .await
                .unwrap();
        }
        let one_more = Request::CreateTopic { name: "t4".into(), partitions: 1, if_not_exists: false, configs: vec![] };
        refused(&f, &conn, one_more, ErrorCode::LimitExceeded, &mut cases).await;
        conn.request(&Request::DeleteTopic { name: "t3".into() }).await.unwrap();
        for parts in [9, 1000, u32::MAX] {
            let req = Request::CreateTopic { name: "wide".into(), partitions: parts, if_not_exists: false, configs: vec![] };
            refused(&f, &conn, req, ErrorCode::LimitExceeded, &mut cases).await;
        }
        let zero = Request::CreateTopic { name: "zero".into(), partitions: 0, if_not_exists: false, configs: vec![] };
        refused(&f, &conn, zero, ErrorCode::InvalidRequest, &mut cases).await;

        // Max record (a whole batch, as Kafka's max.message.bytes): one byte over the limit is
        // refused, the batch is not partly stored; a batch of exactly the limit is taken.
        let req = Request::Append {
            topic: "ok".into(),
            partition: Some(0),
            key_hint: None,
            records: batch_of_len(MAX_RECORD as usize + 1),
        };
        refused(&f, &conn, req, ErrorCode::RecordTooLarge, &mut cases).await;
        let req = Request::Append {
            topic: "ok".into(),
            partition: Some(0),
            key_hint: None,
            records: batch_of_len(MAX_RECORD as usize),
        };
        conn.request(&req).await.expect("a batch of exactly max_record_bytes is taken");
        // Unknown partitions.
        let req = Request::Append {
            topic: "ok".into(),
            partition: Some(u32::MAX),
            key_hint: None,
            records: records(&[b"x"]),
        };
        refused(&f, &conn, req, ErrorCode::UnknownPartition, &mut cases).await;

        // Max fetch bytes: asking for 4 GiB gets a response that fits the frame limit.
        for _ in 0..20 {
            let req = Request::Append {
                topic: "ok".into(),
                partition: Some(1),
                key_hint: None,
                records: records(&[&vec![b'f'; 8 * 1024]]),
            };
            conn.request(&req).await.unwrap();
        }
        let fetch = Request::Fetch {
            topic: "ok".into(),
            partition: 1,
            offset: 0,
            max_bytes: u32::MAX,
            max_wait_ms: 0,
        };
        let Response::Fetched { records: got, .. } = conn.request(&fetch).await.unwrap() else {
            panic!("fetch failed")
        };
        assert!(!got.is_empty() && got.len() <= MAX_FRAME as usize, "{}", got.len());

        // Max frame: a length prefix over the limit gets an error and the connection is closed
        // before the body is read (or allocated).
        let data = f.root.path().join("data");
        let before = snapshot(&data);
        let mut s = TcpStream::connect(&f.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut frame = BytesMut::new();
        protocol::encode_request(
            &mut frame,
            9,
            &Request::Append {
                topic: "ok".into(),
                partition: Some(0),
                key_hint: None,
                records: records(&[&vec![b'z'; MAX_FRAME as usize]]),
            },
        );
        let _ = s.write_all(&frame);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(answer.len() > 4, "an error frame comes back");
        let (_, resp) = protocol::decode_response(&answer[4..]).unwrap();
        assert!(
            matches!(resp, Response::Error { code: ErrorCode::FrameTooLarge, .. }),
            "{resp:?}"
        );
        assert_eq!(snapshot(&data), before, "an oversized frame changed the data directory");
        cases += 1;

        println!("limits and names: {cases} refused requests, each with a clear error and no change on disk");
        let _ = f.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), f.task).await;
    });
}
