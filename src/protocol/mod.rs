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
//!
//! | response         | kind | fields after the kind                                         |
//! |------------------|------|---------------------------------------------------------------|
//! | `ClusterStatus`  | 13   | i32 node_id (the answering broker), u8 clustered, option<i32> controller, list<broker>, list<partition> under_replicated, list<partition> offline |
//! | `Partitions`     | 14   | list<broker>, list<partition>                                 |
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

// ---------------------------------------------------------------------------------------------
// Encoding

/// Reserves the frame prefix and returns its position; [`finish_frame`] fills it in.
fn start_frame(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_u32_le(0);
    at
}

/// Writes the body length into the prefix reserved by [`start_frame`], counting `extra` bytes the
/// caller will write separately (the stored records of a fetch).
fn finish_frame(buf: &mut BytesMut, at: usize, extra: usize) {
    let body = buf.len() - at - FRAME_PREFIX_LEN + extra;
    let body = u32::try_from(body).unwrap_or(u32::MAX);
    buf[at..at + FRAME_PREFIX_LEN].copy_from_slice(&body.to_le_bytes());
}

/// Strings longer than a `u16` length can say are cut at a character boundary. No valid name is
/// that long (topic and group names are at most 249 bytes), so a cut name is still refused.
fn put_str(buf: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_u16_le(end as u16);
    buf.put_slice(&s.as_bytes()[..end]);
}

/// Byte fields are bounded by the frame limit (a `u32`), which the peer enforces.
fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32_le(u32::try_from(b.len()).unwrap_or(u32::MAX));
    buf.put_slice(b);
}

fn put_opt_u32(buf: &mut BytesMut, v: Option<u32>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_u32_le(v);
        }
        None => buf.put_u8(0),
    }
}

fn put_description(buf: &mut BytesMut, d: &TopicDescription) {
    put_str(buf, &d.name);
    buf.put_u32_le(d.partitions.len() as u32);
    for p in &d.partitions {
        buf.put_u32_le(p.partition);
        buf.put_u64_le(p.log_start_offset);
        buf.put_u64_le(p.next_offset);
        buf.put_u64_le(p.segments);
        buf.put_u64_le(p.size_bytes);
        put_opt_str(buf, p.offline.as_deref());
    }
    put_opt_str(buf, d.offline.as_deref());
    buf.put_slice(&d.topic_id);
    put_pairs(buf, &d.configs);
}

/// A list of (name, value) string pairs: configs.
fn put_pairs(buf: &mut BytesMut, pairs: &[(String, String)]) {
    buf.put_u32_le(pairs.len() as u32);
    for (name, value) in pairs {
        put_str(buf, name);
        put_str(buf, value);
    }
}

fn put_strs(buf: &mut BytesMut, items: &[String]) {
    buf.put_u32_le(items.len() as u32);
    for s in items {
        put_str(buf, s);
    }
}

/// The source byte of a config entry.
fn source_byte(s: ConfigSource) -> u8 {
    match s {
        ConfigSource::Default => 0,
        ConfigSource::Broker => 1,
        ConfigSource::Topic => 2,
    }
}

fn put_config_entry(buf: &mut BytesMut, e: &ConfigEntry) {
    put_str(buf, &e.name);
    put_opt_str(buf, e.value.as_deref());
    buf.put_u8(source_byte(e.source));
    buf.put_u8(u8::from(e.read_only));
    buf.put_u8(u8::from(e.sensitive));
}

fn put_opt_i32(buf: &mut BytesMut, v: Option<i32>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_i32_le(v);
        }
        None => buf.put_u8(0),
    }
}

fn put_i32s(buf: &mut BytesMut, items: &[i32]) {
    buf.put_u32_le(items.len() as u32);
    for v in items {
        buf.put_i32_le(*v);
    }
}

fn put_brokers(buf: &mut BytesMut, brokers: &[BrokerInfo]) {
    buf.put_u32_le(brokers.len() as u32);
    for b in brokers {
        buf.put_i32_le(b.id);
        put_opt_str(buf, b.native_addr.as_deref());
        put_opt_str(buf, b.kafka_addr.as_deref());
        buf.put_u8(u8::from(b.fenced));
    }
}

fn put_partition_states(buf: &mut BytesMut, partitions: &[PartitionState]) {
    buf.put_u32_le(partitions.len() as u32);
    for p in partitions {
        put_str(buf, &p.topic);
        buf.put_u32_le(p.partition);
        put_opt_i32(buf, p.leader);
        buf.put_i32_le(p.leader_epoch);
        put_i32s(buf, &p.replicas);
        put_i32s(buf, &p.isr);
    }
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
        None => buf.put_u8(0),
    }
}

/// Appends one request frame (length prefix included) to `buf`.
pub fn encode_request(buf: &mut BytesMut, correlation_id: u32, req: &Request) {
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    buf.put_u8(req.api_key() as u8);
    match req {
        Request::Authenticate { token } => put_str(buf, token),
        Request::CreateTopic { name, partitions, if_not_exists, configs } => {
            put_str(buf, name);
            buf.put_u32_le(*partitions);
            buf.put_u8(u8::from(*if_not_exists));
            put_pairs(buf, configs);
        }
        Request::DeleteTopic { name } => put_str(buf, name),
        Request::Trim { topic, partition, before } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*before);
        }
        Request::Append { topic, partition, key_hint, records } => {
            put_append_head(buf, topic, *partition, key_hint.as_deref(), records.len());
            buf.put_slice(records);
        }
        Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*offset);
            buf.put_u32_le(*max_bytes);
            buf.put_u32_le(*max_wait_ms);
        }
        Request::Describe { topic } => match topic {
            Some(t) => {
                buf.put_u8(1);
                put_str(buf, t);
            }
            None => buf.put_u8(0),
        },
        Request::ListTopics => {}
        Request::CommitOffset { group, topic, partition, offset } => {
            put_str(buf, group);
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*offset);
        }
        Request::FetchOffset { group, topic, partition } => {
            put_str(buf, group);
            put_str(buf, topic);
            buf.put_u32_le(*partition);
        }
        Request::ListGroups => {}
        Request::GroupOffsets { group } => put_str(buf, group),
        Request::AlterTopicConfigs { topic, set, delete } => {
            put_str(buf, topic);
            put_pairs(buf, set);
            put_strs(buf, delete);
        }
        Request::DescribeTopicConfigs { topic } => put_str(buf, topic),
        Request::AddPartitions { topic, total } => {
            put_str(buf, topic);
            buf.put_u32_le(*total);
        }
        Request::DeleteGroup { group } | Request::DescribeGroup { group } => put_str(buf, group),
        Request::ResetOffsets { group, offsets } => {
            put_str(buf, group);
            buf.put_u32_le(offsets.len() as u32);
            for o in offsets {
                put_str(buf, &o.topic);
                buf.put_u32_le(o.partition);
                buf.put_u64_le(o.offset);
            }
        }
        Request::OffsetForTimestamp { topic, partition, timestamp_ms } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*timestamp_ms);
        }
        Request::ClusterStatus => {}
        Request::DescribePartitions { topic } => put_opt_str(buf, topic.as_deref()),
        Request::CreateReplicatedTopic {
            name,
            partitions,
            replication_factor,
            if_not_exists,
            configs,
        } => {
            put_str(buf, name);
            buf.put_u32_le(*partitions);
            buf.put_u8(u8::from(*if_not_exists));
            put_pairs(buf, configs);
            buf.put_u16_le(*replication_factor);
        }
    }
    finish_frame(buf, at, 0);
}

/// Everything of an Append request after the api key, up to and including the records' length.
fn put_append_head(
    buf: &mut BytesMut,
    topic: &str,
    partition: Option<u32>,
    key_hint: Option<&[u8]>,
    records_len: usize,
) {
    put_str(buf, topic);
    put_opt_u32(buf, partition);
    match key_hint {
        Some(k) => {
            buf.put_u8(1);
            put_bytes(buf, k);
        }
        None => buf.put_u8(0),
    }
    buf.put_u32_le(u32::try_from(records_len).unwrap_or(u32::MAX));
}

/// Like [`encode_request`], but an Append's records are not copied into `buf`: the frame head
/// (whose length prefix counts them) goes into `buf` and the records are returned, to be written
/// right after it (a producer's batch goes to the socket without an intermediate copy). Other
/// requests are encoded whole and `None` is returned.
pub fn encode_request_split(
    buf: &mut BytesMut,
    correlation_id: u32,
    req: &Request,
) -> Option<Bytes> {
    let Request::Append { topic, partition, key_hint, records } = req else {
        encode_request(buf, correlation_id, req);
        return None;
    };
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    buf.put_u8(req.api_key() as u8);
    put_append_head(buf, topic, *partition, key_hint.as_deref(), records.len());
    finish_frame(buf, at, records.len());
    Some(records.clone())
}

/// Appends one response frame (length prefix included) to `buf`.
pub fn encode_response(buf: &mut BytesMut, correlation_id: u32, resp: &Response) {
    if let Response::Fetched { partition, log_start_offset, high_watermark, records } = resp {
        encode_fetched_head(
            buf,
            correlation_id,
            *partition,
            *log_start_offset,
            *high_watermark,
            u32::try_from(records.len()).unwrap_or(u32::MAX),
        );
        buf.put_slice(records);
        return;
    }
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    match resp {
        Response::Error { code, message } => {
            buf.put_u8(*code as u8);
            put_str(buf, message);
        }
        Response::Ok => ok_kind(buf, ResponseKind::Ok),
        Response::TopicCreated { description } => {
            ok_kind(buf, ResponseKind::TopicCreated);
            put_description(buf, description);
        }
        Response::Appended { partition, first_offset, next_offset } => {
            ok_kind(buf, ResponseKind::Appended);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*first_offset);
            buf.put_u64_le(*next_offset);
        }
        Response::Described { topics } => {
            ok_kind(buf, ResponseKind::Described);
            buf.put_u32_le(topics.len() as u32);
            for t in topics {
                put_description(buf, t);
            }
        }
        Response::Topics { names } => {
            ok_kind(buf, ResponseKind::Topics);
            buf.put_u32_le(names.len() as u32);
            for n in names {
                put_str(buf, n);
            }
        }
        Response::Trimmed { log_start_offset } => {
            ok_kind(buf, ResponseKind::Trimmed);
            buf.put_u64_le(*log_start_offset);
        }
        Response::Offset { offset } => {
            ok_kind(buf, ResponseKind::Offset);
            match offset {
                Some(o) => {
                    buf.put_u8(1);
                    buf.put_u64_le(*o);
                }
                None => buf.put_u8(0),
            }
        }
        Response::Groups { names } => {
            ok_kind(buf, ResponseKind::Groups);
            buf.put_u32_le(names.len() as u32);
            for n in names {
                put_str(buf, n);
            }
        }
        Response::GroupOffsets { offsets } => {
            ok_kind(buf, ResponseKind::GroupOffsets);
            buf.put_u32_le(offsets.len() as u32);
            for o in offsets {
                put_str(buf, &o.topic);
                buf.put_u32_le(o.partition);
                buf.put_u64_le(o.offset);
            }
        }
        Response::TopicConfigs { entries } => {
            ok_kind(buf, ResponseKind::TopicConfigs);
            buf.put_u32_le(entries.len() as u32);
            for e in entries {
                put_config_entry(buf, e);
            }
        }
        Response::PartitionsAdded { description } => {
            ok_kind(buf, ResponseKind::PartitionsAdded);
            put_description(buf, description);
        }
        Response::GroupDescribed { status } => {
            ok_kind(buf, ResponseKind::GroupDescribed);
            put_str(buf, &status.state);
            buf.put_u32_le(status.members.len() as u32);
            for m in &status.members {
                put_str(buf, &m.member_id);
                put_str(buf, &m.client_id);
                put_str(buf, &m.client_host);
                buf.put_u32_le(m.assigned.len() as u32);
                for (topic, partitions) in &m.assigned {
                    put_str(buf, topic);
                    buf.put_u32_le(partitions.len() as u32);
                    for p in partitions {
                        buf.put_u32_le(*p);
                    }
                }
            }
        }
        Response::ClusterStatus { status } => {
            ok_kind(buf, ResponseKind::ClusterStatus);
            buf.put_i32_le(status.node_id);
            buf.put_u8(u8::from(status.clustered));
            put_opt_i32(buf, status.controller);
            put_brokers(buf, &status.brokers);
            put_partition_states(buf, &status.under_replicated);
            put_partition_states(buf, &status.offline);
        }
        Response::Partitions { brokers, partitions } => {
            ok_kind(buf, ResponseKind::Partitions);
            put_brokers(buf, brokers);
            put_partition_states(buf, partitions);
        }
        Response::Fetched { .. } => unreachable!("handled above"),
    }
    finish_frame(buf, at, 0);
}

fn ok_kind(buf: &mut BytesMut, kind: ResponseKind) {
    buf.put_u8(0);
    buf.put_u8(kind as u8);
}

/// Appends the head of a Fetched response frame: everything up to and including the records'
/// `u32` length. The frame's length prefix counts `records_len` more bytes, which the caller
/// writes right after (a vectored write of the stored bytes, no copy).
pub fn encode_fetched_head(
    buf: &mut BytesMut,
    correlation_id: u32,
    partition: u32,
    log_start_offset: u64,
    high_watermark: u64,
    records_len: u32,
) {
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    ok_kind(buf, ResponseKind::Fetched);
    buf.put_u32_le(partition);
    buf.put_u64_le(log_start_offset);
    buf.put_u64_le(high_watermark);
    buf.put_u32_le(records_len);
    finish_frame(buf, at, records_len as usize);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads fields from a body, checking every length against what remains.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, field: &'static str) -> Result<Range<usize>, ProtocolError> {
        let available = self.buf.len() - self.pos;
        if n > available as u64 {
            return Err(ProtocolError::Truncated {
                field,
                position: self.pos,
                needed: n,
                available,
            });
        }
        let r = self.pos..self.pos + n as usize;
        self.pos = r.end;
        Ok(r)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let r = self.take(N as u64, field)?;
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[r]);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, ProtocolError> {
        let position = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ProtocolError::InvalidOptionTag { field, position, tag }),
        }
    }
    fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.u16(field)?;
        let position = self.pos;
        let r = self.take(u64::from(len), field)?;
        std::str::from_utf8(&self.buf[r])
            .map(str::to_owned)
            .map_err(|_| ProtocolError::InvalidUtf8 { field, position })
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }
    fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, ProtocolError> {
        if self.bool(field)? { self.i32(field).map(Some) } else { Ok(None) }
    }
    fn i32s(&mut self, field: &'static str) -> Result<Vec<i32>, ProtocolError> {
        let n = self.count(field, 4)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.i32(field)?);
        }
        Ok(items)
    }
    fn brokers(&mut self) -> Result<Vec<BrokerInfo>, ProtocolError> {
        let n = self.count("broker count", BROKER_INFO_MIN_LEN)?;
        let mut brokers = Vec::with_capacity(n);
        for _ in 0..n {
            brokers.push(BrokerInfo {
                id: self.i32("broker id")?,
                native_addr: self.opt_string("broker native address")?,
                kafka_addr: self.opt_string("broker kafka address")?,
                fenced: self.bool("broker fenced")?,
            });
        }
        Ok(brokers)
    }
    fn partition_states(&mut self) -> Result<Vec<PartitionState>, ProtocolError> {
        let n = self.count("partition count", PARTITION_STATE_MIN_LEN)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(PartitionState {
                topic: self.string("topic name")?,
                partition: self.u32("partition")?,
                leader: self.opt_i32("leader")?,
                leader_epoch: self.i32("leader epoch")?,
                replicas: self.i32s("replicas")?,
                isr: self.i32s("in-sync replicas")?,
            });
        }
        Ok(partitions)
    }
    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, ProtocolError> {
        if self.bool(field)? { self.string(field).map(Some) } else { Ok(None) }
    }
    /// A `u32`-length byte field, as a range of the body.
    fn bytes(&mut self, field: &'static str) -> Result<Range<usize>, ProtocolError> {
        let len = self.u32(field)?;
        self.take(u64::from(len), field)
    }
    /// A list count, checked against the remaining bytes given each item's smallest encoding, so
    /// a hostile count cannot make the caller reserve memory the body does not back.
    fn count(&mut self, field: &'static str, min_item: usize) -> Result<usize, ProtocolError> {
        let position = self.pos;
        let n = self.u32(field)?;
        let needed = u64::from(n) * min_item as u64;
        let available = self.buf.len() - self.pos;
        if needed > available as u64 {
            return Err(ProtocolError::Truncated { field, position, needed, available });
        }
        Ok(n as usize)
    }
    fn finish(&self) -> Result<(), ProtocolError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            count => Err(ProtocolError::TrailingBytes { count }),
        }
    }
    /// A list of (topic, partition, offset).
    fn group_offsets(&mut self) -> Result<Vec<GroupOffset>, ProtocolError> {
        // The smallest entry is an empty topic name, a partition and an offset.
        let n = self.count("offset count", 2 + 4 + 8)?;
        let mut offsets = Vec::with_capacity(n);
        for _ in 0..n {
            offsets.push(GroupOffset {
                topic: self.string("topic name")?,
                partition: self.u32("partition")?,
                offset: self.u64("offset")?,
            });
        }
        Ok(offsets)
    }
    fn description(&mut self) -> Result<TopicDescription, ProtocolError> {
        let name = self.string("topic name")?;
        let n = self.count("partition count", PARTITION_DESCRIPTION_LEN)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(PartitionDescription {
                partition: self.u32("partition")?,
                log_start_offset: self.u64("log start offset")?,
                next_offset: self.u64("next offset")?,
                segments: self.u64("segments")?,
                size_bytes: self.u64("size bytes")?,
                offline: self.opt_string("partition offline reason")?,
            });
        }
        let offline = self.opt_string("topic offline reason")?;
        let topic_id = self.array::<16>("topic id")?;
        let configs = self.pairs("topic config")?;
        Ok(TopicDescription { name, partitions, offline, topic_id, configs })
    }
    /// A list of (name, value) string pairs.
    fn pairs(&mut self, field: &'static str) -> Result<Vec<(String, String)>, ProtocolError> {
        let n = self.count(field, CONFIG_PAIR_MIN_LEN)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.string(field)?, self.string(field)?));
        }
        Ok(pairs)
    }
    fn strings(&mut self, field: &'static str) -> Result<Vec<String>, ProtocolError> {
        let n = self.count(field, 2)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.string(field)?);
        }
        Ok(items)
    }
    fn config_entry(&mut self) -> Result<ConfigEntry, ProtocolError> {
        let name = self.string("config name")?;
        let value = self.opt_string("config value")?;
        let position = self.pos;
        let source = match self.u8("config source")? {
            0 => ConfigSource::Default,
            1 => ConfigSource::Broker,
            2 => ConfigSource::Topic,
            tag => {
                return Err(ProtocolError::InvalidOptionTag {
                    field: "config source",
                    position,
                    tag,
                });
            }
        };
        let read_only = self.bool("config read_only")?;
        let sensitive = self.bool("config sensitive")?;
        Ok(ConfigEntry { name, value, source, read_only, sensitive })
    }
}

/// Decodes a request body (the bytes after the frame prefix), copying byte fields out of it.
pub fn decode_request(body: &[u8]) -> Result<(u32, Request), ProtocolError> {
    decode_request_with(body, |r| Bytes::copy_from_slice(&body[r]))
}

/// Decodes a request body held in `Bytes`; byte fields (the records of an append) are slices of
/// it, not copies. Once the body and the request's other fields are dropped, the records can be
/// turned back into a `BytesMut` without a copy (`Bytes::try_into_mut`) and appended in place.
pub fn decode_request_bytes(body: &Bytes) -> Result<(u32, Request), ProtocolError> {
    decode_request_with(body, |r| body.slice(r))
}

fn decode_request_with(
    body: &[u8],
    to_bytes: impl Fn(Range<usize>) -> Bytes,
) -> Result<(u32, Request), ProtocolError> {
    let mut r = Reader { buf: body, pos: 0 };
    let correlation_id = r.u32("correlation id")?;
    let key = r.u8("api key")?;
    let key = ApiKey::from_u8(key).ok_or(ProtocolError::UnknownApiKey(key))?;
    let req = match key {
        ApiKey::Authenticate => Request::Authenticate { token: r.string("token")? },
        ApiKey::CreateTopic => Request::CreateTopic {
            name: r.string("topic name")?,
            partitions: r.u32("partitions")?,
            if_not_exists: r.bool("if_not_exists")?,
            configs: r.pairs("topic config")?,
        },
        ApiKey::DeleteTopic => Request::DeleteTopic { name: r.string("topic name")? },
        ApiKey::Trim => Request::Trim {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            before: r.u64("before")?,
        },
        ApiKey::Append => {
            let topic = r.string("topic name")?;
            let partition = if r.bool("partition")? { Some(r.u32("partition")?) } else { None };
            let key_hint =
                if r.bool("key hint")? { Some(to_bytes(r.bytes("key hint")?)) } else { None };
            let records = to_bytes(r.bytes("records")?);
            Request::Append { topic, partition, key_hint, records }
        }
        ApiKey::Fetch => Request::Fetch {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
            max_bytes: r.u32("max bytes")?,
            max_wait_ms: r.u32("max wait ms")?,
        },
        ApiKey::Describe => {
            let topic = if r.bool("topic")? { Some(r.string("topic name")?) } else { None };
            Request::Describe { topic }
        }
        ApiKey::ListTopics => Request::ListTopics,
        ApiKey::CommitOffset => Request::CommitOffset {
            group: r.string("group name")?,
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
        },
        ApiKey::FetchOffset => Request::FetchOffset {
            group: r.string("group name")?,
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
        },
        ApiKey::ListGroups => Request::ListGroups,
        ApiKey::GroupOffsets => Request::GroupOffsets { group: r.string("group name")? },
        ApiKey::AlterTopicConfigs => Request::AlterTopicConfigs {
            topic: r.string("topic name")?,
            set: r.pairs("config to set")?,
            delete: r.strings("config to delete")?,
        },
        ApiKey::DescribeTopicConfigs => {
            Request::DescribeTopicConfigs { topic: r.string("topic name")? }
        }
        ApiKey::AddPartitions => Request::AddPartitions {
            topic: r.string("topic name")?,
            total: r.u32("partition total")?,
        },
        ApiKey::DeleteGroup => Request::DeleteGroup { group: r.string("group name")? },
        ApiKey::DescribeGroup => Request::DescribeGroup { group: r.string("group name")? },
        ApiKey::ResetOffsets => {
            let group = r.string("group name")?;
            let offsets = r.group_offsets()?;
            Request::ResetOffsets { group, offsets }
        }
        ApiKey::OffsetForTimestamp => Request::OffsetForTimestamp {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            timestamp_ms: r.u64("timestamp")?,
        },
        ApiKey::ClusterStatus => Request::ClusterStatus,
        ApiKey::DescribePartitions => {
            Request::DescribePartitions { topic: r.opt_string("topic name")? }
        }
        ApiKey::CreateReplicatedTopic => {
            let name = r.string("topic name")?;
            let partitions = r.u32("partitions")?;
            let if_not_exists = r.bool("if_not_exists")?;
            let configs = r.pairs("topic config")?;
            let replication_factor = r.u16("replication factor")?;
            Request::CreateReplicatedTopic {
                name,
                partitions,
                replication_factor,
                if_not_exists,
                configs,
            }
        }
    };
    r.finish()?;
    Ok((correlation_id, req))
}

/// Decodes a response body (the bytes after the frame prefix), copying the records out of it.
pub fn decode_response(body: &[u8]) -> Result<(u32, Response), ProtocolError> {
    decode_response_with(body, |r| Bytes::copy_from_slice(&body[r]))
}

/// Decodes a response body held in `Bytes`; fetched records are a slice of it, not a copy.
pub fn decode_response_bytes(body: &Bytes) -> Result<(u32, Response), ProtocolError> {
    decode_response_with(body, |r| body.slice(r))
}

fn decode_response_with(
    body: &[u8],
    to_bytes: impl Fn(Range<usize>) -> Bytes,
) -> Result<(u32, Response), ProtocolError> {
    let mut r = Reader { buf: body, pos: 0 };
    let correlation_id = r.u32("correlation id")?;
    let status = r.u8("status")?;
    if status != 0 {
        let code = ErrorCode::from_u8(status).ok_or(ProtocolError::UnknownErrorCode(status))?;
        let message = r.string("error message")?;
        r.finish()?;
        return Ok((correlation_id, Response::Error { code, message }));
    }
    let kind = r.u8("response kind")?;
    let resp = match kind {
        k if k == ResponseKind::Ok as u8 => Response::Ok,
        k if k == ResponseKind::TopicCreated as u8 => {
            Response::TopicCreated { description: r.description()? }
        }
        k if k == ResponseKind::Appended as u8 => Response::Appended {
            partition: r.u32("partition")?,
            first_offset: r.u64("first offset")?,
            next_offset: r.u64("next offset")?,
        },
        k if k == ResponseKind::Fetched as u8 => Response::Fetched {
            partition: r.u32("partition")?,
            log_start_offset: r.u64("log start offset")?,
            high_watermark: r.u64("high watermark")?,
            records: to_bytes(r.bytes("records")?),
        },
        k if k == ResponseKind::Described as u8 => {
            // The smallest description is an empty name and no partitions.
            let n = r.count("topic count", TOPIC_DESCRIPTION_MIN_LEN)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                topics.push(r.description()?);
            }
            Response::Described { topics }
        }
        k if k == ResponseKind::Topics as u8 => {
            let n = r.count("name count", 2)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("topic name")?);
            }
            Response::Topics { names }
        }
        k if k == ResponseKind::Trimmed as u8 => {
            Response::Trimmed { log_start_offset: r.u64("log start offset")? }
        }
        k if k == ResponseKind::Offset as u8 => {
            let offset = if r.bool("offset")? { Some(r.u64("offset")?) } else { None };
            Response::Offset { offset }
        }
        k if k == ResponseKind::Groups as u8 => {
            let n = r.count("group count", 2)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("group name")?);
            }
            Response::Groups { names }
        }
        k if k == ResponseKind::GroupOffsets as u8 => {
            Response::GroupOffsets { offsets: r.group_offsets()? }
        }
        k if k == ResponseKind::GroupDescribed as u8 => {
            let state = r.string("group state")?;
            // The smallest member: three empty strings and no topics.
            let n = r.count("member count", 2 + 2 + 2 + 4)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let member_id = r.string("member id")?;
                let client_id = r.string("client id")?;
                let client_host = r.string("client host")?;
                let topics = r.count("assigned topic count", 2 + 4)?;
                let mut assigned = Vec::with_capacity(topics);
                for _ in 0..topics {
                    let topic = r.string("topic name")?;
                    let np = r.count("partition count", 4)?;
                    let mut partitions = Vec::with_capacity(np);
                    for _ in 0..np {
                        partitions.push(r.u32("partition")?);
                    }
                    assigned.push((topic, partitions));
                }
                members.push(GroupMember { member_id, client_id, client_host, assigned });
            }
            Response::GroupDescribed { status: GroupStatus { state, members } }
        }
        k if k == ResponseKind::TopicConfigs as u8 => {
            let n = r.count("config count", CONFIG_ENTRY_MIN_LEN)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(r.config_entry()?);
            }
            Response::TopicConfigs { entries }
        }
        k if k == ResponseKind::PartitionsAdded as u8 => {
            Response::PartitionsAdded { description: r.description()? }
        }
        k if k == ResponseKind::ClusterStatus as u8 => Response::ClusterStatus {
            status: ClusterInfo {
                node_id: r.i32("node id")?,
                clustered: r.bool("clustered")?,
                controller: r.opt_i32("controller")?,
                brokers: r.brokers()?,
                under_replicated: r.partition_states()?,
                offline: r.partition_states()?,
            },
        },
        k if k == ResponseKind::Partitions as u8 => {
            Response::Partitions { brokers: r.brokers()?, partitions: r.partition_states()? }
        }
        other => return Err(ProtocolError::UnknownResponseKind(other)),
    };
    r.finish()?;
    Ok((correlation_id, resp))
}

#[cfg(test)]
mod tests;
