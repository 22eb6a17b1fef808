//! The broker's part in a cluster, seen from the listeners: [`Cluster`] is what the native
//! server, the Kafka adapter and the console hold (an `Arc<Cluster>`) to produce, fetch, create
//! and delete topics and to learn who leads what. It owns the decision "may this broker serve
//! this partition now" (leadership and epochs from the applied metadata image), the glue that
//! makes the local partitions follow the metadata, and the cluster's view of brokers and
//! partitions for Metadata responses and `cluster status`.
//!
//! A single node (no `--controllers`, [`Cluster::single`]) is a cluster of one with no network:
//! every partition is led here at epoch 0, produce is [`Broker::append`], fetch is
//! [`Broker::fetch`], so nothing changes for a user who does not ask for a cluster.
//!
//! Never: parses a wire format (the listeners do), touches files itself (storage does, through
//! the broker), elects leaders or changes an ISR on its own (every such decision is a metadata
//! command committed through Raft before anyone acts on it), or exposes openraft types (they
//! stay in `cluster/raft/`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::{AppendBatch, AppendResult, Broker, BrokerError, FetchResult};

pub mod balance;
pub mod config;
pub mod controller;
mod groups;
pub mod heartbeat;
mod membership;
pub mod metadata;
mod node;
pub mod raft;
mod reassign;
pub mod reconcile;
#[cfg(test)]
mod single_tests;
mod topics;

pub use self::config::ClusterConfig;
pub use self::node::CLUSTER_DIR;
pub use self::reassign::{ReassignmentView, ReplicaCopy};
pub use self::topics::configs_map;

use self::metadata::{ApplyResult, MetadataCommand, MetadataImage, NodeId, PartitionRecord};
use self::node::Node;

/// The node id of a single-node broker (Kafka's broker id in Metadata, FindCoordinator...).
pub const SINGLE_NODE_ID: i32 = 0;

/// How many replicas must have a produced batch before it is acknowledged (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the producer wants no answer; the append still happens.
    None,
    /// `acks=1`: the leader's own append.
    Leader,
    /// `acks=all` (-1): every in-sync replica, and at least `min.insync.replicas` of them.
    All,
}

impl Acks {
    /// Kafka's `acks` field: 0, 1 or -1; anything else is invalid (`None`).
    pub fn from_kafka(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// One broker of the cluster as clients are told about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerView {
    pub id: i32,
    /// Where native clients reach it (`--advertised-addr`, else its native listener).
    pub native_addr: Option<String>,
    /// Where Kafka clients reach it (`--advertised-kafka-addr`, else its Kafka listener).
    pub kafka_addr: Option<String>,
    /// Its broker-to-broker listener; `None` on a single node.
    pub cluster_addr: Option<String>,
    /// Fenced: missed its heartbeats (or shut down); it leads nothing until it is back.
    pub fenced: bool,
    /// Decommissioned (`cluster decommission`): takes no new replica; fenced once emptied.
    pub decommissioned: bool,
    /// A metadata voter (a controller).
    pub voter: bool,
}

/// A broker's state as `cluster status` and the console name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    /// Registered, heartbeating, taking replicas.
    Alive,
    /// Missed its heartbeats or shut down; back once it heartbeats again.
    Fenced,
    /// Decommissioned but still holding replicas: they are being moved away.
    Decommissioning,
    /// Decommissioned and emptied: fenced for good (until `decommission --cancel`).
    Decommissioned,
}

impl BrokerState {
    /// The state of a broker from its fenced and decommissioned flags.
    pub fn of(fenced: bool, decommissioned: bool) -> BrokerState {
        match (fenced, decommissioned) {
            (false, false) => BrokerState::Alive,
            (true, false) => BrokerState::Fenced,
            (false, true) => BrokerState::Decommissioning,
            (true, true) => BrokerState::Decommissioned,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Alive => "alive",
            BrokerState::Fenced => "fenced",
            BrokerState::Decommissioning => "decommissioning",
            BrokerState::Decommissioned => "decommissioned",
        }
    }
}

/// A broker's part in the metadata quorum as `cluster status` and the console name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerRole {
    /// The active controller (the metadata Raft leader).
    Controller,
    /// A metadata voter that does not lead: a controller candidate.
    Voter,
    /// A learner of the metadata only.
    Broker,
}

impl BrokerRole {
    /// The role of broker `id` when `controller` leads the metadata and `voter` says whether
    /// `id` votes.
    pub fn of(id: i32, controller: Option<i32>, voter: bool) -> BrokerRole {
        if controller == Some(id) {
            BrokerRole::Controller
        } else if voter {
            BrokerRole::Voter
        } else {
            BrokerRole::Broker
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::Controller => "controller",
            BrokerRole::Voter => "voter",
            BrokerRole::Broker => "broker",
        }
    }
}

/// One partition's leadership as clients are told about it (Kafka Metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionView {
    pub topic: String,
    pub partition: u32,
    /// `None` while the partition is offline (no live in-sync replica).
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are fenced (Metadata's `offline_replicas`).
    pub offline_replicas: Vec<i32>,
}

impl PartitionView {
    /// No leader: produce and fetch answer LEADER_NOT_AVAILABLE until one is elected.
    pub fn offline(&self) -> bool {
        self.leader.is_none()
    }
}

/// `cluster status`: the brokers, the controller and the partitions that need attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This broker's id.
    pub node_id: i32,
    /// `false` on a single node.
    pub clustered: bool,
    /// The controller (the metadata Raft leader), if one is known.
    pub controller: Option<i32>,
    pub brokers: Vec<BrokerView>,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated: Vec<PartitionView>,
    /// Partitions without a leader.
    pub offline: Vec<PartitionView>,
}

/// One partition of a preferred leader election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderElection {
    pub topic: String,
    pub partition: u32,
    /// Its first replica.
    pub preferred: i32,
    /// Its leader after the election (`None`: offline).
    pub leader: Option<i32>,
    /// Whether the preferred replica leads it now.
    pub elected: bool,
}

/// This broker's part in the cluster as its metrics report it, read at scrape time: the metrics
/// layer never reads the cluster itself, the HTTP glue hands it this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    /// `false` on a single node.
    pub clustered: bool,
    /// This broker is the active controller (a single node is its own).
    pub controller: bool,
    /// The newest metadata entry this broker knows to be committed (0 on a single node).
    pub commit_index: u64,
    /// Partitions this broker leads whose ISR is smaller than their replica set.
    pub under_replicated_led: u64,
    /// Partitions without a leader in the metadata, counted by the active controller only
    /// (Kafka's OfflinePartitionsCount); `None` on the other brokers and on a single node (whose
    /// offline partitions are its damaged ones, which the broker counts).
    pub offline: Option<u64>,
    /// ISR counters and follower lags of the partitions led here (empty on a single node).
    pub replication: crate::replication::ReplicationStats,
}

/// Why a cluster operation failed; each names the topic, partition or node involved.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("this broker does not lead {topic:?} partition {partition} (leader: {})", fmt_leader(*leader))]
    NotLeader { topic: String, partition: u32, leader: Option<i32> },
    #[error("{topic:?} partition {partition} has no leader right now")]
    LeaderNotAvailable { topic: String, partition: u32 },
    #[error(
        "{topic:?} partition {partition}: leader epoch {requested} is older than the current {current}"
    )]
    FencedLeaderEpoch { topic: String, partition: u32, requested: i32, current: i32 },
    #[error(
        "{topic:?} partition {partition}: leader epoch {requested} is newer than the known {current}"
    )]
    UnknownLeaderEpoch { topic: String, partition: u32, requested: i32, current: i32 },
    #[error(
        "{topic:?} partition {partition}: {isr} in-sync replicas, min.insync.replicas is {min}"
    )]
    NotEnoughReplicas { topic: String, partition: u32, isr: usize, min: usize },
    #[error(
        "{topic:?} partition {partition}: the batch was written but the in-sync replicas fell \
         below min.insync.replicas before it was replicated"
    )]
    NotEnoughReplicasAfterAppend { topic: String, partition: u32 },
    #[error("{topic:?} partition {partition}: not replicated within {timeout:?}")]
    Timeout { topic: String, partition: u32, timeout: Duration },
    #[error("no controller is available")]
    NotController,
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("metadata consensus: {0}")]
    Raft(String),
    #[error("replication factor {requested} is larger than the {brokers} available broker(s)")]
    InvalidReplicationFactor { requested: i32, brokers: usize },
    #[error("topic {topic:?}: invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { topic: String, reason: String },
    #[error("{topic:?} partition {partition}: cannot reassign: {reason}")]
    Reassignment { topic: String, partition: u32, reason: String },
    #[error("cannot change the cluster's members: {0}")]
    Membership(String),
    #[error("cannot set the reassignment throttle: {reason}")]
    Throttle { reason: String },
    #[error("the cluster is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("node {node}: cannot join the cluster: {reason}")]
    Start { node: u64, reason: String },
}

fn fmt_leader(leader: Option<i32>) -> String {
    leader.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
}

/// The addresses the listeners advertise for this broker, learnt once they are bound.
#[derive(Debug, Clone, Default)]
struct Advertised {
    native: Option<String>,
    kafka: Option<String>,
}

/// How this broker takes part: alone, or as a member of a Raft-run cluster.
enum Mode {
    Single,
    /// One of several brokers; the metadata comes from Raft.
    Node(Arc<Node>),
}

/// The broker as a member of a cluster (of one on a single node). See the module doc.
pub struct Cluster {
    broker: Arc<Broker>,
    advertised: RwLock<Advertised>,
    mode: Mode,
}

impl Cluster {
    /// A cluster of one: every partition is led here, with no network and no consensus.
    pub fn single(broker: Arc<Broker>) -> Arc<Cluster> {
        Arc::new(Cluster { broker, advertised: RwLock::default(), mode: Mode::Single })
    }

    /// Joins (or, on the voters' first start, forms) the cluster `config` describes: binds the
    /// cluster listener and starts this node's part of the metadata Raft group. The broker
    /// registers once [`Cluster::register`] is called, after the client listeners are bound.
    pub async fn start(
        broker: Arc<Broker>,
        config: ClusterConfig,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let advertised = Advertised {
            native: config.advertised_addr.clone(),
            kafka: config.advertised_kafka_addr.clone(),
        };
        let node = Node::start(broker.clone(), config).await?;
        Ok(Arc::new(Cluster {
            broker,
            advertised: RwLock::new(advertised),
            mode: Mode::Node(node),
        }))
    }

    /// Announces this broker to the cluster with the addresses its listeners advertise, then
    /// heartbeats until shutdown. Call once the listeners are bound; a single node has nothing
    /// to announce.
    pub fn register(&self) {
        if let Mode::Node(n) = &self.mode {
            n.register(self.advertised());
        }
    }

    /// Completes once this broker may serve: at once on a single node; in a cluster, once it is
    /// registered and unfenced (it has caught up with the metadata), as a Kafka broker opens its
    /// listeners only then.
    pub async fn ready(&self) {
        if let Mode::Node(n) = &self.mode {
            n.ready().await;
        }
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// This broker's id: Kafka's broker id (0 on a single node).
    pub fn node_id(&self) -> i32 {
        match &self.mode {
            Mode::Single => SINGLE_NODE_ID,
            Mode::Node(n) => kafka_id(n.id()),
        }
    }

    pub fn is_clustered(&self) -> bool {
        !matches!(self.mode, Mode::Single)
    }

    /// Tells the cluster where clients reach this broker once its listeners are bound (the
    /// advertised addresses, else the bound ones). Called by the servers; each passes its own
    /// and `None` for the other. An address given by a flag (`--advertised-addr`) wins.
    pub fn set_advertised(&self, native: Option<String>, kafka: Option<String>) {
        let mut a = self.advertised.write().unwrap_or_else(|e| e.into_inner());
        let flags = match &self.mode {
            Mode::Node(n) => {
                (n.config().advertised_addr.is_some(), n.config().advertised_kafka_addr.is_some())
            }
            Mode::Single => (false, false),
        };
        if native.is_some() && !flags.0 {
            a.native = native;
        }
        if kafka.is_some() && !flags.1 {
            a.kafka = kafka;
        }
    }

    fn advertised(&self) -> Advertised {
        self.advertised.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every registered broker (on a single node: this one); fenced ones say so.
    pub fn brokers(&self) -> Vec<BrokerView> {
        match &self.mode {
            Mode::Single => {
                let a = self.advertised();
                vec![BrokerView {
                    id: SINGLE_NODE_ID,
                    native_addr: a.native,
                    kafka_addr: a.kafka,
                    cluster_addr: None,
                    fenced: false,
                    decommissioned: false,
                    voter: true,
                }]
            }
            Mode::Node(n) => {
                let voters = n.voters();
                n.image()
                    .brokers
                    .values()
                    .map(|b| BrokerView {
                        id: kafka_id(b.id),
                        native_addr: b.native_addr.clone(),
                        kafka_addr: b.kafka_addr.clone(),
                        cluster_addr: Some(b.cluster_addr.clone()),
                        fenced: b.fenced,
                        decommissioned: b.decommissioned,
                        voter: voters.contains(&b.id),
                    })
                    .collect()
            }
        }
    }

    /// The controller's broker id, when one is known (a single node is its own controller).
    pub fn controller(&self) -> Option<i32> {
        match &self.mode {
            Mode::Single => Some(SINGLE_NODE_ID),
            Mode::Node(n) => n.controller().map(kafka_id),
        }
    }

    /// Who leads `topic` partition `p` and at which epoch; `None` for an unknown partition.
    pub fn partition_view(&self, topic: &str, p: u32) -> Option<PartitionView> {
        match &self.mode {
            Mode::Single => {
                let count = self.broker.partition_count(topic).ok()?;
                (p < count).then(|| single_view(topic, p))
            }
            Mode::Node(n) => {
                let image = n.image();
                image.partition(topic, p).map(|rec| node_view(&image, topic, p, rec))
            }
        }
    }

    /// Every partition of `topic` (empty for an unknown topic).
    pub fn topic_view(&self, topic: &str) -> Vec<PartitionView> {
        match &self.mode {
            Mode::Single => match self.broker.partition_count(topic) {
                Ok(n) => (0..n).map(|p| single_view(topic, p)).collect(),
                Err(_) => Vec::new(),
            },
            Mode::Node(n) => {
                let image = n.image();
                match image.topics.get(topic) {
                    Some(t) => t
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(i, rec)| node_view(&image, topic, i as u32, rec))
                        .collect(),
                    None => Vec::new(),
                }
            }
        }
    }

    /// Every partition of every topic, sorted by topic and partition. On a single node a
    /// partition whose data did not open has no leader (as in [`Cluster::status`]).
    pub fn partitions(&self) -> Vec<PartitionView> {
        match &self.mode {
            Mode::Single => self
                .broker
                .describe_all()
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    let whole = t.offline.is_some();
                    t.partitions.into_iter().map(move |p| {
                        let view = single_view(&name, p.partition);
                        if whole || p.offline.is_some() {
                            PartitionView { leader: None, ..view }
                        } else {
                            view
                        }
                    })
                })
                .collect(),
            Mode::Node(n) => {
                let image = n.image();
                image
                    .topics
                    .iter()
                    .flat_map(|(name, t)| {
                        let image = &image;
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(move |(i, rec)| node_view(image, name, i as u32, rec))
                    })
                    .collect()
            }
        }
    }

    /// The names of every topic the cluster holds, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        match &self.mode {
            Mode::Single => self.broker.list_topics().into_iter().map(|t| t.name).collect(),
            Mode::Node(n) => n.image().topics.keys().cloned().collect(),
        }
    }

    /// Appends one batch to a partition this broker leads and answers once `acks` are met.
    /// `partition: None` routes like [`Broker::append`] (murmur2 of the key, else round-robin).
    ///
    /// In a cluster: refused (before anything is written) unless this broker leads the
    /// partition at the metadata's current epoch; `acks=all` is refused with NotEnoughReplicas
    /// when the ISR is smaller than `min.insync.replicas`, and answered once the high watermark
    /// (the minimum durable end over the ISR) passed the batch.
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        key_hint: Option<&[u8]>,
        batch: AppendBatch<'_>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<AppendResult, ClusterError> {
        let (result, acked) = self.append(topic, partition, key_hint, batch, acks, timeout).await?;
        if let Some(acked) = acked {
            acked.await?;
        }
        Ok(result)
    }

    /// [`Cluster::produce`] in two steps: the leader's append now, and what is left to wait
    /// for (the in-sync replicas, with `acks=all` in a cluster) as a future of its own, so that
    /// a connection can append its next request while earlier ones replicate, answering them
    /// in order.
    pub async fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        key_hint: Option<&[u8]>,
        batch: AppendBatch<'_>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<(AppendResult, Option<AckWait>), ClusterError> {
        let n = match &self.mode {
            // A cluster of one: the local append, durable per the fsync policy, is every
            // replica's, so every `acks` value is met when it returns.
            Mode::Single => {
                return Ok((self.broker.append(topic, partition, key_hint, batch).await?, None));
            }
            Mode::Node(n) => n,
        };
        let image = n.image();
        let Some(t) = image.topics.get(topic) else {
            crate::broker::validate_topic_name(topic)?;
            return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
        };
        let count = t.partitions.len() as u32;
        let p = match partition {
            Some(p) => p,
            None => self.pick_partition(n.id(), &t.partitions, key_hint),
        };
        let rec = t.partitions.get(p as usize).ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic.to_owned(),
            partition: p,
            partitions: count,
        })?;
        self.check_leader(n, topic, p, rec)?;
        let min_isr = min_insync(t, rec);
        if acks == Acks::All && rec.isr.len() < min_isr {
            return Err(ClusterError::NotEnoughReplicas {
                topic: topic.to_owned(),
                partition: p,
                isr: rec.isr.len(),
                min: min_isr,
            });
        }
        let result = self.broker.append(topic, Some(p), key_hint, batch).await?;
        if acks != Acks::All {
            return Ok((result, None));
        }
        let (replicas, topic, end) = (n.replicas.clone(), topic.to_owned(), result.offsets.next);
        let acked: AckWait = Box::pin(async move {
            replicas
                .wait_for_acks(&topic, p, end, min_isr, timeout)
                .await
                .map_err(|e| replication_error(&topic, p, timeout, e))
        });
        Ok((result, Some(acked)))
    }

    /// A partition for a record without one: murmur2 of the key over every partition (so a key
    /// always lands in the same one), else round-robin over those this broker leads.
    fn pick_partition(&self, me: NodeId, parts: &[PartitionRecord], key: Option<&[u8]>) -> u32 {
        if let Some(k) = key {
            let h = (crate::broker::partitioner::murmur2(k) & 0x7fff_ffff) as u32;
            return h % parts.len().max(1) as u32;
        }
        let led: Vec<u32> =
            (0..parts.len() as u32).filter(|&i| parts[i as usize].leader == Some(me)).collect();
        if led.is_empty() {
            return 0;
        }
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        led[NEXT.fetch_add(1, Ordering::Relaxed) % led.len()]
    }

    /// This broker leads the partition as the metadata says, and its replica has taken that
    /// role (reconciliation may lag the image by a moment: retriable).
    fn check_leader(
        &self,
        n: &Node,
        topic: &str,
        p: u32,
        rec: &PartitionRecord,
    ) -> Result<(), ClusterError> {
        match rec.leader {
            None => {
                return Err(ClusterError::LeaderNotAvailable {
                    topic: topic.to_owned(),
                    partition: p,
                });
            }
            Some(l) if l != n.id() => {
                return Err(ClusterError::NotLeader {
                    topic: topic.to_owned(),
                    partition: p,
                    leader: Some(kafka_id(l)),
                });
            }
            Some(_) => {}
        }
        match n.replicas.leader_state(topic, p) {
            Some(s) if s.leader_epoch == rec.leader_epoch => Ok(()),
            _ => Err(ClusterError::LeaderNotAvailable { topic: topic.to_owned(), partition: p }),
        }
    }

    /// Reads committed records (below the high watermark) from a partition this broker leads.
    /// `current_leader_epoch` (Kafka Fetch v9+) is checked against the partition's epoch.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
        current_leader_epoch: Option<i32>,
    ) -> Result<FetchResult, ClusterError> {
        let n = match &self.mode {
            Mode::Single => {
                check_epoch(topic, partition, current_leader_epoch, 0)?;
                return Ok(self
                    .broker
                    .fetch(topic, partition, offset, max_bytes, min_bytes, max_wait)
                    .await?);
            }
            Mode::Node(n) => n,
        };
        let rec = self.partition_record(n, topic, partition)?;
        check_epoch(topic, partition, current_leader_epoch, rec.leader_epoch)?;
        self.check_leader(n, topic, partition, &rec)?;
        let log = self.broker.partition_log(topic, partition)?;
        let appended = self.broker.partition_appended(topic, partition)?;
        let deadline = tokio::time::Instant::now() + max_wait;
        // The watermark moves when followers fetch, not only on appends here: a long poll wakes
        // on either.
        let mut watermark = n.replicas.watch_high_watermark(topic, partition).ok_or_else(|| {
            ClusterError::LeaderNotAvailable { topic: topic.to_owned(), partition }
        })?;
        loop {
            let notified = appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (hw, leading) = watermark.current();
            let records = log.read_bounded(offset, max_bytes, hw).map_err(|source| {
                BrokerError::Storage { topic: topic.to_owned(), partition, source }
            })?;
            let now = tokio::time::Instant::now();
            // Leadership ending answers at once; the next fetch learns where it went.
            if min_bytes == 0 || records.len() >= min_bytes || now >= deadline || !leading {
                return Ok(FetchResult {
                    partition,
                    records,
                    log_start_offset: log.log_start_offset(),
                    high_watermark: hw,
                });
            }
            tokio::select! {
                _ = notified => {}
                _ = watermark.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn partition_record(
        &self,
        n: &Node,
        topic: &str,
        p: u32,
    ) -> Result<PartitionRecord, ClusterError> {
        let image = n.image();
        let Some(t) = image.topics.get(topic) else {
            crate::broker::validate_topic_name(topic)?;
            return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
        };
        t.partitions.get(p as usize).cloned().ok_or_else(|| {
            BrokerError::UnknownPartition {
                topic: topic.to_owned(),
                partition: p,
                partitions: t.partitions.len() as u32,
            }
            .into()
        })
    }

    /// The end of what consumers may read (Kafka's high watermark), asked of the leader.
    pub fn high_watermark(&self, topic: &str, p: u32) -> Result<u64, ClusterError> {
        match &self.mode {
            Mode::Single => {
                let d = self.broker.describe_topic(topic)?;
                let partitions = d.partitions.len() as u32;
                let part =
                    d.partitions.into_iter().find(|x| x.partition == p).ok_or_else(|| {
                        BrokerError::UnknownPartition {
                            topic: topic.to_owned(),
                            partition: p,
                            partitions,
                        }
                    })?;
                if let Some(reason) = part.offline {
                    return Err(BrokerError::PartitionOffline {
                        topic: topic.to_owned(),
                        partition: p,
                        reason,
                    }
                    .into());
                }
                Ok(part.next_offset)
            }
            Mode::Node(n) => {
                let rec = self.partition_record(n, topic, p)?;
                self.check_leader(n, topic, p, &rec)?;
                n.replicas.high_watermark(topic, p).ok_or_else(|| {
                    ClusterError::LeaderNotAvailable { topic: topic.to_owned(), partition: p }
                })
            }
        }
    }

    /// A producer id never handed out before (in the whole cluster).
    pub async fn next_producer_id(&self) -> Result<i64, ClusterError> {
        match &self.mode {
            Mode::Single => {
                let broker = self.broker.clone();
                blocking(move || broker.next_producer_id()).await
            }
            Mode::Node(n) => n.next_producer_id().await,
        }
    }

    /// The group coordinator for `group`: a live broker chosen by a hash of the name, so every
    /// broker names the same one.
    pub fn coordinator_for(&self, group: &str) -> i32 {
        let live: Vec<i32> =
            self.brokers().into_iter().filter(|b| !b.fenced).map(|b| b.id).collect();
        pick_by_hash(group, &live).unwrap_or_else(|| self.node_id())
    }

    /// The brokers, the controller and the partitions that are under-replicated or offline.
    pub fn status(&self) -> ClusterStatus {
        match &self.mode {
            // One replica per partition: nothing is ever under-replicated, and a partition
            // whose log did not open is offline.
            Mode::Single => {
                let offline =
                    self.partitions().into_iter().filter(PartitionView::offline).collect();
                ClusterStatus {
                    node_id: SINGLE_NODE_ID,
                    clustered: false,
                    controller: Some(SINGLE_NODE_ID),
                    brokers: self.brokers(),
                    under_replicated: Vec::new(),
                    offline,
                }
            }
            Mode::Node(n) => {
                let image = n.image();
                let views = |list: Vec<(String, u32)>| -> Vec<PartitionView> {
                    list.into_iter()
                        .filter_map(|(t, p)| {
                            image.partition(&t, p).map(|rec| node_view(&image, &t, p, rec))
                        })
                        .collect()
                };
                ClusterStatus {
                    node_id: kafka_id(n.id()),
                    clustered: true,
                    controller: n.controller().map(kafka_id),
                    brokers: self.brokers(),
                    under_replicated: views(image.under_replicated()),
                    offline: views(image.offline()),
                }
            }
        }
    }

    /// What the metrics report of this broker's part in the cluster (see [`ClusterHealth`]).
    pub fn health(&self) -> ClusterHealth {
        match &self.mode {
            Mode::Single => ClusterHealth { controller: true, ..ClusterHealth::default() },
            Mode::Node(n) => {
                let image = n.image();
                let me = n.id();
                let controller = n.is_controller();
                let under_replicated_led = image
                    .topics
                    .values()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.leader == Some(me) && p.isr.len() < p.replication_factor())
                    .count() as u64;
                ClusterHealth {
                    clustered: true,
                    controller,
                    commit_index: n.commit_index(),
                    under_replicated_led,
                    offline: controller.then(|| image.offline().len() as u64),
                    replication: n.replicas.stats(),
                }
            }
        }
    }

    /// The newest metadata entry this broker knows to be committed (0 on a single node).
    pub fn metadata_commit_index(&self) -> u64 {
        match &self.mode {
            Mode::Single => 0,
            Mode::Node(n) => n.commit_index(),
        }
    }

    /// Leaves the cluster in order: in a cluster, leadership moves away first, so clients see
    /// only retriable errors. On a single node there is nothing to hand over; the broker itself
    /// is shut down by its owner.
    pub async fn shutdown(&self) {
        match &self.mode {
            Mode::Single => {}
            Mode::Node(n) => n.shutdown().await,
        }
    }
}

/// An appended batch's wait for its replicas (see [`Cluster::append`]).
pub type AckWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ClusterError>> + Send>>;

/// How long a topic change (creation, deletion, configs, partitions) waits for this broker's
/// disk to follow the metadata.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(10);

/// A node id as Kafka's i32 broker id. Ids are checked to fit when the flags are parsed.
fn kafka_id(id: NodeId) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

/// `min.insync.replicas` of a topic in a cluster: its config when set, else 2 (1 for a topic
/// with a single replica), as the issue asks (Kafka's own default is 1).
fn min_insync(t: &metadata::TopicRecord, rec: &PartitionRecord) -> usize {
    t.configs
        .get(crate::broker::topic_config::MIN_INSYNC_REPLICAS)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| rec.replication_factor().min(2))
        .max(1)
}

fn node_view(image: &MetadataImage, topic: &str, p: u32, rec: &PartitionRecord) -> PartitionView {
    PartitionView {
        topic: topic.to_owned(),
        partition: p,
        leader: rec.leader.map(kafka_id),
        leader_epoch: rec.leader_epoch,
        replicas: rec.replicas.iter().map(|&r| kafka_id(r)).collect(),
        isr: rec.isr.iter().map(|&r| kafka_id(r)).collect(),
        offline_replicas: rec
            .replicas
            .iter()
            .filter(|r| !image.is_live(**r))
            .map(|&r| kafka_id(r))
            .collect(),
    }
}

fn replication_error(
    topic: &str,
    partition: u32,
    timeout: Duration,
    e: crate::replication::ReplicationError,
) -> ClusterError {
    use crate::replication::ReplicationError as R;
    match e {
        R::NotLeader { .. } | R::StaleEpoch { .. } => {
            ClusterError::NotLeader { topic: topic.to_owned(), partition, leader: None }
        }
        R::NotEnoughReplicasAfterAppend { .. } => {
            ClusterError::NotEnoughReplicasAfterAppend { topic: topic.to_owned(), partition }
        }
        R::Timeout { .. } => ClusterError::Timeout { topic: topic.to_owned(), partition, timeout },
        other => ClusterError::Internal(other.to_string()),
    }
}

/// A single node's view of one of its partitions: led here at epoch 0, the only replica.
fn single_view(topic: &str, partition: u32) -> PartitionView {
    PartitionView {
        topic: topic.to_owned(),
        partition,
        leader: Some(SINGLE_NODE_ID),
        leader_epoch: 0,
        replicas: vec![SINGLE_NODE_ID],
        isr: vec![SINGLE_NODE_ID],
        offline_replicas: Vec::new(),
    }
}

/// KIP-320: a client's epoch older than the leader's is fenced, a newer one is unknown here (this
/// broker has not applied that metadata yet). Both are retriable for the client.
fn check_epoch(
    topic: &str,
    partition: u32,
    requested: Option<i32>,
    current: i32,
) -> Result<(), ClusterError> {
    match requested {
        // -1 is Kafka's "no epoch".
        None | Some(-1) => Ok(()),
        Some(r) if r < current => Err(ClusterError::FencedLeaderEpoch {
            topic: topic.to_owned(),
            partition,
            requested: r,
            current,
        }),
        Some(r) if r > current => Err(ClusterError::UnknownLeaderEpoch {
            topic: topic.to_owned(),
            partition,
            requested: r,
            current,
        }),
        Some(_) => Ok(()),
    }
}

/// A stable choice among `ids` by a hash of `key` (murmur2, as Kafka's partitioner), the same on
/// every broker that sees the same ids.
fn pick_by_hash(key: &str, ids: &[i32]) -> Option<i32> {
    if ids.is_empty() {
        return None;
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let h = crate::broker::partitioner::murmur2(key.as_bytes()) & 0x7fff_ffff;
    Some(sorted[h as usize % sorted.len()])
}

/// Runs synchronous broker file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClusterError::Internal(format!("a blocking task failed: {e}")))?
        .map_err(ClusterError::from)
}
