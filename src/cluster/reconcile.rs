//! What this broker must do so that its local topics and partition roles match the applied
//! metadata image: a pure plan (topics to create, re-create or delete, partitions to add, configs
//! to replace, and per partition: become leader, become follower, update the ISR, stop). The node executes the
//! plan and records the roles it took, so the next plan holds only what changed. Never performs
//! an action itself and never decides a leader or an ISR (the image says; Raft committed it).

use std::collections::{BTreeMap, BTreeSet};

use super::metadata::{MetadataImage, NodeId, PartitionRecord};

/// A topic as it is on this broker's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTopic {
    pub id: [u8; 16],
    pub partitions: u32,
    /// The configs set on it, in the metadata's form ([`super::configs_map`]).
    pub configs: BTreeMap<String, String>,
    /// Its partitions whose log here holds records (the node looks only at those the image
    /// names this broker no replica of; the plan checks that again).
    pub holding: BTreeSet<u32>,
}

/// The role this broker has taken for one partition (what the replica manager was told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader { leader_epoch: i32, partition_epoch: i32, isr: Vec<NodeId>, replicas: Vec<NodeId> },
    Follower { leader_epoch: i32, leader: NodeId, leader_addr: String },
}

/// One step of a plan, in the order the plan lists them (topics first, then roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The topic is gone from the metadata (or was re-created under another id): remove it here.
    DeleteTopic {
        name: String,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        partitions: u32,
        configs: BTreeMap<String, String>,
    },
    AddPartitions {
        name: String,
        total: u32,
    },
    /// The topic's configs differ from the metadata's: these become its whole set.
    AlterConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    BecomeLeader {
        topic: String,
        partition: u32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
        replicas: Vec<NodeId>,
    },
    UpdateIsr {
        topic: String,
        partition: u32,
        isr: Vec<NodeId>,
        partition_epoch: i32,
    },
    BecomeFollower {
        topic: String,
        partition: u32,
        leader_epoch: i32,
        leader: NodeId,
        leader_addr: String,
    },
    /// Not a replica any more, or the partition is offline: neither lead nor follow.
    Stop {
        topic: String,
        partition: u32,
    },
    /// Records of a partition this broker is not a replica of (a move took it away): they go,
    /// as Kafka deletes such a replica. Listed after the partition's `Stop`.
    DiscardReplica {
        topic: String,
        partition: u32,
    },
}

/// The actions that bring `local` and `roles` to what `image` says for broker `me`.
///
/// A local topic the image does not hold is deleted only when the cluster once knew its name
/// (it has an epoch floor, which outlives a deletion): a topic the cluster never heard of (a
/// data directory that was a single node's) is left on disk, unserved, never destroyed.
pub fn plan(
    me: NodeId,
    image: &MetadataImage,
    local: &BTreeMap<String, LocalTopic>,
    roles: &BTreeMap<(String, u32), Role>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, l) in local {
        let gone = match image.topics.get(name) {
            Some(t) => t.id != l.id,
            None => image.epoch_floor.contains_key(name),
        };
        if gone {
            actions.push(Action::DeleteTopic { name: name.clone() });
        }
    }
    for (name, t) in &image.topics {
        let count = t.partitions.len() as u32;
        match local.get(name) {
            Some(l) if l.id == t.id => {
                if l.partitions < count {
                    actions.push(Action::AddPartitions { name: name.clone(), total: count });
                }
                if l.configs != t.configs {
                    actions.push(Action::AlterConfigs {
                        name: name.clone(),
                        configs: t.configs.clone(),
                    });
                }
            }
            _ => actions.push(Action::CreateTopic {
                name: name.clone(),
                id: t.id,
                partitions: count,
                configs: t.configs.clone(),
            }),
        }
    }
    // Roles for partitions that vanished, or that this broker no longer serves.
    for (topic, partition) in roles.keys() {
        let serving = image
            .partition(topic, *partition)
            .is_some_and(|p| p.replicas.contains(&me) && p.leader.is_some())
            && local_matches(image, local, topic);
        if !serving {
            actions.push(Action::Stop { topic: topic.clone(), partition: *partition });
        }
    }
    // Only the committed image's word that this broker is no replica (a move done or cancelled
    // without it) lets its records go: the new replicas are in sync by then.
    for (name, t) in &image.topics {
        let Some(l) = local.get(name).filter(|l| l.id == t.id) else { continue };
        for &partition in &l.holding {
            let held =
                t.partitions.get(partition as usize).is_some_and(|p| p.replicas.contains(&me));
            if !held && (partition as usize) < t.partitions.len() {
                actions.push(Action::DiscardReplica { topic: name.clone(), partition });
            }
        }
    }
    for (name, t) in &image.topics {
        // A re-created topic: every role is taken afresh on the new log.
        let recreated = !local_matches(image, local, name);
        for (i, p) in t.partitions.iter().enumerate() {
            let key = (name.clone(), i as u32);
            let current = if recreated { None } else { roles.get(&key) };
            if let Some(a) = role_action(me, image, name, i as u32, p, current) {
                actions.push(a);
            }
        }
    }
    actions
}

/// Whether the local topic is the image's (same id), so roles recorded for it still hold.
fn local_matches(image: &MetadataImage, local: &BTreeMap<String, LocalTopic>, name: &str) -> bool {
    match (image.topics.get(name), local.get(name)) {
        (Some(t), Some(l)) => t.id == l.id,
        _ => false,
    }
}

fn role_action(
    me: NodeId,
    image: &MetadataImage,
    topic: &str,
    partition: u32,
    p: &PartitionRecord,
    current: Option<&Role>,
) -> Option<Action> {
    if !p.replicas.contains(&me) {
        return None; // a Stop, if it had a role, was planned above
    }
    let topic = topic.to_owned();
    match p.leader {
        None => None, // offline: stopped above if it had a role
        Some(l) if l == me => match current {
            // Same epoch, same replicas: only the ISR moved. New replicas (a reassignment) are
            // taken as a leadership of the same epoch, which updates the followers it serves.
            Some(Role::Leader { leader_epoch, partition_epoch, isr, replicas })
                if *leader_epoch == p.leader_epoch && *replicas == p.replicas =>
            {
                (*partition_epoch != p.partition_epoch || *isr != p.isr).then(|| {
                    Action::UpdateIsr {
                        topic,
                        partition,
                        isr: p.isr.clone(),
                        partition_epoch: p.partition_epoch,
                    }
                })
            }
            _ => Some(Action::BecomeLeader {
                topic,
                partition,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: p.isr.clone(),
                replicas: p.replicas.clone(),
            }),
        },
        Some(l) => {
            // A leader whose address is unknown cannot be followed yet; its registration is
            // applied before it can lead, so this is only a transient of a broken image.
            let leader_addr = image.brokers.get(&l)?.cluster_addr.clone();
            let wanted = Role::Follower {
                leader_epoch: p.leader_epoch,
                leader: l,
                leader_addr: leader_addr.clone(),
            };
            (current != Some(&wanted)).then_some(Action::BecomeFollower {
                topic,
                partition,
                leader_epoch: p.leader_epoch,
                leader: l,
                leader_addr,
            })
        }
    }
}

/// The partitions whose fetches on broker `me` go through the reassignment throttle: those a
/// move under way is adding `me` to and whose ISR does not hold `me` yet. An in-sync replica
/// (an ordinary follower, or an added one that caught up) is never slowed down. Empty when no
/// throttle is in force.
pub fn throttled_partitions(me: NodeId, image: &MetadataImage) -> BTreeSet<(String, u32)> {
    if image.reassignment_throttle.is_none() {
        return BTreeSet::new();
    }
    let mut out = BTreeSet::new();
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.adding.contains(&me) && !p.isr.contains(&me) {
                out.insert((name.clone(), i as u32));
            }
        }
    }
    out
}

/// The role an executed action leaves the partition in (`None`: no role), for the record.
pub fn role_after(action: &Action) -> Option<((String, u32), Option<Role>)> {
    match action {
        Action::BecomeLeader { topic, partition, leader_epoch, partition_epoch, isr, replicas } => {
            Some((
                (topic.clone(), *partition),
                Some(Role::Leader {
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    isr: isr.clone(),
                    replicas: replicas.clone(),
                }),
            ))
        }
        Action::BecomeFollower { topic, partition, leader_epoch, leader, leader_addr } => Some((
            (topic.clone(), *partition),
            Some(Role::Follower {
                leader_epoch: *leader_epoch,
                leader: *leader,
                leader_addr: leader_addr.clone(),
            }),
        )),
        Action::Stop { topic, partition } => Some(((topic.clone(), *partition), None)),
        Action::UpdateIsr { .. }
        | Action::DeleteTopic { .. }
        | Action::CreateTopic { .. }
        | Action::AddPartitions { .. }
        | Action::AlterConfigs { .. }
        | Action::DiscardReplica { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::MetadataCommand;
    use crate::cluster::metadata::tests::alter;

    fn image_with_brokers(ids: &[NodeId]) -> MetadataImage {
        let mut img = MetadataImage::default();
        let mut index = 1;
        for &id in ids {
            let cmd = MetadataCommand::RegisterBroker {
                id,
                cluster_addr: format!("h:{id}"),
                native_addr: None,
                kafka_addr: None,
            };
            img.apply(&cmd, index);
            img.apply(&MetadataCommand::UnfenceBroker { id, incarnation: index }, index + 1);
            index += 2;
        }
        img
    }

    fn create(img: &mut MetadataImage, name: &str, id: u8, replicas: Vec<Vec<NodeId>>) {
        let cmd = MetadataCommand::CreateTopic {
            name: name.into(),
            id: [id; 16],
            replicas,
            configs: BTreeMap::new(),
        };
        assert_eq!(img.apply(&cmd, 100), crate::cluster::metadata::ApplyResult::Done);
    }

    /// A one-partition topic on disk with no configs set.
    fn local_topic(id: u8) -> LocalTopic {
        LocalTopic {
            id: [id; 16],
            partitions: 1,
            configs: BTreeMap::new(),
            holding: BTreeSet::new(),
        }
    }

    /// Executes a plan against the records (the way the node does after each action succeeds).
    fn run(
        me: NodeId,
        img: &MetadataImage,
        local: &mut BTreeMap<String, LocalTopic>,
        roles: &mut BTreeMap<(String, u32), Role>,
    ) -> Vec<Action> {
        let actions = plan(me, img, local, roles);
        for a in &actions {
            match a {
                Action::DeleteTopic { name } => {
                    local.remove(name);
                    roles.retain(|(t, _), _| t != name);
                }
                Action::CreateTopic { name, id, partitions, configs } => {
                    let configs = configs.clone();
                    let holding = BTreeSet::new();
                    local.insert(
                        name.clone(),
                        LocalTopic { id: *id, partitions: *partitions, configs, holding },
                    );
                }
                Action::AddPartitions { name, total } => {
                    local.get_mut(name).unwrap().partitions = *total;
                }
                Action::AlterConfigs { name, configs } => {
                    local.get_mut(name).unwrap().configs = configs.clone();
                }
                Action::DiscardReplica { topic, partition } => {
                    local.get_mut(topic).unwrap().holding.remove(partition);
                }
                other => {
                    if let Some((key, role)) = role_after(other) {
                        match role {
                            Some(r) => roles.insert(key, r),
                            None => roles.remove(&key),
                        };
                    }
                }
            }
        }
        actions
    }

    #[test]
    fn a_new_topic_is_created_and_each_replica_takes_its_role_once() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", 7, vec![vec![1, 2], vec![2, 3]]);
        let (mut local, mut roles) = (BTreeMap::new(), BTreeMap::new());
        let actions = run(2, &img, &mut local, &mut roles);
        assert!(
            matches!(&actions[0], Action::CreateTopic { name, partitions: 2, .. } if name == "t")
        );
        assert!(actions.contains(&Action::BecomeFollower {
            topic: "t".into(),
            partition: 0,
            leader_epoch: 0,
            leader: 1,
            leader_addr: "h:1".into(),
        }));
        assert!(actions.iter().any(|a| matches!(a, Action::BecomeLeader { partition: 1, .. })));
        // Nothing changed: nothing to do.
        assert!(run(2, &img, &mut local, &mut roles).is_empty());
        // Broker 3 replicates only partition 1, but holds the topic's directory too.
        let (mut l3, mut r3) = (BTreeMap::new(), BTreeMap::new());
        let a3 = run(3, &img, &mut l3, &mut r3);
        assert_eq!(a3.len(), 2, "{a3:?}");
    }

    #[test]
    fn failover_makes_the_follower_leader_and_an_isr_change_is_an_update() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", 7, vec![vec![1, 2, 3]]);
        let (mut local, mut roles) = (BTreeMap::new(), BTreeMap::new());
        run(2, &img, &mut local, &mut roles);
        img.apply(&MetadataCommand::FenceBroker { id: 1 }, 200);
        let actions = run(2, &img, &mut local, &mut roles);
        assert_eq!(
            actions,
            vec![Action::BecomeLeader {
                topic: "t".into(),
                partition: 0,
                leader_epoch: 1,
                partition_epoch: 1,
                isr: vec![2, 3],
                replicas: vec![1, 2, 3],
            }]
        );
        let alter = MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            isr: vec![2],
        };
        img.apply(&alter, 201);
        assert_eq!(
            run(2, &img, &mut local, &mut roles),
            vec![Action::UpdateIsr {
                topic: "t".into(),
                partition: 0,
                isr: vec![2],
                partition_epoch: 2
            }]
        );
        // The old leader, seeing the image late, follows the new one.
        let (mut l1, mut r1) = (BTreeMap::new(), BTreeMap::new());
        let a1 = run(1, &img, &mut l1, &mut r1);
        assert!(a1.iter().any(|a| matches!(a, Action::BecomeFollower { leader: 2, .. })), "{a1:?}");
    }

    #[test]
    fn deleted_and_recreated_topics_are_replaced_but_unknown_ones_are_kept() {
        let mut img = image_with_brokers(&[1]);
        create(&mut img, "t", 7, vec![vec![1]]);
        let mut local = BTreeMap::from([
            ("t".to_string(), local_topic(7)),
            ("mine".to_string(), local_topic(9)),
        ]);
        let mut roles = BTreeMap::new();
        let first = run(1, &img, &mut local, &mut roles);
        assert!(!first.iter().any(|a| matches!(a, Action::DeleteTopic { .. })), "{first:?}");
        img.apply(&MetadataCommand::DeleteTopic { name: "t".into() }, 300);
        let deleted = run(1, &img, &mut local, &mut roles);
        assert!(deleted.contains(&Action::DeleteTopic { name: "t".into() }));
        assert!(deleted.contains(&Action::Stop { topic: "t".into(), partition: 0 }));
        assert!(local.contains_key("mine"), "a topic the cluster never knew stays");
        create(&mut img, "t", 8, vec![vec![1]]);
        local.insert("t".into(), local_topic(7));
        let recreated = run(1, &img, &mut local, &mut roles);
        assert_eq!(recreated[0], Action::DeleteTopic { name: "t".into() });
        assert!(matches!(&recreated[1], Action::CreateTopic { id, .. } if *id == [8; 16]));
        assert!(
            recreated.iter().any(|a| matches!(a, Action::BecomeLeader { leader_epoch: 1, .. })),
            "the new topic's epoch is above the old one's: {recreated:?}"
        );
    }

    #[test]
    fn an_offline_partition_stops_and_added_partitions_are_made() {
        let mut img = image_with_brokers(&[1, 2]);
        create(&mut img, "t", 7, vec![vec![1]]);
        let (mut local, mut roles) = (BTreeMap::new(), BTreeMap::new());
        run(1, &img, &mut local, &mut roles);
        img.apply(&MetadataCommand::FenceBroker { id: 1 }, 400);
        assert_eq!(
            run(1, &img, &mut local, &mut roles),
            vec![Action::Stop { topic: "t".into(), partition: 0 }]
        );
        img.apply(
            &MetadataCommand::AddPartitions { name: "t".into(), replicas: vec![vec![2]] },
            401,
        );
        let a = run(1, &img, &mut local, &mut roles);
        assert_eq!(a, vec![Action::AddPartitions { name: "t".into(), total: 2 }]);
    }

    #[test]
    fn a_replica_moved_away_is_stopped_then_discarded_but_one_still_held_is_kept() {
        let mut img = image_with_brokers(&[1, 2, 3]);
        create(&mut img, "t", 7, vec![vec![1, 2], vec![1, 3]]);
        let (mut local, mut roles) = (BTreeMap::new(), BTreeMap::new());
        run(1, &img, &mut local, &mut roles);
        local.get_mut("t").unwrap().holding = BTreeSet::from([0, 1]);
        // Partition 0 moves to 2 and 3; once 3 is in sync broker 1 is no replica of it.
        let onto = MetadataCommand::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target: vec![2, 3],
            throttle_bytes_per_s: None,
        };
        img.apply(&onto, 500);
        assert!(
            run(1, &img, &mut local, &mut roles)
                .iter()
                .all(|a| !matches!(a, Action::DiscardReplica { .. }))
        );
        img.apply(&alter(&img, "t", 0, vec![1, 2, 3]), 501);
        assert_eq!(
            run(1, &img, &mut local, &mut roles),
            vec![
                Action::Stop { topic: "t".into(), partition: 0 },
                Action::DiscardReplica { topic: "t".into(), partition: 0 },
            ]
        );
        assert!(run(1, &img, &mut local, &mut roles).is_empty(), "once");
        // Broker 1 fenced: partition 1 goes to broker 3, still with 1 as a replica; kept.
        img.apply(&MetadataCommand::FenceBroker { id: 1 }, 502);
        let a = run(1, &img, &mut local, &mut roles);
        assert!(a.iter().all(|a| !matches!(a, Action::DiscardReplica { .. })), "{a:?}");
        assert_eq!(local["t"].holding, BTreeSet::from([1]));
    }

    #[test]
    fn only_replicas_being_added_and_not_yet_in_sync_are_throttled() {
        let mut img = image_with_brokers(&[1, 2, 3, 4]);
        create(&mut img, "t", 7, vec![vec![1, 2, 3], vec![1, 2, 3]]);
        let reassign =
            |partition, target: Vec<NodeId>, throttle| MetadataCommand::ReassignPartition {
                topic: "t".into(),
                partition,
                target,
                throttle_bytes_per_s: throttle,
            };
        // Without a throttle nothing is throttled, moves or not.
        img.apply(&reassign(0, vec![2, 3, 4], None), 600);
        assert!(throttled_partitions(4, &img).is_empty());
        img.apply(&reassign(1, vec![4, 2, 3], Some(50_000_000)), 601);
        let t1 = BTreeSet::from([("t".to_string(), 1)]);
        let both = BTreeSet::from([("t".to_string(), 0), ("t".to_string(), 1)]);
        assert_eq!(throttled_partitions(4, &img), both, "broker 4 is being added to both");
        for in_sync in [1, 2, 3] {
            assert!(throttled_partitions(in_sync, &img).is_empty(), "broker {in_sync}");
        }
        // Partition 0's new replica caught up: its fetches go at full speed again.
        let caught_up = alter(&img, "t", 0, vec![1, 2, 3, 4]);
        assert_eq!(img.apply(&caught_up, 602), crate::cluster::metadata::ApplyResult::Done);
        assert_eq!(throttled_partitions(4, &img), t1);
    }

    #[test]
    fn altered_configs_are_applied_once_and_equal_ones_are_left_alone() {
        let mut img = image_with_brokers(&[1, 2]);
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let cmd = MetadataCommand::CreateTopic {
            name: "t".into(),
            id: [7; 16],
            replicas: vec![vec![1, 2]],
            configs: configs.clone(),
        };
        img.apply(&cmd, 500);
        let (mut local, mut roles) = (BTreeMap::new(), BTreeMap::new());
        run(2, &img, &mut local, &mut roles);
        assert_eq!(local["t"].configs, configs, "a new topic is made with its configs");
        assert!(run(2, &img, &mut local, &mut roles).is_empty(), "equal configs: nothing to do");

        // Another broker changed them: the whole map replaces this broker's, defaults included.
        let altered = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let cmd = MetadataCommand::AlterTopicConfigs { name: "t".into(), configs: altered.clone() };
        img.apply(&cmd, 501);
        assert_eq!(
            run(2, &img, &mut local, &mut roles),
            vec![Action::AlterConfigs { name: "t".into(), configs: altered.clone() }]
        );
        assert!(run(2, &img, &mut local, &mut roles).is_empty(), "applied once");

        // A topic on disk that drifted (altered on this broker alone) is brought back too.
        local.get_mut("t").unwrap().configs.insert("retention.ms".into(), "5".into());
        assert_eq!(
            run(2, &img, &mut local, &mut roles),
            vec![Action::AlterConfigs { name: "t".into(), configs: altered }]
        );
    }
}
