//! Planning partition moves: spreading replicas and preferred leaders evenly over the live
//! brokers (`minikafka cluster rebalance`), and moving every replica off one broker
//! (`minikafka cluster decommission`). Pure functions of the brokers and the current replica
//! lists, so they are tested without a cluster; carrying the plan out is a reassignment
//! ([`super::Cluster::reassign_partition`]). Never talks to brokers.

use std::collections::BTreeMap;

/// One partition's replicas: (topic, partition, replica ids, preferred leader first).
pub type Placement = (String, u32, Vec<i32>);

/// Replicas per broker, every broker in `brokers` counted (zero included).
fn loads(brokers: &[i32], partitions: &[Placement]) -> BTreeMap<i32, usize> {
    let mut load: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for (_, _, replicas) in partitions {
        for r in replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// The least loaded of `brokers` not in `exclude` (lowest id on a tie).
fn least_loaded(load: &BTreeMap<i32, usize>, exclude: &[i32]) -> Option<i32> {
    load.iter()
        .filter(|(b, _)| !exclude.contains(b))
        .min_by_key(|(b, n)| (**n, **b))
        .map(|(b, _)| *b)
}

/// Moves that take every replica off `gone`, each to the least loaded other broker of
/// `brokers` that does not hold the partition yet (in its place in the list, so the preferred
/// order is kept). Refused, naming the partition, when the other brokers cannot hold its
/// replication factor.
pub fn plan_decommission(
    brokers: &[i32],
    partitions: &[Placement],
    gone: i32,
) -> Result<Vec<Placement>, String> {
    let others: Vec<i32> = brokers.iter().copied().filter(|&b| b != gone).collect();
    let mut load = loads(&others, partitions);
    let mut moves = Vec::new();
    for (topic, partition, replicas) in partitions {
        let Some(at) = replicas.iter().position(|&r| r == gone) else { continue };
        let Some(to) = least_loaded(&load, replicas) else {
            return Err(format!(
                "{topic}-{partition} has {} replicas and only {} other live broker(s) could hold them",
                replicas.len(),
                others.len()
            ));
        };
        let mut target = replicas.clone();
        target[at] = to;
        *load.entry(to).or_default() += 1;
        moves.push((topic.clone(), *partition, target));
    }
    Ok(moves)
}

/// Moves that even out the replicas over `brokers` (no broker more than one above another,
/// replicas on brokers not in `brokers` moved to them first), then the preferred leaders (the
/// first replica) the same way by reordering replicas. Partitions already fine are left alone.
pub fn plan_rebalance(brokers: &[i32], partitions: &[Placement]) -> Vec<Placement> {
    if brokers.is_empty() {
        return Vec::new();
    }
    let mut placed: Vec<Placement> = partitions.to_vec();
    let mut load = loads(brokers, &placed);
    // Replicas on brokers that are not live (or not given) first.
    for (_, _, replicas) in placed.iter_mut() {
        for i in 0..replicas.len() {
            if !brokers.contains(&replicas[i])
                && let Some(to) = least_loaded(&load, replicas)
            {
                replicas[i] = to;
                *load.entry(to).or_default() += 1;
            }
        }
    }
    // Then from the most loaded broker to the least loaded, one replica at a time.
    loop {
        let (&hi, &hi_n) = load.iter().max_by_key(|(b, n)| (**n, -**b)).expect("brokers given");
        let (&lo, &lo_n) = load.iter().min_by_key(|(b, n)| (**n, **b)).expect("brokers given");
        if hi_n <= lo_n + 1 {
            break;
        }
        let Some((_, _, replicas)) =
            placed.iter_mut().find(|(_, _, r)| r.contains(&hi) && !r.contains(&lo))
        else {
            break;
        };
        let i = replicas.iter().position(|&r| r == hi).expect("found by contains");
        replicas[i] = lo;
        *load.entry(hi).or_default() -= 1;
        *load.entry(lo).or_default() += 1;
    }
    // Preferred leaders: the same for first replicas, by swapping a replica to the front.
    let mut leaders: BTreeMap<i32, usize> = brokers.iter().map(|&b| (b, 0)).collect();
    for (_, _, r) in &placed {
        if let Some(first) = r.first() {
            *leaders.entry(*first).or_default() += 1;
        }
    }
    loop {
        let (&hi, &hi_n) = leaders.iter().max_by_key(|(b, n)| (**n, -**b)).expect("brokers given");
        let (&lo, &lo_n) = leaders.iter().min_by_key(|(b, n)| (**n, **b)).expect("brokers given");
        if hi_n <= lo_n + 1 {
            break;
        }
        let Some((_, _, replicas)) =
            placed.iter_mut().find(|(_, _, r)| r.first() == Some(&hi) && r.contains(&lo))
        else {
            break;
        };
        let i = replicas.iter().position(|&r| r == lo).expect("found by contains");
        replicas.swap(0, i);
        *leaders.entry(hi).or_default() -= 1;
        *leaders.entry(lo).or_default() += 1;
    }
    placed
        .into_iter()
        .zip(partitions)
        .filter(|(new, old)| new.2 != old.2)
        .map(|(new, _)| new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: u32, replicas: &[i32]) -> Placement {
        (topic.to_string(), partition, replicas.to_vec())
    }

    /// Replicas per broker after applying `moves` to `partitions`.
    fn after(brokers: &[i32], partitions: &[Placement], moves: &[Placement]) -> Vec<Placement> {
        let mut all = partitions.to_vec();
        for m in moves {
            let slot =
                all.iter_mut().find(|x| x.0 == m.0 && x.1 == m.1).expect("a known partition");
            *slot = m.clone();
        }
        let _ = brokers;
        all
    }

    #[test]
    fn a_new_broker_gets_its_share_of_replicas_and_leaders() {
        let parts: Vec<Placement> = (0..6)
            .map(|i| {
                p("t", i, &[1 + (i as i32 % 3), 1 + ((i as i32 + 1) % 3), 1 + ((i as i32 + 2) % 3)])
            })
            .collect();
        let brokers = [1, 2, 3, 4];
        let moves = plan_rebalance(&brokers, &parts);
        let now = after(&brokers, &parts, &moves);
        let load = loads(&brokers, &now);
        assert_eq!(load.values().sum::<usize>(), 18, "no replica lost or added");
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(max - min <= 1, "replicas per broker {load:?}");
        for (t, i, r) in &now {
            let mut d = r.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 3, "{t}-{i} holds a broker twice: {r:?}");
        }
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for (_, _, r) in &now {
            *leaders.entry(r[0]).or_default() += 1;
        }
        assert!(
            leaders.values().max().unwrap() - leaders.values().min().unwrap() <= 1,
            "{leaders:?}"
        );
        assert!(leaders.contains_key(&4), "the new broker leads some: {leaders:?}");
        assert!(plan_rebalance(&brokers, &now).is_empty(), "a balanced cluster needs no move");
    }

    #[test]
    fn decommissioning_moves_every_replica_off_the_broker_or_says_why_it_cannot() {
        let parts = vec![p("t", 0, &[1, 2, 3]), p("t", 1, &[2, 3, 4]), p("u", 0, &[3, 1])];
        let moves = plan_decommission(&[1, 2, 3, 4], &parts, 3).unwrap();
        assert_eq!(moves.len(), 3);
        for (t, i, r) in &moves {
            assert!(!r.contains(&3), "{t}-{i} still on 3: {r:?}");
        }
        assert_eq!(moves[0], p("t", 0, &[1, 2, 4]), "kept in place: the preferred order holds");
        let err = plan_decommission(&[1, 2, 3], &parts, 3).unwrap_err();
        assert!(err.contains("t-0 has 3 replicas and only 2 other"), "{err}");
    }
}
