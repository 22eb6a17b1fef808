//! The data directory: topics (a directory each) and their partitions, topic config, consumer-group
//! offsets, long-poll wake-ups and the retention task. Never touches sockets or wire formats.
//!
//! CONTRACT (fixed: the native server and the Kafka adapter are written against this surface):
//! ```ignore
//! pub struct BrokerConfig { pub data_dir: PathBuf, pub log: LogConfig, pub auto_create_topics: bool,
//!                           pub default_partitions: u32, pub max_topics: usize, pub max_partitions: u32 }
//! pub struct Broker;                       // Send + Sync, shared as Arc<Broker>
//! impl Broker {
//!   pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError>;   // opens every topic
//!   pub fn create_topic(&self, name: &str, partitions: u32) -> Result<TopicDescription, BrokerError>;
//!   pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError>;
//!   pub fn list_topics(&self) -> Vec<TopicSummary>;                       // sorted by name
//!   pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError>;
//!   pub fn describe_all(&self) -> Vec<TopicDescription>;
//!   pub fn partition_count(&self, topic: &str) -> Result<u32, BrokerError>;
//!   /// Appends one batch to one partition. `partition: None` picks by murmur2 of `key_hint`
//!   /// (Kafka's default partitioner) or round-robin when there is no key. Auto-creates the topic
//!   /// when the broker allows it. Durable per the LogConfig's fsync policy when it returns.
//!   pub async fn append(&self, topic: &str, partition: Option<u32>, key_hint: Option<&[u8]>,
//!                       records: &[NewRecord<'_>]) -> Result<AppendResult, BrokerError>;
//!   pub async fn append_encoded(&self, topic: &str, partition: Option<u32>, key_hint: Option<&[u8]>,
//!                       encoded: &mut [u8]) -> Result<AppendResult, BrokerError>;
//!   /// Long-poll: waits up to max_wait for at least min_bytes at `offset`, without busy looping.
//!   pub async fn fetch(&self, topic: &str, partition: u32, offset: u64, max_bytes: usize,
//!                      min_bytes: usize, max_wait: Duration) -> Result<FetchResult, BrokerError>;
//!   pub fn trim(&self, topic: &str, partition: u32, before: u64) -> Result<u64, BrokerError>;
//!   pub fn offset_for_timestamp(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<Option<u64>, BrokerError>;
//!   pub fn commit_offset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<(), BrokerError>;
//!   pub fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BrokerError>;
//!   pub fn group_offsets(&self, group: &str) -> Result<Vec<(String, u32, u64)>, BrokerError>;
//!   pub fn list_groups(&self) -> Vec<String>;
//!   pub fn shutdown(&self) -> Result<(), BrokerError>;                   // sync + clean markers
//! }
//! pub struct AppendResult { pub partition: u32, pub offsets: OffsetRange }
//! pub struct FetchResult { pub partition: u32, pub records: ReadSlice, pub log_start_offset: u64,
//!                          pub high_watermark: u64 }
//! pub fn validate_topic_name(name: &str) -> Result<(), BrokerError>;     // Kafka's rules
//! pub fn validate_group_name(name: &str) -> Result<(), BrokerError>;
//! ```

use serde::{Deserialize, Serialize};

/// One topic as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
}

/// One partition as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub segments: u64,
    pub size_bytes: u64,
}
