//! Seeded corruption tests: write a log, damage its files the way a crash or a hostile disk
//! would, reopen, and check that exactly the valid prefix survives, that appends continue right
//! after it, and that reopening again changes nothing. Damage to a sealed segment in the middle
//! of the log must surface as `StorageError::Corrupt`, never as silently missing records.

mod storage_support;

use minikafka::storage::{Log, StorageError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use storage_support::*;

const SEEDS: u64 = 60;
const SEGMENT_BYTES: u64 = 700;

/// Writes a few segments' worth of records in random batches, then "crashes" (drops the log
/// without close) or closes it cleanly.
fn write_log(dir: &Path, rng: &mut StdRng, clean: bool) -> u64 {
    let log = Log::open(dir, tiny_config(SEGMENT_BYTES)).unwrap();
    let n = rng.random_range(10..60u64);
    while log.next_offset() < n {
        let batch = rng.random_range(1..=(n - log.next_offset()).min(6));
        append_batch(&log, batch);
    }
    if clean {
        log.close().unwrap();
    }
    n
}

/// Number of records that lie wholly before `damage` (a file position) in the last segment,
/// plus every record of the segments before it.
fn surviving(segs: &[SegmentLayout], damage: usize) -> u64 {
    let last = segs.last().unwrap();
    if damage < HEADER {
        return last.base;
    }
    last.base + last.records.iter().filter(|(_, _, end)| *end <= damage).count() as u64
}

/// Reopens and checks the log holds exactly `0..k`, appends continue at `k`, and another reopen
/// (after a crash) gives the same log.
fn assert_recovers_to(dir: &Path, k: u64, what: &str) {
    let log = Log::open(dir, tiny_config(SEGMENT_BYTES)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(log.next_offset(), k, "{what}: next offset after recovery");
    assert_eq!(replay(&log).unwrap(), (0..k).collect::<Vec<_>>(), "{what}");
    let names = file_names(dir);
    drop(log);
    let log = Log::open(dir, tiny_config(SEGMENT_BYTES)).unwrap();
    assert_eq!(log.next_offset(), k, "{what}: second reopen");
    assert_eq!(file_names(dir), names, "{what}: second reopen changed the files");
    assert_eq!(append_batch(&log, 2).first, k, "{what}: appends continue at k");
    drop(log);
    let log = Log::open(dir, tiny_config(SEGMENT_BYTES)).unwrap();
    assert_eq!(replay(&log).unwrap(), (0..k + 2).collect::<Vec<_>>(), "{what}: after append");
}

fn first_changed(before: &[u8], after: &[u8]) -> Option<usize> {
    before.iter().zip(after).position(|(a, b)| a != b)
}

#[test]
fn cut_at_a_random_byte_keeps_the_whole_records_before_it() {
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        write_log(dir.path(), &mut rng, seed.is_multiple_of(4));
        let segs = layout(dir.path());
        let last = segs.last().unwrap();
        let len = std::fs::metadata(&last.path).unwrap().len() as usize;
        let cut = rng.random_range(0..=len);
        let f = std::fs::OpenOptions::new().write(true).open(&last.path).unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        assert_recovers_to(
            dir.path(),
            surviving(&segs, cut),
            &format!("seed {seed}, cut at {cut}"),
        );
    }
}

#[test]
fn garbage_in_the_last_segment_cuts_at_the_first_damaged_record() {
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let n = write_log(dir.path(), &mut rng, false);
        let segs = layout(dir.path());
        let last = segs.last().unwrap();
        let before = std::fs::read(&last.path).unwrap();
        let mut after = before.clone();
        let start = rng.random_range(0..last.data_end.max(1));
        let end = (start + rng.random_range(1..64)).min(after.len());
        rng.fill(&mut after[start..end]);
        std::fs::write(&last.path, &after).unwrap();
        let k = match first_changed(&before, &after) {
            Some(f) => surviving(&segs, f),
            None => n,
        };
        assert_recovers_to(dir.path(), k, &format!("seed {seed}, garbage at {start}..{end}"));
    }
}

#[test]
fn zero_filled_tail_is_the_end_of_the_data() {
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(2000 + seed);
        let n = write_log(dir.path(), &mut rng, false);
        let segs = layout(dir.path());
        let last = segs.last().unwrap();
        let before = std::fs::read(&last.path).unwrap();
        let mut after = before.clone();
        let start = rng.random_range(0..last.data_end.max(1));
        after[start..].fill(0);
        std::fs::write(&last.path, &after).unwrap();
        let k = match first_changed(&before, &after) {
            Some(f) => surviving(&segs, f),
            None => n,
        };
        assert_recovers_to(dir.path(), k, &format!("seed {seed}, zeroes from {start}"));
    }
}

/// Damages an index or time index file as a crash or a bad disk would: removed (1 in 4), cut at
/// a random length (1 in 4), or 1-3 random bytes flipped.
fn damage_hint_file(path: &Path, rng: &mut StdRng) {
    match rng.random_range(0..4) {
        0 => std::fs::remove_file(path).unwrap(),
        1 => {
            let mut b = std::fs::read(path).unwrap();
            let cut = rng.random_range(0..b.len());
            b.truncate(cut);
            std::fs::write(path, b).unwrap();
        }
        _ => {
            let mut b = std::fs::read(path).unwrap();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] ^= rng.random_range(1..=255u8);
            }
            std::fs::write(path, b).unwrap();
        }
    }
}

#[test]
fn a_corrupt_or_missing_index_is_rebuilt_and_loses_nothing() {
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(3000 + seed);
        let n = write_log(dir.path(), &mut rng, seed.is_multiple_of(2));
        let segs = layout(dir.path());
        let victim = &segs[rng.random_range(0..segs.len())];
        let index = victim.path.with_extension("index");
        damage_hint_file(&index, &mut rng);
        assert_recovers_to(dir.path(), n, &format!("seed {seed}, index {}", index.display()));
        assert!(index.exists(), "seed {seed}: index rewritten");
    }
}

/// Every record's timestamp looked up through the time indexes, and the largest one: what
/// ListOffsets by timestamp and with -3 answer.
fn timestamp_answers(dir: &Path, n: u64) -> Vec<Option<u64>> {
    let log = Log::open(dir, tiny_config(SEGMENT_BYTES)).unwrap();
    let mut out: Vec<_> =
        (0..n).map(|o| log.offset_for_timestamp(timestamp_for(o)).unwrap()).collect();
    out.push(log.max_timestamp_offset().unwrap().map(|(_, o)| o));
    out
}

#[test]
fn a_corrupt_or_missing_time_index_is_rebuilt_and_answers_the_same() {
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(3500 + seed);
        // Closed cleanly: every segment, the active one too, has its time index on disk.
        let n = write_log(dir.path(), &mut rng, true);
        let before = timestamp_answers(dir.path(), n);
        let segs = layout(dir.path());
        let victim = &segs[rng.random_range(0..segs.len())];
        let tindex = victim.path.with_extension("timeindex");
        assert!(tindex.exists(), "seed {seed}: {} written at close", tindex.display());
        damage_hint_file(&tindex, &mut rng);
        let what = format!("seed {seed}, time index {}", tindex.display());
        assert_eq!(timestamp_answers(dir.path(), n), before, "{what}");
        assert_recovers_to(dir.path(), n, &what);
    }
}

/// Replays the whole log, expecting the damage to surface as a `Corrupt` error naming `path`,
/// either at open or at a read.
fn assert_corruption_reported(dir: &Path, path: &Path, what: &str) {
    let err = match Log::open(dir, tiny_config(SEGMENT_BYTES)) {
        Err(e) => e,
        Ok(log) => replay(&log).err().unwrap_or_else(|| panic!("{what}: damage went unnoticed")),
    };
    match err {
        StorageError::Corrupt { path: p, .. } => assert_eq!(p, path, "{what}"),
        e => panic!("{what}: expected Corrupt, got {e}"),
    }
}

#[test]
fn damage_in_a_sealed_middle_segment_is_reported_not_skipped() {
    let mut checked = 0;
    for seed in 0..SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(4000 + seed);
        write_log(dir.path(), &mut rng, seed.is_multiple_of(2));
        let segs = layout(dir.path());
        if segs.len() < 3 {
            continue;
        }
        checked += 1;
        let victim = &segs[rng.random_range(1..segs.len() - 1)];
        let mut b = std::fs::read(&victim.path).unwrap();
        match rng.random_range(0..3) {
            0 => {
                // One flipped bit anywhere in the file, header included.
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let start = rng.random_range(0..b.len());
                let end = (start + rng.random_range(1..32)).min(b.len());
                let old = b[start..end].to_vec();
                b[start..end].fill(0);
                if old == b[start..end] {
                    b[start] = 0xff;
                }
            }
            _ => {
                let cut = rng.random_range(0..b.len());
                b.truncate(cut);
            }
        }
        std::fs::write(&victim.path, &b).unwrap();
        assert_corruption_reported(dir.path(), &victim.path, &format!("seed {seed}"));
    }
    assert!(checked > SEEDS / 2, "most seeds must produce 3+ segments ({checked})");
}

#[test]
fn a_missing_middle_segment_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    write_log(dir.path(), &mut rng, true);
    let segs = layout(dir.path());
    assert!(segs.len() >= 3);
    std::fs::remove_file(&segs[1].path).unwrap();
    match Log::open(dir.path(), tiny_config(SEGMENT_BYTES)) {
        Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, segs[2].path),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn leftover_temp_files_and_orphan_indexes_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let n = write_log(dir.path(), &mut rng, false);
    let before = file_names(dir.path());
    std::fs::write(dir.path().join("00000000000000000000.index.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("log-start-offset.tmp"), b"x").unwrap();
    std::fs::write(dir.path().join("00000000000000999999.index"), b"orphan").unwrap();
    let log = Log::open(dir.path(), tiny_config(SEGMENT_BYTES)).unwrap();
    assert_eq!(log.next_offset(), n);
    assert_eq!(file_names(dir.path()), before);
}

#[test]
fn recovery_after_a_clean_close_reads_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let n = write_log(dir.path(), &mut rng, true);
    let segs = layout(dir.path());
    // A clean close cuts the active segment back to its data.
    let last = segs.last().unwrap();
    assert_eq!(std::fs::metadata(&last.path).unwrap().len() as usize, last.data_end);
    assert!(dir.path().join("clean-shutdown").exists());
    assert_recovers_to(dir.path(), n, "clean close");
}

#[test]
fn a_segment_created_just_before_a_crash_is_recovered_empty() {
    for (what, contents) in [("empty file", &[][..]), ("half a header", &b"MKLG\x01\x00"[..])] {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        let n = write_log(dir.path(), &mut rng, true);
        // A roll sealed the last segment, then the process died while creating the next one.
        let log = Log::open(dir.path(), tiny_config(SEGMENT_BYTES)).unwrap();
        log.close().unwrap();
        drop(log);
        std::fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
        std::fs::write(dir.path().join(format!("{n:020}.log")), contents).unwrap();
        let segments = layout_segment_count(dir.path());
        assert_recovers_to(dir.path(), n, what);
        assert_eq!(layout_segment_count(dir.path()), segments, "{what}: the new segment is kept");
    }
}

fn layout_segment_count(dir: &Path) -> usize {
    file_names(dir).iter().filter(|n| n.ends_with(".log")).count()
}
