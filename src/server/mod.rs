//! The native protocol's TCP server: accepts connections (up to `max_connections`), reads
//! length-prefixed frames (size checked before allocating), dispatches each request to the
//! cluster (a cluster of one on a single node: produce and fetch only where this broker leads)
//! and writes responses in request order, fetched records straight from the segment mapping
//! (vectored write, no copy). Shuts down gracefully: stop accepting, finish in-flight requests,
//! `broker.shutdown()`. Never touches storage details or file paths.

mod connection;
mod dispatch;
mod groups;

pub(crate) use dispatch::constant_time_eq as tokens_equal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::{Broker, BrokerError};
use crate::cluster::Cluster;
use crate::protocol::{self, ErrorCode, Response};

pub use dispatch::{cluster_error_code, error_code};

/// Largest frame accepted before authentication, on the native and the Kafka listener alike: an
/// Authenticate request, ApiVersions, SaslHandshake and a PLAIN message are a few hundred bytes.
/// A stranger announcing a large frame is cut off before anything is buffered for it (Kafka's
/// `sasl.server.max.receive.size` plays the same role).
pub(crate) const PRE_AUTH_MAX_FRAME_BYTES: u32 = 64 * 1024;

/// A connection's frame limit now: small until it has authenticated when the broker requires a
/// token, `max_frame_bytes` otherwise.
pub(crate) fn frame_limit(token_required: bool, authenticated: bool, max_frame_bytes: u32) -> u32 {
    if token_required && !authenticated {
        max_frame_bytes.min(PRE_AUTH_MAX_FRAME_BYTES)
    } else {
        max_frame_bytes
    }
}

/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on a fetch's `max_wait_ms`, so a request cannot pin a connection for ever.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a native append waits for every in-sync replica (it is `acks=all`) before it is
/// answered `RequestTimedOut`; the batch may still be kept, as with Kafka's `request.timeout.ms`.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for connections to finish their in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the server listens and what it allows.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Largest request frame accepted (body bytes); larger prefixes close the connection.
    pub max_frame_bytes: u32,
    /// Cap on a fetch's wait.
    pub max_wait: Duration,
    /// When set, a connection must `Authenticate` with this token before anything else.
    pub auth_token: Option<String>,
    /// Where clients reach this listener (`host:port`), as brokers list themselves to clients
    /// (told to the cluster once bound); `None`: the address bound.
    pub advertised_addr: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: protocol::MAX_FRAME_BYTES,
            max_wait: DEFAULT_MAX_WAIT,
            auth_token: None,
            advertised_addr: None,
        }
    }
}

/// Errors of the server layer.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("accepting connections on {addr}: {source}")]
    Accept {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("shutting down the broker: {0}")]
    Shutdown(#[source] BrokerError),
}

/// A bound native-protocol server; [`Server::run`] serves until the shutdown future completes.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: ServerConfig,
    cluster: Arc<Cluster>,
}

impl Server {
    /// Binds the listening socket of a single-node broker, a cluster of one (port 0 picks a
    /// free port; see [`Server::local_addr`]).
    pub async fn bind(config: ServerConfig, broker: Arc<Broker>) -> Result<Server, ServerError> {
        Self::bind_cluster(config, Cluster::single(broker)).await
    }

    /// Binds the listening socket of a broker in `cluster`: appends and fetches are served only
    /// for partitions this broker leads, and `ClusterStatus` / `DescribePartitions` answer with
    /// the cluster's view. The cluster learns this listener's address (`advertised_addr`, else
    /// the address bound) so that every broker lists it to native clients.
    pub async fn bind_cluster(
        mut config: ServerConfig,
        cluster: Arc<Cluster>,
    ) -> Result<Server, ServerError> {
        let addr = config.listen;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let advertised = config.advertised_addr.get_or_insert_with(|| local_addr.to_string());
        cluster.set_advertised(Some(advertised.clone()), None);
        Ok(Server { listener, local_addr, config, cluster })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves connections until `shutdown` completes, then leaves the cluster
    /// ([`Cluster::shutdown`]), stops accepting, lets every connection finish its in-flight
    /// request (up to [`SHUTDOWN_GRACE`]) and shuts the broker down (sync + clean-shutdown
    /// markers).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let cluster = self.cluster.clone();
        let broker = cluster.broker().clone();
        // Leadership moves away while the listener still answers, so clients meet retriable
        // refusals (and find the new leaders) rather than closed connections.
        let leave = async {
            shutdown.await;
            cluster.shutdown().await;
        };
        let served = self.serve(leave).await;
        let closed = tokio::task::spawn_blocking(move || broker.shutdown()).await;
        match closed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServerError::Shutdown(e)),
            Err(join) => tracing::error!("broker shutdown task failed: {join}"),
        }
        served
    }

    /// Like [`Server::run`] but leaves the broker open: for a process running several listeners
    /// on one broker, which shuts the broker down once all of them have drained.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server { listener, local_addr, config, cluster } = self;
        tracing::info!(
            addr = %local_addr,
            node_id = cluster.node_id(),
            data_dir = %cluster.broker().config().data_dir.display(),
            "minikafka native server listening"
        );
        let config = Arc::new(config);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) if is_transient_accept_error(&e) => {
                            // Out of file descriptors and the like: back off instead of
                            // spinning, keep serving the connections we have.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(source) => break Err(ServerError::Accept { addr: local_addr, source }),
                    };
                    let _ = stream.set_nodelay(true);
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let cluster = cluster.clone();
                            let config = config.clone();
                            let stop = stop_rx.clone();
                            let span = tracing::info_span!("connection", %peer);
                            connections.spawn(
                                async move {
                                    connection::serve(stream, peer, cluster, config, stop).await;
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                        Err(_) => {
                            tracing::warn!(%peer, max = config.max_connections, "connection refused: limit reached");
                            connections.spawn(refuse(stream, config.max_connections));
                        }
                    }
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        drop(listener);
        tracing::info!(addr = %local_addr, "shutting down: no longer accepting connections");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still busy after {SHUTDOWN_GRACE:?}; closing them");
            connections.shutdown().await;
        }
        result
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
}

/// Answers a connection over the limit with one LimitExceeded frame (correlation id 0) and
/// closes it; bounded in time so a peer that never reads cannot hold the task.
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    protocol::encode_response(
        &mut buf,
        0,
        &Response::Error {
            code: ErrorCode::LimitExceeded,
            message: format!("too many connections (the broker allows {max})"),
        },
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
