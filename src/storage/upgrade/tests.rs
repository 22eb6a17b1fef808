//! Tests of the v1 → v2 segment upgrade: every field of every record survives, a crash after
//! any step leaves a directory the next call finishes, damage is cut (last segment) or refused
//! (sealed segment, left untouched).

use std::path::Path;

use super::v1::encode::{OwnedV1, record};
use super::*;
use crate::batch::{BatchView, batches};
use crate::storage::fs::{FaultyFs, RealFs};

/// Records `first..first+n`: keys absent or present (empty too), empty and large values,
/// headers with null, empty and repeated-looking values, negative and far-apart timestamps.
fn records(first: u64, n: u64) -> Vec<OwnedV1> {
    (first..first + n)
        .map(|o| OwnedV1 {
            offset: o,
            timestamp_ms: match o % 7 {
                3 => -42,
                5 => 0,
                _ => 1_700_000_000_000 + o as i64,
            },
            key: match o % 4 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("key-{o}").into_bytes()),
            },
            value: match o % 5 {
                0 => Vec::new(),
                4 => vec![(o % 251) as u8; 700],
                _ => format!("value {o}").into_bytes(),
            },
            headers: match o % 3 {
                0 => Vec::new(),
                1 => vec![(b"trace".to_vec(), Some(format!("t{o}").into_bytes()))],
                _ => vec![
                    (b"a".to_vec(), None),
                    (b"b".to_vec(), Some(Vec::new())),
                    (Vec::new(), Some(b"x".to_vec())),
                ],
            },
        })
        .collect()
}

/// The bytes of a v1 segment file holding `recs` (which start at `base`).
fn v1_segment(base: u64, recs: &[OwnedV1]) -> Vec<u8> {
    let mut buf = v1::encode_header(v1::VERSION, base).to_vec();
    for r in recs {
        record(&mut buf, r);
    }
    buf
}

fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(log_file_name(base))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// Writes a v1 segment and a (stand-in) index beside it, as the old release left them.
fn write_v1(dir: &Path, base: u64, recs: &[OwnedV1]) -> Vec<u8> {
    let bytes = v1_segment(base, recs);
    std::fs::write(log_path(dir, base), &bytes).unwrap();
    std::fs::write(index_path(dir, base), b"MKIX stale v1 index").unwrap();
    bytes
}

/// Decodes a v2 segment file completely, checking every batch's CRC and the invariants of the
/// conversion, and returns its records as the v1 tests wrote them.
fn read_v2(path: &Path, base: u64) -> Vec<OwnedV1> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..v1::HEADER_LEN], &v1::encode_header(SEGMENT_VERSION_V2, base));
    assert_eq!(u16::from_le_bytes([data[4], data[5]]), 2, "version field");
    let mut out = Vec::new();
    let mut it = batches(&data[v1::HEADER_LEN..]);
    for b in it.by_ref() {
        let b: BatchView<'_> = b.unwrap();
        b.verify_crc().unwrap();
        crate::batch::validate(b.as_bytes(), &crate::batch::Limits::default()).unwrap();
        assert_eq!(b.compression().unwrap(), Compression::None);
        assert_eq!(b.partition_leader_epoch(), 0);
        assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (-1, -1, -1));
        assert!(!b.is_transactional() && !b.is_control());
        assert!(b.records_count() as usize <= MAX_BATCH_RECORDS);
        let recs: Vec<_> = b.records().unwrap().map(|r| r.unwrap()).collect();
        assert!(b.len() <= MAX_BATCH_BYTES || recs.len() == 1, "batch of {} bytes", b.len());
        assert_eq!(recs[0].offset, b.base_offset(), "baseOffset is the first record's offset");
        for r in recs {
            assert_eq!(r.offset - b.base_offset(), i64::from(r.offset_delta));
            let value = r.value.expect("a v1 value is never null");
            out.push(OwnedV1 {
                offset: r.offset as u64,
                timestamp_ms: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: value.to_vec(),
                headers: r
                    .headers()
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
            });
        }
    }
    assert_eq!(it.position(), data.len() - v1::HEADER_LEN, "batches fill the file exactly");
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = RealFs.list_dir(dir).unwrap();
    v.sort();
    v
}

#[test]
fn a_v1_segment_becomes_v2_batches_with_every_field_of_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Enough records for the 4096-record limit and the 1 MiB limit to both close batches.
    let recs = records(100, 9000);
    write_v1(d, 100, &recs);
    std::fs::write(d.join("log-start-offset"), b"checkpoint bytes").unwrap();
    std::fs::write(d.join("clean-shutdown"), b"clean\n").unwrap();

    let report = upgrade_log_dir(&RealFs, d).unwrap();
    assert_eq!(report, UpgradeReport { segments_converted: 1, records: 9000 });
    assert_eq!(read_v2(&log_path(d, 100), 100), recs);
    assert_eq!(
        names(d),
        ["00000000000000000100.log", "clean-shutdown", "log-start-offset"],
        "the stale index is gone, nothing else changed name"
    );
    assert_eq!(std::fs::read(d.join("log-start-offset")).unwrap(), b"checkpoint bytes");
    assert_eq!(std::fs::read(d.join("clean-shutdown")).unwrap(), b"clean\n");

    let data = std::fs::read(log_path(d, 100)).unwrap();
    let counts: Vec<i32> =
        batches(&data[v1::HEADER_LEN..]).map(|b| b.unwrap().records_count()).collect();
    assert!(counts.len() >= 3, "9000 records (about 2.5 MiB) make several batches: {counts:?}");
    assert_eq!(counts.iter().map(|&c| c as u64).sum::<u64>(), 9000);
}

#[test]
fn a_second_call_skips_converted_segments_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_v1(d, 0, &records(0, 20));
    write_v1(d, 20, &records(20, 5));
    assert_eq!(upgrade_log_dir(&RealFs, d).unwrap().segments_converted, 2);
    let before: Vec<_> = names(d).iter().map(|n| std::fs::read(d.join(n)).unwrap()).collect();
    assert_eq!(upgrade_log_dir(&RealFs, d).unwrap(), UpgradeReport::default());
    let after: Vec<_> = names(d).iter().map(|n| std::fs::read(d.join(n)).unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn a_missing_or_empty_directory_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert_eq!(upgrade_log_dir(&RealFs, &missing).unwrap(), UpgradeReport::default());
    assert!(!missing.exists(), "not created");
    assert_eq!(upgrade_log_dir(&RealFs, dir.path()).unwrap(), UpgradeReport::default());
}

/// The reference: what an uninterrupted upgrade of the three-segment directory produces.
fn three_segments(d: &Path) -> Vec<(u64, Vec<OwnedV1>)> {
    let segs = vec![(0, records(0, 30)), (30, records(30, 40)), (70, records(70, 10))];
    for (base, recs) in &segs {
        write_v1(d, *base, recs);
    }
    segs
}

fn assert_fully_converted(d: &Path, segs: &[(u64, Vec<OwnedV1>)]) {
    for (base, recs) in segs {
        assert_eq!(&read_v2(&log_path(d, *base), *base), recs, "segment {base}");
        assert!(!index_path(d, *base).exists());
        assert!(!upgrade_tmp_path(&log_path(d, *base)).exists());
    }
}

#[test]
fn a_crash_after_any_step_leaves_a_directory_the_next_call_converts() {
    for step in [Step::Synced, Step::IndexRemoved, Step::Renamed] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let segs = three_segments(d);
        let original = std::fs::read(log_path(d, 0)).unwrap();
        let crashed = upgrade_until(&RealFs, d, Some(step)).unwrap();
        assert_eq!(crashed.segments_converted, 1, "{step:?}");
        let tmp = upgrade_tmp_path(&log_path(d, 0));
        if step < Step::Renamed {
            // Before the rename the v1 file is whole and untouched: the commit point is ahead.
            assert_eq!(std::fs::read(log_path(d, 0)).unwrap(), original, "{step:?}");
            assert!(tmp.exists(), "{step:?}");
        } else {
            assert_eq!(read_v2(&log_path(d, 0), 0), segs[0].1, "{step:?}");
            assert!(!tmp.exists(), "{step:?}");
        }
        // The next start: the rest is converted, a finished segment is not redone.
        let report = upgrade_log_dir(&RealFs, d).unwrap();
        let expect = if step < Step::Renamed { 3 } else { 2 };
        assert_eq!(report.segments_converted, expect, "{step:?}");
        assert_fully_converted(d, &segs);
        assert_eq!(names(d).len(), 3, "{step:?}: only the three segments are left");
    }
}

#[test]
fn a_crash_halfway_through_writing_the_copy_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let segs = three_segments(d);
    let original = std::fs::read(log_path(d, 0)).unwrap();
    // What a process killed mid-write leaves: a partial copy under the temp name.
    let tmp = upgrade_tmp_path(&log_path(d, 0));
    std::fs::write(&tmp, &v1::encode_header(SEGMENT_VERSION_V2, 0)[..10]).unwrap();
    assert_eq!(std::fs::read(log_path(d, 0)).unwrap(), original);
    assert_eq!(upgrade_log_dir(&RealFs, d).unwrap().segments_converted, 3);
    assert_fully_converted(d, &segs);
}

/// The real file system, with a directory fsync or a rename that fails on command (the two
/// faults [`FaultyFs`] cannot aim at: its fsync countdown hits the copy's fdatasync first).
#[derive(Debug, Default)]
struct DirFaults {
    fail_sync_dir: std::sync::atomic::AtomicBool,
    fail_rename: std::sync::atomic::AtomicBool,
}

impl FileSystem for DirFaults {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn crate::storage::FsFile>> {
        RealFs.open(path)
    }
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn crate::storage::FsFile>> {
        RealFs.create(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        if self.fail_rename.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fault: rename"));
        }
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if self.fail_sync_dir.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fault: directory fsync"));
        }
        RealFs.sync_dir(path)
    }
}

#[test]
fn a_failed_write_sync_or_rename_step_leaves_the_v1_file_and_the_next_call_converts() {
    type Fault = fn(&FaultyFs);
    let faults: [(&str, Fault); 4] = [
        ("failed write", |f| f.fail_next_writes(1)),
        ("torn write", |f| f.short_next_write()),
        ("full disk", |f| f.set_no_space(true)),
        ("failed fdatasync of the copy", |f| f.fail_next_syncs(1)),
    ];
    for (what, arm) in faults {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let segs = three_segments(d);
        let originals: Vec<_> =
            segs.iter().map(|(b, _)| std::fs::read(log_path(d, *b)).unwrap()).collect();
        let fs = FaultyFs::new();
        arm(&fs);
        let err = upgrade_log_dir(&fs, d).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{what}: {err:?}");
        fs.set_no_space(false);
        for ((base, _), original) in segs.iter().zip(&originals) {
            let now = std::fs::read(log_path(d, *base)).unwrap();
            assert!(now == *original, "{what}: segment {base} changed before its commit point");
        }
        assert!(!upgrade_tmp_path(&log_path(d, 0)).exists(), "{what}: the copy is removed");
        assert_eq!(upgrade_log_dir(&fs, d).unwrap().segments_converted, 3, "{what}");
        assert_fully_converted(d, &segs);
    }

    for what in ["directory fsync", "rename"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let segs = three_segments(d);
        let original = std::fs::read(log_path(d, 0)).unwrap();
        let fs = DirFaults::default();
        let flag = if what == "rename" { &fs.fail_rename } else { &fs.fail_sync_dir };
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let err = upgrade_log_dir(&fs, d).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{what}: {err:?}");
        assert!(std::fs::read(log_path(d, 0)).unwrap() == original, "{what}: v1 file untouched");
        assert_eq!(upgrade_log_dir(&fs, d).unwrap().segments_converted, 3, "{what}");
        assert_fully_converted(d, &segs);
    }
}

#[test]
fn damage_in_a_sealed_segment_is_refused_and_the_file_left_untouched() {
    let recs = records(0, 30);
    let mut good = Vec::new();
    record(&mut good, &recs[0]);
    let second_record_at = (v1::HEADER_LEN + good.len()) as u64;
    type Damage = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Damage); 4] = [
        ("flipped byte", |b, at| b[at + 20] ^= 0x10),
        ("zeros inside", |b, at| b[at..at + 4].fill(0)),
        ("cut short", |b, at| b.truncate(at + 10)),
        ("bad header", |b, _| b[9] ^= 1),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut bytes = v1_segment(0, &recs);
        damage(&mut bytes, second_record_at as usize);
        std::fs::write(log_path(d, 0), &bytes).unwrap();
        std::fs::write(index_path(d, 0), b"index").unwrap();
        write_v1(d, 30, &records(30, 3));
        let err = upgrade_log_dir(&RealFs, d).unwrap_err();
        match err {
            StorageError::Corrupt { path, position, .. } => {
                assert_eq!(path, log_path(d, 0), "{what}");
                let want = if what == "bad header" { 0 } else { second_record_at };
                assert_eq!(position, want, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(std::fs::read(log_path(d, 0)).unwrap() == bytes, "{what}: file untouched");
        assert_eq!(std::fs::read(index_path(d, 0)).unwrap(), b"index", "{what}");
        assert!(!upgrade_tmp_path(&log_path(d, 0)).exists(), "{what}");
    }
}

#[test]
fn the_last_segment_is_cut_at_a_torn_record_and_its_sparse_tail_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_v1(d, 0, &records(0, 10));
    let recs = records(10, 8);
    let mut bytes = v1_segment(10, &recs);
    let mut torn = Vec::new();
    record(&mut torn, &records(18, 1)[0]);
    bytes.extend_from_slice(&torn[..torn.len() - 3]);
    std::fs::write(log_path(d, 10), &bytes).unwrap();
    // The active segment was grown (sparse) to its capacity: zeros follow the torn record.
    std::fs::OpenOptions::new()
        .write(true)
        .open(log_path(d, 10))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let report = upgrade_log_dir(&RealFs, d).unwrap();
    assert_eq!(report, UpgradeReport { segments_converted: 2, records: 18 });
    assert_eq!(read_v2(&log_path(d, 10), 10), recs, "the torn record is cut, the rest kept");
}

#[test]
fn the_last_segment_stops_at_its_zeros_and_an_empty_one_becomes_an_empty_v2_segment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_v1(d, 0, &records(0, 4));
    let f = std::fs::OpenOptions::new().write(true).open(log_path(d, 0)).unwrap();
    f.set_len(64 << 10).unwrap();
    assert_eq!(upgrade_log_dir(&RealFs, d).unwrap().records, 4);
    assert_eq!(read_v2(&log_path(d, 0), 0), records(0, 4));

    let empty = tempfile::tempdir().unwrap();
    let e = empty.path();
    write_v1(e, 7, &[]);
    std::fs::OpenOptions::new().write(true).open(log_path(e, 7)).unwrap().set_len(4096).unwrap();
    assert_eq!(
        upgrade_log_dir(&RealFs, e).unwrap(),
        UpgradeReport { segments_converted: 1, records: 0 }
    );
    assert_eq!(std::fs::read(log_path(e, 7)).unwrap(), v1::encode_header(SEGMENT_VERSION_V2, 7));
}

#[test]
fn an_out_of_sequence_record_is_damage_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut recs = records(0, 5);
    recs[3].offset = 9;
    write_v1(d, 0, &recs);
    write_v1(d, 5, &records(5, 1));
    let err = upgrade_log_dir(&RealFs, d).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { reason, .. } if reason.contains("out of sequence")),
        "{err:?}"
    );

    // In the last segment the same record is where the log is cut.
    std::fs::remove_file(log_path(d, 5)).unwrap();
    assert_eq!(upgrade_log_dir(&RealFs, d).unwrap().records, 3);
    assert_eq!(read_v2(&log_path(d, 0), 0), records(0, 3));
}

#[test]
fn a_last_segment_without_a_header_is_left_to_recovery_but_a_sealed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_v1(d, 0, &records(0, 3));
    std::fs::write(log_path(d, 3), [0u8; 10]).unwrap();
    let report = upgrade_log_dir(&RealFs, d).unwrap();
    assert_eq!(report.segments_converted, 1);
    assert_eq!(std::fs::read(log_path(d, 3)).unwrap(), [0u8; 10], "left as it was");

    std::fs::write(log_path(d, 9), v1_segment(9, &records(9, 1))).unwrap();
    let err = upgrade_log_dir(&RealFs, d).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { path, position: 0, .. } if *path == log_path(d, 3)),
        "{err:?}"
    );
}

#[test]
fn timestamps_too_far_apart_for_one_batch_start_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut recs = records(0, 4);
    recs[1].timestamp_ms = i64::MIN;
    recs[2].timestamp_ms = i64::MAX;
    write_v1(d, 0, &recs);
    upgrade_log_dir(&RealFs, d).unwrap();
    assert_eq!(read_v2(&log_path(d, 0), 0), recs);
}

/// Copies the files of a committed fixture directory into `to`.
fn copy_fixture(rel: &str, to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    from
}

#[test]
fn the_golden_v1_fixture_written_by_the_old_release_converts_record_for_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_fixture("tests/fixtures/storage_golden", d);
    // The records tests/storage_golden.rs lists for this fixture.
    let expected: Vec<OwnedV1> = (0..8u64)
        .map(|i| OwnedV1 {
            offset: i,
            timestamp_ms: if i == 3 { -42 } else { 1_700_000_000_000 + i as i64 },
            key: (i % 2 == 0).then(|| format!("key-{i}").into_bytes()),
            value: if i == 5 { Vec::new() } else { format!("value number {i}").into_bytes() },
            headers: if i % 3 == 0 {
                vec![
                    (b"trace".to_vec(), Some(format!("t{i}").into_bytes())),
                    (b"null".to_vec(), None),
                ]
            } else {
                Vec::new()
            },
        })
        .collect();
    let report = upgrade_log_dir(&RealFs, d).unwrap();
    assert_eq!(report, UpgradeReport { segments_converted: 3, records: 8 });
    let mut got = Vec::new();
    for base in [0, 3, 6] {
        got.extend(read_v2(&log_path(d, base), base));
    }
    assert_eq!(got, expected);
    assert_eq!(
        names(d),
        [
            "00000000000000000000.log",
            "00000000000000000003.log",
            "00000000000000000006.log",
            "clean-shutdown"
        ]
    );
}

#[test]
fn a_trimmed_partition_of_the_broker_fixture_keeps_its_records_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let from = copy_fixture("tests/fixtures/upgrade_v1/data/upgraded/0", d);
    let report = upgrade_log_dir(&RealFs, d).unwrap();
    // Segments 16, 24 and 32 of 8 records each; the trim (log start 18) lives in the checkpoint.
    assert_eq!(report, UpgradeReport { segments_converted: 3, records: 24 });
    for base in [16u64, 24, 32] {
        let offsets: Vec<u64> =
            read_v2(&log_path(d, base), base).iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (base..base + 8).collect::<Vec<_>>());
    }
    for kept in ["log-start-offset", "clean-shutdown"] {
        assert_eq!(std::fs::read(d.join(kept)).unwrap(), std::fs::read(from.join(kept)).unwrap());
    }
}

/// Throughput of the conversion, for the report: `cargo test --lib storage::upgrade::tests::
/// conversion_throughput -- --ignored --nocapture` (a debug build; release is faster).
#[test]
#[ignore = "a measurement, not a check"]
fn conversion_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let value = vec![b'x'; 1024];
    let mut bytes = v1::encode_header(v1::VERSION, 0).to_vec();
    let n = 128 * 1024u64;
    for o in 0..n {
        let r = OwnedV1 {
            offset: o,
            timestamp_ms: 1_700_000_000_000 + o as i64,
            key: Some(format!("k{o}").into_bytes()),
            value: value.clone(),
            headers: Vec::new(),
        };
        record(&mut bytes, &r);
    }
    std::fs::write(log_path(d, 0), &bytes).unwrap();
    let started = Instant::now();
    let report = upgrade_log_dir(&RealFs, d).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.records, n);
    let mib = bytes.len() as f64 / (1 << 20) as f64;
    println!(
        "converted {n} records, {mib:.0} MiB of v1 segment, in {secs:.2} s: {:.0} MiB/s",
        mib / secs
    );
}
