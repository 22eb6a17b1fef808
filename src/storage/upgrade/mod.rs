//! The one-time, crash-safe conversion of a log directory's segments from format version 1
//! (per-record, see `v1.rs`) to format version 2 (RecordBatch v2, see [`crate::batch`]), run at
//! the start of recovery before anything else reads the segments. Owns only the rewrite of
//! `.log` files and the removal of their stale `.index`; never touches the `log-start-offset`
//! checkpoint, the `clean-shutdown` marker or any other file (offsets do not change), and never
//! reads or checks a segment that is already version 2 beyond its version field.
//!
//! # Byte layout of the version 2 header this module writes (all integers little-endian)
//!
//! | position | size | field         | encoding                                               |
//! |----------|------|---------------|--------------------------------------------------------|
//! | 0        | 4    | `magic`       | the bytes `MKLG`                                       |
//! | 4        | 2    | `version`     | `u16`: 2                                               |
//! | 6        | 2    | reserved      | zero                                                   |
//! | 8        | 8    | `base_offset` | `u64`: offset of the first record (also the file name) |
//! | 16       | 4    | `header_crc`  | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `0..16`      |
//! | 20       | 4    | reserved      | zero                                                   |
//! | 24       | ...  | batches       | RecordBatch v2, back to back (byte table in `crate::batch`) |
//!
//! # Conversion of one segment, and why a crash anywhere is safe
//! 1. remove a leftover `{base:020}.log.upgrade.tmp`, create it, write the v2 header and the
//!    records regrouped into uncompressed batches (at most [`MAX_BATCH_RECORDS`] records, at
//!    most [`MAX_BATCH_BYTES`] bytes unless one record alone is bigger);
//! 2. fdatasync it;
//! 3. remove `{base:020}.index` (its positions point into the v1 file) and fsync the directory,
//!    so the removal is durable before the new file can take the name;
//! 4. rename the temp file over `{base:020}.log`, fsync the directory.
//!
//! Until step 4's rename the `.log` is the untouched v1 file: the next start converts it again
//! (the temp file is replaced, a missing index is not needed). After the rename it is a complete,
//! synced v2 file, and is skipped. The rename is the commit point.
//!
//! Damage: the last segment (the active one) is cut at its first torn or corrupt record, as
//! recovery of a v1 log did; damage in any other segment is [`StorageError::Corrupt`] and that
//! file is left as it is.

mod v1;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::batch::{self, BatchBuilder, Compression};
use crate::storage::StorageError;
use crate::storage::fs::FileSystem;
use crate::storage::mmap::CommittedMap;

/// Format version of the segments this module writes.
pub(crate) const SEGMENT_VERSION_V2: u16 = 2;
/// Suffix of the file a segment is converted into before it is renamed over the `.log`.
pub(crate) const UPGRADE_TMP_SUFFIX: &str = ".upgrade.tmp";
/// Most records in one converted batch (Kafka producers' batches are of this order).
pub(crate) const MAX_BATCH_RECORDS: usize = 4096;
/// Most bytes of one converted batch, header included, unless a single record is bigger. Kept
/// at 1 MiB so every converted batch fits the default record size limit of a fetch or a produce.
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;
/// Converted batches are written to the temp file in chunks of about this size.
const WRITE_CHUNK: usize = 4 << 20;

/// What [`upgrade_log_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct UpgradeReport {
    /// Segment files rewritten from version 1 to version 2.
    pub(crate) segments_converted: usize,
    /// Records they held (what the converted files hold; a torn tail cut off is not counted).
    pub(crate) records: u64,
}

/// The steps of one segment's conversion, in order; tests stop after one to play a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The temp file holds the converted segment, fdatasynced.
    Synced,
    /// The old index is removed and the directory fsynced.
    IndexRemoved,
    /// The temp file is renamed over the `.log` (the directory not yet fsynced).
    Renamed,
}

/// Converts every version 1 segment in `dir` to version 2 (see the module docs). A directory
/// that does not exist, or holds no version 1 segment, is left alone.
pub(crate) fn upgrade_log_dir(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<UpgradeReport, StorageError> {
    upgrade_until(fs, dir, None)
}

/// [`upgrade_log_dir`], returning right after `stop` of the first conversion (a crash there).
fn upgrade_until(
    fs: &dyn FileSystem,
    dir: &Path,
    stop: Option<Step>,
) -> Result<UpgradeReport, StorageError> {
    let mut report = UpgradeReport::default();
    if !fs.exists(dir) {
        return Ok(report);
    }
    let names = fs.list_dir(dir).map_err(StorageError::io(dir, "list log directory"))?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_log_name(n)).collect();
    bases.sort_unstable();
    let Some(&last_base) = bases.last() else {
        return Ok(report);
    };

    let mut pending = Vec::new();
    for &base in &bases {
        let path = dir.join(log_file_name(base));
        let last = base == last_base;
        match read_version(fs, &path)? {
            Some(v1::VERSION) => pending.push(base),
            Some(SEGMENT_VERSION_V2) => {}
            version if last => {
                // Only a segment being created when the process died can lack its header;
                // recovery treats it as empty, as it always has.
                tracing::warn!(path = %path.display(), ?version,
                    "last segment has no v1 or v2 header; leaving it to recovery");
            }
            None => return Err(corrupt(&path, 0, "bad segment magic or short header")),
            Some(v) => {
                return Err(corrupt(&path, 0, format!("unknown segment format version {v}")));
            }
        }
    }
    if pending.is_empty() {
        return Ok(report);
    }

    let started = Instant::now();
    let n = pending.len();
    tracing::info!(dir = %dir.display(), segments = n,
        "upgrading segments from format version 1 to 2");
    for (k, &base) in pending.iter().enumerate() {
        let seg_started = Instant::now();
        let done = convert_segment(fs, dir, base, base == last_base, stop)?;
        report.segments_converted += 1;
        report.records += done.records;
        tracing::info!(path = %dir.join(log_file_name(base)).display(), records = done.records,
            batches = done.batches, bytes = done.bytes, k = k + 1, n,
            ms = seg_started.elapsed().as_millis() as u64, "segment upgraded to format version 2");
        if stop.is_some() {
            return Ok(report);
        }
    }
    tracing::info!(dir = %dir.display(), segments = report.segments_converted,
        records = report.records, ms = started.elapsed().as_millis() as u64,
        "format upgrade of the log directory done");
    Ok(report)
}

/// What one segment's conversion wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Converted {
    records: u64,
    batches: u64,
    /// Length of the new file.
    bytes: u64,
}

/// Rewrites one v1 segment as v2, steps 1 to 4 of the module docs (stopping after `stop`).
fn convert_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    base: u64,
    last: bool,
    stop: Option<Step>,
) -> Result<Converted, StorageError> {
    let log_path = dir.join(log_file_name(base));
    let tmp_path = upgrade_tmp_path(&log_path);
    if fs.exists(&tmp_path) {
        fs.remove_file(&tmp_path).map_err(StorageError::io(&tmp_path, "remove leftover file"))?;
    }
    let written = write_converted(fs, &log_path, &tmp_path, base, last);
    let done = match written {
        Ok(done) => done,
        Err(e) => {
            // A half-written copy only holds disk space; the v1 file is untouched.
            let _ = fs.remove_file(&tmp_path);
            return Err(e);
        }
    };
    if stop == Some(Step::Synced) {
        return Ok(done);
    }

    let index_path = dir.join(format!("{base:020}{INDEX_SUFFIX}"));
    if fs.exists(&index_path) {
        fs.remove_file(&index_path).map_err(StorageError::io(&index_path, "remove v1 index"))?;
    }
    fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
    if stop == Some(Step::IndexRemoved) {
        return Ok(done);
    }
    fs.rename(&tmp_path, &log_path)
        .map_err(StorageError::io(&log_path, "rename upgraded segment"))?;
    if stop == Some(Step::Renamed) {
        return Ok(done);
    }
    fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
    Ok(done)
}

/// Step 1 and 2: reads the v1 segment at `log_path` and writes its v2 form to `tmp_path`,
/// fdatasynced.
fn write_converted(
    fs: &dyn FileSystem,
    log_path: &Path,
    tmp_path: &Path,
    base: u64,
    last: bool,
) -> Result<Converted, StorageError> {
    let file = fs.open(log_path).map_err(StorageError::io(log_path, "open segment"))?;
    let len = file.file_len().map_err(StorageError::io(log_path, "stat segment"))?;
    let len = usize::try_from(len).map_err(|_| corrupt(log_path, 0, "segment file too large"))?;
    if len < v1::HEADER_LEN {
        return Err(corrupt(log_path, 0, "shorter than the segment header"));
    }
    // The whole file is mapped read-only; nothing writes it while the upgrade runs (it runs
    // before the log is opened), so every byte is stable.
    let map = CommittedMap::new(file.as_file(), len, len)
        .map_err(StorageError::io(log_path, "mmap segment"))?;
    let data = map.committed_bytes();
    v1::check_header(data, base).map_err(|r| corrupt(log_path, 0, r))?;

    let out = fs.create(tmp_path).map_err(StorageError::io(tmp_path, "create upgraded segment"))?;
    let mut buf = Vec::with_capacity(WRITE_CHUNK + MAX_BATCH_BYTES);
    buf.extend_from_slice(&v1::encode_header(SEGMENT_VERSION_V2, base));
    let mut written = 0u64;
    let mut flush = |buf: &mut Vec<u8>| -> Result<(), StorageError> {
        out.write_all_at(buf, written)
            .map_err(StorageError::io(tmp_path, "write upgraded segment"))?;
        written += buf.len() as u64;
        buf.clear();
        Ok(())
    };

    let mut batcher = Batcher::new(log_path);
    let mut position = v1::HEADER_LEN;
    let mut expected = base;
    loop {
        let rest = &data[position..];
        if rest.is_empty() {
            break;
        }
        if v1::is_end_of_data(rest) {
            if last {
                break;
            }
            return Err(corrupt(log_path, position, "zero bytes inside a sealed segment"));
        }
        let reason = match v1::decode(rest) {
            Ok(r) if r.offset == expected => {
                batcher.push(&r, position, &mut buf)?;
                if buf.len() >= WRITE_CHUNK {
                    flush(&mut buf)?;
                }
                position += r.raw.len();
                expected += 1;
                continue;
            }
            Ok(r) => format!("offset {} out of sequence, expected {expected}", r.offset),
            Err(e) => e.to_string(),
        };
        if !last {
            return Err(corrupt(log_path, position, reason));
        }
        tracing::warn!(path = %log_path.display(), position, offset = expected, %reason,
            "cutting the log at a torn or corrupt record (format upgrade)");
        break;
    }
    batcher.finish(&mut buf, position)?;
    flush(&mut buf)?;
    out.sync_data().map_err(StorageError::io(tmp_path, "fdatasync upgraded segment"))?;
    Ok(Converted { records: batcher.records, batches: batcher.batches, bytes: written })
}

/// Groups v1 records into v2 batches as they come.
struct Batcher<'p> {
    path: &'p Path,
    builder: Option<BatchBuilder>,
    /// Bound on the size of the batch being built, header included.
    bound: usize,
    records: u64,
    batches: u64,
}

impl<'p> Batcher<'p> {
    fn new(path: &'p Path) -> Self {
        Batcher { path, builder: None, bound: 0, records: 0, batches: 0 }
    }

    /// Adds one record (read at `position` of the v1 file), closing the current batch into
    /// `out` first when the record would take it past a limit.
    fn push(
        &mut self,
        r: &v1::RecordV1<'_>,
        position: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        let offset = i64::try_from(r.offset)
            .map_err(|_| corrupt(self.path, position, format!("offset {} past i64", r.offset)))?;
        let headers: Vec<batch::Header<'_>> =
            r.headers().map(|(key, value)| batch::Header { key, value }).collect();
        let new = batch::NewRecord {
            timestamp: r.timestamp_ms,
            key: r.key,
            // v1 has no null value: an empty value stays an empty value.
            value: Some(r.value),
            headers: &headers,
        };
        let size = v2_size_bound(r);
        let full = self
            .builder
            .as_ref()
            .is_some_and(|b| b.len() >= MAX_BATCH_RECORDS || self.bound + size > MAX_BATCH_BYTES);
        if full {
            self.finish(out, position)?;
        }
        if let Some(b) = self.builder.as_mut() {
            match b.push(&new) {
                Ok(()) => {
                    self.bound += size;
                    self.records += 1;
                    return Ok(());
                }
                // A timestamp too far from the batch's base timestamp: start a new batch, where
                // it is the base.
                Err(_) => self.finish(out, position)?,
            }
        }
        // Offset deltas are the records' positions in the batch: v1 offsets in a segment are
        // consecutive (checked by the caller), so they equal `offset - baseOffset`.
        let mut b =
            BatchBuilder::new(Compression::None).base_offset(offset).partition_leader_epoch(0);
        b.push(&new).map_err(|e| corrupt(self.path, position, format!("cannot re-encode: {e}")))?;
        self.builder = Some(b);
        self.bound = batch::HEADER_LEN + size;
        self.records += 1;
        Ok(())
    }

    /// Appends the batch being built, if any, to `out`; `position` (of the v1 record that
    /// ends it) is for the error.
    fn finish(&mut self, out: &mut Vec<u8>, position: usize) -> Result<(), StorageError> {
        if let Some(b) = self.builder.take() {
            b.build_into(out).map_err(|e| {
                corrupt(self.path, position, format!("cannot build an upgraded batch: {e}"))
            })?;
            self.batches += 1;
        }
        Ok(())
    }
}

/// An upper bound on the bytes a v1 record takes in a v2 batch: v2 spends at most 5 bytes
/// (10 for the timestamp delta, 1 for attributes) where v1 spends fixed 2 to 8, so per record
/// at most 2 more bytes, per header at most 4 more.
fn v2_size_bound(r: &v1::RecordV1<'_>) -> usize {
    r.raw.len() + 2 + 4 * r.header_count()
}

/// The version a segment file's header claims (`None` if it has no `MKLG` header): 24 bytes
/// read, nothing else.
fn read_version(fs: &dyn FileSystem, path: &Path) -> Result<Option<u16>, StorageError> {
    let file = fs.open(path).map_err(StorageError::io(path, "open segment"))?;
    let len = file.file_len().map_err(StorageError::io(path, "stat segment"))?;
    if len < v1::HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut head = [0u8; v1::HEADER_LEN];
    file.read_exact_at(&mut head, 0).map_err(StorageError::io(path, "read segment header"))?;
    Ok(v1::header_version(&head))
}

const LOG_SUFFIX: &str = ".log";
const INDEX_SUFFIX: &str = ".index";

fn log_file_name(base: u64) -> String {
    format!("{base:020}{LOG_SUFFIX}")
}

/// The base offset of a `{base:020}.log` name.
fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `{base:020}.log.upgrade.tmp`: ends in `.tmp`, so recovery's sweep also removes a leftover.
fn upgrade_tmp_path(log_path: &Path) -> PathBuf {
    let mut s = log_path.as_os_str().to_owned();
    s.push(UPGRADE_TMP_SUFFIX);
    PathBuf::from(s)
}

fn corrupt(path: &Path, position: usize, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
