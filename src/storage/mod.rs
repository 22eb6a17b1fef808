//! The on-disk log of one partition: segment files, a sparse offset index, mmap reads, crash
//! recovery, the fsync policy and retention by whole segments. Usable as a library without any
//! networking; never knows about topics, sockets or wire formats.
//!
//! # Surface
//! - [`Log::open`] creates the directory if missing and recovers it; [`Log`] is `Send + Sync`,
//!   every method takes `&self`, share it as `Arc<Log>`.
//! - [`Log::append`] (records) / [`Log::append_batches`] (RecordBatch v2s as produced) write with
//!   one write and return their
//!   [`OffsetRange`] once the write reached the OS (and, with [`FsyncPolicy::Always`], after an
//!   fdatasync shared by concurrent appenders: group commit).
//! - [`Log::read`] returns a [`ReadSlice`] of the memory map: whole batches from the one holding
//!   an offset, within one segment, at least one batch.
//! - [`Log::compact`] (with [`Log::dirty_ratio`], [`Log::needs_compaction`], a [`Throttle`]):
//!   Kafka's log compaction of the sealed segments, offsets unchanged.
//! - [`Log::trim_before`], [`Log::enforce_retention`], [`Log::offset_for_timestamp`],
//!   [`Log::max_timestamp_offset`], [`Log::describe`], [`Log::sync`], [`Log::sync_if_dirty`],
//!   [`Log::close`].
//!
//! # Files of a log directory
//! | name                      | what                                                             |
//! |---------------------------|------------------------------------------------------------------|
//! | `{base_offset:020}.log`   | a segment: header + RecordBatch v2s (byte table in `segment.rs`) |
//! | `{base_offset:020}.index` | its sparse index (byte table in `index.rs`); a hint, rebuilt when missing or wrong |
//! | `{base_offset:020}.timeindex` | its sparse time index and the batch with its largest timestamp (byte table in `timeindex.rs`); a hint, rebuilt when missing or wrong |
//! | `{offset:020}.snapshot`   | idempotent producers' state at that offset, written at each roll and at close, the newest two kept (byte table in `producer_state.rs`); a damaged one is removed and the state rebuilt from the log |
//! | `log-start-offset`        | checkpoint of the log start after a trim (byte table in `recovery.rs`) |
//! | `cleaner-offset-checkpoint` | compaction's checkpoint: offsets below it are compacted (byte table in `log/compaction.rs`) |
//! | `{base_offset:020}.log.cleaned` / `.log.swap` | a compacted segment before / after the swap commits; open rolls back / completes the swap (`recovery.rs`) |
//! | `leader-epoch-checkpoint` | each leader epoch that wrote records and its start offset (byte table in `epoch_checkpoint.rs`); rebuilt from the batch headers when missing or damaged |
//! | `truncation-pending`      | the offset a truncation is cutting the log to, written before it removes anything and removed once it is done; open finishes it (byte table in `log/truncate.rs`) |
//! | `clean-shutdown`          | written by `close()`, removed by open before any write           |
//! | `*.tmp`                   | a file being written (temp + rename); swept at open              |
//!
//! # Module map
//! `fs.rs` (the file-operation seam, and `FaultyFs` for tests), `mmap.rs` (every `unsafe`),
//! `index.rs`, `timeindex.rs`, `segment.rs`, `recovery.rs` (open), `upgrade/` (format 1 to 2 at
//! open), `producer_state.rs` (idempotent producers), `log/` (the `Log`; `log/compaction.rs`
//! its compaction), `handles.rs` (the bound on open sealed segments, the open-file limit).
//!
//! # Memory and disk
//! The active segment is grown (sparse) to `segment_bytes` and mapped whole, so readers never
//! need a remap; disk space is reserved (fallocate) a little ahead of the writes, so a full disk
//! fails an append before it writes anything and no mapped page ever lacks backing (no SIGBUS);
//! sealing and `close()` cut it back to its data. `describe().size_bytes` counts data, not the
//! preallocation. The active segment of every log holds one open file and one mapping (1 GiB of
//! address space with the default config, not memory); sealed segments hold neither, and are
//! opened on demand, at most [`open_sealed_segments_limit`] of them kept open process-wide.
//!
//! On a full disk a log still opens (an index rebuilt at open that cannot be written is used
//! from memory), serves reads and refuses appends; [`Log::trim_before`] deletes whole segments
//! before it writes anything, so it can free a full disk.
//!
//! # Durability
//! An acknowledged append is in the OS page cache (survives `kill -9`); with `Always` it is on
//! disk, and readers see only what is on disk ([`Log::visible_end`]). `Interval(d)` syncs when `d` has passed at the next append or `sync_if_dirty()`; `Never`
//! leaves it to the OS and to sealing (every sealed segment is fsynced with its index). A failed
//! fsync poisons the log: appends fail with [`StorageError::Poisoned`] until it is reopened
//! (recovery then decides from the disk what survived); reads keep working. A failed write (EIO,
//! ENOSPC, a short write) or a failed segment creation fails only that append: nothing past the
//! committed end was published, the bytes it may have left are zeroed before the next write, so
//! appends work again once the disk does (e.g. once space returns).
//!
//! Dropping a `Log` without `close()` is, for the files, the same as a crash: the next open scans
//! the tail of the last segment.

pub(crate) mod checked_file;
pub mod epoch_cache;
mod epoch_checkpoint;
mod fs;
mod handles;
mod index;
mod log;
mod mmap;
pub(crate) mod producer_state;
mod recovery;
mod segment;
mod timeindex;
mod upgrade;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::epoch_cache::{EpochCache, UNDEFINED_EPOCH};
pub use self::fs::{FaultyFs, FileSystem, FsFile, RealFs};
pub use self::handles::{
    DEFAULT_OPEN_SEALED_SEGMENTS, FileLimits, open_sealed_segments, open_sealed_segments_limit,
    raise_open_file_limit, set_open_sealed_segments_limit,
};
pub use self::log::{CompactionStats, DEFAULT_PRODUCER_ID_EXPIRATION_MS, Log, ReadSlice, Throttle};

use crate::batch::BatchError;
use crate::record;

/// When appended data is fdatasynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every append returns (concurrent appends share one fdatasync).
    Always,
    /// When this much time has passed since the last sync, at the next append or tick.
    Interval(Duration),
    /// Only when a segment is sealed or the log closed.
    Never,
}

/// What happens to old data (Kafka's `cleanup.policy`): deleted by retention, compacted to the
/// latest record per key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention (`retention_ms`, `retention_bytes`) deletes whole old segments.
    pub delete: bool,
    /// The cleaner keeps only the latest record of each key in sealed segments.
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy { delete: true, compact: false }
    }
}

/// Which timestamp a batch carries (Kafka's `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamps, as produced.
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// How the cleaner compacts a log (Kafka's names in the field docs; defaults are Kafka's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long a tombstone (null value) survives compaction.
    pub delete_retention_ms: u64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: a record older than this makes its log eligible whatever the
    /// dirty ratio.
    pub max_compaction_lag_ms: u64,
    /// `min.cleanable.dirty.ratio`: compact when at least this share of the log is uncompacted.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Configuration of one log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take it past this size (a single larger batch
    /// still fits, in a segment of its own). At least 64 bytes, below 4 GiB.
    pub segment_bytes: u64,
    /// One index entry every this many bytes of log.
    pub index_interval_bytes: u32,
    /// Largest batch, header included (Kafka's `max.message.bytes`).
    pub max_record_bytes: u32,
    pub fsync: FsyncPolicy,
    /// Delete the oldest sealed segments while the log is bigger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Roll the active segment once its first batch is this old (Kafka's `segment.ms`).
    pub segment_ms: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    pub timestamp_type: TimestampType,
    pub compaction: CompactionConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            max_record_bytes: record::DEFAULT_MAX_RECORD_BYTES,
            fsync: FsyncPolicy::Always,
            retention_bytes: None,
            retention_ms: None,
            segment_ms: None,
            cleanup_policy: CleanupPolicy::default(),
            timestamp_type: TimestampType::default(),
            compaction: CompactionConfig::default(),
        }
    }
}

/// Largest `segment_bytes`: index positions are `u32`, and a batch may exceed the segment size,
/// so keep well below 4 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;
/// Smallest batch: a header and one empty record.
const MIN_BATCH_BYTES: usize = crate::batch::HEADER_LEN + crate::batch::MIN_RECORD_LEN;
/// Smallest `segment_bytes` (tests use tiny segments; below this every record would roll).
pub const MIN_SEGMENT_BYTES: u64 = 64;

impl LogConfig {
    fn validate(&self) -> Result<(), StorageError> {
        let bad = |reason: String| Err(StorageError::InvalidConfig { reason });
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be at least 1".into());
        }
        if (self.max_record_bytes as usize) < MIN_BATCH_BYTES
            || u64::from(self.max_record_bytes) > MAX_SEGMENT_BYTES
        {
            return bad(format!(
                "max_record_bytes {} outside {}..={MAX_SEGMENT_BYTES}",
                self.max_record_bytes, MIN_BATCH_BYTES
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync interval must be positive (use Always)".into());
        }
        if self.segment_ms == Some(0) {
            return bad("segment_ms must be at least 1".into());
        }
        let ratio = self.compaction.min_cleanable_dirty_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return bad(format!("min_cleanable_dirty_ratio {ratio} outside 0..=1"));
        }
        Ok(())
    }
}

/// A range of offsets `first..next` (`next` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetRange {
    pub first: u64,
    pub next: u64,
}

impl OffsetRange {
    /// Number of offsets in the range.
    pub fn len(&self) -> u64 {
        self.next - self.first
    }
    pub fn is_empty(&self) -> bool {
        self.next == self.first
    }
}

/// What a log looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDescription {
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub segments: usize,
    /// Bytes of data on disk (headers and records; the preallocated space of the active segment
    /// is not counted).
    pub size_bytes: u64,
}

/// Errors of the storage layer; every variant names the file or offset involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("offset {offset} is out of range: the log holds {log_start_offset}..{next_offset}")]
    OffsetOutOfRange { offset: u64, log_start_offset: u64, next_offset: u64 },
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("batch of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { size: u64, max: u64 },
    #[error("invalid record batch (batch {batch} of the request): {source}")]
    InvalidBatch {
        batch: usize,
        #[source]
        source: BatchError,
    },
    #[error("batch {batch} of the request is refused: {reason}")]
    UnsupportedBatch { batch: usize, reason: &'static str },
    /// An idempotent producer's batch out of sequence or from a fenced epoch; nothing written.
    #[error("{0}")]
    Producer(#[from] producer_state::ProducerStateError),
    #[error(
        "log {} refuses writes: an earlier write or fsync failed; reopen it to recover",
        path.display()
    )]
    Poisoned { path: PathBuf },
    #[error("log {} is closed", path.display())]
    Closed { path: PathBuf },
    #[error("invalid log config: {reason}")]
    InvalidConfig { reason: String },
    #[error("batch of {size} bytes is larger than a segment can hold ({max} bytes)")]
    BatchTooLarge { size: u64, max: u64 },
    /// A replica's batches do not continue the log: their first base offset is not the log's
    /// next offset, or they do not chain; nothing written.
    #[error("replica batch {batch} starts at offset {found}, expected {expected}")]
    ReplicaOutOfSequence { batch: usize, expected: u64, found: i64 },
    /// A leader epoch older than one the log already has (epochs never go back); nothing changed.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    EpochRegression { epoch: i32, latest: i32 },
    /// Records were removed by a truncation before they became durable: never acknowledged.
    #[error("log {} was truncated to offset {offset} before offset {target} became durable", path.display())]
    Truncated { path: PathBuf, offset: u64, target: u64 },
}

impl StorageError {
    /// A closure turning an `io::Error` into `Io` with context, for `map_err`.
    pub(crate) fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, op, source }
    }
}
