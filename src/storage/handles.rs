//! The file descriptors and mappings the logs hold, bounded. Each log's active segment keeps its
//! file open and mapped for appends; a sealed segment holds neither: it is opened and mapped on
//! demand, and this process-wide cache keeps the most recently used ones open, at most
//! [`open_sealed_segments_limit`] (CLOCK: a use sets a handle's flag, the hand clears flags and
//! closes the first handle found without one). A handle a reader still holds (a `ReadSlice`)
//! stays open until the reader drops it. Also raises the process's open-file limit at start-up.
//! Never decides what a segment holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::storage::segment::OpenSegment;

/// Sealed segments kept open (an fd and a mapping each) when nothing else is said.
pub const DEFAULT_OPEN_SEALED_SEGMENTS: usize = 1024;
/// The cache never shrinks below this, however low the open-file limit.
const MIN_OPEN_SEALED_SEGMENTS: usize = 16;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_OPEN_SEALED_SEGMENTS);
static CACHE: Mutex<VecDeque<Arc<OpenSegment>>> = Mutex::new(VecDeque::new());

fn cache() -> std::sync::MutexGuard<'static, VecDeque<Arc<OpenSegment>>> {
    // The queue is consistent after any panic (each change is one push or pop).
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many sealed segments stay open at most (readers may hold more for a moment).
pub fn open_sealed_segments_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Sets how many sealed segments stay open at most (at least 1), closing the least recently used
/// ones past it.
pub fn set_open_sealed_segments_limit(limit: usize) {
    let limit = limit.max(1);
    LIMIT.store(limit, Ordering::Relaxed);
    let evicted = evict_over(&mut cache(), limit);
    drop(evicted);
}

/// Sealed segments the cache holds open now.
pub fn open_sealed_segments() -> usize {
    cache().len()
}

/// Notes a use of a sealed segment's handle, adding it to the cache if it is not there.
pub(crate) fn keep(handle: &Arc<OpenSegment>) {
    handle.referenced.store(true, Ordering::Relaxed);
    // SeqCst, like `Segment::release`'s flag: see `Segment::keep`.
    if handle.cached.swap(true, Ordering::SeqCst) {
        return;
    }
    let evicted = {
        let mut c = cache();
        c.push_back(handle.clone());
        evict_over(&mut c, open_sealed_segments_limit())
    };
    // Unmapped and closed here, outside the lock.
    drop(evicted);
}

/// Drops the cache's hold on a handle (its segment is being deleted: its space must be freed).
pub(crate) fn forget(handle: &Arc<OpenSegment>) {
    if handle.cached.swap(false, Ordering::SeqCst) {
        let gone = {
            let mut c = cache();
            let i = c.iter().position(|h| Arc::ptr_eq(h, handle));
            i.and_then(|i| c.remove(i))
        };
        drop(gone);
    }
}

/// Takes handles out of the queue until it holds at most `limit`, giving each used one a second
/// chance; returns them so the caller drops them after unlocking.
fn evict_over(c: &mut VecDeque<Arc<OpenSegment>>, limit: usize) -> Vec<Arc<OpenSegment>> {
    let mut evicted = Vec::new();
    // Each handle is passed over at most once before its flag is clear: the loop ends.
    while c.len() > limit {
        let Some(h) = c.pop_front() else { break };
        if h.referenced.swap(false, Ordering::Relaxed) {
            c.push_back(h);
        } else {
            h.cached.store(false, Ordering::Release);
            evicted.push(h);
        }
    }
    evicted
}

/// The process's open-file limit, before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Soft limit found at start-up.
    pub soft_before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit (`None`: unlimited).
    pub hard: Option<u64>,
    /// How many sealed segments stay open at most.
    pub open_sealed_segments: usize,
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard limit, since every partition
/// holds its active segment open and every connection a socket; sizes the cache of open sealed
/// segments to a quarter of the limit (at most [`DEFAULT_OPEN_SEALED_SEGMENTS`]); logs both.
/// A failure to raise is logged and the current limit kept.
pub fn raise_open_file_limit() -> FileLimits {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    // `None` is unlimited; RLIMIT_NOFILE is never that on Linux, but do not loop on it.
    let soft_before = before.current.unwrap_or(u64::MAX);
    let mut soft = soft_before;
    if before.maximum.is_none_or(|hard| hard > soft_before) {
        let target = Rlimit { current: before.maximum, maximum: before.maximum };
        match setrlimit(Resource::Nofile, target) {
            Ok(()) => soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(soft = soft_before, hard = ?before.maximum, error = %e,
                "cannot raise the open-file limit"),
        }
    }
    let quarter = usize::try_from(soft / 4).unwrap_or(usize::MAX);
    let open_sealed = quarter.clamp(MIN_OPEN_SEALED_SEGMENTS, DEFAULT_OPEN_SEALED_SEGMENTS);
    set_open_sealed_segments_limit(open_sealed);
    tracing::info!(soft_before, soft, hard = ?before.maximum, open_sealed_segments = open_sealed,
        "open-file limit (nofile): each partition holds its active segment open; at most \
         open_sealed_segments sealed segments stay open");
    FileLimits { soft_before, soft, hard: before.maximum, open_sealed_segments: open_sealed }
}
