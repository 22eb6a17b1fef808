//! One topic: its validated name, its directory, `topic.json` (the partition count, the topic id
//! and the configs set on it) and one [`Partition`] (a log plus its long-poll wake-up) per
//! partition. Never decides routing or retention; the broker does.
//!
//! # Upgrade
//! A `topic.json` of an earlier release holds only `{"partitions": N}`: opening it gives the topic
//! a new random id and writes it back (temp + rename), so the id stays the same from then on.
//!
//! # Adding partitions
//! The broker creates the new partition directories (empty) first and writes the new count to
//! `topic.json` after, so a crash in between leaves empty directories past the count: opening
//! removes those as an interrupted add, and the topic opens with its old count.
//!
//! # Damage
//! Opening at start-up never re-creates data and never fails the broker: a partition whose
//! directory is missing or whose log does not open (a damaged segment or checkpoint) is
//! *offline*, and a `topic.json` that does not parse, claims more partitions than the broker
//! allows, holds an id that is not a UUID or a config Kafka would refuse, or disagrees with the
//! partition directories present makes the whole topic offline.
//! Offline parts keep the error (naming the file) that requests to them report; their files are
//! left untouched for the operator.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::topic_config::TopicConfigs;
use super::{BrokerError, PartitionDescription, TopicDescription, fsutil};
use crate::storage::{FileSystem, Log, LogConfig};

/// Name of the file holding a topic's configuration.
pub(crate) const TOPIC_FILE: &str = "topic.json";
/// Largest `topic.json` read: it holds a count, an id and a dozen short configs, so anything
/// bigger is damage, and reading it whole must not cost memory.
const MAX_TOPIC_FILE_BYTES: u64 = 256 * 1024;
/// Longest topic or group name (Kafka's limit).
pub const MAX_NAME_LEN: usize = 249;

/// Why `name` breaks Kafka's naming rules, if it does.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 249 characters")
    } else if name == "." || name == ".." {
        Some("must not be \".\" or \"..\"")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        Some("may only contain ASCII letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}

/// A new random topic id: a UUID v4, never the nil UUID nor Kafka's reserved metadata topic id
/// (`0..01`): the version bits rule both out.
pub(crate) fn new_topic_id() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// A topic id as the usual hyphenated lowercase hex (`8-4-4-4-12`), as `topic.json` keeps it.
pub fn format_topic_id(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// Parses the hyphenated hex form of a topic id.
pub fn parse_topic_id(s: &str) -> Option<[u8; 16]> {
    // `try_parse` also takes the simple, braced and URN forms; topic.json only ever holds this one.
    let lens: Vec<usize> = s.split('-').map(str::len).collect();
    if lens != [8, 4, 4, 4, 12] {
        return None;
    }
    uuid::Uuid::try_parse(s).ok().map(|u| u.into_bytes())
}

/// A topic id as Kafka shows one (`Uuid.toString()`, e.g. in `kafka-topics.sh --describe`): the
/// 16 bytes in URL-safe base64 without padding, 22 characters. What users see (CLI, console,
/// JSON); `topic.json` keeps the hex form.
pub fn topic_id_text(id: &[u8; 16]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// Parses a topic id in the form [`topic_id_text`] prints.
pub(crate) fn parse_topic_id_text(s: &str) -> Option<[u8; 16]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    bytes.try_into().ok()
}

/// What `topic.json` holds (`topic_id` and `configs` are absent in files of earlier releases).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub partitions: u32,
    /// Hyphenated hex UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// The Kafka config names set on the topic and their values.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// A `topic.json` as read and checked: the id (new when the file had none) and parsed configs.
pub(crate) struct LoadedMeta {
    pub partitions: u32,
    pub id: [u8; 16],
    pub configs: TopicConfigs,
    /// The file had no id: it must be written back.
    pub id_is_new: bool,
}

impl TopicMeta {
    pub(crate) fn new(partitions: u32, id: &[u8; 16], configs: &TopicConfigs) -> TopicMeta {
        TopicMeta { partitions, topic_id: Some(format_topic_id(id)), configs: configs.to_map() }
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<(), BrokerError> {
        // Serializing a struct of an integer, strings and a string map cannot fail.
        let json = serde_json::to_vec_pretty(self).expect("TopicMeta serializes");
        fsutil::write_atomically(&dir.join(TOPIC_FILE), &json)
    }

    /// Reads `topic.json` and checks every field: the id's form and the configs with Kafka's
    /// rules (the file is untrusted). A missing id is made up (`id_is_new`).
    pub(crate) fn load(dir: &Path, max_partitions: u32) -> Result<LoadedMeta, BrokerError> {
        let meta = TopicMeta::read(dir, max_partitions)?;
        let path = dir.join(TOPIC_FILE);
        let corrupt = |reason: String| BrokerError::CorruptState { path: path.clone(), reason };
        let (id, id_is_new) = match &meta.topic_id {
            Some(s) => (
                parse_topic_id(s)
                    .ok_or_else(|| corrupt(format!("topic_id {s:?} is not a UUID")))?,
                false,
            ),
            None => (new_topic_id(), true),
        };
        let configs = TopicConfigs::from_map(meta.configs).map_err(|e| corrupt(e.to_string()))?;
        Ok(LoadedMeta { partitions: meta.partitions, id, configs, id_is_new })
    }

    /// Reads and checks `topic.json`: the count must be 1..=`max_partitions` (checked before
    /// anything is allocated from it: the file is untrusted).
    pub(crate) fn read(dir: &Path, max_partitions: u32) -> Result<TopicMeta, BrokerError> {
        let path = dir.join(TOPIC_FILE);
        let io = |op| {
            let path = path.clone();
            move |source| BrokerError::Io { path, op, source }
        };
        let len = fs::metadata(&path).map_err(io("read"))?.len();
        if len > MAX_TOPIC_FILE_BYTES {
            return Err(BrokerError::CorruptState {
                path,
                reason: format!("{len} bytes, more than a topic.json ever holds"),
            });
        }
        let bytes = fs::read(&path).map_err(io("read"))?;
        let meta: TopicMeta = serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::CorruptState { path: path.clone(), reason: e.to_string() })?;
        if meta.partitions == 0 {
            return Err(BrokerError::CorruptState { path, reason: "partitions is 0".into() });
        }
        if meta.partitions > max_partitions {
            return Err(BrokerError::CorruptState {
                path,
                reason: format!(
                    "it claims {} partitions, more than the broker allows per topic ({max_partitions})",
                    meta.partitions
                ),
            });
        }
        Ok(meta)
    }
}

/// Removes the empty partition directories past the count: what an add of partitions that
/// crashed before writing `topic.json` leaves (see the module doc). A directory past the count
/// that holds anything is left for [`check_partition_dirs`] to report.
fn sweep_interrupted_add(dir: &Path, partitions: u32) -> Result<(), BrokerError> {
    let entries = fs::read_dir(dir).map_err(|source| BrokerError::Io {
        path: dir.to_path_buf(),
        op: "list",
        source,
    })?;
    let mut swept = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let past = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok().filter(|p| p.to_string() == n))
            .is_some_and(|p| p >= partitions);
        let path = entry.path();
        let empty = path.is_dir() && fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        if past && empty {
            tracing::info!(path = %path.display(), "removing a partition directory of an interrupted add");
            fs::remove_dir(&path).map_err(|source| BrokerError::Io {
                path: path.clone(),
                op: "remove",
                source,
            })?;
            swept = true;
        }
    }
    if swept {
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// Checks that the partition directories of `dir` are exactly `0..partitions`, up to holes
/// (a hole is one offline partition). Directories that end before the count, or one past it,
/// mean `topic.json` and the data disagree: which one is right is the operator's call.
fn check_partition_dirs(dir: &Path, partitions: u32) -> Result<(), BrokerError> {
    let entries = fs::read_dir(dir).map_err(|source| BrokerError::Io {
        path: dir.to_path_buf(),
        op: "list",
        source,
    })?;
    let mut highest: Option<u32> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(p) =
            name.to_str().and_then(|n| n.parse::<u32>().ok().filter(|p| p.to_string() == n))
        else {
            continue;
        };
        if entry.path().is_dir() {
            highest = highest.max(Some(p));
        }
    }
    let path = dir.join(TOPIC_FILE);
    let reason = match highest {
        None => format!("it claims {partitions} partitions but no partition directory exists"),
        Some(h) if h >= partitions => {
            format!("it claims {partitions} partitions but a directory of partition {h} exists")
        }
        Some(h) if h + 1 < partitions => format!(
            "it claims {partitions} partitions but partition directories exist only up to {h}"
        ),
        Some(_) => return Ok(()),
    };
    Err(BrokerError::CorruptState { path, reason })
}

/// One partition: its log and the wake-up that long-polling fetches wait on.
pub(crate) struct Partition {
    pub(crate) log: Arc<Log>,
    /// Signalled after every append (and when the partition closes).
    pub(crate) appended: Arc<Notify>,
    /// Set when the topic is deleted or the broker shuts down; waiting fetches return.
    pub(crate) closed: AtomicBool,
}

impl Partition {
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.appended.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// One partition slot of a topic: its log, or why it could not be opened.
#[derive(Clone)]
pub(crate) enum Slot {
    Online(Arc<Partition>),
    /// The error that kept the partition from opening, naming the file.
    Offline(String),
}

pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    /// The topic's UUID (Kafka's topic id); nil when the whole topic is offline.
    pub(crate) id: [u8; 16],
    /// The configs set on the topic.
    pub(crate) configs: TopicConfigs,
    /// One per partition; empty when the whole topic is offline.
    pub(crate) slots: Vec<Slot>,
    /// Why the whole topic is offline (`topic.json` unusable), naming the file.
    pub(crate) offline: Option<String>,
    /// Round-robin cursor for appends with neither a partition nor a key.
    pub(crate) next_partition: AtomicU32,
}

pub(crate) fn open_log(
    name: &str,
    pdir: PathBuf,
    p: u32,
    log: &LogConfig,
    fs: &Arc<dyn FileSystem>,
) -> Result<Partition, BrokerError> {
    let storage = |source| BrokerError::Storage { topic: name.to_owned(), partition: p, source };
    if !pdir.is_dir() {
        // The log would create it empty at offset 0, reusing offsets consumers have seen.
        return Err(BrokerError::MissingPartitionDir {
            topic: name.to_owned(),
            partition: p,
            path: pdir,
        });
    }
    let log = Log::open_with_fs(pdir, log.clone(), fs.clone()).map_err(storage)?;
    Ok(Partition {
        log: Arc::new(log),
        appended: Arc::new(Notify::new()),
        closed: AtomicBool::new(false),
    })
}

/// Why a partition that failed to open is offline, without the topic and partition (the
/// offline error that carries it names them).
fn offline_reason(e: &BrokerError) -> String {
    match e {
        BrokerError::Storage { source, .. } => source.to_string(),
        BrokerError::MissingPartitionDir { path, .. } => format!(
            "its directory {} is missing (restore it from a backup, or delete the topic)",
            path.display()
        ),
        other => other.to_string(),
    }
}

impl Topic {
    /// Opens a topic just built by `create_topic`: any failure is the creation's failure (the
    /// caller removes the directory), so nothing half-made stays behind. `log` is the broker's
    /// default; the topic's configs are laid over it.
    pub(crate) fn open_new(
        name: &str,
        dir: PathBuf,
        log: &LogConfig,
        fs: &Arc<dyn FileSystem>,
        max_partitions: u32,
    ) -> Result<Topic, BrokerError> {
        let meta = TopicMeta::load(&dir, max_partitions)?;
        let log = meta.configs.apply(log);
        let mut slots = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let partition = open_log(name, dir.join(p.to_string()), p, &log, fs)?;
            slots.push(Slot::Online(Arc::new(partition)));
        }
        Ok(Topic::new(name, dir, meta.id, meta.configs, slots, None))
    }

    /// Opens a topic found at start-up. Never fails: a damaged `topic.json` makes the topic
    /// offline, a partition that does not open makes that partition offline; each is logged at
    /// error level with the file it names. A `topic.json` without an id (an earlier release's)
    /// gets one written back.
    pub(crate) fn load(
        name: &str,
        dir: PathBuf,
        log: &LogConfig,
        fs: &Arc<dyn FileSystem>,
        max_partitions: u32,
    ) -> Topic {
        let meta = TopicMeta::load(&dir, max_partitions).and_then(|meta| {
            sweep_interrupted_add(&dir, meta.partitions)?;
            check_partition_dirs(&dir, meta.partitions)?;
            if meta.id_is_new {
                let id = format_topic_id(&meta.id);
                // A write that fails (say, a full disk) does not take the topic offline: it is
                // served with this id, and the next start-up makes up another and tries again.
                match TopicMeta::new(meta.partitions, &meta.id, &meta.configs).write(&dir) {
                    Ok(()) => tracing::info!(topic = name, id, "gave the topic an id"),
                    Err(e) => {
                        tracing::error!(topic = name, id, "cannot keep the topic's new id: {e}")
                    }
                }
            }
            Ok(meta)
        });
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                tracing::error!(topic = name, "topic offline: {e}");
                return Topic::offline(name, dir, e.to_string());
            }
        };
        let log = meta.configs.apply(log);
        let mut slots = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            match open_log(name, dir.join(p.to_string()), p, &log, fs) {
                Ok(partition) => slots.push(Slot::Online(Arc::new(partition))),
                Err(e) => {
                    tracing::error!(topic = name, partition = p, "partition offline: {e}");
                    slots.push(Slot::Offline(offline_reason(&e)));
                }
            }
        }
        Topic::new(name, dir, meta.id, meta.configs, slots, None)
    }

    /// A topic whose `topic.json` cannot be used: listed, described with `reason`, and every
    /// request to it fails with `reason`.
    pub(crate) fn offline(name: &str, dir: PathBuf, reason: String) -> Topic {
        Topic::new(name, dir, [0; 16], TopicConfigs::default(), Vec::new(), Some(reason))
    }

    fn new(
        name: &str,
        dir: PathBuf,
        id: [u8; 16],
        configs: TopicConfigs,
        slots: Vec<Slot>,
        offline: Option<String>,
    ) -> Topic {
        Topic {
            name: name.to_owned(),
            dir,
            id,
            configs,
            slots,
            offline,
            next_partition: AtomicU32::new(0),
        }
    }

    /// This topic with other configs and partitions (the same logs for the partitions it had):
    /// what an alter or an add of partitions swaps in.
    pub(crate) fn replaced(&self, configs: TopicConfigs, slots: Vec<Slot>) -> Topic {
        let t = Topic::new(&self.name, self.dir.clone(), self.id, configs, slots, None);
        t.next_partition.store(self.next_partition.load(Ordering::Relaxed), Ordering::Relaxed);
        t
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The partitions whose logs are open, with their numbers.
    pub(crate) fn online(&self) -> impl Iterator<Item = (usize, &Arc<Partition>)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Online(p) => Some((i, p)),
            Slot::Offline(_) => None,
        })
    }

    /// Partitions offline in a topic that is served (a topic offline as a whole has none).
    pub(crate) fn offline_count(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Offline(_))).count()
    }

    /// Fails when the whole topic is offline.
    pub(crate) fn ensure_online(&self) -> Result<(), BrokerError> {
        match &self.offline {
            Some(reason) => {
                Err(BrokerError::TopicOffline { topic: self.name.clone(), reason: reason.clone() })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn partition(&self, partition: u32) -> Result<&Arc<Partition>, BrokerError> {
        self.ensure_online()?;
        match self.slots.get(partition as usize) {
            Some(Slot::Online(p)) => Ok(p),
            Some(Slot::Offline(reason)) => Err(BrokerError::PartitionOffline {
                topic: self.name.clone(),
                partition,
                reason: reason.clone(),
            }),
            None => Err(BrokerError::UnknownPartition {
                topic: self.name.clone(),
                partition,
                partitions: self.partition_count(),
            }),
        }
    }

    pub(crate) fn describe(&self) -> TopicDescription {
        TopicDescription {
            name: self.name.clone(),
            partitions: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, slot)| match slot {
                    Slot::Online(p) => {
                        let d = p.log.describe();
                        PartitionDescription {
                            partition: i as u32,
                            log_start_offset: d.log_start_offset,
                            next_offset: d.next_offset,
                            segments: d.segments as u64,
                            size_bytes: d.size_bytes,
                            offline: None,
                        }
                    }
                    Slot::Offline(reason) => PartitionDescription {
                        partition: i as u32,
                        log_start_offset: 0,
                        next_offset: 0,
                        segments: 0,
                        size_bytes: 0,
                        offline: Some(reason.clone()),
                    },
                })
                .collect(),
            offline: self.offline.clone(),
            topic_id: self.id,
            configs: self.configs.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        }
    }
}
