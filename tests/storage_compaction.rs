//! Log compaction of one storage `Log`, as a user of the storage API sees it: only the latest
//! record of each key survives in sealed segments, at its original offset; tombstones go after
//! `delete_retention_ms`; young records are left alone; readers in the middle of a segment read
//! on; a crash at any file operation of a run leaves the old log or the compacted one.

mod storage_support;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use minikafka::record::{NewRecord, Record};
use minikafka::storage::{
    CleanupPolicy, CompactionConfig, FileSystem, FsFile, Log, LogConfig, RealFs, Throttle,
};
use storage_support::tiny_config;

/// Timestamps of the records the tests write: far in the past of `NOW`.
const T0: i64 = 1_000_000;
/// The "now" compaction runs at in most tests.
const NOW: i64 = 10_000_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn compact_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy { delete: false, compact: true },
        compaction: CompactionConfig {
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            min_cleanable_dirty_ratio: 0.5,
        },
        ..tiny_config(segment_bytes)
    }
}

/// Appends one batch of `(key, value)` records (a `None` value is a tombstone), each stamped
/// `T0 + offset`.
fn put(log: &Log, records: &[(&str, Option<String>)]) {
    let first = log.next_offset() as i64;
    let recs: Vec<NewRecord<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| NewRecord {
            timestamp_ms: T0 + first + i as i64,
            key: Some(k.as_bytes()),
            value: v.as_deref().map(str::as_bytes),
            headers: &[],
        })
        .collect();
    log.append(&recs).unwrap();
}

/// `keys` keys, `versions` versions each, written `per_batch` records per batch, key by key in
/// turn: record `i` is key `k{i % keys}`, value `k{key}-v{version}`.
fn fill(log: &Log, keys: usize, versions: usize, per_batch: usize) {
    let all: Vec<(String, Option<String>)> = (0..keys * versions)
        .map(|i| (format!("k{}", i % keys), Some(format!("k{}-v{}", i % keys, i / keys))))
        .collect();
    for chunk in all.chunks(per_batch) {
        let recs: Vec<(&str, Option<String>)> =
            chunk.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        put(log, &recs);
    }
}

/// Every record of the log, read the way a consumer does: from the log start, each read going
/// on at the previous slice's next offset.
fn read_all(log: &Log) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let slice = log.read(at, 300).unwrap();
        assert!(slice.next_offset() > at, "a read at {at} moves on");
        for r in slice.records() {
            let r = r.unwrap();
            assert!(r.offset >= at, "record {} before the offset asked for ({at})", r.offset);
            assert!(out.last().is_none_or(|p| p.offset < r.offset), "offsets increase");
            out.push(r);
        }
        at = slice.next_offset();
    }
    out
}

/// The latest record of each key: key -> (offset, value).
fn latest(records: &[Record]) -> BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> {
    let mut m = BTreeMap::new();
    for r in records {
        m.insert(r.key.clone().unwrap(), (r.offset, r.value.clone()));
    }
    m
}

/// A record as the tests compare it: offset, key, value.
type Seen = (u64, Option<Vec<u8>>, Option<Vec<u8>>);

fn summary(records: &[Record]) -> Vec<Seen> {
    records.iter().map(|r| (r.offset, r.key.clone(), r.value.clone())).collect()
}

/// Offset where the active segment starts (everything below it is sealed).
fn active_base(dir: &Path) -> u64 {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".log").and_then(|d| d.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    *bases.last().unwrap()
}

#[test]
fn compaction_keeps_exactly_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    fill(&log, 10, 40, 3);
    let before = read_all(&log);
    let sealed_end = active_base(dir.path());
    assert!(sealed_end > 100, "many sealed segments");
    assert!(log.needs_compaction(NOW));
    assert_eq!(log.dirty_ratio(), 1.0, "a log never compacted is all dirty");
    let size_before = log.describe().size_bytes;

    let stats = log.compact(NOW, &Throttle::unlimited()).unwrap();

    let after = read_all(&log);
    // Sealed part: the latest of each key as of the sealed end; active part: untouched.
    let sealed_latest =
        latest(&before.iter().filter(|r| r.offset < sealed_end).cloned().collect::<Vec<_>>());
    let expected: Vec<_> = before
        .iter()
        .filter(|r| r.offset >= sealed_end || sealed_latest[r.key.as_ref().unwrap()].0 == r.offset)
        .cloned()
        .collect();
    assert_eq!(summary(&after), summary(&expected));
    assert_eq!(latest(&after), latest(&before), "every key's latest value, at its offset");
    assert_eq!(log.next_offset(), before.last().unwrap().offset + 1, "offsets never change");
    assert_eq!(stats.records_removed, (before.len() - after.len()) as u64);
    assert_eq!(stats.dirty_ratio_before, 1.0);
    assert!(stats.segments_cleaned > 1);
    assert!(stats.bytes_after < stats.bytes_before);
    assert!(log.describe().size_bytes < size_before);
    assert_eq!(log.dirty_ratio(), 0.0);
    assert!(!log.needs_compaction(NOW));
    // Nothing more to do: a second run changes nothing.
    assert_eq!(log.compact(NOW, &Throttle::unlimited()).unwrap().segments_cleaned, 0);
    assert_eq!(summary(&read_all(&log)), summary(&expected));

    // And so it stays after a restart, without and with a clean shutdown.
    drop(log);
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    assert_eq!(summary(&read_all(&log)), summary(&expected));
    assert_eq!(log.dirty_ratio(), 0.0, "the cleaner checkpoint survives a restart");
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    assert_eq!(summary(&read_all(&log)), summary(&expected));
}

#[test]
fn a_second_run_compacts_new_versions_against_the_cleaned_part() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    fill(&log, 5, 20, 2);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let clean_ratio = log.dirty_ratio();
    assert_eq!(clean_ratio, 0.0);
    fill(&log, 5, 20, 2);
    assert!(log.dirty_ratio() > 0.5, "new sealed segments are dirty: {}", log.dirty_ratio());
    let before = read_all(&log);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let after = read_all(&log);
    assert_eq!(latest(&after), latest(&before));
    let sealed_end = active_base(dir.path());
    let sealed: Vec<_> = after.iter().filter(|r| r.offset < sealed_end).collect();
    let keys: std::collections::BTreeSet<_> = sealed.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), sealed.len(), "one record per key in the sealed part: {sealed:?}");
}

#[test]
fn a_log_not_set_to_compact_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny_config(512)).unwrap();
    fill(&log, 5, 20, 2);
    let before = read_all(&log);
    assert!(!log.needs_compaction(NOW));
    let stats = log.compact(NOW, &Throttle::unlimited()).unwrap();
    assert_eq!(stats.segments_cleaned, 0);
    assert_eq!(summary(&read_all(&log)), summary(&before));
}

#[test]
fn a_tombstone_is_kept_for_delete_retention_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = compact_config(400);
    config.compaction.delete_retention_ms = 1_000;
    let log = Log::open(dir.path(), config).unwrap();
    fill(&log, 4, 10, 2);
    put(&log, &[("k1", None), ("k2", None)]);
    // Push the tombstones into a sealed segment.
    fill(&log, 1, 30, 1);
    let before = read_all(&log);
    let tombstone_ts = T0 + before.iter().find(|r| r.value.is_none()).unwrap().offset as i64;

    // Within delete_retention_ms of the tombstones: they stay, the values they delete go.
    log.compact(tombstone_ts + 500, &Throttle::unlimited()).unwrap();
    let mid = read_all(&log);
    let l = latest(&mid);
    assert_eq!(l[&b"k1".to_vec()].1, None, "the tombstone of k1 is still there");
    assert_eq!(l[&b"k2".to_vec()].1, None);
    assert!(!mid.iter().any(|r| r.key.as_deref() == Some(b"k1") && r.value.is_some()));

    // Later, once more data is sealed: the tombstones are gone too.
    fill(&log, 1, 30, 1);
    let stats = log.compact(tombstone_ts + 5_000, &Throttle::unlimited()).unwrap();
    assert_eq!(stats.tombstones_removed, 2);
    let end = read_all(&log);
    assert!(
        !end.iter().any(|r| r.key.as_deref() == Some(b"k1") || r.key.as_deref() == Some(b"k2"))
    );
    let l = latest(&end);
    assert_eq!(l[&b"k3".to_vec()], latest(&before)[&b"k3".to_vec()], "other keys untouched");
}

#[test]
fn records_younger_than_the_min_compaction_lag_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = compact_config(512);
    config.compaction.min_compaction_lag_ms = 150;
    let log = Log::open(dir.path(), config).unwrap();
    fill(&log, 5, 60, 2);
    let before = read_all(&log);
    // As of T0 + 300, records with T0 + offset > T0 + 150 are too young.
    let now = T0 + 300;
    let stats = log.compact(now, &Throttle::unlimited()).unwrap();
    assert!(stats.segments_cleaned > 0);
    let after = read_all(&log);
    let young: Vec<_> = before.iter().filter(|r| r.offset > 150).map(|r| r.offset).collect();
    let after_offsets: Vec<_> = after.iter().map(|r| r.offset).collect();
    for o in &young {
        assert!(after_offsets.contains(o), "young record {o} kept");
    }
    assert!(after.len() < before.len(), "old records were compacted");
    assert_eq!(latest(&after), latest(&before));
}

#[test]
fn a_reader_in_the_middle_of_a_segment_reads_on_across_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(1024)).unwrap();
    fill(&log, 4, 60, 2);
    let before = read_all(&log);
    let slice = log.read(21, 200).unwrap();
    let in_slice: Vec<_> = slice.records().map(|r| r.unwrap()).collect();
    assert!(!in_slice.is_empty());

    log.compact(NOW, &Throttle::unlimited()).unwrap();

    // The slice still reads the old bytes.
    let again: Vec<_> = slice.records().map(|r| r.unwrap()).collect();
    assert_eq!(summary(&again), summary(&in_slice));
    // Reading on from its next offset works, and gives the survivors from there.
    let mut at = slice.next_offset();
    let mut rest = Vec::new();
    while at < log.next_offset() {
        let s = log.read(at, 200).unwrap();
        rest.extend(s.records().map(|r| r.unwrap()));
        at = s.next_offset();
    }
    let after = read_all(&log);
    let expected: Vec<_> =
        after.iter().filter(|r| r.offset >= slice.next_offset()).cloned().collect();
    assert_eq!(summary(&rest), summary(&expected));
    assert_eq!(latest(&after), latest(&before));
}

#[test]
fn reads_and_timestamp_lookups_inside_gaps_find_the_next_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    fill(&log, 3, 50, 1);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let after = read_all(&log);
    let offsets: Vec<u64> = after.iter().map(|r| r.offset).collect();
    let mut checked = 0;
    for o in 0..log.next_offset() {
        let Some(&next) = offsets.iter().find(|&&x| x >= o) else { break };
        // Read on until a record shows up (a read may return only an empty batch).
        let mut at = o;
        let first = loop {
            let s = log.read(at, 1).unwrap();
            if let Some(r) = s.records().next() {
                break r.unwrap();
            }
            at = s.next_offset();
        };
        assert_eq!(first.offset, next, "read at {o}");
        // ListOffsets by timestamp: the first record at or after that time.
        let ts = T0 + o as i64;
        let found = log.offset_for_timestamp(ts).unwrap();
        assert_eq!(found, Some(next), "timestamp {ts}");
        checked += 1;
    }
    assert!(checked > 100);
    assert!(offsets.len() < 100, "most records were compacted away");
    // ListOffsets MAX_TIMESTAMP: the newest record (each record's timestamp grows with it).
    let newest = after.last().unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((newest.timestamp_ms, newest.offset)));
}

#[test]
fn a_log_without_a_cleaner_checkpoint_opens_with_everything_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    fill(&log, 5, 30, 2);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let after = read_all(&log);
    drop(log);
    std::fs::remove_file(dir.path().join("cleaner-offset-checkpoint")).unwrap();
    let log = Log::open(dir.path(), compact_config(512)).unwrap();
    assert_eq!(log.dirty_ratio(), 1.0);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    assert_eq!(summary(&read_all(&log)), summary(&after), "compacting again changes nothing");
}

#[test]
fn the_throttle_holds_the_cleaner_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(4096)).unwrap();
    fill(&log, 5, 400, 5);
    let sealed = log.describe().size_bytes;
    // Two passes read the dirty bytes; at 20 times the sealed size per second, a run takes at
    // least 1/20 s. (A lower bound only: never a timed upper bound.)
    let throttle = Throttle::bytes_per_sec(sealed * 20);
    let started = std::time::Instant::now();
    log.compact(NOW, &throttle).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(40), "{:?}", started.elapsed());
}

/// A file system that stops at its Nth mutating operation, as a crash would: that operation and
/// every later one fail, so the directory holds exactly what the first N did.
#[derive(Debug)]
struct CrashFs {
    ops: AtomicU64,
    crash_at: AtomicU64,
    /// Only the operation at `crash_at` fails (an I/O error, not a crash).
    once: std::sync::atomic::AtomicBool,
}

impl CrashFs {
    fn new() -> Arc<CrashFs> {
        Arc::new(CrashFs {
            ops: AtomicU64::new(0),
            crash_at: AtomicU64::new(u64::MAX),
            once: std::sync::atomic::AtomicBool::new(false),
        })
    }
    fn arm(&self, at: u64) {
        self.ops.store(0, Ordering::SeqCst);
        self.crash_at.store(at, Ordering::SeqCst);
    }
    fn step(&self) -> io::Result<()> {
        let i = self.ops.fetch_add(1, Ordering::SeqCst);
        let at = self.crash_at.load(Ordering::SeqCst);
        if i == at || (i > at && !self.once.load(Ordering::SeqCst)) {
            return Err(io::Error::other("crashed"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CrashFile {
    inner: Box<dyn FsFile>,
    fs: Arc<CrashFs>,
}

impl FsFile for CrashFile {
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
    fn as_file(&self) -> &std::fs::File {
        self.inner.as_file()
    }
}

#[derive(Debug)]
struct CrashFsHandle(Arc<CrashFs>);

impl FileSystem for CrashFsHandle {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(CrashFile { inner: RealFs.open(path)?, fs: self.0.clone() }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.0.step()?;
        Ok(Box::new(CrashFile { inner: RealFs.create(path)?, fs: self.0.clone() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.step()?;
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.step()?;
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
        self.0.step()?;
        RealFs.sync_dir(path)
    }
}

/// A log with a compacted part, a dirty part and tombstones, as a fixture to crash.
fn crash_fixture(dir: &Path) {
    let log = Log::open(dir, compact_config(400)).unwrap();
    fill(&log, 6, 15, 3);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    put(&log, &[("k1", None), ("k4", Some("k4-late".into()))]);
    fill(&log, 6, 10, 2);
}

/// Copies the files of a log directory (a fixture built once, crashed many times).
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_crash_at_any_file_operation_of_a_run_leaves_the_old_or_the_new_log() {
    let template = tempfile::tempdir().unwrap();
    crash_fixture(template.path());
    // The two acceptable outcomes, and how many file operations a run makes.
    let reference = tempfile::tempdir().unwrap();
    copy_dir(template.path(), reference.path());
    let fs = CrashFs::new();
    let log = Log::open_with_fs(
        reference.path(),
        compact_config(400),
        Arc::new(CrashFsHandle(fs.clone())),
    )
    .unwrap();
    let old = summary(&read_all(&log));
    fs.arm(u64::MAX);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let total_ops = fs.ops.load(Ordering::SeqCst);
    let new = summary(&read_all(&log));
    drop(log);
    assert_ne!(old, new);
    assert!(total_ops > 10, "{total_ops} operations");

    let (mut rolled_back, mut rolled_forward) = (0, 0);
    for crash_at in 0..total_ops {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let fs = CrashFs::new();
        let log =
            Log::open_with_fs(dir.path(), compact_config(400), Arc::new(CrashFsHandle(fs.clone())))
                .unwrap();
        fs.arm(crash_at);
        let res = log.compact(NOW, &Throttle::unlimited());
        assert!(res.is_err(), "crash at operation {crash_at} of {total_ops} is reported");
        // What the log serves after the failure, before a restart, is one of the two too.
        let served = summary(&read_all(&log));
        assert!(served == old || served == new, "served after crash at {crash_at}");
        drop(log);

        let log = Log::open(dir.path(), compact_config(400)).unwrap();
        let got = summary(&read_all(&log));
        assert!(got == old || got == new, "crash at operation {crash_at}: a mix or a loss");
        if got == old {
            rolled_back += 1
        } else {
            rolled_forward += 1
        }
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "crash at {crash_at}: {leftovers:?}");
        // And the log compacts normally afterwards.
        log.compact(NOW, &Throttle::unlimited()).unwrap();
        assert_eq!(summary(&read_all(&log)), new, "after a crash at {crash_at}, a run completes");
    }
    // Both sides of the commit point were hit.
    assert!(rolled_back > 0 && rolled_forward > 0, "{rolled_back} old, {rolled_forward} new");
}

#[test]
fn a_failed_file_operation_at_any_point_of_a_run_loses_nothing() {
    let template = tempfile::tempdir().unwrap();
    crash_fixture(template.path());
    let reference = tempfile::tempdir().unwrap();
    copy_dir(template.path(), reference.path());
    let log = Log::open(reference.path(), compact_config(400)).unwrap();
    let old = summary(&read_all(&log));
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let new = summary(&read_all(&log));
    drop(log);

    let mut at = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let fs = CrashFs::new();
        let log =
            Log::open_with_fs(dir.path(), compact_config(400), Arc::new(CrashFsHandle(fs.clone())))
                .unwrap();
        fs.once.store(true, Ordering::SeqCst);
        fs.arm(at);
        let res = log.compact(NOW, &Throttle::unlimited());
        if fs.ops.load(Ordering::SeqCst) <= at {
            res.unwrap();
            break; // past the last operation of a run
        }
        let served = summary(&read_all(&log));
        assert!(served == old || served == new, "served after a failure at {at}");
        if res.is_err() {
            // Retried in place (it works, or the log asks to be reopened), then reopened.
            if log.compact(NOW, &Throttle::unlimited()).is_ok() {
                assert_eq!(summary(&read_all(&log)), new, "retry after a failure at {at}");
            }
        }
        drop(log);
        let log = Log::open(dir.path(), compact_config(400)).unwrap();
        let got = summary(&read_all(&log));
        assert!(got == old || got == new, "failure at operation {at}: a mix or a loss");
        log.compact(NOW, &Throttle::unlimited()).unwrap();
        assert_eq!(summary(&read_all(&log)), new, "after a failure at {at}, a run completes");
        at += 1;
    }
    assert!(at > 10);
}

#[test]
fn appends_and_reads_go_on_while_a_log_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), compact_config(600)).unwrap());
    fill(&log, 8, 30, 2);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..600 {
                let k = format!("k{}", i % 8);
                put(&log, &[(k.as_str(), Some(format!("late-{i}")))]);
            }
        })
    };
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                // Every key's value is always there to read, whatever the cleaner does.
                let all = read_all(&log);
                assert_eq!(latest(&all).len(), 8);
            }
        })
    };
    let mut runs = 0;
    while !writer.is_finished() || runs < 3 {
        log.compact(NOW, &Throttle::unlimited()).unwrap();
        runs += 1;
    }
    writer.join().unwrap();
    reader.join().unwrap();
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let all = read_all(&log);
    let l = latest(&all);
    for k in 0..8 {
        let (_, v) = &l[format!("k{k}").as_bytes()];
        let last = (0..600).filter(|i| i % 8 == k).max().unwrap();
        assert_eq!(v.as_deref(), Some(format!("late-{last}").as_bytes()), "key k{k}");
    }
    assert_eq!(log.next_offset(), 240 + 600, "no offset lost or reused");
}

/// What compaction costs: 100 MB of 100-byte records, 1% distinct keys, unthrottled.
/// `cargo test --release --test storage_compaction -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_compaction_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = compact_config(64 << 20);
    config.max_record_bytes = 1 << 20;
    let log = Log::open(dir.path(), config).unwrap();
    let total = 1_000_000usize;
    let keys = total / 100;
    let value = vec![b'x'; 80];
    let key_strings: Vec<String> = (0..keys).map(|k| format!("key{k:08}")).collect();
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let recs: Vec<NewRecord<'_>> = chunk
            .iter()
            .map(|&i| NewRecord {
                timestamp_ms: T0,
                key: Some(key_strings[i % keys].as_bytes()),
                value: Some(&value),
                headers: &[],
            })
            .collect();
        log.append(&recs).unwrap();
    }
    // One more batch so that everything above sits in sealed segments.
    log.append(&[NewRecord {
        timestamp_ms: T0,
        key: Some(b"end"),
        value: Some(b"x"),
        headers: &[],
    }])
    .unwrap();
    let before = log.describe().size_bytes;
    let started = std::time::Instant::now();
    let stats = log.compact(NOW, &Throttle::unlimited()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "compacted {:.1} MB ({} segments) to {:.2} MB in {secs:.2} s: {:.0} MB/s; {} records removed; log {before} bytes",
        stats.bytes_before as f64 / 1e6,
        stats.segments_cleaned,
        stats.bytes_after as f64 / 1e6,
        stats.bytes_before as f64 / 1e6 / secs,
        stats.records_removed,
    );
    assert_eq!(stats.records_removed, (total - keys) as u64);
}

#[test]
fn compressed_batches_are_rewritten_with_their_codec() {
    use minikafka::batch::{BatchView, Compression};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(200)).unwrap();
    for round in 0..12 {
        let values: Vec<String> =
            (0..6).map(|k| format!("k{k}-r{round}-{}", "z".repeat(40))).collect();
        // Keys k0..k5, but k5 only in the first round: its record survives inside a batch
        // whose other records all go.
        let keys: Vec<String> = (0..6).map(|k| format!("k{k}")).collect();
        let n = if round == 0 { 6 } else { 5 };
        let recs: Vec<NewRecord<'_>> = (0..n)
            .map(|k| NewRecord {
                timestamp_ms: T0 + round,
                key: Some(keys[k].as_bytes()),
                value: Some(values[k].as_bytes()),
                headers: &[],
            })
            .collect();
        let mut batch = minikafka::record::build_batch(&recs, Compression::Lz4).unwrap();
        log.append_batches(&mut batch).unwrap();
    }
    let before = read_all(&log);
    assert!(active_base(dir.path()) > 30, "sealed segments to compact");
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let after = read_all(&log);
    assert_eq!(latest(&after), latest(&before));
    assert!(after.len() < before.len());
    // The batch holding the first k5 record now holds only it, still LZ4-compressed.
    let k5 = after.iter().find(|r| r.key.as_deref() == Some(b"k5")).unwrap();
    assert_eq!(k5.offset, 5);
    let slice = log.read(5, 1).unwrap();
    let view = BatchView::new(slice.bytes()).unwrap();
    view.verify_crc().unwrap();
    assert_eq!(view.compression().unwrap(), Compression::Lz4);
    assert_eq!((view.base_offset(), view.last_offset(), view.records_count()), (0, 5, 1));
}

#[test]
fn an_idempotent_producers_last_batch_survives_empty_so_a_retry_is_still_a_duplicate() {
    use minikafka::batch::{BatchBuilder, Compression, NewRecord as BatchRecord};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), compact_config(300)).unwrap();
    let batch = |seq: i32, key: &str| {
        let mut b = BatchBuilder::new(Compression::None).producer(7, 0, seq);
        b.push(&BatchRecord {
            timestamp: T0,
            key: Some(key.as_bytes()),
            value: Some(b"p"),
            headers: &[],
        })
        .unwrap();
        b.build().unwrap()
    };
    for seq in 0..3 {
        log.append_batches(&mut batch(seq, "pk")).unwrap();
    }
    // Later values of the same key, from a plain producer, supersede all three.
    fill(&log, 1, 1, 1);
    put(&log, &[("pk", Some("plain".into()))]);
    fill(&log, 3, 20, 2);
    log.compact(NOW, &Throttle::unlimited()).unwrap();
    let all = read_all(&log);
    assert!(all.iter().all(|r| r.offset > 2), "the producer's records are compacted away");
    // Forget the producer state snapshots: the state is rebuilt from the log's batches.
    drop(log);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = Log::open(dir.path(), compact_config(300)).unwrap();
    let next = log.next_offset();
    let retry = log.append_batches(&mut batch(2, "pk")).unwrap();
    assert_eq!((retry.first, retry.next), (2, 3), "the retry gets its original offset");
    assert_eq!(log.next_offset(), next, "nothing written twice");
}
