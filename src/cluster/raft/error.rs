//! The Raft node's errors, with the node, peer or file they concern. openraft's own errors
//! arrive here as text: their types never leave this room.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::peer::PeerError;

#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    #[error("raft storage {path}: {source}")]
    Storage { path: PathBuf, source: io::Error },

    #[error("raft storage {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("node {node}: cannot start raft: {reason}")]
    Start { node: u64, reason: String },

    #[error("node {node}: no metadata leader known after {waited:?}")]
    NoLeader { node: u64, waited: Duration },

    #[error("node {node}: forwarding to leader {leader}: {source}")]
    Forward { node: u64, leader: u64, source: PeerError },

    /// The leader changed after the command was appended: it may or may not take effect.
    #[error("node {node}: commit status unknown: {reason}")]
    Ambiguous { node: u64, reason: String },

    /// The state machine could not decode the command or its answer.
    #[error("node {node}: command refused: {reason}")]
    Rejected { node: u64, reason: String },

    #[error("node {node}: raft: {reason}")]
    Raft { node: u64, reason: String },
}

impl From<RaftNodeError> for PeerError {
    fn from(e: RaftNodeError) -> PeerError {
        PeerError::handler(e.to_string())
    }
}
