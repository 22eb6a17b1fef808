//! What replication needs of a `Log` besides appends and reads: the leader epoch appends stamp
//! and the leader-epoch cache (Kafka's OffsetsForLeaderEpoch answer), and a follower's append of
//! batches exactly as its leader stored them. Never decides who leads or when to truncate (the
//! replication layer does); truncation itself is `truncate.rs`.

use std::sync::atomic::Ordering;

use super::{Log, Placed};
use crate::batch::BatchView;
use crate::record;
use crate::storage::epoch_cache::EpochCache;
use crate::storage::epoch_checkpoint;
use crate::storage::segment;
use crate::storage::{OffsetRange, StorageError};

impl Log {
    /// Stamps every later leader append with `epoch` and records `(epoch, next_offset)` in the
    /// partition's `leader-epoch-checkpoint` (fsynced) when it is new. Epochs never go back:
    /// an epoch older than the current one or the cache's latest is refused. Setting the current
    /// epoch again does nothing.
    pub fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        let _app = self.lock_appender()?;
        let current = self.leader_epoch.load(Ordering::Acquire);
        let latest = self.latest_epoch().unwrap_or(current);
        if epoch < 0 || epoch < current || epoch < latest {
            return Err(StorageError::EpochRegression { epoch, latest: current.max(latest) });
        }
        self.note_epochs(&[(epoch, self.next_offset())])?;
        self.leader_epoch.store(epoch, Ordering::Release);
        tracing::debug!(dir = %self.dir.display(), epoch, next_offset = self.next_offset(), "leader epoch set");
        Ok(())
    }

    /// The leader epoch appends stamp now (0 for a log that never had one set).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// The newest epoch in the leader-epoch cache (`None`: the log never had a record nor an
    /// epoch set).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock_epochs().latest()
    }

    /// Kafka's OffsetsForLeaderEpoch answer: the largest epoch at or below `epoch` that this log
    /// knows, and the offset where its records end (the start of the next epoch, or the log's
    /// written end for the latest). `(UNDEFINED_EPOCH, None)` for an epoch above all known ones.
    pub fn epoch_end_offset(&self, epoch: i32) -> (i32, Option<u64>) {
        let cache = self.lock_epochs();
        cache.end_offset_for(epoch, self.next_offset())
    }

    /// A copy of the leader-epoch cache (for tests and diagnostics).
    pub fn epoch_cache(&self) -> EpochCache {
        self.lock_epochs().clone()
    }

    /// A follower's append: RecordBatch v2s exactly as the leader stored them (base offsets
    /// assigned, leader epochs stamped, control, transactional and compacted batches as they
    /// are). Each batch's CRC-32C and header are checked; the first base offset must be the
    /// log's next offset and the batches must chain, with leader epochs that never go back
    /// (nor below the cache's latest). A bad input writes nothing and changes nothing. The bytes
    /// are written unchanged, in one write to one segment (so a follower fed the leader's read
    /// slices in order rolls where the leader did); producer state and the epoch cache follow
    /// them. Durable per the fsync policy when it returns (under `Always` after an fdatasync).
    pub fn append_replica(&self, bytes: &[u8]) -> Result<OffsetRange, StorageError> {
        let views = check_replica_batches(bytes)?;
        let mut app = self.lock_appender()?;
        let generation = self.truncations.load(Ordering::Acquire);
        let first = self.next_offset.load(Ordering::Relaxed);
        // Invariant: `check_replica_batches` returns at least one batch.
        let found = views[0].base_offset();
        if i64::try_from(first).ok() != Some(found) {
            return Err(StorageError::ReplicaOutOfSequence { batch: 0, expected: first, found });
        }
        let mut new_epochs: Vec<(i32, u64)> = Vec::new();
        let latest = self.latest_epoch();
        for v in &views {
            let e = v.partition_leader_epoch();
            let newest = new_epochs.last().map(|&(e, _)| e).or(latest);
            if newest.is_none_or(|n| e > n) {
                new_epochs.push((e, v.base_offset() as u64));
            } else if newest.is_some_and(|n| e < n) {
                return Err(StorageError::EpochRegression {
                    epoch: e,
                    latest: newest.unwrap_or(e),
                });
            }
        }
        // Before the records: a crash in between leaves an entry past the end, which open drops.
        self.note_epochs(&new_epochs)?;
        let plans: Vec<Placed> = views
            .iter()
            .map(|v| Placed {
                batch_bytes: v.len(),
                offsets: v.last_offset_delta() as u64 + 1,
                max_timestamp: v.max_timestamp(),
            })
            .collect();
        let range = self.write_batches(&mut app, bytes, first, &plans)?;
        // Before the lock is released: after a failover this replica's state dedupes retries.
        let now = record::now_ms();
        for v in &views {
            app.producers.replay(v, now);
        }
        if let Some(&(e, _)) = new_epochs.last() {
            self.leader_epoch.fetch_max(e, Ordering::AcqRel);
        }
        drop(app);
        self.after_append(range, generation)?;
        Ok(range)
    }

    /// Adds each `(epoch, start)` newer than the cache's latest to the cache and writes the
    /// checkpoint once if any was added. Holds the append lock (the caller's).
    pub(super) fn note_epochs(&self, epochs: &[(i32, u64)]) -> Result<(), StorageError> {
        let mut cache = self.lock_epochs();
        let mut next = cache.clone();
        for &(epoch, start) in epochs {
            if next.latest().is_none_or(|l| epoch > l) {
                next.assign(epoch, start);
            }
        }
        if next == *cache {
            return Ok(());
        }
        epoch_checkpoint::write(&*self.fs, &self.dir, &next)?;
        *cache = next;
        Ok(())
    }

    pub(super) fn lock_epochs(&self) -> std::sync::MutexGuard<'_, EpochCache> {
        // The cache is replaced whole, so a panic never leaves it half changed.
        self.epochs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Checks a replica's record set: whole batches, each with a good CRC-32C, a known codec, a sane
/// record count and offset range, chaining from the first one's base offset. Returns their views.
fn check_replica_batches(bytes: &[u8]) -> Result<Vec<BatchView<'_>>, StorageError> {
    let mut views = Vec::new();
    let mut pos = 0;
    let mut expected: Option<u64> = None;
    while pos < bytes.len() {
        let i = views.len();
        let invalid = |source| StorageError::InvalidBatch { batch: i, source };
        let view = BatchView::new(&bytes[pos..]).map_err(invalid)?;
        let base = view.base_offset();
        let at = match expected {
            Some(e) => e,
            None if base >= 0 => base as u64,
            None => {
                return Err(StorageError::ReplicaOutOfSequence {
                    batch: i,
                    expected: 0,
                    found: base,
                });
            }
        };
        // The same checks recovery makes of a stored batch (chain, sane offsets).
        segment::batch_at(view.as_bytes(), at).map_err(|_| StorageError::ReplicaOutOfSequence {
            batch: i,
            expected: at,
            found: base,
        })?;
        view.verify_crc().map_err(invalid)?;
        view.compression().map_err(invalid)?;
        let count = view.records_count();
        if count < 0 || i64::from(count) > i64::from(view.last_offset_delta()) + 1 {
            return Err(StorageError::UnsupportedBatch {
                batch: i,
                reason: "a record count that its offset range cannot hold",
            });
        }
        if view.partition_leader_epoch() < 0 {
            return Err(StorageError::UnsupportedBatch {
                batch: i,
                reason: "a batch without a leader epoch (a leader stamps every batch it stores)",
            });
        }
        expected = Some(view.last_offset() as u64 + 1);
        pos += view.len();
        views.push(view);
    }
    if views.is_empty() {
        return Err(StorageError::UnsupportedBatch { batch: 0, reason: "no batch" });
    }
    Ok(views)
}
