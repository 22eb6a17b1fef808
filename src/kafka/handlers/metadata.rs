//! Metadata: the live brokers, the controller, the topics and their partitions (leader, leader
//! epoch, replicas, ISR, offline replicas, as the cluster's metadata has them) and (v10+) each
//! topic's ID; finds topics by name or (v10+) by ID; auto-creates topics when the broker and the
//! client allow it. Every broker of a cluster answers alike, whichever a client asks.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{CLUSTER_ID, Ctx, broker_error_code, code, s};
use crate::broker::validate_topic_name;

/// First Metadata version whose topics carry an ID (KIP-516).
const TOPIC_ID_VERSION: i16 = 10;
/// First Metadata version whose response topics may have a null name (those found by ID).
const NULL_NAME_VERSION: i16 = 12;
/// First Metadata version whose partitions list their offline replicas.
const OFFLINE_REPLICAS_VERSION: i16 = 5;
/// First Metadata version whose partitions carry the leader epoch (KIP-320).
const LEADER_EPOCH_VERSION: i16 = 7;

/// One partition as the cluster's metadata has it. A partition without a leader is
/// LEADER_NOT_AVAILABLE (leader -1), which clients retry after refreshing; a partition this
/// broker leads but cannot read locally is KAFKA_STORAGE_ERROR.
fn metadata_partition(
    ctx: &Ctx,
    topic: &str,
    p: &crate::broker::PartitionDescription,
    v: i16,
) -> MetadataResponsePartition {
    let res = MetadataResponsePartition::default().with_partition_index(p.partition as i32);
    let Some(view) = ctx.cluster.partition_view(topic, p.partition) else {
        // Known here but not (yet) in the cluster's metadata: a topic being created or deleted.
        return res
            .with_error_code(code(ResponseError::LeaderNotAvailable))
            .with_leader_id((-1).into());
    };
    let error = match view.leader {
        None => code(ResponseError::LeaderNotAvailable),
        Some(leader) if leader == ctx.node_id() && p.offline.is_some() => storage_error(),
        Some(_) => 0,
    };
    let ids = |v: &[i32]| v.iter().map(|&id| id.into()).collect::<Vec<_>>();
    let mut res = res
        .with_error_code(error)
        .with_leader_id(view.leader.unwrap_or(-1).into())
        .with_replica_nodes(ids(&view.replicas))
        .with_isr_nodes(ids(&view.isr));
    // Set only at the versions that have the fields (trap 12).
    if v >= LEADER_EPOCH_VERSION {
        res = res.with_leader_epoch(view.leader_epoch);
    }
    if v >= OFFLINE_REPLICAS_VERSION {
        res = res.with_offline_replicas(ids(&view.offline_replicas));
    }
    res
}

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
                d.partitions.iter().map(|p| metadata_partition(ctx, name, p, v)).collect(),
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

pub(super) async fn metadata(ctx: &Ctx, r: MetadataRequest, v: i16) -> MetadataResponse {
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
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let name = match w {
            Wanted::Id(id, name) => {
                topics.push(topic_by_id(ctx, id, name, v));
                continue;
            }
            Wanted::Name(name) => name,
        };
        if let Err(e) = validate_topic_name(&name) {
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(s(&name).into()))
                    .with_error_code(broker_error_code(&e)),
            );
            continue;
        }
        if allow_create && ctx.broker.describe_topic(&name).is_err() {
            let configs = crate::broker::topic_config::TopicConfigs::default();
            let partitions = ctx.config.default_partitions;
            match ctx.cluster.create_topic(&name, partitions, None, configs, false).await {
                Ok(_) => tracing::info!(topic = %name, "auto-created topic from Kafka metadata"),
                Err(e) => tracing::debug!(topic = %name, error = %e, "auto-create failed"),
            }
        }
        topics.push(metadata_topic(ctx, &name, v));
    }
    let brokers = ctx
        .endpoints()
        .into_iter()
        .map(|e| {
            MetadataResponseBroker::default()
                .with_node_id(e.node_id.into())
                .with_host(s(&e.host))
                .with_port(e.port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(s(CLUSTER_ID)))
        // As in KRaft: clients send controller requests (CreateTopics...) to a broker, which
        // forwards them to the metadata leader, so "the controller" is this live broker. The
        // Raft leader may be fenced or not listed yet, and clients then wait for it in vain.
        .with_controller_id(ctx.node_id().into())
        .with_topics(topics)
}
