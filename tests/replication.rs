//! Kafka's in-sync-replica data path, in process: two or three brokers' ReplicaManagers over
//! in-memory partition logs, followers reaching the leader through the in-memory transport (whose
//! links the tests cut and heal). The cluster glue's part (electing, committing ISR changes) is
//! played by the test. Asserts what a user relies on: replicas end byte-identical, the high
//! watermark is the ISR's minimum and never goes back, acks=all answers only after the followers
//! hold the batch, a stalled follower leaves the ISR and rejoins, a deposed leader's unreplicated
//! tail is truncated without losing anything below the old watermark, stale epochs are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use minikafka::batch::{BatchBuilder, BatchView, Compression, LOG_OVERHEAD, NewRecord};
use minikafka::replication::epoch_cache::EpochCache;
use minikafka::replication::fetch_protocol::{FetchErrorCode, FetchRequest, FetchResponse};
use minikafka::replication::replica_log::{PartitionLogs, ReplicaLog};
use minikafka::replication::transport::LocalNetwork;
use minikafka::replication::{FetchConfig, IsrChange, NodeId, ReplicaManager, ReplicationError};
use minikafka::storage::{OffsetRange, StorageError};
use tokio::sync::{Notify, mpsc};

const T: &str = "orders";

/// A partition log in memory: whole batches as appended, and the epoch cache.
#[derive(Default)]
struct MemLog {
    inner: Mutex<MemInner>,
}

#[derive(Default)]
struct MemInner {
    /// (base offset, next offset, bytes), contiguous.
    batches: Vec<(u64, u64, Vec<u8>)>,
    start: u64,
    end: u64,
    leader_epoch: i32,
    cache: EpochCache,
}

fn bad(reason: &str) -> StorageError {
    StorageError::Corrupt { path: "mem".into(), position: 0, reason: reason.into() }
}

impl MemLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap()
    }

    /// A leader's append of `n` records (values "v{offset}"), stamped with its epoch.
    fn append_leader(&self, n: usize) -> OffsetRange {
        let mut g = self.lock();
        let base = g.end;
        let mut b = BatchBuilder::new(Compression::None)
            .base_offset(base as i64)
            .partition_leader_epoch(g.leader_epoch);
        let values: Vec<String> = (0..n).map(|i| format!("v{}", base + i as u64)).collect();
        for v in &values {
            b.push(&NewRecord { timestamp: 0, key: None, value: Some(v.as_bytes()), headers: &[] })
                .unwrap();
        }
        let bytes = b.build().unwrap();
        let next = base + n as u64;
        let e = g.leader_epoch;
        g.cache.assign(e, base);
        g.batches.push((base, next, bytes));
        g.end = next;
        OffsetRange { first: base, next }
    }

    /// Every stored byte, in order.
    fn all_bytes(&self) -> Vec<u8> {
        self.lock().batches.iter().flat_map(|b| b.2.clone()).collect()
    }

    /// Each offset's leader epoch.
    fn epochs(&self) -> Vec<i32> {
        let g = self.lock();
        let mut out = Vec::new();
        for (base, next, bytes) in &g.batches {
            let e = BatchView::new(bytes).unwrap().partition_leader_epoch();
            out.extend(std::iter::repeat_n(e, (next - base) as usize));
        }
        out
    }
}

impl ReplicaLog for MemLog {
    fn log_start(&self) -> u64 {
        self.lock().start
    }
    fn log_end(&self) -> u64 {
        self.lock().end
    }
    fn visible_end(&self) -> u64 {
        self.lock().end
    }
    fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        let mut g = self.lock();
        if epoch > g.leader_epoch || g.cache.latest().is_none() {
            g.leader_epoch = epoch;
            let end = g.end;
            g.cache.assign(epoch, end);
        }
        Ok(())
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.lock().cache.latest()
    }
    fn epoch_end_offset(&self, epoch: i32) -> (i32, Option<u64>) {
        let g = self.lock();
        g.cache.end_offset_for(epoch, g.end)
    }
    fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let g = self.lock();
        let mut out = Vec::new();
        for (_, next, bytes) in g.batches.iter().filter(|b| b.1 > offset) {
            if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(bytes);
            let _ = next;
        }
        Ok(Bytes::from(out))
    }
    fn bytes_from(&self, offset: u64) -> Result<u64, StorageError> {
        let g = self.lock();
        let offset = offset.max(g.start);
        Ok(g.batches.iter().filter(|b| b.1 > offset).map(|b| b.2.len() as u64).sum())
    }
    fn append_replica(&self, mut bytes: &[u8]) -> Result<u64, StorageError> {
        let mut g = self.lock();
        while !bytes.is_empty() {
            let v = BatchView::new(bytes).map_err(|_| bad("not a batch"))?;
            let base = v.base_offset() as u64;
            if base != g.end {
                return Err(bad("not contiguous"));
            }
            let next = v.last_offset() as u64 + 1;
            g.cache.assign(v.partition_leader_epoch(), base);
            g.batches.push((base, next, v.as_bytes().to_vec()));
            g.end = next;
            bytes = &bytes[v.len()..];
            assert!(v.len() >= LOG_OVERHEAD);
        }
        Ok(g.end)
    }
    fn truncate_to(&self, offset: u64) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.batches.retain(|b| b.1 <= offset);
        let end = g.batches.last().map_or(0, |b| b.1);
        g.end = end;
        g.cache.truncate_to(end);
        Ok(())
    }
    fn advance_log_start(&self, offset: u64) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.start = g.start.max(offset.min(g.end));
        let start = g.start;
        g.batches.retain(|b| b.1 > start);
        Ok(())
    }
    fn restart_at(&self, offset: u64) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.batches.clear();
        (g.start, g.end) = (offset, offset);
        g.cache = Default::default();
        Ok(())
    }
}

/// A partition's log and its appended Notify.
type Part = (Arc<MemLog>, Arc<Notify>);

/// One broker's partitions.
#[derive(Default)]
struct MemLogs {
    parts: Mutex<HashMap<(String, u32), Part>>,
}

impl MemLogs {
    fn get(&self, topic: &str, p: u32) -> Part {
        self.parts.lock().unwrap().entry((topic.into(), p)).or_default().clone()
    }
}

impl PartitionLogs for MemLogs {
    fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Arc<dyn ReplicaLog>, Arc<Notify>), ReplicationError> {
        let (l, n) = self.get(topic, partition);
        Ok((l, n))
    }
}

struct Node {
    id: NodeId,
    logs: Arc<MemLogs>,
    rm: Arc<ReplicaManager>,
    isr_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<IsrChange>>,
}

impl Node {
    fn log(&self) -> Arc<MemLog> {
        self.logs.get(T, 0).0
    }
    /// A leader append (acks=1 part): `n` records, followers woken.
    fn produce(&self, n: usize) -> OffsetRange {
        let (log, notify) = self.logs.get(T, 0);
        let r = log.append_leader(n);
        notify.notify_waiters();
        r
    }
    fn hw(&self) -> u64 {
        self.rm.high_watermark(T, 0).expect("leading")
    }
}

fn cluster(n: u64, lag_time: Duration) -> (Arc<LocalNetwork>, Vec<Node>) {
    let net = LocalNetwork::new();
    let fetch = FetchConfig { max_wait: Duration::from_millis(200), ..FetchConfig::default() };
    let nodes = (1..=n)
        .map(|id| {
            let logs = Arc::new(MemLogs::default());
            let rm =
                ReplicaManager::with_parts(logs.clone(), id, net.transport(id), lag_time, fetch);
            net.register(id, &rm);
            let isr_rx = tokio::sync::Mutex::new(rm.take_isr_requests());
            Node { id, logs, rm, isr_rx }
        })
        .collect();
    (net, nodes)
}

/// `leader` leads at `epoch` with `isr`; every other node in `followers` follows it.
fn elect(nodes: &[Node], leader: usize, epoch: i32, isr: &[NodeId], followers: &[usize]) {
    let all: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    nodes[leader].rm.become_leader(T, 0, epoch, 0, isr.to_vec(), all).unwrap();
    for &f in followers {
        nodes[f]
            .rm
            .become_follower(T, 0, epoch, nodes[leader].id, format!("node{}", nodes[leader].id))
            .unwrap();
    }
}

/// Polls `f` until true, for at most 10 s (liveness, with a generous bound).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next ISR request a node's leader made, within 10 s.
async fn next_isr_request(node: &Node) -> IsrChange {
    let mut rx = node.isr_rx.lock().await;
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an ISR request").unwrap()
}

/// Samples the leader's watermark in the background; fails if it ever goes back.
fn watch_hw(rm: Arc<ReplicaManager>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let mut last = 0;
        let mut samples = 0;
        while !s.load(Ordering::Relaxed) {
            if let Some(hw) = rm.high_watermark(T, 0) {
                assert!(hw >= last, "the high watermark went back from {last} to {hw}");
                last = hw;
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_end_byte_identical_and_acks_all_resolves_once_replicated() {
    let (_net, nodes) = cluster(3, Duration::from_secs(30));
    elect(&nodes, 0, 1, &[1, 2, 3], &[1, 2]);
    let (stop, sampler) = watch_hw(nodes[0].rm.clone());
    let mut end = 0;
    for i in 0..40 {
        end = nodes[0].produce(1 + i % 5).next;
        nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
        // acks=all answered: every ISR member holds the batch.
        for f in &nodes[1..] {
            assert!(f.log().log_end() >= end, "node {} lacks offsets below {end}", f.id);
        }
    }
    assert_eq!(nodes[0].hw(), end);
    let want = nodes[0].log().all_bytes();
    for f in &nodes[1..] {
        assert_eq!(f.log().all_bytes(), want, "node {} differs from the leader", f.id);
        assert!(f.log().epochs().iter().all(|&e| e == 1));
    }
    // Followers learn the watermark from the leader's answers.
    eventually("followers know the high watermark", || {
        nodes[1..].iter().all(|f| f.rm.known_high_watermark(T, 0) == Some(end))
    })
    .await;
    let info = nodes[0].rm.leader_state(T, 0).unwrap();
    assert_eq!((info.leader_epoch, info.isr, info.high_watermark), (1, vec![1, 2, 3], end));
    stop.store(true, Ordering::Relaxed);
    assert!(sampler.await.unwrap() > 0);
}

/// Kafka's maximal ISR (KIP-497): once the leader asks for a caught-up follower to join the
/// ISR, the watermark waits for that follower too, before the change is committed. Committed,
/// the follower may be elected (or made leader by a finishing reassignment) before this leader
/// hears of it: nothing it lacks may have been acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_asked_into_the_isr_holds_the_watermark_before_the_change_is_committed() {
    let (net, nodes) = cluster(3, Duration::from_secs(30));
    elect(&nodes, 0, 1, &[1, 2], &[1, 2]);
    let first = nodes[0].produce(5).next;
    nodes[0].rm.wait_for_hw(T, 0, first, Duration::from_secs(10)).await.unwrap();
    let asked = next_isr_request(&nodes[0]).await;
    assert_eq!(asked.isr, vec![1, 2, 3], "node 3 caught up: the leader asks it in");

    // Not committed yet, node 3 stops fetching: the watermark waits for it.
    net.isolate(3);
    let end = nodes[0].produce(7).next;
    eventually("node 2 replicated", || nodes[1].log().log_end() == end).await;
    let err = nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Timeout { .. }), "{err}");
    assert!(
        nodes[0].hw() <= nodes[2].log().log_end(),
        "nothing node 3 lacks is below the watermark"
    );

    // The controller refuses the change: the watermark follows the committed ISR again.
    nodes[0].rm.isr_change_refused(T, 0, &[1, 2, 3]);
    nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_is_the_slowest_in_sync_replica_and_acks_all_waits_for_it() {
    let (net, nodes) = cluster(3, Duration::from_secs(30));
    elect(&nodes, 0, 1, &[1, 2, 3], &[1, 2]);
    let (stop, sampler) = watch_hw(nodes[0].rm.clone());
    let first = nodes[0].produce(5).next;
    nodes[0].rm.wait_for_hw(T, 0, first, Duration::from_secs(10)).await.unwrap();

    // Node 3 stops fetching; node 2 keeps up. The watermark stays at what node 3 holds.
    net.isolate(3);
    let end = nodes[0].produce(7).next;
    eventually("node 2 replicated", || nodes[1].log().log_end() == end).await;
    let err = nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_millis(300)).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::Timeout { high_watermark, .. } if high_watermark == first),
        "{err}"
    );
    assert_eq!(nodes[0].hw(), first);
    assert!(nodes[0].hw() <= nodes[2].log().log_end());

    // An acks=all waiter resolves only once node 3 is back and has fetched past the batch.
    let rm = nodes[0].rm.clone();
    let waiter =
        tokio::spawn(async move { rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "acks=all answered while an ISR member lacks the batch");
    net.heal(3);
    waiter.await.unwrap().unwrap();
    assert!(nodes[2].log().log_end() >= end);
    assert_eq!(nodes[2].log().all_bytes(), nodes[0].log().all_bytes());
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_follower_leaves_the_isr_after_the_lag_time_and_rejoins_when_caught_up() {
    let lag = Duration::from_millis(300);
    let (net, nodes) = cluster(3, lag);
    let t0 = tokio::time::Instant::now();
    elect(&nodes, 0, 1, &[1, 2, 3], &[1, 2]);
    let (stop, sampler) = watch_hw(nodes[0].rm.clone());
    nodes[0].produce(3);
    net.isolate(3);
    let end = nodes[0].produce(3).next;

    // The leader asks for node 3's removal (after the lag time: node 3 was caught up just
    // before), and meanwhile acks=all waits.
    let change = next_isr_request(&nodes[0]).await;
    assert!(t0.elapsed() > lag, "asked out before it could have lagged");
    assert_eq!(
        change,
        IsrChange {
            topic: T.into(),
            partition: 0,
            leader_epoch: 1,
            partition_epoch: 0,
            isr: vec![1, 2]
        }
    );
    assert!(nodes[0].hw() < end, "the ISR that counts changes only once committed");
    // The controller commits it; the watermark then moves without node 3.
    nodes[0].rm.update_isr(T, 0, change.isr.clone(), 1);
    nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
    // And min.insync.replicas = 3 is not met any more: written, but under-replicated.
    let err = nodes[0].rm.wait_for_acks(T, 0, end, 3, Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::NotEnoughReplicasAfterAppend { isr: 2, min: 3, .. }),
        "{err}"
    );

    // Node 3 comes back, catches up, and is asked back in.
    net.heal(3);
    let change = loop {
        // (A repeat of the removal request may be queued ahead of it.)
        let c = next_isr_request(&nodes[0]).await;
        if c.isr != vec![1, 2] {
            break c;
        }
    };
    assert_eq!(change.isr, vec![1, 2, 3]);
    assert_eq!(change.partition_epoch, 1);
    assert!(nodes[2].log().log_end() >= nodes[0].hw());
    nodes[0].rm.update_isr(T, 0, change.isr, 2);
    let end = nodes[0].produce(2).next;
    nodes[0].rm.wait_for_acks(T, 0, end, 3, Duration::from_secs(10)).await.unwrap();
    assert!(nodes[2].log().log_end() >= end);
    assert_eq!(nodes[0].rm.leader_state(T, 0).unwrap().isr, vec![1, 2, 3]);
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
}

/// What the leader's metrics read: each follower's lag behind its log end, and the committed ISR
/// changes it saw; a follower reports no lags (it leads nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_each_followers_lag_and_counts_committed_isr_changes() {
    let (net, nodes) = cluster(3, Duration::from_secs(30));
    elect(&nodes, 0, 1, &[1, 2, 3], &[1, 2]);
    let first = nodes[0].produce(5).next;
    nodes[0].rm.wait_for_hw(T, 0, first, Duration::from_secs(10)).await.unwrap();
    let lags = |rm: &ReplicaManager| -> Vec<(NodeId, u64)> {
        rm.stats().follower_lags.iter().map(|l| (l.replica, l.lag_records)).collect()
    };
    eventually("both followers report no lag", || lags(&nodes[0].rm) == [(2, 0), (3, 0)]).await;

    // Node 3 stops fetching: its lag is what the leader appended since.
    net.isolate(3);
    let end = nodes[0].produce(7).next;
    eventually("node 2 replicated", || nodes[1].log().log_end() == end).await;
    eventually("node 3 lags by 7", || lags(&nodes[0].rm) == [(2, 0), (3, 7)]).await;
    assert!(nodes[1].rm.stats().follower_lags.is_empty(), "a follower leads nothing");

    // The controller commits node 3's removal, then (once back) its return.
    assert_eq!((nodes[0].rm.stats().isr_shrinks, nodes[0].rm.stats().isr_expands), (0, 0));
    nodes[0].rm.update_isr(T, 0, vec![1, 2], 1);
    nodes[0].rm.update_isr(T, 0, vec![1, 2], 1); // the same ISR applied again changes nothing
    net.heal(3);
    eventually("node 3 caught up", || lags(&nodes[0].rm) == [(2, 0), (3, 0)]).await;
    nodes[0].rm.update_isr(T, 0, vec![1, 2, 3], 2);
    let stats = nodes[0].rm.stats();
    assert_eq!((stats.isr_shrinks, stats.isr_expands), (1, 1));
    assert_eq!(nodes[1].rm.stats().isr_shrinks, 0, "counted only where the ISR is led");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_unreplicated_tail_is_truncated_and_nothing_below_the_watermark_is_lost()
{
    let (net, nodes) = cluster(3, Duration::from_secs(30));
    elect(&nodes, 0, 1, &[1, 2, 3], &[1, 2]);
    let committed = nodes[0].produce(10).next;
    nodes[0].rm.wait_for_hw(T, 0, committed, Duration::from_secs(10)).await.unwrap();
    let committed_bytes = nodes[0].log().all_bytes();

    // Node 1 is cut off and still takes writes (acks=1): a tail nobody else has.
    net.isolate(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tail = nodes[0].produce(4).next;
    assert_eq!(tail, committed + 4);

    // The controller fences node 1 and elects node 2 at epoch 2 from the ISR; node 2 writes.
    nodes[1].rm.become_leader(T, 0, 2, 1, vec![2, 3], vec![1, 2, 3]).unwrap();
    nodes[2].rm.become_follower(T, 0, 2, 2, "node2".into()).unwrap();
    let new_end = nodes[1].produce(3).next;
    nodes[1].rm.wait_for_hw(T, 0, new_end, Duration::from_secs(10)).await.unwrap();
    assert_eq!(new_end, committed + 3);

    // The old leader learns of epoch 2: it follows node 2 and truncates its tail.
    assert!(matches!(
        nodes[0].rm.wait_for_hw(T, 0, tail, Duration::from_millis(10)).await,
        Err(ReplicationError::Timeout { .. })
    ));
    nodes[0].rm.become_follower(T, 0, 2, 2, "node2".into()).unwrap();
    assert!(matches!(
        nodes[0].rm.wait_for_hw(T, 0, tail, Duration::from_millis(10)).await,
        Err(ReplicationError::NotLeader { .. })
    ));
    net.heal(1);
    let want = nodes[1].log().all_bytes();
    eventually("the old leader matches the new one", || nodes[0].log().all_bytes() == want).await;
    let epochs = nodes[0].log().epochs();
    assert_eq!(&epochs[..committed as usize], &[1; 10][..]);
    assert_eq!(&epochs[committed as usize..], &[2; 3][..], "the epoch-1 tail is gone");
    assert!(want.starts_with(&committed_bytes), "records below the old watermark were lost");
    assert_eq!(nodes[2].log().all_bytes(), want);

    // Node 1 rejoins the ISR once caught up.
    let change = next_isr_request(&nodes[1]).await;
    assert_eq!((change.leader_epoch, change.isr), (2, vec![1, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_epochs_and_strangers_are_refused() {
    let (_net, nodes) = cluster(3, Duration::from_secs(30));
    // Nodes 1 and 2 of a 2-replica partition; node 3 is not a replica.
    nodes[0].rm.become_leader(T, 0, 3, 0, vec![1, 2], vec![1, 2]).unwrap();
    nodes[0].produce(2);
    let req = |epoch: i32, replica: NodeId| FetchRequest {
        replica_id: replica,
        broker_incarnation: 1,
        leader_epoch: epoch,
        last_fetched_epoch: -1,
        fetch_offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        partition: 0,
        topic: T.into(),
    };
    let ask = |from: NodeId, r: FetchRequest| {
        let rm = nodes[0].rm.clone();
        async move {
            let frame = rm.handle_fetch_frame(from, r.encode()).await.unwrap();
            FetchResponse::decode(&frame).unwrap()
        }
    };
    assert_eq!(ask(2, req(2, 2)).await.error, FetchErrorCode::FencedLeaderEpoch);
    assert_eq!(ask(2, req(4, 2)).await.error, FetchErrorCode::UnknownLeaderEpoch);
    assert_eq!(ask(3, req(3, 3)).await.error, FetchErrorCode::ReplicaNotAvailable);
    assert_eq!(ask(3, req(3, 2)).await.error, FetchErrorCode::ReplicaNotAvailable, "posing as 2");
    let ok = ask(2, req(3, 2)).await;
    assert_eq!((ok.error, ok.leader_epoch, ok.diverging), (FetchErrorCode::None, 3, None));
    assert_eq!(ok.records, Bytes::from(nodes[0].log().all_bytes()));
    // An older process of node 2 (lower incarnation) is a zombie.
    assert_eq!(
        ask(2, FetchRequest { broker_incarnation: 0, ..req(3, 2) }).await.error,
        FetchErrorCode::StaleBrokerEpoch
    );
    // A node that does not lead answers NOT_LEADER_OR_FOLLOWER.
    let frame = nodes[1].rm.handle_fetch_frame(1, req(3, 1).encode()).await.unwrap();
    assert_eq!(FetchResponse::decode(&frame).unwrap().error, FetchErrorCode::NotLeaderOrFollower);
    // A malformed frame is an error, not a panic.
    assert!(matches!(
        nodes[0].rm.handle_fetch_frame(2, Bytes::from_static(b"\0\0")).await,
        Err(ReplicationError::Protocol { node: 2, .. })
    ));
    // Epochs never go back.
    assert!(matches!(
        nodes[0].rm.become_leader(T, 0, 2, 0, vec![1], vec![1, 2]),
        Err(ReplicationError::StaleEpoch { requested: 2, current: 3, .. })
    ));
    assert!(matches!(
        nodes[1].rm.become_follower(T, 0, 2, 1, "node1".into()).and(nodes[1].rm.become_follower(
            T,
            0,
            1,
            1,
            "node1".into()
        )),
        Err(ReplicationError::StaleEpoch { requested: 1, current: 2, .. })
    ));
    // A follower ahead of the leader in the leader's epoch is told to cut back to its end.
    let ahead = FetchRequest { last_fetched_epoch: 3, fetch_offset: 9, ..req(3, 2) };
    assert_eq!(ask(2, ahead).await.diverging, Some((3, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_alone_in_its_isr_acknowledges_at_its_own_end_and_long_polls_wake_on_append() {
    let (_net, nodes) = cluster(2, Duration::from_secs(30));
    nodes[0].rm.become_leader(T, 0, 0, 0, vec![1], vec![1, 2]).unwrap();
    let end = nodes[0].produce(3).next;
    nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(1)).await.unwrap();
    assert_eq!(nodes[0].hw(), end);
    // A follower at the end waits for the next append instead of spinning.
    let rm = nodes[0].rm.clone();
    let poll = tokio::spawn(async move {
        let r = FetchRequest {
            replica_id: 2,
            broker_incarnation: 0,
            leader_epoch: 0,
            last_fetched_epoch: 0,
            fetch_offset: end,
            max_bytes: 1 << 20,
            max_wait_ms: 10_000,
            partition: 0,
            topic: T.into(),
        };
        FetchResponse::decode(&rm.handle_fetch_frame(2, r.encode()).await.unwrap()).unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!poll.is_finished());
    nodes[0].produce(1);
    let resp = tokio::time::timeout(Duration::from_secs(5), poll).await.unwrap().unwrap();
    assert_eq!(resp.error, FetchErrorCode::None);
    assert!(!resp.records.is_empty());
    // Node 2 fetched at the end, so it is caught up: the leader asks it back into the ISR.
    let change = next_isr_request(&nodes[0]).await;
    assert_eq!(change.isr, vec![1, 2]);
}

// ---- The same rules over real brokers: each a data directory in a tempdir, its partition
// ---- logs the storage layer's, followers appending through `Log::append_replica`.

mod real {
    use super::*;
    use minikafka::broker::topic_config::TopicConfigs;
    use minikafka::broker::{AppendBatch, Broker, BrokerConfig};
    use minikafka::peer::{PeerError, PeerHandler, PeerServer, REPLICA_FETCH};
    use minikafka::record::NewRecord as Rec;
    use minikafka::storage::Log;
    use std::future::Future;
    use std::pin::Pin;

    const ID: [u8; 16] = *b"orders-topic-id!";

    pub struct BNode {
        pub id: NodeId,
        pub broker: Arc<Broker>,
        pub rm: Arc<ReplicaManager>,
        pub isr_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<IsrChange>>,
        _dir: tempfile::TempDir,
    }

    impl BNode {
        fn open(id: NodeId) -> (Arc<Broker>, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::open(BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            })
            .unwrap();
            broker.create_topic_with_id(T, ID, 1, TopicConfigs::default()).unwrap();
            let _ = id;
            (broker, dir)
        }
        pub fn log(&self) -> Arc<Log> {
            self.broker.partition_log(T, 0).unwrap()
        }
        /// A leader's append of `n` records through the broker (stamped with its epoch).
        pub async fn produce(&self, n: usize) -> u64 {
            let values: Vec<String> =
                (0..n).map(|i| format!("value {i} from {}", self.id)).collect();
            let recs: Vec<Rec<'_>> = values.iter().map(|v| Rec::value(v.as_bytes())).collect();
            self.broker
                .append(T, Some(0), None, AppendBatch::Records(&recs))
                .await
                .unwrap()
                .offsets
                .next
        }
        /// Every stored byte of the partition, and each batch's (base offset, leader epoch).
        pub fn contents(&self) -> (Vec<u8>, Vec<(u64, i32)>) {
            let log = self.log();
            let (mut bytes, mut batches, mut off) = (Vec::new(), Vec::new(), 0);
            loop {
                let s = log.read(off, 1 << 20).unwrap();
                if s.is_empty() {
                    break;
                }
                let mut b = s.bytes();
                while !b.is_empty() {
                    let v = BatchView::new(b).unwrap();
                    batches.push((v.base_offset() as u64, v.partition_leader_epoch()));
                    b = &b[v.len()..];
                }
                bytes.extend_from_slice(s.bytes());
                off = s.next_offset();
            }
            (bytes, batches)
        }
    }

    /// Three brokers whose followers fetch over the in-memory transport.
    pub fn brokers(n: u64, lag: Duration) -> (Arc<LocalNetwork>, Vec<BNode>) {
        let net = LocalNetwork::new();
        let fetch = FetchConfig { max_wait: Duration::from_millis(200), ..FetchConfig::default() };
        let nodes = (1..=n)
            .map(|id| {
                let (broker, dir) = BNode::open(id);
                let rm =
                    ReplicaManager::with_parts(broker.clone(), id, net.transport(id), lag, fetch);
                net.register(id, &rm);
                let isr_rx = tokio::sync::Mutex::new(rm.take_isr_requests());
                BNode { id, broker, rm, isr_rx, _dir: dir }
            })
            .collect();
        (net, nodes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_logs_end_byte_identical_and_a_deposed_leaders_tail_is_truncated() {
        let (net, nodes) = brokers(3, Duration::from_secs(30));
        nodes[0].rm.become_leader(T, 0, 1, 0, vec![1, 2, 3], vec![1, 2, 3]).unwrap();
        for f in &nodes[1..] {
            f.rm.become_follower(T, 0, 1, 1, "n1".into()).unwrap();
        }
        let mut committed = 0;
        for i in 0..20 {
            committed = nodes[0].produce(1 + i % 4).await;
            nodes[0].rm.wait_for_hw(T, 0, committed, Duration::from_secs(10)).await.unwrap();
            for f in &nodes[1..] {
                assert!(f.log().next_offset() >= committed);
            }
        }
        let (want, batches) = nodes[0].contents();
        assert!(batches.iter().all(|&(_, e)| e == 1), "leader appends carry epoch 1");
        for f in &nodes[1..] {
            assert_eq!(f.contents().0, want, "node {} differs from the leader", f.id);
        }

        // The leader is cut off and takes two more batches alone.
        net.isolate(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        nodes[0].produce(3).await;
        let tail = nodes[0].produce(2).await;
        assert_eq!(tail, committed + 5);

        // Node 2 leads at epoch 2 with node 3; the old leader follows once it hears.
        nodes[1].rm.become_leader(T, 0, 2, 1, vec![2, 3], vec![1, 2, 3]).unwrap();
        nodes[2].rm.become_follower(T, 0, 2, 2, "n2".into()).unwrap();
        let new_end = nodes[1].produce(4).await;
        assert_eq!(new_end, committed + 4);
        nodes[1].rm.wait_for_hw(T, 0, new_end, Duration::from_secs(10)).await.unwrap();
        nodes[0].rm.become_follower(T, 0, 2, 2, "n2".into()).unwrap();
        net.heal(1);
        let (want2, batches2) = nodes[1].contents();
        eventually("the old leader matches the new one", || nodes[0].contents().0 == want2).await;
        assert!(want2.starts_with(&want), "records below the old watermark were lost");
        assert_eq!(batches2.last().map(|b| b.1), Some(2));
        assert_eq!(nodes[0].log().epoch_end_offset(1), (1, Some(committed)));
        assert_eq!(nodes[2].contents().0, want2);
        let change = tokio::time::timeout(Duration::from_secs(10), async {
            nodes[1].isr_rx.lock().await.recv().await.unwrap()
        })
        .await
        .unwrap();
        assert_eq!((change.leader_epoch, change.isr), (2, vec![1, 2, 3]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_deleted_on_the_leader_are_deleted_on_its_followers_too() {
        let (_net, nodes) = brokers(3, Duration::from_secs(30));
        nodes[0].rm.become_leader(T, 0, 1, 0, vec![1, 2, 3], vec![1, 2, 3]).unwrap();
        for f in &nodes[1..] {
            f.rm.become_follower(T, 0, 1, 1, "n1".into()).unwrap();
        }
        let mut end = 0;
        for _ in 0..5 {
            end = nodes[0].produce(4).await;
        }
        nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
        // DeleteRecords below offset 12 on the leader (Kafka's admin API does this).
        assert_eq!(nodes[0].broker.trim(T, 0, 12).unwrap(), 12);
        // The followers learn the new log start with their next fetch.
        end = nodes[0].produce(1).await;
        nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
        for f in &nodes[1..] {
            eventually("the follower's log starts where the leader's does", || {
                f.log().log_start_offset() == 12
            })
            .await;
        }
        // Were a follower to lead now, the deleted records would stay deleted.
        nodes[1].rm.become_leader(T, 0, 2, 1, vec![2, 3], vec![1, 2, 3]).unwrap();
        assert!(nodes[1].log().read(0, 1 << 20).is_err(), "offset 0 is below the log start");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_behind_the_leaders_log_start_starts_over_there_and_catches_up() {
        let (_net, nodes) = brokers(3, Duration::from_secs(30));
        // Broker 3 is away: the ISR is 1 and 2 while records come and the first ones are deleted.
        nodes[0].rm.become_leader(T, 0, 1, 0, vec![1, 2], vec![1, 2, 3]).unwrap();
        nodes[1].rm.become_follower(T, 0, 1, 1, "n1".into()).unwrap();
        let mut end = 0;
        for _ in 0..5 {
            end = nodes[0].produce(4).await;
        }
        nodes[0].rm.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
        assert_eq!(nodes[0].broker.trim(T, 0, 12).unwrap(), 12);
        // Broker 3 returns with an empty log: everything it lacks below 12 is gone on the leader.
        nodes[2].rm.become_follower(T, 0, 1, 1, "n1".into()).unwrap();
        // Caught up once what it copied is durable there (reads stop at the durable end).
        eventually("broker 3 starts over at the leader's log start and catches up", || {
            let log = nodes[2].log();
            log.log_start_offset() == 12 && log.visible_end() == end
        })
        .await;
        let theirs = nodes[2].log().read(12, 1 << 20).unwrap();
        let ours = nodes[0].log().read(12, 1 << 20).unwrap();
        assert_eq!(theirs.bytes(), ours.bytes(), "the same batches, byte for byte");
        // And it goes on following.
        end = nodes[0].produce(3).await;
        eventually("broker 3 keeps up", || nodes[2].log().next_offset() == end).await;
    }

    /// Dispatches REPLICA_FETCH to the manager, as the cluster glue's handler does.
    struct Handler(Arc<ReplicaManager>);

    impl PeerHandler for Handler {
        fn handle(
            &self,
            from: u64,
            kind: u8,
            payload: Bytes,
        ) -> Pin<Box<dyn Future<Output = Result<Bytes, PeerError>> + Send + '_>> {
            Box::pin(async move {
                match kind {
                    REPLICA_FETCH => self.0.handle_fetch(from, payload).await,
                    kind => Err(PeerError::UnknownKind { from, kind }),
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_fetch_over_the_cluster_listener_with_the_token_and_a_stranger_gets_nothing()
    {
        let token = Some("s3cret".to_string());
        let (b1, _d1) = BNode::open(1);
        let (b2, _d2) = BNode::open(2);
        let (b3, _d3) = BNode::open(3);
        let lag = Duration::from_secs(30);
        let leader = ReplicaManager::new(b1.clone(), 1, token.clone(), lag);
        let follower = ReplicaManager::new(b2.clone(), 2, token.clone(), lag);
        // Node 3 is a replica too, but its broker was given the wrong token.
        let stranger = ReplicaManager::new(b3.clone(), 3, Some("guess".into()), lag);
        let server =
            PeerServer::bind("127.0.0.1:0".parse().unwrap(), token.clone(), false).await.unwrap();
        let addr = server.local_addr().to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(Arc::new(Handler(leader.clone())), async move {
            let _ = stop_rx.await;
        }));

        leader.become_leader(T, 0, 4, 0, vec![1, 2], vec![1, 2, 3]).unwrap();
        follower.become_follower(T, 0, 4, 1, addr.clone()).unwrap();
        stranger.become_follower(T, 0, 4, 1, addr.clone()).unwrap();
        let mut end = 0;
        for _ in 0..10 {
            let recs = [Rec { key: Some(b"k"), ..Rec::value(b"v") }];
            end = b1
                .append(T, Some(0), None, AppendBatch::Records(&recs))
                .await
                .unwrap()
                .offsets
                .next;
            leader.wait_for_hw(T, 0, end, Duration::from_secs(10)).await.unwrap();
        }
        let read_all = |b: &Arc<Broker>| {
            let s = b.partition_log(T, 0).unwrap().read(0, 1 << 20).unwrap();
            s.bytes().to_vec()
        };
        eventually("the follower holds everything", || {
            b2.partition_log(T, 0).unwrap().next_offset() == end
        })
        .await;
        assert_eq!(read_all(&b2), read_all(&b1));
        // The stranger never authenticated: it has nothing and the leader never counted it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(b3.partition_log(T, 0).unwrap().next_offset(), 0);
        assert_eq!(leader.leader_state(T, 0).unwrap().isr, vec![1, 2]);
        let _ = stop_tx.send(());
        follower.shutdown();
        stranger.shutdown();
        serving.await.unwrap().unwrap();
    }
}
