//! Golden fixture: three small segments with their indexes, written by format version 1 and
//! committed in tests/fixtures/storage_golden/. The current code must read them back exactly, and
//! must still write the very same bytes for the same records; an accidental change to the record,
//! segment or index format fails here. To regenerate after a deliberate format change (and a
//! version bump): `cargo test --test storage_golden -- --ignored regenerate`.

use minikafka::record::{Header, NewRecord, Record};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/storage_golden")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256,
        index_interval_bytes: 64,
        max_record_bytes: 1024,
        fsync: FsyncPolicy::Never,
        retention_bytes: None,
        retention_ms: None,
    }
}

/// The records of the fixture, in order: every field kind appears (key or not, headers with and
/// without values, empty value, negative timestamp).
fn expected() -> Vec<Record> {
    (0..8u64)
        .map(|i| Record {
            offset: i,
            timestamp_ms: if i == 3 { -42 } else { 1_700_000_000_000 + i as i64 },
            key: (i % 2 == 0).then(|| format!("key-{i}").into_bytes()),
            value: if i == 5 { Vec::new() } else { format!("value number {i}").into_bytes() },
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

fn write_fixture(dir: &Path) {
    let log = Log::open(dir, config()).unwrap();
    for r in expected() {
        let new = NewRecord {
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: &r.value,
            headers: &r.headers,
        };
        assert_eq!(log.append(&[new]).unwrap().first, r.offset);
    }
    log.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn the_committed_fixture_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), tmp.path());
    let log = Log::open(tmp.path(), config()).unwrap();
    let d = log.describe();
    assert_eq!((d.log_start_offset, d.next_offset, d.segments), (0, 8, 3));
    let mut got = Vec::new();
    let mut at = 0;
    while at < log.next_offset() {
        let s = log.read(at, 1 << 20).unwrap();
        got.extend(s.records().map(|r| r.unwrap().to_record()));
        at = s.next_offset();
    }
    assert_eq!(got, expected());
    assert_eq!(log.offset_for_timestamp(1_700_000_000_006).unwrap(), Some(6));
}

#[test]
fn this_version_still_writes_the_fixture_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    write_fixture(tmp.path());
    let fixture = fixture_dir();
    assert_eq!(file_names(tmp.path()), file_names(&fixture));
    for name in file_names(&fixture) {
        let want = std::fs::read(fixture.join(&name)).unwrap();
        let have = std::fs::read(tmp.path().join(&name)).unwrap();
        assert!(want == have, "{name} differs from the golden fixture: the format changed");
    }
    assert_eq!(&std::fs::read(fixture.join("00000000000000000000.log")).unwrap()[..4], b"MKLG");
    assert_eq!(&std::fs::read(fixture.join("00000000000000000000.index")).unwrap()[..4], b"MKIX");
}

#[test]
#[ignore = "rewrites the committed fixture; run only after a deliberate format change"]
fn regenerate() {
    let dir = fixture_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    write_fixture(&dir);
}
