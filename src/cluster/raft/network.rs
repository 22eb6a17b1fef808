//! openraft's network over the peer transport: AppendEntries, votes, snapshots and leadership
//! transfers as JSON in RAFT_APPEND / RAFT_VOTE / RAFT_SNAPSHOT / RAFT_TRANSFER frames, one
//! [`PeerClient`] per target node. The receiving side is [`serve`], which hands each request to
//! the local Raft. Never retries on its own: openraft does, with its backoff.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::OptionalSend;
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{SnapshotMessage, TypeConfig, Vote, VoteMessage};
use crate::peer::{PeerClient, PeerError, RAFT_APPEND, RAFT_SNAPSHOT, RAFT_TRANSFER, RAFT_VOTE};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// Makes one [`Network`] per target; a target's address comes from the membership.
pub(crate) struct NetworkFactory {
    pub my_id: u64,
    pub token: Option<String>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        Network {
            target,
            client: PeerClient::new(self.my_id, node.addr.clone(), self.token.clone()),
        }
    }
}

pub(crate) struct Network {
    target: u64,
    client: PeerClient,
}

impl Network {
    async fn request<Req, Resp>(
        &self,
        kind: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self.client.call(kind, Bytes::from(payload), timeout).await.map_err(|e| {
            let e = TargetError { target: self.target, source: e };
            if e.source.is_connection_failure() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let result: Result<Resp, RaftError<TypeConfig>> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The target's Raft has stopped: nothing to retry soon.
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

/// A transport error naming the node it was talking to.
#[derive(Debug, thiserror::Error)]
#[error("raft node {target}: {source}")]
struct TargetError {
    target: u64,
    source: PeerError,
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.request(RAFT_APPEND, &rpc, option.soft_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.request(RAFT_VOTE, &VoteMessage { pre_vote: false, request: rpc }, option.soft_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.request(RAFT_VOTE, &VoteMessage { pre_vote: true, request: rpc }, option.soft_ttl())
            .await
    }

    /// A leader that left the voters hands over to the most up-to-date voter this way (else the
    /// others would wait out its lease and it would keep leading meanwhile).
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.request(RAFT_TRANSFER, &req, option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let message = SnapshotMessage { vote, meta: snapshot.meta, data: snapshot.snapshot };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = self.request(RAFT_SNAPSHOT, &message, option.hard_ttl()) => match answer {
                Ok(answer) => Ok(answer),
                Err(RPCError::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
                Err(RPCError::Timeout(e)) => Err(StreamingError::Timeout(e)),
                Err(RPCError::Network(e)) => Err(StreamingError::Network(e)),
                Err(RPCError::RemoteError(e)) => Err(StreamingError::Network(NetworkError::new(&e))),
            },
        }
    }
}

/// The serving side: decodes a RAFT_* request, hands it to `raft`, encodes its answer.
pub(crate) async fn serve<SM>(
    raft: &openraft::Raft<TypeConfig, SM>,
    kind: u8,
    payload: &[u8],
) -> Result<Bytes, PeerError>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig, SnapshotData = Vec<u8>>,
{
    fn decode<T: DeserializeOwned>(payload: &[u8], what: &str) -> Result<T, PeerError> {
        serde_json::from_slice(payload).map_err(|e| PeerError::handler(format!("bad {what}: {e}")))
    }
    fn encode<T: Serialize>(answer: &T) -> Result<Bytes, PeerError> {
        serde_json::to_vec(answer)
            .map(Bytes::from)
            .map_err(|e| PeerError::handler(format!("cannot encode the answer: {e}")))
    }
    match kind {
        RAFT_APPEND => {
            let request: AppendEntriesRequest<TypeConfig> = decode(payload, "AppendEntries")?;
            encode(&raft.append_entries(request).await)
        }
        RAFT_VOTE => {
            let message: VoteMessage = decode(payload, "vote")?;
            let answer = if message.pre_vote {
                raft.pre_vote(message.request).await
            } else {
                raft.vote(message.request).await
            };
            encode(&answer)
        }
        RAFT_SNAPSHOT => {
            let message: SnapshotMessage = decode(payload, "snapshot")?;
            let snapshot = Snapshot { meta: message.meta, snapshot: message.data };
            let answer: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
                raft.install_full_snapshot(message.vote, snapshot).await.map_err(RaftError::Fatal);
            encode(&answer)
        }
        RAFT_TRANSFER => {
            let request: TransferLeaderRequest<TypeConfig> = decode(payload, "TransferLeader")?;
            let answer: Result<TransferLeaderResponse<TypeConfig>, RaftError<TypeConfig>> =
                raft.handle_transfer_leader(request).await.map_err(RaftError::Fatal);
            encode(&answer)
        }
        other => Err(PeerError::handler(format!("not a raft request kind: {other}"))),
    }
}
