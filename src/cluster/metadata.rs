//! The cluster's metadata as a deterministic state machine: the brokers and whether each is fenced,
//! the topics with, per partition, its replicas, leader, leader epoch, partition epoch and ISR, the
//! producer-id blocks and the committed group offsets. Every node applies the same committed
//! [`MetadataCommand`]s in the same order (the openraft log) and so holds the same
//! [`MetadataImage`]; the leadership rules (election only from the ISR, only of an unfenced broker,
//! epoch + 1, no unclean election; ISR changes as compare-and-set) live here, in one function.
//!
//! Plain serde types and pure code: never any I/O, clock, randomness or openraft type. A rejected
//! command leaves the image untouched, so a replica that rejects it stays identical to the others.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A broker's id, never reused; Kafka's broker id (an `i32` on the wire) is the same number.
pub type NodeId = u64;

/// The whole replicated metadata, as of one applied raft log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<NodeId, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Highest leader epoch a topic name ever had: a re-created topic starts above it, so clients
    /// that cached the old topic's epochs never see one go backwards (librdkafka ignores those).
    pub epoch_floor: BTreeMap<String, i32>,
    /// Producer-id blocks are handed out from here.
    pub next_producer_id: i64,
    /// Committed offsets per group, one entry per (topic, partition), sorted by it.
    pub group_offsets: BTreeMap<String, Vec<GroupOffset>>,
    /// Each group's membership as of its last completed rebalance, so that a new coordinator
    /// resumes the group at that generation. Absent from images written before it existed.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupMembership>,
    /// The replication throttle of partition moves, in bytes per second per broker: what a
    /// broker's replicas being added (and not yet in sync) may fetch, together. Set only while a
    /// move is under way, and cleared by the command that ends the last one, so that a forgotten
    /// throttle never slows a later catch-up. Absent from images written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassignment_throttle: Option<u64>,
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: NodeId,
    /// Raft log index of its latest registration: the broker epoch. Heartbeats, unfencing and
    /// controlled shutdown name it, so a message from an older incarnation changes nothing.
    pub incarnation: u64,
    /// Broker-to-broker address (raft and replica fetches).
    pub cluster_addr: String,
    pub native_addr: Option<String>,
    pub kafka_addr: Option<String>,
    /// A fenced broker leads nothing and is in no ISR (except as the last member of an offline
    /// partition's ISR). Registration starts fenced; the controller unfences on a heartbeat.
    pub fenced: bool,
    /// Being decommissioned (`cluster decommission`): no new replica is placed on it, and once
    /// it holds none it is fenced for good (until recommissioned), a restart included. Absent
    /// from images written before it existed.
    #[serde(default)]
    pub decommissioned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// `None`: offline (no ISR member is alive; no unclean election).
    pub leader: Option<NodeId>,
    /// Rises on every change of leader (to none included) and never goes back.
    pub leader_epoch: i32,
    /// Rises on every change of leader or ISR: the compare-and-set token of `AlterPartition`.
    pub partition_epoch: i32,
    /// In-sync replicas: never empty, a subset of `replicas`, holds the leader when there is one.
    pub isr: Vec<NodeId>,
    /// A reassignment under way (Kafka's KIP-455): replicas being added, which catch up as
    /// followers. `replicas` is the target followed by `removing` until every target replica is
    /// in sync; then `replicas` becomes the target. Absent from images before reassignments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// Replicas the reassignment under way drops once the target is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
    /// The replicas before the reassignment under way, in their order: what a cancel restores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original: Vec<NodeId>,
}

impl PartitionRecord {
    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas it will have: the target of the reassignment under way, or its replicas.
    pub fn target(&self) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }

    /// The replication factor in force, as Kafka counts it during a move: the replicas that
    /// are not being added. A move never raises the bar by itself (the default
    /// `min.insync.replicas`, under-replication) while its new replicas copy.
    pub fn replication_factor(&self) -> usize {
        self.replicas.iter().filter(|r| !self.adding.contains(r)).count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: Option<String>,
}

/// A consumer group as its coordinator last settled it: the generation and, for a Stable group,
/// every member with what it subscribed to and what it was assigned. No members: the group is
/// Empty, and only its generation is kept (generations never go back).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub generation: i32,
    pub protocol_type: String,
    /// The chosen protocol (the assignor).
    pub protocol: String,
    pub leader: String,
    /// Sorted by member id.
    pub members: Vec<GroupMemberRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// The member's metadata for the chosen protocol (a consumer's subscription).
    pub metadata: Vec<u8>,
    /// What the leader assigned it.
    pub assignment: Vec<u8>,
}

/// Most members a recorded group may hold (the coordinator's own limit).
pub const MAX_RECORDED_MEMBERS: usize = 1_000;

/// A change to the metadata, proposed through raft and applied by [`MetadataImage::apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// A broker (re)starting. It is fenced until the controller unfences it. A re-registration
    /// (a restart) first takes away what the previous incarnation held, like `FenceBroker`: its
    /// log may have lost what it had not synced, so it rejoins the ISRs only by catching up.
    RegisterBroker {
        id: NodeId,
        cluster_addr: String,
        native_addr: Option<String>,
        kafka_addr: Option<String>,
    },
    /// The registered incarnation `incarnation` of `id` heartbeats: it may lead and follow again.
    /// It becomes leader of every offline partition whose ISR holds it.
    UnfenceBroker { id: NodeId, incarnation: u64 },
    /// Fences `id` and, in the same step, elects a new leader (from the ISR, unfenced only, in
    /// replica order, epoch + 1) for every partition it led, and removes it from every ISR it is
    /// in (unless it is the last member: then the partition is offline, leader None, ISR kept — no
    /// unclean election).
    FenceBroker { id: NodeId },
    /// Controlled shutdown: like `FenceBroker`, asked for by the broker itself.
    ShutdownBroker { id: NodeId, incarnation: u64 },
    CreateTopic {
        name: String,
        id: [u8; 16],
        /// One replica list per partition.
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
    },
    /// Removes the topic and the offsets groups committed for it; its name keeps its epoch floor.
    DeleteTopic { name: String },
    /// Replaces the topic's whole config map.
    AlterTopicConfigs { name: String, configs: BTreeMap<String, String> },
    /// Appends partitions (one replica list each) to an existing topic.
    AddPartitions { name: String, replicas: Vec<Vec<NodeId>> },
    /// The leader's ISR change: applied only if (leader, leader_epoch, partition_epoch) match
    /// (compare-and-set); partition_epoch + 1.
    AlterPartition {
        topic: String,
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// A block of `count` fresh producer ids: `first..first + count`.
    AllocateProducerIds { count: i64 },
    /// Upserts the group's committed offsets; every (topic, partition) must exist.
    CommitOffsets { group: String, offsets: Vec<GroupOffset> },
    /// Removes the group's committed offsets and recorded membership.
    DeleteGroup { group: String },
    /// Removes some of the group's committed offsets (Kafka's OffsetDelete); ones it does not
    /// have are no error.
    DeleteOffsets { group: String, partitions: Vec<(String, u32)> },
    /// Records the group's membership after a completed rebalance (or its emptying). Refused
    /// when older than the recorded generation: a coordinator that lost the group to another
    /// must not take it back in time.
    RecordGroup { group: String, membership: GroupMembership },
    /// Preferred leader election (Kafka's): each listed partition whose first replica is live,
    /// in the ISR and not already its leader gets it as leader (leader epoch + 1); the others
    /// stay as they are (never a leader from outside the ISR). Rejected when none can move.
    ElectPreferredLeaders { partitions: Vec<(String, u32)> },
    /// Moves a partition to `target` replicas (the first is its preferred leader). Replicas not
    /// in the current set are added and catch up as followers; once every target replica is in
    /// sync, the others are dropped (and the leader moves if it is one of them). Refused while
    /// another reassignment of the partition is under way. A target that only reorders the
    /// replicas (or only drops some) takes effect at once. `throttle_bytes_per_s` (when given)
    /// becomes the [`MetadataImage::reassignment_throttle`] in the same step, so that no move
    /// ending in between can clear it before this one starts (absent from older commands).
    ReassignPartition {
        topic: String,
        partition: u32,
        target: Vec<NodeId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        throttle_bytes_per_s: Option<u64>,
    },
    /// Cancels the reassignment under way: the added replicas are dropped again.
    CancelReassignment { topic: String, partition: u32 },
    /// Marks `id` decommissioned: no new replica goes to it, and it is fenced (and stays so) as
    /// soon as it holds no replica. Refused while a move under way adds it somewhere. Marking a
    /// marked broker again changes nothing.
    DecommissionBroker { id: NodeId },
    /// Takes a decommission back: the broker takes replicas again and the controller unfences it
    /// on its next heartbeat.
    RecommissionBroker { id: NodeId },
    /// Changes the throttle of the moves under way (`None` lifts it). Refused for a rate of zero,
    /// and for a rate when no move is under way (nothing would ever clear it).
    SetReassignmentThrottle { bytes_per_s: Option<u64> },
}

/// What applying a command did, returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    Done,
    ProducerIds {
        first: i64,
    },
    /// Not applied (the image is unchanged), with the reason.
    Rejected(String),
}

fn reject(reason: impl Into<String>) -> ApplyResult {
    ApplyResult::Rejected(reason.into())
}

impl MetadataImage {
    /// Applies one committed command. Deterministic (same result and image on every node): the
    /// state machine calls it with the command's raft `log_index`.
    pub fn apply(&mut self, cmd: &MetadataCommand, log_index: u64) -> ApplyResult {
        let result = self.apply_command(cmd, log_index);
        if matches!(result, ApplyResult::Done) {
            self.fence_drained();
        }
        // Whatever ended the last move (its completion, a cancel, the topic's deletion) lifts the
        // throttle with it. A rejected command changed nothing, so this changes nothing either.
        if self.reassignment_throttle.is_some() && !self.any_reassigning() {
            self.reassignment_throttle = None;
        }
        result
    }

    /// A decommissioned broker that holds no replica any more (its last move finished, or it
    /// held none) is fenced: it leads and follows nothing, and `UnfenceBroker` refuses it.
    fn fence_drained(&mut self) {
        let drained: Vec<NodeId> = self
            .brokers
            .values()
            .filter(|b| b.decommissioned && !b.fenced)
            .map(|b| b.id)
            .filter(|&id| !self.holds_replicas(id))
            .collect();
        for id in drained {
            self.set_fenced(id, true);
            self.take_away(id);
        }
    }

    /// Whether `id` is a replica (or a replica being added or dropped) of any partition.
    pub fn holds_replicas(&self, id: NodeId) -> bool {
        self.topics.values().flat_map(|t| &t.partitions).any(|p| p.replicas.contains(&id))
    }

    fn apply_command(&mut self, cmd: &MetadataCommand, log_index: u64) -> ApplyResult {
        use MetadataCommand as C;
        match cmd {
            C::RegisterBroker { id, cluster_addr, native_addr, kafka_addr } => {
                let decommissioned = self.brokers.get(id).is_some_and(|b| b.decommissioned);
                if self.brokers.contains_key(id) {
                    self.take_away(*id);
                }
                self.brokers.insert(
                    *id,
                    BrokerRecord {
                        id: *id,
                        incarnation: log_index,
                        cluster_addr: cluster_addr.clone(),
                        native_addr: native_addr.clone(),
                        kafka_addr: kafka_addr.clone(),
                        fenced: true,
                        decommissioned,
                    },
                );
                ApplyResult::Done
            }
            C::UnfenceBroker { id, incarnation } => {
                match self.brokers.get(id) {
                    None => return reject(format!("unknown broker {id}")),
                    Some(b) if b.incarnation != *incarnation => {
                        return reject(format!(
                            "broker {id} incarnation {incarnation} is stale (registered {})",
                            b.incarnation
                        ));
                    }
                    Some(b) if !b.fenced => return ApplyResult::Done,
                    Some(b) if b.decommissioned && !self.holds_replicas(*id) => {
                        return reject(format!("broker {id} is decommissioned"));
                    }
                    Some(_) => {}
                }
                self.set_fenced(*id, false);
                self.unfence_elect(*id);
                ApplyResult::Done
            }
            C::FenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return reject(format!("unknown broker {id}"));
                }
                self.set_fenced(*id, true);
                self.take_away(*id);
                ApplyResult::Done
            }
            C::ShutdownBroker { id, incarnation } => {
                match self.brokers.get(id) {
                    None => return reject(format!("unknown broker {id}")),
                    Some(b) if b.incarnation != *incarnation => {
                        return reject(format!(
                            "broker {id} incarnation {incarnation} is stale (registered {})",
                            b.incarnation
                        ));
                    }
                    Some(_) => {}
                }
                self.set_fenced(*id, true);
                self.take_away(*id);
                ApplyResult::Done
            }
            C::CreateTopic { name, id, replicas, configs } => {
                if name.is_empty() {
                    return reject("empty topic name");
                }
                if self.topics.contains_key(name) {
                    return reject(format!("topic {name} already exists"));
                }
                if let Some(other) = self.topics.values().find(|t| t.id == *id) {
                    return reject(format!("topic id already used by {}", other.name));
                }
                if replicas.is_empty() {
                    return reject("a topic needs at least one partition");
                }
                if let Err(e) = self.check_assignment(replicas, None) {
                    return reject(e);
                }
                let partitions = self.new_partitions(name, replicas);
                self.topics.insert(
                    name.clone(),
                    TopicRecord {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                ApplyResult::Done
            }
            C::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return reject(format!("unknown topic {name}"));
                }
                // A topic re-created under this name must not inherit the old one's positions.
                self.group_offsets.retain(|_, offsets| {
                    offsets.retain(|o| o.topic != *name);
                    !offsets.is_empty()
                });
                ApplyResult::Done
            }
            C::AlterTopicConfigs { name, configs } => match self.topics.get_mut(name) {
                None => reject(format!("unknown topic {name}")),
                Some(t) => {
                    t.configs = configs.clone();
                    ApplyResult::Done
                }
            },
            C::AddPartitions { name, replicas } => {
                let Some(t) = self.topics.get(name) else {
                    return reject(format!("unknown topic {name}"));
                };
                if replicas.is_empty() {
                    return reject("no partitions to add");
                }
                // Where the topic is going: a move of partition 0 under way does not count.
                let rf = t.partitions.first().map(|p| p.target().len());
                if (t.partitions.len() as u64).saturating_add(replicas.len() as u64)
                    > u32::MAX as u64
                {
                    return reject("too many partitions");
                }
                if let Err(e) = self.check_assignment(replicas, rf) {
                    return reject(e);
                }
                let mut added = self.new_partitions(name, replicas);
                // Checked above: the topic exists.
                let t = self.topics.get_mut(name).expect("topic checked above");
                t.partitions.append(&mut added);
                ApplyResult::Done
            }
            C::AlterPartition { topic, partition, leader, leader_epoch, partition_epoch, isr } => {
                self.alter_partition(
                    topic,
                    *partition,
                    *leader,
                    *leader_epoch,
                    *partition_epoch,
                    isr,
                )
            }
            C::AllocateProducerIds { count } => {
                if *count <= 0 {
                    return reject(format!("producer id count {count} must be positive"));
                }
                let first = self.next_producer_id;
                let Some(next) = first.checked_add(*count) else {
                    return reject("producer ids exhausted");
                };
                self.next_producer_id = next;
                ApplyResult::ProducerIds { first }
            }
            C::CommitOffsets { group, offsets } => {
                if group.is_empty() {
                    return reject("empty group id");
                }
                for o in offsets {
                    if self.partition(&o.topic, o.partition).is_none() {
                        return reject(format!("unknown partition {}-{}", o.topic, o.partition));
                    }
                }
                if offsets.is_empty() {
                    return ApplyResult::Done;
                }
                let stored = self.group_offsets.entry(group.clone()).or_default();
                for o in offsets {
                    let key = (o.topic.as_str(), o.partition);
                    match stored.binary_search_by(|s| (s.topic.as_str(), s.partition).cmp(&key)) {
                        Ok(i) => stored[i] = o.clone(),
                        Err(i) => stored.insert(i, o.clone()),
                    }
                }
                ApplyResult::Done
            }
            C::DeleteGroup { group } => {
                let offsets = self.group_offsets.remove(group).is_some();
                let members = self.groups.remove(group).is_some();
                if !offsets && !members {
                    return reject(format!("unknown group {group}"));
                }
                ApplyResult::Done
            }
            C::DeleteOffsets { group, partitions } => {
                let Some(stored) = self.group_offsets.get_mut(group) else {
                    return reject(format!("unknown group {group}"));
                };
                stored.retain(|o| {
                    !partitions.iter().any(|(t, p)| *t == o.topic && *p == o.partition)
                });
                if stored.is_empty() {
                    self.group_offsets.remove(group);
                }
                ApplyResult::Done
            }
            C::RecordGroup { group, membership } => {
                if let Err(e) = check_membership(group, membership) {
                    return reject(e);
                }
                if let Some(old) = self.groups.get(group)
                    && old.generation > membership.generation
                {
                    return reject(format!(
                        "group {group}: generation {} is older than the recorded {}",
                        membership.generation, old.generation
                    ));
                }
                self.groups.insert(group.clone(), membership.clone());
                ApplyResult::Done
            }
            C::ReassignPartition { topic, partition, target, throttle_bytes_per_s } => {
                if *throttle_bytes_per_s == Some(0) {
                    return reject("a reassignment throttle of 0 bytes/s would never finish");
                }
                let r = self.reassign(topic, *partition, target);
                if r == ApplyResult::Done && throttle_bytes_per_s.is_some() {
                    self.reassignment_throttle = *throttle_bytes_per_s;
                }
                r
            }
            C::SetReassignmentThrottle { bytes_per_s } => match bytes_per_s {
                Some(0) => reject("a reassignment throttle of 0 bytes/s would never finish"),
                Some(_) if !self.any_reassigning() => {
                    reject("no reassignment under way to throttle")
                }
                _ => {
                    self.reassignment_throttle = *bytes_per_s;
                    ApplyResult::Done
                }
            },
            C::CancelReassignment { topic, partition } => {
                self.cancel_reassignment(topic, *partition)
            }
            C::DecommissionBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return reject(format!("unknown broker {id}"));
                }
                let moving_in = self.partitions_where(|p| p.adding.contains(id));
                if let Some((t, p)) = moving_in.first() {
                    return reject(format!(
                        "a move under way adds broker {id} to {t}-{p}: cancel it or let it \
                         finish first"
                    ));
                }
                // Checked above: the broker is registered.
                self.brokers.get_mut(id).expect("checked above").decommissioned = true;
                ApplyResult::Done
            }
            C::RecommissionBroker { id } => match self.brokers.get_mut(id) {
                None => reject(format!("unknown broker {id}")),
                Some(b) if !b.decommissioned => {
                    reject(format!("broker {id} is not decommissioned"))
                }
                Some(b) => {
                    b.decommissioned = false;
                    ApplyResult::Done
                }
            },
            C::ElectPreferredLeaders { partitions } => {
                let electable: Vec<&(String, u32)> =
                    partitions.iter().filter(|(t, p)| self.preferred_electable(t, *p)).collect();
                if electable.is_empty() {
                    return reject("no listed partition can move to its preferred leader");
                }
                let MetadataImage { topics, epoch_floor, .. } = self;
                for (topic, partition) in electable {
                    // Checked by preferred_electable: the partition exists.
                    let p = &mut topics.get_mut(topic).expect("electable").partitions
                        [*partition as usize];
                    let preferred = p.replicas[0];
                    set_leader(p, Some(preferred), topic, epoch_floor);
                    p.partition_epoch = p.partition_epoch.saturating_add(1);
                }
                ApplyResult::Done
            }
        }
    }

    /// Whether the partition is online, led by another than its first (preferred) replica, and
    /// that replica is live and in sync: a preferred leader election would move it.
    pub fn preferred_electable(&self, topic: &str, partition: u32) -> bool {
        let Some(p) = self.partition(topic, partition) else { return false };
        let Some(&preferred) = p.replicas.first() else { return false };
        p.leader.is_some_and(|l| l != preferred)
            && p.isr.contains(&preferred)
            && self.is_live(preferred)
    }

    /// Every partition a preferred leader election would move, sorted.
    pub fn preferred_elections(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (name, t) in &self.topics {
            for i in 0..t.partitions.len() as u32 {
                if self.preferred_electable(name, i) {
                    out.push((name.clone(), i));
                }
            }
        }
        out
    }

    /// The partition's record, if the topic and partition exist.
    pub fn partition(&self, topic: &str, p: u32) -> Option<&PartitionRecord> {
        self.topics.get(topic)?.partitions.get(p as usize)
    }

    /// Registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Live brokers that take new replicas (not being decommissioned), by id.
    pub fn placeable_brokers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.live_brokers().filter(|b| !b.decommissioned).map(|b| b.id)
    }

    /// Whether `id` is registered and not fenced.
    pub fn is_live(&self, id: NodeId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Partitions that have a leader but fewer in-sync replicas than replicas, sorted.
    pub fn under_replicated(&self) -> Vec<(String, u32)> {
        self.partitions_where(|p| p.leader.is_some() && p.isr.len() < p.replication_factor())
    }

    /// Partitions without a leader, sorted.
    pub fn offline(&self) -> Vec<(String, u32)> {
        self.partitions_where(|p| p.leader.is_none())
    }

    /// The committed offset of `group` for a partition.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Option<&GroupOffset> {
        let offsets = self.group_offsets.get(group)?;
        offsets
            .binary_search_by(|s| (s.topic.as_str(), s.partition).cmp(&(topic, partition)))
            .ok()
            .map(|i| &offsets[i])
    }

    fn partitions_where(&self, f: impl Fn(&PartitionRecord) -> bool) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if f(p) {
                    out.push((name.clone(), i as u32));
                }
            }
        }
        out
    }

    fn set_fenced(&mut self, id: NodeId, fenced: bool) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = fenced;
        }
    }

    /// Every replica list names registered brokers that are not decommissioned, once each, at
    /// least one of them live (it becomes the leader); all lists have the same length (and `rf`
    /// when given).
    fn check_assignment(&self, replicas: &[Vec<NodeId>], rf: Option<usize>) -> Result<(), String> {
        let rf = rf.unwrap_or_else(|| replicas.first().map_or(0, Vec::len));
        for (i, list) in replicas.iter().enumerate() {
            if list.is_empty() {
                return Err(format!("partition {i}: empty replica list"));
            }
            if list.len() != rf {
                return Err(format!(
                    "partition {i}: {} replicas where the others have {rf}",
                    list.len()
                ));
            }
            let mut seen = BTreeSet::new();
            for r in list {
                if !seen.insert(*r) {
                    return Err(format!("partition {i}: broker {r} listed twice"));
                }
                match self.brokers.get(r) {
                    None => return Err(format!("partition {i}: unknown broker {r}")),
                    Some(b) if b.decommissioned => {
                        return Err(format!("partition {i}: broker {r} is decommissioned"));
                    }
                    Some(_) => {}
                }
            }
            if !list.iter().any(|r| self.is_live(*r)) {
                return Err(format!("partition {i}: every replica is fenced"));
            }
        }
        Ok(())
    }

    /// New partitions for `name` (assignment already checked): leader the first live replica,
    /// ISR the live replicas (all start empty, so all live ones are in sync), leader epoch one
    /// above anything the name ever had.
    fn new_partitions(&mut self, name: &str, replicas: &[Vec<NodeId>]) -> Vec<PartitionRecord> {
        let floor = self.epoch_floor.get(name).copied().unwrap_or(-1);
        let epoch = floor.saturating_add(1);
        let parts: Vec<PartitionRecord> = replicas
            .iter()
            .map(|list| {
                let isr: Vec<NodeId> = list.iter().copied().filter(|r| self.is_live(*r)).collect();
                PartitionRecord {
                    replicas: list.clone(),
                    leader: isr.first().copied(),
                    leader_epoch: epoch,
                    partition_epoch: 0,
                    isr,
                    adding: Vec::new(),
                    removing: Vec::new(),
                    original: Vec::new(),
                }
            })
            .collect();
        self.epoch_floor.insert(name.to_string(), epoch.max(floor));
        parts
    }

    /// `id` is fenced, shutting down or restarted: a new leader (from the ISR, unfenced, replica
    /// order) for what it led, and out of every ISR unless it is the last member.
    fn take_away(&mut self, id: NodeId) {
        let MetadataImage { brokers, topics, epoch_floor, .. } = self;
        let live = |r: NodeId| r != id && brokers.get(&r).is_some_and(|b| !b.fenced);
        for (name, t) in topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                let in_isr = p.isr.contains(&id);
                let led = p.leader == Some(id);
                let shrink = in_isr && p.isr.len() > 1;
                if !shrink && !led {
                    // Not here, or the last ISR member of an offline partition: kept.
                    continue;
                }
                if shrink {
                    p.isr.retain(|&r| r != id);
                }
                if led {
                    let next = p.replicas.iter().copied().find(|&r| p.isr.contains(&r) && live(r));
                    set_leader(p, next, name, epoch_floor);
                }
                p.partition_epoch = p.partition_epoch.saturating_add(1);
            }
        }
    }

    /// `id` was unfenced: it leads every offline partition whose ISR holds it.
    fn unfence_elect(&mut self, id: NodeId) {
        let MetadataImage { topics, epoch_floor, .. } = self;
        for (name, t) in topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                if p.leader.is_none() && p.isr.contains(&id) {
                    set_leader(p, Some(id), name, epoch_floor);
                    p.partition_epoch = p.partition_epoch.saturating_add(1);
                }
            }
        }
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[NodeId],
    ) -> ApplyResult {
        let Some(p) = self.partition(topic, partition) else {
            return reject(format!("unknown partition {topic}-{partition}"));
        };
        if p.leader != Some(leader) {
            return reject(format!(
                "{topic}-{partition}: broker {leader} is not the leader ({:?} is)",
                p.leader
            ));
        }
        if p.leader_epoch != leader_epoch {
            return reject(format!(
                "{topic}-{partition}: leader epoch {leader_epoch} is stale (now {})",
                p.leader_epoch
            ));
        }
        if p.partition_epoch != partition_epoch {
            return reject(format!(
                "{topic}-{partition}: partition epoch {partition_epoch} is stale (now {})",
                p.partition_epoch
            ));
        }
        if !isr.contains(&leader) {
            return reject(format!("{topic}-{partition}: the new ISR lacks the leader {leader}"));
        }
        let mut seen = BTreeSet::new();
        for r in isr {
            if !seen.insert(*r) {
                return reject(format!("{topic}-{partition}: broker {r} twice in the ISR"));
            }
            if !p.replicas.contains(r) {
                return reject(format!("{topic}-{partition}: broker {r} is not a replica"));
            }
            // Kafka's KIP-841: a fenced broker may not join (it may have lost its log).
            if !self.is_live(*r) {
                return reject(format!("{topic}-{partition}: broker {r} is fenced"));
            }
        }
        // Checked above: the partition exists.
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .expect("partition checked above");
        p.isr = isr.to_vec();
        p.partition_epoch = p.partition_epoch.saturating_add(1);
        self.maybe_complete_reassignment(topic, partition);
        ApplyResult::Done
    }

    fn reassign(&mut self, topic: &str, partition: u32, target: &[NodeId]) -> ApplyResult {
        let Some(p) = self.partition(topic, partition) else {
            return reject(format!("unknown partition {topic}-{partition}"));
        };
        if p.reassigning() {
            return reject(format!(
                "{topic}-{partition}: a reassignment to {:?} is under way (cancel it first)",
                p.target()
            ));
        }
        if target.is_empty() {
            return reject(format!("{topic}-{partition}: the target has no replicas"));
        }
        let mut seen = BTreeSet::new();
        for r in target {
            if !seen.insert(*r) {
                return reject(format!("{topic}-{partition}: broker {r} listed twice"));
            }
            if !self.brokers.contains_key(r) {
                return reject(format!("{topic}-{partition}: unknown broker {r}"));
            }
        }
        if target == p.replicas.as_slice() {
            return reject(format!("{topic}-{partition}: already on {target:?}"));
        }
        let adding: Vec<NodeId> =
            target.iter().copied().filter(|r| !p.replicas.contains(r)).collect();
        if let Some(r) =
            adding.iter().find(|r| self.brokers.get(r).is_some_and(|b| b.decommissioned))
        {
            return reject(format!("{topic}-{partition}: broker {r} is being decommissioned"));
        }
        let removing: Vec<NodeId> =
            p.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
        // A fenced (registered) broker may be added, as in Kafka: the move waits for it to
        // return and catch up, or is cancelled.
        // Checked above: the partition exists.
        let p = self.partition_mut(topic, partition).expect("partition checked above");
        p.original = std::mem::take(&mut p.replicas);
        p.replicas = target.iter().chain(&removing).copied().collect();
        p.adding = adding;
        p.removing = removing;
        if !p.reassigning() {
            // Only reordered: done at once, nothing to cancel.
            p.original.clear();
        }
        p.partition_epoch = p.partition_epoch.saturating_add(1);
        self.maybe_complete_reassignment(topic, partition);
        ApplyResult::Done
    }

    fn cancel_reassignment(&mut self, topic: &str, partition: u32) -> ApplyResult {
        let Some(p) = self.partition(topic, partition) else {
            return reject(format!("unknown partition {topic}-{partition}"));
        };
        if !p.reassigning() {
            return reject(format!("{topic}-{partition}: no reassignment under way"));
        }
        let isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| !p.adding.contains(r)).collect();
        if isr.is_empty() {
            return reject(format!(
                "{topic}-{partition}: only added replicas are in sync; cancelling would leave \
                 it without one"
            ));
        }
        let MetadataImage { brokers, topics, epoch_floor, .. } = self;
        // Checked above: the partition exists.
        let p = &mut topics.get_mut(topic).expect("checked").partitions[partition as usize];
        let live = |r: NodeId| brokers.get(&r).is_some_and(|b| !b.fenced);
        p.replicas = std::mem::take(&mut p.original);
        p.isr = isr;
        p.adding.clear();
        p.removing.clear();
        if p.leader.is_some_and(|l| !p.replicas.contains(&l)) {
            let next = p.replicas.iter().copied().find(|&r| p.isr.contains(&r) && live(r));
            set_leader(p, next, topic, epoch_floor);
        }
        p.partition_epoch = p.partition_epoch.saturating_add(1);
        ApplyResult::Done
    }

    /// Ends the reassignment of a partition whose every target replica is in sync: the
    /// replicas become the target, the ISR keeps only target replicas, and a leader that is no
    /// longer a replica hands over to the first live in-sync target replica (epoch + 1).
    fn maybe_complete_reassignment(&mut self, topic: &str, partition: u32) {
        let MetadataImage { brokers, topics, epoch_floor, .. } = self;
        let Some(p) = topics.get_mut(topic).and_then(|t| t.partitions.get_mut(partition as usize))
        else {
            return;
        };
        let target = p.target();
        if !p.reassigning() || !target.iter().all(|r| p.isr.contains(r)) {
            return;
        }
        let live = |r: NodeId| brokers.get(&r).is_some_and(|b| !b.fenced);
        p.replicas = target;
        p.isr.retain(|r| p.replicas.contains(r));
        p.adding.clear();
        p.removing.clear();
        p.original.clear();
        if p.leader.is_some_and(|l| !p.replicas.contains(&l)) {
            let next = p.replicas.iter().copied().find(|&r| p.isr.contains(&r) && live(r));
            set_leader(p, next, topic, epoch_floor);
        }
        p.partition_epoch = p.partition_epoch.saturating_add(1);
    }

    fn partition_mut(&mut self, topic: &str, p: u32) -> Option<&mut PartitionRecord> {
        self.topics.get_mut(topic)?.partitions.get_mut(p as usize)
    }

    /// Partitions with a reassignment under way, sorted.
    pub fn reassignments(&self) -> Vec<(String, u32)> {
        self.partitions_where(PartitionRecord::reassigning)
    }

    /// Whether any reassignment is under way.
    pub fn any_reassigning(&self) -> bool {
        self.topics.values().any(|t| t.partitions.iter().any(PartitionRecord::reassigning))
    }
}

/// A recorded membership names its group, has a generation, members sorted by id and unique, at
/// most [`MAX_RECORDED_MEMBERS`] of them, and a leader among them (when it has members).
fn check_membership(group: &str, m: &GroupMembership) -> Result<(), String> {
    if group.is_empty() {
        return Err("empty group id".into());
    }
    if m.generation < 0 {
        return Err(format!("group {group}: negative generation {}", m.generation));
    }
    if m.members.len() > MAX_RECORDED_MEMBERS {
        return Err(format!(
            "group {group}: {} members, at most {MAX_RECORDED_MEMBERS}",
            m.members.len()
        ));
    }
    if m.members.windows(2).any(|w| w[0].member_id >= w[1].member_id) {
        return Err(format!("group {group}: member ids not sorted and unique"));
    }
    if m.members.iter().any(|x| x.member_id.is_empty()) {
        return Err(format!("group {group}: a member without an id"));
    }
    if !m.members.is_empty() && !m.members.iter().any(|x| x.member_id == m.leader) {
        return Err(format!("group {group}: leader {:?} is not a member", m.leader));
    }
    Ok(())
}

/// A leader change (to none included): epoch + 1, and the name's epoch floor follows.
fn set_leader(
    p: &mut PartitionRecord,
    leader: Option<NodeId>,
    name: &str,
    epoch_floor: &mut BTreeMap<String, i32>,
) {
    p.leader = leader;
    p.leader_epoch = p.leader_epoch.saturating_add(1);
    let floor = epoch_floor.entry(name.to_string()).or_insert(p.leader_epoch);
    *floor = (*floor).max(p.leader_epoch);
}

/// Replica placement for a new topic: round-robin over live brokers (sorted by id), like Kafka's
/// rack-unaware assignment. Partition `p`'s first replica is broker `(start + p) % n`; the
/// followers come after it, shifted by one more every `n` partitions so that the followers of a
/// leader are spread too. `start` lets callers spread the leaders of many topics.
pub fn assign_replicas(
    image: &MetadataImage,
    partitions: u32,
    rf: u16,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, String> {
    let brokers: Vec<NodeId> = image.placeable_brokers().collect();
    let n = brokers.len();
    let rf = rf as usize;
    if rf == 0 {
        return Err("replication factor must be at least 1".into());
    }
    if rf > n {
        return Err(format!("replication factor {rf} is larger than the {n} live brokers"));
    }
    if partitions == 0 {
        return Err("a topic needs at least one partition".into());
    }
    let start = start % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start + p) % n;
        let mut list = Vec::with_capacity(rf);
        list.push(brokers[first]);
        for j in 0..rf - 1 {
            // n > 1 here: rf >= 2 and rf <= n.
            list.push(brokers[(first + 1 + (shift + j) % (n - 1)) % n]);
        }
        out.push(list);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "metadata_model_tests.rs"]
pub(crate) mod model_tests;
