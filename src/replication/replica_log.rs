//! What replication needs of a partition's log, as a trait: the leader reads stored batches and
//! answers OffsetsForLeaderEpoch from it, a follower appends the leader's batches unchanged and
//! truncates where its log diverged. The storage layer's `Log` is the real one; keeping the
//! replication rules behind this seam lets them be tested over an in-memory log and, later, under
//! a deterministic simulation. Never decides anything itself.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use super::ReplicationError;
use crate::storage::StorageError;

/// One partition's log, as replication uses it. `Send + Sync`.
pub trait ReplicaLog: Send + Sync + 'static {
    /// The first offset that can be read.
    fn log_start(&self) -> u64;
    /// The written end: the offset the next record gets. A follower's appends return once they
    /// are as durable as the fsync policy promises, so for a follower this is its durable end.
    fn log_end(&self) -> u64;
    /// The end of what may be served (under `--fsync always`, the fdatasynced end): a leader's
    /// own position in the high watermark, and the limit of what it sends followers.
    fn visible_end(&self) -> u64;
    /// Stamps later leader appends with `epoch` and records it in the epoch cache.
    fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError>;
    /// The newest epoch in the epoch cache (the last fetched epoch, on a follower).
    fn latest_epoch(&self) -> Option<i32>;
    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` and where it ends here.
    fn epoch_end_offset(&self, epoch: i32) -> (i32, Option<u64>);
    /// Whole stored batches from the one holding `offset`, below [`ReplicaLog::visible_end`];
    /// empty at the end.
    fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError>;
    /// Bytes stored from the batch holding `offset` to the written end (from the log start when
    /// `offset` is below it): what a follower whose log ends at `offset` still has to copy.
    fn bytes_from(&self, offset: u64) -> Result<u64, StorageError>;
    /// Appends a leader's batches unchanged (offsets and epochs as stored); returns the new end.
    fn append_replica(&self, bytes: &[u8]) -> Result<u64, StorageError>;
    /// Removes every record at or past `offset` (to a batch boundary); durable on return.
    fn truncate_to(&self, offset: u64) -> Result<(), StorageError>;
    /// Moves the log start up to `offset` (a follower following its leader's DeleteRecords or
    /// retention); never back.
    fn advance_log_start(&self, offset: u64) -> Result<(), StorageError>;
    /// Drops every record and starts the log over, empty, at `offset` (past its end): a follower
    /// whose whole log lies below its leader's log start.
    fn restart_at(&self, offset: u64) -> Result<(), StorageError>;
}

/// Where the partitions' logs are: the broker, or a test's in-memory set.
pub trait PartitionLogs: Send + Sync + 'static {
    /// The log of `topic`/`partition` and the Notify signalled after each append to it.
    fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Arc<dyn ReplicaLog>, Arc<Notify>), ReplicationError>;
}
