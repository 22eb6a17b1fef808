use super::*;
use crate::record::Header;
use crate::storage::{CleanupPolicy, FaultyFs};
use std::time::Duration;

/// A config with small segments and dense index entries, so that tests cross segment and index
/// boundaries with few records; no fsync. Shared with `timeindex_tests`.
pub(super) fn tiny(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        max_record_bytes: 4096,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i:04}").into_bytes()
}

fn append_n(log: &Log, n: u64) {
    for _ in 0..n {
        let i = log.next_offset();
        let v = value(i);
        let r =
            NewRecord { timestamp_ms: 1000 + i as i64, key: None, value: Some(&v), headers: &[] };
        assert_eq!(log.append(&[r]).unwrap(), OffsetRange { first: i, next: i + 1 });
    }
}

fn read_all(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.visible_end() {
        let slice = log.read(at, 100).unwrap();
        for r in slice.records() {
            let r = r.unwrap();
            out.push((r.offset, r.value.unwrap()));
        }
        assert!(slice.next_offset() > at);
        at = slice.next_offset();
    }
    out
}

/// The names of the files in `dir`, sorted. Shared with `timeindex_tests`.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn append_then_read_every_field_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    let headers = vec![Header { key: b"h".to_vec(), value: Some(b"v".to_vec()) }];
    let recs = [
        NewRecord { timestamp_ms: 5, key: Some(b"k"), value: Some(b"one"), headers: &headers },
        NewRecord { timestamp_ms: 6, key: None, value: Some(b"two"), headers: &[] },
    ];
    assert_eq!(log.append(&recs).unwrap(), OffsetRange { first: 0, next: 2 });
    let slice = log.read(0, 1 << 20).unwrap();
    let got: Vec<_> = slice.records().map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(got[0].headers, headers);
    assert_eq!(got[1].value.as_deref(), Some(&b"two"[..]));
    assert_eq!((slice.first_offset(), slice.next_offset()), (0, 2));
    assert!(log.read(2, 10).unwrap().is_empty());
    assert!(matches!(
        log.read(3, 10),
        Err(StorageError::OffsetOutOfRange { offset: 3, log_start_offset: 0, next_offset: 2 })
    ));
    assert_eq!(log.append(&[]).unwrap(), OffsetRange { first: 2, next: 2 });
}

#[test]
fn rolls_name_files_by_base_offset_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 10);
    // 24-byte header + 78-byte one-record batches: 3 records per 260-byte segment. Each roll
    // leaves a producer state snapshot at the new base; the newest two are kept. Sealed segments
    // have their time index written (the active one's is written at close).
    let mut expected: Vec<_> = [0, 3, 6, 9]
        .iter()
        .flat_map(|b| [format!("{b:020}.index"), format!("{b:020}.log")])
        .collect();
    expected.extend([6, 9].iter().map(|b| format!("{b:020}.snapshot")));
    expected.extend([0, 3, 6].iter().map(|b| format!("{b:020}.timeindex")));
    expected.push("leader-epoch-checkpoint".into());
    expected.sort();
    assert_eq!(names(dir.path()), expected);
    let d = log.describe();
    assert_eq!((d.log_start_offset, d.next_offset, d.segments), (0, 10, 4));
    let all = read_all(&log);
    assert_eq!(all.len(), 10);
    assert!(all.iter().enumerate().all(|(i, (o, v))| *o == i as u64 && *v == value(*o)));
    // A read never spans segments.
    assert_eq!(log.read(1, 1 << 20).unwrap().next_offset(), 3);
}

#[test]
fn reopen_after_close_and_after_crash_gives_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), tiny(300)).unwrap();
        append_n(&log, 20);
        log.close().unwrap();
        assert!(matches!(log.append(&[NewRecord::value(b"x")]), Err(StorageError::Closed { .. })));
        assert!(dir.path().join(CLEAN_MARKER).exists());
    }
    let before;
    {
        let log = Log::open(dir.path(), tiny(300)).unwrap();
        assert!(!dir.path().join(CLEAN_MARKER).exists(), "marker removed before writes");
        before = read_all(&log);
        assert_eq!(before.len(), 20);
        append_n(&log, 5);
        // dropped without close: a crash as far as the files are concerned
    }
    let log = Log::open(dir.path(), tiny(300)).unwrap();
    let after = read_all(&log);
    assert_eq!(after.len(), 25);
    assert_eq!(&after[..20], &before[..]);
    append_n(&log, 1);
    assert_eq!(log.next_offset(), 26);
}

#[test]
fn batch_bigger_than_a_segment_still_fits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(100)).unwrap();
    let big = vec![7u8; 3000];
    assert_eq!(log.append(&[NewRecord::value(&big)]).unwrap().first, 0);
    append_n(&log, 1);
    // Seven records of 500 bytes: one batch under max_record_bytes (4096), over the segment size.
    let big_batch: Vec<_> = (0..7).map(|_| NewRecord::value(&big[..500])).collect();
    assert_eq!(log.append(&big_batch).unwrap(), OffsetRange { first: 2, next: 9 });
    let first = |o| log.read(o, 1).unwrap().records().next().unwrap().unwrap().value.unwrap();
    assert_eq!(first(0), &big[..]);
    assert_eq!(first(5), &big[..500]);
    drop(log);
    let log = Log::open(dir.path(), tiny(100)).unwrap();
    assert_eq!(log.next_offset(), 9);
    assert_eq!(read_all(&log).len(), 9);
}

#[test]
fn oversized_batch_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    let big = vec![0u8; 5000];
    assert!(matches!(
        log.append(&[NewRecord::value(b"ok"), NewRecord::value(&big)]),
        Err(StorageError::RecordTooLarge { max: 4096, .. })
    ));
    let mut enc = record::build_batch(&[NewRecord::value(&big)], Compression::None).unwrap();
    assert!(matches!(log.append_batches(&mut enc), Err(StorageError::RecordTooLarge { .. })));
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn append_batches_stores_the_producers_bytes_with_only_offset_and_epoch_set() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    append_n(&log, 3);
    let recs = [NewRecord::value(b"a"), NewRecord::value(b"b")];
    let sent = record::build_batch(&recs, Compression::Gzip).unwrap();
    let mut enc = sent.clone();
    assert_eq!(log.append_batches(&mut enc).unwrap(), OffsetRange { first: 3, next: 5 });
    let slice = log.read(3, 1 << 20).unwrap();
    assert_eq!(slice.bytes(), &enc[..], "stored bytes are the caller's, renumbered");
    // Only baseOffset (0..8) and partitionLeaderEpoch (12..16) differ from what was sent.
    assert_eq!(&slice.bytes()[8..12], &sent[8..12]);
    assert_eq!(&slice.bytes()[16..], &sent[16..], "still gzip, CRC untouched");
    let values: Vec<_> = slice.records().map(|r| r.unwrap().value.unwrap()).collect();
    assert_eq!(values, [b"a".to_vec(), b"b".to_vec()]);
    let mut bad = vec![1, 2, 3];
    assert!(matches!(log.append_batches(&mut bad), Err(StorageError::InvalidBatch { .. })));
    let mut flipped = sent.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        log.append_batches(&mut flipped),
        Err(StorageError::InvalidBatch { source: BatchError::Crc { .. }, .. })
    ));
    assert_eq!(log.next_offset(), 5, "a refused batch writes nothing");
}

#[test]
fn trim_before_deletes_whole_segments_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 10);
    assert_eq!(log.trim_before(4).unwrap(), 4);
    assert!(matches!(
        log.read(3, 10),
        Err(StorageError::OffsetOutOfRange { log_start_offset: 4, .. })
    ));
    assert_eq!(log.read(4, 10).unwrap().first_offset(), 4);
    let logs: Vec<_> = names(dir.path()).into_iter().filter(|n| n.ends_with(".log")).collect();
    assert_eq!(
        logs,
        ["00000000000000000003.log", "00000000000000000006.log", "00000000000000000009.log"]
    );
    assert_eq!(log.trim_before(2).unwrap(), 4, "never moves back");
    assert!(log.trim_before(11).is_err());
    drop(log);
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    assert_eq!(log.log_start_offset(), 4);
    // Trimming everything keeps the offsets going.
    assert_eq!(log.trim_before(10).unwrap(), 10);
    assert_eq!(log.describe().segments, 1);
    assert!(log.read(10, 10).unwrap().is_empty());
    append_n(&log, 1);
    drop(log);
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (10, 11));
    assert_eq!(read_all(&log), vec![(10, value(10))]);
}

#[test]
fn retention_by_size_and_age_deletes_oldest_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(260);
    cfg.retention_bytes = Some(600);
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    append_n(&log, 12); // segments 0,3,6,9 (258 bytes each when full)
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 6);
    let logs: Vec<_> = names(dir.path()).into_iter().filter(|n| n.ends_with(".log")).collect();
    assert_eq!(logs, ["00000000000000000006.log", "00000000000000000009.log"]);
    drop(log);
    cfg.retention_bytes = None;
    cfg.retention_ms = Some(100);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_start_offset(), 6);
    // Records 6..8 have timestamps 1006..1008; at now=1200 they are older than 100 ms.
    assert_eq!(log.enforce_retention(1100).unwrap(), 0);
    assert_eq!(log.enforce_retention(1200).unwrap(), 1);
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0, "never the active segment");
    assert_eq!((log.log_start_offset(), log.next_offset()), (9, 12));
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 10); // timestamps 1000..1009
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1004).unwrap(), Some(4));
    assert_eq!(log.offset_for_timestamp(1009).unwrap(), Some(9));
    assert_eq!(log.offset_for_timestamp(1010).unwrap(), None);
    log.trim_before(5).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(5));
}

#[test]
fn failed_fsync_poisons_the_log_but_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut cfg = tiny(1 << 20);
    cfg.fsync = FsyncPolicy::Always;
    let log = Log::open_with_fs(dir.path(), cfg, Arc::new(fs.clone())).unwrap();
    append_n(&log, 2);
    fs.fail_next_syncs(1);
    assert!(matches!(log.append(&[NewRecord::value(b"x")]), Err(StorageError::Io { .. })));
    assert!(matches!(log.append(&[NewRecord::value(b"y")]), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    assert!(log.close().is_err(), "a poisoned log does not claim a clean shutdown");
    // Reads still work, up to the durable end: the record whose fdatasync failed was never
    // acknowledged, so no reader sees it either.
    assert_eq!(read_all(&log).len(), 2);
    assert_eq!((log.visible_end(), log.next_offset(), log.describe().next_offset), (2, 3, 2));
    drop(log);
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    append_n(&log, 1);
}

#[test]
fn failed_write_publishes_nothing_and_the_next_append_heals() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = Log::open_with_fs(dir.path(), tiny(1 << 20), Arc::new(fs.clone())).unwrap();
    append_n(&log, 2);
    fs.short_next_write();
    let torn: Vec<NewRecord<'_>> = (0..8).map(|_| NewRecord::value(b"torn")).collect();
    assert!(log.append(&torn).is_err());
    assert_eq!(log.next_offset(), 2);
    assert_eq!(read_all(&log).len(), 2);
    // Same size as the first torn record: without zeroing, the torn batch's later records
    // would follow it on disk with valid CRCs and consecutive offsets.
    log.append(&[NewRecord::value(b"zzzz")]).unwrap();
    assert_eq!(log.next_offset(), 3);
    drop(log);
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    assert_eq!(log.next_offset(), 3, "the torn batch's leftovers are not resurrected");
    assert_eq!(read_all(&log)[2].1, b"zzzz");
}

#[test]
fn appenders_arriving_while_an_fdatasync_runs_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut cfg = tiny(1 << 20);
    cfg.fsync = FsyncPolicy::Always;
    let log = Arc::new(Log::open_with_fs(dir.path(), cfg, Arc::new(fs.clone())).unwrap());
    let syncs_before = fs.sync_count();
    // A slow disk: the first appender's fdatasync does not return until all four have written.
    fs.hold_syncs(true);
    let appenders: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                log.append(&[NewRecord::value(b"a"), NewRecord::value(b"b")])
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(log.next_offset() == 8 && fs.held_sync_count() == 1) {
        assert!(Instant::now() < deadline, "four appends and one held fdatasync");
        std::thread::sleep(Duration::from_millis(1));
    }
    fs.hold_syncs(false);
    for a in appenders {
        assert_eq!(a.join().unwrap().unwrap().len(), 2);
    }
    // Group commit: the held fdatasync covers what was written when it began; one more covers
    // every appender that waited behind it. Without sharing it would take four.
    let syncs = fs.sync_count() - syncs_before;
    assert!((1..=2).contains(&syncs), "{syncs} fdatasyncs for 4 appends");
    assert_eq!(log.visible_end(), 8, "all four are durable and visible");
}

#[test]
fn concurrent_appenders_and_a_reader_see_only_whole_durable_batches() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut cfg = tiny(4096);
    cfg.fsync = FsyncPolicy::Always;
    let log = Arc::new(Log::open_with_fs(dir.path(), cfg, Arc::new(fs.clone())).unwrap());
    let syncs_before = fs.sync_count();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let r = log.append(&[NewRecord::value(b"a"), NewRecord::value(b"b")]).unwrap();
                    assert_eq!(r.len(), 2);
                }
            })
        })
        .collect();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut at = 0;
            while at < 400 && Instant::now() < deadline {
                let s = log.read(at, 1000).unwrap();
                for r in s.records() {
                    assert_eq!(r.unwrap().offset, at);
                    at += 1;
                }
            }
            at
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(reader.join().unwrap(), 400);
    assert_eq!(log.next_offset(), 400);
    // How many fdatasyncs are shared depends on thread timing (a fast disk shares none); the
    // sharing itself is proven deterministically by the test above.
    assert!(fs.sync_count() > syncs_before, "Always must fdatasync");
    assert_eq!(read_all(&log).len(), 400);
}

#[test]
fn public_types_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_clone<T: Clone>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<ReadSlice>();
    assert_clone::<ReadSlice>();
}

#[test]
fn an_index_entry_pointing_at_the_wrong_record_is_caught_and_rebuilt() {
    use crate::storage::index::{Index, IndexEntry};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    append_n(&log, 100);
    log.close().unwrap();
    drop(log);
    // Shift a middle entry by one byte: still ordered, CRC recomputed, so it loads.
    let path = dir.path().join("00000000000000000000.index");
    let (index, summary) = Index::decode(&std::fs::read(&path).unwrap(), 0).unwrap();
    let mut bad = Index::new();
    let n = index.entries().len();
    assert!(n > 10);
    for (i, e) in index.entries().iter().enumerate() {
        let shift = u32::from(i == n / 2);
        bad.push(IndexEntry { relative_offset: e.relative_offset, position: e.position + shift });
    }
    std::fs::write(&path, bad.encode(0, summary)).unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    for o in 0..100 {
        let s = log.read(o, 1).unwrap();
        let r = s.records().next().unwrap().unwrap();
        assert_eq!((r.offset, r.value), (o, Some(value(o))));
    }
}

#[test]
fn disk_full_fails_appends_cleanly_and_they_work_again_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = Log::open_with_fs(dir.path(), tiny(260), Arc::new(fs.clone())).unwrap();
    append_n(&log, 4);
    fs.set_no_space(true);
    for _ in 0..3 {
        let err = log.append(&[NewRecord::value(b"no room")]).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err}");
    }
    assert_eq!(log.next_offset(), 4);
    assert_eq!(read_all(&log).len(), 4, "reads keep working");
    fs.set_no_space(false);
    append_n(&log, 4);
    drop(log);
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    assert_eq!(read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
}

#[test]
fn interval_policy_syncs_when_due_and_on_the_ticker() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut cfg = tiny(1 << 20);
    cfg.fsync = FsyncPolicy::Interval(Duration::from_secs(3600));
    let log = Log::open_with_fs(dir.path(), cfg, Arc::new(fs.clone())).unwrap();
    let base = fs.sync_count();
    append_n(&log, 3);
    assert_eq!(fs.sync_count(), base, "not due yet");
    log.sync_if_dirty().unwrap();
    assert_eq!(fs.sync_count(), base + 1);
    log.sync_if_dirty().unwrap();
    assert_eq!(fs.sync_count(), base + 1, "nothing new: no sync");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(1 << 20);
    cfg.fsync = FsyncPolicy::Interval(Duration::from_millis(1));
    let log = Log::open_with_fs(dir.path(), cfg, Arc::new(fs.clone())).unwrap();
    let base = fs.sync_count();
    std::thread::sleep(Duration::from_millis(5));
    append_n(&log, 1);
    assert!(fs.sync_count() > base, "due: the append synced inline");
}

#[test]
fn never_policy_does_not_sync_appends_but_sealing_does() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let log = Log::open_with_fs(dir.path(), tiny(260), Arc::new(fs.clone())).unwrap();
    let base = fs.sync_count();
    append_n(&log, 3);
    assert_eq!(fs.sync_count(), base);
    append_n(&log, 1); // rolls: seals segment 0
    assert!(fs.sync_count() > base);
}

#[test]
fn a_slice_outlives_the_deletion_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 10);
    let slice = log.read(0, 1 << 20).unwrap();
    log.trim_before(9).unwrap();
    assert!(!dir.path().join("00000000000000000000.log").exists());
    let offsets: Vec<u64> = slice.records().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    assert!(matches!(log.read(0, 10), Err(StorageError::OffsetOutOfRange { .. })));
}

#[test]
fn readers_race_the_appender_and_retention_without_seeing_torn_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(400);
    cfg.retention_bytes = Some(1200);
    let log = Arc::new(Log::open(dir.path(), cfg).unwrap());
    const TOTAL: u64 = 2000;
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            while log.next_offset() < TOTAL {
                let batch = (log.next_offset() % 3 + 1).min(TOTAL - log.next_offset());
                for _ in 0..batch {
                    append_n(&log, 1);
                }
            }
        })
    };
    let retention = {
        let log = log.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while log.next_offset() < TOTAL && Instant::now() < deadline {
                log.enforce_retention(0).unwrap();
                std::thread::yield_now();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0u64;
    while log.next_offset() < TOTAL && Instant::now() < deadline {
        let at = log.log_start_offset();
        match log.read(at, 300) {
            Ok(slice) => {
                let mut o = at;
                for r in slice.records() {
                    let r = r.unwrap();
                    assert_eq!((r.offset, r.value), (o, Some(value(o))));
                    o += 1;
                }
                assert_eq!(o, slice.next_offset());
                reads += 1;
            }
            // Retention moved the start between the two calls.
            Err(StorageError::OffsetOutOfRange { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    appender.join().unwrap();
    retention.join().unwrap();
    assert!(reads > 0);
    assert_eq!(log.next_offset(), TOTAL);
    assert!(log.log_start_offset() > 0, "retention ran");
}

/// One idempotent batch of `n` records from producer 7, epoch `epoch`, first sequence `seq`.
fn idempotent(epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = batch::BatchBuilder::new(Compression::None).producer(7, epoch, seq);
    for i in 0..n {
        let v = format!("p7-{}", seq as usize + i);
        record::push_record(&mut b, &NewRecord::value(v.as_bytes())).unwrap();
    }
    b.build().unwrap()
}

#[test]
fn an_idempotent_retry_gets_its_first_offsets_back_and_is_not_stored_twice_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 2);
    let first = log.append_batches(&mut idempotent(0, 0, 3)).unwrap();
    assert_eq!(first, OffsetRange { first: 2, next: 5 });
    append_n(&log, 4); // rolls segments: a snapshot is written at each roll
    // The producer did not see the acknowledgement and sends the same batch again.
    assert_eq!(log.append_batches(&mut idempotent(0, 0, 3)).unwrap(), first);
    assert_eq!(log.next_offset(), 9, "nothing written twice");
    // A gap is refused, an old epoch is fenced; neither writes anything.
    assert!(matches!(
        log.append_batches(&mut idempotent(0, 5, 1)),
        Err(StorageError::Producer(producer_state::ProducerStateError::OutOfOrderSequence {
            expected: 3,
            got: 5,
            ..
        }))
    ));
    assert_eq!(log.append_batches(&mut idempotent(1, 0, 1)).unwrap().first, 9);
    assert!(matches!(
        log.append_batches(&mut idempotent(0, 3, 1)),
        Err(StorageError::Producer(
            producer_state::ProducerStateError::InvalidProducerEpoch { .. }
        ))
    ));
    // A crash (no close): the state comes back from the snapshot and the log after it.
    drop(log);
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    assert_eq!(log.append_batches(&mut idempotent(1, 0, 1)).unwrap().first, 9);
    assert_eq!(
        log.append_batches(&mut idempotent(1, 1, 2)).unwrap(),
        OffsetRange { first: 10, next: 12 }
    );
    // A clean restart: the snapshot written at close is enough.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    assert_eq!(
        log.append_batches(&mut idempotent(1, 1, 2)).unwrap(),
        OffsetRange { first: 10, next: 12 }
    );
    assert_eq!(log.next_offset(), 12);
    let snapshots: Vec<_> =
        names(dir.path()).into_iter().filter(|n| n.ends_with(".snapshot")).collect();
    assert!(!snapshots.is_empty() && snapshots.len() <= SNAPSHOTS_KEPT, "{snapshots:?}");
}

fn at(log: &Log, ts: i64) {
    let v = value(log.next_offset());
    let r = NewRecord { timestamp_ms: ts, key: None, value: Some(&v), headers: &[] };
    log.append(&[r]).unwrap();
}

#[test]
fn a_compact_only_log_is_never_deleted_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(1),
        retention_ms: Some(1),
        cleanup_policy: CleanupPolicy { delete: false, compact: true },
        // One byte more than `append_n`'s records need per batch: these have a one-byte key.
        ..tiny(263)
    };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..12u64 {
        // A compacted log takes only records with a key.
        let v = value(i);
        let r = NewRecord {
            timestamp_ms: 1000 + i as i64,
            key: Some(b"k"),
            value: Some(&v),
            headers: &[],
        };
        log.append(&[r]).unwrap();
    }
    assert_eq!(log.describe().segments, 4);
    assert_eq!(log.enforce_retention(i64::MAX).unwrap(), 0, "compact-only keeps every segment");
    assert_eq!(log.log_start_offset(), 0);
    // compact,delete (set on the live log) deletes by age and size again.
    let both = CleanupPolicy { delete: true, compact: true };
    log.set_config(LogConfig { cleanup_policy: both, ..cfg }).unwrap();
    assert_eq!(log.enforce_retention(i64::MAX).unwrap(), 3);
    assert_eq!(log.log_start_offset(), 9);
}

#[test]
fn segment_ms_rolls_the_active_segment_once_its_first_batch_is_older() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: Some(100), ..tiny(1 << 20) };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    at(&log, 1000);
    at(&log, 1100); // exactly segment_ms later: not older yet
    assert_eq!(log.describe().segments, 1);
    at(&log, 1101);
    assert_eq!(log.describe().segments, 2, "rolled: the first batch (1000) is 101 ms older");
    at(&log, 1150);
    assert_eq!(log.describe().segments, 2);
    // After a reopen the age is measured from the active segment's first batch on disk (1101).
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    at(&log, 1200);
    assert_eq!(log.describe().segments, 2);
    at(&log, 1202);
    assert_eq!(log.describe().segments, 3);
    let offsets: Vec<u64> = read_all(&log).into_iter().map(|(o, _)| o).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn set_config_applies_to_the_live_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(260)).unwrap();
    append_n(&log, 2);
    // A larger segment size than the active segment's mapping: the next roll makes room.
    log.set_config(tiny(1 << 20)).unwrap();
    append_n(&log, 40);
    assert_eq!(log.config().segment_bytes, 1 << 20);
    assert_eq!(read_all(&log).len(), 42);
    assert_eq!(log.describe().segments, 2);
    // A smaller max batch size refuses at once.
    log.set_config(LogConfig { max_record_bytes: 80, ..tiny(1 << 20) }).unwrap();
    let big = vec![b'x'; 200];
    let err = log.append(&[NewRecord::value(&big)]).unwrap_err();
    assert!(matches!(err, StorageError::RecordTooLarge { .. }), "{err}");
    // The fsync policy is the broker's: refused, the config unchanged.
    let always = LogConfig { fsync: FsyncPolicy::Always, ..tiny(1 << 20) };
    assert!(matches!(log.set_config(always), Err(StorageError::InvalidConfig { .. })));
    assert_eq!(log.config().fsync, FsyncPolicy::Never);
    assert!(log.set_config(LogConfig { segment_ms: Some(0), ..tiny(1 << 20) }).is_err());
}

#[test]
fn log_append_time_stamps_each_batch_and_create_time_keeps_the_producers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { timestamp_type: TimestampType::LogAppendTime, ..tiny(1 << 20) };
    let log = Log::open(dir.path(), cfg).unwrap();
    let before = record::now_ms();
    let records = [
        NewRecord { timestamp_ms: 5, ..NewRecord::value(b"a") },
        NewRecord { timestamp_ms: 7, ..NewRecord::value(b"b") },
    ];
    let mut bytes = record::build_batch(&records, Compression::None).unwrap();
    let (range, stamped) = log.append_batches_timed(&mut bytes).unwrap();
    assert_eq!(range, OffsetRange { first: 0, next: 2 });
    let stamped = stamped.expect("a LogAppendTime log returns its append time");
    assert!(stamped >= before && stamped <= record::now_ms());

    let slice = log.read(0, 1 << 20).unwrap();
    let view = batch::BatchView::new(slice.bytes()).unwrap();
    assert_eq!(view.timestamp_type(), batch::TimestampType::LogAppendTime);
    assert_eq!(view.max_timestamp(), stamped);
    assert_eq!(view.base_timestamp(), 5, "records keep their deltas");
    // The CRC was recomputed: the stored batch validates.
    batch::validate(slice.bytes(), &batch::Limits::default()).unwrap();
    let times: Vec<i64> = slice.records().map(|r| r.unwrap().timestamp_ms).collect();
    assert_eq!(times, [stamped, stamped]);
    // The time index sees the stamped time.
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((stamped, 0)));

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    let mut bytes = record::build_batch(&records, Compression::None).unwrap();
    assert_eq!(log.append_batches_timed(&mut bytes).unwrap().1, None);
    let times: Vec<i64> =
        log.read(0, 1 << 20).unwrap().records().map(|r| r.unwrap().timestamp_ms).collect();
    assert_eq!(times, [5, 7]);
}

#[test]
fn bytes_from_an_offset_count_every_batch_to_the_end_across_segments_and_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    // Several batches per segment, many segments, index entries every 64 bytes.
    let log = Log::open(dir.path(), tiny(400)).unwrap();
    append_n(&log, 40);
    assert!(log.describe().segments > 4, "{:?}", log.describe());
    // Every batch is one record of the same length, so the same size.
    let batch = log.bytes_from(39).unwrap();
    assert_eq!(batch, log.read(39, 1 << 20).unwrap().bytes().len() as u64);
    for k in 0..=40 {
        assert_eq!(log.bytes_from(k).unwrap(), (40 - k) * batch, "from offset {k}");
    }
    assert_eq!(log.bytes_from(1000).unwrap(), 0, "past the end: nothing to copy");
    let d = log.describe();
    assert_eq!(
        log.bytes_from(0).unwrap(),
        d.size_bytes - (d.segments * SEGMENT_HEADER_LEN) as u64,
        "from the start: every record the log holds"
    );
    // Below a moved log start (in the middle of a segment) counts from the start.
    log.trim_before(7).unwrap();
    assert_eq!(log.bytes_from(0).unwrap(), 33 * batch);
    assert_eq!(log.bytes_from(20).unwrap(), 20 * batch);
}
