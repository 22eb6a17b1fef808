//! Opening a log directory: upgrade segments of an older format (`upgrade`), sweep the debris of
//! interrupted writes, find the segments, check that
//! they chain, check each sealed segment cheaply (its index, and the records after the last index
//! entry parse exactly to the end of the file), and scan the tail of the active (last) segment,
//! cutting it at the first torn, corrupt or out-of-sequence record. The log is the truth; indexes
//! and time indexes (loaded under the same rules) are rebuilt when they are missing or disagree. Damage in a sealed segment is reported as
//! `StorageError::Corrupt`, never cut or skipped. Never appends records.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::checked_file::{Format, seal_record, u64_at};
use crate::storage::fs::{FileSystem, FsFile, TMP_SUFFIX, write_atomic};
use crate::storage::index::{Index, IndexSummary};
use crate::storage::mmap::CommittedMap;
use crate::storage::segment::{
    self, INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, SEGMENT_HEADER_LEN, Segment, SegmentParts,
    TIME_INDEX_SUFFIX,
};
use crate::storage::timeindex::TimeIndex;
use crate::storage::{LogConfig, StorageError};

/// Name of the clean-shutdown marker.
pub(crate) const CLEAN_MARKER: &str = "clean-shutdown";
/// Name of the log start offset checkpoint.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";

/// Magic and format version of the log start checkpoint.
const CHECKPOINT_FORMAT: Format = Format { magic: *b"MKLS", version: 1 };
/// Size of the checkpoint file.
///
/// | position | size | field     | encoding                                   |
/// |----------|------|-----------|--------------------------------------------|
/// | 0        | 4    | `magic`   | the bytes `MKLS`                           |
/// | 4        | 2    | `version` | `u16`, currently 1                         |
/// | 6        | 2    | reserved  | zero                                       |
/// | 8        | 8    | `offset`  | `u64`: the log start offset                |
/// | 16       | 4    | `crc`     | `u32`: CRC-32 (IEEE) of bytes `0..16`      |
const CHECKPOINT_LEN: usize = 20;
/// Position of the checkpoint's `offset` field.
const CHECKPOINT_OFFSET_POS: usize = 8;
/// Position of the checkpoint's `crc` field.
const CHECKPOINT_CRC_POS: usize = 16;

pub(crate) fn encode_checkpoint(offset: u64) -> [u8; CHECKPOINT_LEN] {
    let mut b = [0u8; CHECKPOINT_LEN];
    CHECKPOINT_FORMAT.write_prefix(&mut b);
    b[CHECKPOINT_OFFSET_POS..CHECKPOINT_CRC_POS].copy_from_slice(&offset.to_le_bytes());
    seal_record(&mut b);
    b
}

fn decode_checkpoint(b: &[u8]) -> Option<u64> {
    CHECKPOINT_FORMAT.check_record(b, CHECKPOINT_LEN).ok()?;
    Some(u64_at(b, CHECKPOINT_OFFSET_POS))
}

/// Writes the log start checkpoint durably.
pub(crate) fn write_checkpoint(
    fs: &dyn FileSystem,
    dir: &Path,
    offset: u64,
) -> Result<(), StorageError> {
    let path = dir.join(LOG_START_FILE);
    write_atomic(fs, dir, &path, &encode_checkpoint(offset))
        .map_err(StorageError::io(&path, "write log start checkpoint"))
}

/// A recovered log, ready for `Log` to serve.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) log_start_offset: u64,
    /// Where the index of the active segment stands, for the appender.
    pub(crate) index_cursor: IndexCursor,
}

/// Opens (creating if needed) and recovers the log in `dir`.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &LogConfig,
) -> Result<Recovered, StorageError> {
    fs.create_dir_all(dir).map_err(StorageError::io(dir, "create log directory"))?;
    // Segments written by a release before format version 2 are converted first, each one
    // crash-safely (a copy synced, then renamed over it), so everything below reads version 2.
    crate::storage::upgrade::upgrade_log_dir(fs, dir)?;
    finish_interrupted_swap(fs, dir)?;
    let names = fs.list_dir(dir).map_err(StorageError::io(dir, "list log directory"))?;
    let mut bases: Vec<u64> =
        names.iter().filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX)).collect();
    bases.sort_unstable();
    let mut swept = false;
    for name in &names {
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX].iter().any(|suffix| {
            segment::parse_file_name(name, suffix).is_some_and(|b| bases.binary_search(&b).is_err())
        });
        if name.ends_with(TMP_SUFFIX) || orphan_index {
            let path = dir.join(name);
            tracing::info!(path = %path.display(), "removing leftover file");
            fs.remove_file(&path).map_err(StorageError::io(&path, "remove leftover file"))?;
            swept = true;
        }
    }

    let marker = dir.join(CLEAN_MARKER);
    let clean = fs.exists(&marker);
    let checkpoint_path = dir.join(LOG_START_FILE);
    let checkpoint = if fs.exists(&checkpoint_path) {
        let bytes = fs
            .read(&checkpoint_path)
            .map_err(StorageError::io(&checkpoint_path, "read log start checkpoint"))?;
        Some(decode_checkpoint(&bytes).ok_or_else(|| StorageError::Corrupt {
            path: checkpoint_path.clone(),
            position: 0,
            reason: "log start checkpoint does not decode".into(),
        })?)
    } else {
        None
    };

    let started = std::time::Instant::now();
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
    let mut index_cursor = IndexCursor::new(config.index_interval_bytes, SEGMENT_HEADER_LEN);
    let segment_bytes = config.segment_bytes as usize;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let seg = if last {
            let (seg, cursor) = open_active(fs, dir, base, config, clean)?;
            index_cursor = cursor;
            seg
        } else {
            open_sealed(fs, dir, base, config)?
        };
        if let Some(prev) = segments.last()
            && prev.next_offset() != seg.base_offset
        {
            return Err(StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: 0,
                reason: format!(
                    "segment starts at offset {} but the previous one ends at {}",
                    seg.base_offset,
                    prev.next_offset()
                ),
            });
        }
        segments.push(Arc::new(seg));
    }

    if segments.is_empty() {
        // A fresh log, or one whose every segment is gone: never reuse an offset the
        // checkpoint says was handed out.
        let base = checkpoint.unwrap_or(0);
        let capacity = segment_bytes;
        segments.push(Arc::new(Segment::create(
            fs,
            dir,
            base,
            capacity,
            config.index_interval_bytes,
        )?));
    }

    // Invariant: at least one segment was pushed above.
    let first_base = segments[0].base_offset;
    let next_offset = segments[segments.len() - 1].next_offset();
    let mut log_start_offset = checkpoint.unwrap_or(0).max(first_base);
    if log_start_offset > next_offset {
        tracing::warn!(
            dir = %dir.display(), checkpoint = log_start_offset, next_offset,
            "log start checkpoint is past the end of the log; clamping"
        );
        log_start_offset = next_offset;
    }

    let segments_us = started.elapsed().as_micros() as u64;
    if clean {
        // Before any write: a crash from now on must be treated as one.
        fs.remove_file(&marker)
            .map_err(StorageError::io(&marker, "remove clean-shutdown marker"))?;
        swept = true;
    }
    if swept {
        fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
    }
    tracing::debug!(dir = %dir.display(), clean, segments = segments.len(), segments_us,
        total_us = started.elapsed().as_micros() as u64, "recovered");
    Ok(Recovered { segments, log_start_offset, index_cursor })
}

/// Suffix of a cleaned segment being written by compaction (`{base:020}.log.cleaned`): not yet
/// part of the log.
pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";
/// Suffix of a cleaned segment whose swap is committed (`{base:020}.log.swap`): it replaces the
/// old segments its offsets cover.
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";

/// Ends a compaction swap a crash interrupted (the protocol is in `log/compaction.rs`). While any
/// `.log.cleaned` file exists the swap was not committed: every `.cleaned` and `.swap` file is
/// removed and the old segments stay. Once only `.swap` files remain it was: the old segments
/// whose base offset lies in the range the swap files cover are removed (with their indexes),
/// then each `.swap` is renamed to its `.log` name. Either way the directory then holds the old
/// segments or the new ones, never a mix.
fn finish_interrupted_swap(fs: &dyn FileSystem, dir: &Path) -> Result<(), StorageError> {
    let names = fs.list_dir(dir).map_err(StorageError::io(dir, "list log directory"))?;
    let cleaned: Vec<&String> = names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)).collect();
    let mut swaps: Vec<u64> =
        names.iter().filter_map(|n| segment::parse_file_name(n, SWAP_SUFFIX)).collect();
    if cleaned.is_empty() && swaps.is_empty() {
        return Ok(());
    }
    let remove = |path: PathBuf| -> Result<(), StorageError> {
        match fs.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&path, "remove compaction leftover")(e)),
        }
    };
    if !cleaned.is_empty() {
        tracing::info!(dir = %dir.display(), "rolling back an uncommitted compaction swap");
        // Swap files first: a crash now must still find a `.cleaned` file and roll back.
        for &base in &swaps {
            remove(dir.join(format!("{base:020}{SWAP_SUFFIX}")))?;
        }
        fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
        for name in cleaned {
            remove(dir.join(name))?;
        }
        return fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"));
    }
    swaps.sort_unstable();
    tracing::info!(dir = %dir.display(), segments = swaps.len(), "completing a committed compaction swap");
    // The swap files cover `first..end` without gaps; `end` is where the last one's batches end.
    let first = swaps[0];
    let last = swaps[swaps.len() - 1];
    let last_path = dir.join(format!("{last:020}{SWAP_SUFFIX}"));
    let bytes = fs.read(&last_path).map_err(StorageError::io(&last_path, "read swap segment"))?;
    segment::check_header(&bytes, last).map_err(|r| corrupt(&last_path, 0, r))?;
    let end = segment::scan(&bytes, SEGMENT_HEADER_LEN, last, true, |_, _| {});
    if end.stopped.is_some() || end.position != bytes.len() {
        return Err(corrupt(&last_path, end.position, "committed swap segment is damaged"));
    }
    for base in names.iter().filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX)) {
        if (first..end.next_offset).contains(&base) {
            remove(dir.join(segment::log_file_name(base)))?;
            remove(dir.join(segment::index_file_name(base)))?;
            remove(dir.join(segment::time_index_file_name(base)))?;
        }
    }
    fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
    for base in swaps {
        let from = dir.join(format!("{base:020}{SWAP_SUFFIX}"));
        let to = dir.join(segment::log_file_name(base));
        fs.rename(&from, &to).map_err(StorageError::io(&from, "rename swap segment"))?;
    }
    fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))
}

fn corrupt(path: &Path, position: usize, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason: reason.into(),
    }
}

/// Reads and checks an index file; `None` (with the reason logged) if it cannot be trusted.
fn load_index(fs: &dyn FileSystem, path: &Path, base: u64) -> Option<(Index, IndexSummary)> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "index unreadable; rebuilding");
            return None;
        }
    };
    match Index::decode(&bytes, base) {
        Ok(x) => Some(x),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "index damaged; rebuilding");
            None
        }
    }
}

/// The time index of a segment whose offset index and tail checked out (`summary`): the file if
/// it decodes and agrees with the summary, else rebuilt by walking the batch headers of `data`
/// (written back as a hint when `write_back`). `None` if the walk does not reach exactly the
/// summary's end: the segment is damaged before its tail, and the caller scans it fully.
fn time_index_for(
    fs: &dyn FileSystem,
    path: &Path,
    base: u64,
    summary: IndexSummary,
    data: &[u8],
    config: &LogConfig,
    write_back: bool,
) -> Option<TimeIndex> {
    let reason = match fs.read(path) {
        Ok(bytes) => match TimeIndex::decode(&bytes, base) {
            Ok((times, s)) if s == summary => return Some(times),
            Ok(_) => "it disagrees with the segment".to_string(),
            Err(reason) => reason,
        },
        Err(e) => e.to_string(),
    };
    tracing::info!(path = %path.display(), %reason, "time index not usable; rebuilding it");
    let log_len = usize::try_from(summary.log_len).ok().filter(|&l| l <= data.len())?;
    let (_, times, end) =
        segment::build_indexes(&data[..log_len], base, config.index_interval_bytes, false);
    if end.stopped.is_some()
        || end.position != log_len
        || end.next_offset != summary.next_offset
        || end.max_timestamp != summary.max_timestamp
    {
        return None;
    }
    if write_back {
        keep_rebuilt_index(path, times.write(fs, path, base, summary, false));
    }
    Some(times)
}

/// The whole file, mapped read-only for the duration of a check (`None` if it is empty).
fn map_whole(
    file: &dyn FsFile,
    path: &Path,
) -> Result<(Option<CommittedMap>, usize), StorageError> {
    let len = file.file_len().map_err(StorageError::io(path, "stat segment"))?;
    let len = usize::try_from(len).map_err(|_| corrupt(path, 0, "segment file too large"))?;
    if len == 0 {
        return Ok((None, 0));
    }
    let map = CommittedMap::new(file.as_file(), len, len)
        .map_err(StorageError::io(path, "mmap segment"))?;
    Ok((Some(map), len))
}

/// Deals with the result of writing an index rebuilt at open. A failure (a full disk) does not
/// stop the log from opening: the index is a hint, the in-memory one serves, and a later seal,
/// close or open writes it again (`write_replacing` already removed its temp file).
fn keep_rebuilt_index(path: &Path, written: std::io::Result<()>) {
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e,
            "cannot write the rebuilt index; using it from memory");
    }
}

/// Where to start checking a segment's tail from: the last index entry, or the first record.
fn tail_start(index: &Index, base: u64) -> (usize, u64) {
    index.entries().last().map_or((SEGMENT_HEADER_LEN, base), |e| {
        (e.position as usize, base + u64::from(e.relative_offset))
    })
}

/// Opens a sealed segment: its file must be exactly header + whole records, consistent with its
/// index; any damage found is `Corrupt`.
fn open_sealed(
    fs: &dyn FileSystem,
    dir: &Path,
    base: u64,
    config: &LogConfig,
) -> Result<Segment, StorageError> {
    let log_path = dir.join(segment::log_file_name(base));
    let index_path = dir.join(segment::index_file_name(base));
    let time_index_path = dir.join(segment::time_index_file_name(base));
    let file = fs.open(&log_path).map_err(StorageError::io(&log_path, "open segment"))?;
    let (map, len) = map_whole(&*file, &log_path)?;
    let Some(map) = map else {
        return Err(corrupt(&log_path, 0, "sealed segment is empty (no header)"));
    };
    let data = map.committed_bytes();
    segment::check_header(data, base).map_err(|r| corrupt(&log_path, 0, r))?;

    // Cheap path: a good index whose summary matches the file, and a tail that parses exactly.
    let mut trusted = None;
    if let Some((index, summary)) = load_index(fs, &index_path, base)
        && summary.log_len == len as u64
    {
        let (pos, at) = tail_start(&index, base);
        let end = segment::scan(data, pos, at, true, |_, _| {});
        let time_index = (end.stopped.is_none()
            && end.position == len
            && end.next_offset == summary.next_offset)
            .then(|| time_index_for(fs, &time_index_path, base, summary, data, config, true))
            .flatten();
        match time_index {
            Some(time_index) => trusted = Some((index, time_index, summary)),
            None => {
                tracing::warn!(path = %log_path.display(), "sealed segment disagrees with its index; scanning it");
            }
        }
    }

    let rebuilt = trusted.is_none();
    let (index, time_index, summary) = match trusted {
        Some(trusted) => trusted,
        None => {
            // Full scan: every record must be whole and in sequence up to the end of the file.
            let (index, time_index, end) =
                segment::build_indexes(data, base, config.index_interval_bytes, true);
            if end.position != len {
                let reason =
                    end.stopped.unwrap_or_else(|| "zero bytes inside a sealed segment".into());
                return Err(corrupt(&log_path, end.position, reason));
            }
            let summary = IndexSummary {
                next_offset: end.next_offset,
                max_timestamp: end.max_timestamp,
                log_len: len as u64,
            };
            (index, time_index, summary)
        }
    };
    drop(map);
    if rebuilt {
        keep_rebuilt_index(
            &time_index_path,
            time_index.write(fs, &time_index_path, base, summary, false),
        );
        keep_rebuilt_index(&index_path, index.write(fs, dir, &index_path, base, summary));
    }
    Segment::from_parts(SegmentParts {
        base_offset: base,
        log_path,
        index_path,
        file,
        data_len: len,
        capacity: len,
        next_offset: summary.next_offset,
        max_timestamp: summary.max_timestamp,
        index,
        time_index,
        index_interval_bytes: config.index_interval_bytes,
        sealed: true,
    })
}

/// Opens the active segment. After a clean shutdown its index is trusted once the records after
/// the last entry check out; otherwise the whole segment is scanned and cut at the first bad
/// record. Either way the file is then grown (sparse) back to its capacity for appends.
fn open_active(
    fs: &dyn FileSystem,
    dir: &Path,
    base: u64,
    config: &LogConfig,
    clean: bool,
) -> Result<(Segment, IndexCursor), StorageError> {
    let log_path = dir.join(segment::log_file_name(base));
    let index_path = dir.join(segment::index_file_name(base));
    let time_index_path = dir.join(segment::time_index_file_name(base));
    let file = fs.open(&log_path).map_err(StorageError::io(&log_path, "open segment"))?;
    let (map, file_len) = map_whole(&*file, &log_path)?;
    let data: &[u8] = map.as_ref().map_or(&[], |m| m.committed_bytes());

    let mut found = None;
    if clean && let Some((index, summary)) = load_index(fs, &index_path, base) {
        let (pos, at) = tail_start(&index, base);
        let log_len = summary.log_len as usize;
        if log_len <= file_len && segment::check_header(data, base).is_ok() {
            let end = segment::scan(&data[..log_len], pos, at, true, |_, _| {});
            if end.stopped.is_none()
                && end.position == log_len
                && end.next_offset == summary.next_offset
                // The active segment's time index is rewritten at seal and close: not here.
                && let Some(times) =
                    time_index_for(fs, &time_index_path, base, summary, data, config, false)
            {
                found = Some((index, times, log_len, summary.next_offset, summary.max_timestamp));
            }
        }
        if found.is_none() {
            tracing::warn!(path = %log_path.display(), "index of the active segment disagrees with it after a clean shutdown; scanning");
        }
    }
    let mut header_ok = true;
    let trusted = found.is_some();
    let (index, time_index, data_len, next_offset, max_timestamp) = match found {
        Some(x) => x,
        None => {
            if let Err(reason) = segment::check_header(data, base) {
                // Only a segment being created when the process died can lack its header; its
                // name still says where it starts.
                tracing::warn!(path = %log_path.display(), %reason, "active segment header damaged; treating the segment as empty");
                header_ok = false;
                (Index::new(), TimeIndex::new(), SEGMENT_HEADER_LEN, base, i64::MIN)
            } else {
                let (index, time_index, end) =
                    segment::build_indexes(data, base, config.index_interval_bytes, true);
                if let Some(reason) = &end.stopped {
                    tracing::warn!(path = %log_path.display(), position = end.position, %reason,
                        next_offset = end.next_offset, "cutting the log at a torn or corrupt batch");
                }
                (index, time_index, end.position, end.next_offset, end.max_timestamp)
            }
        }
    };
    drop(map);

    if !header_ok {
        file.set_len(0).map_err(StorageError::io(&log_path, "cut damaged segment"))?;
        file.write_all_at(&segment::encode_header(base), 0)
            .map_err(StorageError::io(&log_path, "rewrite segment header"))?;
    } else if data_len < file_len {
        // Cut the bad tail and make the cut durable before new records land where it was, so
        // a later crash can never splice old bytes after new ones.
        file.set_len(data_len as u64).map_err(StorageError::io(&log_path, "cut torn tail"))?;
    }
    if !header_ok || data_len < file_len {
        file.sync_data().map_err(StorageError::io(&log_path, "fdatasync cut segment"))?;
    }
    if !trusted {
        // The index on disk is stale or damaged: replace it with the rebuilt one, so every
        // segment has its index file (it is rewritten again at seal and close).
        let summary = IndexSummary { next_offset, max_timestamp, log_len: data_len as u64 };
        keep_rebuilt_index(&index_path, index.write_hint(fs, &index_path, base, summary));
    }
    let capacity = (config.segment_bytes as usize).max(data_len);
    file.set_len(capacity as u64).map_err(StorageError::io(&log_path, "preallocate segment"))?;

    let (cursor_pos, _) = tail_start(&index, base);
    let cursor = IndexCursor::new(config.index_interval_bytes, cursor_pos);
    let seg = Segment::from_parts(SegmentParts {
        base_offset: base,
        log_path,
        index_path: PathBuf::from(&index_path),
        file,
        data_len,
        capacity,
        next_offset,
        max_timestamp,
        index,
        time_index,
        index_interval_bytes: config.index_interval_bytes,
        sealed: false,
    })?;
    Ok((seg, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_roundtrip_and_damage_is_detected() {
        let b = encode_checkpoint(123_456);
        assert_eq!(&b[..4], b"MKLS");
        assert_eq!(decode_checkpoint(&b), Some(123_456));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x01;
            assert_eq!(decode_checkpoint(&bad), None, "flip at byte {i}");
        }
        assert_eq!(decode_checkpoint(&b[..19]), None);
    }

    #[test]
    fn a_corrupt_checkpoint_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_START_FILE), b"garbage").unwrap();
        let err = recover(&crate::storage::RealFs, dir.path(), &LogConfig::default()).err();
        assert!(matches!(err, Some(StorageError::Corrupt { .. })), "{err:?}");
    }
}
