//! The Raft log and vote on disk: `<dir>/raft-log`, an append-only file of framed JSON records
//! fsynced before any write returns, and `<dir>/vote.json` replaced atomically (temp file,
//! fsync, rename, directory fsync). Truncation cuts the file; purging appends a marker and, once
//! most of the file is purged entries, rewrites it. Recovery keeps the valid prefix and drops a
//! torn tail (a write cut by a crash was never acknowledged). Holds the live entries in memory:
//! the metadata log between two snapshots is small. Never interprets an entry's payload.
//!
//! `raft-log` layout: an 8-byte magic `MKRAFTL1`, then records:
//!
//! | offset | size | field  | encoding                                           |
//! |--------|------|--------|----------------------------------------------------|
//! | 0      | 4    | length | u32 big-endian: bytes of `body`                    |
//! | 4      | 4    | crc    | u32 big-endian: CRC-32 (IEEE, `crc32fast`) of body |
//! | 8      | len  | body   | JSON of a [`LogRecord`]                            |

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use super::RaftNodeError;
use super::types::{Entry, LogId, TypeConfig, Vote};

const MAGIC: &[u8; 8] = b"MKRAFTL1";
const RECORD_HEADER_BYTES: usize = 8;
/// A record larger than this is corruption, not an entry: metadata commands are small.
const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;
/// Rewrite the file once this many purged entries are still in it and they outnumber the live
/// ones.
const COMPACT_AFTER_STALE: usize = 4096;

pub(crate) const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";

#[derive(Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry),
    /// Every entry up to and including this log id is purged (covered by a snapshot).
    Purged(LogId),
}

/// The durable log; clones share one state (the reader openraft asks for is a clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    file_len: u64,
    /// Live entries and the file offset of each one's record.
    entries: BTreeMap<u64, (Entry, u64)>,
    last_purged: Option<LogId>,
    /// Offset of the newest `Purged` record, so a truncation that cuts it can write it again.
    purged_record_at: Option<u64>,
    /// Records of purged entries still in the file.
    stale: usize,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering the valid prefix of the file.
    pub(crate) fn open(dir: &Path) -> Result<LogStore, RaftNodeError> {
        fs::create_dir_all(dir).map_err(|source| storage(dir, source))?;
        let path = dir.join(LOG_FILE);
        let _ = fs::remove_file(dir.join(format!("{LOG_FILE}.tmp")));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|source| storage(&path, source))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|source| storage(&path, source))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file,
            file_len: 0,
            entries: BTreeMap::new(),
            last_purged: None,
            purged_record_at: None,
            stale: 0,
            vote: read_json(&dir.join(VOTE_FILE))?,
            committed: read_json(&dir.join(COMMITTED_FILE)).unwrap_or(None),
        };
        if bytes.len() < MAGIC.len() {
            // New, or created by a crash before its magic was durable: start it afresh.
            inner.file.set_len(0).map_err(|source| storage(&path, source))?;
            inner.file.write_all(MAGIC).map_err(|source| storage(&path, source))?;
            inner.file.sync_all().map_err(|source| storage(&path, source))?;
            sync_dir(dir)?;
            inner.file_len = MAGIC.len() as u64;
        } else {
            if &bytes[..MAGIC.len()] != MAGIC {
                return Err(RaftNodeError::Corrupt {
                    path,
                    reason: "not a raft log (bad magic)".into(),
                });
            }
            let valid = inner.replay(&bytes, &path)?;
            if valid < bytes.len() {
                tracing::warn!(
                    path = %path.display(),
                    dropped = bytes.len() - valid,
                    "raft log: dropping a torn tail left by a crash"
                );
                inner.file.set_len(valid as u64).map_err(|source| storage(&path, source))?;
                inner.file.sync_all().map_err(|source| storage(&path, source))?;
            }
            inner.file_len = valid as u64;
        }
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the in-memory view possibly ahead of the file;
        // the file is the truth and the node restarts from it, so the poison is not fatal here.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&mut this.lock()))
            .await
            .map_err(|e| io::Error::other(format!("raft log task failed: {e}")))?
    }

    pub(crate) fn last_log_index(&self) -> Option<u64> {
        self.lock().entries.keys().next_back().copied()
    }
}

impl Inner {
    /// Applies the records in `bytes` (after the magic) to the in-memory view; returns the
    /// length of the valid prefix.
    fn replay(&mut self, bytes: &[u8], path: &Path) -> Result<usize, RaftNodeError> {
        let mut pos = MAGIC.len();
        while let Some((record, next)) = decode_record(bytes, pos) {
            match record {
                LogRecord::Entry(entry) => {
                    let index = entry.index();
                    let expected = self.next_index();
                    if index > expected
                        && (self.last_index().is_some() || self.last_purged.is_some())
                    {
                        return Err(RaftNodeError::Corrupt {
                            path: path.to_path_buf(),
                            reason: format!(
                                "entry {index} follows {expected} - 1: a hole in the log"
                            ),
                        });
                    }
                    // An index at or below the last one replaces it and everything after it
                    // (the file is cut on truncation, so this is only defensive).
                    let dropped: Vec<u64> = self.entries.range(index..).map(|(i, _)| *i).collect();
                    for i in dropped {
                        self.entries.remove(&i);
                    }
                    self.entries.insert(index, (entry, pos as u64));
                }
                LogRecord::Purged(log_id) => {
                    self.remove_through(log_id.index());
                    self.last_purged = Some(log_id);
                    self.purged_record_at = Some(pos as u64);
                }
            }
            pos = next;
        }
        Ok(pos)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    fn next_index(&self) -> u64 {
        match (self.last_index(), &self.last_purged) {
            (Some(i), _) => i + 1,
            (None, Some(p)) => p.index() + 1,
            (None, None) => 0,
        }
    }

    fn remove_through(&mut self, index: u64) {
        let purged: Vec<u64> = self.entries.range(..=index).map(|(i, _)| *i).collect();
        self.stale += purged.len();
        for i in purged {
            self.entries.remove(&i);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Appends records and fsyncs; returns the offset of each.
    fn write_records(&mut self, records: &[LogRecord]) -> io::Result<Vec<u64>> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            offsets.push(self.file_len + buf.len() as u64);
            encode_record(record, &mut buf)?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.file_len += buf.len() as u64;
        Ok(offsets)
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let records: Vec<LogRecord> = entries.into_iter().map(LogRecord::Entry).collect();
        let offsets = self.write_records(&records)?;
        for (record, offset) in records.into_iter().zip(offsets) {
            if let LogRecord::Entry(entry) = record {
                self.entries.insert(entry.index(), (entry, offset));
            }
        }
        Ok(())
    }

    fn truncate_after(&mut self, last: Option<LogId>) -> io::Result<()> {
        let from = last.map_or(0, |l| l.index() + 1);
        let Some((_, (_, cut))) = self.entries.range(from..).next() else { return Ok(()) };
        let cut = *cut;
        self.file.set_len(cut)?;
        self.file.sync_all()?;
        self.file_len = cut;
        let removed: Vec<u64> = self.entries.range(from..).map(|(i, _)| *i).collect();
        for i in removed {
            self.entries.remove(&i);
        }
        if let (Some(at), Some(purged)) = (self.purged_record_at, self.last_purged)
            && at >= cut
        {
            let offsets = self.write_records(&[LogRecord::Purged(purged)])?;
            self.purged_record_at = offsets.first().copied();
        }
        Ok(())
    }

    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        if self.last_purged.as_ref().is_some_and(|p| p >= &log_id) {
            return Ok(());
        }
        self.remove_through(log_id.index());
        let offsets = self.write_records(&[LogRecord::Purged(log_id)])?;
        self.purged_record_at = offsets.first().copied();
        self.last_purged = Some(log_id);
        if self.stale >= COMPACT_AFTER_STALE && self.stale > self.entries.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the purge marker and the live entries.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut buf = MAGIC.to_vec();
        let mut purged_at = None;
        if let Some(p) = &self.last_purged {
            purged_at = Some(buf.len() as u64);
            encode_record(&LogRecord::Purged(*p), &mut buf)?;
        }
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (index, (entry, _)) in &self.entries {
            offsets.push((*index, buf.len() as u64));
            // Entries are re-encoded from memory exactly as they were appended.
            encode_record(&LogRecord::Entry(entry.clone()), &mut buf)?;
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.log_path())?;
        sync_dir_io(&self.dir)?;
        self.file = OpenOptions::new().read(true).append(true).open(self.log_path())?;
        self.file_len = buf.len() as u64;
        for (index, offset) in offsets {
            if let Some(slot) = self.entries.get_mut(&index) {
                slot.1 = offset;
            }
        }
        self.purged_record_at = purged_at;
        self.stale = 0;
        Ok(())
    }

    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        write_atomically(&self.dir, VOTE_FILE, &serde_json::to_vec(vote)?, true)?;
        self.vote = Some(*vote);
        Ok(())
    }

    fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // A hint for faster recovery, never ahead of the truth: a stale value after a crash only
        // means re-applying less on start-up, so no fsync.
        write_atomically(&self.dir, COMMITTED_FILE, &serde_json::to_vec(&committed)?, false)?;
        self.committed = committed;
        Ok(())
    }

    fn entries_in(&self, range: impl RangeBounds<u64>) -> Vec<Entry> {
        let start = match range.start_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (start, end)
            && s > e
        {
            return Vec::new();
        }
        self.entries.range((start, end)).map(|(_, (e, _))| e.clone()).collect()
    }
}

fn encode_record(record: &LogRecord, buf: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(record)?;
    let len =
        u32::try_from(body.len()).ok().filter(|l| *l <= MAX_RECORD_BYTES).ok_or_else(|| {
            io::Error::other(format!("raft log record of {} bytes is too large", body.len()))
        })?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// The record at `pos` and the position after it, or `None` where the valid prefix ends (end of
/// file, a cut record, a bad checksum or an undecodable body).
fn decode_record(bytes: &[u8], pos: usize) -> Option<(LogRecord, usize)> {
    let header = bytes.get(pos..pos + RECORD_HEADER_BYTES)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let start = pos + RECORD_HEADER_BYTES;
    let body = bytes.get(start..start + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let record = serde_json::from_slice(body).ok()?;
    Some((record, start + len as usize))
}

fn storage(path: &Path, source: io::Error) -> RaftNodeError {
    RaftNodeError::Storage { path: path.to_path_buf(), source }
}

/// Reads a JSON file written by [`write_atomically`]; absent is `None`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, RaftNodeError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| RaftNodeError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(storage(path, source)),
    }
}

/// Replaces `dir/name` with `bytes`: temp file, (fsync), rename, (directory fsync).
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir_io(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), RaftNodeError> {
    sync_dir_io(dir).map_err(|source| storage(dir, source))
}

fn sync_dir_io(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<
        RB: RangeBounds<u64> + Clone + std::fmt::Debug + openraft::OptionalSend,
    >(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.lock().entries_in(range))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.lock();
        let last_purged_log_id = inner.last_purged;
        let last_log_id =
            inner.entries.values().next_back().map(|(e, _)| e.log_id()).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.blocking(move |inner| inner.save_vote(&vote)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| inner.save_committed(committed)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.blocking(move |inner| inner.append(entries)).await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| inner.truncate_after(last_log_id)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.blocking(move |inner| inner.purge(log_id)).await
    }
}
