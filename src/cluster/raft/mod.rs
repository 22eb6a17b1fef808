//! The metadata Raft node, on openraft: the only place openraft's types appear. Stores the log
//! and vote durably under `<data-dir>/@cluster` ([`log_store`]), applies committed commands to
//! the application's state ([`StateMachineData`]: the metadata image in a broker) and publishes
//! each applied state, talks to the other nodes over the peer transport, forwards proposals to
//! the leader, and bootstraps the cluster on the voters' first start. Never decides what a
//! command means: `StateMachineData::apply` does, identically on every node.

mod error;
mod log_store;
mod network;
mod node;
mod state_machine;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::RaftNodeError;
pub use node::RaftNode;

/// The replicated data a [`RaftNode`] keeps: a deterministic function of the commands applied
/// in log order (the same commands at the same indexes give the same state on every node).
/// Snapshots are its JSON.
pub trait StateMachineData:
    Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Command: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;

    /// Applies one committed command found at `log_index` of the Raft log.
    fn apply(&mut self, command: &Self::Command, log_index: u64) -> Self::Response;
}

/// How a node joins the metadata group.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub node_id: u64,
    /// `<data-dir>/@cluster`: the Raft log, vote and snapshot.
    pub dir: PathBuf,
    /// The voters (`--controllers`) and their cluster addresses. A node not among them is a
    /// learner, added by the leader with [`RaftNode::add_learner`].
    pub voters: BTreeMap<u64, String>,
    pub token: Option<String>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
}

impl RaftConfig {
    /// Timings for brokers on one network: a leader is suspected dead after 1-2 s of silence.
    pub fn new(
        node_id: u64,
        dir: PathBuf,
        voters: BTreeMap<u64, String>,
        token: Option<String>,
    ) -> Self {
        RaftConfig {
            node_id,
            dir,
            voters,
            token,
            heartbeat_ms: 250,
            election_timeout_ms: (1000, 2000),
        }
    }
}
