//! The `minikafka` command line: the clap tree, one file per subcommand, and the error type every
//! subcommand returns. Owns argument parsing and output formatting only; the business logic lives
//! in the broker (for `minikafka broker`) and in `crate::client` (for everything else).

pub mod broker;
mod cluster;
mod completions;
mod consume;
mod group;
mod log;
mod perf;
mod produce;
mod reassign;
mod topic;

use std::io;

use clap::{Args, Parser, Subcommand};

use crate::client::{ClientError, Connection, Reconnect};

/// minikafka: a durable, single-node, append-only log broker.
#[derive(Debug, Parser)]
#[command(name = "minikafka", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: serve the data directory over TCP until Ctrl-C or SIGTERM.
    Broker(broker::BrokerArgs),
    /// Create, list, describe, alter (configs), grow, delete and trim topics.
    Topic(topic::TopicArgs),
    /// Append messages to a topic: the MESSAGE arguments, the lines of --file, or stdin's lines.
    Produce(produce::ProduceArgs),
    /// Print a topic's messages, one per line.
    ///
    /// Where it starts: --from-beginning at the log start, --offset N at N, --group G at G's
    /// committed offset (else the log start); with none of these, at the log end, so only
    /// messages produced from now on are shown (like Kafka's console consumer). To replay what
    /// is stored, use --from-beginning.
    Consume(consume::ConsumeArgs),
    /// List consumer groups, or show one group's committed offsets and lag per partition.
    Group(group::GroupArgs),
    /// Show the cluster: its brokers, controller, and under-replicated or offline partitions.
    Cluster(cluster::ClusterArgs),
    /// Print a shell completion script: `minikafka completions bash > /etc/bash_completion.d/minikafka`.
    Completions(completions::CompletionsArgs),
    /// Measure a running broker: produce, consume and produce-to-consume latency load tests.
    Perf(perf::PerfArgs),
    /// Read segment files from disk: dump one, or verify a whole data directory (read-only,
    /// safe beside a running broker).
    Log(log::LogArgs),
}

/// How to reach the broker; shared by every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The broker's address (host:port), or several brokers of a cluster, comma-separated: the
    /// first that answers is asked, and requests for a partition go to its leader.
    #[arg(long, global = true, env = "MINIKAFKA_BROKER", default_value = "127.0.0.1:7070")]
    pub broker: String,

    /// File holding the broker's token (first line), for a broker run with --auth-token-file.
    /// The env MINIKAFKA_TOKEN gives the token itself instead.
    #[arg(long, global = true, value_name = "PATH")]
    pub auth_token_file: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    async fn connect(&self) -> Result<Connection, CliError> {
        let token = self.token()?;
        Ok(Connection::connect_with_token(&self.broker, token.as_deref()).await?)
    }

    /// The token from --auth-token-file, else from the env MINIKAFKA_TOKEN, if any.
    pub(super) fn token(&self) -> Result<Option<String>, CliError> {
        if let Some(path) = &self.auth_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
                what: format!("reading --auth-token-file {}", path.display()),
                source,
            })?;
            return Ok(Some(text.lines().next().unwrap_or("").trim().to_string()));
        }
        Ok(std::env::var("MINIKAFKA_TOKEN").ok().filter(|t| !t.is_empty()))
    }
}

/// The way `produce` and `consume` reconnect after losing the broker, telling the person on
/// stderr: "broker ... unavailable (...); reconnecting..." and "reconnected ...".
fn reconnect_on_stderr(give_up_after: Option<std::time::Duration>) -> Reconnect {
    Reconnect {
        give_up_after,
        listener: Some(std::sync::Arc::new(|event| eprintln!("{event}"))),
        ..Reconnect::default()
    }
}

/// Parses a number of seconds (fractions allowed) as a duration.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("not a number of seconds: {s}"))?;
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("not a duration: {s}"))
}

/// Why a subcommand failed; printed on stderr as `error: ...` with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Broker(String),
    /// `minikafka log` found damage (already reported on stdout).
    #[error("{0}")]
    Damaged(String),
    /// Stdout was closed by its reader (`| head`): not a failure, the reader has had enough.
    #[error("output closed")]
    OutputClosed,
}

impl CliError {
    /// Wraps a write error on stdout, recognising a closed pipe.
    pub(crate) fn stdout(source: io::Error) -> CliError {
        if source.kind() == io::ErrorKind::BrokenPipe {
            CliError::OutputClosed
        } else {
            CliError::Io { what: "writing to stdout".to_string(), source }
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Broker(args) => {
            broker::run(args).await.map_err(|e| CliError::Broker(error_chain(&e)))
        }
        Command::Topic(args) => topic::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Group(args) => group::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Completions(args) => completions::run(args),
        Command::Perf(args) => perf::run(args).await,
        Command::Log(args) => log::run(args).await,
    }
}

/// An error and its sources, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}
