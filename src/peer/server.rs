//! The cluster listener: accepts broker connections (up to [`MAX_PEER_CONNECTIONS`]), checks
//! each one's `Hello` and token, then serves its requests one at a time through a
//! [`PeerHandler`]. Refuses to listen beyond loopback without a token unless told to. Never
//! interprets a request's payload.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::frame::{self, Hello, MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAME_BYTES};
use super::{ERROR, HELLO, PeerError};

/// At most this many broker connections at once: a cluster of a few brokers opens a handful
/// each; anything beyond is refused rather than allowed to exhaust descriptors.
pub const MAX_PEER_CONNECTIONS: usize = 1024;

/// A connection must say `Hello` within this time or is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the cluster listener calls for every request after the handshake. `from` is the node id
/// the caller gave in its `Hello`; the answer's bytes go back in a frame of the same kind, an
/// error as an ERROR frame carrying its text.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(
        &self,
        from: u64,
        kind: u8,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, PeerError>> + Send + '_>>;
}

pub struct PeerServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    token: Option<Arc<str>>,
}

impl PeerServer {
    /// Binds the cluster listener. Without a token only a loopback address is accepted, unless
    /// `allow_remote` says the operator wants unauthenticated brokers on the network.
    pub async fn bind(
        addr: SocketAddr,
        token: Option<String>,
        allow_remote: bool,
    ) -> Result<PeerServer, PeerError> {
        if token.is_none() && !addr.ip().is_loopback() && !allow_remote {
            return Err(PeerError::RemoteWithoutToken { addr });
        }
        let listener =
            TcpListener::bind(addr).await.map_err(|source| PeerError::Bind { addr, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| PeerError::Bind { addr, source })?;
        Ok(PeerServer { listener, local_addr, token: token.map(Arc::from) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets each connection finish the
    /// request it is serving (bounded by a grace period) and closes them all.
    pub async fn run(
        self,
        handler: Arc<dyn PeerHandler>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), PeerError> {
        let PeerServer { listener, local_addr, token } = self;
        tracing::info!(addr = %local_addr, "cluster listener up");
        let permits = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) if is_transient_accept_error(&e) => {
                            // Out of descriptors and the like: back off, keep serving.
                            tracing::warn!(addr = %local_addr, "accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(source) => break Err(PeerError::Accept { addr: local_addr, source }),
                    };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, max = MAX_PEER_CONNECTIONS, "peer connection refused: limit reached");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let token = token.clone();
                    let stop = stop_rx.clone();
                    let span = tracing::info_span!("peer_connection", %peer);
                    connections.spawn(
                        async move {
                            serve_connection(stream, peer, token, handler, stop).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(addr = %local_addr, "peer connections still busy after {SHUTDOWN_GRACE:?}; closing them");
            connections.shutdown().await;
        }
        tracing::info!(addr = %local_addr, "cluster listener closed");
        result
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    token: Option<Arc<str>>,
    handler: Arc<dyn PeerHandler>,
    mut stop: watch::Receiver<bool>,
) {
    let addr = peer.to_string();
    let from =
        match tokio::time::timeout(HELLO_TIMEOUT, handshake(&mut stream, &addr, token.as_deref()))
            .await
        {
            Ok(Ok(from)) => from,
            Ok(Err(e)) => {
                tracing::warn!("peer handshake refused: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!("peer sent no Hello within {HELLO_TIMEOUT:?}; closing");
                return;
            }
        };
    tracing::debug!(node = from, "peer connected");
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            next = frame::read_frame(&mut stream, MAX_FRAME_BYTES, &addr) => next,
        };
        let (kind, payload) = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(node = from, "closing peer connection: {e}");
                // Tell the peer why (best effort), then close: the stream is out of step.
                let _ =
                    frame::write_frame(&mut stream, ERROR, e.to_string().as_bytes(), &addr).await;
                return;
            }
        };
        let (answer_kind, answer) = match handler.handle(from, kind, payload).await {
            Ok(bytes) => (kind, bytes),
            Err(e) => (ERROR, Bytes::from(e.to_string())),
        };
        if let Err(e) = frame::write_frame(&mut stream, answer_kind, &answer, &addr).await {
            tracing::debug!(node = from, "peer connection lost: {e}");
            return;
        }
    }
}

/// Reads and checks the `Hello`; answers it with an empty HELLO. A wrong or missing token is
/// answered with an ERROR and the connection is closed by the caller.
async fn handshake(
    stream: &mut TcpStream,
    addr: &str,
    token: Option<&str>,
) -> Result<u64, PeerError> {
    let (kind, payload) = frame::read_frame(stream, PRE_AUTH_MAX_FRAME_BYTES, addr)
        .await?
        .ok_or_else(|| PeerError::Closed { addr: addr.to_string() })?;
    if kind != HELLO {
        return Err(PeerError::Malformed {
            addr: addr.to_string(),
            reason: format!("first frame has kind {kind}, expected HELLO"),
        });
    }
    let hello: Hello = serde_json::from_slice(&payload).map_err(|e| PeerError::Malformed {
        addr: addr.to_string(),
        reason: format!("bad Hello: {e}"),
    })?;
    if let Some(expected) = token {
        let presented = hello.token.as_deref().unwrap_or("");
        if hello.token.is_none() || !frame::tokens_equal(expected.as_bytes(), presented.as_bytes())
        {
            let _ = frame::write_frame(stream, ERROR, b"authentication failed", addr).await;
            return Err(PeerError::Unauthorized { addr: addr.to_string() });
        }
    }
    frame::write_frame(stream, HELLO, &[], addr).await?;
    Ok(hello.node_id)
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
}
