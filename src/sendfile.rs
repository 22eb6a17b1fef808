//! Sending a range of a segment file to a TCP socket straight from the page cache (`sendfile`),
//! for both listeners' fetches: the broker never copies fetched batches, nor touches their
//! memory mapping (whose pages it releases as it reads). Owns no protocol and no buffering.

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::storage::ReadSlice;

/// Slices at least this big go out with `sendfile`; smaller ones are cheaper to copy along with
/// the bytes around them.
pub(crate) const SENDFILE_BYTES: usize = 64 * 1024;

/// Sends up to `len` bytes of `file` from `pos` to the socket. Returns the bytes sent.
pub(crate) async fn send_file(
    sock: &TcpStream,
    file: &std::fs::File,
    pos: u64,
    len: usize,
) -> io::Result<usize> {
    loop {
        sock.writable().await?;
        let mut at = pos;
        match sock.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(sock, file, Some(&mut at), len).map_err(io::Error::from)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Whether `e` says the file system cannot `sendfile` (the caller writes from the mapping).
pub(crate) fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// Sends all of `slice` from `from` on; returns how far it got before an error (the caller
/// writes the rest from the mapping when the error is [`unsupported`]).
pub(crate) async fn send_slice(
    sock: &TcpStream,
    slice: &ReadSlice,
    mut from: usize,
) -> Result<(), (usize, io::Error)> {
    let (file, pos) = slice.file_range();
    while from < slice.len() {
        match send_file(sock, file, pos + from as u64, slice.len() - from).await {
            Ok(0) => return Err((from, io::ErrorKind::WriteZero.into())),
            Ok(n) => from += n,
            Err(e) => return Err((from, e)),
        }
    }
    Ok(())
}
