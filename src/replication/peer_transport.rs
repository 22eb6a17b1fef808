//! [`FetchTransport`] over the broker-to-broker listener: one pooled [`PeerClient`] per leader
//! address, requests of kind REPLICA_FETCH. Carries frames; knows no partitions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::NodeId;
use super::transport::{BoxFuture, FetchTransport, TransportError};
use crate::peer::{PeerClient, REPLICA_FETCH};

pub struct PeerTransport {
    my_id: NodeId,
    token: Option<String>,
    clients: Mutex<HashMap<String, PeerClient>>,
}

impl PeerTransport {
    pub fn new(my_id: NodeId, token: Option<String>) -> PeerTransport {
        PeerTransport { my_id, token, clients: Mutex::new(HashMap::new()) }
    }

    fn client(&self, addr: &str) -> PeerClient {
        // A plain map, consistent after every insert: a poisoned lock is taken over.
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| PeerClient::new(self.my_id, addr.to_owned(), self.token.clone()))
            .clone()
    }
}

impl FetchTransport for PeerTransport {
    fn fetch<'a>(
        &'a self,
        leader: NodeId,
        addr: &'a str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Bytes, TransportError>> {
        Box::pin(async move {
            self.client(addr).call(REPLICA_FETCH, request, timeout).await.map_err(|e| {
                TransportError { node: leader, addr: addr.to_owned(), reason: e.to_string() }
            })
        })
    }
}
