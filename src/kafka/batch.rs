//! Translation between Kafka record batches (magic 2, any of the four compressions) and our stored
//! record format (`crate::record`). Keys, values, headers and timestamps cross unchanged; offsets
//! are the same numbers in both protocols. Pure functions on buffers; never does I/O.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::records::{Compression, RecordBatchDecoder, TimestampType};

use crate::record::{self, Header, NewRecord, RecordIter};

/// Size of a v2 batch header: base offset through record count.
const BATCH_HEADER_LEN: usize = 61;
/// Position of the magic byte in a batch.
const MAGIC_POS: usize = 16;
/// Position of the CRC-32C field (it covers the attributes through the end of the batch).
const CRC_POS: usize = 17;
/// Position of the attributes field.
const ATTRIBUTES_POS: usize = 21;
/// Position of the record count field.
const RECORD_COUNT_POS: usize = 57;
/// The smallest encoded v2 record: seven single-byte varints/fields. Bounds how many records a
/// batch can truly hold, so a lying record count never sizes an allocation.
const MIN_KAFKA_RECORD_LEN: usize = 7;
/// Memory the records of one produced record set may take while they are validated. Tiny records
/// compress to almost nothing (a 382 KB gzip batch can hold 38 M of them), so the count a batch
/// header claims is checked against this before anything is decompressed or decoded.
const DECODE_BUDGET_BYTES: usize = 64 << 20;
/// What one record costs while validated: its decoded form and its smallest stored form.
const DECODED_RECORD_COST: usize =
    std::mem::size_of::<kafka_protocol::records::Record>() + record::MIN_RECORD_LEN;
/// Most records one produced record set may hold (about 350,000).
pub(crate) const MAX_RECORDS_PER_SET: usize = DECODE_BUDGET_BYTES / DECODED_RECORD_COST;
// The limit leaves ample room for ordinary batches (librdkafka sends up to 10,000 records).
const _: () = assert!(MAX_RECORDS_PER_SET > 100_000);
/// Most bytes the stored form of one produced record set may take (a batch that decompresses
/// to more is refused as it grows, not after).
pub(crate) const MAX_STORED_SET_BYTES: usize = 256 << 20;

/// Why a produced record set cannot be stored. All map to a Kafka error code in the handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// Not magic 2 (old message sets), or a batch that does not decode: INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// A batch that decodes but breaks a limit (record too large): MESSAGE_TOO_LARGE.
    #[error("record too large: {0}")]
    TooLarge(#[from] record::RecordError),
    /// More records than one record set may hold while validated: INVALID_RECORD.
    #[error(
        "record set holds {count} records, more than the {max} one Produce may carry per partition"
    )]
    TooManyRecords { count: usize, max: usize },
    /// A record set whose stored form outgrows the limit: MESSAGE_TOO_LARGE.
    #[error("record set decodes to more than {max} bytes")]
    SetTooLarge { max: usize },
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
        // Uncompressed, the bytes at hand bound the count: a lying count is just invalid.
        let compressed = attributes & 0b111 != 0;
        if !compressed && claimed > (buf.len() - BATCH_HEADER_LEN) / MIN_KAFKA_RECORD_LEN {
            return Err(BatchError::Invalid(format!(
                "record count {claimed} cannot fit in {} bytes",
                buf.len() - BATCH_HEADER_LEN
            )));
        }
        let total = out.record_count.saturating_add(claimed);
        if total > MAX_RECORDS_PER_SET {
            return Err(BatchError::TooManyRecords { count: total, max: MAX_RECORDS_PER_SET });
        }
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
            record::encode_for_append(&mut out.encoded, &rec, max_record_bytes)?;
            out.record_count += 1;
            if out.encoded.len() > MAX_STORED_SET_BYTES {
                return Err(BatchError::SetTooLarge { max: MAX_STORED_SET_BYTES });
            }
        }
        if let Some(first) = set.records.first() {
            out.base_sequence = first.sequence;
        }
    }
    Ok(out)
}

/// Appends a zigzag varint (Kafka's `varint`/`varlong`).
fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Appends a length as a varint, -1 for "null".
fn put_len(buf: &mut Vec<u8>, len: Option<usize>) {
    put_varint(buf, len.map_or(-1, |l| l as i64));
}

/// Encodes stored records (as a fetch read them) into one uncompressed Kafka v2 record batch.
/// Writes the bytes directly (no per-record allocation): this is the consumer's hot path. Stops
/// at a record that fails its checks, returning what came before it, or the error if it was the
/// first.
pub(crate) fn stored_to_kafka(
    stored: &[u8],
    max_record_bytes: u32,
) -> Result<Bytes, record::RecordError> {
    let mut records: Vec<u8> = Vec::with_capacity(stored.len() + stored.len() / 8);
    let mut body: Vec<u8> = Vec::with_capacity(256);
    let mut first: Option<(u64, i64)> = None;
    let (mut last_offset, mut max_ts, mut count) = (0u64, i64::MIN, 0i32);
    for view in RecordIter::new(stored, max_record_bytes) {
        let view = match view {
            Ok(v) => v,
            Err(e) if count == 0 => return Err(e),
            Err(_) => break,
        };
        let (base_offset, base_ts) = *first.get_or_insert((view.offset, view.timestamp_ms));
        body.clear();
        body.push(0); // record attributes: unused
        put_varint(&mut body, view.timestamp_ms.wrapping_sub(base_ts));
        put_varint(&mut body, (view.offset - base_offset) as i64);
        put_len(&mut body, view.key.map(<[u8]>::len));
        body.extend_from_slice(view.key.unwrap_or_default());
        put_len(&mut body, Some(view.value.len()));
        body.extend_from_slice(view.value);
        put_varint(&mut body, view.header_count() as i64);
        for (k, v) in view.headers() {
            put_len(&mut body, Some(k.len()));
            body.extend_from_slice(k);
            put_len(&mut body, v.map(<[u8]>::len));
            body.extend_from_slice(v.unwrap_or_default());
        }
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
        last_offset = view.offset;
        max_ts = max_ts.max(view.timestamp_ms);
        count += 1;
    }
    let Some((base_offset, base_ts)) = first else { return Ok(Bytes::new()) };
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + records.len());
    buf.put_i64(base_offset as i64);
    // Batch length counts everything after this field: 49 header bytes plus the records.
    buf.put_i32((BATCH_HEADER_LEN - 12 + records.len()) as i32);
    buf.put_i32(0); // partition leader epoch
    buf.put_i8(2); // magic
    buf.put_u32(0); // CRC-32C, filled below
    buf.put_i16(0); // attributes: no compression, create time, not transactional
    buf.put_i32((last_offset - base_offset) as i32);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(-1); // producer id
    buf.put_i16(-1); // producer epoch
    buf.put_i32(-1); // base sequence
    buf.put_i32(count);
    buf.extend_from_slice(&records);
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_POS..]);
    buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DEFAULT_MAX_RECORD_BYTES, assign_offsets};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record as KRecord, RecordBatchEncoder, RecordEncodeOptions};

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
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
        batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        let err = kafka_to_stored(&batch.freeze(), DEFAULT_MAX_RECORD_BYTES, 0).unwrap_err();
        assert!(matches!(err, BatchError::Invalid(_)), "{err}");
    }

    #[test]
    fn a_compressed_batch_claiming_too_many_records_is_refused_before_decompression() {
        let mut batch = BytesMut::from(&produce_batch(Compression::Gzip, &sample())[..]);
        let claimed = MAX_RECORDS_PER_SET as i32 + 1;
        batch[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&claimed.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
        batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        let err = kafka_to_stored(&batch.freeze(), DEFAULT_MAX_RECORD_BYTES, 0).unwrap_err();
        assert!(matches!(err, BatchError::TooManyRecords { .. }), "{err}");
    }

    #[test]
    fn a_lying_header_count_is_refused_without_allocating_it() {
        // The last record has no headers, so the batch ends with its header count (varint 0).
        // Claim 63 headers (zigzag 0x7e, still one byte) with no bytes left to hold them.
        let mut batch = BytesMut::from(&produce_batch(Compression::None, &sample())[..]);
        let last = batch.len() - 1;
        assert_eq!(batch[last], 0);
        batch[last] = 0x7e;
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
        batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        let err = kafka_to_stored(&batch.freeze(), DEFAULT_MAX_RECORD_BYTES, 0).unwrap_err();
        assert!(matches!(err, BatchError::Invalid(_)), "{err}");
        // The same batch with its honest count is accepted.
        let honest = produce_batch(Compression::None, &sample());
        assert_eq!(kafka_to_stored(&honest, DEFAULT_MAX_RECORD_BYTES, 0).unwrap().record_count, 3);
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
        let mut stored = kafka_to_stored(&batch, DEFAULT_MAX_RECORD_BYTES, 777).unwrap();
        // As the broker appends them: offsets assigned, CRCs computed.
        record::assign_offsets(&mut stored.encoded, 0, DEFAULT_MAX_RECORD_BYTES).unwrap();
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
    fn fetch_batches_keep_out_of_order_timestamps_null_keys_and_big_values() {
        let big = vec![7u8; 300_000];
        let headers = vec![Header { key: b"h".to_vec(), value: None }];
        let recs = [
            NewRecord { timestamp_ms: 5_000, key: None, value: &big, headers: &headers },
            NewRecord { timestamp_ms: 1_000, key: Some(b""), value: b"", headers: &[] },
            NewRecord { timestamp_ms: 9_000, key: Some(b"k"), value: b"v", headers: &[] },
        ];
        let mut stored = Vec::new();
        for r in &recs {
            record::encode(&mut stored, 0, r, DEFAULT_MAX_RECORD_BYTES).unwrap();
        }
        assign_offsets(&mut stored, 1_000_000, DEFAULT_MAX_RECORD_BYTES).unwrap();
        let batch = stored_to_kafka(&stored, DEFAULT_MAX_RECORD_BYTES).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut batch.clone()).unwrap();
        assert_eq!(sets.len(), 1);
        let got = &sets[0].records;
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1_000_000, 1_000_001, 1_000_002]
        );
        assert_eq!(got.iter().map(|r| r.timestamp).collect::<Vec<_>>(), vec![5_000, 1_000, 9_000]);
        assert_eq!(got[0].key, None);
        assert_eq!(got[0].value.as_deref(), Some(&big[..]));
        assert_eq!(got[0].headers.get(&StrBytes::from_static_str("h")), Some(&None));
        assert_eq!(got[1].key.as_deref(), Some(&b""[..]));
        assert_eq!(got[2].value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn empty_stored_slice_is_an_empty_record_set() {
        assert!(stored_to_kafka(&[], DEFAULT_MAX_RECORD_BYTES).unwrap().is_empty());
    }
}
