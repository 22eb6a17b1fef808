//! The one seam through which the storage engine touches the file system: open/create, positional
//! writes, set_len, fdatasync, rename, remove, directory listing and directory fsync. Nothing else
//! in `storage/` calls `std::fs` for files of a log, so a test can swap in [`FaultyFs`] and make a
//! write fail, come up short, or an fsync fail, on command. Never interprets the bytes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A file of a log, as the engine uses it: positional I/O only (no shared cursor), so one handle
/// serves the appender and the syncer at once.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Grows or cuts the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length of the file.
    fn file_len(&self) -> io::Result<u64>;
    /// Allocates disk space for `len` bytes at `offset` (fallocate, mode 0): writes there can no
    /// longer fail for lack of space, and mapped pages there always have backing. A file system
    /// that cannot reserve space (EOPNOTSUPP) gets none, as with a sparse file. The default goes
    /// to the real file; wrappers that inject faults override it.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        allocate_real(self.as_file(), offset, len)
    }
    /// fdatasync: data and the metadata needed to read it back (the length) reach the disk.
    fn sync_data(&self) -> io::Result<()>;
    /// The real file under this handle, for memory mapping (reads never go through the seam's
    /// fault injection: the disk's faults on read show up as bad CRCs, which tests cover).
    fn as_file(&self) -> &File;
}

/// The file system operations of a log directory.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Creates a new file for reading and writing, truncating any file of that name.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Reads a whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// fsyncs a directory, making created, renamed and removed names durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// `fallocate(file, 0, offset, len)`, a no-op where the file system cannot reserve space.
fn allocate_real(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn as_file(&self) -> &File {
        &self.0
    }
}

impl FileSystem for RealFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(RealFile(OpenOptions::new().read(true).write(true).open(path)?)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// What [`FaultyFs`] should do to the next matching operation.
#[derive(Debug, Default)]
struct Faults {
    /// Fail this many upcoming writes (counting down), with EIO.
    fail_writes: AtomicU64,
    /// Make the next write persist only half its bytes, then fail with EIO (a torn write).
    short_write: AtomicBool,
    /// Fail upcoming writes, creations and allocations with ENOSPC while set.
    no_space: AtomicBool,
    /// Clear `no_space` at the next file removal (deleting a file frees space on a full disk).
    space_on_remove: AtomicBool,
    /// Fail this many upcoming fdatasyncs (file or directory), with EIO.
    fail_syncs: AtomicU64,
    /// File fdatasyncs wait while this holds (a disk that does not answer) and count themselves
    /// in the number waiting.
    held_syncs: Mutex<SyncHold>,
    released: Condvar,
    /// Operations counted, for tests that want to see the seam was used.
    syncs: AtomicU64,
    writes: AtomicU64,
}

/// Whether file fdatasyncs are held, and how many are waiting.
#[derive(Debug, Default)]
struct SyncHold {
    held: bool,
    waiting: u64,
}

/// A test double over the real file system that fails on command: a failed write, a short (torn)
/// write, ENOSPC, a failed fsync, a file fdatasync held until released (a slow disk). Clones
/// share one set of switches, so a test keeps a clone and flips them while a `Log` uses another.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    faults: Arc<Faults>,
}

impl FaultyFs {
    pub fn new() -> Self {
        Self::default()
    }
    /// The next `n` writes fail with EIO and write nothing.
    pub fn fail_next_writes(&self, n: u64) {
        self.faults.fail_writes.store(n, Ordering::SeqCst);
    }
    /// The next write writes only its first half, then fails with EIO.
    pub fn short_next_write(&self) {
        self.faults.short_write.store(true, Ordering::SeqCst);
    }
    /// While `on`, every write, file creation and allocation fails with ENOSPC.
    pub fn set_no_space(&self, on: bool) {
        self.faults.space_on_remove.store(false, Ordering::SeqCst);
        self.faults.no_space.store(on, Ordering::SeqCst);
    }
    /// A full disk that deleting a file frees: like `set_no_space(true)` until the next
    /// `remove_file`, after which writes succeed again.
    pub fn fill_until_remove(&self) {
        self.faults.no_space.store(true, Ordering::SeqCst);
        self.faults.space_on_remove.store(true, Ordering::SeqCst);
    }
    /// The next `n` fsyncs (file or directory) fail with EIO.
    pub fn fail_next_syncs(&self, n: u64) {
        self.faults.fail_syncs.store(n, Ordering::SeqCst);
    }
    /// While `on`, every file fdatasync waits (before failing or succeeding as told) until it is
    /// turned off: a disk that takes as long as the test wants.
    pub fn hold_syncs(&self, on: bool) {
        self.faults.held_syncs.lock().unwrap_or_else(|p| p.into_inner()).held = on;
        if !on {
            self.faults.released.notify_all();
        }
    }
    /// Number of file fdatasyncs waiting in [`FaultyFs::hold_syncs`] now.
    pub fn held_sync_count(&self) -> u64 {
        self.faults.held_syncs.lock().unwrap_or_else(|p| p.into_inner()).waiting
    }
    /// Number of fsyncs that succeeded so far.
    pub fn sync_count(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }
    /// Number of writes attempted so far.
    pub fn write_count(&self) -> u64 {
        self.faults.writes.load(Ordering::SeqCst)
    }
}

/// Takes one from a countdown; true when it was positive (the operation must fail).
fn take_one(counter: &AtomicU64) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

#[derive(Debug)]
struct FaultyFile {
    inner: RealFile,
    faults: Arc<Faults>,
}

impl FsFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.faults.writes.fetch_add(1, Ordering::SeqCst);
        if self.faults.no_space.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        if take_one(&self.faults.fail_writes) {
            return Err(eio("write"));
        }
        if self.faults.short_write.swap(false, Ordering::SeqCst) {
            self.inner.write_all_at(&buf[..buf.len() / 2], pos)?;
            return Err(eio("short write"));
        }
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
        if self.faults.no_space.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        self.inner.allocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        {
            let mut hold = self.faults.held_syncs.lock().unwrap_or_else(|p| p.into_inner());
            hold.waiting += 1;
            while hold.held {
                hold = self.faults.released.wait(hold).unwrap_or_else(|p| p.into_inner());
            }
            hold.waiting -= 1;
        }
        if take_one(&self.faults.fail_syncs) {
            return Err(eio("fdatasync"));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn as_file(&self) -> &File {
        self.inner.as_file()
    }
}

impl FileSystem for FaultyFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(FaultyFile { inner: RealFile(f), faults: self.faults.clone() }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        if self.faults.no_space.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(FaultyFile { inner: RealFile(f), faults: self.faults.clone() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)?;
        if self.faults.space_on_remove.swap(false, Ordering::SeqCst) {
            self.faults.no_space.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if take_one(&self.faults.fail_syncs) {
            return Err(eio("directory fsync"));
        }
        RealFs.sync_dir(path)?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Writes a small file durably and atomically: `path.tmp`, fdatasync, rename over `path`, fsync
/// the directory. A crash leaves either the old file or the new one (and maybe a `.tmp` that
/// open sweeps).
pub(crate) fn write_atomic(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    write_replacing(fs, path, bytes, true)?;
    fs.sync_dir(dir)
}

/// Replaces `path` through a temp file and a rename; fdatasyncs first when `durable`. Without
/// it, a crash may leave an empty or partial file under the name: only for hints that are
/// checked when read (indexes).
pub(crate) fn write_replacing(
    fs: &dyn FileSystem,
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> io::Result<()> {
    let tmp = tmp_path(path);
    let f = fs.create(&tmp)?;
    let written =
        f.write_all_at(bytes, 0).and_then(|()| if durable { f.sync_data() } else { Ok(()) });
    drop(f);
    let result = written.and_then(|()| fs.rename(&tmp, path));
    if result.is_err() {
        // A half-written temp file would hold space a full disk needs; open sweeps any a crash
        // leaves.
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// The temporary name a file is written under before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// Suffix of files being written; any left at open are debris of a crash and are removed.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_fs_fails_on_command_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let f = fs.create(&dir.path().join("a")).unwrap();
        fs.fail_next_writes(1);
        assert!(f.write_all_at(b"x", 0).is_err());
        f.write_all_at(b"abcd", 0).unwrap();
        fs.short_next_write();
        assert!(f.write_all_at(b"wxyz", 4).is_err());
        assert_eq!(f.file_len().unwrap(), 6, "half of the short write landed");
        fs.set_no_space(true);
        let e = f.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(fs.create(&dir.path().join("b")).is_err());
        fs.set_no_space(false);
        fs.fail_next_syncs(2);
        assert!(f.sync_data().is_err());
        assert!(fs.sync_dir(dir.path()).is_err());
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert_eq!(fs.sync_count(), 2);
        assert_eq!(fs.write_count(), 4);
    }

    #[test]
    fn held_fdatasyncs_wait_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let f: Arc<dyn FsFile> = fs.create(&dir.path().join("a")).unwrap().into();
        fs.hold_syncs(true);
        let syncer = {
            let f = f.clone();
            std::thread::spawn(move || f.sync_data())
        };
        while fs.held_sync_count() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(fs.sync_count(), 0, "held, not done");
        fs.hold_syncs(false);
        syncer.join().unwrap().unwrap();
        assert_eq!((fs.sync_count(), fs.held_sync_count()), (1, 0));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        write_atomic(&RealFs, dir.path(), &path, b"one").unwrap();
        write_atomic(&RealFs, dir.path(), &path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn a_failed_replacement_keeps_the_old_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let fs = FaultyFs::new();
        write_atomic(&fs, dir.path(), &path, b"one").unwrap();
        fs.fail_next_writes(1);
        assert!(write_atomic(&fs, dir.path(), &path, b"two").is_err());
        fs.fail_next_syncs(1);
        assert!(write_atomic(&fs, dir.path(), &path, b"three").is_err());
        // A temp file left behind would hold space that a full disk needs back.
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(!tmp_path(&path).exists(), "the temp file is removed");
    }
}
