//! The frame codec and the `Hello` handshake. A frame's declared length is checked against a
//! limit before anything is allocated for it; a malformed frame is an error, never a panic.
//!
//! | offset | size   | field   | encoding                                            |
//! |--------|--------|---------|-----------------------------------------------------|
//! | 0      | 4      | length  | u32 big-endian: bytes after this field (kind + payload), >= 1 |
//! | 4      | 1      | kind    | u8: `HELLO`, `RAFT_APPEND`, ... `ERROR` (see `peer`) |
//! | 5      | len-1  | payload | opaque to the transport (JSON for HELLO, UTF-8 text for ERROR) |

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PeerError;

/// Largest frame accepted from an authenticated peer: a Raft snapshot (the metadata image as
/// JSON) or a replica fetch response travels in one frame.
pub const MAX_FRAME_BYTES: u32 = 256 * 1024 * 1024;

/// Largest frame accepted before the `Hello` is accepted: a stranger announcing a large frame is
/// cut off before anything is buffered for it.
pub const PRE_AUTH_MAX_FRAME_BYTES: u32 = 64 * 1024;

const HEADER_BYTES: usize = 5;

/// The first frame a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: u64,
    pub token: Option<String>,
}

/// Reads one frame, refusing a declared length over `max` before reading or allocating the
/// payload. `Ok(None)` is a clean end of stream between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    addr: &str,
) -> Result<Option<(u8, Bytes)>, PeerError> {
    let mut header = [0u8; HEADER_BYTES];
    // The first byte separately: EOF before it is a clean close, EOF after it a torn frame.
    match reader.read(&mut header[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(source) => return Err(io_error(addr, source)),
    }
    // Only the length's remaining bytes first: an oversized length is refused without waiting
    // for (or reading) anything after it.
    reader.read_exact(&mut header[1..4]).await.map_err(|e| io_error(addr, e))?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len > max {
        return Err(PeerError::FrameTooLarge { addr: addr.to_string(), len, max });
    }
    if len == 0 {
        return Err(PeerError::Malformed {
            addr: addr.to_string(),
            reason: "frame length 0 (a frame holds at least its kind)".into(),
        });
    }
    reader.read_exact(&mut header[4..5]).await.map_err(|e| io_error(addr, e))?;
    let kind = header[4];
    // `len <= max` was checked above, so this allocation is bounded by the limit.
    let mut payload = vec![0u8; len as usize - 1];
    reader.read_exact(&mut payload).await.map_err(|e| io_error(addr, e))?;
    Ok(Some((kind, Bytes::from(payload))))
}

/// Writes one frame. The caller flushes if its writer buffers.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: u8,
    payload: &[u8],
    addr: &str,
) -> Result<(), PeerError> {
    let len = u32::try_from(payload.len() + 1)
        .ok()
        .filter(|len| *len <= MAX_FRAME_BYTES)
        .ok_or_else(|| PeerError::FrameTooLarge {
            addr: addr.to_string(),
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            max: MAX_FRAME_BYTES,
        })?;
    let mut header = [0u8; HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4] = kind;
    if payload.len() <= 4096 {
        // Small frames in one write: one segment on the wire instead of two.
        let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        writer.write_all(&buf).await.map_err(|e| io_error(addr, e))?;
    } else {
        writer.write_all(&header).await.map_err(|e| io_error(addr, e))?;
        writer.write_all(payload).await.map_err(|e| io_error(addr, e))?;
    }
    writer.flush().await.map_err(|e| io_error(addr, e))
}

fn io_error(addr: &str, source: std::io::Error) -> PeerError {
    if source.kind() == std::io::ErrorKind::UnexpectedEof {
        PeerError::Closed { addr: addr.to_string() }
    } else {
        PeerError::Io { addr: addr.to_string(), source }
    }
}

/// Compares the configured token with a presented one in time that depends only on the
/// presented token's length, so timing tells a caller nothing about the secret.
pub(crate) fn tokens_equal(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return presented.is_empty();
    }
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, p) in presented.iter().enumerate() {
        diff |= expected[i % expected.len()] ^ p;
    }
    diff == 0
}
