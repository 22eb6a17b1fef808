//! Metadata: the topics and their partitions, with this broker as every partition's leader, and
//! (v10+) each topic's ID; finds topics by name or (v10+) by ID; auto-creates topics when the
//! broker and the client allow it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{Ctx, NODE_ID, broker_error_code, s};
use crate::broker::validate_topic_name;

/// First Metadata version whose topics carry an ID (KIP-516).
const TOPIC_ID_VERSION: i16 = 10;
/// First Metadata version whose response topics may have a null name (those found by ID).
const NULL_NAME_VERSION: i16 = 12;

fn metadata_topic(ctx: &Ctx, name: &str, v: i16) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(s(name).into()));
    match ctx.broker.describe_topic(name) {
        // A damaged topic.json: the topic exists but none of it is served.
        Ok(d) if d.offline.is_some() => t.with_error_code(storage_error()),
        Ok(d) => {
            // The field exists from v10: set earlier, the crate refuses to encode it (trap 12).
            let t = if v >= TOPIC_ID_VERSION {
                t.with_topic_id(Uuid::from_bytes(d.topic_id))
            } else {
                t
            };
            t.with_partitions(
                d.partitions
                    .iter()
                    .map(|p| {
                        let error = if p.offline.is_some() { storage_error() } else { 0 };
                        MetadataResponsePartition::default()
                            .with_error_code(error)
                            .with_partition_index(p.partition as i32)
                            .with_leader_id(NODE_ID.into())
                            .with_replica_nodes(vec![NODE_ID.into()])
                            .with_isr_nodes(vec![NODE_ID.into()])
                    })
                    .collect(),
            )
        }
        Err(e) => t.with_error_code(broker_error_code(&e)),
    }
}

fn storage_error() -> i16 {
    ResponseError::KafkaStorageError.code()
}

/// One topic a request asks about.
enum Wanted {
    Name(String),
    /// A topic named by ID (v10+), with the name the request also gave, if any.
    Id(Uuid, Option<String>),
}

/// The answer for a topic named by ID: the topic under its current name, or UNKNOWN_TOPIC_ID
/// (an ID of a deleted topic stays unknown, even if the name was created again).
fn topic_by_id(ctx: &Ctx, id: Uuid, name: Option<String>, v: i16) -> MetadataResponseTopic {
    match ctx.broker.topic_by_id(*id.as_bytes()) {
        Some(found) => metadata_topic(ctx, &found, v),
        None => {
            // Before v12 the name cannot be null: echo what the request said.
            let name =
                if v >= NULL_NAME_VERSION { None } else { Some(s(&name.unwrap_or_default())) };
            MetadataResponseTopic::default()
                .with_name(name.map(Into::into))
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code())
        }
    }
}

pub(super) fn metadata(ctx: &Ctx, r: MetadataRequest, v: i16) -> MetadataResponse {
    let all =
        || ctx.broker.describe_all().into_iter().map(|d| Wanted::Name(d.name)).collect::<Vec<_>>();
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let wanted: Vec<Wanted> = match &r.topics {
        None => all(),
        Some(t) if t.is_empty() && v == 0 => all(),
        Some(t) => t
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string());
                if !t.topic_id.is_nil() {
                    Some(Wanted::Id(t.topic_id, name))
                } else {
                    name.map(Wanted::Name)
                }
            })
            .collect(),
    };
    // Before v4 a request could not refuse auto-creation; from v4 the client says.
    let allow_create = ctx.config.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let topics = wanted
        .into_iter()
        .map(|w| {
            let name = match w {
                Wanted::Id(id, name) => return topic_by_id(ctx, id, name, v),
                Wanted::Name(name) => name,
            };
            if let Err(e) = validate_topic_name(&name) {
                return MetadataResponseTopic::default()
                    .with_name(Some(s(&name).into()))
                    .with_error_code(broker_error_code(&e));
            }
            if allow_create && ctx.broker.describe_topic(&name).is_err() {
                let configs = crate::broker::topic_config::TopicConfigs::default();
                match ctx.broker.create_topic(&name, ctx.config.default_partitions, configs, false)
                {
                    Ok(_) => {
                        tracing::info!(topic = %name, "auto-created topic from Kafka metadata")
                    }
                    Err(e) => tracing::debug!(topic = %name, error = %e, "auto-create failed"),
                }
            }
            metadata_topic(ctx, &name, v)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(NODE_ID.into())
                .with_host(s(&ctx.config.advertised_host))
                .with_port(ctx.config.advertised_port),
        ])
        .with_cluster_id(Some(s("minikafka")))
        .with_controller_id(NODE_ID.into())
        .with_topics(topics)
}
