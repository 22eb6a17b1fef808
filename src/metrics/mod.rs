//! The metrics registry: the counters and histograms the broker's listeners record into (cheap
//! atomics, shared as `Arc<Metrics>`), and their exposition in the Prometheus/OpenMetrics text
//! format via `prometheus-client`. Never does I/O and never reads broker state itself: the gauges
//! that describe the data directory (offsets, sizes, segments, group lag) are computed at scrape
//! time from a [`StateSnapshot`] the caller builds, so a scrape always shows the current truth.
//!
//! Series (all prefixed `minikafka_`):
//! - `log_start_offset`, `log_end_offset`, `log_size_bytes`, `log_segments` — gauges per
//!   `topic`, `partition`, from the snapshot.
//! - `append_records_total`, `append_bytes_total`, `fetch_records_total`, `fetch_bytes_total` —
//!   counters per `topic`, `partition`.
//! - `produce_duration_seconds`, `fetch_duration_seconds` — histograms per `listener`.
//! - `fsyncs_total`, `fsync_duration_seconds` — every data sync of a partition log.
//! - `connections` (open now) and `connections_accepted_total` — per `listener`.
//! - `requests_total` per `listener`, `api`; `request_errors_total` per `listener`, `kind`.
//! - `group_committed_offset`, `group_lag` — gauges per `group`, `topic`, `partition`.
//! - `offline_partitions`, `offline_topics`, `offline_groups` — gauges: damaged data the broker
//!   found at start-up and does not serve (a partition whose log did not open, a topic whose
//!   `topic.json` is unusable, a group whose file is); alert when any is above 0. In a cluster,
//!   `offline_partitions` is instead Kafka's OfflinePartitionsCount: partitions the metadata has
//!   no leader for, reported by the active controller only (0 on the other brokers).
//! - Cluster series, from the snapshot's [`ClusterState`]: `under_replicated_partitions` (gauge:
//!   partitions this broker leads whose ISR is smaller than their replicas),
//!   `isr_shrinks_total` / `isr_expands_total` (counters: committed ISR changes of partitions led
//!   here), `replica_lag_records` (gauge per `topic`, `partition`, `replica`: each follower of a
//!   partition led here, the leader's log end minus the follower's fetched end),
//!   `controller_leader` (gauge: 1 on the active controller, else 0), `raft_commit_index`
//!   (gauge: the newest committed metadata entry this broker knows). A single node reports them
//!   all as the cluster of one it is: no lag samples, 0 counts and commit index, and
//!   `controller_leader` 1 (it is its own controller, as `/api/cluster` says).
//! - `log_cleaner_runs_total`, `log_cleaner_removed_bytes_total`,
//!   `log_cleaner_records_removed_total`, `log_cleaner_tombstones_removed_total` — counters per
//!   `topic`, `partition` of the compaction runs that cleaned something;
//!   `log_cleaner_last_run_timestamp_seconds` — gauge: when the cleaner last finished a run (Unix
//!   time; absent before the first); `log_cleaner_dirty_ratio` — gauge per `topic`, `partition`
//!   of every compacted partition, from the snapshot (Kafka's dirty ratio: the share of the sealed
//!   log not compacted yet).
//!
//! [`TimedFs`] wraps the storage engine's file-system seam to time every fsync.

mod fs;

pub use fs::TimedFs;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus scrapes it natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const PREFIX: &str = "minikafka";

/// Which listener a connection or request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    Native,
    Kafka,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Native => "native",
            Listener::Kafka => "kafka",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    api: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    listener: &'static str,
    kind: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    group: String,
    topic: String,
    partition: u32,
}

/// Append/fetch totals of one partition since the broker started.
#[derive(Debug, Default)]
struct PartitionTraffic {
    append_records: AtomicU64,
    append_bytes: AtomicU64,
    fetch_records: AtomicU64,
    fetch_bytes: AtomicU64,
}

/// What the log cleaner removed from one partition since the broker started.
#[derive(Debug, Default)]
struct PartitionCleaning {
    runs: AtomicU64,
    bytes_removed: AtomicU64,
    records_removed: AtomicU64,
    tombstones_removed: AtomicU64,
}

/// One compaction run of one partition, as the cleaner reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerRun {
    /// Bytes of segments before minus after.
    pub bytes_removed: u64,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// Totals of one topic (its partitions summed), as the rate sampler reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicTotals {
    pub append_records: u64,
    pub append_bytes: u64,
    pub fetch_records: u64,
    pub fetch_bytes: u64,
}

/// One partition's log as the broker describes it, for the scrape-time gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub segments: u64,
    pub size_bytes: u64,
    /// The share of the sealed log not compacted yet; `None` when the partition is not compacted.
    pub dirty_ratio: Option<f64>,
}

/// One committed consumer-group offset and how far it lags behind the log end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsetState {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    pub lag: u64,
}

/// How far one follower of a partition led here is behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLagState {
    pub topic: String,
    pub partition: u32,
    /// The follower's broker id.
    pub replica: i32,
    pub lag_records: u64,
}

/// This broker's part in the cluster, for the cluster series (see the module doc). The default
/// is a broker that is not the controller and leads nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub controller: bool,
    pub commit_index: u64,
    pub under_replicated_partitions: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub replica_lags: Vec<ReplicaLagState>,
}

/// The broker state a scrape reports as gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateSnapshot {
    /// Online partitions only.
    pub partitions: Vec<PartitionState>,
    pub group_offsets: Vec<GroupOffsetState>,
    /// Partitions of otherwise served topics that are offline (in a cluster: partitions without
    /// a leader, on the active controller).
    pub offline_partitions: u64,
    /// Topics offline as a whole.
    pub offline_topics: u64,
    pub offline_groups: u64,
    pub cluster: ClusterState,
}

/// The broker's metrics. Recording methods are lock-free on the hot path except for a read lock on
/// the per-partition traffic map (a write lock only the first time a partition is seen).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// topic -> partition -> totals; keyed by topic first so a lookup borrows the `&str`.
    traffic: RwLock<HashMap<String, HashMap<u32, Arc<PartitionTraffic>>>>,
    produce_seconds: Family<ListenerLabels, Histogram>,
    fetch_seconds: Family<ListenerLabels, Histogram>,
    fsyncs: Counter,
    fsync_seconds: Histogram,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_accepted: Family<ListenerLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_errors: Family<ErrorLabels, Counter>,
    /// topic -> partition -> what the cleaner removed.
    cleaning: RwLock<HashMap<String, HashMap<u32, Arc<PartitionCleaning>>>>,
    /// Unix time in milliseconds of the cleaner's last finished run; 0 before the first.
    cleaner_last_run_ms: AtomicU64,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: covers a page-cache append through an fsync on a slow disk.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let produce_seconds = Family::<ListenerLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let fetch_seconds = Family::<ListenerLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let fsyncs = Counter::default();
        let fsync_seconds = latency_histogram();
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        let connections_accepted = Family::<ListenerLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_errors = Family::<ErrorLabels, Counter>::default();
        registry.register_with_unit(
            "produce_duration",
            "Time to handle one produce (append) request, from decode to acknowledgement",
            Unit::Seconds,
            produce_seconds.clone(),
        );
        registry.register_with_unit(
            "fetch_duration",
            "Time to handle one fetch request, long-poll wait included",
            Unit::Seconds,
            fetch_seconds.clone(),
        );
        registry.register("fsyncs", "Data syncs (fdatasync) of partition logs", fsyncs.clone());
        registry.register_with_unit(
            "fsync_duration",
            "Time one data sync of a partition log took",
            Unit::Seconds,
            fsync_seconds.clone(),
        );
        registry.register("connections", "Connections open now", connections_open.clone());
        registry.register(
            "connections_accepted",
            "Connections accepted since start",
            connections_accepted.clone(),
        );
        registry.register("requests", "Requests handled, by API", requests.clone());
        registry.register(
            "request_errors",
            "Requests answered with an error, by kind",
            request_errors.clone(),
        );
        Metrics {
            registry,
            traffic: RwLock::new(HashMap::new()),
            produce_seconds,
            fetch_seconds,
            fsyncs,
            fsync_seconds,
            connections_open,
            connections_accepted,
            requests,
            request_errors,
            cleaning: RwLock::new(HashMap::new()),
            cleaner_last_run_ms: AtomicU64::new(0),
        }
    }

    fn partition_traffic(&self, topic: &str, partition: u32) -> Arc<PartitionTraffic> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        {
            let map = self.traffic.read().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = map.get(topic).and_then(|parts| parts.get(&partition)) {
                return Arc::clone(t);
            }
        }
        let mut map = self.traffic.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(topic.to_owned()).or_default().entry(partition).or_default())
    }

    /// `records` records (`bytes` encoded bytes) appended to one partition.
    pub fn record_append(&self, topic: &str, partition: u32, records: u64, bytes: u64) {
        let t = self.partition_traffic(topic, partition);
        t.append_records.fetch_add(records, Ordering::Relaxed);
        t.append_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One produce request on `listener` answered after `elapsed`.
    pub fn observe_produce(&self, listener: Listener, elapsed: Duration) {
        self.produce_seconds
            .get_or_create(&ListenerLabels { listener: listener.as_str() })
            .observe(elapsed.as_secs_f64());
    }

    /// `records` records (`bytes` bytes as sent) of one partition returned by a fetch.
    pub fn record_fetch(&self, topic: &str, partition: u32, records: u64, bytes: u64) {
        if records > 0 || bytes > 0 {
            let t = self.partition_traffic(topic, partition);
            t.fetch_records.fetch_add(records, Ordering::Relaxed);
            t.fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// One fetch request on `listener` answered after `elapsed` (long-poll wait included).
    pub fn observe_fetch(&self, listener: Listener, elapsed: Duration) {
        self.fetch_seconds
            .get_or_create(&ListenerLabels { listener: listener.as_str() })
            .observe(elapsed.as_secs_f64());
    }

    /// One data sync of a partition log that took `elapsed`.
    pub fn record_fsync(&self, elapsed: Duration) {
        self.fsyncs.inc();
        self.fsync_seconds.observe(elapsed.as_secs_f64());
    }

    /// Syncs recorded so far.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.get()
    }

    /// One compaction run of a partition finished at `now_ms` (Unix milliseconds). A run that
    /// cleaned nothing moves only the last-run time.
    pub fn record_cleaner_run(&self, topic: &str, partition: u32, run: CleanerRun, now_ms: i64) {
        self.cleaner_last_run_ms.fetch_max(u64::try_from(now_ms).unwrap_or(0), Ordering::Relaxed);
        if run == CleanerRun::default() {
            return;
        }
        let c = {
            let map = self.cleaning.read().unwrap_or_else(|e| e.into_inner());
            map.get(topic).and_then(|parts| parts.get(&partition)).cloned()
        };
        let c = c.unwrap_or_else(|| {
            let mut map = self.cleaning.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(map.entry(topic.to_owned()).or_default().entry(partition).or_default())
        });
        c.runs.fetch_add(1, Ordering::Relaxed);
        c.bytes_removed.fetch_add(run.bytes_removed, Ordering::Relaxed);
        c.records_removed.fetch_add(run.records_removed, Ordering::Relaxed);
        c.tombstones_removed.fetch_add(run.tombstones_removed, Ordering::Relaxed);
    }

    /// One request handled on `listener`; `api` is a snake_case name such as `"append"` (from a
    /// fixed set per protocol, so the series stay few).
    pub fn record_request(&self, listener: Listener, api: impl Into<Cow<'static, str>>) {
        let labels = RequestLabels { listener: listener.as_str(), api: api.into() };
        self.requests.get_or_create(&labels).inc();
    }

    /// One request (or one partition of a multi-partition request) answered with an error of
    /// `kind`, a snake_case name such as `"unknown_topic"` from the protocol's fixed set.
    pub fn record_request_error(&self, listener: Listener, kind: impl Into<Cow<'static, str>>) {
        let labels = ErrorLabels { listener: listener.as_str(), kind: kind.into() };
        self.request_errors.get_or_create(&labels).inc();
    }

    /// A connection accepted on `listener`; it counts as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>, listener: Listener) -> ConnectionGuard {
        let labels = ListenerLabels { listener: listener.as_str() };
        self.connections_accepted.get_or_create(&labels).inc();
        self.connections_open.get_or_create(&labels).inc();
        ConnectionGuard { metrics: Arc::clone(self), listener }
    }

    /// Per-topic totals since start, sorted by topic name.
    pub fn topic_totals(&self) -> Vec<(String, TopicTotals)> {
        let map = self.traffic.read().unwrap_or_else(|e| e.into_inner());
        let mut by_topic: HashMap<&str, TopicTotals> = HashMap::new();
        for (topic, t) in
            map.iter().flat_map(|(topic, parts)| parts.values().map(move |t| (topic, t)))
        {
            let e = by_topic.entry(topic.as_str()).or_default();
            e.append_records += t.append_records.load(Ordering::Relaxed);
            e.append_bytes += t.append_bytes.load(Ordering::Relaxed);
            e.fetch_records += t.fetch_records.load(Ordering::Relaxed);
            e.fetch_bytes += t.fetch_bytes.load(Ordering::Relaxed);
        }
        let mut out: Vec<_> = by_topic.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The whole exposition: recorded series plus gauges computed from `state`.
    pub fn encode(&self, state: &StateSnapshot) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder's fmt::Error only comes from the writer.
        let _ = self.encode_into(&mut out, state);
        out
    }

    fn encode_into(&self, out: &mut String, state: &StateSnapshot) -> std::fmt::Result {
        encode_registry(out, &self.registry)?;
        encode_registry(out, &self.traffic_registry())?;
        encode_registry(out, &self.cleaner_registry())?;
        encode_registry(out, &state_registry(state))?;
        encode_registry(out, &cluster_registry(&state.cluster))?;
        encode_eof(out)?;
        Ok(())
    }

    /// The per-partition traffic counters, as a registry built for this scrape.
    fn traffic_registry(&self) -> Registry {
        let mut reg = Registry::with_prefix(PREFIX);
        let append_records = Family::<PartitionLabels, Counter>::default();
        let append_bytes = Family::<PartitionLabels, Counter>::default();
        let fetch_records = Family::<PartitionLabels, Counter>::default();
        let fetch_bytes = Family::<PartitionLabels, Counter>::default();
        {
            let map = self.traffic.read().unwrap_or_else(|e| e.into_inner());
            for (topic, partition, t) in
                map.iter().flat_map(|(topic, parts)| parts.iter().map(move |(p, t)| (topic, p, t)))
            {
                let l = PartitionLabels { topic: topic.clone(), partition: *partition };
                append_records.get_or_create(&l).inc_by(t.append_records.load(Ordering::Relaxed));
                append_bytes.get_or_create(&l).inc_by(t.append_bytes.load(Ordering::Relaxed));
                fetch_records.get_or_create(&l).inc_by(t.fetch_records.load(Ordering::Relaxed));
                fetch_bytes.get_or_create(&l).inc_by(t.fetch_bytes.load(Ordering::Relaxed));
            }
        }
        reg.register("append_records", "Records appended", append_records);
        reg.register_with_unit("append", "Record bytes appended", Unit::Bytes, append_bytes);
        reg.register("fetch_records", "Records returned by fetches", fetch_records);
        reg.register_with_unit(
            "fetch",
            "Record bytes returned by fetches",
            Unit::Bytes,
            fetch_bytes,
        );
        reg
    }
}

impl Metrics {
    /// The log cleaner's counters and last-run time, as a registry built for this scrape.
    fn cleaner_registry(&self) -> Registry {
        let mut reg = Registry::with_prefix(PREFIX);
        let runs = Family::<PartitionLabels, Counter>::default();
        let bytes = Family::<PartitionLabels, Counter>::default();
        let records = Family::<PartitionLabels, Counter>::default();
        let tombstones = Family::<PartitionLabels, Counter>::default();
        {
            let map = self.cleaning.read().unwrap_or_else(|e| e.into_inner());
            for (topic, partition, c) in
                map.iter().flat_map(|(topic, parts)| parts.iter().map(move |(p, c)| (topic, p, c)))
            {
                let l = PartitionLabels { topic: topic.clone(), partition: *partition };
                runs.get_or_create(&l).inc_by(c.runs.load(Ordering::Relaxed));
                bytes.get_or_create(&l).inc_by(c.bytes_removed.load(Ordering::Relaxed));
                records.get_or_create(&l).inc_by(c.records_removed.load(Ordering::Relaxed));
                tombstones.get_or_create(&l).inc_by(c.tombstones_removed.load(Ordering::Relaxed));
            }
        }
        reg.register("log_cleaner_runs", "Compaction runs that cleaned something", runs);
        reg.register_with_unit(
            "log_cleaner_removed",
            "Bytes of segments compaction removed",
            Unit::Bytes,
            bytes,
        );
        reg.register(
            "log_cleaner_records_removed",
            "Records compaction removed (superseded values and expired tombstones)",
            records,
        );
        reg.register("log_cleaner_tombstones_removed", "Tombstones compaction removed", tombstones);
        let last = self.cleaner_last_run_ms.load(Ordering::Relaxed);
        if last > 0 {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(last as f64 / 1000.0);
            reg.register_with_unit(
                "log_cleaner_last_run_timestamp",
                "When the log cleaner last finished a compaction run (Unix time)",
                Unit::Seconds,
                g,
            );
        }
        reg
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The data-directory gauges for one scrape.
fn state_registry(state: &StateSnapshot) -> Registry {
    let mut reg = Registry::with_prefix(PREFIX);
    let start = Family::<PartitionLabels, Gauge>::default();
    let end = Family::<PartitionLabels, Gauge>::default();
    let size = Family::<PartitionLabels, Gauge>::default();
    let segments = Family::<PartitionLabels, Gauge>::default();
    let dirty = Family::<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for p in &state.partitions {
        let l = PartitionLabels { topic: p.topic.clone(), partition: p.partition };
        start.get_or_create(&l).set(gauge_value(p.log_start_offset));
        end.get_or_create(&l).set(gauge_value(p.next_offset));
        size.get_or_create(&l).set(gauge_value(p.size_bytes));
        segments.get_or_create(&l).set(gauge_value(p.segments));
        if let Some(ratio) = p.dirty_ratio {
            dirty.get_or_create(&l).set(ratio);
        }
    }
    let committed = Family::<GroupLabels, Gauge>::default();
    let lag = Family::<GroupLabels, Gauge>::default();
    for g in &state.group_offsets {
        let l =
            GroupLabels { group: g.group.clone(), topic: g.topic.clone(), partition: g.partition };
        committed.get_or_create(&l).set(gauge_value(g.committed));
        lag.get_or_create(&l).set(gauge_value(g.lag));
    }
    reg.register("log_start_offset", "First offset still in the log", start);
    reg.register(
        "log_end_offset",
        "End of the readable log: the next offset (durable under --fsync always)",
        end,
    );
    reg.register_with_unit("log_size", "Bytes of segment files on disk", Unit::Bytes, size);
    reg.register("log_segments", "Segment files of the log", segments);
    reg.register(
        "log_cleaner_dirty_ratio",
        "Share of a compacted partition's sealed log not compacted yet",
        dirty,
    );
    reg.register("group_committed_offset", "Offset a consumer group committed", committed);
    reg.register("group_lag", "Records between a group's committed offset and the log end", lag);
    let offline = |n: u64| {
        let g = Gauge::<i64>::default();
        g.set(gauge_value(n));
        g
    };
    reg.register(
        "offline_partitions",
        "Partitions without a leader: on a single node, the ones not served because their data \
         is damaged or missing; in a cluster, the ones the metadata has no leader for, reported \
         by the active controller only (0 on the other brokers), as Kafka's \
         OfflinePartitionsCount",
        offline(state.offline_partitions),
    );
    reg.register(
        "offline_topics",
        "Topics not served because their topic.json is damaged",
        offline(state.offline_topics),
    );
    reg.register(
        "offline_groups",
        "Consumer groups not served because their offsets file is damaged",
        offline(state.offline_groups),
    );
    reg
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplicaLabels {
    topic: String,
    partition: u32,
    replica: i32,
}

/// The cluster series for one scrape.
fn cluster_registry(c: &ClusterState) -> Registry {
    let mut reg = Registry::with_prefix(PREFIX);
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(gauge_value(v));
        g
    };
    let counter = |v: u64| {
        let n = Counter::<u64>::default();
        n.inc_by(v);
        n
    };
    reg.register(
        "under_replicated_partitions",
        "Partitions this broker leads whose in-sync replicas are fewer than their replicas",
        gauge(c.under_replicated_partitions),
    );
    reg.register(
        "isr_shrinks",
        "Committed shrinks of the ISR of partitions this broker leads",
        counter(c.isr_shrinks),
    );
    reg.register(
        "isr_expands",
        "Committed expansions of the ISR of partitions this broker leads",
        counter(c.isr_expands),
    );
    let lag = Family::<ReplicaLabels, Gauge>::default();
    for l in &c.replica_lags {
        let labels =
            ReplicaLabels { topic: l.topic.clone(), partition: l.partition, replica: l.replica };
        lag.get_or_create(&labels).set(gauge_value(l.lag_records));
    }
    reg.register(
        "replica_lag_records",
        "Records a follower of a partition this broker leads is behind the leader's log end \
         (followers that have not fetched since this broker took the lead are left out)",
        lag,
    );
    reg.register(
        "controller_leader",
        "1 on the active controller (the metadata Raft leader; a single node is its own), else 0",
        gauge(u64::from(c.controller)),
    );
    reg.register(
        "raft_commit_index",
        "Newest metadata Raft entry this broker knows to be committed (0 on a single node)",
        gauge(c.commit_index),
    );
    reg
}

/// Keeps a connection counted as open; dropping it closes it in the metrics.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    listener: Listener,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .get_or_create(&ListenerLabels { listener: self.listener.as_str() })
            .dec();
    }
}

/// `UnknownTopicOrPartition` -> `unknown_topic_or_partition`: protocol enum names as label values.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds the value of the series `name{labels}` in an exposition (labels exactly as written, e.g.
/// `topic="t",partition="0"`; empty for none). For tests and the CLI; `None` if absent.
pub fn find_sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let mut key = String::with_capacity(name.len() + labels.len() + 2);
    key.push_str(name);
    if !labels.is_empty() {
        let _ = write!(key, "{{{labels}}}");
    }
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(key.as_str())?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_counters_are_exposed_per_partition_with_total_suffix() {
        let m = Metrics::new();
        m.record_append("orders", 0, 3, 120);
        m.observe_produce(Listener::Native, Duration::from_millis(2));
        m.record_append("orders", 0, 2, 80);
        m.observe_produce(Listener::Native, Duration::from_millis(1));
        m.record_append("orders", 1, 1, 40);
        m.observe_produce(Listener::Kafka, Duration::from_millis(1));
        m.record_fetch("orders", 0, 5, 200);
        m.observe_fetch(Listener::Native, Duration::from_millis(3));
        let text = m.encode(&StateSnapshot::default());
        let p0 = r#"topic="orders",partition="0""#;
        let p1 = r#"topic="orders",partition="1""#;
        assert_eq!(find_sample(&text, "minikafka_append_records_total", p0), Some(5.0));
        assert_eq!(find_sample(&text, "minikafka_append_bytes_total", p0), Some(200.0));
        assert_eq!(find_sample(&text, "minikafka_append_records_total", p1), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_fetch_records_total", p0), Some(5.0));
        assert_eq!(find_sample(&text, "minikafka_fetch_bytes_total", p0), Some(200.0));
        assert_eq!(
            find_sample(&text, "minikafka_produce_duration_seconds_count", r#"listener="native""#),
            Some(2.0)
        );
        assert_eq!(
            find_sample(&text, "minikafka_produce_duration_seconds_count", r#"listener="kafka""#),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics exposition ends with EOF: {text}");
    }

    #[test]
    fn state_gauges_come_from_the_snapshot() {
        let m = Metrics::new();
        let state = StateSnapshot {
            partitions: vec![PartitionState {
                topic: "t".into(),
                partition: 2,
                log_start_offset: 10,
                next_offset: 42,
                segments: 3,
                size_bytes: 4096,
                dirty_ratio: Some(0.25),
            }],
            group_offsets: vec![GroupOffsetState {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                committed: 30,
                lag: 12,
            }],
            offline_partitions: 2,
            offline_topics: 1,
            offline_groups: 3,
            cluster: ClusterState::default(),
        };
        let text = m.encode(&state);
        let l = r#"topic="t",partition="2""#;
        assert_eq!(find_sample(&text, "minikafka_log_start_offset", l), Some(10.0));
        assert_eq!(find_sample(&text, "minikafka_log_end_offset", l), Some(42.0));
        assert_eq!(find_sample(&text, "minikafka_log_segments", l), Some(3.0));
        assert_eq!(find_sample(&text, "minikafka_log_size_bytes", l), Some(4096.0));
        assert_eq!(find_sample(&text, "minikafka_log_cleaner_dirty_ratio", l), Some(0.25));
        let g = r#"group="g",topic="t",partition="2""#;
        assert_eq!(find_sample(&text, "minikafka_group_committed_offset", g), Some(30.0));
        assert_eq!(find_sample(&text, "minikafka_group_lag", g), Some(12.0));
        assert_eq!(find_sample(&text, "minikafka_offline_partitions", ""), Some(2.0));
        assert_eq!(find_sample(&text, "minikafka_offline_topics", ""), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_offline_groups", ""), Some(3.0));
    }

    #[test]
    fn connections_close_when_the_guard_drops_and_errors_count_by_kind() {
        let m = Arc::new(Metrics::new());
        let a = m.connection_opened(Listener::Native);
        let b = m.connection_opened(Listener::Native);
        drop(a);
        m.record_request(Listener::Native, "append");
        m.record_request_error(Listener::Native, "unknown_topic");
        m.record_request_error(Listener::Native, "unknown_topic");
        m.record_fsync(Duration::from_micros(300));
        let text = m.encode(&StateSnapshot::default());
        let native = r#"listener="native""#;
        assert_eq!(find_sample(&text, "minikafka_connections", native), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_connections_accepted_total", native), Some(2.0));
        assert_eq!(
            find_sample(&text, "minikafka_requests_total", r#"listener="native",api="append""#),
            Some(1.0)
        );
        assert_eq!(
            find_sample(
                &text,
                "minikafka_request_errors_total",
                r#"listener="native",kind="unknown_topic""#
            ),
            Some(2.0)
        );
        assert_eq!(find_sample(&text, "minikafka_fsyncs_total", ""), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_fsync_duration_seconds_count", ""), Some(1.0));
        drop(b);
    }

    #[test]
    fn cleaner_runs_add_up_per_partition_and_stamp_the_last_run() {
        let m = Metrics::new();
        let text = m.encode(&StateSnapshot::default());
        assert_eq!(
            find_sample(&text, "minikafka_log_cleaner_last_run_timestamp_seconds", ""),
            None
        );
        let run = CleanerRun { bytes_removed: 1000, records_removed: 40, tombstones_removed: 3 };
        m.record_cleaner_run("kv", 0, run, 1_700_000_000_000);
        m.record_cleaner_run("kv", 0, run, 1_700_000_001_500);
        // A run with nothing to clean counts only as a run of the cleaner.
        m.record_cleaner_run("kv", 1, CleanerRun::default(), 1_700_000_002_000);
        let text = m.encode(&StateSnapshot::default());
        let p0 = r#"topic="kv",partition="0""#;
        assert_eq!(find_sample(&text, "minikafka_log_cleaner_runs_total", p0), Some(2.0));
        assert_eq!(
            find_sample(&text, "minikafka_log_cleaner_removed_bytes_total", p0),
            Some(2000.0)
        );
        assert_eq!(
            find_sample(&text, "minikafka_log_cleaner_records_removed_total", p0),
            Some(80.0)
        );
        assert_eq!(
            find_sample(&text, "minikafka_log_cleaner_tombstones_removed_total", p0),
            Some(6.0)
        );
        let p1 = r#"topic="kv",partition="1""#;
        assert_eq!(find_sample(&text, "minikafka_log_cleaner_runs_total", p1), None);
        assert_eq!(
            find_sample(&text, "minikafka_log_cleaner_last_run_timestamp_seconds", ""),
            Some(1_700_000_002.0)
        );
    }

    #[test]
    fn cluster_series_come_from_the_snapshot() {
        let m = Metrics::new();
        let state = StateSnapshot {
            cluster: ClusterState {
                controller: true,
                commit_index: 42,
                under_replicated_partitions: 2,
                isr_shrinks: 3,
                isr_expands: 1,
                replica_lags: vec![ReplicaLagState {
                    topic: "t".into(),
                    partition: 1,
                    replica: 3,
                    lag_records: 17,
                }],
            },
            ..StateSnapshot::default()
        };
        let text = m.encode(&state);
        assert_eq!(find_sample(&text, "minikafka_under_replicated_partitions", ""), Some(2.0));
        assert_eq!(find_sample(&text, "minikafka_isr_shrinks_total", ""), Some(3.0));
        assert_eq!(find_sample(&text, "minikafka_isr_expands_total", ""), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_controller_leader", ""), Some(1.0));
        assert_eq!(find_sample(&text, "minikafka_raft_commit_index", ""), Some(42.0));
        let l = r#"topic="t",partition="1",replica="3""#;
        assert_eq!(find_sample(&text, "minikafka_replica_lag_records", l), Some(17.0));
        assert!(text.contains("# HELP minikafka_offline_partitions Partitions without a leader"));
    }

    #[test]
    fn enum_names_become_snake_case_labels() {
        assert_eq!(snake_case("UnknownTopicOrPartition"), "unknown_topic_or_partition");
        assert_eq!(snake_case("Produce"), "produce");
    }

    #[test]
    fn topic_totals_sum_partitions() {
        let m = Metrics::new();
        m.record_append("b", 0, 1, 10);
        m.record_append("a", 0, 2, 20);
        m.record_append("a", 1, 3, 30);
        m.record_fetch("a", 1, 4, 40);
        let totals = m.topic_totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].0, "a");
        assert_eq!(
            totals[0].1,
            TopicTotals { append_records: 5, append_bytes: 50, fetch_records: 4, fetch_bytes: 40 }
        );
        assert_eq!(totals[1].0, "b");
    }
}
