//! One client connection: read frames (length checked against the limit before any allocation;
//! a small limit until the connection has authenticated, when the broker has a token),
//! handle them one at a time in arrival order, and queue the responses; the queue is flushed with
//! vectored writes whenever no further complete request is buffered, so pipelined requests get
//! their responses in order and in few syscalls. Fetched records are never copied by the broker:
//! large slices go from the segment file's page cache to the socket with `sendfile`, small ones as
//! slices of the segment mapping. Never touches other connections.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use crate::broker::FetchResult;
use crate::cluster::Cluster;
use crate::protocol::{self, FRAME_PREFIX_LEN, ProtocolError, Request};
use crate::sendfile::{self, SENDFILE_BYTES, send_file};
use crate::storage::ReadSlice;

use super::ServerConfig;
use super::dispatch::{self, PendingReply, Reply, Session};

/// Bytes asked of the socket per read when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;
/// Frames up to this size get room for their whole body as soon as their length is checked.
const WHOLE_FRAME_RESERVE: usize = 8 * 1024 * 1024;
/// Flush queued responses once they hold this much, even if more requests are buffered.
const FLUSH_BYTES: usize = 1024 * 1024;
/// Bodies at least this big get the read buffer's allocation to themselves (no copy on append).
const ZERO_COPY_BYTES: usize = 16 * 1024;
/// Most buffers passed to one vectored write.
const MAX_IOV: usize = 64;

/// Serves one connection until the peer closes it, it sends an unreadable frame, a write fails,
/// or the server stops (after finishing the requests already received).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    cluster: Arc<Cluster>,
    config: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection opened");
    let _open = cluster.broker().metrics().connection_opened(crate::metrics::Listener::Native);
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Outbox::default();
    // Replies waiting for replicas, in request order; replies behind one wait their turn.
    let mut pending: VecDeque<(u32, PendingReply)> = VecDeque::new();
    let mut session = Session::new();
    let reason = loop {
        let limit = frame_limit(&config, &session);
        match take_frame(&mut inbuf, limit) {
            Ok(Some(body)) => {
                let (correlation_id, reply) = match protocol::decode_request_bytes(&body) {
                    Ok((id, req)) => {
                        drop(body); // so an append's records are the sole owner of their bytes
                        let long_poll = matches!(req, Request::Fetch { max_wait_ms: 1.., .. });
                        let reply =
                            dispatch::handle(req, &cluster, &config, &mut session, &mut stop);
                        let reply = if long_poll {
                            match watching_peer(reply, &mut rd, &mut inbuf).await {
                                Some(reply) => reply,
                                None => break "closed by peer during a long poll",
                            }
                        } else {
                            reply.await
                        };
                        (id, reply)
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "bad request: {e}");
                        let id = protocol::peek_correlation_id(&body).unwrap_or(0);
                        (id, Reply::Response(dispatch::error_response(e.code(), e.to_string())))
                    }
                };
                match reply {
                    Reply::Pending(f) => pending.push_back((correlation_id, f)),
                    ready if !pending.is_empty() => {
                        pending.push_back((correlation_id, Box::pin(std::future::ready(ready))))
                    }
                    ready => out.push(correlation_id, ready),
                }
                move_ready(&mut pending, &mut out).await;
                if session.close {
                    tracing::warn!(%peer, "authentication failed: connection refused");
                    let _ = out.flush(&mut wr).await;
                    break "not authenticated";
                }
                if out.bytes >= FLUSH_BYTES && out.flush(&mut wr).await.is_err() {
                    break "write failed";
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                // The stream cannot be resynchronised after a bad length: answer and close.
                if limit < config.max_frame_bytes {
                    tracing::warn!(%peer, error = %e,
                        "large frame before authenticating: connection closed");
                } else {
                    tracing::debug!(%peer, "unreadable frame: {e}");
                }
                let resp = dispatch::error_response(e.code(), e.to_string());
                out.push(0, Reply::Response(resp));
                let _ = out.flush(&mut wr).await;
                break "unreadable frame";
            }
        }
        // No complete request buffered: send what is queued before waiting for more input.
        if !out.is_empty() && out.flush(&mut wr).await.is_err() {
            break "write failed";
        }
        if *stop.borrow() {
            // Requests already appended get their answers before the connection closes.
            while let Some((id, f)) = pending.pop_front() {
                out.push(id, f.await);
            }
            let _ = out.flush(&mut wr).await;
            break "server stopping";
        }
        reserve_for_next_frame(&mut inbuf);
        tokio::select! {
            read = rd.read_buf(&mut inbuf) => match read {
                Ok(0) => break "closed by peer",
                Ok(_) => {}
                Err(_) => break "read failed",
            },
            reply = next_pending(&mut pending), if !pending.is_empty() => {
                if let Some((id, _)) = pending.pop_front() {
                    out.push(id, reply);
                }
                move_ready(&mut pending, &mut out).await;
            }
            _ = stop.changed() => {}
        }
    };
    let _ = wr.shutdown().await;
    tracing::debug!(%peer, reason, "connection closed");
}

/// Moves the replies at the front of `pending` that are ready to the outbox, in order.
async fn move_ready(pending: &mut VecDeque<(u32, PendingReply)>, out: &mut Outbox) {
    while let Some((_, f)) = pending.front_mut() {
        match futures::future::poll_immediate(f.as_mut()).await {
            Some(reply) => {
                if let Some((id, _)) = pending.pop_front() {
                    out.push(id, reply);
                }
            }
            None => return,
        }
    }
}

/// Waits for the oldest pending reply (which stays queued until the caller pops it).
async fn next_pending(pending: &mut VecDeque<(u32, PendingReply)>) -> Reply {
    match pending.front_mut() {
        Some((_, f)) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The frame limit for this connection now (`super::frame_limit`).
fn frame_limit(config: &ServerConfig, session: &Session) -> u32 {
    super::frame_limit(config.auth_token.is_some(), session.authenticated, config.max_frame_bytes)
}

/// Runs a long-poll fetch while watching the socket: a peer that hangs up mid-wait ends the
/// wait (`None`) instead of holding its connection slot until `max_wait`; bytes it pipelines
/// meanwhile are buffered (up to `READ_CHUNK`) for the requests that follow. TCP cannot tell a
/// half-close from a hang-up, so a peer that shuts its sending side during a long poll is taken
/// as gone.
async fn watching_peer(
    reply: impl Future<Output = Reply>,
    rd: &mut OwnedReadHalf,
    inbuf: &mut BytesMut,
) -> Option<Reply> {
    tokio::pin!(reply);
    loop {
        let room = inbuf.len() < READ_CHUNK;
        if room {
            inbuf.reserve(READ_CHUNK - inbuf.len());
        }
        tokio::select! {
            reply = &mut reply => return Some(reply),
            read = rd.read_buf(inbuf), if room => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
        }
    }
}

/// Splits the next complete frame's body off `inbuf`, if it holds one. A bad length prefix is
/// an error before anything is allocated for it.
fn take_frame(inbuf: &mut BytesMut, max_frame_bytes: u32) -> Result<Option<Bytes>, ProtocolError> {
    if inbuf.len() < FRAME_PREFIX_LEN {
        return Ok(None);
    }
    let prefix = [inbuf[0], inbuf[1], inbuf[2], inbuf[3]];
    let len = protocol::frame_len(prefix, max_frame_bytes)?;
    if inbuf.len() - FRAME_PREFIX_LEN < len {
        return Ok(None);
    }
    inbuf.advance(FRAME_PREFIX_LEN);
    let body = inbuf.split_to(len).freeze();
    if inbuf.is_empty() && len >= ZERO_COPY_BYTES {
        // Drop our share of the allocation so the body (an append's records) is uniquely owned
        // and can be written to disk in place. Small bodies are cheaper to copy than to
        // reallocate the read buffer for.
        *inbuf = BytesMut::new();
    }
    Ok(Some(body))
}

/// Makes room for one more read. A partly received frame (its length already checked against
/// the limit by `take_frame`) of up to `WHOLE_FRAME_RESERVE` gets room for all of it at once, so
/// its bytes are received straight into place: growing step by step copied every large produce
/// batch once more (a `memmove` at 12 % of the broker's CPU in 1 KiB produce). Untouched room is
/// only virtual memory until bytes arrive. For a larger frame the room grows with what has
/// arrived, at most doubling, so a peer that announces a huge frame and sends little of it
/// costs little memory.
fn reserve_for_next_frame(inbuf: &mut BytesMut) {
    let mut want = READ_CHUNK;
    if inbuf.len() >= FRAME_PREFIX_LEN {
        let len = u32::from_le_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]) as usize;
        let missing = FRAME_PREFIX_LEN + len - inbuf.len();
        want =
            if len <= WHOLE_FRAME_RESERVE { missing } else { missing.min(want.max(inbuf.len())) };
    }
    inbuf.reserve(want);
}

enum Chunk {
    Bytes(Bytes),
    Records(ReadSlice),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Bytes(b) => b,
            Chunk::Records(r) => r.bytes(),
        }
    }
}

/// Responses waiting to be written, in order: encoded heads and bodies, and fetched record
/// slices referenced (not copied) from the segment mappings.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    written: usize,
    bytes: usize,
    scratch: BytesMut,
    /// Set once `sendfile` failed as unsupported: write from the mapping from then on.
    no_sendfile: bool,
}

/// Where the outbox writes: any async writer, and for a TCP socket also `sendfile`.
trait Sink: AsyncWrite + Unpin {
    /// The socket under the writer, when file ranges can be sent to it with `sendfile`.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl Sink for OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn push(&mut self, correlation_id: u32, reply: Reply) {
        match reply {
            Reply::Response(resp) => {
                protocol::encode_response(&mut self.scratch, correlation_id, &resp);
                self.push_scratch();
            }
            Reply::Fetched(f) => self.push_fetched(correlation_id, f),
            // The connection resolves pending replies before queueing them; answer rather than
            // lose the request if one ever arrives here.
            Reply::Pending(_) => {
                let resp = dispatch::error_response(
                    protocol::ErrorCode::Internal,
                    "a reply was queued before it was ready".to_string(),
                );
                protocol::encode_response(&mut self.scratch, correlation_id, &resp);
                self.push_scratch();
            }
        }
    }

    fn push_fetched(&mut self, correlation_id: u32, f: FetchResult) {
        let FetchResult { partition, records, log_start_offset, high_watermark } = f;
        // A fetch is capped well below the frame limit, itself a u32.
        let len = u32::try_from(records.len()).unwrap_or(u32::MAX);
        protocol::encode_fetched_head(
            &mut self.scratch,
            correlation_id,
            partition,
            log_start_offset,
            high_watermark,
            len,
        );
        self.push_scratch();
        if !records.is_empty() {
            self.bytes += records.len();
            self.chunks.push_back(Chunk::Records(records));
        }
    }

    fn push_scratch(&mut self) {
        let b = self.scratch.split().freeze();
        self.bytes += b.len();
        self.chunks.push_back(Chunk::Bytes(b));
    }

    /// Writes everything queued: fetched record slices of at least `SENDFILE_BYTES` with
    /// `sendfile` when the sink is a socket, everything else with vectored writes.
    async fn flush<W: Sink>(&mut self, w: &mut W) -> io::Result<()> {
        while let Some(front) = self.chunks.front() {
            if let Chunk::Records(r) = front
                && self.sends_file(r)
                && let Some(sock) = w.socket()
            {
                let (file, pos) = r.file_range();
                let left = r.len() - self.written;
                match send_file(sock, file, pos + self.written as u64, left).await {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.advance(n),
                    // A file system without sendfile support: write from the mapping instead.
                    Err(e) if sendfile::unsupported(&e) => {
                        tracing::debug!("sendfile unsupported ({e}); writing from the mapping");
                        self.no_sendfile = true;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            let can_send_file = w.socket().is_some();
            let n = {
                let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_IOV.min(self.chunks.len()));
                for (i, c) in self.chunks.iter().take(MAX_IOV).enumerate() {
                    if i > 0
                        && can_send_file
                        && matches!(c, Chunk::Records(r) if self.sends_file(r))
                    {
                        break; // goes out by itself, next round
                    }
                    let s = c.as_slice();
                    iov.push(IoSlice::new(if i == 0 { &s[self.written..] } else { s }));
                }
                w.write_vectored(&iov).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        self.bytes = 0;
        w.flush().await
    }

    /// Whether a fetched slice goes out with `sendfile` (given a socket to send to).
    fn sends_file(&self, r: &ReadSlice) -> bool {
        !self.no_sendfile && r.len() >= SENDFILE_BYTES
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front() else { return };
            let left = front.as_slice().len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.chunks.pop_front();
        }
        // Drop fully written chunks of zero length, if any remain at the front.
        while self.chunks.front().is_some_and(|c| c.as_slice().is_empty()) {
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Sink for tokio::io::DuplexStream {}
    use crate::protocol::Response;

    #[test]
    fn take_frame_waits_for_whole_frames_and_refuses_huge_ones() {
        let mut buf = BytesMut::new();
        protocol::encode_request(&mut buf, 7, &protocol::Request::ListTopics);
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(take_frame(&mut partial, 1024).unwrap(), None);
        let mut two = BytesMut::new();
        two.extend_from_slice(&whole);
        two.extend_from_slice(&whole);
        assert_eq!(
            take_frame(&mut two, 1024).unwrap().unwrap(),
            Bytes::copy_from_slice(&whole[4..])
        );
        assert_eq!(
            take_frame(&mut two, 1024).unwrap().unwrap(),
            Bytes::copy_from_slice(&whole[4..])
        );
        assert!(two.is_empty());
        let mut huge = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert!(matches!(take_frame(&mut huge, 1024), Err(ProtocolError::FrameTooLarge { .. })));
    }

    #[test]
    fn a_large_append_body_is_written_in_place_not_copied() {
        let mut inbuf = BytesMut::new();
        let req = protocol::Request::Append {
            topic: "t".into(),
            partition: Some(0),
            key_hint: None,
            records: Bytes::from(vec![1u8; 2 * ZERO_COPY_BYTES]),
        };
        protocol::encode_request(&mut inbuf, 1, &req);
        let body = take_frame(&mut inbuf, protocol::MAX_FRAME_BYTES).unwrap().unwrap();
        let (_, req) = protocol::decode_request_bytes(&body).unwrap();
        let protocol::Request::Append { records, .. } = req else { panic!("an append") };
        let at = records.as_ptr();
        drop(body);
        let owned = records.try_into_mut().expect("the records own their allocation");
        assert_eq!(owned.as_ptr(), at);
    }

    #[test]
    fn a_produce_sized_frame_gets_room_for_all_of_it_at_once() {
        let len = 1usize << 20;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&[7; 1000]);
        assert_eq!(take_frame(&mut buf, protocol::MAX_FRAME_BYTES).unwrap(), None);
        reserve_for_next_frame(&mut buf);
        assert!(buf.capacity() >= FRAME_PREFIX_LEN + len, "capacity {}", buf.capacity());
        // Receiving the rest never moves the bytes already received.
        let at = buf.as_ptr();
        buf.resize(FRAME_PREFIX_LEN + len, 0);
        assert_eq!(buf.as_ptr(), at);
        assert_eq!(buf[FRAME_PREFIX_LEN + 999], 7);
    }

    #[test]
    fn a_large_announced_frame_gets_room_only_as_its_bytes_arrive() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(32u32 << 20).to_le_bytes());
        buf.extend_from_slice(&[0; 10]);
        assert_eq!(take_frame(&mut buf, protocol::MAX_FRAME_BYTES).unwrap(), None);
        reserve_for_next_frame(&mut buf);
        assert!(buf.capacity() < 4 * READ_CHUNK, "capacity {}", buf.capacity());
        // Once most of it is here, the rest is reserved exactly.
        buf.resize(FRAME_PREFIX_LEN + (32 << 20) - 100, 0);
        reserve_for_next_frame(&mut buf);
        assert!(buf.capacity() - buf.len() >= 100);
    }

    #[tokio::test]
    async fn outbox_writes_every_chunk_in_order_across_short_writes() {
        let mut out = Outbox::default();
        for i in 0..100u32 {
            out.push(i, Reply::Response(Response::Trimmed { log_start_offset: u64::from(i) }));
        }
        // A duplex pipe with a tiny buffer forces many partial vectored writes.
        let (mut a, mut b) = tokio::io::duplex(7);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.unwrap();
            all
        });
        out.flush(&mut a).await.unwrap();
        drop(a);
        let all = reader.await.unwrap();
        let mut rest = &all[..];
        for i in 0..100u32 {
            let len = protocol::frame_len(rest[..4].try_into().unwrap(), 1024).unwrap();
            let (id, resp) = protocol::decode_response(&rest[4..4 + len]).unwrap();
            assert_eq!((id, resp), (i, Response::Trimmed { log_start_offset: u64::from(i) }));
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty());
        assert!(out.is_empty());
    }
}
