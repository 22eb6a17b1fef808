//! The reassignment throttle of one broker (Kafka's `follower.replication.throttled.rate`): one
//! token bucket shared by every fetch loop of a replica this broker is adding for a partition
//! move and that is not in sync yet. A throttled fetch first takes a grant from the bucket (it
//! waits while the bucket holds less than one fetch's worth) and asks the leader for at most that
//! many bytes; once the answer is in, what it received is settled against the grant. The leader
//! sends at least one whole batch, so an answer may overshoot its grant: the bucket goes into
//! debt and the next fetches wait it off, which keeps the long-run rate at the limit.
//!
//! Owns the arithmetic and the waiting only: which replicas are throttled, and at what rate,
//! comes from the metadata (through the replica manager). Fetches of in-sync followers never
//! come here. The bucket itself is plain arithmetic over a clock given to it, so it is tested
//! without sleeping.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How much a bucket holds at most, in time at its rate: a burst after an idle spell is at most
/// this much ahead of the rate.
const BURST: Duration = Duration::from_millis(100);
/// The least a bucket holds at most, however low its rate, so that a fetch still carries a
/// useful amount (a grant is never smaller than this bucket's size, or the fetch's own limit).
const MIN_BURST_BYTES: u64 = 64 * 1024;
/// Longest single wait: a throttle lifted or raised meanwhile is noticed this soon.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// Bucket contents are counted in nano-bytes (bytes × 10⁹), so that refilling for a number of
/// nanoseconds at a rate in bytes per second is exact integer arithmetic.
const NANOS: i128 = 1_000_000_000;

/// A token bucket over bytes; times are given by the caller.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate_bytes_per_s: u64,
    /// Nano-bytes that may be fetched now; negative: the debt of answers larger than their
    /// grants.
    tokens: i128,
    capacity: i128,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `rate_bytes_per_s` (at least 1) as of `now`.
    pub(crate) fn new(rate_bytes_per_s: u64, now: Instant) -> Bucket {
        let rate_bytes_per_s = rate_bytes_per_s.max(1);
        let capacity = capacity(rate_bytes_per_s);
        Bucket { rate_bytes_per_s, tokens: capacity, capacity, last: now }
    }

    pub(crate) fn rate(&self) -> u64 {
        self.rate_bytes_per_s
    }

    /// A new rate from `now` on; what was saved up is kept, up to the new size.
    pub(crate) fn set_rate(&mut self, rate_bytes_per_s: u64, now: Instant) {
        self.refill(now);
        self.rate_bytes_per_s = rate_bytes_per_s.max(1);
        self.capacity = capacity(self.rate_bytes_per_s);
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos() as i128;
        self.last = self.last.max(now);
        let added = elapsed.saturating_mul(i128::from(self.rate_bytes_per_s));
        self.tokens = self.tokens.saturating_add(added).min(self.capacity);
    }

    /// Takes a grant of at most `want` bytes (`Ok`), or says how long to wait before asking
    /// again (`Err`): a grant is handed out once the bucket holds a whole fetch's worth (`want`,
    /// or the bucket's size when that is smaller), so the fetches stay few and large.
    pub(crate) fn grant(&mut self, want: u32, now: Instant) -> Result<u32, Duration> {
        self.refill(now);
        let want = i128::from(want.max(1)) * NANOS;
        let need = want.min(self.capacity);
        if self.tokens >= need {
            let granted = self.tokens.min(want);
            self.tokens -= granted;
            // Between 1 and `want` bytes: the capacity is at least MIN_BURST_BYTES.
            return Ok(u32::try_from(granted / NANOS).unwrap_or(u32::MAX).max(1));
        }
        // Rounded up, so that the bucket holds `need` once the wait is over.
        let rate = i128::from(self.rate_bytes_per_s);
        let nanos = (need - self.tokens + rate - 1) / rate;
        Err(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// A fetch that was granted `granted` bytes received `received`: the difference is given
    /// back, or owed.
    pub(crate) fn settle(&mut self, granted: u32, received: u64, now: Instant) {
        self.refill(now);
        let back = (i128::from(granted) - i128::from(received)) * NANOS;
        self.tokens = self.tokens.saturating_add(back).min(self.capacity);
    }
}

fn capacity(rate_bytes_per_s: u64) -> i128 {
    let burst = i128::from(rate_bytes_per_s) * BURST.as_nanos() as i128;
    burst.max(i128::from(MIN_BURST_BYTES) * NANOS)
}

/// The broker's reassignment throttle: no bucket while no throttle is in force.
#[derive(Debug, Default)]
pub struct ReplicationThrottle {
    bucket: Mutex<Option<Bucket>>,
}

fn lock(m: &Mutex<Option<Bucket>>) -> std::sync::MutexGuard<'_, Option<Bucket>> {
    // Every critical section is arithmetic that leaves the bucket consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplicationThrottle {
    /// The rate in bytes per second (`None`: unthrottled). A new rate keeps what was saved up.
    pub fn set_rate(&self, rate_bytes_per_s: Option<u64>) {
        let mut b = lock(&self.bucket);
        match (rate_bytes_per_s, b.as_mut()) {
            (None, _) => *b = None,
            (Some(r), Some(bucket)) if bucket.rate() == r => {}
            (Some(r), Some(bucket)) => bucket.set_rate(r, Instant::now()),
            (Some(r), None) => *b = Some(Bucket::new(r, Instant::now())),
        }
    }

    pub fn rate(&self) -> Option<u64> {
        lock(&self.bucket).as_ref().map(Bucket::rate)
    }

    /// Waits until a fetch of up to `want` bytes may go, and returns its grant: the max bytes
    /// to ask the leader for, to be settled with [`ReplicationThrottle::settle`]. Without a
    /// throttle, `want` at once.
    pub async fn acquire(&self, want: u32) -> u32 {
        loop {
            let wait = match lock(&self.bucket).as_mut() {
                None => return want,
                Some(b) => match b.grant(want, Instant::now()) {
                    Ok(granted) => return granted,
                    Err(wait) => wait,
                },
            };
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
        }
    }

    /// Accounts a throttled fetch's answer (`received` bytes) against its grant. A throttle
    /// lifted meanwhile has nothing to account.
    pub fn settle(&self, granted: u32, received: u64) {
        if let Some(b) = lock(&self.bucket).as_mut() {
            b.settle(granted, received, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    /// A follower fetch loop against a bucket, on a simulated clock: each fetch takes its grant
    /// (or waits as told), and the leader answers `answer(granted)` bytes. Returns the bytes
    /// received by `until`.
    fn simulate(
        bucket: &mut Bucket,
        start: Instant,
        until: Duration,
        followers: usize,
        want: u32,
        answer: impl Fn(u32) -> u64,
    ) -> u64 {
        // Each follower's next moment to act.
        let mut next = vec![start; followers];
        let mut received = 0;
        loop {
            let (i, &now) = next.iter().enumerate().min_by_key(|(_, t)| **t).expect("followers");
            if now >= start + until {
                return received;
            }
            match bucket.grant(want, now) {
                Ok(granted) => {
                    let got = answer(granted);
                    // The answer takes a millisecond to arrive.
                    let at = now + Duration::from_millis(1);
                    bucket.settle(granted, got, at);
                    received += got;
                    next[i] = at;
                }
                Err(wait) => next[i] = now + wait.min(MAX_WAIT),
            }
        }
    }

    #[test]
    fn a_moving_replica_fetches_at_the_rate_within_one_burst() {
        let start = Instant::now();
        let mut b = Bucket::new(50 * MB, start);
        let got = simulate(&mut b, start, Duration::from_secs(10), 1, 1 << 20, u64::from);
        let rate = got as f64 / 10.0;
        assert!((rate - 50e6).abs() <= 0.01 * 50e6, "{rate} bytes/s");
    }

    #[test]
    fn several_moving_replicas_share_one_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(20 * MB, start);
        let got = simulate(&mut b, start, Duration::from_secs(10), 4, 1 << 20, u64::from);
        let rate = got as f64 / 10.0;
        assert!((rate - 20e6).abs() <= 0.01 * 20e6, "{rate} bytes/s for four replicas together");
    }

    #[test]
    fn answers_larger_than_their_grants_are_paid_back_by_waiting() {
        // The leader always sends a whole batch: here 3 MB, whatever was asked for.
        let start = Instant::now();
        let mut b = Bucket::new(10 * MB, start);
        let got = simulate(&mut b, start, Duration::from_secs(30), 2, 1 << 20, |_| 3 * MB);
        let rate = got as f64 / 30.0;
        // Within one overshooting answer per follower of the rate.
        assert!(rate <= 10e6 + 2.0 * 3e6 / 30.0 + 1.0, "{rate} bytes/s");
        assert!(rate >= 10e6 * 0.95, "{rate} bytes/s");
    }

    #[test]
    fn a_grant_is_a_whole_fetch_or_the_bucket_and_the_wait_is_what_is_missing() {
        let start = Instant::now();
        let mut b = Bucket::new(10 * MB, start); // holds 1 MB (100 ms)
        assert_eq!(b.grant(400_000, start), Ok(400_000));
        assert_eq!(b.grant(4 << 20, start), Err(Duration::from_millis(40)), "600 KB of 1 MB");
        let later = start + Duration::from_millis(40);
        assert_eq!(b.grant(4 << 20, later), Ok(1_000_000), "never more than the bucket holds");
        // An answer of 1.5 MB to that grant: 0.5 MB of debt, waited off before the next.
        b.settle(1_000_000, 1_500_000, later);
        assert_eq!(b.grant(100_000, later), Err(Duration::from_millis(60)));
        // A short answer gives back what it did not use.
        let mut c = Bucket::new(10 * MB, start);
        assert_eq!(c.grant(1_000_000, start), Ok(1_000_000));
        c.settle(1_000_000, 0, start);
        assert_eq!(c.grant(1_000_000, start), Ok(1_000_000));
    }

    #[test]
    fn an_idle_bucket_saves_up_one_burst_and_a_new_rate_applies_at_once() {
        let start = Instant::now();
        let mut b = Bucket::new(10 * MB, start);
        assert_eq!(b.grant(1_000_000, start), Ok(1_000_000));
        // An hour idle saves up 100 ms worth, no more.
        let hour = start + Duration::from_secs(3600);
        assert_eq!(b.grant(2_000_000, hour), Ok(1_000_000));
        b.set_rate(100 * MB, hour);
        assert_eq!(b.grant(1_000_000, hour), Err(Duration::from_millis(10)), "10 MB/100 ms now");
        // A tiny rate still grants a useful fetch, slowly.
        let mut slow = Bucket::new(1, start);
        assert_eq!(slow.grant(1 << 20, start), Ok(64 * 1024));
    }

    #[tokio::test]
    async fn no_throttle_grants_at_once_and_a_lifted_one_is_gone() {
        let t = ReplicationThrottle::default();
        assert_eq!(t.acquire(1 << 20).await, 1 << 20);
        t.set_rate(Some(10 * MB));
        assert_eq!(t.rate(), Some(10 * MB));
        assert_eq!(t.acquire(1 << 20).await, 1_000_000, "a full bucket holds 1 MB");
        t.set_rate(None);
        assert_eq!(t.rate(), None);
        t.settle(1 << 20, 50 * MB); // nothing to account
        assert_eq!(t.acquire(1 << 20).await, 1 << 20);
    }
}
