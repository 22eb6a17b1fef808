//! One segment: the log file `{base_offset:020}.log` (a header, then RecordBatch v2s in the format
//! of `crate::batch`, as producers wrote them), its memory map bounded by the committed length,
//! its in-memory sparse index and time index, and the operations on it: append at the committed
//! end, scan, find an offset or a timestamp, seal. Never decides when to roll or what to delete
//! (that is `log.rs`), never repairs a file (that is `recovery.rs`).
//!
//! # Byte layout of a segment log file (all integers little-endian)
//!
//! | position | size | field         | encoding                                              |
//! |----------|------|---------------|-------------------------------------------------------|
//! | 0        | 4    | `magic`       | the bytes `MKLG`                                      |
//! | 4        | 2    | `version`     | `u16`, currently 2 (1: per-record, see `upgrade`)     |
//! | 6        | 2    | reserved      | zero                                                  |
//! | 8        | 8    | `base_offset` | `u64`: offset of the first record (also the file name) |
//! | 16       | 4    | `header_crc`  | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `0..16`     |
//! | 20       | 4    | reserved      | zero                                                  |
//! | 24       | ...  | batches       | RecordBatch v2s back to back, as documented in `crate::batch` |
//!
//! Batches are stored byte for byte as produced; only `baseOffset` and `partitionLeaderEpoch`
//! (outside the CRC-32C) are set by the broker. A compressed batch stays compressed. Offsets
//! chain: each batch's `baseOffset` is the previous one's last offset plus one. A compacted
//! segment (`log/compaction.rs`) keeps the chain with rewritten batches whose records have gaps
//! between their offsets, and empty batches (no records) covering the offsets it removed.
//!
//! The active segment's file is grown (sparse) to its capacity so the mapping never has to move;
//! the bytes past the committed end are zero, and a zero `batchLength` reads as "end of data".
//! Disk space is reserved (fallocate) ahead of every write, so a write never runs out of space
//! half-way and every byte a write may have left behind has backing: a full disk fails the
//! append before anything is written, and recovery, which reads a crashed segment's tail through
//! the mapping, never touches a page without backing (on tmpfs that would be a SIGBUS).
//! Sealing and closing cut the file back to the committed length (freeing the reservation).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use crate::batch::{self, BatchView};
use crate::storage::StorageError;
use crate::storage::fs::{FileSystem, FsFile};
use crate::storage::handles;
use crate::storage::index::{Index, IndexEntry, IndexSummary};
use crate::storage::mmap::CommittedMap;
use crate::storage::timeindex::TimeIndex;

/// Magic at the head of a segment log file.
pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"MKLG";
/// Format version of segment log files.
pub(crate) const SEGMENT_VERSION: u16 = 2;
/// Position of the `version` field.
const VERSION_POS: usize = 4;
/// Position of the first reserved field.
const RESERVED1_POS: usize = 6;
/// Position of the `base_offset` field.
const BASE_POS: usize = 8;
/// Position of the `header_crc` field (covers everything before it).
const HEADER_CRC_POS: usize = 16;
/// Position of the second reserved field.
const RESERVED2_POS: usize = 20;
/// Size of the segment header; the first record starts here.
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;

/// Suffix of segment log files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Reads through a segment's mapping between two releases of its pages: bounds what each
/// segment adds to the broker's resident set, at one `madvise` per this many bytes read.
const RELEASE_AFTER_BYTES: usize = 1 << 20;
/// Space reserved past a write's end: an eighth of the segment's data so far, within these
/// bounds. A busy segment calls fallocate about once per 8 MiB; an idle partition holds at most
/// 64 KiB of reserved but unused disk (a whole-segment reservation would cost `segment_bytes`,
/// 1 GiB by default, per partition).
const RESERVE_AHEAD_MIN: usize = 64 << 10;
const RESERVE_AHEAD_MAX: usize = 8 << 20;

/// `{base_offset:020}.log`
pub(crate) fn log_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{LOG_SUFFIX}")
}

/// `{base_offset:020}.index`
pub(crate) fn index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{INDEX_SUFFIX}")
}

/// `{base_offset:020}.timeindex`
pub(crate) fn time_index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{TIME_INDEX_SUFFIX}")
}

/// The base offset a file name `{base_offset:020}{suffix}` stands for.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of a segment starting at `base_offset`.
pub(crate) fn encode_header(base_offset: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..VERSION_POS].copy_from_slice(&SEGMENT_MAGIC);
    h[VERSION_POS..RESERVED1_POS].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[BASE_POS..HEADER_CRC_POS].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_CRC_POS]);
    h[HEADER_CRC_POS..RESERVED2_POS].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header against the base offset its file name gives.
pub(crate) fn check_header(buf: &[u8], base_offset: u64) -> Result<(), String> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(format!("{} bytes, shorter than the segment header", buf.len()));
    }
    if buf[..SEGMENT_HEADER_LEN] == encode_header(base_offset) {
        return Ok(());
    }
    if buf[..VERSION_POS] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    let version = u16::from_le_bytes([buf[VERSION_POS], buf[VERSION_POS + 1]]);
    if version != SEGMENT_VERSION {
        return Err(format!("unknown segment format version {version}"));
    }
    Err("segment header does not match its file name (bad base offset, CRC or reserved bytes)"
        .into())
}

/// Where a scan of batches stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Position after the last good batch.
    pub(crate) position: usize,
    /// Offset after the last good batch.
    pub(crate) next_offset: u64,
    /// Largest batch `maxTimestamp` seen (`i64::MIN` if no batch).
    pub(crate) max_timestamp: i64,
    /// Why the scan stopped before the end of the bytes, if it did (`None`: it reached the end,
    /// or a zero `batchLength`, which is how unwritten space reads).
    pub(crate) stopped: Option<String>,
}

/// Whether `rest` (at a batch boundary) is unwritten space: the end of the data. Anything after
/// it is not part of the log, even if it parses.
pub(crate) fn is_unwritten(rest: &[u8]) -> bool {
    let len_end = batch::BATCH_LENGTH_POS + 4;
    if rest.len() < len_end {
        return rest.iter().all(|&b| b == 0);
    }
    rest[batch::BATCH_LENGTH_POS..len_end] == [0; 4]
}

/// The batch at `rest`'s start, checked to start at `expected` offset and to hold a sane range.
pub(crate) fn batch_at(rest: &[u8], expected: u64) -> Result<BatchView<'_>, String> {
    let view = BatchView::new(rest).map_err(|e| e.to_string())?;
    if i64::try_from(expected).ok() != Some(view.base_offset()) {
        return Err(format!(
            "batch at offset {} out of sequence, expected {expected}",
            view.base_offset()
        ));
    }
    // The last offset must fit an offset (so `last_offset() as u64 + 1` cannot wrap for callers).
    let last = view.base_offset().checked_add(i64::from(view.last_offset_delta()));
    if view.last_offset_delta() < 0
        || view.records_count() < 0
        || last.is_none_or(|l| l == i64::MAX)
    {
        return Err(format!(
            "batch at offset {expected} has lastOffsetDelta {} and {} records",
            view.last_offset_delta(),
            view.records_count()
        ));
    }
    Ok(view)
}

/// Walks the batches of `data` from `position`, expecting them to chain from `expected_offset`,
/// checking each one's CRC-32C when `verify`; calls `on_batch(view, position)` for every good
/// one.
pub(crate) fn scan(
    data: &[u8],
    mut position: usize,
    mut expected_offset: u64,
    verify: bool,
    mut on_batch: impl FnMut(&BatchView<'_>, usize),
) -> ScanEnd {
    let mut max_timestamp = i64::MIN;
    let stopped = loop {
        let rest = &data[position..];
        if rest.is_empty() || is_unwritten(rest) {
            break None;
        }
        let view = match batch_at(rest, expected_offset) {
            Ok(v) => v,
            Err(reason) => break Some(reason),
        };
        if verify && let Err(e) = view.verify_crc() {
            break Some(format!("batch at offset {expected_offset}: {e}"));
        }
        on_batch(&view, position);
        max_timestamp = max_timestamp.max(view.max_timestamp());
        position += view.len();
        expected_offset = view.last_offset() as u64 + 1;
    };
    ScanEnd { position, next_offset: expected_offset, max_timestamp, stopped }
}

/// Decides where index entries go: one whenever `interval` bytes have passed since the last one;
/// the time index takes its entries at the same batch starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexCursor {
    interval: u32,
    last_position: usize,
}

impl IndexCursor {
    pub(crate) fn new(interval: u32, last_position: usize) -> Self {
        IndexCursor { interval: interval.max(1), last_position }
    }

    /// Called for each batch in order (with its `maxTimestamp`); adds an entry to `index`, and
    /// maybe to `times`, when one is due.
    pub(crate) fn observe(
        &mut self,
        index: &mut Index,
        times: &mut TimeIndex,
        relative_offset: u32,
        position: usize,
        max_timestamp: i64,
    ) {
        // Positions fit u32: segment sizes are capped below 4 GiB when the config is checked.
        let pos = position as u32;
        if position - self.last_position >= self.interval as usize {
            index.push(IndexEntry { relative_offset, position: pos });
            times.entry_due(relative_offset, pos);
            self.last_position = position;
        }
        times.observe(relative_offset, pos, max_timestamp);
    }
}

/// How far to reserve a file's space when a write must reach `end`: some way past it, never
/// past the mapping's `capacity`.
fn reserve_target(end: usize, capacity: usize) -> usize {
    let ahead = (end / 8).clamp(RESERVE_AHEAD_MIN, RESERVE_AHEAD_MAX);
    end.saturating_add(ahead).min(capacity).max(end)
}

/// A segment's file, open, and its mapping: what reads and writes go through. Shared as
/// `Arc<OpenSegment>`; a reader's slice holds one, so its bytes outlive a deletion or an eviction
/// from the cache of open sealed segments (`handles.rs`).
#[derive(Debug)]
pub(crate) struct OpenSegment {
    file: Box<dyn FsFile>,
    map: CommittedMap,
    /// Bytes read through the mapping since its pages were last released (see
    /// [`OpenSegment::note_read`]).
    read_since_release: AtomicUsize,
    /// Used since the cache's clock hand last passed (`handles.rs`).
    pub(crate) referenced: AtomicBool,
    /// Whether the cache holds it (`handles.rs`).
    pub(crate) cached: AtomicBool,
}

impl OpenSegment {
    fn new(file: Box<dyn FsFile>, map: CommittedMap) -> Arc<OpenSegment> {
        Arc::new(OpenSegment {
            file,
            map,
            read_since_release: AtomicUsize::new(0),
            referenced: AtomicBool::new(true),
            cached: AtomicBool::new(false),
        })
    }

    /// The committed bytes (header included).
    pub(crate) fn data(&self) -> &[u8] {
        self.map.committed_bytes()
    }

    pub(crate) fn file(&self) -> &dyn FsFile {
        &*self.file
    }

    /// Counts `bytes` read through the mapping, and once `RELEASE_AFTER_BYTES` have been read
    /// since the last time, unmaps the segment's pages from the process. Without this, every
    /// page a reader ever touched stays in the broker's resident set (a replay of a 2 GiB log
    /// left 2 GiB resident); the pages stay in the page cache either way.
    fn note_read(&self, bytes: usize) {
        let total = self.read_since_release.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= RELEASE_AFTER_BYTES {
            // Two readers may both release: harmless, the second finds little mapped.
            self.read_since_release.store(0, Ordering::Relaxed);
            self.map.release_pages();
        }
    }
}

/// How a segment holds its open file: the active one for good (the appender writes through
/// it); a sealed one only weakly, the cache of open sealed segments and readers holding it open.
#[derive(Debug)]
enum Handle {
    Pinned(Arc<OpenSegment>),
    OnDemand(Weak<OpenSegment>),
}

/// One segment of a log. Shared as `Arc<Segment>` between the log and the appender; readers take
/// its [`OpenSegment`].
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) log_path: PathBuf,
    pub(crate) index_path: PathBuf,
    pub(crate) time_index_path: PathBuf,
    handle: RwLock<Handle>,
    /// Set by `release` (the file is being deleted): no reader may put a handle to it back into
    /// the cache of open sealed segments, or its space would stay in use.
    released: AtomicBool,
    /// The committed length, also here so that sizes need no open file (the mapping's own is
    /// what bounds readers).
    len: AtomicUsize,
    /// Bytes the active segment's mapping can hold.
    capacity: usize,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    index: RwLock<Index>,
    /// Taken after `index` when both are locked.
    time_index: RwLock<TimeIndex>,
    sealed: AtomicBool,
    /// The first this many bytes of the file have disk space (written or reserved); only the
    /// appender moves it.
    reserved: AtomicUsize,
    index_interval_bytes: u32,
}

/// Everything recovery learned about a segment, to build the `Segment` from.
pub(crate) struct SegmentParts {
    pub(crate) base_offset: u64,
    pub(crate) log_path: PathBuf,
    pub(crate) index_path: PathBuf,
    pub(crate) file: Box<dyn FsFile>,
    /// Length of the good data, header included.
    pub(crate) data_len: usize,
    /// Bytes to map; the file must be at least `data_len` long, and exactly `capacity` if more
    /// is to be appended. A sealed segment is not mapped until read.
    pub(crate) capacity: usize,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) index: Index,
    pub(crate) time_index: TimeIndex,
    pub(crate) index_interval_bytes: u32,
    pub(crate) sealed: bool,
}

impl Segment {
    /// Creates an empty segment with room for `capacity` bytes (header included): the log file
    /// with its header, grown sparse to `capacity` with space reserved for the first writes, and
    /// an empty index file; their names are durable (directory fsync) when it returns. On a full
    /// disk it fails before writing anything.
    pub(crate) fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: u64,
        capacity: usize,
        index_interval_bytes: u32,
    ) -> Result<Segment, StorageError> {
        let log_path = dir.join(log_file_name(base_offset));
        let index_path = dir.join(index_file_name(base_offset));
        let file = fs.create(&log_path).map_err(StorageError::io(&log_path, "create segment"))?;
        file.set_len(capacity as u64)
            .map_err(StorageError::io(&log_path, "preallocate segment"))?;
        let reserved = reserve_target(SEGMENT_HEADER_LEN, capacity);
        file.allocate(0, reserved as u64)
            .map_err(StorageError::io(&log_path, "reserve disk space for the segment"))?;
        file.write_all_at(&encode_header(base_offset), 0)
            .map_err(StorageError::io(&log_path, "write segment header"))?;
        // No fdatasync here: the header reaches the disk with the first sync of the records
        // (and a segment whose header was lost in a crash is recovered as empty). Only the
        // names must be durable before records are acknowledged in the file.
        let summary = IndexSummary {
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            log_len: SEGMENT_HEADER_LEN as u64,
        };
        Index::new()
            .write_hint(fs, &index_path, base_offset, summary)
            .map_err(StorageError::io(&index_path, "write index"))?;
        fs.sync_dir(dir).map_err(StorageError::io(dir, "fsync log directory"))?;
        let seg = Segment::from_parts(SegmentParts {
            base_offset,
            log_path,
            index_path,
            file,
            data_len: SEGMENT_HEADER_LEN,
            capacity,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            index: Index::new(),
            time_index: TimeIndex::new(),
            index_interval_bytes,
            sealed: false,
        })?;
        seg.reserved.store(reserved, Ordering::Relaxed);
        Ok(seg)
    }

    /// Builds a segment recovery has checked: the active one is mapped and keeps its file; a
    /// sealed one lets go of both (it is opened again when read).
    pub(crate) fn from_parts(p: SegmentParts) -> Result<Segment, StorageError> {
        let handle = if p.sealed {
            Handle::OnDemand(Weak::new())
        } else {
            let map = CommittedMap::new(p.file.as_file(), p.capacity, p.data_len)
                .map_err(StorageError::io(&p.log_path, "mmap segment"))?;
            Handle::Pinned(OpenSegment::new(p.file, map))
        };
        let time_index_path = p.log_path.with_file_name(time_index_file_name(p.base_offset));
        Ok(Segment {
            base_offset: p.base_offset,
            time_index_path,
            log_path: p.log_path,
            index_path: p.index_path,
            handle: RwLock::new(handle),
            released: AtomicBool::new(false),
            len: AtomicUsize::new(p.data_len),
            capacity: p.capacity,
            next_offset: AtomicU64::new(p.next_offset),
            max_timestamp: AtomicI64::new(p.max_timestamp),
            index: RwLock::new(p.index),
            time_index: RwLock::new(p.time_index),
            sealed: AtomicBool::new(p.sealed),
            // The data was written, so it has its space; nothing past it is reserved yet.
            reserved: AtomicUsize::new(p.data_len),
            index_interval_bytes: p.index_interval_bytes,
        })
    }

    /// The open file and mapping, opening and mapping a sealed segment's file if no one holds it
    /// open (then the cache of open sealed segments keeps it for a while).
    pub(crate) fn open(&self, fs: &dyn FileSystem) -> Result<Arc<OpenSegment>, StorageError> {
        if let Some(h) = self.loaded() {
            return Ok(h);
        }
        let file =
            fs.open(&self.log_path).map_err(StorageError::io(&self.log_path, "open segment"))?;
        // A sealed file is exactly its committed length (cut at seal) and never changes again.
        let len = self.len();
        let map = CommittedMap::new(file.as_file(), len, len)
            .map_err(StorageError::io(&self.log_path, "mmap segment"))?;
        let fresh = OpenSegment::new(file, map);
        let mut guard = self.handle.write().unwrap_or_else(|p| p.into_inner());
        if self.released.load(Ordering::SeqCst) {
            // Deleted since the file was opened: this reader alone keeps it until it is done.
            return Ok(fresh);
        }
        // Another reader may have opened it meanwhile: use theirs, one mapping per segment.
        let h = match &*guard {
            Handle::Pinned(h) => return Ok(h.clone()),
            Handle::OnDemand(w) => w.upgrade().unwrap_or_else(|| {
                *guard = Handle::OnDemand(Arc::downgrade(&fresh));
                fresh
            }),
        };
        drop(guard);
        self.keep(&h);
        Ok(h)
    }

    /// Notes a use of a sealed segment's handle in the cache, unless the segment was released
    /// meanwhile. `release` sets its flag before it takes the handle out of the cache and this
    /// checks the flag after putting it in (all SeqCst): one of the two sees the other.
    fn keep(&self, h: &Arc<OpenSegment>) {
        handles::keep(h);
        if self.released.load(Ordering::SeqCst) {
            handles::forget(h);
        }
    }

    /// The open file and mapping if someone holds them open (never opens the file).
    fn loaded(&self) -> Option<Arc<OpenSegment>> {
        // The handle is consistent after any panic (each change is one assignment).
        let guard = self.handle.read().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            Handle::Pinned(h) => Some(h.clone()),
            Handle::OnDemand(w) => {
                let h = w.upgrade()?;
                drop(guard);
                self.keep(&h);
                Some(h)
            }
        }
    }

    /// The active segment's open file (the appender's and syncer's path).
    fn pinned(&self) -> Result<Arc<OpenSegment>, StorageError> {
        match &*self.handle.read().unwrap_or_else(|p| p.into_inner()) {
            Handle::Pinned(h) => Ok(h.clone()),
            Handle::OnDemand(_) => Err(StorageError::Io {
                path: self.log_path.clone(),
                op: "write to a sealed segment",
                source: std::io::Error::other("segment is sealed"),
            }),
        }
    }

    /// Lets go of the open file for good (the segment is being deleted): its disk space is
    /// freed once the readers still holding it are done.
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        let old = std::mem::replace(
            &mut *self.handle.write().unwrap_or_else(|p| p.into_inner()),
            Handle::OnDemand(Weak::new()),
        );
        let h = match old {
            Handle::Pinned(h) => Some(h),
            Handle::OnDemand(w) => w.upgrade(),
        };
        if let Some(h) = h {
            handles::forget(&h);
        }
    }

    /// Keeps this segment readable after its file is replaced or deleted (compaction swaps a
    /// cleaned file in under the same name): its current file is opened and pinned, so every
    /// later `open` of this `Segment` returns that mapping, never whatever file then has its
    /// name. The mapping goes when the last holder of this `Segment` or of a slice drops it.
    pub(crate) fn retire(&self, fs: &dyn FileSystem) -> Result<(), StorageError> {
        let h = self.open(fs)?;
        self.released.store(true, Ordering::SeqCst);
        *self.handle.write().unwrap_or_else(|p| p.into_inner()) = Handle::Pinned(h.clone());
        handles::forget(&h);
        Ok(())
    }

    /// Committed length of the file.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the segment holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.next_offset() == self.base_offset
    }

    /// Bytes that can still be appended without moving the mapping.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    /// The offset after the last committed record (Acquire: the bytes of every record below it
    /// are published).
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// fdatasyncs the active segment's file; a sealed one was synced when it was sealed.
    pub(crate) fn sync_data(&self) -> std::io::Result<()> {
        match &*self.handle.read().unwrap_or_else(|p| p.into_inner()) {
            Handle::Pinned(h) => h.file.sync_data(),
            Handle::OnDemand(_) => Ok(()),
        }
    }

    /// A hint for a replay, for a segment open now (a sealed one is not opened for it).
    pub(crate) fn advise_sequential(&self) {
        if let Some(h) = self.loaded() {
            h.map.advise_sequential();
        }
    }

    /// Writes `bytes` at the committed end. Not yet visible to readers: see [`Self::publish`].
    /// Only the appender (holding the log's append lock) calls this.
    /// The bytes' disk space is reserved first: on a full disk the append fails with nothing
    /// written.
    pub(crate) fn write_at_end(&self, bytes: &[u8]) -> Result<(), StorageError> {
        debug_assert!(bytes.len() <= self.room() && !self.is_sealed());
        let h = self.pinned()?;
        let start = self.len();
        self.reserve(&h, start + bytes.len())?;
        h.file
            .write_all_at(bytes, start as u64)
            .map_err(StorageError::io(&self.log_path, "write records"))
    }

    /// Makes sure the first `end` bytes of the file have disk space, reserving some more ahead.
    fn reserve(&self, h: &OpenSegment, end: usize) -> Result<(), StorageError> {
        let reserved = self.reserved.load(Ordering::Relaxed);
        if end <= reserved {
            return Ok(());
        }
        let target = reserve_target(end, h.map.capacity());
        h.file
            .allocate(reserved as u64, (target - reserved) as u64)
            .map_err(StorageError::io(&self.log_path, "reserve disk space for records"))?;
        self.reserved.store(target, Ordering::Relaxed);
        Ok(())
    }

    /// Adds index and time index entries for records just written (before they are published).
    pub(crate) fn with_index<R>(&self, f: impl FnOnce(&mut Index, &mut TimeIndex) -> R) -> R {
        // A panic while holding these locks cannot leave an index inconsistent (each push is
        // atomic with respect to the invariant), so a poisoned lock is still usable.
        let mut guard = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut times = self.time_index.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard, &mut times)
    }

    /// A copy of the time index, for tests to look at.
    #[cfg(test)]
    pub(crate) fn time_index_snapshot(&self) -> TimeIndex {
        self.time_index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn index_lookup(&self, relative_offset: u32) -> Option<IndexEntry> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).lookup(relative_offset)
    }

    /// Replaces the in-memory index, and a sealed segment's time index, with ones built by
    /// scanning the committed records (up to the first bad one). Under both write locks, so an
    /// appender's entries for records published later land after them, in order. The active
    /// segment's time index is kept: a batch indexed but not yet published when the scan reads
    /// the committed bytes would be missing from a rebuilt one, and unlike the sparse offset
    /// index, its entries and largest timestamp must account for every batch.
    fn rebuild_index(&self, h: &OpenSegment) {
        let mut guard = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut times_guard = self.time_index.write().unwrap_or_else(|p| p.into_inner());
        let data = h.data();
        let (index, times, _) =
            build_indexes(data, self.base_offset, self.index_interval_bytes, false);
        *guard = index;
        if self.is_sealed() {
            *times_guard = times;
        }
        h.note_read(data.len());
    }

    /// Makes records written by [`Self::write_at_end`] visible: the committed length first, then
    /// the next offset, both Release. Only the appender calls this, on the active segment.
    pub(crate) fn publish(&self, len: usize, next_offset: u64, max_timestamp: i64) {
        self.max_timestamp.fetch_max(max_timestamp, Ordering::AcqRel);
        if let Ok(h) = self.pinned() {
            h.map.publish(len);
        }
        self.len.store(len, Ordering::Release);
        self.next_offset.store(next_offset, Ordering::Release);
    }

    fn summary(&self) -> IndexSummary {
        IndexSummary {
            next_offset: self.next_offset(),
            max_timestamp: self.max_timestamp(),
            log_len: self.len() as u64,
        }
    }

    /// Cuts the file back to the committed length (dropping the sparse preallocation), fdatasyncs
    /// it, and writes the index durably. Used at seal and at close.
    pub(crate) fn flush_to_disk(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
    ) -> Result<(), StorageError> {
        if self.is_sealed() {
            // Flushed when it was sealed, and never written since.
            return Ok(());
        }
        let h = self.pinned()?;
        // Never below the committed length: readers may touch anything below it.
        h.file
            .set_len(self.len() as u64)
            .map_err(StorageError::io(&self.log_path, "cut segment to its data"))?;
        // The cut freed the reservation past the data.
        self.reserved.store(self.len(), Ordering::Relaxed);
        h.file.sync_data().map_err(StorageError::io(&self.log_path, "fdatasync segment"))?;
        let index = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        let times = self.time_index.read().unwrap_or_else(|p| p.into_inner()).clone();
        // Synced, renamed, then made durable by the index's directory fsync below.
        times
            .write(fs, &self.time_index_path, self.base_offset, self.summary(), true)
            .map_err(StorageError::io(&self.time_index_path, "write time index"))?;
        index
            .write(fs, dir, &self.index_path, self.base_offset, self.summary())
            .map_err(StorageError::io(&self.index_path, "write index"))
    }

    /// Seals the segment: no more appends; durable with its index. Its open file goes to the
    /// cache of open sealed segments (recent data is what consumers read next).
    pub(crate) fn seal(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), StorageError> {
        self.flush_to_disk(fs, dir)?;
        self.sealed.store(true, Ordering::Release);
        let mut guard = self.handle.write().unwrap_or_else(|p| p.into_inner());
        if let Handle::Pinned(h) = &*guard {
            let h = h.clone();
            *guard = Handle::OnDemand(Arc::downgrade(&h));
            drop(guard);
            handles::keep(&h);
        }
        Ok(())
    }

    fn corrupt(&self, position: usize, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position: position as u64,
            reason: reason.into(),
        }
    }

    /// Finds the batch holding `offset` (which must be in `base_offset..next_offset`) and returns
    /// the byte range from its start covering at least that batch and, past it, no more than
    /// `max_bytes` of whole batches, with the offset after the last one. Only batch headers are
    /// read (their CRCs were checked on append and at recovery; consumers check them again);
    /// a header that does not chain is `Corrupt`, never skipped.
    pub(crate) fn locate(
        &self,
        h: &OpenSegment,
        offset: u64,
        max_bytes: usize,
    ) -> Result<(usize, usize, u64), StorageError> {
        let data = h.data();
        let rel = (offset - self.base_offset).min(u64::from(u32::MAX)) as u32;
        let (mut pos, mut at) = match self.index_lookup(rel) {
            Some(e) if (e.position as usize) < data.len() => {
                (e.position as usize, self.base_offset + u64::from(e.relative_offset))
            }
            _ => (SEGMENT_HEADER_LEN, self.base_offset),
        };
        // The index is a hint: if the entry does not point at the batch it names, scan from
        // the start of the segment instead.
        if pos != SEGMENT_HEADER_LEN && batch_at(&data[pos..], at).is_err() {
            tracing::warn!(path = %self.log_path.display(), position = pos,
                "index entry disagrees with the log; rebuilding the index from the log");
            self.rebuild_index(h);
            pos = SEGMENT_HEADER_LEN;
            at = self.base_offset;
        }
        // Skip forward to the batch holding the wanted offset.
        loop {
            let view = self.batch_at(data, pos, at, offset)?;
            let last = view.last_offset() as u64;
            if last >= offset {
                break;
            }
            pos += view.len();
            at = last + 1;
        }
        let start = pos;
        let mut end = pos;
        // Batches emptied by compaction (no records) do not count as the one batch a read
        // returns whatever `max_bytes`: the slice goes on to the next batch holding a record
        // (in this segment), so a read in a gap gives the next survivor.
        let mut has_records = false;
        while end < data.len() && (!has_records || end - start < max_bytes) {
            // Only batches published when the caller looked are below the committed end, and
            // they are whole (the next offset is published after the bytes).
            let view = self.batch_at(data, end, at, offset)?;
            if has_records && end - start + view.len() > max_bytes {
                break;
            }
            has_records |= view.records_count() > 0;
            end += view.len();
            at = view.last_offset() as u64 + 1;
        }
        h.note_read(end - start);
        Ok((start, end, at))
    }

    /// The batch at `pos`, which must start at offset `expected`; `wanted` names the offset being
    /// looked for in the error.
    fn batch_at<'a>(
        &self,
        data: &'a [u8],
        pos: usize,
        expected: u64,
        wanted: u64,
    ) -> Result<BatchView<'a>, StorageError> {
        if pos >= data.len() || is_unwritten(&data[pos..]) {
            return Err(self.corrupt(pos, format!("batch holding offset {wanted} missing")));
        }
        batch_at(&data[pos..], expected).map_err(|reason| self.corrupt(pos, reason))
    }

    /// Where a walk for offsets at or after `from` starts: the offset index entry at or below
    /// `from` or, if later, the time index entry proving that every batch before it is older
    /// than `ts`. The indexes are hints: when an entry does not point at the batch it names,
    /// they are rebuilt from the log (see [`Self::rebuild_index`]) and the walk starts at the
    /// segment start.
    fn walk_start(&self, h: &OpenSegment, ts: Option<i64>, from: u64) -> (usize, u64) {
        let data = h.data();
        let rel = from.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let by_offset = self.index_lookup(rel).map(|e| (e.position, e.relative_offset));
        let by_time = ts.and_then(|ts| {
            let t = self.time_index.read().unwrap_or_else(|p| p.into_inner());
            t.lookup(ts, data.len()).map(|e| (e.position, e.relative_offset))
        });
        let Some((pos, rel)) = by_offset.max(by_time).filter(|&(p, _)| (p as usize) < data.len())
        else {
            return (SEGMENT_HEADER_LEN, self.base_offset);
        };
        let (pos, at) = (pos as usize, self.base_offset + u64::from(rel));
        if batch_at(&data[pos..], at).is_err() {
            tracing::warn!(path = %self.log_path.display(), position = pos,
                "index entry disagrees with the log; rebuilding the indexes from the log");
            self.rebuild_index(h);
            return (SEGMENT_HEADER_LEN, self.base_offset);
        }
        (pos, at)
    }

    /// The (timestamp, offset) of the first record at or after `from` whose timestamp is at
    /// least `ts`, if any in this segment. The walk over batch headers starts where the time index proves every
    /// earlier batch older than `ts` (or at `from`'s index entry, if later); batches whose
    /// `maxTimestamp` is below `ts` are skipped by their header; only the batch holding the
    /// answer is decoded (decompressed if it must be).
    pub(crate) fn offset_for_timestamp(
        &self,
        fs: &dyn FileSystem,
        ts: i64,
        from: u64,
    ) -> Result<Option<(i64, u64)>, StorageError> {
        if self.max_timestamp() < ts {
            return Ok(None);
        }
        let h = self.open(fs)?;
        let data = h.data();
        let next = self.next_offset();
        let (mut pos, mut at) = self.walk_start(&h, Some(ts), from);
        let first = pos;
        let mut scratch = Vec::new();
        while at < next && pos < data.len() {
            let view = self.batch_at(data, pos, at, at)?;
            let last = view.last_offset() as u64;
            if last >= from && view.max_timestamp() >= ts {
                let found = first_record_at_or_after(&view, from, ts, &mut scratch)
                    .map_err(|e| self.corrupt(pos, e.to_string()))?;
                if found.is_some() {
                    h.note_read(pos + view.len() - first);
                    return Ok(found);
                }
            }
            pos += view.len();
            at = last + 1;
        }
        h.note_read(pos - first);
        Ok(None)
    }

    /// The first record with the largest timestamp among offsets `from..until` of this segment,
    /// as (timestamp, offset). If the batch the time index names as holding the segment's
    /// largest timestamp lies wholly in the range (it does unless the log start is inside this
    /// segment or the batch is not yet visible), only that batch is read; otherwise the headers
    /// of the range are walked and only the best batch and the (at most two) batches straddling
    /// the range's ends are decoded.
    pub(crate) fn max_timestamp_record(
        &self,
        fs: &dyn FileSystem,
        from: u64,
        until: u64,
    ) -> Result<Option<(i64, u64)>, StorageError> {
        let max = self.time_index.read().unwrap_or_else(|p| p.into_inner()).max_batch();
        let Some(max) = max else { return Ok(None) };
        let h = self.open(fs)?;
        let data = h.data();
        let mut scratch = Vec::new();
        let pos = max.position as usize;
        let at = self.base_offset + u64::from(max.relative_offset);
        if pos < data.len() {
            match batch_at(&data[pos..], at) {
                Ok(view) if at >= from && (view.last_offset() as u64) < until => {
                    h.note_read(view.len());
                    return self.max_record(&view, pos, from, until, &mut scratch);
                }
                Ok(_) => {}
                Err(reason) => {
                    tracing::warn!(path = %self.log_path.display(), position = pos, %reason,
                        "time index disagrees with the log; rebuilding the indexes from the log");
                    self.rebuild_index(&h);
                }
            }
        }
        let (mut pos, mut at) = self.walk_start(&h, None, from);
        let first = pos;
        let mut best = None;
        // (maxTimestamp, position, base offset) of the first best batch wholly in the range.
        let mut best_inside: Option<(i64, usize, u64)> = None;
        while at < until && pos < data.len() && !is_unwritten(&data[pos..]) {
            let view = self.batch_at(data, pos, at, at)?;
            let last = view.last_offset() as u64;
            if last >= from {
                if at >= from && last < until {
                    // Validated on append: a batch's maxTimestamp is its largest record's.
                    if best_inside.is_none_or(|b| view.max_timestamp() > b.0) {
                        best_inside = Some((view.max_timestamp(), pos, at));
                    }
                } else {
                    // Only some of its records are in the range.
                    let r = self.max_record(&view, pos, from, until, &mut scratch)?;
                    best = better_max(best, r);
                }
            }
            pos += view.len();
            at = last + 1;
        }
        h.note_read(pos - first);
        if let Some((_, pos, at)) = best_inside {
            let view = self.batch_at(data, pos, at, at)?;
            let r = self.max_record(&view, pos, from, until, &mut scratch)?;
            best = better_max(best, r);
        }
        Ok(best)
    }

    /// The first record of `view` (at `pos`) in `from..until` with the largest timestamp.
    fn max_record(
        &self,
        view: &BatchView<'_>,
        pos: usize,
        from: u64,
        until: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<(i64, u64)>, StorageError> {
        let mut best: Option<(i64, u64)> = None;
        let mut each = |r: batch::RecordView<'_>| {
            let o = r.offset as u64;
            if (from..until).contains(&o) && best.is_none_or(|b| r.timestamp > b.0) {
                best = Some((r.timestamp, o));
            }
        };
        let res: Result<(), batch::BatchError> =
            view.decoded_records(scratch).and_then(|mut rs| rs.try_for_each(|r| r.map(&mut each)));
        res.map_err(|e| self.corrupt(pos, e.to_string()))?;
        Ok(best)
    }
}

/// The better of two (timestamp, offset) answers for the largest timestamp: the larger timestamp,
/// and on a tie the smaller offset (Kafka's first record with the largest timestamp).
fn better_max(a: Option<(i64, u64)>, b: Option<(i64, u64)>) -> Option<(i64, u64)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 > x.0 || (y.0 == x.0 && y.1 < x.1) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The offset index and time index of the batches of `data` from the segment start, built as
/// the appender builds them, and where the walk ended (at the end of the data or the first bad
/// batch; CRCs checked only when `verify`).
pub(crate) fn build_indexes(
    data: &[u8],
    base: u64,
    interval: u32,
    verify: bool,
) -> (Index, TimeIndex, ScanEnd) {
    let mut index = Index::new();
    let mut times = TimeIndex::new();
    let mut cursor = IndexCursor::new(interval, SEGMENT_HEADER_LEN);
    let end = scan(data, SEGMENT_HEADER_LEN, base, verify, |v, pos| {
        // Relative offsets fit u32: a segment below 4 GiB holds fewer than 2^32 records.
        let rel = (v.base_offset() as u64 - base) as u32;
        cursor.observe(&mut index, &mut times, rel, pos, v.max_timestamp());
    });
    (index, times, end)
}

/// The first record of `view` at or after offset `from` with a timestamp of at least `ts`.
fn first_record_at_or_after(
    view: &BatchView<'_>,
    from: u64,
    ts: i64,
    scratch: &mut Vec<u8>,
) -> Result<Option<(i64, u64)>, batch::BatchError> {
    for r in view.decoded_records(scratch)? {
        let r = r?;
        if r.offset >= from as i64 && r.timestamp >= ts {
            return Ok(Some((r.timestamp, r.offset as u64)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewRecord;
    use crate::storage::fs::RealFs;

    #[test]
    fn file_names_sort_numerically_and_parse_back() {
        assert_eq!(log_file_name(42), "00000000000000000042.log");
        assert_eq!(index_file_name(42), "00000000000000000042.index");
        assert_eq!(parse_file_name("00000000000000000042.log", LOG_SUFFIX), Some(42));
        assert_eq!(parse_file_name("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_file_name("0000000000000000004x.log", LOG_SUFFIX), None);
        assert_eq!(parse_file_name("00000000000000000042.index", LOG_SUFFIX), None);
    }

    #[test]
    fn header_layout_and_checks() {
        let h = encode_header(7);
        assert_eq!(&h[..4], b"MKLG");
        assert_eq!(u16::from_le_bytes([h[4], h[5]]), SEGMENT_VERSION);
        assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), 7);
        assert!(check_header(&h, 7).is_ok());
        assert!(check_header(&h, 8).is_err());
        assert!(check_header(&h[..10], 7).is_err());
        let mut bad = h;
        bad[21] = 1;
        assert!(check_header(&bad, 7).is_err(), "reserved bytes must be zero");
    }

    /// Three one-record batches numbered from `base`, values a, bb, ccc.
    fn three_batches(base: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, v) in [&b"a"[..], b"bb", b"ccc"].iter().enumerate() {
            let mut b =
                crate::record::build_batch(&[NewRecord::value(v)], batch::Compression::None)
                    .unwrap();
            batch::set_base_offset(&mut b, (base + i as u64) as i64).unwrap();
            buf.extend_from_slice(&b);
        }
        buf
    }

    fn value_at(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::record::decode_records(data, 0, true, &mut out, &mut Vec::new()).unwrap();
        out[0].value.clone().unwrap()
    }

    #[test]
    fn append_publish_locate_and_seal() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(&RealFs, dir.path(), 10, 4096, 64).unwrap();
        let buf = three_batches(10);
        seg.write_at_end(&buf).unwrap();
        let h = seg.open(&RealFs).unwrap();
        assert_eq!(h.data().len(), SEGMENT_HEADER_LEN, "not visible before publish");
        seg.publish(SEGMENT_HEADER_LEN + buf.len(), 13, 5);
        let (start, end, next) = seg.locate(&h, 11, 1).unwrap();
        assert_eq!(next, 12, "one batch even when max_bytes is tiny");
        assert_eq!(value_at(&h.data()[start..end]), b"bb");
        assert_eq!(seg.locate(&h, 10, 1 << 20).unwrap().2, 13);
        seg.seal(&RealFs, dir.path()).unwrap();
        let len = std::fs::metadata(&seg.log_path).unwrap().len();
        assert_eq!(len as usize, SEGMENT_HEADER_LEN + buf.len(), "cut back to the data");
        // Closed for good, then read again: the file is opened and mapped anew.
        seg.release();
        drop(h);
        assert!(seg.loaded().is_none(), "no one holds the sealed segment open");
        let h = seg.open(&RealFs).unwrap();
        let end = scan(h.data(), SEGMENT_HEADER_LEN, 10, true, |_, _| {});
        assert_eq!((end.next_offset, end.stopped), (13, None));
        let (start, end, next) = seg.locate(&h, 12, 1).unwrap();
        assert_eq!((end, next), (h.data().len(), 13));
        assert_eq!(value_at(&h.data()[start..end]), b"ccc");
    }

    #[test]
    fn a_scan_stops_at_a_flipped_byte_only_when_verifying() {
        let mut buf = three_batches(0);
        let second = batch::BatchView::new(&buf).unwrap().len();
        buf[second + batch::RECORDS_POS] ^= 0x40;
        let mut data = encode_header(0).to_vec();
        data.extend_from_slice(&buf);
        let end = scan(&data, SEGMENT_HEADER_LEN, 0, true, |_, _| {});
        assert_eq!(end.next_offset, 1);
        assert_eq!(end.position, SEGMENT_HEADER_LEN + second);
        assert!(end.stopped.unwrap().contains("CRC"));
        assert_eq!(scan(&data, SEGMENT_HEADER_LEN, 0, false, |_, _| {}).next_offset, 3);
    }

    #[test]
    fn a_batch_whose_last_offset_overflows_ends_the_scan_instead_of_wrapping() {
        let base = i64::MAX as u64 - 1;
        let recs: Vec<_> = (0..3).map(|_| NewRecord::value(b"x")).collect();
        let mut b = crate::record::build_batch(&recs, batch::Compression::None).unwrap();
        batch::set_base_offset(&mut b, base as i64).unwrap();
        let mut data = encode_header(base).to_vec();
        data.extend_from_slice(&b);
        let end = scan(&data, SEGMENT_HEADER_LEN, base, true, |_, _| {});
        assert_eq!((end.position, end.next_offset), (SEGMENT_HEADER_LEN, base));
        assert!(end.stopped.is_some());
        // An offset past i64::MAX can name no batch.
        assert!(batch_at(&b, u64::MAX).is_err());
    }
}
