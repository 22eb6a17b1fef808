//! The real [`ReplicaLog`] and [`PartitionLogs`]: the storage layer's `Log` and the broker's
//! partitions. Adapters only: every rule stays in the leader and follower.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use super::ReplicationError;
use super::replica_log::{PartitionLogs, ReplicaLog};
use crate::broker::Broker;
use crate::storage::{Log, StorageError};

impl ReplicaLog for Log {
    fn log_start(&self) -> u64 {
        self.log_start_offset()
    }
    fn log_end(&self) -> u64 {
        self.next_offset()
    }
    fn visible_end(&self) -> u64 {
        Log::visible_end(self)
    }
    fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        Log::set_leader_epoch(self, epoch)
    }
    fn latest_epoch(&self) -> Option<i32> {
        Log::latest_epoch(self)
    }
    fn epoch_end_offset(&self, epoch: i32) -> (i32, Option<u64>) {
        Log::epoch_end_offset(self, epoch)
    }
    fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        // The slice keeps its segment mapped: the bytes go out without a copy here.
        Ok(Bytes::from_owner(Log::read(self, offset, max_bytes)?))
    }
    fn bytes_from(&self, offset: u64) -> Result<u64, StorageError> {
        Log::bytes_from(self, offset)
    }
    fn append_replica(&self, bytes: &[u8]) -> Result<u64, StorageError> {
        Ok(Log::append_replica(self, bytes)?.next)
    }
    fn truncate_to(&self, offset: u64) -> Result<(), StorageError> {
        Log::truncate_to(self, offset)
    }
    fn advance_log_start(&self, offset: u64) -> Result<(), StorageError> {
        Log::trim_before(self, offset).map(|_| ())
    }
    fn restart_at(&self, offset: u64) -> Result<(), StorageError> {
        Log::restart_at(self, offset)
    }
}

impl PartitionLogs for Broker {
    fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Arc<dyn ReplicaLog>, Arc<Notify>), ReplicationError> {
        let err = |source| ReplicationError::Broker { topic: topic.to_owned(), partition, source };
        let log = self.partition_log(topic, partition).map_err(err)?;
        let appended = self.partition_appended(topic, partition).map_err(err)?;
        Ok((log, appended))
    }
}
