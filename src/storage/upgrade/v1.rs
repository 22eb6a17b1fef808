//! Read-only knowledge of segment format version 1, the format of releases before RecordBatch v2
//! became the stored unit: its segment header and its per-record encoding, copied here so the
//! upgrade keeps working after the live engine dropped them. Decodes and CRC-checks; never
//! writes a v1 file (except the test-only encoder, which builds inputs for the upgrade's tests).
//!
//! # Byte layout of a v1 segment file (all integers little-endian)
//!
//! | position | size | field         | encoding                                               |
//! |----------|------|---------------|--------------------------------------------------------|
//! | 0        | 4    | `magic`       | the bytes `MKLG`                                       |
//! | 4        | 2    | `version`     | `u16`: 1                                               |
//! | 6        | 2    | reserved      | zero                                                   |
//! | 8        | 8    | `base_offset` | `u64`: offset of the first record (also the file name) |
//! | 16       | 4    | `header_crc`  | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `0..16`      |
//! | 20       | 4    | reserved      | zero                                                   |
//! | 24       | ...  | records       | back to back, each as in [`RecordV1`]; the active segment's file is grown (sparse) past them, and a zero `length` reads as the end of data |

use std::fmt;

/// Magic at the head of every segment file, of both versions.
pub(super) const SEGMENT_MAGIC: [u8; 4] = *b"MKLG";
/// The version this module reads.
pub(super) const VERSION: u16 = 1;
/// Position of the `version` field.
pub(super) const VERSION_POS: usize = 4;
/// Position of the `base_offset` field.
pub(super) const BASE_POS: usize = 8;
/// Position of the `header_crc` field (covers every byte before it).
pub(super) const HEADER_CRC_POS: usize = 16;
/// Position of the second reserved field.
pub(super) const RESERVED2_POS: usize = 20;
/// Size of the segment header (both versions); the first record starts here.
pub(super) const HEADER_LEN: usize = 24;

/// The header a segment of `version` starting at `base_offset` carries.
pub(super) fn encode_header(version: u16, base_offset: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..VERSION_POS].copy_from_slice(&SEGMENT_MAGIC);
    h[VERSION_POS..VERSION_POS + 2].copy_from_slice(&version.to_le_bytes());
    h[BASE_POS..HEADER_CRC_POS].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_CRC_POS]);
    h[HEADER_CRC_POS..RESERVED2_POS].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The format version a segment header claims (`None`: too short, or not `MKLG`). Only the
/// magic is checked: the caller decides what to do with each version.
pub(super) fn header_version(buf: &[u8]) -> Option<u16> {
    if buf.len() < HEADER_LEN || buf[..VERSION_POS] != SEGMENT_MAGIC {
        return None;
    }
    Some(u16::from_le_bytes([buf[VERSION_POS], buf[VERSION_POS + 1]]))
}

/// Checks a v1 segment header against the base offset its file name gives.
pub(super) fn check_header(buf: &[u8], base_offset: u64) -> Result<(), String> {
    if buf.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the segment header", buf.len()));
    }
    if buf[..HEADER_LEN] == encode_header(VERSION, base_offset) {
        return Ok(());
    }
    match header_version(buf) {
        None => Err("bad segment magic".into()),
        Some(VERSION) => Err(
            "segment header does not match its file name (bad base offset, CRC or reserved bytes)"
                .into(),
        ),
        Some(v) => Err(format!("segment format version {v}, expected {VERSION}")),
    }
}

/// Size of a record's `length` field.
pub(super) const LENGTH_FIELD_LEN: usize = 4;
/// Position of the `offset` field (the first byte the CRC covers).
const OFFSET_POS: usize = 8;
/// Smallest record: no key, empty value, no headers.
pub(super) const MIN_RECORD_LEN: usize = 34;

/// Why bytes are not a v1 record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum V1Error {
    /// Fewer bytes are left than the record needs (a torn write).
    #[error("record truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The length prefix is below the minimum record.
    #[error("record length {length} is invalid (minimum {min})")]
    BadLength { length: u64, min: usize },
    #[error("record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The fields do not fill the length exactly.
    #[error("record malformed: {0}")]
    Malformed(&'static str),
}

/// One v1 record decoded in place (every slice borrows the segment's bytes).
///
/// # Byte layout of a v1 record (all integers little-endian)
///
/// | position | size | field          | encoding                                                    |
/// |----------|------|----------------|-------------------------------------------------------------|
/// | 0        | 4    | `length`       | `u32`: bytes after this field (CRC through the last header) |
/// | 4        | 4    | `crc`          | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `8..4+length`    |
/// | 8        | 8    | `offset`       | `u64`: the record's offset in its partition                 |
/// | 16       | 8    | `timestamp_ms` | `i64`: milliseconds since the Unix epoch                    |
/// | 24       | 4    | `key_len`      | `i32`: key length, `-1` = no key                            |
/// | 28       | k    | `key`          | raw bytes                                                   |
/// | 28+k     | 4    | `value_len`    | `u32`: value length (v1 has no null value)                  |
/// | 32+k     | v    | `value`        | raw bytes                                                   |
/// | 32+k+v   | 2    | `header_count` | `u16`: number of headers                                    |
/// | ...      |      | headers        | per header: `u16` key length, key bytes, `i32` value length (`-1` = null value), value bytes |
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordV1<'a> {
    pub(super) offset: u64,
    pub(super) timestamp_ms: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: &'a [u8],
    header_count: u16,
    headers_raw: &'a [u8],
    /// The whole encoded record, length prefix included.
    pub(super) raw: &'a [u8],
}

impl fmt::Debug for RecordV1<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordV1")
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("key_len", &self.key.map(<[u8]>::len))
            .field("value_len", &self.value.len())
            .field("header_count", &self.header_count)
            .finish()
    }
}

impl<'a> RecordV1<'a> {
    /// The headers, in order.
    pub(super) fn headers(&self) -> HeadersV1<'a> {
        HeadersV1 { rest: self.headers_raw, remaining: self.header_count }
    }

    pub(super) fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }
}

/// The headers of a [`RecordV1`]: `(key, value)`, checked when the record was decoded.
pub(super) struct HeadersV1<'a> {
    rest: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for HeadersV1<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut c = Cursor { buf: self.rest, pos: 0 };
        // decode() walked every header already, so these reads cannot fail; ending quietly is
        // the safe answer if they somehow did.
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
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], V1Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(V1Error::Malformed("a field runs past the end of the record"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], V1Error> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, V1Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, V1Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, V1Error> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, V1Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, V1Error> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

/// Decodes the record at the start of `buf`: length, CRC, then every field, which must fill the
/// length exactly. No upper bound on the length besides the bytes present: the limit the
/// writing broker applied is not known here, and the CRC catches a wrong length.
pub(super) fn decode(buf: &[u8]) -> Result<RecordV1<'_>, V1Error> {
    if buf.len() < LENGTH_FIELD_LEN {
        return Err(V1Error::Truncated { needed: LENGTH_FIELD_LEN, available: buf.len() });
    }
    let length = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let total = length + LENGTH_FIELD_LEN;
    if total < MIN_RECORD_LEN {
        return Err(V1Error::BadLength {
            length: length as u64,
            min: MIN_RECORD_LEN - LENGTH_FIELD_LEN,
        });
    }
    if buf.len() < total {
        return Err(V1Error::Truncated { needed: total, available: buf.len() });
    }
    let raw = &buf[..total];
    let stored = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let computed = crc32fast::hash(&raw[OFFSET_POS..]);
    if stored != computed {
        return Err(V1Error::CrcMismatch { stored, computed });
    }
    let mut c = Cursor { buf: raw, pos: OFFSET_POS };
    let offset = c.u64()?;
    let timestamp_ms = c.i64()?;
    let key = match c.i32()? {
        -1 => None,
        n if n < 0 => return Err(V1Error::Malformed("negative key length")),
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
            n if n < 0 => return Err(V1Error::Malformed("negative header value length")),
            n => {
                c.bytes(n as usize)?;
            }
        }
    }
    if c.pos != raw.len() {
        return Err(V1Error::Malformed("bytes left over after the last header"));
    }
    Ok(RecordV1 {
        offset,
        timestamp_ms,
        key,
        value,
        header_count,
        headers_raw: &raw[headers_start..],
        raw,
    })
}

/// True when `rest` starts with a zero `length`: unwritten (sparse or zero-filled) space, the
/// end of an active segment's data.
pub(super) fn is_end_of_data(rest: &[u8]) -> bool {
    rest.len() >= LENGTH_FIELD_LEN && rest[..LENGTH_FIELD_LEN] == [0; LENGTH_FIELD_LEN]
}

/// Test-only v1 writer: the old encoder, to build the files the upgrade reads.
#[cfg(test)]
pub(super) mod encode {
    use super::{LENGTH_FIELD_LEN, OFFSET_POS};

    /// A record to encode: `(header key, header value)` pairs in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct OwnedV1 {
        pub(crate) offset: u64,
        pub(crate) timestamp_ms: i64,
        pub(crate) key: Option<Vec<u8>>,
        pub(crate) value: Vec<u8>,
        pub(crate) headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    /// Appends `r` as a v1 record, CRC included.
    pub(crate) fn record(buf: &mut Vec<u8>, r: &OwnedV1) {
        let start = buf.len();
        buf.extend_from_slice(&[0; 8]); // length and crc, below
        buf.extend_from_slice(&r.offset.to_le_bytes());
        buf.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            Some(k) => {
                buf.extend_from_slice(&(k.len() as i32).to_le_bytes());
                buf.extend_from_slice(k);
            }
            None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
        }
        buf.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        buf.extend_from_slice(&r.value);
        buf.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
        for (k, v) in &r.headers {
            buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
            buf.extend_from_slice(k);
            match v {
                Some(v) => {
                    buf.extend_from_slice(&(v.len() as i32).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
            }
        }
        let length = (buf.len() - start - LENGTH_FIELD_LEN) as u32;
        buf[start..start + 4].copy_from_slice(&length.to_le_bytes());
        let crc = crc32fast::hash(&buf[start + OFFSET_POS..]);
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{OwnedV1, record};
    use super::*;

    fn sample() -> OwnedV1 {
        OwnedV1 {
            offset: 7,
            timestamp_ms: -5,
            key: Some(b"key".to_vec()),
            value: b"value".to_vec(),
            headers: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"n".to_vec(), None)],
        }
    }

    #[test]
    fn decode_reads_back_every_field_the_old_encoder_wrote() {
        let mut buf = Vec::new();
        record(&mut buf, &sample());
        let r = decode(&buf).unwrap();
        assert_eq!(
            (r.offset, r.timestamp_ms, r.key, r.value),
            (7, -5, Some(&b"key"[..]), &b"value"[..])
        );
        let h: Vec<_> = r.headers().collect();
        assert_eq!(h, vec![(&b"a"[..], Some(&b"1"[..])), (&b"n"[..], None)]);
        assert_eq!(r.raw.len(), buf.len());
    }

    #[test]
    fn decode_matches_the_golden_fixture_layout() {
        // The first record of tests/fixtures/storage_golden, written by the v1 release.
        let seg = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/storage_golden/00000000000000000000.log"),
        )
        .unwrap();
        check_header(&seg, 0).unwrap();
        let r = decode(&seg[HEADER_LEN..]).unwrap();
        assert_eq!((r.offset, r.timestamp_ms, r.key), (0, 1_700_000_000_000, Some(&b"key-0"[..])));
        assert_eq!(r.value, b"value number 0");
        assert_eq!(r.header_count(), 2);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut buf = Vec::new();
        record(&mut buf, &sample());
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode(&bad).is_err(), "flip at byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn header_checks_name_the_problem() {
        let h = encode_header(VERSION, 42);
        check_header(&h, 42).unwrap();
        assert!(check_header(&h, 41).unwrap_err().contains("file name"));
        assert!(check_header(&encode_header(2, 42), 42).unwrap_err().contains("version 2"));
        assert!(check_header(&h[..10], 42).unwrap_err().contains("shorter"));
        assert_eq!(header_version(&encode_header(2, 0)), Some(2));
        assert_eq!(header_version(&[0u8; HEADER_LEN]), None);
    }
}
