//! A broker as a member of a multi-node cluster: starts its part of the metadata Raft group and
//! the broker-to-broker listener, registers with the controller and heartbeats to it, runs the
//! controller's loop (it acts only while this node is the Raft leader), makes the local topics and
//! partition roles follow every applied metadata image, and turns the replicas' ISR requests into
//! `AlterPartition` proposals. [`super::Cluster`] asks it who leads what and to propose commands.
//!
//! Never decides a leader or an ISR itself (the metadata's `apply` does, once Raft committed the
//! command), never parses client protocols, and acts on no image before its own registration is
//! in it: a restarted broker replaying an old log must not lead what it led before the crash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::ClusterConfig;
use super::controller::{self, BrokerHeartbeat, Heartbeats, ProposeFuture};
use super::heartbeat::{HEARTBEAT_NOT_CONTROLLER, HEARTBEAT_RECORDED, Heartbeat};
use super::metadata::{ApplyResult, MetadataCommand, MetadataImage, NodeId};
use super::raft::{RaftConfig, RaftNode, RaftNodeError, StateMachineData};
use super::reconcile::{self, Action, LocalTopic, Role};
use super::{Advertised, ClusterError};
use crate::broker::Broker;
use crate::broker::topic_config::{ConfigOp, TopicConfigs};
use crate::peer::{self, PeerClient, PeerError, PeerHandler, PeerServer};
use crate::replication::ReplicaManager;

/// Where the metadata Raft log, vote and snapshot live, inside the data directory (names starting
/// with `@` are never topics).
pub const CLUSTER_DIR: &str = "@cluster";

/// Producer ids are taken from the metadata in blocks this big: one Raft commit per block.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Pause between attempts of a step that needs a metadata leader (registration, ISR changes).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a controlled shutdown waits for leadership to move away.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);
/// Reconciliation is retried this often while an action failed (a file error, a leader whose
/// log is not there yet), even when no new image arrives.
const RECONCILE_RETRY: Duration = Duration::from_secs(1);

/// The metadata image is the Raft state machine's data: `apply` is the metadata's own.
impl StateMachineData for MetadataImage {
    type Command = MetadataCommand;
    type Response = ApplyResult;

    fn apply(&mut self, command: &MetadataCommand, log_index: u64) -> ApplyResult {
        MetadataImage::apply(self, command, log_index)
    }
}

impl From<RaftNodeError> for ClusterError {
    fn from(e: RaftNodeError) -> Self {
        ClusterError::Raft(e.to_string())
    }
}

/// Answers the cluster listener's requests: Raft traffic, heartbeats (on the controller) and
/// replica fetches (on partition leaders).
struct Dispatch {
    /// Set once Raft has started; requests before that are refused (peers retry).
    raft: OnceLock<Arc<RaftNode<MetadataImage>>>,
    replicas: Arc<ReplicaManager>,
    heartbeats: Arc<Mutex<Heartbeats>>,
}

impl PeerHandler for Dispatch {
    fn handle(
        &self,
        from: u64,
        kind: u8,
        payload: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, PeerError>> + Send + '_>>
    {
        Box::pin(async move {
            match kind {
                peer::REPLICA_FETCH => self.replicas.handle_fetch(from, payload).await,
                peer::BROKER_HEARTBEAT => {
                    let hb = Heartbeat::decode(&payload)
                        .ok_or_else(|| PeerError::handler("malformed heartbeat"))?;
                    if hb.node_id != from {
                        return Err(PeerError::handler(format!(
                            "node {from} sent a heartbeat for node {}",
                            hb.node_id
                        )));
                    }
                    // Every voter keeps the times: the one elected next knows who is silent.
                    record(&self.heartbeats, hb);
                    let leading = self.raft.get().is_some_and(|r| r.is_leader());
                    let answer =
                        if leading { HEARTBEAT_RECORDED } else { HEARTBEAT_NOT_CONTROLLER };
                    Ok(Bytes::copy_from_slice(&[answer]))
                }
                _ => match self.raft.get() {
                    Some(raft) => raft.handle_peer(kind, payload).await,
                    None => Err(PeerError::handler("the metadata node is starting")),
                },
            }
        })
    }
}

fn record(heartbeats: &Mutex<Heartbeats>, hb: Heartbeat) {
    let beat = BrokerHeartbeat {
        id: hb.node_id,
        incarnation: hb.incarnation,
        applied_index: hb.applied_index,
        want_shutdown: hb.want_shutdown,
    };
    // Only instants in there: a panic elsewhere leaves it usable.
    heartbeats.lock().unwrap_or_else(PoisonError::into_inner).record(beat, Instant::now());
}

/// This broker's membership in a cluster. See the module doc.
pub(super) struct Node {
    cfg: ClusterConfig,
    broker: Arc<Broker>,
    raft: Arc<RaftNode<MetadataImage>>,
    pub(super) replicas: Arc<ReplicaManager>,
    heartbeats: Arc<Mutex<Heartbeats>>,
    /// Where the other brokers reach this one's cluster listener.
    cluster_addr: String,
    /// The raft index of this process's registration (its broker epoch); 0 until applied.
    incarnation: AtomicU64,
    /// Signalled once `incarnation` is set.
    registered: tokio::sync::Notify,
    /// Set when registration starts, so it happens once.
    registering: AtomicBool,
    want_shutdown: AtomicBool,
    /// Producer ids left in the block taken from the metadata: `next..end`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Heartbeat clients by controller address.
    clients: Mutex<BTreeMap<String, PeerClient>>,
}

impl Node {
    /// Binds the cluster listener, starts Raft and the loops that do not need a registration
    /// (the controller, reconciliation, ISR proposals). [`Node::register`] comes once the client
    /// listeners are bound and their addresses known.
    pub(super) async fn start(
        broker: Arc<Broker>,
        cfg: ClusterConfig,
    ) -> Result<Arc<Node>, ClusterError> {
        let me = cfg.node_id;
        let start_err = |reason: String| ClusterError::Start { node: me, reason };
        let server = PeerServer::bind(cfg.cluster_listen, cfg.token.clone(), cfg.allow_remote)
            .await
            .map_err(|e| start_err(e.to_string()))?;
        let cluster_addr = cfg.cluster_addr(server.local_addr());
        let replicas =
            ReplicaManager::new(broker.clone(), me, cfg.token.clone(), cfg.replica_lag_time);
        let heartbeats = Arc::new(Mutex::new(Heartbeats::new()));
        let dispatch = Arc::new(Dispatch {
            raft: OnceLock::new(),
            replicas: replicas.clone(),
            heartbeats: heartbeats.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // The listener is up before Raft starts: the other voters' votes and appends must reach
        // this node while it initializes.
        let handler: Arc<dyn PeerHandler> = dispatch.clone();
        let serve_stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.run(handler, serve_stop).await {
                tracing::error!("cluster listener failed: {e}");
            }
        }));
        let mut raft_cfg = RaftConfig::new(
            me,
            broker.config().data_dir.join(CLUSTER_DIR),
            cfg.controllers.clone(),
            cfg.token.clone(),
        );
        raft_cfg.election_timeout_ms = cfg.raft_election_timeout_ms();
        raft_cfg.heartbeat_ms = cfg.raft_heartbeat_ms();
        let raft = match RaftNode::<MetadataImage>::start(raft_cfg).await {
            Ok(r) => r,
            Err(e) => {
                let _ = stop.send(true);
                return Err(start_err(e.to_string()));
            }
        };
        // Set once, here, before anything else can: the cell is new.
        let _ = dispatch.raft.set(raft.clone());
        let node = Arc::new(Node {
            cfg,
            broker,
            raft,
            replicas,
            heartbeats,
            cluster_addr,
            incarnation: AtomicU64::new(0),
            registered: tokio::sync::Notify::new(),
            registering: AtomicBool::new(false),
            want_shutdown: AtomicBool::new(false),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            stop,
            tasks: Mutex::new(Vec::new()),
            clients: Mutex::new(BTreeMap::new()),
        });
        tasks.push(tokio::spawn(node.clone().run_controller(stop_rx.clone())));
        tasks.push(tokio::spawn(node.clone().reconcile_loop(stop_rx.clone())));
        tasks.push(tokio::spawn(node.clone().isr_loop(stop_rx)));
        node.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend(tasks);
        tracing::info!(node = me, cluster_addr = %node.cluster_addr, voter = node.cfg.is_voter(), "cluster node started");
        Ok(node)
    }

    pub(super) fn id(&self) -> NodeId {
        self.cfg.node_id
    }

    pub(super) fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub(super) fn image(&self) -> Arc<MetadataImage> {
        self.raft.image()
    }

    /// Changes on every applied metadata command.
    pub(super) fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.raft.subscribe()
    }

    pub(super) fn controller(&self) -> Option<NodeId> {
        self.raft.leader()
    }

    /// Whether this node is the metadata Raft leader (the active controller) now.
    pub(super) fn is_controller(&self) -> bool {
        self.raft.is_leader()
    }

    pub(super) fn commit_index(&self) -> u64 {
        self.raft.commit_index()
    }

    /// Commits `cmd` through Raft; a command the metadata refused is an error with its reason.
    pub(super) async fn propose(&self, cmd: MetadataCommand) -> Result<ApplyResult, ClusterError> {
        if *self.stop.borrow() {
            return Err(ClusterError::ShuttingDown);
        }
        Ok(self.raft.propose(cmd).await?)
    }

    /// The metadata voters (controllers) now, by id.
    pub(super) fn voters(&self) -> Vec<NodeId> {
        self.raft.voter_ids()
    }

    /// Makes broker `id` a voter or a learner again (see [`RaftNode::change_voter`]); a refusal
    /// says why.
    pub(super) async fn change_voter(&self, id: NodeId, add: bool) -> Result<(), ClusterError> {
        match self.raft.change_voter(id, add).await {
            Ok(()) => Ok(()),
            Err(RaftNodeError::Rejected { reason, .. }) => Err(ClusterError::Membership(reason)),
            Err(e) => Err(e.into()),
        }
    }

    /// A fresh producer id from this broker's block, taking a new block from the metadata when
    /// it is used up (ids are never handed out twice in the cluster).
    pub(super) async fn next_producer_id(&self) -> Result<i64, ClusterError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            match self
                .propose(MetadataCommand::AllocateProducerIds { count: PRODUCER_ID_BLOCK })
                .await?
            {
                ApplyResult::ProducerIds { first } => *block = (first, first + PRODUCER_ID_BLOCK),
                ApplyResult::Rejected(reason) => return Err(ClusterError::Raft(reason)),
                ApplyResult::Done => {
                    return Err(ClusterError::Internal("no producer ids in the answer".into()));
                }
            }
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Announces this broker (its cluster address and the client addresses the listeners
    /// advertise), then heartbeats to the controller until shutdown. Idempotent.
    pub(super) fn register(self: &Arc<Self>, advertised: Advertised) {
        if self.registering.swap(true, Ordering::AcqRel) {
            return;
        }
        let node = self.clone();
        let stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let run = async {
                node.register_now(advertised).await;
                node.heartbeat_loop().await;
            };
            tokio::select! {
                _ = run => {}
                _ = stopped(stop) => {}
            }
        });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
    }

    /// Completes once this process is registered and unfenced: it may lead and follow. A
    /// decommissioned broker that holds nothing stays fenced: it is ready to answer clients
    /// (pointing them at the others) as soon as it is registered.
    pub(super) async fn ready(&self) {
        let me = self.id();
        // The incarnation is learnt after the image that holds it: wait for it first, then
        // look at the images (the current one first), so none is missed.
        let mine = loop {
            let registered = self.registered.notified();
            let mine = self.incarnation.load(Ordering::Acquire);
            if mine != 0 {
                break mine;
            }
            registered.await;
        };
        let mut images = self.subscribe();
        let mut drained = false;
        let _ = images
            .wait_for(|img| {
                let Some(b) = img.brokers.get(&me).filter(|b| b.incarnation == mine) else {
                    return false;
                };
                drained = b.decommissioned && !img.holds_replicas(me);
                !b.fenced || drained
            })
            .await;
        if drained {
            tracing::warn!(
                node = me,
                "this broker is decommissioned: it holds no replica and stays fenced \
                 (`minikafka cluster decommission {me} --cancel` takes it back)"
            );
        }
    }

    async fn register_now(&self, advertised: Advertised) {
        let me = self.id();
        if !self.raft.voter_ids().contains(&me) {
            // A learner must be in the Raft membership before it receives the log.
            while let Err(e) = self.raft.add_learner(me, self.cluster_addr.clone()).await {
                tracing::warn!(node = me, "joining the metadata as a learner: {e}; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        let cmd = MetadataCommand::RegisterBroker {
            id: me,
            cluster_addr: self.cluster_addr.clone(),
            native_addr: advertised.native,
            kafka_addr: advertised.kafka,
        };
        let mut images = self.subscribe();
        let before = images.borrow().brokers.get(&me).map(|b| b.incarnation);
        loop {
            match self.raft.propose(cmd.clone()).await {
                Ok(ApplyResult::Rejected(reason)) => {
                    tracing::error!(node = me, %reason, "registration refused; retrying")
                }
                Ok(_) => break,
                Err(e) => tracing::warn!(node = me, "registering: {e}; retrying"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        // The incarnation is the index the registration was applied at: wait until this node
        // applied it too (a registration older than ours never has our index).
        let incarnation = loop {
            let found = images.borrow_and_update().brokers.get(&me).map(|b| b.incarnation);
            if let Some(i) = found
                && Some(i) != before
            {
                break i;
            }
            if images.changed().await.is_err() {
                return;
            }
        };
        self.replicas.set_incarnation(incarnation);
        self.incarnation.store(incarnation, Ordering::Release);
        self.registered.notify_waiters();
        tracing::info!(node = me, incarnation, "registered with the cluster");
    }

    async fn heartbeat_loop(&self) {
        let mut every = tokio::time::interval(self.cfg.heartbeat_interval());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.heartbeat().await;
        }
    }

    /// One heartbeat to every voter (recorded here when this node is one), so that whichever
    /// voter is elected controller next already knows how long each broker has been silent: a
    /// broker that dies with the controller is fenced one session after its last heartbeat, not
    /// one session after the election.
    async fn heartbeat(&self) {
        let hb = Heartbeat {
            node_id: self.id(),
            incarnation: self.incarnation.load(Ordering::Acquire),
            applied_index: self.raft.applied_index(),
            want_shutdown: self.want_shutdown.load(Ordering::Acquire),
        };
        if hb.incarnation == 0 {
            return;
        }
        let leader = self.raft.leader();
        let timeout = self.cfg.heartbeat_interval().max(Duration::from_millis(200));
        let mut calls = Vec::new();
        // The voters now, not the --controllers list: voters change (`cluster add-voter`).
        for (voter, addr) in self.raft.voters() {
            if voter == self.id() {
                record(&self.heartbeats, hb);
                continue;
            }
            let client = self
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(addr.clone())
                .or_insert_with(|| PeerClient::new(self.id(), addr, self.cfg.token.clone()))
                .clone();
            calls.push(async move {
                let reply = client.call(peer::BROKER_HEARTBEAT, hb.encode(), timeout).await;
                (voter, reply)
            });
        }
        for (voter, reply) in futures::future::join_all(calls).await {
            match reply {
                Ok(r) if r.first() == Some(&HEARTBEAT_RECORDED) => {}
                Ok(_) if Some(voter) == leader => {
                    tracing::debug!(voter, "heartbeat: not the controller (yet)")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(voter, "heartbeat failed: {e}"),
            }
        }
    }

    async fn run_controller(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let raft = self.raft.clone();
        let is_leader = {
            let raft = raft.clone();
            move || raft.is_leader()
        };
        let propose = move |cmd: MetadataCommand| -> ProposeFuture<RaftNodeError> {
            let raft = raft.clone();
            Box::pin(async move { raft.propose(cmd).await })
        };
        controller::run_controller(
            is_leader,
            self.raft.subscribe(),
            self.heartbeats.clone(),
            propose,
            self.cfg.broker_session_timeout,
            self.cfg.leader_imbalance_check_interval,
            stopped(stop),
        )
        .await;
    }

    /// Brings the local topics and roles to every new image (see [`reconcile::plan`]).
    async fn reconcile_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut images = self.subscribe();
        let mut roles: BTreeMap<(String, u32), Role> = BTreeMap::new();
        let mut retry = false;
        loop {
            let image = images.borrow_and_update().clone();
            let mine = self.incarnation.load(Ordering::Acquire);
            // Nothing is acted on before this process's registration is in the image.
            if mine != 0 && image.brokers.get(&self.id()).is_some_and(|b| b.incarnation == mine) {
                retry = !self.reconcile(&image, &mut roles).await;
            }
            let wake = async {
                if retry {
                    tokio::time::sleep(RECONCILE_RETRY).await;
                } else {
                    // Registration sets the incarnation without a new image: look again soon.
                    let wait = if mine == 0 { RETRY_PAUSE } else { Duration::MAX };
                    let _ = tokio::time::timeout(wait, images.changed()).await;
                }
            };
            tokio::select! {
                _ = wake => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if images.has_changed().is_err() {
                return;
            }
        }
    }

    /// Executes one plan; `false` when an action failed (it is planned again next time).
    async fn reconcile(
        &self,
        image: &Arc<MetadataImage>,
        roles: &mut BTreeMap<(String, u32), Role>,
    ) -> bool {
        let local = self.local_topics(Arc::clone(image)).await;
        // Before the roles: a fetch loop started below begins throttled when it must.
        self.replicas.set_reassignment_throttle(
            image.reassignment_throttle,
            reconcile::throttled_partitions(self.id(), image),
        );
        let actions = reconcile::plan(self.id(), image, &local, roles);
        let mut ok = true;
        for action in actions {
            let recorded = reconcile::role_after(&action);
            match self.execute(&action, roles).await {
                Ok(()) => {
                    if let Some((key, role)) = recorded {
                        match role {
                            Some(r) => roles.insert(key, r),
                            None => roles.remove(&key),
                        };
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(?action, "reconciling with the metadata: {e}");
                }
            }
        }
        ok
    }

    /// The topics on disk here. Whether a partition's log holds records is looked at only where
    /// `image` names this broker no replica of it (what a `DiscardReplica` needs).
    async fn local_topics(&self, image: Arc<MetadataImage>) -> BTreeMap<String, LocalTopic> {
        let broker = self.broker.clone();
        let me = self.id();
        tokio::task::spawn_blocking(move || {
            broker
                .list_topics()
                .into_iter()
                .filter_map(|t| {
                    let id = broker.topic_id(&t.name).ok()?;
                    let configs = super::configs_map(&broker.topic_configs(&t.name).ok()?);
                    let elsewhere = |p: u32| {
                        image.partition(&t.name, p).is_some_and(|r| !r.replicas.contains(&me))
                    };
                    let holding = (0..t.partitions)
                        .filter(|&p| {
                            elsewhere(p)
                                && broker
                                    .partition_log(&t.name, p)
                                    .is_ok_and(|log| log.next_offset() > log.log_start_offset())
                        })
                        .collect();
                    let local = LocalTopic { id, partitions: t.partitions, configs, holding };
                    Some((t.name, local))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    async fn execute(
        &self,
        action: &Action,
        roles: &mut BTreeMap<(String, u32), Role>,
    ) -> Result<(), ClusterError> {
        let r = &self.replicas;
        let repl = |e: crate::replication::ReplicationError| ClusterError::Internal(e.to_string());
        match action.clone() {
            Action::DeleteTopic { name } => {
                let held: Vec<(String, u32)> =
                    roles.keys().filter(|(t, _)| *t == name).cloned().collect();
                for (t, p) in held {
                    r.stop(&t, p);
                    roles.remove(&(t, p));
                }
                let broker = self.broker.clone();
                super::blocking(move || match broker.delete_topic(&name) {
                    Err(crate::broker::BrokerError::UnknownTopic { .. }) => Ok(()),
                    other => other,
                })
                .await
            }
            Action::CreateTopic { name, id, partitions, configs } => {
                let broker = self.broker.clone();
                super::blocking(move || {
                    let pairs: Vec<(String, Option<String>)> =
                        configs.into_iter().map(|(k, v)| (k, Some(v))).collect();
                    let configs = TopicConfigs::parse(&pairs)?;
                    broker.create_topic_with_id(&name, id, partitions, configs).map(|_| ())
                })
                .await
            }
            Action::AddPartitions { name, total } => {
                let broker = self.broker.clone();
                super::blocking(move || broker.add_partitions(&name, total, false)).await
            }
            Action::AlterConfigs { name, configs } => {
                // Every name the metadata has, set, and nothing else (`replace_all`): the topic's
                // configs become exactly the metadata's, a name it lacks back at its default.
                let ops: Vec<ConfigOp> =
                    configs.into_iter().map(|(k, v)| ConfigOp::Set(k, v)).collect();
                let broker = self.broker.clone();
                super::blocking(move || broker.alter_topic_configs(&name, &ops, true, false)).await
            }
            Action::BecomeLeader {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                replicas,
            } => r
                .become_leader(&topic, partition, leader_epoch, partition_epoch, isr, replicas)
                .map_err(repl),
            Action::UpdateIsr { topic, partition, isr, partition_epoch } => {
                r.update_isr(&topic, partition, isr, partition_epoch);
                Ok(())
            }
            Action::BecomeFollower { topic, partition, leader_epoch, leader, leader_addr } => r
                .become_follower(&topic, partition, leader_epoch, leader, leader_addr)
                .map_err(repl),
            Action::Stop { topic, partition } => {
                r.stop(&topic, partition);
                Ok(())
            }
            Action::DiscardReplica { topic, partition } => {
                let broker = self.broker.clone();
                super::blocking(move || {
                    let log = broker.partition_log(&topic, partition)?;
                    log.discard_all().map_err(|source| crate::broker::BrokerError::Storage {
                        topic: topic.clone(),
                        partition,
                        source,
                    })?;
                    tracing::info!(%topic, partition, "not a replica here any more: records discarded");
                    Ok(())
                })
                .await
            }
        }
    }

    /// Proposes each ISR change the leaders here ask for (compare-and-set in the metadata); the
    /// committed ISR comes back to them through reconciliation.
    async fn isr_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut requests = self.replicas.take_isr_requests();
        loop {
            let change = tokio::select! {
                c = requests.recv() => match c { Some(c) => c, None => return },
                _ = stop.wait_for(|s| *s) => return,
            };
            let cmd = MetadataCommand::AlterPartition {
                topic: change.topic.clone(),
                partition: change.partition,
                leader: self.id(),
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                isr: change.isr.clone(),
            };
            // Retried while the request still applies to the partition as the image has it (a
            // leadership or ISR change made it moot otherwise).
            loop {
                match self.raft.propose(cmd.clone()).await {
                    Ok(ApplyResult::Rejected(reason)) => {
                        tracing::debug!(?change, %reason, "ISR change refused");
                        self.replicas.isr_change_refused(
                            &change.topic,
                            change.partition,
                            &change.isr,
                        );
                        break;
                    }
                    Ok(_) => {
                        tracing::info!(topic = %change.topic, partition = change.partition, isr = ?change.isr, "ISR changed");
                        break;
                    }
                    Err(e) => {
                        let current = self
                            .image()
                            .partition(&change.topic, change.partition)
                            .is_some_and(|p| {
                                p.leader == Some(self.id())
                                    && p.leader_epoch == change.leader_epoch
                                    && p.partition_epoch == change.partition_epoch
                            });
                        if !current || *stop.borrow() {
                            break;
                        }
                        tracing::warn!(?change, "proposing an ISR change: {e}; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        }
    }

    /// Controlled shutdown: stop asking to be unfenced, have the controller move every
    /// leadership away (ShutdownBroker), wait until the image shows it, then stop replicating,
    /// stop Raft and the listener.
    pub(super) async fn shutdown(&self) {
        // Once: the listeners and the broker command may each ask.
        if self.want_shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        let incarnation = self.incarnation.load(Ordering::Acquire);
        if incarnation != 0 && !*self.stop.borrow() {
            self.heartbeat().await;
            let cmd = MetadataCommand::ShutdownBroker { id: self.id(), incarnation };
            match tokio::time::timeout(HANDOVER_WAIT, self.raft.propose(cmd)).await {
                Ok(Ok(_)) => {
                    let me = self.id();
                    let mut images = self.subscribe();
                    let moved = tokio::time::timeout(
                        HANDOVER_WAIT,
                        images.wait_for(|img| {
                            img.topics
                                .values()
                                .all(|t| t.partitions.iter().all(|p| p.leader != Some(me)))
                        }),
                    )
                    .await;
                    match moved {
                        Ok(Ok(_)) => tracing::info!(node = me, "leadership handed over"),
                        _ => tracing::warn!(
                            node = me,
                            "leadership still here after {HANDOVER_WAIT:?}"
                        ),
                    }
                }
                Ok(Err(e)) => tracing::warn!("controlled shutdown: {e}"),
                Err(_) => tracing::warn!("controlled shutdown: no answer in {HANDOVER_WAIT:?}"),
            }
        }
        let _ = self.stop.send(true);
        self.replicas.shutdown();
        self.raft.shutdown().await;
        let tasks: Vec<_> =
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(6), t).await;
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
