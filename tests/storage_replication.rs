//! The storage layer's support for replication, as a follower and a new leader use it: leader
//! epochs stamped on appends and kept in the `leader-epoch-checkpoint`, a follower's append of
//! its leader's stored bytes (byte-identical segments, producer state that dedupes a retry after a
//! failover), truncation (across segments, crash-safe, safe for readers holding slices), and
//! data directories of the release before replication.

mod storage_support;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use minikafka::batch::{self, BatchBuilder, Compression};
use minikafka::record::NewRecord;
use minikafka::storage::{
    FileSystem, FsFile, Log, LogConfig, OffsetRange, RealFs, StorageError, UNDEFINED_EPOCH,
};
use storage_support::{file_names, tiny_config};

fn rec(v: &[u8], ts: i64) -> NewRecord<'_> {
    NewRecord { timestamp_ms: ts, key: None, value: Some(v), headers: &[] }
}

/// Appends `n` one-record batches whose values name their offset and `tag`.
fn append_values(log: &Log, n: u64, tag: &str) {
    for _ in 0..n {
        let o = log.next_offset();
        let v = format!("{tag}-{o:05}").into_bytes();
        let r = log.append(&[rec(&v, 1_000 + o as i64)]).unwrap();
        assert_eq!(r.first, o);
    }
}

/// Every visible record as (offset, value).
fn all_values(log: &Log) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.visible_end() {
        let s = log.read(at, 1 << 20).unwrap();
        for r in s.records() {
            let r = r.unwrap();
            if r.offset >= at {
                out.push((r.offset, String::from_utf8(r.value.unwrap()).unwrap()));
            }
        }
        assert!(s.next_offset() > at);
        at = s.next_offset();
    }
    out
}

/// Feeds `follower` the leader's stored bytes from the follower's end, one read slice (one
/// segment's worth at most) per append, as a replica fetch loop does.
fn replicate(leader: &Log, follower: &Log, max_bytes: usize) {
    while follower.next_offset() < leader.next_offset() {
        let s = leader.read(follower.next_offset(), max_bytes).unwrap();
        assert!(!s.is_empty());
        let r = follower.append_replica(s.bytes()).unwrap();
        assert_eq!(r.next, s.next_offset());
    }
}

/// An idempotent producer's batch of `n` records from sequence `seq`.
fn idempotent_batch(pid: i64, seq: i32, n: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None).producer(pid, 0, seq);
    for i in 0..n {
        let v = format!("p{pid}-s{}", seq + i).into_bytes();
        b.push(&batch::NewRecord { timestamp: 5_000, key: None, value: Some(&v), headers: &[] })
            .unwrap();
    }
    b.finish().unwrap()
}

fn segment_files(dir: &Path) -> Vec<String> {
    file_names(dir).into_iter().filter(|n| n.ends_with(".log")).collect()
}

#[test]
fn a_follower_fed_the_leaders_bytes_is_byte_identical_segment_for_segment() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = tiny_config(600);
    let leader = Log::open(ld.path(), config.clone()).unwrap();
    append_values(&leader, 7, "a");
    leader.set_leader_epoch(2).unwrap();
    let mut idem = idempotent_batch(9, 0, 3);
    leader.append_batches(&mut idem).unwrap();
    append_values(&leader, 9, "b");
    leader.set_leader_epoch(5).unwrap();
    let mut three = crate_batch(&["x", "y", "z"]);
    leader.append_batches(&mut three).unwrap();
    append_values(&leader, 6, "c");
    assert!(segment_files(ld.path()).len() >= 4, "the test must cross several segments");

    let follower = Log::open(fd.path(), config).unwrap();
    replicate(&leader, &follower, 1 << 20);
    assert_eq!(follower.next_offset(), leader.next_offset());
    assert_eq!(follower.epoch_cache(), leader.epoch_cache());
    assert_eq!(follower.latest_epoch(), Some(5));
    assert_eq!(follower.epoch_end_offset(2), leader.epoch_end_offset(2));
    assert_eq!(all_values(&follower), all_values(&leader));
    leader.close().unwrap();
    follower.close().unwrap();
    assert_eq!(segment_files(fd.path()), segment_files(ld.path()));
    for name in segment_files(ld.path()) {
        let (l, f) = (std::fs::read(ld.path().join(&name)), std::fs::read(fd.path().join(&name)));
        assert!(l.unwrap() == f.unwrap(), "segment {name} differs between leader and follower");
    }
    // The follower's epochs survive its restart, and its stored batches carry them.
    let follower = Log::open(fd.path(), tiny_config(600)).unwrap();
    assert_eq!(follower.epoch_end_offset(0), (0, Some(7)));
    assert_eq!(follower.epoch_end_offset(3), (2, Some(19)));
    assert_eq!(follower.epoch_end_offset(5), (5, Some(follower.next_offset())));
    assert_eq!(follower.epoch_end_offset(6), (UNDEFINED_EPOCH, None));
    let s = follower.read(8, 1).unwrap();
    let v = batch::BatchView::new(s.bytes()).unwrap();
    assert_eq!(v.partition_leader_epoch(), 2);
}

/// A three-record batch as a producer sends it.
fn crate_batch(values: &[&str]) -> Vec<u8> {
    let recs: Vec<NewRecord<'_>> = values.iter().map(|v| rec(v.as_bytes(), 7_000)).collect();
    minikafka::record::build_batch(&recs, Compression::None).unwrap()
}

#[test]
fn truncating_then_appending_different_data_reads_back_the_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(1 << 20)).unwrap();
    append_values(&log, 4, "old");
    let mut three = crate_batch(&["t0", "t1", "t2"]);
    assert_eq!(log.append_batches(&mut three).unwrap(), OffsetRange { first: 4, next: 7 });
    append_values(&log, 3, "old");
    // Offset 5 is inside the batch 4..7: the cut is at its start.
    log.truncate_to(5).unwrap();
    assert_eq!(log.next_offset(), 4);
    assert_eq!(log.visible_end(), 4);
    assert!(matches!(log.read(6, 100), Err(StorageError::OffsetOutOfRange { .. })));
    log.set_leader_epoch(3).unwrap();
    append_values(&log, 5, "new");
    let want: Vec<(u64, String)> = (0..4)
        .map(|o| (o, format!("old-{o:05}")))
        .chain((4..9).map(|o| (o, format!("new-{o:05}"))))
        .collect();
    assert_eq!(all_values(&log), want);
    assert_eq!(log.epoch_cache().entries(), &[(0, 0), (3, 4)]);
    // Truncating at or past the end changes nothing.
    log.truncate_to(9).unwrap();
    log.truncate_to(100).unwrap();
    assert_eq!(all_values(&log), want);
    drop(log);
    let log = Log::open(dir.path(), tiny_config(1 << 20)).unwrap();
    assert_eq!(all_values(&log), want);
    assert_eq!(log.epoch_cache().entries(), &[(0, 0), (3, 4)]);
    assert_eq!(log.leader_epoch(), 3);
}

#[test]
fn a_truncation_at_the_end_drops_an_epoch_that_wrote_nothing() {
    // This replica led epoch 3 for a moment and wrote nothing; the new leader never had epoch 3.
    // Told to truncate at its own end, it keeps its records but forgets epoch 3, so its next
    // fetch names epoch 0 and matches the leader's log.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(1 << 20)).unwrap();
    append_values(&log, 4, "a");
    log.set_leader_epoch(3).unwrap();
    assert_eq!(log.epoch_cache().entries(), &[(0, 0), (3, 4)]);
    log.truncate_to(4).unwrap();
    assert_eq!(log.epoch_cache().entries(), &[(0, 0)]);
    assert_eq!(log.latest_epoch(), Some(0));
    assert_eq!(log.next_offset(), 4);
    let want: Vec<(u64, String)> = (0..4).map(|o| (o, format!("a-{o:05}"))).collect();
    assert_eq!(all_values(&log), want);
    drop(log);
    let log = Log::open(dir.path(), tiny_config(1 << 20)).unwrap();
    assert_eq!(log.epoch_cache().entries(), &[(0, 0)], "the checkpoint was rewritten");
    // Following epoch 5 next, it records where that epoch starts as usual.
    log.set_leader_epoch(5).unwrap();
    assert_eq!(log.epoch_cache().entries(), &[(0, 0), (5, 4)]);
}

#[test]
fn a_log_starts_over_empty_at_a_later_offset_and_stays_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    append_values(&log, 10, "old");
    log.set_leader_epoch(2).unwrap();
    append_values(&log, 3, "old");
    let held = log.read(0, 1 << 20).unwrap();
    assert!(
        matches!(log.restart_at(13), Err(StorageError::OffsetOutOfRange { .. })),
        "not past the end"
    );
    log.restart_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset(), log.visible_end()), (100, 100, 100));
    assert!(matches!(log.read(50, 100), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(log.latest_epoch(), None, "no epoch wrote anything here");
    assert!(held.records().all(|r| r.is_ok()), "a slice read before is still readable");
    append_values(&log, 2, "new");
    let want = vec![(100, "new-00100".to_string()), (101, "new-00101".to_string())];
    assert_eq!(all_values(&log), want);
    drop(log);
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    assert_eq!(log.log_start_offset(), 100);
    assert_eq!(all_values(&log), want);
    let names = file_names(dir.path());
    assert!(
        !names.iter().any(|n| n.starts_with("00000000000000000000")),
        "old segments gone: {names:?}"
    );
}

/// A replica moved away from this broker: every record goes and the log is as new, at 0, also
/// after a restart; added back, it would copy the partition again from the leader.
#[test]
fn a_discarded_replica_log_is_empty_at_zero_and_stays_so_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    log.set_leader_epoch(3).unwrap();
    append_values(&log, 20, "old");
    assert!(segment_files(dir.path()).len() >= 5);
    let held = log.read(0, 1 << 20).unwrap();
    log.discard_all().unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset(), log.visible_end()), (0, 0, 0));
    assert_eq!(log.latest_epoch(), None);
    assert!(all_values(&log).is_empty());
    assert!(held.records().all(|r| r.is_ok()), "a slice read before is still readable");
    assert_eq!(segment_files(dir.path()).len(), 1, "one empty segment left");
    drop(log);
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (0, 0));
    append_values(&log, 2, "new");
    assert_eq!(all_values(&log), vec![(0, "new-00000".to_string()), (1, "new-00001".to_string())]);
}

#[test]
fn truncation_crosses_segment_boundaries_and_readers_keep_their_slices() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    append_values(&log, 20, "v");
    let before = segment_files(dir.path());
    assert!(before.len() >= 5, "{before:?}");
    let held = log.read(15, 1 << 20).unwrap();
    let held_first = log.read(3, 1 << 20).unwrap();
    // A cut inside the second segment removes every later one and cuts that one.
    let second_base: u64 = before[1].trim_end_matches(".log").parse().unwrap();
    let cut = second_base + 1;
    log.truncate_to(cut).unwrap();
    assert_eq!(log.next_offset(), cut);
    assert_eq!(segment_files(dir.path()), before[..2].to_vec());
    let want: Vec<(u64, String)> = (0..cut).map(|o| (o, format!("v-{o:05}"))).collect();
    assert_eq!(all_values(&log), want);
    // Slices read before the truncation still read their bytes (copy-on-truncate).
    let r: Vec<_> = held.records().map(|r| r.unwrap().offset).collect();
    assert_eq!(r.first(), Some(&15));
    assert!(held_first.records().all(|r| r.is_ok()));
    // Appends roll into new segments again, and everything survives a restart.
    append_values(&log, 12, "w");
    assert!(segment_files(dir.path()).len() >= 4);
    let want: Vec<(u64, String)> = (0..cut)
        .map(|o| (o, format!("v-{o:05}")))
        .chain((cut..cut + 12).map(|o| (o, format!("w-{o:05}"))))
        .collect();
    assert_eq!(all_values(&log), want);
    log.close().unwrap();
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    assert_eq!(all_values(&log), want);
    // A cut at a segment's base offset, and one below the log start, which is the floor.
    log.truncate_to(second_base).unwrap();
    assert_eq!(log.next_offset(), second_base);
    log.trim_before(2).unwrap();
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (2, 2));
    append_values(&log, 2, "z");
    assert_eq!(all_values(&log), vec![(2, "z-00002".into()), (3, "z-00003".into())]);
    drop(log);
    let log = Log::open(dir.path(), tiny_config(300)).unwrap();
    assert_eq!(all_values(&log), vec![(2, "z-00002".into()), (3, "z-00003".into())]);
}

#[test]
fn a_retry_after_replica_append_and_failover_is_deduplicated() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(ld.path(), tiny_config(1 << 20)).unwrap();
    append_values(&leader, 2, "a");
    let original = idempotent_batch(42, 0, 3);
    let mut sent = original.clone();
    let first = leader.append_batches(&mut sent).unwrap();
    assert_eq!(first, OffsetRange { first: 2, next: 5 });

    let follower = Log::open(fd.path(), tiny_config(1 << 20)).unwrap();
    replicate(&leader, &follower, 1 << 20);
    // The leader dies; the follower becomes leader with a new epoch; the producer retries.
    follower.set_leader_epoch(1).unwrap();
    let mut retry = original.clone();
    assert_eq!(follower.append_batches(&mut retry).unwrap(), first, "deduplicated");
    assert_eq!(follower.next_offset(), 5);
    // Its next batch continues the sequence.
    let mut next = idempotent_batch(42, 3, 1);
    assert_eq!(follower.append_batches(&mut next).unwrap(), OffsetRange { first: 5, next: 6 });
    // Producer state survives a restart of the replica too.
    drop(follower);
    let follower = Log::open(fd.path(), tiny_config(1 << 20)).unwrap();
    let mut retry = idempotent_batch(42, 3, 1);
    assert_eq!(follower.append_batches(&mut retry).unwrap(), OffsetRange { first: 5, next: 6 });

    // Truncated away, the batch is no longer known: a retry is written again.
    follower.truncate_to(2).unwrap();
    let mut retry = original.clone();
    assert_eq!(follower.append_batches(&mut retry).unwrap(), OffsetRange { first: 2, next: 5 });
}

#[test]
fn the_epoch_checkpoint_survives_restart_and_is_rebuilt_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(400)).unwrap();
    append_values(&log, 3, "a");
    log.set_leader_epoch(4).unwrap();
    append_values(&log, 5, "b");
    log.set_leader_epoch(6).unwrap();
    append_values(&log, 4, "c");
    log.set_leader_epoch(9).unwrap(); // wrote nothing yet
    let want = [(0, 0), (4, 3), (6, 8), (9, 12)];
    assert_eq!(log.epoch_cache().entries(), &want[..]);
    assert!(matches!(log.set_leader_epoch(8), Err(StorageError::EpochRegression { .. })));
    assert_eq!(log.epoch_end_offset(5), (4, Some(8)));
    assert_eq!(log.epoch_end_offset(9), (9, Some(12)));
    log.close().unwrap();

    let log = Log::open(dir.path(), tiny_config(400)).unwrap();
    assert_eq!(log.epoch_cache().entries(), &want[..]);
    assert_eq!((log.leader_epoch(), log.latest_epoch()), (9, Some(9)));
    drop(log);

    // Missing: rebuilt from the batches (epoch 9 wrote nothing, so no batch names it).
    std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let log = Log::open(dir.path(), tiny_config(400)).unwrap();
    assert_eq!(log.epoch_cache().entries(), &want[..3]);
    assert!(dir.path().join("leader-epoch-checkpoint").exists(), "the rebuilt one is written");
    drop(log);
    // Damaged: rebuilt the same way.
    let path = dir.path().join("leader-epoch-checkpoint");
    let mut b = std::fs::read(&path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    std::fs::write(&path, b).unwrap();
    let log = Log::open(dir.path(), tiny_config(400)).unwrap();
    assert_eq!(log.epoch_cache().entries(), &want[..3]);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_data_dir_of_the_previous_release_opens_with_every_record_and_epoch_zero() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Format version 1 (upgraded at open) and version 2, both without a checkpoint.
    for (name, count) in [("storage_golden", 8u64), ("storage_golden_v2", 10)] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&fixtures.join(name), tmp.path());
        // The previous release wrote no checkpoint.
        let _ = std::fs::remove_file(tmp.path().join("leader-epoch-checkpoint"));
        let config = LogConfig { segment_bytes: 256, ..tiny_config(256) };
        let log = Log::open(tmp.path(), config.clone()).unwrap();
        assert_eq!(log.next_offset(), count, "{name}");
        let mut offsets = Vec::new();
        let mut at = 0;
        while at < log.next_offset() {
            let s = log.read(at, 1 << 20).unwrap();
            offsets.extend(s.records().map(|r| r.unwrap().offset).filter(|&o| o >= at));
            at = s.next_offset();
        }
        assert_eq!(offsets, (0..count).collect::<Vec<u64>>(), "{name}");
        assert_eq!(log.epoch_cache().entries(), &[(0, 0)], "{name}");
        assert_eq!(log.epoch_end_offset(0), (0, Some(count)));
        assert_eq!(log.leader_epoch(), 0);
        // It follows and leads like any other log from here.
        log.set_leader_epoch(1).unwrap();
        log.append(&[rec(b"after", 9)]).unwrap();
        drop(log);
        let log = Log::open(tmp.path(), config).unwrap();
        assert_eq!(log.epoch_cache().entries(), &[(0, 0), (1, count)], "{name}");
    }
}

#[test]
fn malformed_replica_batches_are_refused_and_change_nothing() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(ld.path(), tiny_config(1 << 20)).unwrap();
    leader.set_leader_epoch(3).unwrap();
    append_values(&leader, 6, "a");
    let follower = Log::open(fd.path(), tiny_config(1 << 20)).unwrap();
    let s = leader.read(0, 1 << 20).unwrap();
    let good = s.bytes().to_vec();
    let one = batch::BatchView::new(&good).unwrap().len();

    let snapshot = |d: &Path| -> Vec<(String, Vec<u8>)> {
        file_names(d).into_iter().map(|n| (n.clone(), std::fs::read(d.join(&n)).unwrap())).collect()
    };
    let before = snapshot(fd.path());
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1; // inside the last batch's records
    let gap_first = good[one..].to_vec(); // starts at offset 1, the follower is at 0
    let mut gap_inside = good[..one].to_vec();
    gap_inside.extend_from_slice(&good[2 * one..]); // 0, then 2..
    let torn = good[..good.len() - 3].to_vec();
    let cases: [(&str, &[u8]); 5] = [
        ("bad CRC", &bad_crc),
        ("gap before the first", &gap_first),
        ("gap inside", &gap_inside),
        ("torn", &torn),
        ("empty", &[]),
    ];
    for (what, bytes) in cases {
        let e = follower.append_replica(bytes).unwrap_err();
        assert!(
            matches!(
                e,
                StorageError::InvalidBatch { .. }
                    | StorageError::ReplicaOutOfSequence { .. }
                    | StorageError::UnsupportedBatch { .. }
            ),
            "{what}: {e}"
        );
        assert_eq!(follower.next_offset(), 0, "{what}");
        assert_eq!(follower.epoch_cache().entries(), &[(0, 0)], "{what}");
        assert_eq!(snapshot(fd.path()), before, "{what}: files changed");
    }
    // An epoch older than one the follower has is refused too.
    follower.append_replica(&good).unwrap();
    let old_leader = tempfile::tempdir().unwrap();
    let old = Log::open(old_leader.path(), tiny_config(1 << 20)).unwrap();
    append_values(&old, 7, "o");
    let stale = old.read(6, 1 << 20).unwrap();
    let e = follower.append_replica(stale.bytes()).unwrap_err();
    assert!(matches!(e, StorageError::EpochRegression { epoch: 0, latest: 3 }), "{e}");
    assert_eq!(follower.next_offset(), 6);
    assert_eq!(all_values(&follower), all_values(&leader));
}

/// A file system that dies after `budget` changing operations: every later write, create,
/// rename, remove, set_len and fsync fails, as if the process had been killed there (what
/// reached the OS stays; nothing after it happens).
#[derive(Debug, Clone)]
struct DyingFs {
    left: Arc<AtomicU64>,
}

impl DyingFs {
    fn new(budget: u64) -> Self {
        DyingFs { left: Arc::new(AtomicU64::new(budget)) }
    }
    fn step(&self) -> io::Result<()> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| io::Error::other("killed"))
    }
    fn dead(&self) -> bool {
        self.left.load(Ordering::SeqCst) == 0
    }
}

#[derive(Debug)]
struct DyingFile {
    inner: Box<dyn FsFile>,
    fs: DyingFs,
}

impl FsFile for DyingFile {
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.write_all_at(buf, pos)
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.allocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.step()?;
        self.inner.sync_data()
    }
    fn as_file(&self) -> &File {
        self.inner.as_file()
    }
}

impl FileSystem for DyingFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let inner = RealFs.open(path)?;
        Ok(Box::new(DyingFile { inner, fs: self.clone() }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.step()?;
        let inner = RealFs.create(path)?;
        Ok(Box::new(DyingFile { inner, fs: self.clone() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        RealFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        RealFs.sync_dir(path)
    }
}

fn copy_tree(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    copy_dir(from, to);
    to.to_path_buf()
}

#[test]
fn a_crash_anywhere_in_a_truncation_never_brings_back_records_past_the_cut() {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    let config = tiny_config(300);
    {
        let log = Log::open(&original, config.clone()).unwrap();
        append_values(&log, 8, "a");
        log.set_leader_epoch(2).unwrap();
        let mut idem = idempotent_batch(5, 0, 2);
        log.append_batches(&mut idem).unwrap();
        append_values(&log, 10, "b");
        log.close().unwrap();
    }
    let full = all_values(&Log::open(&original, config.clone()).unwrap());
    assert_eq!(full.len(), 20);
    let cut = 5;
    let kept: Vec<_> = full[..cut as usize].to_vec();
    let mut finished = false;
    for budget in 0..200 {
        let dir = copy_tree(&original, &base.path().join(format!("run{budget}")));
        // Opening takes steps too: start counting once it is open.
        let fs = DyingFs::new(u64::MAX);
        let log = Log::open_with_fs(&dir, config.clone(), Arc::new(fs.clone())).unwrap();
        fs.left.store(budget, Ordering::SeqCst);
        let res = log.truncate_to(cut);
        drop(log);
        let log = Log::open(&dir, config.clone()).unwrap();
        let got = all_values(&log);
        assert!(
            got == full || got == kept,
            "budget {budget}: {} records after recovery",
            got.len()
        );
        if got == kept {
            assert_eq!(log.epoch_cache().entries(), &[(0, 0)], "budget {budget}");
            // The producer state went with the records: the batch is new again.
            let mut again = idempotent_batch(5, 0, 2);
            assert_eq!(log.append_batches(&mut again).unwrap().first, cut);
        } else {
            assert!(res.is_err(), "budget {budget}: a truncation that returned Ok must stick");
        }
        if res.is_ok() {
            assert!(!fs.dead() || got == kept);
            finished = true;
            break;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(finished, "the truncation never completed within the budgets tried");
}

#[test]
fn compaction_keeps_each_epochs_start_in_the_stored_batches() {
    use minikafka::storage::{CleanupPolicy, Throttle};
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy { delete: false, compact: true },
        ..tiny_config(300)
    };
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let append_keyed = |log: &Log, n: u64, key: &str| {
        for i in 0..n {
            let v = format!("{key}{i}").into_bytes();
            let r = NewRecord {
                timestamp_ms: 10,
                key: Some(key.as_bytes()),
                value: Some(&v),
                headers: &[],
            };
            log.append(&[r]).unwrap();
        }
    };
    // Epoch 2's records are all superseded by epoch 5's: compaction replaces them by fillers.
    append_keyed(&log, 4, "a");
    log.set_leader_epoch(2).unwrap();
    append_keyed(&log, 4, "b");
    log.set_leader_epoch(5).unwrap();
    append_keyed(&log, 4, "b");
    append_keyed(&log, 6, "c");
    let want = log.epoch_cache();
    assert_eq!(want.entries(), &[(0, 0), (2, 4), (5, 8)]);
    let stats = log.compact(i64::MAX / 2, &Throttle::unlimited()).unwrap();
    assert!(stats.records_removed > 0, "{stats:?}");
    drop(log);
    std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.epoch_cache(), want, "rebuilt from the compacted batches");
}
