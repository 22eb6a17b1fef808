//! TEMPORARY SHIM (reverted before merging main): the sketch of the configs API from COMMON.md.
use super::BrokerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ConfigSource {
    Default,
    Broker,
    Topic,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TopicConfigs {
    set: Vec<(String, String)>,
}

impl TopicConfigs {
    pub fn parse(pairs: &[(String, Option<String>)]) -> Result<TopicConfigs, BrokerError> {
        Ok(TopicConfigs {
            set: pairs.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_default())).collect(),
        })
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}
