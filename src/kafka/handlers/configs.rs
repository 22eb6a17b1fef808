//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: a topic resource maps onto the
//! topic's configs (described from this broker's copy, altered through the cluster, so every
//! broker changes); the broker resource (our node id, "0") is described from the broker's
//! flags and never altered, since they are static. Owns the Kafka wire meaning of a config (its
//! source and type codes, synonyms, documentation); never judges a name or a value itself: the
//! broker's rules do, and their message goes back to the client as it is.

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response as incremental;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, broker_error_code, cluster_error_code, code, s};
use crate::broker::topic_config::{ConfigEntry, ConfigOp, ConfigSource};
use crate::broker::{Broker, BrokerError, validate_topic_name};
use crate::cluster::{Cluster, ClusterError};

/// Kafka's `ConfigResource.Type` codes this broker answers for.
pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;

/// Kafka's `DescribeConfigsResponse.ConfigSource` codes (v1+; also CreateTopics v5+).
pub(super) const SOURCE_TOPIC: i8 = 1; // DYNAMIC_TOPIC_CONFIG
pub(super) const SOURCE_STATIC_BROKER: i8 = 4; // STATIC_BROKER_CONFIG: a flag the broker started with
pub(super) const SOURCE_DEFAULT: i8 = 5; // DEFAULT_CONFIG

/// First DescribeConfigs version with `config_type` and `documentation`.
const DOCUMENTATION_VERSION: i16 = 3;

/// Most resources one request may name; each alteration is a crash-safe file write.
const MAX_RESOURCES_PER_REQUEST: usize = 1_000;

/// Kafka's source code for a config's value.
pub(super) fn source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::Default => SOURCE_DEFAULT,
        ConfigSource::Broker => SOURCE_STATIC_BROKER,
        ConfigSource::Topic => SOURCE_TOPIC,
    }
}

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
    pub const UNKNOWN: i8 = 0;
}

/// What Kafka tells of each topic config: the broker config that is its default (the synonym
/// Kafka lists after the topic's own value), its type, and a one-line documentation.
const TOPIC_CONFIGS: &[(&str, &str, i8, &str)] = &[
    (
        "cleanup.policy",
        "log.cleanup.policy",
        config_type::LIST,
        "delete, compact, or compact,delete: what happens to old log segments",
    ),
    (
        "retention.ms",
        "log.retention.ms",
        config_type::LONG,
        "How long a record is kept before its segment may be deleted (-1: forever)",
    ),
    (
        "retention.bytes",
        "log.retention.bytes",
        config_type::LONG,
        "Largest size a partition grows to before old segments are deleted (-1: no limit)",
    ),
    ("segment.bytes", "log.segment.bytes", config_type::INT, "Size of one log segment file"),
    (
        "segment.ms",
        "log.roll.ms",
        config_type::LONG,
        "Age after which the active segment is rolled even if not full",
    ),
    (
        "max.message.bytes",
        "message.max.bytes",
        config_type::INT,
        "Largest record batch the topic accepts",
    ),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        config_type::STRING,
        "CreateTime (the producer's timestamp) or LogAppendTime (the broker's)",
    ),
    (
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        config_type::LONG,
        "Records younger than this are never compacted",
    ),
    (
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        config_type::LONG,
        "Records older than this are compacted whatever the dirty ratio",
    ),
    (
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        config_type::LONG,
        "How long a tombstone is kept in a compacted topic",
    ),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        config_type::DOUBLE,
        "Share of a partition not yet compacted above which it is compacted",
    ),
    (
        "min.insync.replicas",
        "min.insync.replicas",
        config_type::INT,
        "In-sync replicas an acks=all write needs (a single node is its only replica)",
    ),
];

/// The broker configs that are no topic config's default, with their Kafka types.
const BROKER_ONLY_CONFIGS: &[(&str, i8)] = &[
    ("auto.create.topics.enable", config_type::BOOLEAN),
    ("fetch.max.bytes", config_type::INT),
    ("log.flush.interval.ms", config_type::LONG),
    ("log.index.interval.bytes", config_type::INT),
    ("num.partitions", config_type::INT),
    ("producer.id.expiration.ms", config_type::INT),
];

/// The topic-config row of `name`, or of the broker config that is its default.
fn known(name: &str) -> Option<&'static (&'static str, &'static str, i8, &'static str)> {
    TOPIC_CONFIGS.iter().find(|(topic, broker, _, _)| *topic == name || *broker == name)
}

/// Kafka's type of a topic or broker config.
fn type_of(name: &str) -> i8 {
    match known(name) {
        Some(row) => row.2,
        None => BROKER_ONLY_CONFIGS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(config_type::UNKNOWN, |(_, t)| *t),
    }
}

fn invalid_request(message: String) -> (i16, Option<StrBytes>) {
    (code(ResponseError::InvalidRequest), Some(StrBytes::from_string(message)))
}

/// Whether `name` names this broker, `me` ("" is the cluster-wide default, which has no dynamic
/// configs here). Kafka answers INVALID_REQUEST for any other id.
fn check_broker_name(name: &str, me: i32) -> Result<(), (i16, Option<StrBytes>)> {
    if name.is_empty() || name == me.to_string() {
        Ok(())
    } else {
        Err(invalid_request(format!("unexpected broker id {name:?}: this broker is {me}")))
    }
}

fn unsupported_resource(resource_type: i8) -> (i16, Option<StrBytes>) {
    invalid_request(format!(
        "resource type {resource_type} is not supported: only topics ({RESOURCE_TOPIC}) and \
         brokers ({RESOURCE_BROKER})"
    ))
}

fn broker_error(e: &BrokerError) -> (i16, Option<StrBytes>) {
    (broker_error_code(e), Some(s(&e.to_string())))
}

fn cluster_error(e: &ClusterError) -> (i16, Option<StrBytes>) {
    (cluster_error_code(e), Some(s(&e.to_string())))
}

/// What a DescribeConfigs request asks for, besides the resources.
struct Wanted<'a> {
    keys: Option<HashSet<&'a str>>,
    synonyms: bool,
    documentation: bool,
    version: i16,
}

impl Wanted<'_> {
    fn includes(&self, name: &str) -> bool {
        self.keys.as_ref().is_none_or(|k| k.contains(name))
    }
}

fn synonym(name: &str, value: &Option<String>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(s(name))
        .with_value(value.as_deref().map(s))
        .with_source(source)
}

/// One described config. `default` is the broker config behind a topic config, listed after the
/// topic's own value when synonyms are asked for, as Kafka does.
fn describe_entry(
    e: &ConfigEntry,
    default: Option<&ConfigEntry>,
    w: &Wanted,
) -> DescribeConfigsResourceResult {
    // A sensitive value is never sent back (Kafka sends null).
    let value = if e.sensitive { None } else { e.value.clone() };
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(s(&e.name))
        .with_value(value.as_deref().map(s))
        .with_read_only(e.read_only)
        .with_config_source(source_code(e.source))
        .with_is_sensitive(e.sensitive);
    if w.synonyms {
        let mut synonyms = Vec::new();
        if e.source == ConfigSource::Topic || default.is_none() {
            synonyms.push(synonym(&e.name, &value, source_code(e.source)));
        }
        if let Some(d) = default {
            let dv = if d.sensitive { None } else { d.value.clone() };
            synonyms.push(synonym(&d.name, &dv, source_code(d.source)));
        }
        r = r.with_synonyms(synonyms);
    }
    if w.version >= DOCUMENTATION_VERSION {
        r = r.with_config_type(type_of(&e.name));
        if w.documentation {
            // Documented for the topic configs and their broker defaults; null for the rest.
            r = r.with_documentation(known(&e.name).map(|r| s(r.3)));
        }
    }
    r
}

fn describe_topic(
    broker: &Broker,
    name: &str,
    w: &Wanted,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, Option<StrBytes>)> {
    validate_topic_name(name).map_err(|e| broker_error(&e))?;
    let entries = broker.describe_topic_configs(name).map_err(|e| broker_error(&e))?;
    let broker_entries = if w.synonyms { broker.describe_broker_configs() } else { Vec::new() };
    Ok(entries
        .iter()
        .filter(|e| w.includes(&e.name))
        .map(|e| {
            let default =
                known(&e.name).and_then(|row| broker_entries.iter().find(|b| b.name == row.1));
            describe_entry(e, default, w)
        })
        .collect())
}

fn describe_broker(
    broker: &Broker,
    me: i32,
    name: &str,
    w: &Wanted,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, Option<StrBytes>)> {
    check_broker_name(name, me)?;
    if name.is_empty() {
        // The cluster-wide dynamic defaults: this broker has none.
        return Ok(Vec::new());
    }
    Ok(broker
        .describe_broker_configs()
        .iter()
        .filter(|e| w.includes(&e.name))
        .map(|e| describe_entry(e, None, w))
        .collect())
}

pub(super) fn describe_configs(
    ctx: &Ctx,
    r: DescribeConfigsRequest,
    v: i16,
) -> DescribeConfigsResponse {
    let results = r
        .resources
        .iter()
        .enumerate()
        .map(|(i, res)| {
            let name = res.resource_name.to_string();
            let w = Wanted {
                // Null or empty: every config (kafka-python sends null, librdkafka an empty list).
                keys: res
                    .configuration_keys
                    .as_ref()
                    .filter(|k| !k.is_empty())
                    .map(|k| k.iter().map(|k| k.as_str()).collect()),
                synonyms: r.include_synonyms,
                documentation: r.include_documentation,
                version: v,
            };
            let described = if i >= MAX_RESOURCES_PER_REQUEST {
                Err(too_many_resources())
            } else {
                match res.resource_type {
                    RESOURCE_TOPIC => describe_topic(&ctx.broker, &name, &w),
                    RESOURCE_BROKER => describe_broker(&ctx.broker, ctx.node_id(), &name, &w),
                    other => Err(unsupported_resource(other)),
                }
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match described {
                Ok(configs) => result.with_configs(configs),
                Err((c, message)) => result.with_error_code(c).with_error_message(message),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn too_many_resources() -> (i16, Option<StrBytes>) {
    (
        code(ResponseError::PolicyViolation),
        Some(s(&format!(
            "at most {MAX_RESOURCES_PER_REQUEST} resources per request; send the rest in another"
        ))),
    )
}

/// Why a broker resource is not altered. Kafka answers INVALID_REQUEST ("Cannot update these
/// configs dynamically") for a config that is not dynamically updatable; every config of this
/// broker is a command-line flag, so that holds for all of them.
fn broker_is_static(names: &[String], me: i32) -> (i16, Option<StrBytes>) {
    invalid_request(format!(
        "cannot update these configs dynamically: {}; broker {me}'s configs are its \
         command-line flags (restart it with other flags to change them)",
        names.join(", ")
    ))
}

/// One resource to alter: its type and name, and what to do.
struct Alteration {
    resource_type: i8,
    name: StrBytes,
    /// The operations, or why the request is refused before the broker is asked.
    ops: Result<Vec<ConfigOp>, (i16, Option<StrBytes>)>,
    /// The config names touched (for the broker resource's refusal).
    names: Vec<String>,
}

/// Applies the alterations one after the other through the cluster (on a single node each is a
/// crash-safe file write; in a cluster a metadata commit) and returns each resource's (error
/// code, message).
async fn alter(
    ctx: &Ctx,
    alterations: Vec<Alteration>,
    replace_all: bool,
    validate_only: bool,
) -> Vec<(i8, StrBytes, i16, Option<StrBytes>)> {
    let me = ctx.node_id();
    let mut results = Vec::with_capacity(alterations.len());
    for (i, a) in alterations.into_iter().enumerate() {
        let outcome = alter_one(&ctx.cluster, me, &a, i, replace_all, validate_only).await;
        let (c, message) = outcome.err().unwrap_or((0, None));
        results.push((a.resource_type, a.name, c, message));
    }
    results
}

async fn alter_one(
    cluster: &Cluster,
    me: i32,
    a: &Alteration,
    index: usize,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), (i16, Option<StrBytes>)> {
    if index >= MAX_RESOURCES_PER_REQUEST {
        return Err(too_many_resources());
    }
    let ops = a.ops.as_ref().map_err(Clone::clone)?;
    match a.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(&a.name).map_err(|e| broker_error(&e))?;
            cluster
                .alter_topic_configs(&a.name, ops.clone(), replace_all, validate_only)
                .await
                .map_err(|e| cluster_error(&e))?;
            if !validate_only {
                tracing::info!(topic = %a.name, configs = ?a.names, replace_all, "topic configs altered");
            }
            Ok(())
        }
        RESOURCE_BROKER => {
            check_broker_name(&a.name, me)?;
            // Nothing to change is no change; anything else would change a static flag.
            if a.names.is_empty() { Ok(()) } else { Err(broker_is_static(&a.names, me)) }
        }
        other => Err(unsupported_resource(other)),
    }
}

/// A config name given twice for one resource: Kafka refuses the resource with INVALID_REQUEST.
fn duplicate(names: &[String]) -> Option<&String> {
    let mut seen = HashSet::new();
    names.iter().find(|n| !seen.insert(n.as_str()))
}

pub(super) async fn alter_configs(ctx: &Ctx, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let alterations = r
        .resources
        .into_iter()
        .map(|res| {
            let names: Vec<String> = res.configs.iter().map(|c| c.name.to_string()).collect();
            // AlterConfigs replaces the whole set: a null value leaves that name at its default
            // (Kafka skips null values the same way).
            let ops = match duplicate(&names) {
                Some(d) => Err(invalid_request(format!("config {d:?} is given twice"))),
                None => Ok(res
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value.as_ref().map(|v| ConfigOp::Set(c.name.to_string(), v.to_string()))
                    })
                    .collect()),
            };
            Alteration { resource_type: res.resource_type, name: res.resource_name, ops, names }
        })
        .collect();
    let responses = alter(ctx, alterations, true, r.validate_only)
        .await
        .into_iter()
        .map(|(resource_type, name, c, message)| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_error_code(c)
                .with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs' operation codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn incremental_op(name: &str, op: i8, value: Option<&str>) -> Result<ConfigOp, String> {
    let (name, value) = (name.to_string(), value.map(str::to_string));
    let needs = |value: Option<String>| {
        value.ok_or_else(|| format!("config {name:?}: operation {op} needs a value, got null"))
    };
    match op {
        OP_SET => Ok(ConfigOp::Set(name.clone(), needs(value)?)),
        OP_DELETE => Ok(ConfigOp::Delete(name)),
        OP_APPEND => Ok(ConfigOp::Append(name.clone(), needs(value)?)),
        OP_SUBTRACT => Ok(ConfigOp::Subtract(name.clone(), needs(value)?)),
        other => Err(format!(
            "config {name:?}: unknown operation {other} (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"
        )),
    }
}

pub(super) async fn incremental_alter_configs(
    ctx: &Ctx,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let alterations = r
        .resources
        .into_iter()
        .map(|res| {
            let names: Vec<String> = res.configs.iter().map(|c| c.name.to_string()).collect();
            let ops = match duplicate(&names) {
                Some(d) => Err(invalid_request(format!("config {d:?} is given twice"))),
                None => res
                    .configs
                    .iter()
                    .map(|c| incremental_op(&c.name, c.config_operation, c.value.as_deref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid_request),
            };
            Alteration { resource_type: res.resource_type, name: res.resource_name, ops, names }
        })
        .collect();
    let responses = alter(ctx, alterations, false, r.validate_only)
        .await
        .into_iter()
        .map(|(resource_type, name, c, message)| {
            incremental::AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_error_code(c)
                .with_error_message(message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
