//! Recent produce/consume rates per topic for the console's charts: a ring buffer of per-second
//! samples over the last few minutes, filled by a background task that diffs the metrics' topic
//! totals. Owns only that history; never reads the broker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::{Metrics, TopicTotals};

/// How often the sampler runs.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept: five minutes at one per second.
pub(crate) const MAX_SAMPLES: usize = 300;

/// Per-second rates of one topic over one sample interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct TopicRate {
    pub produce_records: f64,
    pub produce_bytes: f64,
    pub consume_records: f64,
    pub consume_bytes: f64,
}

/// One sample: when it was taken and each active topic's rates since the previous one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RateSample {
    pub ts_ms: i64,
    /// Sorted by topic name so the JSON is stable.
    pub topics: BTreeMap<String, TopicRate>,
}

/// The `/api/rates` document.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RatesView {
    pub interval_ms: u64,
    pub window_samples: usize,
    pub samples: Vec<RateSample>,
}

#[derive(Debug)]
struct State {
    samples: VecDeque<RateSample>,
    previous: HashMap<String, TopicTotals>,
    previous_at: Instant,
}

/// The ring buffer, shared between the sampler task and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct RateHistory {
    state: Mutex<State>,
    capacity: usize,
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    // Counters only grow; a smaller value would mean a reset, which reads as no traffic.
    now.saturating_sub(before) as f64 / secs
}

impl RateHistory {
    /// A history whose baseline is the metrics' totals right now, so traffic from before the
    /// sampler started does not show up as one huge spike.
    pub(crate) fn new(metrics: &Metrics, capacity: usize, at: Instant) -> Self {
        RateHistory {
            state: Mutex::new(State {
                samples: VecDeque::with_capacity(capacity),
                previous: metrics.topic_totals().into_iter().collect(),
                previous_at: at,
            }),
            capacity,
        }
    }

    /// Takes one sample: the rates since the previous sample, per topic with any traffic ever.
    pub(crate) fn sample(&self, metrics: &Metrics, at: Instant, ts_ms: i64) {
        let totals = metrics.topic_totals();
        // A poisoned lock means a panic mid-sample; the buffer is still structurally valid.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let secs = at.saturating_duration_since(st.previous_at).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let mut topics = BTreeMap::new();
        for (topic, now) in &totals {
            let before = st.previous.get(topic).copied().unwrap_or_default();
            topics.insert(
                topic.clone(),
                TopicRate {
                    produce_records: rate(now.append_records, before.append_records, secs),
                    produce_bytes: rate(now.append_bytes, before.append_bytes, secs),
                    consume_records: rate(now.fetch_records, before.fetch_records, secs),
                    consume_bytes: rate(now.fetch_bytes, before.fetch_bytes, secs),
                },
            );
        }
        if st.samples.len() == self.capacity {
            st.samples.pop_front();
        }
        st.samples.push_back(RateSample { ts_ms, topics });
        st.previous = totals.into_iter().collect();
        st.previous_at = at;
    }

    pub(crate) fn view(&self) -> RatesView {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        RatesView {
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            window_samples: self.capacity,
            samples: st.samples.iter().cloned().collect(),
        }
    }
}

/// Samples `history` every [`SAMPLE_INTERVAL`] until the task is aborted.
pub(crate) async fn run_sampler(history: Arc<RateHistory>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the baseline was taken at construction
    loop {
        tick.tick().await;
        history.sample(&metrics, Instant::now(), crate::record::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_per_second_and_the_buffer_is_bounded() {
        let m = Metrics::new();
        m.record_append("t", 0, 100, 1000);
        let t0 = Instant::now();
        let h = RateHistory::new(&m, 3, t0);
        // Traffic before the baseline is not a rate.
        h.sample(&m, t0 + Duration::from_secs(1), 1);
        assert_eq!(h.view().samples[0].topics["t"], TopicRate::default());

        m.record_append("t", 1, 20, 400);
        m.record_fetch("t", 0, 10, 100);
        h.sample(&m, t0 + Duration::from_secs(3), 2);
        let last = h.view().samples.last().cloned().unwrap();
        assert_eq!(
            last.topics["t"],
            TopicRate {
                produce_records: 10.0,
                produce_bytes: 200.0,
                consume_records: 5.0,
                consume_bytes: 50.0
            }
        );

        h.sample(&m, t0 + Duration::from_secs(4), 3);
        h.sample(&m, t0 + Duration::from_secs(5), 4);
        let v = h.view();
        assert_eq!(v.samples.len(), 3);
        assert_eq!(v.samples.iter().map(|s| s.ts_ms).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn a_topic_first_seen_after_the_baseline_counts_from_zero() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let h = RateHistory::new(&m, 10, t0);
        m.record_append("new", 0, 4, 40);
        h.sample(&m, t0 + Duration::from_secs(2), 7);
        assert_eq!(h.view().samples[0].topics["new"].produce_records, 2.0);
    }
}
