//! Moving a partition's replicas (Kafka's `kafka-reassign-partitions.sh`, KIP-455): starting a
//! move to a target replica list, cancelling one, and listing the moves under way with how far
//! each added replica still has to copy. The rules (add, catch up, join the ISR, then drop the
//! old replicas and move the leader) are the metadata's ([`MetadataImage::apply`]); this file
//! only checks a request, proposes it and reports. Never touches logs or the network itself.
//!
//! [`MetadataImage::apply`]: super::metadata::MetadataImage::apply

use serde::{Deserialize, Serialize};

use super::metadata::{ApplyResult, MetadataCommand, NodeId};
use super::{Cluster, ClusterError, Mode};
use crate::broker::BrokerError;

/// A partition move under way, as this broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentView {
    pub topic: String,
    pub partition: u32,
    /// Where it is going (the first is the preferred leader).
    pub target: Vec<i32>,
    /// Replicas being added (catching up) and dropped once they are in sync.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: Option<i32>,
    /// Per added replica not yet in sync: what it still has to copy, as the leader counts it
    /// (empty when this broker does not lead the partition).
    pub behind: Vec<ReplicaCopy>,
}

/// How much an added replica still has to copy from its partition's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCopy {
    pub replica: i32,
    pub records: u64,
    /// Bytes still to copy, and the bytes of the leader's whole log (so the share done is
    /// `1 - bytes / log_bytes`). Both known, or neither: a leader of an earlier release counts
    /// records only.
    pub bytes: Option<u64>,
    pub log_bytes: Option<u64>,
}

impl Cluster {
    /// Starts moving `topic`'s `partition` to the `target` replicas, setting the cluster's
    /// reassignment throttle (bytes/s per broker) in the same step when one is given. Returns
    /// once the move is committed (not done: the new replicas catch up in the background; see
    /// [`Cluster::reassignments`]).
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        target: &[i32],
        throttle_bytes_per_s: Option<u64>,
    ) -> Result<(), ClusterError> {
        let invalid = |reason: String| ClusterError::Reassignment {
            topic: topic.to_owned(),
            partition,
            reason,
        };
        let n = match &self.mode {
            Mode::Single => {
                self.broker.partition_count(topic)?;
                return Err(invalid(
                    "a single broker holds every partition itself: start brokers with \
                     --controllers to move replicas"
                        .into(),
                ));
            }
            Mode::Node(n) => n,
        };
        let image = n.image();
        let Some(t) = image.topics.get(topic) else {
            return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
        };
        if partition as usize >= t.partitions.len() {
            return Err(BrokerError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: t.partitions.len() as u32,
            }
            .into());
        }
        let mut ids = Vec::with_capacity(target.len());
        for &r in target {
            let id = NodeId::try_from(r)
                .ok()
                .filter(|id| image.brokers.contains_key(id))
                .ok_or_else(|| invalid(format!("broker {r} is not in the cluster")))?;
            ids.push(id);
        }
        let cmd = MetadataCommand::ReassignPartition {
            topic: topic.to_owned(),
            partition,
            target: ids,
            throttle_bytes_per_s,
        };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) => Err(invalid(reason)),
            _ => {
                tracing::info!(
                    topic,
                    partition,
                    ?target,
                    ?throttle_bytes_per_s,
                    "partition reassignment started"
                );
                Ok(())
            }
        }
    }

    /// Changes the throttle of the moves under way; refused when nothing moves (the end of the
    /// last move lifts it by itself).
    pub async fn set_reassignment_throttle(&self, bytes_per_s: u64) -> Result<(), ClusterError> {
        let refused = |reason: String| ClusterError::Throttle { reason };
        let n = match &self.mode {
            Mode::Single => {
                return Err(refused("a single broker moves no replicas to throttle".into()));
            }
            Mode::Node(n) => n,
        };
        let cmd = MetadataCommand::SetReassignmentThrottle { bytes_per_s: Some(bytes_per_s) };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) => Err(refused(reason)),
            _ => {
                tracing::info!(bytes_per_s, "reassignment throttle set");
                Ok(())
            }
        }
    }

    /// The reassignment throttle in force (bytes/s per broker), if any.
    pub fn reassignment_throttle(&self) -> Option<u64> {
        match &self.mode {
            Mode::Single => None,
            Mode::Node(n) => n.image().reassignment_throttle,
        }
    }

    /// Cancels the move of `topic`'s `partition` under way: the added replicas are dropped.
    pub async fn cancel_reassignment(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(), ClusterError> {
        let n = match &self.mode {
            Mode::Single => {
                self.broker.partition_count(topic)?;
                return Err(ClusterError::Reassignment {
                    topic: topic.to_owned(),
                    partition,
                    reason: "no reassignment under way".into(),
                });
            }
            Mode::Node(n) => n,
        };
        let cmd = MetadataCommand::CancelReassignment { topic: topic.to_owned(), partition };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) => {
                Err(ClusterError::Reassignment { topic: topic.to_owned(), partition, reason })
            }
            _ => {
                tracing::info!(topic, partition, "partition reassignment cancelled");
                Ok(())
            }
        }
    }

    /// Every move under way, sorted; with copy progress for the partitions this broker leads.
    pub fn reassignments(&self) -> Vec<ReassignmentView> {
        let Mode::Node(n) = &self.mode else {
            return Vec::new();
        };
        let image = n.image();
        let ids = |v: &[NodeId]| v.iter().map(|&r| r as i32).collect::<Vec<i32>>();
        image
            .reassignments()
            .into_iter()
            .filter_map(|(topic, partition)| {
                let p = image.partition(&topic, partition)?;
                let waiting: Vec<NodeId> =
                    p.adding.iter().copied().filter(|r| !p.isr.contains(r)).collect();
                let behind = if waiting.is_empty() {
                    Vec::new()
                } else {
                    n.replicas
                        .copy_progress(&topic, partition)
                        .into_iter()
                        .filter(|c| waiting.contains(&c.replica))
                        .map(|c| ReplicaCopy {
                            replica: c.replica as i32,
                            records: c.records,
                            bytes: c.bytes,
                            log_bytes: c.log_bytes,
                        })
                        .collect()
                };
                Some(ReassignmentView {
                    target: ids(&p.target()),
                    adding: ids(&p.adding),
                    removing: ids(&p.removing),
                    isr: ids(&p.isr),
                    leader: p.leader.map(|l| l as i32),
                    behind,
                    topic,
                    partition,
                })
            })
            .collect()
    }
}
