//! The Raft node as a broker uses it, in one process on loopback ports: three voters elect a
//! leader, a proposal through a follower is applied everywhere, the group survives the loss of
//! its leader, a restarted node recovers from its own directory, a learner follows. And the
//! durable log on its own: openraft's storage conformance suite, a torn tail, truncation and
//! purging across reopen. Every wait is bounded; nothing asserts a duration.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::StorageError;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log::{StoreBuilder, Suite};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::log_store::{LOG_FILE, LogStore};
use super::state_machine::StateMachine;
use super::types::{Entry, Proposal, TypeConfig};
use super::*;
use crate::peer::{PeerError, PeerHandler, PeerServer};

const WAIT: Duration = Duration::from_secs(20);

/// A tiny replicated state: the lines appended, each with the log index it was applied at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Journal {
    lines: Vec<(u64, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum JournalCommand {
    Append(String),
}

impl StateMachineData for Journal {
    type Command = JournalCommand;
    /// How many lines the journal holds after the command.
    type Response = usize;

    fn apply(&mut self, command: &JournalCommand, log_index: u64) -> usize {
        match command {
            JournalCommand::Append(line) => self.lines.push((log_index, line.clone())),
        }
        self.lines.len()
    }
}

impl Journal {
    fn texts(&self) -> Vec<String> {
        self.lines.iter().map(|(_, l)| l.clone()).collect()
    }
}

struct Handler(Arc<RaftNode<Journal>>);

impl PeerHandler for Handler {
    fn handle(
        &self,
        _from: u64,
        kind: u8,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, PeerError>> + Send + '_>> {
        Box::pin(self.0.handle_peer(kind, payload))
    }
}

/// A running node and its cluster listener.
struct Member {
    id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    node: Arc<RaftNode<Journal>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), PeerError>>>,
}

impl Member {
    async fn kill(mut self) -> (u64, SocketAddr, PathBuf) {
        self.node.shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, server).await;
        }
        (self.id, self.addr, self.dir.clone())
    }
}

fn config(id: u64, dir: &Path, voters: &BTreeMap<u64, String>) -> RaftConfig {
    let mut cfg =
        RaftConfig::new(id, dir.to_path_buf(), voters.clone(), Some("cluster-token".into()));
    // Short timings keep the test quick; correctness does not depend on them.
    cfg.heartbeat_ms = 50;
    cfg.election_timeout_ms = (300, 600);
    cfg
}

fn serve(
    server: PeerServer,
    node: Arc<RaftNode<Journal>>,
) -> (oneshot::Sender<()>, JoinHandle<Result<(), PeerError>>) {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(Arc::new(Handler(node)), async {
        let _ = rx.await;
    }));
    (tx, task)
}

async fn bind(addr: SocketAddr) -> PeerServer {
    PeerServer::bind(addr, Some("cluster-token".into()), false)
        .await
        .expect("bind the cluster listener")
}

/// Starts node `id` on `addr` (port 0 picks one) with its storage in `dir`.
async fn start(id: u64, server: PeerServer, dir: &Path, voters: &BTreeMap<u64, String>) -> Member {
    let addr = server.local_addr();
    let node = RaftNode::<Journal>::start(config(id, dir, voters)).await.expect("raft starts");
    let (stop, task) = serve(server, node.clone());
    Member { id, addr, dir: dir.to_path_buf(), node, stop: Some(stop), server: Some(task) }
}

async fn start_three(root: &Path) -> (Vec<Member>, BTreeMap<u64, String>) {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(bind("127.0.0.1:0".parse().expect("literal")).await);
    }
    let voters: BTreeMap<u64, String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64 + 1, s.local_addr().to_string()))
        .collect();
    let mut members = Vec::new();
    for (i, server) in servers.into_iter().enumerate() {
        let id = i as u64 + 1;
        members.push(start(id, server, &root.join(format!("n{id}")), &voters).await);
    }
    (members, voters)
}

/// Waits (bounded) until every node in `nodes` names the same leader among `among`.
async fn agreed_leader(nodes: &[&Arc<RaftNode<Journal>>], among: &[u64]) -> u64 {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.leader()).collect();
            if let Some(Some(leader)) = leaders.first()
                && among.contains(leader)
                && leaders.iter().all(|l| l == &Some(*leader))
            {
                return *leader;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.expect("the nodes agree on a leader")
}

/// Waits (bounded) until `node` has applied exactly `expected` lines.
async fn applied(node: &RaftNode<Journal>, expected: &[&str]) {
    let mut rx = node.subscribe();
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if rx.borrow_and_update().texts() == expected {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "node {} applied {:?}, expected {expected:?}",
        node.node_id(),
        node.image().texts()
    );
    assert_eq!(node.image().texts(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_replicate_fail_over_and_recover() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut members, voters) = start_three(root.path()).await;
    let ids = [1, 2, 3];

    // A leader is elected and all agree on it.
    let nodes: Vec<&Arc<RaftNode<Journal>>> = members.iter().map(|m| &m.node).collect();
    let leader = agreed_leader(&nodes, &ids).await;
    assert!(members.iter().any(|m| m.id == leader && m.node.is_leader()));

    // A proposal through a follower is forwarded, committed, and applied on all three.
    let follower = members.iter().find(|m| m.id != leader).expect("two followers");
    let answer =
        follower.node.propose(JournalCommand::Append("one".into())).await.expect("committed");
    assert_eq!(answer, 1, "the state machine's answer comes back through the follower");
    for m in &members {
        applied(&m.node, &["one"]).await;
    }
    let leader_node = &members.iter().find(|m| m.id == leader).expect("leader").node;
    assert_eq!(
        leader_node.propose(JournalCommand::Append("two".into())).await.expect("committed"),
        2
    );
    for m in &members {
        applied(&m.node, &["one", "two"]).await;
        assert!(
            m.node.commit_index() >= m.node.image().lines[1].0,
            "the commit index covers what is applied"
        );
    }

    // The leader dies: the other two elect a new one and keep committing.
    let position = members.iter().position(|m| m.id == leader).expect("leader");
    let (old_id, old_addr, old_dir) = members.remove(position).kill().await;
    let survivors: Vec<u64> = members.iter().map(|m| m.id).collect();
    let nodes: Vec<&Arc<RaftNode<Journal>>> = members.iter().map(|m| &m.node).collect();
    let new_leader = agreed_leader(&nodes, &survivors).await;
    assert_ne!(new_leader, old_id);
    let anyone = &members[0].node;
    assert_eq!(anyone.propose(JournalCommand::Append("three".into())).await.expect("committed"), 3);
    for m in &members {
        applied(&m.node, &["one", "two", "three"]).await;
    }

    // The old leader restarts from its directory. Before it can hear from anyone (its listener
    // is not up yet), it has its log and what it had applied back from disk.
    let server = bind(old_addr).await;
    let node =
        RaftNode::<Journal>::start(config(old_id, &old_dir, &voters)).await.expect("restarts");
    applied(&node, &["one", "two"]).await;
    // Once reachable, it catches up with what was committed while it was down.
    let (stop, task) = serve(server, node.clone());
    applied(&node, &["one", "two", "three"]).await;
    let restarted = Member {
        id: old_id,
        addr: old_addr,
        dir: old_dir,
        node,
        stop: Some(stop),
        server: Some(task),
    };
    assert_eq!(restarted.node.image(), members[0].node.image(), "the same state, index for index");
    members.push(restarted);

    for m in members {
        m.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_follows_the_metadata_and_can_propose() {
    let root = tempfile::tempdir().expect("tempdir");
    let (members, voters) = start_three(root.path()).await;
    let nodes: Vec<&Arc<RaftNode<Journal>>> = members.iter().map(|m| &m.node).collect();
    agreed_leader(&nodes, &[1, 2, 3]).await;
    members[0].node.propose(JournalCommand::Append("before".into())).await.expect("committed");

    // Node 4 is not a voter: it starts without initializing anything, then asks to be added
    // (forwarded to the leader, which it finds through the voters).
    let server = bind("127.0.0.1:0".parse().expect("literal")).await;
    let learner = start(4, server, &root.path().join("n4"), &voters).await;
    learner.node.add_learner(4, learner.addr.to_string()).await.expect("added as a learner");
    applied(&learner.node, &["before"]).await;

    // It follows later commands, and its own proposals reach the leader.
    members[1].node.propose(JournalCommand::Append("after".into())).await.expect("committed");
    applied(&learner.node, &["before", "after"]).await;
    assert_eq!(
        learner
            .node
            .propose(JournalCommand::Append("from-learner".into()))
            .await
            .expect("committed"),
        3
    );
    for m in members.iter().chain(std::iter::once(&learner)) {
        applied(&m.node, &["before", "after", "from-learner"]).await;
    }
    assert!(!learner.node.is_leader());

    learner.kill().await;
    for m in members {
        m.kill().await;
    }
}

// --- the durable log on its own ---

struct DirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Journal>, tempfile::TempDir> for DirBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine<Journal>), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(dir.path()).expect("open log");
        let (sm, _) = StateMachine::<Journal>::open(dir.path()).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_store_passes_openraft_storage_suite() {
    Suite::test_all(DirBuilder).await.expect("openraft's storage conformance suite");
}

fn entry(index: u64, text: &str) -> Entry {
    let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
    Entry::new_normal(log_id, Proposal(serde_json::json!(text)))
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    log.blocking_append(entries).await.expect("appended and flushed");
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..).await.expect("read").iter().map(|e| e.index()).collect()
}

#[tokio::test]
async fn a_torn_tail_is_dropped_and_the_rest_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = LogStore::open(dir.path()).expect("open");
    append(&mut log, (1..=3).map(|i| entry(i, "x")).collect()).await;
    drop(log);

    // A crash in the middle of writing entry 4: half its record reached the disk.
    let path = dir.path().join(LOG_FILE);
    let whole = std::fs::read(&path).expect("read");
    let mut with_four = Vec::new();
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        append(&mut log, vec![entry(4, "torn")]).await;
        with_four.extend(std::fs::read(&path).expect("read"));
    }
    let torn = &with_four[..whole.len() + (with_four.len() - whole.len()) / 2];
    std::fs::write(&path, torn).expect("write");

    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
    assert_eq!(
        std::fs::read(&path).expect("read").len(),
        whole.len(),
        "the torn bytes are cut off"
    );
    // Appending after recovery continues the log.
    append(&mut log, vec![entry(4, "again")]).await;
    drop(log);
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn truncation_purge_and_vote_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = LogStore::open(dir.path()).expect("open");
    append(&mut log, (1..=10).map(|i| entry(i, "x")).collect()).await;
    log.purge(openraft::testing::log_id::<TypeConfig>(1, 1, 4)).await.expect("purge");
    log.truncate_after(Some(openraft::testing::log_id::<TypeConfig>(1, 1, 7)))
        .await
        .expect("truncate");
    append(&mut log, vec![entry(8, "new")]).await;
    let vote = openraft::type_config::alias::VoteOf::<TypeConfig>::new(3, 2);
    log.save_vote(&vote).await.expect("vote");
    assert_eq!(indexes(&mut log).await, vec![5, 6, 7, 8]);
    drop(log);

    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&mut log).await, vec![5, 6, 7, 8]);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(4));
    assert_eq!(state.last_log_id.map(|l| l.index()), Some(8));
    let eight = log.try_get_log_entries(8..9).await.expect("read");
    assert_eq!(
        eight[0].payload,
        openraft::EntryPayload::Normal(Proposal(serde_json::json!("new")))
    );
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));

    // Purging everything leaves the purge point as the last log id, across reopen too.
    log.purge(openraft::testing::log_id::<TypeConfig>(1, 1, 8)).await.expect("purge");
    drop(log);
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert!(indexes(&mut log).await.is_empty());
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id.map(|l| l.index()), Some(8));
}

#[tokio::test]
async fn a_long_purged_log_is_compacted_to_its_live_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = LogStore::open(dir.path()).expect("open");
    append(&mut log, (1..=5000).map(|i| entry(i, "x")).collect()).await;
    let before = std::fs::metadata(dir.path().join(LOG_FILE)).expect("stat").len();
    log.purge(openraft::testing::log_id::<TypeConfig>(1, 1, 4990)).await.expect("purge");
    let after = std::fs::metadata(dir.path().join(LOG_FILE)).expect("stat").len();
    assert!(after * 100 < before, "rewritten: {before} -> {after} bytes");
    append(&mut log, vec![entry(5001, "y")]).await;
    drop(log);
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&mut log).await, (4991..=5001).collect::<Vec<_>>());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "no temp file left: {names:?}");
}
