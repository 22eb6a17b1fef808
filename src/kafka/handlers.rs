//! One handler per Kafka API key: decode the request with the `kafka-protocol` crate, call the
//! broker (or the group coordinator), build the response. Owns the mapping from broker errors to
//! Kafka error codes. Never touches sockets (the server does) or storage internals (the broker
//! does).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::task::JoinSet;

use super::KafkaError;
use super::batch::{self, BatchError};
use super::codec::{self, DecodedRequest};
use super::group::{Coordinator, JoinOutcome, JoinParams, Reply, SyncOutcome};
use crate::broker::{Broker, BrokerError, validate_group_name, validate_topic_name};
use crate::metrics::{Listener, snake_case};

/// Our one broker's node id: we are every partition's leader and every group's coordinator.
const NODE_ID: i32 = 0;
/// Longest a Fetch may long-poll, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Most partitions one Fetch/Produce/ListOffsets request may name.
const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The Kafka error code a real broker would send for a broker-layer error.
pub(crate) fn broker_error_code(e: &BrokerError) -> i16 {
    use crate::storage::StorageError;
    match e {
        BrokerError::UnknownTopic { .. } | BrokerError::UnknownPartition { .. } => {
            code(ResponseError::UnknownTopicOrPartition)
        }
        BrokerError::TopicAlreadyExists { .. } => code(ResponseError::TopicAlreadyExists),
        BrokerError::InvalidTopicName { .. } => code(ResponseError::InvalidTopicException),
        BrokerError::InvalidGroupName { .. } => code(ResponseError::InvalidGroupId),
        BrokerError::NoPartitions | BrokerError::TooManyPartitions { .. } => {
            code(ResponseError::InvalidPartitions)
        }
        BrokerError::TooManyTopics { .. } => code(ResponseError::PolicyViolation),
        BrokerError::EmptyBatch => code(ResponseError::InvalidRecord),
        BrokerError::Storage { source, .. } => match source {
            StorageError::OffsetOutOfRange { .. } => code(ResponseError::OffsetOutOfRange),
            StorageError::RecordTooLarge { .. } | StorageError::BatchTooLarge { .. } => {
                code(ResponseError::MessageTooLarge)
            }
            StorageError::InvalidRecord(_) => code(ResponseError::InvalidRecord),
            _ => code(ResponseError::KafkaStorageError),
        },
        BrokerError::Io { .. }
        | BrokerError::CorruptState { .. }
        | BrokerError::MissingPartitionDir { .. }
        | BrokerError::TopicOffline { .. }
        | BrokerError::PartitionOffline { .. }
        | BrokerError::GroupOffline { .. }
        | BrokerError::DataDirInUse { .. } => code(ResponseError::KafkaStorageError),
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
    pub max_record_bytes: u32,
}

/// Everything shared by the connections of one Kafka listener.
pub(crate) struct Ctx {
    pub broker: Arc<Broker>,
    pub coordinator: Mutex<Coordinator>,
    pub config: HandlerConfig,
    next_producer_id: AtomicI64,
}

impl Ctx {
    pub(crate) fn new(broker: Arc<Broker>, config: HandlerConfig) -> Self {
        // Producer ids only need to differ between producers; seeding from the clock keeps them
        // distinct across restarts without storing anything.
        let seed = crate::record::now_ms().max(1);
        Ctx {
            broker,
            coordinator: Mutex::new(Coordinator::new()),
            config,
            next_producer_id: AtomicI64::new(seed),
        }
    }

    pub(crate) fn coordinator(&self) -> MutexGuard<'_, Coordinator> {
        // A panic while holding the lock would be a bug in the state machine; its state is still
        // the best we have, so keep serving rather than poisoning every group.
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode<T: Encodable>(req: &DecodedRequest, body: &T) -> Result<Option<Bytes>, KafkaError> {
    codec::encode_response(req.key, req.header.request_api_version, req.header.correlation_id, body)
        .map(Some)
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
pub(crate) async fn handle(ctx: &Ctx, req: DecodedRequest) -> Result<Option<Bytes>, KafkaError> {
    let metrics = ctx.broker.metrics().clone();
    metrics.record_request(Listener::Kafka, snake_case(&format!("{:?}", req.key)));
    let result = handle_request(ctx, req).await;
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

async fn handle_request(ctx: &Ctx, mut req: DecodedRequest) -> Result<Option<Bytes>, KafkaError> {
    let v = req.header.request_api_version;
    match req.key {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = codec::decode_body(&mut req)?;
            encode(&req, &codec::api_versions_response(0))
        }
        ApiKey::Metadata => {
            let body = metadata(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::CreateTopics => {
            let body = create_topics(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::DeleteTopics => {
            let body = delete_topics(ctx, codec::decode_body(&mut req)?);
            encode(&req, &body)
        }
        ApiKey::InitProducerId => {
            let body = init_producer_id(ctx, codec::decode_body(&mut req)?);
            encode(&req, &body)
        }
        ApiKey::Produce => {
            let r: ProduceRequest = codec::decode_body(&mut req)?;
            let acks = r.acks;
            let body = produce(ctx, r).await;
            if acks == 0 { Ok(None) } else { encode(&req, &body) }
        }
        ApiKey::Fetch => {
            let body = fetch(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::ListOffsets => {
            let body = list_offsets(ctx, codec::decode_body(&mut req)?).await;
            encode(&req, &body)
        }
        ApiKey::FindCoordinator => {
            let body = find_coordinator(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::JoinGroup => {
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
            let body = join_group(ctx, codec::decode_body(&mut req)?, v, client_id).await;
            encode(&req, &body)
        }
        ApiKey::SyncGroup => {
            let body = sync_group(ctx, codec::decode_body(&mut req)?, v).await;
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
            let body = leave_group(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        ApiKey::OffsetCommit => {
            let body = offset_commit(ctx, codec::decode_body(&mut req)?);
            encode(&req, &body)
        }
        ApiKey::OffsetFetch => {
            let body = offset_fetch(ctx, codec::decode_body(&mut req)?, v);
            encode(&req, &body)
        }
        other => Err(KafkaError::UnsupportedApi { api_key: other as i16, version: v }),
    }
}

fn metadata_topic(ctx: &Ctx, name: &str) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(s(name).into()));
    match ctx.broker.describe_topic(name) {
        // A damaged topic.json: the topic exists but none of it is served.
        Ok(d) if d.offline.is_some() => t.with_error_code(code(ResponseError::KafkaStorageError)),
        Ok(d) => t.with_partitions(
            d.partitions
                .iter()
                .map(|p| {
                    let error = if p.offline.is_some() {
                        ResponseError::KafkaStorageError.code()
                    } else {
                        0
                    };
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

fn metadata(ctx: &Ctx, r: MetadataRequest, v: i16) -> MetadataResponse {
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
                match ctx.broker.create_topic(name, ctx.config.default_partitions) {
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

fn create_topics(ctx: &Ctx, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.to_string();
            let partitions = if t.num_partitions == -1 {
                ctx.config.default_partitions as i32
            } else {
                t.num_partitions
            };
            let mut res = CreatableTopicResult::default().with_name(t.name.clone());
            let err: Result<(), (i16, String)> = if partitions <= 0 {
                Err((
                    code(ResponseError::InvalidPartitions),
                    "partition count must be positive".to_string(),
                ))
            } else if t.replication_factor != -1 && t.replication_factor != 1 {
                Err((
                    code(ResponseError::InvalidReplicationFactor),
                    "a single broker holds exactly one replica".to_string(),
                ))
            } else if !t.assignments.is_empty() {
                Err((
                    code(ResponseError::InvalidRequest),
                    "manual replica assignment is not supported".to_string(),
                ))
            } else if r.validate_only {
                match (validate_topic_name(&name), ctx.broker.describe_topic(&name)) {
                    (Err(e), _) => Err((broker_error_code(&e), e.to_string())),
                    (Ok(()), Ok(_)) => Err((
                        code(ResponseError::TopicAlreadyExists),
                        format!("topic {name} exists"),
                    )),
                    (Ok(()), Err(_)) => Ok(()),
                }
            } else {
                ctx.broker
                    .create_topic(&name, partitions as u32)
                    .map(|_| ())
                    .map_err(|e| (broker_error_code(&e), e.to_string()))
            };
            match err {
                Ok(()) => {
                    if v >= 5 {
                        res = res.with_num_partitions(partitions).with_replication_factor(1);
                    }
                }
                Err((c, msg)) => {
                    res = res.with_error_code(c).with_error_message(Some(s(&msg)));
                }
            }
            res
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn delete_topics(ctx: &Ctx, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let responses = r
        .topic_names
        .iter()
        .map(|name| {
            let res = DeletableTopicResult::default().with_name(Some(name.clone()));
            match ctx.broker.delete_topic(name) {
                Ok(()) => res,
                Err(e) => res.with_error_code(broker_error_code(&e)),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

fn init_producer_id(ctx: &Ctx, r: InitProducerIdRequest) -> InitProducerIdResponse {
    if r.transactional_id.is_some() {
        // Transactions are not implemented: refuse clearly rather than pretend.
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    let id = ctx.next_producer_id.fetch_add(1, Ordering::Relaxed);
    InitProducerIdResponse::default().with_producer_id(id.into()).with_producer_epoch(0)
}

async fn produce(ctx: &Ctx, r: ProduceRequest) -> ProduceResponse {
    let started = Instant::now();
    let metrics = ctx.broker.metrics();
    let acks_ok = matches!(r.acks, -1..=1);
    let mut seen = 0usize;
    let mut responses = Vec::with_capacity(r.topic_data.len());
    for topic in &r.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            seen += 1;
            let res = PartitionProduceResponse::default().with_index(p.index);
            let err = if !acks_ok {
                Err(code(ResponseError::InvalidRequiredAcks))
            } else if seen > MAX_PARTITIONS_PER_REQUEST || p.index < 0 {
                Err(code(ResponseError::UnknownTopicOrPartition))
            } else {
                produce_partition(ctx, &topic.name, p.index as u32, p.records.as_ref()).await
            };
            parts.push(match err {
                Ok(base) => res.with_base_offset(base as i64),
                Err(c) => {
                    metrics.record_request_error(Listener::Kafka, error_kind(c));
                    res.with_error_code(c)
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(parts),
        );
    }
    metrics.observe_produce(Listener::Kafka, started.elapsed());
    ProduceResponse::default().with_responses(responses)
}

async fn produce_partition(
    ctx: &Ctx,
    topic: &str,
    partition: u32,
    records: Option<&Bytes>,
) -> Result<u64, i16> {
    let Some(records) = records else {
        return Err(code(ResponseError::InvalidRecord));
    };
    let mut stored =
        batch::kafka_to_stored(records, ctx.config.max_record_bytes, crate::record::now_ms())
            .map_err(|e| {
                tracing::debug!(topic, partition, error = %e, "refused a produced batch");
                match e {
                    BatchError::TooLarge(_) => code(ResponseError::MessageTooLarge),
                    BatchError::Invalid(_) | BatchError::Transactional => {
                        code(ResponseError::InvalidRecord)
                    }
                }
            })?;
    // An unknown topic is retriable for clients (they refresh metadata); Produce never creates.
    ctx.broker.partition_count(topic).map_err(|e| broker_error_code(&e))?;
    let res = ctx
        .broker
        .append_encoded(topic, Some(partition), None, &mut stored.encoded)
        .await
        .map_err(|e| {
            tracing::warn!(topic, partition, error = %e, "Kafka produce failed");
            broker_error_code(&e)
        })?;
    let count = res.offsets.next - res.offsets.first;
    ctx.broker.metrics().record_append(topic, partition, count, stored.encoded.len() as u64);
    Ok(res.offsets.first)
}

/// One partition's fetch outcome.
struct PartFetch {
    error: i16,
    /// Records in `records`.
    count: u64,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

async fn fetch_one(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> PartFetch {
    let fail = |error| PartFetch {
        error,
        count: 0,
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    };
    if partition < 0 {
        return fail(code(ResponseError::UnknownTopicOrPartition));
    }
    if offset < 0 {
        return fail(code(ResponseError::OffsetOutOfRange));
    }
    match ctx
        .broker
        .fetch(topic, partition as u32, offset as u64, max_bytes.max(1), 0, Duration::ZERO)
        .await
    {
        Ok(f) => {
            let records = match batch::stored_to_kafka(
                f.records.bytes(),
                ctx.config.max_record_bytes,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(topic, partition, offset, error = %e, "stored records failed their checks");
                    return fail(code(ResponseError::KafkaStorageError));
                }
            };
            PartFetch {
                error: 0,
                count: if f.records.is_empty() {
                    0
                } else {
                    f.records.next_offset() - f.records.first_offset()
                },
                high_watermark: f.high_watermark as i64,
                log_start_offset: f.log_start_offset as i64,
                records,
            }
        }
        Err(e) => fail(broker_error_code(&e)),
    }
}

async fn fetch(ctx: &Ctx, r: FetchRequest) -> FetchResponse {
    let started = Instant::now();
    let wanted: Vec<(String, i32, i64, usize)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.topic.to_string(),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes.max(0) as usize,
                )
            })
        })
        .take(MAX_PARTITIONS_PER_REQUEST)
        .collect();
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = r.min_bytes.max(0) as usize;

    let mut results = fetch_all(ctx, &wanted, r.max_bytes).await;
    let got: usize = results.iter().map(|p| p.records.len()).sum();
    let any_error = results.iter().any(|p| p.error != 0);
    if got < min_bytes.max(1) && !any_error && !max_wait.is_zero() && !wanted.is_empty() {
        // Long-poll every partition at once; the first one with data (or the deadline) ends the
        // wait, then one more pass collects whatever arrived everywhere.
        let mut waits = JoinSet::new();
        for (topic, partition, offset, _) in &wanted {
            let (broker, topic, partition, offset) =
                (ctx.broker.clone(), topic.clone(), *partition, *offset);
            waits.spawn(async move {
                let _ = broker.fetch(&topic, partition as u32, offset as u64, 1, 1, max_wait).await;
            });
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match tokio::time::timeout_at(deadline, waits.join_next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(_)) => {}
            }
            results = fetch_all(ctx, &wanted, r.max_bytes).await;
            let now_got: usize = results.iter().map(|p| p.records.len()).sum();
            if now_got >= min_bytes.max(1) {
                break;
            }
        }
        waits.abort_all();
    }

    let metrics = ctx.broker.metrics();
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for ((topic, partition, offset, _), res) in wanted.iter().zip(results) {
        if res.error == 0 {
            metrics.record_fetch(topic, *partition as u32, res.count, res.records.len() as u64);
        } else {
            metrics.record_request_error(Listener::Kafka, error_kind(res.error));
        }
        tracing::trace!(
            topic,
            partition,
            offset,
            error = res.error,
            bytes = res.records.len(),
            high_watermark = res.high_watermark,
            "Fetch partition answered"
        );
        let pd = fetch_response::PartitionData::default()
            .with_partition_index(*partition)
            .with_error_code(res.error)
            .with_high_watermark(res.high_watermark)
            .with_last_stable_offset(res.high_watermark)
            .with_log_start_offset(res.log_start_offset)
            .with_records(Some(res.records));
        match responses.last_mut() {
            Some(t) if t.topic.as_str() == topic => t.partitions.push(pd),
            _ => responses.push(
                FetchableTopicResponse::default()
                    .with_topic(s(topic).into())
                    .with_partitions(vec![pd]),
            ),
        }
    }
    metrics.observe_fetch(Listener::Kafka, started.elapsed());
    FetchResponse::default().with_session_id(0).with_responses(responses)
}

/// Reads every partition once without waiting, within the response's byte budget (the first
/// partition with data always gets at least one record, as Kafka does).
async fn fetch_all(
    ctx: &Ctx,
    wanted: &[(String, i32, i64, usize)],
    max_bytes: i32,
) -> Vec<PartFetch> {
    let mut budget = if max_bytes <= 0 { usize::MAX } else { max_bytes as usize };
    let mut out = Vec::with_capacity(wanted.len());
    for (topic, partition, offset, part_max) in wanted {
        let limit = (*part_max).min(budget);
        let mut res = fetch_one(ctx, topic, *partition, *offset, limit.max(1)).await;
        if limit == 0 {
            res.records = Bytes::new();
        }
        budget = budget.saturating_sub(res.records.len());
        out.push(res);
    }
    out
}

async fn list_offsets(ctx: &Ctx, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics.iter() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions.iter().take(MAX_PARTITIONS_PER_REQUEST) {
            let res =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            parts.push(match list_offset(ctx, &t.name, p.partition_index, p.timestamp).await {
                Ok((offset, ts)) => res.with_offset(offset).with_timestamp(ts),
                Err(c) => res.with_error_code(c),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for a ListOffsets query: -2 = earliest, -1 = latest, else by timestamp.
async fn list_offset(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), i16> {
    let d = ctx.broker.describe_topic(topic).map_err(|e| broker_error_code(&e))?;
    if d.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| d.partitions.get(i))
        .ok_or(code(ResponseError::UnknownTopicOrPartition))?;
    // A damaged (offline) partition has no offsets to tell.
    if p.offline.is_some() {
        return Err(code(ResponseError::KafkaStorageError));
    }
    match timestamp {
        -2 => Ok((p.log_start_offset as i64, -1)),
        -1 => Ok((p.next_offset as i64, -1)),
        ts if ts < 0 => Err(code(ResponseError::InvalidRequest)),
        ts => {
            let found = ctx
                .broker
                .offset_for_timestamp(topic, partition as u32, ts)
                .map_err(|e| broker_error_code(&e))?;
            let Some(offset) = found else { return Ok((-1, -1)) };
            // Kafka answers with the found record's own timestamp.
            let rec_ts = match ctx
                .broker
                .fetch(topic, partition as u32, offset, 1, 0, Duration::ZERO)
                .await
            {
                Ok(f) => {
                    f.records.records().next().and_then(|r| r.ok()).map_or(ts, |r| r.timestamp_ms)
                }
                Err(_) => ts,
            };
            Ok((offset as i64, rec_ts))
        }
    }
}

fn find_coordinator(ctx: &Ctx, r: FindCoordinatorRequest, v: i16) -> FindCoordinatorResponse {
    let host = s(&ctx.config.advertised_host);
    let port = ctx.config.advertised_port;
    // key_type 1 asks for a transaction coordinator: we have none.
    let err = if r.key_type == 1 { code(ResponseError::CoordinatorNotAvailable) } else { 0 };
    if v >= 4 {
        let coordinators = r
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = find_coordinator_response::Coordinator::default().with_key(k.clone());
                if err != 0 {
                    c.with_error_code(err).with_node_id((-1).into())
                } else {
                    c.with_node_id(NODE_ID.into()).with_host(host.clone()).with_port(port)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if err != 0 {
        return FindCoordinatorResponse::default().with_error_code(err).with_node_id((-1).into());
    }
    FindCoordinatorResponse::default().with_node_id(NODE_ID.into()).with_host(host).with_port(port)
}

async fn join_group(
    ctx: &Ctx,
    r: JoinGroupRequest,
    v: i16,
    client_id: String,
) -> JoinGroupResponse {
    let outcome = if let Err(e) = validate_group_name(&r.group_id) {
        JoinOutcome {
            error_code: broker_error_code(&e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: r.member_id.to_string(),
            members: Vec::new(),
        }
    } else {
        let session = Duration::from_millis(r.session_timeout_ms.max(0) as u64);
        let rebalance = if v >= 1 {
            Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64)
        } else {
            session
        };
        let params = JoinParams {
            group_id: r.group_id.to_string(),
            member_id: r.member_id.to_string(),
            client_id,
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: r.protocol_type.to_string(),
            protocols: r
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: v >= 4,
        };
        let reply = ctx.coordinator().join(Instant::now(), params);
        match reply {
            Reply::Now(o) => o,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinOutcome {
                error_code: code(ResponseError::RebalanceInProgress),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id: r.member_id.to_string(),
                members: Vec::new(),
            }),
        }
    };
    tracing::debug!(group = r.group_id.as_str(), member = %outcome.member_id, error = outcome.error_code,
        generation = outcome.generation_id, leader = %outcome.leader, "JoinGroup answered");
    let mut res = JoinGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_generation_id(outcome.generation_id)
        .with_leader(s(&outcome.leader))
        .with_member_id(s(&outcome.member_id))
        .with_members(
            outcome
                .members
                .iter()
                .map(|(id, md)| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_metadata(md.clone())
                })
                .collect(),
        );
    // protocol_name is a non-null string before v7; protocol_type only exists from v7.
    if v >= 7 {
        res = res
            .with_protocol_type(outcome.protocol_type.as_deref().map(s))
            .with_protocol_name(outcome.protocol_name.as_deref().map(s));
    } else {
        res = res.with_protocol_name(Some(s(outcome.protocol_name.as_deref().unwrap_or(""))));
    }
    res
}

async fn sync_group(ctx: &Ctx, r: SyncGroupRequest, v: i16) -> SyncGroupResponse {
    let assignments =
        r.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let reply = ctx.coordinator().sync(
        Instant::now(),
        &r.group_id,
        r.generation_id,
        &r.member_id,
        assignments,
    );
    let outcome = match reply {
        Reply::Now(o) => o,
        Reply::Later(rx) => rx.await.unwrap_or(SyncOutcome {
            error_code: code(ResponseError::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }),
    };
    tracing::debug!(group = r.group_id.as_str(), member = %r.member_id, error = outcome.error_code,
        assignment_bytes = outcome.assignment.len(), "SyncGroup answered");
    let mut res = SyncGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_assignment(outcome.assignment);
    if v >= 5 {
        res = res
            .with_protocol_type(outcome.protocol_type.as_deref().map(s))
            .with_protocol_name(outcome.protocol_name.as_deref().map(s));
    }
    res
}

fn leave_group(ctx: &Ctx, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if v >= 3 {
        r.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![r.member_id.to_string()]
    };
    let codes = ctx.coordinator().leave(Instant::now(), &r.group_id, &ids);
    if v >= 3 {
        let members = r
            .members
            .iter()
            .zip(&codes)
            .map(|(m, c)| {
                leave_group_response::MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(*c)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
    }
}

fn offset_commit(ctx: &Ctx, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_err = match validate_group_name(&r.group_id) {
        Err(e) => broker_error_code(&e),
        Ok(()) => ctx.coordinator().check_commit(
            Instant::now(),
            &r.group_id,
            r.generation_id_or_member_epoch,
            &r.member_id,
        ),
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let err = if group_err != 0 {
                        group_err
                    } else if p.partition_index < 0 || p.committed_offset < 0 {
                        code(ResponseError::InvalidCommitOffsetSize)
                    } else {
                        match ctx.broker.commit_offset(
                            &r.group_id,
                            &t.name,
                            p.partition_index as u32,
                            p.committed_offset as u64,
                        ) {
                            Ok(()) => 0,
                            Err(e) => broker_error_code(&e),
                        }
                    };
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(err)
                })
                .collect();
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One topic's committed offsets: (partition, offset or -1, error code) per partition.
type TopicOffsets = (String, Vec<(i32, i64, i16)>);

/// The committed offsets of a group: for the named (topic, partitions), or all it has.
fn committed(
    ctx: &Ctx,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, i16> {
    validate_group_name(group).map_err(|e| broker_error_code(&e))?;
    let wanted = match wanted {
        Some(w) => w,
        None => {
            let all = ctx.broker.group_offsets(group).map_err(|e| broker_error_code(&e))?;
            let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
            for (topic, partition, _) in all {
                match by_topic.last_mut() {
                    Some((t, ps)) if *t == topic => ps.push(partition as i32),
                    _ => by_topic.push((topic, vec![partition as i32])),
                }
            }
            by_topic
        }
    };
    Ok(wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let parts = partitions
                .into_iter()
                .map(|p| {
                    if p < 0 {
                        return (p, -1, code(ResponseError::UnknownTopicOrPartition));
                    }
                    match ctx.broker.committed_offset(group, &topic, p as u32) {
                        Ok(o) => (p, o.map_or(-1, |o| o as i64), 0),
                        // No commit yet for a topic the broker does not know is just "none".
                        Err(_) => (p, -1, 0),
                    }
                })
                .collect();
            (topic, parts)
        })
        .collect())
}

fn offset_fetch(ctx: &Ctx, r: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    if v >= 8 {
        let groups = r
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect()
                });
                let res = offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match committed(ctx, &g.group_id, wanted) {
                    Ok(topics) => res.with_topics(
                        topics
                            .into_iter()
                            .map(|(t, parts)| {
                                offset_fetch_response::OffsetFetchResponseTopics::default()
                                    .with_name(s(&t).into())
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, e)| {
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_error_code(e)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(c) => res.with_error_code(c),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = r
        .topics
        .as_ref()
        .map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
    match committed(ctx, &r.group_id, wanted) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(s(&t).into())
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, e)| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_error_code(e)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(c) if v >= 2 => OffsetFetchResponse::default().with_error_code(c),
        Err(_) => OffsetFetchResponse::default(),
    }
}
