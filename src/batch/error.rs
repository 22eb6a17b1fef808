//! Why bytes are not a valid RecordBatch v2, or why records cannot be built into one. Record
//! errors name the record's index in the batch and a byte position in the records data (from the
//! first record: byte 61 of an uncompressed batch, byte 0 of a compressed batch's decompressed
//! records).

use super::Compression;

/// A batch that does not decode, breaks a limit, or cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes end before a header field does.
    #[error("batch truncated: {field} needs {needed} bytes, {available} available")]
    Truncated { field: &'static str, needed: usize, available: usize },
    /// Not magic 2 (an old message set, or not a batch at all).
    #[error("unsupported batch magic {magic} (only 2 is supported)")]
    Magic { magic: i8 },
    /// `batchLength` below the header size or past the end of the bytes.
    #[error(
        "batchLength {batch_length} does not fit: {available} bytes follow it, header needs {min}"
    )]
    Length { batch_length: i32, available: usize, min: usize },
    /// `validate` was given more than one batch, or bytes after it.
    #[error("{extra} bytes follow the batch")]
    TrailingBatchBytes { extra: usize },
    /// The CRC-32C over `attributes`..end does not match the `crc` field.
    #[error("batch CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// Attribute bits 0-2 hold an unassigned codec (5-7).
    #[error("unknown compression codec {codec} in attributes {attributes:#06x}")]
    UnknownCompression { codec: i16, attributes: i16 },
    /// `recordsCount` below zero.
    #[error("negative record count {count}")]
    NegativeCount { count: i32 },
    /// `recordsCount` past the limit, or more than the records data could hold.
    #[error("record count {count} exceeds {max} ({why})")]
    TooManyRecords { count: i32, max: usize, why: &'static str },
    /// `lastOffsetDelta` below zero, or below the number of records minus one.
    #[error("lastOffsetDelta {last_offset_delta} is inconsistent with {count} records")]
    LastOffsetDelta { last_offset_delta: i32, count: i32 },
    /// Record iteration over a compressed batch without decompressing it first.
    #[error("records are {compression}-compressed: decompress them first")]
    Compressed { compression: Compression },
    /// The codec refused the compressed records (corrupt stream).
    #[error("{compression} decompression failed: {reason}")]
    Decompress { compression: Compression, reason: String },
    /// The records decompress to more than the cap.
    #[error("{compression} records decompress to more than {max} bytes")]
    DecompressedTooLarge { compression: Compression, max: usize },
    /// The codec failed to compress (building).
    #[error("{compression} compression failed: {reason}")]
    Compress { compression: Compression, reason: String },
    /// A record's field ends past the record or the data.
    #[error("record {index} at byte {position}: {field} truncated")]
    RecordTruncated { index: usize, position: usize, field: &'static str },
    /// A varint longer than 5 bytes (varlong: 10).
    #[error("record {index} at byte {position}: {field} is a malformed varint")]
    Varint { index: usize, position: usize, field: &'static str },
    /// A negative length where none is allowed (record length, header key), or below -1.
    #[error("record {index} at byte {position}: {field} has invalid length {length}")]
    RecordLength { index: usize, position: usize, field: &'static str, length: i64 },
    /// The record's fields do not fill exactly its `length`.
    #[error("record {index} at byte {position}: length says {declared} bytes, fields take {read}")]
    RecordSize { index: usize, position: usize, declared: usize, read: usize },
    /// An offset delta out of `0..=lastOffsetDelta` or not above the previous record's.
    #[error(
        "record {index} at byte {position}: offsetDelta {delta} out of order \
         (previous {previous:?}, lastOffsetDelta {last_offset_delta})"
    )]
    OffsetDelta {
        index: usize,
        position: usize,
        delta: i32,
        previous: Option<i32>,
        last_offset_delta: i32,
    },
    /// A timestamp that overflows, or exceeds `maxTimestamp` (CreateTime).
    #[error("record {index} at byte {position}: timestamp {timestamp} is past maxTimestamp {max}")]
    Timestamp { index: usize, position: usize, timestamp: i128, max: i64 },
    /// CreateTime: `maxTimestamp` is not the largest record timestamp.
    #[error("maxTimestamp {header} but the largest record timestamp is {actual}")]
    MaxTimestamp { header: i64, actual: i64 },
    /// Fewer records than `recordsCount` before the data ends.
    #[error("record count says {count}, data ends after {found}")]
    MissingRecords { count: i32, found: usize },
    /// Bytes left in the records data after `recordsCount` records.
    #[error("{extra} bytes follow the last of {count} records at byte {position}")]
    TrailingRecordBytes { count: i32, position: usize, extra: usize },
    /// Building: a field does not fit its encoding.
    #[error("cannot build batch: {0}")]
    Build(String),
}
