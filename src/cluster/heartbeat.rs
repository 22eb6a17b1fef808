//! The BROKER_HEARTBEAT peer request: a broker tells the controller (the metadata Raft leader)
//! that its registered incarnation is alive. Owns the frame layout only; the controller decides
//! what a heartbeat (or its absence) means, and the node sends them.
//!
//! Request payload (big-endian):
//!
//! | offset | size | field                                                    |
//! |--------|------|----------------------------------------------------------|
//! | 0      | 8    | node id (u64)                                            |
//! | 8      | 8    | incarnation: the raft index of its registration (u64)    |
//!
//! Response payload: one byte, [`HEARTBEAT_RECORDED`] or [`HEARTBEAT_NOT_CONTROLLER`] (the
//! receiver is not the Raft leader: ask the one the metadata names).

use super::metadata::NodeId;

/// Size of a heartbeat request.
pub const HEARTBEAT_LEN: usize = 16;
/// The controller recorded the heartbeat.
pub const HEARTBEAT_RECORDED: u8 = 0;
/// The receiver is not the controller.
pub const HEARTBEAT_NOT_CONTROLLER: u8 = 1;

/// One heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: NodeId,
    pub incarnation: u64,
}

impl Heartbeat {
    pub fn encode(&self) -> bytes::Bytes {
        let mut out = Vec::with_capacity(HEARTBEAT_LEN);
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.into()
    }

    /// `None` unless the payload is exactly one heartbeat.
    pub fn decode(payload: &[u8]) -> Option<Heartbeat> {
        if payload.len() != HEARTBEAT_LEN {
            return None;
        }
        let (id, inc) = payload.split_at(8);
        Some(Heartbeat {
            node_id: u64::from_be_bytes(id.try_into().ok()?),
            incarnation: u64::from_be_bytes(inc.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_round_trips_and_garbage_is_refused() {
        let h = Heartbeat { node_id: 3, incarnation: 1 << 40 };
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEARTBEAT_LEN);
        assert_eq!(Heartbeat::decode(&bytes), Some(h));
        assert_eq!(Heartbeat::decode(&bytes[..15]), None);
        assert_eq!(Heartbeat::decode(&[0; 17]), None);
        assert_eq!(Heartbeat::decode(&[]), None);
    }
}
