//! The Rust client for minikafka's native protocol: a pipelined [`Connection`], an [`Admin`]
//! handle, a batching [`Producer`] and a CRC-checking [`Consumer`].
//!
//! Owns: talking to one broker over TCP, batching and partitioning records on the way in,
//! verifying every fetched record's CRC on the way out, and consumer-group offset commits.
//! Never does: storage or broker-side validation.
//!
//! Reconnecting is opt-in ([`Reconnect`] in [`ProducerConfig`] and [`ConsumerConfig`]): once the
//! broker is back, a consumer resumes right after the last record it handed out (nothing skipped,
//! nothing handed out twice), and a producer sends again every batch that was not acknowledged.
//! That is at-least-once delivery: a batch in flight when the connection died may have been
//! stored, and is then stored twice (as with a Kafka client without idempotence). A batch is only ever
//! reported acknowledged when the broker acknowledged it. Without `reconnect`, a lost connection
//! is an error, and the caller decides.
//!
//! ```no_run
//! # async fn demo() -> Result<(), minikafka::client::ClientError> {
//! use minikafka::client::{Admin, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom};
//! let conn = Connection::connect("127.0.0.1:7070").await?;
//! Admin::new(conn.clone()).create_topic("orders", 3, true).await?;
//! let mut producer = Producer::new(conn.clone(), "orders", ProducerConfig::default()).await?;
//! producer.send(Some(b"customer-1"), b"first order").await?;
//! let acks = producer.flush().await?;
//! let mut consumer =
//!     Consumer::new(conn, "orders", StartFrom::Beginning, ConsumerConfig::default()).await?;
//! while let Some(record) = consumer.next().await? {
//!     let value = record.value.as_deref().unwrap_or_default(); // None: a tombstone
//!     println!("{}: {}", record.offset, String::from_utf8_lossy(value));
//! }
//! # let _ = acks; Ok(()) }
//! ```

mod admin;
mod connection;
mod consumer;
mod producer;
mod reconnect;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod stand_in;

/// Kafka's default partitioner, the very function the broker uses, so a keyed record lands in the
/// same partition whether this client or the broker picks it.
pub use crate::broker::partitioner::{murmur2, partition_for_key};
pub use admin::Admin;
pub use connection::Connection;
pub(crate) use connection::Pending;
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, StartFrom};
pub use producer::{BatchAck, Producer, ProducerConfig};
pub use reconnect::{Reconnect, ReconnectEvent, ReconnectListener};

use crate::batch::BatchError;
use crate::protocol::{ErrorCode, ProtocolError};

/// Everything that can go wrong between this client and a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed (connect, read or write).
    #[error("{op} {addr}: {source}")]
    Io { op: &'static str, addr: String, source: std::io::Error },
    /// The connection was closed (by the broker or after an earlier failure).
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: String },
    /// The broker sent bytes that do not decode as a response.
    #[error("protocol error from {addr}: {source}")]
    Protocol { addr: String, source: ProtocolError },
    /// The broker answered a request with an error.
    #[error("{message} ({code:?})")]
    Broker { code: ErrorCode, message: String },
    /// The broker answered with a response of the wrong kind for the request.
    #[error("unexpected response to {request}: {got}")]
    UnexpectedResponse { request: &'static str, got: String },
    /// A consumer was asked to start outside the records a partition holds.
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: the log holds offsets \
         {log_start_offset}..{next_offset} (log start inclusive, next offset exclusive)"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start_offset: u64,
        next_offset: u64,
    },
    /// A fetched record failed its CRC or layout check.
    #[error("corrupt record in {topic}/{partition} at or after offset {offset}: {source}")]
    Corrupt { topic: String, partition: u32, offset: u64, source: BatchError },
    /// A record could not be encoded (too large, too many headers).
    #[error("cannot encode record for {topic}: {source}")]
    Encode { topic: String, source: BatchError },
    /// The connection was lost and the broker did not come back within the reconnect policy's
    /// time.
    #[error("broker {addr} unavailable for {:.1} s ({reason}); gave up reconnecting", waited.as_secs_f64())]
    Unavailable { addr: String, waited: std::time::Duration, reason: String },
    /// The caller asked for something impossible (a partition the topic does not have...).
    #[error("{0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// The broker's error code, when the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The connection was lost (or could not be opened): the request may be tried again on a
    /// new connection. Not for answers from the broker, which a new connection would not change.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, ClientError::Io { .. } | ClientError::Closed { .. })
    }

    /// Why the connection is unavailable, briefly ("connection refused").
    pub(crate) fn reason(&self) -> String {
        match self {
            ClientError::Io { source, .. } => source.kind().to_string(),
            ClientError::Closed { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}
