//! The Kafka wire protocol adapter: a second listener that lets unmodified Kafka clients (kcat,
//! librdkafka, kafka-python, rskafka) produce and consume. It owns framing and the per-API
//! handlers (record batches pass through as stored: `crate::batch`); it calls the same
//! `crate::broker::Broker` as the native protocol (whose coordinator holds the consumer groups'
//! membership), and never touches storage details.
//!
//! Files: `codec` (frames, headers, API version table), `consumer_protocol` (reading a
//! consumer's subscription and assignment bytes), `handlers` (the dispatch, and one file per API
//! family), `server` (the tokio listener).

pub(crate) mod codec;
pub(crate) mod consumer_protocol;
pub(crate) mod handlers;
pub(crate) mod sasl;
mod server;
mod splice;

pub use server::{KafkaConfig, KafkaServer};

/// Errors of the Kafka adapter. Request-level problems close the offending connection only.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A frame whose size prefix is negative or above the limit.
    #[error("request frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: i64, max: u32 },
    /// An API key we do not implement, or a version outside the range we accept.
    #[error("unsupported API key {api_key} version {version}")]
    UnsupportedApi { api_key: i16, version: i16 },
    /// A request that does not decode.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A response the codec refused to encode (a bug: a field the version lacks was set).
    #[error("could not encode response: {0}")]
    Encode(String),
    /// Socket I/O on the Kafka listener.
    #[error("kafka listener I/O ({op}): {source}")]
    Io { op: &'static str, source: std::io::Error },
}
