//! A small Kafka client for the cluster tests, built from the `kafka-protocol` crate's messages
//! the way a real client behaves: Metadata (v9: leaders, leader epochs, ISR) from whichever broker
//! answers, requests routed to each partition's leader, and an idempotent `acks=all` producer
//! (InitProducerId, then a producer id, epoch and sequence per partition) that retries the very
//! same batch after any retriable error. It never panics on a broker that is killed, paused or
//! cut off: every call is bounded in time and returns what went wrong. It keeps no history; the
//! tests record what it did in `checker::History`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::record::{self, NewRecord};

use super::kafka::{KafkaConn, s};

/// A connect or an answer that takes longer means the broker is gone, paused or cut off.
/// Longer than a produce's own timeout (`PRODUCE_TIMEOUT_MS`), so a slow acks=all still answers.
pub const IO_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a broker may hold an acks=all produce waiting for the ISR.
const PRODUCE_TIMEOUT_MS: i32 = 6000;

pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const NOT_CONTROLLER: i16 = 41;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const OFFSET_NOT_AVAILABLE: i16 = 78;

/// The errors after which a Kafka client refreshes its metadata and tries again.
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | NOT_CONTROLLER
            | NOT_ENOUGH_REPLICAS
            | NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
            | OFFSET_NOT_AVAILABLE
    )
}

/// One partition as a Metadata answer describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionMeta {
    pub error: i16,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One Metadata answer: the live brokers and the partitions of one topic.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The broker that answered.
    pub from: String,
    pub controller: i32,
    pub brokers: BTreeMap<i32, String>,
    pub partitions: BTreeMap<i32, PartitionMeta>,
}

/// What went wrong with one call.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No connection, a timeout or an undecodable answer: the request may or may not have
    /// been applied.
    Io(String),
    /// A Kafka error code in the answer.
    Kafka(i16),
    /// The client does not know a leader (or its address) to send to.
    NoLeader,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "io: {e}"),
            CallError::Kafka(code) => write!(f, "kafka error {code}"),
            CallError::NoLeader => write!(f, "no known leader"),
        }
    }
}

/// The records of one partition a Fetch returned.
#[derive(Debug, Default)]
pub struct Fetched {
    pub high_watermark: i64,
    /// (offset, value) at or past the fetch offset, in log order.
    pub records: Vec<(i64, String)>,
}

/// Connections to the brokers of one cluster, and the metadata of one topic.
pub struct ClusterClient {
    pub topic: String,
    client_id: String,
    /// Kafka addresses to ask for metadata first (any broker will do).
    bootstrap: Vec<String>,
    conns: HashMap<String, KafkaConn>,
    pub meta: Metadata,
    /// Rotates the broker asked for metadata: a stale broker (cut off from the others, or
    /// restarted and behind) must not be the only one ever asked.
    rotation: usize,
}

impl ClusterClient {
    pub fn new(bootstrap: &[String], topic: &str, client_id: &str) -> ClusterClient {
        ClusterClient {
            topic: topic.to_string(),
            client_id: client_id.to_string(),
            bootstrap: bootstrap.to_vec(),
            conns: HashMap::new(),
            meta: Metadata::default(),
            rotation: 0,
        }
    }

    fn conn(&mut self, addr: &str) -> Result<&mut KafkaConn, CallError> {
        if !self.conns.contains_key(addr) {
            let c = KafkaConn::try_connect(addr, &self.client_id, IO_TIMEOUT)
                .map_err(|e| CallError::Io(format!("connect {addr}: {e}")))?;
            self.conns.insert(addr.to_string(), c);
        }
        // Inserted just above when missing.
        Ok(self.conns.get_mut(addr).expect("connection present"))
    }

    /// One request to `addr`; a failed connection is dropped so the next call reconnects.
    pub fn call<T: kafka_protocol::protocol::Encodable, R: kafka_protocol::protocol::Decodable>(
        &mut self,
        addr: &str,
        key: ApiKey,
        v: i16,
        body: &T,
    ) -> Result<R, CallError> {
        let result = self.conn(addr)?.try_call(key, v, body);
        result.map_err(|e| {
            self.conns.remove(addr);
            CallError::Io(format!("{key:?} to {addr}: {e}"))
        })
    }

    /// Every address the client knows: bootstrap first, then brokers from metadata.
    fn known_addrs(&self) -> Vec<String> {
        let mut all = self.bootstrap.clone();
        for a in self.meta.brokers.values() {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }

    /// Metadata v9 for the topic from one broker.
    pub fn metadata_from(&mut self, addr: &str) -> Result<Metadata, CallError> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(s(&self.topic).into())),
            ]))
            .with_allow_auto_topic_creation(false);
        let r: MetadataResponse = self.call(addr, ApiKey::Metadata, 9, &req)?;
        let mut m = Metadata {
            from: addr.to_string(),
            controller: r.controller_id.0,
            ..Metadata::default()
        };
        for b in &r.brokers {
            m.brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        let Some(t) =
            r.topics.iter().find(|t| t.name.as_deref().map(|n| &**n) == Some(&*self.topic))
        else {
            return Err(CallError::Kafka(UNKNOWN_TOPIC_OR_PARTITION));
        };
        if t.error_code != NONE {
            return Err(CallError::Kafka(t.error_code));
        }
        for p in &t.partitions {
            m.partitions.insert(
                p.partition_index,
                PartitionMeta {
                    error: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                },
            );
        }
        Ok(m)
    }

    /// Refreshes the metadata from the next broker that answers (rotating over all known).
    pub fn refresh(&mut self) -> Result<(), CallError> {
        let addrs = self.known_addrs();
        let mut last = CallError::NoLeader;
        for i in 0..addrs.len() {
            let addr = &addrs[(self.rotation + i) % addrs.len()];
            match self.metadata_from(addr) {
                Ok(m) => {
                    self.rotation = (self.rotation + i + 1) % addrs.len();
                    self.meta = m;
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        self.rotation = (self.rotation + 1) % addrs.len().max(1);
        Err(last)
    }

    /// The metadata every answering broker gives, by address (for the nemesis and for
    /// waiting on a healthy cluster).
    pub fn metadata_everywhere(&mut self) -> Vec<Metadata> {
        self.known_addrs().iter().filter_map(|a| self.metadata_from(a).ok()).collect()
    }

    /// The leader of `partition` (id, epoch, address) in the current metadata.
    pub fn leader(&self, partition: i32) -> Option<(i32, i32, String)> {
        let p = self.meta.partitions.get(&partition)?;
        let addr = self.meta.brokers.get(&p.leader)?;
        Some((p.leader, p.leader_epoch, addr.clone()))
    }

    /// Waits (up to `limit`) until some broker's metadata shows every one of `partitions` with
    /// a leader and `isr` in-sync replicas; Err with the last metadata seen.
    pub fn wait_healthy(
        &mut self,
        partitions: i32,
        isr: usize,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let refreshed = self.refresh();
            let healthy = refreshed.is_ok()
                && (0..partitions).all(|p| {
                    self.meta.partitions.get(&p).is_some_and(|m| {
                        m.error == NONE
                            && m.leader >= 0
                            && m.isr.len() >= isr
                            && self.meta.brokers.contains_key(&m.leader)
                    })
                });
            if healthy {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "not every partition had a leader and {isr} in-sync replicas within {limit:?}: \
                     last refresh {refreshed:?}, metadata {:?}",
                    self.meta
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reads a whole partition from offset 0 up to its high watermark from the leader,
    /// retrying through errors for up to `limit`.
    pub fn read_all(
        &mut self,
        partition: i32,
        limit: Duration,
    ) -> Result<Vec<(i64, String)>, String> {
        let deadline = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        let mut offset = 0i64;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "p{partition}: read up to offset {offset} only within {limit:?}"
                ));
            }
            if self.leader(partition).is_none() {
                let _ = self.refresh();
            }
            match self.fetch(partition, offset, 100) {
                Ok(f) => {
                    for (o, v) in f.records {
                        offset = o + 1;
                        out.push((o, v));
                    }
                    if offset >= f.high_watermark {
                        return Ok(out);
                    }
                }
                Err(_) => {
                    let _ = self.refresh();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// CreateTopics v5 on any broker (retrying NOT_CONTROLLER elsewhere): the error code.
    pub fn create_topic(
        &mut self,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<i16, CallError> {
        let t = CreatableTopic::default()
            .with_name(TopicName(s(&self.topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor);
        let req = CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(30_000);
        let mut last = CallError::NoLeader;
        for addr in self.known_addrs() {
            match self.call::<_, CreateTopicsResponse>(&addr, ApiKey::CreateTopics, 5, &req) {
                Ok(r) if r.topics.first().map(|t| t.error_code) == Some(NOT_CONTROLLER) => {
                    last = CallError::Kafka(NOT_CONTROLLER)
                }
                Ok(r) => return Ok(r.topics.first().map(|t| t.error_code).unwrap_or(-1)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// InitProducerId v4 (no transactions) from any broker: (producer id, epoch).
    pub fn init_producer_id(&mut self) -> Result<(i64, i16), CallError> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1);
        let mut last = CallError::NoLeader;
        for addr in self.known_addrs() {
            match self.call::<_, InitProducerIdResponse>(&addr, ApiKey::InitProducerId, 4, &req) {
                Ok(r) if r.error_code == NONE => return Ok((r.producer_id.0, r.producer_epoch)),
                Ok(r) => last = CallError::Kafka(r.error_code),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Produce v8, acks=all, of one batch to the partition's leader as the metadata names it:
    /// the base offset the leader assigned.
    pub fn produce(&mut self, partition: i32, batch: Bytes) -> Result<i64, CallError> {
        let (_, _, addr) = self.leader(partition).ok_or(CallError::NoLeader)?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(s(&self.topic)))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        let r: ProduceResponse = self.call(&addr, ApiKey::Produce, 8, &req)?;
        let p = r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| CallError::Io("a produce answer without the partition".into()))?;
        match p.error_code {
            NONE => Ok(p.base_offset),
            code => Err(CallError::Kafka(code)),
        }
    }

    /// Fetch v11 from the partition's leader, with the leader epoch the metadata gave
    /// (KIP-320: a stale or future epoch is refused, and the client refreshes).
    pub fn fetch(
        &mut self,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<Fetched, CallError> {
        let (_, epoch, addr) = self.leader(partition).ok_or(CallError::NoLeader)?;
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default().with_topic(TopicName(s(&self.topic))).with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(epoch)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
            ]);
        let r: FetchResponse = self.call(&addr, ApiKey::Fetch, 11, &req)?;
        if r.error_code != NONE {
            return Err(CallError::Kafka(r.error_code));
        }
        let p = r
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| CallError::Io("a fetch answer without the partition".into()))?;
        if p.error_code != NONE {
            return Err(CallError::Kafka(p.error_code));
        }
        let mut out = Fetched { high_watermark: p.high_watermark, records: Vec::new() };
        let mut b = p.records.clone().unwrap_or_default();
        while !b.is_empty() {
            let set = RecordBatchDecoder::decode(&mut b)
                .map_err(|e| CallError::Io(format!("undecodable fetched batch: {e}")))?;
            for r in set.records {
                // Whole stored batches come back: skip what lies below the fetch offset.
                if r.offset >= offset {
                    let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    out.records.push((r.offset, v.unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }
}

/// An idempotent producer: one producer id, a sequence per partition that only advances when a
/// batch is acknowledged, and the identical batch sent again after any retriable error, so the
/// brokers must de-duplicate it (also across a leader change).
pub struct IdempotentProducer {
    pub client: ClusterClient,
    pub producer_id: i64,
    pub epoch: i16,
    next_seq: HashMap<i32, i32>,
}

/// What one attempt to send a batch came to.
#[derive(Debug)]
pub enum Attempt {
    /// Acknowledged at this base offset (None: DUPLICATE_SEQUENCE_NUMBER, stored once before).
    Acked(Option<i64>),
    /// Worth retrying with the same batch (after a metadata refresh).
    Retriable(CallError),
    /// Never expected from a correct cluster for a producer that retries like this one.
    Fatal(CallError),
}

impl IdempotentProducer {
    /// InitProducerId, retried for up to `limit`.
    pub fn new(
        mut client: ClusterClient,
        limit: Duration,
    ) -> Result<IdempotentProducer, CallError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match client.init_producer_id() {
                Ok((producer_id, epoch)) => {
                    return Ok(IdempotentProducer {
                        client,
                        producer_id,
                        epoch,
                        next_seq: HashMap::new(),
                    });
                }
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => {
                    let _ = client.refresh();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// The next batch for `partition`: `values` with this producer's id, epoch and the
    /// partition's next sequence. Sequences advance only through `acked`.
    pub fn batch(&self, partition: i32, values: &[String]) -> Bytes {
        let seq = *self.next_seq.get(&partition).unwrap_or(&0);
        let mut b =
            BatchBuilder::new(Compression::None).producer(self.producer_id, self.epoch, seq);
        for v in values {
            // A short string value always fits a batch.
            record::push_record(&mut b, &NewRecord::value(v.as_bytes())).expect("push a record");
        }
        Bytes::from(b.build().expect("build a batch of short records"))
    }

    /// Moves the partition's sequence past a batch of `n` records that was acknowledged.
    pub fn acked(&mut self, partition: i32, n: usize) {
        *self.next_seq.entry(partition).or_insert(0) += n as i32;
    }

    /// One attempt at sending `batch`; refreshes the metadata after a retriable failure.
    pub fn attempt(&mut self, partition: i32, batch: &Bytes) -> Attempt {
        if self.client.leader(partition).is_none() {
            let _ = self.client.refresh();
        }
        match self.client.produce(partition, batch.clone()) {
            Ok(base) => Attempt::Acked(Some(base)),
            Err(CallError::Kafka(DUPLICATE_SEQUENCE_NUMBER)) => Attempt::Acked(None),
            Err(e @ CallError::Kafka(OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID)) => {
                Attempt::Fatal(e)
            }
            Err(e @ CallError::Kafka(code)) if !retriable(code) => Attempt::Fatal(e),
            Err(e) => {
                let _ = self.client.refresh();
                Attempt::Retriable(e)
            }
        }
    }
}
