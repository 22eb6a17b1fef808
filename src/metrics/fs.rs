//! `TimedFs`: a [`FileSystem`] that forwards every operation to another one and reports how long
//! each fdatasync of a file and each fsync of a directory took to the metrics. The storage engine's
//! own seam is the hook, so the log code needs no metrics knowledge. Never changes what an
//! operation does or returns.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::Metrics;
use crate::storage::{FileSystem, FsFile};

/// Times the syncs of `inner`; everything else passes straight through.
#[derive(Debug)]
pub struct TimedFs {
    inner: Arc<dyn FileSystem>,
    metrics: Arc<Metrics>,
}

impl TimedFs {
    pub fn new(inner: Arc<dyn FileSystem>, metrics: Arc<Metrics>) -> Self {
        TimedFs { inner, metrics }
    }

    fn wrap(&self, file: Box<dyn FsFile>) -> Box<dyn FsFile> {
        Box::new(TimedFile { inner: file, metrics: Arc::clone(&self.metrics) })
    }
}

#[derive(Debug)]
struct TimedFile {
    inner: Box<dyn FsFile>,
    metrics: Arc<Metrics>,
}

impl FsFile for TimedFile {
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        let start = Instant::now();
        let res = self.inner.sync_data();
        self.metrics.record_fsync(start.elapsed());
        res
    }
    fn as_file(&self) -> &File {
        self.inner.as_file()
    }
}

impl FileSystem for TimedFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(self.wrap(self.inner.open(path)?))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(self.wrap(self.inner.create(path)?))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let start = Instant::now();
        let res = self.inner.sync_dir(path);
        self.metrics.record_fsync(start.elapsed());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewRecord;
    use crate::storage::{FsyncPolicy, Log, LogConfig, RealFs};

    #[test]
    fn every_sync_of_a_log_on_a_timed_fs_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let fs: Arc<dyn FileSystem> = Arc::new(TimedFs::new(Arc::new(RealFs), metrics.clone()));
        let config = LogConfig { fsync: FsyncPolicy::Always, ..LogConfig::default() };
        let log = Log::open_with_fs(dir.path().join("0"), config, fs).unwrap();
        let before = metrics.fsync_count();
        for _ in 0..3 {
            log.append(&[NewRecord::value(b"x")]).unwrap();
        }
        // With Always and one appender, each append waits for its own fdatasync.
        assert!(metrics.fsync_count() >= before + 3, "{} syncs", metrics.fsync_count());
        assert_eq!(log.read(0, 1 << 20).unwrap().records().count(), 3);
    }
}
