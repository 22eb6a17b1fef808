//! Topic administration in a cluster: creating and deleting topics, changing their configs,
//! adding partitions and electing preferred leaders. Each change is checked here, committed to
//! the metadata, and answered once this broker's own copy has it; the others follow by
//! reconciliation. On a single node the broker does it all. Never touches logs itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::metadata::{self, ApplyResult, MetadataCommand, MetadataImage, NodeId};
use super::node::Node;
use super::{
    Cluster, ClusterError, LOCAL_APPLY_WAIT, LeaderElection, Mode, SINGLE_NODE_ID, blocking,
};
use crate::broker::topic_config::{ConfigOp, TopicConfigs};
use crate::broker::{Broker, BrokerError, TopicDescription};

impl Cluster {
    /// Creates a topic. `replication_factor: None` is the cluster's default (1 on a single
    /// node); more than the live brokers is refused. In a cluster the topic is committed to the
    /// metadata, and this returns once this broker has it on disk.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, ClusterError> {
        let n = match &self.mode {
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
                return blocking(move || {
                    broker.create_topic(&name, partitions, configs, validate_only)
                })
                .await;
            }
            Mode::Node(n) => n,
        };
        crate::broker::validate_topic_name(name)?;
        if partitions == 0 {
            return Err(BrokerError::NoPartitions.into());
        }
        let max = self.broker.config().max_partitions;
        if partitions > max {
            return Err(BrokerError::TooManyPartitions { requested: partitions, max }.into());
        }
        let rf = replication_factor.unwrap_or(n.config().default_replication_factor);
        let image = self.enough_brokers(n, rf).await;
        if image.topics.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists { name: name.to_owned() }.into());
        }
        let live = image.placeable_brokers().count();
        if rf == 0 || usize::from(rf) > live {
            return Err(ClusterError::InvalidReplicationFactor {
                requested: rf.into(),
                brokers: live,
            });
        }
        // Spread the first replicas of successive topics over the brokers.
        let start = image.topics.len();
        let replicas = metadata::assign_replicas(&image, partitions, rf, start).map_err(|_| {
            ClusterError::InvalidReplicationFactor { requested: rf.into(), brokers: live }
        })?;
        if validate_only {
            return Ok(TopicDescription::planned(name, partitions, &configs));
        }
        let configs = configs_map(&configs);
        let id = crate::broker::new_topic_id();
        let cmd = MetadataCommand::CreateTopic { name: name.to_owned(), id, replicas, configs };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) if reason.contains("already exists") => {
                return Err(BrokerError::TopicAlreadyExists { name: name.to_owned() }.into());
            }
            ApplyResult::Rejected(reason) => return Err(ClusterError::Raft(reason)),
            _ => {}
        }
        self.wait_local(n, name, |b, name| b.topic_id(name).is_ok_and(|t| t == id)).await?;
        Ok(self.broker.describe_topic(name)?)
    }

    /// The metadata once `rf` brokers are live, or as it is when that cannot be soon: brokers
    /// that are known (registered, or named controllers) but not live yet — a cluster that is
    /// starting — get a bounded wait, so a topic created right after start-up is not refused.
    async fn enough_brokers(&self, n: &Node, rf: u16) -> Arc<MetadataImage> {
        let rf = usize::from(rf);
        let mut images = n.subscribe();
        let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
        loop {
            let image = images.borrow_and_update().clone();
            let known = image.brokers.len().max(n.config().controllers.len());
            if image.placeable_brokers().count() >= rf
                || rf > known
                || tokio::time::Instant::now() >= deadline
            {
                return image;
            }
            let _ = tokio::time::timeout_at(deadline, images.changed()).await;
        }
    }

    /// Waits (bounded) until reconciliation brought this broker's disk to `done`.
    async fn wait_local(
        &self,
        n: &Node,
        name: &str,
        done: impl Fn(&Broker, &str) -> bool,
    ) -> Result<(), ClusterError> {
        let mut images = n.subscribe();
        let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
        while !done(&self.broker, name) {
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Internal(format!(
                    "a change to topic {name:?} was committed but this broker has not applied \
                     it after {LOCAL_APPLY_WAIT:?}"
                )));
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), images.changed()).await;
        }
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        match &self.mode {
            Mode::Single => {
                let broker = self.broker.clone();
                let name = name.to_owned();
                blocking(move || broker.delete_topic(&name)).await
            }
            Mode::Node(n) => {
                crate::broker::validate_topic_name(name)?;
                if !n.image().topics.contains_key(name) {
                    return Err(BrokerError::UnknownTopic { name: name.to_owned() }.into());
                }
                match n.propose(MetadataCommand::DeleteTopic { name: name.to_owned() }).await? {
                    ApplyResult::Rejected(reason) if reason.starts_with("unknown topic") => {
                        return Err(BrokerError::UnknownTopic { name: name.to_owned() }.into());
                    }
                    ApplyResult::Rejected(reason) => return Err(ClusterError::Raft(reason)),
                    _ => {}
                }
                self.wait_local(n, name, |b, name| b.topic_id(name).is_err()).await
            }
        }
    }

    /// Preferred leader election (Kafka's `kafka-leader-election.sh --election-type preferred`)
    /// for every partition of `topic`, or of every topic: each partition not led by its first
    /// replica moves to it when that replica is live and in sync. Returns those partitions,
    /// each with its leader afterwards. A single node leads everything itself: nothing to move.
    pub async fn elect_preferred_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<LeaderElection>, ClusterError> {
        let n = match &self.mode {
            Mode::Single => {
                if let Some(t) = topic {
                    self.broker.partition_count(t)?;
                }
                return Ok(Vec::new());
            }
            Mode::Node(n) => n,
        };
        let image = n.image();
        if let Some(t) = topic
            && !image.topics.contains_key(t)
        {
            return Err(BrokerError::UnknownTopic { name: t.to_owned() }.into());
        }
        let mut misplaced = Vec::new();
        for (name, t) in &image.topics {
            if topic.is_some_and(|want| want != name) {
                continue;
            }
            for (i, p) in t.partitions.iter().enumerate() {
                if let Some(&preferred) = p.replicas.first()
                    && p.leader != Some(preferred)
                {
                    misplaced.push((name.clone(), i as u32, preferred));
                }
            }
        }
        let electable: Vec<(String, u32)> = misplaced
            .iter()
            .filter(|(t, p, _)| image.preferred_electable(t, *p))
            .map(|(t, p, _)| (t.clone(), *p))
            .collect();
        if !electable.is_empty() {
            let cmd = MetadataCommand::ElectPreferredLeaders { partitions: electable.clone() };
            if let ApplyResult::Rejected(reason) = n.propose(cmd).await? {
                // The image moved meanwhile (a broker fenced): the results below say what holds.
                tracing::debug!(%reason, "preferred leader election refused");
            }
            // Answer from this broker's own image once it has the outcome.
            let mut images = n.subscribe();
            let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
            while electable.iter().any(|(t, p)| images.borrow().preferred_electable(t, *p))
                && tokio::time::Instant::now() < deadline
            {
                let _ = tokio::time::timeout_at(deadline, images.changed()).await;
            }
        }
        let after = n.image();
        Ok(misplaced
            .into_iter()
            .map(|(topic, partition, preferred)| {
                let leader = after.partition(&topic, partition).and_then(|p| p.leader);
                LeaderElection {
                    leader: leader.map(|l| l as i32),
                    elected: leader == Some(preferred),
                    preferred: preferred as i32,
                    topic,
                    partition,
                }
            })
            .collect())
    }

    /// Changes `topic`'s configs: incremental `ops` (Kafka's IncrementalAlterConfigs), or with
    /// `replace_all` the `Set`s become the whole set (Kafka's AlterConfigs). Any invalid op fails
    /// the whole call and changes nothing; `validate_only` checks and changes nothing.
    ///
    /// In a cluster the new configs are computed from the metadata's with the broker's own rules
    /// (so the same names and values are refused, with the same errors), committed to the
    /// metadata, and this returns once this broker's copy has them; the others follow.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        ops: Vec<ConfigOp>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ClusterError> {
        let n = match &self.mode {
            Mode::Single => {
                let broker = self.broker.clone();
                let topic = topic.to_owned();
                return blocking(move || {
                    broker.alter_topic_configs(&topic, &ops, replace_all, validate_only)
                })
                .await;
            }
            Mode::Node(n) => n,
        };
        crate::broker::validate_topic_name(topic)?;
        let image = n.image();
        let Some(t) = image.topics.get(topic) else {
            return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
        };
        let current = TopicConfigs::from_map(t.configs.clone()).map_err(|e| {
            ClusterError::Internal(format!("the metadata's configs of topic {topic:?}: {e}"))
        })?;
        let altered = current.altered(&ops, replace_all, &self.broker.config().log)?;
        if validate_only {
            return Ok(());
        }
        let before = t.configs.clone();
        let wanted = configs_map(&altered);
        if wanted != before {
            let cmd = MetadataCommand::AlterTopicConfigs {
                name: topic.to_owned(),
                configs: wanted.clone(),
            };
            match n.propose(cmd).await? {
                ApplyResult::Rejected(reason) if reason.starts_with("unknown topic") => {
                    return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
                }
                ApplyResult::Rejected(reason) => return Err(ClusterError::Raft(reason)),
                _ => {}
            }
        }
        // Done when this broker has ours, or a later change (another alter committed after
        // ours) that the image has too; a deleted topic has nothing left to wait for.
        self.wait_local(n, topic, |b, name| {
            let local = b.topic_configs(name).map(|c| configs_map(&c)).ok();
            match n.image().topics.get(name) {
                None => true,
                Some(t) => {
                    local.as_ref() == Some(&wanted)
                        || (t.configs != before && local.as_ref() == Some(&t.configs))
                }
            }
        })
        .await
    }

    /// Grows `topic` to `total` partitions (Kafka's CreatePartitions). `assignments`, when
    /// given, names the replicas of each new partition (one list per partition added); else
    /// they are placed like a new topic's, over the live brokers, with the topic's replication
    /// factor. A count that does not grow the topic, or above `max_partitions`, is refused.
    ///
    /// On a single node every replica must be this broker. In a cluster the new partitions are
    /// committed to the metadata (their leaders elected there), and this returns once this
    /// broker has them on disk.
    pub async fn add_partitions(
        &self,
        topic: &str,
        total: u32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ClusterError> {
        crate::broker::validate_topic_name(topic)?;
        let n = match &self.mode {
            Mode::Single => {
                let current = self.broker.partition_count(topic)?;
                not_grown(topic, current, total)?;
                if let Some(a) = &assignments {
                    check_assignment_count(topic, a, current, total)?;
                    if let Some(list) = a.iter().find(|l| **l != [SINGLE_NODE_ID]) {
                        return Err(ClusterError::InvalidReplicaAssignment {
                            topic: topic.to_owned(),
                            reason: format!(
                                "replicas {list:?}: this single broker ({SINGLE_NODE_ID}) holds \
                                 every partition"
                            ),
                        });
                    }
                }
                let broker = self.broker.clone();
                let topic = topic.to_owned();
                return blocking(move || broker.add_partitions(&topic, total, validate_only)).await;
            }
            Mode::Node(n) => n,
        };
        let Some(t) = n.image().topics.get(topic).cloned() else {
            return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
        };
        let current = t.partitions.len() as u32;
        not_grown(topic, current, total)?;
        let max = self.broker.config().max_partitions;
        if total > max {
            return Err(BrokerError::TooManyPartitions { requested: total, max }.into());
        }
        // Where the topic is going: a move of partition 0 under way does not count.
        let rf = t.partitions.first().map_or(1, |p| p.target().len());
        let replicas = match assignments {
            Some(a) => {
                check_assignment_count(topic, &a, current, total)?;
                self.check_new_replicas(&n.image(), topic, a, rf)?
            }
            None => {
                let rf = u16::try_from(rf).unwrap_or(u16::MAX);
                let image = self.enough_brokers(n, rf).await;
                let live: Vec<NodeId> = image.placeable_brokers().collect();
                // Continue the topic's round-robin: the next leader after its partitions'.
                let first = t.partitions.first().and_then(|p| p.replicas.first());
                let start = first.and_then(|f| live.iter().position(|b| b == f)).unwrap_or(0)
                    + current as usize;
                metadata::assign_replicas(&image, total - current, rf, start).map_err(|_| {
                    ClusterError::InvalidReplicationFactor {
                        requested: rf.into(),
                        brokers: live.len(),
                    }
                })?
            }
        };
        if validate_only {
            return Ok(());
        }
        let cmd = MetadataCommand::AddPartitions { name: topic.to_owned(), replicas };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) if reason.starts_with("unknown topic") => {
                return Err(BrokerError::UnknownTopic { name: topic.to_owned() }.into());
            }
            // The checks above passed on an older image: a broker fenced meanwhile.
            ApplyResult::Rejected(reason) => {
                return Err(ClusterError::InvalidReplicaAssignment {
                    topic: topic.to_owned(),
                    reason,
                });
            }
            _ => {}
        }
        let id = t.id;
        self.wait_local(n, topic, |b, name| {
            b.topic_id(name).is_ok_and(|l| l == id)
                && b.partition_count(name).is_ok_and(|c| c >= total)
        })
        .await
    }

    /// The replicas given for new partitions as node ids, each list `rf` distinct registered
    /// brokers, at least one of them live (it becomes the leader).
    fn check_new_replicas(
        &self,
        image: &MetadataImage,
        topic: &str,
        lists: Vec<Vec<i32>>,
        rf: usize,
    ) -> Result<Vec<Vec<NodeId>>, ClusterError> {
        let invalid = |reason: String| ClusterError::InvalidReplicaAssignment {
            topic: topic.to_owned(),
            reason,
        };
        lists
            .into_iter()
            .map(|list| {
                if list.len() != rf {
                    return Err(invalid(format!(
                        "replicas {list:?}: the topic's replication factor is {rf}"
                    )));
                }
                let mut ids = Vec::with_capacity(list.len());
                for &b in &list {
                    let id = NodeId::try_from(b)
                        .ok()
                        .filter(|id| image.brokers.contains_key(id))
                        .ok_or_else(|| {
                        invalid(format!("replicas {list:?}: broker {b} is not registered"))
                    })?;
                    if ids.contains(&id) {
                        return Err(invalid(format!("replicas {list:?}: broker {b} twice")));
                    }
                    ids.push(id);
                }
                if !ids.iter().any(|id| image.is_live(*id)) {
                    return Err(invalid(format!(
                        "replicas {list:?}: every one of them is fenced, none could lead"
                    )));
                }
                Ok(ids)
            })
            .collect()
    }
}

/// A topic never shrinks, and the same count is no change (the broker's own refusal).
fn not_grown(topic: &str, current: u32, total: u32) -> Result<(), ClusterError> {
    if total <= current {
        return Err(BrokerError::PartitionCountNotIncreased {
            topic: topic.to_owned(),
            current,
            requested: total,
        }
        .into());
    }
    Ok(())
}

/// One replica list per partition added, no more and no fewer.
fn check_assignment_count(
    topic: &str,
    lists: &[Vec<i32>],
    current: u32,
    total: u32,
) -> Result<(), ClusterError> {
    let added = total.saturating_sub(current) as usize;
    if lists.len() != added {
        return Err(ClusterError::InvalidReplicaAssignment {
            topic: topic.to_owned(),
            reason: format!("{} replica assignments given for {added} new partitions", lists.len()),
        });
    }
    Ok(())
}

/// Topic configs as the metadata keeps them (name -> value).
pub fn configs_map(configs: &TopicConfigs) -> BTreeMap<String, String> {
    configs.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}
