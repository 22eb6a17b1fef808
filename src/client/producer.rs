//! The batching producer: records are encoded (in `crate::record`'s format) into one batch per
//! target partition, a batch is sent when it is full (bytes or records) or has lingered, and up to
//! `max_in_flight` batches are outstanding at once on the pipelined connection. A batch the broker
//! refused is never sent again. A batch whose connection was lost is sent again only when
//! `reconnect` is set, once the broker is back: the broker may have stored it already, so it may be
//! stored twice (at-least-once); a batch is reported acknowledged only once the broker said so.
//!
//! In a cluster, a batch refused with a retriable code (its partition's leader moved, the
//! replicas are behind: [`ErrorCode::is_retriable`]) is sent again to the partition's leader once
//! the leaders are learnt again, waiting between tries as `reconnect` (or, without it,
//! [`Reconnect::default`]) says and giving up after its `give_up_after`. Codes that say the
//! batch may have been stored (`NotEnoughReplicasAfterAppend`, `RequestTimedOut`) make that
//! at-least-once too, as a lost connection does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::admin::unexpected;
use super::connection::Pending;
use super::{Admin, ClientError, Connection, Reconnect, partition_for_key};
use crate::batch::{BatchBuilder, Compression};
use crate::protocol::{ErrorCode, Request, Response};
use crate::record::{self, NewRecord};
use bytes::Bytes;

/// How a [`Producer`] groups records into requests.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// A batch is sent once its encoded records reach this many bytes.
    pub batch_max_bytes: usize,
    /// A batch is sent once it holds this many records.
    pub batch_max_records: usize,
    /// A non-empty batch older than this is sent by `flush_lingering`, or by `send` when it next
    /// checks the clock (when it starts a batch, and every 32 records). A
    /// caller that may pause between records uses [`Producer::linger_deadline`] to wake up.
    pub linger: Duration,
    /// Batches awaiting their acknowledgement at once; `send` waits for the oldest beyond this.
    pub max_in_flight: usize,
    /// Largest batch accepted (the broker enforces its own limit too, Kafka's
    /// `max.message.bytes`): a record that alone makes a batch larger is refused here.
    pub max_record_bytes: u32,
    /// How each batch's records are compressed (the broker stores them as sent).
    pub compression: Compression,
    /// When the connection is lost: reconnect this way and send every unacknowledged batch
    /// again, in order (at-least-once). `None`: the loss is an error.
    pub reconnect: Option<Reconnect>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_max_bytes: 256 * 1024,
            batch_max_records: 10_000,
            linger: Duration::from_millis(5),
            max_in_flight: 8,
            max_record_bytes: record::DEFAULT_MAX_RECORD_BYTES,
            compression: Compression::None,
            reconnect: None,
        }
    }
}

/// `send` reads the clock for its linger check once per this many records (and whenever it starts
/// a batch), not per record: a clock read per record was a fifth of `produce --file`'s CPU.
pub(crate) const LINGER_CHECK_EVERY: u32 = 32;

/// Longest a producer waits, after losing its connection, for the responses still arriving on it.
const ANSWERED_WAIT: Duration = Duration::from_secs(10);

/// Largest buffer a batch reserves up front (its records are encoded into it without regrowing).
const BATCH_RESERVE_MAX: usize = 4 * 1024 * 1024;

/// The broker's acknowledgement of one batch: its records got offsets `first_offset..next_offset`
/// in `partition`, and are durable per the broker's fsync policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAck {
    pub partition: u32,
    pub first_offset: u64,
    pub next_offset: u64,
}

impl BatchAck {
    /// Number of records the batch held.
    pub fn len(&self) -> u64 {
        self.next_offset - self.first_offset
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a batch goes: a known partition, the broker's choice by key (when the partition count
/// is unknown because the topic does not exist yet), or the broker's round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Partition(u32),
    Key(Vec<u8>),
    Any,
}

/// A batch sent and not yet acknowledged: its request, kept to send it again after a reconnect,
/// and its response on the way (`None` while it is to be sent again).
struct InFlight {
    req: Request,
    pending: Option<Pending>,
}

struct Batch {
    target: Target,
    builder: BatchBuilder,
    started: Instant,
}

/// Batches records for one topic. Call [`Producer::flush`] before dropping it: unsent records are
/// otherwise lost (a batch is only durable once acknowledged).
pub struct Producer {
    conn: Connection,
    topic: String,
    config: ProducerConfig,
    /// Partition count, when the topic existed at creation.
    partitions: Option<u32>,
    batches: Vec<Batch>,
    in_flight: VecDeque<InFlight>,
    acks: Vec<BatchAck>,
    /// Records queued since `send_record` last checked for lingering batches.
    since_linger_check: u32,
    /// `send_due` must check for lingering batches (a batch was started, or enough records
    /// were queued since the last check).
    linger_check_due: bool,
    /// When the batches in flight stopped being acknowledged because connections were lost:
    /// `give_up_after` counts from here, across reconnects, so a batch whose every sending
    /// kills the connection fails in the end instead of being sent again forever.
    outage_since: Option<Instant>,
    /// Tries of the oldest batch refused with a retriable code, for the backoff.
    retries: u32,
}

impl Producer {
    /// A producer for `topic`. Learns the partition count so keyed records are partitioned here
    /// exactly as the broker would; a missing topic is left for the broker to refuse or
    /// auto-create on the first append.
    pub async fn new(
        conn: Connection,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let partitions = match Admin::new(conn.clone()).describe_topic(topic).await {
            Ok(d) => Some(d.partitions.len() as u32),
            Err(e) if e.code() == Some(ErrorCode::UnknownTopic) => None,
            Err(e) => return Err(e),
        };
        Ok(Producer {
            conn,
            topic: topic.to_string(),
            config,
            partitions,
            batches: Vec::new(),
            in_flight: VecDeque::new(),
            acks: Vec::new(),
            since_linger_check: 0,
            linger_check_due: false,
            outage_since: None,
            retries: 0,
        })
    }

    /// The topic's partition count, when known.
    pub fn partitions(&self) -> Option<u32> {
        self.partitions
    }

    /// Queues a record; with a key it goes to Kafka's murmur2 partition for that key, without one
    /// the broker spreads batches round-robin.
    pub async fn send(&mut self, key: Option<&[u8]>, value: &[u8]) -> Result<(), ClientError> {
        let rec =
            NewRecord { timestamp_ms: record::now_ms(), key, value: Some(value), headers: &[] };
        self.send_record(None, &rec).await
    }

    /// Queues a record for an explicit partition (`Some`) or the default choice (`None`).
    pub async fn send_record(
        &mut self,
        partition: Option<u32>,
        rec: &NewRecord<'_>,
    ) -> Result<(), ClientError> {
        if self.buffer_record(partition, rec)? {
            self.send_due().await?;
        }
        Ok(())
    }

    /// The synchronous half of [`Producer::send_record`]: encodes the record into its batch.
    /// True when [`Producer::send_due`] must run before the next record (a batch is full, or
    /// lingering batches are due for a check). A caller with many records at hand (`produce
    /// --file`) loops on this and awaits only then: an await per record cost more than the record.
    pub(crate) fn buffer_record(
        &mut self,
        partition: Option<u32>,
        rec: &NewRecord<'_>,
    ) -> Result<bool, ClientError> {
        let target = match (partition, rec.key, self.partitions) {
            (Some(p), _, Some(n)) if p >= n => {
                return Err(ClientError::InvalidArgument(format!(
                    "topic {} has {n} partitions; partition {p} does not exist",
                    self.topic
                )));
            }
            (Some(p), _, _) => Target::Partition(p),
            (None, Some(key), Some(n)) => Target::Partition(partition_for_key(key, n)),
            (None, Some(key), None) => Target::Key(key.to_vec()),
            (None, None, _) => Target::Any,
        };
        let reserve = self.config.batch_max_bytes.min(BATCH_RESERVE_MAX);
        let idx = match self.batches.iter().position(|b| b.target == target) {
            Some(i) => i,
            None => {
                let buf = self.conn.batch_buffer(reserve);
                self.batches.push(Batch {
                    target,
                    builder: BatchBuilder::in_buffer(self.config.compression, buf),
                    started: Instant::now(),
                });
                self.batches.len() - 1
            }
        };
        let batch = &mut self.batches[idx];
        if batch.builder.is_empty() {
            // Starting a batch reads the clock anyway: check the other batches with it too.
            batch.started = Instant::now();
            self.linger_check_due = true;
        }
        let before = batch.builder.records_bytes();
        check_size(&self.topic, rec, self.config.max_record_bytes)?;
        record::push_record(&mut batch.builder, rec)
            .map_err(|source| ClientError::Encode { topic: self.topic.clone(), source })?;
        debug_assert!(batch.builder.records_bytes() > before);
        let full = self.is_full(&self.batches[idx]);
        self.since_linger_check += 1;
        if self.since_linger_check >= LINGER_CHECK_EVERY {
            self.linger_check_due = true;
        }
        Ok(full || self.linger_check_due)
    }

    /// The asynchronous half of [`Producer::send_record`]: sends full batches (waiting while
    /// `max_in_flight` are unacknowledged), then lingering ones when a check is due.
    pub(crate) async fn send_due(&mut self) -> Result<(), ClientError> {
        while let Some(i) = self.batches.iter().position(|b| self.is_full(b)) {
            let batch = self.batches.swap_remove(i);
            self.dispatch(batch).await?;
        }
        if std::mem::take(&mut self.linger_check_due) {
            self.flush_lingering().await?;
        }
        Ok(())
    }

    fn is_full(&self, batch: &Batch) -> bool {
        batch.builder.records_bytes() >= self.config.batch_max_bytes
            || batch.builder.len() >= self.config.batch_max_records
    }

    /// When the oldest unsent batch should go out because of `linger` (for callers that wait
    /// for input and want to wake up in time to call [`Producer::flush_lingering`]).
    pub fn linger_deadline(&self) -> Option<Instant> {
        self.batches
            .iter()
            .filter(|b| !b.builder.is_empty())
            .map(|b| b.started + self.config.linger)
            .min()
    }

    /// Sends every batch that has lingered long enough.
    pub async fn flush_lingering(&mut self) -> Result<(), ClientError> {
        self.since_linger_check = 0;
        self.linger_check_due = false;
        let now = Instant::now();
        while let Some(i) = self.batches.iter().position(|b| {
            !b.builder.is_empty() && now.duration_since(b.started) >= self.config.linger
        }) {
            let batch = self.batches.swap_remove(i);
            self.dispatch(batch).await?;
        }
        Ok(())
    }

    /// Sends every unsent batch and waits for all acknowledgements. Returns the acknowledgements
    /// collected since the last call to `flush` or [`Producer::take_acks`], in completion order.
    pub async fn flush(&mut self) -> Result<Vec<BatchAck>, ClientError> {
        for batch in std::mem::take(&mut self.batches) {
            if !batch.builder.is_empty() {
                self.dispatch(batch).await?;
            }
        }
        while !self.in_flight.is_empty() {
            self.settle_front().await?;
        }
        Ok(self.take_acks())
    }

    /// Acknowledgements received so far and not yet taken.
    pub fn take_acks(&mut self) -> Vec<BatchAck> {
        std::mem::take(&mut self.acks)
    }

    /// Appends `records` as one batch right away and waits for its acknowledgement (no
    /// buffering; other batches of this producer may still be in flight). Never sent twice: a
    /// lost connection is an error even with `reconnect` (the caller knows whether to retry).
    pub async fn send_batch(
        &self,
        partition: Option<u32>,
        records: &[NewRecord<'_>],
    ) -> Result<BatchAck, ClientError> {
        let encode = |source| ClientError::Encode { topic: self.topic.clone(), source };
        let mut builder = BatchBuilder::new(self.config.compression);
        for rec in records {
            check_size(&self.topic, rec, self.config.max_record_bytes)?;
            record::push_record(&mut builder, rec).map_err(encode)?;
        }
        let buf = builder.finish().map_err(encode)?;
        let target = match partition {
            Some(p) => Target::Partition(p),
            None => Target::Any,
        };
        let pending =
            self.conn.start(&append_request(&self.topic, &target, Bytes::from(buf))).await?;
        to_ack(pending.wait().await)
    }

    async fn dispatch(&mut self, batch: Batch) -> Result<(), ClientError> {
        while self.in_flight.len() >= self.config.max_in_flight.max(1) {
            self.settle_front().await?;
        }
        let buf = batch
            .builder
            .finish()
            .map_err(|source| ClientError::Encode { topic: self.topic.clone(), source })?;
        let req = append_request(&self.topic, &batch.target, Bytes::from(buf));
        // Queued on the connection now, so batches reach the broker in the order they were sent.
        let started = self.conn.start(&req).await;
        self.in_flight.push_back(InFlight { req, pending: None });
        match started {
            Ok(pending) => {
                if let Some(last) = self.in_flight.back_mut() {
                    last.pending = Some(pending);
                }
            }
            Err(e) => self.recover(e).await?,
        }
        // Collect acknowledgements that already arrived so errors surface early.
        while let Some(front) = self.in_flight.front_mut() {
            let Some(result) = front.pending.as_mut().and_then(Pending::try_take) else { break };
            front.pending = None;
            self.complete_front(result).await?;
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight to be acknowledged (sending it again first when a
    /// reconnect left it unsent).
    async fn settle_front(&mut self) -> Result<(), ClientError> {
        let Some(front) = self.in_flight.front_mut() else { return Ok(()) };
        let result = match front.pending.take() {
            Some(pending) => pending.wait().await,
            None => {
                return match self.resend().await {
                    Ok(()) => Ok(()),
                    Err(e) => self.recover(e).await,
                };
            }
        };
        self.complete_front(result).await
    }

    /// Handles the response to the oldest batch in flight: an acknowledgement, or a lost
    /// connection to recover from (the batch stays, to be sent again), or an error.
    async fn complete_front(
        &mut self,
        result: Result<Response, ClientError>,
    ) -> Result<(), ClientError> {
        match result {
            Err(e) if e.is_disconnect() && self.config.reconnect.is_some() => self.recover(e).await,
            Err(e) if e.code().is_some_and(ErrorCode::is_retriable) => self.retry_front(e).await,
            result => self.acknowledge_front(result),
        }
    }

    /// The oldest batch was refused with a retriable code: waits, learns the leaders again and
    /// sends it again (to its partition's leader), unless the retry policy's time is up since
    /// batches stopped being acknowledged. The batches behind it are left in flight: those
    /// refused too come back here in their turn.
    async fn retry_front(&mut self, err: ClientError) -> Result<(), ClientError> {
        let policy = self.config.reconnect.clone().unwrap_or_default();
        let since = *self.outage_since.get_or_insert_with(Instant::now);
        if policy.give_up_after.is_some_and(|limit| since.elapsed() >= limit) {
            return Err(err);
        }
        let wait = policy.backoff().nth(self.retries as usize).unwrap_or(policy.max_backoff);
        self.retries = self.retries.saturating_add(1);
        tracing::debug!(topic = %self.topic, error = %err, ?wait, "batch refused; retrying");
        tokio::time::sleep(wait).await;
        if let Err(e) = self.conn.refresh_routes().await {
            if !(e.is_disconnect() && self.config.reconnect.is_some()) {
                return Err(e);
            }
            // The broker asked is gone too: the batch stays unsent for `recover` to handle.
            return self.recover(e).await;
        }
        let started = match self.in_flight.front() {
            Some(front) => self.conn.start(&front.req).await,
            None => return Ok(()),
        };
        match started {
            Ok(pending) => {
                if let Some(front) = self.in_flight.front_mut() {
                    front.pending = Some(pending);
                }
                Ok(())
            }
            Err(e) if e.is_disconnect() && self.config.reconnect.is_some() => self.recover(e).await,
            Err(e) => Err(e),
        }
    }

    /// Takes the oldest batch out of flight with its response: its acknowledgement is kept (and
    /// its buffer reused), or the broker's refusal returned.
    fn acknowledge_front(
        &mut self,
        result: Result<Response, ClientError>,
    ) -> Result<(), ClientError> {
        let done = self.in_flight.pop_front();
        self.acks.push(to_ack(result)?);
        self.outage_since = None;
        self.retries = 0;
        if let Some(InFlight { req: Request::Append { records, .. }, .. }) = done {
            self.conn.recycle(records);
        }
        Ok(())
    }

    /// After `err`: when the connection was lost and `reconnect` is set, reconnects and sends
    /// every unacknowledged batch again, in order; otherwise returns `err`.
    async fn recover(&mut self, mut err: ClientError) -> Result<(), ClientError> {
        loop {
            // A clone (an Arc and a few numbers): `self` is needed mutably meanwhile.
            let Some(policy) = self.config.reconnect.clone().filter(|_| err.is_disconnect()) else {
                return Err(err);
            };
            self.take_answered().await?;
            let since = *self.outage_since.get_or_insert_with(Instant::now);
            if policy.give_up_after.is_some_and(|limit| since.elapsed() >= limit) {
                return Err(ClientError::Unavailable {
                    addr: self.conn.addr().to_string(),
                    waited: since.elapsed(),
                    reason: err.reason(),
                });
            }
            // Responses come in order: none of the rest will be answered on the lost connection.
            for f in &mut self.in_flight {
                f.pending = None;
            }
            self.conn.reconnect(&policy).await?;
            if !self.in_flight.is_empty() {
                tracing::warn!(
                    topic = %self.topic,
                    batches = self.in_flight.len(),
                    "sending unacknowledged batches again after reconnecting (they may be stored twice)"
                );
            }
            match self.resend().await {
                Ok(()) => return Ok(()),
                Err(e) => err = e,
            }
        }
    }

    /// After the connection was lost: the responses that did arrive on it, oldest first, up to
    /// the first batch left unanswered. An acknowledged batch is never sent again. (The lost
    /// connection's reader answers or fails every request it took, so the wait is short; it is
    /// bounded anyway.)
    async fn take_answered(&mut self) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + ANSWERED_WAIT;
        while let Some(front) = self.in_flight.front_mut() {
            let Some(pending) = front.pending.take() else { break };
            let Ok(result) = tokio::time::timeout_at(deadline, pending.wait()).await else { break };
            if matches!(&result, Err(e) if e.is_disconnect()) {
                break;
            }
            self.acknowledge_front(result)?;
        }
        Ok(())
    }

    /// Sends every batch in flight that has no response on the way, in order.
    async fn resend(&mut self) -> Result<(), ClientError> {
        for f in self.in_flight.iter_mut().filter(|f| f.pending.is_none()) {
            f.pending = Some(self.conn.start(&f.req).await?);
        }
        Ok(())
    }
}

/// Refuses a record that alone would make a batch larger than `max` bytes: the broker would refuse
/// its whole batch.
fn check_size(topic: &str, rec: &NewRecord<'_>, max: u32) -> Result<(), ClientError> {
    let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
    let headers: usize =
        rec.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 10).sum();
    // The batch header, the record's fixed fields and varints: at most about 40 bytes.
    let size = crate::batch::HEADER_LEN + 40 + len(rec.key) + len(rec.value) + headers;
    if size > max as usize {
        return Err(ClientError::Encode {
            topic: topic.to_owned(),
            source: crate::batch::BatchError::Build(format!(
                "a record of about {size} bytes (as a batch) exceeds the maximum of {max} bytes"
            )),
        });
    }
    Ok(())
}

fn append_request(topic: &str, target: &Target, records: Bytes) -> Request {
    let (partition, key_hint) = match target {
        Target::Partition(p) => (Some(*p), None),
        Target::Key(k) => (None, Some(Bytes::copy_from_slice(k))),
        Target::Any => (None, None),
    };
    Request::Append { topic: topic.to_string(), partition, key_hint, records }
}

fn to_ack(result: Result<Response, ClientError>) -> Result<BatchAck, ClientError> {
    match result? {
        Response::Appended { partition, first_offset, next_offset } => {
            Ok(BatchAck { partition, first_offset, next_offset })
        }
        other => Err(unexpected("Append", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::stand_in;
    use tokio::net::TcpListener;

    /// A stand-in broker: the topic is unknown to Describe, and every Append is acknowledged.
    async fn fake_broker() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut next = 0;
            loop {
                let Some((id, req)) = stand_in::read_request(&mut sock).await else { return };
                let resp = match req {
                    Request::Describe { .. } => Response::Error {
                        code: ErrorCode::UnknownTopic,
                        message: "no such topic".into(),
                    },
                    Request::Append { .. } => {
                        next += 1;
                        Response::Appended {
                            partition: 0,
                            first_offset: next - 1,
                            next_offset: next,
                        }
                    }
                    other => panic!("unexpected request {other:?}"),
                };
                stand_in::respond(&mut sock, id, &resp).await;
            }
        });
        addr
    }

    /// The producer keeps each batch until it is acknowledged (to send it again after a
    /// reconnect), and then hands its buffer back: the next batches reuse it, not fresh memory.
    #[tokio::test]
    async fn an_acknowledged_batch_buffer_is_reused() {
        let conn = Connection::connect(&fake_broker().await).await.unwrap();
        let config = ProducerConfig { batch_max_records: 1, ..ProducerConfig::default() };
        let mut producer = Producer::new(conn.clone(), "t", config).await.unwrap();
        producer.send(None, &[7; 1000]).await.unwrap();
        let sent_at = producer.in_flight.front().map(|f| match &f.req {
            Request::Append { records, .. } => records.as_ptr(),
            _ => std::ptr::null(),
        });
        assert_eq!(producer.flush().await.unwrap().len(), 1);
        assert!(producer.in_flight.is_empty());
        let again = conn.batch_buffer(16);
        assert_eq!(Some(again.as_ptr()), sent_at, "the acknowledged batch's buffer comes back");
    }
}
