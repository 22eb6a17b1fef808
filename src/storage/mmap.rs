//! Every `unsafe` block of the storage engine: a read-only memory map of a segment file together
//! with its committed length, the one value that bounds what readers may see. Owns the rule "map
//! only what is stable"; never writes through the mapping and never decides what the bytes mean.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw, UncheckedAdvice};

/// A read-only shared mapping of a segment file of fixed `capacity` bytes, of which the first
/// `committed` are stable data.
///
/// Invariants the segment code upholds (and that make [`CommittedMap::committed_bytes`] sound):
/// - bytes below `committed` are never modified again while this mapping lives: the appender
///   writes only at or past `committed`, and the only shrinking of the file (at seal and close)
///   cuts it to exactly `committed`;
/// - `committed` never decreases and never exceeds `capacity`;
/// - the file is at least `committed` bytes long for the life of the mapping (it may be shorter
///   than `capacity`: those pages are never touched, so no SIGBUS). Deleting the file (retention)
///   keeps the pages alive until the mapping is dropped.
#[derive(Debug)]
pub(crate) struct CommittedMap {
    raw: MmapRaw,
    committed: AtomicUsize,
}

impl CommittedMap {
    /// Maps the first `capacity` bytes of `file` (which must be at least `committed` long), with
    /// `committed` bytes already stable.
    pub(crate) fn new(file: &File, capacity: usize, committed: usize) -> io::Result<Self> {
        if capacity == 0 || committed > capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad mapping: capacity {capacity}, committed {committed}"),
            ));
        }
        let raw = MmapOptions::new().len(capacity).map_raw_read_only(file)?;
        Ok(CommittedMap { raw, committed: AtomicUsize::new(committed) })
    }

    /// Bytes the mapping can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.raw.len()
    }

    /// Length of the stable prefix (Acquire: pairs with the Release in [`Self::publish`], so the
    /// bytes written before the publish are visible).
    pub(crate) fn committed(&self) -> usize {
        self.committed.load(Ordering::Acquire)
    }

    /// Declares the first `len` bytes stable. The caller has written them to the file (the
    /// page cache is shared with the mapping) and will never write below `len` again.
    pub(crate) fn publish(&self, len: usize) {
        assert!(len <= self.raw.len(), "publish past the mapping: {len} > {}", self.raw.len());
        let prev = self.committed.swap(len, Ordering::Release);
        assert!(prev <= len, "committed length went back from {prev} to {len}");
    }

    /// The stable prefix of the file.
    pub(crate) fn committed_bytes(&self) -> &[u8] {
        let len = self.committed();
        // SAFETY: the mapping is `raw.len() >= len` bytes (publish enforces it) and lives as long
        // as `self`; the bytes below `committed` are never modified again and the file is never
        // shortened below them (see the invariants on the type), so a shared slice of them is
        // valid for the borrow and touching them cannot SIGBUS.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr(), len) }
    }

    /// Unmaps the pages of the stable prefix from this process, so they stop counting in its
    /// resident set; they stay in the page cache, and the next read of them faults them back in
    /// from there. Errors are ignored: this changes only memory accounting, never what a read
    /// sees.
    pub(crate) fn release_pages(&self) {
        let len = self.committed();
        if len == 0 {
            return;
        }
        // SAFETY: MADV_DONTNEED on a shared, read-only file mapping only drops page-table
        // entries: the next access refaults the same page from the page cache, so every slice
        // handed out by `committed_bytes` keeps reading exactly the bytes it read before (they
        // are never modified, see the invariants on the type). It would zero a private anonymous
        // mapping, which this never is.
        let _ = unsafe { self.raw.unchecked_advise_range(UncheckedAdvice::DontNeed, 0, len) };
    }

    /// Tells the kernel the stable prefix will be read sequentially (a hint; errors are ignored
    /// because they change nothing about correctness).
    pub(crate) fn advise_sequential(&self) {
        let _ = self.raw.advise(memmap2::Advice::Sequential);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// A new empty file `f` in `dir`, open for reading and writing.
    fn read_write_file(dir: &std::path::Path) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("f"))
            .unwrap()
    }

    #[test]
    fn readers_see_exactly_the_published_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let file = read_write_file(dir.path());
        file.set_len(8192).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        let map = CommittedMap::new(&file, 8192, 4).unwrap();
        assert_eq!(map.committed_bytes(), b"head");
        file.write_all_at(b"-more", 4).unwrap();
        assert_eq!(map.committed_bytes(), b"head", "written but not published");
        map.publish(9);
        assert_eq!(map.committed_bytes(), b"head-more");
        // Cutting the file back to the committed length (as sealing does) keeps it readable.
        file.set_len(9).unwrap();
        assert_eq!(map.committed_bytes(), b"head-more");
        assert_eq!(map.capacity(), 8192);
    }

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = read_write_file(dir.path());
        let data: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&data, 0).unwrap();
        let map = CommittedMap::new(&file, data.len(), data.len()).unwrap();
        let before = map.committed_bytes();
        assert_eq!(before, &data[..]);
        map.release_pages();
        assert_eq!(before, &data[..], "a slice taken before the release still reads the data");
        assert_eq!(map.committed_bytes(), &data[..]);
    }

    #[test]
    #[should_panic(expected = "went back")]
    fn the_committed_length_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        file.set_len(100).unwrap();
        let file = std::fs::File::open(dir.path().join("f")).unwrap();
        let map = CommittedMap::new(&file, 100, 50).unwrap();
        map.publish(10);
    }

    #[test]
    fn bad_mappings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        assert!(CommittedMap::new(&file, 0, 0).is_err());
        assert!(CommittedMap::new(&file, 10, 11).is_err());
    }
}
