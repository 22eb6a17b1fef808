//! Records as programs hold them: an owned [`Record`] a consumer decoded, a borrowed [`NewRecord`]
//! to produce, their [`Header`]s, and the two conversions between them and the stored unit,
//! Kafka's RecordBatch v2 ([`crate::batch`]): [`push_record`] / [`build_batch`] encode records into
//! a batch, [`decode_records`] turns fetched batches back into records. Pure functions on
//! buffers; never I/O.
//!
//! A key and a value are each either absent (`None`, Kafka's null: a null value is a tombstone)
//! or bytes, possibly empty; headers keep their order and may repeat a key.

use std::ops::ControlFlow;

use crate::batch::{self, BatchBuilder, BatchError, Compression, RecordView};

/// Default largest batch (Kafka's `max.message.bytes`: the whole batch, header included): 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// One header of a record. Kafka header keys are strings; we keep bytes and let the edges decide.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// An owned record, as a consumer holds it after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    /// `None` is a null value (a tombstone), distinct from an empty one.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

impl Record {
    /// The value's bytes, empty for a null value.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }
}

/// The parts of a record to append; the log assigns the offset.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    /// `None` is a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

impl<'a> NewRecord<'a> {
    /// A record with just a value, stamped now.
    pub fn value(value: &'a [u8]) -> Self {
        NewRecord { timestamp_ms: now_ms(), key: None, value: Some(value), headers: &[] }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Adds `record` to `builder` at its next offset.
pub fn push_record(builder: &mut BatchBuilder, record: &NewRecord<'_>) -> Result<(), BatchError> {
    // Most records carry no header: an empty Vec does not allocate.
    let headers: Vec<batch::Header<'_>> = record
        .headers
        .iter()
        .map(|h| batch::Header { key: &h.key, value: h.value.as_deref() })
        .collect();
    builder.push(&batch::NewRecord {
        timestamp: record.timestamp_ms,
        key: record.key,
        value: record.value,
        headers: &headers,
    })
}

/// `records` as one batch (base offset 0, for the broker to assign), compressed as asked.
pub fn build_batch(
    records: &[NewRecord<'_>],
    compression: Compression,
) -> Result<Vec<u8>, BatchError> {
    let mut builder = BatchBuilder::new(compression);
    for r in records {
        push_record(&mut builder, r)?;
    }
    builder.build()
}

impl Record {
    /// An owned copy of a decoded record (a stored record's offset is never negative).
    pub fn from_view(view: &RecordView<'_>) -> Record {
        Record {
            offset: view.offset as u64,
            timestamp_ms: view.timestamp,
            key: view.key.map(<[u8]>::to_vec),
            value: view.value.map(<[u8]>::to_vec),
            headers: view
                .headers()
                .map(|h| Header { key: h.key.to_vec(), value: h.value.map(<[u8]>::to_vec) })
                .collect(),
        }
    }
}

/// Calls `each` with every record of the whole batches in `bytes` (as a fetch returns them), in
/// order, until it breaks. With `verify`, each batch's CRC-32C is checked before its records are
/// read; a compressed batch is decompressed into `scratch`, bounded by
/// [`batch::MAX_DECOMPRESSED_BYTES`]. Control batches (transaction markers) hold no user records
/// and are skipped. minikafka's broker sends whole batches, so a partial one is an error.
pub fn for_each_record(
    bytes: &[u8],
    verify: bool,
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    for view in batch::batches(bytes) {
        let view = view?;
        if verify {
            view.verify_crc()?;
        }
        if view.is_control() {
            continue;
        }
        for r in view.decoded_records(scratch)? {
            if each(&r?).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Decodes whole batches into `out`, skipping records below `from` (a fetch starts at the batch
/// holding `from`). See [`for_each_record`].
pub fn decode_records(
    bytes: &[u8],
    from: u64,
    verify: bool,
    out: &mut Vec<Record>,
    scratch: &mut Vec<u8>,
) -> Result<(), BatchError> {
    for_each_record(bytes, verify, scratch, |r| {
        if r.offset >= from as i64 {
            out.push(Record::from_view(r));
        }
        ControlFlow::Continue(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Header> {
        vec![
            Header { key: b"k".to_vec(), value: Some(b"1".to_vec()) },
            Header { key: b"k".to_vec(), value: None },
            Header { key: b"k".to_vec(), value: Some(Vec::new()) },
        ]
    }

    #[test]
    fn null_values_empty_values_and_repeated_headers_survive_a_batch() {
        let headers = sample();
        let records = [
            NewRecord { timestamp_ms: 5, key: Some(b"a"), value: None, headers: &headers },
            NewRecord { timestamp_ms: 3, key: None, value: Some(b""), headers: &[] },
            NewRecord { timestamp_ms: 9, key: Some(b""), value: Some(b"v"), headers: &[] },
        ];
        for compression in Compression::ALL {
            let mut bytes = build_batch(&records, compression).unwrap();
            batch::set_base_offset(&mut bytes, 40).unwrap();
            let mut out = Vec::new();
            decode_records(&bytes, 0, true, &mut out, &mut Vec::new()).unwrap();
            assert_eq!(out.len(), 3, "{compression:?}");
            assert_eq!(out[0].offset, 40);
            assert_eq!(out[0].value, None);
            assert_eq!(out[0].headers, headers);
            assert_eq!(out[1].value.as_deref(), Some(&b""[..]));
            assert_eq!(out[1].timestamp_ms, 3);
            assert_eq!(out[2].key.as_deref(), Some(&b""[..]));
            // A fetch from the middle of a batch skips the records before it.
            out.clear();
            decode_records(&bytes, 41, true, &mut out, &mut Vec::new()).unwrap();
            assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [41, 42]);
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_crc_when_verifying() {
        let mut bytes = build_batch(&[NewRecord::value(b"hello")], Compression::None).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = decode_records(&bytes, 0, true, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, BatchError::Crc { .. }), "{err:?}");
    }
}
