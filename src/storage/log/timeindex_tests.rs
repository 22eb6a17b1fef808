//! Tests of the time index through the `Log`: lookups by timestamp and `max_timestamp_offset`
//! against a model of every record, across segments, trims, reopens and crashes; a lookup that
//! provably reads only from the time index entry on; damaged, stale, missing and orphan
//! `.timeindex` files.

use super::tests::{names, tiny};
use super::*;
use crate::storage::index::IndexSummary;
use crate::storage::timeindex::TimeIndex;

/// Every appended record: (offset, timestamp).
type Model = Vec<(u64, i64)>;

/// Appends `batches` batches of 1 to 4 records with timestamps that mostly grow but jump back and
/// forth (spikes, stragglers, repeats), deterministically from `seed`.
fn append_mixed(log: &Log, model: &mut Model, batches: usize, seed: u64) {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as i64
    };
    for _ in 0..batches {
        let n = 1 + (next() % 4) as usize;
        let base = 10_000 + 10 * model.len() as i64;
        let stamps: Vec<i64> = (0..n)
            .map(|_| match next() % 10 {
                0 => base + 5_000,        // a spike
                1 => 1_000 + next() % 50, // a straggler
                2 => 12_000,              // a repeated value
                _ => base + next() % 200 - 100,
            })
            .collect();
        let recs: Vec<NewRecord<'_>> = stamps
            .iter()
            .map(|&t| NewRecord { timestamp_ms: t, key: None, value: Some(b"v"), headers: &[] })
            .collect();
        let r = log.append(&recs).unwrap();
        model.extend((r.first..r.next).zip(stamps));
    }
}

fn model_first_at_or_after(model: &Model, ts: i64, start: u64) -> Option<u64> {
    model.iter().find(|&&(o, t)| o >= start && t >= ts).map(|&(o, _)| o)
}

fn model_max(model: &Model, start: u64) -> Option<(i64, u64)> {
    let mut best: Option<(i64, u64)> = None;
    for &(o, t) in model.iter().filter(|&&(o, _)| o >= start) {
        if best.is_none_or(|(b, _)| t > b) {
            best = Some((t, o));
        }
    }
    best
}

/// Every lookup a client could make agrees with the model.
fn check_against_model(log: &Log, model: &Model) {
    let start = log.log_start_offset();
    let mut queries: Vec<i64> =
        model.iter().flat_map(|&(_, t)| [t - 1, t, t + 1]).chain([i64::MIN, 0, i64::MAX]).collect();
    queries.sort_unstable();
    queries.dedup();
    for ts in queries {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            model_first_at_or_after(model, ts, start),
            "timestamp {ts} from {start}"
        );
    }
    assert_eq!(log.max_timestamp_offset().unwrap(), model_max(model, start));
}

fn time_index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

fn bases(log: &Log) -> Vec<u64> {
    log.segments_snapshot().iter().map(|s| s.base_offset).collect()
}

#[test]
fn lookups_by_timestamp_and_the_largest_timestamp_agree_with_a_model_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let log = Log::open(dir.path(), tiny(2048)).unwrap();
    append_mixed(&log, &mut model, 150, 1);
    assert!(bases(&log).len() > 5, "several segments");
    // The time index is used: sealed segments have entries.
    let sealed = &log.segments_snapshot()[0];
    assert!(!sealed.time_index_snapshot().entries().is_empty());
    check_against_model(&log, &model);

    // A log start inside a segment, where the largest timestamp may lie below it.
    let mid = log.segments_snapshot()[2].base_offset + 2;
    log.trim_before(mid).unwrap();
    check_against_model(&log, &model);

    // After a clean reopen (indexes loaded) and after a crash (the active segment scanned).
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), tiny(2048)).unwrap();
    check_against_model(&log, &model);
    append_mixed(&log, &mut model, 40, 2);
    check_against_model(&log, &model);
    drop(log);
    let log = Log::open(dir.path(), tiny(2048)).unwrap();
    check_against_model(&log, &model);

    // Trimmed segments took their time index with them; every sealed one has its file.
    let first = bases(&log)[0];
    log.trim_before(log.segments_snapshot()[3].base_offset).unwrap();
    check_against_model(&log, &model);
    let names = names(dir.path());
    for n in names.iter().filter(|n| n.ends_with(".timeindex")) {
        let log_name = n.replace(".timeindex", ".log");
        assert!(names.contains(&log_name), "{n} outlived its segment");
    }
    assert!(!time_index_path(dir.path(), first).exists());
    let segs = log.segments_snapshot();
    for s in &segs[..segs.len() - 1] {
        assert!(s.time_index_path.exists(), "{}", s.time_index_path.display());
    }
}

#[test]
fn the_largest_timestamp_is_the_first_record_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), None, "an empty log");
    let rec = |t| NewRecord { timestamp_ms: t, key: None, value: Some(b"v"), headers: &[] };
    log.append(&[rec(5), rec(9), rec(7)]).unwrap(); // 0..3
    log.append(&[rec(9), rec(1)]).unwrap(); // 3..5
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((9, 1)));
    log.trim_before(2).unwrap();
    // Record 1 is gone; the next one holding 9 is in a later batch.
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((9, 3)));
    log.trim_before(4).unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((1, 4)));
}

#[test]
fn a_lookup_reads_only_from_the_time_index_entry_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    // One-record batches with timestamps 1000, 1001, ...: an index entry at nearly every batch.
    let positions: Vec<usize> = (0..100)
        .map(|i| {
            let at = log.active().len();
            let rec = NewRecord { timestamp_ms: 1000 + i, key: None, value: None, headers: &[] };
            log.append(&[rec]).unwrap();
            at
        })
        .collect();
    log.close().unwrap();
    drop(log);
    // Break batch 10 where only a walk through it looks: its baseOffset (outside the CRC, and
    // before the last index entry, so opening does not look either).
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[positions[10]..positions[10] + 8].copy_from_slice(&77_777i64.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();

    let log = Log::open(dir.path(), tiny(1 << 20)).unwrap();
    let entry = log.active().time_index_snapshot().lookup(1050, usize::MAX).unwrap();
    assert!(entry.position as usize > positions[10], "the entry is past the damage");
    assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some(50));
    assert_eq!(log.offset_for_timestamp(1099).unwrap(), Some(99));
    assert_eq!(log.offset_for_timestamp(1005).unwrap(), Some(5), "found before the damage");
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((1099, 99)));
    // A lookup that has to walk through batch 10 finds the damage: the lookups above did not
    // read it.
    let err = log.offset_for_timestamp(1010).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn damaged_stale_missing_and_orphan_time_indexes_are_rebuilt_or_swept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut model = Model::new();
    let log = Log::open(d, tiny(2048)).unwrap();
    append_mixed(&log, &mut model, 100, 3);
    log.close().unwrap();
    let segs = bases(&log);
    assert!(segs.len() >= 4);
    drop(log);
    let original: Vec<Vec<u8>> =
        segs.iter().map(|&b| std::fs::read(time_index_path(d, b)).unwrap()).collect();

    // Segment 0: a flipped byte. Segment 1: missing. Segment 2: well formed but for another
    // segment length (stale). The active segment: damaged. And one with no segment at all.
    let mut flipped = original[0].clone();
    flipped[60] ^= 1;
    std::fs::write(time_index_path(d, segs[0]), flipped).unwrap();
    std::fs::remove_file(time_index_path(d, segs[1])).unwrap();
    let (times, summary) = TimeIndex::decode(&original[2], segs[2]).unwrap();
    let stale = IndexSummary { log_len: summary.log_len - 1, ..summary };
    std::fs::write(time_index_path(d, segs[2]), times.encode(segs[2], stale)).unwrap();
    let active = *segs.last().unwrap();
    std::fs::write(time_index_path(d, active), b"MKTI junk").unwrap();
    let orphan = time_index_path(d, 999_999);
    std::fs::write(&orphan, &original[0]).unwrap();

    let log = Log::open(d, tiny(2048)).unwrap();
    assert!(!orphan.exists(), "an orphan time index is swept");
    for (i, &b) in segs[..3].iter().enumerate() {
        assert_eq!(std::fs::read(time_index_path(d, b)).unwrap(), original[i], "segment {b}");
    }
    check_against_model(&log, &model);
    // The active segment's is rebuilt in memory and written at close, as it was.
    log.close().unwrap();
    assert_eq!(std::fs::read(time_index_path(d, active)).unwrap(), *original.last().unwrap());
    drop(log);

    // After a crash, a stale time index of the active segment is not trusted.
    let log = Log::open(d, tiny(2048)).unwrap();
    append_mixed(&log, &mut model, 10, 4);
    drop(log);
    let log = Log::open(d, tiny(2048)).unwrap();
    check_against_model(&log, &model);
}

#[test]
fn a_time_index_entry_pointing_at_the_wrong_batch_is_caught_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut model = Model::new();
    let log = Log::open(d, tiny(4096)).unwrap();
    append_mixed(&log, &mut model, 80, 5);
    log.close().unwrap();
    let seg0 = log.segments_snapshot()[0].clone();
    assert!(seg0.is_sealed());
    let times = seg0.time_index_snapshot();
    drop(log);
    // Shift one entry (not at the largest timestamp's batch) by a byte: still ordered and in
    // bounds, CRC recomputed, so it loads; only the log can tell it is wrong.
    let max_pos = times.max_batch().unwrap().position;
    let i = times.entries().iter().position(|e| e.position + 1 < max_pos).unwrap();
    let path = time_index_path(d, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = crate::storage::timeindex::TIME_INDEX_HEADER_LEN
        + i * crate::storage::timeindex::TIME_ENTRY_LEN
        + 12;
    let shifted = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + 1;
    bytes[at..at + 4].copy_from_slice(&shifted.to_le_bytes());
    let crc = crc32fast::hash(&bytes[12..]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(d, tiny(4096)).unwrap();
    assert_ne!(log.segments_snapshot()[0].time_index_snapshot(), times, "the bad file loaded");
    check_against_model(&log, &model);
    assert_eq!(log.segments_snapshot()[0].time_index_snapshot(), times, "rebuilt from the log");
}
