//! `minikafka produce`: appends the MESSAGE arguments, the lines of `--file`, or the lines of
//! stdin, batched by the client's [`Producer`] with several batches in flight.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{CliError, ConnectArgs};
use crate::client::{BatchAck, ClientError, Producer, ProducerConfig};
use crate::record::{self, NewRecord};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to append to.
    topic: String,
    /// Messages to send, one record each. Without MESSAGE or --file, stdin's lines are sent.
    #[arg(value_name = "MESSAGE", conflicts_with = "file")]
    messages: Vec<String>,
    /// Key of every message (selects the partition with Kafka's murmur2 rule).
    #[arg(long, value_name = "K")]
    key: Option<String>,
    /// Send every message to this partition.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Send one message per line of this file (progress bar on a terminal).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Print the offset ranges the messages were stored at.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub(super) async fn run(args: ProduceArgs) -> Result<(), CliError> {
    let conn = args.connect.connect().await?;
    let mut producer = Producer::new(conn, &args.topic, ProducerConfig::default()).await?;
    let mut sender = Sender {
        producer: &mut producer,
        key: args.key.as_deref().map(str::as_bytes),
        partition: args.partition,
        acks: Vec::new(),
        sent: 0,
    };
    if !args.messages.is_empty() {
        for m in &args.messages {
            sender.send(m.as_bytes()).await?;
        }
    } else if let Some(path) = &args.file {
        let what = || format!("reading {}", path.display());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| CliError::Io { what: what(), source })?;
        let len =
            file.metadata().await.map_err(|source| CliError::Io { what: what(), source })?.len();
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            Some(bar)
        } else {
            None
        };
        let reader = BufReader::with_capacity(256 * 1024, file);
        let result = sender.send_lines(reader, what, bar.as_ref()).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result?;
    } else {
        // Large reads: every read of tokio's stdin is a hop to the blocking pool.
        let reader = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
        sender.send_lines(reader, || "reading stdin".to_string(), None).await?;
    }
    let mut acks = std::mem::take(&mut sender.acks);
    acks.extend(producer.flush().await?);
    if args.verbose {
        let mut out = std::io::stdout().lock();
        for (partition, first, last) in merge_ranges(acks) {
            writeln!(out, "partition {partition}: offsets {first}-{last}")
                .map_err(CliError::stdout)?;
        }
        out.flush().map_err(CliError::stdout)?;
    }
    Ok(())
}

struct Sender<'a> {
    producer: &'a mut Producer,
    key: Option<&'a [u8]>,
    partition: Option<u32>,
    acks: Vec<BatchAck>,
    sent: u64,
}

impl Sender<'_> {
    async fn send(&mut self, value: &[u8]) -> Result<(), CliError> {
        let rec = NewRecord { timestamp_ms: record::now_ms(), key: self.key, value, headers: &[] };
        self.producer.send_record(self.partition, &rec).await?;
        self.sent += 1;
        self.acks.extend(self.producer.take_acks());
        Ok(())
    }

    /// Sends one message per line (without its `\n` or `\r\n`); a last line without a newline
    /// counts too. While waiting for input, lingering batches are still sent on time, so an
    /// interactive `produce` delivers each line as it is typed.
    async fn send_lines<R: AsyncBufRead + Unpin>(
        &mut self,
        mut reader: R,
        what: impl Fn() -> String,
        bar: Option<&ProgressBar>,
    ) -> Result<(), CliError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = match self.producer.linger_deadline() {
                Some(deadline) => {
                    tokio::select! {
                        r = reader.read_until(b'\n', &mut line) => r,
                        () = tokio::time::sleep_until(deadline.into()) => {
                            // read_until is cancel-safe only in that bytes read so far stay in
                            // `line`; finish this line before anything else.
                            self.producer.flush_lingering().await?;
                            reader.read_until(b'\n', &mut line).await
                        }
                    }
                }
                None => reader.read_until(b'\n', &mut line).await,
            };
            read.map_err(|source| CliError::Io { what: what(), source })?;
            // `line`, not the count read: bytes read before a linger flush are in it too.
            if line.is_empty() {
                return Ok(());
            }
            if let Some(bar) = bar {
                bar.inc(line.len() as u64);
            }
            let mut value = line.as_slice();
            if let Some(v) = value.strip_suffix(b"\n") {
                value = v.strip_suffix(b"\r").unwrap_or(v);
            }
            self.send(value).await.map_err(|e| match e {
                CliError::Client(c @ ClientError::Encode { .. }) => {
                    CliError::Usage(format!("line {} ({}): {c}", self.sent + 1, what()))
                }
                other => other,
            })?;
        }
    }
}

/// Coalesces acknowledged batches into contiguous (partition, first, last) ranges.
fn merge_ranges(mut acks: Vec<BatchAck>) -> Vec<(u32, u64, u64)> {
    acks.retain(|a| !a.is_empty());
    acks.sort_by_key(|a| (a.partition, a.first_offset));
    let mut out: Vec<(u32, u64, u64)> = Vec::new();
    for a in acks {
        match out.last_mut() {
            Some((p, _, last)) if *p == a.partition && *last + 1 == a.first_offset => {
                *last = a.next_offset - 1;
            }
            _ => out.push((a.partition, a.first_offset, a.next_offset - 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_batches_merge_per_partition() {
        let ack = |partition, first_offset, next_offset| BatchAck {
            partition,
            first_offset,
            next_offset,
        };
        let merged = merge_ranges(vec![ack(1, 0, 2), ack(0, 3, 5), ack(0, 0, 3), ack(0, 7, 8)]);
        assert_eq!(merged, vec![(0, 0, 4), (0, 7, 7), (1, 0, 1)]);
    }
}
