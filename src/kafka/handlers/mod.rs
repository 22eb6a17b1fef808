//! One handler per Kafka API key: decode the request with the `kafka-protocol` crate, call the
//! broker (or the group coordinator), build the response. Owns the mapping from broker errors to
//! Kafka error codes. Never touches sockets (the server does) or storage internals (the broker
//! does).

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crate::kafka::splice::Part;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::KafkaError;
use super::codec::{self, DecodedRequest};
use crate::broker::coordinator::Coordinator;
use crate::broker::{Broker, BrokerError};
use crate::metrics::{Listener, snake_case};

mod admin;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod topics;

/// Our one broker's node id: we are every partition's leader and every group's coordinator.
const NODE_ID: i32 = 0;
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
    pub broker: Arc<Broker>,
    pub config: HandlerConfig,
}

impl Ctx {
    pub(crate) fn new(broker: Arc<Broker>, config: HandlerConfig) -> Self {
        Ctx { broker, config }
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
            let body = metadata::metadata(ctx, codec::decode_body(&mut req)?, v);
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
            let body = produce::init_producer_id(ctx, codec::decode_body(&mut req)?, &client_id);
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
            let err = ctx.coordinator().heartbeat(
                Instant::now(),
                &r.group_id,
                r.generation_id,
                &r.member_id,
            );
            encode(&req, &HeartbeatResponse::default().with_error_code(err))
        }
        ApiKey::LeaveGroup => {
            let body = groups::leave_group(ctx, codec::decode_body(&mut req)?, v);
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
