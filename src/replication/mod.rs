//! Kafka's in-sync-replica data path (see shared CLUSTER.md, "The rules"). For each partition
//! this broker is a replica of, [`ReplicaManager`] holds its role as the metadata names it:
//! leader (follower positions, the high watermark over the ISR, acks=all waiters, ISR change
//! requests; [`leader`]) or follower (the fetch loop and truncation by leader epoch;
//! [`follower`]). Followers reach leaders through a [`transport::FetchTransport`] carrying
//! [`fetch_protocol`] frames. The pure rules ([`high_watermark`], [`epoch_cache`], the divergence
//! and truncation points) are model-tested on their own.
//!
//! Owns no consensus and no files: the cluster glue tells it, from committed metadata, who leads
//! each partition at which epoch and what the ISR is, and proposes the ISR changes it asks for;
//! the storage layer keeps the bytes ([`replica_log::ReplicaLog`]).
//!
//! The leader's rules for a follower's fetch: the leader epoch the follower believes in must be
//! the leader's (older: FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH; NOT_LEADER_OR_FOLLOWER
//! when not leading); if the follower's last fetched epoch ends on the leader before its fetch
//! offset, the answer is that diverging `{epoch, end_offset}` (Kafka's Fetch v12+); otherwise the
//! fetch offset is the follower's durable end, counted in the watermark, and the answer carries
//! the stored batches from there (up to the leader's log end, not the watermark), the watermark
//! and the log start, after a long poll of up to `max_wait` when nothing is new.

/// The leader-epoch cache lives in storage, which persists it (layers never reach up).
pub use crate::storage::EpochCache;
pub use crate::storage::epoch_cache;
mod broker_log;
pub mod fetch_protocol;
pub mod follower;
pub mod high_watermark;
pub mod leader;
pub mod peer_transport;
pub mod replica_log;
pub mod throttle;
pub mod transport;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::peer::PeerError;
use tokio::task::JoinHandle;

use fetch_protocol::{FetchDecodeError, FetchErrorCode, FetchRequest, FetchResponse};
pub use follower::FetchConfig;
use follower::FollowerTask;
use leader::HwState;
use leader::{IsrCounters, IsrSink, LeaderParams, PartitionLeader};
use replica_log::PartitionLogs;
use throttle::ReplicationThrottle;
use transport::FetchTransport;

/// A broker's id (the Kafka broker id, an i32 on Kafka's wire).
pub type NodeId = u64;

/// What a partition's leader knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub high_watermark: u64,
}

/// This broker's replication as its metrics report it (see [`ReplicaManager::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// Committed ISR shrinks of partitions led here, since start.
    pub isr_shrinks: u64,
    /// Committed ISR expands of partitions led here, since start.
    pub isr_expands: u64,
    /// Every follower of every partition led here (and only those: the series stay bounded by
    /// what this broker leads), sorted.
    pub follower_lags: Vec<FollowerLag>,
}

/// How far one follower is behind the leader here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FollowerLag {
    pub topic: String,
    pub partition: u32,
    pub replica: NodeId,
    /// The leader's log end minus the end the follower last fetched from.
    pub lag_records: u64,
}

/// How far one follower is from having copied a partition led here, in records and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub replica: NodeId,
    /// The leader's log end minus the end the follower last fetched from.
    pub records: u64,
    /// Bytes stored from the follower's end to the leader's log end, and the bytes of the
    /// leader's whole log: both known, or neither (the log could not be read).
    pub bytes: Option<u64>,
    pub log_bytes: Option<u64>,
}

/// A partition's high watermark as one of its leader's long polls follows it (see
/// [`ReplicaManager::watch_high_watermark`]).
pub struct WatermarkWatch {
    leader: Arc<PartitionLeader>,
    changes: tokio::sync::watch::Receiver<HwState>,
}

impl WatermarkWatch {
    /// The watermark now (the leader's own durable end counted) and whether this leadership
    /// still holds. What it returns is marked seen: only a later move wakes [`Self::changed`].
    pub fn current(&mut self) -> (u64, bool) {
        self.leader.refresh();
        // Read from the watch, not from `refresh`: a move in between is then in the value seen.
        let s = *self.changes.borrow_and_update();
        (s.hw, s.leading)
    }

    /// Waits until the watermark, the ISR size or the leadership moves (a leader replaced here
    /// or gone is stopped first, which [`Self::current`] then reports as not leading).
    pub async fn changed(&mut self) {
        // The sender lives in the leader this holds, so the channel never closes under it.
        let _ = self.changes.changed().await;
    }
}

/// An ISR change a leader asks the controller for (compare-and-set on `partition_epoch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The whole new ISR, sorted.
    pub isr: Vec<NodeId>,
}

/// Errors of the replication layer; each names the partition and node involved.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("node {node} does not lead topic {topic:?} partition {partition}")]
    NotLeader { topic: String, partition: u32, node: NodeId },
    #[error(
        "topic {topic:?} partition {partition}: written, but the ISR shrank to {isr} (fewer than \
         min.insync.replicas {min}) before it was replicated"
    )]
    NotEnoughReplicasAfterAppend { topic: String, partition: u32, isr: usize, min: usize },
    #[error(
        "topic {topic:?} partition {partition}: the high watermark ({high_watermark}) did not reach \
         {end} in time"
    )]
    Timeout { topic: String, partition: u32, end: u64, high_watermark: u64 },
    #[error(
        "topic {topic:?} partition {partition}: leader epoch {requested} is older than {current}"
    )]
    StaleEpoch { topic: String, partition: u32, requested: i32, current: i32 },
    #[error("topic {topic:?} partition {partition}: {reason}")]
    InvalidAssignment { topic: String, partition: u32, reason: String },
    #[error("topic {topic:?} partition {partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: crate::storage::StorageError,
    },
    #[error("topic {topic:?} partition {partition}: {source}")]
    Broker {
        topic: String,
        partition: u32,
        #[source]
        source: crate::broker::BrokerError,
    },
    #[error("replica fetch from node {node}: {source}")]
    Protocol {
        node: NodeId,
        #[source]
        source: FetchDecodeError,
    },
    #[error("replication needs a tokio runtime (called outside one)")]
    NoRuntime,
}

/// A partition's role here.
enum Role {
    Leader { leader: Arc<PartitionLeader>, task: JoinHandle<()> },
    Follower { epoch: i32, leader: NodeId, addr: String, task: JoinHandle<()> },
}

impl Role {
    /// Ends the role: its tasks are aborted, waiters and long polls return.
    fn end(self) -> Option<u64> {
        match self {
            Role::Leader { leader, task } => {
                task.abort();
                leader.stop();
                Some(leader.refresh())
            }
            Role::Follower { task, .. } => {
                task.abort();
                None
            }
        }
    }
}

/// One partition this broker is a replica of.
struct Slot {
    /// The role generation, bumped on every change under this lock; a fetch loop touches the log
    /// only under it and only while its generation is current.
    ops: Arc<Mutex<u64>>,
    role: Option<Role>,
    /// Highest leader epoch applied here: epochs never go back.
    epoch: i32,
    /// The high watermark as last known (from the leader, while following): what a new leader
    /// here starts from.
    known_hw: Arc<AtomicU64>,
    /// Whether its fetches go through the reassignment throttle (a replica being added here by
    /// a move, not in sync yet, while a throttle is in force); read by the fetch loop.
    throttled: Arc<AtomicBool>,
}

impl Slot {
    fn new(epoch: i32, throttled: bool) -> Slot {
        Slot {
            ops: Arc::new(Mutex::new(0)),
            role: None,
            epoch,
            known_hw: Arc::new(AtomicU64::new(0)),
            throttled: Arc::new(AtomicBool::new(throttled)),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(r) = self.role.take() {
            r.end();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its map consistent before anything can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The replicas of this broker: which partitions it leads or follows, at which epoch.
pub struct ReplicaManager {
    logs: Arc<dyn PartitionLogs>,
    node_id: NodeId,
    transport: Arc<dyn FetchTransport>,
    lag_time: Duration,
    fetch: FetchConfig,
    /// This broker's registration (broker epoch), sent with every fetch.
    incarnation: Arc<AtomicU64>,
    slots: Mutex<HashMap<(String, u32), Slot>>,
    isr_sink: IsrSink,
    isr_counters: Arc<IsrCounters>,
    /// The reassignment throttle, shared by the fetches of every throttled slot.
    throttle: Arc<ReplicationThrottle>,
    /// The partitions whose fetches are throttled, as the metadata last said (taken after the
    /// slots lock, never before it).
    throttled: Mutex<BTreeSet<(String, u32)>>,
}

impl ReplicaManager {
    /// A manager over `logs`, fetching through `transport`; `lag_time` is Kafka's
    /// `replica.lag.time.max.ms`.
    pub fn with_parts(
        logs: Arc<dyn PartitionLogs>,
        node_id: NodeId,
        transport: Arc<dyn FetchTransport>,
        lag_time: Duration,
        fetch: FetchConfig,
    ) -> Arc<ReplicaManager> {
        // Nobody listens until the glue takes the receiver; requests made before are dropped
        // and asked again (an unapplied request is repeated).
        let (tx, _) = mpsc::unbounded_channel();
        Arc::new(ReplicaManager {
            logs,
            node_id,
            transport,
            lag_time,
            fetch,
            incarnation: Arc::new(AtomicU64::new(0)),
            slots: Mutex::new(HashMap::new()),
            isr_sink: Arc::new(Mutex::new(tx)),
            isr_counters: Arc::default(),
            throttle: Arc::default(),
            throttled: Mutex::new(BTreeSet::new()),
        })
    }

    /// The broker's manager: partitions are the broker's logs, followers fetch over the
    /// broker-to-broker listener (authenticating with `token`), Kafka's fetch defaults.
    pub fn new(
        broker: Arc<crate::broker::Broker>,
        node_id: NodeId,
        token: Option<String>,
        lag_time: Duration,
    ) -> Arc<ReplicaManager> {
        let transport = Arc::new(peer_transport::PeerTransport::new(node_id, token));
        ReplicaManager::with_parts(broker, node_id, transport, lag_time, FetchConfig::default())
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This broker's registration in the metadata (its broker epoch), sent with its fetches so a
    /// leader refuses an older process of the same id.
    pub fn set_incarnation(&self, incarnation: u64) {
        self.incarnation.store(incarnation, Ordering::Release);
    }

    /// The reassignment throttle (bytes/s for this broker, `None`: none) and the partitions it
    /// applies to: those whose replica here is being added by a move and is not in sync yet.
    /// In-sync followers are never throttled. Called with every metadata image; does nothing
    /// when neither changed.
    pub fn set_reassignment_throttle(
        &self,
        rate_bytes_per_s: Option<u64>,
        adding: BTreeSet<(String, u32)>,
    ) {
        let adding = if rate_bytes_per_s.is_some() { adding } else { BTreeSet::new() };
        if self.throttle.rate() == rate_bytes_per_s && *lock(&self.throttled) == adding {
            return;
        }
        self.throttle.set_rate(rate_bytes_per_s);
        let slots = lock(&self.slots);
        for (key, slot) in slots.iter() {
            slot.throttled.store(adding.contains(key), Ordering::Relaxed);
        }
        tracing::info!(?rate_bytes_per_s, partitions = adding.len(), "reassignment throttle");
        *lock(&self.throttled) = adding;
    }

    fn check_ids(
        &self,
        topic: &str,
        partition: u32,
        ids: &[NodeId],
    ) -> Result<(), ReplicationError> {
        match ids.iter().find(|&&n| i32::try_from(n).is_err()) {
            Some(n) => Err(ReplicationError::InvalidAssignment {
                topic: topic.to_owned(),
                partition,
                reason: format!("node id {n} does not fit Kafka's i32 broker ids"),
            }),
            None => Ok(()),
        }
    }

    fn spawn(
        &self,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<JoinHandle<()>, ReplicationError> {
        let h = tokio::runtime::Handle::try_current().map_err(|_| ReplicationError::NoRuntime)?;
        Ok(h.spawn(fut))
    }

    /// Leads `topic`/`partition` at `leader_epoch` (the metadata committed it): stamps the log
    /// with the epoch, and serves follower fetches from now on. The same epoch again only
    /// updates the ISR, partition epoch and replicas.
    pub fn become_leader(
        &self,
        topic: &str,
        partition: u32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
        replicas: Vec<NodeId>,
    ) -> Result<(), ReplicationError> {
        self.check_ids(topic, partition, &isr)?;
        self.check_ids(topic, partition, &replicas)?;
        self.check_ids(topic, partition, &[self.node_id])?;
        let mut slots = lock(&self.slots);
        let key = (topic.to_owned(), partition);
        if let Some(slot) = slots.get(&key) {
            if leader_epoch < slot.epoch {
                return Err(ReplicationError::StaleEpoch {
                    topic: topic.to_owned(),
                    partition,
                    requested: leader_epoch,
                    current: slot.epoch,
                });
            }
            if let Some(Role::Leader { leader, .. }) = &slot.role
                && leader.leader_epoch() == leader_epoch
            {
                leader.update_replicas(replicas);
                leader.update_isr(isr, partition_epoch);
                return Ok(());
            }
        }
        let (log, appended) = self.logs.partition(topic, partition)?;
        let throttled = lock(&self.throttled).contains(&key);
        let slot = slots.entry(key).or_insert_with(|| Slot::new(leader_epoch, throttled));
        {
            let mut generation = lock(&slot.ops);
            *generation += 1;
            if let Some(old) = slot.role.take()
                && let Some(hw) = old.end()
            {
                slot.known_hw.fetch_max(hw, Ordering::AcqRel);
            }
            slot.epoch = leader_epoch;
            log.set_leader_epoch(leader_epoch).map_err(|source| ReplicationError::Storage {
                topic: topic.to_owned(),
                partition,
                source,
            })?;
        }
        let leader = Arc::new(PartitionLeader::new(LeaderParams {
            topic: topic.to_owned(),
            partition,
            node_id: self.node_id,
            log,
            appended,
            lag_time: self.lag_time,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            hw_start: slot.known_hw.load(Ordering::Acquire),
            isr_sink: self.isr_sink.clone(),
            isr_counters: self.isr_counters.clone(),
        }));
        // Kafka checks for lagging followers every half lag time.
        let tick = (self.lag_time / 2).max(Duration::from_millis(10));
        let weak = Arc::downgrade(&leader);
        let task = self.spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(l) if !l.is_stopped() => l.check_isr(tokio::time::Instant::now()),
                    _ => return,
                }
            }
        })?;
        tracing::info!(topic, partition, leader_epoch, partition_epoch, "leading");
        slot.role = Some(Role::Leader { leader, task });
        Ok(())
    }

    /// Follows `leader` (at `leader_cluster_addr`) for `topic`/`partition` at `leader_epoch`: a
    /// fetch loop runs until the next role change. The same epoch and leader again is a no-op.
    pub fn become_follower(
        &self,
        topic: &str,
        partition: u32,
        leader_epoch: i32,
        leader: NodeId,
        leader_cluster_addr: String,
    ) -> Result<(), ReplicationError> {
        if leader == self.node_id {
            return Err(ReplicationError::InvalidAssignment {
                topic: topic.to_owned(),
                partition,
                reason: format!("node {leader} cannot follow itself"),
            });
        }
        let mut slots = lock(&self.slots);
        let key = (topic.to_owned(), partition);
        if let Some(slot) = slots.get(&key) {
            if leader_epoch < slot.epoch {
                return Err(ReplicationError::StaleEpoch {
                    topic: topic.to_owned(),
                    partition,
                    requested: leader_epoch,
                    current: slot.epoch,
                });
            }
            if let Some(Role::Follower { epoch, leader: l, addr, .. }) = &slot.role
                && *epoch == leader_epoch
                && *l == leader
                && *addr == leader_cluster_addr
            {
                return Ok(());
            }
        }
        let (log, appended) = self.logs.partition(topic, partition)?;
        let throttled = lock(&self.throttled).contains(&key);
        let slot = slots.entry(key).or_insert_with(|| Slot::new(leader_epoch, throttled));
        let generation = {
            let mut generation = lock(&slot.ops);
            *generation += 1;
            if let Some(old) = slot.role.take()
                && let Some(hw) = old.end()
            {
                slot.known_hw.fetch_max(hw, Ordering::AcqRel);
            }
            slot.epoch = leader_epoch;
            *generation
        };
        let task = FollowerTask {
            topic: topic.to_owned(),
            partition,
            node_id: self.node_id,
            incarnation: self.incarnation.clone(),
            leader,
            leader_addr: leader_cluster_addr.clone(),
            leader_epoch,
            log,
            appended,
            transport: self.transport.clone(),
            config: self.fetch,
            ops: slot.ops.clone(),
            generation,
            known_hw: slot.known_hw.clone(),
            throttled: slot.throttled.clone(),
            throttle: self.throttle.clone(),
        };
        let task = self.spawn(task.run())?;
        tracing::info!(topic, partition, leader_epoch, leader, "following");
        slot.role =
            Some(Role::Follower { epoch: leader_epoch, leader, addr: leader_cluster_addr, task });
        Ok(())
    }

    /// Not a replica any more, or the partition is offline: ends whatever role it had here.
    pub fn stop(&self, topic: &str, partition: u32) {
        let slot = lock(&self.slots).remove(&(topic.to_owned(), partition));
        if let Some(mut slot) = slot {
            let mut generation = lock(&slot.ops);
            *generation += 1;
            if let Some(r) = slot.role.take() {
                r.end();
            }
        }
    }

    /// Ends every role (broker shutdown).
    pub fn shutdown(&self) {
        let all: Vec<_> = lock(&self.slots).drain().collect();
        for (_, mut slot) in all {
            let mut generation = lock(&slot.ops);
            *generation += 1;
            if let Some(r) = slot.role.take() {
                r.end();
            }
        }
    }

    fn leader(&self, topic: &str, partition: u32) -> Option<Arc<PartitionLeader>> {
        match lock(&self.slots).get(&(topic.to_owned(), partition))?.role.as_ref()? {
            Role::Leader { leader, .. } => Some(leader.clone()),
            Role::Follower { .. } => None,
        }
    }

    /// The leader's view of a partition led here.
    pub fn leader_state(&self, topic: &str, partition: u32) -> Option<LeaderInfo> {
        self.leader(topic, partition).map(|l| l.info())
    }

    /// The ISR counters and the followers' lags, for a metrics scrape.
    pub fn stats(&self) -> ReplicationStats {
        // Collected first, so no partition's lock is taken under the slots lock.
        let leaders: Vec<((String, u32), Arc<PartitionLeader>)> = lock(&self.slots)
            .iter()
            .filter_map(|(key, slot)| match &slot.role {
                Some(Role::Leader { leader, .. }) => Some((key.clone(), leader.clone())),
                _ => None,
            })
            .collect();
        let mut follower_lags: Vec<FollowerLag> =
            leaders
                .into_iter()
                .flat_map(|((topic, partition), leader)| {
                    leader.follower_lags().into_iter().map(move |(replica, lag_records)| {
                        FollowerLag { topic: topic.clone(), partition, replica, lag_records }
                    })
                })
                .collect();
        follower_lags.sort_unstable();
        ReplicationStats {
            isr_shrinks: self.isr_counters.shrinks.load(Ordering::Relaxed),
            isr_expands: self.isr_counters.expands.load(Ordering::Relaxed),
            follower_lags,
        }
    }

    /// Each follower's copy progress, for a partition led here (empty otherwise).
    pub fn copy_progress(&self, topic: &str, partition: u32) -> Vec<CopyProgress> {
        self.leader(topic, partition).map(|l| l.copy_progress()).unwrap_or_default()
    }

    /// The high watermark of a partition led here.
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        self.leader(topic, partition).map(|l| l.refresh())
    }

    /// The high watermark of a partition led here, to follow as it moves (a long poll waits on
    /// it instead of looking again and again). One lookup, however long it is followed.
    pub fn watch_high_watermark(&self, topic: &str, partition: u32) -> Option<WatermarkWatch> {
        self.leader(topic, partition).map(|leader| {
            let changes = leader.hw_changes();
            WatermarkWatch { leader, changes }
        })
    }

    /// The high watermark as this replica knows it, leading or following (a follower's is the
    /// leader's as last fetched, never past its own log end).
    pub fn known_high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        if let Some(hw) = self.high_watermark(topic, partition) {
            return Some(hw);
        }
        lock(&self.slots)
            .get(&(topic.to_owned(), partition))
            .map(|s| s.known_hw.load(Ordering::Acquire))
    }

    /// acks=all: after the local append, waits until the high watermark reaches `end`.
    pub async fn wait_for_hw(
        &self,
        topic: &str,
        partition: u32,
        end: u64,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        self.wait_for_acks(topic, partition, end, 1, timeout).await
    }

    /// [`ReplicaManager::wait_for_hw`], answering NotEnoughReplicasAfterAppend when the ISR is
    /// smaller than `min_isr` once the watermark passed `end` (Kafka's check at completion).
    pub async fn wait_for_acks(
        &self,
        topic: &str,
        partition: u32,
        end: u64,
        min_isr: usize,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let Some(leader) = self.leader(topic, partition) else {
            return Err(ReplicationError::NotLeader {
                topic: topic.to_owned(),
                partition,
                node: self.node_id,
            });
        };
        leader.wait_for_hw(end, min_isr, timeout).await
    }

    /// The REPLICA_FETCH handler of the broker-to-broker listener (leader side): see
    /// [`ReplicaManager::handle_fetch_frame`]; a malformed frame is answered with an ERROR frame.
    pub async fn handle_fetch(&self, from: NodeId, payload: Bytes) -> Result<Bytes, PeerError> {
        self.handle_fetch_frame(from, payload).await.map_err(|e| PeerError::handler(e.to_string()))
    }

    /// Answers a REPLICA_FETCH frame from node `from` (authenticated by the transport). Refusals
    /// (not leader, epochs, divergence) are answers; only a malformed frame is an error.
    pub async fn handle_fetch_frame(
        &self,
        from: NodeId,
        payload: Bytes,
    ) -> Result<Bytes, ReplicationError> {
        let req = FetchRequest::decode(&payload)
            .map_err(|source| ReplicationError::Protocol { node: from, source })?;
        let resp = match self.leader(&req.topic, req.partition) {
            Some(leader) => leader.handle_fetch(from, &req).await,
            None => FetchResponse::error(FetchErrorCode::NotLeaderOrFollower, -1),
        };
        Ok(resp.encode())
    }

    /// Hands the cluster glue the ISR changes leaders here ask for; it proposes AlterPartition
    /// for each and calls [`ReplicaManager::update_isr`] once applied. A later call replaces the
    /// earlier receiver.
    pub fn take_isr_requests(&self) -> mpsc::UnboundedReceiver<IsrChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.isr_sink) = tx;
        rx
    }

    /// The controller committed `isr` at `partition_epoch` for a partition led here.
    /// The controller refused the ISR change this broker's leader of the partition asked for.
    pub fn isr_change_refused(&self, topic: &str, partition: u32, isr: &[NodeId]) {
        if let Some(l) = self.leader(topic, partition) {
            l.isr_change_refused(isr);
        }
    }

    pub fn update_isr(&self, topic: &str, partition: u32, isr: Vec<NodeId>, partition_epoch: i32) {
        if let Some(l) = self.leader(topic, partition) {
            l.update_isr(isr, partition_epoch);
        }
    }
}

impl Drop for ReplicaManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
