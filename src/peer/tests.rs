//! The transport as a broker sees it: a request answered, a stranger refused, an oversized
//! frame cut off before it is buffered, and a client that finds a restarted peer again.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::frame::{self, Hello};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

/// Answers RAFT_VOTE with "node <from> said <payload>", refuses every other kind.
struct Echo;

impl PeerHandler for Echo {
    fn handle(
        &self,
        from: u64,
        kind: u8,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, PeerError>> + Send + '_>> {
        Box::pin(async move {
            match kind {
                RAFT_VOTE => {
                    let text = String::from_utf8_lossy(&payload).into_owned();
                    Ok(Bytes::from(format!("node {from} said {text}")))
                }
                _ => Err(PeerError::UnknownKind { from, kind }),
            }
        })
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), PeerError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result =
            tokio::time::timeout(WAIT, self.task).await.expect("server stops").expect("task");
        result.expect("server ran cleanly");
    }
}

async fn start(addr: SocketAddr, token: Option<&str>) -> Running {
    let server = PeerServer::bind(addr, token.map(String::from), false).await.expect("bind");
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(Arc::new(Echo), async {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), task }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

#[tokio::test]
async fn a_request_is_answered_and_a_handler_error_comes_back_as_text() {
    let server = start(loopback(), Some("s3cret")).await;
    let client = PeerClient::new(7, server.addr.to_string(), Some("s3cret".into()));

    let answer = client.call(RAFT_VOTE, Bytes::from_static(b"hi"), WAIT).await.expect("answered");
    assert_eq!(&answer[..], b"node 7 said hi");
    // A second call reuses the connection and still works.
    let answer =
        client.call(RAFT_VOTE, Bytes::from_static(b"again"), WAIT).await.expect("answered");
    assert_eq!(&answer[..], b"node 7 said again");

    let err = client.call(REPLICA_FETCH, Bytes::new(), WAIT).await.expect_err("refused");
    match err {
        PeerError::Remote { message, .. } => {
            assert!(message.contains("unknown request kind 6"), "{message}")
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    // The connection survives a handler's error.
    let answer =
        client.call(RAFT_VOTE, Bytes::from_static(b"after"), WAIT).await.expect("answered");
    assert_eq!(&answer[..], b"node 7 said after");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused() {
    let server = start(loopback(), Some("s3cret")).await;
    for token in [Some("wrong".to_string()), Some("s3cret-and-more".to_string()), None] {
        let client = PeerClient::new(1, server.addr.to_string(), token.clone());
        let err = client
            .call(RAFT_VOTE, Bytes::from_static(b"vote for me"), WAIT)
            .await
            .expect_err("refused");
        assert!(matches!(err, PeerError::Unauthorized { .. }), "token {token:?}: {err:?}");
    }

    // On the wire: the server answers the bad Hello with ERROR and closes the connection.
    let mut raw = TcpStream::connect(server.addr).await.expect("connect");
    let hello =
        serde_json::to_vec(&Hello { node_id: 1, token: Some("wrong".into()) }).expect("json");
    frame::write_frame(&mut raw, HELLO, &hello, "test").await.expect("write");
    let (kind, _) =
        frame::read_frame(&mut raw, MAX_FRAME_BYTES, "test").await.expect("read").expect("frame");
    assert_eq!(kind, ERROR);
    assert_eq!(read_to_end(&mut raw).await, 0, "nothing follows the refusal but the close");
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_only_loopback_is_allowed_unless_remote_is_allowed() {
    let any: SocketAddr = "0.0.0.0:0".parse().expect("literal address");
    let err = PeerServer::bind(any, None, false).await.err().expect("refused");
    assert!(matches!(err, PeerError::RemoteWithoutToken { .. }), "{err:?}");
    PeerServer::bind(any, Some("t".into()), false).await.expect("a token allows any address");
    PeerServer::bind(any, None, true).await.expect("allowed explicitly");
    PeerServer::bind(loopback(), None, false).await.expect("loopback needs no token");
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_its_payload_is_read() {
    // The reader holds the header only: had the codec tried to read (or size a buffer for) the
    // 4 GB it announces, it would fail with a torn frame, not with the size limit.
    let mut header: &[u8] = &[0xff, 0xff, 0xff, 0xff, RAFT_APPEND];
    let err = frame::read_frame(&mut header, MAX_FRAME_BYTES, "test").await.expect_err("refused");
    assert!(matches!(err, PeerError::FrameTooLarge { len: u32::MAX, .. }), "{err:?}");

    // A server cuts off a stranger announcing more than a Hello's worth before the handshake,
    // and an authenticated peer announcing more than the frame limit.
    let server = start(loopback(), None).await;
    let mut raw = TcpStream::connect(server.addr).await.expect("connect");
    raw.write_all(&(PRE_AUTH_MAX_FRAME_BYTES + 1).to_be_bytes()).await.expect("write");
    assert_eq!(read_to_end(&mut raw).await, 0, "closed without an answer");

    let mut raw = TcpStream::connect(server.addr).await.expect("connect");
    let hello = serde_json::to_vec(&Hello { node_id: 3, token: None }).expect("json");
    frame::write_frame(&mut raw, HELLO, &hello, "test").await.expect("write");
    let (kind, _) =
        frame::read_frame(&mut raw, MAX_FRAME_BYTES, "test").await.expect("read").expect("frame");
    assert_eq!(kind, HELLO);
    raw.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes()).await.expect("write");
    let (kind, message) =
        frame::read_frame(&mut raw, MAX_FRAME_BYTES, "test").await.expect("read").expect("frame");
    assert_eq!(kind, ERROR);
    assert!(String::from_utf8_lossy(&message).contains("exceeds the limit"));
    assert_eq!(read_to_end(&mut raw).await, 0, "then closed");

    // The server itself is unharmed.
    let client = PeerClient::new(4, server.addr.to_string(), None);
    client.call(RAFT_VOTE, Bytes::from_static(b"ok"), WAIT).await.expect("still serving");
    server.stop().await;
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_restarts() {
    let server = start(loopback(), Some("t")).await;
    let addr = server.addr;
    let client = PeerClient::new(2, addr.to_string(), Some("t".into()));
    client.call(RAFT_VOTE, Bytes::from_static(b"one"), WAIT).await.expect("answered");

    server.stop().await;
    let err = client
        .call(RAFT_VOTE, Bytes::from_static(b"down"), WAIT)
        .await
        .expect_err("nobody listens");
    assert!(err.is_connection_failure(), "{err:?}");

    // Same port, a new server: the pooled connection to the old one is dead, the client opens
    // a new one on its own.
    let server = start(addr, Some("t")).await;
    let answer =
        client.call(RAFT_VOTE, Bytes::from_static(b"two"), WAIT).await.expect("answered again");
    assert_eq!(&answer[..], b"node 2 said two");
    server.stop().await;
}

#[tokio::test]
async fn a_call_to_a_peer_that_never_answers_times_out() {
    // A listener that accepts and never reads: the handshake never completes.
    let listener = tokio::net::TcpListener::bind(loopback()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(WAIT).await;
        drop(stream);
    });
    let client = PeerClient::new(1, addr.to_string(), None);
    let err = client
        .call(RAFT_VOTE, Bytes::new(), Duration::from_millis(200))
        .await
        .expect_err("no answer");
    assert!(matches!(err, PeerError::Timeout { .. }), "{err:?}");
    hold.abort();
}

async fn read_to_end(stream: &mut TcpStream) -> usize {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    rest.len()
}
