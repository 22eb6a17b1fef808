//! The state of idempotent producers in one partition, as Kafka's `ProducerStateManager` keeps
//! it: per producer id, its epoch, the sequence ranges and offsets of its last
//! [`RETAINED_BATCHES`] batches and when it last appended; the rules that tell an append from a
//! retry (a duplicate) and from a gap or a fenced epoch; and the `{offset:020}.snapshot` files
//! that let recovery start from a saved state instead of rescanning the whole log.
//!
//! A pure data structure plus its files: it never reads or writes the log, never appends, never
//! takes a lock. The log owns one [`ProducerStates`] per partition behind the same lock that
//! orders its appends, so a check and the append and record that follow it are one step.
//!
//! # How the log uses it
//! - Append of a batch with a producer id ([`ProducerBatch::of`] / [`ProducerBatch::from_summary`]
//!   is `Some`): [`ProducerStates::check_batch`] first. `Duplicate`: answer with the offsets it
//!   gives, write nothing. An error: refuse the batch, write nothing. `Append`: write the batch,
//!   then [`ProducerStates::record`] it with the offsets it got. All under the append lock.
//! - Snapshot: at a segment roll and at close, [`ProducerStates::write_snapshot`] at the log end
//!   offset (the state of every batch below it), then [`keep_newest_snapshots`].
//! - Open: [`load_latest`] with the recovered log end, then [`ProducerStates::replay`] every
//!   batch from the snapshot's offset to the end (no checks: the log is the truth). With no
//!   snapshot, from the log start.
//! - Now and then: [`ProducerStates::expire`] with the configured idle time (Kafka's
//!   `producer.id.expiration.ms`, default one day).
//!
//! # Unknown producer ids
//! Like Kafka since KIP-360 (2.5), a producer id with no state in the partition may start at any
//! sequence: its state may have expired while it was idle, or left with the segments that held
//! its batches, and refusing it would fail a healthy producer that was merely idle. Older Kafka
//! answered UNKNOWN_PRODUCER_ID there; that error is not produced here. Its sequences are checked
//! from its first batch on.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::batch::{BatchSummary, BatchView};
use crate::storage::StorageError;
use crate::storage::checked_file::{self, BODY_POS, Format, u32_at, u64_at};
use crate::storage::fs::{FileSystem, write_atomic};

/// Batches remembered per producer: a retry of any of them is a duplicate. Kafka's number, and
/// the most in-flight requests an idempotent producer may have (`max.in.flight.requests`).
pub const RETAINED_BATCHES: usize = 5;

/// Suffix of a producer state snapshot file, named `{offset:020}.snapshot`.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Magic at the head of a snapshot file.
const SNAPSHOT_MAGIC: [u8; 4] = *b"MKPS";
/// Format version of snapshot files.
const SNAPSHOT_VERSION: u16 = 1;
/// The magic and version, for [`checked_file`].
const SNAPSHOT_FORMAT: Format = Format { magic: SNAPSHOT_MAGIC, version: SNAPSHOT_VERSION };
/// Position of the `entry_count` field (the first byte the CRC covers).
const COUNT_POS: usize = BODY_POS;
/// Position of the `offset` field.
const OFFSET_POS: usize = 16;
/// Size of the header; entries start here.
const SNAPSHOT_HEADER_LEN: usize = 24;
/// Size of an entry's fixed part, before its batches.
const ENTRY_FIXED_LEN: usize = 20;
/// Size of one batch of an entry.
const BATCH_LEN: usize = 24;
/// The smallest entry: the fixed part and one batch. Bounds how many entries a file can hold.
const MIN_ENTRY_LEN: usize = ENTRY_FIXED_LEN + BATCH_LEN;

/// What a retained batch of a producer was: its sequence range and the offsets it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: u64,
    pub last_offset: u64,
}

/// The state of one producer id in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The epoch of its batches; an older one is fenced.
    pub epoch: i16,
    /// Its last batches of this epoch, oldest first, at most [`RETAINED_BATCHES`], never empty.
    pub batches: VecDeque<BatchMetadata>,
    /// When it last appended (broker clock, ms since the epoch): expiry counts from here.
    pub last_append_ms: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        // An entry is made by `record` with one batch and never loses its last one.
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// What an idempotent batch is, given the producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// New and in sequence: write it, then [`ProducerStates::record`] it.
    Append,
    /// A retry of a batch already written: answer with its offsets and write nothing.
    Duplicate { first_offset: u64, last_offset: u64 },
}

/// Why an idempotent batch is refused (nothing is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER: a gap, a reordering, or a new epoch not at 0.
    #[error(
        "producer {producer_id}: out of order sequence number {got}, expected {expected} \
         (OUT_OF_ORDER_SEQUENCE_NUMBER)"
    )]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    /// Kafka's INVALID_PRODUCER_EPOCH: a batch of a producer fenced by a newer epoch.
    #[error(
        "producer {producer_id}: epoch {got} is older than its current epoch {current} \
         (INVALID_PRODUCER_EPOCH)"
    )]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
}

/// The sequence after `seq`: sequences wrap from `i32::MAX` to 0.
pub fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// The sequence of the last record of a batch: `base_sequence + last_offset_delta`, wrapping
/// past `i32::MAX` to 0 as Kafka's producers number them. A negative `base_sequence` (no
/// sequence) is returned as is.
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    if base_sequence < 0 {
        return base_sequence;
    }
    let sum = i64::from(base_sequence) + i64::from(last_offset_delta.max(0));
    // Both terms are in 0..=i32::MAX, so the sum is below 2^32 and the remainder fits an i32.
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// The idempotence fields of a batch header, as [`ProducerStates::check`] and
/// [`ProducerStates::record`] take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerBatch {
    /// The fields of `batch`, or `None` for a batch without a producer id (not idempotent: never
    /// checked nor recorded).
    pub fn of(batch: &BatchView<'_>) -> Option<ProducerBatch> {
        Self::from_fields(
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
            batch.last_offset_delta(),
        )
    }

    /// The fields of a validated batch, or `None` without a producer id.
    pub fn from_summary(summary: &BatchSummary) -> Option<ProducerBatch> {
        Self::from_fields(
            summary.producer_id,
            summary.producer_epoch,
            summary.base_sequence,
            summary.last_offset_delta,
        )
    }

    fn from_fields(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
    ) -> Option<ProducerBatch> {
        (producer_id >= 0).then(|| ProducerBatch {
            producer_id,
            epoch,
            first_seq: base_sequence,
            last_seq: last_sequence(base_sequence, last_offset_delta),
        })
    }
}

/// The idempotent producers of one partition.
///
/// # Byte layout of a snapshot file `{offset:020}.snapshot` (all integers little-endian)
///
/// | position | size | field          | encoding                                                   |
/// |----------|------|----------------|------------------------------------------------------------|
/// | 0        | 4    | `magic`        | the bytes `MKPS`                                           |
/// | 4        | 2    | `version`      | `u16`, currently 1                                         |
/// | 6        | 2    | reserved       | zero                                                       |
/// | 8        | 4    | `crc`          | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `12..` to the end |
/// | 12       | 4    | `entry_count`  | `u32`: number of entries that follow                       |
/// | 16       | 8    | `offset`       | `u64`: the state holds every batch below this offset (also in the file name) |
/// | 24       | …    | entries        | `entry_count` entries, producer ids strictly increasing    |
///
/// One entry (20 bytes, then its batches):
///
/// | position | size | field            | encoding                                               |
/// |----------|------|------------------|--------------------------------------------------------|
/// | +0       | 8    | `producer_id`    | `i64`, non-negative                                    |
/// | +8       | 2    | `epoch`          | `i16`                                                  |
/// | +10      | 1    | `batch_count`    | `u8`: 1 to 5                                           |
/// | +11      | 1    | reserved         | zero                                                   |
/// | +12      | 8    | `last_append_ms` | `i64`: broker clock of its last append                 |
/// | +20      | 24·k | batches          | oldest first; per batch: `i32` first_seq, `i32` last_seq, `u64` first_offset, `u64` last_offset |
///
/// Batches of an entry have strictly increasing, non-overlapping offset ranges. A file that
/// breaks any of this is damaged and skipped by [`load_latest`]. Epochs and sequences are kept
/// as recorded, whatever their value: a snapshot must not become unreadable because the log
/// holds an odd batch (recovery records every batch with a producer id, unchecked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producer ids with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of one producer id, if any.
    #[cfg(test)]
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what a batch of `producer_id` at `epoch` with sequences `first_seq..=last_seq` is,
    /// in Kafka's order: a retry of a retained batch of the same epoch is a duplicate; an older
    /// epoch is fenced; a newer epoch must start at sequence 0; the same epoch must continue
    /// right after the last sequence (wrapping at `i32::MAX`); an unknown producer id may start
    /// anywhere (see the module docs). Changes nothing.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SeqCheck, ProducerStateError> {
        let entry = self.producers.get(&producer_id);
        if epoch < 0 {
            let current = entry.map_or(-1, |e| e.epoch);
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id,
                current,
                got: epoch,
            });
        }
        let Some(entry) = entry else {
            if first_seq < 0 {
                return Err(ProducerStateError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got: first_seq,
                });
            }
            return Ok(SeqCheck::Append);
        };
        if epoch == entry.epoch
            && let Some(b) =
                entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            });
        }
        if epoch < entry.epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                got: epoch,
            });
        }
        let expected = if epoch > entry.epoch { 0 } else { next_sequence(entry.last_seq()) };
        if first_seq != expected {
            return Err(ProducerStateError::OutOfOrderSequence {
                producer_id,
                expected,
                got: first_seq,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Records a batch written at `first_offset..=last_offset` at `now_ms`: after a successful
    /// append that [`ProducerStates::check`] allowed, and for every batch with a producer id that
    /// recovery scans after the snapshot. A new epoch forgets the batches of the old one; the
    /// oldest batch beyond [`RETAINED_BATCHES`] is forgotten.
    #[allow(clippy::too_many_arguments)] // each is one field of the batch header or the clock
    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        first_offset: u64,
        last_offset: u64,
        now_ms: i64,
    ) {
        let batch = BatchMetadata { first_seq, last_seq, first_offset, last_offset };
        let entry = self.producers.entry(producer_id).or_insert_with(|| ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(RETAINED_BATCHES),
            last_append_ms: now_ms,
        });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
    }

    /// [`ProducerStates::check`] for a batch's fields.
    pub fn check_batch(&self, b: &ProducerBatch) -> Result<SeqCheck, ProducerStateError> {
        self.check(b.producer_id, b.epoch, b.first_seq, b.last_seq)
    }

    /// Recovery's replay of one stored batch after the snapshot: records it if it has a producer
    /// id, without checks (the log is the truth). `now_ms` stands for its append time, which the
    /// log does not keep: the producer then expires no earlier than a full idle time after the
    /// restart.
    pub fn replay(&mut self, batch: &BatchView<'_>, now_ms: i64) {
        if let Some(b) = ProducerBatch::of(batch) {
            // Stored batches have the non-negative base offset the broker assigned.
            let first = batch.base_offset().max(0) as u64;
            let last = batch.last_offset().max(0) as u64;
            self.record(b.producer_id, b.epoch, b.first_seq, b.last_seq, first, last, now_ms);
        }
    }

    /// Forgets every producer that has not appended for `max_idle_ms` or more; returns how many.
    /// A forgotten producer that comes back starts afresh (any sequence, see the module docs).
    pub fn expire(&mut self, now_ms: i64, max_idle_ms: u64) -> usize {
        let max_idle_ms = i64::try_from(max_idle_ms).unwrap_or(i64::MAX);
        let before = self.producers.len();
        self.producers.retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < max_idle_ms);
        before - self.producers.len()
    }

    /// The snapshot file's bytes for a state holding every batch below `offset`.
    fn encode(&self, offset: u64) -> Vec<u8> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let batches: usize = self.producers.values().map(|e| e.batches.len()).sum();
        let mut buf = SNAPSHOT_FORMAT
            .start(SNAPSHOT_HEADER_LEN + ids.len() * ENTRY_FIXED_LEN + batches * BATCH_LEN);
        // A partition holds far fewer than 2^32 producers: each takes memory and an InitProducerId.
        buf.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        for id in ids {
            let e = &self.producers[&id];
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&e.epoch.to_le_bytes());
            // At most RETAINED_BATCHES (5): `record` keeps it so.
            buf.push(e.batches.len() as u8);
            buf.push(0);
            buf.extend_from_slice(&e.last_append_ms.to_le_bytes());
            for b in &e.batches {
                buf.extend_from_slice(&b.first_seq.to_le_bytes());
                buf.extend_from_slice(&b.last_seq.to_le_bytes());
                buf.extend_from_slice(&b.first_offset.to_le_bytes());
                buf.extend_from_slice(&b.last_offset.to_le_bytes());
            }
        }
        checked_file::seal(&mut buf);
        buf
    }

    /// Decodes and checks a snapshot file named for `offset`. `Err` says why it cannot be
    /// trusted (the caller falls back to an older snapshot, or to the log).
    fn decode(buf: &[u8], offset: u64) -> Result<ProducerStates, String> {
        SNAPSHOT_FORMAT.check(buf, SNAPSHOT_HEADER_LEN)?;
        if u64_at(buf, OFFSET_POS) != offset {
            return Err(format!("offset {} in a file named {offset}", u64_at(buf, OFFSET_POS)));
        }
        let count = u32_at(buf, COUNT_POS) as usize;
        let body = buf.len() - SNAPSHOT_HEADER_LEN;
        // Before allocating for `count` entries: they must fit in the bytes there are.
        if count.checked_mul(MIN_ENTRY_LEN).is_none_or(|need| need > body) {
            return Err(format!("{count} entries cannot fit in {body} bytes"));
        }
        let mut producers = HashMap::with_capacity(count);
        let mut pos = SNAPSHOT_HEADER_LEN;
        let mut last_id = -1i64;
        for _ in 0..count {
            if buf.len() - pos < ENTRY_FIXED_LEN {
                return Err(format!("entry at byte {pos} is cut"));
            }
            let id = u64_at(buf, pos) as i64;
            let epoch = i16::from_le_bytes([buf[pos + 8], buf[pos + 9]]);
            let batch_count = usize::from(buf[pos + 10]);
            if id <= last_id {
                return Err(format!("producer id {id} at byte {pos} is not above {last_id}"));
            }
            if !(1..=RETAINED_BATCHES).contains(&batch_count) {
                return Err(format!("producer {id}: {batch_count} batches"));
            }
            if buf[pos + 11] != 0 {
                return Err(format!("producer {id}: reserved byte is not zero"));
            }
            let last_append_ms = u64_at(buf, pos + 12) as i64;
            pos += ENTRY_FIXED_LEN;
            if buf.len() - pos < batch_count * BATCH_LEN {
                return Err(format!("producer {id}: batches at byte {pos} are cut"));
            }
            let mut batches = VecDeque::with_capacity(RETAINED_BATCHES);
            for _ in 0..batch_count {
                let b = BatchMetadata {
                    first_seq: u32_at(buf, pos) as i32,
                    last_seq: u32_at(buf, pos + 4) as i32,
                    first_offset: u64_at(buf, pos + 8),
                    last_offset: u64_at(buf, pos + 16),
                };
                if b.first_offset > b.last_offset {
                    return Err(format!("producer {id}: bad batch at byte {pos}"));
                }
                if batches.back().is_some_and(|p: &BatchMetadata| p.last_offset >= b.first_offset) {
                    return Err(format!("producer {id}: batches out of order at byte {pos}"));
                }
                batches.push_back(b);
                pos += BATCH_LEN;
            }
            producers.insert(id, ProducerEntry { epoch, batches, last_append_ms });
            last_id = id;
        }
        if pos != buf.len() {
            return Err(format!("{} bytes after the last entry", buf.len() - pos));
        }
        Ok(ProducerStates { producers })
    }

    /// Writes `{offset:020}.snapshot` in `dir` durably and atomically (temp file, fdatasync,
    /// rename, directory fsync): the state of every batch below `offset`, which must be the log
    /// end offset when the state was taken. Returns the file's path.
    pub fn write_snapshot(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        offset: u64,
    ) -> Result<PathBuf, StorageError> {
        let path = snapshot_path(dir, offset);
        write_atomic(fs, dir, &path, &self.encode(offset))
            .map_err(StorageError::io(&path, "write producer state snapshot"))?;
        Ok(path)
    }
}

/// The path of the snapshot at `offset` in `dir`.
pub fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// The offset a snapshot file name stands for: exactly 20 digits and the suffix.
fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut offsets: Vec<u64> = fs
        .list_dir(dir)
        .map_err(StorageError::io(dir, "list"))?
        .iter()
        .filter_map(|n| parse_snapshot_name(n))
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

/// Loads the newest usable snapshot with an offset at most `at_most` (the recovered log end):
/// the state and the offset from which the log must be scanned to complete it. `None` when
/// there is none (scan from the log start).
///
/// A snapshot that cannot be read or does not check out is logged, removed (like Kafka does)
/// and an older one tried: the log can rebuild what it held. A snapshot above `at_most` is
/// removed too: it holds batches the log no longer has (a tail lost in a crash), and would be
/// taken for the truth once the log grew past it again. Only failing to list the directory or to
/// remove such a stale snapshot is an error.
pub fn load_latest(
    fs: &dyn FileSystem,
    dir: &Path,
    at_most: u64,
) -> Result<Option<(ProducerStates, u64)>, StorageError> {
    let offsets = list_snapshots(fs, dir)?;
    for &offset in offsets.iter().filter(|&&o| o > at_most) {
        let path = snapshot_path(dir, offset);
        tracing::info!(path = %path.display(), log_end = at_most,
            "removing a producer state snapshot past the end of the log");
        fs.remove_file(&path).map_err(StorageError::io(&path, "remove stale snapshot"))?;
    }
    for &offset in offsets.iter().rev().filter(|&&o| o <= at_most) {
        let path = snapshot_path(dir, offset);
        let decoded = fs
            .read(&path)
            .map_err(|e| e.to_string())
            .and_then(|buf| ProducerStates::decode(&buf, offset));
        match decoded {
            Ok(states) => return Ok(Some((states, offset))),
            Err(reason) => {
                tracing::warn!(path = %path.display(),
                    "damaged producer state snapshot, using an older one or the log: {reason}");
                if let Err(e) = fs.remove_file(&path) {
                    tracing::warn!(path = %path.display(), "cannot remove it: {e}");
                }
            }
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` snapshots; returns how many were removed.
pub fn keep_newest_snapshots(
    fs: &dyn FileSystem,
    dir: &Path,
    keep: usize,
) -> Result<usize, StorageError> {
    let offsets = list_snapshots(fs, dir)?;
    let old = &offsets[..offsets.len().saturating_sub(keep)];
    remove_all(fs, dir, old)
}

fn remove_all(fs: &dyn FileSystem, dir: &Path, offsets: &[u64]) -> Result<usize, StorageError> {
    for &offset in offsets {
        let path = snapshot_path(dir, offset);
        fs.remove_file(&path).map_err(StorageError::io(&path, "remove snapshot"))?;
    }
    Ok(offsets.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Compression, NewRecord};
    use crate::storage::RealFs;
    use ProducerStateError::{InvalidProducerEpoch, OutOfOrderSequence};

    const PID: i64 = 7;

    /// Records batch `i` of a producer at epoch 0: sequences `10i..=10i+9`, offsets
    /// `100i..=100i+9`, appended at `1000 + i` ms.
    fn record_batch(s: &mut ProducerStates, i: i32) {
        let first_offset = 100 * i as u64;
        s.record(PID, 0, 10 * i, 10 * i + 9, first_offset, first_offset + 9, 1000 + i64::from(i));
    }

    fn with_batches(n: i32) -> ProducerStates {
        let mut s = ProducerStates::new();
        for i in 0..n {
            assert_eq!(s.check(PID, 0, 10 * i, 10 * i + 9), Ok(SeqCheck::Append), "batch {i}");
            record_batch(&mut s, i);
        }
        s
    }

    #[test]
    fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate_with_its_offsets() {
        let s = with_batches(6);
        for i in 1..6 {
            let first_offset = 100 * i as u64;
            assert_eq!(
                s.check(PID, 0, 10 * i, 10 * i + 9),
                Ok(SeqCheck::Duplicate { first_offset, last_offset: first_offset + 9 }),
                "batch {i}"
            );
        }
        assert_eq!(s.get(PID).unwrap().batches.len(), RETAINED_BATCHES);
    }

    #[test]
    fn the_sixth_oldest_batch_is_forgotten_and_out_of_order() {
        let s = with_batches(6);
        assert_eq!(
            s.check(PID, 0, 0, 9),
            Err(OutOfOrderSequence { producer_id: PID, expected: 60, got: 0 })
        );
    }

    #[test]
    fn the_next_batch_appends_and_a_gap_or_overlap_is_out_of_order() {
        let s = with_batches(2);
        assert_eq!(s.check(PID, 0, 20, 24), Ok(SeqCheck::Append));
        assert_eq!(
            s.check(PID, 0, 21, 25),
            Err(OutOfOrderSequence { producer_id: PID, expected: 20, got: 21 }),
            "a gap of one sequence"
        );
        assert_eq!(
            s.check(PID, 0, 10, 14),
            Err(OutOfOrderSequence { producer_id: PID, expected: 20, got: 10 }),
            "same first sequence as a retained batch, different last: not a retry"
        );
    }

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        assert_eq!(last_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(last_sequence(i32::MAX - 2, 5), 2);
        assert_eq!(last_sequence(0, 0), 0);
        assert_eq!(next_sequence(i32::MAX), 0);

        let mut s = ProducerStates::new();
        s.record(PID, 0, i32::MAX - 9, i32::MAX, 0, 9, 0);
        assert_eq!(s.check(PID, 0, 0, 9), Ok(SeqCheck::Append));
        assert_eq!(
            s.check(PID, 0, i32::MAX, 8),
            Err(OutOfOrderSequence { producer_id: PID, expected: 0, got: i32::MAX })
        );
        // A batch whose range itself wraps is retained and recognised when retried.
        let wrapping_last = last_sequence(i32::MAX - 1, 4);
        let mut w = ProducerStates::new();
        w.record(PID, 0, i32::MAX - 5, i32::MAX - 2, 0, 3, 0);
        assert_eq!(w.check(PID, 0, i32::MAX - 1, wrapping_last), Ok(SeqCheck::Append));
        w.record(PID, 0, i32::MAX - 1, wrapping_last, 4, 8, 0);
        assert_eq!(
            w.check(PID, 0, i32::MAX - 1, wrapping_last),
            Ok(SeqCheck::Duplicate { first_offset: 4, last_offset: 8 })
        );
        assert_eq!(w.check(PID, 0, 3, 3), Ok(SeqCheck::Append));
    }

    #[test]
    fn an_older_epoch_is_fenced_even_for_a_retry() {
        let mut s = ProducerStates::new();
        s.record(PID, 3, 0, 9, 0, 9, 0);
        assert_eq!(
            s.check(PID, 2, 10, 19),
            Err(InvalidProducerEpoch { producer_id: PID, current: 3, got: 2 })
        );
        s.record(PID, 4, 0, 4, 10, 14, 0);
        assert_eq!(
            s.check(PID, 3, 0, 9),
            Err(InvalidProducerEpoch { producer_id: PID, current: 4, got: 3 }),
            "a retry of a batch of the fenced epoch"
        );
        assert_eq!(
            s.check(PID, -1, 0, 0),
            Err(InvalidProducerEpoch { producer_id: PID, current: 4, got: -1 })
        );
    }

    #[test]
    fn a_newer_epoch_starts_at_zero_and_forgets_the_old_batches() {
        let s0 = with_batches(3);
        assert_eq!(s0.check(PID, 1, 0, 4), Ok(SeqCheck::Append));
        assert_eq!(
            s0.check(PID, 1, 30, 34),
            Err(OutOfOrderSequence { producer_id: PID, expected: 0, got: 30 }),
            "a new epoch not at 0, even where the old one would go on"
        );
        let mut s = s0;
        s.record(PID, 1, 0, 4, 300, 304, 2000);
        let e = s.get(PID).unwrap();
        assert_eq!((e.epoch, e.batches.len(), e.last_append_ms), (1, 1, 2000));
        assert_eq!(s.check(PID, 1, 5, 9), Ok(SeqCheck::Append));
        assert_eq!(
            s.check(PID, 1, 10, 19),
            Err(OutOfOrderSequence { producer_id: PID, expected: 5, got: 10 }),
            "batches of epoch 0 are no longer duplicates"
        );
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence_then_must_continue() {
        let mut s = ProducerStates::new();
        assert_eq!(s.check(PID, 0, 0, 9), Ok(SeqCheck::Append));
        // Kafka (KIP-360): its state may have expired; refusing would kill the producer.
        assert_eq!(s.check(PID, 0, 42, 44), Ok(SeqCheck::Append));
        assert_eq!(
            s.check(PID, 0, -1, 3),
            Err(OutOfOrderSequence { producer_id: PID, expected: 0, got: -1 })
        );
        assert_eq!(
            s.check(PID, -1, 0, 0),
            Err(InvalidProducerEpoch { producer_id: PID, current: -1, got: -1 })
        );
        s.record(PID, 0, 42, 44, 0, 2, 0);
        assert_eq!(s.check(PID, 0, 45, 45), Ok(SeqCheck::Append));
        assert_eq!(
            s.check(PID, 0, 0, 9),
            Err(OutOfOrderSequence { producer_id: PID, expected: 45, got: 0 })
        );
        assert_eq!(s.check(PID + 1, 0, 0, 0), Ok(SeqCheck::Append), "ids are independent");
    }

    /// A stored batch of `n` records at `base_offset`, from `producer` (id, epoch, base sequence)
    /// or from a producer that is not idempotent.
    fn stored_batch(base_offset: i64, n: usize, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None).base_offset(base_offset);
        if let Some((id, epoch, seq)) = producer {
            b = b.producer(id, epoch, seq);
        }
        for i in 0..n {
            let v = [i as u8];
            b.push(&NewRecord { timestamp: 1, key: None, value: Some(&v), headers: &[] }).unwrap();
        }
        b.build().unwrap()
    }

    #[test]
    fn the_fields_of_a_batch_header_feed_check_and_replay() {
        let bytes = stored_batch(40, 3, Some((PID, 2, i32::MAX - 1)));
        let view = BatchView::new(&bytes).unwrap();
        let b = ProducerBatch::of(&view).unwrap();
        assert_eq!(
            b,
            ProducerBatch { producer_id: PID, epoch: 2, first_seq: i32::MAX - 1, last_seq: 0 }
        );
        let plain = stored_batch(0, 3, None);
        assert_eq!(ProducerBatch::of(&BatchView::new(&plain).unwrap()), None);

        let mut s = ProducerStates::new();
        s.replay(&BatchView::new(&plain).unwrap(), 5);
        assert!(s.is_empty(), "a batch without a producer id leaves no state");
        assert_eq!(s.check_batch(&b), Ok(SeqCheck::Append));
        s.replay(&view, 5);
        assert_eq!(
            s.check_batch(&b),
            Ok(SeqCheck::Duplicate { first_offset: 40, last_offset: 42 })
        );
    }

    #[test]
    fn a_snapshot_plus_a_replay_of_the_batches_after_it_equals_a_replay_of_the_whole_log() {
        // The log as recovery sees it: two producers interleaved, one bumping its epoch.
        let mut log = Vec::new();
        let mut offset = 0i64;
        for (i, (pid, epoch, seq, n)) in
            [(1, 0, 0, 3), (2, 0, 0, 1), (1, 0, 3, 2), (2, 1, 0, 4), (1, 0, 5, 1), (2, 1, 4, 2)]
                .into_iter()
                .enumerate()
        {
            log.push(stored_batch(offset, n, Some((pid, epoch, seq))));
            if i == 2 {
                log.push(stored_batch(offset + n as i64, 2, None));
                offset += 2;
            }
            offset += n as i64;
        }
        let mut whole = ProducerStates::new();
        for b in &log {
            whole.replay(&BatchView::new(b).unwrap(), 77);
        }

        let dir = tempfile::tempdir().unwrap();
        let mut before = ProducerStates::new();
        let (head, tail) = log.split_at(3);
        for b in head {
            before.replay(&BatchView::new(b).unwrap(), 77);
        }
        let snapshot_at = BatchView::new(&tail[0]).unwrap().base_offset() as u64;
        before.write_snapshot(&RealFs, dir.path(), snapshot_at).unwrap();

        let (mut recovered, from) =
            load_latest(&RealFs, dir.path(), offset as u64).unwrap().unwrap();
        assert_eq!(from, snapshot_at);
        for b in &log {
            let view = BatchView::new(b).unwrap();
            if view.base_offset() as u64 >= from {
                recovered.replay(&view, 77);
            }
        }
        assert_eq!(recovered, whole);
        assert_eq!(recovered.get(2).unwrap().epoch, 1);
        assert_eq!(recovered.check(1, 0, 6, 6), Ok(SeqCheck::Append));
    }

    #[test]
    fn idle_producers_expire_and_come_back_afresh() {
        let mut s = ProducerStates::new();
        s.record(1, 0, 0, 9, 0, 9, 1000);
        s.record(2, 0, 0, 9, 10, 19, 5000);
        s.record(1, 0, 10, 19, 20, 29, 900); // a clock step back keeps the later time
        assert_eq!(s.get(1).unwrap().last_append_ms, 1000);
        assert_eq!(s.expire(2999, 2000), 0, "idle 1999 ms");
        assert_eq!(s.expire(3000, 2000), 1, "idle exactly 2000 ms");
        assert_eq!(s.len(), 1);
        assert!(s.get(1).is_none());
        assert_eq!(s.check(1, 0, 20, 29), Ok(SeqCheck::Append));
        assert_eq!(s.expire(i64::MAX, u64::MAX), 0);
        assert_eq!(s.expire(i64::MAX, 0), 1);
        assert!(s.is_empty());
    }

    fn sample() -> ProducerStates {
        let mut s = with_batches(7);
        s.record(3, 2, 0, 0, 900, 900, -5);
        s.record(1 << 40, i16::MAX, i32::MAX - 1, 1, 901, 903, i64::MAX);
        s.record(9, -1, -1, -1, 950, 950, 0); // an odd batch recovery replayed unchecked
        s
    }

    #[test]
    fn snapshot_round_trip_keeps_every_producer_and_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        let path = s.write_snapshot(&RealFs, dir.path(), 1000).unwrap();
        assert_eq!(path.file_name().unwrap(), "00000000000000001000.snapshot");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"MKPS");
        assert_eq!(u32_at(&bytes, COUNT_POS), 4);
        assert_eq!(u64_at(&bytes, OFFSET_POS), 1000);
        assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN + 4 * ENTRY_FIXED_LEN + 8 * BATCH_LEN);
        let (loaded, offset) = load_latest(&RealFs, dir.path(), 1000).unwrap().unwrap();
        assert_eq!((loaded, offset), (s, 1000));
        let empty = ProducerStates::new();
        empty.write_snapshot(&RealFs, dir.path(), 2000).unwrap();
        assert_eq!(load_latest(&RealFs, dir.path(), u64::MAX).unwrap(), Some((empty, 2000)));
    }

    #[test]
    fn any_damage_to_a_snapshot_is_detected() {
        let buf = sample().encode(1000);
        assert!(ProducerStates::decode(&buf, 1000).is_ok());
        assert!(ProducerStates::decode(&buf, 999).is_err(), "wrong name");
        for len in 0..buf.len() {
            assert!(ProducerStates::decode(&buf[..len], 1000).is_err(), "cut at {len}");
        }
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(ProducerStates::decode(&bad, 1000).is_err(), "flip at byte {byte}");
        }
    }

    /// A file whose CRC is right but whose contents are not (a bug, or a forged file).
    fn resealed(mut buf: Vec<u8>) -> Vec<u8> {
        checked_file::seal(&mut buf);
        buf
    }

    #[test]
    fn a_checksummed_snapshot_with_impossible_contents_is_refused_before_allocating() {
        let mut huge = ProducerStates::new().encode(5);
        huge[COUNT_POS..OFFSET_POS].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = ProducerStates::decode(&resealed(huge), 5).unwrap_err();
        assert!(err.contains("cannot fit"), "{err}");

        let good = sample().encode(1000);
        let first = SNAPSHOT_HEADER_LEN;
        let cases: [(usize, &[u8], &str); 3] = [
            (first + 10, &[6], "6 batches"),
            (first + 10, &[0], "0 batches"),
            (first + 11, &[1], "reserved"),
        ];
        for (pos, bytes, what) in cases {
            let mut bad = good.clone();
            bad[pos..pos + bytes.len()].copy_from_slice(bytes);
            assert!(ProducerStates::decode(&resealed(bad), 1000).is_err(), "{what}");
        }
        // Two entries with the same producer id.
        let mut s = ProducerStates::new();
        s.record(1, 0, 0, 0, 0, 0, 0);
        s.record(2, 0, 0, 0, 1, 1, 0);
        let mut dup = s.encode(10);
        let second = SNAPSHOT_HEADER_LEN + ENTRY_FIXED_LEN + BATCH_LEN;
        dup[second..second + 8].copy_from_slice(&1i64.to_le_bytes());
        assert!(ProducerStates::decode(&resealed(dup), 10).is_err(), "duplicate id");
    }

    #[test]
    fn a_damaged_snapshot_falls_back_to_an_older_one_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let older = with_batches(2);
        older.write_snapshot(&RealFs, dir.path(), 200).unwrap();
        let newer = with_batches(4);
        let path = newer.write_snapshot(&RealFs, dir.path(), 400).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();

        let (loaded, offset) = load_latest(&RealFs, dir.path(), 1000).unwrap().unwrap();
        assert_eq!((loaded, offset), (older, 200));
        assert!(!path.exists(), "the damaged snapshot is removed");

        std::fs::write(snapshot_path(dir.path(), 200), b"MKPS").unwrap();
        assert_eq!(load_latest(&RealFs, dir.path(), 1000).unwrap(), None, "none usable: scan");
    }

    #[test]
    fn snapshots_past_the_log_end_are_removed_not_used() {
        let dir = tempfile::tempdir().unwrap();
        with_batches(1).write_snapshot(&RealFs, dir.path(), 100).unwrap();
        with_batches(3).write_snapshot(&RealFs, dir.path(), 300).unwrap();
        let (loaded, offset) = load_latest(&RealFs, dir.path(), 299).unwrap().unwrap();
        assert_eq!((loaded, offset), (with_batches(1), 100));
        assert_eq!(list_snapshots(&RealFs, dir.path()).unwrap(), vec![100]);
        assert_eq!(load_latest(&RealFs, dir.path(), 99).unwrap(), None);
        assert!(list_snapshots(&RealFs, dir.path()).unwrap().is_empty());
    }

    #[test]
    fn old_snapshots_are_removed_by_offset_or_count_and_other_files_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_batches(1);
        for offset in [10, 20, 30, 40] {
            s.write_snapshot(&RealFs, dir.path(), offset).unwrap();
        }
        for other in ["00000000000000000000.log", "1.snapshot", "00000000000000000005.snapshot.tmp"]
        {
            std::fs::write(dir.path().join(other), b"x").unwrap();
        }
        assert_eq!(keep_newest_snapshots(&RealFs, dir.path(), 2).unwrap(), 2);
        assert_eq!(list_snapshots(&RealFs, dir.path()).unwrap(), vec![30, 40]);
        assert_eq!(keep_newest_snapshots(&RealFs, dir.path(), 5).unwrap(), 0);
        let mut names = RealFs.list_dir(dir.path()).unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000000.log",
                "00000000000000000005.snapshot.tmp",
                "00000000000000000030.snapshot",
                "00000000000000000040.snapshot",
                "1.snapshot"
            ]
        );
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// What a producer does next: send a new batch of `n` records, retry its `k`-th latest
        /// batch, bump its epoch, or send with an epoch older than its current one.
        #[derive(Debug, Clone)]
        enum Op {
            Send { pid: i64, n: i32 },
            Retry { pid: i64, k: usize },
            Bump { pid: i64 },
            Stale { pid: i64 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0i64..4, 1i32..4).prop_map(|(pid, n)| Op::Send { pid, n }),
                3 => (0i64..4, 0usize..8).prop_map(|(pid, k)| Op::Retry { pid, k }),
                1 => (0i64..4).prop_map(|pid| Op::Bump { pid }),
                1 => (0i64..4).prop_map(|pid| Op::Stale { pid }),
            ]
        }

        /// A producer as it sees itself: epoch, next sequence, its batches of this epoch.
        #[derive(Default)]
        struct Producer {
            epoch: i16,
            next_seq: i32,
            sent: Vec<BatchMetadata>,
        }

        proptest! {
            #[test]
            fn retries_get_their_offsets_back_and_snapshots_round_trip(
                ops in proptest::collection::vec(op(), 1..120),
                near_wrap in any::<bool>(),
            ) {
                let mut states = ProducerStates::new();
                let mut producers: HashMap<i64, Producer> = HashMap::new();
                let mut next_offset = 0u64;
                for op in ops {
                    match op {
                        Op::Send { pid, n } => {
                            let p = producers.entry(pid).or_insert_with(|| Producer {
                                next_seq: if near_wrap { i32::MAX - 2 } else { 0 },
                                ..Producer::default()
                            });
                            let first_seq = p.next_seq;
                            let last_seq = last_sequence(first_seq, n - 1);
                            prop_assert_eq!(states.check(pid, p.epoch, first_seq, last_seq), Ok(SeqCheck::Append));
                            let b = BatchMetadata { first_seq, last_seq, first_offset: next_offset, last_offset: next_offset + n as u64 - 1 };
                            states.record(pid, p.epoch, first_seq, last_seq, b.first_offset, b.last_offset, 0);
                            next_offset = b.last_offset + 1;
                            p.next_seq = next_sequence(last_seq);
                            p.sent.push(b);
                        }
                        Op::Retry { pid, k } => {
                            let Some(p) = producers.get(&pid) else { continue };
                            let Some(b) = p.sent.iter().rev().nth(k) else { continue };
                            let got = states.check(pid, p.epoch, b.first_seq, b.last_seq);
                            if k < RETAINED_BATCHES {
                                prop_assert_eq!(got, Ok(SeqCheck::Duplicate { first_offset: b.first_offset, last_offset: b.last_offset }));
                            } else {
                                let expected = p.next_seq;
                                prop_assert_eq!(got, Err(OutOfOrderSequence { producer_id: pid, expected, got: b.first_seq }));
                            }
                        }
                        Op::Bump { pid } => {
                            let Some(p) = producers.get_mut(&pid) else { continue };
                            p.epoch += 1;
                            p.next_seq = 0;
                            p.sent.clear();
                        }
                        Op::Stale { pid } => {
                            let Some(p) = producers.get(&pid) else { continue };
                            // The broker learns of a bump from the first batch of the new epoch.
                            if p.epoch == 0 || p.sent.is_empty() { continue }
                            prop_assert_eq!(
                                states.check(pid, p.epoch - 1, p.next_seq, p.next_seq),
                                Err(InvalidProducerEpoch { producer_id: pid, current: p.epoch, got: p.epoch - 1 })
                            );
                        }
                    }
                }
                let decoded = ProducerStates::decode(&states.encode(next_offset), next_offset);
                prop_assert_eq!(decoded, Ok(states));
            }

            #[test]
            fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = ProducerStates::decode(&bytes, 0);
                let mut sealed = bytes.clone();
                if sealed.len() >= SNAPSHOT_HEADER_LEN {
                    sealed[..4].copy_from_slice(&SNAPSHOT_MAGIC);
                    sealed[4..8].copy_from_slice(&[1, 0, 0, 0]);
                    let _ = ProducerStates::decode(&resealed(sealed), 0);
                }
            }
        }
    }
}
