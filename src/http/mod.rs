//! The HTTP listener (axum): `/metrics` in the Prometheus/OpenMetrics text format, the JSON API
//! under `/api/` that the console uses, and the console itself at `/` (assets embedded in the
//! binary, no external network). Reads broker state through the `Broker` API, and the cluster's
//! (leadership, brokers, topic creation) through the `Cluster`; never touches storage or the wire
//! protocols.
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/metrics` | GET | the exposition (see `crate::metrics`) |
//! | `/api/topics` | GET | every topic with its partitions, offsets, sizes and segments |
//! | `/api/topics` | POST | `{"name": "t", "partitions": 3}` creates a topic: 201 + its description |
//! | `/api/topics/{name}` | GET | one topic, with its id and every config (name, value, source) |
//! | `/api/topics/{name}/partitions/{p}/records?offset=&limit=` | GET | up to `limit` records from `offset` |
//! | `/api/groups` | GET | consumer groups with their total lag |
//! | `/api/groups/{group}` | GET | a group's committed offset and lag per partition |
//! | `/api/rates` | GET | per-second produce/consume rates per topic over the last 5 minutes |
//! | `/api/cluster` | GET | `cluster status` as JSON: this node's id, whether it is clustered, the controller, every broker (addresses, state and role as `cluster status` names them), the under-replicated and offline partitions, every partition's leader, replicas and ISR, and the partition moves under way with their copy progress where this broker leads and their throttle (the console's cluster card) |
//!
//! With an auth token (the broker's `--auth-token` or `--auth-token-file`), `/metrics` and
//! `/api/*` answer 401 unless the request carries `Authorization: Bearer <token>`; the console
//! asks for the token once. `POST /api/topics` only accepts `application/json`, which a
//! cross-site form cannot send without a CORS preflight this server never approves, and every
//! request must name an allowed `Host` (see `host`), which stops DNS rebinding.
//! Connections, header read time, idle time and shutdown are bounded (see `serve`).

mod api;
mod assets;
pub(crate) mod browse;
mod host;
pub(crate) mod rates;
mod serve;

pub use serve::{
    DEFAULT_MAX_CONNECTIONS, HEADER_READ_TIMEOUT, HttpLimits, IDLE_TIMEOUT, SHUTDOWN_GRACE,
};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::{Router, middleware};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use host::HostPolicy;
use rates::RateHistory;

/// Errors of the HTTP listener.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP listener I/O ({op}): {source}")]
    Io { op: &'static str, source: std::io::Error },
}

/// Looks up the live member ids of a consumer group (by default the console asks the broker's
/// coordinator, which the Kafka listener drives; native groups have none).
pub type GroupMembers = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct AppState {
    /// `cluster.broker()`, for what the console reads from this node's own data.
    pub broker: Arc<Broker>,
    /// The cluster this broker is part of (a cluster of one on a single node).
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Metrics>,
    pub rates: Arc<RateHistory>,
    pub members: Option<GroupMembers>,
    /// When set, `/api/*` and `/metrics` need `Authorization: Bearer <token>` (the broker's
    /// `--auth-token` or `--auth-token-file`); the page and its assets hold no data and stay
    /// public.
    pub auth_token: Option<Arc<str>>,
    /// Which `Host` values are answered (DNS-rebinding guard).
    pub hosts: Arc<HostPolicy>,
    /// Record-browser pages being built at once (each may take a few MB).
    pub pages: Arc<Semaphore>,
}

/// The bound HTTP listener; [`HttpServer::run`] serves it.
pub struct HttpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    limits: HttpLimits,
}

impl HttpServer {
    /// Binds `addr` for a single-node broker, a cluster of one (port 0 picks a free port: read
    /// it back with [`HttpServer::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
    ) -> Result<HttpServer, HttpError> {
        Self::bind_cluster(addr, Cluster::single(broker), metrics).await
    }

    /// Binds `addr` for a broker in `cluster`: topics are created through the cluster and
    /// `/api/cluster` shows its status.
    pub async fn bind_cluster(
        addr: SocketAddr,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Result<HttpServer, HttpError> {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| HttpError::Io { op: "local_addr", source })?;
        let rates = Arc::new(RateHistory::new(&metrics, rates::MAX_SAMPLES, Instant::now()));
        let state = AppState {
            broker: cluster.broker().clone(),
            cluster,
            metrics,
            rates,
            members: None,
            auth_token: None,
            hosts: Arc::new(HostPolicy::new(local_addr, &[])),
            pages: Arc::new(Semaphore::new(browse::MAX_CONCURRENT_PAGES)),
        };
        Ok(HttpServer { listener, local_addr, state, limits: HttpLimits::default() })
    }

    /// Shows the member ids of consumer groups as `members` tells, instead of the broker's
    /// coordinator (which the console uses by default), for an embedder with its own view.
    pub fn with_group_members(mut self, members: GroupMembers) -> Self {
        self.state.members = Some(members);
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/api/*` and `/metrics`.
    pub fn with_auth_token(mut self, token: Option<String>) -> Self {
        self.state.auth_token = token.map(Arc::from);
        self
    }

    /// Also answers requests whose `Host` is one of `hosts` (`name` or `name:port`), besides
    /// loopback names and the listen address.
    pub fn with_allowed_hosts(mut self, hosts: &[String]) -> Self {
        self.state.hosts = Arc::new(HostPolicy::new(self.local_addr, hosts));
        self
    }

    /// Bounds on connections, header read time, idle time and shutdown.
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight (for at most
    /// [`HttpLimits::shutdown_grace`], then closes what is left) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let sampler = tokio::spawn(rates::run_sampler(
            Arc::clone(&self.state.rates),
            Arc::clone(&self.state.metrics),
        ));
        tracing::info!(addr = %self.local_addr, "HTTP console and metrics listening");
        serve::serve(self.listener, router(self.state), self.limits, shutdown).await;
        sampler.abort();
        tracing::info!(addr = %self.local_addr, "HTTP listener stopped");
        Ok(())
    }
}

fn router(state: AppState) -> Router {
    let data = Router::new()
        .route("/metrics", get(api::metrics))
        .route("/api/topics", get(api::list_topics).post(api::create_topic))
        .route("/api/topics/{name}", get(api::get_topic))
        .route("/api/topics/{name}/partitions/{partition}/records", get(api::records))
        .route("/api/groups", get(api::list_groups))
        .route("/api/groups/{group}", get(api::get_group))
        .route("/api/rates", get(api::rates))
        .route("/api/cluster", get(api::cluster))
        .route_layer(middleware::from_fn_with_state(state.clone(), api::require_token));
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .merge(data)
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), host::check))
        .with_state(state)
}
