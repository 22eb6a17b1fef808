//! What the replication and cluster layers need of the broker's partitions: a partition's `Log`
//! and its append wake-up, a follower's append and truncation with the wake-ups fetches wait on,
//! and creating a topic with the id the cluster gave it. Never decides who leads, what to
//! replicate or where to truncate (replication does), never touches the metadata log (cluster).

use std::sync::Arc;

use tokio::sync::Notify;

use super::topic_config::TopicConfigs;
use super::*;
use crate::storage::Log;

impl Broker {
    /// The log of `topic`'s `partition`.
    pub fn partition_log(&self, topic: &str, partition: u32) -> Result<Arc<Log>, BrokerError> {
        Ok(self.partition_handle(topic, partition)?.log.clone())
    }

    /// The wake-up signalled after every append to the partition (leader or replica), a
    /// truncation, and when it closes: what long polls wait on (register with `notified()`
    /// before reading, as `Broker::fetch` does).
    pub fn partition_appended(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Notify>, BrokerError> {
        Ok(self.partition_handle(topic, partition)?.appended.clone())
    }

    /// A follower's append of its leader's stored batches ([`Log::append_replica`]), waking the
    /// partition's long polls. Under `FsyncPolicy::Always` it blocks on an fdatasync (in
    /// `block_in_place` on a multi-threaded runtime).
    pub fn append_replica(
        &self,
        topic: &str,
        partition: u32,
        bytes: &[u8],
    ) -> Result<OffsetRange, BrokerError> {
        let p = self.partition_handle(topic, partition)?;
        let blocks = matches!(self.config.log.fsync, FsyncPolicy::Always);
        let range = self
            .run_append(blocks, || p.log.append_replica(bytes))
            .map_err(|source| self.partition_error(topic, partition, &p, source))?;
        p.appended.notify_waiters();
        Ok(range)
    }

    /// [`Log::truncate_to`] on the partition, waking its long polls so they read again.
    pub fn truncate_partition(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), BrokerError> {
        let p = self.partition_handle(topic, partition)?;
        self.run_append(true, || p.log.truncate_to(offset))
            .map_err(|source| self.partition_error(topic, partition, &p, source))?;
        p.appended.notify_waiters();
        Ok(())
    }

    /// Creates a topic with the id the cluster gave it, reconciling the local state with the
    /// metadata: a topic of that name and id that exists already is described, not an error;
    /// one of that name with another id is `TopicAlreadyExists` (the caller deletes it first).
    pub fn create_topic_with_id(
        &self,
        name: &str,
        id: [u8; 16],
        partitions: u32,
        configs: TopicConfigs,
    ) -> Result<TopicDescription, BrokerError> {
        validate_topic_name(name)?;
        if let Ok(t) = self.topic(name)
            && t.id == id
        {
            return Ok(t.describe());
        }
        match self.create_topic_as(name, Some(id), partitions, configs, false) {
            // Created by a concurrent call with the same id meanwhile.
            Err(BrokerError::TopicAlreadyExists { .. })
                if self.topic(name).is_ok_and(|t| t.id == id) =>
            {
                Ok(self.topic(name)?.describe())
            }
            other => other,
        }
    }

    fn partition_handle(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<topic::Partition>, BrokerError> {
        validate_topic_name(topic)?;
        Ok(self.topic(topic)?.partition(partition)?.clone())
    }

    fn partition_error(
        &self,
        topic: &str,
        partition: u32,
        p: &topic::Partition,
        source: StorageError,
    ) -> BrokerError {
        match source {
            StorageError::Closed { .. } if p.is_closed() => {
                if self.shutting_down.load(Ordering::SeqCst) {
                    BrokerError::ShuttingDown
                } else {
                    BrokerError::UnknownTopic { name: topic.to_owned() }
                }
            }
            source => BrokerError::Storage { topic: topic.to_owned(), partition, source },
        }
    }
}
