//! The calling side of the cluster transport: a cheap, cloneable handle to one peer address
//! that connects on first use, says `Hello`, and keeps a few idle connections for reuse. Each
//! connection carries one request at a time; a connection that failed, timed out or was closed
//! by the peer is dropped and the next call opens a fresh one, so a restarted peer is reached
//! again without anyone noticing. Never retries a request itself: whether a request may be
//! repeated is its caller's call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::frame::{self, Hello, MAX_FRAME_BYTES};
use super::{ERROR, HELLO, PeerError};

/// Idle connections kept per peer; more concurrent calls open more connections, which are
/// closed instead of pooled once done.
const MAX_IDLE_CONNECTIONS: usize = 4;

#[derive(Clone)]
pub struct PeerClient {
    inner: Arc<Inner>,
}

struct Inner {
    my_id: u64,
    addr: String,
    token: Option<String>,
    idle: Mutex<Vec<TcpStream>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the token.
        f.debug_struct("PeerClient")
            .field("my_id", &self.inner.my_id)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl PeerClient {
    /// A handle to the peer at `addr` (host:port); no connection is made until the first call.
    pub fn new(my_id: u64, addr: String, token: Option<String>) -> PeerClient {
        PeerClient { inner: Arc::new(Inner { my_id, addr, token, idle: Mutex::new(Vec::new()) }) }
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Sends one request and waits for its answer, all within `timeout` (connecting and the
    /// handshake included). An ERROR answer is [`PeerError::Remote`].
    pub async fn call(
        &self,
        kind: u8,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        let addr = &self.inner.addr;
        match tokio::time::timeout(timeout, self.call_inner(kind, payload)).await {
            Ok(result) => result,
            // The connection in use is dropped with the future: its answer can never be
            // mistaken for the next request's.
            Err(_) => Err(PeerError::Timeout { addr: addr.clone(), timeout }),
        }
    }

    async fn call_inner(&self, kind: u8, payload: Bytes) -> Result<Bytes, PeerError> {
        let addr = &self.inner.addr;
        let mut stream = match self.take_idle() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        frame::write_frame(&mut stream, kind, &payload, addr).await?;
        let (answer_kind, answer) = frame::read_frame(&mut stream, MAX_FRAME_BYTES, addr)
            .await?
            .ok_or_else(|| PeerError::Closed { addr: addr.clone() })?;
        if answer_kind == ERROR {
            // The server keeps the connection after a handler's error; an ERROR about the
            // stream itself is followed by a close, which the idle check below catches.
            self.put_idle(stream);
            return Err(PeerError::Remote {
                addr: addr.clone(),
                message: String::from_utf8_lossy(&answer).into_owned(),
            });
        }
        if answer_kind != kind {
            return Err(PeerError::Malformed {
                addr: addr.clone(),
                reason: format!("answer of kind {answer_kind} to a request of kind {kind}"),
            });
        }
        self.put_idle(stream);
        Ok(answer)
    }

    /// An idle connection the peer has not closed meanwhile (a restarted peer closed them all).
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(stream) = idle.pop() {
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                // Nothing to read: open and idle, as a connection between requests must be.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                // EOF, an error, or bytes nobody asked for: the connection is unusable.
                _ => continue,
            }
        }
        None
    }

    fn put_idle(&self, stream: TcpStream) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(stream);
        }
    }

    async fn connect(&self) -> Result<TcpStream, PeerError> {
        let addr = &self.inner.addr;
        let mut stream = TcpStream::connect(addr.as_str())
            .await
            .map_err(|source| PeerError::Connect { addr: addr.clone(), source })?;
        let _ = stream.set_nodelay(true);
        let hello = Hello { node_id: self.inner.my_id, token: self.inner.token.clone() };
        // Serializing a struct of an integer and an optional string cannot fail.
        let payload = serde_json::to_vec(&hello).expect("Hello serializes");
        frame::write_frame(&mut stream, HELLO, &payload, addr).await?;
        match frame::read_frame(&mut stream, MAX_FRAME_BYTES, addr).await? {
            Some((HELLO, _)) => Ok(stream),
            // The server answers a Hello with ERROR only for a wrong or missing token.
            Some((ERROR, _)) => Err(PeerError::Unauthorized { addr: addr.clone() }),
            None => Err(PeerError::Closed { addr: addr.clone() }),
            Some((kind, _)) => Err(PeerError::Malformed {
                addr: addr.clone(),
                reason: format!("answer of kind {kind} to HELLO"),
            }),
        }
    }
}
