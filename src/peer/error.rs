//! The transport's errors, each naming the peer address (and node where known) it concerns.
//! Never says anything about what a request meant: handlers' own failures travel as text.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot bind the cluster listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },

    #[error(
        "refusing to listen for brokers on {addr} without a token: bind a loopback address, \
         set a token, or allow unauthenticated remote access explicitly"
    )]
    RemoteWithoutToken { addr: SocketAddr },

    #[error("cluster listener {addr}: accept failed: {source}")]
    Accept { addr: SocketAddr, source: io::Error },

    #[error("peer {addr}: cannot connect: {source}")]
    Connect { addr: String, source: io::Error },

    #[error("peer {addr}: i/o error: {source}")]
    Io { addr: String, source: io::Error },

    #[error("peer {addr}: connection closed")]
    Closed { addr: String },

    #[error("peer {addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },

    #[error("peer {addr}: frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { addr: String, len: u32, max: u32 },

    #[error("peer {addr}: malformed frame: {reason}")]
    Malformed { addr: String, reason: String },

    #[error("peer {addr}: authentication refused (wrong or missing cluster token)")]
    Unauthorized { addr: String },

    /// The peer understood the request and answered with an ERROR frame.
    #[error("peer {addr} answered with an error: {message}")]
    Remote { addr: String, message: String },

    #[error("node {from}: unknown request kind {kind}")]
    UnknownKind { from: u64, kind: u8 },

    /// A handler's own refusal (bad payload, not the leader, shutting down, ...): sent to the
    /// caller as an ERROR frame carrying this text.
    #[error("{0}")]
    Handler(String),
}

impl PeerError {
    /// A handler's refusal with a message the caller sees.
    pub fn handler(message: impl Into<String>) -> PeerError {
        PeerError::Handler(message.into())
    }

    /// True for failures of the connection itself (the peer may be down or restarting), as
    /// opposed to an answer the peer gave.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            PeerError::Connect { .. }
                | PeerError::Io { .. }
                | PeerError::Closed { .. }
                | PeerError::Timeout { .. }
        )
    }
}
