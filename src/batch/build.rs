//! Encoding records into a RecordBatch v2, as a producer (or the native client) writes one:
//! offsets numbered 0, 1, 2... from `baseOffset`, `baseTimestamp` taken from the first record
//! (as Kafka's Java client and librdkafka do), the records area compressed as a whole, CRC-32C
//! computed last.

use super::compress::compress_into;
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{
    ATTRIBUTES_POS, BatchError, CRC_POS, Compression, HEADER_LEN, Header, LOG_OVERHEAD, MAGIC,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT, crc_of,
};

/// A record to add to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// Milliseconds since the epoch (CreateTime).
    pub timestamp: i64,
    /// `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// `None` is a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// In order; keys may repeat.
    pub headers: &'a [Header<'a>],
}

/// Builds one batch. Records are encoded as they are pushed; [`BatchBuilder::build`] compresses
/// them and writes the header.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    log_append_time: Option<i64>,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    /// The uncompressed records area, from `records_start` (`HEADER_LEN` bytes are kept free in
    /// front of it by [`BatchBuilder::in_buffer`], so an uncompressed batch is finished in place).
    records: Vec<u8>,
    records_start: usize,
}

fn too_big(what: &str, len: usize) -> BatchError {
    BatchError::Build(format!("{what} of {len} bytes does not fit an i32 length"))
}

fn len_i32(what: &str, len: usize) -> Result<i32, BatchError> {
    i32::try_from(len).map_err(|_| too_big(what, len))
}

fn nullable_len(what: &str, b: Option<&[u8]>) -> Result<usize, BatchError> {
    Ok(match b {
        None => 1,
        Some(b) => varint_len(len_i32(what, b.len())?) + b.len(),
    })
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

impl BatchBuilder {
    /// An empty builder: base offset 0, no producer id, CreateTime, not transactional.
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            log_append_time: None,
            base_timestamp: None,
            max_timestamp: i64::MIN,
            count: 0,
            records: Vec::new(),
            records_start: 0,
        }
    }

    /// An empty builder encoding into `buf` (cleared; its capacity is reused), with room kept for
    /// the header: [`BatchBuilder::finish`] then returns `buf` itself for an uncompressed batch.
    pub fn in_buffer(compression: Compression, mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        BatchBuilder { records: buf, records_start: HEADER_LEN, ..BatchBuilder::new(compression) }
    }

    /// The batch. Uncompressed and built [`BatchBuilder::in_buffer`]: the header is written in
    /// front of the records, without copying them.
    pub fn finish(mut self) -> Result<Vec<u8>, BatchError> {
        if self.compression != Compression::None || self.records_start != HEADER_LEN {
            return self.build();
        }
        let mut header = Vec::with_capacity(HEADER_LEN);
        let records_len = self.records.len() - HEADER_LEN;
        self.write_header(&mut header)?;
        self.records[..HEADER_LEN].copy_from_slice(&header);
        let batch_length = len_i32("batch", HEADER_LEN + records_len - LOG_OVERHEAD)?;
        seal(&mut self.records, batch_length);
        Ok(self.records)
    }

    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// An idempotent producer's id, epoch and the sequence of the first record.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// LogAppendTime at `append_time`: `maxTimestamp` is set to it and readers give it as every
    /// record's timestamp.
    pub fn log_append_time(mut self, append_time: i64) -> Self {
        self.log_append_time = Some(append_time);
        self
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the uncompressed records area so far.
    pub fn records_bytes(&self) -> usize {
        self.records.len() - self.records_start
    }

    /// Adds a record at the next offset.
    pub fn push(&mut self, record: &NewRecord<'_>) -> Result<(), BatchError> {
        let offset_delta = self.count;
        if offset_delta == i32::MAX {
            return Err(BatchError::Build("a batch holds at most i32::MAX records".into()));
        }
        let base_timestamp = self.base_timestamp.unwrap_or(record.timestamp);
        let timestamp_delta = record.timestamp.checked_sub(base_timestamp).ok_or_else(|| {
            BatchError::Build(format!(
                "timestamp {} too far from the base timestamp {base_timestamp}",
                record.timestamp
            ))
        })?;
        let header_count = len_i32("header list", record.headers.len())?;
        let mut body = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
        body += nullable_len("key", record.key)?;
        body += nullable_len("value", record.value)?;
        body += varint_len(header_count);
        for h in record.headers {
            body += varint_len(len_i32("header key", h.key.len())?) + h.key.len();
            body += nullable_len("header value", h.value)?;
        }
        let body_len = len_i32("record", body)?;

        self.records.reserve(varint_len(body_len) + body);
        put_varint(&mut self.records, body_len);
        self.records.push(0); // attributes
        put_varlong(&mut self.records, timestamp_delta);
        put_varint(&mut self.records, offset_delta);
        put_nullable(&mut self.records, record.key);
        put_nullable(&mut self.records, record.value);
        put_varint(&mut self.records, header_count);
        for h in record.headers {
            put_nullable(&mut self.records, Some(h.key));
            put_nullable(&mut self.records, h.value);
        }
        self.base_timestamp = Some(base_timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        self.count += 1;
        Ok(())
    }

    /// The batch, as a new buffer.
    pub fn build(&self) -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.records_bytes());
        self.build_into(&mut out)?;
        Ok(out)
    }

    /// Appends the batch to `out`. A batch needs at least one record.
    pub fn build_into(&self, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let start = out.len();
        self.write_header(out)?;
        if let Err(e) = compress_into(self.compression, &self.records[self.records_start..], out) {
            out.truncate(start);
            return Err(e);
        }
        let batch_length = match len_i32("batch", out.len() - start - LOG_OVERHEAD) {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        seal(&mut out[start..], batch_length);
        Ok(())
    }

    /// Appends the header, with `batchLength` and `crc` left zero for [`seal`].
    fn write_header(&self, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let Some(base_timestamp) = self.base_timestamp else {
            return Err(BatchError::Build("a batch needs at least one record".into()));
        };
        let mut attributes = self.compression as i16;
        if self.log_append_time.is_some() {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let start = out.len();
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // batchLength, by seal
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC as u8);
        out.extend_from_slice(&[0; 4]); // crc, by seal
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&(self.count - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.log_append_time.unwrap_or(self.max_timestamp).to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        debug_assert_eq!(out.len() - start, HEADER_LEN);
        Ok(())
    }
}

/// Writes `batchLength`, then the CRC-32C over the rest, into a whole batch.
fn seal(batch: &mut [u8], batch_length: i32) {
    batch[super::BATCH_LENGTH_POS..super::BATCH_LENGTH_POS + 4]
        .copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc_of(batch);
    batch[CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
}
