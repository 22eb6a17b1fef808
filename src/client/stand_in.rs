//! Test support: the two halves of a stand-in broker's loop (read one request, answer it), so the
//! client's unit tests can script a broker in a few lines. Compiled only for tests.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{self, MAX_FRAME_BYTES, Request, Response};

/// The next request on `sock` with its correlation id, or `None` once the client has closed.
pub(crate) async fn read_request(sock: &mut TcpStream) -> Option<(u32, Request)> {
    let mut prefix = [0u8; 4];
    sock.read_exact(&mut prefix).await.ok()?;
    // A test's own client sends well-formed frames: anything else is a bug in the test.
    let len = protocol::frame_len(prefix, MAX_FRAME_BYTES).expect("frame length");
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.expect("frame body");
    Some(protocol::decode_request(&body).expect("request"))
}

/// Answers request `id` with `resp`.
pub(crate) async fn respond(sock: &mut TcpStream, id: u32, resp: &Response) {
    let mut out = BytesMut::new();
    protocol::encode_response(&mut out, id, resp);
    sock.write_all(&out).await.expect("write response");
}
