//! Producer ids for InitProducerId, unique for the life of the data directory across restarts
//! and crashes. Ids are reserved in blocks of [`BLOCK_SIZE`]: the end of the newest block is
//! written durably to `<data-dir>/@producer-ids` before any id of it is handed out, and a restart
//! continues from that end, so an id handed out before a crash is never handed out again (the
//! unused rest of a block is skipped). Never looks at partitions or producer state.
//!
//! Why it matters: a partition remembers producers by id. A reused id would make a new
//! producer's first batches look like an old producer's (duplicates to drop, or a sequence gap to
//! refuse), so a damaged file stops the broker rather than guess.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::FileSystem;
use crate::storage::checked_file::{Format, seal_record, u64_at};

/// Name of the file, in the data directory's root. `@` is not a topic name character, so no
/// topic directory can take the name (as for `@groups`).
pub const PRODUCER_IDS_FILE: &str = "@producer-ids";
/// Ids reserved per durable write.
pub const BLOCK_SIZE: i64 = 1000;

/// Magic and format version of the file.
const FORMAT: Format = Format { magic: *b"MKPI", version: 1 };
/// Position of the `reserved_end` field.
const END_POS: usize = 8;
/// Position of the `crc` field.
const CRC_POS: usize = 16;
/// Size of the file.
const FILE_LEN: usize = 20;

/// Why producer ids cannot be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "producer id file {} is damaged ({reason}); refusing to start rather than hand out \
         producer ids that may be in use (a reused id can make a new producer's records be \
         dropped as duplicates or refused). Restore the file from a backup; removing it restarts \
         ids from the clock in milliseconds, safe unless this directory handed out ids faster \
         than one per millisecond on average",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("producer ids are exhausted in {}: the next block would pass i64::MAX", path.display())]
    Exhausted { path: PathBuf },
}

/// The producer id allocator of a data directory. `Send + Sync`; share it as `Arc`.
///
/// # Byte layout of `@producer-ids` (all integers little-endian)
///
/// | position | size | field          | encoding                                                  |
/// |----------|------|----------------|-----------------------------------------------------------|
/// | 0        | 4    | `magic`        | the bytes `MKPI`                                          |
/// | 4        | 2    | `version`      | `u16`, currently 1                                        |
/// | 6        | 2    | reserved       | zero                                                      |
/// | 8        | 8    | `reserved_end` | `i64`, non-negative: every id below it may have been handed out; the next block starts here |
/// | 16       | 4    | `crc`          | `u32`: CRC-32 (IEEE, `crc32fast`) of bytes `0..16`        |
///
/// The file is replaced through a temp file, fdatasync, rename and a directory fsync, so a crash
/// leaves the old end or the new one, both safe. A missing file starts the ids at the clock in
/// milliseconds (as the previous release seeded them, so ids it handed out are not met again
/// unless it handed out more than one per millisecond since its start).
#[derive(Debug)]
pub struct ProducerIds {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    path: PathBuf,
    state: Mutex<Block>,
}

/// The ids `next..end` may be handed out without writing the file.
#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIds {
    /// Opens the allocator of `data_dir` on the real file system.
    #[cfg(test)]
    pub fn open(data_dir: &Path) -> Result<ProducerIds, ProducerIdError> {
        Self::open_with(Arc::new(crate::storage::RealFs), data_dir)
    }

    /// Opens the allocator of `data_dir` through `fs` (the broker's, so tests can inject faults).
    /// Reads the file; writes nothing until the first id is wanted.
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        data_dir: &Path,
    ) -> Result<ProducerIds, ProducerIdError> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let tmp = tmp_path(&path);
        if fs.exists(&tmp) {
            // Debris of a write a crash interrupted before its rename: the file still holds the
            // end of a block reserved before it, and nothing of the new block was handed out.
            fs.remove_file(&tmp).map_err(io_err(&tmp, "remove"))?;
        }
        let start = if fs.exists(&path) {
            let bytes = fs.read(&path).map_err(io_err(&path, "read"))?;
            decode(&bytes)
                .map_err(|reason| ProducerIdError::Damaged { path: path.clone(), reason })?
        } else {
            // Milliseconds since the Unix epoch (0 for a clock before it).
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
            tracing::info!(path = %path.display(), start, "no producer id file: ids start at the clock");
            start
        };
        Ok(ProducerIds {
            fs,
            dir: data_dir.to_path_buf(),
            path,
            state: Mutex::new(Block { next: start, end: start }),
        })
    }

    /// A producer id never handed out before in this data directory. Every [`BLOCK_SIZE`] ids it
    /// writes and fsyncs the file (blocking); if that fails, no id is handed out and the next call
    /// tries again.
    pub fn next(&self) -> Result<i64, ProducerIdError> {
        // A panic while holding the lock cannot leave the block inconsistent: it changes only
        // after the file write succeeded, in one assignment.
        let mut block = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if block.next >= block.end {
            let end = block
                .end
                .checked_add(BLOCK_SIZE)
                .ok_or_else(|| ProducerIdError::Exhausted { path: self.path.clone() })?;
            self.write(end)?;
            tracing::debug!(path = %self.path.display(), end, "reserved a block of producer ids");
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// Replaces the file with `end`, durably: temp file, fdatasync, rename, directory fsync.
    fn write(&self, end: i64) -> Result<(), ProducerIdError> {
        let tmp = tmp_path(&self.path);
        let f = self.fs.create(&tmp).map_err(io_err(&tmp, "create"))?;
        let written = f
            .write_all_at(&encode(end), 0)
            .map_err(io_err(&tmp, "write"))
            .and_then(|()| f.sync_data().map_err(io_err(&tmp, "fdatasync")));
        drop(f);
        let renamed = written.and_then(|()| {
            self.fs.rename(&tmp, &self.path).map_err(io_err(&self.path, "rename temp file onto"))
        });
        if renamed.is_err() {
            // Leave no half-written temp file to hold space on a full disk; open removes any
            // that a crash leaves.
            let _ = self.fs.remove_file(&tmp);
        }
        renamed?;
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir, "fsync directory"))
    }
}

fn encode(end: i64) -> [u8; FILE_LEN] {
    let mut b = [0u8; FILE_LEN];
    FORMAT.write_prefix(&mut b);
    b[END_POS..CRC_POS].copy_from_slice(&end.to_le_bytes());
    seal_record(&mut b);
    b
}

/// The `reserved_end` of a file, or why it cannot be trusted.
fn decode(b: &[u8]) -> Result<i64, String> {
    FORMAT.check_record(b, FILE_LEN)?;
    let end = u64_at(b, END_POS) as i64;
    if end < 0 {
        return Err(format!("negative end {end}"));
    }
    Ok(end)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(super::fsutil::TMP_SUFFIX);
    PathBuf::from(s)
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> ProducerIdError {
    let path = path.to_path_buf();
    move |source| ProducerIdError::Io { path, op, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FaultyFs;
    use std::collections::HashSet;

    #[test]
    fn ids_keep_increasing_across_a_crash_and_the_rest_of_a_block_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as i64;
        let ids = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.next().unwrap()).collect();
        assert!(
            first[0] >= now_ms,
            "a new directory starts at the clock, above the ids of the previous release"
        );
        assert_eq!(first, [first[0], first[0] + 1, first[0] + 2]);
        let bytes = std::fs::read(dir.path().join(PRODUCER_IDS_FILE)).unwrap();
        assert_eq!((&bytes[..4], bytes.len()), (&b"MKPI"[..], FILE_LEN));
        drop(ids); // a crash: nothing is written on the way out

        let ids = ProducerIds::open(dir.path()).unwrap();
        let after = ids.next().unwrap();
        assert_eq!(after, first[0] + BLOCK_SIZE, "the next block, never a used id");
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.next().unwrap(), first[0] + 2 * BLOCK_SIZE);
    }

    #[test]
    fn thousands_of_ids_from_several_threads_are_unique_and_stay_so_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = Arc::new(ProducerIds::open(dir.path()).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..2500).map(|_| ids.next().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(seen.len(), 10_000);
        let max = *seen.iter().max().unwrap();
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert!(ids.next().unwrap() > max);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        ProducerIds::open(dir.path()).unwrap().next().unwrap();
        let path = dir.path().join(PRODUCER_IDS_FILE);
        let good = std::fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> = (0..good.len())
            .map(|i| {
                let mut b = good.clone();
                b[i] ^= 0x04;
                b
            })
            .collect();
        damaged.extend((0..good.len()).map(|n| good[..n].to_vec()));
        damaged.push([good.clone(), vec![0]].concat());
        let mut negative = encode(0);
        negative[END_POS..CRC_POS].copy_from_slice(&(-5i64).to_le_bytes());
        let crc = crc32fast::hash(&negative[..CRC_POS]);
        negative[CRC_POS..].copy_from_slice(&crc.to_le_bytes());
        damaged.push(negative.to_vec());
        for bytes in damaged {
            std::fs::write(&path, &bytes).unwrap();
            let err = ProducerIds::open(dir.path()).unwrap_err();
            assert!(matches!(err, ProducerIdError::Damaged { .. }), "{bytes:?}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
        std::fs::write(&path, &good).unwrap();
        ProducerIds::open(dir.path()).unwrap();
    }

    #[test]
    fn a_failed_reservation_hands_out_nothing_and_the_next_call_retries() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let ids = ProducerIds::open_with(Arc::new(fs.clone()), dir.path()).unwrap();
        fs.fail_next_syncs(1);
        assert!(matches!(ids.next(), Err(ProducerIdError::Io { op: "fdatasync", .. })));
        assert!(!dir.path().join(PRODUCER_IDS_FILE).exists(), "the failed block was not reserved");
        assert!(!tmp_path(&dir.path().join(PRODUCER_IDS_FILE)).exists(), "no temp file left");
        let first = ids.next().unwrap();
        for _ in 1..BLOCK_SIZE {
            ids.next().unwrap();
        }
        fs.set_no_space(true);
        assert!(ids.next().is_err(), "the second block cannot be written");
        fs.set_no_space(false);
        assert_eq!(ids.next().unwrap(), first + BLOCK_SIZE);
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.next().unwrap(), first + 2 * BLOCK_SIZE);
    }

    #[test]
    fn a_temp_file_left_by_a_crash_is_removed_and_the_old_end_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIds::open(dir.path()).unwrap().next().unwrap();
        let tmp = tmp_path(&dir.path().join(PRODUCER_IDS_FILE));
        std::fs::write(&tmp, b"MK").unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert_eq!(ids.next().unwrap(), first + BLOCK_SIZE);
    }
}
