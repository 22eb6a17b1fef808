//! A replica's leader-epoch cache (Kafka's `leader-epoch-checkpoint`): for each leader epoch that
//! wrote records, the offset of its first record. It answers OffsetsForLeaderEpoch ("where does
//! epoch E end in your log?"), which a follower uses after a leader change to find where its log
//! diverges from the new leader's and truncate there, never to its own high watermark
//! (KIP-101, KIP-279). Pure and in memory: `Log` keeps one per partition and persists it as the
//! `leader-epoch-checkpoint` (`epoch_checkpoint.rs`); the replication layer re-exports it for its
//! rules. Never does I/O.

/// Kafka's "no epoch" (-1), in OffsetsForLeaderEpoch answers.
pub const UNDEFINED_EPOCH: i32 = -1;

/// `(epoch, start offset)` entries, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, u64)>,
}

impl EpochCache {
    /// Records that `epoch` wrote its first record at `start`. An epoch at or below the latest is
    /// ignored (epochs only grow); a newer epoch starting where the latest started replaces it
    /// (that epoch wrote nothing).
    pub fn assign(&mut self, epoch: i32, start: u64) {
        if let Some(&(last, last_start)) = self.entries.last() {
            if epoch <= last || start < last_start {
                return;
            }
            if start == last_start {
                self.entries.pop();
            }
        }
        self.entries.push((epoch, start));
    }

    /// The `(epoch, start offset)` entries, oldest first.
    pub fn entries(&self) -> &[(i32, u64)] {
        &self.entries
    }

    /// The latest epoch that wrote records, if any.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// After the log was truncated to `end` (offsets `end..` gone): drops the epochs that started
    /// at or past it.
    pub fn truncate_to(&mut self, end: u64) {
        self.entries.retain(|&(_, start)| start < end);
    }

    /// OffsetsForLeaderEpoch, as Kafka's leader answers it for a log ending at `log_end`: the
    /// largest epoch at or below `requested` and the offset where that epoch's records end (the
    /// start of the next epoch, or the log end for the latest). `(UNDEFINED_EPOCH, None)` for a
    /// requested epoch above every epoch here or undefined.
    pub fn end_offset_for(&self, requested: i32, log_end: u64) -> (i32, Option<u64>) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, None);
        }
        if self.latest() == Some(requested) {
            return (requested, Some(log_end));
        }
        let Some(higher) = self.entries.iter().position(|&(e, _)| e > requested) else {
            return (UNDEFINED_EPOCH, None);
        };
        let end = self.entries[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, Some(end)),
            // Older than our first epoch: everything before our first epoch's start.
            None => (requested, Some(end)),
        }
    }

    /// Where a follower whose log ends at `log_end` must truncate after the leader answered
    /// `(epoch, end)` to its latest epoch: at the leader's end, or earlier where its own records
    /// of that epoch end (KIP-279). `None` when the leader knows no such epoch (the caller asks
    /// again with an older epoch, or starts the replica over).
    pub fn truncation_point(&self, leader_answer: (i32, Option<u64>), log_end: u64) -> Option<u64> {
        let (epoch, Some(leader_end)) = leader_answer else { return None };
        let own = match self.end_offset_for(epoch, log_end) {
            (e, Some(own_end)) if e == epoch => own_end,
            // We never had that epoch: our log diverges where the next older epoch we have ends.
            (_, own_end) => own_end.unwrap_or(log_end),
        };
        Some(leader_end.min(own).min(log_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The cache of a log given as each record's epoch (offset = index).
    fn cache_of(log: &[i32]) -> EpochCache {
        let mut c = EpochCache::default();
        for (o, &e) in log.iter().enumerate() {
            if o == 0 || log[o - 1] != e {
                c.assign(e, o as u64);
            }
        }
        c
    }

    #[test]
    fn a_follower_of_an_old_leader_truncates_where_the_logs_diverge() {
        // Both have epoch 1 at 0..3. The old leader (epoch 2) wrote 3..6, acknowledged by no one;
        // the new leader (epoch 3) took over at 3 and wrote 3..5.
        let follower = cache_of(&[1, 1, 1, 2, 2, 2]);
        let leader = cache_of(&[1, 1, 1, 3, 3]);
        let answer = leader.end_offset_for(follower.latest().unwrap(), 5);
        assert_eq!(answer, (1, Some(3)), "epoch 2 is unknown to the leader: epoch 1 ends at 3");
        assert_eq!(follower.truncation_point(answer, 6), Some(3));
        // Not to its high watermark (which may be 6 on the old leader): KIP-101's data loss.
    }

    #[test]
    fn a_newer_epoch_that_wrote_nothing_replaces_the_entry_and_older_ones_are_ignored() {
        let mut c = EpochCache::default();
        c.assign(1, 0);
        c.assign(2, 5);
        c.assign(3, 5);
        c.assign(2, 9);
        assert_eq!(c.entries, vec![(1, 0), (3, 5)]);
        c.truncate_to(5);
        assert_eq!(c.latest(), Some(1));
    }

    proptest! {
        /// For a log whose epochs never decrease, the answer for any epoch is the largest epoch
        /// at or below it that wrote records, and the first offset written by a later epoch.
        #[test]
        fn end_offset_for_matches_the_log(
            runs in proptest::collection::vec((1i32..4, 1usize..5), 1..8),
            requested in 0i32..30,
        ) {
            let mut log = Vec::new();
            let mut epoch = 0;
            for (step, len) in runs {
                epoch += step;
                log.extend(std::iter::repeat_n(epoch, len));
            }
            let c = cache_of(&log);
            let (e, end) = c.end_offset_for(requested, log.len() as u64);
            let later = log.iter().position(|&x| x > requested).map(|p| p as u64);
            match later {
                None if log.last() == Some(&requested) => {
                    prop_assert_eq!((e, end), (requested, Some(log.len() as u64)));
                }
                None => prop_assert_eq!((e, end), (UNDEFINED_EPOCH, None)),
                Some(p) => {
                    let floor = log.iter().rev().find(|&&x| x <= requested).copied();
                    prop_assert_eq!((e, end), (floor.unwrap_or(requested), Some(p)));
                }
            }
        }

        /// A follower that shares a prefix with the leader and then holds records of epochs the
        /// new leader never had (it led them, unreplicated) truncates to exactly the prefix.
        #[test]
        fn the_follower_truncates_to_the_common_prefix(
            prefix in proptest::collection::vec(1i32..3, 1..10),
            follower_extra in proptest::collection::vec(0i32..2, 0..6),
            leader_extra in 1usize..6,
        ) {
            let mut p = prefix.clone();
            p.sort_unstable();
            let last = *p.last().unwrap();
            // The follower's extra records: epochs above the prefix's, as the old leader wrote
            // them after the new leader stopped replicating.
            let mut f = p.clone();
            let mut e = last;
            for step in &follower_extra {
                e += 1 + step;
                f.push(e);
            }
            // The new leader was elected after all of them: a higher epoch still.
            let mut l = p.clone();
            l.extend(std::iter::repeat_n(e + 1, leader_extra));
            let (fc, lc) = (cache_of(&f), cache_of(&l));
            let answer = lc.end_offset_for(fc.latest().unwrap(), l.len() as u64);
            let cut = fc.truncation_point(answer, f.len() as u64);
            prop_assert_eq!(cut, Some(p.len() as u64));
        }
    }
}
