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

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::topic_config::TopicConfigs;
use crate::broker::{
    AppendBatch, AppendResult, Broker, BrokerError, FetchResult, TopicDescription,
};

pub mod config;
pub mod heartbeat;
pub mod metadata;
pub mod reconcile;
#[cfg(test)]
mod single_tests;

pub use self::config::ClusterConfig;

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
    #[error("the cluster is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
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

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// This broker's id: Kafka's broker id (0 on a single node).
    pub fn node_id(&self) -> i32 {
        match &self.mode {
            Mode::Single => SINGLE_NODE_ID,
        }
    }

    pub fn is_clustered(&self) -> bool {
        !matches!(self.mode, Mode::Single)
    }

    /// Tells the cluster where clients reach this broker once its listeners are bound (the
    /// advertised addresses, else the bound ones). Called by the servers; each passes its own
    /// and `None` for the other.
    pub fn set_advertised(&self, native: Option<String>, kafka: Option<String>) {
        let mut a = self.advertised.write().unwrap_or_else(|e| e.into_inner());
        if native.is_some() {
            a.native = native;
        }
        if kafka.is_some() {
            a.kafka = kafka;
        }
    }

    fn advertised(&self) -> Advertised {
        self.advertised.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The live brokers (on a single node: this one).
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
                }]
            }
        }
    }

    /// The controller's broker id, when one is known (a single node is its own controller).
    pub fn controller(&self) -> Option<i32> {
        match &self.mode {
            Mode::Single => Some(SINGLE_NODE_ID),
        }
    }

    /// Who leads `topic` partition `p` and at which epoch; `None` for an unknown partition.
    pub fn partition_view(&self, topic: &str, p: u32) -> Option<PartitionView> {
        match &self.mode {
            Mode::Single => {
                let count = self.broker.partition_count(topic).ok()?;
                (p < count).then(|| single_view(topic, p))
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
        }
    }

    /// Appends one batch to a partition this broker leads and answers once `acks` are met.
    /// `partition: None` routes like [`Broker::append`] (murmur2 of the key, else round-robin).
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        key_hint: Option<&[u8]>,
        batch: AppendBatch<'_>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<AppendResult, ClusterError> {
        let _ = (acks, timeout);
        match &self.mode {
            // A cluster of one: the local append, durable per the fsync policy, is every
            // replica's, so every `acks` value is met when it returns.
            Mode::Single => Ok(self.broker.append(topic, partition, key_hint, batch).await?),
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
        match &self.mode {
            Mode::Single => {
                check_epoch(topic, partition, current_leader_epoch, 0)?;
                Ok(self
                    .broker
                    .fetch(topic, partition, offset, max_bytes, min_bytes, max_wait)
                    .await?)
            }
        }
    }

    /// The end of what consumers may read (Kafka's high watermark).
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
        }
    }

    /// Creates a topic. `replication_factor: None` is the cluster's default (1 on a single
    /// node); more than the live brokers is refused.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, ClusterError> {
        match &self.mode {
            Mode::Single => {
                if let Some(rf) = replication_factor
                    && rf != 1
                {
                    return Err(ClusterError::InvalidReplicationFactor {
                        requested: rf.into(),
                        brokers: 1,
                    });
                }
                let broker = self.broker.clone();
                let name = name.to_owned();
                blocking(move || broker.create_topic(&name, partitions, configs, validate_only))
                    .await
            }
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        match &self.mode {
            Mode::Single => {
                let broker = self.broker.clone();
                let name = name.to_owned();
                blocking(move || broker.delete_topic(&name)).await
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
                let offline = self
                    .broker
                    .describe_all()
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name;
                        let whole = t.offline.is_some();
                        t.partitions.into_iter().filter(move |p| whole || p.offline.is_some()).map(
                            move |p| PartitionView {
                                leader: None,
                                ..single_view(&name, p.partition)
                            },
                        )
                    })
                    .collect();
                ClusterStatus {
                    node_id: SINGLE_NODE_ID,
                    clustered: false,
                    controller: Some(SINGLE_NODE_ID),
                    brokers: self.brokers(),
                    under_replicated: Vec::new(),
                    offline,
                }
            }
        }
    }

    /// Leaves the cluster in order: in a cluster, leadership moves away first, so clients see
    /// only retriable errors. On a single node there is nothing to hand over; the broker itself
    /// is shut down by its owner.
    pub async fn shutdown(&self) {
        match &self.mode {
            Mode::Single => {}
        }
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

/// Topic configs as the metadata keeps them (name -> value).
pub fn configs_map(configs: &TopicConfigs) -> BTreeMap<String, String> {
    configs.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}
