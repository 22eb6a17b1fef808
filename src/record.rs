//! The record format: the one definition of a stored record's bytes, shared by the storage engine
//! (what lies on disk), the native protocol (what a producer sends and a fetch returns) and the
//! client (which checks the same CRCs the broker wrote). Pure encode/decode on buffers; never I/O.
//!
//! # Byte layout of one record (all integers little-endian)
//!
//! | position | size | field          | encoding                                                   |
//! |----------|------|----------------|------------------------------------------------------------|
//! | 0        | 4    | `length`       | `u32`: bytes after this field (CRC through the last header) |
//! | 4        | 4    | `crc`          | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `8..4+length`   |
//! | 8        | 8    | `offset`       | `u64`: the record's offset in its partition                |
//! | 16       | 8    | `timestamp_ms` | `i64`: milliseconds since the Unix epoch                   |
//! | 24       | 4    | `key_len`      | `i32`: key length, `-1` = no key                           |
//! | 28       | k    | `key`          | raw bytes                                                  |
//! | 28+k     | 4    | `value_len`    | `u32`: value length                                        |
//! | 32+k     | v    | `value`        | raw bytes                                                  |
//! | 32+k+v   | 2    | `header_count` | `u16`: number of headers                                   |
//! | ...      |      | headers        | per header: `u16` key length, key bytes, `i32` value length (`-1` = null value), value bytes |
//!
//! The CRC is CRC-32 (IEEE polynomial, as `crc32fast` computes it), *not* Kafka's CRC-32C. It covers
//! everything after itself, the offset included, so a record that was moved or renumbered is caught.
//! The fields must exactly fill `length`: a record with bytes left over, or fields running past its
//! end, is malformed.

use std::fmt;

/// Size of the `length` field.
pub const LENGTH_FIELD_LEN: usize = 4;
/// Size of the `crc` field.
pub const CRC_FIELD_LEN: usize = 4;
/// Position of the `offset` field within a record (the first byte the CRC covers).
pub const OFFSET_POS: usize = LENGTH_FIELD_LEN + CRC_FIELD_LEN;
/// Position of the `timestamp_ms` field.
pub const TIMESTAMP_POS: usize = OFFSET_POS + 8;
/// Position of the `key_len` field.
pub const KEY_LEN_POS: usize = TIMESTAMP_POS + 8;
/// Smallest possible record: no key, empty value, no headers.
pub const MIN_RECORD_LEN: usize = KEY_LEN_POS + 4 + 4 + 2;
/// Default largest record (whole encoded record, length prefix included): 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// Why a byte range is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes are available than the record needs (a torn write, or a short buffer).
    #[error("record truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The length prefix is impossible (zero, below the minimum, or above the limit).
    #[error("record length {length} is invalid (minimum {min}, maximum {max})")]
    BadLength { length: u64, min: usize, max: u64 },
    /// The stored CRC does not match the bytes.
    #[error("record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The fields do not fit the length exactly.
    #[error("record malformed: {0}")]
    Malformed(&'static str),
    /// A record to encode is larger than allowed.
    #[error("record of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
}

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
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

/// The parts of a record to append; the log assigns the offset.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [Header],
}

impl<'a> NewRecord<'a> {
    /// A record with just a value, stamped now.
    pub fn value(value: &'a [u8]) -> Self {
        NewRecord { timestamp_ms: now_ms(), key: None, value, headers: &[] }
    }

    /// Bytes this record takes when encoded, length prefix included.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.key, self.value, self.headers)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Bytes a record with these fields takes when encoded, length prefix included.
pub fn encoded_len(key: Option<&[u8]>, value: &[u8], headers: &[Header]) -> usize {
    MIN_RECORD_LEN
        + key.map_or(0, <[u8]>::len)
        + value.len()
        + headers
            .iter()
            .map(|h| 2 + h.key.len() + 4 + h.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
}

/// Appends one encoded record to `buf`, CRC included. Fails, leaving `buf` unchanged, when the
/// record would exceed `max_record_bytes` or a field exceeds what its length field can hold.
pub fn encode(
    buf: &mut Vec<u8>,
    offset: u64,
    record: &NewRecord<'_>,
    max_record_bytes: u32,
) -> Result<(), RecordError> {
    let start = buf.len();
    encode_fields(buf, offset, record, max_record_bytes)?;
    let crc = crc32fast::hash(&buf[start + OFFSET_POS..]);
    buf[start + LENGTH_FIELD_LEN..start + OFFSET_POS].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends one record to be appended by the broker: as [`encode`], but with offset 0 and the
/// CRC field left zero. The broker assigns the offset and computes the CRC of every record it
/// appends ([`assign_offsets`]), never trusting either from a producer, so a CRC computed here
/// would be thrown away (it was a fifth of `minikafka produce --file`'s CPU).
pub fn encode_for_append(
    buf: &mut Vec<u8>,
    record: &NewRecord<'_>,
    max_record_bytes: u32,
) -> Result<(), RecordError> {
    encode_fields(buf, 0, record, max_record_bytes)
}

/// Every field of [`encode`], with the CRC field zero.
fn encode_fields(
    buf: &mut Vec<u8>,
    offset: u64,
    record: &NewRecord<'_>,
    max_record_bytes: u32,
) -> Result<(), RecordError> {
    let size = record.encoded_len();
    if size as u64 > u64::from(max_record_bytes) {
        return Err(RecordError::TooLarge { size: size as u64, max: u64::from(max_record_bytes) });
    }
    if record.headers.len() > usize::from(u16::MAX)
        || record.headers.iter().any(|h| h.key.len() > usize::from(u16::MAX))
    {
        return Err(RecordError::Malformed("too many headers or a header key over 65535 bytes"));
    }
    // Every length fits its field: the whole record is at most max_record_bytes (a u32).
    let start = buf.len();
    buf.reserve(size);
    buf.extend_from_slice(&((size - LENGTH_FIELD_LEN) as u32).to_le_bytes());
    buf.extend_from_slice(&[0; CRC_FIELD_LEN]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&record.timestamp_ms.to_le_bytes());
    match record.key {
        Some(k) => {
            buf.extend_from_slice(&(k.len() as i32).to_le_bytes());
            buf.extend_from_slice(k);
        }
        None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    buf.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
    buf.extend_from_slice(record.value);
    buf.extend_from_slice(&(record.headers.len() as u16).to_le_bytes());
    for h in record.headers {
        buf.extend_from_slice(&(h.key.len() as u16).to_le_bytes());
        buf.extend_from_slice(&h.key);
        match &h.value {
            Some(v) => {
                buf.extend_from_slice(&(v.len() as i32).to_le_bytes());
                buf.extend_from_slice(v);
            }
            None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
        }
    }
    debug_assert_eq!(buf.len() - start, size);
    Ok(())
}

/// A record decoded in place: every slice borrows the buffer it was read from (e.g. a memory map).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    header_count: u16,
    headers_raw: &'a [u8],
    /// The whole encoded record, length prefix included.
    pub raw: &'a [u8],
}

impl fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordView")
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("key_len", &self.key.map(<[u8]>::len))
            .field("value_len", &self.value.len())
            .field("header_count", &self.header_count)
            .finish()
    }
}

impl<'a> RecordView<'a> {
    /// The headers, in order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.headers_raw, remaining: self.header_count }
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }

    /// Total encoded size, length prefix included.
    pub fn encoded_len(&self) -> usize {
        self.raw.len()
    }

    /// Copies the record out of the buffer.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            headers: self
                .headers()
                .map(|(k, v)| Header { key: k.to_vec(), value: v.map(<[u8]>::to_vec) })
                .collect(),
        }
    }
}

/// Iterates the headers of a [`RecordView`]; they were validated when the record was decoded.
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut c = Cursor { buf: self.rest, pos: 0 };
        // decode() checked that every header fits, so these reads cannot fail; stop quietly if
        // they somehow did rather than panic on a reader's path.
        let klen = c.u16().ok()?;
        let key = c.bytes(usize::from(klen)).ok()?;
        let vlen = c.i32().ok()?;
        let value = if vlen < 0 { None } else { Some(c.bytes(vlen as usize).ok()?) };
        self.rest = &self.rest[c.pos..];
        Some((key, value))
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(RecordError::Malformed("a field runs past the end of the record"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

/// Reads the length prefix at the start of `buf` and returns the record's total size (prefix
/// included), checked against the minimum and `max_record_bytes`, without touching the rest.
pub fn peek_total_len(buf: &[u8], max_record_bytes: u32) -> Result<usize, RecordError> {
    if buf.len() < LENGTH_FIELD_LEN {
        return Err(RecordError::Truncated { needed: LENGTH_FIELD_LEN, available: buf.len() });
    }
    let length = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let total = length + LENGTH_FIELD_LEN;
    if total < MIN_RECORD_LEN || total as u64 > u64::from(max_record_bytes) {
        return Err(RecordError::BadLength {
            length: length as u64,
            min: MIN_RECORD_LEN - LENGTH_FIELD_LEN,
            max: u64::from(max_record_bytes) - LENGTH_FIELD_LEN as u64,
        });
    }
    Ok(total)
}

/// Decodes the record at the start of `buf`, checking its length, CRC and field layout.
pub fn decode(buf: &[u8], max_record_bytes: u32) -> Result<RecordView<'_>, RecordError> {
    let total = peek_total_len(buf, max_record_bytes)?;
    if buf.len() < total {
        return Err(RecordError::Truncated { needed: total, available: buf.len() });
    }
    let raw = &buf[..total];
    let stored = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let computed = crc32fast::hash(&raw[OFFSET_POS..]);
    if stored != computed {
        return Err(RecordError::CrcMismatch { stored, computed });
    }
    parse_fields(raw)
}

/// Parses the fields of a record whose length is known to be `raw.len()`; no CRC check.
fn parse_fields(raw: &[u8]) -> Result<RecordView<'_>, RecordError> {
    let mut c = Cursor { buf: raw, pos: OFFSET_POS };
    let offset = c.u64()?;
    let timestamp_ms = c.i64()?;
    let key_len = c.i32()?;
    let key = match key_len {
        -1 => None,
        n if n < 0 => return Err(RecordError::Malformed("negative key length")),
        n => Some(c.bytes(n as usize)?),
    };
    let value_len = c.u32()?;
    let value = c.bytes(value_len as usize)?;
    let header_count = c.u16()?;
    let headers_start = c.pos;
    for _ in 0..header_count {
        let klen = c.u16()?;
        c.bytes(usize::from(klen))?;
        match c.i32()? {
            -1 => {}
            n if n < 0 => return Err(RecordError::Malformed("negative header value length")),
            n => {
                c.bytes(n as usize)?;
            }
        }
    }
    if c.pos != raw.len() {
        return Err(RecordError::Malformed("bytes left over after the last header"));
    }
    Ok(RecordView {
        offset,
        timestamp_ms,
        key,
        value,
        header_count,
        headers_raw: &raw[headers_start..],
        raw,
    })
}

/// Rewrites the offset of one encoded record in place and recomputes its CRC. `raw` must be exactly
/// one record (as [`peek_total_len`] measured it).
pub fn set_offset(raw: &mut [u8], offset: u64) {
    raw[OFFSET_POS..TIMESTAMP_POS].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&raw[OFFSET_POS..]);
    raw[LENGTH_FIELD_LEN..OFFSET_POS].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a buffer of records a producer encoded (their offsets and CRCs are ignored), assigns
/// consecutive offsets from `first_offset` and recomputes every CRC, in place. Returns the number of
/// records. On error nothing about the buffer may be trusted and it must not be stored.
///
/// This is how an append of pre-encoded bytes stays one copy: the producer's buffer becomes the
/// bytes written to disk.
pub fn assign_offsets(
    buf: &mut [u8],
    first_offset: u64,
    max_record_bytes: u32,
) -> Result<u64, RecordError> {
    let mut pos = 0;
    let mut count = 0u64;
    while pos < buf.len() {
        let total = peek_total_len(&buf[pos..], max_record_bytes)?;
        if buf.len() - pos < total {
            return Err(RecordError::Truncated { needed: total, available: buf.len() - pos });
        }
        parse_fields(&buf[pos..pos + total])?;
        set_offset(&mut buf[pos..pos + total], first_offset + count);
        pos += total;
        count += 1;
    }
    Ok(count)
}

/// Iterates the records in a buffer of concatenated records, CRC-checking each. Stops after the
/// first error (yielding it).
pub struct RecordIter<'a> {
    buf: &'a [u8],
    max_record_bytes: u32,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    pub fn new(buf: &'a [u8], max_record_bytes: u32) -> Self {
        RecordIter { buf, max_record_bytes, failed: false }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() || self.failed {
            return None;
        }
        match decode(self.buf, self.max_record_bytes) {
            Ok(view) => {
                self.buf = &self.buf[view.raw.len()..];
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_encoded_for_append_become_exactly_the_encoded_records_once_offsets_are_assigned() {
        let headers = sample_headers();
        let recs = [
            NewRecord { timestamp_ms: 5, key: Some(b"k"), value: b"v1", headers: &headers },
            NewRecord { timestamp_ms: 6, key: None, value: b"", headers: &[] },
        ];
        let (mut for_append, mut encoded) = (Vec::new(), Vec::new());
        for (i, r) in recs.iter().enumerate() {
            encode_for_append(&mut for_append, r, DEFAULT_MAX_RECORD_BYTES).unwrap();
            encode(&mut encoded, 40 + i as u64, r, DEFAULT_MAX_RECORD_BYTES).unwrap();
        }
        assert!(decode(&for_append, DEFAULT_MAX_RECORD_BYTES).is_err(), "no CRC yet");
        assert_eq!(assign_offsets(&mut for_append, 40, DEFAULT_MAX_RECORD_BYTES).unwrap(), 2);
        assert_eq!(for_append, encoded);
    }

    fn sample_headers() -> Vec<Header> {
        vec![
            Header { key: b"trace".to_vec(), value: Some(b"abc".to_vec()) },
            Header { key: b"empty".to_vec(), value: None },
        ]
    }

    #[test]
    fn encode_decode_roundtrip_keeps_every_field() {
        let headers = sample_headers();
        let rec = NewRecord {
            timestamp_ms: 1_700_000_000_123,
            key: Some(b"k1"),
            value: b"hello",
            headers: &headers,
        };
        let mut buf = Vec::new();
        encode(&mut buf, 42, &rec, DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(buf.len(), rec.encoded_len());
        let view = decode(&buf, DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(view.offset, 42);
        assert_eq!(view.timestamp_ms, 1_700_000_000_123);
        assert_eq!(view.key, Some(&b"k1"[..]));
        assert_eq!(view.value, b"hello");
        let got: Vec<_> = view.headers().collect();
        assert_eq!(got, vec![(&b"trace"[..], Some(&b"abc"[..])), (&b"empty"[..], None)]);
        assert_eq!(view.to_record().headers, headers);
    }

    #[test]
    fn layout_matches_the_documented_table() {
        let rec = NewRecord { timestamp_ms: -5, key: None, value: b"v", headers: &[] };
        let mut buf = Vec::new();
        encode(&mut buf, 7, &rec, DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(buf.len(), MIN_RECORD_LEN + 1);
        assert_eq!(u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize, buf.len() - 4);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 7);
        assert_eq!(i64::from_le_bytes(buf[16..24].try_into().unwrap()), -5);
        assert_eq!(i32::from_le_bytes(buf[24..28].try_into().unwrap()), -1);
        assert_eq!(u32::from_le_bytes(buf[28..32].try_into().unwrap()), 1);
        assert_eq!(buf[32], b'v');
        assert_eq!(u16::from_le_bytes(buf[33..35].try_into().unwrap()), 0);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let rec = NewRecord { timestamp_ms: 1, key: Some(b"key"), value: b"value", headers: &[] };
        let mut buf = Vec::new();
        encode(&mut buf, 3, &rec, DEFAULT_MAX_RECORD_BYTES).unwrap();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(&bad, DEFAULT_MAX_RECORD_BYTES).is_err(),
                    "flip at byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn oversized_record_is_refused_and_buffer_untouched() {
        let big = vec![0u8; 2048];
        let mut buf = vec![9u8];
        let err = encode(&mut buf, 0, &NewRecord::value(&big), 1024).unwrap_err();
        assert!(matches!(err, RecordError::TooLarge { max: 1024, .. }));
        assert_eq!(buf, vec![9u8]);
    }

    #[test]
    fn huge_length_prefix_is_rejected_before_reading_on() {
        let buf = [0xff, 0xff, 0xff, 0x7f, 0, 0];
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_RECORD_BYTES),
            Err(RecordError::BadLength { .. })
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 0], DEFAULT_MAX_RECORD_BYTES),
            Err(RecordError::BadLength { .. })
        ));
    }

    #[test]
    fn assign_offsets_renumbers_and_reseals() {
        let mut buf = Vec::new();
        for v in [&b"a"[..], b"bb", b"ccc"] {
            encode(&mut buf, 0, &NewRecord::value(v), DEFAULT_MAX_RECORD_BYTES).unwrap();
        }
        let n = assign_offsets(&mut buf, 100, DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(n, 3);
        let offsets: Vec<u64> =
            RecordIter::new(&buf, DEFAULT_MAX_RECORD_BYTES).map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, vec![100, 101, 102]);
        buf.push(1);
        assert!(assign_offsets(&mut buf, 0, DEFAULT_MAX_RECORD_BYTES).is_err());
    }

    #[test]
    fn fields_overrunning_the_length_are_malformed() {
        let mut buf = Vec::new();
        encode(&mut buf, 0, &NewRecord::value(b"abc"), DEFAULT_MAX_RECORD_BYTES).unwrap();
        // Claim a longer value than the record holds, then re-seal so only the layout is wrong.
        buf[28..32].copy_from_slice(&100u32.to_le_bytes());
        set_offset(&mut buf, 0);
        assert!(matches!(decode(&buf, DEFAULT_MAX_RECORD_BYTES), Err(RecordError::Malformed(_))));
    }
}
