//! Log compaction (Kafka's log cleaner) of one `Log`: in the sealed segments, keep only the
//! latest record of each key; the cleaner checkpoint; the dirty ratio; the crash-safe swap of
//! cleaned segments for old ones; the throttle. Never touches the active segment, never holds
//! the append lock, never renumbers an offset. Choosing *when* to compact (and which log) is the
//! broker's cleaner; this file only does one run when asked.
//!
//! # What a run does
//! 1. The *cleanable range*: the sealed segments from the first one up to (not including) the
//!    first segment holding a record younger than `min_compaction_lag_ms` (by the segment's
//!    largest batch `maxTimestamp`). Its *dirty* part starts at the cleaner checkpoint (the
//!    offset below which the log was compacted before; no checkpoint: the whole log is dirty).
//! 2. A map key -> latest offset over the dirty part (exact keys, so no hash collision can drop
//!    a record; memory grows with the distinct keys of the dirty part).
//! 3. Every batch of the cleanable range is rewritten keeping only the records that are the
//!    latest of their key as far as the map knows (records without a key are kept). A tombstone
//!    (null value) that is the latest of its key is kept until `delete_retention_ms` has passed
//!    since its batch's `maxTimestamp` (simpler than Kafka's "since the segment was first
//!    cleaned", and it never removes a tombstone younger than `delete.retention.ms`).
//! 4. The cleaned batches go into new segments of up to `segment_bytes` (adjacent small cleaned
//!    segments are merged, as Kafka does), swapped in for the old ones, and the checkpoint moves
//!    to the end of the cleanable range.
//!
//! # Offsets never change
//! A rewritten batch keeps its `baseOffset`, `lastOffsetDelta`, `baseTimestamp`, producer id,
//! epoch and base sequence and its attributes; its surviving records are copied byte for byte
//! (their offset and timestamp deltas are relative to the unchanged base), so they keep their
//! offsets; `recordsCount`, `maxTimestamp` (CreateTime: the survivors' largest), `batchLength`
//! and the CRC-32C are recomputed. A compressed batch is recompressed with its own codec. A
//! batch left with no record is dropped, except the last batch of each idempotent producer id in
//! the range, kept empty (header only, timestamps -1) so its sequence numbers survive for
//! deduplication, as Kafka does. Every run of offsets that dropped batches leave is covered by
//! one empty *filler* batch (no producer, timestamps -1, `lastOffsetDelta` spanning the run), so
//! batches still chain (each starts where the previous ended) and every walker, index and
//! recovery check works unchanged on a compacted log. Kafka clients skip empty batches; a read
//! at an offset that fell in a gap returns the batch covering it, and the next record is the
//! next survivor.
//!
//! # The swap (crash-safe)
//! Old segments are the truth until the commit point:
//! 1. each cleaned segment is written as `{base:020}.log.cleaned` and fdatasynced;
//! 2. each is renamed to `{base:020}.log.swap`, then the directory is fsynced: **committed**
//!    (no `.cleaned` file left);
//! 3. the old segments' files (log, index, time index) are deleted, directory fsync;
//! 4. each `.swap` is renamed to `{base:020}.log`, directory fsync; then the indexes are written
//!    (hints: rebuilt at open if missing);
//! 5. the in-memory list is swapped, then the checkpoint written.
//!
//! Recovery (`recovery::finish_interrupted_swap`) rolls back while a `.cleaned` file exists and
//! completes steps 3-4 once only `.swap` files remain. A failure before the commit removes what
//! it wrote (`.swap` files first) and leaves the log as it was; after it, the log is poisoned
//! (appends refused) and reopening completes the swap. A crash before the checkpoint is written
//! only means the next run cleans the range again.
//!
//! Readers: each old `Segment` is *retired* before its file goes (its current mapping pinned to
//! it), so a reader holding it, or a `ReadSlice` of it, keeps reading the old bytes until done.
//!
//! # `cleaner-offset-checkpoint` (all integers little-endian)
//!
//! | position | size | field     | encoding                                          |
//! |----------|------|-----------|---------------------------------------------------|
//! | 0        | 4    | `magic`   | the bytes `MKCC`                                  |
//! | 4        | 2    | `version` | `u16`, currently 1                                |
//! | 6        | 2    | reserved  | zero                                              |
//! | 8        | 8    | `offset`  | `u64`: every offset below it has been compacted   |
//! | 16       | 4    | `crc`     | `u32`: CRC-32 (IEEE) of bytes `0..16`             |
//!
//! Written durably (temp file, fdatasync, rename, directory fsync). Missing (a log from before
//! compaction) or damaged: the whole sealed log counts as dirty, which is always safe.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::batch::{
    ATTRIBUTES_POS, BATCH_LENGTH_POS, COMPRESSION_MASK, HEADER_LEN, LOG_OVERHEAD,
    MAX_TIMESTAMP_POS, RECORDS_COUNT_POS,
};
use crate::storage::checked_file::{Format, seal_record, u64_at};
use crate::storage::fs::FsFile;
use crate::storage::index::{Index, IndexSummary};
use crate::storage::recovery::{CLEANED_SUFFIX, SWAP_SUFFIX};
use crate::storage::segment;
use crate::storage::segment::{
    IndexCursor as Cursor, SegmentParts, encode_header, index_file_name, log_file_name,
    time_index_file_name,
};
use crate::storage::timeindex::TimeIndex;

/// Name of the cleaner checkpoint in a log directory.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CHECKPOINT_FORMAT: Format = Format { magic: *b"MKCC", version: 1 };
const CHECKPOINT_LEN: usize = 20;
const CHECKPOINT_OFFSET_POS: usize = 8;
/// Cleaned bytes buffered before a write to the `.cleaned` file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Timestamps of a batch that holds no record (Kafka's `NO_TIMESTAMP`).
const NO_TIMESTAMP: i64 = -1;

/// What one compaction run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactionStats {
    /// Old segments replaced by cleaned ones (0: nothing was cleanable).
    pub segments_cleaned: usize,
    /// Bytes of the replaced segments.
    pub bytes_before: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_after: u64,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    /// Tombstones among them (superseded, or older than `delete_retention_ms`).
    pub tombstones_removed: u64,
    /// [`Log::dirty_ratio`] when the run started.
    pub dirty_ratio_before: f64,
}

/// Holds the cleaner to a rate of bytes read per second by sleeping; shared by the runs of a
/// cleaner (so one rate covers every log it cleans). `Send + Sync`.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: Option<u64>,
    /// Start of the current window and bytes read since.
    window: Mutex<(Instant, u64)>,
}

impl Throttle {
    /// Never sleeps (Kafka's default cleaner throttle).
    pub fn unlimited() -> Throttle {
        Throttle { bytes_per_sec: None, window: Mutex::new((Instant::now(), 0)) }
    }

    /// Sleeps so that reads average at most `n` bytes per second (`n` of 0 is taken as 1).
    pub fn bytes_per_sec(n: u64) -> Throttle {
        Throttle { bytes_per_sec: Some(n.max(1)), window: Mutex::new((Instant::now(), 0)) }
    }

    /// Called with the bytes just read; returns after the sleep the rate asks for.
    pub fn consume(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_sec else { return };
        let wait = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = w.0.elapsed();
            // After an idle second, start afresh: idle time is not credit for a burst.
            let due = Duration::from_secs_f64(w.1 as f64 / rate as f64);
            if elapsed > due + Duration::from_secs(1) {
                *w = (Instant::now(), 0);
            }
            w.1 += bytes;
            Duration::from_secs_f64(w.1 as f64 / rate as f64).saturating_sub(w.0.elapsed())
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

pub(super) fn encode_cleaner_checkpoint(offset: u64) -> [u8; CHECKPOINT_LEN] {
    let mut b = [0u8; CHECKPOINT_LEN];
    CHECKPOINT_FORMAT.write_prefix(&mut b);
    b[CHECKPOINT_OFFSET_POS..CHECKPOINT_OFFSET_POS + 8].copy_from_slice(&offset.to_le_bytes());
    seal_record(&mut b);
    b
}

fn decode_cleaner_checkpoint(b: &[u8]) -> Option<u64> {
    CHECKPOINT_FORMAT.check_record(b, CHECKPOINT_LEN).ok()?;
    Some(u64_at(b, CHECKPOINT_OFFSET_POS))
}

/// The sealed segments a run works on: `segs[..end]` is the cleanable range, `segs[dirty..end]`
/// its dirty part.
struct Plan {
    segs: Vec<Arc<Segment>>,
    dirty: usize,
    end: usize,
}

/// One cleaned segment being written.
struct Output {
    base: u64,
    path: PathBuf,
    file: Box<dyn FsFile>,
    /// Bytes written to the file (header included) plus `buf`.
    len: usize,
    buf: Vec<u8>,
    next_offset: u64,
    max_timestamp: i64,
    index: Index,
    times: TimeIndex,
    cursor: Cursor,
}

/// A finished cleaned segment, ready to swap in.
struct Cleaned {
    base: u64,
    len: usize,
    next_offset: u64,
    max_timestamp: i64,
    index: Index,
    times: TimeIndex,
}

impl Log {
    /// The cleaner checkpoint: every offset below it has been compacted (0 when there is none).
    pub(super) fn cleaner_checkpoint(&self) -> u64 {
        let path = self.dir.join(CLEANER_CHECKPOINT_FILE);
        match self.fs.read(&path) {
            Ok(b) => decode_cleaner_checkpoint(&b).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "cleaner checkpoint damaged; the whole log counts as dirty");
                0
            }),
            Err(_) => 0,
        }
    }

    /// The sealed segments and the cleanable range as of `now_ms`.
    fn compaction_plan(&self, now_ms: i64) -> Plan {
        let mut segs = self.segments_snapshot();
        segs.pop(); // the active segment
        let checkpoint = self.cleaner_checkpoint();
        let lag = i64::try_from(self.config().compaction.min_compaction_lag_ms).unwrap_or(i64::MAX);
        let end = segs
            .iter()
            .position(|s| s.max_timestamp() > now_ms.saturating_sub(lag))
            .unwrap_or(segs.len());
        let dirty = segs.iter().position(|s| s.next_offset() > checkpoint).unwrap_or(segs.len());
        Plan { segs, dirty, end }
    }

    /// Share of the sealed log's bytes not yet compacted (Kafka's dirty ratio): the bytes of the
    /// sealed segments at or past the cleaner checkpoint over all sealed bytes (0 when nothing
    /// is sealed).
    pub fn dirty_ratio(&self) -> f64 {
        let plan = self.compaction_plan(i64::MAX);
        let total: u64 = plan.segs.iter().map(|s| s.len() as u64).sum();
        let dirty: u64 = plan.segs[plan.dirty..].iter().map(|s| s.len() as u64).sum();
        if total == 0 { 0.0 } else { dirty as f64 / total as f64 }
    }

    /// Whether [`Log::compact`] would do something now: the log is compacted, part of its dirty
    /// segments is older than `min_compaction_lag_ms`, and either the cleanable dirty bytes are
    /// at least `min_cleanable_dirty_ratio` of the cleanable bytes or the first dirty batch is
    /// older than `max_compaction_lag_ms`.
    pub fn needs_compaction(&self, now_ms: i64) -> bool {
        if !self.config().cleanup_policy.compact {
            return false;
        }
        let plan = self.compaction_plan(now_ms);
        if plan.dirty >= plan.end {
            return false;
        }
        let bytes = |s: &[Arc<Segment>]| s.iter().map(|s| s.len() as u64).sum::<u64>();
        let total = bytes(&plan.segs[..plan.end]);
        let dirty = bytes(&plan.segs[plan.dirty..plan.end]);
        let c = &self.config().compaction;
        if total > 0 && dirty as f64 / total as f64 >= c.min_cleanable_dirty_ratio {
            return true;
        }
        let max_lag = i64::try_from(c.max_compaction_lag_ms).unwrap_or(i64::MAX);
        let first = &plan.segs[plan.dirty];
        match first.open(&*self.fs) {
            Ok(h) => h
                .data()
                .get(SEGMENT_HEADER_LEN..)
                .and_then(|rest| batch::BatchView::new(rest).ok())
                .is_some_and(|v| now_ms.saturating_sub(v.max_timestamp()) > max_lag),
            Err(_) => false,
        }
    }

    /// Compacts the sealed segments per the log's config (`cleanup_policy.compact` must be set,
    /// else nothing is done), as of `now_ms`, whatever the dirty ratio (the caller asks
    /// [`Log::needs_compaction`] first). See the module docs for what is kept. Takes the admin
    /// lock (trim and retention wait), never the append lock: appends and reads go on.
    pub fn compact(
        &self,
        now_ms: i64,
        throttle: &Throttle,
    ) -> Result<CompactionStats, StorageError> {
        let mut stats = CompactionStats::default();
        if !self.config().cleanup_policy.compact {
            return Ok(stats);
        }
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_open()?;
        self.check_poisoned()?;
        stats.dirty_ratio_before = self.dirty_ratio();
        let plan = self.compaction_plan(now_ms);
        if plan.dirty >= plan.end {
            return Ok(stats);
        }
        let old = &plan.segs[..plan.end];
        let started = Instant::now();
        let (latest, last_of_producer) = self.key_map(&plan, throttle)?;
        let cleaned =
            match self.write_cleaned(old, &latest, &last_of_producer, now_ms, throttle, &mut stats)
            {
                Ok(c) => c,
                Err(e) => {
                    self.remove_leftovers(&self.cleaned_paths_from_dir());
                    return Err(e);
                }
            };
        self.swap_in(old, &cleaned)?;
        stats.segments_cleaned = old.len();
        stats.bytes_before = old.iter().map(|s| s.len() as u64).sum();
        stats.bytes_after = cleaned.iter().map(|c| c.len as u64).sum();
        let checkpoint = old[old.len() - 1].next_offset();
        let path = self.dir.join(CLEANER_CHECKPOINT_FILE);
        write_atomic(&*self.fs, &self.dir, &path, &encode_cleaner_checkpoint(checkpoint))
            .map_err(StorageError::io(&path, "write cleaner checkpoint"))?;
        tracing::info!(dir = %self.dir.display(), segments = stats.segments_cleaned,
            bytes_before = stats.bytes_before, bytes_after = stats.bytes_after,
            records_removed = stats.records_removed, tombstones_removed = stats.tombstones_removed,
            elapsed_ms = started.elapsed().as_millis() as u64, "compacted");
        Ok(stats)
    }

    /// The latest offset of each key in the dirty part, and the last batch (base offset) of each
    /// idempotent producer id in the whole cleanable range.
    #[allow(clippy::type_complexity)]
    fn key_map(
        &self,
        plan: &Plan,
        throttle: &Throttle,
    ) -> Result<(HashMap<Box<[u8]>, u64>, HashMap<i64, u64>), StorageError> {
        let mut latest: HashMap<Box<[u8]>, u64> = HashMap::new();
        let mut producers: HashMap<i64, u64> = HashMap::new();
        let mut scratch = Vec::new();
        for (i, seg) in plan.segs[..plan.end].iter().enumerate() {
            let dirty = i >= plan.dirty;
            let h = seg.open(&*self.fs)?;
            let data = h.data();
            let mut bad = None;
            let end = segment::scan(data, SEGMENT_HEADER_LEN, seg.base_offset, false, |v, pos| {
                if bad.is_some() {
                    return;
                }
                if v.producer_id() >= 0 {
                    producers.insert(v.producer_id(), v.base_offset() as u64);
                }
                if !dirty || v.is_control() {
                    return;
                }
                let res = v.decoded_records(&mut scratch).and_then(|mut rs| {
                    rs.try_for_each(|r| {
                        let r = r?;
                        if let Some(k) = r.key {
                            match latest.get_mut(k) {
                                Some(o) => *o = r.offset as u64,
                                None => {
                                    latest.insert(k.into(), r.offset as u64);
                                }
                            }
                        }
                        Ok(())
                    })
                });
                if let Err(e) = res {
                    bad = Some((pos, e.to_string()));
                }
            });
            if let Some((pos, reason)) = bad.or(end.stopped.map(|r| (end.position, r))) {
                return Err(StorageError::Corrupt {
                    path: seg.log_path.clone(),
                    position: pos as u64,
                    reason,
                });
            }
            throttle.consume(if dirty { data.len() as u64 } else { (data.len() / 16) as u64 });
        }
        Ok((latest, producers))
    }

    /// Writes the cleaned batches of `old` into `.cleaned` files of up to `segment_bytes` each,
    /// fdatasynced, covering exactly the offsets `old` covers.
    fn write_cleaned(
        &self,
        old: &[Arc<Segment>],
        latest: &HashMap<Box<[u8]>, u64>,
        last_of_producer: &HashMap<i64, u64>,
        now_ms: i64,
        throttle: &Throttle,
        stats: &mut CompactionStats,
    ) -> Result<Vec<Cleaned>, StorageError> {
        let retention =
            i64::try_from(self.config().compaction.delete_retention_ms).unwrap_or(i64::MAX);
        let mut done: Vec<Cleaned> = Vec::new();
        let mut out: Option<Output> = None;
        // Next offset the output must cover.
        let mut covered = old[0].base_offset;
        // The leader epoch of the removed batches since `covered`: a filler covering them carries
        // it (a gap spanning epochs gets one filler per epoch), so an epoch cache rebuilt from
        // the headers still sees where each epoch started.
        let mut gap_epoch: Option<i32> = None;
        let mut scratch = Vec::new();
        let mut kept = Vec::new();
        let mut batch_buf = Vec::new();
        for seg in old {
            let h = seg.open(&*self.fs)?;
            let data = h.data();
            let mut pos = SEGMENT_HEADER_LEN;
            let mut at = seg.base_offset;
            while pos < data.len() && !segment::is_unwritten(&data[pos..]) {
                let view = segment::batch_at(&data[pos..], at)
                    .map_err(|r| corrupt(&seg.log_path, pos, r))?;
                pos += view.len();
                at = view.last_offset() as u64 + 1;
                let base = view.base_offset() as u64;
                let epoch = view.partition_leader_epoch();
                let rewritten = if view.is_control() {
                    Some(view.as_bytes())
                } else {
                    let r = rewrite_batch(
                        &view,
                        latest,
                        now_ms,
                        retention,
                        &mut scratch,
                        &mut kept,
                        &mut batch_buf,
                    )
                    .map_err(|e| corrupt(&seg.log_path, pos - view.len(), e.to_string()))?;
                    stats.records_removed += r.removed;
                    stats.tombstones_removed += r.tombstones_removed;
                    match r.kind {
                        Rewritten::Unchanged => Some(view.as_bytes()),
                        Rewritten::Changed => Some(&batch_buf[..]),
                        Rewritten::Empty => {
                            if view.producer_id() >= 0
                                && last_of_producer.get(&view.producer_id()) == Some(&base)
                            {
                                empty_batch_into(&mut batch_buf, &view);
                                Some(&batch_buf[..])
                            } else {
                                None
                            }
                        }
                    }
                };
                let Some(bytes) = rewritten else {
                    if let Some(e) = gap_epoch.filter(|&e| e != epoch) {
                        self.fill_gap(&mut out, &mut done, covered, base, e)?;
                        covered = base;
                    }
                    gap_epoch = Some(epoch);
                    continue;
                };
                self.fill_gap(&mut out, &mut done, covered, base, gap_epoch.unwrap_or(epoch))?;
                gap_epoch = None;
                self.emit(&mut out, &mut done, bytes)?;
                covered = at;
            }
            throttle.consume(data.len() as u64);
        }
        let end = old[old.len() - 1].next_offset();
        self.fill_gap(&mut out, &mut done, covered, end, gap_epoch.unwrap_or(0))?;
        if let Some(o) = out.take() {
            done.push(self.finish_output(o)?);
        }
        Ok(done)
    }

    /// Covers offsets `from..to` (nothing if empty) with filler batches stamped `epoch` (the
    /// leader epoch of the batches they replace).
    fn fill_gap(
        &self,
        out: &mut Option<Output>,
        done: &mut Vec<Cleaned>,
        from: u64,
        to: u64,
        epoch: i32,
    ) -> Result<(), StorageError> {
        let mut at = from;
        while at < to {
            let next = to.min(at + i32::MAX as u64);
            self.emit(out, done, &filler_batch(at, next, epoch))?;
            at = next;
        }
        Ok(())
    }

    /// Appends one whole batch to the current output, starting a new `.cleaned` segment when it
    /// would pass `segment_bytes`, or span more offsets than a segment's index can name (relative
    /// offsets are u32; merged segments may span large gaps).
    fn emit(
        &self,
        out: &mut Option<Output>,
        done: &mut Vec<Cleaned>,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        // Invariant: callers pass one whole batch, built or checked above.
        let v = batch::BatchView::new(bytes).expect("whole batch");
        let (base, last) = (v.base_offset() as u64, v.last_offset() as u64);
        if let Some(o) = out
            && o.len > SEGMENT_HEADER_LEN
            && ((o.len + bytes.len()) as u64 > self.config().segment_bytes
                || last - o.base > i32::MAX as u64)
        {
            // Invariant: just matched as Some.
            let o = out.take().expect("output present");
            done.push(self.finish_output(o)?);
        }
        let o = match out {
            Some(o) => o,
            None => out.insert(self.start_output(base)?),
        };
        let rel = (base - o.base) as u32;
        o.cursor.observe(&mut o.index, &mut o.times, rel, o.len, v.max_timestamp());
        o.max_timestamp = o.max_timestamp.max(v.max_timestamp());
        o.next_offset = last + 1;
        o.len += bytes.len();
        o.buf.extend_from_slice(bytes);
        if o.buf.len() >= WRITE_BUFFER_BYTES {
            flush_output(o)?;
        }
        Ok(())
    }

    fn start_output(&self, base: u64) -> Result<Output, StorageError> {
        let path = self.dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        let file =
            self.fs.create(&path).map_err(StorageError::io(&path, "create cleaned segment"))?;
        Ok(Output {
            base,
            path,
            file,
            len: SEGMENT_HEADER_LEN,
            buf: encode_header(base).to_vec(),
            next_offset: base,
            max_timestamp: i64::MIN,
            index: Index::new(),
            times: TimeIndex::new(),
            cursor: Cursor::new(self.config().index_interval_bytes, SEGMENT_HEADER_LEN),
        })
    }

    fn finish_output(&self, mut o: Output) -> Result<Cleaned, StorageError> {
        flush_output(&mut o)?;
        o.file.sync_data().map_err(StorageError::io(&o.path, "fdatasync cleaned segment"))?;
        Ok(Cleaned {
            base: o.base,
            len: o.len,
            next_offset: o.next_offset,
            max_timestamp: o.max_timestamp,
            index: o.index,
            times: o.times,
        })
    }

    /// The `.cleaned` and `.swap` files in the directory (after a failed run).
    fn cleaned_paths_from_dir(&self) -> Vec<PathBuf> {
        let names = self.fs.list_dir(&self.dir).unwrap_or_default();
        names
            .into_iter()
            .filter(|n| n.ends_with(CLEANED_SUFFIX) || n.ends_with(SWAP_SUFFIX))
            .map(|n| self.dir.join(n))
            .collect()
    }

    /// Removes the files of an uncommitted swap: `.swap` ones first, so that if a removal fails
    /// a `.cleaned` file is still there to tell recovery to roll back.
    fn remove_leftovers(&self, paths: &[PathBuf]) {
        let (swaps, cleaned): (Vec<_>, Vec<_>) =
            paths.iter().partition(|p| p.to_string_lossy().ends_with(SWAP_SUFFIX));
        for p in swaps.into_iter().chain(cleaned) {
            if let Err(e) = self.fs.remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a compaction leftover; open removes it");
                return;
            }
        }
        let _ = self.fs.sync_dir(&self.dir);
    }

    /// Swaps the cleaned segments in for `old` (the protocol in the module docs).
    fn swap_in(&self, old: &[Arc<Segment>], cleaned: &[Cleaned]) -> Result<(), StorageError> {
        let dir_sync = |what: &'static str| {
            self.fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, what))
        };
        let named = |base: u64, suffix: &str| self.dir.join(format!("{base:020}{suffix}"));
        // Before the commit: undo on failure.
        let pre_commit = || -> Result<(), StorageError> {
            for seg in old {
                // From here on, readers of an old segment read its current file, whatever
                // happens to the name.
                seg.retire(&*self.fs)?;
            }
            for c in cleaned {
                let (from, to) = (named(c.base, CLEANED_SUFFIX), named(c.base, SWAP_SUFFIX));
                self.fs
                    .rename(&from, &to)
                    .map_err(StorageError::io(&from, "rename cleaned segment"))?;
            }
            dir_sync("fsync log directory (commit compaction)")
        };
        if let Err(e) = pre_commit() {
            self.remove_leftovers(&self.cleaned_paths_from_dir());
            return Err(e);
        }
        // Committed: recovery completes the swap from here on; a failure poisons the log so it
        // is reopened (and the swap completed) before anything else is written.
        let post_commit = || -> Result<Vec<Arc<Segment>>, StorageError> {
            for seg in old {
                for path in [&seg.log_path, &seg.index_path, &seg.time_index_path] {
                    match self.fs.remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(StorageError::io(path, "delete compacted segment")(e));
                        }
                    }
                }
            }
            dir_sync("fsync log directory")?;
            for c in cleaned {
                let (from, to) = (named(c.base, SWAP_SUFFIX), self.dir.join(log_file_name(c.base)));
                self.fs
                    .rename(&from, &to)
                    .map_err(StorageError::io(&from, "rename swap segment"))?;
            }
            dir_sync("fsync log directory")?;
            let mut fresh = Vec::with_capacity(cleaned.len());
            for c in cleaned {
                let log_path = self.dir.join(log_file_name(c.base));
                let index_path = self.dir.join(index_file_name(c.base));
                let time_path = self.dir.join(time_index_file_name(c.base));
                let summary = IndexSummary {
                    next_offset: c.next_offset,
                    max_timestamp: c.max_timestamp,
                    log_len: c.len as u64,
                };
                // Hints: a failure leaves them to be rebuilt at open.
                if let Err(e) =
                    c.times.write(&*self.fs, &time_path, c.base, summary, false).and_then(|()| {
                        c.index.write(&*self.fs, &self.dir, &index_path, c.base, summary)
                    })
                {
                    tracing::warn!(path = %index_path.display(), error = %e, "cannot write the cleaned segment's index; open rebuilds it");
                }
                let file = self
                    .fs
                    .open(&log_path)
                    .map_err(StorageError::io(&log_path, "open cleaned segment"))?;
                fresh.push(Arc::new(Segment::from_parts(SegmentParts {
                    base_offset: c.base,
                    log_path,
                    index_path,
                    file,
                    data_len: c.len,
                    capacity: c.len,
                    next_offset: c.next_offset,
                    max_timestamp: c.max_timestamp,
                    index: c.index.clone(),
                    time_index: c.times.clone(),
                    index_interval_bytes: self.config().index_interval_bytes,
                    sealed: true,
                })?));
            }
            Ok(fresh)
        };
        let fresh = match post_commit() {
            Ok(f) => f,
            Err(e) => return self.poison(e),
        };
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        // Only retention and trim remove segments, and they wait for the admin lock we hold;
        // rolls only append. So `old` is still a run of the list.
        let Some(i) = segs.iter().position(|s| Arc::ptr_eq(s, &old[0])) else {
            drop(segs);
            return self.poison(StorageError::Corrupt {
                path: self.dir.clone(),
                position: 0,
                reason: "compacted segments left the list during the swap".into(),
            });
        };
        segs.splice(i..i + old.len(), fresh);
        Ok(())
    }
}

fn corrupt(path: &Path, position: usize, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason: reason.into(),
    }
}

fn flush_output(o: &mut Output) -> Result<(), StorageError> {
    if o.buf.is_empty() {
        return Ok(());
    }
    let at = (o.len - o.buf.len()) as u64;
    o.file.write_all_at(&o.buf, at).map_err(StorageError::io(&o.path, "write cleaned segment"))?;
    o.buf.clear();
    Ok(())
}

/// What happened to one batch.
enum Rewritten {
    /// Every record survives: the batch is kept as it is.
    Unchanged,
    /// Some survive: the new batch is in the caller's buffer.
    Changed,
    /// None survives.
    Empty,
}

struct RewriteResult {
    kind: Rewritten,
    removed: u64,
    tombstones_removed: u64,
}

/// Decides which records of `view` survive and, if only some do, builds the cleaned batch into
/// `out` (see the module docs for the fields kept and recomputed).
#[allow(clippy::too_many_arguments)]
fn rewrite_batch(
    view: &batch::BatchView<'_>,
    latest: &HashMap<Box<[u8]>, u64>,
    now_ms: i64,
    delete_retention_ms: i64,
    scratch: &mut Vec<u8>,
    kept: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<RewriteResult, BatchError> {
    let compression = view.compression()?;
    let data: &[u8] = if compression == Compression::None {
        view.records_bytes()
    } else {
        view.decompress_into(scratch, batch::MAX_DECOMPRESSED_BYTES)?;
        scratch
    };
    let tombstone_expired = now_ms.saturating_sub(view.max_timestamp()) >= delete_retention_ms;
    kept.clear();
    let mut count: i32 = 0;
    let mut max_ts = i64::MIN;
    let mut removed = 0;
    let mut tombstones_removed = 0;
    let mut records = view.records_in(data);
    loop {
        let start = records.position();
        let Some(r) = records.next() else { break };
        let r = r?;
        let end = records.position();
        let latest_of_key =
            r.key.is_none_or(|k| latest.get(k).is_none_or(|&l| l <= r.offset as u64));
        let keep = latest_of_key && !(r.value.is_none() && r.key.is_some() && tombstone_expired);
        if keep {
            kept.extend_from_slice(&data[start..end]);
            count += 1;
            max_ts = max_ts.max(r.timestamp);
        } else {
            removed += 1;
            if r.value.is_none() {
                tombstones_removed += 1;
            }
        }
    }
    let kind = if removed == 0 {
        Rewritten::Unchanged
    } else if count == 0 {
        Rewritten::Empty
    } else {
        let header = &view.as_bytes()[..HEADER_LEN];
        out.clear();
        out.extend_from_slice(header);
        batch::compress_into(compression, kept, out)?;
        out[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
        if view.timestamp_type() == batch::TimestampType::CreateTime {
            out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_ts.to_be_bytes());
        }
        seal_batch(out);
        Rewritten::Changed
    };
    Ok(RewriteResult { kind, removed, tombstones_removed })
}

/// Sets `batchLength` and the CRC-32C of a whole batch in `b`.
fn seal_batch(b: &mut [u8]) {
    // A cleaned batch is never larger than the original, whose length fit an i32.
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[BATCH_LENGTH_POS..BATCH_LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
    b[batch::CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
}

/// `view`'s header with no records: kept for an idempotent producer's last batch.
fn empty_batch_into(out: &mut Vec<u8>, view: &batch::BatchView<'_>) {
    out.clear();
    out.extend_from_slice(&view.as_bytes()[..HEADER_LEN]);
    let attributes = view.attributes() & !COMPRESSION_MASK;
    out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    out[batch::BASE_TIMESTAMP_POS..batch::BASE_TIMESTAMP_POS + 8]
        .copy_from_slice(&NO_TIMESTAMP.to_be_bytes());
    out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&NO_TIMESTAMP.to_be_bytes());
    out[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&0i32.to_be_bytes());
    seal_batch(out);
}

/// An empty batch covering offsets `from..to` (at most `i32::MAX` of them), no producer, stamped
/// with leader epoch `epoch`.
fn filler_batch(from: u64, to: u64, epoch: i32) -> Vec<u8> {
    debug_assert!(from < to && to - from <= i32::MAX as u64);
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&(from as i64).to_be_bytes());
    out.extend_from_slice(&[0; 4]); // batchLength, by seal_batch
    out.extend_from_slice(&epoch.to_be_bytes());
    out.push(batch::MAGIC as u8);
    out.extend_from_slice(&[0; 4]); // crc, by seal_batch
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&((to - from - 1) as i32).to_be_bytes());
    out.extend_from_slice(&NO_TIMESTAMP.to_be_bytes());
    out.extend_from_slice(&NO_TIMESTAMP.to_be_bytes());
    out.extend_from_slice(&batch::NO_PRODUCER_ID.to_be_bytes());
    out.extend_from_slice(&batch::NO_PRODUCER_EPOCH.to_be_bytes());
    out.extend_from_slice(&batch::NO_SEQUENCE.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    seal_batch(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_round_trips_and_any_flipped_byte_is_caught() {
        let b = encode_cleaner_checkpoint(4242);
        assert_eq!(&b[..4], b"MKCC");
        assert_eq!(decode_cleaner_checkpoint(&b), Some(4242));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x01;
            assert_eq!(decode_cleaner_checkpoint(&bad), None, "flip at byte {i}");
        }
    }

    #[test]
    fn a_filler_is_a_valid_empty_batch_spanning_its_offsets() {
        let f = filler_batch(10, 25, 3);
        assert_eq!(f.len(), HEADER_LEN);
        let v = batch::BatchView::new(&f).unwrap();
        assert_eq!(v.len(), f.len());
        v.verify_crc().unwrap();
        assert_eq!((v.base_offset(), v.last_offset(), v.records_count()), (10, 24, 0));
        assert_eq!(v.partition_leader_epoch(), 3);
        assert_eq!(v.records().unwrap().count(), 0);
    }
}
