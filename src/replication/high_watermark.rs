//! The leader's high watermark: the smallest log end offset over the in-sync replicas (leader
//! included), as far as each has made it as durable as the fsync policy promises. It never goes
//! backwards on a leader, even when the ISR grows by a replica that is further behind than the
//! watermark (Kafka only admits a follower to the ISR once it has caught up to the watermark, so
//! that case is a caller's bug, and the watermark holds rather than un-commit records).

use std::collections::BTreeMap;

/// What a partition leader knows of its replicas' positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighWatermark {
    /// Log end offset (durable as promised) of each replica the leader has heard from, by
    /// broker id; the leader's own included.
    ends: BTreeMap<i32, u64>,
    isr: Vec<i32>,
    hw: u64,
}

impl HighWatermark {
    /// A leader starting with `isr` (its own id among them) and the watermark it inherited.
    pub fn new(isr: Vec<i32>, start: u64) -> Self {
        HighWatermark { ends: BTreeMap::new(), isr, hw: start }
    }

    /// The current high watermark: consumers see only offsets below it.
    pub fn get(&self) -> u64 {
        self.hw
    }

    /// Records that `replica` holds everything below `end`; returns the (possibly advanced)
    /// watermark. A replica's end never moves back here: a follower that truncated reports its
    /// new end through [`HighWatermark::reset_replica`].
    pub fn update(&mut self, replica: i32, end: u64) -> u64 {
        let e = self.ends.entry(replica).or_insert(end);
        *e = (*e).max(end);
        self.recompute()
    }

    /// Forgets what `replica` had (it truncated or restarted); the watermark stays.
    pub fn reset_replica(&mut self, replica: i32, end: u64) {
        self.ends.insert(replica, end);
    }

    /// The controller committed a new ISR; returns the watermark, which may advance when a slow
    /// member left, and never goes back.
    pub fn set_isr(&mut self, isr: Vec<i32>) -> u64 {
        self.isr = isr;
        self.recompute()
    }

    /// Whether `replica` has caught up enough to rejoin the ISR (Kafka's rule: its end reached
    /// the high watermark).
    pub fn caught_up(&self, replica: i32) -> bool {
        self.ends.get(&replica).is_some_and(|&e| e >= self.hw)
    }

    fn recompute(&mut self) -> u64 {
        // A member not heard from yet holds the watermark where it is.
        let min = self.isr.iter().map(|r| self.ends.get(r).copied()).collect::<Option<Vec<_>>>();
        if let Some(m) = min.and_then(|v| v.into_iter().min()) {
            self.hw = self.hw.max(m);
        }
        self.hw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_watermark_is_the_slowest_in_sync_replica() {
        let mut hw = HighWatermark::new(vec![1, 2, 3], 0);
        assert_eq!(hw.update(1, 10), 0, "followers not heard from hold it");
        hw.update(2, 7);
        assert_eq!(hw.update(3, 4), 4);
        // The slow one leaves the ISR: the watermark moves to the next slowest.
        assert_eq!(hw.set_isr(vec![1, 2]), 7);
        assert!(!hw.caught_up(3));
        assert_eq!(hw.update(3, 8), 7);
        assert!(hw.caught_up(3));
    }

    proptest! {
        /// Over any sequence of position reports and ISR changes: the watermark never goes
        /// backwards, and it never passes the end of any in-sync replica that has reported
        /// (when it moved, it moved to the slowest member's end).
        #[test]
        fn never_backwards_and_never_past_an_in_sync_end(
            ops in proptest::collection::vec((0u8..3, 1i32..4, 0u64..100), 1..60)
        ) {
            let mut hw = HighWatermark::new(vec![1, 2, 3], 0);
            let mut ends: BTreeMap<i32, u64> = BTreeMap::new();
            let mut isr = vec![1, 2, 3];
            let mut last = 0;
            for (op, r, x) in ops {
                let before = hw.get();
                let now = match op {
                    0 => {
                        let e = ends.entry(r).or_insert(x);
                        *e = (*e).max(x);
                        hw.update(r, x)
                    }
                    1 => {
                        // r leaves the ISR (the leader, 1, always stays).
                        isr.retain(|&m| m == 1 || m != r);
                        hw.set_isr(isr.clone())
                    }
                    _ => {
                        // r rejoins only once caught up, as the controller would allow.
                        if hw.caught_up(r) && !isr.contains(&r) {
                            isr.push(r);
                        }
                        hw.set_isr(isr.clone())
                    }
                };
                prop_assert!(now >= before && now >= last);
                if now > before {
                    let slowest = isr.iter().map(|m| ends[m]).min().unwrap();
                    prop_assert_eq!(now, slowest);
                }
                last = now;
            }
        }
    }
}
