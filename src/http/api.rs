//! Handlers of `/metrics` and `/api/*`: each turns one broker call into JSON (or the exposition).
//! Errors answer `{"error": "..."}` with a status that says whose fault it was.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::browse::{DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE_BYTES, PAGE_WAIT, RecordJson, RecordsPage};
use crate::broker::topic_config::{ConfigEntry, ConfigSource};
use crate::broker::{Broker, BrokerError, GroupLag, PartitionLag, TopicDescription};
use crate::cluster::{
    BrokerRole, BrokerState, BrokerView, Cluster, ClusterError, ClusterStatus,
    PartitionView as Leadership, ReassignmentView,
};
use crate::metrics::{
    self, ClusterState, GroupOffsetState, PartitionState, ReplicaLagState, StateSnapshot,
};
use crate::protocol::ErrorCode;

/// Bytes asked of the log per fetch while filling one browser page.
const BROWSE_FETCH_BYTES: usize = 256 * 1024;
/// Upper bound on the bytes one browser page reads from the log.
const BROWSE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// An API error: a status and a message for the page.
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        ApiError::new(code_status(crate::server::error_code(&e)), e.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        ApiError::new(code_status(crate::server::cluster_error_code(&e)), e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

/// The status for a broker or cluster error, from the same classification the native protocol
/// reports.
fn code_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => StatusCode::NOT_FOUND,
        ErrorCode::UnknownGroup => StatusCode::NOT_FOUND,
        ErrorCode::TopicAlreadyExists | ErrorCode::GroupNotEmpty => StatusCode::CONFLICT,
        ErrorCode::OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidTopicName
        | ErrorCode::InvalidGroupName
        | ErrorCode::InvalidRecord
        | ErrorCode::RecordTooLarge
        | ErrorCode::FrameTooLarge
        | ErrorCode::LimitExceeded
        | ErrorCode::InvalidConfig
        | ErrorCode::InvalidPartitions
        | ErrorCode::InvalidReplicationFactor => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        // Leadership elsewhere or moving, replicas behind: the client may try again (or
        // another broker).
        ErrorCode::NotLeader
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RequestTimedOut => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Storage | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Debug, Serialize)]
pub(crate) struct PartitionView {
    partition: u32,
    log_start_offset: u64,
    next_offset: u64,
    records: u64,
    segments: u64,
    size_bytes: u64,
    /// Why the partition is offline (damaged), naming the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<String>,
}

/// One topic config as the topic page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigView {
    name: String,
    /// `None` for a sensitive value (never shown) or one with no value.
    value: Option<String>,
    /// Where the value comes from: "topic" (set on the topic), "broker" (a broker flag) or
    /// "default".
    source: &'static str,
    read_only: bool,
}

impl From<ConfigEntry> for ConfigView {
    fn from(e: ConfigEntry) -> Self {
        let source = match e.source {
            ConfigSource::Topic => "topic",
            ConfigSource::Broker => "broker",
            ConfigSource::Default => "default",
        };
        let value = if e.sensitive { None } else { e.value };
        ConfigView { name: e.name, value, source, read_only: e.read_only }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct TopicView {
    name: String,
    /// Kafka's text form of the topic id; absent for an offline topic whose id is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_id: Option<String>,
    records: u64,
    size_bytes: u64,
    segments: u64,
    partitions: Vec<PartitionView>,
    /// Why the whole topic is offline (its topic.json is damaged), naming the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<String>,
    /// Every config with its source: on the one-topic endpoint only.
    #[serde(skip_serializing_if = "Option::is_none")]
    configs: Option<Vec<ConfigView>>,
}

impl From<TopicDescription> for TopicView {
    fn from(d: TopicDescription) -> Self {
        let partitions: Vec<PartitionView> = d
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                next_offset: p.next_offset,
                records: p.next_offset.saturating_sub(p.log_start_offset),
                segments: p.segments,
                size_bytes: p.size_bytes,
                offline: p.offline.clone(),
            })
            .collect();
        TopicView {
            topic_id: (d.topic_id != [0; 16]).then(|| crate::protocol::topic_id_text(&d.topic_id)),
            name: d.name,
            records: partitions.iter().map(|p| p.records).sum(),
            size_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
            segments: partitions.iter().map(|p| p.segments).sum(),
            partitions,
            offline: d.offline,
            configs: None,
        }
    }
}

pub(crate) async fn list_topics(State(s): State<AppState>) -> Json<Vec<TopicView>> {
    Json(s.broker.describe_all().into_iter().map(TopicView::from).collect())
}

pub(crate) async fn get_topic(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<TopicView> {
    let mut view = TopicView::from(s.broker.describe_topic(&name)?);
    // An offline topic still has its page; its configs are what could not be read.
    if view.offline.is_none() {
        let entries = s.broker.describe_topic_configs(&name)?;
        view.configs = Some(entries.into_iter().map(ConfigView::from).collect());
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateTopic {
    name: String,
    #[serde(default = "one")]
    partitions: u32,
}

fn one() -> u32 {
    1
}

pub(crate) async fn create_topic(
    State(s): State<AppState>,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> Result<(StatusCode, Json<TopicView>), ApiError> {
    let Json(req) = body?;
    // Through the cluster: in a cluster the topic is created everywhere, with the default
    // replication factor.
    let configs = crate::broker::topic_config::TopicConfigs::default();
    let d = s.cluster.create_topic(&req.name, req.partitions, None, configs, false).await?;
    tracing::info!(topic = %req.name, partitions = req.partitions, "topic created from the console");
    Ok((StatusCode::CREATED, Json(d.into())))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecordsQuery {
    offset: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn records(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> ApiResult<RecordsPage> {
    let Query(q) = query?;
    // Each page may build a few MB: only a few at once, whoever asks.
    let _turn = match tokio::time::timeout(PAGE_WAIT, s.pages.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many record pages are being built at once; retry",
            ));
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let desc = s.broker.describe_topic(&topic)?;
    let Some(p) = desc.partitions.iter().find(|p| p.partition == partition) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("topic {topic} has no partition {partition}"),
        ));
    };
    // Browsing from before the log start (trimmed away) starts at the log start; from past the
    // end gives an empty page. The page says where the log starts and ends either way.
    let mut offset =
        q.offset.unwrap_or(p.log_start_offset).clamp(p.log_start_offset, p.next_offset);
    let mut page = RecordsPage {
        topic: topic.clone(),
        partition,
        log_start_offset: p.log_start_offset,
        high_watermark: p.next_offset,
        next_offset: offset,
        records: Vec::new(),
    };
    let mut bytes_read = 0;
    let mut page_bytes = 0;
    let mut scratch = Vec::new();
    let full = |records: usize, page_bytes: usize| records == limit || page_bytes >= MAX_PAGE_BYTES;
    while !full(page.records.len(), page_bytes) && bytes_read < BROWSE_MAX_BYTES {
        let fetched = s
            .broker
            .fetch(&topic, partition, offset, BROWSE_FETCH_BYTES, 0, Duration::ZERO)
            .await?;
        page.log_start_offset = fetched.log_start_offset;
        page.high_watermark = fetched.high_watermark;
        let slice_next = fetched.records.next_offset();
        if fetched.records.is_empty() || slice_next <= offset {
            break;
        }
        bytes_read += fetched.records.len();
        let at = offset;
        let bad = |e: crate::batch::BatchError| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("record at or after offset {at} of {topic}/{partition}: {e}"),
            )
        };
        'batches: for view in crate::batch::batches(fetched.records.bytes()) {
            let view = view.map_err(bad)?;
            view.verify_crc().map_err(bad)?;
            if view.is_control() || view.last_offset() < offset as i64 {
                continue;
            }
            for r in view.decoded_records(&mut scratch).map_err(bad)? {
                let r = r.map_err(bad)?;
                if (r.offset as u64) < offset {
                    continue; // a read starts at the batch holding the offset asked for
                }
                let record = RecordJson::from_view(&r);
                page_bytes += record.weight();
                page.records.push(record);
                offset = r.offset as u64 + 1;
                if full(page.records.len(), page_bytes) {
                    break 'batches;
                }
            }
        }
        if !full(page.records.len(), page_bytes) {
            offset = offset.max(slice_next);
        }
    }
    page.next_offset = offset;
    Ok(Json(page))
}

#[derive(Debug, Serialize)]
pub(crate) struct GroupSummary {
    group: String,
    /// Kafka's name for the group's state (Empty, Stable, PreparingRebalance, ...).
    state: String,
    members: usize,
    topics: Vec<String>,
    partitions: usize,
    total_lag: u64,
}

/// Log end offsets by topic, described once per topic however many partitions a group has.
struct LogEnds<'a> {
    broker: &'a Broker,
    cache: HashMap<String, Option<TopicDescription>>,
}

impl<'a> LogEnds<'a> {
    fn new(broker: &'a Broker) -> Self {
        LogEnds { broker, cache: HashMap::new() }
    }

    fn end(&mut self, topic: &str, partition: u32) -> Option<u64> {
        let d = self
            .cache
            .entry(topic.to_owned())
            .or_insert_with(|| self.broker.describe_topic(topic).ok());
        d.as_ref()?.partitions.iter().find(|p| p.partition == partition).map(|p| p.next_offset)
    }
}

fn group_view(s: &AppState, ends: &mut LogEnds<'_>, group: &str) -> Result<GroupLag, ApiError> {
    let offsets = s
        .broker
        .group_offsets(group)?
        .into_iter()
        .map(|(topic, partition, committed)| {
            let end = ends.end(&topic, partition);
            PartitionLag::new(topic, partition, committed, end)
        })
        .collect();
    let status = s.broker.group_status(group, crate::kafka::consumer_protocol::assigned_partitions);
    let view = GroupLag::new(group.to_owned(), Vec::new(), offsets).with_status(status);
    Ok(match &s.members {
        // An embedder's own view of the members replaces the ids.
        Some(members) => GroupLag { members: members(group), ..view },
        None => view,
    })
}

pub(crate) async fn list_groups(State(s): State<AppState>) -> ApiResult<Vec<GroupSummary>> {
    let mut ends = LogEnds::new(&s.broker);
    let mut out = Vec::new();
    for (g, _, _) in s.broker.list_group_states() {
        let v = group_view(&s, &mut ends, &g)?;
        let mut topics: Vec<String> = v.offsets.iter().map(|o| o.topic.clone()).collect();
        topics.dedup();
        out.push(GroupSummary {
            group: v.group,
            state: v.state,
            members: v.members.len(),
            topics,
            partitions: v.offsets.len(),
            total_lag: v.total_lag,
        });
    }
    Ok(Json(out))
}

pub(crate) async fn get_group(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<GroupLag> {
    // An offline (damaged) group answers its error, naming the file, not "no such group".
    s.broker.group_offsets(&group)?;
    if !s.broker.list_group_states().iter().any(|(g, _, _)| *g == group) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no consumer group {group}")));
    }
    let mut ends = LogEnds::new(&s.broker);
    Ok(Json(group_view(&s, &mut ends, &group)?))
}

/// `/api/cluster`: `cluster status` (each broker with its state and role as the CLI names
/// them), every partition's leader, replicas and ISR (what the console's cluster page shows per
/// broker), the partition moves under way and the throttle they copy under.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    node_id: i32,
    clustered: bool,
    controller: Option<i32>,
    brokers: Vec<BrokerJson>,
    under_replicated: Vec<Leadership>,
    offline: Vec<Leadership>,
    partitions: Vec<Leadership>,
    /// As `topic reassignments --json` has them.
    reassignments: Vec<ReassignmentView>,
    /// Bytes per second each receiving broker may copy for the moves; `None`: unthrottled (there
    /// is no throttle once no move is under way).
    throttle_bytes_per_s: Option<u64>,
}

/// One broker as the cluster card shows it: its view, plus the state and role `cluster status`
/// prints, worked out by the same rule.
#[derive(Debug, Serialize)]
pub(crate) struct BrokerJson {
    #[serde(flatten)]
    view: BrokerView,
    state: BrokerState,
    role: BrokerRole,
}

impl BrokerJson {
    fn new(view: BrokerView, controller: Option<i32>) -> Self {
        let state = BrokerState::of(view.fenced, view.decommissioned);
        let role = BrokerRole::of(view.id, controller, view.voter);
        BrokerJson { view, state, role }
    }
}

impl ClusterView {
    fn new(
        status: ClusterStatus,
        partitions: Vec<Leadership>,
        reassignments: Vec<ReassignmentView>,
        throttle_bytes_per_s: Option<u64>,
    ) -> Self {
        let ClusterStatus { node_id, clustered, controller, brokers, under_replicated, offline } =
            status;
        ClusterView {
            node_id,
            clustered,
            controller,
            brokers: brokers.into_iter().map(|b| BrokerJson::new(b, controller)).collect(),
            under_replicated,
            offline,
            partitions,
            reassignments,
            throttle_bytes_per_s,
        }
    }
}

pub(crate) async fn cluster(State(s): State<AppState>) -> Json<ClusterView> {
    let c = &s.cluster;
    Json(ClusterView::new(c.status(), c.partitions(), c.reassignments(), c.reassignment_throttle()))
}

pub(crate) async fn rates(State(s): State<AppState>) -> Json<super::rates::RatesView> {
    Json(s.rates.view())
}

/// The broker and cluster state the scrape reports as gauges.
pub(crate) fn snapshot(cluster: &Cluster) -> StateSnapshot {
    let broker = cluster.broker();
    let mut snap = StateSnapshot::default();
    let mut ends: HashMap<(String, u32), u64> = HashMap::new();
    let dirty: HashMap<(String, u32), f64> =
        broker.dirty_ratios().into_iter().map(|d| ((d.topic, d.partition), d.ratio)).collect();
    for d in broker.describe_all() {
        if d.offline.is_some() {
            snap.offline_topics += 1;
        }
        for p in &d.partitions {
            if p.offline.is_some() {
                // Its offsets and sizes are unknown: counted, not reported as zeros.
                snap.offline_partitions += 1;
                continue;
            }
            ends.insert((d.name.clone(), p.partition), p.next_offset);
            snap.partitions.push(PartitionState {
                topic: d.name.clone(),
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                next_offset: p.next_offset,
                segments: p.segments,
                size_bytes: p.size_bytes,
                dirty_ratio: dirty.get(&(d.name.clone(), p.partition)).copied(),
            });
        }
    }
    snap.offline_groups = broker.offline_groups().len() as u64;
    for group in broker.list_groups() {
        // A group whose offsets cannot be read right now is left out of this scrape only.
        let Ok(offsets) = broker.group_offsets(&group) else { continue };
        for (topic, partition, committed) in offsets {
            let Some(end) = ends.get(&(topic.clone(), partition)) else { continue };
            snap.group_offsets.push(GroupOffsetState {
                group: group.clone(),
                topic,
                partition,
                committed,
                lag: end.saturating_sub(committed),
            });
        }
    }
    let health = cluster.health();
    if health.clustered {
        // Kafka's convention: the controller counts the partitions without a leader.
        snap.offline_partitions = health.offline.unwrap_or(0);
    }
    let r = health.replication;
    snap.cluster = ClusterState {
        controller: health.controller,
        commit_index: health.commit_index,
        under_replicated_partitions: health.under_replicated_led,
        isr_shrinks: r.isr_shrinks,
        isr_expands: r.isr_expands,
        replica_lags: r
            .follower_lags
            .into_iter()
            .map(|l| ReplicaLagState {
                topic: l.topic,
                partition: l.partition,
                replica: i32::try_from(l.replica).unwrap_or(i32::MAX),
                lag_records: l.lag_records,
            })
            .collect(),
    };
    snap
}

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.encode(&snapshot(&s.cluster));
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

/// Lets a request through when no token is configured or it carries the right bearer token.
pub(crate) async fn require_token(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(expected) = &s.auth_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            let mut resp =
                ApiError::new(StatusCode::UNAUTHORIZED, "this broker needs its auth token")
                    .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::cluster::ReplicaCopy;
    use crate::http::HttpServer;
    use crate::http::browse::MAX_CONCURRENT_PAGES;

    /// The console reads a move's copy progress by name: broker 4 still has 1234 records and
    /// 52 MB of the leader's 80 MB to copy, broker 5 fetched nothing yet (no count: "catching
    /// up").
    #[test]
    fn a_move_shows_what_each_added_replica_still_has_to_copy() {
        let view = ReassignmentView {
            topic: "orders".into(),
            partition: 2,
            target: vec![1, 4, 5],
            adding: vec![4, 5],
            removing: vec![3],
            isr: vec![1, 3],
            leader: Some(1),
            behind: vec![ReplicaCopy {
                replica: 4,
                records: 1234,
                bytes: Some(52_000_000),
                log_bytes: Some(80_000_000),
            }],
        };
        let json = serde_json::to_value(view).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "topic": "orders", "partition": 2, "target": [1, 4, 5], "adding": [4, 5],
                "removing": [3], "isr": [1, 3], "leader": 1,
                "behind": [{"replica": 4, "records": 1234, "bytes": 52_000_000,
                            "log_bytes": 80_000_000}],
            })
        );
    }

    /// The cluster card reads each broker's state and role as `cluster status` prints them, and
    /// the throttle the moves copy under.
    #[test]
    fn a_broker_being_emptied_reads_as_decommissioning_next_to_the_throttle() {
        let broker = |id, fenced, decommissioned, voter| BrokerView {
            id,
            native_addr: None,
            kafka_addr: None,
            cluster_addr: None,
            fenced,
            decommissioned,
            voter,
        };
        let status = ClusterStatus {
            node_id: 1,
            clustered: true,
            controller: Some(2),
            brokers: vec![
                broker(1, false, false, true),
                broker(2, false, false, true),
                broker(3, false, true, true),
                broker(4, true, true, false),
                broker(5, true, false, false),
            ],
            under_replicated: vec![],
            offline: vec![],
        };
        let json = serde_json::to_value(ClusterView::new(status, vec![], vec![], Some(50_000_000)))
            .unwrap();
        let seen: Vec<(i64, &str, &str)> = json["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_i64().unwrap(),
                    b["state"].as_str().unwrap(),
                    b["role"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, "alive", "voter"),
                (2, "alive", "controller"),
                (3, "decommissioning", "voter"),
                (4, "decommissioned", "broker"),
                (5, "fenced", "broker"),
            ]
        );
        assert_eq!(json["brokers"][2]["decommissioned"], true, "the flags stay: {json}");
        assert_eq!(json["throttle_bytes_per_s"], 50_000_000);
    }

    /// A topic's page carries its id (as Kafka prints it) and every config with its source;
    /// the topic list carries the ids only.
    #[tokio::test]
    async fn a_topic_page_shows_its_id_and_every_config_with_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let broker = Broker::open(config).unwrap();
        let set = [("retention.ms".to_string(), Some("1000".to_string()))];
        let configs = crate::broker::topic_config::TopicConfigs::parse(&set).unwrap();
        broker.create_topic("t", 1, configs, false).unwrap();
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), broker.clone(), {
            broker.metrics().clone()
        })
        .await
        .unwrap();
        let Ok(Json(view)) = get_topic(State(server.state.clone()), Path("t".into())).await else {
            panic!("the topic has a page")
        };
        let v = serde_json::to_value(&view).unwrap();
        let id = v["topic_id"].as_str().expect("a topic id");
        assert_eq!(id, crate::protocol::topic_id_text(&broker.topic_id("t").unwrap()));
        let configs = v["configs"].as_array().expect("every config");
        let named = |n: &str| configs.iter().find(|c| c["name"] == n).cloned();
        let retention = named("retention.ms").expect("retention.ms is listed");
        assert_eq!(retention["value"], "1000");
        assert_eq!(retention["source"], "topic");
        let policy = named("cleanup.policy").expect("every known config is listed");
        assert_ne!(policy["source"], "topic", "{policy}");

        let Json(list) = list_topics(State(server.state.clone())).await;
        let list = serde_json::to_value(&list).unwrap();
        assert_eq!(list[0]["topic_id"], id);
        assert!(list[0].get("configs").is_none(), "the list stays small: {list}");
        broker.shutdown().unwrap();
    }

    /// Pages past the concurrency bound wait their turn, and answer 503 rather than pile up.
    #[tokio::test]
    async fn record_pages_past_the_concurrency_bound_wait_then_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
        let broker = Broker::open(config).unwrap();
        broker
            .create_topic("t", 1, crate::broker::topic_config::TopicConfigs::default(), false)
            .unwrap();
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), broker.clone(), {
            broker.metrics().clone()
        })
        .await
        .unwrap();
        let s = server.state.clone();
        let page = |s: AppState| {
            let q = Ok(Query(RecordsQuery { offset: None, limit: None }));
            records(State(s), Path(("t".to_string(), 0)), q)
        };
        assert!(page(s.clone()).await.is_ok(), "a page is built when there is room");
        let held = s.pages.clone().acquire_many_owned(MAX_CONCURRENT_PAGES as u32).await.unwrap();
        let start = tokio::time::Instant::now();
        let Err(refused) = page(s.clone()).await else { panic!("built past the bound") };
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(start.elapsed() >= PAGE_WAIT, "it waited its turn first");
        drop(held);
        assert!(page(s).await.is_ok(), "built again once a turn is free");
        broker.shutdown().unwrap();
    }
}
