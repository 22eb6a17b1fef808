//! The stored format, Kafka's RecordBatch v2: byte layout, build, validate, zero-copy views,
//! CRC-32C. The one definition shared by storage (on disk), both protocols and the client. Pure
//! functions and views over byte slices; never does I/O.
//!
//! # Batch layout (all integers big-endian)
//!
//! | pos | field                  | type  | notes                                              |
//! |----:|------------------------|-------|----------------------------------------------------|
//! |   0 | `baseOffset`           | i64   | set by the broker; outside the CRC                 |
//! |   8 | `batchLength`          | i32   | bytes after this field (total = 12 + batchLength)  |
//! |  12 | `partitionLeaderEpoch` | i32   | set by the broker; outside the CRC                 |
//! |  16 | `magic`                | i8    | always 2                                           |
//! |  17 | `crc`                  | u32   | CRC-32C (Castagnoli) over pos 21 to the end        |
//! |  21 | `attributes`           | i16   | see below                                          |
//! |  23 | `lastOffsetDelta`      | i32   | offset of the last record minus `baseOffset`       |
//! |  27 | `baseTimestamp`        | i64   | records store timestamp deltas from this           |
//! |  35 | `maxTimestamp`         | i64   | largest record timestamp (or the append time)      |
//! |  43 | `producerId`           | i64   | -1 when not idempotent                             |
//! |  51 | `producerEpoch`        | i16   | -1 when not idempotent                             |
//! |  53 | `baseSequence`         | i32   | sequence of the first record, -1 when none         |
//! |  57 | `recordsCount`         | i32   | records that follow                                |
//! |  61 | records                | bytes | compressed as a whole when `attributes` says so    |
//!
//! Attributes: bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3 timestamp
//! type (0 CreateTime, 1 LogAppendTime), bit 4 transactional, bit 5 control, bit 6 delete horizon
//! (set by compaction); the other bits are zero.
//!
//! The CRC is CRC-32C (`crc32c`), Kafka's, not the CRC-32 (IEEE, `crc32fast`) minikafka uses for
//! its own files. It leaves out `baseOffset` and `partitionLeaderEpoch` so the broker can set
//! them ([`set_base_offset`], [`set_partition_leader_epoch`]) without recomputing it.
//!
//! # Record layout (inside the records area, after decompression)
//!
//! | field            | type                 | notes                                           |
//! |------------------|----------------------|-------------------------------------------------|
//! | `length`         | varint               | bytes of the record after this field            |
//! | `attributes`     | i8                   | unused, 0                                       |
//! | `timestampDelta` | varlong              | timestamp minus `baseTimestamp` (may be < 0)    |
//! | `offsetDelta`    | varint               | offset minus `baseOffset`                       |
//! | `keyLength`      | varint               | -1 for a null key                               |
//! | `key`            | bytes                |                                                 |
//! | `valueLength`    | varint               | -1 for a null value (a tombstone), 0 for empty  |
//! | `value`          | bytes                |                                                 |
//! | `headersCount`   | varint               | headers keep their order; keys may repeat       |
//! | headers          | per header:          | `keyLength` varint (never -1), key bytes,       |
//! |                  |                      | `valueLength` varint (-1 for null), value bytes |
//!
//! Varints are zigzag-encoded like protobuf's `sint32` (at most 5 bytes) and varlongs like
//! `sint64` (at most 10 bytes).

mod build;
mod compress;
mod error;
mod validate;
mod varint;
mod view;

pub use build::{BatchBuilder, NewRecord};
pub(crate) use compress::compress_into;
pub use compress::{MAX_DECOMPRESSED_BYTES, decompress_into};
pub use error::BatchError;
pub use validate::{BatchSummary, Limits, validate, validate_with};
pub use view::{
    BatchView, Batches, Header, Headers, RecordView, Records, any_compressed, batches,
    set_base_offset, set_log_append_time, set_partition_leader_epoch,
};

/// Position of `baseOffset` (i64).
pub const BASE_OFFSET_POS: usize = 0;
/// Position of `batchLength` (i32).
pub const BATCH_LENGTH_POS: usize = 8;
/// Position of `partitionLeaderEpoch` (i32).
pub const PARTITION_LEADER_EPOCH_POS: usize = 12;
/// Position of `magic` (i8).
pub const MAGIC_POS: usize = 16;
/// Position of `crc` (u32).
pub const CRC_POS: usize = 17;
/// Position of `attributes` (i16); the CRC covers from here to the end of the batch.
pub const ATTRIBUTES_POS: usize = 21;
/// Position of `lastOffsetDelta` (i32).
pub const LAST_OFFSET_DELTA_POS: usize = 23;
/// Position of `baseTimestamp` (i64).
pub const BASE_TIMESTAMP_POS: usize = 27;
/// Position of `maxTimestamp` (i64).
pub const MAX_TIMESTAMP_POS: usize = 35;
/// Position of `producerId` (i64).
pub const PRODUCER_ID_POS: usize = 43;
/// Position of `producerEpoch` (i16).
pub const PRODUCER_EPOCH_POS: usize = 51;
/// Position of `baseSequence` (i32).
pub const BASE_SEQUENCE_POS: usize = 53;
/// Position of `recordsCount` (i32).
pub const RECORDS_COUNT_POS: usize = 57;
/// Position of the first record (the records area).
pub const RECORDS_POS: usize = 61;
/// Bytes of a batch header: every field before the records.
pub const HEADER_LEN: usize = RECORDS_POS;
/// Bytes before `batchLength` counts: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;
/// The only magic this module reads and writes.
pub const MAGIC: i8 = 2;
/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each. Bounds how many records bytes can hold.
pub const MIN_RECORD_LEN: usize = 7;

/// Attribute bits 0-2: the compression codec.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: LogAppendTime (set) or CreateTime (clear).
pub const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Attribute bit 4: part of a transaction.
pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attribute bit 5: control records (transaction markers), not user data.
pub const CONTROL_BIT: i16 = 1 << 5;
/// Attribute bit 6: the batch has a delete horizon (set by log compaction).
pub const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Value of `producerId` for a batch from a producer that is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
/// Value of `producerEpoch` for a batch from a producer that is not idempotent.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Value of `baseSequence` for a batch without sequence numbers.
pub const NO_SEQUENCE: i32 = -1;
/// Value of `partitionLeaderEpoch` before a broker sets it.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// The codec of a batch's records area (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// Every codec, for tests and benches that cover them all.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec named by `attributes`, or `None` for the unassigned values 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the record timestamps of a batch mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer, per record.
    CreateTime,
    /// Set by the broker when it appended the batch: every record's timestamp is `maxTimestamp`.
    LogAppendTime,
}

/// CRC-32C of the CRC-covered part of a batch (`attributes` to the end); `batch` must hold at
/// least the header.
pub(crate) fn crc_of(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS..])
}

#[cfg(test)]
mod tests;
