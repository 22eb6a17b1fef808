//! The openraft type configuration and the messages the Raft node sends over the peer
//! transport. Commands and answers travel as opaque JSON values here, so that openraft's types
//! never name the metadata types (and this room compiles without them).

use std::fmt;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

/// One proposed command, as JSON of the state machine's `Command`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal(pub serde_json::Value);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The state machine's answer to one proposal: JSON of its `Response`, or why the command could
/// not even be decoded (a node that does not know the command's shape refuses it, on every node
/// alike, and changes nothing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied(pub Result<serde_json::Value, String>);

openraft::declare_raft_types!(
    /// The metadata Raft group's types: u64 node ids, the peer address as the node, and one
    /// leader per term (`leader_id_std`), as CLUSTER.md asks.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

pub(crate) type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub(crate) type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub(crate) type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// A RAFT_VOTE request: openraft's vote or pre-vote.
#[derive(Serialize, Deserialize)]
pub(crate) struct VoteMessage {
    pub pre_vote: bool,
    pub request: openraft::raft::VoteRequest<TypeConfig>,
}

/// A RAFT_SNAPSHOT request: the whole snapshot in one message (the image is small).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotMessage {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// A FORWARD_COMMAND request from a node that is not the leader.
#[derive(Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    Propose(serde_json::Value),
    AddLearner {
        id: u64,
        addr: String,
    },
    /// Makes learner `id` a voter (`add`), or a voter a learner again.
    ChangeVoter {
        id: u64,
        add: bool,
    },
}

/// The answer to a FORWARD_COMMAND.
#[derive(Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    /// Committed and applied: the state machine's answer.
    Applied(Applied),
    /// The learner was added.
    Done,
    /// This node is not the leader (the command was not appended): try `leader`.
    NotLeader { leader: Option<u64> },
    /// The command may or may not have been committed (the leader changed after appending it).
    Ambiguous(String),
    /// Refused for another reason (fatal Raft error, membership change in progress, ...).
    Failed(String),
    /// Refused before anything was appended, with the reason for the operator.
    Refused(String),
}
