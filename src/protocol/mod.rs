//! The native wire format: frames, requests and responses, as pure encode/decode functions on
//! buffers. Owns the byte layout of every message the native server and client exchange; never
//! does I/O, so every function here can be fuzzed and unit-tested without sockets.
//!
//! # Frames
//!
//! A frame is a `u32` little-endian length of the body, then the body. [`frame_len`] checks the
//! prefix against a limit ([`MAX_FRAME_BYTES`] by default) before a reader allocates anything.
//! The `encode_*` functions append a whole frame (length prefix included) to a buffer; the
//! `decode_*` functions take one frame's body (the bytes after the prefix).
//!
//! # Request body
//!
//! | field            | encoding                                  |
//! |------------------|-------------------------------------------|
//! | `correlation_id` | `u32`                                     |
//! | `api_key`        | `u8` (see [`ApiKey`])                     |
//! | fields           | the request's fields, in declaration order |
//!
//! # Response body
//!
//! | field            | encoding                                                        |
//! |------------------|-----------------------------------------------------------------|
//! | `correlation_id` | `u32`, copied from the request                                  |
//! | `status`         | `u8`: 0 = ok, else an [`ErrorCode`]                             |
//! | ok: `kind`       | `u8` (see [`ResponseKind`]), then that response's fields       |
//! | error: message   | string                                                          |
//!
//! Encodings: all integers little-endian; strings are `u16` length + UTF-8; bytes are `u32`
//! length + bytes; options are a `u8` tag (0 = none, 1 = some) then the value; lists are a `u32`
//! count then the items. A [`TopicDescription`] is its name, a list of partitions, each
//! `u32 partition, u64 log_start_offset, u64 next_offset, u64 segments, u64 size_bytes,
//! option<string> offline`, then `option<string> offline` for the whole topic, then the topic's
//! id (16 bytes, a UUID kept for the topic's life) and its non-default configs (a list of
//! `string name, string value` pairs, set on the topic). (The two `offline` options, why a
//! damaged partition or topic is not served, came with issue 11, the topic id and configs with
//! issue 13; the protocol has no version field, so clients and brokers from before either
//! cannot decode each other's descriptions: upgrade both.)
//!
//! # Topic configs (issue 13)
//!
//! Kafka's topic-level config names (`retention.ms`, `cleanup.policy`...); the broker validates
//! them and refuses an unknown name or a bad value with [`ErrorCode::InvalidConfig`], changing
//! nothing. CreateTopic gained its configs at the end (issue 13; older peers cannot decode it).
//! AddPartitions with a count that does not grow the topic is [`ErrorCode::InvalidPartitions`].
//!
//! | request                 | key | fields after the api key                                       |
//! |-------------------------|-----|----------------------------------------------------------------|
//! | `CreateTopic`           | 1   | string name, u32 partitions, u8 if_not_exists, list<(string name, string value)> configs |
//! | `AlterTopicConfigs`     | 12  | string topic, list<(string name, string value)> set, list<string> delete; all or nothing |
//! | `DescribeTopicConfigs`  | 13  | string topic                                                   |
//! | `AddPartitions`         | 14  | string topic, u32 total (the new partition count)              |
//!
//! | response          | kind | fields after the kind                                               |
//! |-------------------|------|---------------------------------------------------------------------|
//! | `TopicConfigs`    | 10   | list of entries: string name, option<string> value, u8 source (0 = default, 1 = broker flag, 2 = set on the topic), u8 read_only, u8 sensitive |
//! | `PartitionsAdded` | 11   | the topic's description after the change                           |
//!
//! AlterTopicConfigs answers `Ok`; AddPartitions answers `PartitionsAdded`.
//!
//! # Cluster (issue 14)
//!
//! A broker may be one of several: each partition has a leader, which alone takes appends and
//! serves fetches; a client learns the leaders with `DescribePartitions` and sends each request
//! to its partition's leader, refreshing and retrying on the retriable codes
//! ([`ErrorCode::is_retriable`]). A single broker answers as the leader of everything (node 0).
//! An `Append` is answered once every in-sync replica has the batch (Kafka's `acks=all`), or
//! `RequestTimedOut` after the broker's 30 s; a `Fetch` reads only below the high watermark (what
//! every in-sync replica has).
//! Old requests and responses are unchanged; the keys, kinds and codes below are new (an older
//! broker answers a new key with `InvalidRequest`).
//!
//! | request                  | key | fields after the api key                                 |
//! |--------------------------|-----|----------------------------------------------------------|
//! | `ClusterStatus`          | 19  | none                                                     |
//! | `DescribePartitions`     | 20  | option<string> topic (none: every topic)                 |
//! | `CreateReplicatedTopic`  | 21  | as `CreateTopic`, then u16 replication_factor            |
//! | `ElectLeaders`           | 22  | option<string> topic (none: every topic)                 |
//! | `ReassignPartitions`     | 23  | list<(string topic, u32 partition, list<i32> target)>; an empty target cancels the move under way |
//! | `ListReassignments`      | 24  | none                                                     |
//! | `ThrottledReassignPartitions` | 25 | as `ReassignPartitions`, then u64 throttle_bytes_per_s (issue 15) |
//! | `DecommissionBroker`     | 26  | i32 broker, u8 cancel                                    |
//! | `ChangeVoter`            | 27  | i32 broker, u8 add (0: back to a learner)                |
//! | `DescribeMembership`     | 28  | none                                                     |
//! | `ListReassignmentProgress` | 29 | none (as `ListReassignments`, answered with bytes)     |
//!
//! A `ReassignPartitions` request carrying a throttle is sent with key 25, so that key 23 keeps
//! the bytes older brokers decode and an older broker refuses a throttled move instead of
//! starting it unthrottled. The throttle (bytes per second per broker, for the replicas being
//! added) is set in the same step as the first move; with no move, it changes the throttle of
//! the moves under way. Likewise a `Reassignments` answer with a throttle in force is kind 17.
//! Copy progress in bytes is asked for with key 29 and answered as kind 19, so that key 24 keeps
//! answering older CLIs with the bytes they decode; a client asking an older broker with key 29
//! gets `InvalidRequest` and asks again with key 24.
//!
//! | response         | kind | fields after the kind                                         |
//! |------------------|------|---------------------------------------------------------------|
//! | `ClusterStatus`  | 13   | i32 node_id (the answering broker), u8 clustered, option<i32> controller, list<broker>, list<partition> under_replicated, list<partition> offline |
//! | `Partitions`     | 14   | list<broker>, list<partition>                                 |
//! | `LeadersElected` | 15   | list<election>: string topic, u32 partition, i32 preferred, option<i32> leader, u8 elected |
//! | `Membership`     | 18   | list<i32> voters, list<i32> decommissioned                    |
//! | `Reassignments`  | 16   | list<reassignment>: string topic, u32 partition, list<i32> target, list<i32> adding, list<i32> removing, list<i32> isr, option<i32> leader, list<(i32 replica, u64 records behind)> |
//! | `ThrottledReassignments` | 17 | as `Reassignments`, then u64 throttle_bytes_per_s (the throttle in force) |
//! | `ReassignmentProgress` | 19 | as `Reassignments` with each behind entry `i32 replica, u64 records, option<(u64 bytes to copy, u64 leader's log bytes)>`, then option<u64> throttle_bytes_per_s |
//!
//! `ReassignPartitions` answers `Ok` once every move is committed (they are committed one by
//! one: on an error, the moves before the one named are under way). `DecommissionBroker` and
//! `ChangeVoter` answer `Ok` once the change is committed.
//!
//! A broker ([`BrokerInfo`]) is `i32 id, option<string> native_addr, option<string>
//! kafka_addr, u8 fenced`; a partition ([`PartitionState`]) is `string topic, u32 partition,
//! option<i32> leader, i32 leader_epoch, list<i32> replicas, list<i32> isr`.
//!
//! Responses on one connection go out in request order (pipelining is allowed); the correlation
//! id lets a client check that.
//!
//! Every length read from the wire is checked against the bytes that remain before anything is
//! sliced or allocated, so a hostile length can cost at most an error.

mod decode;
mod encode;

pub use decode::{decode_request, decode_request_bytes, decode_response, decode_response_bytes};
pub use encode::{encode_fetched_head, encode_request, encode_request_split, encode_response};

use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;

pub use crate::broker::topic_config::{ConfigEntry, ConfigSource};
pub use crate::broker::topic_id_text;
pub use crate::broker::{GroupMember, GroupStatus, PartitionDescription, TopicDescription};

/// Default largest frame body: 64 MiB.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;
/// Size of the frame length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Smallest possible body: a correlation id and one byte (api key or status).
pub const MIN_BODY_BYTES: usize = 5;

/// Bytes of an encoded [`PartitionDescription`].
const PARTITION_DESCRIPTION_LEN: usize = 4 + 8 * 4 + 1;
/// Bytes of the smallest encoded [`TopicDescription`]: an empty name, no partitions, no reason,
/// a topic id and no configs.
const TOPIC_DESCRIPTION_MIN_LEN: usize = 2 + 4 + 1 + 16 + 4;
/// Bytes of the smallest encoded [`BrokerInfo`]: an id, two absent addresses, a flag.
const BROKER_INFO_MIN_LEN: usize = 4 + 1 + 1 + 1;
/// Bytes of the smallest encoded [`PartitionState`]: an empty topic name, a partition, no
/// leader, an epoch and two empty lists.
const PARTITION_STATE_MIN_LEN: usize = 2 + 4 + 1 + 4 + 4 + 4;
/// The smallest encoded election: empty topic, partition, preferred, no leader, elected.
const LEADER_ELECTION_MIN_LEN: usize = 2 + 4 + 4 + 1 + 1;
/// The smallest encoded move: empty topic, partition, empty target.
const PARTITION_MOVE_MIN_LEN: usize = 2 + 4 + 4;
/// The smallest encoded reassignment: empty topic, partition, five empty lists, no leader.
const REASSIGNMENT_MIN_LEN: usize = 2 + 4 + 4 * 4 + 1 + 4;
/// Bytes of the smallest encoded config pair: two empty strings.
const CONFIG_PAIR_MIN_LEN: usize = 2 + 2;
/// Bytes of the smallest encoded [`ConfigEntry`]: an empty name, no value, three flag bytes.
const CONFIG_ENTRY_MIN_LEN: usize = 2 + 1 + 1 + 1 + 1;

/// The `offset` of a Fetch that continues where the previous fetch of the same topic and
/// partition on this connection ended (the offset after its last record, or its own offset if
/// it brought none). A consumer can so keep several fetches in flight although each one's
/// start is only known once the one before it is answered: the broker reads the next chunk
/// while the consumer checks the last. A continuation with no earlier successful fetch of the
/// partition on the connection is an `InvalidRequest`.
pub const FETCH_CONTINUE: u64 = u64::MAX;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Presents a token; the broker answers Ok when no token is configured.
    Authenticate {
        token: String,
    },
    /// `configs` are Kafka topic-config names and values, validated by the broker (an invalid
    /// one refuses the whole request).
    CreateTopic {
        name: String,
        partitions: u32,
        if_not_exists: bool,
        configs: Vec<(String, String)>,
    },
    DeleteTopic {
        name: String,
    },
    /// Deletes the records below `before` (Kafka's delete-records).
    Trim {
        topic: String,
        partition: u32,
        before: u64,
    },
    /// `records` is a run of records in the `crate::record` format; their offsets and CRCs are
    /// rewritten by the broker (producers leave them zero: `record::encode_for_append`).
    /// `partition: None` picks by `key_hint` (murmur2) or round-robin.
    Append {
        topic: String,
        partition: Option<u32>,
        key_hint: Option<Bytes>,
        records: Bytes,
    },
    /// Records from `offset`; [`FETCH_CONTINUE`] as the offset continues where this
    /// connection's previous fetch of the partition ended.
    Fetch {
        topic: String,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    /// `None` describes every topic.
    Describe {
        topic: Option<String>,
    },
    ListTopics,
    CommitOffset {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    FetchOffset {
        group: String,
        topic: String,
        partition: u32,
    },
    /// The names of every consumer group: with committed offsets or live members.
    ListGroups,
    /// Every committed offset of one group.
    GroupOffsets {
        group: String,
    },
    /// Sets and deletes (back to the default) topic configs: all of them or, when one is
    /// invalid, none.
    AlterTopicConfigs {
        topic: String,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    },
    /// Every config the topic has, with where its value comes from.
    DescribeTopicConfigs {
        topic: String,
    },
    /// Grows a topic to `total` partitions (Kafka's CreatePartitions: the new total, which must
    /// be larger than the current count).
    AddPartitions {
        topic: String,
        total: u32,
    },
    /// Deletes a group's committed offsets; refused (`GroupNotEmpty`) while it has live members,
    /// `UnknownGroup` when it has neither members nor offsets.
    DeleteGroup {
        group: String,
    },
    /// A group's state and live members.
    DescribeGroup {
        group: String,
    },
    /// Sets a group's committed offsets, all or none; refused (`GroupNotEmpty`, naming the
    /// members) while the group has live members.
    ResetOffsets {
        group: String,
        offsets: Vec<GroupOffset>,
    },
    /// The offset of the first record of a partition with a timestamp at or after
    /// `timestamp_ms` (answered with `Offset`; `None` when there is none).
    OffsetForTimestamp {
        topic: String,
        partition: u32,
        timestamp_ms: u64,
    },
    /// The cluster's brokers, controller and the partitions that are under-replicated or
    /// offline (answered with `ClusterStatus`).
    ClusterStatus,
    /// Every broker and, per partition of `topic` (or of every topic), its leader, replicas
    /// and in-sync replicas: what a client routes by (answered with `Partitions`).
    DescribePartitions {
        topic: Option<String>,
    },
    /// Preferred leader election for every partition of `topic` (or of every topic) not led by
    /// its first replica (answered with `LeadersElected`).
    ElectLeaders {
        topic: Option<String>,
    },
    /// Starts (or, with an empty target, cancels) partition moves (answered with `Ok`). With a
    /// throttle (bytes/s per broker), it is sent as `ThrottledReassignPartitions` and sets the
    /// cluster's reassignment throttle with the first move (without moves: for those under way).
    ReassignPartitions {
        moves: Vec<PartitionMove>,
        throttle_bytes_per_s: Option<u64>,
    },
    /// The partition moves under way (answered with `Reassignments`). `with_bytes` asks for
    /// the copy progress in bytes too (key `ListReassignmentProgress`, answered as kind
    /// `ReassignmentProgress`).
    ListReassignments {
        with_bytes: bool,
    },
    /// Marks a broker decommissioned, or (`cancel`) takes that back (answered with `Ok`).
    DecommissionBroker {
        broker: i32,
        cancel: bool,
    },
    /// Makes a broker a metadata voter (`add`) or a learner again (answered with `Ok`).
    ChangeVoter {
        broker: i32,
        add: bool,
    },
    /// The voters and the decommissioned brokers (answered with `Membership`).
    DescribeMembership,
    /// `CreateTopic` with a replication factor (a separate key so that `CreateTopic`'s bytes
    /// stay what older brokers decode).
    CreateReplicatedTopic {
        name: String,
        partitions: u32,
        replication_factor: u16,
        if_not_exists: bool,
        configs: Vec<(String, String)>,
    },
}

/// A broker of the cluster, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// Where native clients reach it (`host:port`), when it has a native listener.
    pub native_addr: Option<String>,
    /// Where Kafka clients reach it, when it has a Kafka listener.
    pub kafka_addr: Option<String>,
    /// Fenced by the controller (missed its heartbeats): it leads nothing.
    pub fenced: bool,
}

/// The cluster's own answers travel as they are: a preferred leader election's outcome per
/// partition, and a partition move under way (its copy progress known by the leader only).
pub use crate::cluster::{LeaderElection, ReassignmentView as Reassignment, ReplicaCopy};

/// One partition move asked for: its target replicas (empty: cancel the move under way).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMove {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<i32>,
}

/// One partition's leadership: who leads it (none: offline), in which epoch, its replicas and
/// which of them are in sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// Fewer replicas in sync than assigned.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// The cluster as one broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterInfo {
    /// The broker that answered.
    pub node_id: i32,
    /// False for a single broker (no `--controllers`).
    pub clustered: bool,
    /// The broker leading the metadata (Raft) group, when one does.
    pub controller: Option<i32>,
    pub brokers: Vec<BrokerInfo>,
    pub under_replicated: Vec<PartitionState>,
    pub offline: Vec<PartitionState>,
}

/// Who takes part in the cluster how (answer to `DescribeMembership`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Membership {
    /// The metadata voters (the controllers).
    pub voters: Vec<i32>,
    /// Brokers decommissioned (`cluster decommission`), emptied or still being emptied.
    pub decommissioned: Vec<i32>,
}

/// One committed offset of a consumer group, as a read position: a Kafka client's sentinel
/// commit is resolved by the broker (-2 the log start, -1 the log end; other negatives are left
/// out, as no commit).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// A response from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok,
    TopicCreated {
        description: TopicDescription,
    },
    /// The batch got offsets `first_offset..next_offset`.
    Appended {
        partition: u32,
        first_offset: u64,
        next_offset: u64,
    },
    /// `records` are the stored bytes as they lie on disk (CRCs as the broker wrote them).
    Fetched {
        partition: u32,
        log_start_offset: u64,
        high_watermark: u64,
        records: Bytes,
    },
    Described {
        topics: Vec<TopicDescription>,
    },
    Topics {
        names: Vec<String>,
    },
    Trimmed {
        log_start_offset: u64,
    },
    /// A group's committed offset as a read position (sentinels resolved as for
    /// [`GroupOffset`]), `None` when it has none; also a record's offset by timestamp.
    Offset {
        offset: Option<u64>,
    },
    /// Consumer-group names, sorted.
    Groups {
        names: Vec<String>,
    },
    /// One group's committed offsets, sorted by topic and partition.
    GroupOffsets {
        offsets: Vec<GroupOffset>,
    },
    /// A topic's configs, every known name, with their sources.
    TopicConfigs {
        entries: Vec<ConfigEntry>,
    },
    /// The topic after AddPartitions.
    PartitionsAdded {
        description: TopicDescription,
    },
    /// A group's state and live members.
    GroupDescribed {
        status: GroupStatus,
    },
    ClusterStatus {
        status: ClusterInfo,
    },
    /// The brokers and the partitions' leadership.
    Partitions {
        brokers: Vec<BrokerInfo>,
        partitions: Vec<PartitionState>,
    },
    /// The partitions a preferred leader election looked at (those not led by their preferred
    /// replica before it).
    LeadersElected {
        elections: Vec<LeaderElection>,
    },
    /// The moves under way and the throttle in force: kind `ReassignmentProgress` when
    /// `with_bytes` (the bytes to copy travel), else `ThrottledReassignments` when a throttle is
    /// set, else `Reassignments` (records only, as older CLIs decode).
    Reassignments {
        reassignments: Vec<Reassignment>,
        throttle_bytes_per_s: Option<u64>,
        with_bytes: bool,
    },
    Membership {
        membership: Membership,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// The api key byte of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ApiKey {
    Authenticate = 0,
    CreateTopic = 1,
    DeleteTopic = 2,
    Trim = 3,
    Append = 4,
    Fetch = 5,
    Describe = 6,
    ListTopics = 7,
    CommitOffset = 8,
    FetchOffset = 9,
    ListGroups = 10,
    GroupOffsets = 11,
    AlterTopicConfigs = 12,
    DescribeTopicConfigs = 13,
    AddPartitions = 14,
    DeleteGroup = 15,
    DescribeGroup = 16,
    ResetOffsets = 17,
    OffsetForTimestamp = 18,
    ClusterStatus = 19,
    DescribePartitions = 20,
    CreateReplicatedTopic = 21,
    ElectLeaders = 22,
    ReassignPartitions = 23,
    ListReassignments = 24,
    ThrottledReassignPartitions = 25,
    DecommissionBroker = 26,
    ChangeVoter = 27,
    DescribeMembership = 28,
    ListReassignmentProgress = 29,
}

impl ApiKey {
    pub fn from_u8(v: u8) -> Option<ApiKey> {
        use ApiKey::*;
        Some(match v {
            0 => Authenticate,
            1 => CreateTopic,
            2 => DeleteTopic,
            3 => Trim,
            4 => Append,
            5 => Fetch,
            6 => Describe,
            7 => ListTopics,
            8 => CommitOffset,
            9 => FetchOffset,
            10 => ListGroups,
            11 => GroupOffsets,
            12 => AlterTopicConfigs,
            13 => DescribeTopicConfigs,
            14 => AddPartitions,
            15 => DeleteGroup,
            16 => DescribeGroup,
            17 => ResetOffsets,
            18 => OffsetForTimestamp,
            19 => ClusterStatus,
            20 => DescribePartitions,
            21 => CreateReplicatedTopic,
            22 => ElectLeaders,
            23 => ReassignPartitions,
            24 => ListReassignments,
            25 => ThrottledReassignPartitions,
            26 => DecommissionBroker,
            27 => ChangeVoter,
            28 => DescribeMembership,
            29 => ListReassignmentProgress,
            _ => return None,
        })
    }

    /// A short snake_case name, for metrics and logs.
    pub fn name(self) -> &'static str {
        use ApiKey::*;
        match self {
            Authenticate => "authenticate",
            CreateTopic => "create_topic",
            DeleteTopic => "delete_topic",
            Trim => "trim",
            Append => "append",
            Fetch => "fetch",
            Describe => "describe",
            ListTopics => "list_topics",
            CommitOffset => "commit_offset",
            FetchOffset => "fetch_offset",
            ListGroups => "list_groups",
            GroupOffsets => "group_offsets",
            AlterTopicConfigs => "alter_topic_configs",
            DescribeTopicConfigs => "describe_topic_configs",
            AddPartitions => "add_partitions",
            DeleteGroup => "delete_group",
            DescribeGroup => "describe_group",
            ResetOffsets => "reset_offsets",
            OffsetForTimestamp => "offset_for_timestamp",
            ClusterStatus => "cluster_status",
            DescribePartitions => "describe_partitions",
            CreateReplicatedTopic => "create_replicated_topic",
            ElectLeaders => "elect_leaders",
            ReassignPartitions => "reassign_partitions",
            ListReassignments => "list_reassignments",
            ThrottledReassignPartitions => "throttled_reassign_partitions",
            DecommissionBroker => "decommission_broker",
            ChangeVoter => "change_voter",
            DescribeMembership => "describe_membership",
            ListReassignmentProgress => "list_reassignment_progress",
        }
    }
}

impl Request {
    /// The api key this request is sent with.
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::Authenticate { .. } => ApiKey::Authenticate,
            Request::CreateTopic { .. } => ApiKey::CreateTopic,
            Request::DeleteTopic { .. } => ApiKey::DeleteTopic,
            Request::Trim { .. } => ApiKey::Trim,
            Request::Append { .. } => ApiKey::Append,
            Request::Fetch { .. } => ApiKey::Fetch,
            Request::Describe { .. } => ApiKey::Describe,
            Request::ListTopics => ApiKey::ListTopics,
            Request::CommitOffset { .. } => ApiKey::CommitOffset,
            Request::FetchOffset { .. } => ApiKey::FetchOffset,
            Request::ListGroups => ApiKey::ListGroups,
            Request::GroupOffsets { .. } => ApiKey::GroupOffsets,
            Request::AlterTopicConfigs { .. } => ApiKey::AlterTopicConfigs,
            Request::DescribeTopicConfigs { .. } => ApiKey::DescribeTopicConfigs,
            Request::AddPartitions { .. } => ApiKey::AddPartitions,
            Request::DeleteGroup { .. } => ApiKey::DeleteGroup,
            Request::DescribeGroup { .. } => ApiKey::DescribeGroup,
            Request::ResetOffsets { .. } => ApiKey::ResetOffsets,
            Request::OffsetForTimestamp { .. } => ApiKey::OffsetForTimestamp,
            Request::ClusterStatus => ApiKey::ClusterStatus,
            Request::DescribePartitions { .. } => ApiKey::DescribePartitions,
            Request::CreateReplicatedTopic { .. } => ApiKey::CreateReplicatedTopic,
            Request::ElectLeaders { .. } => ApiKey::ElectLeaders,
            Request::ReassignPartitions { throttle_bytes_per_s: None, .. } => {
                ApiKey::ReassignPartitions
            }
            Request::ReassignPartitions { throttle_bytes_per_s: Some(_), .. } => {
                ApiKey::ThrottledReassignPartitions
            }
            Request::ListReassignments { with_bytes: false } => ApiKey::ListReassignments,
            Request::ListReassignments { with_bytes: true } => ApiKey::ListReassignmentProgress,
            Request::DecommissionBroker { .. } => ApiKey::DecommissionBroker,
            Request::ChangeVoter { .. } => ApiKey::ChangeVoter,
            Request::DescribeMembership => ApiKey::DescribeMembership,
        }
    }
}

/// The kind byte of a successful response (after status 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseKind {
    Ok = 0,
    TopicCreated = 1,
    Appended = 2,
    Fetched = 3,
    Described = 4,
    Topics = 5,
    Trimmed = 6,
    Offset = 7,
    Groups = 8,
    GroupOffsets = 9,
    TopicConfigs = 10,
    PartitionsAdded = 11,
    GroupDescribed = 12,
    ClusterStatus = 13,
    Partitions = 14,
    LeadersElected = 15,
    Reassignments = 16,
    ThrottledReassignments = 17,
    Membership = 18,
    ReassignmentProgress = 19,
}

/// The status byte of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    InvalidRequest = 1,
    FrameTooLarge = 2,
    UnknownTopic = 3,
    TopicAlreadyExists = 4,
    InvalidTopicName = 5,
    UnknownPartition = 6,
    OffsetOutOfRange = 7,
    RecordTooLarge = 8,
    InvalidRecord = 9,
    Storage = 10,
    Unauthorized = 11,
    LimitExceeded = 12,
    InvalidGroupName = 13,
    Internal = 14,
    /// An unknown topic-config name or an invalid value; the message says which and why.
    InvalidConfig = 15,
    /// A partition count that does not grow the topic (AddPartitions).
    InvalidPartitions = 16,
    /// The group has live members (their ids are in the message).
    GroupNotEmpty = 17,
    /// No group by that name: no members, no committed offsets.
    UnknownGroup = 18,
    /// This broker does not lead the partition (the message names the leader when known):
    /// refresh the leaders and send it there.
    NotLeader = 19,
    /// The partition has no leader right now (an election is under way, or every in-sync
    /// replica is down): retry after a moment.
    LeaderNotAvailable = 20,
    /// Fewer replicas are in sync than the topic's `min.insync.replicas`: nothing was appended.
    NotEnoughReplicas = 21,
    /// The append was written by the leader but the in-sync replicas shrank below
    /// `min.insync.replicas` before they all had it: it may or may not be kept.
    NotEnoughReplicasAfterAppend = 22,
    /// The replicas did not confirm the append in time: it may or may not be kept.
    RequestTimedOut = 23,
    /// A replication factor larger than the live brokers, or zero.
    InvalidReplicationFactor = 24,
}

impl ErrorCode {
    pub fn from_u8(v: u8) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => InvalidRequest,
            2 => FrameTooLarge,
            3 => UnknownTopic,
            4 => TopicAlreadyExists,
            5 => InvalidTopicName,
            6 => UnknownPartition,
            7 => OffsetOutOfRange,
            8 => RecordTooLarge,
            9 => InvalidRecord,
            10 => Storage,
            11 => Unauthorized,
            12 => LimitExceeded,
            13 => InvalidGroupName,
            14 => Internal,
            15 => InvalidConfig,
            16 => InvalidPartitions,
            17 => GroupNotEmpty,
            18 => UnknownGroup,
            19 => NotLeader,
            20 => LeaderNotAvailable,
            21 => NotEnoughReplicas,
            22 => NotEnoughReplicasAfterAppend,
            23 => RequestTimedOut,
            24 => InvalidReplicationFactor,
            _ => return None,
        })
    }

    /// A short snake_case name, for logs and error messages.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            FrameTooLarge => "frame_too_large",
            UnknownTopic => "unknown_topic",
            TopicAlreadyExists => "topic_already_exists",
            InvalidTopicName => "invalid_topic_name",
            UnknownPartition => "unknown_partition",
            OffsetOutOfRange => "offset_out_of_range",
            RecordTooLarge => "record_too_large",
            InvalidRecord => "invalid_record",
            Storage => "storage",
            Unauthorized => "unauthorized",
            LimitExceeded => "limit_exceeded",
            InvalidGroupName => "invalid_group_name",
            Internal => "internal",
            InvalidConfig => "invalid_config",
            InvalidPartitions => "invalid_partitions",
            GroupNotEmpty => "group_not_empty",
            UnknownGroup => "unknown_group",
            NotLeader => "not_leader",
            LeaderNotAvailable => "leader_not_available",
            NotEnoughReplicas => "not_enough_replicas",
            NotEnoughReplicasAfterAppend => "not_enough_replicas_after_append",
            RequestTimedOut => "request_timed_out",
            InvalidReplicationFactor => "invalid_replication_factor",
        }
    }

    /// A cluster's passing state (leadership moving, replicas catching up): the same request
    /// may succeed after refreshing the leaders and waiting a little.
    pub fn is_retriable(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            NotLeader
                | LeaderNotAvailable
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | RequestTimedOut
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a valid frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: u64, max: u32 },
    #[error("frame of {len} bytes is shorter than the minimum of {min} bytes")]
    FrameTooSmall { len: u32, min: usize },
    #[error(
        "message truncated reading {field}: needs {needed} bytes at position {position}, {available} available"
    )]
    Truncated { field: &'static str, position: usize, needed: u64, available: usize },
    #[error("unknown api key {0}")]
    UnknownApiKey(u8),
    #[error("unknown response kind {0}")]
    UnknownResponseKind(u8),
    #[error("unknown error code {0}")]
    UnknownErrorCode(u8),
    #[error("{field} at position {position} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str, position: usize },
    #[error("{field} at position {position} has invalid option tag {tag} (expected 0 or 1)")]
    InvalidOptionTag { field: &'static str, position: usize, tag: u8 },
    #[error("{count} unexpected bytes after the end of the message")]
    TrailingBytes { count: usize },
}

impl ProtocolError {
    /// The error code a server answers with when a request fails to decode.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// Checks a frame's length prefix against `max_frame_bytes` (and the smallest possible body) and
/// returns the body length. Call it before allocating the body.
pub fn frame_len(prefix: [u8; 4], max_frame_bytes: u32) -> Result<usize, ProtocolError> {
    let len = u32::from_le_bytes(prefix);
    if len > max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge { len: u64::from(len), max: max_frame_bytes });
    }
    if (len as usize) < MIN_BODY_BYTES {
        return Err(ProtocolError::FrameTooSmall { len, min: MIN_BODY_BYTES });
    }
    Ok(len as usize)
}

/// The correlation id at the head of a body, when there are enough bytes for one. Lets a server
/// answer a request that fails to decode with an error carrying the right id.
pub fn peek_correlation_id(body: &[u8]) -> Option<u32> {
    body.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests;
