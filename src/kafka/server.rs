//! The Kafka listener: accepts TCP connections, reads size-prefixed frames (checked against the
//! limit before any allocation; a small one until the client has authenticated), hands each
//! request to its handler and writes the responses back in request order. Like Kafka, a
//! connection is served one request at a time, which is what keeps produce order and response
//! order. Also ticks the group coordinator so silent members expire.
//! Never decodes a message itself (codec, handlers do).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::KafkaError;
use super::codec::{self, Incoming};
use super::handlers::{self, Ctx, HandlerConfig};
use super::sasl;
use super::splice::Part;
use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::metrics::Listener;
use crate::sendfile;

/// Buffer reserved up front for a request body; larger bodies grow as their bytes arrive.
const INITIAL_READ_BYTES: usize = 64 * 1024;

/// How the Kafka listener is set up.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Where to listen, e.g. 127.0.0.1:9092 (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The `host:port` Metadata tells clients to connect to; `None` uses the bound address.
    pub advertised_addr: Option<String>,
    /// Largest request frame accepted.
    pub max_frame_bytes: u32,
    /// Most simultaneous Kafka connections; more wait in the accept backlog.
    pub max_connections: usize,
    /// When set, clients must authenticate with SASL/PLAIN, password = this token.
    pub auth_token: Option<String>,
}

impl KafkaConfig {
    /// Defaults for a listener on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        KafkaConfig {
            listen,
            advertised_addr: None,
            max_frame_bytes: codec::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 1024,
            auth_token: None,
        }
    }
}

/// A bound Kafka listener, ready to `run`.
pub struct KafkaServer {
    listener: TcpListener,
    ctx: Arc<Ctx>,
    max_frame_bytes: u32,
    max_connections: usize,
    auth_token: Option<Arc<str>>,
}

/// Splits `host:port` (the port is the part after the last colon, so IPv6 in brackets works).
pub(crate) fn split_host_port(addr: &str) -> Result<(String, i32), KafkaError> {
    let bad = || KafkaError::Malformed(format!("advertised address {addr:?} is not HOST:PORT"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), i32::from(port)))
}

impl KafkaServer {
    /// Binds the listener of a single-node broker (a cluster of one). Metadata advertises
    /// `advertised_addr`, or the bound address.
    pub async fn bind(config: KafkaConfig, broker: Arc<Broker>) -> Result<KafkaServer, KafkaError> {
        Self::bind_cluster(config, Cluster::single(broker)).await
    }

    /// Binds the listener of a broker in `cluster`: partitions are served with the cluster's
    /// leadership, and Metadata lists every live broker. This broker is advertised at
    /// `advertised_addr`, or the bound address.
    pub async fn bind_cluster(
        config: KafkaConfig,
        cluster: Arc<Cluster>,
    ) -> Result<KafkaServer, KafkaError> {
        let broker = cluster.broker().clone();
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| KafkaError::Io { op: "bind the Kafka listener", source })?;
        let local = listener
            .local_addr()
            .map_err(|source| KafkaError::Io { op: "read the local address", source })?;
        let (host, port) = match &config.advertised_addr {
            Some(a) => split_host_port(a)?,
            None => (local.ip().to_string(), i32::from(local.port())),
        };
        // The other brokers learn our Kafka address from the cluster (Metadata lists it).
        let advertised =
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        cluster.set_advertised(None, Some(advertised));
        let handler_config = HandlerConfig {
            advertised_host: host,
            advertised_port: port,
            // Topic creation and record limits follow the broker's own configuration.
            auto_create_topics: broker.config().auto_create_topics,
            default_partitions: broker.config().default_partitions.max(1),
        };
        Ok(KafkaServer {
            listener,
            ctx: Arc::new(Ctx::new(cluster, handler_config)),
            max_frame_bytes: config.max_frame_bytes,
            max_connections: config.max_connections.max(1),
            auth_token: config.auth_token.map(Arc::from),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound successfully, so it has an address; fall back to unspecified.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then closes every connection and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), KafkaError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut conns = JoinSet::new();
        let ticker_ctx = self.ctx.clone();
        let mut ticker_stop = stop_rx.clone();
        conns.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = every.tick() => handlers::tick_groups(&ticker_ctx, Instant::now()).await,
                    _ = ticker_stop.changed() => break,
                }
            }
        });
        tracing::info!(addr = %self.local_addr(), "Kafka listener ready");
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => p,
            };
            // The semaphore is never closed, so acquiring cannot fail; stop if it somehow did.
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let ctx = self.ctx.clone();
                    let max = self.max_frame_bytes;
                    let stop = stop_rx.clone();
                    let open = ctx.broker.metrics().connection_opened(Listener::Kafka);
                    let token = self.auth_token.clone();
                    conns.spawn(async move {
                        let _permit = permit;
                        let _open = open;
                        let served =
                            serve_connection(stream, &ctx, max, stop, token.as_deref(), peer).await;
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "Kafka connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "Kafka accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            while conns.try_join_next().is_some() {}
        }
        let _ = stop_tx.send(true);
        while conns.join_next().await.is_some() {}
        tracing::info!("Kafka listener stopped");
        Ok(())
    }
}

/// How long a request in progress at shutdown may still take (a long-poll Fetch or a JoinGroup
/// waiting for a rebalance would otherwise hold the shutdown up).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Completes once `stop` turns true (or its sender is gone, which only happens when stopping).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What a connection has told us about its client, for the warning about a refused request.
#[derive(Default)]
struct Client {
    /// `name/version` from ApiVersions v3+ (KIP-511), once sent.
    software: Option<String>,
    /// A refused request was already logged at warn on this connection.
    warned: bool,
}

impl Client {
    /// Logs a request we refuse, at warn the first time on this connection: without it an
    /// operator (and the client) only sees a bare EOF.
    fn refused(&mut self, ctx: &Ctx, peer: SocketAddr, u: &codec::Unsupported) {
        ctx.broker.metrics().record_request_error(Listener::Kafka, "unsupported_api");
        if std::mem::replace(&mut self.warned, true) {
            return;
        }
        let range = ApiKey::try_from(u.api_key).ok().and_then(codec::supported_range);
        let supported = match range {
            Some((min, max)) => format!("v{min}-v{max}"),
            None => "none".to_string(),
        };
        tracing::warn!(
            %peer,
            client_id = u.client_id.as_deref().unwrap_or("-"),
            client_software = self.software.as_deref().unwrap_or("-"),
            api = %u.api_name(),
            api_key = u.api_key,
            version = u.version,
            supported = %supported,
            "Kafka request of an unsupported API or version: connection closed"
        );
    }
}

/// Serves one connection: read a frame, handle it, write the answer, repeat until EOF. At
/// shutdown it stops reading new requests but lets the one in progress finish (within a grace
/// period), so an append that was started is also answered.
async fn serve_connection(
    stream: TcpStream,
    ctx: &Ctx,
    max_frame_bytes: u32,
    stop: watch::Receiver<bool>,
    token: Option<&str>,
    peer: SocketAddr,
) -> Result<(), KafkaError> {
    let _ = stream.set_nodelay(true);
    let mut auth = sasl::State::default();
    let mut client = Client::default();
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::new(wr);
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            r = rd.read_exact(&mut prefix) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(source) => return Err(KafkaError::Io { op: "read a request size", source }),
            },
            _ = stopped(stop.clone()) => return Ok(()),
        }
        let limit = sasl::frame_limit(token, auth, max_frame_bytes);
        let len = match codec::check_frame_size(prefix, limit) {
            Ok(len) => len,
            Err(e) if limit < max_frame_bytes => {
                tracing::warn!(%peer, error = %e,
                    "Kafka client sent a large frame before authenticating: connection closed");
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // Grow with the bytes that actually arrive: a peer that claims a large frame and then
        // stalls holds no more memory than it sent.
        let mut body = Vec::with_capacity(len.min(INITIAL_READ_BYTES));
        let mut limited = (&mut rd).take(len as u64);
        tokio::select! {
            r = limited.read_to_end(&mut body) => {
                r.map_err(|source| KafkaError::Io { op: "read a request", source })?;
            }
            _ = stopped(stop.clone()) => return Ok(()),
        }
        if body.len() != len {
            return Err(KafkaError::Malformed(format!(
                "connection closed after {} of {len} bytes",
                body.len()
            )));
        }
        let work = async {
            if auth == sasl::State::RawTokenNext {
                // After a SaslHandshake v0 this frame is the bare PLAIN message, not a request.
                return Ok(match sasl::raw_token(&body, token, &mut auth) {
                    sasl::Gate::Reply(frame) => (Some(vec![Part::Bytes(frame)]), false),
                    _ => {
                        tracing::warn!(%peer, "Kafka client not authenticated: connection refused");
                        (None, true)
                    }
                });
            }
            match codec::decode_request(Bytes::from(body))? {
                Incoming::ApiVersionsTooNew { correlation_id, client_id } => {
                    // A client newer than us: part of normal version negotiation (it retries
                    // with a version we list), so not worth a warning.
                    tracing::debug!(%peer, client_id = client_id.as_deref().unwrap_or("-"),
                        "ApiVersions newer than ours: answered with UNSUPPORTED_VERSION");
                    Ok((
                        Some(vec![Part::Bytes(codec::api_versions_too_new(correlation_id)?)]),
                        false,
                    ))
                }
                Incoming::Unsupported(u) => {
                    // As Kafka does: no answer (there is no format for one), close.
                    client.refused(ctx, peer, &u);
                    Ok((None, true))
                }
                Incoming::Request(mut req) => {
                    tracing::trace!(api = ?req.key, version = req.header.request_api_version,
                        correlation_id = req.header.correlation_id,
                        client = req.header.client_id.as_deref().unwrap_or(""), "Kafka request");
                    if let Some((name, version)) = codec::client_software(&req) {
                        client.software = Some(format!("{name}/{version}"));
                    }
                    // (the answer, whether to close the connection after it)
                    match sasl::gate(&mut req, token, &mut auth)? {
                        sasl::Gate::Pass => {
                            handlers::handle(ctx, req, peer).await.map(|r| (r, false))
                        }
                        sasl::Gate::Reply(frame) => Ok((Some(vec![Part::Bytes(frame)]), false)),
                        sasl::Gate::Refuse(frame) => {
                            tracing::warn!(%peer, api = ?req.key,
                                "Kafka client not authenticated: connection refused");
                            Ok((frame.map(|f| vec![Part::Bytes(f)]), true))
                        }
                    }
                }
            }
        };
        let grace = async {
            stopped(stop.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let (response, close) = tokio::select! {
            r = work => r?,
            _ = grace => return Ok(()),
        };
        if let Some(frame) = response {
            write_frame(&mut wr, &frame)
                .await
                .map_err(|source| KafkaError::Io { op: "write a response", source })?;
            wr.flush().await.map_err(|source| KafkaError::Io { op: "write a response", source })?;
        }
        if close {
            return Ok(());
        }
    }
}

/// Writes a response's parts in order: stored batches of at least [`sendfile::SENDFILE_BYTES`]
/// go from the segment file with `sendfile` (the buffer flushed first), the rest through the
/// buffer.
async fn write_frame(wr: &mut BufWriter<OwnedWriteHalf>, frame: &[Part]) -> std::io::Result<()> {
    for part in frame {
        match part {
            Part::Stored(r) if r.len() >= sendfile::SENDFILE_BYTES => {
                wr.flush().await?;
                if let Err((sent, e)) = sendfile::send_slice(wr.get_ref().as_ref(), r, 0).await {
                    if !sendfile::unsupported(&e) {
                        return Err(e);
                    }
                    // A file system without sendfile: write the rest from the mapping.
                    wr.write_all(&r.bytes()[sent..]).await?;
                }
            }
            Part::Stored(r) => wr.write_all(r.bytes()).await?,
            Part::Bytes(b) => wr.write_all(b).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_parse() {
        assert_eq!(split_host_port("localhost:9092").unwrap(), ("localhost".to_string(), 9092));
        assert_eq!(split_host_port("[::1]:19092").unwrap(), ("::1".to_string(), 19092));
        assert!(split_host_port("nohost").is_err());
        assert!(split_host_port(":1").is_err());
        assert!(split_host_port("h:99999").is_err());
    }
}
