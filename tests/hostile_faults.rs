//! Fault injection into storage through the `FileSystem` seam: a seeded injector that makes one
//! chosen file operation fail (EIO, ENOSPC, a torn write) or "crashes" at it (that operation and
//! every later mutation fail, as if the process died there; what already reached the OS stays).
//! Each case asserts what a producer would see: an error for what was not stored, an ack only for
//! what was, and after a restart a log that is a valid prefix holding every acknowledged record.
//! Exercises: failed write, short write, failed fsync, ENOSPC, and crashes at every operation of
//! a workload that rolls segments, writes indexes, trims and applies retention (so crashes land
//! between a segment and its index, inside a roll, and inside retention's delete).

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{AppendBatch, Broker, BrokerConfig, BrokerError};
use minikafka::record::NewRecord;
use minikafka::storage::{FileSystem, FsFile, FsyncPolicy, Log, LogConfig, RealFs, StorageError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kinds of file operation the injector can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Create,
    Write,
    SetLen,
    Sync,
    Rename,
    Remove,
    SyncDir,
}

/// What happens at the chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// That one operation fails with EIO (a write persists a seeded prefix first: torn).
    FailOnce,
    /// That operation and every later mutation fail: the process "died" there.
    Crash,
}

#[derive(Debug)]
struct Plan {
    seed: u64,
    /// Mutating operations seen so far (all kinds).
    count: AtomicU64,
    /// Index of the operation to hit (u64::MAX: none).
    target: AtomicU64,
    mode: Mutex<Mode>,
    crashed: AtomicBool,
    /// While set, writes and creates fail with ENOSPC.
    no_space: AtomicBool,
    kinds: Mutex<Vec<Op>>,
}

/// A seeded fault injector over the real file system.
#[derive(Debug, Clone)]
struct ChaosFs {
    plan: Arc<Plan>,
}

impl ChaosFs {
    fn new(seed: u64) -> ChaosFs {
        ChaosFs {
            plan: Arc::new(Plan {
                seed,
                count: AtomicU64::new(0),
                target: AtomicU64::new(u64::MAX),
                mode: Mutex::new(Mode::FailOnce),
                crashed: AtomicBool::new(false),
                no_space: AtomicBool::new(false),
                kinds: Mutex::new(Vec::new()),
            }),
        }
    }
    fn hit_at(&self, index: u64, mode: Mode) {
        *self.plan.mode.lock().unwrap() = mode;
        self.plan.target.store(index, Ordering::SeqCst);
    }
    fn set_no_space(&self, on: bool) {
        self.plan.no_space.store(on, Ordering::SeqCst);
    }
    fn ops(&self) -> u64 {
        self.plan.count.load(Ordering::SeqCst)
    }
    fn kinds(&self) -> Vec<Op> {
        self.plan.kinds.lock().unwrap().clone()
    }
    /// Counts one mutating operation; `Err` when it must fail. `torn` gets how many bytes of a
    /// write to persist before failing.
    fn check(&self, op: Op, write_len: usize) -> Result<(), (io::Error, usize)> {
        let p = &self.plan;
        if p.crashed.load(Ordering::SeqCst) {
            return Err((io::Error::other("injected: process crashed earlier"), 0));
        }
        if p.no_space.load(Ordering::SeqCst) && matches!(op, Op::Write | Op::Create) {
            return Err((io::Error::from_raw_os_error(libc::ENOSPC), 0));
        }
        let n = p.count.fetch_add(1, Ordering::SeqCst);
        p.kinds.lock().unwrap().push(op);
        if n != p.target.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mode = *p.mode.lock().unwrap();
        if mode == Mode::Crash {
            p.crashed.store(true, Ordering::SeqCst);
        }
        // A seeded prefix of a write reaches the file: a torn write.
        let torn = if write_len > 0 {
            StdRng::seed_from_u64(p.seed ^ n).random_range(0..write_len)
        } else {
            0
        };
        Err((io::Error::other(format!("injected {mode:?} at {op:?} #{n}")), torn))
    }
}

struct ChaosFile {
    inner: Box<dyn FsFile>,
    fs: ChaosFs,
}

impl fmt::Debug for ChaosFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosFile").finish()
    }
}

impl FsFile for ChaosFile {
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        match self.fs.check(Op::Write, buf.len()) {
            Ok(()) => self.inner.write_all_at(buf, pos),
            Err((e, torn)) => {
                let _ = self.inner.write_all_at(&buf[..torn], pos);
                Err(e)
            }
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check(Op::SetLen, 0).map_err(|e| e.0)?;
        self.inner.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
    fn sync_data(&self) -> io::Result<()> {
        // Counted and failed on command, but not performed: the crashes simulated here are
        // process deaths (the page cache survives), so a real fdatasync would only cost time.
        self.fs.check(Op::Sync, 0).map_err(|e| e.0)
    }
    fn as_file(&self) -> &File {
        self.inner.as_file()
    }
}

impl FileSystem for ChaosFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(ChaosFile { inner: RealFs.open(path)?, fs: self.clone() }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check(Op::Create, 0).map_err(|e| e.0)?;
        Ok(Box::new(ChaosFile { inner: RealFs.create(path)?, fs: self.clone() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename, 0).map_err(|e| e.0)?;
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Op::Remove, 0).map_err(|e| e.0)?;
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
        self.check(Op::SyncDir, 0).map_err(|e| e.0)?;
        // Checked for existence like the real one, but not synced (see `sync_data`).
        std::fs::metadata(path).map(|_| ())
    }
}

/// A scratch directory; on tmpfs when there is one (these cases simulate process crashes, for
/// which the file system type does not matter, and there are a thousand of them).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 512,
        index_interval_bytes: 64,
        fsync,
        retention_bytes: Some(2048),
        ..LogConfig::default()
    }
}

fn payload(seed: u64, i: u64) -> Vec<u8> {
    let len = (seed.wrapping_mul(31).wrapping_add(i * 7) % 40) as usize + 1;
    format!("s{seed}-r{i}-").into_bytes().into_iter().cycle().take(len + 8).collect()
}

/// What a run acknowledged: offset -> value, and the values of the batch that failed (on disk
/// whole or not at all).
#[derive(Default)]
struct Acked {
    values: Vec<(u64, Vec<u8>)>,
    failed: Vec<Vec<u8>>,
    /// Highest log start a successful trim or retention reported.
    log_start: u64,
    /// Highest offset a trim was asked for (it may have taken effect even if it failed).
    trim_attempt: u64,
    /// A retention pass failed: it may have deleted any of the oldest sealed segments.
    retention_failed: bool,
}

/// A seeded workload: batches (rolling tiny segments), trims and retention; stops at the first
/// error (the "crash"), like a process that died there.
fn workload(log: &Log, seed: u64, steps: u64) -> Acked {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Acked::default();
    let mut i = 0u64;
    for _ in 0..steps {
        match rng.random_range(0..10) {
            0 => {
                let next = log.next_offset();
                let to = rng.random_range(log.log_start_offset()..=next);
                acked.trim_attempt = acked.trim_attempt.max(to);
                match log.trim_before(to) {
                    Ok(start) => acked.log_start = acked.log_start.max(start),
                    Err(_) => return acked,
                }
            }
            1 => {
                if log.enforce_retention(i64::MAX / 2).is_err() {
                    acked.retention_failed = true;
                    return acked;
                }
                acked.log_start = acked.log_start.max(log.log_start_offset());
            }
            _ => {
                let n = rng.random_range(1..5u64);
                let values: Vec<Vec<u8>> = (0..n).map(|k| payload(seed, i + k)).collect();
                i += n;
                let recs: Vec<NewRecord<'_>> = values.iter().map(|v| NewRecord::value(v)).collect();
                match log.append(&recs) {
                    Ok(r) => {
                        for (k, v) in values.into_iter().enumerate() {
                            acked.values.push((r.first + k as u64, v));
                        }
                    }
                    Err(_) => {
                        acked.failed = values;
                        return acked;
                    }
                }
            }
        }
    }
    acked
}

fn read_all(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let slice = log.read(at, 4096).unwrap();
        for r in slice.records() {
            let r = r.unwrap();
            out.push((r.offset, r.value.expect("appended with a value")));
            at = r.offset + 1;
        }
    }
    out
}

/// After a restart: a valid prefix (consecutive offsets from the log start), every acknowledged
/// record at or after the log start present with its value, and nothing past the acknowledged end
/// but the batch that failed, whole (a batch is atomic: all its records or none).
fn assert_valid_prefix(dir: &Path, acked: &Acked, what: &str) -> Vec<(u64, Vec<u8>)> {
    let log = Log::open(dir, config(FsyncPolicy::Never))
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let got = read_all(&log);
    let start = log.log_start_offset();
    assert!(start >= acked.log_start, "{what}: log start went back to {start}");
    if !acked.retention_failed {
        let allowed = acked.log_start.max(acked.trim_attempt);
        assert!(start <= allowed, "{what}: log start {start} is past every trim ({allowed})");
    }
    for (k, (off, _)) in got.iter().enumerate() {
        assert_eq!(*off, start + k as u64, "{what}: offsets must be consecutive");
    }
    let by_offset: std::collections::HashMap<u64, &Vec<u8>> =
        got.iter().map(|(o, v)| (*o, v)).collect();
    for (off, v) in &acked.values {
        if *off < start {
            continue; // trimmed or retained away, on purpose
        }
        assert_eq!(by_offset.get(off), Some(&v), "{what}: acknowledged offset {off} lost");
    }
    let acked_end = acked.values.last().map_or(0, |(o, _)| o + 1);
    let past: Vec<&Vec<u8>> = got.iter().filter(|(o, _)| *o >= acked_end).map(|(_, v)| v).collect();
    for (k, v) in past.iter().enumerate() {
        assert_eq!(
            acked.failed.get(k),
            Some(*v),
            "{what}: offset {} holds data that was never appended",
            acked_end + k as u64
        );
    }
    assert!(
        past.is_empty() || past.len() == acked.failed.len(),
        "{what}: {} of the failed batch's {} records survived: a batch is atomic",
        past.len(),
        acked.failed.len()
    );
    drop(log);
    // Reopening again gives the same log.
    let again = Log::open(dir, config(FsyncPolicy::Never)).unwrap();
    assert_eq!(read_all(&again), got, "{what}: a second reopen differs");
    got
}

/// Crash at every operation index of a seeded workload (each op kind), reopen with the real file
/// system, check the prefix property.
#[test]
fn crash_at_every_operation_leaves_a_valid_prefix_with_every_ack() {
    let mut cases = 0u64;
    let mut kinds_hit = std::collections::BTreeSet::new();
    for seed in 0..3u64 {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
            // Dry run: count the operations of this workload.
            let dir = scratch();
            let fs = ChaosFs::new(seed);
            let log = Log::open_with_fs(dir.path(), config(fsync), Arc::new(fs.clone())).unwrap();
            let opened_at = fs.ops();
            workload(&log, seed, 60);
            let total = fs.ops();
            let kinds = fs.kinds();
            drop(log);
            // Every operation after open, plus a seeded sample density to bound CI time.
            let step = ((total - opened_at) / 200).max(1);
            let mut at = opened_at;
            while at < total {
                let dir = scratch();
                let fs = ChaosFs::new(seed ^ at);
                let log =
                    Log::open_with_fs(dir.path(), config(fsync), Arc::new(fs.clone())).unwrap();
                fs.hit_at(at, Mode::Crash);
                let acked = workload(&log, seed, 60);
                drop(log); // the crash: no close, no clean-shutdown marker
                kinds_hit.insert(format!("{:?}", kinds[at as usize]));
                assert_valid_prefix(
                    dir.path(),
                    &acked,
                    &format!("seed {seed} {fsync:?} crash at op #{at} ({:?})", kinds[at as usize]),
                );
                cases += 1;
                at += step;
            }
        }
    }
    println!("crash-at-operation cases: {cases}; operation kinds crashed at: {kinds_hit:?}");
    for k in ["Create", "Write", "SetLen", "Sync", "Rename", "Remove", "SyncDir"] {
        assert!(kinds_hit.contains(k), "no crash landed on a {k}");
    }
}

/// The issue-12 regression: a batch of 50 records whose write the process dies in (a seeded
/// prefix of it reached the file: torn, as when the disk filled mid-write) is wholly absent after
/// the restart, never a few of its records; so is one refused at any other operation of the
/// append (space reservation, a roll). Every operation of the append is tried, with 60 seeds for
/// the torn length.
#[test]
fn a_batch_torn_by_a_crash_is_wholly_absent_after_a_restart() {
    let mut torn_writes = 0;
    for seed in 0..60u64 {
        for k in 0..6u64 {
            let dir = scratch();
            let fs = ChaosFs::new(seed);
            let log =
                Log::open_with_fs(dir.path(), config(FsyncPolicy::Never), Arc::new(fs.clone()))
                    .unwrap();
            let mut acked = Acked::default();
            for i in 0..20 {
                let v = payload(seed, i);
                let r = log.append(&[NewRecord::value(&v)]).unwrap();
                acked.values.push((r.first, v));
            }
            let values: Vec<Vec<u8>> = (20..70).map(|i| payload(seed, i)).collect();
            let recs: Vec<NewRecord<'_>> = values.iter().map(|v| NewRecord::value(v)).collect();
            let at = fs.ops() + k;
            fs.hit_at(at, Mode::Crash);
            let res = log.append(&recs);
            drop(log);
            if fs.kinds().get(at as usize) == Some(&Op::Write) {
                torn_writes += 1;
            }
            let what = format!("seed {seed}, crash at operation {k} of the append");
            if let Ok(r) = res {
                // The crash came after the append's last operation: it was acknowledged.
                for (j, v) in values.iter().enumerate() {
                    acked.values.push((r.first + j as u64, v.clone()));
                }
            } else {
                acked.failed = values;
            }
            let got = assert_valid_prefix(dir.path(), &acked, &what);
            assert!(got.len() == 20 || got.len() == 70, "{what}: {} records", got.len());
        }
    }
    assert!(torn_writes >= 60, "each seed tore the batch's write ({torn_writes})");
}

/// One failed operation of each kind (the process lives on): the failed call errs, later appends
/// either work (write, create, rename...) or are refused as poisoned (failed fsync) — never a
/// silent loss — and a restart gives a valid prefix with every ack.
#[test]
fn one_failed_operation_of_each_kind_never_loses_an_ack() {
    let mut cases = 0u64;
    let mut poisoned = 0u64;
    for seed in 0..2u64 {
        let dir = scratch();
        let fs = ChaosFs::new(seed);
        let log = Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone()))
            .unwrap();
        let opened_at = fs.ops();
        workload(&log, seed, 60);
        let total = fs.ops();
        drop(log);
        let step = ((total - opened_at) / 400).max(1);
        for at in (opened_at..total).step_by(step as usize) {
            let dir = scratch();
            let fs = ChaosFs::new(seed ^ at);
            let log =
                Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone()))
                    .unwrap();
            fs.hit_at(at, Mode::FailOnce);
            let mut acked = workload(&log, seed, 60);
            // The process lives on: the failed batch may be retried, and must then be acked.
            let retry: Vec<Vec<u8>> = std::mem::take(&mut acked.failed);
            let recs: Vec<NewRecord<'_>> = retry.iter().map(|v| NewRecord::value(v)).collect();
            if !recs.is_empty() {
                match log.append(&recs) {
                    Ok(r) => {
                        for (k, v) in retry.iter().enumerate() {
                            acked.values.push((r.first + k as u64, v.clone()));
                        }
                    }
                    Err(StorageError::Poisoned { .. }) => {
                        poisoned += 1;
                        acked.failed = retry;
                    }
                    Err(e) => panic!("seed {seed} op #{at}: retry failed with {e}"),
                }
            }
            drop(log);
            assert_valid_prefix(dir.path(), &acked, &format!("seed {seed} fail-once at op #{at}"));
            cases += 1;
        }
    }
    println!("fail-once cases: {cases} (of which {poisoned} left the log poisoned: failed fsync)");
    assert!(poisoned > 0, "some failure should have been a poisoning fsync");
}

/// Disk full: appends fail cleanly with ENOSPC, reads keep working, and appends work again once
/// space returns, without a restart.
#[test]
fn disk_full_fails_appends_cleanly_and_heals_when_space_returns() {
    let dir = scratch();
    let fs = ChaosFs::new(7);
    let log =
        Log::open_with_fs(dir.path(), config(FsyncPolicy::Always), Arc::new(fs.clone())).unwrap();
    let mut acked = Acked::default();
    let mut i = 0u64;
    let mut append = |log: &Log, acked: &mut Acked| {
        let v = payload(7, i);
        i += 1;
        let r = log.append(&[NewRecord::value(&v)]);
        if let Ok(r) = &r {
            acked.values.push((r.first, v));
        }
        r
    };
    for _ in 0..20 {
        append(&log, &mut acked).unwrap();
    }
    let before = read_all(&log);
    fs.set_no_space(true);
    let mut refused = 0;
    for _ in 0..30 {
        // Enough appends that some would roll a segment (which needs a new file).
        match append(&log, &mut acked) {
            Err(StorageError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
                refused += 1;
            }
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert_eq!(read_all(&log), before, "reads keep working and see no partial append");
    }
    fs.set_no_space(false);
    for _ in 0..40 {
        append(&log, &mut acked).expect("appends work again once space returns");
    }
    assert_eq!(read_all(&log).len(), 60);
    drop(log);
    let got = assert_valid_prefix(dir.path(), &acked, "after disk full");
    assert_eq!(got.len(), 60);
    println!("disk full: {refused} appends refused with ENOSPC, 40 accepted after space returned");
}

fn broker_config(dir: &Path, fs: &ChaosFs) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        log: LogConfig { segment_bytes: 1024, ..LogConfig::default() },
        fs: Some(Arc::new(fs.clone())),
        ..BrokerConfig::default()
    }
}

/// Through the broker (as a producer sees it): a failed write and ENOSPC are errors for that
/// append only; a failed fsync makes the partition refuse appends until restart; every acked
/// record is there after the restart, and nothing unacknowledged was reported as stored.
#[test]
fn broker_reports_every_storage_fault_to_the_producer() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let rt = rt.unwrap();
    let dir = scratch();
    let data: PathBuf = dir.path().join("data");
    let fs = ChaosFs::new(11);
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut faults = Vec::new();
    rt.block_on(async {
        let broker = Broker::open(broker_config(&data, &fs)).unwrap();
        broker.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
        let mut n = 0u64;
        let mut send = async |broker: &Broker| {
            let v = format!("value-{n}").into_bytes();
            n += 1;
            let r = broker
                .append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(&v)]))
                .await;
            (v, r)
        };
        for _ in 0..10 {
            let (v, r) = send(&broker).await;
            acked.push((r.unwrap().offsets.first, v));
        }
        // A failed write: that append fails, the next one works.
        fs.hit_at(fs.ops(), Mode::FailOnce);
        let (_, r) = send(&broker).await;
        assert!(matches!(r, Err(BrokerError::Storage { .. })), "{r:?}");
        faults.push("failed write");
        let (v, r) = send(&broker).await;
        acked.push((r.expect("a failed write does not poison").offsets.first, v));
        // Disk full: refused while full, accepted after.
        fs.set_no_space(true);
        for _ in 0..3 {
            let (_, r) = send(&broker).await;
            assert!(matches!(r, Err(BrokerError::Storage { .. })), "{r:?}");
        }
        let fetched = broker.fetch("t", 0, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
        assert_eq!(fetched.records.records().count(), acked.len(), "reads work while full");
        fs.set_no_space(false);
        faults.push("ENOSPC");
        let (v, r) = send(&broker).await;
        acked.push((r.unwrap().offsets.first, v));
        // A failed fsync: that append fails and the partition is poisoned until restart.
        // Op `at` is normally the write and `at + 1` its fdatasync; a roll shifts that, so
        // repeat until the partition reports itself poisoned.
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 50, "never hit an fdatasync");
            fs.hit_at(fs.ops() + 1, Mode::FailOnce);
            let (v, r) = send(&broker).await;
            if let Ok(a) = r {
                acked.push((a.offsets.first, v));
                continue;
            }
            let (v, r) = send(&broker).await;
            match r {
                Ok(a) => acked.push((a.offsets.first, v)),
                Err(BrokerError::Storage { source: StorageError::Poisoned { .. }, .. }) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let (_, r) = send(&broker).await;
        assert!(
            matches!(r, Err(BrokerError::Storage { source: StorageError::Poisoned { .. }, .. })),
            "still refused until restart: {r:?}"
        );
        faults.push("failed fsync");
        let _ = broker.shutdown(); // refuses the clean marker for the poisoned log
    });
    rt.block_on(async {
        let broker = Broker::open(BrokerConfig { fs: None, ..broker_config(&data, &fs) }).unwrap();
        let fetched = broker.fetch("t", 0, 0, 1 << 20, 0, Duration::ZERO).await.unwrap();
        let got: Vec<(u64, Vec<u8>)> = fetched
            .records
            .records()
            .map(|r| r.unwrap())
            .map(|r| (r.offset, r.value.expect("appended with a value")))
            .collect();
        assert!(got.len() >= acked.len());
        for (k, (off, _)) in got.iter().enumerate() {
            assert_eq!(*off, k as u64);
        }
        for (off, v) in &acked {
            assert_eq!(&got[*off as usize].1, v, "acknowledged offset {off} lost");
        }
        // After restart the partition takes appends again.
        broker
            .append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"after")]))
            .await
            .unwrap();
        broker.shutdown().unwrap();
    });
    println!("broker-level faults: {faults:?}; {} acknowledged records verified", acked.len());
}
