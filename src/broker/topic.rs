//! One topic: its validated name, its directory, `topic.json` (the partition count) and one
//! [`Partition`] (a log plus its long-poll wake-up) per partition. Never decides routing or
//! retention; the broker does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{BrokerError, PartitionDescription, TopicDescription, fsutil};
use crate::storage::{FileSystem, Log, LogConfig};

/// Name of the file holding a topic's configuration.
pub(crate) const TOPIC_FILE: &str = "topic.json";
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

/// What `topic.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub partitions: u32,
}

impl TopicMeta {
    pub(crate) fn write(&self, dir: &Path) -> Result<(), BrokerError> {
        // Serializing a struct of one integer cannot fail.
        let json = serde_json::to_vec_pretty(self).expect("TopicMeta serializes");
        fsutil::write_atomically(&dir.join(TOPIC_FILE), &json)
    }

    pub(crate) fn read(dir: &Path) -> Result<TopicMeta, BrokerError> {
        let path = dir.join(TOPIC_FILE);
        let bytes = fs::read(&path).map_err(|source| BrokerError::Io {
            path: path.clone(),
            op: "read",
            source,
        })?;
        let meta: TopicMeta = serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::CorruptState { path: path.clone(), reason: e.to_string() })?;
        if meta.partitions == 0 {
            return Err(BrokerError::CorruptState { path, reason: "partitions is 0".into() });
        }
        Ok(meta)
    }
}

/// One partition: its log and the wake-up that long-polling fetches wait on.
pub(crate) struct Partition {
    pub(crate) log: Arc<Log>,
    /// Signalled after every append (and when the partition closes).
    pub(crate) appended: Notify,
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

pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) partitions: Vec<Arc<Partition>>,
    /// Round-robin cursor for appends with neither a partition nor a key.
    pub(crate) next_partition: AtomicU32,
}

impl Topic {
    /// Opens (recovers) every partition log of a topic whose `topic.json` exists.
    pub(crate) fn open(
        name: &str,
        dir: PathBuf,
        log: &LogConfig,
        fs: Option<&Arc<dyn FileSystem>>,
    ) -> Result<Topic, BrokerError> {
        let meta = TopicMeta::read(&dir)?;
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let path = dir.join(p.to_string());
            let opened = match fs {
                Some(fs) => Log::open_with_fs(path, log.clone(), fs.clone()),
                None => Log::open(path, log.clone()),
            };
            let log = opened.map_err(|source| BrokerError::Storage {
                topic: name.to_owned(),
                partition: p,
                source,
            })?;
            partitions.push(Arc::new(Partition {
                log: Arc::new(log),
                appended: Notify::new(),
                closed: AtomicBool::new(false),
            }));
        }
        Ok(Topic { name: name.to_owned(), dir, partitions, next_partition: AtomicU32::new(0) })
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub(crate) fn partition(&self, partition: u32) -> Result<&Arc<Partition>, BrokerError> {
        self.partitions.get(partition as usize).ok_or_else(|| BrokerError::UnknownPartition {
            topic: self.name.clone(),
            partition,
            partitions: self.partition_count(),
        })
    }

    pub(crate) fn describe(&self) -> TopicDescription {
        TopicDescription {
            name: self.name.clone(),
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let d = p.log.describe();
                    PartitionDescription {
                        partition: i as u32,
                        log_start_offset: d.log_start_offset,
                        next_offset: d.next_offset,
                        segments: d.segments as u64,
                        size_bytes: d.size_bytes,
                    }
                })
                .collect(),
        }
    }
}
