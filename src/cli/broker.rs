//! `minikafka broker`: parses the broker's flags into a `BrokerConfig` and a `ServerConfig`,
//! opens the data directory, starts the listeners and runs until Ctrl-C or SIGTERM, then shuts
//! down cleanly (stop accepting, finish in-flight requests, sync, clean-shutdown markers, exit 0).
//! Owns flag parsing only; the work is done by `crate::broker` and `crate::server`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::{Broker, BrokerConfig, BrokerError, CleanerConfig};
use crate::cluster::config::parse_controllers;
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::http::{HttpError, HttpLimits, HttpServer};
use crate::kafka::{KafkaConfig, KafkaError, KafkaServer};
use crate::protocol;
use crate::server::{self, Server, ServerConfig, ServerError};
use crate::storage::{FsyncPolicy, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// Smallest `--max-frame-bytes` that still fits a request of one small record.
const MIN_FRAME_BYTES: u32 = 1024;
/// Kafka clients send up to `message.max.bytes` (1 MB by default) plus request overhead in one
/// frame, so the Kafka listener never goes below this whatever `--max-frame-bytes` says.
const MIN_KAFKA_FRAME_BYTES: u32 = 2 * 1024 * 1024;
/// How long the listeners may take to drain after Ctrl-C or SIGTERM. Each bounds its own grace
/// (a few seconds); this is the backstop after which they are dropped, so the broker's clean
/// shutdown (sync, clean-shutdown markers) always runs.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

/// Run the broker: serve the topics of a data directory over TCP until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Directory holding the topics and consumer-group offsets (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address of the native protocol listener (host:port; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: String,

    /// Address of the HTTP listener: the web console, `/metrics` and `/api/` (host:port; port 0
    /// picks a free port; `off` disables it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7071")]
    pub http_listen: String,

    /// A Host name the HTTP listener also answers to (`name` for any port, or `name:port`;
    /// repeatable). Loopback names and the listen address are always allowed; requests naming
    /// any other host are refused, which stops DNS-rebinding attacks through a browser.
    #[arg(long = "http-allowed-host", value_name = "HOST")]
    pub http_allowed_hosts: Vec<String>,

    /// Concurrent HTTP connections accepted; more are answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = crate::http::DEFAULT_MAX_CONNECTIONS)]
    pub http_max_connections: usize,

    /// When appends are fdatasynced: `always` (before each acknowledgement; survives power
    /// loss), `interval=MS` (every MS milliseconds; a power loss loses at most MS of
    /// acknowledged messages) or `never` (the OS decides). Every acknowledged message survives a
    /// crash or kill -9 of the broker process.
    #[arg(long, value_name = "POLICY", default_value = "always", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,

    /// Roll a partition's segment file when it reaches this size.
    #[arg(long, value_name = "N", default_value_t = LogConfig::default().segment_bytes)]
    pub segment_bytes: u64,

    /// Delete whole segments whose newest record is older than this many milliseconds.
    #[arg(long, value_name = "N")]
    pub retention_ms: Option<u64>,

    /// Delete the oldest whole segments while a partition is larger than this many bytes.
    #[arg(long, value_name = "N")]
    pub retention_bytes: Option<u64>,

    /// Create a topic on its first append instead of refusing the append.
    #[arg(long)]
    pub auto_create_topics: bool,

    /// Partitions of an auto-created topic.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub default_partitions: u32,

    /// Concurrent connections accepted; more are refused with a LimitExceeded error.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest request frame accepted, in bytes; a larger length prefix closes the connection.
    #[arg(long, value_name = "N", default_value_t = protocol::MAX_FRAME_BYTES)]
    pub max_frame_bytes: u32,

    /// Most bytes of records one Kafka Fetch response carries, whatever the client asks (Kafka's
    /// fetch.max.bytes); never more than the Kafka listener's frame limit.
    #[arg(long, value_name = "N", default_value_t = crate::broker::DEFAULT_FETCH_MAX_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=i32::MAX as i64))]
    pub fetch_max_bytes: u32,

    /// Forget an idempotent producer id after this many milliseconds without a batch from it
    /// (Kafka's producer.id.expiration.ms; default one day). A retry after that is not
    /// recognised as a duplicate.
    #[arg(long, value_name = "MS", default_value_t = crate::storage::DEFAULT_PRODUCER_ID_EXPIRATION_MS)]
    pub producer_id_expiration_ms: u64,

    /// Run the log cleaner, which compacts topics with cleanup.policy=compact (Kafka's
    /// log.cleaner.enable).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_cleaner_enable: bool,

    /// Most bytes per second the log cleaner reads, over every partition it compacts (Kafka's
    /// log.cleaner.io.max.bytes.per.second; default unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_cleaner_max_bytes_per_sec: Option<u64>,

    /// How often, in milliseconds, the log cleaner looks for partitions to compact (Kafka's
    /// log.cleaner.backoff.ms).
    #[arg(long, value_name = "MS", default_value_t = crate::broker::DEFAULT_CLEANER_BACKOFF.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub log_cleaner_backoff_ms: u64,

    /// Address of the Kafka wire protocol listener (host:port; port 0 picks a free port), or
    /// `off` to serve only the native protocol.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9092")]
    pub kafka_listen: String,

    /// The HOST:PORT that Kafka clients are told to connect to (Metadata); defaults to the
    /// Kafka listener's bound address. Set it when clients reach the broker by another name.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_kafka_addr: Option<String>,

    /// Require clients to authenticate with this token (prefer --auth-token-file: a token on
    /// the command line is visible to every local user in `ps`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MINIKAFKA_AUTH_TOKEN",
        hide_env_values = true,
        conflicts_with = "auth_token_file"
    )]
    pub auth_token: Option<String>,

    /// Require clients to authenticate with the token in this file (its first line): native
    /// clients with an Authenticate request, Kafka clients with SASL/PLAIN (password = token).
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,

    /// Allow a listener on a non-loopback address without a token. Without this flag, a broker
    /// with no token refuses to listen anywhere but 127.0.0.1/::1.
    #[arg(long)]
    pub allow_unauthenticated_remote: bool,

    /// Cluster membership (`--controllers` and the flags beside it); without `--controllers`
    /// the broker is a single node.
    #[command(flatten)]
    pub cluster: Box<ClusterArgs>,
}

/// The flags of a broker that is part of a cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// This broker's id in the cluster: a number from 1, unique, never reused for another
    /// broker. Needed with --controllers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub node_id: Option<u64>,

    /// The metadata controllers (Raft voters), as ID@HOST:PORT,... naming each one's
    /// --cluster-listen address (3 or 5 of them). A broker whose --node-id is not listed joins
    /// as a learner of the metadata.
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    pub controllers: Option<String>,

    /// The broker-to-broker listener (metadata consensus and replica fetches). Obeys the rule
    /// of the other listeners: loopback only unless a token is set or
    /// --allow-unauthenticated-remote; other brokers must present the same token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7080")]
    pub cluster_listen: String,

    /// The HOST:PORT that native clients are told to connect to for this broker; defaults to the
    /// native listener's bound address.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_addr: Option<String>,

    /// Replicas of a topic created without a replication factor (default: 3, or the number of
    /// controllers when fewer).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub default_replication_factor: Option<u16>,

    /// A broker whose heartbeats stop for this long is fenced: each partition it led gets a new
    /// leader from the in-sync replicas (Kafka's broker.session.timeout.ms). It also paces the
    /// controllers: a dead controller is replaced within half of it.
    #[arg(long, value_name = "MS", default_value_t = 9000, value_parser = clap::value_parser!(u64).range(200..))]
    pub broker_session_timeout_ms: u64,

    /// How often leadership moves back to each partition's preferred (first) replica once it is
    /// live and in sync again (Kafka's auto leader rebalance); 0 turns it off (then only
    /// `minikafka cluster elect-leaders` moves it).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub leader_imbalance_check_interval_ms: u64,

    /// A follower that has not caught up for this long leaves the ISR (Kafka's
    /// replica.lag.time.max.ms).
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub replica_lag_time_max_ms: u64,
}

impl BrokerArgs {
    /// The shared secret from --auth-token-file or --auth-token, if any.
    pub fn token(&self) -> Result<Option<String>, BrokerCommandError> {
        let token = match (&self.auth_token_file, &self.auth_token) {
            (Some(path), _) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| BrokerCommandError::Config {
                        flag: "--auth-token-file",
                        reason: format!("cannot read {}: {e}", path.display()),
                    })?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (None, t) => t.clone(),
        };
        if token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(BrokerCommandError::Config {
                flag: "--auth-token-file",
                reason: "the token is empty".into(),
            });
        }
        Ok(token)
    }

    /// Refuses a listener outside loopback when no token protects it (unless explicitly allowed).
    fn check_exposure(
        &self,
        flag: &'static str,
        addr: SocketAddr,
    ) -> Result<(), BrokerCommandError> {
        if addr.ip().is_loopback() || self.allow_unauthenticated_remote || self.token()?.is_some() {
            return Ok(());
        }
        Err(BrokerCommandError::Config {
            flag,
            reason: format!(
                "{addr} is reachable from other machines but no --auth-token-file is set; \
                 set one, or pass --allow-unauthenticated-remote"
            ),
        })
    }
}

/// Parses `always`, `never` or `interval=MS` (MS > 0).
fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => {
            let ms = s
                .strip_prefix("interval=")
                .ok_or_else(|| format!("{s:?} is not always, never or interval=MS"))?;
            let ms: u64 =
                ms.parse().map_err(|_| format!("{ms:?} is not a number of milliseconds"))?;
            if ms == 0 {
                return Err("the interval must be at least 1 ms (use always)".into());
            }
            Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
        }
    }
}

/// Why `minikafka broker` could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerCommandError {
    #[error("invalid --listen address {addr:?}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("invalid {flag}: {reason}")]
    Config { flag: &'static str, reason: String },
    #[error("cannot open the data directory {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: BrokerError,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("shutting down the broker: {0}")]
    Shutdown(#[source] BrokerError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl BrokerArgs {
    /// The broker configuration these flags describe, checked.
    pub fn broker_config(&self) -> Result<BrokerConfig, BrokerCommandError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(BrokerCommandError::Config {
                flag: "--segment-bytes",
                reason: format!(
                    "{} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            });
        }
        let defaults = BrokerConfig::default();
        if self.default_partitions == 0 || self.default_partitions > defaults.max_partitions {
            return Err(BrokerCommandError::Config {
                flag: "--default-partitions",
                reason: format!("must be 1..={}", defaults.max_partitions),
            });
        }
        Ok(BrokerConfig {
            data_dir: self.data_dir.clone(),
            log: LogConfig {
                segment_bytes: self.segment_bytes,
                fsync: self.fsync,
                retention_ms: self.retention_ms,
                retention_bytes: self.retention_bytes,
                ..LogConfig::default()
            },
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            // A response never outgrows the frame limit clients and the listener use.
            fetch_max_bytes: self
                .fetch_max_bytes
                .min(self.max_frame_bytes.max(MIN_KAFKA_FRAME_BYTES)),
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            cleaner: CleanerConfig {
                enabled: self.log_cleaner_enable,
                max_bytes_per_sec: self.log_cleaner_max_bytes_per_sec,
                backoff: Duration::from_millis(self.log_cleaner_backoff_ms),
            },
            ..defaults
        })
    }

    /// The HTTP listener's address, or `None` for `--http-listen off`.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, BrokerCommandError> {
        if self.http_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let addr = resolve(&self.http_listen)?;
        self.check_exposure("--http-listen", addr)?;
        if self.http_max_connections == 0 {
            return Err(BrokerCommandError::Config {
                flag: "--http-max-connections",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Some(addr))
    }

    /// The native server configuration these flags describe, checked (the address resolved).
    pub fn server_config(&self) -> Result<ServerConfig, BrokerCommandError> {
        if self.max_connections == 0 {
            return Err(BrokerCommandError::Config {
                flag: "--max-connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(BrokerCommandError::Config {
                flag: "--max-frame-bytes",
                reason: format!("must be at least {MIN_FRAME_BYTES}"),
            });
        }
        let listen = resolve(&self.listen)?;
        self.check_exposure("--listen", listen)?;
        Ok(ServerConfig {
            listen,
            max_connections: self.max_connections,
            max_frame_bytes: self.max_frame_bytes,
            auth_token: self.token()?,
            advertised_addr: self.cluster.advertised_addr.clone(),
            ..ServerConfig::default()
        })
    }
}

impl BrokerArgs {
    /// The cluster this broker joins, or `None` for a single node (no `--controllers`).
    pub fn cluster_config(&self) -> Result<Option<ClusterConfig>, BrokerCommandError> {
        let c = &self.cluster;
        let Some(list) = &c.controllers else {
            for (set, flag) in [
                (c.node_id.is_some(), "--node-id"),
                (c.default_replication_factor.is_some(), "--default-replication-factor"),
            ] {
                if set {
                    return Err(BrokerCommandError::Config {
                        flag,
                        reason: "only means something in a cluster: add --controllers".into(),
                    });
                }
            }
            return Ok(None);
        };
        let controllers = parse_controllers(list).map_err(|e| BrokerCommandError::Config {
            flag: "--controllers",
            reason: e.to_string(),
        })?;
        let node_id = c.node_id.ok_or_else(|| BrokerCommandError::Config {
            flag: "--node-id",
            reason: "a broker in a cluster needs its id (--node-id N)".into(),
        })?;
        let listen = resolve(&c.cluster_listen)?;
        self.check_exposure("--cluster-listen", listen)?;
        if let Some(a) = &c.advertised_addr
            && !a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return Err(BrokerCommandError::Config {
                flag: "--advertised-addr",
                reason: format!("{a:?} is not HOST:PORT"),
            });
        }
        let mut cfg = ClusterConfig::new(node_id, listen, controllers);
        cfg.advertised_addr = c.advertised_addr.clone();
        cfg.advertised_kafka_addr = self.advertised_kafka_addr.clone();
        if let Some(rf) = c.default_replication_factor {
            cfg.default_replication_factor = rf;
        }
        cfg.broker_session_timeout = Duration::from_millis(c.broker_session_timeout_ms);
        cfg.replica_lag_time = Duration::from_millis(c.replica_lag_time_max_ms);
        cfg.leader_imbalance_check_interval = match c.leader_imbalance_check_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        cfg.token = self.token()?;
        cfg.allow_remote = self.allow_unauthenticated_remote;
        Ok(Some(cfg))
    }

    /// The Kafka listener configuration, or `None` for `--kafka-listen off`.
    pub fn kafka_config(&self) -> Result<Option<KafkaConfig>, BrokerCommandError> {
        if self.kafka_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        if let Some(a) = &self.advertised_kafka_addr {
            let port_ok =
                a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(BrokerCommandError::Config {
                    flag: "--advertised-kafka-addr",
                    reason: format!("{a:?} is not HOST:PORT"),
                });
            }
        }
        let listen = resolve(&self.kafka_listen)?;
        self.check_exposure("--kafka-listen", listen)?;
        let mut config = KafkaConfig::new(listen);
        config.auth_token = self.token()?;
        config.advertised_addr = self.advertised_kafka_addr.clone();
        config.max_connections = self.max_connections;
        config.max_frame_bytes = self.max_frame_bytes.max(MIN_KAFKA_FRAME_BYTES);
        Ok(Some(config))
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, BrokerCommandError> {
    let err = |reason: String| BrokerCommandError::Listen { addr: addr.to_owned(), reason };
    addr.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("resolves to no address".into()))
}

/// The bound listeners of one broker process. Another protocol's listener (Kafka) is added here
/// and in [`start_listeners`]; [`run`] drains them all before shutting the broker down.
pub struct Listeners {
    pub native: Server,
    /// The web console and metrics; `None` with `--http-listen off`.
    pub http: Option<HttpServer>,
    /// The Kafka wire protocol listener, unless `--kafka-listen off`.
    pub kafka: Option<KafkaServer>,
}

impl Listeners {
    /// Serves on every listener until `stop` turns true, then lets each drain. A listener that
    /// fails ends the others too.
    async fn serve(self, stop: watch::Receiver<bool>) -> Result<(), BrokerCommandError> {
        let native = async {
            self.native.serve(wait_for_stop(stop.clone())).await.map_err(BrokerCommandError::from)
        };
        let kafka = async {
            match self.kafka {
                Some(k) => {
                    k.run(wait_for_stop(stop.clone())).await.map_err(BrokerCommandError::from)
                }
                None => Ok(()),
            }
        };
        let http = async {
            match self.http {
                Some(h) => {
                    h.run(wait_for_stop(stop.clone())).await.map_err(BrokerCommandError::from)
                }
                None => Ok(()),
            }
        };
        tokio::try_join!(native, kafka, http)?;
        Ok(())
    }
}

/// Binds every listener the flags ask for; each serves through `cluster` (a cluster of one on
/// a single node).
pub async fn start_listeners(
    args: &BrokerArgs,
    cluster: Arc<Cluster>,
) -> Result<Listeners, BrokerCommandError> {
    let broker = cluster.broker().clone();
    let kafka = match args.kafka_config()? {
        Some(config) => Some(KafkaServer::bind_cluster(config, cluster.clone()).await?),
        None => None,
    };
    let http = match args.http_addr()? {
        Some(addr) => {
            let limits =
                HttpLimits { max_connections: args.http_max_connections, ..HttpLimits::default() };
            let http = HttpServer::bind_cluster(addr, cluster.clone(), broker.metrics().clone())
                .await?
                .with_auth_token(args.token()?)
                .with_allowed_hosts(&args.http_allowed_hosts)
                .with_limits(limits);
            // Group members come from the broker's coordinator, which the Kafka listener drives.
            Some(http)
        }
        None => None,
    };
    let native = Server::bind_cluster(args.server_config()?, cluster).await?;
    Ok(Listeners { native, kafka, http })
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once we are stopping anyway.
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the broker until Ctrl-C or SIGTERM, then shuts down cleanly.
pub async fn run(args: BrokerArgs) -> Result<(), BrokerCommandError> {
    run_until(args, shutdown_signal()).await
}

/// Runs the broker until `shutdown` completes (what [`run`] does with the signals; tests pass
/// their own future).
pub async fn run_until(
    args: BrokerArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerCommandError> {
    let config = args.broker_config()?;
    // Validate the listener flags before touching the data directory.
    args.server_config()?;
    args.http_addr()?;
    args.kafka_config()?;
    args.cluster_config()?;
    let path = config.data_dir.clone();
    crate::storage::raise_open_file_limit(); // every partition holds its active segment open
    // Opening recovers every partition: file I/O, kept off the async workers.
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| BrokerCommandError::Internal(e.to_string()))?
        .map_err(|source| BrokerCommandError::Open { path, source })?;
    let cluster = match args.cluster_config()? {
        Some(cfg) => match Cluster::start(broker.clone(), cfg).await {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
                return Err(e.into());
            }
        },
        None => Cluster::single(broker.clone()),
    };
    let result = match start_listeners(&args, cluster.clone()).await {
        Ok(listeners) => {
            cluster.register();
            // Clients connecting meanwhile wait in the listeners' backlogs: nothing is answered
            // from metadata this broker has not caught up with.
            tokio::pin!(shutdown);
            let stopped_early = {
                let waiting = async {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        tracing::info!(
                            "waiting to join the cluster (a majority of the controllers must be up)"
                        );
                    }
                };
                tokio::select! {
                    _ = cluster.ready() => false,
                    _ = waiting => unreachable!("the wait loop never ends"),
                    _ = &mut shutdown => true,
                }
            };
            if cluster.is_clustered() && !stopped_early {
                tracing::info!(node = cluster.node_id(), "joined the cluster; serving");
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            if stopped_early {
                let _ = stop_tx.send(true);
            }
            let serving = listeners.serve(stop_rx);
            tokio::pin!(serving);
            tokio::select! {
                r = &mut serving => r,
                _ = &mut shutdown, if !stopped_early => {
                    tracing::info!("shutdown requested");
                    // Leadership moves away while the listeners still answer, so clients are
                    // told where to go (retriable errors only).
                    cluster.shutdown().await;
                    let _ = stop_tx.send(true);
                    match tokio::time::timeout(SHUTDOWN_DEADLINE, serving).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::warn!(
                                "listeners still draining after {SHUTDOWN_DEADLINE:?}; \
                                 closing their connections"
                            );
                            Ok(())
                        }
                    }
                }
            }
        }
        Err(e) => Err(e),
    };
    cluster.shutdown().await;
    let closed = tokio::task::spawn_blocking(move || broker.shutdown())
        .await
        .map_err(|e| BrokerCommandError::Internal(e.to_string()))?;
    result?;
    closed.map_err(BrokerCommandError::Shutdown)?;
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: BrokerArgs,
    }

    fn parse(argv: &[&str]) -> Result<BrokerArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("broker").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.data_dir, PathBuf::from("./data"));
        assert_eq!(a.listen, "127.0.0.1:7070");
        assert_eq!(a.http_addr().unwrap(), Some("127.0.0.1:7071".parse().unwrap()));
        assert_eq!(parse(&["--http-listen=off"]).unwrap().http_addr().unwrap(), None);
        assert_eq!(a.fsync, FsyncPolicy::Always);
        assert_eq!(a.max_connections, 4096);
        assert_eq!(a.max_frame_bytes, protocol::MAX_FRAME_BYTES);
        assert!(!a.auto_create_topics);
        let c = a.broker_config().unwrap();
        assert_eq!(c.log.segment_bytes, LogConfig::default().segment_bytes);
        assert_eq!(c.log.retention_ms, None);
    }

    #[test]
    fn every_flag_is_parsed() {
        let a = parse(&[
            "--data-dir=/tmp/x",
            "--listen=127.0.0.1:0",
            "--fsync=interval=250",
            "--segment-bytes=4096",
            "--retention-ms=60000",
            "--retention-bytes=1000000",
            "--auto-create-topics",
            "--max-connections=10",
            "--max-frame-bytes=65536",
        ])
        .unwrap();
        let c = a.broker_config().unwrap();
        assert_eq!(c.log.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(c.log.segment_bytes, 4096);
        assert_eq!(c.log.retention_ms, Some(60000));
        assert_eq!(c.log.retention_bytes, Some(1_000_000));
        assert!(c.auto_create_topics);
        let s = a.server_config().unwrap();
        assert_eq!(s.max_connections, 10);
        assert_eq!(s.max_frame_bytes, 65536);
        assert_eq!(s.listen.ip().to_string(), "127.0.0.1");
        assert_eq!(parse(&["--fsync", "never"]).unwrap().fsync, FsyncPolicy::Never);
    }

    #[test]
    fn log_cleaner_flags_default_to_kafkas_and_are_parsed() {
        let c = parse(&[]).unwrap().broker_config().unwrap();
        assert_eq!(c.cleaner, CleanerConfig::default());
        assert!(c.cleaner.enabled);
        assert_eq!(c.cleaner.max_bytes_per_sec, None);
        assert_eq!(c.cleaner.backoff, Duration::from_secs(15));
        let a = parse(&[
            "--log-cleaner-enable=false",
            "--log-cleaner-max-bytes-per-sec=1048576",
            "--log-cleaner-backoff-ms=100",
        ])
        .unwrap();
        let c = a.broker_config().unwrap().cleaner;
        assert!(!c.enabled);
        assert_eq!(c.max_bytes_per_sec, Some(1_048_576));
        assert_eq!(c.backoff, Duration::from_millis(100));
        assert!(parse(&["--log-cleaner-max-bytes-per-sec=0"]).is_err());
        assert!(parse(&["--log-cleaner-backoff-ms=0"]).is_err());
    }

    #[test]
    fn kafka_flags_default_to_9092_and_can_turn_it_off() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.kafka_listen, "127.0.0.1:9092");
        let k = a.kafka_config().unwrap().expect("on by default");
        assert_eq!(k.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(k.advertised_addr, None);
        assert!(parse(&["--kafka-listen", "off"]).unwrap().kafka_config().unwrap().is_none());
        let a = parse(&["--kafka-listen=127.0.0.1:0", "--advertised-kafka-addr=kafka.local:19092"])
            .unwrap();
        let k = a.kafka_config().unwrap().unwrap();
        assert_eq!(k.advertised_addr.as_deref(), Some("kafka.local:19092"));
        let bad = parse(&["--advertised-kafka-addr=nohost"]).unwrap().kafka_config().unwrap_err();
        assert!(bad.to_string().contains("--advertised-kafka-addr"), "{bad}");
        assert!(parse(&["--kafka-listen=not an address"]).unwrap().kafka_config().is_err());
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for bad in ["sometimes", "interval=0", "interval=abc", "interval="] {
            let err = parse(&["--fsync", bad]).expect_err(bad).to_string();
            assert!(err.contains("fsync"), "{err}");
        }
        let tiny = parse(&["--segment-bytes=1"]).unwrap();
        assert!(tiny.broker_config().unwrap_err().to_string().contains("--segment-bytes"));
        let no_conn = parse(&["--max-connections=0"]).unwrap();
        assert!(no_conn.server_config().is_err());
        let addr = parse(&["--listen=not an address"]).unwrap();
        assert!(matches!(addr.server_config(), Err(BrokerCommandError::Listen { .. })));
        assert!(parse(&["--http-max-connections=0"]).unwrap().http_addr().is_err());
    }

    #[test]
    fn a_remote_http_listener_needs_a_token_like_the_others() {
        let open = parse(&["--http-listen=0.0.0.0:0"]).unwrap().http_addr().unwrap_err();
        assert!(open.to_string().contains("--http-listen"), "{open}");
        let allowed = parse(&["--http-listen=0.0.0.0:0", "--allow-unauthenticated-remote"]);
        assert!(allowed.unwrap().http_addr().unwrap().is_some());
        let token = parse(&["--http-listen=0.0.0.0:0", "--auth-token=t"]).unwrap();
        assert!(token.http_addr().unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_until_serves_then_shuts_down_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let args = parse(&[
            "--listen=127.0.0.1:0",
            "--http-listen=127.0.0.1:0",
            "--kafka-listen=127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_until(args, async move {
            let _ = rx.await;
        }));
        // The data directory appears once the broker has opened it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !data.join(crate::broker::GROUPS_DIR).is_dir() {
            assert!(std::time::Instant::now() < deadline, "broker opened its data dir");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap().unwrap();
    }
}
