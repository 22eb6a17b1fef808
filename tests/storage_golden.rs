//! Golden fixture: small segments with their indexes and the partition's leader-epoch checkpoint,
//! written by segment format version 2 (RecordBatch v2) and committed in
//! tests/fixtures/storage_golden_v2/. The current code must read
//! them back exactly, and must still write the very same bytes for the same batches; an
//! accidental change to the batch, segment or index format fails here. To regenerate after a
//! deliberate format change (and a version bump):
//! `cargo test --test storage_golden -- --ignored regenerate`.
//!
//! The format version 1 fixture (tests/fixtures/storage_golden/) is not this test's: it stays as
//! it was committed, the input of the upgrade test (tests/storage_upgrade.rs).

use minikafka::batch::{self, Compression};
use minikafka::record::{self, Header, NewRecord, Record};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/storage_golden_v2")
}

fn config() -> LogConfig {
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

/// Offsets of the records appended together in one snappy-compressed batch. Snappy: its output
/// is fixed by the format's reference algorithm as the vendored crate implements it, so the
/// stored bytes stay comparable.
const COMPRESSED: std::ops::Range<u64> = 4..8;
/// The codec of that batch.
const CODEC: Compression = Compression::Snappy;

fn header(key: &str, value: Option<&str>) -> Header {
    Header { key: key.as_bytes().to_vec(), value: value.map(|v| v.as_bytes().to_vec()) }
}

/// The records of the fixture, in order: every field kind appears (key or not, a null value and
/// an empty one, headers with and without values, a header key repeated, negative timestamp),
/// some in the compressed batch.
fn expected() -> Vec<Record> {
    (0..10u64)
        .map(|i| Record {
            offset: i,
            timestamp_ms: if i == 3 { -42 } else { 1_700_000_000_000 + i as i64 },
            key: (i % 2 == 0).then(|| format!("key-{i}").into_bytes()),
            value: match i {
                2 | 6 => None,
                5 => Some(Vec::new()),
                _ => Some(format!("value number {i}, value number {i}").into_bytes()),
            },
            headers: match i % 3 {
                0 => vec![
                    header("trace", Some(&format!("t{i}"))),
                    header("null", None),
                    header("trace", Some("again")),
                ],
                1 if i > 1 => vec![header("dup", Some("a")), header("dup", None)],
                _ => Vec::new(),
            },
        })
        .collect()
}

fn new_record(r: &Record) -> NewRecord<'_> {
    NewRecord {
        timestamp_ms: r.timestamp_ms,
        key: r.key.as_deref(),
        value: r.value.as_deref(),
        headers: &r.headers,
    }
}

/// Appends the records as batches of one to three, through `append` (uncompressed) and, for
/// [`COMPRESSED`], through `append_batches` as a producer would send them.
fn write_fixture(dir: &Path) {
    let log = Log::open(dir, config()).unwrap();
    let all = expected();
    let groups: [std::ops::Range<usize>; 5] = [0..3, 3..4, 4..8, 8..9, 9..10];
    for g in groups {
        let recs: Vec<NewRecord<'_>> = all[g.clone()].iter().map(new_record).collect();
        let range = if g.start as u64 == COMPRESSED.start {
            assert_eq!(g.end as u64, COMPRESSED.end);
            let mut bytes = record::build_batch(&recs, CODEC).unwrap();
            log.append_batches(&mut bytes).unwrap()
        } else {
            log.append(&recs).unwrap()
        };
        assert_eq!((range.first, range.next), (g.start as u64, g.end as u64));
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
    assert_eq!((d.log_start_offset, d.next_offset, d.segments), (0, 10, 4));
    let mut got = Vec::new();
    let mut at = 0;
    while at < log.next_offset() {
        let s = log.read(at, 1 << 20).unwrap();
        got.extend(s.records().map(|r| r.unwrap()));
        at = s.next_offset();
    }
    assert_eq!(got, expected());
    assert_eq!(got[2].value, None, "a null value stays null, not empty");
    assert_eq!(got[5].value, Some(Vec::new()), "an empty value stays empty, not null");
    // Reading from the middle of the compressed batch starts at the offset asked.
    let s = log.read(6, 1 << 20).unwrap();
    let from_six: Vec<Record> = s.records().map(|r| r.unwrap()).collect();
    assert_eq!(from_six[0], expected()[6]);
    assert_eq!(log.offset_for_timestamp(1_700_000_000_006).unwrap(), Some(6));
    assert_eq!(log.offset_for_timestamp(1_700_000_000_010).unwrap(), None);
}

/// Every batch of the fixture's segment files, checked by their own CRC-32C: (base offset,
/// partition leader epoch, codec).
fn stored_batches() -> Vec<(i64, i32, Compression)> {
    let mut out = Vec::new();
    for name in file_names(&fixture_dir()).iter().filter(|n| n.ends_with(".log")) {
        let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
        assert_eq!(&bytes[..4], b"MKLG", "{name}");
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2, "{name}: format version 2");
        for view in batch::batches(&bytes[24..]) {
            let view = view.unwrap();
            view.verify_crc().unwrap();
            out.push((
                view.base_offset(),
                view.partition_leader_epoch(),
                view.compression().unwrap(),
            ));
        }
    }
    out
}

#[test]
fn the_fixture_holds_batches_as_produced_with_the_compressed_one_compressed() {
    let got = stored_batches();
    let none = Compression::None;
    assert_eq!(got, vec![(0, 0, none), (3, 0, none), (4, 0, CODEC), (8, 0, none), (9, 0, none)]);
    let index = std::fs::read(fixture_dir().join("00000000000000000000.index")).unwrap();
    assert_eq!(&index[..4], b"MKIX");
    assert_eq!(u16::from_le_bytes([index[4], index[5]]), 2, "index format version 2");
    // Every log directory has one since replication: a single node's epoch 0, from offset 0.
    let epochs = std::fs::read(fixture_dir().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(&epochs[..4], b"MKLE");
    assert_eq!(u16::from_le_bytes([epochs[4], epochs[5]]), 1, "checkpoint format version 1");
    assert_eq!(
        &epochs[12..],
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "one entry: (0, 0)"
    );
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
