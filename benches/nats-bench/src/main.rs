//! nats-bench: a small `nats bench` for NATS JetStream, so that benches/compare.sh can measure
//! JetStream next to Redis and minikafka in the same sitting (the Go `nats` CLI is not packaged in
//! Debian, and Go modules are not reachable from the development machine).
//!
//! It owns two measurements and nothing else:
//! - `publish`: (re)creates a file-storage stream with one subject and publishes N records of S
//!   bytes, keeping up to K publish acks in flight (default 1000, the reference figure).
//!   Every ack is awaited and checked: it must name the stream and carry the next sequence.
//! - `consume`: replays a stream from its first message through an ephemeral pull consumer
//!   (no acks, large batches), counting every message and checking that the stream sequences are
//!   consecutive, that every payload has the published size and that nothing is left pending.
//!
//! The clock runs from the first publish to the last ack (stream creation excluded), and from the
//! consumer's creation to the last message. It never retries, never samples and never reports a
//! figure for a run that failed a check: any error exits non-zero. The report is one line: JSON
//! with `--json`, else text.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Publish to / replay a NATS JetStream stream and print records/s")]
struct Cli {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Print the report as one JSON object.
    #[arg(long, global = true)]
    json: bool,
    /// Give up on any single publish ack, API request or fetched message after this many seconds.
    #[arg(long, global = true, default_value_t = 30)]
    timeout_secs: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create (or re-create) STREAM with file storage and publish records to it.
    Publish {
        #[arg(long)]
        stream: String,
        /// The stream's one subject; default "<stream>.data".
        #[arg(long)]
        subject: Option<String>,
        /// Number of records to publish.
        #[arg(long)]
        records: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Publish acks kept in flight.
        #[arg(long, default_value_t = 1000)]
        in_flight: usize,
    },
    /// Replay STREAM from its first message and count every message.
    Consume {
        #[arg(long)]
        stream: String,
        /// Messages asked for per pull request.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Bytes asked for per pull request (0: no byte limit).
        #[arg(long, default_value_t = 16 << 20)]
        max_bytes: usize,
        /// Fail unless the stream holds exactly this many messages.
        #[arg(long)]
        expect: Option<u64>,
        /// Fail unless every payload has this size.
        #[arg(long)]
        size: Option<usize>,
    },
}

/// What one run measured.
struct Report {
    op: &'static str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Report {
    fn print(&self, json: bool) {
        let secs = self.elapsed.as_secs_f64();
        let rps = self.records as f64 / secs;
        let mbps = self.bytes as f64 / secs / 1e6;
        if json {
            let v = serde_json::json!({
                "op": self.op,
                "records": self.records,
                "bytes": self.bytes,
                "elapsed_secs": secs,
                "records_per_sec": rps,
                "mb_per_sec": mbps,
            });
            println!("{v}");
        } else {
            println!(
                "{}: {} records, {} bytes in {:.3} s: {:.0} records/s, {:.1} MB/s",
                self.op, self.records, self.bytes, secs, rps, mbps
            );
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(report) => {
            report.print(cli.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nats-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<Report, BoxError> {
    let timeout = Duration::from_secs(cli.timeout_secs);
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(timeout))
        .connect(cli.server.as_str())
        .await
        .map_err(|e| format!("connecting to {}: {e}", cli.server))?;
    let result = match &cli.cmd {
        Cmd::Publish { stream, subject, records, size, in_flight } => {
            let subject = subject.clone().unwrap_or_else(|| format!("{stream}.data"));
            publish(&client, timeout, stream, &subject, *records, *size, *in_flight).await
        }
        Cmd::Consume { stream, batch, max_bytes, expect, size } => {
            consume(&client, timeout, stream, *batch, *max_bytes, *expect, *size).await
        }
    };
    // Flush so nothing we sent is lost on exit; a failure here does not change the figures.
    let _ = client.flush().await;
    result
}

async fn publish(
    client: &async_nats::Client,
    timeout: Duration,
    name: &str,
    subject: &str,
    records: u64,
    size: usize,
    in_flight: usize,
) -> Result<Report, BoxError> {
    if in_flight == 0 {
        return Err("--in-flight must be at least 1".into());
    }
    // The context's own limit on pending acks must not be what bounds the window.
    let js = jetstream::context::ContextBuilder::new()
        .timeout(timeout)
        .max_ack_inflight(in_flight)
        .build(client.clone());

    // A fresh stream, so that the acked sequences must be exactly 1..=records.
    match js.delete_stream(name).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::DeleteStreamErrorKind::JetStream(ref js_err)
                    if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) => {}
        Err(e) => return Err(format!("deleting stream {name}: {e}").into()),
    }
    js.create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {name}: {e}"))?;

    let payload = Bytes::from(vec![b'x'; size]);
    let subject = async_nats::Subject::from(subject);
    let mut pending = FuturesOrdered::new();
    let mut acked = 0u64;
    let check = |ack: Result<jetstream::publish::PublishAck, _>, acked: &mut u64| {
        let ack: jetstream::publish::PublishAck =
            ack.map_err(|e| format!("publish ack {}: {e}", *acked + 1))?;
        *acked += 1;
        if ack.stream != name || ack.sequence != *acked || ack.duplicate {
            return Err::<(), BoxError>(
                format!(
                    "publish ack {acked}: stream {} sequence {} duplicate {}, expected {name} {acked}",
                    ack.stream, ack.sequence, ack.duplicate
                )
                .into(),
            );
        }
        Ok(())
    };

    let start = Instant::now();
    for i in 0..records {
        if pending.len() == in_flight {
            // The window is full: wait for the oldest ack before sending more.
            let ack = pending.next().await.ok_or("ack window empty")?;
            check(ack, &mut acked)?;
        }
        let fut = js
            .publish(subject.clone(), payload.clone())
            .await
            .map_err(|e| format!("publishing record {}: {e}", i + 1))?;
        pending.push_back(fut.into_future());
    }
    while let Some(ack) = pending.next().await {
        check(ack, &mut acked)?;
    }
    let elapsed = start.elapsed();

    let info = js
        .get_stream(name)
        .await
        .map_err(|e| format!("stream info {name}: {e}"))?
        .cached_info()
        .clone();
    if acked != records || info.state.messages != records {
        return Err(format!(
            "stream {name} holds {} messages; {acked} acked; expected {records}",
            info.state.messages
        )
        .into());
    }
    Ok(Report { op: "publish", records, bytes: records * size as u64, elapsed })
}

async fn consume(
    client: &async_nats::Client,
    timeout: Duration,
    name: &str,
    batch: usize,
    max_bytes: usize,
    expect: Option<u64>,
    size: Option<usize>,
) -> Result<Report, BoxError> {
    let js = jetstream::context::ContextBuilder::new().timeout(timeout).build(client.clone());
    let stream = js.get_stream(name).await.map_err(|e| format!("stream info {name}: {e}"))?;
    let state = stream.cached_info().state.clone();
    if let Some(n) = expect
        && state.messages != n
    {
        return Err(format!("stream {name} holds {} messages, expected {n}", state.messages).into());
    }
    let total = state.messages;

    let start = Instant::now();
    // Ephemeral, no acks: a replay that reads, like `minikafka perf consume` and XRANGE.
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating a consumer on {name}: {e}"))?;
    let consumer_name = consumer.cached_info().name.clone();
    let mut builder = consumer.stream().max_messages_per_batch(batch);
    if max_bytes > 0 {
        builder = builder.max_bytes_per_batch(max_bytes);
    }
    let mut messages = builder.messages().await.map_err(|e| format!("pulling from {name}: {e}"))?;

    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut last_pending = 0u64;
    while count < total {
        let msg = tokio::time::timeout(timeout, messages.next())
            .await
            .map_err(|_| format!("no message for {timeout:?} after {count} of {total}"))?
            .ok_or_else(|| format!("message stream ended after {count} of {total}"))?
            .map_err(|e| format!("message {} of {total}: {e}", count + 1))?;
        let info = msg.info().map_err(|e| format!("message {} of {total}: {e}", count + 1))?;
        let want_seq = state.first_sequence + count;
        if info.stream_sequence != want_seq {
            return Err(format!(
                "message {}: stream sequence {}, expected {want_seq}",
                count + 1,
                info.stream_sequence
            )
            .into());
        }
        if let Some(s) = size
            && msg.payload.len() != s
        {
            return Err(format!(
                "message {}: {} bytes, expected {s}",
                count + 1,
                msg.payload.len()
            )
            .into());
        }
        last_pending = info.pending;
        bytes += msg.payload.len() as u64;
        count += 1;
    }
    let elapsed = start.elapsed();
    drop(messages);
    if last_pending != 0 {
        return Err(format!("{last_pending} messages still pending after {count}").into());
    }
    stream
        .delete_consumer(&consumer_name)
        .await
        .map_err(|e| format!("deleting consumer {consumer_name}: {e}"))?;
    Ok(Report { op: "consume", records: count, bytes, elapsed })
}
