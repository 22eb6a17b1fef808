//! The log cleaner: one background thread that decides when and which partition logs are
//! compacted. Every tick (Kafka's `log.cleaner.backoff.ms`) it looks at every online partition
//! whose config has `cleanup.policy` with `compact`, takes those that
//! [`Log::needs_compaction`](crate::storage::Log::needs_compaction) now, and compacts them one at a
//! time, dirtiest first, all through one shared throttle (Kafka's
//! `log.cleaner.io.max.bytes.per.second`), at a lower CPU priority than the request threads; it
//! records each run in the metrics. It owns that choice,
//! its thread and its stop only: it never compacts a log itself (the storage layer's
//! `Log::compact` does, crash-safely, without blocking appends or reads), never applies retention
//! (the broker's background task does, for `compact,delete` as for `delete`), and never holds a
//! broker lock while a log is compacted.
//!
//! # Stopping
//! [`Cleaner::stop`] wakes the thread and waits for it. A stop between runs is immediate; a run
//! already going is finished first (a run cannot be cut short from outside: it either swaps its
//! cleaned segments in or leaves the log as it was), and no further run starts. The thread holds
//! only a `Weak` broker, so a dropped broker is never kept alive by it.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Broker, lock};
use crate::metrics::CleanerRun;
use crate::storage::{StorageError, Throttle};

/// Kafka's `log.cleaner.backoff.ms`: how long the cleaner sleeps when no log needs compaction.
pub const DEFAULT_CLEANER_BACKOFF: Duration = Duration::from_secs(15);

/// How the log cleaner runs (the broker's `--log-cleaner-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Run the cleaner at all (Kafka's `log.cleaner.enable`). Off: compacted topics grow like
    /// any other until it is turned on again.
    pub enabled: bool,
    /// Most bytes per second the cleaner reads, over every log it cleans (`None`: unlimited, as
    /// Kafka's default `log.cleaner.io.max.bytes.per.second`).
    pub max_bytes_per_sec: Option<u64>,
    /// How often the cleaner looks for logs to compact.
    pub backoff: Duration,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig { enabled: true, max_bytes_per_sec: None, backoff: DEFAULT_CLEANER_BACKOFF }
    }
}

/// How far one compacted partition is from clean, for the metrics and the console.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyRatio {
    pub topic: String,
    pub partition: u32,
    /// The share of the sealed log not compacted yet (0 when nothing is sealed).
    pub ratio: f64,
}

/// The stop flag and the wake-up the thread waits on.
#[derive(Default)]
struct Signal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The cleaner thread's handle, owned by the broker.
#[derive(Default)]
pub(crate) struct Cleaner {
    signal: Arc<Signal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Cleaner {
    /// Starts the thread for `broker` (nothing when the config disables the cleaner).
    pub(crate) fn start(
        &self,
        broker: Weak<Broker>,
        config: &CleanerConfig,
    ) -> std::io::Result<()> {
        if !config.enabled {
            tracing::info!("log cleaner disabled: compacted topics are not compacted");
            return Ok(());
        }
        let throttle = match config.max_bytes_per_sec {
            Some(n) => Throttle::bytes_per_sec(n),
            None => Throttle::unlimited(),
        };
        let signal = self.signal.clone();
        let backoff = config.backoff.max(Duration::from_millis(1));
        let handle = std::thread::Builder::new()
            .name("minikafka-log-cleaner".into())
            .spawn(move || run(broker, signal, backoff, throttle))?;
        *lock(&self.thread) = Some(handle);
        Ok(())
    }

    /// Tells the thread to stop, without waiting (the broker's `Drop`).
    pub(crate) fn signal_stop(&self) {
        *lock(&self.signal.stopped) = true;
        self.signal.wake.notify_all();
    }

    /// Stops the thread and waits for it: at once between runs, after the run in progress
    /// otherwise. Idempotent.
    pub(crate) fn stop(&self) {
        self.signal_stop();
        if let Some(handle) = lock(&self.thread).take()
            && handle.join().is_err()
        {
            tracing::error!("the log cleaner thread panicked");
        }
    }
}

impl Signal {
    fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps up to `d`; true when stopped meanwhile (or before).
    fn sleep(&self, d: Duration) -> bool {
        let stopped = lock(&self.stopped);
        let (stopped, _) =
            self.wake.wait_timeout_while(stopped, d, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *stopped
    }
}

/// The cleaner thread's nice value: when the CPUs are busy, the threads serving produce and fetch
/// requests go first, and compaction takes what they leave (on an idle machine it runs at full
/// speed all the same).
const CLEANER_NICE: i32 = 10;

fn run(broker: Weak<Broker>, signal: Arc<Signal>, backoff: Duration, throttle: Throttle) {
    // On Linux a thread's id names only that thread here, not the process.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), CLEANER_NICE) {
        tracing::warn!("log cleaner: cannot lower its priority (it competes with requests): {e}");
    }
    tracing::info!(backoff_ms = backoff.as_millis() as u64, "log cleaner started");
    loop {
        if signal.sleep(backoff) {
            return;
        }
        // Upgraded per round only, so the broker can go away between rounds.
        let Some(b) = broker.upgrade() else { return };
        b.clean_round(&signal, &throttle);
    }
}

/// One compacted partition the cleaner may work on.
struct Candidate {
    topic: String,
    partition: u32,
    log: Arc<crate::storage::Log>,
    ratio: f64,
}

impl Broker {
    /// The online partitions whose config compacts them, with their logs.
    fn compacted_logs(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for t in self.all_topics() {
            for (i, p) in t.online() {
                if p.log.config().cleanup_policy.compact && !p.is_closed() {
                    out.push(Candidate {
                        topic: t.name.clone(),
                        partition: i as u32,
                        log: p.log.clone(),
                        ratio: 0.0,
                    });
                }
            }
        }
        out
    }

    /// The dirty ratio of every online compacted partition, sorted by topic and partition.
    pub fn dirty_ratios(&self) -> Vec<DirtyRatio> {
        self.compacted_logs()
            .into_iter()
            .map(|c| DirtyRatio {
                ratio: c.log.dirty_ratio(),
                topic: c.topic,
                partition: c.partition,
            })
            .collect()
    }

    /// Compacts, dirtiest first, every compacted partition that needs it now; stops early when
    /// `signal` says so. Returns how many logs were compacted.
    fn clean_round(&self, signal: &Signal, throttle: &Throttle) -> usize {
        let now = crate::record::now_ms();
        let mut due: Vec<Candidate> = self
            .compacted_logs()
            .into_iter()
            .filter(|c| c.log.needs_compaction(now))
            .map(|c| Candidate { ratio: c.log.dirty_ratio(), ..c })
            .collect();
        due.sort_by(|a, b| b.ratio.total_cmp(&a.ratio));
        let mut cleaned = 0;
        for c in due {
            if signal.is_stopped() || self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            if self.compact_one(&c, throttle) {
                cleaned += 1;
            }
        }
        cleaned
    }

    /// Compacts one log and records the run; true when it cleaned something.
    fn compact_one(&self, c: &Candidate, throttle: &Throttle) -> bool {
        let started = Instant::now();
        let result = c.log.compact(crate::record::now_ms(), throttle);
        let finished = crate::record::now_ms();
        match result {
            Ok(stats) => {
                let run = CleanerRun {
                    bytes_removed: stats.bytes_before.saturating_sub(stats.bytes_after),
                    records_removed: stats.records_removed,
                    tombstones_removed: stats.tombstones_removed,
                };
                self.metrics.record_cleaner_run(&c.topic, c.partition, run, finished);
                if stats.segments_cleaned > 0 {
                    let secs = started.elapsed().as_secs_f64().max(1e-6);
                    tracing::info!(
                        topic = %c.topic,
                        partition = c.partition,
                        segments = stats.segments_cleaned,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        records_removed = stats.records_removed,
                        tombstones_removed = stats.tombstones_removed,
                        dirty_ratio_before = stats.dirty_ratio_before,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        mb_per_sec = stats.bytes_before as f64 / secs / 1e6,
                        "log cleaner compacted a partition"
                    );
                }
                stats.segments_cleaned > 0
            }
            // The topic was deleted (or the broker is shutting down) while it was compacted.
            Err(StorageError::Closed { .. }) => false,
            Err(e) => {
                tracing::error!(
                    topic = %c.topic,
                    partition = c.partition,
                    "log cleaner: compaction failed (retried at the next tick): {e}"
                );
                false
            }
        }
    }
}
