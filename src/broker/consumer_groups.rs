//! The broker's consumer-group surface: committed offsets (kept as committed, Kafka's sentinels
//! resolved to positions for native readers), the live members and state the coordinator keeps,
//! and deleting groups or resetting their offsets. Never runs the rebalance protocol itself
//! (`coordinator`) nor writes the offsets files (`groups`).

use serde::{Deserialize, Serialize};

use super::*;

/// One partition a consumer group tracks: its committed offset, the log end and the lag between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    /// The committed offset as a read position: a Kafka sentinel commit resolved (-2 the log
    /// start, -1 the log end), see [`Broker::group_offsets`].
    pub committed_offset: u64,
    /// `None` when the topic or partition no longer exists (its lag is then unknown).
    pub log_end_offset: Option<u64>,
    pub lag: Option<u64>,
}

impl PartitionLag {
    pub fn new(topic: String, partition: u32, committed_offset: u64, end: Option<u64>) -> Self {
        PartitionLag {
            lag: end.map(|e| e.saturating_sub(committed_offset)),
            log_end_offset: end,
            topic,
            partition,
            committed_offset,
        }
    }
}

/// A consumer group's offsets and lag: the one document that `minikafka group describe --json`
/// and `GET /api/groups/{group}` both print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLag {
    pub group: String,
    /// The group's state as Kafka names it (`Stable`, `PreparingRebalance`, ...); `Empty` for a
    /// group with committed offsets and no members.
    #[serde(default = "empty_state")]
    pub state: String,
    /// Member ids of a live Kafka consumer group; native groups have none (offsets only).
    pub members: Vec<String>,
    /// The same members with their client, host and assigned partitions.
    #[serde(default)]
    pub member_details: Vec<GroupMember>,
    pub total_lag: u64,
    pub offsets: Vec<PartitionLag>,
}

fn empty_state() -> String {
    "Empty".to_string()
}

impl GroupLag {
    /// Sorts the partitions by topic and partition and adds up the known lags.
    pub fn new(group: String, members: Vec<String>, mut offsets: Vec<PartitionLag>) -> Self {
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let total_lag = offsets.iter().filter_map(|o| o.lag).sum();
        GroupLag {
            group,
            state: empty_state(),
            members,
            member_details: Vec::new(),
            total_lag,
            offsets,
        }
    }

    /// Adds the live state and members (the ids in `members` follow the details).
    pub fn with_status(mut self, status: GroupStatus) -> Self {
        self.state = status.state;
        self.members = status.members.iter().map(|m| m.member_id.clone()).collect();
        self.member_details = status.members;
        self
    }
}

/// One live member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    /// The address of the member's connection.
    pub client_host: String,
    /// `(topic, partitions)` the group's leader assigned to it, empty before the assignment or
    /// when the protocol is not the consumer protocol.
    pub assigned: Vec<(String, Vec<u32>)>,
}

/// A consumer group's state and live members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// As Kafka names it: Empty, PreparingRebalance, CompletingRebalance, Stable (Dead for a
    /// group the broker does not know).
    pub state: String,
    pub members: Vec<GroupMember>,
}

impl Broker {
    /// Records `group`'s position in a partition; durable (fsynced) when it returns.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        validate_topic_name(topic)?;
        self.check_open()?;
        self.topic(topic)?.partition(partition)?;
        self.groups.commit(group, topic, partition, position_to_committed(offset))
    }

    /// Records many of `group`'s positions with one durable write of the group's file. Each
    /// `(topic, partition, offset)` gets its own check (unknown topic or partition); the outer
    /// error is the write's, shared by every entry that passed. File work: call it off the async
    /// workers.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(String, u32, u64)],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let with: Vec<(String, u32, i64, String)> = offsets
            .iter()
            .map(|(t, p, o)| (t.clone(), *p, position_to_committed(*o), String::new()))
            .collect();
        self.commit_offsets_with_metadata(group, &with)
    }

    /// [`Broker::commit_offsets`] as Kafka's OffsetCommit does it: each offset is an i64 kept as
    /// sent (a negative sentinel too, see [`EARLIEST_SENTINEL`]) with its metadata string, both
    /// returned unchanged by [`Broker::committed_offset_with_metadata`].
    pub fn commit_offsets_with_metadata(
        &self,
        group: &str,
        offsets: &[(String, u32, i64, String)],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        validate_group_name(group)?;
        self.check_open()?;
        let checks: Vec<Result<(), BrokerError>> = offsets
            .iter()
            .map(|(t, p, _, _)| {
                validate_topic_name(t).and_then(|()| self.topic(t)?.partition(*p).map(|_| ()))
            })
            .collect();
        let valid =
            offsets.iter().zip(&checks).filter(|(_, c)| c.is_ok()).map(|((t, p, o, m), _)| {
                (t.clone(), *p, Committed { offset: *o, metadata: m.clone() })
            });
        self.groups.commit_many(group, valid)?;
        Ok(checks)
    }

    /// `group`'s position in a partition: its committed offset resolved as a Kafka consumer
    /// reads it (a committed -2 is the log start now, -1 the log end now, see
    /// `Broker::resolve_committed`); `None` when it has none.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, BrokerError> {
        Ok(self
            .committed_offset_with_metadata(group, topic, partition)?
            .and_then(|(o, _)| self.resolve_committed(topic, partition, o)))
    }

    /// `group`'s committed offset in a partition exactly as committed (a negative sentinel
    /// too), with the metadata committed with it: what Kafka's OffsetFetch returns.
    pub fn committed_offset_with_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(i64, String)>, BrokerError> {
        validate_group_name(group)?;
        validate_topic_name(topic)?;
        Ok(self.groups.committed(group, topic, partition)?.map(|c| (c.offset, c.metadata)))
    }

    /// The consumer-group coordinator: live membership, driven by the Kafka listener.
    pub(crate) fn coordinator(&self) -> std::sync::MutexGuard<'_, Coordinator> {
        // A panic while holding the lock would be a bug in the state machine; its state is still
        // the best we have, so keep serving rather than poisoning every group.
        lock(&self.coordinator)
    }

    /// The live member ids of a group (empty when it has none).
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.coordinator().members(group)
    }

    /// A group's state and live members. `assigned` reads a member's assignment bytes (the
    /// Kafka consumer protocol: the broker does not know the format).
    pub fn group_status(
        &self,
        group: &str,
        assigned: impl Fn(&[u8]) -> Vec<(String, Vec<u32>)>,
    ) -> GroupStatus {
        let described = self.coordinator().describe(group);
        match described {
            Some(d) => GroupStatus {
                state: d.state.name().to_string(),
                members: d
                    .members
                    .into_iter()
                    .map(|m| GroupMember {
                        assigned: assigned(&m.assignment),
                        member_id: m.member_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                    })
                    .collect(),
            },
            None if self.groups.exists(group) => {
                GroupStatus { state: "Empty".to_string(), members: Vec::new() }
            }
            None => GroupStatus { state: "Dead".to_string(), members: Vec::new() },
        }
    }

    /// Deletes a group: its committed offsets and what the coordinator remembers. Refused
    /// (`GroupNotEmpty`, naming the members) while it has live members; `UnknownGroup` when it
    /// has neither members nor offsets. File work: call it off the async workers.
    pub fn delete_group(&self, group: &str) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        self.check_open()?;
        // Held across the file work so no member joins between the check and the delete.
        let mut coordinator = self.coordinator();
        let members = coordinator.members(group);
        if !members.is_empty() {
            return Err(BrokerError::GroupNotEmpty { group: group.to_owned(), members });
        }
        let known = coordinator.describe(group).is_some();
        if !known && !self.groups.exists(group) {
            return Err(BrokerError::UnknownGroup { group: group.to_owned() });
        }
        self.groups.delete(group)?;
        coordinator.forget(group);
        Ok(())
    }

    /// Deletes some of a group's committed offsets (Kafka's OffsetDelete); whether a live member
    /// still reads them is the caller's check. File work: call it off the async workers.
    pub fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        self.check_open()?;
        if !self.groups.exists(group) && self.coordinator().describe(group).is_none() {
            return Err(BrokerError::UnknownGroup { group: group.to_owned() });
        }
        self.groups.delete_offsets(group, partitions)
    }

    /// Sets a group's positions (`minikafka group reset-offsets --execute`): every
    /// `(topic, partition, offset)` is checked, then all are written with one durable write, or
    /// none is. Refused with `GroupNotEmpty` while the group has live members, which would
    /// overwrite the new positions with their own commits. File work: call it off the async
    /// workers.
    pub fn reset_offsets(
        &self,
        group: &str,
        offsets: &[(String, u32, u64)],
    ) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        self.check_open()?;
        for (t, p, _) in offsets {
            validate_topic_name(t)?;
            self.topic(t)?.partition(*p)?;
        }
        // Held across the write so no member joins between the check and the commit.
        let coordinator = self.coordinator();
        let members = coordinator.members(group);
        if !members.is_empty() {
            return Err(BrokerError::GroupNotEmpty { group: group.to_owned(), members });
        }
        let entries = offsets.iter().map(|(t, p, o)| {
            (
                t.clone(),
                *p,
                Committed { offset: position_to_committed(*o), metadata: String::new() },
            )
        });
        self.groups.commit_many(group, entries)
    }

    /// Every `(topic, partition, position)` of `group`, sorted: its committed offsets resolved
    /// as a Kafka consumer reads them (see `Broker::resolve_committed`). A partition whose
    /// commit resolves to no position is left out, as if it had none.
    pub fn group_offsets(&self, group: &str) -> Result<Vec<(String, u32, u64)>, BrokerError> {
        Ok(self
            .groups
            .offsets(group)?
            .into_iter()
            .filter_map(|(t, p, o)| self.resolve_committed(&t, p, o).map(|pos| (t, p, pos)))
            .collect())
    }

    /// Every `(topic, partition, offset)` `group` has committed, exactly as committed (negative
    /// sentinels too), sorted: what Kafka's OffsetFetch of all partitions returns.
    pub fn group_offsets_as_committed(
        &self,
        group: &str,
    ) -> Result<Vec<(String, u32, i64)>, BrokerError> {
        self.groups.offsets(group)
    }

    /// The one place a committed offset becomes a read position, the way Kafka consumers read
    /// one: a non-negative offset is itself, [`EARLIEST_SENTINEL`] (-2) the partition's log
    /// start now, [`LATEST_SENTINEL`] (-1) its log end now, and any other negative offset no
    /// position (as if nothing were committed). A sentinel of a partition that is unknown or
    /// offline has no position either: its log is not there to resolve it against.
    pub(crate) fn resolve_committed(
        &self,
        topic: &str,
        partition: u32,
        committed: i64,
    ) -> Option<u64> {
        if committed >= 0 {
            return resolve_committed(committed, 0, 0);
        }
        let p = match self.topic(topic).and_then(|t| t.partition(partition).cloned()) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(topic, partition, committed, "committed sentinel unresolved: {e}");
                return None;
            }
        };
        resolve_committed(committed, p.log.log_start_offset(), p.log.next_offset())
    }

    /// Groups that have committed offsets, sorted.
    pub fn list_groups(&self) -> Vec<String> {
        self.groups.list()
    }

    /// Every group: those with live members (from the coordinator, with their state and
    /// protocol type) and those with committed offsets only (`Empty`, an empty protocol type, as
    /// Kafka lists a "simple" group), sorted by name.
    pub fn list_group_states(&self) -> Vec<(String, String, String)> {
        let mut all: BTreeMap<String, (String, String)> = self
            .groups
            .list()
            .into_iter()
            .map(|g| (g, ("Empty".to_string(), String::new())))
            .collect();
        for (g, state, protocol_type) in self.coordinator().list() {
            all.insert(g, (state.name().to_string(), protocol_type));
        }
        all.into_iter().map(|(g, (s, p))| (g, s, p)).collect()
    }

    /// Groups whose file could not be loaded at start-up, with the error naming the file, sorted.
    pub fn offline_groups(&self) -> Vec<(String, String)> {
        self.groups.offline()
    }
}
