//! One handler per Kafka API key: decode the request with the `kafka-protocol` crate, call the
//! cluster (partitions' data, leadership, topics, producer ids) or this node's broker (configs,
//! the group coordinator's local state), build the response. Owns the mapping from broker and
//! cluster errors to Kafka error codes. Never touches sockets (the server does) or storage
//! internals (the broker does).

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::kafka::splice::Part;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::KafkaError;
use super::codec::{self, DecodedRequest};
use crate::broker::coordinator::Coordinator;
use crate::broker::{Broker, BrokerError};
use crate::cluster::{Cluster, ClusterError};
use crate::metrics::{Listener, snake_case};

mod admin;
mod configs;
mod fetch;
mod groups;
pub(crate) use groups::tick as tick_groups;
mod leader_epochs;
mod metadata;
mod produce;
mod topics;

/// The cluster id DescribeCluster (and Metadata) report. A broker keeps no id of its own, so
/// every minikafka has this fixed one; clients only compare it between their own connections.
const CLUSTER_ID: &str = "minikafka";
/// Longest a Fetch may long-poll, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Most partitions one Fetch/Produce/ListOffsets request may name.
const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;

/// Why a transactional producer is refused (InitProducerId with a transactional id,
/// FindCoordinator for a transaction coordinator). The code sent with it is
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED: non-retriable in the protocol, and the one error that
/// librdkafka (confluent-kafka), the Java client and aiokafka all turn into a fatal error at once
/// on both requests. COORDINATOR_NOT_AVAILABLE (what we sent before) is retriable, so clients
/// retried until their own timeout; UNSUPPORTED_VERSION and INVALID_REQUEST are not in librdkafka's
/// fatal list for FindCoordinator, so it would keep querying for a coordinator.
const TRANSACTIONS_REFUSED: &str = "transactions are not supported by this broker (minikafka): \
    use a producer without transactional.id";

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The Kafka error code a real broker would send for a broker-layer error.
pub(crate) fn broker_error_code(e: &BrokerError) -> i16 {
    use crate::storage::StorageError;
    use crate::storage::producer_state::ProducerStateError;
    match e {
        BrokerError::UnknownTopic { .. } | BrokerError::UnknownPartition { .. } => {
            code(ResponseError::UnknownTopicOrPartition)
        }
        BrokerError::TopicAlreadyExists { .. } => code(ResponseError::TopicAlreadyExists),
        BrokerError::InvalidTopicName { .. } => code(ResponseError::InvalidTopicException),
        BrokerError::InvalidGroupName { .. } => code(ResponseError::InvalidGroupId),
        BrokerError::InvalidConfig { .. } => code(ResponseError::InvalidConfig),
        BrokerError::NoPartitions
        | BrokerError::TooManyPartitions { .. }
        | BrokerError::PartitionCountNotIncreased { .. } => code(ResponseError::InvalidPartitions),
        BrokerError::TooManyTopics { .. } => code(ResponseError::PolicyViolation),
        BrokerError::EmptyBatch => code(ResponseError::InvalidRecord),
        BrokerError::Storage { source, .. } => match source {
            StorageError::OffsetOutOfRange { .. } => code(ResponseError::OffsetOutOfRange),
            StorageError::RecordTooLarge { .. } | StorageError::BatchTooLarge { .. } => {
                code(ResponseError::MessageTooLarge)
            }
            StorageError::InvalidBatch { source: crate::batch::BatchError::Crc { .. }, .. } => {
                code(ResponseError::CorruptMessage)
            }
            StorageError::InvalidBatch { .. } | StorageError::UnsupportedBatch { .. } => {
                code(ResponseError::InvalidRecord)
            }
            StorageError::Producer(ProducerStateError::OutOfOrderSequence { .. }) => {
                code(ResponseError::OutOfOrderSequenceNumber)
            }
            StorageError::Producer(ProducerStateError::InvalidProducerEpoch { .. }) => {
                code(ResponseError::InvalidProducerEpoch)
            }
            _ => code(ResponseError::KafkaStorageError),
        },
        BrokerError::Io { .. }
        | BrokerError::CorruptState { .. }
        | BrokerError::MissingPartitionDir { .. }
        | BrokerError::TopicOffline { .. }
        | BrokerError::PartitionOffline { .. }
        | BrokerError::GroupOffline { .. }
        | BrokerError::DataDirInUse { .. } => code(ResponseError::KafkaStorageError),
        BrokerError::GroupNotEmpty { .. } => code(ResponseError::NonEmptyGroup),
        BrokerError::UnknownGroup { .. } => code(ResponseError::GroupIdNotFound),
        BrokerError::ShuttingDown => code(ResponseError::NotLeaderOrFollower),
    }
}

/// The Kafka error code for a cluster-layer error: what a Kafka broker sends in the same case, so
/// clients refresh their metadata and retry where Kafka's would.
pub(crate) fn cluster_error_code(e: &ClusterError) -> i16 {
    match e {
        ClusterError::NotLeader { .. } => code(ResponseError::NotLeaderOrFollower),
        ClusterError::LeaderNotAvailable { .. } => code(ResponseError::LeaderNotAvailable),
        ClusterError::NotEnoughReplicas { .. } => code(ResponseError::NotEnoughReplicas),
        ClusterError::NotEnoughReplicasAfterAppend { .. } => {
            code(ResponseError::NotEnoughReplicasAfterAppend)
        }
        ClusterError::Timeout { .. } => code(ResponseError::RequestTimedOut),
        ClusterError::FencedLeaderEpoch { .. } => code(ResponseError::FencedLeaderEpoch),
        ClusterError::UnknownLeaderEpoch { .. } => code(ResponseError::UnknownLeaderEpoch),
        ClusterError::InvalidReplicationFactor { .. } => {
            code(ResponseError::InvalidReplicationFactor)
        }
        ClusterError::InvalidReplicaAssignment { .. } => {
            code(ResponseError::InvalidReplicaAssignment)
        }
        ClusterError::Reassignment { .. } => code(ResponseError::InvalidReplicaAssignment),
        ClusterError::Membership(_) => code(ResponseError::InvalidRequest),
        ClusterError::Throttle { .. } => code(ResponseError::InvalidRequest),
        ClusterError::NotController => code(ResponseError::NotController),
        ClusterError::Broker(e) => broker_error_code(e),
        // The metadata quorum did not answer: retriable, as Kafka's own timeout is.
        ClusterError::Raft(_) => code(ResponseError::RequestTimedOut),
        // Leadership moves away at shutdown: the client finds the new leader.
        ClusterError::ShuttingDown => code(ResponseError::NotLeaderOrFollower),
        ClusterError::Internal(_) | ClusterError::Start { .. } => {
            code(ResponseError::UnknownServerError)
        }
    }
}

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub(crate) struct HandlerConfig {
    pub advertised_host: String,
    pub advertised_port: i32,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

/// Everything shared by the connections of one Kafka listener.
pub(crate) struct Ctx {
    /// The cluster this broker is part of (a cluster of one without `--controllers`).
    pub cluster: Arc<Cluster>,
    /// `cluster.broker()`: this node's own broker, for what stays local.
    pub broker: Arc<Broker>,
    pub config: HandlerConfig,
}

/// A broker as Metadata, FindCoordinator and DescribeCluster show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl Ctx {
    pub(crate) fn new(cluster: Arc<Cluster>, config: HandlerConfig) -> Self {
        Ctx { broker: cluster.broker().clone(), cluster, config }
    }

    /// This broker's node id (0 on a single node).
    pub(crate) fn node_id(&self) -> i32 {
        self.cluster.node_id()
    }

    /// The live brokers clients may connect to, by id: this one at the address this listener
    /// advertises, the others at the Kafka address they registered (a broker without one serves
    /// no Kafka clients, so it is left out).
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        let me = self.node_id();
        let mut out = vec![Endpoint {
            node_id: me,
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
        }];
        for b in self.cluster.brokers() {
            let id = b.id;
            if id == me || b.fenced {
                continue;
            }
            let Some(addr) = b.kafka_addr.as_deref() else { continue };
            match super::server::split_host_port(addr) {
                Ok((host, port)) => out.push(Endpoint { node_id: id, host, port }),
                Err(e) => tracing::warn!(broker = id, error = %e, "a broker's Kafka address"),
            }
        }
        out.sort_by_key(|e| e.node_id);
        out
    }

    /// The endpoint of broker `id`, if it is live and serves Kafka clients.
    pub(crate) fn endpoint(&self, id: i32) -> Option<Endpoint> {
        self.endpoints().into_iter().find(|e| e.node_id == id)
    }

    /// Whether this broker coordinates `group`: a group request reaching another broker is
    /// answered NOT_COORDINATOR, so the client finds the coordinator again.
    pub(crate) fn coordinates(&self, group: &str) -> bool {
        self.cluster.coordinator_for(group) == self.node_id()
    }

    /// The broker's consumer-group coordinator.
    pub(crate) fn coordinator(&self) -> MutexGuard<'_, Coordinator> {
        self.broker.coordinator()
    }
}

/// A response frame, in parts to write back to back (one part, except a Fetch's, whose stored
/// batches are parts of their own).
pub(crate) type Frame = Vec<Part>;

fn encode<T: Encodable>(req: &DecodedRequest, body: &T) -> Result<Option<Frame>, KafkaError> {
    codec::encode_response(req.key, req.header.request_api_version, req.header.correlation_id, body)
        .map(|b| Some(vec![Part::Bytes(b)]))
}

/// The metrics label of a Kafka error code (`unknown_topic_or_partition`).
fn error_kind(error_code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    match error_code.err() {
        Some(e) => snake_case(&format!("{e:?}")),
        None => "none".to_string(),
    }
}

/// Handles one decoded request. `Ok(None)` means no response is due (Produce with acks=0).
/// `peer` is the client's address (DescribeGroups reports it as the member's host).
pub(crate) async fn handle(
    ctx: &Ctx,
    req: DecodedRequest,
    peer: SocketAddr,
) -> Result<Option<Frame>, KafkaError> {
    let metrics = ctx.broker.metrics().clone();
    metrics.record_request(Listener::Kafka, snake_case(&format!("{:?}", req.key)));
    let result = handle_request(ctx, req, peer).await;
    if let Err(e) = &result {
        let kind = match e {
            KafkaError::FrameTooLarge { .. } => "frame_too_large",
            KafkaError::UnsupportedApi { .. } => "unsupported_api",
            KafkaError::Malformed(_) => "malformed_request",
            KafkaError::Encode(_) => "encode",
            KafkaError::Io { .. } => "io",
        };
        metrics.record_request_error(Listener::Kafka, kind);
    }
    result
}

async fn handle_request(
    ctx: &Ctx,
    mut req: DecodedRequest,
    peer: SocketAddr,
) -> Result<Option<Frame>, KafkaError> {
    let v = req.header.request_api_version;
    match req.key {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = codec::decode_body(&mut req)?;
            encode(&req, &codec::api_versions_response(0))
        }
        ApiKey::Metadata => {
            let body = metadata::metadata(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::CreateTopics => {
            let body = topics::create_topics(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::DeleteTopics => {
            let body = topics::delete_topics(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::InitProducerId => {
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
            let body =
                produce::init_producer_id(ctx, codec::decode_body(&mut req)?, &client_id).await;
            encode(&req, &body)
        }
        ApiKey::Produce => {
            let r: ProduceRequest = codec::decode_body(&mut req)?;
            let acks = r.acks;
            let body = produce::produce(ctx, r, v).await;
            if acks == 0 { Ok(None) } else { encode(&req, &body) }
        }
        ApiKey::Fetch => {
            let (body, batches) = fetch::fetch(ctx, codec::decode_body(&mut req)?, v).await;
            let h = &req.header;
            let parts = codec::encode_response_spliced(
                req.key,
                h.request_api_version,
                h.correlation_id,
                &body,
                batches,
            )?;
            Ok(Some(parts))
        }
        ApiKey::ListOffsets => {
            let body = topics::list_offsets(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let body = leader_epochs::offset_for_leader_epoch(ctx, codec::decode_body(&mut req)?);
            encode(&req, &body)
        }
        ApiKey::FindCoordinator => {
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
            let body = groups::find_coordinator(ctx, codec::decode_body(&mut req)?, v, &client_id);
            encode(&req, &body)
        }
        ApiKey::JoinGroup => {
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
            let body =
                groups::join_group(ctx, codec::decode_body(&mut req)?, v, client_id, peer).await;
            encode(&req, &body)
        }
        ApiKey::SyncGroup => {
            let body = groups::sync_group(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::Heartbeat => {
            let r: HeartbeatRequest = codec::decode_body(&mut req)?;
            let err = groups::heartbeat(ctx, &r);
            encode(&req, &HeartbeatResponse::default().with_error_code(err))
        }
        ApiKey::LeaveGroup => {
            let body = groups::leave_group(ctx, codec::decode_body(&mut req)?, v).await;
            encode(&req, &body)
        }
        ApiKey::OffsetCommit => {
            let body = groups::offset_commit(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::OffsetFetch => {
            let body = groups::offset_fetch(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::ListGroups => {
            let body = groups::list_groups(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::DescribeGroups => {
            let body = groups::describe_groups(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::DeleteGroups => {
            let body = groups::delete_groups(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::OffsetDelete => {
            let body = groups::offset_delete(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        // Configs and topic administration (issue 13).
        ApiKey::DescribeConfigs => {
            let body = configs::describe_configs(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::AlterConfigs => {
            let body = configs::alter_configs(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::IncrementalAlterConfigs => {
            let body = configs::incremental_alter_configs(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::CreatePartitions => {
            let body = admin::create_partitions(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::DeleteRecords => {
            let body = admin::delete_records(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::DescribeCluster => {
            let body = admin::describe_cluster(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        other => Err(KafkaError::UnsupportedApi { api_key: other as i16, version: v }),
    }
}
