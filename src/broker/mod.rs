//! The data directory: topics (a directory each) and their partitions, topic config, consumer-group
//! offsets, long-poll wake-ups, the background task (retention, interval fsync) and the log
//! cleaner's thread (compaction, `cleaner.rs`); and the consumer groups' live membership
//! (`coordinator`, in memory). Shared by the native server, the Kafka adapter and the console as
//! an `Arc<Broker>`. Never touches sockets or wire formats.
//!
//! # Layout
//! ```text
//! <data-dir>/
//!   <topic>/topic.json        {"partitions": N, "topic_id": UUID, "configs": {name: value}},
//!                             written temp + fsync + rename + fsync dir
//!   <topic>/<partition>/      one storage::Log each
//!   @groups/<group>.json      committed offsets of one consumer group
//! ```
//! Every path is built from a name that passed [`validate_topic_name`] / [`validate_group_name`]
//! (Kafka's rules: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`), so no request can name
//! a path outside its directory, and `@` (not a name character) keeps broker-internal entries
//! apart from topics. A topic is built in `@creating` and renamed into place, and deleted by
//! renaming it to `@deleting` before removal; leftovers of either are swept at open, so a crash
//! never leaves half a topic. A creation that fails (say, out of file descriptors while its logs
//! open) removes what it made before it returns the error.
//!
//! # Topic configs
//! A topic's configs (Kafka names, [`topic_config`]) are validated when set, kept in its
//! `topic.json` and laid over the broker's [`BrokerConfig::log`] to give each partition log its
//! [`LogConfig`]. An alter writes `topic.json` (durably) before it applies the new config to the
//! live logs ([`crate::storage::Log::set_config`]); adding partitions makes the new directories
//! durable before `topic.json` gets the new count (start-up sweeps empty directories past the
//! count). Each topic has a random UUID (its Kafka topic id), new when a topic is re-created.
//!
//! # Damage
//! Open never fails for one damaged topic or group, and never re-creates data: a partition whose
//! log does not open (a damaged segment or checkpoint, a missing directory) is offline, a topic
//! whose `topic.json` is unusable is offline as a whole, a group whose file is unusable is
//! offline; each is logged at error level, shown by `describe` and counted in the metrics, and
//! every request to it fails with the error naming the file. The rest is served.
//!
//! # Durability contract (per `--fsync` value)
//! For every policy, an acknowledged append (one whose `append` returned `Ok`) has been written to
//! the operating system: it survives a crash or `kill -9` of the broker process.
//! - `always` ([`FsyncPolicy::Always`]): the acknowledgement also waits for fdatasync (concurrent
//!   appends share one), so acknowledged messages survive power loss or an OS crash.
//! - `interval=MS` ([`FsyncPolicy::Interval`]): the background task fdatasyncs dirty logs every
//!   MS milliseconds; a power loss or OS crash loses at most the last MS of acknowledged appends.
//! - `never` ([`FsyncPolicy::Never`]): the OS decides when data reaches the disk (and logs are
//!   synced at clean shutdown); a power loss may lose any acknowledged append not yet written back.
//!
//! Committed group offsets and topic metadata are always fsynced before the call returns.
//!
//! # Visibility
//! A fetch (and `describe`'s next offset, the high watermark) reaches only the log's visible end
//! ([`crate::storage::Log::visible_end`]): under `always` what has been fdatasynced, so a
//! consumer never reads a record before its producer is acknowledged, nor one a failed fdatasync
//! may lose; under `interval` and `never` everything written.
//!
//! # Long-poll
//! Each partition has a `tokio::sync::Notify` signalled after every successful append, that is
//! once its records are visible (under `always`, after the fdatasync that made them durable; a
//! failed append signals nothing). [`Broker::fetch`] registers for it before reading, so an
//! append between the read and the wait is never missed, and sleeps until data arrives or
//! `max_wait` passes. No busy loop.
//!
//! # Metrics
//! The broker owns the [`Metrics`] its listeners record traffic into ([`Broker::metrics`]); every
//! partition log does its file work through a [`TimedFs`], so each fsync is counted and timed.
//!
//! # Blocking
//! Appends under `FsyncPolicy::Always` block on fdatasync. [`Broker::append`] runs an owned
//! batch ([`AppendBatch::Owned`], the native server's path) on the blocking pool; a borrowed one
//! runs in `block_in_place` on a multi-threaded tokio runtime (other tasks move to another
//! thread) and inline on a current-thread runtime. `create_topic`, `delete_topic`, `trim` and
//! `commit_offset` are synchronous file-system work: async callers should run them with
//! `spawn_blocking`.

mod cleaner;
mod consumer_groups;
pub use self::consumer_groups::{GroupLag, GroupMember, GroupStatus, PartitionLag};
pub(crate) mod coordinator;
mod fsutil;
mod groups;
pub mod partitioner;
pub(crate) mod producer_ids;
mod replica_access;
mod topic;
pub(crate) use topic::new_topic_id;
mod topic_admin;
pub mod topic_config;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, TimedFs};
use crate::record::NewRecord;
use crate::storage::{
    FileSystem, FsyncPolicy, LogConfig, OffsetRange, ReadSlice, RealFs, StorageError,
};

use self::coordinator::Coordinator;
pub(crate) use self::groups::position_to_committed;
use self::groups::{Committed, Groups, resolve_committed};
pub use self::groups::{EARLIEST_SENTINEL, LATEST_SENTINEL};
use self::topic::{Partition, Slot, Topic};
use self::topic_config::TopicConfigs;

pub use self::cleaner::{CleanerConfig, DEFAULT_CLEANER_BACKOFF, DirtyRatio};
pub use self::groups::GROUPS_DIR;
pub use self::topic::{MAX_NAME_LEN, format_topic_id, parse_topic_id, topic_id_text};

/// How often the background task applies retention.
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often idle idempotent producer ids are looked for.
const PRODUCER_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// Where a topic is built before it is renamed into place. One name serves every topic (the
/// admin lock makes creates one at a time) and keeps a 249-character topic name within the
/// file system's 255-byte name limit.
const CREATING_DIR: &str = "@creating";
/// Where a topic is moved before its files are removed.
const DELETING_DIR: &str = "@deleting";

/// Kafka's default `fetch.max.bytes`: 55 MiB.
pub const DEFAULT_FETCH_MAX_BYTES: u32 = 55 * 1024 * 1024;

/// How the broker is set up.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    /// Configuration of every partition log.
    pub log: LogConfig,
    /// Appends to a missing topic create it (with `default_partitions`).
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    pub max_topics: usize,
    pub max_partitions: u32,
    /// Most bytes of records one Kafka Fetch response carries, whatever the request asks (Kafka's
    /// `fetch.max.bytes`); at most the Kafka listener's frame limit.
    pub fetch_max_bytes: u32,
    /// The file system every partition log goes through (`None`: the real one). Tests pass a
    /// fault-injecting one (`storage::FaultyFs`) to prove what a producer sees when the disk fails.
    pub fs: Option<Arc<dyn FileSystem>>,
    /// An idempotent producer id idle this long is forgotten by every partition (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: u64,
    /// The log cleaner, which compacts topics whose `cleanup.policy` has `compact`.
    pub cleaner: CleanerConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            log: LogConfig::default(),
            auto_create_topics: false,
            default_partitions: 1,
            max_topics: 10_000,
            max_partitions: 1024,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
            fs: None,
            producer_id_expiration_ms: crate::storage::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            cleaner: CleanerConfig::default(),
        }
    }
}

/// One topic as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    /// Empty when the whole topic is offline.
    pub partitions: Vec<PartitionDescription>,
    /// Why the whole topic is offline (its `topic.json` cannot be used), naming the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<String>,
    /// The topic's UUID (Kafka's topic id), hyphenated hex in JSON; nil (and left out of JSON)
    /// when offline or unknown (the native protocol does not carry it yet).
    #[serde(default, with = "topic_id_json", skip_serializing_if = "topic_id_json::is_nil")]
    pub topic_id: [u8; 16],
    /// The configs set on the topic (not the defaults), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<(String, String)>,
}

impl TopicDescription {
    /// What a validate-only creation describes: the topic as it would be, empty, without an id.
    pub fn planned(name: &str, partitions: u32, configs: &TopicConfigs) -> TopicDescription {
        TopicDescription {
            name: name.to_owned(),
            partitions: (0..partitions)
                .map(|partition| PartitionDescription {
                    partition,
                    log_start_offset: 0,
                    next_offset: 0,
                    segments: 0,
                    size_bytes: 0,
                    offline: None,
                })
                .collect(),
            offline: None,
            topic_id: [0; 16],
            configs: configs.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        }
    }
}

/// A topic id in JSON: as Kafka shows it (URL-safe base64, 22 characters); the hyphenated hex
/// form is read too.
mod topic_id_json {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn is_nil(id: &[u8; 16]) -> bool {
        *id == [0; 16]
    }

    pub fn serialize<S: Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::topic_id_text(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_topic_id(&s)
            .or_else(|| super::topic::parse_topic_id_text(&s))
            .ok_or_else(|| D::Error::custom(format!("{s:?} is not a topic id")))
    }
}

/// One partition as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub segments: u64,
    pub size_bytes: u64,
    /// Why the partition is offline (its log did not open), naming the file; its offsets and
    /// sizes are then 0 (unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<String>,
}

/// A topic as `list_topics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

/// One batch for [`Broker::append`], in the form its caller holds it.
///
/// An append blocks under `FsyncPolicy::Always` (fdatasync) and when a batch is compressed (it is
/// decompressed to be checked, up to 256 MiB). Such an `Owned` append (the native server's
/// request bytes) moves to the blocking pool, so it never stalls an async worker whatever the
/// runtime; the borrowed forms cannot leave the task, so on a multi-threaded runtime they run in
/// `block_in_place` (other tasks move to another worker) and on a current-thread runtime inline.
#[derive(Debug)]
pub enum AppendBatch<'a> {
    /// Records to encode.
    Records(&'a [NewRecord<'a>]),
    /// RecordBatch v2s as a producer sent them: validated, their base offsets and leader epochs
    /// set in place, and the buffer written to disk as it is.
    Encoded(&'a mut [u8]),
    /// Like `Encoded`, for a buffer the caller hands over.
    Owned(bytes::BytesMut),
}

impl AppendBatch<'_> {
    fn is_empty(&self) -> bool {
        match self {
            AppendBatch::Records(records) => records.is_empty(),
            AppendBatch::Encoded(encoded) => encoded.is_empty(),
            AppendBatch::Owned(encoded) => encoded.is_empty(),
        }
    }
}

/// Where an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub partition: u32,
    pub offsets: OffsetRange,
    /// The time the broker stamped on the batches (a `message.timestamp.type=LogAppendTime`
    /// topic); `None` under `CreateTime` and for an idempotent producer's retry.
    pub log_append_time_ms: Option<i64>,
}

/// What a fetch found: stored record bytes (a slice of the segment mapping) and the partition's
/// bounds at the time of the read.
#[derive(Clone)]
pub struct FetchResult {
    pub partition: u32,
    pub records: ReadSlice,
    pub log_start_offset: u64,
    /// The end of what consumers may read (Kafka's high watermark on a single node): the log's
    /// visible end, durable under `FsyncPolicy::Always`.
    pub high_watermark: u64,
}

/// Errors of the broker layer; each names the topic, partition, group or file involved.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroupName { name: String, reason: &'static str },
    #[error("unknown topic {name:?}")]
    UnknownTopic { name: String },
    #[error("topic {name:?} already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    #[error("a topic needs at least one partition")]
    NoPartitions,
    #[error(
        "topic {topic:?} has {current} partitions; a new count must be greater, not {requested}"
    )]
    PartitionCountNotIncreased { topic: String, current: u32, requested: u32 },
    #[error("invalid config {name:?}: {reason}")]
    InvalidConfig { name: String, reason: String },
    #[error("{requested} partitions requested; the broker allows at most {max} per topic")]
    TooManyPartitions { requested: u32, max: u32 },
    #[error("cannot create topic {name:?}: the broker already holds its maximum of {max} topics")]
    TooManyTopics { name: String, max: usize },
    #[error("an append needs at least one record")]
    EmptyBatch,
    #[error("topic {topic:?} partition {partition}: {source}")]
    Storage {
        topic: String,
        partition: u32,
        #[source]
        source: StorageError,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt broker state in {}: {reason}", path.display())]
    CorruptState { path: PathBuf, reason: String },
    #[error(
        "topic {topic:?} partition {partition}: its directory {} is missing (restore it from a \
         backup, or delete the topic)",
        path.display()
    )]
    MissingPartitionDir { topic: String, partition: u32, path: PathBuf },
    #[error("topic {topic:?} is offline: {reason}")]
    TopicOffline { topic: String, reason: String },
    #[error("topic {topic:?} partition {partition} is offline: {reason}")]
    PartitionOffline { topic: String, partition: u32, reason: String },
    #[error("consumer group {group:?} is offline: {reason}")]
    GroupOffline { group: String, reason: String },
    #[error("consumer group {group:?} has live members ({}): stop its consumers first", members.join(", "))]
    GroupNotEmpty { group: String, members: Vec<String> },
    #[error("no consumer group {group:?} (no members, no committed offsets)")]
    UnknownGroup { group: String },
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error(
        "data directory {} is in use by another broker (it holds the lock on {})",
        path.display(),
        path.join(LOCK_FILE).display()
    )]
    DataDirInUse { path: PathBuf },
}

impl BrokerError {
    /// The offset and the partition's range when this is an out-of-range read or trim.
    pub fn offset_out_of_range(&self) -> Option<(u64, u64, u64)> {
        match self {
            BrokerError::Storage {
                source: StorageError::OffsetOutOfRange { offset, log_start_offset, next_offset },
                ..
            } => Some((*offset, *log_start_offset, *next_offset)),
            _ => None,
        }
    }
}

/// Checks a topic name against Kafka's rules; the error says which rule it breaks.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    match topic::name_problem(name) {
        Some(reason) => Err(BrokerError::InvalidTopicName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Checks a consumer-group name; the same rules as topic names.
pub fn validate_group_name(name: &str) -> Result<(), BrokerError> {
    groups::validate_group_name(name)
}

/// The background thread's stop flag.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The broker: every topic of a data directory and the consumer-group offsets. `Send + Sync`.
pub struct Broker {
    config: BrokerConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    groups: Groups,
    /// The consumer groups' live membership (Kafka's classic rebalance protocol).
    coordinator: Mutex<Coordinator>,
    /// Serializes create and delete, so two admins cannot race on one name.
    admin: Mutex<()>,
    shutting_down: AtomicBool,
    stop: Arc<Stop>,
    background: Mutex<Option<JoinHandle<()>>>,
    /// The log cleaner's thread (compaction).
    cleaner: cleaner::Cleaner,
    /// Shared with the listeners, which record traffic into it, and the HTTP server.
    metrics: Arc<Metrics>,
    /// Every partition log does its file work through this: the real file system, with each
    /// fsync timed into `metrics`.
    fs: Arc<dyn FileSystem>,
    /// Producer ids for InitProducerId, unique for the life of the data directory.
    producer_ids: producer_ids::ProducerIds,
    /// Holds the data directory's exclusive lock for as long as the broker lives.
    _lock: fs::File,
}

/// Locks a std mutex; the data it guards (unit, a join handle) cannot be left inconsistent by a
/// panic, so a poisoned lock is simply taken over.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// Opens the data directory (creating it if missing), recovers every topic's logs, loads the
    /// group offsets and starts the background thread (retention, interval fsync).
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let data_dir = &config.data_dir;
        let metrics = Arc::new(Metrics::new());
        // Every log does its file work through the timing wrapper, over the injected file system
        // (tests' fault injection) or the real one.
        let inner: Arc<dyn FileSystem> = config.fs.clone().unwrap_or_else(|| Arc::new(RealFs));
        let fs: Arc<dyn FileSystem> = Arc::new(TimedFs::new(inner, metrics.clone()));
        fsutil::create_dir_durably(data_dir)?;
        // Before anything is read or repaired: two brokers appending to one log would corrupt it.
        let lock_file = lock_data_dir(data_dir)?;
        let mut topics = BTreeMap::new();
        let entries = fs::read_dir(data_dir).map_err(|source| BrokerError::Io {
            path: data_dir.clone(),
            op: "list",
            source,
        })?;
        let mut swept = false;
        for entry in entries {
            let entry = entry.map_err(|source| BrokerError::Io {
                path: data_dir.clone(),
                op: "list",
                source,
            })?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "ignoring an entry with a non-UTF-8 name");
                continue;
            };
            if name == CREATING_DIR || name == DELETING_DIR {
                tracing::info!(path = %path.display(), "removing an interrupted create/delete");
                fs::remove_dir_all(&path).map_err(|source| BrokerError::Io {
                    path: path.clone(),
                    op: "remove",
                    source,
                })?;
                swept = true;
                continue;
            }
            if name.starts_with('@') || !path.is_dir() {
                continue;
            }
            if let Err(e) = validate_topic_name(&name) {
                tracing::warn!(path = %path.display(), "ignoring a directory that is not a topic: {e}");
                continue;
            }
            let t = if path.join(topic::TOPIC_FILE).exists() {
                Topic::load(&name, path, &config.log, &fs, config.max_partitions)
            } else if path.join("0").is_dir() {
                // Partitions without their topic.json: a topic whose file was lost.
                let reason = format!("{} is missing", path.join(topic::TOPIC_FILE).display());
                tracing::error!(topic = %name, "topic offline: {reason}");
                Topic::offline(&name, path, reason)
            } else {
                tracing::warn!(path = %path.display(), "ignoring a directory without topic.json");
                continue;
            };
            topics.insert(name, Arc::new(t));
        }
        if swept {
            fsutil::sync_dir(data_dir)?;
        }
        let groups = Groups::open(data_dir)?;
        let offline_topics = topics.values().filter(|t| t.offline.is_some()).count();
        let offline_partitions: usize = topics.values().map(|t| t.offline_count()).sum();
        let offline_groups = groups.offline().len();
        if offline_topics + offline_partitions + offline_groups > 0 {
            tracing::error!(
                offline_topics,
                offline_partitions,
                offline_groups,
                "damaged data is offline (see the errors above); the rest is served"
            );
        }
        tracing::info!(
            data_dir = %data_dir.display(),
            topics = topics.len(),
            "broker opened"
        );
        // After the lock: two brokers must never share the id allocator.
        let producer_ids =
            producer_ids::ProducerIds::open_with(fs.clone(), data_dir).map_err(|e| {
                BrokerError::CorruptState {
                    path: data_dir.join(producer_ids::PRODUCER_IDS_FILE),
                    reason: e.to_string(),
                }
            })?;
        let broker = Arc::new(Broker {
            config,
            producer_ids,
            topics: RwLock::new(topics),
            groups,
            coordinator: Mutex::new(Coordinator::new()),
            admin: Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            stop: Arc::new(Stop::default()),
            background: Mutex::new(None),
            cleaner: cleaner::Cleaner::default(),
            metrics,
            fs,
            _lock: lock_file,
        });
        let handle = spawn_background(Arc::downgrade(&broker), broker.stop.clone(), broker.tick())
            .map_err(|source| BrokerError::Io {
                path: broker.config.data_dir.clone(),
                op: "start the background thread for",
                source,
            })?;
        *lock(&broker.background) = Some(handle);
        broker.cleaner.start(Arc::downgrade(&broker), &broker.config.cleaner).map_err(
            |source| BrokerError::Io {
                path: broker.config.data_dir.clone(),
                op: "start the log cleaner thread for",
                source,
            },
        )?;
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The broker's metrics: listeners record their traffic here, `/metrics` exposes it.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(name).cloned().ok_or_else(|| BrokerError::UnknownTopic { name: name.to_owned() })
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(BrokerError::ShuttingDown);
        }
        Ok(())
    }

    /// Creates a topic with `partitions` partitions (1..=max_partitions) and `configs` laid over
    /// the broker's log config. `validate_only` makes every check (name, count, configs, limits)
    /// and creates nothing: the description it returns has empty partitions and a nil id.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, BrokerError> {
        self.create_topic_as(name, None, partitions, configs, validate_only)
    }

    /// Removes the directory of a topic whose creation failed, best effort: it is renamed to
    /// `@deleting` first (no file descriptor needed, and start-up sweeps it if removal fails).
    fn discard_dir(&self, dir: &Path) {
        let tomb = self.config.data_dir.join(DELETING_DIR);
        if tomb.exists()
            && let Err(e) = fs::remove_dir_all(&tomb)
        {
            tracing::warn!(path = %tomb.display(), "removing: {e}");
        }
        let gone = match fs::rename(dir, &tomb) {
            Ok(()) => {
                if let Err(e) = fsutil::sync_dir(&self.config.data_dir) {
                    tracing::warn!("{e}");
                }
                fs::remove_dir_all(&tomb).map_err(|e| (tomb.clone(), e))
            }
            Err(_) => fs::remove_dir_all(dir).map_err(|e| (dir.to_path_buf(), e)),
        };
        if let Err((path, e)) = gone {
            tracing::error!(
                path = %path.display(),
                "cannot remove a failed topic (start-up sweeps @deleting): {e}"
            );
        }
    }

    /// Deletes a topic: its logs are closed, waiting fetches return, its directory is removed
    /// and the groups' committed offsets for it are dropped.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        validate_topic_name(name)?;
        let _admin = lock(&self.admin);
        self.check_open()?;
        let t = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic { name: name.to_owned() })?;
        for (i, p) in t.online() {
            p.close();
            if let Err(e) = p.log.close() {
                tracing::warn!(topic = name, partition = i, "closing a deleted partition: {e}");
            }
        }
        let tomb = self.config.data_dir.join(DELETING_DIR);
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| BrokerError::Io { path, op, source }
        };
        if tomb.exists() {
            fs::remove_dir_all(&tomb).map_err(io(&tomb, "remove"))?;
        }
        fs::rename(&t.dir, &tomb).map_err(io(&t.dir, "rename for deletion"))?;
        fsutil::sync_dir(&self.config.data_dir)?;
        fs::remove_dir_all(&tomb).map_err(io(&tomb, "remove"))?;
        self.groups.forget_topic(name)?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Every topic and its partition count, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicSummary> {
        self.all_topics()
            .iter()
            .map(|t| TopicSummary { name: t.name.clone(), partitions: t.partition_count() })
            .collect()
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        validate_topic_name(name)?;
        Ok(self.topic(name)?.describe())
    }

    /// Every topic's description, sorted by name.
    pub fn describe_all(&self) -> Vec<TopicDescription> {
        self.all_topics().iter().map(|t| t.describe()).collect()
    }

    pub fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        validate_topic_name(topic)?;
        Ok(self.topic(topic)?.partition_count())
    }

    /// The topic to append to, created first when missing and the broker allows it.
    fn topic_for_append(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        validate_topic_name(name)?;
        match self.topic(name) {
            Err(BrokerError::UnknownTopic { .. }) if self.config.auto_create_topics => {
                let partitions = self.config.default_partitions;
                match self.create_topic(name, partitions, TopicConfigs::default(), false) {
                    Ok(_) | Err(BrokerError::TopicAlreadyExists { .. }) => self.topic(name),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    /// Picks the partition: the one asked for, else murmur2 of the key, else round-robin.
    fn route(
        &self,
        topic: &str,
        partition: Option<u32>,
        key_hint: Option<&[u8]>,
    ) -> Result<(u32, Arc<Partition>), BrokerError> {
        self.check_open()?;
        let t = self.topic_for_append(topic)?;
        t.ensure_online()?;
        let n = t.partition_count();
        let p = match (partition, key_hint) {
            (Some(p), _) => p,
            (None, Some(key)) => partitioner::partition_for_key(key, n),
            (None, None) => t.next_partition.fetch_add(1, Ordering::Relaxed) % n,
        };
        Ok((p, t.partition(p)?.clone()))
    }

    /// Whether appending `bytes` blocks: an fdatasync (`FsyncPolicy::Always`) or the
    /// decompression of a compressed batch to check it.
    fn append_blocks(&self, bytes: &[u8]) -> bool {
        matches!(self.config.log.fsync, FsyncPolicy::Always) || crate::batch::any_compressed(bytes)
    }

    /// Runs an append; when it `blocks`, on a multi-threaded runtime it runs in `block_in_place`
    /// to keep the worker's other tasks moving. (On a current-thread runtime there is no other
    /// worker to hand them to; it runs inline.)
    fn run_append<R>(&self, blocks: bool, f: impl FnOnce() -> R) -> R {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let blocking = blocks
            && Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if blocking { tokio::task::block_in_place(f) } else { f() }
    }

    fn finish_append(
        &self,
        topic: &str,
        partition: u32,
        p: &Partition,
        result: Result<(OffsetRange, Option<i64>), StorageError>,
    ) -> Result<AppendResult, BrokerError> {
        let (offsets, log_append_time_ms) = result.map_err(|source| match source {
            StorageError::Closed { .. } if p.is_closed() => {
                if self.shutting_down.load(Ordering::SeqCst) {
                    BrokerError::ShuttingDown
                } else {
                    BrokerError::UnknownTopic { name: topic.to_owned() }
                }
            }
            source => BrokerError::Storage { topic: topic.to_owned(), partition, source },
        })?;
        // Under Always the append returned after its fdatasync: its records are visible now.
        p.appended.notify_waiters();
        Ok(AppendResult { partition, offsets, log_append_time_ms })
    }

    /// Appends one batch to one partition. `partition: None` picks by murmur2 of `key_hint`
    /// (Kafka's default partitioner) or round-robin when there is no key. Auto-creates the topic
    /// when the broker allows it. Durable per the LogConfig's fsync policy when it returns. See
    /// [`AppendBatch`] for the forms a batch comes in and where each one's fsync waits.
    pub async fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        key_hint: Option<&[u8]>,
        batch: AppendBatch<'_>,
    ) -> Result<AppendResult, BrokerError> {
        if batch.is_empty() {
            return Err(BrokerError::EmptyBatch);
        }
        let (pi, p) = self.route(topic, partition, key_hint)?;
        let result = match batch {
            AppendBatch::Records(records) => {
                let blocks = matches!(self.config.log.fsync, FsyncPolicy::Always);
                let built = crate::record::build_batch(records, crate::batch::Compression::None)
                    .map_err(|source| BrokerError::Storage {
                        topic: topic.to_owned(),
                        partition: pi,
                        source: StorageError::InvalidBatch { batch: 0, source },
                    });
                let mut bytes = built?;
                self.run_append(blocks, || p.log.append_batches_timed(&mut bytes))
            }
            AppendBatch::Encoded(encoded) => {
                self.run_append(self.append_blocks(encoded), || p.log.append_batches_timed(encoded))
            }
            AppendBatch::Owned(mut encoded) => {
                if self.append_blocks(&encoded) {
                    let log = p.log.clone();
                    let task =
                        tokio::task::spawn_blocking(move || log.append_batches_timed(&mut encoded));
                    match task.await {
                        Ok(r) => r,
                        Err(join) => {
                            return Err(BrokerError::Io {
                                path: p.log.dir().to_path_buf(),
                                op: "append (the blocking task failed)",
                                source: std::io::Error::other(join.to_string()),
                            });
                        }
                    }
                } else {
                    p.log.append_batches_timed(&mut encoded)
                }
            }
        };
        self.finish_append(topic, pi, &p, result)
    }

    /// Reads records from `offset` (at most about `max_bytes`, but always at least one whole
    /// record when one exists). Long-poll: when fewer than `min_bytes` are available it waits, up
    /// to `max_wait`, for an append to the partition, without busy looping. `min_bytes == 0`
    /// never waits. Returns early (with what there is) when the topic is deleted or the broker
    /// shuts down.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
    ) -> Result<FetchResult, BrokerError> {
        validate_topic_name(topic)?;
        let p = self.topic(topic)?.partition(partition)?.clone();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Register for the wake-up before reading, so an append landing between the read
            // and the wait still wakes us.
            let notified = p.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let records = p.log.read(offset, max_bytes).map_err(|source| match source {
                StorageError::Closed { .. } => BrokerError::UnknownTopic { name: topic.to_owned() },
                source => BrokerError::Storage { topic: topic.to_owned(), partition, source },
            })?;
            let done = min_bytes == 0
                || records.len() >= min_bytes
                || p.is_closed()
                || tokio::time::Instant::now() >= deadline;
            if done {
                return Ok(FetchResult {
                    partition,
                    records,
                    log_start_offset: p.log.log_start_offset(),
                    high_watermark: p.log.visible_end(),
                });
            }
            // Timing out just loops once more: the re-read then returns whatever is there.
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// A new idempotent producer id, never handed out before by this data directory. Blocks on a
    /// small fsync once per 1,000 ids.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        self.producer_ids.next().map_err(|e| BrokerError::Io {
            path: self.config.data_dir.join(producer_ids::PRODUCER_IDS_FILE),
            op: "reserve producer ids in",
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Forgets producer ids idle past `producer_id_expiration_ms` in every partition.
    fn expire_producers(&self) -> usize {
        let max_idle = self.config.producer_id_expiration_ms;
        let mut expired = 0;
        for t in self.all_topics() {
            for (_, p) in t.online() {
                expired += p.log.expire_producers(max_idle);
            }
        }
        expired
    }

    /// Deletes the records below `before` (Kafka's delete-records) and returns the new log start
    /// offset.
    pub fn trim(&self, topic: &str, partition: u32, before: u64) -> Result<u64, BrokerError> {
        validate_topic_name(topic)?;
        self.check_open()?;
        let p = self.topic(topic)?.partition(partition)?.clone();
        let storage = |source| BrokerError::Storage { topic: topic.to_owned(), partition, source };
        p.log.trim_before(before).map_err(storage)?;
        Ok(p.log.log_start_offset())
    }

    /// The (timestamp, offset) of the first record whose timestamp is at or after `ts_ms`, if
    /// any.
    pub fn record_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        ts_ms: i64,
    ) -> Result<Option<(i64, u64)>, BrokerError> {
        validate_topic_name(topic)?;
        let p = self.topic(topic)?.partition(partition)?.clone();
        p.log.record_for_timestamp(ts_ms).map_err(|source| BrokerError::Storage {
            topic: topic.to_owned(),
            partition,
            source,
        })
    }

    /// The (timestamp, offset) of the first visible record with the largest timestamp (Kafka's
    /// ListOffsets `MAX_TIMESTAMP`), if any record is visible.
    pub fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(i64, u64)>, BrokerError> {
        validate_topic_name(topic)?;
        let p = self.topic(topic)?.partition(partition)?.clone();
        p.log.max_timestamp_offset().map_err(|source| BrokerError::Storage {
            topic: topic.to_owned(),
            partition,
            source,
        })
    }

    /// Applies retention to every partition now (the background task does this every
    /// [`RETENTION_CHECK_INTERVAL`]); returns the number of segments removed.
    pub fn enforce_retention(&self) -> usize {
        let now = crate::record::now_ms();
        let mut removed = 0;
        for t in self.all_topics() {
            for (i, p) in t.online() {
                match p.log.enforce_retention(now) {
                    Ok(n) => removed += n,
                    Err(e) => tracing::warn!(topic = %t.name, partition = i, "retention: {e}"),
                }
            }
        }
        removed
    }

    /// Fsyncs every log with unsynced appends (the interval policy's ticker).
    fn sync_dirty(&self) {
        for t in self.all_topics() {
            for (i, p) in t.online() {
                if let Err(e) = p.log.sync_if_dirty() {
                    tracing::error!(topic = %t.name, partition = i, "interval fsync failed: {e}");
                }
            }
        }
    }

    /// The background thread's period.
    fn tick(&self) -> Duration {
        match self.config.log.fsync {
            FsyncPolicy::Interval(d) => d.clamp(Duration::from_millis(1), RETENTION_CHECK_INTERVAL),
            _ => RETENTION_CHECK_INTERVAL,
        }
    }

    /// Stops the background thread, wakes waiting fetches, syncs and closes every log (writing
    /// the clean-shutdown markers). Later appends fail with `ShuttingDown`. Idempotent.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        let _admin = lock(&self.admin);
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        *lock(&self.stop.stopped) = true;
        self.stop.wake.notify_all();
        if let Some(handle) = lock(&self.background).take()
            && handle.join().is_err()
        {
            tracing::error!("the broker's background thread panicked");
        }
        // Before the logs close: a compaction in progress finishes first.
        self.cleaner.stop();
        let mut first_error = None;
        for t in self.all_topics() {
            for (i, p) in t.online() {
                p.close();
                if let Err(source) = p.log.close() {
                    tracing::error!(topic = %t.name, partition = i, "close failed: {source}");
                    first_error.get_or_insert(BrokerError::Storage {
                        topic: t.name.clone(),
                        partition: i as u32,
                        source,
                    });
                }
            }
        }
        tracing::info!(data_dir = %self.config.data_dir.display(), "broker shut down");
        first_error.map_or(Ok(()), Err)
    }
}

/// The file in the data directory a broker holds an exclusive `flock` on while it runs.
pub const LOCK_FILE: &str = "@lock";
/// How long opening waits for the lock: a broker of this process that is being dropped (or one
/// finishing its shutdown) lets go of it within moments.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the data directory's exclusive lock, or says which directory is in use. The lock is
/// the kernel's (`flock`), so it goes away with the process however that ends (even SIGKILL):
/// a stale lock file never keeps a broker from starting.
fn lock_data_dir(dir: &Path) -> Result<fs::File, BrokerError> {
    let path = dir.join(LOCK_FILE);
    let io = |op, source| BrokerError::Io { path: path.clone(), op, source };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("open", e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(BrokerError::DataDirInUse { path: dir.to_path_buf() });
            }
            Err(e) => return Err(io("lock", e.into())),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Let the background thread notice promptly; it holds only a Weak reference.
        *lock(&self.stop.stopped) = true;
        self.stop.wake.notify_all();
        self.cleaner.signal_stop();
    }
}

/// The background thread: interval fsync and retention. It holds a `Weak` so a dropped broker is
/// not kept alive, and exits when stopped.
fn spawn_background(
    broker: Weak<Broker>,
    stop: Arc<Stop>,
    tick: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("minikafka-broker-bg".into()).spawn(move || {
        let mut last_retention = Instant::now();
        let mut last_expiry = Instant::now();
        loop {
            {
                let stopped = lock(&stop.stopped);
                let (stopped, _) = stop
                    .wake
                    .wait_timeout_while(stopped, tick, |s| !*s)
                    .unwrap_or_else(|e| e.into_inner());
                if *stopped {
                    return;
                }
            }
            let Some(b) = broker.upgrade() else { return };
            if matches!(b.config.log.fsync, FsyncPolicy::Interval(_)) {
                b.sync_dirty();
            }
            if last_expiry.elapsed() >= PRODUCER_EXPIRY_INTERVAL {
                last_expiry = Instant::now();
                let expired = b.expire_producers();
                if expired > 0 {
                    tracing::info!(producers = expired, "forgot idle idempotent producer ids");
                }
            }
            // Every interval, whatever the broker's flags: a topic may set its own retention
            // (a log without any returns at once).
            if last_retention.elapsed() >= RETENTION_CHECK_INTERVAL {
                last_retention = Instant::now();
                let removed = b.enforce_retention();
                if removed > 0 {
                    tracing::info!(segments = removed, "retention removed segments");
                }
            }
        }
    })
}
