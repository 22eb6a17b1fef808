//! Per-topic configs by their Kafka names (`retention.ms`, `cleanup.policy`, ...): parsing and
//! validating them with Kafka's rules, laying them over the broker's defaults to get a partition's
//! [`LogConfig`], and describing topic and broker configs with where each value comes from.
//! Never reads or writes files (the topic's `topic.json` holds the set names) and never touches a
//! log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BrokerConfig, BrokerError};
use crate::storage::{
    CleanupPolicy, CompactionConfig, FsyncPolicy, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
    TimestampType,
};

pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Every topic config name the broker knows, in the order describe lists them.
pub const TOPIC_CONFIG_NAMES: [&str; 12] = [
    CLEANUP_POLICY,
    DELETE_RETENTION_MS,
    MAX_COMPACTION_LAG_MS,
    MAX_MESSAGE_BYTES,
    MESSAGE_TIMESTAMP_TYPE,
    MIN_CLEANABLE_DIRTY_RATIO,
    MIN_COMPACTION_LAG_MS,
    MIN_INSYNC_REPLICAS,
    RETENTION_BYTES,
    RETENTION_MS,
    SEGMENT_BYTES,
    SEGMENT_MS,
];

/// Smallest `max.message.bytes` a log accepts: a batch header and one empty record.
const MIN_MESSAGE_BYTES: u64 = (crate::batch::HEADER_LEN + crate::batch::MIN_RECORD_LEN) as u64;
/// What "never" is shown as for a time limit Kafka has no -1 for (`segment.ms`,
/// `max.compaction.lag.ms`): Kafka's own "never", `Long.MAX_VALUE`.
const NEVER_MS: i64 = i64::MAX;

/// Where a described config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSource {
    /// The built-in default.
    Default,
    /// A broker flag (Kafka's STATIC_BROKER_CONFIG for a broker, its default for a topic).
    Broker,
    /// Set on the topic.
    Topic,
}

/// One described config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    /// Cannot be altered (every broker config: they are start-up flags).
    pub read_only: bool,
    pub sensitive: bool,
}

/// One change of an incremental alter (Kafka's IncrementalAlterConfigs operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    /// Sets the name to the value.
    Set(String, String),
    /// Removes the topic's value: the broker's default applies again.
    Delete(String),
    /// Adds the items to a list-valued config (`cleanup.policy`).
    Append(String, String),
    /// Removes the items from a list-valued config (`cleanup.policy`).
    Subtract(String, String),
}

/// The configs set on one topic: Kafka names to values, each validated (values kept in a
/// canonical form, e.g. `cleanup.policy` as `compact,delete`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    set: BTreeMap<String, String>,
}

fn invalid(name: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidConfig { name: name.to_owned(), reason: reason.into() }
}

/// Parses a Kafka long with a lower bound.
fn long_at_least(name: &str, value: &str, min: i64) -> Result<i64, BrokerError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(name, format!("{value:?} is not a whole number")))?;
    if v < min {
        return Err(invalid(name, format!("{v} is below the minimum of {min}")));
    }
    Ok(v)
}

/// Parses a `cleanup.policy` list: `delete`, `compact` or both, comma-separated in any order.
fn parse_policy(value: &str) -> Result<CleanupPolicy, BrokerError> {
    let mut policy = CleanupPolicy { delete: false, compact: false };
    for item in value.split(',').map(str::trim) {
        match item {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            other => {
                return Err(invalid(
                    CLEANUP_POLICY,
                    format!("{other:?} is not a cleanup policy (use delete, compact or both)"),
                ));
            }
        }
    }
    Ok(policy)
}

fn policy_string(p: CleanupPolicy) -> String {
    match (p.compact, p.delete) {
        (true, true) => "compact,delete".into(),
        (true, false) => "compact".into(),
        _ => "delete".into(),
    }
}

/// Checks one name and value with Kafka's rules and returns the value in canonical form.
fn validate(name: &str, value: &str) -> Result<String, BrokerError> {
    let v = value.trim();
    let canonical = match name {
        CLEANUP_POLICY => policy_string(parse_policy(v)?),
        RETENTION_MS | RETENTION_BYTES => long_at_least(name, v, -1)?.to_string(),
        SEGMENT_BYTES => {
            let n = long_at_least(name, v, MIN_SEGMENT_BYTES as i64)?;
            if n as u64 > MAX_SEGMENT_BYTES {
                return Err(invalid(
                    name,
                    format!("{n} is above the maximum of {MAX_SEGMENT_BYTES}"),
                ));
            }
            n.to_string()
        }
        SEGMENT_MS | MAX_COMPACTION_LAG_MS => long_at_least(name, v, 1)?.to_string(),
        MIN_COMPACTION_LAG_MS | DELETE_RETENTION_MS => long_at_least(name, v, 0)?.to_string(),
        MAX_MESSAGE_BYTES => {
            let n = long_at_least(name, v, MIN_MESSAGE_BYTES as i64)?;
            // A batch must fit a segment's u32 positions (the storage's bound).
            if n as u64 > MAX_SEGMENT_BYTES || n > i64::from(u32::MAX) {
                return Err(invalid(
                    name,
                    format!("{n} is above the maximum of {MAX_SEGMENT_BYTES}"),
                ));
            }
            n.to_string()
        }
        MIN_INSYNC_REPLICAS => {
            let n = long_at_least(name, v, 1)?;
            if n > i64::from(i32::MAX) {
                return Err(invalid(name, format!("{n} is above the maximum of {}", i32::MAX)));
            }
            n.to_string()
        }
        MESSAGE_TIMESTAMP_TYPE => match v {
            "CreateTime" | "LogAppendTime" => v.to_owned(),
            _ => {
                return Err(invalid(
                    name,
                    format!("{value:?} is not a timestamp type (use CreateTime or LogAppendTime)"),
                ));
            }
        },
        MIN_CLEANABLE_DIRTY_RATIO => {
            let r: f64 =
                v.parse().map_err(|_| invalid(name, format!("{value:?} is not a number")))?;
            if !(0.0..=1.0).contains(&r) {
                return Err(invalid(name, format!("{r} is outside 0..1")));
            }
            r.to_string()
        }
        _ => return Err(invalid(name, "unknown topic config")),
    };
    Ok(canonical)
}

/// `-1` (Kafka's "unlimited") as `None`.
fn limit(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn limit_string(v: Option<u64>) -> String {
    v.map_or("-1".into(), |v| v.to_string())
}

/// The value a known name has in `log` (the Kafka rendering of a `LogConfig` field).
fn log_value(name: &str, log: &LogConfig) -> String {
    match name {
        CLEANUP_POLICY => policy_string(log.cleanup_policy),
        RETENTION_MS => limit_string(log.retention_ms),
        RETENTION_BYTES => limit_string(log.retention_bytes),
        SEGMENT_BYTES => log.segment_bytes.to_string(),
        SEGMENT_MS => log.segment_ms.map_or(NEVER_MS.to_string(), |v| v.to_string()),
        MAX_MESSAGE_BYTES => log.max_record_bytes.to_string(),
        MESSAGE_TIMESTAMP_TYPE => match log.timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        },
        MIN_COMPACTION_LAG_MS => log.compaction.min_compaction_lag_ms.to_string(),
        MAX_COMPACTION_LAG_MS => log.compaction.max_compaction_lag_ms.to_string(),
        DELETE_RETENTION_MS => log.compaction.delete_retention_ms.to_string(),
        MIN_CLEANABLE_DIRTY_RATIO => log.compaction.min_cleanable_dirty_ratio.to_string(),
        // Stored only: a single node has one replica.
        MIN_INSYNC_REPLICAS => "1".into(),
        _ => String::new(),
    }
}

impl TopicConfigs {
    /// Validates name/value pairs (a create's configs). An unknown name, a missing value or a
    /// value Kafka would refuse is `InvalidConfig` naming it; a later pair for a name wins.
    pub fn parse(pairs: &[(String, Option<String>)]) -> Result<TopicConfigs, BrokerError> {
        let mut set = BTreeMap::new();
        for (name, value) in pairs {
            let Some(value) = value else {
                return Err(invalid(name, "a value is required"));
            };
            set.insert(name.clone(), validate(name, value)?);
        }
        let configs = TopicConfigs { set };
        configs.check_consistent(&LogConfig::default())?;
        Ok(configs)
    }

    /// The value set on the topic for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set.get(name).map(String::as_str)
    }

    /// The set names and values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The set configs as a map (what `topic.json` stores).
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        self.set.clone()
    }

    /// Configs read back from `topic.json`, validated again (the file is untrusted).
    pub(crate) fn from_map(map: BTreeMap<String, String>) -> Result<TopicConfigs, BrokerError> {
        let pairs: Vec<(String, Option<String>)> =
            map.into_iter().map(|(k, v)| (k, Some(v))).collect();
        TopicConfigs::parse(&pairs)
    }

    /// Applies alter operations to a copy. `replace_all` (Kafka's non-incremental AlterConfigs)
    /// starts from nothing set, so every name not `Set` returns to its default. Any invalid op
    /// fails the whole alter.
    pub fn altered(
        &self,
        ops: &[ConfigOp],
        replace_all: bool,
        base: &LogConfig,
    ) -> Result<TopicConfigs, BrokerError> {
        let mut set = if replace_all { BTreeMap::new() } else { self.set.clone() };
        for op in ops {
            match op {
                ConfigOp::Set(name, value) => {
                    set.insert(name.clone(), validate(name, value)?);
                }
                ConfigOp::Delete(name) => {
                    if !TOPIC_CONFIG_NAMES.contains(&name.as_str()) {
                        return Err(invalid(name, "unknown topic config"));
                    }
                    set.remove(name);
                }
                ConfigOp::Append(name, value) | ConfigOp::Subtract(name, value) => {
                    if name != CLEANUP_POLICY {
                        let reason = if TOPIC_CONFIG_NAMES.contains(&name.as_str()) {
                            "not a list: only cleanup.policy takes APPEND and SUBTRACT"
                        } else {
                            "unknown topic config"
                        };
                        return Err(invalid(name, reason));
                    }
                    let current = match set.get(name) {
                        Some(v) => parse_policy(v)?,
                        None => base.cleanup_policy,
                    };
                    let items = parse_policy(value)?;
                    let append = matches!(op, ConfigOp::Append(..));
                    let p = CleanupPolicy {
                        delete: if items.delete { append } else { current.delete },
                        compact: if items.compact { append } else { current.compact },
                    };
                    if !p.delete && !p.compact {
                        return Err(invalid(name, "subtracting every policy leaves none"));
                    }
                    set.insert(name.clone(), policy_string(p));
                }
            }
        }
        let configs = TopicConfigs { set };
        configs.check_consistent(base)?;
        Ok(configs)
    }

    /// Checks the configs over the broker's log config `base` (a create does, since a set name
    /// may conflict with a broker default).
    pub(crate) fn check_over(&self, base: &LogConfig) -> Result<(), BrokerError> {
        self.check_consistent(base)
    }

    /// Kafka's cross-field rule: `min.compaction.lag.ms` <= `max.compaction.lag.ms`, checked
    /// over the defaults `base`.
    fn check_consistent(&self, base: &LogConfig) -> Result<(), BrokerError> {
        let log = self.apply_unchecked(base);
        let c = log.compaction;
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(invalid(
                MIN_COMPACTION_LAG_MS,
                format!(
                    "{} is greater than max.compaction.lag.ms {}",
                    c.min_compaction_lag_ms, c.max_compaction_lag_ms
                ),
            ));
        }
        Ok(())
    }

    /// The log config of a partition of this topic: the broker's `base` with every set name
    /// laid over it.
    pub fn apply(&self, base: &LogConfig) -> LogConfig {
        self.apply_unchecked(base)
    }

    fn apply_unchecked(&self, base: &LogConfig) -> LogConfig {
        let mut log = base.clone();
        for (name, value) in &self.set {
            // Every stored value passed `validate`, so these parses succeed; a failure keeps the
            // default rather than panicking.
            let long = || value.parse::<i64>().ok();
            match name.as_str() {
                CLEANUP_POLICY => {
                    if let Ok(p) = parse_policy(value) {
                        log.cleanup_policy = p;
                    }
                }
                RETENTION_MS => log.retention_ms = long().and_then(limit),
                RETENTION_BYTES => log.retention_bytes = long().and_then(limit),
                SEGMENT_BYTES => {
                    if let Some(v) = long().and_then(limit) {
                        log.segment_bytes = v;
                    }
                }
                SEGMENT_MS => {
                    log.segment_ms = long().filter(|v| *v != NEVER_MS).and_then(limit);
                }
                MAX_MESSAGE_BYTES => {
                    if let Some(v) = long().and_then(|v| u32::try_from(v).ok()) {
                        log.max_record_bytes = v;
                    }
                }
                MESSAGE_TIMESTAMP_TYPE => {
                    log.timestamp_type = if value == "LogAppendTime" {
                        TimestampType::LogAppendTime
                    } else {
                        TimestampType::CreateTime
                    };
                }
                MIN_COMPACTION_LAG_MS => {
                    if let Some(v) = long().and_then(limit) {
                        log.compaction.min_compaction_lag_ms = v;
                    }
                }
                MAX_COMPACTION_LAG_MS => {
                    if let Some(v) = long().and_then(limit) {
                        log.compaction.max_compaction_lag_ms = v;
                    }
                }
                DELETE_RETENTION_MS => {
                    if let Some(v) = long().and_then(limit) {
                        log.compaction.delete_retention_ms = v;
                    }
                }
                MIN_CLEANABLE_DIRTY_RATIO => {
                    if let Ok(r) = value.parse::<f64>() {
                        log.compaction.min_cleanable_dirty_ratio = r;
                    }
                }
                _ => {}
            }
        }
        log
    }

    /// Every known topic config with its value and source: `Topic` when set on the topic,
    /// `Broker` when a broker flag changed the built-in default, else `Default`.
    pub fn describe(&self, base: &LogConfig) -> Vec<ConfigEntry> {
        let builtin = LogConfig::default();
        TOPIC_CONFIG_NAMES
            .iter()
            .map(|&name| {
                let (value, source) = match self.get(name) {
                    Some(v) => (v.to_owned(), ConfigSource::Topic),
                    None => {
                        let v = log_value(name, base);
                        let source = if v == log_value(name, &builtin) {
                            ConfigSource::Default
                        } else {
                            ConfigSource::Broker
                        };
                        (v, source)
                    }
                };
                ConfigEntry {
                    name: name.to_owned(),
                    value: Some(value),
                    source,
                    read_only: false,
                    sensitive: false,
                }
            })
            .collect()
    }
}

/// Kafka's `log.flush.interval.ms` rendering of the fsync policy (`always` flushes every
/// message: 0 here; `never` is Kafka's default, Long.MAX_VALUE).
fn flush_interval(fsync: FsyncPolicy) -> String {
    match fsync {
        FsyncPolicy::Always => "0".into(),
        FsyncPolicy::Interval(d) => d.as_millis().to_string(),
        FsyncPolicy::Never => NEVER_MS.to_string(),
    }
}

/// The broker's configs by their Kafka broker names (what the broker has flags for), with
/// source `Broker` when the flag changed the built-in default. All read-only: they are start-up
/// flags.
pub fn describe_broker(config: &BrokerConfig) -> Vec<ConfigEntry> {
    fn entries(c: &BrokerConfig) -> Vec<(&'static str, String)> {
        let log = &c.log;
        let comp: &CompactionConfig = &log.compaction;
        vec![
            ("auto.create.topics.enable", c.auto_create_topics.to_string()),
            ("fetch.max.bytes", c.fetch_max_bytes.to_string()),
            ("log.cleaner.delete.retention.ms", comp.delete_retention_ms.to_string()),
            ("log.cleaner.max.compaction.lag.ms", comp.max_compaction_lag_ms.to_string()),
            ("log.cleaner.min.cleanable.ratio", comp.min_cleanable_dirty_ratio.to_string()),
            ("log.cleaner.min.compaction.lag.ms", comp.min_compaction_lag_ms.to_string()),
            ("log.cleanup.policy", log_value(CLEANUP_POLICY, log)),
            ("log.flush.interval.ms", flush_interval(log.fsync)),
            ("log.index.interval.bytes", log.index_interval_bytes.to_string()),
            ("log.message.timestamp.type", log_value(MESSAGE_TIMESTAMP_TYPE, log)),
            ("log.retention.bytes", log_value(RETENTION_BYTES, log)),
            ("log.retention.ms", log_value(RETENTION_MS, log)),
            ("log.roll.ms", log_value(SEGMENT_MS, log)),
            ("log.segment.bytes", log.segment_bytes.to_string()),
            ("message.max.bytes", log.max_record_bytes.to_string()),
            ("min.insync.replicas", "1".into()),
            ("num.partitions", c.default_partitions.to_string()),
            ("producer.id.expiration.ms", c.producer_id_expiration_ms.to_string()),
        ]
    }
    let defaults = entries(&BrokerConfig::default());
    entries(config)
        .into_iter()
        .zip(defaults)
        .map(|((name, value), (_, default))| ConfigEntry {
            name: name.to_owned(),
            source: if value == default { ConfigSource::Default } else { ConfigSource::Broker },
            value: Some(value),
            read_only: true,
            sensitive: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        p.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect()
    }

    fn reason(e: BrokerError) -> (String, String) {
        match e {
            BrokerError::InvalidConfig { name, reason } => (name, reason),
            other => panic!("expected InvalidConfig, got {other}"),
        }
    }

    #[test]
    fn known_names_parse_and_apply_over_the_broker_defaults() {
        let c = TopicConfigs::parse(&pairs(&[
            ("cleanup.policy", "delete, compact"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "4096"),
            ("segment.ms", "60000"),
            ("max.message.bytes", "2000"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "20"),
            ("delete.retention.ms", "0"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.insync.replicas", "2"),
        ]))
        .unwrap();
        assert_eq!(c.get("cleanup.policy"), Some("compact,delete"));
        let base = LogConfig { retention_ms: Some(5), ..LogConfig::default() };
        let log = c.apply(&base);
        assert_eq!(log.cleanup_policy, CleanupPolicy { delete: true, compact: true });
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.retention_bytes, Some(1 << 20));
        assert_eq!(log.segment_bytes, 4096);
        assert_eq!(log.segment_ms, Some(60_000));
        assert_eq!(log.max_record_bytes, 2000);
        assert_eq!(log.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(log.compaction.min_compaction_lag_ms, 10);
        assert_eq!(log.compaction.max_compaction_lag_ms, 20);
        assert_eq!(log.compaction.delete_retention_ms, 0);
        assert_eq!(log.compaction.min_cleanable_dirty_ratio, 0.25);
        // Unset names keep the broker's values.
        assert_eq!(log.fsync, base.fsync);
        assert_eq!(TopicConfigs::default().apply(&base), base);
    }

    #[test]
    fn bad_names_and_values_say_which_and_why() {
        let cases = [
            ("retention.mss", "1", "unknown"),
            ("cleanup.policy", "delete,shred", "shred"),
            ("cleanup.policy", "", "not a cleanup policy"),
            ("retention.ms", "-2", "below the minimum of -1"),
            ("retention.ms", "ten", "not a whole number"),
            ("segment.bytes", "10", "below the minimum"),
            ("segment.bytes", "99999999999", "above the maximum"),
            ("segment.ms", "0", "below the minimum of 1"),
            ("message.timestamp.type", "createtime", "CreateTime or LogAppendTime"),
            ("min.cleanable.dirty.ratio", "1.5", "outside 0..1"),
            ("min.insync.replicas", "0", "below the minimum of 1"),
            ("max.message.bytes", "1", "below the minimum"),
        ];
        for (name, value, why) in cases {
            let (n, r) = reason(TopicConfigs::parse(&pairs(&[(name, value)])).unwrap_err());
            assert_eq!(n, name);
            assert!(r.contains(why), "{name}={value}: {r}");
        }
        let (n, r) = reason(TopicConfigs::parse(&[("retention.ms".into(), None)]).unwrap_err());
        assert_eq!((n.as_str(), r.as_str()), ("retention.ms", "a value is required"));
        let (n, r) = reason(
            TopicConfigs::parse(&pairs(&[
                ("min.compaction.lag.ms", "50"),
                ("max.compaction.lag.ms", "20"),
            ]))
            .unwrap_err(),
        );
        assert_eq!(n, "min.compaction.lag.ms");
        assert!(r.contains("greater than max.compaction.lag.ms"), "{r}");
    }

    #[test]
    fn list_ops_edit_cleanup_policy_and_replace_all_resets_the_rest() {
        let base = LogConfig::default();
        let c = TopicConfigs::parse(&pairs(&[("retention.ms", "100")])).unwrap();
        let append = [ConfigOp::Append("cleanup.policy".into(), "compact".into())];
        let c = c.altered(&append, false, &base).unwrap();
        assert_eq!(c.get("cleanup.policy"), Some("compact,delete"));
        let sub = [ConfigOp::Subtract("cleanup.policy".into(), "delete".into())];
        let c = c.altered(&sub, false, &base).unwrap();
        assert_eq!(c.get("cleanup.policy"), Some("compact"));
        assert_eq!(c.get("retention.ms"), Some("100"));
        let (n, r) = reason(
            c.altered(
                &[ConfigOp::Subtract("cleanup.policy".into(), "compact".into())],
                false,
                &base,
            )
            .unwrap_err(),
        );
        assert_eq!(n, "cleanup.policy");
        assert!(r.contains("leaves none"), "{r}");
        let (n, r) = reason(
            c.altered(&[ConfigOp::Append("retention.ms".into(), "1".into())], false, &base)
                .unwrap_err(),
        );
        assert_eq!(n, "retention.ms");
        assert!(r.contains("not a list"), "{r}");
        let set = [ConfigOp::Set("segment.ms".into(), "5".into())];
        let replaced = c.altered(&set, true, &base).unwrap();
        assert_eq!(replaced.iter().collect::<Vec<_>>(), vec![("segment.ms", "5")]);
        let deleted = c.altered(&[ConfigOp::Delete("retention.ms".into())], false, &base).unwrap();
        assert_eq!(deleted.get("retention.ms"), None);
    }

    #[test]
    fn describe_gives_every_name_with_its_source() {
        let base = LogConfig { retention_bytes: Some(1000), ..LogConfig::default() };
        let c = TopicConfigs::parse(&pairs(&[("retention.ms", "100")])).unwrap();
        let d = c.describe(&base);
        assert_eq!(d.len(), TOPIC_CONFIG_NAMES.len());
        let get = |n: &str| d.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get("retention.ms").value.as_deref(), Some("100"));
        assert_eq!(get("retention.ms").source, ConfigSource::Topic);
        assert_eq!(get("retention.bytes").value.as_deref(), Some("1000"));
        assert_eq!(get("retention.bytes").source, ConfigSource::Broker);
        assert_eq!(get("cleanup.policy").value.as_deref(), Some("delete"));
        assert_eq!(get("cleanup.policy").source, ConfigSource::Default);
        let b = describe_broker(&BrokerConfig { default_partitions: 3, ..BrokerConfig::default() });
        let np = b.iter().find(|e| e.name == "num.partitions").unwrap();
        assert_eq!((np.value.as_deref(), np.source), (Some("3"), ConfigSource::Broker));
        let seg = b.iter().find(|e| e.name == "log.segment.bytes").unwrap();
        assert_eq!(seg.source, ConfigSource::Default);
        assert!(b.iter().all(|e| e.read_only));
    }
}
