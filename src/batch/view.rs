//! Zero-copy views: [`BatchView`] reads a batch's header fields in place, [`Records`] walks its
//! records as [`RecordView`]s that borrow keys, values and headers from the bytes. The header
//! fields outside the CRC are written in place by [`set_base_offset`] and
//! [`set_partition_leader_epoch`].

use super::varint::{VarintError, read_varint, read_varlong};
use super::{
    ATTRIBUTES_POS, BASE_OFFSET_POS, BASE_SEQUENCE_POS, BASE_TIMESTAMP_POS, BATCH_LENGTH_POS,
    BatchError, CONTROL_BIT, CRC_POS, Compression, HEADER_LEN, LAST_OFFSET_DELTA_POS, LOG_OVERHEAD,
    MAGIC, MAGIC_POS, MAX_TIMESTAMP_POS, MIN_BATCH_LENGTH, PARTITION_LEADER_EPOCH_POS,
    PRODUCER_EPOCH_POS, PRODUCER_ID_POS, RECORDS_COUNT_POS, RECORDS_POS, TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT, TimestampType, crc_of,
};

/// One RecordBatch v2: its header checked to be present (magic 2, a `batchLength` that fits),
/// nothing else yet. [`BatchView::verify_crc`] and [`super::validate`] check the rest.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    /// Exactly the batch: `LOG_OVERHEAD + batchLength` bytes.
    bytes: &'a [u8],
}

fn array<const N: usize>(bytes: &[u8], pos: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[pos..pos + N]);
    a
}

impl<'a> BatchView<'a> {
    /// The batch at the start of `bytes` (which may hold more after it: see [`BatchView::len`]).
    pub fn new(bytes: &'a [u8]) -> Result<BatchView<'a>, BatchError> {
        if bytes.len() <= MAGIC_POS {
            return Err(BatchError::Truncated {
                field: "batch header up to magic",
                needed: MAGIC_POS + 1,
                available: bytes.len(),
            });
        }
        let magic = bytes[MAGIC_POS] as i8;
        if magic != MAGIC {
            return Err(BatchError::Magic { magic });
        }
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                field: "batch header",
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let batch_length = i32::from_be_bytes(array(bytes, BATCH_LENGTH_POS));
        let available = bytes.len() - LOG_OVERHEAD;
        if batch_length < MIN_BATCH_LENGTH as i32 {
            return Err(BatchError::Length { batch_length, available, min: MIN_BATCH_LENGTH });
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if total > bytes.len() {
            return Err(BatchError::Truncated {
                field: "batch (batchLength)",
                needed: total,
                available: bytes.len(),
            });
        }
        Ok(BatchView { bytes: &bytes[..total] })
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes of the whole batch (`12 + batchLength`).
    #[allow(clippy::len_without_is_empty)] // a batch is never empty: it has a header
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    fn i16_at(&self, pos: usize) -> i16 {
        i16::from_be_bytes(array(self.bytes, pos))
    }
    fn i32_at(&self, pos: usize) -> i32 {
        i32::from_be_bytes(array(self.bytes, pos))
    }
    fn i64_at(&self, pos: usize) -> i64 {
        i64::from_be_bytes(array(self.bytes, pos))
    }

    pub fn base_offset(&self) -> i64 {
        self.i64_at(BASE_OFFSET_POS)
    }
    pub fn batch_length(&self) -> i32 {
        self.i32_at(BATCH_LENGTH_POS)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        self.i32_at(PARTITION_LEADER_EPOCH_POS)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_POS] as i8
    }
    /// The stored `crc` field.
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(array(self.bytes, CRC_POS))
    }
    pub fn attributes(&self) -> i16 {
        self.i16_at(ATTRIBUTES_POS)
    }
    pub fn last_offset_delta(&self) -> i32 {
        self.i32_at(LAST_OFFSET_DELTA_POS)
    }
    /// `baseOffset + lastOffsetDelta` (wrapping, for a header that lies).
    pub fn last_offset(&self) -> i64 {
        self.base_offset().wrapping_add(i64::from(self.last_offset_delta()))
    }
    pub fn base_timestamp(&self) -> i64 {
        self.i64_at(BASE_TIMESTAMP_POS)
    }
    pub fn max_timestamp(&self) -> i64 {
        self.i64_at(MAX_TIMESTAMP_POS)
    }
    pub fn producer_id(&self) -> i64 {
        self.i64_at(PRODUCER_ID_POS)
    }
    pub fn producer_epoch(&self) -> i16 {
        self.i16_at(PRODUCER_EPOCH_POS)
    }
    pub fn base_sequence(&self) -> i32 {
        self.i32_at(BASE_SEQUENCE_POS)
    }
    /// The `recordsCount` field as stored (may be negative in a corrupt batch).
    pub fn records_count(&self) -> i32 {
        self.i32_at(RECORDS_COUNT_POS)
    }
    /// The codec of the records area.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let attributes = self.attributes();
        Compression::from_attributes(attributes).ok_or(BatchError::UnknownCompression {
            codec: attributes & super::COMPRESSION_MASK,
            attributes,
        })
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }

    /// The records area as stored (compressed when the batch is).
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[RECORDS_POS..]
    }

    /// The CRC-32C of the covered bytes, computed.
    pub fn compute_crc(&self) -> u32 {
        crc_of(self.bytes)
    }

    /// Checks the stored CRC-32C against the bytes.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored == computed { Ok(()) } else { Err(BatchError::Crc { stored, computed }) }
    }

    /// The records of an uncompressed batch, in place. A compressed batch is refused: use
    /// [`BatchView::decompress_into`] and [`BatchView::records_in`].
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        match self.compression()? {
            Compression::None => Ok(self.records_in(self.records_bytes())),
            compression => Err(BatchError::Compressed { compression }),
        }
    }

    /// The records, whatever the codec: read in place when uncompressed, else decompressed into
    /// `scratch` (bounded by [`super::MAX_DECOMPRESSED_BYTES`]; the caller may reuse it across
    /// batches) and read from there.
    pub fn decoded_records<'s>(&self, scratch: &'s mut Vec<u8>) -> Result<Records<'s>, BatchError>
    where
        'a: 's,
    {
        match self.compression()? {
            Compression::None => Ok(self.records_in(self.records_bytes())),
            _ => {
                self.decompress_into(scratch, super::MAX_DECOMPRESSED_BYTES)?;
                Ok(self.records_in(scratch))
            }
        }
    }

    /// Decompresses the records area into `out` (cleared first), refusing to grow it past
    /// `max_bytes` (and never past [`super::MAX_DECOMPRESSED_BYTES`]). An uncompressed batch's
    /// records are copied.
    pub fn decompress_into(&self, out: &mut Vec<u8>, max_bytes: usize) -> Result<(), BatchError> {
        super::decompress_into(self.compression()?, self.records_bytes(), out, max_bytes)
    }

    /// The records in `data`, this batch's records area after decompression, read with this
    /// batch's header (base offset and timestamp, count, timestamp type).
    pub fn records_in<'b>(&self, data: &'b [u8]) -> Records<'b> {
        let log_append_time = match self.timestamp_type() {
            TimestampType::LogAppendTime => Some(self.max_timestamp()),
            TimestampType::CreateTime => None,
        };
        Records {
            data,
            pos: 0,
            index: 0,
            count: self.records_count(),
            base_offset: self.base_offset(),
            base_timestamp: self.base_timestamp(),
            log_append_time,
            done: false,
        }
    }
}

/// Writes `baseOffset` in place. It lies outside the CRC, so nothing is recomputed.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    set_field(batch, BASE_OFFSET_POS, "baseOffset", &base_offset.to_be_bytes())
}

/// Writes `partitionLeaderEpoch` in place. It lies outside the CRC, so nothing is recomputed.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    set_field(batch, PARTITION_LEADER_EPOCH_POS, "partitionLeaderEpoch", &epoch.to_be_bytes())
}

/// Stamps a batch with the broker's append time, as Kafka does for a `LogAppendTime` topic:
/// sets the timestamp-type attribute bit and `maxTimestamp` to `now_ms` (records keep their
/// deltas; readers take every record's timestamp from `maxTimestamp`) and recomputes the
/// CRC-32C, which covers both.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), BatchError> {
    let attributes = i16::from_be_bytes([
        *batch.get(ATTRIBUTES_POS).unwrap_or(&0),
        *batch.get(ATTRIBUTES_POS + 1).unwrap_or(&0),
    ]) | TIMESTAMP_TYPE_BIT;
    set_field(batch, ATTRIBUTES_POS, "attributes", &attributes.to_be_bytes())?;
    set_field(batch, MAX_TIMESTAMP_POS, "maxTimestamp", &now_ms.to_be_bytes())?;
    let crc = crc_of(batch);
    set_field(batch, CRC_POS, "crc", &crc.to_be_bytes())
}

fn set_field(
    batch: &mut [u8],
    pos: usize,
    field: &'static str,
    value: &[u8],
) -> Result<(), BatchError> {
    // Refuse anything shorter than a header: these setters run on batches, never on fragments.
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated { field, needed: HEADER_LEN, available: batch.len() });
    }
    batch[pos..pos + value.len()].copy_from_slice(value);
    Ok(())
}

/// Whether any batch of `bytes` is compressed (headers only; a malformed set says no, and
/// validation refuses it later).
pub fn any_compressed(bytes: &[u8]) -> bool {
    batches(bytes)
        .map_while(Result::ok)
        .any(|v| v.compression().is_ok_and(|c| c != Compression::None))
}

/// The consecutive batches of `bytes` (a record set: a produce request's, a fetch's, a segment's).
pub fn batches(bytes: &[u8]) -> Batches<'_> {
    Batches { rest: bytes, position: 0, done: false }
}

/// Iterator over consecutive batches; stops after the first error.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    position: usize,
    done: bool,
}

impl Batches<'_> {
    /// Byte position of the next batch in the original bytes.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        match BatchView::new(self.rest) {
            Ok(view) => {
                self.rest = &self.rest[view.len()..];
                self.position += view.len();
                Some(Ok(view))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One record, borrowed from the records data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// `baseOffset + offsetDelta`.
    pub offset: i64,
    pub offset_delta: i32,
    /// `baseTimestamp + timestampDelta` for CreateTime; the batch's `maxTimestamp` for
    /// LogAppendTime (as Kafka reads it).
    pub timestamp: i64,
    pub timestamp_delta: i64,
    /// The record's own attributes byte (unused by Kafka, 0).
    pub attributes: i8,
    /// `None` is a null key, distinct from `Some(&[])`.
    pub key: Option<&'a [u8]>,
    /// `None` is a null value (a tombstone), distinct from `Some(&[])`.
    pub value: Option<&'a [u8]>,
    headers: Headers<'a>,
    /// Bytes of the record, its length varint included.
    pub encoded_len: usize,
}

impl<'a> RecordView<'a> {
    /// The headers, in order, repeated keys kept.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }
}

/// A record header. Kafka's keys are strings; they are handed out as the bytes that were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    /// `None` is a null value, distinct from `Some(&[])`.
    pub value: Option<&'a [u8]>,
}

/// A record's headers, in order; already checked when the record was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    data: &'a [u8],
    remaining: usize,
}

impl Headers<'_> {
    /// Number of headers left.
    pub fn count(&self) -> usize {
        self.remaining
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;
    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The record reader walked these bytes already; a failure here cannot happen, and ends
        // the iteration rather than panicking.
        let mut pos = 0;
        let key = bytes_field(self.data, &mut pos, false).ok()??;
        let value = bytes_field(self.data, &mut pos, true).ok()?;
        self.data = &self.data[pos..];
        self.remaining -= 1;
        Some(Header { key, value })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Reads a varint length and that many bytes; -1 is null when `nullable`.
fn bytes_field<'a>(
    data: &'a [u8],
    pos: &mut usize,
    nullable: bool,
) -> Result<Option<&'a [u8]>, FieldError> {
    let len = read_varint(data, pos).map_err(FieldError::Varint)?;
    if len == -1 && nullable {
        return Ok(None);
    }
    if len < 0 {
        return Err(FieldError::Length(i64::from(len)));
    }
    let end =
        pos.checked_add(len as usize).filter(|&e| e <= data.len()).ok_or(FieldError::Short)?;
    let b = &data[*pos..end];
    *pos = end;
    Ok(Some(b))
}

enum FieldError {
    Varint(VarintError),
    Length(i64),
    Short,
}

/// Iterator over the records of a batch; stops after the first error. After the header's count
/// of records, leftover bytes are an error, and so is data that ends before the count.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    index: usize,
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    done: bool,
}

impl<'a> Records<'a> {
    /// Byte position of the next record in the records data.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn read_record(&mut self) -> Result<RecordView<'a>, BatchError> {
        let index = self.index;
        let start = self.pos;
        let data = self.data;
        let mut pos = start;
        let varint_err = |e: VarintError, field: &'static str, position: usize| match e {
            VarintError::Truncated => BatchError::RecordTruncated { index, position, field },
            VarintError::Malformed => BatchError::Varint { index, position, field },
        };
        let length = read_varint(data, &mut pos).map_err(|e| varint_err(e, "length", start))?;
        if length < 0 {
            return Err(BatchError::RecordLength {
                index,
                position: start,
                field: "length",
                length: i64::from(length),
            });
        }
        let body_start = pos;
        let end = body_start
            .checked_add(length as usize)
            .filter(|&e| e <= data.len())
            .ok_or(BatchError::RecordTruncated { index, position: start, field: "record body" })?;
        // Every field is read from the record's own bytes, so none can run into the next record.
        let rec = &data[..end];
        let attributes = *rec.get(pos).ok_or(BatchError::RecordTruncated {
            index,
            position: pos,
            field: "attributes",
        })? as i8;
        pos += 1;
        let p = pos;
        let timestamp_delta =
            read_varlong(rec, &mut pos).map_err(|e| varint_err(e, "timestampDelta", p))?;
        let p = pos;
        let offset_delta =
            read_varint(rec, &mut pos).map_err(|e| varint_err(e, "offsetDelta", p))?;
        let field = |name: &'static str, pos: &mut usize, nullable: bool| {
            let p = *pos;
            bytes_field(rec, pos, nullable).map_err(|e| match e {
                FieldError::Varint(v) => varint_err(v, name, p),
                FieldError::Length(length) => {
                    BatchError::RecordLength { index, position: p, field: name, length }
                }
                FieldError::Short => {
                    BatchError::RecordTruncated { index, position: p, field: name }
                }
            })
        };
        let key = field("key", &mut pos, true)?;
        let value = field("value", &mut pos, true)?;
        let p = pos;
        let header_count =
            read_varint(rec, &mut pos).map_err(|e| varint_err(e, "headersCount", p))?;
        // Each header takes at least two bytes; the count sizes nothing, but a lie ends here.
        if header_count < 0 || header_count as usize > (end - pos) / 2 {
            return Err(BatchError::RecordLength {
                index,
                position: p,
                field: "headersCount",
                length: i64::from(header_count),
            });
        }
        let headers_start = pos;
        for _ in 0..header_count {
            field("header key", &mut pos, false)?;
            field("header value", &mut pos, true)?;
        }
        if pos != end {
            return Err(BatchError::RecordSize {
                index,
                position: start,
                declared: length as usize,
                read: pos - body_start,
            });
        }
        let offset = self.base_offset.checked_add(i64::from(offset_delta)).ok_or(
            BatchError::OffsetDelta {
                index,
                position: start,
                delta: offset_delta,
                previous: None,
                last_offset_delta: -1,
            },
        )?;
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => {
                self.base_timestamp.checked_add(timestamp_delta).ok_or(BatchError::Timestamp {
                    index,
                    position: start,
                    timestamp: i128::from(self.base_timestamp) + i128::from(timestamp_delta),
                    max: i64::MAX,
                })?
            }
        };
        self.pos = end;
        Ok(RecordView {
            offset,
            offset_delta,
            timestamp,
            timestamp_delta,
            attributes,
            key,
            value,
            headers: Headers { data: &rec[headers_start..end], remaining: header_count as usize },
            encoded_len: end - start,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let count = self.count.max(0) as usize;
        if self.index >= count {
            self.done = true;
            if self.pos != self.data.len() {
                return Some(Err(BatchError::TrailingRecordBytes {
                    count: self.count,
                    position: self.pos,
                    extra: self.data.len() - self.pos,
                }));
            }
            return None;
        }
        if self.pos >= self.data.len() {
            self.done = true;
            return Some(Err(BatchError::MissingRecords { count: self.count, found: self.index }));
        }
        let r = self.read_record();
        match &r {
            Ok(_) => self.index += 1,
            Err(_) => self.done = true,
        }
        Some(r)
    }
}
