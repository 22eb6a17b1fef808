//! Shared by the storage benches: the calling thread's CPU time. The machine the benches run on
//! is shared, so besides wall time each throughput is also measured per CPU-second of the
//! benchmarking thread ("on one core"), which other processes' load does not deflate.
#![allow(dead_code)]

use std::time::Duration;

/// CPU time consumed so far by the calling thread (user + system).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is supported on Linux; the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
