//! The sparse time index of one segment (Kafka's `.timeindex`): entries saying "every batch before
//! this position has a timestamp below T", taken where offset-index entries are taken, so that a
//! lookup by timestamp starts its header walk late in the segment instead of at its start; and the
//! batch holding the segment's largest timestamp, so that ListOffsets `MAX_TIMESTAMP` (-3) reads
//! one batch instead of the log. Kept in memory and written to `{base:020}.timeindex` when the
//! segment is sealed or the log closed. Like the offset index it is a hint: checked on load
//! (magic, version, CRC, order, bounds, agreement with the segment's summary) and rebuilt from the
//! log whenever it is missing or wrong. Never reads the log itself.
//!
//! # Semantics of an entry
//! An entry `(max_before, relative_offset, position)` says: the batch at `position` starts at
//! offset `base + relative_offset`, and `max_before` is the largest `maxTimestamp` of all batches
//! of the segment before it. An entry is taken at a batch start where the offset index takes one,
//! and only when `max_before` grew since the previous entry, so entries are strictly increasing in
//! all three fields. (Kafka's entries instead pair the max timestamp so far with the offset where
//! it was reached; this form makes the lookup's proof direct.) To find the first record with a
//! timestamp at least `ts`, the last entry with `max_before < ts` proves that no batch before its
//! position can hold the answer, so the walk starts there.
//!
//! # Byte layout of a time index file (all integers little-endian)
//!
//! | position | size  | field             | encoding                                                  |
//! |----------|-------|-------------------|-----------------------------------------------------------|
//! | 0        | 4     | `magic`           | the bytes `MKTI`                                          |
//! | 4        | 2     | `version`         | `u16`, currently 1                                        |
//! | 6        | 2     | reserved          | zero                                                      |
//! | 8        | 4     | `crc`             | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `12..` to the end |
//! | 12       | 4     | `entry_count`     | `u32`: number of entries that follow                      |
//! | 16       | 8     | `base_offset`     | `u64`: the segment's first offset (also in the file name) |
//! | 24       | 8     | `next_offset`     | `u64`: the offset after the segment's last record         |
//! | 32       | 8     | `max_timestamp`   | `i64`: largest batch `maxTimestamp`, `i64::MIN` if none   |
//! | 40       | 8     | `log_len`         | `u64`: length of the segment's log file (header + batches) |
//! | 48       | 4     | `max_rel_offset`  | `u32`: base offset, relative, of the first batch whose `maxTimestamp` is `max_timestamp` (0 if none) |
//! | 52       | 4     | `max_position`    | `u32`: that batch's file position (0 if none)             |
//! | 56       | 16·n  | entries           | per entry: `i64` `max_before`, `u32` relative offset, `u32` position |

use crate::storage::checked_file::{self, Format, u32_at, u64_at};
use crate::storage::fs::{FileSystem, write_replacing};
use crate::storage::index::{IndexSummary, check_head, put_summary};
use std::io;
use std::path::Path;

/// Magic at the head of a time index file.
pub(crate) const TIME_INDEX_MAGIC: [u8; 4] = *b"MKTI";
/// Format version of time index files.
pub(crate) const TIME_INDEX_VERSION: u16 = 1;
/// The magic and version, for [`checked_file`].
const TIME_INDEX_FORMAT: Format = Format { magic: TIME_INDEX_MAGIC, version: TIME_INDEX_VERSION };
/// Position of the `max_rel_offset` field.
const MAX_REL_POS: usize = 48;
/// Position of the `max_position` field.
const MAX_POSITION_POS: usize = 52;
/// Size of the time index header; entries start here.
pub(crate) const TIME_INDEX_HEADER_LEN: usize = 56;
/// Size of one entry.
pub(crate) const TIME_ENTRY_LEN: usize = 16;
/// Smallest position a batch can have: after the segment header.
const FIRST_BATCH_POS: u32 = crate::storage::segment::SEGMENT_HEADER_LEN as u32;

/// One time index entry: every batch before `position` (which starts at `base + relative_offset`)
/// has a `maxTimestamp` of at most `max_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) max_before: i64,
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// The first batch holding the segment's largest timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxBatch {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// The in-memory time index of one segment: the entries, and the running maximum (which the next
/// entry's `max_before` is taken from, and which answers `MAX_TIMESTAMP`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
    max: Option<MaxBatch>,
}

impl TimeIndex {
    pub(crate) fn new() -> Self {
        TimeIndex { entries: Vec::new(), max: None }
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    /// The first batch with the largest `maxTimestamp` observed so far.
    pub(crate) fn max_batch(&self) -> Option<MaxBatch> {
        self.max
    }

    /// Called where the offset index takes an entry, before [`Self::observe`] of the batch
    /// there: takes an entry if the maximum of the batches before it grew since the last one.
    pub(crate) fn entry_due(&mut self, relative_offset: u32, position: u32) {
        let Some(max) = self.max else { return };
        match self.entries.last() {
            Some(last)
                if last.max_before >= max.timestamp
                    || last.relative_offset >= relative_offset
                    || last.position >= position => {}
            _ => self.entries.push(TimeEntry {
                max_before: max.timestamp,
                relative_offset,
                position,
            }),
        }
    }

    /// Called for every batch in order: keeps the first batch holding the largest timestamp.
    pub(crate) fn observe(&mut self, relative_offset: u32, position: u32, max_timestamp: i64) {
        if self.max.is_none_or(|m| max_timestamp > m.timestamp) {
            self.max = Some(MaxBatch { timestamp: max_timestamp, relative_offset, position });
        }
    }

    /// The last entry proving that every batch before it is below `ts`, among entries before
    /// `limit` (the committed length a reader sees: the appender may have added entries for
    /// batches not yet published).
    pub(crate) fn lookup(&self, ts: i64, limit: usize) -> Option<TimeEntry> {
        let below = self.entries.partition_point(|e| e.max_before < ts);
        let visible = self.entries.partition_point(|e| (e.position as usize) < limit);
        below.min(visible).checked_sub(1).map(|i| self.entries[i])
    }

    /// Encodes the time index file.
    pub(crate) fn encode(&self, base_offset: u64, summary: IndexSummary) -> Vec<u8> {
        let mut buf =
            TIME_INDEX_FORMAT.start(TIME_INDEX_HEADER_LEN + self.entries.len() * TIME_ENTRY_LEN);
        // At most one entry per offset-index entry, itself at most one per byte of a u32-sized
        // segment.
        put_summary(&mut buf, self.entries.len() as u32, base_offset, summary);
        let (rel, pos) = self.max.map_or((0, 0), |m| (m.relative_offset, m.position));
        buf.extend_from_slice(&rel.to_le_bytes());
        buf.extend_from_slice(&pos.to_le_bytes());
        for e in &self.entries {
            buf.extend_from_slice(&e.max_before.to_le_bytes());
            buf.extend_from_slice(&e.relative_offset.to_le_bytes());
            buf.extend_from_slice(&e.position.to_le_bytes());
        }
        checked_file::seal(&mut buf);
        buf
    }

    /// Decodes and checks a time index file of the segment at `base_offset`. `Err` carries why
    /// the file cannot be trusted (the caller rebuilds it from the log).
    pub(crate) fn decode(
        buf: &[u8],
        base_offset: u64,
    ) -> Result<(TimeIndex, IndexSummary), String> {
        let (count, summary) =
            check_head(buf, TIME_INDEX_FORMAT, TIME_INDEX_HEADER_LEN, TIME_ENTRY_LEN, base_offset)?;
        // Whether a batch start (relative offset, position) lies inside the segment.
        let inside = |rel: u32, pos: u32| {
            pos >= FIRST_BATCH_POS
                && u64::from(pos) < summary.log_len
                && base_offset + u64::from(rel) < summary.next_offset
        };
        let (max_rel, max_pos) = (u32_at(buf, MAX_REL_POS), u32_at(buf, MAX_POSITION_POS));
        let max = if summary.max_timestamp == i64::MIN {
            if (max_rel, max_pos, count) != (0, 0, 0) {
                return Err("a batch or entries for a segment without timestamps".into());
            }
            None
        } else {
            if !inside(max_rel, max_pos) {
                return Err("the largest timestamp's batch lies outside the segment".into());
            }
            Some(MaxBatch {
                timestamp: summary.max_timestamp,
                relative_offset: max_rel,
                position: max_pos,
            })
        };
        let mut index = TimeIndex { entries: Vec::with_capacity(count), max };
        for chunk in buf[TIME_INDEX_HEADER_LEN..].chunks_exact(TIME_ENTRY_LEN) {
            let e = TimeEntry {
                max_before: u64_at(chunk, 0) as i64,
                relative_offset: u32_at(chunk, 8),
                position: u32_at(chunk, 12),
            };
            if let Some(last) = index.entries.last()
                && (last.max_before >= e.max_before
                    || last.relative_offset >= e.relative_offset
                    || last.position >= e.position)
            {
                return Err("entries out of order".into());
            }
            if !inside(e.relative_offset, e.position) {
                return Err("an entry points past the end of the segment".into());
            }
            // Before the largest timestamp's batch, every batch is below it; from it on, the
            // maximum so far is it.
            let before_max = max.is_some_and(|m| e.position <= m.position);
            if (before_max && e.max_before >= summary.max_timestamp)
                || (!before_max && e.max_before != summary.max_timestamp)
            {
                return Err("an entry disagrees with the segment's largest timestamp".into());
            }
            index.entries.push(e);
        }
        Ok((index, summary))
    }

    /// Writes the time index file (temp file, rename; fdatasynced first when `durable`). The
    /// caller fsyncs the directory: sealing writes the offset index next, whose directory fsync
    /// covers both renames.
    pub(crate) fn write(
        &self,
        fs: &dyn FileSystem,
        path: &Path,
        base_offset: u64,
        summary: IndexSummary,
        durable: bool,
    ) -> io::Result<()> {
        write_replacing(fs, path, &self.encode(base_offset, summary), durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::index::{BASE_POS, MAX_TS_POS};

    /// Batches of 100 bytes from position 24, one record each, with these max timestamps; an
    /// entry due at every other batch.
    fn build(timestamps: &[i64]) -> (TimeIndex, IndexSummary) {
        let mut t = TimeIndex::new();
        for (i, &ts) in timestamps.iter().enumerate() {
            let pos = FIRST_BATCH_POS + 100 * i as u32;
            if i % 2 == 0 && i > 0 {
                t.entry_due(i as u32, pos);
            }
            t.observe(i as u32, pos, ts);
        }
        let summary = IndexSummary {
            next_offset: 1000 + timestamps.len() as u64,
            max_timestamp: timestamps.iter().copied().max().unwrap_or(i64::MIN),
            log_len: u64::from(FIRST_BATCH_POS) + 100 * timestamps.len() as u64,
        };
        (t, summary)
    }

    #[test]
    fn entries_only_where_the_maximum_grew() {
        // Entries due before batches 2, 4, 6, 8: maxima before them 20, 20 (no entry), 50, 50.
        let (t, _) = build(&[10, 20, 5, 15, 50, 40, 30, 50, 60]);
        let got: Vec<_> = t.entries().iter().map(|e| (e.max_before, e.relative_offset)).collect();
        assert_eq!(got, [(20, 2), (50, 6)]);
        let m = t.max_batch().unwrap();
        assert_eq!((m.timestamp, m.relative_offset), (60, 8));
        // Ties keep the first batch holding the maximum.
        let (t, _) = build(&[7, 9, 9, 3]);
        assert_eq!(t.max_batch().unwrap().relative_offset, 1);
    }

    #[test]
    fn lookup_gives_the_last_entry_proving_everything_before_is_older() {
        let (t, _) = build(&[10, 20, 5, 15, 50, 40, 30, 50, 60]);
        let all = usize::MAX;
        assert_eq!(t.lookup(20, all), None, "batch 1 holds 20: start at the segment start");
        assert_eq!(t.lookup(21, all).unwrap().relative_offset, 2);
        assert_eq!(t.lookup(50, all).unwrap().relative_offset, 2);
        assert_eq!(t.lookup(51, all).unwrap().relative_offset, 6);
        assert_eq!(t.lookup(i64::MAX, all).unwrap().relative_offset, 6);
        assert_eq!(t.lookup(i64::MIN, all), None);
        // An entry for a batch not yet published is not used.
        let pos6 = (FIRST_BATCH_POS + 600) as usize;
        assert_eq!(t.lookup(51, pos6).unwrap().relative_offset, 2);
        assert_eq!(t.lookup(51, pos6 + 1).unwrap().relative_offset, 6);
    }

    #[test]
    fn encode_decode_roundtrip_and_layout() {
        let (t, summary) = build(&[10, 20, 5, 15, 50, 40, 30, 50, 60]);
        let buf = t.encode(1000, summary);
        assert_eq!(&buf[..4], b"MKTI");
        assert_eq!(buf.len(), TIME_INDEX_HEADER_LEN + 2 * TIME_ENTRY_LEN);
        assert_eq!(u64_at(&buf, BASE_POS), 1000);
        assert_eq!(u64_at(&buf, MAX_TS_POS) as i64, 60);
        assert_eq!(u32_at(&buf, MAX_REL_POS), 8);
        assert_eq!(u64_at(&buf, TIME_INDEX_HEADER_LEN) as i64, 20);
        assert_eq!(TimeIndex::decode(&buf, 1000).unwrap(), (t, summary));
        // An empty segment.
        let (t, summary) = build(&[]);
        assert_eq!(TimeIndex::decode(&t.encode(1000, summary), 1000).unwrap(), (t, summary));
    }

    #[test]
    fn any_damage_is_detected() {
        let (t, summary) = build(&[10, 20, 5, 15, 50, 40, 30, 50, 60]);
        let buf = t.encode(1000, summary);
        assert!(TimeIndex::decode(&buf, 999).is_err(), "wrong base");
        assert!(TimeIndex::decode(&buf[..buf.len() - 1], 1000).is_err(), "short");
        assert!(TimeIndex::decode(&buf[..10], 1000).is_err(), "shorter than the header");
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(TimeIndex::decode(&bad, 1000).is_err(), "flip at byte {byte}");
        }
    }

    #[test]
    fn a_well_formed_file_that_contradicts_itself_is_refused() {
        let (t, summary) = build(&[10, 20, 5, 15, 50, 40, 30, 50, 60]);
        // Entries claiming a maximum above the segment's.
        let low = IndexSummary { max_timestamp: 40, ..summary };
        let mut t2 = t.clone();
        t2.max = Some(MaxBatch { timestamp: 40, ..t.max.unwrap() });
        assert!(TimeIndex::decode(&t2.encode(1000, low), 1000).is_err());
        // The largest timestamp's batch past the end of the log.
        let short = IndexSummary { log_len: 200, ..summary };
        assert!(TimeIndex::decode(&t.encode(1000, short), 1000).is_err());
        // A batch named for a segment without timestamps.
        let none = IndexSummary { max_timestamp: i64::MIN, ..summary };
        assert!(TimeIndex::decode(&TimeIndex::new().encode(1000, none), 1000).is_ok());
        assert!(TimeIndex::decode(&t.encode(1000, none), 1000).is_err());
    }
}
