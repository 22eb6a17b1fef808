//! The on-disk log of one partition: segment files, a sparse offset index, mmap reads, crash
//! recovery, the fsync policy and retention by whole segments. Usable as a library without any
//! networking; never knows about topics, sockets or wire formats.
//!
//! CONTRACT (fixed: the broker and Kafka layers are written against exactly this surface):
//! - `Log::open(dir, LogConfig) -> Result<Log>`: creates the directory if missing, recovers.
//! - `Log` is `Send + Sync`; every method takes `&self`; share it as `Arc<Log>`.
//! - `append(&[NewRecord]) -> Result<OffsetRange>` and `append_encoded(&mut [u8]) -> Result<OffsetRange>`
//!   (bytes in the record format of `crate::record`, offsets/CRCs rewritten in place by
//!   `record::assign_offsets`): one write per batch; returns after the write reached the OS, and
//!   with `FsyncPolicy::Always` after fdatasync (group commit across concurrent appenders).
//! - `read(offset, max_bytes) -> Result<ReadSlice>`: records from `offset` within one segment, at
//!   least one whole record even past `max_bytes`; `offset == next_offset()` gives an empty slice;
//!   outside `log_start_offset()..=next_offset()` gives `StorageError::OffsetOutOfRange`.
//! - `log_start_offset()`, `next_offset()`, `describe() -> LogDescription`,
//!   `trim_before(offset) -> Result<u64>`, `enforce_retention(now_ms) -> Result<usize>`,
//!   `offset_for_timestamp(ts_ms) -> Result<Option<u64>>` (first offset whose timestamp >= ts),
//!   `sync() -> Result<()>`, `sync_if_dirty() -> Result<()>` (the broker's interval ticker),
//!   `close(&self) -> Result<()>` (sync + clean-shutdown marker), `dir() -> &Path`.
//!
//! Public types (exact names and fields):
//! ```ignore
//! pub enum FsyncPolicy { Always, Interval(Duration), Never }
//! pub struct LogConfig { pub segment_bytes: u64, pub index_interval_bytes: u32, pub max_record_bytes: u32,
//!                        pub fsync: FsyncPolicy, pub retention_bytes: Option<u64>, pub retention_ms: Option<u64> }
//!                        // Default: 1 GiB, 4 KiB, record::DEFAULT_MAX_RECORD_BYTES, Always, None, None
//! pub struct OffsetRange { pub first: u64, pub next: u64 }            // first..next (next exclusive)
//! pub struct LogDescription { pub log_start_offset: u64, pub next_offset: u64, pub segments: usize, pub size_bytes: u64 }
//! pub struct ReadSlice;   // Clone + Send + Sync + 'static: holds an Arc of the segment's mapping
//! impl ReadSlice { pub fn bytes(&self) -> &[u8]; pub fn records(&self) -> record::RecordIter<'_>;
//!                  pub fn is_empty(&self) -> bool; pub fn len(&self) -> usize;
//!                  pub fn first_offset(&self) -> u64; pub fn next_offset(&self) -> u64 /* after the last record in it */ }
//! pub enum StorageError {            // thiserror; every variant names the file/offset involved
//!   Io { path: PathBuf, op: &'static str, source: io::Error },
//!   OffsetOutOfRange { offset: u64, log_start_offset: u64, next_offset: u64 },
//!   Corrupt { path: PathBuf, position: u64, reason: String },
//!   RecordTooLarge { size: u64, max: u64 },
//!   InvalidRecord(#[from] record::RecordError),
//!   Poisoned { path: PathBuf },      // an earlier fsync/write failed: the log refuses writes until reopened
//!   ...                              // more as needed
//! }
//! ```
