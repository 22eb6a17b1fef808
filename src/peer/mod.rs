//! The broker-to-broker transport: one framed TCP connection per (peer, purpose), strictly
//! request/response, opened with a `Hello` that names the caller's node id and carries the
//! cluster token. The server dispatches each request to a [`PeerHandler`]; the client
//! ([`PeerClient`]) connects lazily, reconnects after failures and bounds every call in time.
//! Knows no partitions, no metadata and no consensus: the request kinds below are opaque bytes
//! to this room; cluster/ and replication/ give them meaning.

mod client;
mod error;
mod frame;
mod server;
#[cfg(test)]
mod tests;

pub use client::PeerClient;
pub use error::PeerError;
pub use frame::{Hello, MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAME_BYTES};
pub use server::{MAX_PEER_CONNECTIONS, PeerHandler, PeerServer};

/// The first frame on every connection: [`Hello`] as JSON, answered by an empty `HELLO`.
pub const HELLO: u8 = 0;
/// openraft's AppendEntries (payload: JSON).
pub const RAFT_APPEND: u8 = 1;
/// openraft's RequestVote (payload: JSON).
pub const RAFT_VOTE: u8 = 2;
/// openraft's InstallSnapshot / full snapshot (payload: JSON).
pub const RAFT_SNAPSHOT: u8 = 3;
/// A metadata command a non-leader forwards to the Raft leader.
pub const FORWARD_COMMAND: u8 = 4;
/// A broker's liveness heartbeat to the controller.
pub const BROKER_HEARTBEAT: u8 = 5;
/// A follower's fetch of partition data from the partition leader.
pub const REPLICA_FETCH: u8 = 6;
/// openraft's TransferLeader: a leader hands over (it left the voters) (payload: JSON).
pub const RAFT_TRANSFER: u8 = 7;
/// The answer to a request the server could not serve: the payload is a UTF-8 message.
pub const ERROR: u8 = 255;
