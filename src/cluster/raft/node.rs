//! [`RaftNode`]: one member of the metadata group. Starts openraft over the durable log and the
//! state machine, initializes the group on a voter's first start, proposes commands (forwarding
//! to the leader over FORWARD_COMMAND when this node is not it), and answers the peer requests
//! openraft and other nodes send. Never blocks forever: every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Instant, Raft, SnapshotPolicy};
use tokio::sync::watch;

use super::log_store::LogStore;
use super::network::{self, NetworkFactory};
use super::state_machine::StateMachine;
use super::types::{Applied, ForwardReply, ForwardRequest, Proposal, TypeConfig};
use super::{RaftConfig, RaftNodeError, StateMachineData};
use crate::peer::{
    FORWARD_COMMAND, PeerClient, PeerError, RAFT_APPEND, RAFT_SNAPSHOT, RAFT_TRANSFER, RAFT_VOTE,
};

/// How long `propose` keeps looking for a leader (an election takes one or two timeouts).
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// One forwarded command's time budget, commit included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a leader that left the voters waits for its successor (within FORWARD_TIMEOUT).
const HANDOVER_WAIT: Duration = Duration::from_secs(5);
/// A snapshot every this many applied entries; the log before it is purged.
const SNAPSHOT_EVERY: u64 = 1000;

pub struct RaftNode<S: StateMachineData> {
    id: u64,
    raft: Raft<TypeConfig, StateMachine<S>>,
    applied: watch::Receiver<Arc<S>>,
    voters: BTreeMap<u64, String>,
    /// A node whose last answer to the leader is older than this counts as unreachable when a
    /// voter change checks the quorum (the longest election timeout: several heartbeats).
    reach_window: Duration,
    token: Option<String>,
    /// Forwarding clients by address, made on first use.
    clients: std::sync::Mutex<BTreeMap<String, PeerClient>>,
}

impl<S: StateMachineData> RaftNode<S> {
    /// Opens the node's storage under `cfg.dir` and starts Raft. A voter whose storage is new
    /// initializes the group with every voter (all voters doing so is safe: they propose the
    /// same membership); a node that already holds a log rejoins from it.
    pub async fn start(cfg: RaftConfig) -> Result<Arc<RaftNode<S>>, RaftNodeError> {
        let id = cfg.node_id;
        let start_err = |reason: String| RaftNodeError::Start { node: id, reason };
        let config = Config {
            cluster_name: "minikafka".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_ms.0,
            election_timeout_max: cfg.election_timeout_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            ..Default::default()
        }
        .validate()
        .map_err(|e| start_err(format!("bad raft timings: {e}")))?;
        let log = LogStore::open(&cfg.dir)?;
        let has_log = log.last_log_index().is_some();
        let (state_machine, applied) = StateMachine::<S>::open(&cfg.dir)?;
        let network = NetworkFactory { my_id: id, token: cfg.token.clone() };
        let raft = Raft::new(id, Arc::new(config), network, log, state_machine)
            .await
            .map_err(|e| start_err(e.to_string()))?;
        if cfg.voters.contains_key(&id) && !has_log {
            let is_initialized =
                raft.is_initialized().await.map_err(|e| start_err(e.to_string()))?;
            if !is_initialized {
                let members: BTreeMap<u64, BasicNode> =
                    cfg.voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
                match raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(node = id, voters = ?cfg.voters, "raft group initialized")
                    }
                    // Another voter's log reached us first: the group exists already.
                    Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                        tracing::debug!(node = id, "raft group already initialized: {e}")
                    }
                    Err(e) => return Err(start_err(e.to_string())),
                }
            }
        }
        Ok(Arc::new(RaftNode {
            id,
            raft,
            applied,
            voters: cfg.voters,
            reach_window: Duration::from_millis(cfg.election_timeout_ms.1),
            token: cfg.token,
            clients: std::sync::Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn node_id(&self) -> u64 {
        self.id
    }

    /// The state after the last applied command.
    pub fn image(&self) -> Arc<S> {
        self.applied.borrow().clone()
    }

    /// Changes whenever a command is applied (or a snapshot installed).
    pub fn subscribe(&self) -> watch::Receiver<Arc<S>> {
        self.applied.clone()
    }

    /// The leader this node currently knows of.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Whether this node leads the metadata and is a voter: a leader that has just left the
    /// voters (and hands over within moments) no longer acts as the controller.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader() && {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            metrics.membership_config.membership().voter_ids().any(|v| v == self.id)
        }
    }

    /// The index of the newest committed entry this node knows of (0 before any).
    pub fn commit_index(&self) -> u64 {
        self.raft.metrics().borrow_watched().local_committed.as_ref().map_or(0, |l| l.index())
    }

    /// The index of the newest entry applied to [`RaftNode::image`] (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow_watched().last_applied.as_ref().map_or(0, |l| l.index())
    }

    /// Commits `command` and returns the state machine's answer, once applied on the leader.
    /// On a node that is not the leader the command is forwarded to it; while no leader is
    /// known (an election), retries for a bounded time.
    pub async fn propose(&self, command: S::Command) -> Result<S::Response, RaftNodeError> {
        let value = serde_json::to_value(&command).map_err(|e| RaftNodeError::Rejected {
            node: self.id,
            reason: format!("unencodable: {e}"),
        })?;
        let applied = self.submit(ForwardRequest::Propose(value)).await?;
        match applied {
            Some(Applied(Ok(answer))) => {
                serde_json::from_value(answer).map_err(|e| RaftNodeError::Rejected {
                    node: self.id,
                    reason: format!("undecodable answer: {e}"),
                })
            }
            Some(Applied(Err(reason))) => Err(RaftNodeError::Rejected { node: self.id, reason }),
            None => {
                Err(RaftNodeError::Raft { node: self.id, reason: "no answer to a proposal".into() })
            }
        }
    }

    /// Adds node `id` at cluster address `addr` as a learner (a non-voting follower of the
    /// metadata log); forwarded to the leader when this node is not it.
    pub async fn add_learner(&self, id: u64, addr: String) -> Result<(), RaftNodeError> {
        self.submit(ForwardRequest::AddLearner { id, addr }).await.map(|_| ())
    }

    /// The voters (the controllers) as this node's membership says, with their cluster
    /// addresses; the `--controllers` list until it has seen a membership.
    pub fn voters(&self) -> BTreeMap<u64, String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: BTreeMap<u64, String> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        if voters.is_empty() { self.voters.clone() } else { voters }
    }

    /// The voters' ids, as [`RaftNode::voters`] without the addresses (no string copies: the
    /// brokers' view asks it on every call, group coordinator lookups included).
    pub fn voter_ids(&self) -> Vec<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let ids: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        if ids.is_empty() { self.voters.keys().copied().collect() } else { ids }
    }

    /// Makes node `id` a voter (`add`: it must be a learner, a broker that joined) or turns a
    /// voter back into a learner, through openraft's joint-consensus membership change, one
    /// change at a time. Refused when the voters answering the leader would not make a quorum
    /// of the current set and of the new one, or when an added node does not answer.
    pub async fn change_voter(&self, id: u64, add: bool) -> Result<(), RaftNodeError> {
        self.submit(ForwardRequest::ChangeVoter { id, add }).await.map(|_| ())
    }

    /// The membership change for [`RaftNode::change_voter`], checked on the leader.
    fn voter_change(&self, id: u64, add: bool) -> Result<ChangeMembers<u64, BasicNode>, String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Err("a voter change is under way: try again once it is done".into());
        }
        let current: BTreeSet<u64> = membership.voter_ids().collect();
        let answers = |node: u64| {
            node == self.id
                || metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&node).copied().flatten())
                    .is_some_and(|at| at.elapsed() <= self.reach_window)
        };
        let mut new = current.clone();
        if add {
            if current.contains(&id) {
                return Err(format!("node {id} is a voter already"));
            }
            if membership.get_node(&id).is_none() {
                return Err(format!(
                    "node {id} is not in the cluster: start it with --controllers naming the \
                     voters, then add it"
                ));
            }
            if !answers(id) {
                return Err(format!("node {id} does not answer the controller: is it running?"));
            }
            new.insert(id);
        } else {
            if !current.contains(&id) {
                return Err(format!("node {id} is not a voter (the voters are {current:?})"));
            }
            if current.len() == 1 {
                return Err(format!("node {id} is the last voter"));
            }
            new.remove(&id);
        }
        for (which, set) in [("current", &current), ("new", &new)] {
            let up: Vec<u64> = set.iter().copied().filter(|v| answers(*v)).collect();
            let need = set.len() / 2 + 1;
            if up.len() < need {
                return Err(format!(
                    "only {up:?} of the {which} voters {set:?} answer the controller and {need} \
                     are needed: the change would lose the quorum"
                ));
            }
        }
        let ids = BTreeSet::from([id]);
        Ok(if add { ChangeMembers::AddVoterIds(ids) } else { ChangeMembers::RemoveVoters(ids) })
    }

    /// A leader that removed itself from the voters hands leadership to the most up-to-date
    /// voter (openraft steps down on its own only a leader gone from the membership, and this
    /// one stays a learner), and waits for it, bounded, so whoever asked sees a voter lead when
    /// the answer comes.
    async fn hand_over(&self) {
        let me = self.id;
        let target = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            let matched =
                |id: &u64| metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten());
            metrics.membership_config.membership().voter_ids().max_by_key(matched)
        };
        let Some(to) = target else { return };
        tracing::info!(node = me, to, "left the voters: handing leadership over");
        if let Err(e) = self.raft.trigger().transfer_leader(to).await {
            tracing::warn!(node = me, to, "handing leadership over: {e}");
            return;
        }
        let moved = self
            .raft
            .wait(Some(HANDOVER_WAIT))
            .metrics(move |m| m.current_leader.is_some_and(|l| l != me), "leadership handed over")
            .await;
        if let Err(e) = moved {
            tracing::warn!(node = me, "still leading after leaving the voters: {e}");
        }
    }

    /// Runs `request` on the leader: here if this node leads, else forwarded.
    async fn submit(&self, request: ForwardRequest) -> Result<Option<Applied>, RaftNodeError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut hint: Option<u64> = None;
        let mut probe = 0usize;
        loop {
            let target = hint.take().or_else(|| self.leader());
            let reply = match target {
                Some(leader) if leader == self.id => self.execute(&request).await,
                Some(leader) => self.forward(leader, &request).await?,
                // No leader known (an election, or a learner not yet added): ask the voters in
                // turn; one that knows the leader names it.
                None => match self
                    .voters
                    .keys()
                    .filter(|v| **v != self.id)
                    .nth(probe % self.voters.len().max(1))
                {
                    Some(voter) => {
                        probe += 1;
                        self.forward(*voter, &request)
                            .await
                            .unwrap_or(ForwardReply::NotLeader { leader: None })
                    }
                    None => ForwardReply::NotLeader { leader: None },
                },
            };
            match reply {
                ForwardReply::Applied(applied) => return Ok(Some(applied)),
                ForwardReply::Done => return Ok(None),
                ForwardReply::Ambiguous(reason) => {
                    return Err(RaftNodeError::Ambiguous { node: self.id, reason });
                }
                ForwardReply::Failed(reason) => {
                    return Err(RaftNodeError::Raft { node: self.id, reason });
                }
                ForwardReply::Refused(reason) => {
                    return Err(RaftNodeError::Rejected { node: self.id, reason });
                }
                ForwardReply::NotLeader { leader } => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(RaftNodeError::NoLeader { node: self.id, waited: LEADER_WAIT });
                    }
                    hint = leader.filter(|l| Some(*l) != target);
                    if hint.is_none() {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
    }

    /// Runs `request` on this node's Raft; `NotLeader` when it is not the leader.
    async fn execute(&self, request: &ForwardRequest) -> ForwardReply {
        let result = match request {
            ForwardRequest::Propose(value) => self.raft.client_write(Proposal(value.clone())).await,
            ForwardRequest::AddLearner { id, addr } => {
                self.raft.add_learner(*id, BasicNode::new(addr), false).await
            }
            ForwardRequest::ChangeVoter { id, add } => {
                if !self.raft.is_leader() {
                    return ForwardReply::NotLeader { leader: self.leader() };
                }
                match self.voter_change(*id, *add) {
                    // Removed voters stay learners: they are still brokers.
                    Ok(change) => {
                        let r = self.raft.change_membership(change, true).await;
                        if r.is_ok() && !*add && *id == self.id {
                            self.hand_over().await;
                        }
                        r
                    }
                    Err(reason) => return ForwardReply::Refused(reason),
                }
            }
        };
        match result {
            Ok(response) => match request {
                ForwardRequest::Propose(_) => ForwardReply::Applied(response.data),
                ForwardRequest::AddLearner { .. } | ForwardRequest::ChangeVoter { .. } => {
                    ForwardReply::Done
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                ForwardReply::NotLeader { leader: f.leader_id }
            }
            Err(RaftError::APIError(e @ ClientWriteError::LogEntryDiscarded(_))) => {
                ForwardReply::Ambiguous(e.to_string())
            }
            Err(e) => ForwardReply::Failed(e.to_string()),
        }
    }

    /// Sends `request` to node `leader`. A failure to connect is a `NotLeader` (try again); a
    /// failure after sending is an error, since the command may have been committed.
    async fn forward(
        &self,
        leader: u64,
        request: &ForwardRequest,
    ) -> Result<ForwardReply, RaftNodeError> {
        let Some(addr) = self.address_of(leader) else {
            return Ok(ForwardReply::NotLeader { leader: None });
        };
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            clients
                .entry(addr.clone())
                .or_insert_with(|| PeerClient::new(self.id, addr, self.token.clone()))
                .clone()
        };
        let payload = serde_json::to_vec(request).map_err(|e| RaftNodeError::Rejected {
            node: self.id,
            reason: format!("unencodable: {e}"),
        })?;
        match client.call(FORWARD_COMMAND, Bytes::from(payload), FORWARD_TIMEOUT).await {
            Ok(answer) => serde_json::from_slice(&answer).map_err(|e| RaftNodeError::Forward {
                node: self.id,
                leader,
                source: PeerError::Malformed {
                    addr: client.addr().to_string(),
                    reason: e.to_string(),
                },
            }),
            Err(PeerError::Connect { .. }) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                Ok(ForwardReply::NotLeader { leader: None })
            }
            Err(source) => Err(RaftNodeError::Forward { node: self.id, leader, source }),
        }
    }

    /// A node's cluster address: from the voters given at start, else from the membership.
    fn address_of(&self, node: u64) -> Option<String> {
        if let Some(addr) = self.voters.get(&node) {
            return Some(addr.clone());
        }
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.membership_config.get_node(&node).map(|n| n.addr.clone())
    }

    /// Answers a peer's RAFT_APPEND, RAFT_VOTE, RAFT_SNAPSHOT, RAFT_TRANSFER or FORWARD_COMMAND.
    pub async fn handle_peer(&self, kind: u8, payload: Bytes) -> Result<Bytes, PeerError> {
        match kind {
            RAFT_APPEND | RAFT_VOTE | RAFT_SNAPSHOT | RAFT_TRANSFER => {
                network::serve(&self.raft, kind, &payload).await
            }
            FORWARD_COMMAND => {
                let request: ForwardRequest = serde_json::from_slice(&payload)
                    .map_err(|e| PeerError::handler(format!("bad forwarded command: {e}")))?;
                // Executed here only: a node that is not the leader names the leader instead of
                // forwarding again, so a stale view can never bounce a command around.
                let reply = self.execute(&request).await;
                serde_json::to_vec(&reply)
                    .map(Bytes::from)
                    .map_err(|e| PeerError::handler(format!("cannot encode the answer: {e}")))
            }
            other => Err(PeerError::handler(format!(
                "node {}: not a raft request kind: {other}",
                self.id
            ))),
        }
    }

    /// Stops Raft (no more votes, appends or applies); the storage stays as it is.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, "raft shutdown: {e}");
        }
    }
}
