//! The checked head shared by the small metadata files (offset and time indexes, producer state
//! snapshots, `@producer-ids`, the log start checkpoint): writing and checking the magic, the
//! version and the reserved bytes, the CRC-32 (IEEE, `crc32fast`) over a range, and reading
//! little-endian integers out of a checked buffer. Each file's own fields, byte table and
//! checks stay with its type; this module never knows a field past the CRC, never decides what a
//! failed check means (rebuild, fall back, refuse to start: the caller does) and never does I/O.
//!
//! # The two shapes it serves (all integers little-endian)
//!
//! Every file starts with the same 8-byte prefix:
//!
//! | position | size | field     | encoding         |
//! |----------|------|-----------|------------------|
//! | 0        | 4    | `magic`   | four bytes       |
//! | 4        | 2    | `version` | `u16`            |
//! | 6        | 2    | reserved  | zero             |
//!
//! A file with a variable body (indexes, snapshots) then has its CRC at 8, covering every byte
//! from 12 to the end ([`Format::start`], [`seal`], [`Format::check`]):
//!
//! | position | size | field | encoding                                                     |
//! |----------|------|-------|--------------------------------------------------------------|
//! | 8        | 4    | `crc` | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `12..` to the end |
//! | 12       | …    | body  | the file's own fields                                        |
//!
//! A fixed-size record (`@producer-ids`, the log start checkpoint) instead puts its fields after
//! the prefix and its CRC in its last 4 bytes, over all that precedes it ([`Format::write_prefix`],
//! [`seal_record`], [`Format::check_record`]).

use std::ops::Range;

/// Position of the CRC in a file of the variable shape.
const CRC_POS: usize = 8;
/// First byte the CRC of the variable shape covers: the body starts here.
pub(crate) const BODY_POS: usize = 12;
/// Size of the prefix (magic, version, reserved).
const PREFIX_LEN: usize = 8;

/// The magic and version that name one file format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    pub(crate) magic: [u8; 4],
    pub(crate) version: u16,
}

impl Format {
    /// A buffer holding the prefix and a zero CRC (set by [`seal`]), ready for the body.
    pub(crate) fn start(self, capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(capacity.max(BODY_POS));
        buf.resize(BODY_POS, 0);
        self.write_prefix(&mut buf);
        buf
    }

    /// Writes the prefix into the first 8 bytes of `buf` (the reserved bytes are left as they
    /// are: zero in a fresh buffer).
    pub(crate) fn write_prefix(self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&self.magic);
        buf[4..6].copy_from_slice(&self.version.to_le_bytes());
    }

    /// Checks the prefix of a buffer at least 8 bytes long: magic, version, reserved zero.
    fn check_prefix(self, buf: &[u8]) -> Result<(), String> {
        if buf[..4] != self.magic {
            return Err("bad magic".into());
        }
        let version = u16::from_le_bytes([buf[4], buf[5]]);
        if version != self.version {
            return Err(format!("unknown version {version}"));
        }
        if buf[6..PREFIX_LEN] != [0, 0] {
            return Err("reserved bytes are not zero".into());
        }
        Ok(())
    }

    /// Checks a fixed-size record: exactly `len` bytes, prefix, and its last 4 bytes the CRC of
    /// all that precedes them.
    pub(crate) fn check_record(self, buf: &[u8], len: usize) -> Result<(), String> {
        if buf.len() != len {
            return Err(format!("{} bytes, expected {len}", buf.len()));
        }
        self.check_prefix(buf)?;
        check_crc(buf, len - 4, 0..len - 4)
    }

    /// Checks a file of the variable shape whose fixed header is `header_len` bytes (at least
    /// [`BODY_POS`]): long enough, prefix, CRC. The body may then be read up to `header_len`.
    pub(crate) fn check(self, buf: &[u8], header_len: usize) -> Result<(), String> {
        if buf.len() < header_len {
            return Err(format!("{} bytes, shorter than the header", buf.len()));
        }
        self.check_prefix(buf)?;
        check_crc(buf, CRC_POS, BODY_POS..buf.len())
    }
}

/// Sets the CRC of a file of the variable shape, once its body is complete.
pub(crate) fn seal(buf: &mut [u8]) {
    let crc = crc32fast::hash(&buf[BODY_POS..]);
    buf[CRC_POS..BODY_POS].copy_from_slice(&crc.to_le_bytes());
}

/// Sets the CRC of a fixed-size record: its last 4 bytes, over all that precedes them.
pub(crate) fn seal_record(buf: &mut [u8]) {
    let crc_pos = buf.len() - 4;
    let crc = crc32fast::hash(&buf[..crc_pos]);
    buf[crc_pos..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks that the `u32` at `crc_pos` is the CRC-32 of `covered`.
fn check_crc(buf: &[u8], crc_pos: usize, covered: Range<usize>) -> Result<(), String> {
    let stored = u32_at(buf, crc_pos);
    let computed = crc32fast::hash(&buf[covered]);
    if stored != computed {
        return Err(format!("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    Ok(())
}

/// Checks that a file of `header_len` bytes of header then `count` entries of `entry_len` bytes
/// each is exactly as long as `buf`; returns `count`.
pub(crate) fn check_entries(
    buf: &[u8],
    count: usize,
    header_len: usize,
    entry_len: usize,
) -> Result<usize, String> {
    if count.checked_mul(entry_len).and_then(|n| n.checked_add(header_len)) != Some(buf.len()) {
        return Err(format!("{} bytes for {count} entries", buf.len()));
    }
    Ok(count)
}

/// The little-endian `u32` at `pos`; the caller has checked that `buf` holds it.
pub(crate) fn u32_at(buf: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]])
}

/// The little-endian `u64` at `pos`; the caller has checked that `buf` holds it.
pub(crate) fn u64_at(buf: &[u8], pos: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&buf[pos..pos + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Format = Format { magic: *b"TEST", version: 3 };

    #[test]
    fn a_sealed_file_checks_and_any_flipped_byte_is_caught() {
        let mut buf = F.start(20);
        buf.extend_from_slice(&7u64.to_le_bytes());
        seal(&mut buf);
        assert_eq!(&buf[..8], b"TEST\x03\0\0\0");
        assert_eq!(u32_at(&buf, CRC_POS), crc32fast::hash(&7u64.to_le_bytes()));
        assert_eq!(F.check(&buf, 20), Ok(()));
        assert_eq!(u64_at(&buf, BODY_POS), 7);
        assert!(F.check(&buf, 21).unwrap_err().contains("shorter than the header"));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x04;
            assert!(F.check(&bad, 20).is_err(), "flip at byte {i}");
        }
    }

    #[test]
    fn a_fixed_record_checks_its_prefix_and_trailing_crc() {
        let mut b = [0u8; 12];
        F.write_prefix(&mut b);
        seal_record(&mut b);
        assert_eq!(u32_at(&b, 8), crc32fast::hash(b"TEST\x03\0\0\0"));
        assert_eq!(F.check_record(&b, 12), Ok(()));
        assert_eq!(F.check_record(&b[..11], 12).unwrap_err(), "11 bytes, expected 12");
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x04;
            assert!(F.check_record(&bad, 12).is_err(), "flip at byte {i}");
        }
        let other = Format { magic: *b"TEST", version: 4 };
        assert_eq!(other.check_prefix(&b).unwrap_err(), "unknown version 3");
        b[6] = 1;
        assert_eq!(F.check_prefix(&b).unwrap_err(), "reserved bytes are not zero");
        assert!(check_crc(&b, 8, 0..8).unwrap_err().starts_with("CRC mismatch"));
    }

    #[test]
    fn entries_must_fill_the_file_exactly() {
        let buf = [0u8; 16 + 2 * 8];
        assert_eq!(check_entries(&buf, 2, 16, 8), Ok(2));
        assert!(check_entries(&buf, 3, 16, 8).is_err());
        assert!(check_entries(&buf, usize::MAX, 16, 8).is_err(), "no overflow");
    }
}
