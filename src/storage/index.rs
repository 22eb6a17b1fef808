//! The sparse offset index of one segment: an entry every `index_interval_bytes` of log, mapping
//! a relative offset to a file position, kept in memory and written to `{base:020}.index` when the
//! segment is sealed or the log closed. The index is a hint: it is checked on load (magic,
//! version, CRC, order, bounds) and rebuilt from the log whenever it is missing, short or wrong.
//! Never reads the log itself.
//!
//! # Byte layout of an index file (all integers little-endian)
//!
//! | position | size | field           | encoding                                                     |
//! |----------|------|-----------------|--------------------------------------------------------------|
//! | 0        | 4    | `magic`         | the bytes `MKIX`                                             |
//! | 4        | 2    | `version`       | `u16`, currently 2                                           |
//! | 6        | 2    | reserved        | zero                                                         |
//! | 8        | 4    | `crc`           | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `12..` to the end |
//! | 12       | 4    | `entry_count`   | `u32`: number of entries that follow                         |
//! | 16       | 8    | `base_offset`   | `u64`: the segment's first offset (also in the file name)    |
//! | 24       | 8    | `next_offset`   | `u64`: the offset after the segment's last record            |
//! | 32       | 8    | `max_timestamp` | `i64`: largest record timestamp, `i64::MIN` if none          |
//! | 40       | 8    | `log_len`       | `u64`: length of the segment's log file (header + records)   |
//! | 48       | 8·n  | entries         | per entry: `u32` base offset of a batch relative to `base_offset`, `u32` its file position |

use crate::storage::checked_file::{self, BODY_POS, Format, u32_at, u64_at};
use crate::storage::fs::{FileSystem, write_atomic, write_replacing};
use std::io;
use std::path::Path;

/// Magic at the head of an index file.
pub(crate) const INDEX_MAGIC: [u8; 4] = *b"MKIX";
/// Format version of index files.
/// Version 2 (with segment format 2): positions are batch starts. A version 1 index (record
/// starts) does not decode and is rebuilt from the log.
pub(crate) const INDEX_VERSION: u16 = 2;
/// The magic and version, for [`checked_file`].
const INDEX_FORMAT: Format = Format { magic: INDEX_MAGIC, version: INDEX_VERSION };
/// Position of the `entry_count` field (the first byte the CRC covers).
const COUNT_POS: usize = BODY_POS;
/// Position of the `base_offset` field.
pub(crate) const BASE_POS: usize = 16;
/// Position of the `next_offset` field.
const NEXT_POS: usize = 24;
/// Position of the `max_timestamp` field.
pub(crate) const MAX_TS_POS: usize = 32;
/// Position of the `log_len` field.
const LOG_LEN_POS: usize = 40;
/// Size of the index header; entries start here.
pub(crate) const INDEX_HEADER_LEN: usize = 48;
/// Size of one entry.
pub(crate) const ENTRY_LEN: usize = 8;

/// One index entry: the record at `base + relative_offset` starts at file `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// What an index file says about its segment, besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexSummary {
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) log_len: u64,
}

/// The in-memory sparse index of one segment: entries strictly increasing in both fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index { entries: Vec::new() }
    }

    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Adds an entry; ignored unless it is past the last one in both fields (keeps the order
    /// invariant that lookups rely on).
    pub(crate) fn push(&mut self, entry: IndexEntry) {
        match self.entries.last() {
            Some(last)
                if last.relative_offset >= entry.relative_offset
                    || last.position >= entry.position => {}
            _ => self.entries.push(entry),
        }
    }

    /// The entry at or below `relative_offset`, if any.
    pub(crate) fn lookup(&self, relative_offset: u32) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Encodes the index file.
    pub(crate) fn encode(&self, base_offset: u64, summary: IndexSummary) -> Vec<u8> {
        let mut buf = INDEX_FORMAT.start(INDEX_HEADER_LEN + self.entries.len() * ENTRY_LEN);
        // An index has at most one entry per index_interval_bytes (>= 1) of a u32-sized segment.
        put_summary(&mut buf, self.entries.len() as u32, base_offset, summary);
        for e in &self.entries {
            buf.extend_from_slice(&e.relative_offset.to_le_bytes());
            buf.extend_from_slice(&e.position.to_le_bytes());
        }
        checked_file::seal(&mut buf);
        buf
    }

    /// Decodes and checks an index file of the segment at `base_offset`. `Err` carries why the
    /// file cannot be trusted (the caller rebuilds the index from the log).
    pub(crate) fn decode(buf: &[u8], base_offset: u64) -> Result<(Index, IndexSummary), String> {
        let (count, summary) =
            check_head(buf, INDEX_FORMAT, INDEX_HEADER_LEN, ENTRY_LEN, base_offset)?;
        let mut index = Index { entries: Vec::with_capacity(count) };
        for chunk in buf[INDEX_HEADER_LEN..].chunks_exact(ENTRY_LEN) {
            let e = IndexEntry { relative_offset: u32_at(chunk, 0), position: u32_at(chunk, 4) };
            if let Some(last) = index.entries.last()
                && (last.relative_offset >= e.relative_offset || last.position >= e.position)
            {
                return Err("entries out of order".into());
            }
            if u64::from(e.position) >= summary.log_len
                || base_offset + u64::from(e.relative_offset) >= summary.next_offset
            {
                return Err("an entry points past the end of the segment".into());
            }
            index.entries.push(e);
        }
        Ok((index, summary))
    }

    /// Writes the index file durably (temp file, fdatasync, rename, directory fsync).
    pub(crate) fn write(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        path: &Path,
        base_offset: u64,
        summary: IndexSummary,
    ) -> io::Result<()> {
        write_atomic(fs, dir, path, &self.encode(base_offset, summary))
    }

    /// Writes the index file without syncing: for an index rebuilt at recovery, which the next
    /// open checks (CRC, summary) and rebuilds again if a crash mangled it.
    pub(crate) fn write_hint(
        &self,
        fs: &dyn FileSystem,
        path: &Path,
        base_offset: u64,
        summary: IndexSummary,
    ) -> io::Result<()> {
        write_replacing(fs, path, &self.encode(base_offset, summary), false)
    }
}

/// Appends the fields at bytes 12..48 that the offset and time index files share (see the byte
/// tables): `entry_count`, `base_offset`, then the summary.
pub(crate) fn put_summary(buf: &mut Vec<u8>, count: u32, base_offset: u64, summary: IndexSummary) {
    debug_assert_eq!(buf.len(), COUNT_POS);
    buf.extend_from_slice(&count.to_le_bytes());
    buf.extend_from_slice(&base_offset.to_le_bytes());
    buf.extend_from_slice(&summary.next_offset.to_le_bytes());
    buf.extend_from_slice(&summary.max_timestamp.to_le_bytes());
    buf.extend_from_slice(&summary.log_len.to_le_bytes());
}

/// Checks the head the offset and time index files share (prefix, CRC, `entry_count` against
/// the length, the summary against the segment's `base_offset`, its file name); returns the
/// entry count and the summary that [`put_summary`] wrote.
pub(crate) fn check_head(
    buf: &[u8],
    format: Format,
    header_len: usize,
    entry_len: usize,
    base_offset: u64,
) -> Result<(usize, IndexSummary), String> {
    format.check(buf, header_len)?;
    let count =
        checked_file::check_entries(buf, u32_at(buf, COUNT_POS) as usize, header_len, entry_len)?;
    if u64_at(buf, BASE_POS) != base_offset {
        return Err(format!("base offset {} in a file named {base_offset}", u64_at(buf, BASE_POS)));
    }
    let summary = IndexSummary {
        next_offset: u64_at(buf, NEXT_POS),
        max_timestamp: u64_at(buf, MAX_TS_POS) as i64,
        log_len: u64_at(buf, LOG_LEN_POS),
    };
    if summary.next_offset < base_offset {
        return Err("next offset below the base offset".into());
    }
    Ok((count, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Index, IndexSummary) {
        let mut idx = Index::new();
        idx.push(IndexEntry { relative_offset: 3, position: 100 });
        idx.push(IndexEntry { relative_offset: 9, position: 4200 });
        idx.push(IndexEntry { relative_offset: 9, position: 5000 }); // ignored: not increasing
        (idx, IndexSummary { next_offset: 1020, max_timestamp: 77, log_len: 9000 })
    }

    #[test]
    fn lookup_finds_the_entry_at_or_below() {
        let (idx, _) = sample();
        assert_eq!(idx.entries().len(), 2);
        assert_eq!(idx.lookup(0), None);
        assert_eq!(idx.lookup(3).unwrap().position, 100);
        assert_eq!(idx.lookup(8).unwrap().position, 100);
        assert_eq!(idx.lookup(9).unwrap().position, 4200);
        assert_eq!(idx.lookup(u32::MAX).unwrap().position, 4200);
    }

    #[test]
    fn encode_decode_roundtrip_and_layout() {
        let (idx, summary) = sample();
        let buf = idx.encode(1000, summary);
        assert_eq!(&buf[..4], b"MKIX");
        assert_eq!(buf.len(), INDEX_HEADER_LEN + 2 * ENTRY_LEN);
        assert_eq!(u64_at(&buf, BASE_POS), 1000);
        assert_eq!(Index::decode(&buf, 1000).unwrap(), (idx, summary));
    }

    #[test]
    fn any_damage_is_detected() {
        let (idx, summary) = sample();
        let buf = idx.encode(1000, summary);
        assert!(Index::decode(&buf, 999).is_err(), "wrong base");
        assert!(Index::decode(&buf[..buf.len() - 1], 1000).is_err(), "short");
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(Index::decode(&bad, 1000).is_err(), "flip at byte {byte}");
        }
    }
}
