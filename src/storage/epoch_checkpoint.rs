//! The `leader-epoch-checkpoint` file of a partition directory: the [`EpochCache`] on disk, written
//! whole (temp file, fdatasync, rename, directory fsync) each time an epoch is added or the log is
//! truncated, read at open. Also rebuilds a cache from the stored batches' `partitionLeaderEpoch`
//! headers, for a log that has no checkpoint (a data directory of the release before replication,
//! whose batches are all stamped 0) or a damaged one. Never decides when to write (`log/` does).
//!
//! # Byte layout (all integers little-endian)
//!
//! | position     | size | field     | encoding                                           |
//! |--------------|------|-----------|----------------------------------------------------|
//! | 0            | 4    | `magic`   | the bytes `MKLE`                                   |
//! | 4            | 2    | `version` | `u16`, currently 1                                 |
//! | 6            | 2    | reserved  | zero                                               |
//! | 8            | 4    | `crc`     | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `12..` to the end |
//! | 12           | 4    | `count`   | `u32`: number of entries                           |
//! | 16 + 12 * i  | 4    | `epoch`   | `i32`: entry i's leader epoch (strictly increasing) |
//! | 20 + 12 * i  | 8    | `start`   | `u64`: the offset of its first record (strictly increasing) |

use std::path::Path;
use std::sync::Arc;

use crate::storage::StorageError;
use crate::storage::checked_file::{BODY_POS, Format, check_entries, seal, u32_at, u64_at};
use crate::storage::epoch_cache::EpochCache;
use crate::storage::fs::{FileSystem, write_atomic};
use crate::storage::segment::{self, SEGMENT_HEADER_LEN, Segment};

/// Name of the checkpoint in a partition directory.
pub(crate) const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

const FORMAT: Format = Format { magic: *b"MKLE", version: 1 };
/// Header: prefix, CRC, count.
const HEADER_LEN: usize = BODY_POS + 4;
const ENTRY_LEN: usize = 12;

/// The file's bytes for `cache`.
pub(crate) fn encode(cache: &EpochCache) -> Vec<u8> {
    let entries = cache.entries();
    let mut buf = FORMAT.start(HEADER_LEN + entries.len() * ENTRY_LEN);
    // A log holds far fewer than 2^32 leader epochs that wrote records.
    buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for &(epoch, start) in entries {
        buf.extend_from_slice(&epoch.to_le_bytes());
        buf.extend_from_slice(&start.to_le_bytes());
    }
    seal(&mut buf);
    buf
}

/// The cache in `buf`, or why it does not decode (bad CRC, length, or entries out of order).
pub(crate) fn decode(buf: &[u8]) -> Result<EpochCache, String> {
    FORMAT.check(buf, HEADER_LEN)?;
    let count = check_entries(buf, u32_at(buf, BODY_POS) as usize, HEADER_LEN, ENTRY_LEN)?;
    let mut cache = EpochCache::default();
    for i in 0..count {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let epoch = u32_at(buf, at) as i32;
        let start = u64_at(buf, at + 4);
        if cache.latest().is_some_and(|e| e >= epoch)
            || cache.entries().last().is_some_and(|&(_, s)| s >= start)
        {
            return Err(format!("entry {i} ({epoch}, {start}) does not follow the one before"));
        }
        cache.assign(epoch, start);
    }
    Ok(cache)
}

/// Writes the checkpoint durably: a crash leaves the old one or the new one.
pub(crate) fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    cache: &EpochCache,
) -> Result<(), StorageError> {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    write_atomic(fs, dir, &path, &encode(cache))
        .map_err(StorageError::io(&path, "write leader-epoch checkpoint"))
}

/// The cache of a log opened with `segments` ending at `next`: the checkpoint with the entries
/// past the end dropped (a crash lost records the checkpoint had named an epoch for), or, when it is missing or damaged, one rebuilt from the batch headers and written.
pub(crate) fn load(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Arc<Segment>],
    next: u64,
) -> Result<EpochCache, StorageError> {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    if fs.exists(&path) {
        let bytes =
            fs.read(&path).map_err(StorageError::io(&path, "read leader-epoch checkpoint"))?;
        match decode(&bytes) {
            Ok(mut cache) => {
                let before = cache.entries().len();
                // Entries past the end: records a crash lost. One starting at the end is kept
                // (an epoch set that has not written yet).
                cache.truncate_to(next.saturating_add(1));
                if cache.entries().len() != before {
                    write(fs, dir, &cache)?;
                }
                return Ok(cache);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason,
                    "leader-epoch checkpoint damaged; rebuilding it from the log");
            }
        }
    }
    let cache = rebuild(fs, segments)?;
    if let Err(e) = write(fs, dir, &cache) {
        // Not fatal: the next open rebuilds it again; appends write it when an epoch is new.
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the rebuilt leader-epoch checkpoint");
    }
    Ok(cache)
}

/// The cache the stored batches' `partitionLeaderEpoch` headers give: each epoch starts at the
/// first batch that carries it (epochs that go backwards, which no leader writes, are ignored).
/// Only headers are read (no CRC check: recovery checked the tail, seal the rest).
pub(crate) fn rebuild(
    fs: &dyn FileSystem,
    segments: &[Arc<Segment>],
) -> Result<EpochCache, StorageError> {
    let mut cache = EpochCache::default();
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        let h = seg.open(fs)?;
        segment::scan(h.data(), SEGMENT_HEADER_LEN, seg.base_offset, false, |v, _| {
            let epoch = v.partition_leader_epoch();
            if epoch >= 0 && cache.latest().is_none_or(|l| epoch > l) {
                cache.assign(epoch, v.base_offset() as u64);
            }
        });
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_any_flipped_byte_is_caught() {
        let mut c = EpochCache::default();
        c.assign(0, 0);
        c.assign(3, 17);
        c.assign(7, 1 << 40);
        let b = encode(&c);
        assert_eq!(&b[..4], b"MKLE");
        assert_eq!(b.len(), HEADER_LEN + 3 * ENTRY_LEN);
        assert_eq!(decode(&b).unwrap(), c);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at byte {i}");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert_eq!(decode(&encode(&EpochCache::default())).unwrap(), EpochCache::default());
    }
}
