//! The records area's codecs, through the vendored `kafka-protocol` crate's compression module
//! (gzip, snappy with Kafka's xerial framing, lz4 frames, zstd). The crate decompresses into its
//! own buffer and stops at its cap, [`MAX_DECOMPRESSED_BYTES`] (256 MiB, a minikafka patch); the
//! result is then checked against the caller's smaller cap and copied into the caller's buffer.

use bytes::{Buf, BufMut};
use kafka_protocol::compression::{self as cmpr, Compressor, Decompressor};

use super::{BatchError, Compression};

/// Most bytes one batch's records may decompress to, whatever a caller asks for: the vendored
/// crate's own cap.
pub const MAX_DECOMPRESSED_BYTES: usize = cmpr::MAX_DECOMPRESSED_BYTES;

/// Decompresses `input` (a records area compressed with `compression`) into `out`, which is
/// cleared first; refuses to produce more than `max_bytes` (capped at
/// [`MAX_DECOMPRESSED_BYTES`]). `Compression::None` copies.
pub fn decompress_into(
    compression: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<(), BatchError> {
    out.clear();
    let max = max_bytes.min(MAX_DECOMPRESSED_BYTES);
    match compression {
        Compression::None => copy_bounded(input, out, max, compression),
        Compression::Gzip => run::<cmpr::Gzip>(compression, input, out, max),
        Compression::Snappy => run::<cmpr::Snappy>(compression, input, out, max),
        Compression::Lz4 => run::<cmpr::Lz4>(compression, input, out, max),
        Compression::Zstd => run::<cmpr::Zstd>(compression, input, out, max),
    }
}

fn copy_bounded(
    mut src: impl Buf,
    out: &mut Vec<u8>,
    max: usize,
    compression: Compression,
) -> Result<(), BatchError> {
    if src.remaining() > max {
        return Err(BatchError::DecompressedTooLarge { compression, max });
    }
    out.reserve(src.remaining());
    while src.has_remaining() {
        let chunk = src.chunk();
        out.extend_from_slice(chunk);
        let n = chunk.len();
        src.advance(n);
    }
    Ok(())
}

fn run<'i, D: Decompressor<&'i [u8]>>(
    compression: Compression,
    input: &'i [u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), BatchError> {
    let mut input = input;
    let mut result = Ok(());
    D::decompress(&mut input, |buf| {
        result = copy_bounded(&mut *buf, out, max, compression);
        Ok(())
    })
    .map_err(|e| {
        let reason = format!("{e:#}");
        // The crate's cap (a minikafka patch) reports "exceeds"/"would exceed": the same refusal
        // as ours, so it gets the same error.
        if reason.contains("exceed") {
            BatchError::DecompressedTooLarge { compression, max }
        } else {
            BatchError::Decompress { compression, reason }
        }
    })?;
    result
}

/// Appends `records` (an uncompressed records area) to `out`, compressed with `compression`.
pub(crate) fn compress_into(
    compression: Compression,
    records: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    match compression {
        Compression::None => {
            out.extend_from_slice(records);
            Ok(())
        }
        Compression::Gzip => run_compress::<cmpr::Gzip>(compression, records, out),
        Compression::Snappy => run_compress::<cmpr::Snappy>(compression, records, out),
        Compression::Lz4 => run_compress::<cmpr::Lz4>(compression, records, out),
        Compression::Zstd => run_compress::<cmpr::Zstd>(compression, records, out),
    }
}

fn run_compress<C: Compressor<Vec<u8>>>(
    compression: Compression,
    records: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    C::compress(out, |buf| {
        buf.put_slice(records);
        Ok(())
    })
    .map_err(|e| BatchError::Compress { compression, reason: format!("{e:#}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for c in Compression::ALL {
            let mut packed = Vec::new();
            compress_into(c, &data, &mut packed).unwrap();
            let mut back = vec![1, 2, 3];
            decompress_into(c, &packed, &mut back, 1 << 20).unwrap();
            assert_eq!(back, data, "{c}");
        }
    }

    #[test]
    fn the_callers_cap_is_enforced_for_every_codec() {
        let data = vec![0u8; 100_000];
        for c in Compression::ALL {
            let mut packed = Vec::new();
            compress_into(c, &data, &mut packed).unwrap();
            let mut back = Vec::new();
            let err = decompress_into(c, &packed, &mut back, 99_999).unwrap_err();
            assert_eq!(
                err,
                BatchError::DecompressedTooLarge { compression: c, max: 99_999 },
                "{c}"
            );
        }
    }

    #[test]
    fn garbage_is_a_decompression_error() {
        for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
            let mut back = Vec::new();
            let err = decompress_into(c, b"\x82SNAPPY\0 not compressed at all", &mut back, 1 << 20);
            assert!(
                matches!(
                    err,
                    Err(BatchError::Decompress { .. } | BatchError::DecompressedTooLarge { .. })
                ),
                "{c}: {err:?}"
            );
        }
    }
}
