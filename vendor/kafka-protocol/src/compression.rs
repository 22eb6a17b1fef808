//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
/// minikafka patch: most bytes one compressed batch may expand to. The compressed input comes off
/// the wire; without a bound, a few KiB of zstd or gzip can expand to gigabytes and the process is
/// killed for memory. Far above any real batch (Kafka clients send at most a few MiB).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// minikafka patch: a writer that refuses to grow `inner` past [`MAX_DECOMPRESSED_BYTES`].
pub(crate) struct Bounded<W> {
    pub(crate) inner: W,
    written: usize,
}

impl<W> Bounded<W> {
    pub(crate) fn new(inner: W) -> Self {
        Bounded { inner, written: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(buf.len()) > MAX_DECOMPRESSED_BYTES {
            return Err(std::io::Error::other(format!(
                "decompressed batch exceeds {MAX_DECOMPRESSED_BYTES} bytes"
            )));
        }
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// minikafka patch: refuses a claimed decompressed length over [`MAX_DECOMPRESSED_BYTES`] before
/// anything is allocated for it.
pub(crate) fn check_claimed_len(total: usize) -> Result<()> {
    if total > MAX_DECOMPRESSED_BYTES {
        anyhow::bail!("decompressed batch would exceed {MAX_DECOMPRESSED_BYTES} bytes");
    }
    Ok(())
}

mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}
