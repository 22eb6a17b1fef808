//! Administration over a [`Connection`]: topics (create, delete, trim, list, describe, configs,
//! add partitions) and consumer groups (list, committed offsets, describe, delete, reset offsets).

use super::{ClientError, Connection};
use crate::broker::topic_config::ConfigEntry;
use crate::broker::{GroupStatus, TopicDescription};
use crate::protocol::{
    BrokerInfo, ClusterInfo, ErrorCode, GroupOffset, LeaderElection, Membership, PartitionMove,
    PartitionState, Reassignment, Request, Response,
};

/// Topic administration. Cheap to create; shares the connection it is given.
#[derive(Clone)]
pub struct Admin {
    conn: Connection,
}

impl Admin {
    pub fn new(conn: Connection) -> Admin {
        Admin { conn }
    }

    /// Creates a topic. With `if_not_exists`, an existing topic is not an error and is described
    /// as it is (its partition count unchanged).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        if_not_exists: bool,
    ) -> Result<TopicDescription, ClientError> {
        self.create_topic_with_configs(name, partitions, if_not_exists, &[]).await
    }

    /// Creates a topic with Kafka topic configs (`retention.ms`, `cleanup.policy`...). An unknown
    /// name or an invalid value is refused (`ErrorCode::InvalidConfig`, the message says which
    /// and why) and nothing is created.
    pub async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: u32,
        if_not_exists: bool,
        configs: &[(String, String)],
    ) -> Result<TopicDescription, ClientError> {
        let req = Request::CreateTopic {
            name: name.to_string(),
            partitions,
            if_not_exists,
            configs: configs.to_vec(),
        };
        match self.conn.request(&req).await? {
            Response::TopicCreated { description } => Ok(description),
            other => Err(unexpected("CreateTopic", &other)),
        }
    }

    /// Creates a topic with `replication_factor` copies of each partition (`None`: the broker's
    /// default). A factor larger than the live brokers is refused
    /// (`ErrorCode::InvalidReplicationFactor`); a broker from before clusters refuses any
    /// factor (it does not know the request).
    pub async fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        if_not_exists: bool,
        configs: &[(String, String)],
    ) -> Result<TopicDescription, ClientError> {
        let Some(replication_factor) = replication_factor else {
            return self.create_topic_with_configs(name, partitions, if_not_exists, configs).await;
        };
        let req = Request::CreateReplicatedTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            if_not_exists,
            configs: configs.to_vec(),
        };
        match self.conn.request(&req).await? {
            Response::TopicCreated { description } => Ok(description),
            other => Err(unexpected("CreateReplicatedTopic", &other)),
        }
    }

    /// The cluster as the broker sees it: brokers, controller, under-replicated and offline
    /// partitions.
    pub async fn cluster_status(&self) -> Result<ClusterInfo, ClientError> {
        match self.conn.request(&Request::ClusterStatus).await? {
            Response::ClusterStatus { status } => Ok(status),
            other => Err(unexpected("ClusterStatus", &other)),
        }
    }

    /// Preferred leader election for `topic` (or every topic): the partitions that were not
    /// led by their first replica, each with its leader afterwards.
    pub async fn elect_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<LeaderElection>, ClientError> {
        let req = Request::ElectLeaders { topic: topic.map(str::to_string) };
        match self.conn.request(&req).await? {
            Response::LeadersElected { elections } => Ok(elections),
            other => Err(unexpected("ElectLeaders", &other)),
        }
    }

    /// Starts the partition moves (an empty target cancels that partition's move under way);
    /// Ok once every one is committed. They are committed one by one: on an error, the moves
    /// before the one it names are under way.
    pub async fn reassign(&self, moves: Vec<PartitionMove>) -> Result<(), ClientError> {
        self.reassign_throttled(moves, None).await
    }

    /// [`Admin::reassign`] under a replication throttle: the brokers' replicas being added fetch
    /// at most `throttle_bytes_per_s` bytes per second per broker until the last move under way
    /// ends (then the throttle is lifted by itself). Without moves, it changes the throttle of
    /// the moves under way (refused when there are none). Brokers from before the throttle
    /// refuse it.
    pub async fn reassign_throttled(
        &self,
        moves: Vec<PartitionMove>,
        throttle_bytes_per_s: Option<u64>,
    ) -> Result<(), ClientError> {
        let req = Request::ReassignPartitions { moves, throttle_bytes_per_s };
        match self.conn.request(&req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("ReassignPartitions", &other)),
        }
    }

    /// Marks `broker` decommissioned (it takes no new replica and is fenced once it holds
    /// none), or with `cancel` takes that back. Moving its replicas away is separate
    /// ([`Admin::reassign`]).
    pub async fn decommission(&self, broker: i32, cancel: bool) -> Result<(), ClientError> {
        match self.conn.request(&Request::DecommissionBroker { broker, cancel }).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("DecommissionBroker", &other)),
        }
    }

    /// Makes `broker` a metadata voter (`add`) or a learner again; refused when the change
    /// would lose the controllers' quorum.
    pub async fn change_voter(&self, broker: i32, add: bool) -> Result<(), ClientError> {
        match self.conn.request(&Request::ChangeVoter { broker, add }).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("ChangeVoter", &other)),
        }
    }

    /// The metadata voters and the decommissioned brokers. A broker older than the request
    /// knows neither: none.
    pub async fn membership(&self) -> Result<Membership, ClientError> {
        match self.conn.request(&Request::DescribeMembership).await {
            Ok(Response::Membership { membership }) => Ok(membership),
            Err(ClientError::Broker { code: ErrorCode::InvalidRequest, .. }) => {
                Ok(Membership::default())
            }
            Ok(other) => Err(unexpected("DescribeMembership", &other)),
            Err(e) => Err(e),
        }
    }

    /// The partition moves under way, with copy progress for those the answering broker leads.
    pub async fn reassignments(&self) -> Result<Vec<Reassignment>, ClientError> {
        Ok(self.reassignments_and_throttle().await?.0)
    }

    /// The partition moves under way and the reassignment throttle in force (bytes/s). The
    /// copy progress comes in bytes too, except from a broker of an earlier release (which
    /// counts records only).
    pub async fn reassignments_and_throttle(
        &self,
    ) -> Result<(Vec<Reassignment>, Option<u64>), ClientError> {
        let answer = match self.conn.request(&Request::ListReassignments { with_bytes: true }).await
        {
            // A broker that does not know the key: ask as its release does.
            Err(ClientError::Broker { code: ErrorCode::InvalidRequest, .. }) => {
                self.conn.request(&Request::ListReassignments { with_bytes: false }).await
            }
            answer => answer,
        };
        match answer? {
            Response::Reassignments { reassignments, throttle_bytes_per_s, .. } => {
                Ok((reassignments, throttle_bytes_per_s))
            }
            other => Err(unexpected("ListReassignments", &other)),
        }
    }

    /// The brokers and each partition's leader, replicas and in-sync replicas, for one topic
    /// (`Some`) or all of them.
    pub async fn describe_partitions(
        &self,
        topic: Option<&str>,
    ) -> Result<(Vec<BrokerInfo>, Vec<PartitionState>), ClientError> {
        let req = Request::DescribePartitions { topic: topic.map(str::to_string) };
        match self.conn.request(&req).await? {
            Response::Partitions { brokers, partitions } => Ok((brokers, partitions)),
            other => Err(unexpected("DescribePartitions", &other)),
        }
    }

    /// Sets configs and deletes others (back to their defaults), all or nothing: when one is
    /// invalid the broker changes none.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), ClientError> {
        let req = Request::AlterTopicConfigs {
            topic: topic.to_string(),
            set: set.to_vec(),
            delete: delete.to_vec(),
        };
        match self.conn.request(&req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("AlterTopicConfigs", &other)),
        }
    }

    /// Every config the topic has (set on it or not), with each value's source.
    pub async fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let req = Request::DescribeTopicConfigs { topic: topic.to_string() };
        match self.conn.request(&req).await? {
            Response::TopicConfigs { entries } => Ok(entries),
            other => Err(unexpected("DescribeTopicConfigs", &other)),
        }
    }

    /// Grows a topic to `total` partitions (the new count, larger than the current one);
    /// returns the topic as it is now.
    pub async fn add_partitions(
        &self,
        topic: &str,
        total: u32,
    ) -> Result<TopicDescription, ClientError> {
        let req = Request::AddPartitions { topic: topic.to_string(), total };
        match self.conn.request(&req).await? {
            Response::PartitionsAdded { description } => Ok(description),
            other => Err(unexpected("AddPartitions", &other)),
        }
    }

    /// Deletes a topic and all its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        match self.conn.request(&Request::DeleteTopic { name: name.to_string() }).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("DeleteTopic", &other)),
        }
    }

    /// Deletes the records of one partition below `before`; returns the new log start offset.
    pub async fn trim(&self, topic: &str, partition: u32, before: u64) -> Result<u64, ClientError> {
        let req = Request::Trim { topic: topic.to_string(), partition, before };
        match self.conn.request(&req).await? {
            Response::Trimmed { log_start_offset } => Ok(log_start_offset),
            other => Err(unexpected("Trim", &other)),
        }
    }

    /// The names of every topic, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        match self.conn.request(&Request::ListTopics).await? {
            Response::Topics { names } => Ok(names),
            other => Err(unexpected("ListTopics", &other)),
        }
    }

    /// The names of every consumer group (with committed offsets or live members), sorted.
    pub async fn list_groups(&self) -> Result<Vec<String>, ClientError> {
        match self.conn.request(&Request::ListGroups).await? {
            Response::Groups { names } => Ok(names),
            other => Err(unexpected("ListGroups", &other)),
        }
    }

    /// Every committed offset of one group, sorted by topic and partition (empty for a group
    /// that never committed).
    pub async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, ClientError> {
        match self.conn.request(&Request::GroupOffsets { group: group.to_string() }).await? {
            Response::GroupOffsets { offsets } => Ok(offsets),
            other => Err(unexpected("GroupOffsets", &other)),
        }
    }

    /// A group's state (as Kafka names it; `Dead` for an unknown group) and live members.
    pub async fn describe_group(&self, group: &str) -> Result<GroupStatus, ClientError> {
        match self.conn.request(&Request::DescribeGroup { group: group.to_string() }).await? {
            Response::GroupDescribed { status } => Ok(status),
            other => Err(unexpected("DescribeGroup", &other)),
        }
    }

    /// Deletes a group's committed offsets. Fails with `GroupNotEmpty` while it has live
    /// members, `UnknownGroup` when there is no such group.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        match self.conn.request(&Request::DeleteGroup { group: group.to_string() }).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("DeleteGroup", &other)),
        }
    }

    /// Sets a group's committed offsets, all or none. Fails with `GroupNotEmpty` (the message
    /// names the members) while the group has live members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Result<(), ClientError> {
        let req = Request::ResetOffsets { group: group.to_string(), offsets };
        match self.conn.request(&req).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected("ResetOffsets", &other)),
        }
    }

    /// The offset of the first record of a partition stamped at or after `timestamp_ms`, `None`
    /// when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: u64,
    ) -> Result<Option<u64>, ClientError> {
        let req = Request::OffsetForTimestamp { topic: topic.to_string(), partition, timestamp_ms };
        match self.conn.request(&req).await? {
            Response::Offset { offset } => Ok(offset),
            other => Err(unexpected("OffsetForTimestamp", &other)),
        }
    }

    /// Describes one topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        let mut topics = self.describe(Some(name)).await?;
        match topics.len() {
            1 => Ok(topics.remove(0)),
            n => Err(ClientError::UnexpectedResponse {
                request: "Describe",
                got: format!("{n} topics for one name"),
            }),
        }
    }

    /// Describes one topic (`Some`) or all of them (`None`).
    pub async fn describe(&self, name: Option<&str>) -> Result<Vec<TopicDescription>, ClientError> {
        match self.conn.request(&Request::Describe { topic: name.map(str::to_string) }).await? {
            Response::Described { topics } => Ok(topics),
            other => Err(unexpected("Describe", &other)),
        }
    }
}

/// Names a response of the wrong kind without dumping record bytes into an error message.
pub(crate) fn unexpected(request: &'static str, got: &Response) -> ClientError {
    let debug = format!("{got:?}");
    let got = debug.split([' ', '{', '(']).next().unwrap_or("?").to_string();
    ClientError::UnexpectedResponse { request, got }
}
