//! Who is in the cluster and with what part: decommissioning a broker (no new replicas, fenced
//! for good once its moves have emptied it) or taking that back, and changing the metadata
//! voters (the controllers) one at a time. The rules live in the metadata's `apply` and in the
//! Raft node's membership change; this file checks a request, proposes it and reports. Never
//! plans the moves that empty a broker (the CLI does, with `balance`).

use super::metadata::{ApplyResult, MetadataCommand, NodeId};
use super::{Cluster, ClusterError, Mode};

impl Cluster {
    /// Marks broker `id` decommissioned (`cancel`: takes the mark back). A decommissioned
    /// broker takes no new replica and is fenced as soon as it holds none.
    pub async fn decommission_broker(&self, id: i32, cancel: bool) -> Result<(), ClusterError> {
        let n = self.member("decommission a broker")?;
        let id = broker_id(id)?;
        let cmd = if cancel {
            MetadataCommand::RecommissionBroker { id }
        } else {
            MetadataCommand::DecommissionBroker { id }
        };
        match n.propose(cmd).await? {
            ApplyResult::Rejected(reason) => Err(ClusterError::Membership(reason)),
            _ => Ok(()),
        }
    }

    /// Makes broker `id` a metadata voter (`add`) or a learner again. See
    /// [`super::raft::RaftNode::change_voter`] for when it is refused.
    pub async fn change_voter(&self, id: i32, add: bool) -> Result<(), ClusterError> {
        let n = self.member("change the controllers")?;
        n.change_voter(broker_id(id)?, add).await
    }

    /// This broker's cluster node; on a single node, an error saying it cannot `what`.
    fn member(&self, what: &str) -> Result<&super::node::Node, ClusterError> {
        match &self.mode {
            Mode::Single => Err(ClusterError::Membership(format!(
                "a single broker cannot {what}: start brokers with --controllers"
            ))),
            Mode::Node(n) => Ok(n),
        }
    }
}

fn broker_id(id: i32) -> Result<NodeId, ClusterError> {
    NodeId::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ClusterError::Membership(format!("{id} is not a broker id")))
}
