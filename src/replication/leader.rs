//! One partition led by this broker: its leader epoch and partition epoch, replicas and ISR,
//! each follower's fetch position and when it was last caught up, the high watermark (the
//! smallest durable end over the ISR, never backwards), acks=all waiters, and the ISR changes the
//! leader wants (a follower lagging longer than the lag time leaves; one that reached the high
//! watermark rejoins). It only *asks* for ISR changes: the ISR that counts for the watermark
//! changes when the cluster glue applies what the controller committed ([`PartitionLeader::update_isr`]).
//! Never talks to the controller or the network itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::fetch_protocol::{FetchErrorCode, FetchRequest, FetchResponse};
use super::high_watermark::HighWatermark;
use super::replica_log::ReplicaLog;
use super::{CopyProgress, IsrChange, LeaderInfo, NodeId, ReplicationError};

/// A follower's long poll is bounded here whatever it asks for, so a leader change is noticed.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(10);
/// An ISR change asked for and neither applied nor refused is asked for again after this.
const ISR_REQUEST_RETRY: Duration = Duration::from_secs(2);
/// How long an ISR change nobody answered keeps counting toward the high watermark.
const PENDING_ISR_EXPIRY: Duration = Duration::from_secs(20);

/// Where acks=all waiters look: the watermark, the ISR size, and whether this is still leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwState {
    pub hw: u64,
    pub isr_len: usize,
    pub leading: bool,
}

/// The shared sink of ISR change requests (its receiver is handed to the cluster glue).
pub type IsrSink = Arc<Mutex<mpsc::UnboundedSender<IsrChange>>>;

/// Committed ISR changes of the partitions a broker leads, counted since it started (Kafka's
/// IsrShrinksPerSec / IsrExpandsPerSec), shared by all of its partition leaders.
#[derive(Debug, Default)]
pub struct IsrCounters {
    pub shrinks: AtomicU64,
    pub expands: AtomicU64,
}

/// Node ids are i32 on Kafka's wire; [`super::ReplicaManager::become_leader`] refuses larger ones,
/// so this never maps two replicas to one key. -1 (never a real id) for anything else.
pub(crate) fn rid(n: NodeId) -> i32 {
    i32::try_from(n).unwrap_or(-1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the state consistent before anything can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone)]
struct Follower {
    /// Its durable end as of its last fetch that did not diverge.
    end: Option<u64>,
    last_caught_up: Instant,
    last_fetch: Option<Instant>,
    /// The leader's end when that last fetch was answered (Kafka's lastFetchLeaderLogEndOffset).
    last_fetch_leader_end: u64,
    /// Highest broker incarnation seen from it: an older one is a zombie process.
    incarnation: u64,
    /// The watermark last sent to it: an in-sync follower's long poll returns as soon as the
    /// watermark passes it, so it knows the watermark promptly (a new leader starts from the one
    /// it knew; consumers of a new leader would otherwise see less than was acknowledged).
    sent_hw: u64,
}

struct Inner {
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    hw: HighWatermark,
    followers: HashMap<NodeId, Follower>,
    /// The ISR change asked for last, and when.
    pending: Option<(Vec<NodeId>, Instant)>,
    /// The log end when this epoch began: a follower rejoins only once it holds this epoch's
    /// records (Kafka's rule too), not merely the old watermark.
    epoch_start: u64,
    stopped: bool,
}

/// A partition led here.
pub struct PartitionLeader {
    topic: String,
    partition: u32,
    node_id: NodeId,
    log: Arc<dyn ReplicaLog>,
    appended: Arc<Notify>,
    lag_time: Duration,
    inner: Mutex<Inner>,
    hw_tx: watch::Sender<HwState>,
    /// Wakes long-polling fetches when leadership ends.
    stopping: Notify,
    isr_sink: IsrSink,
    isr_counters: Arc<IsrCounters>,
}

/// What [`PartitionLeader::new`] needs.
pub struct LeaderParams {
    pub topic: String,
    pub partition: u32,
    pub node_id: NodeId,
    pub log: Arc<dyn ReplicaLog>,
    pub appended: Arc<Notify>,
    pub lag_time: Duration,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// The watermark it inherits (what it knew as a follower; the log start after a restart).
    pub hw_start: u64,
    pub isr_sink: IsrSink,
    /// Where committed shrinks and expands of this ISR are counted.
    pub isr_counters: Arc<IsrCounters>,
}

impl PartitionLeader {
    /// Starts leading; the caller has already stamped the log with the epoch.
    pub fn new(p: LeaderParams) -> PartitionLeader {
        let now = Instant::now();
        let log_end = p.log.log_end();
        let hw_start = p.hw_start.clamp(p.log.log_start(), p.log.visible_end());
        let mut hw = HighWatermark::new(p.isr.iter().map(|&n| rid(n)).collect(), hw_start);
        hw.update(rid(p.node_id), p.log.visible_end());
        // Every follower starts as caught up now (Kafka does the same on election), so a
        // follower gets a full lag time to show up before it is asked out of the ISR.
        let followers = p
            .replicas
            .iter()
            .filter(|&&r| r != p.node_id)
            .map(|&r| {
                let f = Follower {
                    end: None,
                    last_caught_up: now,
                    last_fetch: None,
                    last_fetch_leader_end: log_end,
                    incarnation: 0,
                    sent_hw: 0,
                };
                (r, f)
            })
            .collect();
        let state = HwState { hw: hw.get(), isr_len: p.isr.len(), leading: true };
        PartitionLeader {
            topic: p.topic,
            partition: p.partition,
            node_id: p.node_id,
            log: p.log,
            appended: p.appended,
            lag_time: p.lag_time,
            inner: Mutex::new(Inner {
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                replicas: p.replicas,
                isr: p.isr,
                hw,
                followers,
                pending: None,
                epoch_start: log_end,
                stopped: false,
            }),
            hw_tx: watch::Sender::new(state),
            stopping: Notify::new(),
            isr_sink: p.isr_sink,
            isr_counters: p.isr_counters,
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        lock(&self.inner).leader_epoch
    }

    pub fn lag_time(&self) -> Duration {
        self.lag_time
    }

    /// Epoch, partition epoch, replicas, ISR and watermark, the leader's own end counted.
    pub fn info(&self) -> LeaderInfo {
        self.refresh();
        let inner = lock(&self.inner);
        LeaderInfo {
            leader_epoch: inner.leader_epoch,
            partition_epoch: inner.partition_epoch,
            replicas: inner.replicas.clone(),
            isr: inner.isr.clone(),
            high_watermark: inner.hw.get(),
        }
    }

    /// Counts the leader's own durable end in the watermark; returns the watermark.
    pub fn refresh(&self) -> u64 {
        let own = self.log.visible_end();
        let mut inner = lock(&self.inner);
        inner.hw.update(rid(self.node_id), own);
        self.publish(&inner);
        inner.hw.get()
    }

    /// Changes whenever [`HwState`] does.
    pub fn hw_changes(&self) -> watch::Receiver<HwState> {
        self.hw_tx.subscribe()
    }

    fn publish(&self, inner: &Inner) {
        let state =
            HwState { hw: inner.hw.get(), isr_len: inner.isr.len(), leading: !inner.stopped };
        self.hw_tx.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    /// Leadership ended (another leader, a new epoch, or not a replica): waiters and long polls
    /// return at once.
    pub fn stop(&self) {
        let mut inner = lock(&self.inner);
        inner.stopped = true;
        self.publish(&inner);
        drop(inner);
        self.stopping.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        lock(&self.inner).stopped
    }

    /// The same epoch re-applied with a newer ISR or partition epoch (the controller committed
    /// an ISR change): the watermark counts the new ISR from now on.
    pub fn update_isr(&self, isr: Vec<NodeId>, partition_epoch: i32) {
        let own = self.log.visible_end();
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if partition_epoch < inner.partition_epoch {
            return;
        }
        let inner = &mut *inner;
        // A committed change may both drop and add members (a replaced replica): each counts.
        if inner.isr.iter().any(|m| !isr.contains(m)) {
            self.isr_counters.shrinks.fetch_add(1, Ordering::Relaxed);
        }
        if isr.iter().any(|m| !inner.isr.contains(m)) {
            self.isr_counters.expands.fetch_add(1, Ordering::Relaxed);
        }
        for &m in &isr {
            if !inner.isr.contains(&m)
                && let Some(f) = inner.followers.get_mut(&m)
            {
                // Joined now: the lag clock restarts.
                f.last_caught_up = now;
            }
        }
        inner.partition_epoch = partition_epoch;
        inner.isr = isr.clone();
        inner.pending = None;
        inner.hw.update(rid(self.node_id), own);
        inner.hw.set_isr(isr.iter().map(|&n| rid(n)).collect());
        self.publish(inner);
    }

    /// Each follower's lag in records (this log's end minus the end the follower last fetched
    /// from), by follower id; a follower that has not fetched since this leadership began is
    /// left out: its position is unknown.
    pub fn follower_lags(&self) -> Vec<(NodeId, u64)> {
        let end = self.log.log_end();
        let inner = lock(&self.inner);
        let mut lags: Vec<(NodeId, u64)> = inner
            .followers
            .iter()
            .filter_map(|(&id, f)| f.end.map(|e| (id, end.saturating_sub(e))))
            .collect();
        lags.sort_unstable();
        lags
    }

    /// Each follower's copy progress (records and bytes from the end it last fetched from to
    /// this log's end, and this log's bytes), by follower id; as [`Self::follower_lags`], a
    /// follower that has not fetched since this leadership began is left out.
    pub fn copy_progress(&self) -> Vec<CopyProgress> {
        let end = self.log.log_end();
        // Follower ends first: the log is read without the partition's lock.
        let ends: Vec<(NodeId, u64)> = {
            let inner = lock(&self.inner);
            inner.followers.iter().filter_map(|(&id, f)| f.end.map(|e| (id, e))).collect()
        };
        // A log that cannot be read now (a segment removed by retention under the lookup, a
        // damaged one) leaves the bytes unknown; the records are still counted exactly.
        let log_bytes = self.log.bytes_from(self.log.log_start()).ok();
        let mut progress: Vec<CopyProgress> = ends
            .into_iter()
            .map(|(replica, e)| {
                let bytes = log_bytes.and_then(|_| self.log.bytes_from(e).ok());
                CopyProgress {
                    replica,
                    records: end.saturating_sub(e),
                    bytes,
                    log_bytes: bytes.and(log_bytes),
                }
            })
            .collect();
        progress.sort_unstable_by_key(|p| p.replica);
        progress
    }

    /// A new set of replicas for the same epoch (reassignment); followers not known get a fresh
    /// lag clock.
    pub fn update_replicas(&self, replicas: Vec<NodeId>) {
        let now = Instant::now();
        let end = self.log.log_end();
        let mut inner = lock(&self.inner);
        for &r in &replicas {
            if r != self.node_id {
                inner.followers.entry(r).or_insert(Follower {
                    end: None,
                    last_caught_up: now,
                    last_fetch: None,
                    last_fetch_leader_end: end,
                    incarnation: 0,
                    sent_hw: 0,
                });
            }
        }
        inner.followers.retain(|id, _| replicas.contains(id));
        inner.replicas = replicas;
    }

    /// Asks for `isr` unless the same change is already asked for and recent.
    fn request_isr(&self, inner: &mut Inner, mut isr: Vec<NodeId>, now: Instant) {
        isr.sort_unstable();
        isr.dedup();
        if let Some((asked, at)) = &inner.pending
            && *asked == isr
            && now.duration_since(*at) < ISR_REQUEST_RETRY
        {
            return;
        }
        let change = IsrChange {
            topic: self.topic.clone(),
            partition: self.partition,
            leader_epoch: inner.leader_epoch,
            partition_epoch: inner.partition_epoch,
            isr: isr.clone(),
        };
        tracing::info!(
            topic = %self.topic, partition = self.partition, from = ?inner.isr, to = ?isr,
            "asking for an ISR change"
        );
        // A closed receiver means the glue is gone (shutting down): nothing to ask.
        let _ = lock(&self.isr_sink).send(change);
        // Kafka's maximal ISR (KIP-497): a replica asked into the ISR counts toward the high
        // watermark from now on. Once the change is committed it may be elected (or made leader
        // by a finishing reassignment) before this leader hears of the commit, so nothing it
        // lacks may be acknowledged meanwhile. A replica asked out counts until committed.
        let mut maximal: Vec<NodeId> = inner.isr.iter().chain(&isr).copied().collect();
        maximal.sort_unstable();
        maximal.dedup();
        inner.hw.set_isr(maximal.into_iter().map(rid).collect());
        inner.pending = Some((isr, now));
    }

    /// The controller refused the ISR change `isr` (the broker asked in was fenced meanwhile,
    /// say): the watermark follows the committed ISR again.
    pub fn isr_change_refused(&self, isr: &[NodeId]) {
        let mut inner = lock(&self.inner);
        if inner.pending.as_ref().is_some_and(|(asked, _)| asked == isr) {
            inner.pending = None;
            let committed = inner.isr.iter().map(|&n| rid(n)).collect();
            inner.hw.set_isr(committed);
            self.publish(&inner);
        }
    }

    /// A backstop for an answer that never came: an ISR change asked for long ago stops
    /// counting toward the watermark (it is asked again if it still holds).
    fn expire_pending(&self, inner: &mut Inner, now: Instant) {
        if inner
            .pending
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) >= PENDING_ISR_EXPIRY)
        {
            inner.pending = None;
            let isr = inner.isr.iter().map(|&n| rid(n)).collect();
            inner.hw.set_isr(isr);
        }
    }

    /// The periodic ISR check: followers not caught up to the leader's end for longer than the
    /// lag time are asked out of the ISR (Kafka's isr-expiration rule: a follower at the end
    /// never lags, however long ago it fetched; broker fencing handles a dead one).
    pub fn check_isr(&self, now: Instant) {
        let own = self.log.visible_end();
        let mut inner = lock(&self.inner);
        if inner.stopped {
            return;
        }
        self.expire_pending(&mut inner, now);
        inner.hw.update(rid(self.node_id), own);
        self.publish(&inner);
        let lagging: Vec<NodeId> = inner
            .isr
            .iter()
            .copied()
            .filter(|&m| m != self.node_id)
            .filter(|m| match inner.followers.get(m) {
                Some(f) => {
                    f.end.is_none_or(|e| e < own)
                        && now.duration_since(f.last_caught_up) > self.lag_time
                }
                None => false,
            })
            .collect();
        if !lagging.is_empty() {
            let isr: Vec<NodeId> =
                inner.isr.iter().copied().filter(|m| !lagging.contains(m)).collect();
            self.request_isr(&mut inner, isr, now);
        }
    }

    /// Answers a follower's fetch (see the module doc of `super` for the rules).
    pub async fn handle_fetch(&self, from: NodeId, req: &FetchRequest) -> FetchResponse {
        let deadline =
            Instant::now() + Duration::from_millis(req.max_wait_ms.into()).min(MAX_FETCH_WAIT);
        let epoch = {
            let mut inner = lock(&self.inner);
            let epoch = inner.leader_epoch;
            if inner.stopped {
                return FetchResponse::error(FetchErrorCode::NotLeaderOrFollower, -1);
            }
            if req.leader_epoch < epoch {
                return FetchResponse::error(FetchErrorCode::FencedLeaderEpoch, epoch);
            }
            if req.leader_epoch > epoch {
                return FetchResponse::error(FetchErrorCode::UnknownLeaderEpoch, epoch);
            }
            // A peer fetches only as itself (the transport authenticated `from`), and only if it
            // is a replica: a stranger never moves the watermark.
            if from != req.replica_id || from == self.node_id || !inner.replicas.contains(&from) {
                return FetchResponse::error(FetchErrorCode::ReplicaNotAvailable, epoch);
            }
            let Some(f) = inner.followers.get_mut(&from) else {
                return FetchResponse::error(FetchErrorCode::ReplicaNotAvailable, epoch);
            };
            if req.broker_incarnation < f.incarnation {
                return FetchResponse::error(FetchErrorCode::StaleBrokerEpoch, epoch);
            }
            f.incarnation = req.broker_incarnation;
            epoch
        };
        let log_start = self.log.log_start();
        let log_end = self.log.log_end();
        if req.fetch_offset < log_start {
            let mut r = FetchResponse::error(FetchErrorCode::OffsetOutOfRange, epoch);
            r.log_start_offset = log_start;
            r.high_watermark = self.refresh();
            return r;
        }
        if let Some(d) = self.divergence(req, log_end) {
            tracing::info!(
                topic = %self.topic, partition = self.partition, follower = from,
                fetch_offset = req.fetch_offset, last_fetched_epoch = req.last_fetched_epoch,
                diverging_epoch = d.0, diverging_end = d.1, "follower log diverges"
            );
            return FetchResponse {
                error: FetchErrorCode::None,
                leader_epoch: epoch,
                high_watermark: self.refresh(),
                log_start_offset: log_start,
                diverging: Some(d),
                records: bytes::Bytes::new(),
            };
        }
        self.record_position(from, req.fetch_offset);
        let mut hw_moves = self.hw_tx.subscribe();
        loop {
            // Registered before the read, so an append landing in between still wakes us.
            let appended = self.appended.notified();
            let stopping = self.stopping.notified();
            tokio::pin!(appended, stopping);
            appended.as_mut().enable();
            stopping.as_mut().enable();
            hw_moves.borrow_and_update();
            let records = match self.log.read(req.fetch_offset, req.max_bytes as usize) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        topic = %self.topic, partition = self.partition, error = %e,
                        "reading for a follower failed"
                    );
                    return FetchResponse::error(FetchErrorCode::KafkaStorageError, epoch);
                }
            };
            if self.is_stopped() {
                return FetchResponse::error(FetchErrorCode::NotLeaderOrFollower, -1);
            }
            let hw = self.refresh();
            let news = !records.is_empty() || self.owes_watermark(from, hw);
            if news || Instant::now() >= deadline {
                if let Some(f) = lock(&self.inner).followers.get_mut(&from) {
                    f.sent_hw = hw;
                }
                return FetchResponse {
                    error: FetchErrorCode::None,
                    leader_epoch: epoch,
                    high_watermark: hw,
                    log_start_offset: self.log.log_start(),
                    diverging: None,
                    records,
                };
            }
            tokio::select! {
                _ = appended => {}
                _ = stopping => {}
                _ = hw_moves.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// An in-sync follower (any of them may be the next leader, starting from the watermark it
    /// knows) has not been told the watermark `hw` yet.
    fn owes_watermark(&self, from: NodeId, hw: u64) -> bool {
        let inner = lock(&self.inner);
        inner.isr.contains(&from) && inner.followers.get(&from).is_some_and(|f| hw > f.sent_hw)
    }

    fn divergence(&self, req: &FetchRequest, log_end: u64) -> Option<(i32, u64)> {
        let answer = (req.last_fetched_epoch >= 0)
            .then(|| self.log.epoch_end_offset(req.last_fetched_epoch));
        let latest = self.log.latest_epoch().unwrap_or(super::epoch_cache::UNDEFINED_EPOCH);
        divergence(req.last_fetched_epoch, req.fetch_offset, answer, log_end, latest)
    }

    /// A fetch that did not diverge: the follower durably holds everything below `offset`.
    fn record_position(&self, from: NodeId, offset: u64) {
        let now = Instant::now();
        let own = self.log.visible_end();
        // What a follower can reach: the end the leader serves.
        let leader_end = own;
        let mut inner = lock(&self.inner);
        let Some(f) = inner.followers.get_mut(&from) else { return };
        // Kafka's lastCaughtUpTime: caught up now if at the end; caught up as of the previous
        // fetch if it reached the end the leader had then.
        if offset >= leader_end {
            f.last_caught_up = f.last_caught_up.max(now);
        } else if offset >= f.last_fetch_leader_end
            && let Some(prev) = f.last_fetch
        {
            f.last_caught_up = f.last_caught_up.max(prev);
        }
        f.last_fetch = Some(now);
        f.last_fetch_leader_end = leader_end;
        let moved_back = f.end.is_some_and(|e| offset < e);
        f.end = Some(offset);
        if moved_back {
            // It truncated or lost unsynced records in a restart: its end is what it says now.
            inner.hw.reset_replica(rid(from), offset);
        }
        inner.hw.update(rid(from), offset);
        inner.hw.update(rid(self.node_id), own);
        let hw = inner.hw.get();
        if !inner.isr.contains(&from) && offset >= hw && offset >= inner.epoch_start {
            let mut isr = inner.isr.clone();
            isr.push(from);
            self.request_isr(&mut inner, isr, now);
        }
        self.publish(&inner);
    }

    /// acks=all: waits until the watermark reaches `end`. With the ISR then smaller than
    /// `min_isr`, the records are in but under-replicated: NotEnoughReplicasAfterAppend.
    pub async fn wait_for_hw(
        &self,
        end: u64,
        min_isr: usize,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let mut rx = self.hw_tx.subscribe();
        self.refresh();
        let deadline = Instant::now() + timeout;
        loop {
            let s = *rx.borrow_and_update();
            if !s.leading {
                return Err(self.not_leader());
            }
            if s.hw >= end {
                if s.isr_len < min_isr {
                    return Err(ReplicationError::NotEnoughReplicasAfterAppend {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        isr: s.isr_len,
                        min: min_isr,
                    });
                }
                return Ok(());
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(self.not_leader()) },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ReplicationError::Timeout {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        end,
                        high_watermark: s.hw,
                    });
                }
            }
        }
    }

    fn not_leader(&self) -> ReplicationError {
        ReplicationError::NotLeader {
            topic: self.topic.clone(),
            partition: self.partition,
            node: self.node_id,
        }
    }
}

/// Kafka's Fetch v12+ check on the leader, pure. `answer` is this log's OffsetsForLeaderEpoch
/// answer for the follower's last fetched epoch (`None` when it has none): if that epoch ends here
/// before the follower's fetch offset, or only an older epoch is known here, the follower's log
/// diverges at that end. A fetch offset past this log's end diverges at the end (`latest` is this
/// log's newest epoch).
pub fn divergence(
    last_fetched_epoch: i32,
    fetch_offset: u64,
    answer: Option<(i32, Option<u64>)>,
    log_end: u64,
    latest: i32,
) -> Option<(i32, u64)> {
    if let Some((e, Some(end))) = answer
        && (e < last_fetched_epoch || end < fetch_offset)
    {
        return Some((e, end));
    }
    if fetch_offset > log_end {
        return Some((latest, log_end));
    }
    None
}
