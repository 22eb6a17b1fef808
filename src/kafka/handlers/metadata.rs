//! Metadata: the topics and their partitions, with this broker as every partition's leader;
//! auto-creates topics when the broker and the client allow it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use super::{Ctx, NODE_ID, broker_error_code, s};
use crate::broker::validate_topic_name;

fn metadata_topic(ctx: &Ctx, name: &str) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(s(name).into()));
    match ctx.broker.describe_topic(name) {
        // A damaged topic.json: the topic exists but none of it is served.
        Ok(d) if d.offline.is_some() => t.with_error_code(storage_error()),
        Ok(d) => t.with_partitions(
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
        ),
        Err(e) => t.with_error_code(broker_error_code(&e)),
    }
}

fn storage_error() -> i16 {
    ResponseError::KafkaStorageError.code()
}

pub(super) fn metadata(ctx: &Ctx, r: MetadataRequest, v: i16) -> MetadataResponse {
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let names: Vec<String> = match &r.topics {
        None => ctx.broker.describe_all().into_iter().map(|d| d.name).collect(),
        Some(t) if t.is_empty() && v == 0 => {
            ctx.broker.describe_all().into_iter().map(|d| d.name).collect()
        }
        Some(t) => t.iter().filter_map(|t| t.name.as_ref().map(|n| n.to_string())).collect(),
    };
    // Before v4 a request could not refuse auto-creation; from v4 the client says.
    let allow_create = ctx.config.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let topics = names
        .iter()
        .map(|name| {
            if let Err(e) = validate_topic_name(name) {
                return MetadataResponseTopic::default()
                    .with_name(Some(s(name).into()))
                    .with_error_code(broker_error_code(&e));
            }
            if allow_create && ctx.broker.describe_topic(name).is_err() {
                let configs = crate::broker::topic_config::TopicConfigs::default();
                match ctx.broker.create_topic(name, ctx.config.default_partitions, configs, false) {
                    Ok(_) => {
                        tracing::info!(topic = %name, "auto-created topic from Kafka metadata")
                    }
                    Err(e) => tracing::debug!(topic = %name, error = %e, "auto-create failed"),
                }
            }
            metadata_topic(ctx, name)
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
