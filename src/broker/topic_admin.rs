//! The broker's topic administration beyond delete: creating a topic (with a new id, or the
//! one a cluster gave it), a topic's configs (describe, alter, and the log config they make),
//! the broker's own configs, adding partitions, and topic ids. Never decides what a config means (`topic_config`) nor how a log applies it (`storage`).

use std::sync::Arc;

use super::topic::TopicMeta;
use super::topic_config::{ConfigEntry, ConfigOp, TopicConfigs};
use super::*;

impl Broker {
    /// [`Broker::create_topic`], with the topic id given (a cluster's) or a new one (`None`).
    pub(super) fn create_topic_as(
        &self,
        name: &str,
        id: Option<[u8; 16]>,
        partitions: u32,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, BrokerError> {
        validate_topic_name(name)?;
        configs.check_over(&self.config.log)?;
        if partitions == 0 {
            return Err(BrokerError::NoPartitions);
        }
        if partitions > self.config.max_partitions {
            return Err(BrokerError::TooManyPartitions {
                requested: partitions,
                max: self.config.max_partitions,
            });
        }
        let _admin = lock(&self.admin);
        self.check_open()?;
        {
            let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
            if topics.contains_key(name) {
                return Err(BrokerError::TopicAlreadyExists { name: name.to_owned() });
            }
            if topics.len() >= self.config.max_topics {
                return Err(BrokerError::TooManyTopics {
                    name: name.to_owned(),
                    max: self.config.max_topics,
                });
            }
        }
        let data_dir = &self.config.data_dir;
        let dir = data_dir.join(name);
        if dir.exists() {
            // A directory the broker did not load (no topic.json): never overwrite it.
            return Err(BrokerError::CorruptState {
                path: dir,
                reason: "a directory of this name exists but is not a topic; remove it first"
                    .into(),
            });
        }
        if validate_only {
            return Ok(TopicDescription::planned(name, partitions, &configs));
        }
        let id = id.unwrap_or_else(topic::new_topic_id);
        // Build the topic aside and rename it into place, so a crash never leaves half a topic;
        // a failure removes what was made (and start-up sweeps what a crash leaves).
        let staging = data_dir.join(CREATING_DIR);
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| BrokerError::Io { path, op, source }
        };
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging, "remove"))?;
        }
        let built = fs::create_dir(&staging)
            .map_err(io(&staging, "create directory"))
            .and_then(|()| {
                for p in 0..partitions {
                    let pdir = staging.join(p.to_string());
                    fs::create_dir(&pdir).map_err(io(&pdir, "create directory"))?;
                }
                TopicMeta::new(partitions, &id, &configs).write(&staging)
            })
            .and_then(|()| {
                fs::rename(&staging, &dir).map_err(io(&dir, "rename staging directory to"))
            });
        if let Err(e) = built {
            if let Err(rm) = fs::remove_dir_all(&staging) {
                tracing::warn!(path = %staging.display(), "removing a failed topic: {rm}");
            }
            return Err(e);
        }
        let opened = fsutil::sync_dir(data_dir).and_then(|()| {
            Topic::open_new(
                name,
                dir.clone(),
                &self.config.log,
                &self.fs,
                self.config.max_partitions,
            )
        });
        let t = match opened {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::warn!(topic = name, "creating the topic failed, removing it: {e}");
                self.discard_dir(&dir);
                return Err(e);
            }
        };
        let description = t.describe();
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), t);
        tracing::info!(topic = name, partitions, "topic created");
        Ok(description)
    }

    /// The log config of `t`'s partitions: the broker's, with the topic's configs laid over it.
    fn topic_log_config(&self, configs: &TopicConfigs) -> LogConfig {
        configs.apply(&self.config.log)
    }

    /// Every known topic config of `topic` with its value and source (set on the topic, a broker
    /// flag, or the built-in default).
    pub fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, BrokerError> {
        validate_topic_name(topic)?;
        let t = self.topic(topic)?;
        t.ensure_online()?;
        Ok(t.configs.describe(&self.config.log))
    }

    /// The configs set on `topic` (what its `topic.json` holds), for a cluster to compare with
    /// the metadata's.
    pub fn topic_configs(&self, topic: &str) -> Result<TopicConfigs, BrokerError> {
        validate_topic_name(topic)?;
        let t = self.topic(topic)?;
        t.ensure_online()?;
        Ok(t.configs.clone())
    }

    /// The broker's configs by their Kafka names (the flags it was started with), read-only.
    pub fn describe_broker_configs(&self) -> Vec<ConfigEntry> {
        topic_config::describe_broker(&self.config)
    }

    /// Changes `topic`'s configs: incremental `ops` (Kafka's IncrementalAlterConfigs), or with
    /// `replace_all` the `Set`s become the whole set (Kafka's AlterConfigs). Any invalid op fails
    /// the whole call and changes nothing; `validate_only` checks and changes nothing. The new
    /// configs are durable in `topic.json` before they apply to the live partition logs.
    pub fn alter_topic_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        validate_topic_name(topic)?;
        let _admin = lock(&self.admin);
        self.check_open()?;
        let t = self.topic(topic)?;
        t.ensure_online()?;
        let configs = t.configs.altered(ops, replace_all, &self.config.log)?;
        if validate_only || configs == t.configs {
            return Ok(());
        }
        TopicMeta::new(t.partition_count(), &t.id, &configs).write(&t.dir)?;
        let log = self.topic_log_config(&configs);
        let mut failed = None;
        for (i, p) in t.online() {
            if let Err(source) = p.log.set_config(log.clone()) {
                tracing::error!(topic, partition = i, "applying altered configs: {source}");
                failed.get_or_insert(BrokerError::Storage {
                    topic: topic.to_owned(),
                    partition: i as u32,
                    source,
                });
            }
        }
        let replaced = Arc::new(t.replaced(configs, t.slots.clone()));
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned(), replaced);
        tracing::info!(topic, "topic configs altered");
        failed.map_or(Ok(()), Err)
    }

    /// Grows `topic` to `total` partitions (Kafka's CreatePartitions): `total` must be greater
    /// than the current count and at most `max_partitions`. Crash-safe: the new (empty)
    /// partition directories are made durable before `topic.json` gets the new count, and
    /// start-up removes empty directories past the count, so a crash at any point leaves the
    /// topic with its old count or its new one.
    pub fn add_partitions(
        &self,
        topic: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        validate_topic_name(topic)?;
        let _admin = lock(&self.admin);
        self.check_open()?;
        let t = self.topic(topic)?;
        t.ensure_online()?;
        let current = t.partition_count();
        if total <= current {
            return Err(BrokerError::PartitionCountNotIncreased {
                topic: topic.to_owned(),
                current,
                requested: total,
            });
        }
        if total > self.config.max_partitions {
            return Err(BrokerError::TooManyPartitions {
                requested: total,
                max: self.config.max_partitions,
            });
        }
        if validate_only {
            return Ok(());
        }
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| BrokerError::Io { path, op, source }
        };
        for p in current..total {
            let pdir = t.dir.join(p.to_string());
            match fs::create_dir(&pdir) {
                Ok(()) => {}
                // An empty one left by an earlier add that failed before topic.json.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let empty = fs::read_dir(&pdir).is_ok_and(|mut d| d.next().is_none());
                    if !empty {
                        return Err(BrokerError::CorruptState {
                            path: pdir,
                            reason: "a partition directory past the count holds files".into(),
                        });
                    }
                }
                Err(e) => return Err(io(&pdir, "create directory")(e)),
            }
        }
        fsutil::sync_dir(&t.dir)?;
        TopicMeta::new(total, &t.id, &t.configs).write(&t.dir)?;
        let log = self.topic_log_config(&t.configs);
        let mut slots = t.slots.clone();
        for p in current..total {
            match topic::open_log(topic, t.dir.join(p.to_string()), p, &log, &self.fs) {
                Ok(partition) => slots.push(Slot::Online(Arc::new(partition))),
                Err(e) => {
                    // topic.json already has the new count: the partition is offline, as it
                    // would be at the next start-up.
                    tracing::error!(topic, partition = p, "new partition offline: {e}");
                    slots.push(Slot::Offline(e.to_string()));
                }
            }
        }
        let replaced = Arc::new(t.replaced(t.configs.clone(), slots));
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned(), replaced);
        tracing::info!(topic, from = current, to = total, "partitions added");
        Ok(())
    }

    /// `topic`'s id: a random UUID kept for the topic's life, new when it is re-created.
    pub fn topic_id(&self, topic: &str) -> Result<[u8; 16], BrokerError> {
        validate_topic_name(topic)?;
        let t = self.topic(topic)?;
        t.ensure_online()?;
        Ok(t.id)
    }

    /// The topic whose id is `id`, if any.
    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<String> {
        if id == [0; 16] {
            return None;
        }
        // A scan under the read lock, without copying the list: Fetch v13+ asks this once per
        // topic of every request (librdkafka fetches by id).
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.values().find(|t| t.offline.is_none() && t.id == id).map(|t| t.name.clone())
    }
}
