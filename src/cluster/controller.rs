//! The controller's decisions, made on the raft leader only: which brokers to fence (no heartbeat
//! for longer than the broker session timeout) and which to unfence (a registered, fenced broker
//! whose current incarnation heartbeats again, has applied its own registration and does not want
//! to shut down); which live broker coordinates a consumer group; and, every so often, moving
//! leadership back to preferred replicas that are in sync again.
//!
//! The decisions are pure functions of an explicit `now`, the heartbeats seen and the metadata
//! image, so they are tested without clocks; [`run_controller`] is the small loop that applies them
//! every tick through a `propose` closure. Elections themselves are not decided here: they happen
//! in [`MetadataImage::apply`] as part of the committed fence, so every node agrees on them. Never
//! touches the network, the raft log or partitions directly.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::metadata::{ApplyResult, MetadataCommand, MetadataImage, NodeId};

/// How often the leader's controller looks at the heartbeats.
pub const TICK: Duration = Duration::from_millis(250);

/// What a broker tells the controller on every heartbeat (the BROKER_HEARTBEAT payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub id: NodeId,
    /// The broker's registration it speaks for ([`super::metadata::BrokerRecord::incarnation`]).
    pub incarnation: u64,
    /// The last raft index the broker applied: it is unfenced only once it has seen its own
    /// registration (and so every topic before it), like Kafka's `currentMetadataOffset`.
    pub applied_index: u64,
    /// Set from the moment a controlled shutdown starts, so that the controller never unfences
    /// a broker on its way out.
    pub want_shutdown: bool,
}

/// A broker's session as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The last heartbeat, or the moment this controller granted a session (at most half a
    /// session before it took over).
    pub last: Instant,
    /// The last heartbeat heard by this voter; `None` for a granted session.
    pub heard: Option<BrokerHeartbeat>,
}

/// The last heartbeat per broker. In memory on every voter; only the leader's decides.
#[derive(Clone, Debug, Default)]
pub struct Heartbeats {
    sessions: BTreeMap<NodeId, Session>,
}

impl Heartbeats {
    pub fn new() -> Self {
        Self::default()
    }

    /// A heartbeat arrived at `now`.
    pub fn record(&mut self, hb: BrokerHeartbeat, now: Instant) {
        self.sessions.insert(hb.id, Session { last: now, heard: Some(hb) });
    }

    pub fn session(&self, id: NodeId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// On becoming leader. Brokers heartbeat to every voter, so this one usually heard each of
    /// them moments ago: a broker keeps its last heartbeat, and one that died with the old
    /// controller is fenced a session after it went silent, not a session after the election.
    /// Still, a broker heard long ago (this voter itself was paused or cut off) gets half a
    /// session from `now`, and one never heard here (this voter just started) a whole one:
    /// nobody is fenced at once for this voter's own blind spot.
    pub fn grant_sessions(
        &mut self,
        image: &MetadataImage,
        now: Instant,
        session_timeout: Duration,
    ) {
        let floor = now.checked_sub(session_timeout / 2).unwrap_or(now);
        self.sessions.retain(|id, _| image.brokers.contains_key(id));
        for id in image.brokers.keys() {
            let s = self.sessions.entry(*id).or_insert(Session { last: now, heard: None });
            if s.last < floor {
                // Too old to unfence on: a fenced broker must be heard again.
                *s = Session { last: floor, heard: None };
            }
        }
    }

    /// Brokers that appear unfenced in the image without a session here (an image that caught up
    /// after this controller took over) get one from `now`.
    pub fn grant_missing(&mut self, image: &MetadataImage, now: Instant) {
        for b in image.live_brokers() {
            self.sessions.entry(b.id).or_insert(Session { last: now, heard: None });
        }
    }
}

/// The fences and unfences due at `now`, in broker id order.
pub fn decide(
    now: Instant,
    heartbeats: &Heartbeats,
    image: &MetadataImage,
    session_timeout: Duration,
) -> Vec<MetadataCommand> {
    let mut out = Vec::new();
    for b in image.brokers.values() {
        let Some(s) = heartbeats.session(b.id) else {
            // Unfenced without a session: the driver grants one before deciding. Fenced and never
            // heard: stays fenced.
            continue;
        };
        let alive = now.saturating_duration_since(s.last) <= session_timeout;
        if !b.fenced {
            if !alive {
                out.push(MetadataCommand::FenceBroker { id: b.id });
            }
            continue;
        }
        if b.decommissioned && !image.holds_replicas(b.id) {
            // Decommissioned and drained: fenced for good, however it heartbeats.
            continue;
        }
        let ready = s.heard.as_ref().is_some_and(|h| {
            h.incarnation == b.incarnation && h.applied_index >= b.incarnation && !h.want_shutdown
        });
        if alive && ready {
            out.push(MetadataCommand::UnfenceBroker { id: b.id, incarnation: b.incarnation });
        }
    }
    out
}

/// The group's coordinator: a stable hash of the name over the live brokers sorted by id, so every
/// node names the same broker for the same image. `None` when no broker is live.
pub fn choose_coordinator(image: &MetadataImage, group: &str) -> Option<NodeId> {
    let live: Vec<NodeId> = image.live_brokers().map(|b| b.id).collect();
    if live.is_empty() {
        return None;
    }
    // FNV-1a (64 bit): fixed by definition, unlike std's hasher, which may change between builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group.as_bytes() {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some(live[(h % live.len() as u64) as usize])
}

/// What `propose` returns: the command's result once committed and applied, or why not.
pub type ProposeFuture<E> = Pin<Box<dyn Future<Output = Result<ApplyResult, E>> + Send>>;

/// The controller loop: every [`TICK`] while `is_leader()`, proposes what [`decide`] says for the
/// latest image. Proposals are awaited one at a time, so a command is not proposed twice while in
/// flight (and a repeat after all is harmless: fencing a fenced broker changes nothing, an
/// unfence names its incarnation). Returns when `stop` resolves.
pub async fn run_controller<E: Display>(
    is_leader: impl Fn() -> bool,
    image: watch::Receiver<Arc<MetadataImage>>,
    heartbeats: Arc<Mutex<Heartbeats>>,
    propose: impl Fn(MetadataCommand) -> ProposeFuture<E>,
    session_timeout: Duration,
    preferred_check: Option<Duration>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut last_check = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if !is_leader() {
            if leading {
                tracing::info!("controller: no longer the raft leader");
            }
            leading = false;
            continue;
        }
        let img = image.borrow().clone();
        let now = Instant::now();
        let cmds = {
            // A panic elsewhere while holding the lock leaves the map usable: it is only times.
            let mut hb = heartbeats.lock().unwrap_or_else(PoisonError::into_inner);
            if !leading {
                tracing::info!(
                    brokers = img.brokers.len(),
                    "controller: raft leader, taking over the brokers' sessions"
                );
                hb.grant_sessions(&img, now, session_timeout);
                leading = true;
                last_check = now;
            } else {
                hb.grant_missing(&img, now);
            }
            decide(now, &hb, &img, session_timeout)
        };
        // Kafka's auto leader rebalance: leadership goes back to each partition's first replica
        // once it is live and in sync again (checked every `preferred_check`).
        let mut cmds = cmds;
        if let Some(every) = preferred_check
            && now.saturating_duration_since(last_check) >= every
        {
            last_check = now;
            let due = img.preferred_elections();
            if !due.is_empty() {
                tracing::info!(
                    partitions = due.len(),
                    "controller: moving leadership back to preferred replicas"
                );
                cmds.push(MetadataCommand::ElectPreferredLeaders { partitions: due });
            }
        }
        for cmd in cmds {
            if !is_leader() {
                break;
            }
            let result = tokio::select! {
                _ = &mut stop => return,
                r = propose(cmd.clone()) => r,
            };
            match result {
                Ok(ApplyResult::Rejected(reason)) => {
                    tracing::debug!(?cmd, %reason, "controller: command rejected");
                }
                Ok(_) => tracing::info!(?cmd, "controller: committed"),
                Err(e) => tracing::warn!(?cmd, error = %e, "controller: proposal failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(9);

    fn image(brokers: &[(NodeId, bool)]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for (i, (id, fenced)) in brokers.iter().enumerate() {
            let cmd = MetadataCommand::RegisterBroker {
                id: *id,
                cluster_addr: format!("127.0.0.1:{}", 7080 + id),
                native_addr: None,
                kafka_addr: None,
            };
            img.apply(&cmd, 10 + i as u64);
            if !fenced {
                img.apply(
                    &MetadataCommand::UnfenceBroker { id: *id, incarnation: 10 + i as u64 },
                    0,
                );
            }
        }
        img
    }

    fn hb(id: NodeId, incarnation: u64) -> BrokerHeartbeat {
        BrokerHeartbeat { id, incarnation, applied_index: 100, want_shutdown: false }
    }

    #[test]
    fn a_broker_silent_past_the_session_timeout_is_fenced() {
        let t0 = Instant::now();
        let img = image(&[(1, false), (2, false), (3, false)]);
        let mut h = Heartbeats::new();
        h.record(hb(1, 10), t0);
        h.record(hb(2, 11), t0 + Duration::from_secs(5));
        // 3 has no session: the driver grants one; decide alone never fences it.
        assert!(decide(t0 + TIMEOUT, &h, &img, TIMEOUT).is_empty(), "exactly the timeout is alive");
        let cmds = decide(t0 + TIMEOUT + Duration::from_millis(1), &h, &img, TIMEOUT);
        assert_eq!(cmds, vec![MetadataCommand::FenceBroker { id: 1 }]);
        let cmds = decide(t0 + Duration::from_secs(20), &h, &img, TIMEOUT);
        assert_eq!(
            cmds,
            vec![MetadataCommand::FenceBroker { id: 1 }, MetadataCommand::FenceBroker { id: 2 }]
        );
        // A clock that reads earlier than a heartbeat (another thread's `now`) is no timeout.
        assert!(
            decide(t0, &h, &img, TIMEOUT)
                .iter()
                .all(|c| !matches!(c, MetadataCommand::FenceBroker { id: 2 }))
        );
    }

    #[test]
    fn a_decommissioned_broker_that_holds_nothing_stays_fenced_however_it_heartbeats() {
        let t0 = Instant::now();
        let mut img = image(&[(1, false), (2, false)]);
        img.apply(&MetadataCommand::DecommissionBroker { id: 2 }, 0);
        assert!(img.brokers[&2].fenced);
        let mut h = Heartbeats::new();
        h.record(hb(1, 10), t0);
        h.record(hb(2, 11), t0);
        assert!(decide(t0, &h, &img, TIMEOUT).is_empty(), "no unfence proposed for broker 2");
        img.apply(&MetadataCommand::RecommissionBroker { id: 2 }, 0);
        assert_eq!(
            decide(t0, &h, &img, TIMEOUT),
            vec![MetadataCommand::UnfenceBroker { id: 2, incarnation: 11 }]
        );
    }

    #[test]
    fn a_fenced_broker_that_heartbeats_again_is_unfenced_once_it_is_ready() {
        let t0 = Instant::now();
        let mut img = image(&[(1, false), (2, false)]);
        let mut h = Heartbeats::new();
        h.record(hb(1, 10), t0);
        h.record(hb(2, 11), t0);
        let late = t0 + TIMEOUT * 2;
        let cmds = decide(late, &h, &img, TIMEOUT);
        for c in &cmds {
            img.apply(c, 0);
        }
        assert!(img.brokers.values().all(|b| b.fenced));
        // Still silent: stays fenced, nothing proposed again.
        assert!(decide(late, &h, &img, TIMEOUT).is_empty());

        h.record(hb(1, 10), late);
        assert_eq!(
            decide(late + Duration::from_secs(1), &h, &img, TIMEOUT),
            vec![MetadataCommand::UnfenceBroker { id: 1, incarnation: 10 }]
        );

        // Heartbeats that do not qualify: an old incarnation, a broker that has not applied its
        // own registration, one shutting down.
        let not_ready = [
            hb(2, 9),
            BrokerHeartbeat { applied_index: 10, ..hb(2, 11) },
            BrokerHeartbeat { want_shutdown: true, ..hb(2, 11) },
        ];
        for beat in not_ready {
            h.record(beat.clone(), late);
            let cmds = decide(late, &h, &img, TIMEOUT);
            assert!(
                !cmds.iter().any(|c| matches!(c, MetadataCommand::UnfenceBroker { id: 2, .. })),
                "{beat:?}"
            );
        }
        h.record(hb(2, 11), late);
        assert!(
            decide(late, &h, &img, TIMEOUT)
                .contains(&MetadataCommand::UnfenceBroker { id: 2, incarnation: 11 })
        );
    }

    #[test]
    fn a_new_controller_keeps_recent_heartbeats_and_grants_half_a_session_to_the_rest() {
        let t0 = Instant::now();
        let img = image(&[(1, false), (2, false), (3, true), (4, false)]);
        let mut h = Heartbeats::new();
        // Heard long ago (this voter was cut off), never heard, and heard just now.
        h.record(hb(1, 10), t0);
        h.record(hb(3, 12), t0);
        let now = t0 + TIMEOUT * 3;
        h.record(hb(4, 13), now - TIMEOUT * 4 / 10);
        assert_eq!(decide(now, &h, &img, TIMEOUT), vec![MetadataCommand::FenceBroker { id: 1 }]);

        h.grant_sessions(&img, now, TIMEOUT);
        assert!(
            decide(now, &h, &img, TIMEOUT).is_empty(),
            "no fence at the takeover, and no unfence of 3 on an old heartbeat"
        );
        let ms = Duration::from_millis(1);
        assert_eq!(
            decide(now + TIMEOUT / 2 + ms, &h, &img, TIMEOUT),
            vec![MetadataCommand::FenceBroker { id: 1 }],
            "a broker heard long ago gets half a session from the takeover"
        );
        assert_eq!(
            decide(now + TIMEOUT * 6 / 10 + ms, &h, &img, TIMEOUT),
            vec![MetadataCommand::FenceBroker { id: 1 }, MetadataCommand::FenceBroker { id: 4 }],
            "one heard under the old controller is fenced a session after its last heartbeat"
        );
        assert_eq!(
            decide(now + TIMEOUT + ms, &h, &img, TIMEOUT),
            vec![
                MetadataCommand::FenceBroker { id: 1 },
                MetadataCommand::FenceBroker { id: 2 },
                MetadataCommand::FenceBroker { id: 4 }
            ],
            "one never heard here gets a whole session"
        );
        h.record(hb(3, 12), now);
        assert_eq!(
            decide(now, &h, &img, TIMEOUT),
            vec![MetadataCommand::UnfenceBroker { id: 3, incarnation: 12 }],
            "a fenced broker heard again is unfenced"
        );

        // A broker unfenced by a command this controller has only now applied gets a session.
        let mut later = img.clone();
        later.apply(&MetadataCommand::UnfenceBroker { id: 3, incarnation: 12 }, 0);
        let mut fresh = Heartbeats::new();
        fresh.grant_missing(&later, now);
        assert_eq!(fresh.session(3).map(|s| s.last), Some(now));
        assert!(decide(now, &fresh, &later, TIMEOUT).is_empty());
    }

    #[test]
    fn the_coordinator_is_a_live_broker_stable_for_a_group_and_spread_over_brokers() {
        let mut img = image(&[(1, false), (2, false), (3, false)]);
        let c = choose_coordinator(&img, "orders").unwrap();
        assert_eq!(choose_coordinator(&img.clone(), "orders"), Some(c));
        let mut used = std::collections::BTreeSet::new();
        for g in 0..60 {
            used.insert(choose_coordinator(&img, &format!("group-{g}")).unwrap());
        }
        assert_eq!(used.len(), 3, "60 groups all land on {used:?}");

        img.apply(&MetadataCommand::FenceBroker { id: c }, 0);
        let moved = choose_coordinator(&img, "orders").unwrap();
        assert_ne!(moved, c, "a fenced broker coordinates nothing");
        for id in [1, 2, 3] {
            img.apply(&MetadataCommand::FenceBroker { id }, 0);
        }
        assert_eq!(choose_coordinator(&img, "orders"), None);
    }

    /// The loop, on real time with generous bounds: nothing while not leader; once leader, the
    /// silent brokers are fenced through `propose` and the one heartbeating again is unfenced.
    #[tokio::test]
    async fn the_loop_proposes_only_while_leader_and_drives_fences_and_unfences() {
        let img = image(&[(1, false), (2, false)]);
        let (tx, rx) = watch::channel(Arc::new(img));
        let tx = Arc::new(tx);
        let leader = Arc::new(AtomicBool::new(false));
        let heartbeats = Arc::new(Mutex::new(Heartbeats::new()));
        let proposed = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

        let propose = {
            let (tx, proposed) = (tx.clone(), proposed.clone());
            move |cmd: MetadataCommand| -> ProposeFuture<String> {
                let (tx, proposed) = (tx.clone(), proposed.clone());
                Box::pin(async move {
                    proposed.lock().unwrap().push(cmd.clone());
                    let mut next = (**tx.borrow()).clone();
                    let r = next.apply(&cmd, 0);
                    tx.send_replace(Arc::new(next));
                    Ok(r)
                })
            }
        };
        let is_leader = {
            let leader = leader.clone();
            move || leader.load(Ordering::SeqCst)
        };
        let task = tokio::spawn(run_controller(
            is_leader,
            rx,
            heartbeats.clone(),
            propose,
            Duration::from_millis(200),
            None,
            async move {
                let _ = stop_rx.await;
            },
        ));

        tokio::time::sleep(TICK * 3).await;
        assert!(proposed.lock().unwrap().is_empty(), "a follower proposes nothing");

        leader.store(true, Ordering::SeqCst);
        let wait_for = |want: MetadataCommand| {
            let proposed = proposed.clone();
            async move {
                for _ in 0..400 {
                    if proposed.lock().unwrap().contains(&want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("{want:?} not proposed in 20 s: {:?}", proposed.lock().unwrap());
            }
        };
        wait_for(MetadataCommand::FenceBroker { id: 1 }).await;
        wait_for(MetadataCommand::FenceBroker { id: 2 }).await;

        // Broker 1 comes back and keeps heartbeating.
        let beating = {
            let heartbeats = heartbeats.clone();
            tokio::spawn(async move {
                loop {
                    heartbeats.lock().unwrap().record(hb(1, 10), Instant::now());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        wait_for(MetadataCommand::UnfenceBroker { id: 1, incarnation: 10 }).await;
        beating.abort();
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        let all = proposed.lock().unwrap().clone();
        assert!(
            !all.iter().any(|c| matches!(c, MetadataCommand::UnfenceBroker { id: 2, .. })),
            "{all:?}"
        );
    }

    /// A step of the model test: who heartbeats, who restarts, how much time passes, and
    /// optionally a leader's ISR change (`mask` picks the replicas to keep or take back in).
    #[derive(Clone, Debug)]
    struct Step {
        beating: u8,
        restart: u8,
        advance_ms: u64,
        alter: Option<(bool, u32, u8)>,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        (
            any::<u8>(),
            prop_oneof![6 => Just(0u8), 1 => 1u8..16],
            prop_oneof![Just(0u64), 0..4000u64, 8000..12000u64, 12000..40000u64],
            proptest::option::of((any::<bool>(), 0..3u32, any::<u8>())),
        )
            .prop_map(|(beating, restart, advance_ms, alter)| Step {
                beating,
                restart,
                advance_ms,
                alter,
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// The controller and the metadata together, over random heartbeats, restarts, pauses and
        /// ISR changes: after each round of decisions the image holds every invariant, a second
        /// round finds nothing to do, unfenced brokers are exactly those with a live session, and
        /// so every partition with a live in-sync replica has a leader.
        #[test]
        fn fences_and_unfences_follow_the_heartbeats(steps in proptest::collection::vec(step(), 1..60)) {
            use crate::cluster::metadata::{assign_replicas, model_tests::check_image};
            const N: u64 = 4;
            let t0 = Instant::now();
            let mut now = t0;
            let index = std::cell::Cell::new(0u64);
            let mut img = MetadataImage::default();
            let apply = |img: &mut MetadataImage, cmd: &MetadataCommand| {
                index.set(index.get() + 1);
                img.apply(cmd, index.get())
            };
            for id in 1..=N {
                let cmd = MetadataCommand::RegisterBroker { id, cluster_addr: format!("h{id}"), native_addr: None, kafka_addr: None };
                apply(&mut img, &cmd);
                let incarnation = img.brokers[&id].incarnation;
                apply(&mut img, &MetadataCommand::UnfenceBroker { id, incarnation });
            }
            for (name, parts, rf) in [("a", 3, 3), ("b", 3, 2)] {
                let replicas = assign_replicas(&img, parts, rf, parts as usize).unwrap();
                let cmd = MetadataCommand::CreateTopic { name: name.into(), id: [rf as u8; 16], replicas, configs: BTreeMap::new() };
                proptest::prop_assert_eq!(apply(&mut img, &cmd), ApplyResult::Done);
            }
            let mut h = Heartbeats::new();
            h.grant_sessions(&img, now, TIMEOUT);
            for s in steps {
                for id in 1..=N {
                    if s.restart & (1 << (id - 1)) != 0 {
                        let cmd = MetadataCommand::RegisterBroker { id, cluster_addr: format!("h{id}"), native_addr: None, kafka_addr: None };
                        apply(&mut img, &cmd);
                    }
                }
                for id in 1..=N {
                    if s.beating & (1 << (id - 1)) != 0 {
                        let beat = BrokerHeartbeat { id, incarnation: img.brokers[&id].incarnation, applied_index: index.get(), want_shutdown: false };
                        h.record(beat, now);
                    }
                }
                if let Some((b, p, mask)) = s.alter {
                    let topic = if b { "a" } else { "b" };
                    let rec = img.partition(topic, p).unwrap().clone();
                    if let Some(leader) = rec.leader {
                        let isr = rec.replicas.iter().enumerate()
                            .filter(|(i, r)| **r == leader || (mask & (1 << i) != 0 && img.is_live(**r)))
                            .map(|(_, r)| *r).collect();
                        let cmd = MetadataCommand::AlterPartition { topic: topic.into(), partition: p, leader, leader_epoch: rec.leader_epoch, partition_epoch: rec.partition_epoch, isr };
                        proptest::prop_assert_eq!(apply(&mut img, &cmd), ApplyResult::Done);
                    }
                }
                now += Duration::from_millis(s.advance_ms);
                h.grant_missing(&img, now);
                for cmd in decide(now, &h, &img, TIMEOUT) {
                    let r = apply(&mut img, &cmd);
                    proptest::prop_assert_eq!(r, ApplyResult::Done, "{:?}", cmd);
                }
                check_image(&img)?;
                let again = decide(now, &h, &img, TIMEOUT);
                proptest::prop_assert!(again.is_empty(), "not a fixpoint: {:?}", again);
                for b in img.brokers.values() {
                    let s = h.session(b.id).unwrap();
                    let fresh = now.saturating_duration_since(s.last) <= TIMEOUT;
                    let heard = s.heard.as_ref().is_some_and(|x| x.incarnation == b.incarnation);
                    if b.fenced {
                        proptest::prop_assert!(!(fresh && heard), "broker {} heartbeats but stays fenced", b.id);
                    } else {
                        proptest::prop_assert!(fresh, "broker {} silent but unfenced", b.id);
                    }
                }
            }
        }
    }
}
