//! Truncation of a log's tail (`Log::truncate_to`): what a follower does when its log diverged
//! from its new leader's. Removes every batch at or past a cut, across segments, rolls back the
//! producer state, the leader-epoch cache and the checkpoints that point past the cut, and is
//! crash-safe through the `truncation-pending` intent file. Never decides where to cut (the
//! replication layer does, from the epoch caches).
//!
//! # Crash safety
//! 1. `truncation-pending` (the cut) is written durably before anything is removed.
//! 2. Whole segments past the cut are removed newest first, each removal made durable before the
//!    next (so the directory always holds a chain of segments recovery accepts).
//! 3. The segment holding the cut is replaced by a copy of its bytes below the cut (written to
//!    `{base:020}.log.tmp`, fdatasynced, renamed over it, directory fsynced).
//! 4. Producer snapshots, the cleaner checkpoint, the log start checkpoint and the leader-epoch
//!    checkpoint past the cut are rolled back, then the intent file is removed (durably, before
//!    any later append).
//!
//! A crash anywhere in between leaves the intent file; open finishes the truncation before the
//! log serves anyone, so no record past the cut is ever seen again.
//!
//! # Concurrent readers: copy-on-truncate
//! Readers hold slices of a segment's memory map (`ReadSlice`, kept alive by an `Arc`) and may
//! send them to a socket long after `read` returned. Cutting the file under such a mapping would
//! turn their next touch of a page past the new end into SIGBUS. So the file is never cut in
//! place: the segment holding the cut is copied (only its bytes below the cut) to a new file that
//! takes its name, and every segment leaving the log is first `retire`d (its current file pinned
//! to that `Segment`), so a reader holding the old `Segment` or a slice keeps reading the old,
//! unlinked file until it lets go. The cost is copying at most one segment per truncation, which
//! happens only on a leader change.
//!
//! # `truncation-pending` (all integers little-endian)
//!
//! | position | size | field     | encoding                                   |
//! |----------|------|-----------|--------------------------------------------|
//! | 0        | 4    | `magic`   | the bytes `MKTR`                           |
//! | 4        | 2    | `version` | `u16`, currently 1                         |
//! | 6        | 2    | reserved  | zero                                       |
//! | 8        | 8    | `cut`     | `u64`: every offset at or past it goes     |
//! | 16       | 4    | `crc`     | `u32`: CRC-32 (IEEE) of bytes `0..16`      |

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::compaction::{CLEANER_CHECKPOINT_FILE, encode_cleaner_checkpoint};
use super::{Appender, Log, load_producer_state};
use crate::storage::StorageError;
use crate::storage::checked_file::{Format, seal_record, u64_at};
use crate::storage::epoch_checkpoint;
use crate::storage::fs::{FileSystem, tmp_path, write_atomic};
use crate::storage::index::IndexSummary;
use crate::storage::producer_state::{self, ProducerStates};
use crate::storage::recovery;
use crate::storage::segment::{self, IndexCursor, SEGMENT_HEADER_LEN, Segment, SegmentParts};

/// Name of the intent file.
pub(crate) const TRUNCATION_FILE: &str = "truncation-pending";
const FORMAT: Format = Format { magic: *b"MKTR", version: 1 };
const LEN: usize = 20;

fn encode(cut: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    FORMAT.write_prefix(&mut b);
    b[8..16].copy_from_slice(&cut.to_le_bytes());
    seal_record(&mut b);
    b
}

/// The cut of a truncation a crash interrupted, if the intent file is there. A damaged one
/// refuses the open: guessing could bring back records a follower was told to drop.
pub(super) fn pending(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = dir.join(TRUNCATION_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let b = fs.read(&path).map_err(StorageError::io(&path, "read truncation intent"))?;
    FORMAT.check_record(&b, LEN).map_err(|reason| StorageError::Corrupt {
        path: path.clone(),
        position: 0,
        reason,
    })?;
    Ok(Some(u64_at(&b, 8)))
}

impl Log {
    /// Removes every record at or past `offset` (from the start of the batch holding it, so the
    /// log ends at a batch boundary), across segments; rolls back the producer state (rebuilt
    /// from what remains), the leader-epoch cache and the checkpoints. Durable when it returns,
    /// and crash-safe (see the module docs). An offset at or past the end changes nothing; one
    /// below the log start truncates to the log start (never below it). Appends made before it
    /// and not yet durable fail with `Truncated` rather than be acknowledged.
    pub fn truncate_to(&self, offset: u64) -> Result<(), StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut app = self.lock_appender()?;
        let next = self.next_offset();
        if offset >= next {
            // No record goes, but an epoch this replica started as leader and wrote nothing in
            // (it lost leadership first) does, as in Kafka: kept, its fetches would keep naming
            // an epoch the new leader never had, and the leader's answer would never move it.
            return self.drop_epochs_from(next);
        }
        let cut = self.batch_start(offset.max(self.log_start_offset()))?;
        let path = self.dir.join(TRUNCATION_FILE);
        write_atomic(&*self.fs, &self.dir, &path, &encode(cut))
            .map_err(StorageError::io(&path, "write truncation intent"))?;
        tracing::info!(dir = %self.dir.display(), offset, cut, next_offset = next, "truncating the log");
        match self.apply_truncation(&mut app, cut) {
            Ok(()) => Ok(()),
            // The files are part way: reopening finishes the truncation from the intent file.
            Err(e) => self.poison(e),
        }
    }

    /// Empties the log and starts it over at `offset`, past its end (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose whole log lies below its leader's log start
    /// (retention or DeleteRecords ran there while it was away) can only keep nothing and fetch
    /// from there. Crash-safe at every step: the log start checkpoint is written first (a crash
    /// then reopens the old records, the start clamped to their end), segments go oldest first
    /// (what is left is contiguous), and a directory left with the checkpoint alone opens empty
    /// at `offset`. Readers holding slices keep them (the segments are retired, not unmapped).
    pub fn restart_at(&self, offset: u64) -> Result<(), StorageError> {
        self.start_over(offset, |next| offset > next)
    }

    /// Drops every record: the log starts over empty at offset 0, as a new replica's does. For a
    /// replica this broker no longer holds (Kafka deletes its directory); were it added again,
    /// it would copy the partition from the leader's log start. Crash-safe as
    /// [`Log::restart_at`]: a crash part way reopens the records left, to be dropped again.
    pub fn discard_all(&self) -> Result<(), StorageError> {
        self.start_over(0, |_| true)
    }

    /// Empties the log and starts it at `offset` when `allowed(next_offset)`.
    fn start_over(&self, offset: u64, allowed: impl Fn(u64) -> bool) -> Result<(), StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut app = self.lock_appender()?;
        let next = self.next_offset();
        if !allowed(next) {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                next_offset: next,
            });
        }
        // No fdatasync may publish an old end meanwhile: claim the syncer's slot.
        {
            let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            while st.syncing {
                st = self.synced_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.syncing = true;
        }
        let res = self.restart_files(&mut app, offset);
        let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        st.syncing = false;
        if res.is_ok() {
            st.synced = offset;
            self.durable_end.store(offset, Ordering::Release);
        }
        drop(st);
        self.synced_cv.notify_all();
        match res {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), offset, old_next_offset = next,
                    "log emptied and started over");
                Ok(())
            }
            // Files part way: reopening finishes from what is on disk (see above).
            Err(e) => self.poison(e),
        }
    }

    fn restart_files(&self, app: &mut Appender, offset: u64) -> Result<(), StorageError> {
        let fs = &*self.fs;
        recovery::write_checkpoint(fs, &self.dir, offset)?;
        self.truncations.fetch_add(1, Ordering::AcqRel);
        for seg in self.segments_snapshot() {
            seg.retire(fs)?;
            for path in [&seg.log_path, &seg.index_path, &seg.time_index_path] {
                remove_if_there(fs, path)?;
            }
            fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, "fsync log directory"))?;
        }
        // Nothing below `offset` is left to describe: producers, epochs and the cleaner start over.
        producer_state::keep_newest_snapshots(fs, &self.dir, 0)?;
        app.producers = ProducerStates::new();
        for name in [epoch_checkpoint::EPOCH_CHECKPOINT_FILE, CLEANER_CHECKPOINT_FILE] {
            remove_if_there(fs, &self.dir.join(name))?;
        }
        *self.lock_epochs() = Default::default();
        let capacity = self.config().segment_bytes as usize;
        let seg =
            Arc::new(Segment::create(fs, &self.dir, offset, capacity, self.index_interval_bytes)?);
        fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, "fsync log directory"))?;
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = vec![seg];
        self.log_start.store(offset, Ordering::Release);
        self.next_offset.store(offset, Ordering::Release);
        app.index_cursor = IndexCursor::new(self.index_interval_bytes, SEGMENT_HEADER_LEN);
        app.torn_end = 0;
        app.first_batch_ts = None;
        Ok(())
    }

    /// Drops the leader epochs that start at or past `end` from the cache and its checkpoint.
    fn drop_epochs_from(&self, end: u64) -> Result<(), StorageError> {
        let mut cache = self.lock_epochs();
        let mut kept = cache.clone();
        kept.truncate_to(end);
        if kept != *cache {
            epoch_checkpoint::write(&*self.fs, &self.dir, &kept)?;
            tracing::info!(dir = %self.dir.display(), end, dropped = ?&cache.entries()[kept.entries().len()..],
                "dropped leader epochs that wrote nothing here");
            *cache = kept;
        }
        Ok(())
    }

    /// Open's half: finishes a truncation to `cut` that a crash interrupted.
    pub(super) fn finish_pending_truncation(&self, cut: u64) -> Result<(), StorageError> {
        tracing::info!(dir = %self.dir.display(), cut, next_offset = self.next_offset(),
            "finishing an interrupted truncation");
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut app = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_truncation(&mut app, cut)
    }

    /// The base offset of the batch holding `offset` (which is below the next offset).
    fn batch_start(&self, offset: u64) -> Result<u64, StorageError> {
        let segs = self.segments_snapshot();
        let i = segs.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
        let seg = &segs[i];
        let h = seg.open(&*self.fs)?;
        let (pos, _, _) = seg.locate(&h, offset, 0)?;
        // Invariant: `locate` found a whole batch header at `pos`.
        let view =
            crate::batch::BatchView::new(&h.data()[pos..]).map_err(|e| StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: pos as u64,
                reason: e.to_string(),
            })?;
        Ok(view.base_offset() as u64)
    }

    /// Cuts the log at `cut` (a batch boundary, or at or past the end: then only what points past
    /// it is rolled back) and removes the intent file. Holds the admin and append locks.
    fn apply_truncation(&self, app: &mut Appender, cut: u64) -> Result<(), StorageError> {
        // No fdatasync may run meanwhile: one that started before would publish the old end as
        // durable. Claim the syncer's slot (waiting for a running one) until the end.
        {
            let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            while st.syncing {
                st = self.synced_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.syncing = true;
        }
        let res = self.cut_files(app, cut);
        let mut st = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        st.syncing = false;
        if let Ok(true) = res {
            // Everything below the cut is durable: sealed segments, and the fdatasynced copy.
            st.synced = cut;
            self.durable_end.store(cut, Ordering::Release);
        }
        drop(st);
        self.synced_cv.notify_all();
        res.map(|_| ())
    }

    /// The file work of `apply_truncation`; whether records were removed.
    fn cut_files(&self, app: &mut Appender, cut: u64) -> Result<bool, StorageError> {
        let fs = &*self.fs;
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let cutting = cut < self.next_offset();
        if cutting {
            let segs = self.segments_snapshot();
            let i = segs.partition_point(|s| s.base_offset <= cut).saturating_sub(1);
            for seg in segs[i + 1..].iter().rev() {
                seg.retire(fs)?;
                for path in [&seg.log_path, &seg.index_path, &seg.time_index_path] {
                    remove_if_there(fs, path)?;
                }
                fs.sync_dir(&self.dir)
                    .map_err(StorageError::io(&self.dir, "fsync log directory"))?;
                tracing::debug!(path = %seg.log_path.display(), "segment removed by truncation");
            }
            let (active, cursor) = self.copy_below(&segs[i], cut)?;
            let mut list = segs[..i].to_vec();
            list.push(active);
            *self.segments.write().unwrap_or_else(|p| p.into_inner()) = list;
            self.next_offset.store(cut, Ordering::Release);
            app.index_cursor = cursor;
            app.torn_end = 0;
            app.first_batch_ts = None;
        }
        let segs = self.segments_snapshot();
        let start = self.log_start_offset();
        if start > cut {
            // The cut fell inside the batch holding the log start: the log is empty from there.
            recovery::write_checkpoint(fs, &self.dir, cut)?;
            self.log_start.store(cut, Ordering::Release);
        }
        // Removes the snapshots past the cut, then replays what remains after the newest one.
        app.producers = load_producer_state(fs, &self.dir, &segs, self.log_start_offset(), cut)?;
        let cleaner = self.dir.join(CLEANER_CHECKPOINT_FILE);
        if self.cleaner_checkpoint() > cut {
            write_atomic(fs, &self.dir, &cleaner, &encode_cleaner_checkpoint(cut))
                .map_err(StorageError::io(&cleaner, "write cleaner checkpoint"))?;
        }
        {
            let mut cache = self.lock_epochs();
            let mut kept = cache.clone();
            kept.truncate_to(cut);
            if kept != *cache || !fs.exists(&self.dir.join(epoch_checkpoint::EPOCH_CHECKPOINT_FILE))
            {
                epoch_checkpoint::write(fs, &self.dir, &kept)?;
                *cache = kept;
            }
        }
        let intent = self.dir.join(TRUNCATION_FILE);
        remove_if_there(fs, &intent)?;
        // Durable before any later append: a stale intent would cut the new records at open.
        fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, "fsync log directory"))?;
        tracing::info!(dir = %self.dir.display(), cut, "log truncated");
        Ok(cutting)
    }

    /// Replaces `seg` (holding `cut`) by a new active segment of the same name holding its bytes
    /// below `cut`: copied to a temp file, fdatasynced, renamed over it. The old file stays
    /// mapped for readers of `seg` (retired first).
    fn copy_below(
        &self,
        seg: &Arc<Segment>,
        cut: u64,
    ) -> Result<(Arc<Segment>, IndexCursor), StorageError> {
        let fs = &*self.fs;
        let h = seg.open(fs)?;
        let pos =
            if cut == seg.base_offset { SEGMENT_HEADER_LEN } else { seg.locate(&h, cut, 0)?.0 };
        let data = &h.data()[..pos];
        let interval = self.index_interval_bytes;
        let (index, time_index, end) =
            segment::build_indexes(data, seg.base_offset, interval, false);
        if end.position != pos || end.next_offset != cut {
            return Err(StorageError::Corrupt {
                path: seg.log_path.clone(),
                position: end.position as u64,
                reason: format!(
                    "the batches below the cut end at offset {}, not {cut}",
                    end.next_offset
                ),
            });
        }
        let capacity = (self.config().segment_bytes as usize).max(pos);
        let tmp = tmp_path(&seg.log_path);
        let io = |op| StorageError::io(&tmp, op);
        let file = fs.create(&tmp).map_err(io("create truncated segment"))?;
        file.set_len(capacity as u64).map_err(io("preallocate truncated segment"))?;
        file.allocate(0, pos as u64).map_err(io("reserve disk space for the truncated segment"))?;
        file.write_all_at(data, 0).map_err(io("write truncated segment"))?;
        file.sync_data().map_err(io("fdatasync truncated segment"))?;
        seg.retire(fs)?;
        fs.rename(&tmp, &seg.log_path).map_err(io("rename truncated segment"))?;
        fs.sync_dir(&self.dir).map_err(StorageError::io(&self.dir, "fsync log directory"))?;
        let summary = IndexSummary {
            next_offset: cut,
            max_timestamp: end.max_timestamp,
            log_len: pos as u64,
        };
        if let Err(e) = index.write_hint(fs, &seg.index_path, seg.base_offset, summary) {
            // A hint: recovery rebuilds it, and close writes it again.
            tracing::warn!(path = %seg.index_path.display(), error = %e, "cannot write the index of a truncated segment");
        }
        let cursor_pos = index.entries().last().map_or(SEGMENT_HEADER_LEN, |e| e.position as usize);
        let active = Segment::from_parts(SegmentParts {
            base_offset: seg.base_offset,
            log_path: seg.log_path.clone(),
            index_path: seg.index_path.clone(),
            file,
            data_len: pos,
            capacity,
            next_offset: cut,
            max_timestamp: end.max_timestamp,
            index,
            time_index,
            index_interval_bytes: interval,
            sealed: false,
        })?;
        Ok((Arc::new(active), IndexCursor::new(interval, cursor_pos)))
    }
}

fn remove_if_there(fs: &dyn FileSystem, path: &Path) -> Result<(), StorageError> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, "remove")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_round_trips_and_damage_is_caught() {
        let b = encode(77);
        assert_eq!(&b[..4], b"MKTR");
        assert!(FORMAT.check_record(&b, LEN).is_ok());
        assert_eq!(u64_at(&b, 8), 77);
        for i in 0..LEN {
            let mut bad = b;
            bad[i] ^= 1;
            assert!(FORMAT.check_record(&bad, LEN).is_err(), "flip at byte {i}");
        }
    }
}
