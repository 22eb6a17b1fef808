//! kafka-bench: a load tool for a Kafka broker (minikafka's Kafka listener) built on librdkafka,
//! the C client under confluent-kafka, kcat and most non-JVM Kafka clients, so that
//! benches/compare.sh can print Kafka-client rows next to the native ones.
//!
//! It owns two measurements and nothing else:
//! - `produce`: sends N records of S bytes (no key) to a topic and waits for every delivery
//!   report. A failed delivery fails the run; the figure counts only acknowledged records.
//! - `consume`: assigns every partition of a topic from its beginning (no consumer group, no
//!   commits) and reads until N records have arrived, counting their key and value bytes and
//!   checking that offsets are consecutive in each partition. librdkafka checks every batch's
//!   CRC-32C (`check.crcs=true`), as the contract asks of every consumer. It gives up when no
//!   record has arrived for `--timeout-secs`.
//!
//! The clock runs from the first send to the last delivery report, and from the assignment to
//! the N-th record (client creation and metadata excluded). It never retries a failed run and
//! never reports a figure for a run that failed a check: any error exits non-zero. The report is
//! one JSON line on stdout (machine-readable) and one text line on stderr (for people).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Produce to / consume from a Kafka topic with librdkafka and print records/s")]
struct Cli {
    /// Bootstrap broker(s), HOST:PORT[,HOST:PORT...].
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Give up after this many seconds: on produce, per undelivered record (message.timeout.ms);
    /// on consume, when no record has arrived for that long.
    #[arg(long, global = true, default_value_t = 60)]
    timeout_secs: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce N records of S bytes to TOPIC and wait for every delivery report.
    Produce {
        #[arg(long)]
        topic: String,
        /// Number of records to produce.
        #[arg(long)]
        records: u64,
        /// Bytes of each record's value.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Acknowledgements the broker waits for before answering (Kafka's acks).
        #[arg(long, value_enum, default_value_t = Acks::One)]
        acks: Acks,
        /// Batch compression codec (librdkafka's compression.type).
        #[arg(long, value_enum, default_value_t = Codec::None)]
        compression: Codec,
        /// How long librdkafka waits to fill a batch (linger.ms; librdkafka's default is 5).
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
        /// Most bytes of one batch (batch.size; librdkafka's default is 1000000).
        #[arg(long, default_value_t = 1_000_000)]
        batch_size: u64,
    },
    /// Read N records of TOPIC from the beginning of every partition.
    Consume {
        #[arg(long)]
        topic: String,
        /// Records to read; the run fails if fewer arrive before the timeout.
        #[arg(long)]
        records: u64,
        /// Most bytes asked for per partition per fetch (max.partition.fetch.bytes); the
        /// default matches `minikafka perf consume --fetch-size`.
        #[arg(long, default_value_t = 4 << 20)]
        partition_fetch_bytes: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Acks {
    #[value(name = "1")]
    One,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// What one run measured.
struct Report {
    op: &'static str,
    records: u64,
    /// Key and value bytes of the records (not the wire bytes: batches may be compressed).
    bytes: u64,
    elapsed: Duration,
}

impl Report {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        let rps = self.records as f64 / secs;
        let mbps = self.bytes as f64 / secs / 1e6;
        let v = serde_json::json!({
            "op": self.op,
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_secs": secs,
            "records_per_sec": rps,
            "mb_per_sec": mbps,
        });
        println!("{v}");
        eprintln!(
            "{}: {} records, {} bytes in {:.3} s: {:.0} records/s, {:.1} MB/s",
            self.op, self.records, self.bytes, secs, rps, mbps
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Produce { topic, records, size, acks, compression, linger_ms, batch_size } => {
            let opts = ProduceOpts {
                topic,
                records: *records,
                size: *size,
                acks: *acks,
                compression: *compression,
                linger_ms: *linger_ms,
                batch_size: *batch_size,
            };
            produce(&cli, &opts)
        }
        Cmd::Consume { topic, records, partition_fetch_bytes } => {
            consume(&cli, topic, *records, *partition_fetch_bytes)
        }
    };
    match result {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct ProduceOpts<'a> {
    topic: &'a str,
    records: u64,
    size: usize,
    acks: Acks,
    compression: Codec,
    linger_ms: u64,
    batch_size: u64,
}

/// Counts delivery reports; librdkafka calls `delivery` from `poll`/`flush` on this thread.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl Deliveries {
    fn check(&self) -> Result<(), BoxError> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        Err(format!(
            "{failed} record(s) not delivered; first error: {}",
            first.as_deref().unwrap_or("?")
        )
        .into())
    }
}

/// Fills `buf` with fresh letters from a 16-letter alphabet for every record: 4 bits of entropy
/// per byte, so a codec sees text that compresses (zstd and gzip about 2:1) but no record that
/// repeats another, as a constant payload would (it would compress to nothing).
struct Payload {
    state: u64,
}

impl Payload {
    fn fill(&mut self, buf: &mut [u8]) {
        const ALPHABET: &[u8; 16] = b"abcdefghijklmnop";
        for chunk in buf.chunks_mut(16) {
            // xorshift64: cheap next to the client's own per-record work.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let mut bits = self.state;
            for b in chunk {
                *b = ALPHABET[(bits & 15) as usize];
                bits >>= 4;
            }
        }
    }
}

fn produce(cli: &Cli, opts: &ProduceOpts<'_>) -> Result<Report, BoxError> {
    let acks = match opts.acks {
        Acks::One => "1",
        Acks::All => "all",
    };
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("acks", acks)
        .set("compression.type", opts.compression.name())
        .set("linger.ms", opts.linger_ms.to_string())
        .set("batch.size", opts.batch_size.to_string())
        .set("message.timeout.ms", (cli.timeout_secs * 1000).to_string())
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("creating the producer for {}: {e}", cli.brokers))?;
    // Fetch the topic's metadata before the clock starts, so that connecting is not timed.
    producer
        .client()
        .fetch_metadata(Some(opts.topic), Duration::from_secs(cli.timeout_secs))
        .map_err(|e| format!("metadata of topic {} from {}: {e}", opts.topic, cli.brokers))?;

    let mut buf = vec![0u8; opts.size];
    let mut payload = Payload { state: 0x9E37_79B9_7F4A_7C15 };
    let deliveries = producer.context();
    let start = Instant::now();
    for i in 0..opts.records {
        payload.fill(&mut buf);
        let mut record = BaseRecord::<(), [u8]>::to(opts.topic).payload(&buf[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: serve delivery reports until there is room.
                    record = back;
                    producer.poll(Duration::from_millis(10));
                    deliveries.check()?;
                }
                Err((e, _)) => return Err(format!("sending record {i}: {e}").into()),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
            deliveries.check()?;
        }
    }
    // Every record's delivery report arrives within message.timeout.ms of its send; flush waits
    // a little longer so that a timeout shows up as a failed delivery, not as a flush error.
    producer
        .flush(Duration::from_secs(cli.timeout_secs + 10))
        .map_err(|e| format!("waiting for delivery reports: {e}"))?;
    let elapsed = start.elapsed();
    deliveries.check()?;
    let ok = deliveries.ok.load(Ordering::Relaxed);
    if ok != opts.records {
        return Err(format!("{ok} delivery reports for {} records", opts.records).into());
    }
    Ok(Report { op: "produce", records: ok, bytes: ok * opts.size as u64, elapsed })
}

fn consume(
    cli: &Cli,
    topic: &str,
    records: u64,
    partition_fetch_bytes: u64,
) -> Result<Report, BoxError> {
    // The partitions are assigned here (librdkafka still wants a group.id to assign), so no
    // rebalance and no offset commit takes part in the measurement.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("group.id", "kafka-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        .set("max.partition.fetch.bytes", partition_fetch_bytes.to_string())
        // librdkafka stops fetching for about half a second whenever its local queue holds
        // 100,000 messages (queued.min.messages): with 4 MiB fetches of small records that pause,
        // not the broker, set the pace. Let the queue hold the whole run instead.
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "2097151")
        .create()
        .map_err(|e| format!("creating the consumer for {}: {e}", cli.brokers))?;
    let timeout = Duration::from_secs(cli.timeout_secs);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("metadata of topic {topic} from {}: {e}", cli.brokers))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions at {}", cli.brokers).into());
    }
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("assigning {topic}/{p}: {e}"))?;
    }

    let start = Instant::now();
    consumer.assign(&assignment).map_err(|e| format!("assigning {topic}: {e}"))?;
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut last_record = Instant::now();
    while count < records {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_record.elapsed() > timeout {
                    return Err(format!(
                        "{count} of {records} records of {topic} arrived; none in the last {} s",
                        cli.timeout_secs
                    )
                    .into());
                }
            }
            Some(Err(e)) => return Err(format!("consuming {topic}: {e}").into()),
            Some(Ok(m)) => {
                let (p, offset) = (m.partition(), m.offset());
                if let Some(&want) = next_offset.get(&p)
                    && offset != want
                {
                    return Err(format!(
                        "{topic}/{p}: offset {offset} arrived where {want} was next"
                    )
                    .into());
                }
                next_offset.insert(p, offset + 1);
                count += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                last_record = Instant::now();
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(Report { op: "consume", records: count, bytes, elapsed })
}
