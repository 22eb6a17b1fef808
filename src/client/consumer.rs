//! The consumer: reads one topic's partitions from a chosen start position, long-polls for new
//! records, checks the CRC-32C of every fetched batch (the bytes the producer wrote, stored as
//! they came), decompresses what is compressed, and commits its position for a consumer group. Never skips a record it
//! could not verify: a corrupt record is an error. With `reconnect`, a lost connection is reopened
//! and reading goes on right after the last record handed out. In a cluster, a fetch refused
//! with a retriable code (the partition's leader moved) is made again at the partition's
//! leader once the leaders are learnt again, waiting between tries as the reconnect policy (or
//! [`Reconnect::default`]) says.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::admin::unexpected;
use super::connection::Pending;
use super::{Admin, ClientError, Connection, Reconnect};
use crate::batch::{self, BatchView, Compression, RecordView};
use crate::protocol::{ErrorCode, FETCH_CONTINUE, Request, Response};
use crate::record::{self, Header};

/// Most fetches of one partition in flight at once (when it is behind).
const FETCH_DEPTH: usize = 4;
/// Most record bytes one fetch round may ask for across partitions (bounds client memory).
const IN_FLIGHT_BYTES: usize = 16 * 1024 * 1024;

/// Where a [`Consumer`] starts in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start offset (the oldest record still stored).
    Beginning,
    /// The log end as it stands when the consumer is created: only records produced later.
    End,
    /// This offset in every partition read.
    Offset(u64),
    /// The group's committed offset, or the log start when the group has none (or when its
    /// offset has been trimmed away since). A Kafka client's sentinel commit starts where a
    /// Kafka consumer would: -2 at the log start, -1 at the log end.
    Committed,
}

/// Fetch sizes, waits and what to read.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Partitions to read; `None` reads them all.
    pub partitions: Option<Vec<u32>>,
    /// Consumer group whose offsets `StartFrom::Committed` reads and `commit` writes.
    pub group: Option<String>,
    /// Stop (`next()` returns `None`) at the log end as it stood when the consumer was created.
    /// When false, `next()` long-polls for new records forever.
    pub stop_at_end: bool,
    /// Most record bytes asked for per partition per fetch (at least one record always comes).
    pub fetch_max_bytes: u32,
    /// Longest a fetch waits for new records when a partition is caught up.
    pub max_wait: Duration,
    /// When the connection is lost: reconnect this way and go on reading right after the last
    /// record handed out. `None`: the loss is an error.
    pub reconnect: Option<Reconnect>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            partitions: None,
            group: None,
            stop_at_end: true,
            fetch_max_bytes: 1024 * 1024,
            max_wait: Duration::from_millis(500),
            reconnect: None,
        }
    }
}

/// One record as a consumer hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    /// `None` is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

#[derive(Debug)]
struct PartitionState {
    partition: u32,
    /// The next offset to hand out (advanced as records are handed out, not as they are fetched).
    position: u64,
    /// Offset after the last record fetched into the buffer.
    fetched_to: u64,
    /// The log end at creation (used when `stop_at_end`), raised once to the high watermark the
    /// partition's leader first answers with (`end_from_leader`).
    end: u64,
    /// Whether `end` has been checked against the leader's high watermark.
    end_from_leader: bool,
    /// The position last committed for the group.
    committed: Option<u64>,
    /// The last fetch came back (nearly) full: more is likely waiting, so several fetches of
    /// this partition are kept in flight.
    behind: bool,
}

impl PartitionState {
    /// Nothing is left to fetch: a consumer that stops at the end has reached the end it saw,
    /// the leader's included (so every partition is fetched at least once).
    fn finished(&self, stop_at_end: bool) -> bool {
        stop_at_end && self.at_end()
    }

    fn at_end(&self) -> bool {
        self.end_from_leader && self.fetched_to >= self.end
    }

    /// Takes the first high watermark the partition's leader answers with as the end, when it is
    /// further: in a cluster the broker described at creation may be a follower that has not yet
    /// copied records the leader already acknowledged, and those must be read too. Only once, so
    /// the end stays what was there when the consumer started.
    fn learn_end(&mut self, high_watermark: u64) {
        if !self.end_from_leader {
            self.end = self.end.max(high_watermark);
            self.end_from_leader = true;
        }
    }
}

/// Why a fetch round stopped: the client failed, or the caller's callback returned an error.
enum RoundError<E> {
    Client(ClientError),
    Each(E),
}

impl<E> From<ClientError> for RoundError<E> {
    fn from(e: ClientError) -> Self {
        RoundError::Client(e)
    }
}

/// Reads records of one topic. Use [`Consumer::next`] record by record, or [`Consumer::poll`]
/// for whatever the next fetch round brings; [`Consumer::commit`] stores the position.
pub struct Consumer {
    conn: Connection,
    topic: String,
    config: ConsumerConfig,
    partitions: Vec<PartitionState>,
    buffered: VecDeque<ConsumedRecord>,
    /// A corrupt record was met: the intact records fetched before it are handed out first,
    /// then this error, every time (the consumer cannot read past it).
    corrupt: Option<ClientError>,
    /// Fetches sent and not yet handed out, in the order the broker answers them (the index of
    /// their partition state with each).
    in_flight: VecDeque<(usize, Pending)>,
    /// Since when fetches have been refused with retriable codes, and how many times: the
    /// backoff and when to give up.
    retrying: Option<(Instant, u32)>,
}

impl Consumer {
    /// Opens a consumer: describes the topic (an unknown topic is an error) and resolves the
    /// start position of every partition read.
    pub async fn new(
        conn: Connection,
        topic: &str,
        start: StartFrom,
        config: ConsumerConfig,
    ) -> Result<Consumer, ClientError> {
        if start == StartFrom::Committed && config.group.is_none() {
            return Err(ClientError::InvalidArgument(
                "starting from a committed offset needs a consumer group".to_string(),
            ));
        }
        let admin = Admin::new(conn.clone());
        let mut description = admin.describe_topic(topic).await?;
        // Damaged data the broker does not serve: an error, not an empty read.
        let offline = |what: String, reason: &str| ClientError::Broker {
            code: ErrorCode::Storage,
            message: format!("{what} is offline: {reason}"),
        };
        if let Some(reason) = &description.offline {
            return Err(offline(format!("topic {topic:?}"), reason));
        }
        let chosen: Vec<u32> = match &config.partitions {
            Some(list) => list.clone(),
            None => description.partitions.iter().map(|p| p.partition).collect(),
        };
        // The group's positions (the broker resolves Kafka's -2/-1 sentinels to the log start and
        // end as it reads them). A -1 read after the describe may be past the end it saw when
        // records arrived in between; ends only grow, so describing again sees it.
        let mut fetched: Vec<Option<u64>> = vec![None; chosen.len()];
        if start == StartFrom::Committed {
            let group = config.group.clone().unwrap_or_default();
            for (slot, &partition) in fetched.iter_mut().zip(&chosen) {
                let req = Request::FetchOffset {
                    group: group.clone(),
                    topic: topic.to_string(),
                    partition,
                };
                match conn.request(&req).await? {
                    Response::Offset { offset } => *slot = offset,
                    other => return Err(unexpected("FetchOffset", &other)),
                }
            }
            let past_end = fetched.iter().zip(&chosen).any(|(o, p)| {
                let end = description.partitions.iter().find(|d| d.partition == *p);
                matches!((o, end), (Some(o), Some(d)) if *o > d.next_offset)
            });
            if past_end {
                description = admin.describe_topic(topic).await?;
            }
        }
        let mut partitions = Vec::with_capacity(chosen.len());
        for (partition, fetched) in chosen.into_iter().zip(fetched) {
            let Some(d) = description.partitions.iter().find(|d| d.partition == partition) else {
                return Err(ClientError::InvalidArgument(format!(
                    "topic {topic} has {} partitions; partition {partition} does not exist",
                    description.partitions.len()
                )));
            };
            if let Some(reason) = &d.offline {
                return Err(offline(format!("topic {topic:?} partition {partition}"), reason));
            }
            let mut committed = None;
            let position = match &start {
                StartFrom::Beginning => d.log_start_offset,
                StartFrom::End => d.next_offset,
                StartFrom::Offset(n) => *n,
                StartFrom::Committed => {
                    committed = fetched;
                    match fetched {
                        // Retention or a trim removed records the group never read; they are
                        // gone, so the group goes on from the oldest left (Kafka's
                        // auto.offset.reset=earliest).
                        Some(o) if o < d.log_start_offset => {
                            tracing::warn!(
                                topic,
                                partition,
                                committed = o,
                                log_start_offset = d.log_start_offset,
                                "committed offset was trimmed away; resuming at the log start"
                            );
                            d.log_start_offset
                        }
                        Some(o) => o,
                        None => d.log_start_offset,
                    }
                }
            };
            if position < d.log_start_offset || position > d.next_offset {
                return Err(ClientError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset: position,
                    log_start_offset: d.log_start_offset,
                    next_offset: d.next_offset,
                });
            }
            partitions.push(PartitionState {
                partition,
                position,
                fetched_to: position,
                end: d.next_offset,
                end_from_leader: false,
                committed,
                behind: false,
            });
        }
        Ok(Consumer {
            conn,
            topic: topic.to_string(),
            config,
            partitions,
            buffered: VecDeque::new(),
            corrupt: None,
            in_flight: VecDeque::new(),
            retrying: None,
        })
    }

    /// The next offset this consumer hands out in `partition`.
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.partitions.iter().find(|p| p.partition == partition).map(|p| p.position)
    }

    /// Whether records fetched but not yet handed out are waiting.
    pub fn has_buffered(&self) -> bool {
        !self.buffered.is_empty()
    }

    /// The next record, fetching (and, when caught up and not `stop_at_end`, long-polling) as
    /// needed. `None` only with `stop_at_end`, once every partition reached its end.
    pub async fn next(&mut self) -> Result<Option<ConsumedRecord>, ClientError> {
        loop {
            if let Some(rec) = self.buffered.pop_front() {
                if let Some(p) = self.partitions.iter_mut().find(|p| p.partition == rec.partition) {
                    p.position = rec.offset + 1;
                }
                return Ok(Some(rec));
            }
            self.check_corrupt()?;
            if self.config.stop_at_end && self.at_end() {
                return Ok(None);
            }
            self.fetch_round().await?;
        }
    }

    fn check_corrupt(&self) -> Result<(), ClientError> {
        match &self.corrupt {
            Some(ClientError::Corrupt { topic, partition, offset, source }) => {
                Err(ClientError::Corrupt {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    source: source.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Every record the next fetch round brings (possibly none, after a long-poll timed out),
    /// handed out at once. With `stop_at_end`, an empty result at the end means done.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if self.buffered.is_empty() {
            self.check_corrupt()?;
            if !(self.config.stop_at_end && self.at_end()) {
                self.fetch_round().await?;
            }
        }
        let out: Vec<ConsumedRecord> = self.buffered.drain(..).collect();
        for rec in &out {
            if let Some(p) = self.partitions.iter_mut().find(|p| p.partition == rec.partition) {
                p.position = rec.offset + 1;
            }
        }
        Ok(out)
    }

    /// Stores the position of every partition whose position moved since the last commit as the
    /// group's committed offset (the offset of the next record to read).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        loop {
            match self.commit_once().await {
                Err(e) => self.recover(e).await?,
                ok => return ok,
            }
        }
    }

    async fn commit_once(&mut self) -> Result<(), ClientError> {
        let Some(group) = self.config.group.clone() else {
            return Err(ClientError::InvalidArgument("commit needs a consumer group".to_string()));
        };
        let mut pending = Vec::new();
        for p in &self.partitions {
            if p.committed != Some(p.position) {
                let req = Request::CommitOffset {
                    group: group.clone(),
                    topic: self.topic.clone(),
                    partition: p.partition,
                    offset: p.position,
                };
                pending.push((p.partition, p.position, self.conn.start(&req).await?));
            }
        }
        for (partition, position, req) in pending {
            match req.wait().await? {
                Response::Ok => {
                    if let Some(p) = self.partitions.iter_mut().find(|p| p.partition == partition) {
                        p.committed = Some(position);
                    }
                }
                other => return Err(unexpected("CommitOffset", &other)),
            }
        }
        Ok(())
    }

    /// Hands every record the next fetch round brings to `each`, as a [`RecordView`] borrowed
    /// from the fetched bytes: no allocation or copy per record (the path `minikafka consume`
    /// uses). Every record is CRC-checked before `each` sees it, exactly as for [`Consumer::next`].
    /// `each` gets the partition and the record; returning `ControlFlow::Break` stops after that
    /// record (the position stays right after it, so the rest is read again next time).
    ///
    /// Returns `Ok(None)` with `stop_at_end` once every partition reached its end, else how many
    /// records `each` saw (0 after a long-poll that timed out). A corrupt record is reported after
    /// the intact records fetched before it were handed out, as with `next`. Records fetched by
    /// `next`/`poll` and not yet handed out come first.
    pub async fn poll_views<E, F>(&mut self, mut each: F) -> Result<Option<usize>, E>
    where
        E: From<ClientError>,
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        if !self.buffered.is_empty() {
            return self.hand_out_buffered(&mut each).map(Some);
        }
        loop {
            self.check_corrupt()?;
            if self.config.stop_at_end && self.at_end() {
                return Ok(None);
            }
            let mut seen = 0;
            match self.poll_views_round(&mut each, &mut seen).await {
                Ok(()) => {
                    self.retrying = None;
                    return Ok(Some(seen));
                }
                Err(RoundError::Each(e)) => return Err(e),
                // What was handed out before the loss stays handed out; the rest is fetched
                // again from right after it.
                Err(RoundError::Client(e)) => {
                    self.recover(e).await?;
                    if seen > 0 {
                        return Ok(Some(seen));
                    }
                }
            }
        }
    }

    /// One `poll_views` round: what is waiting, else a long-poll (unless `stop_at_end`).
    async fn poll_views_round<E, F>(
        &mut self,
        each: &mut F,
        seen: &mut usize,
    ) -> Result<(), RoundError<E>>
    where
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        self.fetch_views(0, true, each, seen).await?;
        if *seen == 0 && self.corrupt.is_none() && !self.config.stop_at_end {
            // As in `fetch_round`: long-poll only when nothing at all was waiting.
            let n = self.partitions.len().max(1) as u32;
            let wait = (self.config.max_wait / n).max(Duration::from_millis(20));
            self.fetch_views(wait.as_millis() as u32, true, each, seen).await?;
        }
        if *seen == 0 {
            self.check_corrupt()?;
        }
        Ok(())
    }

    /// After `err`: when the connection was lost and `reconnect` is set, reconnects (the next
    /// round fetches from right after what was handed out); otherwise returns `err`.
    async fn recover(&mut self, err: ClientError) -> Result<(), ClientError> {
        if err.code().is_some_and(ErrorCode::is_retriable) {
            return self.retry(err).await;
        }
        let Some(policy) = self.config.reconnect.as_ref().filter(|_| err.is_disconnect()) else {
            return Err(err);
        };
        // Fetches sent on the lost connection will never be answered.
        self.in_flight.clear();
        self.conn.reconnect(policy).await
    }

    /// After a retriable refusal (the partition's leader moved): waits, learns the leaders
    /// again, and lets the next round fetch from the new leader, right after what was handed
    /// out; gives up with `err` once the policy's time has passed since the first refusal.
    async fn retry(&mut self, err: ClientError) -> Result<(), ClientError> {
        self.in_flight.clear();
        let policy = self.config.reconnect.clone().unwrap_or_default();
        let (since, tries) = *self.retrying.get_or_insert_with(|| (Instant::now(), 0));
        if policy.give_up_after.is_some_and(|limit| since.elapsed() >= limit) {
            return Err(err);
        }
        self.retrying = Some((since, tries.saturating_add(1)));
        let wait = policy.backoff().nth(tries as usize).unwrap_or(policy.max_backoff);
        tracing::debug!(topic = %self.topic, error = %err, ?wait, "fetch refused; retrying");
        tokio::time::sleep(wait).await;
        match self.conn.refresh_routes().await {
            Err(e) if e.is_disconnect() && self.config.reconnect.is_some() => {
                self.conn.reconnect(&policy).await
            }
            other => other,
        }
    }

    /// Records buffered by `next`/`poll`, handed to a `poll_views` callback. Rare (only when a
    /// caller mixes the two APIs), so each is re-encoded into a batch of its own to view it.
    fn hand_out_buffered<E, F>(&mut self, each: &mut F) -> Result<usize, E>
    where
        E: From<ClientError>,
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        let mut seen = 0;
        while let Some(rec) = self.buffered.pop_front() {
            let new = record::NewRecord {
                timestamp_ms: rec.timestamp_ms,
                key: rec.key.as_deref(),
                value: rec.value.as_deref(),
                headers: &rec.headers,
            };
            let corrupt = |source| ClientError::Corrupt {
                topic: self.topic.clone(),
                partition: rec.partition,
                offset: rec.offset,
                source,
            };
            let mut buf = record::build_batch(&[new], Compression::None).map_err(corrupt)?;
            batch::set_base_offset(&mut buf, rec.offset as i64).map_err(corrupt)?;
            let batch = BatchView::new(&buf).map_err(corrupt)?;
            let view = match batch.records().map_err(corrupt)?.next() {
                Some(v) => v.map_err(corrupt)?,
                None => continue,
            };
            if let Some(p) = self.partitions.iter_mut().find(|p| p.partition == rec.partition) {
                p.position = rec.offset + 1;
            }
            seen += 1;
            if each(rec.partition, &view)?.is_break() {
                break;
            }
        }
        Ok(seen)
    }

    /// One round of pipelined fetches: the fetches in flight (or, when none are, one per
    /// partition that still has something to read, see `start_fetches`). Every record is
    /// CRC-checked and passed to `each` in order, borrowed from the response. While a partition
    /// is behind, each response it gets starts one more fetch continuing after the last one
    /// (`FETCH_CONTINUE`), which stays in flight for the next round: the broker reads ahead
    /// while this round is handed out. `consumed`: the caller hands the records out now, so the
    /// position moves past them too (otherwise only the fetch position does, and `next` moves
    /// the position later). Stops early when `each` breaks; the fetches still in flight are
    /// then dropped and their records fetched again. A corrupt record is kept in
    /// `self.corrupt` and ends the round. `seen` counts the records handed to `each`, also when
    /// the round fails part way.
    async fn fetch_views<E, F>(
        &mut self,
        max_wait_ms: u32,
        consumed: bool,
        each: &mut F,
        seen: &mut usize,
    ) -> Result<(), RoundError<E>>
    where
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        if self.in_flight.is_empty() {
            let started = self.start_fetches(max_wait_ms).await?;
            self.in_flight.extend(started);
        }
        let whole = self.hand_out_round(max_wait_ms, consumed, each, seen).await;
        if !matches!(whole, Ok(true)) {
            // Broken off, corrupt or failed: what is in flight continues from a place this
            // consumer is no longer at.
            self.in_flight.clear();
        }
        whole.map(|_| ())
    }

    /// Hands out the responses that were in flight when the round began, topping each
    /// partition's read-ahead up as its response arrives. `Ok(false)` when the round stopped
    /// early (`each` broke off, or a corrupt record was met).
    async fn hand_out_round<E, F>(
        &mut self,
        max_wait_ms: u32,
        consumed: bool,
        each: &mut F,
        seen: &mut usize,
    ) -> Result<bool, RoundError<E>>
    where
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        for _ in 0..self.in_flight.len() {
            let Some((i, req)) = self.in_flight.pop_front() else { break };
            let records = match req.wait().await? {
                Response::Fetched { records, high_watermark, .. } => {
                    self.partitions[i].learn_end(high_watermark);
                    records
                }
                other => return Err(unexpected("Fetch", &other).into()),
            };
            // Before handing these out, so the broker reads on meanwhile.
            self.partitions[i].behind = records.len() >= self.config.fetch_max_bytes as usize / 2;
            self.top_up(i, max_wait_ms).await?;
            if !self.hand_out(i, &records, max_wait_ms, consumed, each, seen)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// While partition `i` is behind, keeps `fetch_depth` fetches of it in flight, each one
    /// continuing after the one before.
    async fn top_up(&mut self, i: usize, max_wait_ms: u32) -> Result<(), ClientError> {
        let p = &self.partitions[i];
        if max_wait_ms != 0 || !p.behind || p.finished(self.config.stop_at_end) {
            return Ok(());
        }
        let depth = self.fetch_depth();
        let mut in_flight = self.in_flight.iter().filter(|(j, _)| *j == i).count();
        // The response just received still counts until it is handed out.
        while in_flight + 1 < depth {
            let req = self.fetch_request(i, FETCH_CONTINUE, 0);
            self.in_flight.push_back((i, self.conn.start(&req).await?));
            in_flight += 1;
        }
        Ok(())
    }

    /// Hands the fetched records of partition `i` to `each`. `Ok(false)` when the round must
    /// stop: `each` broke off, or a corrupt record was met.
    fn hand_out<E, F>(
        &mut self,
        i: usize,
        records: &[u8],
        max_wait_ms: u32,
        consumed: bool,
        each: &mut F,
        seen: &mut usize,
    ) -> Result<bool, RoundError<E>>
    where
        F: FnMut(u32, &RecordView<'_>) -> Result<ControlFlow<()>, E>,
    {
        let stop_at_end = self.config.stop_at_end;
        let state = &mut self.partitions[i];
        if stop_at_end && records.is_empty() && max_wait_ms == 0 {
            // Nothing below the end we recorded: the log was cut back (topic recreated).
            // Treat where we are as the end rather than asking again forever.
            state.end = state.fetched_to;
        }
        let mut scratch = Vec::new();
        for item in batch::batches(records) {
            let topic = &self.topic;
            let corrupt = |offset, source| ClientError::Corrupt {
                topic: topic.clone(),
                partition: state.partition,
                offset,
                source,
            };
            let checked = item.and_then(|view| view.verify_crc().map(|()| view));
            let view = match checked {
                Ok(view) => view,
                Err(source) => {
                    self.corrupt = Some(corrupt(state.fetched_to, source));
                    // Nothing after a corrupt batch can be trusted, in any partition.
                    return Ok(false);
                }
            };
            let after_batch = view.last_offset() as u64 + 1;
            if after_batch <= state.fetched_to {
                continue;
            }
            if view.is_control() {
                // A transaction marker holds no data, but its offset is passed like any other.
                state.fetched_to = after_batch;
                continue;
            }
            let records = match view.decoded_records(&mut scratch) {
                Ok(r) => r,
                Err(source) => {
                    self.corrupt = Some(corrupt(state.fetched_to, source));
                    return Ok(false);
                }
            };
            for item in records {
                let view = match item {
                    Ok(view) => view,
                    Err(source) => {
                        self.corrupt = Some(corrupt(state.fetched_to, source));
                        return Ok(false);
                    }
                };
                let offset = view.offset as u64;
                if offset < state.fetched_to {
                    continue;
                }
                if stop_at_end && offset >= state.end {
                    return Ok(true);
                }
                state.fetched_to = offset + 1;
                if consumed {
                    state.position = offset + 1;
                }
                *seen += 1;
                if each(state.partition, &view).map_err(RoundError::Each)?.is_break() {
                    return Ok(false);
                }
            }
            // Compaction removes records but keeps each batch's offset range (an emptied one
            // stays as a batch of no records): the batch's last offset, not its last record,
            // says where reading goes on, so a gap is passed and never fetched again.
            state.fetched_to = after_batch;
            if consumed {
                state.position = state.position.max(after_batch);
            }
        }
        Ok(true)
    }

    /// A fetch of partition `i` from `offset` (or `FETCH_CONTINUE`).
    fn fetch_request(&self, i: usize, offset: u64, max_wait_ms: u32) -> Request {
        Request::Fetch {
            topic: self.topic.clone(),
            partition: self.partitions[i].partition,
            offset,
            max_bytes: self.config.fetch_max_bytes,
            max_wait_ms,
        }
    }

    /// How many fetches of one partition that is behind may be in flight: `FETCH_DEPTH`, fewer
    /// when many partitions still have something to read, so that all of them together stay
    /// within `IN_FLIGHT_BYTES`.
    fn fetch_depth(&self) -> usize {
        let active =
            self.partitions.iter().filter(|p| !p.finished(self.config.stop_at_end)).count();
        let per_fetch = (self.config.fetch_max_bytes as usize).max(1);
        FETCH_DEPTH.min(IN_FLIGHT_BYTES / (per_fetch * active.max(1))).max(1)
    }

    /// Starts one fetch per partition that still has something to read, pipelined on the
    /// connection, from where each was last read (a round with nothing in flight).
    async fn start_fetches(&self, max_wait_ms: u32) -> Result<Vec<(usize, Pending)>, ClientError> {
        let mut pending = Vec::new();
        for (i, p) in self.partitions.iter().enumerate() {
            if p.finished(self.config.stop_at_end) {
                continue;
            }
            let req = self.fetch_request(i, p.fetched_to, max_wait_ms);
            pending.push((i, self.conn.start(&req).await?));
        }
        Ok(pending)
    }

    fn at_end(&self) -> bool {
        self.partitions.iter().all(PartitionState::at_end)
    }

    /// One fetch per partition that still has something to read, pipelined on the connection.
    /// Only when none of them returned anything does it long-poll, so one quiet partition never
    /// delays another's records by more than one wait.
    async fn fetch_round(&mut self) -> Result<(), ClientError> {
        match self.fetch_round_once().await {
            // `next` and `poll` go on from what was buffered before the loss.
            Err(e) => self.recover(e).await,
            ok => {
                self.retrying = None;
                ok
            }
        }
    }

    async fn fetch_round_once(&mut self) -> Result<(), ClientError> {
        let got = self.fetch_all(0).await?;
        if got == 0 && self.corrupt.is_none() && !self.config.stop_at_end {
            // Several long-polls queue behind each other on one connection, so share the wait.
            let n = self.partitions.len().max(1) as u32;
            let wait = (self.config.max_wait / n).max(Duration::from_millis(20));
            self.fetch_all(wait.as_millis() as u32).await?;
        }
        Ok(())
    }

    /// One round of fetches whose records are buffered for `next`.
    async fn fetch_all(&mut self, max_wait_ms: u32) -> Result<usize, ClientError> {
        let mut buffered = std::mem::take(&mut self.buffered);
        let mut got = 0;
        let round = self
            .fetch_views(
                max_wait_ms,
                false,
                &mut |partition, view: &RecordView<'_>| {
                    let r = record::Record::from_view(view);
                    buffered.push_back(ConsumedRecord {
                        partition,
                        offset: r.offset,
                        timestamp_ms: r.timestamp_ms,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                    Ok::<_, ClientError>(ControlFlow::Continue(()))
                },
                &mut got,
            )
            .await;
        self.buffered = buffered;
        match round {
            Ok(()) => Ok(got),
            Err(RoundError::Client(e) | RoundError::Each(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{PartitionDescription, TopicDescription};
    use crate::client::stand_in;
    use crate::record::NewRecord;
    use bytes::Bytes;
    use tokio::net::TcpListener;

    /// A stand-in broker for one topic `t` with one partition holding `records` (already
    /// encoded, offsets from 0): answers Describe and Fetch, nothing else.
    async fn fake_broker(records: Vec<u8>, count: u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            loop {
                let Some((id, req)) = stand_in::read_request(&mut sock).await else { return };
                let resp = match req {
                    Request::Describe { .. } => Response::Described {
                        topics: vec![TopicDescription {
                            name: "t".into(),
                            partitions: vec![PartitionDescription {
                                partition: 0,
                                log_start_offset: 0,
                                next_offset: count,
                                segments: 1,
                                size_bytes: records.len() as u64,
                                offline: None,
                            }],
                            offline: None,
                            topic_id: [0; 16],
                            configs: Vec::new(),
                        }],
                    },
                    Request::Fetch { .. } => Response::Fetched {
                        partition: 0,
                        log_start_offset: 0,
                        high_watermark: count,
                        records: Bytes::from(records.clone()),
                    },
                    other => panic!("unexpected request {other:?}"),
                };
                stand_in::respond(&mut sock, id, &resp).await;
            }
        });
        addr
    }

    /// One batch per value, offsets from 0.
    fn encoded(values: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut b = record::build_batch(&[NewRecord::value(v)], Compression::None).unwrap();
            batch::set_base_offset(&mut b, i as i64).unwrap();
            buf.extend_from_slice(&b);
        }
        buf
    }

    /// Recomputes the CRC-32C of a batch whose header was edited.
    fn reseal(b: &mut [u8]) {
        let crc = batch::crc_of(b);
        b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// One batch of `values` at `base` whose offsets reach `last`: what compaction leaves of a
    /// batch whose later records it removed (the batch keeps its offset range).
    fn compacted(base: i64, values: &[&[u8]], last: i64) -> Vec<u8> {
        let records: Vec<NewRecord> = values.iter().map(|v| NewRecord::value(v)).collect();
        let mut b = record::build_batch(&records, Compression::None).unwrap();
        batch::set_base_offset(&mut b, base).unwrap();
        let delta = i32::try_from(last - base).unwrap();
        b[batch::LAST_OFFSET_DELTA_POS..batch::LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&delta.to_be_bytes());
        reseal(&mut b);
        b
    }

    /// A batch of no records covering `base..=last`: what compaction leaves where every record
    /// of a run of offsets was removed.
    fn emptied(base: i64, last: i64) -> Vec<u8> {
        let mut b = compacted(base, &[b"gone"], last);
        b.truncate(batch::HEADER_LEN);
        let len = i32::try_from(batch::HEADER_LEN - batch::LOG_OVERHEAD).unwrap();
        b[batch::BATCH_LENGTH_POS..batch::BATCH_LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
        b[batch::RECORDS_COUNT_POS..batch::RECORDS_COUNT_POS + 4].copy_from_slice(&[0; 4]);
        reseal(&mut b);
        b
    }

    /// A compacted log of 9 offsets: `a` at 0 (1-2 removed), `d` at 3, 4-6 emptied, `h` at 7,
    /// and a last batch whose record at 8 was removed too.
    fn gapped_log() -> Vec<u8> {
        let mut log = compacted(0, &[b"a"], 2);
        log.extend(compacted(3, &[b"d"], 3));
        log.extend(emptied(4, 6));
        log.extend(compacted(7, &[b"h"], 7));
        log.extend(emptied(8, 8));
        log
    }

    #[tokio::test]
    async fn a_compacted_log_reads_to_its_end_across_every_gap() {
        let addr = fake_broker(gapped_log(), 9).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(r) = c.next().await.unwrap() {
            got.push((r.offset, r.value.unwrap()));
        }
        // Survivors keep their offsets; the consumer ends although the last offsets hold no
        // record.
        assert_eq!(got, vec![(0, b"a".to_vec()), (3, b"d".to_vec()), (7, b"h".to_vec())]);
    }

    #[tokio::test]
    async fn poll_views_passes_gaps_and_its_position_ends_past_the_last_batch() {
        let addr = fake_broker(gapped_log(), 9).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Offset(1), ConsumerConfig::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while c
            .poll_views(|_, v| {
                got.push(v.offset);
                Ok::<_, ClientError>(ControlFlow::Continue(()))
            })
            .await
            .unwrap()
            .is_some()
        {}
        // Starting inside a gap gives the next survivor; a group committing now would resume
        // past the emptied end, not re-read it.
        assert_eq!(got, vec![3, 7]);
        assert_eq!(c.position(0), Some(9));
    }

    #[tokio::test]
    async fn intact_records_are_handed_out_in_order() {
        let addr = fake_broker(encoded(&[b"a", b"b", b"c"]), 3).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(r) = c.next().await.unwrap() {
            got.push((r.offset, r.value.unwrap()));
        }
        assert_eq!(got, vec![(0, b"a".to_vec()), (1, b"b".to_vec()), (2, b"c".to_vec())]);
    }

    #[tokio::test]
    async fn a_record_corrupted_in_transit_or_on_disk_is_an_error_not_data() {
        let mut bytes = encoded(&[b"good", b"flipped"]);
        let last = bytes.len() - 3; // inside the second record's value
        bytes[last] ^= 0x01;
        let addr = fake_broker(bytes, 2).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        // The intact record before the damage is still delivered; the damaged one never is,
        // and the consumer keeps refusing to go past it.
        assert_eq!(c.next().await.unwrap().unwrap().value.as_deref(), Some(&b"good"[..]));
        let err = c.next().await.unwrap_err();
        assert!(c.next().await.is_err());
        assert_eq!(c.position(0), Some(1));
        assert!(
            matches!(
                err,
                ClientError::Corrupt { partition: 0, source: batch::BatchError::Crc { .. }, .. }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn poll_views_hands_out_borrowed_records_in_order_then_none() {
        let addr = fake_broker(encoded(&[b"a", b"b", b"c"]), 3).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(n) = c
            .poll_views(|p, v| {
                got.push((p, v.offset as u64, v.value.unwrap().to_vec()));
                Ok::<_, ClientError>(ControlFlow::Continue(()))
            })
            .await
            .unwrap()
        {
            assert!(n > 0, "a stop_at_end consumer below its end always gets records");
        }
        assert_eq!(got, vec![(0, 0, b"a".to_vec()), (0, 1, b"b".to_vec()), (0, 2, b"c".to_vec())]);
        assert_eq!(c.position(0), Some(3));
    }

    #[tokio::test]
    async fn poll_views_break_keeps_the_position_after_the_last_record_seen() {
        let addr = fake_broker(encoded(&[b"a", b"b", b"c"]), 3).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        let seen = c.poll_views(|_, _| Ok::<_, ClientError>(ControlFlow::Break(()))).await.unwrap();
        assert_eq!(seen, Some(1));
        assert_eq!(c.position(0), Some(1));
        // The rest is fetched again, starting right after the record seen.
        let mut rest = Vec::new();
        c.poll_views(|_, v| {
            rest.push(v.value.unwrap().to_vec());
            Ok::<_, ClientError>(ControlFlow::Continue(()))
        })
        .await
        .unwrap();
        assert_eq!(rest, vec![b"b".to_vec(), b"c".to_vec()]);
        // At the end now.
        assert_eq!(
            c.poll_views(|_, _| Ok::<_, ClientError>(ControlFlow::Continue(()))).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn poll_views_mixes_with_next() {
        let addr = fake_broker(encoded(&[b"a", b"b", b"c"]), 3).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        assert_eq!(c.next().await.unwrap().unwrap().value.as_deref(), Some(&b"a"[..]));
        let mut rest = Vec::new();
        c.poll_views(|_, v| {
            rest.push((v.offset, v.value.unwrap().to_vec()));
            Ok::<_, ClientError>(ControlFlow::Continue(()))
        })
        .await
        .unwrap();
        assert_eq!(rest, vec![(1, b"b".to_vec()), (2, b"c".to_vec())]);
        assert_eq!(c.position(0), Some(3));
    }

    #[tokio::test]
    async fn poll_views_never_shows_a_corrupt_record() {
        let mut bytes = encoded(&[b"good", b"flipped"]);
        let last = bytes.len() - 3; // inside the second record's value
        bytes[last] ^= 0x01;
        let addr = fake_broker(bytes, 2).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut c = Consumer::new(conn, "t", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut collect = |_: u32, v: &RecordView<'_>| {
            got.push(v.value.unwrap().to_vec());
            Ok::<_, ClientError>(ControlFlow::Continue(()))
        };
        assert_eq!(c.poll_views(&mut collect).await.unwrap(), Some(1));
        let err = c.poll_views(&mut collect).await.unwrap_err();
        assert!(c.poll_views(&mut collect).await.is_err());
        assert_eq!(got, vec![b"good".to_vec()]);
        assert_eq!(c.position(0), Some(1));
        assert!(
            matches!(err, ClientError::Corrupt { source: batch::BatchError::Crc { .. }, .. }),
            "{err:?}"
        );
    }
}
