//! `minikafka consume`: prints a topic's records one per line (the value, or a JSON object), from
//! the chosen start position to the end as it stood at start, or following new records.

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;

use clap::{Args, ValueEnum};

use super::{CliError, ConnectArgs, reconnect_on_stderr};
use crate::batch::RecordView;
use crate::client::{ClientError, Consumer, ConsumerConfig, StartFrom};

/// Longest a stopping `consume --follow --group` waits to commit what it printed (the broker may
/// be down: it reconnects forever while following, but not once asked to stop).
const FINAL_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at the log start offset (replay everything still stored).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, value_name = "N")]
    offset: Option<u64>,
    /// Read only this partition (default: all).
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Consumer group: start at its committed offset (else the log start) and commit as records
    /// are printed, so the next `consume --group G` continues where this one stopped.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// Keep waiting for new records (long-poll) until Ctrl-C or SIGTERM, instead of stopping at
    /// the end of the log as it stood at start. If the broker goes away (a restart), keep trying
    /// to reconnect until it is back, then go on after the last record printed. Without
    /// --follow, reconnecting gives up after 60 s.
    #[arg(long)]
    follow: bool,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// `value`: the value as is, one per line (a null value prints an empty line); `json`: one
    /// object per line with partition, offset, timestamp, key, value (`null` for a null key or
    /// value) and headers (a list of `[key, value]` pairs in order, keys may repeat), as UTF-8
    /// text with invalid bytes replaced.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    format: Format,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Value,
    Json,
}

#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<std::borrow::Cow<'a, str>>,
    value: Option<std::borrow::Cow<'a, str>>,
    headers: Vec<(std::borrow::Cow<'a, str>, Option<std::borrow::Cow<'a, str>>)>,
}

pub(super) async fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let start = if args.from_beginning {
        StartFrom::Beginning
    } else if let Some(n) = args.offset {
        StartFrom::Offset(n)
    } else if args.group.is_some() {
        StartFrom::Committed
    } else {
        StartFrom::End
    };
    let config = ConsumerConfig {
        partitions: args.partition.map(|p| vec![p]),
        group: args.group.clone(),
        stop_at_end: !args.follow,
        reconnect: Some(reconnect_on_stderr(if args.follow {
            None
        } else {
            Some(std::time::Duration::from_secs(60))
        })),
        ..ConsumerConfig::default()
    };
    let conn = args.connect.connect().await?;
    let mut consumer = Consumer::new(conn, &args.topic, start, config).await?;
    // Values go straight from the fetched bytes into one large buffer on stdout's raw handle
    // (no per-record allocation, no stdout lock per write).
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1024 * 1024, stdout);
    let mut printed = 0u64;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let format = args.format;
    let max = args.max_messages;
    let result = loop {
        if max.is_some_and(|max| printed >= max) {
            break Ok(());
        }
        let mut each =
            |partition: u32, view: &RecordView<'_>| -> Result<ControlFlow<()>, CliError> {
                write_record(&mut out, partition, view, format).map_err(CliError::stdout)?;
                printed += 1;
                Ok(if max.is_some_and(|max| printed >= max) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            };
        let round = if args.follow {
            tokio::select! {
                r = consumer.poll_views(&mut each) => r,
                () = &mut shutdown => break Ok(()),
            }
        } else {
            consumer.poll_views(&mut each).await
        };
        match round {
            Ok(Some(0)) => {}
            // A fetched round is fully printed: make it visible, then commit it.
            Ok(Some(_)) => {
                out.flush().map_err(CliError::stdout)?;
                if args.group.is_some() {
                    if args.follow {
                        // Committing may wait for the broker to come back: Ctrl-C still ends it.
                        tokio::select! {
                            r = consumer.commit() => r?,
                            () = &mut shutdown => break Ok(()),
                        }
                    } else {
                        consumer.commit().await?;
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Whatever was printed is committed, also when stopping early (--max-messages, Ctrl-C) or
    // on an error after some records.
    out.flush().map_err(CliError::stdout)?;
    if args.group.is_some() {
        let committed = if args.follow {
            // A follow consumer reconnects forever; stopping must not.
            tokio::time::timeout(FINAL_COMMIT_WAIT, consumer.commit()).await.unwrap_or_else(|_| {
                Err(ClientError::Unavailable {
                    addr: args.connect.broker.clone(),
                    waited: FINAL_COMMIT_WAIT,
                    reason: "the last offsets printed are not committed".to_string(),
                })
            })
        } else {
            consumer.commit().await
        };
        // The first failure is the one worth reporting.
        if result.is_ok() {
            committed?;
        }
    }
    result
}

fn write_record(
    out: &mut impl Write,
    partition: u32,
    rec: &RecordView<'_>,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Value => {
            out.write_all(rec.value.unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let json = JsonRecord {
                partition,
                offset: rec.offset as u64,
                timestamp: rec.timestamp,
                key: rec.key.map(String::from_utf8_lossy),
                value: rec.value.map(String::from_utf8_lossy),
                headers: rec
                    .headers()
                    .map(|h| (String::from_utf8_lossy(h.key), h.value.map(String::from_utf8_lossy)))
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
