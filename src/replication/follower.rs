//! The fetch loop of one partition followed here: fetch from the leader from the log end, append
//! what comes back unchanged, keep the leader's high watermark, and on a divergence truncate to
//! where this log and the leader's part (KIP-279: computed from both epoch caches, never this
//! replica's own high watermark). Backs off on errors; a role change ends it (the manager aborts
//! the task, and a generation checked under the partition's log lock keeps a stale loop from
//! touching the log after the change returned). Never decides who leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::NodeId;
use super::epoch_cache::UNDEFINED_EPOCH;
use super::fetch_protocol::{FetchErrorCode, FetchRequest, FetchResponse};
use super::replica_log::ReplicaLog;
use super::throttle::ReplicationThrottle;
use super::transport::FetchTransport;

/// How a follower fetches.
#[derive(Debug, Clone, Copy)]
pub struct FetchConfig {
    /// Upper bound of bytes per fetch (the leader always sends at least one batch).
    pub max_bytes: u32,
    /// The long poll the leader holds when there is nothing new.
    pub max_wait: Duration,
    /// First retry delay after an error; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_bytes: 1 << 20,
            max_wait: Duration::from_millis(500),
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Where a follower whose log ends at `log_end` truncates after the leader answered diverging
/// `(epoch, leader_end)`: at the leader's end of that epoch, or earlier where this log's own
/// records of that epoch end (`own` is this log's OffsetsForLeaderEpoch answer for `epoch`; when
/// this log never had `epoch`, where its next older epoch ends). KIP-279; the follower fetches
/// again and, if still diverging, truncates further.
pub fn truncation_point(leader: (i32, u64), own: (i32, Option<u64>), log_end: u64) -> u64 {
    let (epoch, leader_end) = leader;
    let own_end = match own {
        (e, Some(o)) if e == epoch => o,
        (_, o) => o.unwrap_or(log_end),
    };
    leader_end.min(own_end).min(log_end)
}

/// Everything the loop needs; built by the manager.
pub struct FollowerTask {
    pub topic: String,
    pub partition: u32,
    pub node_id: NodeId,
    pub incarnation: Arc<AtomicU64>,
    pub leader: NodeId,
    pub leader_addr: String,
    pub leader_epoch: i32,
    pub log: Arc<dyn ReplicaLog>,
    pub appended: Arc<Notify>,
    pub transport: Arc<dyn FetchTransport>,
    pub config: FetchConfig,
    /// The partition's role generation; this loop may touch the log only while it is `generation`.
    pub ops: Arc<Mutex<u64>>,
    pub generation: u64,
    /// The leader's high watermark as last heard (never past this log's end).
    pub known_hw: Arc<AtomicU64>,
    /// Whether this replica is being added by a move under a throttle: then every fetch takes
    /// a grant from `throttle` first and asks for no more than it.
    pub throttled: Arc<AtomicBool>,
    pub throttle: Arc<ReplicationThrottle>,
}

/// What one fetch round did.
enum Step {
    Progress,
    Idle,
    Error,
    Stale,
}

impl FollowerTask {
    /// Runs until aborted or the generation moves on.
    pub async fn run(self) {
        let mut backoff = self.config.backoff;
        loop {
            match self.step().await {
                Step::Progress | Step::Idle => backoff = self.config.backoff,
                Step::Error => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Step::Stale => return,
            }
        }
    }

    fn request(&self) -> FetchRequest {
        FetchRequest {
            replica_id: self.node_id,
            broker_incarnation: self.incarnation.load(Ordering::Acquire),
            leader_epoch: self.leader_epoch,
            last_fetched_epoch: self.log.latest_epoch().unwrap_or(UNDEFINED_EPOCH),
            fetch_offset: self.log.log_end(),
            max_bytes: self.config.max_bytes,
            max_wait_ms: u32::try_from(self.config.max_wait.as_millis()).unwrap_or(u32::MAX),
            partition: self.partition,
            topic: self.topic.clone(),
        }
    }

    async fn step(&self) -> Step {
        // One relaxed load is all an unthrottled follower pays.
        let grant = match self.throttled.load(Ordering::Relaxed) {
            true => Some(self.throttle.acquire(self.config.max_bytes).await),
            false => None,
        };
        let mut req = self.request();
        if let Some(g) = grant {
            req.max_bytes = g;
        }
        // The leader holds the fetch up to max_wait; allow it that and a margin.
        let timeout = self.config.max_wait + Duration::from_secs(5);
        let fetched =
            self.transport.fetch(self.leader, &self.leader_addr, req.encode(), timeout).await;
        if let Some(g) = grant {
            let received = fetched.as_ref().map_or(0, |f| f.len() as u64);
            self.throttle.settle(g, received);
        }
        let frame = match fetched {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "replica fetch failed");
                return Step::Error;
            }
        };
        let resp = match FetchResponse::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, leader = self.leader, error = %e, "bad replica fetch response");
                return Step::Error;
            }
        };
        match resp.error {
            FetchErrorCode::None => {}
            FetchErrorCode::OffsetOutOfRange => {
                // Behind the leader's log start (retention or DeleteRecords ran there while this
                // replica was away, or it is a new replica): nothing here is worth keeping, so
                // the log starts over, empty, at the leader's start (Kafka does the same).
                let start = resp.log_start_offset;
                if start <= self.log.log_end() {
                    return Step::Error;
                }
                tracing::info!(
                    topic = %self.topic, partition = self.partition, fetch_offset = req.fetch_offset,
                    leader_log_start = start, "behind the leader's log start: starting over there"
                );
                return match self.with_log(|log| log.restart_at(start)) {
                    None => Step::Stale,
                    Some(Ok(())) => Step::Progress,
                    Some(Err(e)) => {
                        tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "starting the log over failed");
                        Step::Error
                    }
                };
            }
            code => {
                // Epoch mismatch or not leader: the metadata is moving; the manager restarts
                // this loop when it changes. Until then, retry.
                tracing::debug!(topic = %self.topic, partition = self.partition, ?code, "replica fetch refused");
                return Step::Error;
            }
        }
        if let Some((epoch, leader_end)) = resp.diverging {
            let r = self.with_log(|log| {
                let log_end = log.log_end();
                let point =
                    truncation_point((epoch, leader_end), log.epoch_end_offset(epoch), log_end);
                tracing::info!(
                    topic = %self.topic, partition = self.partition, leader = self.leader,
                    diverging_epoch = epoch, leader_end, log_end, truncate_to = point,
                    "log diverges from the leader's: truncating"
                );
                log.truncate_to(point)
            });
            return match r {
                None => Step::Stale,
                Some(Ok(())) => {
                    // Long polls on this partition read again.
                    self.appended.notify_waiters();
                    Step::Progress
                }
                Some(Err(e)) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "truncation failed");
                    Step::Error
                }
            };
        }
        let mut step = Step::Idle;
        if !resp.records.is_empty() {
            match self.with_log(|log| log.append_replica(&resp.records)) {
                None => return Step::Stale,
                Some(Ok(_)) => {
                    self.appended.notify_waiters();
                    step = Step::Progress;
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        topic = %self.topic, partition = self.partition, leader = self.leader,
                        fetch_offset = req.fetch_offset, error = %e, "appending the leader's batches failed"
                    );
                    return Step::Error;
                }
            }
        }
        let hw = resp.high_watermark.min(self.log.log_end());
        self.known_hw.fetch_max(hw, Ordering::AcqRel);
        // Records the leader deleted (DeleteRecords, retention) go here too, up to what is
        // committed: a later leader must not bring them back.
        let start = resp.log_start_offset.min(hw);
        if start > self.log.log_start() {
            match self.with_log(|log| log.advance_log_start(start)) {
                None => return Step::Stale,
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::warn!(
                    topic = %self.topic, partition = self.partition, log_start = start,
                    error = %e, "following the leader's log start failed"
                ),
            }
        }
        step
    }

    /// Runs `f` on the log while this loop's generation is current (held under the partition's
    /// log lock, so a role change waits for it and a stale loop never writes). `None`: stale.
    /// The work may fsync: on a multi-threaded runtime it leaves the worker's other tasks to run.
    fn with_log<R>(&self, f: impl FnOnce(&dyn ReplicaLog) -> R) -> Option<R> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let run = || {
            let g = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            (*g == self.generation).then(|| f(&*self.log))
        };
        let multi =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if multi { tokio::task::block_in_place(run) } else { run() }
    }
}

#[cfg(test)]
mod tests {
    use super::super::epoch_cache::EpochCache;
    use super::super::leader::divergence;
    use super::*;
    use proptest::prelude::*;

    /// A log given as each record's epoch (offset = index), and its epoch cache.
    fn cache_of(log: &[i32]) -> EpochCache {
        let mut c = EpochCache::default();
        for (o, &e) in log.iter().enumerate() {
            if o == 0 || log[o - 1] != e {
                c.assign(e, o as u64);
            }
        }
        c
    }

    /// Runs the fetch protocol's divergence rounds of a follower `f` against a leader `l` (whose
    /// cache also holds its current epoch `current`, started at its end) until the leader accepts
    /// the fetch; returns the follower's log then.
    fn reconcile(f: &[i32], l: &[i32], current: i32) -> Vec<i32> {
        let mut lc = cache_of(l);
        lc.assign(current, l.len() as u64);
        let mut f = f.to_vec();
        for _ in 0..64 {
            let fc = cache_of(&f);
            let last = fc.latest().unwrap_or(UNDEFINED_EPOCH);
            let answer = (last >= 0).then(|| lc.end_offset_for(last, l.len() as u64));
            let latest = lc.latest().unwrap_or(UNDEFINED_EPOCH);
            match divergence(last, f.len() as u64, answer, l.len() as u64, latest) {
                None => return f,
                Some(d) => {
                    let own = fc.end_offset_for(d.0, f.len() as u64);
                    let cut = truncation_point(d, own, f.len() as u64);
                    assert!(cut < f.len() as u64, "a divergence always removes something");
                    f.truncate(cut as usize);
                }
            }
        }
        panic!("no agreement after 64 rounds");
    }

    #[test]
    fn an_old_leaders_unreplicated_tail_is_cut_in_one_round_or_a_few() {
        // Shared epoch 1 at 0..3; the old leader wrote epoch 2 at 3..6 alone; the new leader
        // (epoch 3) wrote 3..5.
        assert_eq!(reconcile(&[1, 1, 1, 2, 2, 2], &[1, 1, 1, 3, 3], 3), vec![1, 1, 1]);
        // A follower ahead of the new leader in the same epoch: cut to the leader's end.
        assert_eq!(reconcile(&[1, 1, 1, 1, 1], &[1, 1, 1], 2), vec![1, 1, 1]);
        // A follower behind: nothing to cut.
        assert_eq!(reconcile(&[1, 1], &[1, 1, 1, 2], 3), vec![1, 1]);
        // Empty follower.
        assert_eq!(reconcile(&[], &[1, 1], 2), Vec::<i32>::new());
    }

    proptest! {
        /// Random histories: a common prefix, then the leader's records of epochs the follower
        /// never had and the follower's of other, older-than-current epochs it got from a leader
        /// that lost. After the divergence rounds the follower's log is a prefix of the leader's
        /// and still holds the whole common prefix (nothing both had is lost).
        #[test]
        fn the_follower_ends_as_a_prefix_keeping_the_common_part(
            prefix_runs in proptest::collection::vec((0i32..2, 1usize..4), 0..5),
            leader_runs in proptest::collection::vec((1i32..3, 1usize..4), 0..4),
            follower_runs in proptest::collection::vec((1i32..3, 1usize..4), 0..4),
            interleave in any::<bool>(),
        ) {
            let mut prefix = Vec::new();
            let mut e = 0;
            for (step, len) in prefix_runs {
                e += step;
                prefix.extend(std::iter::repeat_n(e, len));
            }
            // Epochs after the prefix: the two sides' are distinct (each epoch had one leader,
            // whose records the other side never got), drawn from interleaved ranges.
            let mut next = e;
            let mut l = prefix.clone();
            let mut f = prefix.clone();
            let mut lr = leader_runs.into_iter();
            let mut fr = follower_runs.into_iter();
            loop {
                let (lf, ff) = if interleave { (lr.next(), fr.next()) } else {
                    match lr.next() { Some(x) => (Some(x), None), None => (None, fr.next()) }
                };
                if lf.is_none() && ff.is_none() { break; }
                if let Some((step, len)) = lf { next += step; l.extend(std::iter::repeat_n(next, len)); }
                if let Some((step, len)) = ff { next += step; f.extend(std::iter::repeat_n(next, len)); }
            }
            // The leader was elected after every epoch either side saw.
            let current = next + 1;
            let out = reconcile(&f, &l, current);
            prop_assert!(out.len() <= l.len() && out[..] == l[..out.len()], "{:?} not a prefix of {:?}", out, l);
            let common = f.iter().zip(&l).take_while(|(a, b)| a == b).count();
            prop_assert!(out.len() >= common, "lost part of the common prefix: {:?} {:?} -> {:?}", f, l, out);
        }
    }
}
