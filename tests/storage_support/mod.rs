//! Helpers shared by the storage integration tests: tiny configs, deterministic record contents,
//! a full replay through `read`, and a parser of the segment files that tells where each batch
//! and record lies (so a test can compute, independently of the recovery code, which prefix must
//! survive).
#![allow(dead_code)]

use minikafka::record::NewRecord;
use minikafka::storage::{FsyncPolicy, Log, LogConfig, StorageError};
use std::path::{Path, PathBuf};

/// Size of a segment header (the layout table in src/storage/segment.rs).
pub const HEADER: usize = 24;

pub fn tiny_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        max_record_bytes: 4096,
        fsync: FsyncPolicy::Never,
        retention_bytes: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The value record `offset` gets: its length varies with the offset, its bytes name it.
pub fn value_for(offset: u64) -> Vec<u8> {
    let len = (offset * 7 % 50) as usize;
    let mut v = format!("v{offset}:").into_bytes();
    v.extend((0..len).map(|i| (i as u64 + offset) as u8));
    v
}

pub fn key_for(offset: u64) -> Option<Vec<u8>> {
    (!offset.is_multiple_of(3)).then(|| format!("k{}", offset % 5).into_bytes())
}

pub fn timestamp_for(offset: u64) -> i64 {
    1_000_000 + offset as i64 * 10
}

/// Appends records `next..next+count` as one batch.
pub fn append_batch(log: &Log, count: u64) -> minikafka::storage::OffsetRange {
    let first = log.next_offset();
    let values: Vec<_> = (first..first + count).map(value_for).collect();
    let keys: Vec<_> = (first..first + count).map(key_for).collect();
    let recs: Vec<_> = (0..count as usize)
        .map(|i| NewRecord {
            timestamp_ms: timestamp_for(first + i as u64),
            key: keys[i].as_deref(),
            value: Some(&values[i]),
            headers: &[],
        })
        .collect();
    let r = log.append(&recs).unwrap();
    assert_eq!(r.first, first);
    r
}

/// Reads the whole log from its start, checking each record's contents against what
/// `append_batch` wrote. Returns the offsets seen, or the first error. `read` checks only batch
/// headers (the broker checked every CRC-32C on append and recovery, consumers check it again);
/// a batch whose records fail the consumer's check is reported as `Corrupt`, naming the segment
/// file and the position of the slice that held it, so damage never reads as missing records.
pub fn replay(log: &Log) -> Result<Vec<u64>, StorageError> {
    let mut seen = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let slice = log.read(at, 256)?;
        for r in slice.records() {
            let r = r.map_err(|e| StorageError::Corrupt {
                path: segment_holding(log.dir(), at),
                position: slice.file_range().1,
                reason: format!("record {at}: {e}"),
            })?;
            assert_eq!(r.offset, at);
            assert_eq!(r.value, Some(value_for(at)), "value of {at}");
            assert_eq!(r.key, key_for(at), "key of {at}");
            assert_eq!(r.timestamp_ms, timestamp_for(at));
            seen.push(at);
            at += 1;
        }
        assert_eq!(slice.next_offset(), at);
    }
    Ok(seen)
}

/// The segment log file of `dir` that holds `offset`: the one with the largest base at or below.
pub fn segment_holding(dir: &Path, offset: u64) -> PathBuf {
    let base = file_names(dir)
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse::<u64>().ok())
        .filter(|&b| b <= offset)
        .max()
        .unwrap_or_else(|| panic!("no segment holds {offset} in {}", dir.display()));
    dir.join(format!("{base:020}.log"))
}

/// A segment file and where its batches (and so its records) lie.
#[derive(Debug, Clone)]
pub struct SegmentLayout {
    pub path: PathBuf,
    pub base: u64,
    /// (offset, start, end) of each record, where start..end are the file positions of the
    /// batch holding it: a batch is atomic, so a record survives damage only with its batch.
    pub records: Vec<(u64, usize, usize)>,
    /// (first offset, next offset, start, end) of each batch, positions in the file.
    pub batches: Vec<(u64, u64, usize, usize)>,
    pub data_end: usize,
}

/// Position of `baseOffset` (i64 BE) in a RecordBatch v2.
const BASE_OFFSET: usize = 0;
/// Position of `batchLength` (i32 BE): bytes after this field.
const BATCH_LENGTH: usize = 8;
/// Position of `lastOffsetDelta` (i32 BE).
const LAST_OFFSET_DELTA: usize = 23;

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Parses every segment of a (healthy) log directory, oldest first. Reads the batch headers by
/// hand from Kafka's documented layout (not through the crate's reader), so it stays an
/// independent account of where the data lies.
pub fn layout(dir: &Path) -> Vec<SegmentLayout> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.into_iter()
        .map(|path| {
            let base: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let mut pos = HEADER;
            let mut expected = base;
            let mut records = Vec::new();
            let mut batches = Vec::new();
            // A zero batchLength is unwritten space: the end of the data.
            while pos + BATCH_LENGTH + 4 <= bytes.len() && be_i32(&bytes, pos + BATCH_LENGTH) != 0 {
                let first = be_i64(&bytes, pos + BASE_OFFSET) as u64;
                assert_eq!(first, expected, "{}: batch at {pos} out of sequence", path.display());
                let end = pos + BATCH_LENGTH + 4 + be_i32(&bytes, pos + BATCH_LENGTH) as usize;
                assert!(end <= bytes.len(), "{}: batch at {pos} truncated", path.display());
                let next = first + be_i32(&bytes, pos + LAST_OFFSET_DELTA) as u64 + 1;
                records.extend((first..next).map(|o| (o, pos, end)));
                batches.push((first, next, pos, end));
                expected = next;
                pos = end;
            }
            SegmentLayout { path, base, records, batches, data_end: pos }
        })
        .collect()
}

/// Sorted names of the files in `dir`.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}
