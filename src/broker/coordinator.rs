//! The consumer-group coordinator (owned by the broker; the Kafka listener drives it, the native
//! server and the console read it): Kafka's classic rebalance protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) as a state machine with time passed in, so it is tested without sockets
//! or clocks. It owns group membership, generations and assignments (in memory; a restart makes
//! every member rejoin, as a coordinator failover would). It never stores offsets: committed
//! offsets go to the broker, and `check_commit` only says whether a member may commit.
//!
//! States per group: Empty -> PreparingRebalance (waiting for every member to (re)join, bounded by
//! the rebalance timeout) -> CompletingRebalance (joined; waiting for the leader's SyncGroup with
//! the assignment) -> Stable. A join, a leave, or a member whose session expires sends a Stable
//! group back to PreparingRebalance; members learn it from REBALANCE_IN_PROGRESS on heartbeat.
//! Replies that must wait (JoinGroup until the round completes, SyncGroup until the leader
//! assigns) are handed back as a oneshot receiver.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

/// Session timeouts a member may ask for (Kafka's group.min/max.session.timeout.ms, with a lower
/// minimum so tests can expire members quickly).
const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(1000);
const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Most groups and members per group the coordinator will hold: a limit on everything.
const MAX_GROUPS: usize = 10_000;
const MAX_MEMBERS_PER_GROUP: usize = 1_000;
/// Most member ids handed out by MEMBER_ID_REQUIRED (KIP-394) and not yet used, over all groups.
/// Per group, pending ids count towards `MAX_MEMBERS_PER_GROUP`, as in Kafka. Each expires after
/// its session timeout; without these caps a client looping on empty joins grows memory for up to
/// `MAX_SESSION_TIMEOUT`.
const MAX_PENDING_MEMBERS: usize = 10_000;

/// Why the coordinator refuses a request. Numbered as Kafka's error codes: the classic group
/// protocol defined them, and the Kafka listener sends them as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub(crate) enum GroupError {
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    GroupMaxSizeReached = 81,
    MemberIdRequired = 79,
}

fn code(e: GroupError) -> i16 {
    e as i16
}

/// A reply available now, or one that arrives when the group reaches the right state.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What a JoinGroup request asks for, already decoded.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub client_id: String,
    /// The address of the member's connection, as DescribeGroups reports it.
    pub client_host: String,
    /// JoinGroup v5+ static membership id, kept to be described.
    pub group_instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (protocol name, member metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id first gets one back with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JoinOutcome {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<(String, Bytes)>,
}

impl JoinOutcome {
    fn error(error: GroupError, member_id: &str) -> Self {
        JoinOutcome {
            error_code: code(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncOutcome {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: GroupError) -> Self {
        SyncOutcome {
            error_code: code(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The state's name as Kafka spells it (ListGroups, DescribeGroups, the console).
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// One live member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the group's chosen protocol (for a consumer: its
    /// subscription), or for its first protocol before one is chosen.
    pub metadata: Bytes,
    /// What the leader assigned it (for a consumer: its partitions); empty until then.
    pub assignment: Bytes,
}

/// A group the coordinator knows: its state and live members.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol (the assignor), empty until the first join round completes.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// A group as a completed rebalance left it (Stable), or emptied: what a cluster records so that
/// another coordinator can resume it with [`Coordinator::install`] at the same generation, its
/// members keeping their ids and assignments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SettledGroup {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    /// Sorted by member id; empty for an Empty group.
    pub members: Vec<SettledMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SettledMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    client_host: String,
    group_instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    last_seen: Instant,
    /// Set while the member waits in JoinGroup: it has (re)joined this round.
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    assignment: Bytes,
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, valid until the instant stored.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Instant,
}

impl Group {
    fn new(now: Instant) -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: now,
        }
    }

    /// Whether `protocols` shares at least one protocol with every current member.
    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        if protocols.is_empty() {
            return false;
        }
        if self.members.keys().all(|id| id == except) {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .filter(|(id, _)| id.as_str() != except)
                .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(SyncOutcome::error(GroupError::RebalanceInProgress));
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = now + timeout;
    }

    fn remove_member(&mut self, id: &str, why: GroupError) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome::error(why, id));
            }
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(SyncOutcome::error(why));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Completes the join round once every member has rejoined.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            // A map with members has a first key.
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        // The first of the leader's protocols that every member supports; joins were checked
        // for a common protocol, so one exists.
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| self.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == n)));
        let all: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == protocol.as_ref())
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                (id.clone(), meta)
            })
            .collect();
        self.leader = Some(leader.clone());
        self.protocol = protocol.clone();
        self.state = GroupState::CompletingRebalance;
        for (id, m) in self.members.iter_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinOutcome {
                    error_code: 0,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader { all.clone() } else { Vec::new() },
                });
            }
        }
    }
}

/// Every consumer group this broker coordinates.
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    groups: HashMap<String, Group>,
    next_member: u64,
    /// Pending member ids over all groups (recounted at every tick).
    pending_total: usize,
}

impl Coordinator {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The member ids of a group (sorted; they start with the member's client id), empty when the
    /// coordinator does not know the group.
    pub(crate) fn members(&self, group_id: &str) -> Vec<String> {
        self.groups.get(group_id).map(|g| g.members.keys().cloned().collect()).unwrap_or_default()
    }

    /// Whether a group has live members (joined, or waiting in a join round).
    pub(crate) fn has_members(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// Every group the coordinator knows (with members, or pending member ids), with its state
    /// and protocol type, sorted by name.
    pub(crate) fn list(&self) -> Vec<(String, GroupState, String)> {
        let mut v: Vec<(String, GroupState, String)> = self
            .groups
            .iter()
            .map(|(name, g)| (name.clone(), g.state, g.protocol_type.clone().unwrap_or_default()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// A group's state and members, if the coordinator knows it.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| g.protocol.as_ref().is_none_or(|p| p == n))
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata,
                    assignment: m.assignment.clone(),
                }
            })
            .collect();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            members,
        })
    }

    /// Forgets a group without members (DeleteGroups): its pending member ids go with it.
    /// Returns false, changing nothing, while it has members.
    pub(crate) fn forget(&mut self, group_id: &str) -> bool {
        if self.has_members(group_id) {
            return false;
        }
        if let Some(g) = self.groups.remove(group_id) {
            self.pending_total = self.pending_total.saturating_sub(g.pending.len());
        }
        true
    }

    /// The group's generation, if the coordinator knows it.
    pub(crate) fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }

    /// The group as settled, when it is Stable or Empty (mid-rebalance there is nothing settled
    /// to hand over: its members rejoin wherever the group goes).
    pub(crate) fn settled(&self, group_id: &str) -> Option<SettledGroup> {
        let g = self.groups.get(group_id)?;
        if !matches!(g.state, GroupState::Stable | GroupState::Empty) {
            return None;
        }
        let members = if g.state == GroupState::Empty {
            Vec::new()
        } else {
            g.members
                .iter()
                .map(|(id, m)| SettledMember {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| g.protocol.as_ref() == Some(n))
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect()
        };
        Some(SettledGroup {
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            leader: if members.is_empty() {
                String::new()
            } else {
                g.leader.clone().unwrap_or_default()
            },
            members,
        })
    }

    /// Takes over a group another coordinator settled (it moved here, or this broker restarted):
    /// Stable at that generation with those members, each with a fresh session, or Empty at that
    /// generation. A group known here at the same or a newer generation is kept as it is; one
    /// known at an older generation is stale (the group went on elsewhere) and is replaced, its
    /// waiting requests answered REBALANCE_IN_PROGRESS. Returns whether it installed.
    pub(crate) fn install(&mut self, now: Instant, group_id: &str, settled: SettledGroup) -> bool {
        match self.groups.get(group_id) {
            Some(g) if g.generation >= settled.generation => return false,
            Some(_) => {}
            None if self.groups.len() >= MAX_GROUPS => return false,
            None => {}
        }
        if settled.members.len() > MAX_MEMBERS_PER_GROUP {
            return false;
        }
        if let Some(mut old) = self.groups.remove(group_id) {
            let ids: Vec<String> = old.members.keys().cloned().collect();
            for id in &ids {
                old.remove_member(id, GroupError::RebalanceInProgress);
            }
            self.pending_total = self.pending_total.saturating_sub(old.pending.len());
        }
        let mut group = Group::new(now);
        group.generation = settled.generation;
        if !settled.members.is_empty() {
            group.state = GroupState::Stable;
            group.protocol_type = Some(settled.protocol_type);
            group.protocol = Some(settled.protocol.clone());
            group.leader = Some(settled.leader);
            for m in settled.members {
                group.members.insert(
                    m.member_id,
                    Member {
                        client_id: m.client_id,
                        client_host: m.client_host,
                        group_instance_id: m.group_instance_id,
                        session_timeout: m
                            .session_timeout
                            .clamp(MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT),
                        rebalance_timeout: m.rebalance_timeout,
                        protocols: vec![(settled.protocol.clone(), m.metadata)],
                        last_seen: now,
                        join_waiter: None,
                        sync_waiter: None,
                        assignment: m.assignment,
                    },
                );
            }
        }
        self.groups.insert(group_id.to_string(), group);
        true
    }

    /// The state of a group, if the coordinator knows it.
    #[cfg(test)]
    pub(crate) fn state(&self, group_id: &str) -> Option<(GroupState, i32, usize)> {
        self.groups.get(group_id).map(|g| (g.state, g.generation, g.members.len()))
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let client: String = client_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .take(64)
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!(
            "{}-{:08x}-{:08x}",
            if client.is_empty() { "member" } else { &client },
            self.next_member,
            nanos
        )
    }

    pub(crate) fn join(&mut self, now: Instant, p: JoinParams) -> Reply<JoinOutcome> {
        if p.session_timeout < MIN_SESSION_TIMEOUT || p.session_timeout > MAX_SESSION_TIMEOUT {
            return Reply::Now(JoinOutcome::error(GroupError::InvalidSessionTimeout, &p.member_id));
        }
        if !self.groups.contains_key(&p.group_id) && self.groups.len() >= MAX_GROUPS {
            return Reply::Now(JoinOutcome::error(GroupError::GroupMaxSizeReached, &p.member_id));
        }
        let mut member_id = p.member_id.clone();
        let fresh_id =
            if member_id.is_empty() { Some(self.new_member_id(&p.client_id)) } else { None };
        let group = self.groups.entry(p.group_id.clone()).or_insert_with(|| Group::new(now));
        if !group.compatible(&p.protocol_type, &p.protocols, &member_id) {
            return Reply::Now(JoinOutcome::error(
                GroupError::InconsistentGroupProtocol,
                &member_id,
            ));
        }
        let is_new = if let Some(id) = fresh_id {
            if p.require_known_member_id {
                if group.members.len() + group.pending.len() >= MAX_MEMBERS_PER_GROUP
                    || self.pending_total >= MAX_PENDING_MEMBERS
                {
                    tracing::debug!(group = %p.group_id, pending = self.pending_total,
                        "JoinGroup refused: too many pending member ids");
                    return Reply::Now(JoinOutcome::error(GroupError::GroupMaxSizeReached, ""));
                }
                group.pending.insert(id.clone(), now + p.session_timeout);
                self.pending_total += 1;
                return Reply::Now(JoinOutcome::error(GroupError::MemberIdRequired, &id));
            }
            member_id = id;
            true
        } else if group.pending.remove(&member_id).is_some() {
            self.pending_total = self.pending_total.saturating_sub(1);
            true
        } else if group.members.contains_key(&member_id) {
            false
        } else {
            return Reply::Now(JoinOutcome::error(GroupError::UnknownMemberId, &member_id));
        };
        if is_new && group.members.len() >= MAX_MEMBERS_PER_GROUP {
            return Reply::Now(JoinOutcome::error(GroupError::GroupMaxSizeReached, &member_id));
        }
        let (tx, rx) = oneshot::channel();
        if is_new {
            group.members.insert(
                member_id.clone(),
                Member {
                    client_id: p.client_id,
                    client_host: p.client_host,
                    group_instance_id: p.group_instance_id,
                    session_timeout: p.session_timeout,
                    rebalance_timeout: p.rebalance_timeout,
                    protocols: p.protocols,
                    last_seen: now,
                    join_waiter: Some(tx),
                    sync_waiter: None,
                    assignment: Bytes::new(),
                },
            );
            if group.protocol_type.is_none() {
                group.protocol_type = Some(p.protocol_type);
            }
            group.prepare_rebalance(now);
        } else {
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            let state = group.state;
            let generation = group.generation;
            let m = group.members.get_mut(&member_id).expect("membership checked above");
            let unchanged = m.protocols == p.protocols;
            m.session_timeout = p.session_timeout;
            m.rebalance_timeout = p.rebalance_timeout;
            m.protocols = p.protocols;
            m.last_seen = now;
            if state == GroupState::Stable && unchanged && !is_leader {
                // A follower rejoining with nothing new: tell it the current generation.
                return Reply::Now(JoinOutcome {
                    error_code: 0,
                    generation_id: generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    leader: group.leader.clone().unwrap_or_default(),
                    member_id,
                    members: Vec::new(),
                });
            }
            // A second join while one waits replaces it; the old request is answered as stale.
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(GroupError::RebalanceInProgress, &member_id));
            }
            group.prepare_rebalance(now);
        }
        group.maybe_complete_join(now);
        Reply::Later(rx)
    }

    pub(crate) fn sync(
        &mut self,
        now: Instant,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncOutcome> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Reply::Now(SyncOutcome::error(GroupError::UnknownMemberId));
        };
        if !group.members.contains_key(member_id) {
            return Reply::Now(SyncOutcome::error(GroupError::UnknownMemberId));
        }
        if generation != group.generation {
            return Reply::Now(SyncOutcome::error(GroupError::IllegalGeneration));
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        match group.state {
            GroupState::Empty => Reply::Now(SyncOutcome::error(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::error(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = group.members.get_mut(member_id).expect("membership checked above");
                m.last_seen = now;
                Reply::Now(SyncOutcome {
                    error_code: 0,
                    protocol_type,
                    protocol_name,
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = group.members.get_mut(member_id).expect("membership checked above");
                m.last_seen = now;
                m.sync_waiter = Some(tx);
                if group.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    for m in group.members.values_mut() {
                        if let Some(tx) = m.sync_waiter.take() {
                            let _ = tx.send(SyncOutcome {
                                error_code: 0,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    /// Returns the Heartbeat error code (0 = carry on).
    pub(crate) fn heartbeat(
        &mut self,
        now: Instant,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code(GroupError::UnknownMemberId);
        };
        let Some(m) = group.members.get_mut(member_id) else {
            return code(GroupError::UnknownMemberId);
        };
        m.last_seen = now;
        if group.state == GroupState::PreparingRebalance {
            return code(GroupError::RebalanceInProgress);
        }
        if generation != group.generation {
            return code(GroupError::IllegalGeneration);
        }
        0
    }

    /// Removes members that leave; returns one error code per member id (0 = left).
    pub(crate) fn leave(
        &mut self,
        now: Instant,
        group_id: &str,
        member_ids: &[String],
    ) -> Vec<i16> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![code(GroupError::UnknownMemberId); member_ids.len()];
        };
        let mut codes = Vec::with_capacity(member_ids.len());
        let mut removed = false;
        for id in member_ids {
            if group.pending.remove(id).is_some() {
                self.pending_total = self.pending_total.saturating_sub(1);
                codes.push(0);
            } else if group.members.contains_key(id) {
                group.remove_member(id, GroupError::UnknownMemberId);
                removed = true;
                codes.push(0);
            } else {
                codes.push(code(GroupError::UnknownMemberId));
            }
        }
        if removed {
            group.prepare_rebalance(now);
            group.maybe_complete_join(now);
        }
        codes
    }

    /// Whether an OffsetCommit from this member at this generation may proceed (0) or the error.
    /// Generation -1 with no member id is a standalone consumer: allowed while the group is empty.
    pub(crate) fn check_commit(
        &mut self,
        now: Instant,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return if generation < 0 { 0 } else { code(GroupError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() && group.members.is_empty() {
            return 0;
        }
        let Some(m) = group.members.get_mut(member_id) else {
            return code(GroupError::UnknownMemberId);
        };
        m.last_seen = now;
        if generation != group.generation {
            return code(GroupError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return code(GroupError::RebalanceInProgress);
        }
        0
    }

    /// Advances time: expires members whose session lapsed and ends join rounds past their
    /// deadline. The server calls it a few times a second. Returns the groups this emptied and
    /// forgot, as they settled (Empty, at their new generation): a cluster records them, as it
    /// records every settled rebalance.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<(String, SettledGroup)> {
        for group in self.groups.values_mut() {
            group.pending.retain(|_, until| *until > now);
            // A member parked in JoinGroup or SyncGroup is waiting on us, not silent: only the
            // rebalance deadline (or the leader's own expiry) ends its wait.
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.saturating_duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(member = %id, "consumer group member session expired");
                group.remove_member(id, GroupError::UnknownMemberId);
            }
            if !expired.is_empty() {
                group.prepare_rebalance(now);
            }
            if group.state == GroupState::PreparingRebalance && now >= group.rebalance_deadline {
                let late: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.join_waiter.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &late {
                    group.remove_member(id, GroupError::UnknownMemberId);
                }
            }
            group.maybe_complete_join(now);
        }
        let forgotten: Vec<String> = self
            .groups
            .iter()
            // Generation 0 never settled: only pending ids that never joined.
            .filter(|(_, g)| {
                g.state == GroupState::Empty && g.pending.is_empty() && g.generation > 0
            })
            .map(|(id, _)| id.clone())
            .collect();
        let emptied = forgotten.iter().filter_map(|id| Some((id.clone(), self.settled(id)?)));
        let emptied = emptied.collect();
        self.groups.retain(|_, g| g.state != GroupState::Empty || !g.pending.is_empty());
        self.pending_total = self.groups.values().map(|g| g.pending.len()).sum();
        emptied
    }

    /// Pending member ids over all groups.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.pending_total
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
