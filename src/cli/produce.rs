//! `minikafka produce`: appends the MESSAGE arguments, the lines of `--file`, or the lines of
//! stdin, batched by the client's [`Producer`] with several batches in flight.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{CliError, ConnectArgs, reconnect_on_stderr};
use crate::batch::Compression;
use crate::client::{BatchAck, ClientError, Producer, ProducerConfig};
use crate::record::{self, Header, NewRecord};

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
    /// Compress each batch with this codec; the broker stores and serves it compressed.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Send one record with a null value (a tombstone: "delete this key" on a compacted topic)
    /// for --key, instead of messages.
    #[arg(long, requires = "key", conflicts_with_all = ["messages", "file"])]
    null_value: bool,
    /// A header on every message: `KEY=VALUE`, or `KEY` alone for a null value. Repeatable; order
    /// is kept and keys may repeat.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<Header>,
    /// If the broker goes away (a restart), keep trying to reconnect for this many seconds, then
    /// fail. Batches not acknowledged when the connection was lost are sent again, so a message
    /// may be stored twice (at-least-once); none is reported stored unless acknowledged.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = super::parse_seconds)]
    reconnect_timeout: std::time::Duration,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Compression {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

fn parse_header(s: &str) -> Result<Header, String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.as_bytes().to_vec())),
        None => (s, None),
    };
    if key.is_empty() {
        return Err(format!("header {s:?} has an empty key (expected KEY=VALUE)"));
    }
    Ok(Header { key: key.as_bytes().to_vec(), value })
}

pub(super) async fn run(args: ProduceArgs) -> Result<(), CliError> {
    let conn = args.connect.connect().await?;
    let config = ProducerConfig {
        reconnect: Some(reconnect_on_stderr(Some(args.reconnect_timeout))),
        compression: args.compression.into(),
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn, &args.topic, config).await?;
    let mut sender = Sender {
        producer: &mut producer,
        key: args.key.as_deref().map(str::as_bytes),
        headers: &args.headers,
        partition: args.partition,
        acks: Vec::new(),
        sent: 0,
        timestamp_ms: 0,
        timestamp_uses_left: 0,
    };
    if args.null_value {
        sender.send_value(None).await?;
    } else if !args.messages.is_empty() {
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
    headers: &'a [Header],
    partition: Option<u32>,
    acks: Vec<BatchAck>,
    sent: u64,
    /// The timestamp given to records, and how many more records may reuse it (see `send`).
    timestamp_ms: i64,
    timestamp_uses_left: u32,
}

/// Records taken back to back from an input buffer share one clock reading (the clock read
/// per record was a fifth of `produce --file`'s CPU); they are read within microseconds of each
/// other, well inside the timestamp's millisecond resolution.
const TIMESTAMP_REUSE: u32 = 256;

impl Sender<'_> {
    async fn send(&mut self, value: &[u8]) -> Result<(), CliError> {
        self.send_value(Some(value)).await
    }

    /// Sends one record; `None` is a null value.
    async fn send_value(&mut self, value: Option<&[u8]>) -> Result<(), CliError> {
        if self.buffer(value)? {
            self.send_due().await?;
        }
        Ok(())
    }

    /// Queues one record without waiting; true when `send_due` must run before the next one.
    fn buffer(&mut self, value: Option<&[u8]>) -> Result<bool, CliError> {
        if self.timestamp_uses_left == 0 {
            self.timestamp_ms = record::now_ms();
            self.timestamp_uses_left = TIMESTAMP_REUSE;
        }
        self.timestamp_uses_left -= 1;
        let rec = NewRecord {
            timestamp_ms: self.timestamp_ms,
            key: self.key,
            value,
            headers: self.headers,
        };
        let due = self.producer.buffer_record(self.partition, &rec)?;
        self.sent += 1;
        Ok(due)
    }

    /// Sends what the producer has due (full or lingering batches) and collects its acks.
    async fn send_due(&mut self) -> Result<(), CliError> {
        self.producer.send_due().await?;
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
            // Whole lines already in the reader's buffer (a file, piped input) go out straight
            // from it, without a read per line; a line cut by the buffer's end, or waiting for
            // input, takes the general path below.
            let taken = match poll_once(std::pin::pin!(reader.fill_buf())).await {
                // memchr scans many bytes per instruction (SIMD); a byte-by-byte scan for
                // newlines was a quarter of `produce --file`'s CPU.
                Some(Ok(buf)) => match memchr::memrchr(b'\n', buf) {
                    Some(last) => {
                        let whole = &buf[..=last];
                        let mut start = 0;
                        for end in memchr::memchr_iter(b'\n', whole) {
                            if self.buffer_line(&whole[start..=end], &what)? {
                                self.send_due().await?;
                            }
                            start = end + 1;
                        }
                        if let Some(bar) = bar {
                            bar.inc(whole.len() as u64);
                        }
                        whole.len()
                    }
                    None => 0,
                },
                Some(Err(source)) => return Err(CliError::Io { what: what(), source }),
                None => 0,
            };
            if taken > 0 {
                reader.consume(taken);
                continue;
            }
            let read = {
                let next = reader.read_until(b'\n', &mut line);
                tokio::pin!(next);
                // A line already buffered (a file, piped input) is taken without arming a
                // linger timer: a timer per line cost more than the line itself.
                match poll_once(next.as_mut()).await {
                    Some(r) => r,
                    None => {
                        // Waiting for input: the next record reads the clock afresh.
                        self.timestamp_uses_left = 0;
                        match self.producer.linger_deadline() {
                            Some(deadline) => {
                                let lingered = tokio::select! {
                                    r = next.as_mut() => Some(r),
                                    () = tokio::time::sleep_until(deadline.into()) => None,
                                };
                                match lingered {
                                    Some(r) => r,
                                    None => {
                                        // Bytes read so far stay in `line`; the same read goes
                                        // on after the lingering batches are sent.
                                        self.producer.flush_lingering().await?;
                                        next.as_mut().await
                                    }
                                }
                            }
                            None => next.as_mut().await,
                        }
                    }
                }
            };
            read.map_err(|source| CliError::Io { what: what(), source })?;
            // `line`, not the count read: bytes read before a linger flush are in it too.
            if line.is_empty() {
                return Ok(());
            }
            if let Some(bar) = bar {
                bar.inc(line.len() as u64);
            }
            self.send_line(&line, &what).await?;
        }
    }

    /// Sends one line, without its line ending (`\n` or `\r\n`).
    async fn send_line(&mut self, line: &[u8], what: impl Fn() -> String) -> Result<(), CliError> {
        if self.buffer_line(line, what)? {
            self.send_due().await?;
        }
        Ok(())
    }

    /// Queues one line, without its line ending; true when `send_due` must run next.
    fn buffer_line(&mut self, line: &[u8], what: impl Fn() -> String) -> Result<bool, CliError> {
        let mut value = line;
        if let Some(v) = value.strip_suffix(b"\n") {
            value = v.strip_suffix(b"\r").unwrap_or(v);
        }
        self.buffer(Some(value)).map_err(|e| match e {
            CliError::Client(c @ ClientError::Encode { .. }) => {
                CliError::Usage(format!("line {} ({}): {c}", self.sent + 1, what()))
            }
            other => other,
        })
    }
}

/// Polls `fut` once: its output if it is ready now, else `None` (it stays pollable).
async fn poll_once<F: Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut fut).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
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
