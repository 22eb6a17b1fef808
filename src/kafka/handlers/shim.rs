//! TEMPORARY (never merged): the sketch of the broker's topic-config API from COMMON.md, so the
//! handlers compile before the real one lands on main. Deleted before `git merge main`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::broker::{Broker, BrokerError, TopicDescription};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Default,
    Broker,
    Topic,
}

#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TopicConfigs(BTreeMap<String, String>);

const NAMES: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "604800000"),
    ("retention.bytes", "-1"),
    ("segment.bytes", "1073741824"),
    ("segment.ms", "604800000"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.compaction.lag.ms", "0"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("delete.retention.ms", "86400000"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.insync.replicas", "1"),
];

fn bad(name: &str, reason: &'static str) -> BrokerError {
    BrokerError::InvalidTopicName { name: name.to_string(), reason }
}

impl TopicConfigs {
    pub fn parse(pairs: &[(String, Option<String>)]) -> Result<TopicConfigs, BrokerError> {
        let mut m = BTreeMap::new();
        for (k, v) in pairs {
            if !NAMES.iter().any(|(n, _)| n == k) {
                return Err(bad(k, "unknown config"));
            }
            let Some(v) = v else { continue };
            if k == "cleanup.policy"
                && !matches!(v.as_str(), "delete" | "compact" | "compact,delete")
            {
                return Err(bad(k, "bad cleanup.policy"));
            }
            m.insert(k.clone(), v.clone());
        }
        Ok(TopicConfigs(m))
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

static CONFIGS: Mutex<BTreeMap<String, BTreeMap<String, String>>> = Mutex::new(BTreeMap::new());

pub trait ShimApi {
    fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, BrokerError>;
    fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, BrokerError>;
    fn describe_broker_configs(&self) -> Vec<ConfigEntry>;
    fn alter_topic_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError>;
    fn add_partitions(
        &self,
        topic: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BrokerError>;
    fn topic_id(&self, topic: &str) -> Result<[u8; 16], BrokerError>;
}

impl ShimApi for Broker {
    fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicDescription, BrokerError> {
        if validate_only {
            return Ok(TopicDescription { name: name.into(), partitions: vec![], offline: None });
        }
        let d = self.create_topic(name, partitions)?;
        CONFIGS.lock().unwrap().insert(name.into(), configs.0);
        Ok(d)
    }
    fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>, BrokerError> {
        self.describe_topic(topic)?;
        let c = CONFIGS.lock().unwrap();
        let set = c.get(topic).cloned().unwrap_or_default();
        Ok(NAMES
            .iter()
            .map(|(n, d)| {
                let (value, source) = match set.get(*n) {
                    Some(v) => (v.clone(), ConfigSource::Topic),
                    None => (d.to_string(), ConfigSource::Default),
                };
                ConfigEntry {
                    name: n.to_string(),
                    value: Some(value),
                    source,
                    read_only: false,
                    sensitive: false,
                }
            })
            .collect())
    }
    fn describe_broker_configs(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            name: "log.retention.ms".into(),
            value: Some("604800000".into()),
            source: ConfigSource::Default,
            read_only: true,
            sensitive: false,
        }]
    }
    fn alter_topic_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        self.describe_topic(topic)?;
        let mut c = CONFIGS.lock().unwrap();
        let mut set =
            if replace_all { BTreeMap::new() } else { c.get(topic).cloned().unwrap_or_default() };
        for op in ops {
            match op {
                ConfigOp::Set(k, v) => {
                    TopicConfigs::parse(&[(k.clone(), Some(v.clone()))])?;
                    set.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    set.remove(k);
                }
                ConfigOp::Append(k, v) => {
                    let cur = set.get(k).cloned().unwrap_or_else(|| "delete".into());
                    let mut l: Vec<String> = cur.split(',').map(String::from).collect();
                    if !l.contains(v) {
                        l.push(v.clone());
                    }
                    l.sort();
                    set.insert(k.clone(), l.join(","));
                }
                ConfigOp::Subtract(k, v) => {
                    let cur = set.get(k).cloned().unwrap_or_else(|| "delete".into());
                    let l: Vec<String> =
                        cur.split(',').filter(|x| x != v).map(String::from).collect();
                    set.insert(k.clone(), l.join(","));
                }
            }
        }
        if !validate_only {
            c.insert(topic.into(), set);
        }
        Ok(())
    }
    fn add_partitions(&self, topic: &str, total: u32, _v: bool) -> Result<(), BrokerError> {
        let n = self.partition_count(topic)?;
        if total <= n {
            return Err(BrokerError::NoPartitions);
        }
        Err(BrokerError::ShuttingDown)
    }
    fn topic_id(&self, topic: &str) -> Result<[u8; 16], BrokerError> {
        self.describe_topic(topic)?;
        let mut id = [7u8; 16];
        for (i, b) in topic.bytes().enumerate().take(16) {
            id[i] = b;
        }
        Ok(id)
    }
}
