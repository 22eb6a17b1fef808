//! Translation between Kafka record batches (magic 2, any of the four compressions) and our stored
//! record format (`crate::record`). Keys, values, headers and timestamps cross unchanged; offsets
//! are the same numbers in both protocols. Pure functions on buffers; never does I/O.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use crate::record::{self, Header, NewRecord, RecordIter};

/// Size of a v2 batch header: base offset through record count.
const BATCH_HEADER_LEN: usize = 61;
/// Position of the magic byte in a batch.
const MAGIC_POS: usize = 16;
/// Position of the attributes field.
const ATTRIBUTES_POS: usize = 21;
/// Position of the record count field.
const RECORD_COUNT_POS: usize = 57;
/// The smallest encoded v2 record: seven single-byte varints/fields. Bounds how many records a
/// batch can truly hold, so a lying record count never sizes an allocation.
const MIN_KAFKA_RECORD_LEN: usize = 7;

/// Why a produced record set cannot be stored. All map to a Kafka error code in the handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// Not magic 2 (old message sets), or a batch that does not decode: INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// A batch that decodes but breaks a limit (record too large): MESSAGE_TOO_LARGE.
    #[error("record too large: {0}")]
    TooLarge(#[from] record::RecordError),
    /// Transactional or control batches: we do not implement transactions.
    #[error("transactional and control batches are not supported")]
    Transactional,
}

/// A produced record set converted to our stored format, offsets left for the log to assign.
#[derive(Debug, Default)]
pub(crate) struct StoredBatch {
    /// Concatenated records in `crate::record` format.
    pub encoded: Vec<u8>,
    pub record_count: usize,
    /// The producer id of the (last) batch, -1 when not idempotent.
    pub producer_id: i64,
    pub base_sequence: i32,
}

/// Decodes every batch in a Produce request's record set into our format. `now_ms` stamps records
/// whose batch asks for log-append time or that carry no timestamp.
pub(crate) fn kafka_to_stored(
    records: &Bytes,
    max_record_bytes: u32,
    now_ms: i64,
) -> Result<StoredBatch, BatchError> {
    let mut out = StoredBatch { producer_id: -1, base_sequence: -1, ..Default::default() };
    let mut buf = records.clone();
    if buf.is_empty() {
        return Err(BatchError::Invalid("empty record set".into()));
    }
    while buf.has_remaining() {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Invalid(format!(
                "{} bytes left, shorter than a batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_POS] as i8;
        if magic != 2 {
            return Err(BatchError::Invalid(format!(
                "magic {magic} (only record batch v2 is accepted)"
            )));
        }
        let attributes = i16::from_be_bytes([buf[ATTRIBUTES_POS], buf[ATTRIBUTES_POS + 1]]);
        if attributes & (0b11 << 4) != 0 {
            return Err(BatchError::Transactional);
        }
        let count_bytes = &buf[RECORD_COUNT_POS..RECORD_COUNT_POS + 4];
        let claimed =
            i32::from_be_bytes([count_bytes[0], count_bytes[1], count_bytes[2], count_bytes[3]]);
        if claimed < 0 {
            return Err(BatchError::Invalid(format!("negative record count {claimed}")));
        }
        let claimed = claimed as usize;
        // The crate reserves `record count` records before decoding them: check the count against
        // the bytes that hold them first (after decompression, hence inside the closure).
        let decompress = |data: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
            let plain = match compression {
                Compression::None => data.split_to(data.len()),
                Compression::Gzip => {
                    cmpr::Gzip::decompress(data, |b| Ok(b.copy_to_bytes(b.remaining())))?
                }
                Compression::Snappy => {
                    cmpr::Snappy::decompress(data, |b| Ok(b.copy_to_bytes(b.remaining())))?
                }
                Compression::Lz4 => {
                    cmpr::Lz4::decompress(data, |b| Ok(b.copy_to_bytes(b.remaining())))?
                }
                Compression::Zstd => {
                    cmpr::Zstd::decompress(data, |b| Ok(b.copy_to_bytes(b.remaining())))?
                }
            };
            if claimed > plain.len() / MIN_KAFKA_RECORD_LEN {
                anyhow::bail!("record count {claimed} cannot fit in {} bytes", plain.len());
            }
            Ok(plain)
        };
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
            .map_err(|e| BatchError::Invalid(e.to_string()))?;
        if set.records.len() != claimed {
            return Err(BatchError::Invalid("record count does not match the records".into()));
        }
        for r in &set.records {
            out.producer_id = r.producer_id;
            let timestamp_ms = if r.timestamp_type == TimestampType::LogAppend || r.timestamp < 0 {
                now_ms
            } else {
                r.timestamp
            };
            let headers: Vec<Header> = r
                .headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.as_bytes().to_vec(),
                    value: v.as_ref().map(|v| v.to_vec()),
                })
                .collect();
            let rec = NewRecord {
                timestamp_ms,
                key: r.key.as_deref(),
                // Our format has no null value: a Kafka tombstone is stored as an empty value.
                value: r.value.as_deref().unwrap_or(&[]),
                headers: &headers,
            };
            record::encode(&mut out.encoded, 0, &rec, max_record_bytes)?;
            out.record_count += 1;
        }
        if let Some(first) = set.records.first() {
            out.base_sequence = first.sequence;
        }
    }
    Ok(out)
}

/// Encodes stored records (as a fetch read them) into one uncompressed Kafka v2 batch. Stops at a
/// record that fails its checks, returning what came before it, or the error if it was the first.
pub(crate) fn stored_to_kafka(
    stored: &[u8],
    max_record_bytes: u32,
) -> Result<Bytes, record::RecordError> {
    let mut recs: Vec<KRecord> = Vec::new();
    let mut base: Option<u64> = None;
    for view in RecordIter::new(stored, max_record_bytes) {
        let view = match view {
            Ok(v) => v,
            Err(e) if recs.is_empty() => return Err(e),
            Err(_) => break,
        };
        let base = *base.get_or_insert(view.offset);
        let mut headers = IndexMap::with_capacity(view.header_count());
        for (k, v) in view.headers() {
            // Kafka header keys are strings; bytes that are not UTF-8 are replaced, not dropped.
            let key = StrBytes::from_string(String::from_utf8_lossy(k).into_owned());
            headers.insert(key, v.map(Bytes::copy_from_slice));
        }
        recs.push(KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: view.offset as i64,
            // The encoder starts a new batch whenever offset minus sequence changes (trap 13):
            // keep it constant so the base sequence comes out as -1 (no sequence).
            sequence: (view.offset - base) as i32 - 1,
            timestamp: view.timestamp_ms,
            key: view.key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(view.value)),
            headers,
        });
    }
    if recs.is_empty() {
        return Ok(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity(stored.len() + 64);
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    // Encoding uncompressed records into memory cannot fail: every size fits (records are bounded
    // by max_record_bytes) and offsets within one read are contiguous.
    RecordBatchEncoder::encode(&mut buf, &recs, &options).map_err(|_| {
        record::RecordError::Malformed("records could not be encoded as a Kafka batch")
    })?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DEFAULT_MAX_RECORD_BYTES, assign_offsets};

    fn krec(
        offset: i64,
        key: Option<&str>,
        value: &str,
        ts: i64,
        headers: &[(&str, Option<&str>)],
    ) -> KRecord {
        KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: ts,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        StrBytes::from_string(k.to_string()),
                        v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        }
    }

    fn produce_batch(compression: Compression, recs: &[KRecord]) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs,
            &RecordEncodeOptions { version: 2, compression },
        )
        .unwrap();
        buf.freeze()
    }

    fn sample() -> Vec<KRecord> {
        vec![
            krec(
                0,
                Some("k0"),
                "hello",
                1_700_000_000_000,
                &[("trace", Some("abc")), ("nil", None)],
            ),
            krec(1, None, "world", 1_700_000_000_005, &[]),
            krec(2, Some("k2"), "", 1_700_000_000_009, &[]),
        ]
    }

    #[test]
    fn every_compression_round_trips_keys_values_headers_timestamps() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = produce_batch(c, &sample());
            let mut stored = kafka_to_stored(&batch, DEFAULT_MAX_RECORD_BYTES, 1).unwrap();
            assert_eq!(stored.record_count, 3, "{c:?}");
            // The log assigns offsets; then a fetch turns the stored bytes back into a batch.
            assign_offsets(&mut stored.encoded, 100, DEFAULT_MAX_RECORD_BYTES).unwrap();
            let back = stored_to_kafka(&stored.encoded, DEFAULT_MAX_RECORD_BYTES).unwrap();
            let set = RecordBatchDecoder::decode_all(&mut back.clone()).unwrap();
            assert_eq!(set.len(), 1, "{c:?}: one batch, not one per record");
            let got = &set[0].records;
            let want = sample();
            assert_eq!(got.len(), 3);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.offset, w.offset + 100);
                assert_eq!(g.key, w.key);
                assert_eq!(g.value, w.value);
                assert_eq!(g.timestamp, w.timestamp);
                assert_eq!(g.headers, w.headers);
            }
        }
    }

    #[test]
    fn old_magic_is_invalid_record() {
        let mut batch = BytesMut::from(&produce_batch(Compression::None, &sample())[..]);
        batch[MAGIC_POS] = 1;
        assert!(matches!(
            kafka_to_stored(&batch.freeze(), DEFAULT_MAX_RECORD_BYTES, 0),
            Err(BatchError::Invalid(_))
        ));
    }

    #[test]
    fn a_lying_record_count_is_refused_without_allocating_it() {
        let mut batch = BytesMut::from(&produce_batch(Compression::None, &sample())[..]);
        batch[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        // The CRC covers the count, so fix it up to reach the count check itself.
        let crc = crc32c_of(&batch[ATTRIBUTES_POS..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = kafka_to_stored(&batch.freeze(), DEFAULT_MAX_RECORD_BYTES, 0).unwrap_err();
        assert!(matches!(err, BatchError::Invalid(_)), "{err}");
    }

    /// CRC-32C (Castagnoli), bitwise: only the test needs it, to forge a batch.
    fn crc32c_of(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn garbage_and_truncation_are_invalid_not_panics() {
        let batch = produce_batch(Compression::Lz4, &sample());
        for cut in [0, 10, 60, 61, batch.len() - 1] {
            assert!(
                kafka_to_stored(&batch.slice(..cut), DEFAULT_MAX_RECORD_BYTES, 0).is_err(),
                "cut {cut}"
            );
        }
        let mut flipped = BytesMut::from(&batch[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(kafka_to_stored(&flipped.freeze(), DEFAULT_MAX_RECORD_BYTES, 0).is_err());
    }

    #[test]
    fn transactional_batches_are_refused() {
        let mut recs = sample();
        for r in &mut recs {
            r.transactional = true;
            r.producer_id = 5;
            r.producer_epoch = 0;
        }
        let batch = produce_batch(Compression::None, &recs);
        assert!(matches!(
            kafka_to_stored(&batch, DEFAULT_MAX_RECORD_BYTES, 0),
            Err(BatchError::Transactional)
        ));
    }

    #[test]
    fn log_append_time_and_missing_timestamps_get_now() {
        let mut recs = sample();
        recs[1].timestamp = -1;
        let batch = produce_batch(Compression::None, &recs);
        let stored = kafka_to_stored(&batch, DEFAULT_MAX_RECORD_BYTES, 777).unwrap();
        let ts: Vec<i64> = RecordIter::new(&stored.encoded, DEFAULT_MAX_RECORD_BYTES)
            .map(|r| r.unwrap().timestamp_ms)
            .collect();
        assert_eq!(ts[1], 777);
        assert_eq!(ts[0], 1_700_000_000_000);
    }

    #[test]
    fn records_over_the_limit_are_too_large() {
        let big = "x".repeat(2000);
        let batch = produce_batch(Compression::Gzip, &[krec(0, None, &big, 1, &[])]);
        assert!(matches!(kafka_to_stored(&batch, 1000, 0), Err(BatchError::TooLarge(_))));
    }

    #[test]
    fn empty_stored_slice_is_an_empty_record_set() {
        assert!(stored_to_kafka(&[], DEFAULT_MAX_RECORD_BYTES).unwrap().is_empty());
    }
}
