//! Model tests of the metadata rules: random command sequences, each command made meaningful
//! against the image it meets, with the safety invariants checked after every step (leadership
//! only from the ISR, epochs never back, moves ending complete or cancelled, decommissioned
//! brokers fenced once empty, a throttle only while something moves).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{member, membership};
use super::*;

/// A command in terms of the image it will meet, so that most of them are meaningful.
#[derive(Clone, Debug)]
enum Op {
    Register(NodeId),
    Unfence(NodeId),
    UnfenceStale(NodeId),
    Fence(NodeId),
    Shutdown(NodeId),
    Create {
        topic: usize,
        partitions: u32,
        rf: u16,
        start: usize,
    },
    CreateRaw {
        topic: usize,
        replicas: Vec<Vec<NodeId>>,
    },
    Delete(usize),
    AddPartitions {
        topic: usize,
        count: u32,
        start: usize,
    },
    /// `mask` picks the new ISR among the replicas; the leader is always put in.
    Alter {
        topic: usize,
        partition: u32,
        mask: u8,
    },
    /// Like `Alter` with any of the leader, leader epoch or partition epoch wrong.
    AlterStale {
        topic: usize,
        partition: u32,
        mask: u8,
        which: u8,
        by: i32,
    },
    AlterAny {
        topic: usize,
        partition: u32,
        leader: NodeId,
        isr: Vec<NodeId>,
    },
    Allocate(i64),
    Commit {
        group: u8,
        topic: usize,
        partition: u32,
        offset: i64,
    },
    DeleteGroup(u8),
    /// A group settled at `generation` with `members` members (0: emptied).
    Record {
        group: u8,
        generation: i32,
        members: u8,
    },
    ElectPreferred {
        topic: usize,
        partition: u32,
    },
    Reassign {
        topic: usize,
        partition: u32,
        target: Vec<NodeId>,
        /// 0 must be refused.
        throttle: Option<u64>,
    },
    Cancel {
        topic: usize,
        partition: u32,
    },
    Decommission(NodeId),
    Recommission(NodeId),
    /// 0 must be refused, and any rate while nothing moves.
    Throttle(Option<u64>),
}

const TOPICS: [&str; 3] = ["a", "b", "c"];
const MAX_BROKER: NodeId = 5;

fn op() -> impl Strategy<Value = Op> {
    let id = 1..=MAX_BROKER;
    let topic = 0..TOPICS.len();
    prop_oneof![
        2 => id.clone().prop_map(Op::Register),
        4 => id.clone().prop_map(Op::Unfence),
        1 => id.clone().prop_map(Op::UnfenceStale),
        4 => id.clone().prop_map(Op::Fence),
        1 => id.clone().prop_map(Op::Shutdown),
        3 => (topic.clone(), 1..4u32, 1..4u16, 0..10usize)
            .prop_map(|(topic, partitions, rf, start)| Op::Create { topic, partitions, rf, start }),
        1 => (topic.clone(), prop::collection::vec(prop::collection::vec(0..=MAX_BROKER + 1, 0..4), 0..3))
            .prop_map(|(topic, replicas)| Op::CreateRaw { topic, replicas }),
        2 => topic.clone().prop_map(Op::Delete),
        1 => (topic.clone(), 1..3u32, 0..10usize)
            .prop_map(|(topic, count, start)| Op::AddPartitions { topic, count, start }),
        5 => (topic.clone(), 0..4u32, any::<u8>())
            .prop_map(|(topic, partition, mask)| Op::Alter { topic, partition, mask }),
        2 => (topic.clone(), 0..4u32, any::<u8>(), 0..3u8, prop_oneof![Just(-1), Just(1), Just(2)])
            .prop_map(|(topic, partition, mask, which, by)| Op::AlterStale { topic, partition, mask, which, by }),
        1 => (topic.clone(), 0..4u32, 0..=MAX_BROKER, prop::collection::vec(0..=MAX_BROKER, 0..4))
            .prop_map(|(topic, partition, leader, isr)| Op::AlterAny { topic, partition, leader, isr }),
        1 => (-2..2000i64).prop_map(Op::Allocate),
        2 => (0..3u8, topic.clone(), 0..4u32, 0..1000i64)
            .prop_map(|(group, topic, partition, offset)| Op::Commit { group, topic, partition, offset }),
        1 => (0..3u8).prop_map(Op::DeleteGroup),
        2 => (0..3u8, -1..6i32, 0..3u8)
            .prop_map(|(group, generation, members)| Op::Record { group, generation, members }),
        2 => (topic.clone(), 0..4u32)
            .prop_map(|(topic, partition)| Op::ElectPreferred { topic, partition }),
        3 => (topic.clone(), 0..4u32, prop::collection::vec(1..=MAX_BROKER, 0..4), prop::option::of(0..3u64))
            .prop_map(|(topic, partition, target, throttle)| Op::Reassign { topic, partition, target, throttle }),
        1 => (topic.clone(), 0..4u32).prop_map(|(topic, partition)| Op::Cancel { topic, partition }),
        1 => id.clone().prop_map(Op::Decommission),
        1 => id.clone().prop_map(Op::Recommission),
        1 => prop::option::of(0..3u64).prop_map(Op::Throttle),
    ]
}

/// The command `op` stands for against `img`, and whether it must be rejected.
fn concretize(img: &MetadataImage, op: &Op, next_id: &mut u8) -> (MetadataCommand, bool) {
    use MetadataCommand as C;
    let inc = |id: NodeId| img.brokers.get(&id).map_or(0, |b| b.incarnation);
    let isr_from = |p: &PartitionRecord, leader: NodeId, mask: u8| {
        let mut isr: Vec<NodeId> = p
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, r)| **r == leader || mask & (1 << i) != 0)
            .map(|(_, r)| *r)
            .collect();
        if mask & 0x80 != 0 {
            isr.reverse(); // order is free
        }
        isr
    };
    match op {
        Op::Register(id) => (
            C::RegisterBroker {
                id: *id,
                cluster_addr: format!("h:{id}"),
                native_addr: None,
                kafka_addr: Some(format!("k:{id}")),
            },
            false,
        ),
        Op::Unfence(id) => (C::UnfenceBroker { id: *id, incarnation: inc(*id) }, false),
        Op::UnfenceStale(id) => (C::UnfenceBroker { id: *id, incarnation: inc(*id) + 1 }, true),
        Op::Fence(id) => (C::FenceBroker { id: *id }, false),
        Op::Shutdown(id) => (C::ShutdownBroker { id: *id, incarnation: inc(*id) }, false),
        Op::Create { topic, partitions, rf, start } => {
            *next_id += 1;
            let replicas = assign_replicas(img, *partitions, *rf, *start).unwrap_or_default();
            let name = TOPICS[*topic].to_string();
            (C::CreateTopic { name, id: [*next_id; 16], replicas, configs: BTreeMap::new() }, false)
        }
        Op::CreateRaw { topic, replicas } => {
            *next_id += 1;
            let name = TOPICS[*topic].to_string();
            let cmd = C::CreateTopic {
                name,
                id: [*next_id; 16],
                replicas: replicas.clone(),
                configs: BTreeMap::new(),
            };
            (cmd, false)
        }
        Op::Delete(t) => (C::DeleteTopic { name: TOPICS[*t].into() }, false),
        Op::AddPartitions { topic, count, start } => {
            let name = TOPICS[*topic];
            let rf = img.partition(name, 0).map_or(1, |p| p.replicas.len() as u16);
            let replicas = assign_replicas(img, *count, rf, *start).unwrap_or_default();
            (C::AddPartitions { name: name.into(), replicas }, false)
        }
        Op::Alter { topic, partition, mask } | Op::AlterStale { topic, partition, mask, .. } => {
            let name = TOPICS[*topic];
            let Some(p) = img.partition(name, *partition) else {
                return (
                    C::AlterPartition {
                        topic: name.into(),
                        partition: *partition,
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        isr: vec![1],
                    },
                    true,
                );
            };
            let leader = p.leader.unwrap_or(1);
            let mut cmd = C::AlterPartition {
                topic: name.into(),
                partition: *partition,
                leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: isr_from(p, leader, *mask),
            };
            let mut must_reject = p.leader.is_none();
            if let (
                Op::AlterStale { which, by, .. },
                C::AlterPartition { leader, leader_epoch, partition_epoch, .. },
            ) = (op, &mut cmd)
            {
                match which {
                    0 => *leader = leader.wrapping_add(*by as NodeId), // another broker, or an unknown one
                    1 => *leader_epoch += by,
                    _ => *partition_epoch += by,
                }
                must_reject = true;
            }
            (cmd, must_reject)
        }
        Op::AlterAny { topic, partition, leader, isr } => {
            let name = TOPICS[*topic];
            let (le, pe) = img
                .partition(name, *partition)
                .map_or((0, 0), |p| (p.leader_epoch, p.partition_epoch));
            let cmd = C::AlterPartition {
                topic: name.into(),
                partition: *partition,
                leader: *leader,
                leader_epoch: le,
                partition_epoch: pe,
                isr: isr.clone(),
            };
            (cmd, false)
        }
        Op::Allocate(count) => (C::AllocateProducerIds { count: *count }, *count <= 0),
        Op::Commit { group, topic, partition, offset } => {
            let offsets = vec![GroupOffset {
                topic: TOPICS[*topic].into(),
                partition: *partition,
                offset: *offset,
                metadata: Some("m".into()),
            }];
            (C::CommitOffsets { group: format!("g{group}"), offsets }, false)
        }
        Op::DeleteGroup(g) => (C::DeleteGroup { group: format!("g{g}") }, false),
        Op::Record { group, generation, members } => {
            let group = format!("g{group}");
            let members: Vec<GroupMemberRecord> =
                (0..*members).map(|i| member(&format!("m{i}"), &[i])).collect();
            let leader = members.first().map(|m| m.member_id.clone()).unwrap_or_default();
            let older = img.groups.get(&group).is_some_and(|g| g.generation > *generation);
            let must_reject = *generation < 0 || older;
            (
                C::RecordGroup { group, membership: membership(*generation, &leader, members) },
                must_reject,
            )
        }
        Op::ElectPreferred { topic, partition } => {
            let t = TOPICS[*topic];
            let cmd = C::ElectPreferredLeaders { partitions: vec![(t.into(), *partition)] };
            (cmd, !img.preferred_electable(t, *partition))
        }
        Op::Reassign { topic, partition, target, throttle } => {
            let t = TOPICS[*topic];
            let p = img.partition(t, *partition);
            let mut distinct = target.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let decommissioned = |r: &NodeId| img.brokers.get(r).is_some_and(|b| b.decommissioned);
            let must_reject = p.is_none_or(|p| {
                p.reassigning()
                    || p.replicas == *target
                    || target.iter().any(|r| !p.replicas.contains(r) && decommissioned(r))
            }) || target.is_empty()
                || distinct.len() != target.len()
                || target.iter().any(|r| !img.brokers.contains_key(r))
                || *throttle == Some(0);
            let cmd = C::ReassignPartition {
                topic: t.into(),
                partition: *partition,
                target: target.clone(),
                throttle_bytes_per_s: *throttle,
            };
            (cmd, must_reject)
        }
        Op::Throttle(rate) => {
            let must_reject = *rate == Some(0) || (rate.is_some() && !img.any_reassigning());
            (C::SetReassignmentThrottle { bytes_per_s: *rate }, must_reject)
        }
        Op::Cancel { topic, partition } => {
            let t = TOPICS[*topic];
            let idle = img.partition(t, *partition).is_none_or(|p| !p.reassigning());
            (C::CancelReassignment { topic: t.into(), partition: *partition }, idle)
        }
        Op::Decommission(id) => {
            let moving_in =
                img.topics.values().flat_map(|t| &t.partitions).any(|p| p.adding.contains(id));
            (C::DecommissionBroker { id: *id }, !img.brokers.contains_key(id) || moving_in)
        }
        Op::Recommission(id) => {
            let marked = img.brokers.get(id).is_some_and(|b| b.decommissioned);
            (C::RecommissionBroker { id: *id }, !marked)
        }
    }
}

/// The invariants every image must hold (the controller's model test checks them too).
pub(crate) fn check_image(img: &MetadataImage) -> Result<(), TestCaseError> {
    for b in img.brokers.values() {
        prop_assert!(
            !b.decommissioned || b.fenced || img.holds_replicas(b.id),
            "decommissioned broker {} holds nothing and is not fenced",
            b.id
        );
    }
    for (name, t) in &img.topics {
        prop_assert_eq!(&t.name, name);
        let floor = img.epoch_floor.get(name).copied();
        for (i, p) in t.partitions.iter().enumerate() {
            let at = format!("{name}-{i}: {p:?}");
            prop_assert!(!p.isr.is_empty(), "empty ISR {}", at);
            prop_assert!(
                p.isr.iter().all(|r| p.replicas.contains(r)),
                "ISR not within replicas {}",
                at
            );
            let mut isr = p.isr.clone();
            isr.sort();
            isr.dedup();
            prop_assert_eq!(isr.len(), p.isr.len(), "duplicate in ISR {}", at);
            prop_assert!(
                p.replicas.iter().all(|r| img.brokers.contains_key(r)),
                "unknown replica {}",
                at
            );
            prop_assert!(
                p.adding.iter().chain(&p.removing).all(|r| p.replicas.contains(r)),
                "a reassignment names a broker that is not a replica {}",
                at
            );
            prop_assert!(
                p.adding.iter().all(|r| !p.removing.contains(r)),
                "added and removed at once {}",
                at
            );
            prop_assert_eq!(
                p.reassigning(),
                !p.original.is_empty(),
                "the replicas before a move are kept exactly while it is under way {}",
                at
            );
            prop_assert!(
                !p.reassigning() || !p.target().iter().all(|r| p.isr.contains(r)),
                "a reassignment whose target is in sync is not complete {}",
                at
            );
            prop_assert!(
                floor.is_some_and(|f| f >= p.leader_epoch),
                "epoch above the floor {}",
                at
            );
            match p.leader {
                Some(l) => {
                    prop_assert!(p.isr.contains(&l), "leader outside the ISR {}", at);
                    prop_assert!(img.is_live(l), "fenced leader {}", at);
                    // A fenced broker never stays in a led partition's ISR.
                    prop_assert!(p.isr.iter().all(|r| img.is_live(*r)), "fenced ISR member {}", at);
                }
                None => {
                    // Offline only while no ISR member is alive.
                    prop_assert!(
                        p.isr.iter().all(|r| !img.is_live(*r)),
                        "offline with a live ISR member {}",
                        at
                    );
                }
            }
        }
    }
    for (group, m) in &img.groups {
        prop_assert!(m.generation >= 0, "negative generation of {}", group);
        prop_assert!(
            m.members.is_empty() || m.members.iter().any(|x| x.member_id == m.leader),
            "leader outside the members of {}",
            group
        );
    }
    prop_assert!(
        img.reassignment_throttle.is_none() || img.any_reassigning(),
        "a throttle outlived the last move: {:?}",
        img.reassignment_throttle
    );
    prop_assert_ne!(img.reassignment_throttle, Some(0), "a throttle of zero");
    for offsets in img.group_offsets.values() {
        prop_assert!(!offsets.is_empty());
        for o in offsets {
            prop_assert!(
                img.partition(&o.topic, o.partition).is_some(),
                "offset for a missing partition"
            );
        }
    }
    Ok(())
}

/// What may change between two images across one command.
fn check_step(
    before: &MetadataImage,
    after: &MetadataImage,
    seen: &mut BTreeMap<String, i32>,
) -> Result<(), TestCaseError> {
    prop_assert!(after.next_producer_id >= before.next_producer_id);
    for (group, m) in &after.groups {
        if let Some(old) = before.groups.get(group) {
            prop_assert!(m.generation >= old.generation, "generation of {} went back", group);
        }
    }
    for (name, t) in &after.topics {
        let old = before.topics.get(name).filter(|o| o.id == t.id);
        let max_before = seen.get(name).copied();
        for (i, p) in t.partitions.iter().enumerate() {
            match old.and_then(|o| o.partitions.get(i)) {
                Some(q) => {
                    prop_assert!(
                        p.leader_epoch >= q.leader_epoch,
                        "epoch went back {} {:?} -> {:?}",
                        name,
                        q,
                        p
                    );
                    prop_assert!(p.partition_epoch >= q.partition_epoch);
                    if p.leader != q.leader {
                        prop_assert!(
                            p.leader_epoch > q.leader_epoch,
                            "leader changed without an epoch {:?} -> {:?}",
                            q,
                            p
                        );
                        if let Some(l) = p.leader {
                            // Or a move finished by the ISR change that took `l` in (the old
                            // leader counted `l` toward the watermark once it asked: KIP-497).
                            let took_over =
                                q.reassigning() && q.adding.contains(&l) && p.isr.contains(&l);
                            prop_assert!(
                                q.isr.contains(&l) || took_over,
                                "elected outside the ISR {:?} -> {:?}",
                                q,
                                p
                            );
                        }
                    }
                    if p.leader != q.leader || p.isr != q.isr || p.replicas != q.replicas {
                        prop_assert!(
                            p.partition_epoch > q.partition_epoch,
                            "change without a partition epoch {:?} -> {:?}",
                            q,
                            p
                        );
                    }
                    // A reassignment ends by completing (the replicas become its target, all in
                    // sync) or by being cancelled (the added replicas go again).
                    if q.reassigning() && !p.reassigning() {
                        let cancelled = q.original.clone();
                        let completed = p.replicas == q.target()
                            && p.replicas.iter().all(|r| p.isr.contains(r) || p.leader.is_none());
                        prop_assert!(
                            completed || p.replicas == cancelled,
                            "a reassignment ended neither completed nor cancelled {:?} -> {:?}",
                            q,
                            p
                        );
                    }
                }
                None => {
                    // A new partition (new topic, re-created name or added): above all the name had.
                    if let Some(m) = max_before {
                        prop_assert!(
                            p.leader_epoch > m,
                            "new {}-{} epoch {} not above {}",
                            name,
                            i,
                            p.leader_epoch,
                            m
                        );
                    }
                    prop_assert_eq!(p.partition_epoch, 0);
                    prop_assert_eq!(p.leader, p.isr.first().copied());
                }
            }
        }
    }
    for (name, t) in &after.topics {
        for p in &t.partitions {
            let e = seen.entry(name.clone()).or_insert(p.leader_epoch);
            *e = (*e).max(p.leader_epoch);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_the_leadership_invariants(ops in prop::collection::vec(op(), 1..120)) {
        let mut img = MetadataImage::default();
        let mut twin = MetadataImage::default();
        let mut next_id = 0u8;
        let mut seen = BTreeMap::new();
        let mut producer_blocks = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (cmd, must_reject) = concretize(&img, op, &mut next_id);
            let before = img.clone();
            let index = i as u64 + 1;
            let r = img.apply(&cmd, index);
            prop_assert_eq!(&twin.apply(&cmd, index), &r, "same command, same answer");
            prop_assert_eq!(&twin, &img, "same commands, same image");
            match &r {
                ApplyResult::Rejected(_) => prop_assert_eq!(&img, &before, "a rejection changed the image: {:?}", cmd),
                _ => prop_assert!(!must_reject, "accepted {:?} -> {:?}", cmd, r),
            }
            if let ApplyResult::ProducerIds { first } = r {
                producer_blocks.push((first, img.next_producer_id));
            }
            check_image(&img)?;
            check_step(&before, &img, &mut seen)?;
        }
        for w in producer_blocks.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlapping producer id blocks {:?}", w);
        }
        let json = serde_json::to_string(&img).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, img);
    }

    #[test]
    fn commands_survive_a_serde_round_trip(ops in prop::collection::vec(op(), 1..40)) {
        let mut img = MetadataImage::default();
        let mut next_id = 0u8;
        for (i, op) in ops.iter().enumerate() {
            let (cmd, _) = concretize(&img, op, &mut next_id);
            let json = serde_json::to_vec(&cmd).unwrap();
            let back: MetadataCommand = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(&back, &cmd);
            img.apply(&back, i as u64 + 1);
        }
    }
}
