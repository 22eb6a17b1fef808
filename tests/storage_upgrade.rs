//! Upgrade from segment format version 1: data written by the release before RecordBatch v2
//! storage opens with this one, every record (offset, timestamp, key, value, headers), log start
//! offset and committed group offset intact, and its segments are rewritten as version 2.
//! Inputs: tests/fixtures/storage_golden (one log, format v1; its records are listed in
//! tests/storage_golden.rs) and tests/fixtures/upgrade_v1 (a whole broker data directory, how it
//! was made in its README.md).

mod common;

use std::path::{Path, PathBuf};

use common::BrokerProcess;
use minikafka::client::{Admin, Connection, Consumer, ConsumerConfig, StartFrom};
use minikafka::record::{Header, Record};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Copies a directory tree (files and subdirectories).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The `.log` files under `dir` (recursively), sorted.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(segment_files(&p));
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The format version in a segment file's header (`MKLG`, then a little-endian u16).
fn segment_version(path: &Path) -> u16 {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"MKLG", "{}", path.display());
    u16::from_le_bytes([b[4], b[5]])
}

fn assert_all_version_2(dir: &Path) {
    let files = segment_files(dir);
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(segment_version(&f), 2, "{} was not upgraded", f.display());
    }
}

// ---- (1) the golden fixture of format version 1, opened as a log ----

fn golden_config() -> LogConfig {
    LogConfig {
        segment_bytes: 256,
        index_interval_bytes: 64,
        max_record_bytes: 1024,
        fsync: FsyncPolicy::Never,
        retention_bytes: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The records of tests/fixtures/storage_golden, as tests/storage_golden.rs wrote them.
fn golden_records() -> Vec<Record> {
    (0..8u64)
        .map(|i| Record {
            offset: i,
            timestamp_ms: if i == 3 { -42 } else { 1_700_000_000_000 + i as i64 },
            key: (i % 2 == 0).then(|| format!("key-{i}").into_bytes()),
            value: Some(if i == 5 { Vec::new() } else { format!("value number {i}").into_bytes() }),
            headers: if i % 3 == 0 {
                vec![
                    Header { key: b"trace".to_vec(), value: Some(format!("t{i}").into_bytes()) },
                    Header { key: b"null".to_vec(), value: None },
                ]
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn read_all(log: &Log) -> Vec<Record> {
    let mut got = Vec::new();
    let mut at = log.describe().log_start_offset;
    while at < log.next_offset() {
        let s = log.read(at, 1 << 20).unwrap();
        got.extend(s.records().map(|r| r.unwrap()));
        at = s.next_offset();
    }
    got
}

/// Awaits the storage rewrite: today's engine reads v1 natively and never upgrades, so the
/// version-2 assertion fails until `recovery::recover` calls `upgrade::upgrade_log_dir`.
#[test]
fn the_v1_golden_log_opens_upgraded_with_every_record_intact() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture("storage_golden"), tmp.path());
    for f in segment_files(tmp.path()) {
        assert_eq!(segment_version(&f), 1, "the fixture is format version 1");
    }
    for open in 0..2 {
        // The second open finds version 2 segments and reads them the same.
        let log = Log::open(tmp.path(), golden_config()).unwrap();
        let d = log.describe();
        assert_eq!((d.log_start_offset, d.next_offset, d.segments), (0, 8, 3), "open {open}");
        assert_eq!(read_all(&log), golden_records(), "open {open}");
        assert_eq!(log.offset_for_timestamp(1_700_000_000_006).unwrap(), Some(6));
        log.close().unwrap();
        assert_all_version_2(tmp.path());
    }
}

// ---- (2) a broker data directory written by the format-1 release ----

const TOPIC: &str = "upgraded";
const GROUP: &str = "upgraders";
const PER_PARTITION: u64 = 40;
/// Partition 0 was trimmed before this offset; partition 1 starts at 0.
const TRIMMED_BEFORE: u64 = 18;

/// Record `i` of partition `p` exactly as tests/fixtures/upgrade_v1/make_fixture.rs produced it.
fn fixture_record(p: u32, i: u64) -> Record {
    let headers = match i % 3 {
        0 => vec![
            Header { key: b"trace".to_vec(), value: Some(format!("t-{p}-{i}").into_bytes()) },
            Header { key: b"null".to_vec(), value: None },
        ],
        1 => vec![Header { key: b"empty".to_vec(), value: Some(Vec::new()) }],
        _ => Vec::new(),
    };
    Record {
        offset: i,
        timestamp_ms: 1_700_000_000_000 + 1000 * i as i64 + i64::from(p),
        key: (!i.is_multiple_of(5)).then(|| format!("key-{p}-{i}").into_bytes()),
        value: Some(if i % 7 == 3 {
            Vec::new()
        } else {
            format!("value {p}/{i} ").repeat(3).into_bytes()
        }),
        headers,
    }
}

fn expected_partition(p: u32) -> Vec<Record> {
    let start = if p == 0 { TRIMMED_BEFORE } else { 0 };
    (start..PER_PARTITION).map(|i| fixture_record(p, i)).collect()
}

/// Checks, through the Rust client, everything the old release stored.
async fn check_broker_data(addr: &str) {
    let conn = Connection::connect(addr).await.unwrap();
    let admin = Admin::new(conn.clone());
    let d = admin.describe_topic(TOPIC).await.unwrap();
    assert_eq!(d.offline, None);
    assert_eq!(d.partitions.len(), 2);
    for p in &d.partitions {
        assert_eq!(p.offline, None, "partition {}", p.partition);
        let start = if p.partition == 0 { TRIMMED_BEFORE } else { 0 };
        assert_eq!((p.log_start_offset, p.next_offset), (start, PER_PARTITION), "{p:?}");
    }

    let config = ConsumerConfig { stop_at_end: true, ..ConsumerConfig::default() };
    let mut consumer =
        Consumer::new(conn.clone(), TOPIC, StartFrom::Beginning, config).await.unwrap();
    let mut got: [Vec<Record>; 2] = [Vec::new(), Vec::new()];
    while let Some(r) = consumer.next().await.unwrap() {
        got[r.partition as usize].push(Record {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r.headers,
        });
    }
    for p in 0..2u32 {
        assert_eq!(got[p as usize], expected_partition(p), "partition {p}");
    }

    let offsets: Vec<(String, u32, u64)> = admin
        .group_offsets(GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    assert_eq!(offsets, vec![(TOPIC.to_string(), 0, 25), (TOPIC.to_string(), 1, 7)]);
    let config = ConsumerConfig { group: Some(GROUP.into()), ..ConsumerConfig::default() };
    let resumed = Consumer::new(conn, TOPIC, StartFrom::Committed, config).await.unwrap();
    assert_eq!((resumed.position(0), resumed.position(1)), (Some(25), Some(7)));
}

/// Awaits the storage rewrite, like the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_broker_data_dir_opens_with_records_log_start_and_group_offsets_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_tree(&fixture("upgrade_v1/data"), &data);
    for f in segment_files(&data) {
        assert_eq!(segment_version(&f), 1, "the fixture is format version 1");
    }

    let mut broker = BrokerProcess::start(&data, &["--segment-bytes", "1024"]);
    check_broker_data(&broker.addr).await;
    assert_all_version_2(&data);
    let log = broker.log();
    assert!(
        log.contains("upgrading segments from format version 1 to 2"),
        "the upgrade logs its progress:\n{log}"
    );

    // A restart finds nothing left to convert and serves the same data.
    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    check_broker_data(&broker.addr).await;
    assert!(!broker.log().contains("upgrading segments"), "nothing converted twice");
}
