//! The BROKER_HEARTBEAT peer request: a broker tells every controller voter (the metadata Raft
//! leader acts on it; the others keep it for when one of them leads) that its registered
//! incarnation is alive. Owns the frame layout only; the controller decides
//! what a heartbeat (or its absence) means, and the node sends them.
//!
//! Request payload (big-endian):
//!
//! | offset | size | field                                                    |
//! |--------|------|----------------------------------------------------------|
//! | 0      | 8    | node id (u64)                                            |
//! | 8      | 8    | incarnation: the raft index of its registration (u64)    |
//! | 16     | 8    | applied index: the last metadata entry it applied (u64)  |
//! | 24     | 1    | 1 while a controlled shutdown is under way, else 0       |
//!
//! Response payload: one byte, [`HEARTBEAT_RECORDED`] or [`HEARTBEAT_NOT_CONTROLLER`] (the
//! receiver is not the Raft leader: it kept the heartbeat, the controller is another voter).

use super::metadata::NodeId;

/// Size of a heartbeat request.
pub const HEARTBEAT_LEN: usize = 25;
/// The controller recorded the heartbeat.
pub const HEARTBEAT_RECORDED: u8 = 0;
/// The receiver is not the controller.
pub const HEARTBEAT_NOT_CONTROLLER: u8 = 1;

/// One heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: NodeId,
    pub incarnation: u64,
    /// It is unfenced only once it has applied its own registration.
    pub applied_index: u64,
    /// A broker on its way out is never unfenced again.
    pub want_shutdown: bool,
}

impl Heartbeat {
    pub fn encode(&self) -> bytes::Bytes {
        let mut out = Vec::with_capacity(HEARTBEAT_LEN);
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.applied_index.to_be_bytes());
        out.push(u8::from(self.want_shutdown));
        out.into()
    }

    /// `None` unless the payload is exactly one heartbeat.
    pub fn decode(payload: &[u8]) -> Option<Heartbeat> {
        if payload.len() != HEARTBEAT_LEN {
            return None;
        }
        let u64_at = |at: usize| payload[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        let want_shutdown = match payload[24] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(Heartbeat {
            node_id: u64_at(0)?,
            incarnation: u64_at(8)?,
            applied_index: u64_at(16)?,
            want_shutdown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_round_trips_and_garbage_is_refused() {
        let h =
            Heartbeat { node_id: 3, incarnation: 1 << 40, applied_index: 7, want_shutdown: true };
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEARTBEAT_LEN);
        assert_eq!(Heartbeat::decode(&bytes), Some(h));
        assert_eq!(Heartbeat::decode(&bytes[..24]), None);
        assert_eq!(Heartbeat::decode(&[0; 26]), None);
        let mut bad_flag = bytes.to_vec();
        bad_flag[24] = 2;
        assert_eq!(Heartbeat::decode(&bad_flag), None);
        assert_eq!(Heartbeat::decode(&[]), None);
    }
}
