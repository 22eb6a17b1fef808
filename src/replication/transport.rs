//! How a follower's REPLICA_FETCH reaches its leader: a trait, so the fetch loop runs the same
//! over the broker-to-broker TCP listener and, in tests (or a simulation), over direct calls into
//! another in-process [`ReplicaManager`] with faults injected. Carries opaque frames; knows no
//! partitions.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::{NodeId, ReplicaManager};

/// A boxed, sendable future (the transport trait stays object-safe without `async_trait`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A fetch that got no answer: connection refused or lost, timeout, a handler error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replica fetch to node {node} ({addr}) failed: {reason}")]
pub struct TransportError {
    pub node: NodeId,
    pub addr: String,
    pub reason: String,
}

/// Sends one REPLICA_FETCH request frame to a leader and returns its response frame.
pub trait FetchTransport: Send + Sync + 'static {
    fn fetch<'a>(
        &'a self,
        leader: NodeId,
        addr: &'a str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Bytes, TransportError>>;
}

/// In-process brokers that reach each other's [`ReplicaManager::handle_fetch`] directly, with
/// links that a test can cut. Shared by every node of one test cluster.
#[derive(Default)]
pub struct LocalNetwork {
    nodes: Mutex<HashMap<NodeId, Weak<ReplicaManager>>>,
    /// Nodes whose every fetch, to or from, fails (a partitioned or paused broker).
    isolated: Mutex<HashSet<NodeId>>,
}

impl LocalNetwork {
    pub fn new() -> Arc<LocalNetwork> {
        Arc::new(LocalNetwork::default())
    }

    /// The transport node `me` fetches through.
    pub fn transport(self: &Arc<Self>, me: NodeId) -> Arc<dyn FetchTransport> {
        Arc::new(LocalTransport { net: self.clone(), me })
    }

    /// Makes `manager` reachable as `id`.
    pub fn register(&self, id: NodeId, manager: &Arc<ReplicaManager>) {
        lock(&self.nodes).insert(id, Arc::downgrade(manager));
    }

    /// Cuts every link of `id` (fetches to and from it fail) until [`LocalNetwork::heal`].
    pub fn isolate(&self, id: NodeId) {
        lock(&self.isolated).insert(id);
    }

    pub fn heal(&self, id: NodeId) {
        lock(&self.isolated).remove(&id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps, left consistent by every critical section: a poisoned lock is taken over.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct LocalTransport {
    net: Arc<LocalNetwork>,
    me: NodeId,
}

impl FetchTransport for LocalTransport {
    fn fetch<'a>(
        &'a self,
        leader: NodeId,
        addr: &'a str,
        request: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Bytes, TransportError>> {
        Box::pin(async move {
            let fail = |reason: &str| TransportError {
                node: leader,
                addr: addr.to_owned(),
                reason: reason.to_owned(),
            };
            let cut = {
                let iso = lock(&self.net.isolated);
                iso.contains(&self.me) || iso.contains(&leader)
            };
            if cut {
                // A dropped packet looks like silence, not a refusal: wait a little, as a timed
                // out request would, so a follower's retry loop does not spin.
                tokio::time::sleep(timeout.min(Duration::from_millis(50))).await;
                return Err(fail("link cut"));
            }
            let target = lock(&self.net.nodes).get(&leader).and_then(Weak::upgrade);
            let Some(target) = target else { return Err(fail("no such node")) };
            match tokio::time::timeout(timeout, target.handle_fetch_frame(self.me, request)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(fail(&e.to_string())),
                Err(_) => Err(fail("timed out")),
            }
        })
    }
}
