//! The `Log`: the list of segments of one partition and everything done across them — the append
//! path (one write per batch, roll, fsync policy with group commit, poisoning), the read path
//! (find the segment, hand back a slice of its mapping), trim, retention, describe and close.
//! Never parses or repairs files itself (`segment.rs`, `recovery.rs` do). Leader epochs and a
//! follower's append are in `replica.rs`, truncation in `truncate.rs`.
//!
//! Visibility: readers see records up to the *visible end*. Under `FsyncPolicy::Always` that is
//! the durable end (advanced only after an fdatasync covering the records succeeded), so no
//! reader sees a record its producer has not been acknowledged for, nor one a failed fdatasync
//! may have lost; under `Interval` and `Never` it is the written end.
//!
//! Locks, always taken in this order: `admin` (trim/retention/truncation) → `appender` →
//! `epochs` (the leader-epoch cache), `segments` (held only to look up or swap the list) and
//! `sync` (group commit state). Readers take only a brief
//! read lock on `segments`, then work on an `Arc<Segment>` bounded by its committed length.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

pub use self::compaction::{CompactionStats, Throttle};
use crate::batch::{self, BatchError, BatchSummary, Compression};
use crate::record::{self, NewRecord, Record};
use crate::storage::epoch_cache::EpochCache;
use crate::storage::epoch_checkpoint;
use crate::storage::fs::{FileSystem, RealFs, write_atomic};
use crate::storage::producer_state::{self, ProducerBatch, ProducerStates, SeqCheck};
use crate::storage::recovery::{self, CLEAN_MARKER};
use crate::storage::segment::{self, IndexCursor, OpenSegment, SEGMENT_HEADER_LEN, Segment};
use crate::storage::{
    FsyncPolicy, LogConfig, LogDescription, MAX_SEGMENT_BYTES, OffsetRange, StorageError,
    TimestampType,
};

/// Producer state snapshots kept (one per roll and one at close; the newest ones suffice).
const SNAPSHOTS_KEPT: usize = 2;
/// Default time after which an idle producer id is forgotten (Kafka's
/// `producer.id.expiration.ms`: one day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;

/// The appender's private state, under the append lock.
struct Appender {
    /// Where the active segment's next index entry is due.
    index_cursor: IndexCursor,
    /// Idempotent producers' state (sequence ranges and offsets of their last batches): checked
    /// and updated under the append lock, so a retry is never written twice.
    producers: ProducerStates,
    /// End of the bytes a failed write may have left past the committed end of the active
    /// segment (0: none). They are zeroed before the next write, so a later, shorter batch can
    /// never be followed on disk by stale records that recovery would take for real ones.
    torn_end: usize,
    /// The active segment's (base offset, first batch's max timestamp), for `segment_ms`; read
    /// from the segment when the base differs (after open or a roll).
    first_batch_ts: Option<(u64, i64)>,
    /// When the active segment was created or the log opened (wall clock, ms): the age
    /// `segment_ms` counts from when the first batch has no timestamp.
    active_since_ms: i64,
}

/// Group-commit state: how far the log is known durable, and whether someone is syncing now.
struct SyncState {
    /// Every offset below this is on disk.
    synced: u64,
    syncing: bool,
    last_sync: Instant,
}

/// One batch about to be written: what the indexes and the next offset need from it.
struct Placed {
    batch_bytes: usize,
    /// Offsets it spans: `lastOffsetDelta + 1` (a compacted batch may hold fewer records).
    offsets: u64,
    max_timestamp: i64,
}

impl Placed {
    /// A producer's batch: its records are numbered densely (checked by `validate_batches`).
    fn of_summary(s: &BatchSummary) -> Placed {
        Placed {
            batch_bytes: s.batch_bytes,
            offsets: s.record_count as u64,
            max_timestamp: s.max_timestamp,
        }
    }
}

/// The durable log of one partition. `Send + Sync`; share it as `Arc<Log>`.
pub struct Log {
    dir: PathBuf,
    /// Swapped whole by [`Log::set_config`]; readers clone the `Arc` (one uncontended read lock).
    config: RwLock<Arc<LogConfig>>,
    /// `config.fsync` and `config.index_interval_bytes`, which never change while the log is
    /// open: read without the lock on every read and append.
    fsync: FsyncPolicy,
    index_interval_bytes: u32,
    fs: Arc<dyn FileSystem>,
    /// Oldest first; the last one is the active segment. Never empty.
    segments: RwLock<Vec<Arc<Segment>>>,
    appender: Mutex<Appender>,
    admin: Mutex<()>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
    log_start: AtomicU64,
    /// The `partitionLeaderEpoch` leader appends stamp (`replica.rs`); never goes back.
    leader_epoch: AtomicI32,
    /// Each leader epoch that wrote records and where it started, as in `leader-epoch-checkpoint`
    /// (persisted before the records of a new epoch are written). Locked after `appender`.
    epochs: Mutex<EpochCache>,
    /// Published (Release) after the active segment's committed length and next offset.
    next_offset: AtomicU64,
    /// `SyncState::synced`, published (Release) for readers after each successful fdatasync.
    durable_end: AtomicU64,
    poisoned: AtomicBool,
    closed: AtomicBool,
    /// Truncations so far (changed under the append lock): an append made before one is never
    /// acknowledged after it.
    truncations: AtomicU64,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("next_offset", &self.next_offset())
            .finish_non_exhaustive()
    }
}

/// Records read from one segment: a slice of its memory map, kept alive (with the open file) by
/// an `Arc`, so it can be sent to a socket after the log has moved on (or deleted the segment).
#[derive(Clone)]
pub struct ReadSlice {
    segment: Arc<OpenSegment>,
    start: usize,
    end: usize,
    first_offset: u64,
    next_offset: u64,
}

impl fmt::Debug for ReadSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlice")
            .field("first_offset", &self.first_offset)
            .field("next_offset", &self.next_offset)
            .field("len", &self.len())
            .finish()
    }
}

/// The stored bytes, so a slice can back a `bytes::Bytes` (`Bytes::from_owner`) without a copy.
impl AsRef<[u8]> for ReadSlice {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl ReadSlice {
    /// The stored batches, exactly as on disk: whole RecordBatch v2s, the first one holding
    /// [`ReadSlice::first_offset`] (it may start before it).
    pub fn bytes(&self) -> &[u8] {
        &self.segment.data()[self.start..self.end]
    }
    /// The segment file holding these bytes and their position in it, for sending them with
    /// `sendfile` instead of through the mapping. The bytes there are the ones `bytes` returns:
    /// below the committed length a segment file is never written again.
    pub fn file_range(&self) -> (&std::fs::File, u64) {
        (self.segment.file().as_file(), self.start as u64)
    }
    /// The records from [`ReadSlice::first_offset`] on, decoded (each batch's CRC-32C checked,
    /// compressed batches decompressed); damage ends them with an error after the good ones.
    pub fn records(&self) -> std::vec::IntoIter<Result<Record, BatchError>> {
        let mut out = Vec::new();
        let res = record::decode_records(
            self.bytes(),
            self.first_offset,
            true,
            &mut out,
            &mut Vec::new(),
        );
        let mut items: Vec<_> = out.into_iter().map(Ok).collect();
        if let Err(e) = res {
            items.push(Err(e));
        }
        items.into_iter()
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    /// The offset asked for (the first batch may hold records before it).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }
    /// Offset after the last batch in the slice: where the next read continues.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }
}

impl Log {
    /// Opens the log in `dir` (creating it if missing) and recovers it.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log, StorageError> {
        Self::open_with_fs(dir, config, Arc::new(RealFs))
    }

    /// Opens the log doing every file operation through `fs` (tests inject faults this way).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        config: LogConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Log, StorageError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let started = Instant::now();
        // Looked at before recovery, which removes the marker.
        let clean = fs.exists(&dir.join(CLEAN_MARKER));
        let rec = recovery::recover(&*fs, &dir, &config)?;
        // Invariant: recovery returns at least one segment.
        let active = rec.segments[rec.segments.len() - 1].clone();
        let next = active.next_offset();
        // Unknown durability of the recovered tail: treat only sealed segments as synced so the
        // first sync covers the active one. Under Always that tail would stay invisible until the
        // next append, so make it durable now (after a clean shutdown `close` already did). If
        // that fails (e.g. a full disk cannot take the write-back), the log still opens for
        // reads of what is durable, poisoned as after any failed fdatasync.
        let mut synced = active.base_offset;
        let mut poisoned = false;
        if config.fsync == FsyncPolicy::Always && next > synced {
            match if clean { Ok(()) } else { active.sync_data() } {
                Ok(()) => synced = next,
                Err(e) => {
                    tracing::error!(path = %active.log_path.display(), error = %e,
                        "fdatasync of the recovered tail failed: its records stay hidden and the \
                         log refuses writes until reopened");
                    poisoned = true;
                }
            }
        }
        let producers = load_producer_state(&*fs, &dir, &rec.segments, rec.log_start_offset, next)?;
        let epochs = epoch_checkpoint::load(&*fs, &dir, &rec.segments, next)?;
        let pending_cut = truncate::pending(&*fs, &dir)?;
        tracing::debug!(dir = %dir.display(), segments = rec.segments.len(),
            log_start = rec.log_start_offset, next_offset = next, producers = producers.len(),
            elapsed_us = started.elapsed().as_micros() as u64, "log opened");
        let log = Log {
            dir,
            fs,
            segments: RwLock::new(rec.segments),
            appender: Mutex::new(Appender {
                producers,
                index_cursor: rec.index_cursor,
                torn_end: 0,
                first_batch_ts: None,
                active_since_ms: record::now_ms(),
            }),
            admin: Mutex::new(()),
            sync: Mutex::new(SyncState { synced, syncing: false, last_sync: Instant::now() }),
            synced_cv: Condvar::new(),
            log_start: AtomicU64::new(rec.log_start_offset),
            leader_epoch: AtomicI32::new(epochs.latest().unwrap_or(0).max(0)),
            epochs: Mutex::new(epochs),
            next_offset: AtomicU64::new(next),
            durable_end: AtomicU64::new(synced),
            poisoned: AtomicBool::new(poisoned),
            closed: AtomicBool::new(false),
            truncations: AtomicU64::new(0),
            fsync: config.fsync,
            index_interval_bytes: config.index_interval_bytes,
            config: RwLock::new(Arc::new(config)),
        };
        if let Some(cut) = pending_cut {
            // A truncation a crash interrupted: finish it before anyone reads past its point.
            log.finish_pending_truncation(cut)?;
        }
        Ok(log)
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config in force now (a cheap shared copy: [`Log::set_config`] may replace it).
    pub fn config(&self) -> Arc<LogConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the config of the live log (a topic config altered): retention, segment size
    /// and age, largest batch, timestamp type and compaction settings apply from the next
    /// append or retention pass. The fsync policy and index interval are the broker's and
    /// cannot change while the log is open.
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        let mut current = self.config.write().unwrap_or_else(|p| p.into_inner());
        if config.fsync != current.fsync
            || config.index_interval_bytes != current.index_interval_bytes
        {
            return Err(StorageError::InvalidConfig {
                reason: "the fsync policy and index interval of an open log cannot change".into(),
            });
        }
        *current = Arc::new(config);
        Ok(())
    }

    /// The first offset that can be read.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// The offset the next appended record gets (the written end). Under `FsyncPolicy::Always`
    /// it may run ahead of what readers see: see [`Log::visible_end`].
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// The end of what readers see (the high watermark): `read` returns no record at or past it.
    /// Under `FsyncPolicy::Always` the durable end (every offset below it fdatasynced), otherwise
    /// the written end.
    pub fn visible_end(&self) -> u64 {
        match self.fsync {
            // A syncer may take the active segment's end a moment before the appender stores
            // it in `next_offset`: never report past the written end.
            FsyncPolicy::Always => self.durable_end.load(Ordering::Acquire).min(self.next_offset()),
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => self.next_offset(),
        }
    }

    /// Log start, visible end, segment count and bytes on disk.
    pub fn describe(&self) -> LogDescription {
        let segs = self.segments_snapshot();
        LogDescription {
            log_start_offset: self.log_start_offset(),
            next_offset: self.visible_end(),
            segments: segs.len(),
            size_bytes: segs.iter().map(|s| s.len() as u64).sum(),
        }
    }

    /// Bytes stored from the batch holding `offset` (the log start, when below it) to the
    /// written end: what a replica whose log ends at `offset` still has to copy. From the log
    /// start it is the size of every record the log holds.
    pub fn bytes_from(&self, offset: u64) -> Result<u64, StorageError> {
        let offset = offset.max(self.log_start_offset());
        let mut bytes = 0u64;
        for seg in self.segments_snapshot() {
            // The end offset first: the length published with it (or later) covers its batch.
            let next = seg.next_offset();
            let len = seg.len();
            if seg.base_offset > offset {
                bytes += len.saturating_sub(SEGMENT_HEADER_LEN) as u64;
            } else if offset < next {
                let (position, _, _) = seg.locate(&*seg.open(&*self.fs)?, offset, 0)?;
                bytes += len.saturating_sub(position) as u64;
            }
        }
        Ok(bytes)
    }

    /// Appends `records` as one uncompressed batch stamped with their own timestamps; returns
    /// their offsets. Durable per the fsync policy when it returns.
    pub fn append(&self, records: &[NewRecord<'_>]) -> Result<OffsetRange, StorageError> {
        if records.is_empty() {
            let next = self.next_offset();
            return Ok(OffsetRange { first: next, next });
        }
        let mut bytes = record::build_batch(records, Compression::None)
            .map_err(|source| StorageError::InvalidBatch { batch: 0, source })?;
        self.append_batches(&mut bytes)
    }

    /// Appends one or more RecordBatch v2s as a producer sent them (back to back in `bytes`),
    /// with one write. Each batch is validated first ([`batch::validate_with`]: CRC-32C, sizes,
    /// records, offset deltas, timestamps; a compressed one is decompressed to check it, within
    /// the 256 MiB cap, and stored compressed) and must be a producer's: offset deltas
    /// `0..count`, not a control batch, not transactional. A bad batch writes nothing. Then each
    /// gets its `baseOffset` and `partitionLeaderEpoch` in place (outside the CRC) and the bytes
    /// are written as they are. Durable per the fsync policy when it returns.
    pub fn append_batches(&self, bytes: &mut [u8]) -> Result<OffsetRange, StorageError> {
        self.append_batches_timed(bytes).map(|(range, _)| range)
    }

    /// [`Log::append_batches`], also returning the broker's append time when the log stamps
    /// batches with it ([`TimestampType::LogAppendTime`]: each batch's timestamp type bit and
    /// `maxTimestamp` set, CRC recomputed, as Kafka does); `None` under `CreateTime` and for an
    /// idempotent producer's retry (nothing written).
    pub fn append_batches_timed(
        &self,
        bytes: &mut [u8],
    ) -> Result<(OffsetRange, Option<i64>), StorageError> {
        let mut summaries = self.validate_batches(bytes)?;
        let idempotent = match summaries.as_slice() {
            [s] => ProducerBatch::from_summary(s),
            many if many.iter().any(|s| s.producer_id >= 0) => {
                return Err(StorageError::UnsupportedBatch {
                    batch: 0,
                    reason: "an idempotent producer's batch must come alone (one per request)",
                });
            }
            _ => None,
        };
        let mut app = self.lock_appender()?;
        let generation = self.truncations.load(Ordering::Acquire);
        if let Some(pb) = &idempotent
            && let SeqCheck::Duplicate { first_offset, last_offset } =
                app.producers.check_batch(pb)?
        {
            // A retry of a batch already written: its original offsets, nothing written. Under
            // Always it is acknowledged only once durable (the original may still be syncing).
            drop(app);
            let range = OffsetRange { first: first_offset, next: last_offset + 1 };
            self.after_append(range, generation)?;
            return Ok((range, None));
        }
        // Taken under the append lock, so append times never go backwards within the log (short
        // of the wall clock stepping back).
        let append_time = match self.config().timestamp_type {
            TimestampType::LogAppendTime => Some(record::now_ms()),
            TimestampType::CreateTime => None,
        };
        let first = self.next_offset.load(Ordering::Relaxed);
        let epoch = self.leader_epoch.load(Ordering::Acquire);
        // The checkpoint names a new epoch before its first records are on disk.
        self.note_epochs(&[(epoch, first)])?;
        let mut pos = 0;
        let mut next = first;
        for s in &mut summaries {
            let b = &mut bytes[pos..pos + s.batch_bytes];
            // Invariant: validated above, so the header is there.
            batch::set_base_offset(b, next as i64).expect("validated batch header");
            batch::set_partition_leader_epoch(b, epoch).expect("validated batch header");
            if let Some(now) = append_time {
                batch::set_log_append_time(b, now).expect("validated batch header");
                // The time and segment indexes see the stamped time.
                s.max_timestamp = now;
            }
            next += s.record_count as u64;
            pos += s.batch_bytes;
        }
        let plans: Vec<Placed> = summaries.iter().map(Placed::of_summary).collect();
        let res = self.write_batches(&mut app, bytes, first, &plans);
        if let (Ok(range), Some(pb)) = (&res, &idempotent) {
            // Before the lock is released: a retry arriving now must find it.
            let now = record::now_ms();
            let (f, l, e, id) = (pb.first_seq, pb.last_seq, pb.epoch, pb.producer_id);
            app.producers.record(id, e, f, l, range.first, range.next - 1, now);
        }
        drop(app);
        let range = res?;
        self.after_append(range, generation)?;
        Ok((range, append_time))
    }

    /// Forgets producer ids idle for longer than `max_idle_ms`; returns how many.
    pub fn expire_producers(&self, max_idle_ms: u64) -> usize {
        let mut app = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        app.producers.expire(record::now_ms(), max_idle_ms)
    }

    /// Writes the producer state as of `offset` (the log's end) beside the segments, keeping the
    /// newest few. A failure is logged, not fatal: recovery rebuilds the state from the log.
    fn snapshot_producers(&self, app: &Appender, offset: u64) {
        let fs = &*self.fs;
        let written = app
            .producers
            .write_snapshot(fs, &self.dir, offset)
            .and_then(|_| producer_state::keep_newest_snapshots(fs, &self.dir, SNAPSHOTS_KEPT));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), offset, error = %e,
                "cannot write the producer state snapshot; recovery will rebuild it from the log");
        }
    }

    /// Checks every batch of a producer's record set; the summaries in order.
    fn validate_batches(&self, bytes: &[u8]) -> Result<Vec<BatchSummary>, StorageError> {
        let limits = batch::Limits::default();
        let config = self.config();
        let max = config.max_record_bytes;
        let mut summaries = Vec::new();
        let mut scratch = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let i = summaries.len();
            let invalid = |source| StorageError::InvalidBatch { batch: i, source };
            let view = batch::BatchView::new(&bytes[pos..]).map_err(invalid)?;
            if view.len() > max as usize {
                return Err(StorageError::RecordTooLarge {
                    size: view.len() as u64,
                    max: u64::from(max),
                });
            }
            let s =
                batch::validate_with(view.as_bytes(), &limits, &mut scratch).map_err(invalid)?;
            let refuse = |reason| Err(StorageError::UnsupportedBatch { batch: i, reason });
            if s.control {
                return refuse("a control batch (only a transaction coordinator writes them)");
            }
            if s.transactional {
                return refuse("a transactional batch (transactions are not supported)");
            }
            if s.record_count == 0 {
                return refuse("an empty batch");
            }
            if !s.contiguous_offsets || s.last_offset_delta as usize + 1 != s.record_count {
                return refuse("offset deltas other than 0, 1, 2, ... (as producers write them)");
            }
            if config.cleanup_policy.compact && s.keyless_records > 0 {
                // Kafka's rule: compaction keeps the latest record of each key, so a record
                // without one could never be superseded nor deleted.
                return refuse(
                    "a record without a key: a compacted topic (cleanup.policy=compact) keeps the \
                     latest record of each key, so every record needs one",
                );
            }
            summaries.push(s);
            pos += view.len();
        }
        if summaries.is_empty() {
            return Err(StorageError::UnsupportedBatch { batch: 0, reason: "no batch" });
        }
        Ok(summaries)
    }

    fn lock_appender(&self) -> Result<MutexGuard<'_, Appender>, StorageError> {
        // The appender's state stays consistent across a panic (a failed append publishes
        // nothing), so a poisoned mutex is still usable.
        let guard = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        self.check_open()?;
        self.check_poisoned()?;
        Ok(guard)
    }

    /// Files change only while the log is open: after `close()` the marker promises the next
    /// open that nothing moved.
    fn check_open(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed { path: self.dir.clone() });
        }
        Ok(())
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::Poisoned { path: self.dir.clone() });
        }
        Ok(())
    }

    fn poison<T>(&self, e: StorageError) -> Result<T, StorageError> {
        tracing::error!(dir = %self.dir.display(), error = %e, "log poisoned: refusing writes until reopened");
        self.poisoned.store(true, Ordering::Release);
        Err(e)
    }

    fn active(&self) -> Arc<Segment> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        // Invariant: the list is never empty (recovery creates a segment; retention keeps the
        // active one).
        segs[segs.len() - 1].clone()
    }

    /// Whether `seg` is still one of the log's segments.
    fn holds(&self, seg: &Arc<Segment>) -> bool {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).iter().any(|s| Arc::ptr_eq(s, seg))
    }

    fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes validated batches, numbered from `first`, at the end of the log with one write
    /// (rolling first if they do not fit) and publishes them. Holds the append lock.
    fn write_batches(
        &self,
        app: &mut Appender,
        bytes: &[u8],
        first: u64,
        summaries: &[Placed],
    ) -> Result<OffsetRange, StorageError> {
        let total = bytes.len();
        let max_batch = MAX_SEGMENT_BYTES as usize - SEGMENT_HEADER_LEN;
        if total > max_batch {
            return Err(StorageError::BatchTooLarge { size: total as u64, max: max_batch as u64 });
        }
        let config = self.config();
        let mut active = self.active();
        let incoming_ts = summaries.iter().map(|s| s.max_timestamp).max().unwrap_or(-1);
        // A sealed active segment is left by a roll that sealed it but failed to create the next.
        // `room()` too: a segment_bytes raised by `set_config` is past the active mapping.
        if active.is_sealed()
            || (!active.is_empty()
                && (active.len() + total > config.segment_bytes as usize
                    || total > active.room()
                    || self.active_too_old(app, &active, config.segment_ms, incoming_ts)))
        {
            active = self.roll(app, total)?;
        } else if total > active.room() {
            active = self.regrow_empty_active(app, total)?;
        }
        let position = active.len();
        // A failed write publishes nothing and the next one starts at the same committed end, so
        // it does not poison the log (disk full must heal once space returns): only a failed
        // fsync does, because then the page cache may have dropped data it claimed to hold.
        if app.torn_end > position {
            let zeros = vec![0u8; app.torn_end - position];
            active.write_at_end(&zeros)?;
            app.torn_end = 0;
        }
        if let Err(e) = active.write_at_end(bytes) {
            app.torn_end = app.torn_end.max(position + total);
            tracing::warn!(dir = %self.dir.display(), error = %e, "append failed; nothing published");
            return Err(e);
        }
        // Index entries at batch starts, and the newest timestamp.
        let mut max_ts = i64::MIN;
        let mut next = first;
        active.with_index(|index, times| {
            let mut pos = position;
            for s in summaries {
                max_ts = max_ts.max(s.max_timestamp);
                // Relative offsets fit u32: a segment below 4 GiB holds fewer than 2^32 batches
                // of... records; offsets are numbered densely from the segment's base.
                let rel = (next - active.base_offset) as u32;
                app.index_cursor.observe(index, times, rel, pos, s.max_timestamp);
                next += s.offsets;
                pos += s.batch_bytes;
            }
        });
        if position == SEGMENT_HEADER_LEN {
            // The first batch of this segment: what `segment_ms` measures its age from.
            let first_ts = summaries.first().map_or(-1, |s| s.max_timestamp);
            app.first_batch_ts = Some((active.base_offset, first_ts));
        }
        active.publish(position + total, next, max_ts);
        self.next_offset.store(next, Ordering::Release);
        Ok(OffsetRange { first, next })
    }

    /// Whether the active segment is older than `segment_ms` (Kafka's rule): the incoming
    /// batches' newest timestamp against the segment's first batch's, or, when either has no
    /// timestamp, the wall clock against when the segment was created (or the log opened).
    fn active_too_old(
        &self,
        app: &mut Appender,
        active: &Segment,
        segment_ms: Option<u64>,
        incoming_ts: i64,
    ) -> bool {
        let Some(max_age) = segment_ms else { return false };
        let first_ts = match app.first_batch_ts {
            Some((base, ts)) if base == active.base_offset => ts,
            _ => {
                let ts = self.read_first_batch_ts(active);
                app.first_batch_ts = Some((active.base_offset, ts));
                ts
            }
        };
        let age = if first_ts >= 0 && incoming_ts >= 0 {
            incoming_ts.saturating_sub(first_ts)
        } else {
            record::now_ms().saturating_sub(app.active_since_ms)
        };
        age > 0 && age as u64 > max_age
    }

    /// The max timestamp of the active segment's first batch (-1 when it cannot be read: the
    /// age then counts from the wall clock).
    fn read_first_batch_ts(&self, active: &Segment) -> i64 {
        let Ok(open) = active.open(&*self.fs) else { return -1 };
        let data = open.data();
        data.get(SEGMENT_HEADER_LEN..)
            .and_then(|rest| segment::batch_at(rest, active.base_offset).ok())
            .map_or(-1, |view| view.max_timestamp())
    }

    /// Seals the active segment and starts a new one at the next offset with room for at least
    /// `batch_bytes`. Holds the append lock.
    fn roll(&self, app: &mut Appender, batch_bytes: usize) -> Result<Arc<Segment>, StorageError> {
        let old = self.active();
        if !old.is_sealed()
            && let Err(e) = old.seal(&*self.fs, &self.dir)
        {
            // Sealing cut the file and fdatasynced it before writing the index: only a failed
            // fdatasync leaves data of unknown durability; a failed cut or index write can be
            // retried by the next roll.
            return if is_data_sync_failure(&e) { self.poison(e) } else { Err(e) };
        }
        // Sealing cut the file to its committed length: any torn bytes went with it.
        app.torn_end = 0;
        let base = old.next_offset();
        self.mark_synced(&mut self.sync.lock().unwrap_or_else(|p| p.into_inner()), base);
        let capacity = (self.config().segment_bytes as usize).max(SEGMENT_HEADER_LEN + batch_bytes);
        let seg = match Segment::create(
            &*self.fs,
            &self.dir,
            base,
            capacity,
            self.index_interval_bytes,
        ) {
            Ok(s) => Arc::new(s),
            // Nothing was published into the new file: the next append retries the roll (and
            // `create` truncates whatever this attempt left).
            Err(e) => return Err(e),
        };
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled to a new segment");
        // Recovery then replays only the batches after it (the active segment).
        self.snapshot_producers(app, base);
        self.segments.write().unwrap_or_else(|p| p.into_inner()).push(seg.clone());
        app.index_cursor = IndexCursor::new(self.index_interval_bytes, SEGMENT_HEADER_LEN);
        app.active_since_ms = record::now_ms();
        Ok(seg)
    }

    /// The active segment is empty but too small for one batch: give it a bigger mapping. A new
    /// handle and mapping of the same file replace it; readers holding the old one only ever see
    /// its (empty) committed part.
    fn regrow_empty_active(
        &self,
        app: &mut Appender,
        batch_bytes: usize,
    ) -> Result<Arc<Segment>, StorageError> {
        let old = self.active();
        let capacity = SEGMENT_HEADER_LEN + batch_bytes;
        let file = match self.fs.open(&old.log_path) {
            Ok(f) => f,
            Err(e) => return self.poison(StorageError::io(&old.log_path, "reopen segment")(e)),
        };
        if let Err(e) = file.set_len(capacity as u64) {
            return self.poison(StorageError::io(&old.log_path, "grow segment")(e));
        }
        let seg = Segment::from_parts(crate::storage::segment::SegmentParts {
            base_offset: old.base_offset,
            log_path: old.log_path.clone(),
            index_path: old.index_path.clone(),
            file,
            data_len: SEGMENT_HEADER_LEN,
            capacity,
            next_offset: old.base_offset,
            max_timestamp: i64::MIN,
            index: crate::storage::index::Index::new(),
            time_index: crate::storage::timeindex::TimeIndex::new(),
            index_interval_bytes: self.index_interval_bytes,
            sealed: false,
        })?;
        let seg = Arc::new(seg);
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let last = segs.len() - 1;
        segs[last] = seg.clone();
        app.index_cursor = IndexCursor::new(self.index_interval_bytes, SEGMENT_HEADER_LEN);
        Ok(seg)
    }

    /// Applies the fsync policy after an append (without the append lock, so appenders can
    /// share one fdatasync). `generation` is [`Log::truncations`] when the append was made: a
    /// truncation since then may have removed its records (and later ones taken their offsets),
    /// so it is never reported durable.
    fn after_append(&self, range: OffsetRange, generation: u64) -> Result<(), StorageError> {
        self.apply_fsync_policy(range)?;
        if self.truncations.load(Ordering::Acquire) != generation {
            let offset = self.next_offset();
            return Err(StorageError::Truncated {
                path: self.dir.clone(),
                offset,
                target: range.next,
            });
        }
        Ok(())
    }

    fn apply_fsync_policy(&self, range: OffsetRange) -> Result<(), StorageError> {
        match self.fsync {
            FsyncPolicy::Never => Ok(()),
            FsyncPolicy::Always => self.sync_to(range.next),
            FsyncPolicy::Interval(d) => {
                let due =
                    self.sync.lock().unwrap_or_else(|p| p.into_inner()).last_sync.elapsed() >= d;
                if due { self.sync_to(range.next) } else { Ok(()) }
            }
        }
    }

    /// Returns once every offset below `target` is on disk. One caller at a time fdatasyncs the
    /// active segment for everyone written so far; the others wait for it (group commit).
    fn sync_to(&self, target: u64) -> Result<(), StorageError> {
        loop {
            let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if st.synced >= target {
                    return Ok(());
                }
                self.check_poisoned()?;
                let next = self.next_offset();
                if target > next {
                    // Appended, then cut off by `truncate_to` before an fdatasync covered it.
                    return Err(StorageError::Truncated {
                        path: self.dir.clone(),
                        offset: next,
                        target,
                    });
                }
                if !st.syncing {
                    break;
                }
                st = self.synced_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.syncing = true;
            drop(st);
            // Everything below the active segment's base lies in sealed segments, fsynced when
            // they were sealed; so syncing the active one covers all up to its next offset.
            let seg = self.active();
            let upto = seg.next_offset();
            let res = seg.sync_data();
            let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            st.syncing = false;
            if res.is_ok() {
                self.mark_synced(&mut st, upto);
                st.last_sync = Instant::now();
            }
            drop(st);
            if let Err(e) = res {
                let err = self.poison::<()>(StorageError::io(&seg.log_path, "fdatasync")(e));
                self.synced_cv.notify_all();
                return err;
            }
            self.synced_cv.notify_all();
        }
    }

    /// Records that every offset below `upto` is on disk, for the syncers and for readers.
    fn mark_synced(&self, st: &mut SyncState, upto: u64) {
        st.synced = st.synced.max(upto);
        self.durable_end.fetch_max(st.synced, Ordering::AcqRel);
    }

    /// fdatasyncs everything appended so far.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.sync_to(self.next_offset())
    }

    /// Syncs if anything was appended since the last sync (the broker's interval ticker calls
    /// this).
    pub fn sync_if_dirty(&self) -> Result<(), StorageError> {
        let dirty = self.sync.lock().unwrap_or_else(|p| p.into_inner()).synced < self.next_offset();
        if dirty { self.sync() } else { Ok(()) }
    }

    /// Reads whole batches from the one holding `offset`, below the visible end: at least one
    /// batch (even past `max_bytes`), all from one segment. An offset at or past the
    /// visible end (up to `next_offset()`) gives an empty slice: a record written but not yet
    /// durable under `Always` is waited for, not refused.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadSlice, StorageError> {
        self.read_upto(offset, max_bytes, u64::MAX)
    }

    /// [`Log::read`] stopping before `end` too (a high watermark: consumers never see past it).
    /// An offset between `end` and the visible end gives an empty slice.
    pub fn read_bounded(
        &self,
        offset: u64,
        max_bytes: usize,
        end: u64,
    ) -> Result<ReadSlice, StorageError> {
        self.read_upto(offset, max_bytes, end)
    }

    fn read_upto(
        &self,
        offset: u64,
        max_bytes: usize,
        end: u64,
    ) -> Result<ReadSlice, StorageError> {
        let visible = self.visible_end().min(end);
        // Loaded after `visible`, so never below it.
        let next = self.next_offset();
        let start = self.log_start_offset();
        if offset < start || offset > next {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                next_offset: visible,
            });
        }
        let segment = {
            let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let i = segs.partition_point(|s| s.base_offset <= offset);
            match i.checked_sub(1) {
                Some(i) => segs[i].clone(),
                // Retention removed it since the check above.
                None => {
                    return Err(StorageError::OffsetOutOfRange {
                        offset,
                        log_start_offset: self.log_start_offset(),
                        next_offset: visible,
                    });
                }
            }
        };
        let handle = match segment.open(&*self.fs) {
            Ok(h) => h,
            // Deleted (trim, retention) since it was looked up: its file is gone.
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && !self.holds(&segment) =>
            {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: self.log_start_offset(),
                    next_offset: visible,
                });
            }
            Err(e) => return Err(e),
        };
        if offset >= segment.next_offset() || offset >= visible {
            return Ok(ReadSlice {
                segment: handle,
                start: 0,
                end: 0,
                first_offset: offset,
                next_offset: offset,
            });
        }
        let (s, mut e, mut n) = segment.locate(&handle, offset, max_bytes)?;
        if n > visible {
            // The slice runs into records not yet durable: end it where the first of them starts
            // (in this segment, since `offset < visible < n`).
            (e, _, _) = segment.locate(&handle, visible, 0)?;
            n = visible;
        }
        Ok(ReadSlice { segment: handle, start: s, end: e, first_offset: offset, next_offset: n })
    }

    /// The first visible offset (at or after the log start, below the visible end) whose
    /// timestamp is at least `ts_ms`, or `None` if every visible record is older.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>, StorageError> {
        Ok(self.record_for_timestamp(ts_ms)?.map(|(_, offset)| offset))
    }

    /// [`Log::offset_for_timestamp`] with the found record's own timestamp, as Kafka's
    /// ListOffsets answers: (timestamp, offset).
    pub fn record_for_timestamp(&self, ts_ms: i64) -> Result<Option<(i64, u64)>, StorageError> {
        let start = self.log_start_offset();
        let visible = self.visible_end();
        for seg in self.segments_snapshot() {
            if seg.next_offset() <= start {
                continue;
            }
            if let Some(found) = seg.offset_for_timestamp(&*self.fs, ts_ms, start)? {
                return Ok(Some(found).filter(|&(_, o)| o < visible));
            }
        }
        Ok(None)
    }

    /// The (timestamp, offset) of the first visible record (at or after the log start, below
    /// the visible end) with the largest timestamp: what Kafka's ListOffsets answers for
    /// `MAX_TIMESTAMP` (-3, KIP-734). `None` if no record is visible. Each segment's time index
    /// names the batch holding its largest timestamp, so this reads one batch; only when that
    /// batch is below the log start or past the visible end are the segment's headers walked.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, u64)>, StorageError> {
        let start = self.log_start_offset();
        let visible = self.visible_end();
        let mut segs: Vec<_> = self
            .segments_snapshot()
            .into_iter()
            .filter(|s| !s.is_empty() && s.next_offset() > start && s.base_offset < visible)
            .collect();
        // Largest first, and the earlier segment first on a tie (Kafka answers the first
        // record holding the largest timestamp). A segment's `max_timestamp` bounds what its
        // visible records hold, so the first answer usually ends the search.
        segs.sort_by_key(|s| (std::cmp::Reverse(s.max_timestamp()), s.base_offset));
        let mut best: Option<(i64, u64)> = None;
        for seg in segs {
            if let Some((ts, offset)) = best
                && (seg.max_timestamp() < ts
                    || (seg.max_timestamp() == ts && seg.base_offset > offset))
            {
                break;
            }
            if let Some((ts, offset)) = seg.max_timestamp_record(&*self.fs, start, visible)?
                && best.is_none_or(|(bts, bo)| ts > bts || (ts == bts && offset < bo))
            {
                best = Some((ts, offset));
            }
        }
        Ok(best)
    }

    /// Syncs everything, writes the active segment's index, cuts its file to its data and leaves
    /// the clean-shutdown marker, so the next open can skip the tail scan. Later appends fail
    /// with `Closed`; reads keep working. Calling it again does nothing.
    pub fn close(&self) -> Result<(), StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let app = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // A poisoned log must not claim a clean shutdown: its tail is of unknown durability.
        self.check_poisoned()?;
        self.sync_to(self.next_offset())?;
        let active = self.active();
        if let Err(e) = active.flush_to_disk(&*self.fs, &self.dir) {
            return self.poison(e);
        }
        self.snapshot_producers(&app, self.next_offset());
        let marker = self.dir.join(CLEAN_MARKER);
        write_atomic(&*self.fs, &self.dir, &marker, b"clean\n")
            .map_err(StorageError::io(&marker, "write clean-shutdown marker"))?;
        self.closed.store(true, Ordering::Release);
        tracing::debug!(dir = %self.dir.display(), next_offset = self.next_offset(), "log closed");
        Ok(())
    }

    /// Hints the kernel that the segments will be replayed sequentially.
    pub fn advise_sequential(&self) {
        for s in self.segments_snapshot() {
            s.advise_sequential();
        }
    }
}

/// The producer state at `next`: the newest snapshot at or below it, then the batch headers after
/// it replayed (no CRC check or decompression: the fields are in the header). Without a snapshot
/// (a log from before producer state, or every snapshot damaged) the whole log's headers are read.
fn load_producer_state(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start: u64,
    next: u64,
) -> Result<ProducerStates, StorageError> {
    let (mut states, from) = producer_state::load_latest(fs, dir, next)?
        .unwrap_or_else(|| (ProducerStates::new(), log_start));
    let now = record::now_ms();
    for seg in segments.iter().filter(|s| s.next_offset() > from) {
        let h = seg.open(fs)?;
        crate::storage::segment::scan(
            h.data(),
            SEGMENT_HEADER_LEN,
            seg.base_offset,
            false,
            |v, _| {
                if v.base_offset() as u64 >= from {
                    states.replay(v, now);
                }
            },
        );
    }
    Ok(states)
}

/// Whether a failed seal failed at the fdatasync of segment data (fsyncgate: poison).
fn is_data_sync_failure(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { op, .. } if op.starts_with("fdatasync"))
}

mod compaction;
mod replica;
mod retention;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timeindex_tests;
mod truncate;
