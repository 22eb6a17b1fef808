//! Full validation of one batch as it arrives (a produce) or is read back (recovery, a consumer):
//! everything [`BatchView`] does not check on its own. Limits are checked before the bytes they
//! bound are used, so a lying count or length never sizes an allocation.

use super::{BatchError, BatchView, Compression, MIN_RECORD_LEN, TimestampType};

/// Bounds on what one batch may make the validator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records one batch may claim; refused before anything is decompressed.
    pub max_records: usize,
    /// Most bytes the records area may decompress to (never more than
    /// [`super::MAX_DECOMPRESSED_BYTES`]).
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // librdkafka sends at most 10,000 records per batch, Java clients fewer; a million leaves
        // room while keeping a lying header from driving a long decode.
        Limits { max_records: 1 << 20, max_decompressed_bytes: super::MAX_DECOMPRESSED_BYTES }
    }
}

/// What a valid batch holds, for the caller's bookkeeping (offsets, time index, producer state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub partition_leader_epoch: i32,
    pub record_count: usize,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub transactional: bool,
    pub control: bool,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Bytes of the whole batch.
    pub batch_bytes: usize,
    /// Bytes of the records area once decompressed (equal to the stored area when uncompressed).
    pub records_bytes: usize,
    /// Offset deltas are exactly 0, 1, 2, ... (as a producer writes them; compaction leaves gaps).
    pub contiguous_offsets: bool,
    /// Records with a null key (a compacted topic refuses them, as Kafka does).
    pub keyless_records: usize,
}

/// Validates `bytes`, which must be exactly one batch. See [`validate_with`].
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<BatchSummary, BatchError> {
    validate_with(bytes, limits, &mut Vec::new())
}

/// Validates `bytes`, which must be exactly one batch: magic 2, `batchLength` equal to the bytes,
/// CRC-32C, a known codec, a record count within `limits` and within what the (decompressed)
/// records can hold, every record well formed and filling exactly its length, offset deltas
/// strictly increasing within `0..=lastOffsetDelta`, and for CreateTime every timestamp at most
/// `maxTimestamp` with `maxTimestamp` the largest. A compressed batch is decompressed into
/// `scratch` (bounded by `limits`), which the caller may reuse across batches.
///
/// A record timestamp below `baseTimestamp` is accepted: Kafka's own clients (Java, librdkafka)
/// take `baseTimestamp` from the first record, so a later record with an earlier timestamp has a
/// negative delta and is valid Kafka.
pub fn validate_with(
    bytes: &[u8],
    limits: &Limits,
    scratch: &mut Vec<u8>,
) -> Result<BatchSummary, BatchError> {
    let view = BatchView::new(bytes)?;
    if view.len() != bytes.len() {
        return Err(BatchError::TrailingBatchBytes { extra: bytes.len() - view.len() });
    }
    view.verify_crc()?;
    let compression = view.compression()?;
    let count = view.records_count();
    if count < 0 {
        return Err(BatchError::NegativeCount { count });
    }
    if count as usize > limits.max_records {
        return Err(BatchError::TooManyRecords {
            count,
            max: limits.max_records,
            why: "the per-batch record limit",
        });
    }
    let last_offset_delta = view.last_offset_delta();
    if last_offset_delta < 0 || i64::from(count) > i64::from(last_offset_delta) + 1 {
        return Err(BatchError::LastOffsetDelta { last_offset_delta, count });
    }
    let data: &[u8] = match compression {
        Compression::None => view.records_bytes(),
        _ => {
            view.decompress_into(scratch, limits.max_decompressed_bytes)?;
            scratch
        }
    };
    if count as usize > data.len() / MIN_RECORD_LEN {
        return Err(BatchError::TooManyRecords {
            count,
            max: data.len() / MIN_RECORD_LEN,
            why: "more than the records data can hold",
        });
    }

    let create_time = view.timestamp_type() == TimestampType::CreateTime;
    let max_timestamp = view.max_timestamp();
    let mut records = view.records_in(data);
    let mut previous: Option<i32> = None;
    let mut largest: Option<i64> = None;
    let mut contiguous = true;
    let mut keyless = 0usize;
    let mut index = 0usize;
    loop {
        let position = records.position();
        let Some(r) = records.next() else { break };
        let r = r?;
        let delta = r.offset_delta;
        if delta < 0 || delta > last_offset_delta || previous.is_some_and(|p| delta <= p) {
            return Err(BatchError::OffsetDelta {
                index,
                position,
                delta,
                previous,
                last_offset_delta,
            });
        }
        contiguous &= delta as usize == index;
        keyless += usize::from(r.key.is_none());
        previous = Some(delta);
        if create_time {
            if r.timestamp > max_timestamp {
                return Err(BatchError::Timestamp {
                    index,
                    position,
                    timestamp: i128::from(r.timestamp),
                    max: max_timestamp,
                });
            }
            largest = Some(largest.map_or(r.timestamp, |l| l.max(r.timestamp)));
        }
        index += 1;
    }
    if let Some(actual) = largest
        && actual != max_timestamp
    {
        return Err(BatchError::MaxTimestamp { header: max_timestamp, actual });
    }
    Ok(BatchSummary {
        base_offset: view.base_offset(),
        last_offset_delta,
        partition_leader_epoch: view.partition_leader_epoch(),
        record_count: index,
        compression,
        timestamp_type: view.timestamp_type(),
        transactional: view.is_transactional(),
        control: view.is_control(),
        base_timestamp: view.base_timestamp(),
        max_timestamp,
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        base_sequence: view.base_sequence(),
        batch_bytes: view.len(),
        records_bytes: data.len(),
        contiguous_offsets: contiguous,
        keyless_records: keyless,
    })
}
