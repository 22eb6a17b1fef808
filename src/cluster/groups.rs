//! Consumer groups in a cluster: committed offsets and each group's settled membership live in
//! the replicated metadata ([`MetadataCommand::CommitOffsets`], [`MetadataCommand::RecordGroup`]),
//! so a group survives the loss of its coordinator's broker: the next coordinator reads the
//! offsets from its image and resumes the group at the recorded generation.
//!
//! Only for a cluster: a single node keeps its offsets in its own files (`broker::groups`), and
//! these methods answer [`ClusterError::Internal`] there. Never decides who coordinates a group
//! ([`Cluster::coordinator_for`] does) nor runs the rebalance protocol (`broker::coordinator`).

use std::time::Duration;

use bytes::Bytes;

use super::metadata::{GroupMemberRecord, GroupMembership, GroupOffset, MetadataImage};
use super::{ApplyResult, Cluster, ClusterError, MetadataCommand, Mode, Node};
use crate::broker::coordinator::{SettledGroup, SettledMember};

/// How long a committed change may take to reach this broker's own image (it was committed on
/// the metadata leader, which may be another broker): a bound, not an expected time.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(5);

/// A committed offset as the Kafka handlers carry it: (topic, partition, offset, metadata).
pub(crate) type OffsetToCommit = (String, u32, i64, String);

impl Cluster {
    fn clustered_node(&self) -> Result<&Node, ClusterError> {
        match &self.mode {
            Mode::Node(n) => Ok(n),
            Mode::Single => {
                Err(ClusterError::Internal("group metadata asked of a single node".into()))
            }
        }
    }

    /// Commits a group's offsets through the metadata and returns, per offset, whether it was
    /// committed (false: its partition does not exist). Returns once the commit is in this
    /// broker's image too, so an OffsetFetch here right after sees it.
    pub(crate) async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[OffsetToCommit],
    ) -> Result<Vec<bool>, ClusterError> {
        let n = self.clustered_node()?;
        let image = n.image();
        let known: Vec<bool> =
            offsets.iter().map(|(t, p, _, _)| image.partition(t, *p).is_some()).collect();
        let wanted: Vec<GroupOffset> = offsets
            .iter()
            .zip(&known)
            .filter(|(_, k)| **k)
            .map(|((topic, partition, offset, metadata), _)| GroupOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                metadata: (!metadata.is_empty()).then(|| metadata.clone()),
            })
            .collect();
        if wanted.is_empty() {
            return Ok(known);
        }
        let cmd =
            MetadataCommand::CommitOffsets { group: group.to_owned(), offsets: wanted.clone() };
        if let ApplyResult::Rejected(reason) = n.propose(cmd).await? {
            // A partition deleted between the check above and the commit.
            return Err(ClusterError::Raft(format!("offset commit of group {group:?}: {reason}")));
        }
        let applied = |img: &MetadataImage| {
            wanted.iter().all(|o| {
                img.committed_offset(group, &o.topic, o.partition)
                    .is_some_and(|c| c.offset == o.offset)
            })
        };
        wait_local(n, applied).await;
        Ok(known)
    }

    /// The group's committed offset and metadata for a partition, from the applied metadata.
    pub(crate) fn group_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(i64, String)>, ClusterError> {
        let image = self.clustered_node()?.image();
        Ok(image
            .committed_offset(group, topic, partition)
            .map(|o| (o.offset, o.metadata.clone().unwrap_or_default())))
    }

    /// Every committed offset of the group: (topic, partition, offset), sorted.
    pub(crate) fn group_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(String, u32, i64)>, ClusterError> {
        let image = self.clustered_node()?.image();
        Ok(image
            .group_offsets
            .get(group)
            .map(|v| v.iter().map(|o| (o.topic.clone(), o.partition, o.offset)).collect())
            .unwrap_or_default())
    }

    /// Deletes the group's offsets and recorded membership; false when the metadata has
    /// neither. Whether it still has members is the coordinator's check, made before.
    pub(crate) async fn delete_group(&self, group: &str) -> Result<bool, ClusterError> {
        let n = self.clustered_node()?;
        match n.propose(MetadataCommand::DeleteGroup { group: group.to_owned() }).await? {
            ApplyResult::Rejected(_) => Ok(false),
            _ => {
                wait_local(n, |img| {
                    !img.group_offsets.contains_key(group) && !img.groups.contains_key(group)
                })
                .await;
                Ok(true)
            }
        }
    }

    /// Deletes some of the group's committed offsets; false when it has none at all.
    pub(crate) async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<bool, ClusterError> {
        let n = self.clustered_node()?;
        let cmd = MetadataCommand::DeleteOffsets {
            group: group.to_owned(),
            partitions: partitions.to_vec(),
        };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(_) => Ok(false),
            _ => {
                wait_local(n, |img| {
                    partitions.iter().all(|(t, p)| img.committed_offset(group, t, *p).is_none())
                })
                .await;
                Ok(true)
            }
        }
    }

    /// Every group the metadata knows (recorded or with committed offsets) that this broker
    /// coordinates, as last recorded: (name, state, protocol type), sorted. A group this broker
    /// holds live is better described by its coordinator.
    pub(crate) fn coordinated_groups(&self) -> Vec<(String, String, String)> {
        let Mode::Node(n) = &self.mode else {
            return Vec::new();
        };
        let image = n.image();
        let mut all: std::collections::BTreeMap<String, (String, String)> = image
            .group_offsets
            .keys()
            .map(|g| (g.clone(), ("Empty".to_owned(), String::new())))
            .collect();
        for (g, m) in &image.groups {
            let state = if m.members.is_empty() { "Empty" } else { "Stable" };
            all.insert(g.clone(), (state.to_owned(), m.protocol_type.clone()));
        }
        let me = self.node_id();
        all.into_iter()
            .filter(|(g, _)| self.coordinator_for(g) == me)
            .map(|(g, (state, protocol_type))| (g, state, protocol_type))
            .collect()
    }

    /// Every group the metadata records with members, sorted (empty on a single node).
    pub(crate) fn recorded_groups_with_members(&self) -> Vec<String> {
        let Mode::Node(n) = &self.mode else {
            return Vec::new();
        };
        let image = n.image();
        image.groups.iter().filter(|(_, m)| !m.members.is_empty()).map(|(g, _)| g.clone()).collect()
    }

    /// Every group the metadata knows (with committed offsets or a recorded membership),
    /// sorted; empty on a single node.
    pub(crate) fn known_groups(&self) -> Vec<String> {
        let Mode::Node(n) = &self.mode else {
            return Vec::new();
        };
        let image = n.image();
        let mut all: Vec<String> =
            image.group_offsets.keys().chain(image.groups.keys()).cloned().collect();
        all.sort();
        all.dedup();
        all
    }

    /// Records a group as its last completed rebalance (or its emptying) settled it. A newer
    /// generation recorded meanwhile (the group moved on elsewhere) wins: refused, and fine.
    pub(crate) async fn record_group(
        &self,
        group: &str,
        settled: &SettledGroup,
    ) -> Result<(), ClusterError> {
        let n = self.clustered_node()?;
        let membership = GroupMembership {
            generation: settled.generation,
            protocol_type: settled.protocol_type.clone(),
            protocol: settled.protocol.clone(),
            leader: settled.leader.clone(),
            members: settled
                .members
                .iter()
                .map(|m| GroupMemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: millis(m.session_timeout),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    metadata: m.metadata.to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        };
        let cmd = MetadataCommand::RecordGroup { group: group.to_owned(), membership };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) => {
                tracing::debug!(group, %reason, "group membership not recorded");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The group as last recorded, when its generation is newer than `known` (the generation
    /// this coordinator holds, if any): what [`Coordinator::install`] resumes.
    ///
    /// [`Coordinator::install`]: crate::broker::coordinator::Coordinator::install
    pub(crate) fn recorded_group(&self, group: &str, known: Option<i32>) -> Option<SettledGroup> {
        let Mode::Node(n) = &self.mode else {
            return None;
        };
        let image = n.image();
        let m = image.groups.get(group)?;
        if known.is_some_and(|k| k >= m.generation) {
            return None;
        }
        Some(SettledGroup {
            generation: m.generation,
            protocol_type: m.protocol_type.clone(),
            protocol: m.protocol.clone(),
            leader: m.leader.clone(),
            members: m
                .members
                .iter()
                .map(|r| SettledMember {
                    member_id: r.member_id.clone(),
                    group_instance_id: r.group_instance_id.clone(),
                    client_id: r.client_id.clone(),
                    client_host: r.client_host.clone(),
                    session_timeout: Duration::from_millis(r.session_timeout_ms.into()),
                    rebalance_timeout: Duration::from_millis(r.rebalance_timeout_ms.into()),
                    metadata: Bytes::from(r.metadata.clone()),
                    assignment: Bytes::from(r.assignment.clone()),
                })
                .collect(),
        })
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Waits (bounded) until this broker's image satisfies `done`. Past the bound the caller goes
/// on: the change is committed, only this broker's view of it is late.
async fn wait_local(n: &Node, done: impl Fn(&MetadataImage) -> bool) {
    let mut images = n.subscribe();
    let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
    loop {
        if done(&images.borrow_and_update()) {
            return;
        }
        match tokio::time::timeout_at(deadline, images.changed()).await {
            Ok(Ok(())) => {}
            // Raft stopped: nothing more will be applied.
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(
                    "a committed group change is not applied here after {LOCAL_APPLY_WAIT:?}"
                );
                return;
            }
        }
    }
}
