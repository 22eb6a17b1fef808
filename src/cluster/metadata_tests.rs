//! Tests of the metadata rules: scenarios a user would recognise (a leader dies, the last ISR
//! member dies, a topic is re-created, a partition moves, a broker is decommissioned). The model
//! tests over random command sequences are in `metadata_model_tests.rs`.

use std::collections::BTreeMap;

use super::*;

fn register(img: &mut MetadataImage, id: NodeId, index: u64) {
    let cmd = MetadataCommand::RegisterBroker {
        id,
        cluster_addr: format!("127.0.0.1:{}", 7080 + id),
        native_addr: Some(format!("127.0.0.1:{}", 7070 + id)),
        kafka_addr: None,
    };
    assert_eq!(img.apply(&cmd, index), ApplyResult::Done);
}

fn unfence(img: &mut MetadataImage, id: NodeId) -> ApplyResult {
    let incarnation = img.brokers[&id].incarnation;
    img.apply(&MetadataCommand::UnfenceBroker { id, incarnation }, 0)
}

fn fence(img: &mut MetadataImage, id: NodeId) -> ApplyResult {
    img.apply(&MetadataCommand::FenceBroker { id }, 0)
}

/// `n` registered, unfenced brokers 1..=n.
fn cluster(n: u64) -> MetadataImage {
    let mut img = MetadataImage::default();
    for id in 1..=n {
        register(&mut img, id, id);
        assert_eq!(unfence(&mut img, id), ApplyResult::Done);
    }
    img
}

fn create(img: &mut MetadataImage, name: &str, id: u8, replicas: Vec<Vec<NodeId>>) -> ApplyResult {
    img.apply(
        &MetadataCommand::CreateTopic {
            name: name.into(),
            id: [id; 16],
            replicas,
            configs: BTreeMap::new(),
        },
        0,
    )
}

/// The partition leader's ISR change to `isr`, at the partition's current epochs.
pub(crate) fn alter(img: &MetadataImage, topic: &str, p: u32, isr: Vec<NodeId>) -> MetadataCommand {
    let rec = img.partition(topic, p).unwrap();
    MetadataCommand::AlterPartition {
        topic: topic.into(),
        partition: p,
        leader: rec.leader.unwrap(),
        leader_epoch: rec.leader_epoch,
        partition_epoch: rec.partition_epoch,
        isr,
    }
}

#[test]
fn a_new_partition_is_led_by_its_first_replica_with_every_live_replica_in_sync() {
    let mut img = cluster(3);
    assert_eq!(create(&mut img, "t", 1, vec![vec![2, 3, 1], vec![3, 1, 2]]), ApplyResult::Done);
    let p0 = img.partition("t", 0).unwrap();
    assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (Some(2), 0, 0));
    assert_eq!(p0.isr, vec![2, 3, 1]);
    assert_eq!(img.partition("t", 1).unwrap().leader, Some(3));
    assert!(img.under_replicated().is_empty());
    assert!(img.offline().is_empty());

    // A fenced first replica: the first live one leads, the fenced one is not in sync.
    assert_eq!(fence(&mut img, 1), ApplyResult::Done);
    assert_eq!(create(&mut img, "u", 2, vec![vec![1, 2, 3]]), ApplyResult::Done);
    let p = img.partition("u", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2, 3]));
    assert_eq!(
        img.under_replicated(),
        vec![("t".to_string(), 0), ("t".into(), 1), ("u".into(), 0)]
    );
}

#[test]
fn fencing_a_leader_elects_the_next_in_sync_replica_with_a_higher_epoch() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    assert_eq!(fence(&mut img, 1), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, Some(2));
    assert_eq!(p.leader_epoch, 1);
    assert_eq!(p.partition_epoch, 1);
    assert_eq!(p.isr, vec![2, 3]);
    assert!(img.brokers[&1].fenced);
    assert_eq!(img.live_brokers().map(|b| b.id).collect::<Vec<_>>(), vec![2, 3]);

    // A follower fenced: out of the ISR, leader kept, only the partition epoch moves.
    assert_eq!(fence(&mut img, 3), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(2), 1, 2));
    assert_eq!(p.isr, vec![2]);
}

#[test]
fn leadership_returns_to_the_preferred_replica_once_it_is_back_in_sync() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3], vec![2, 3, 1]]);
    assert!(img.preferred_elections().is_empty(), "a new topic is led by its preferred replicas");
    fence(&mut img, 1);
    assert_eq!(img.partition("t", 0).unwrap().leader, Some(2));
    let elect = MetadataCommand::ElectPreferredLeaders { partitions: vec![("t".into(), 0)] };
    assert!(
        matches!(img.apply(&elect, 0), ApplyResult::Rejected(_)),
        "broker 1 is fenced: nothing moves"
    );
    // Back, but not in sync yet: still nothing.
    unfence(&mut img, 1);
    assert!(img.preferred_elections().is_empty());
    assert!(matches!(img.apply(&elect, 0), ApplyResult::Rejected(_)));
    // Caught up: the leader (2) takes it back into the ISR; now it is electable.
    let grow = alter(&img, "t", 0, vec![1, 2, 3]);
    assert_eq!(img.apply(&grow, 0), ApplyResult::Done);
    assert_eq!(img.preferred_elections(), vec![("t".to_string(), 0)]);
    let before = img.partition("t", 0).unwrap().clone();
    assert_eq!(img.apply(&elect, 0), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, Some(1));
    assert_eq!(p.leader_epoch, before.leader_epoch + 1);
    assert_eq!(p.partition_epoch, before.partition_epoch + 1);
    assert_eq!(p.isr, before.isr, "the ISR is unchanged");
    assert!(img.preferred_elections().is_empty());
    assert!(matches!(img.apply(&elect, 0), ApplyResult::Rejected(_)), "already preferred");
}

#[test]
fn a_reassignment_adds_replicas_and_drops_the_old_ones_once_the_new_are_in_sync() {
    let mut img = cluster(4);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    let move_to = |target: Vec<NodeId>| MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        target,
        throttle_bytes_per_s: None,
    };
    assert!(matches!(img.apply(&move_to(vec![2, 3, 4]), 0), ApplyResult::Done));
    let p = img.partition("t", 0).unwrap().clone();
    assert_eq!(p.replicas, vec![2, 3, 4, 1], "the target, then the replicas it drops");
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
    assert_eq!(p.leader, Some(1), "the old leader leads until the new replicas are in sync");
    assert!(
        matches!(img.apply(&move_to(vec![1, 2, 4]), 0), ApplyResult::Rejected(_)),
        "one reassignment at a time"
    );
    assert_eq!(img.reassignments(), vec![("t".to_string(), 0)]);

    // Broker 4 catches up and the leader takes it into the ISR: the move completes.
    assert_eq!(img.apply(&alter(&img, "t", 0, vec![1, 2, 3, 4]), 0), ApplyResult::Done);
    let q = img.partition("t", 0).unwrap().clone();
    assert_eq!(q.replicas, vec![2, 3, 4]);
    assert_eq!(q.isr, vec![2, 3, 4]);
    assert!(q.adding.is_empty() && q.removing.is_empty());
    assert_eq!(q.leader, Some(2), "the leader was dropped: the first in-sync target replica leads");
    assert_eq!(q.leader_epoch, p.leader_epoch + 1);
    assert!(img.reassignments().is_empty());

    // A move can be cancelled: the added replica goes again, the old set stays.
    assert!(matches!(img.apply(&move_to(vec![1, 3, 4]), 0), ApplyResult::Done));
    let cancel = MetadataCommand::CancelReassignment { topic: "t".into(), partition: 0 };
    assert_eq!(img.apply(&cancel, 0), ApplyResult::Done);
    let r = img.partition("t", 0).unwrap();
    assert_eq!(r.replicas, vec![2, 3, 4], "the replicas before the move, in their order");
    assert!(!r.reassigning());
    assert!(matches!(img.apply(&cancel, 0), ApplyResult::Rejected(_)), "nothing to cancel");

    // Unknown brokers and duplicates are refused, and change nothing.
    let before = img.clone();
    assert!(matches!(img.apply(&move_to(vec![3, 9]), 0), ApplyResult::Rejected(_)));
    assert!(matches!(img.apply(&move_to(vec![3, 3]), 0), ApplyResult::Rejected(_)));
    assert!(matches!(img.apply(&move_to(vec![]), 0), ApplyResult::Rejected(_)));
    assert_eq!(img, before);
}

/// A move counts the replicas the partition had, as Kafka does: the single replica of a
/// partition moving elsewhere is not under-replicated while the new one copies, and partitions
/// added meanwhile get the replication factor the topic is going to.
#[test]
fn a_move_under_way_keeps_the_replication_factor_it_had() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1]]);
    let start = MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        target: vec![2, 3],
        throttle_bytes_per_s: None,
    };
    assert_eq!(img.apply(&start, 0), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.replicas.len(), p.replication_factor(), p.target().len()), (3, 1, 2));
    assert!(img.under_replicated().is_empty(), "its one replica is in sync");
    // A new partition needs the target's two replicas: one is refused.
    let one = MetadataCommand::AddPartitions { name: "t".into(), replicas: vec![vec![3]] };
    assert!(matches!(img.apply(&one, 0), ApplyResult::Rejected(_)));
    let two = MetadataCommand::AddPartitions { name: "t".into(), replicas: vec![vec![3, 1]] };
    assert_eq!(img.apply(&two, 0), ApplyResult::Done);
}

/// An operator starts two moves under a throttle: it stays while either copies, and goes with the
/// end of the last one (completed or cancelled), so no later catch-up runs throttled.
#[test]
fn the_reassignment_throttle_lasts_exactly_as_long_as_the_moves() {
    let mut img = cluster(4);
    create(&mut img, "t", 1, vec![vec![1, 2, 3], vec![1, 2, 3]]);
    let move_to = |partition: u32, target: Vec<NodeId>, throttle: Option<u64>| {
        MetadataCommand::ReassignPartition {
            topic: "t".into(),
            partition,
            target,
            throttle_bytes_per_s: throttle,
        }
    };
    let set = |bytes_per_s| MetadataCommand::SetReassignmentThrottle { bytes_per_s };

    // Nothing moves: a throttle would never be lifted, so it is refused, and so is zero.
    assert!(matches!(img.apply(&set(Some(50_000_000)), 0), ApplyResult::Rejected(_)));
    let before = img.clone();
    let r = img.apply(&move_to(0, vec![2, 3, 4], Some(0)), 0);
    assert!(matches!(r, ApplyResult::Rejected(ref why) if why.contains("0 bytes/s")), "{r:?}");
    assert_eq!(img, before, "a refused move changes nothing");

    // The first move starts with the throttle; the second (no throttle given) keeps it.
    assert_eq!(img.apply(&move_to(0, vec![2, 3, 4], Some(50_000_000)), 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, Some(50_000_000));
    assert_eq!(img.apply(&move_to(1, vec![4, 2, 3], None), 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, Some(50_000_000));
    assert!(matches!(img.apply(&set(Some(0)), 0), ApplyResult::Rejected(_)), "zero refused");
    assert_eq!(img.apply(&set(Some(20_000_000)), 0), ApplyResult::Done, "changed while moving");
    assert_eq!(img.reassignment_throttle, Some(20_000_000));

    // Partition 0's new replica catches up: its move ends, partition 1's still copies.
    assert_eq!(img.apply(&alter(&img, "t", 0, vec![1, 2, 3, 4]), 0), ApplyResult::Done);
    assert!(!img.partition("t", 0).unwrap().reassigning());
    assert_eq!(img.reassignment_throttle, Some(20_000_000), "kept while a move runs");

    // Cancelling the last move lifts it.
    let cancel = MetadataCommand::CancelReassignment { topic: "t".into(), partition: 1 };
    assert_eq!(img.apply(&cancel, 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, None, "gone with the last move");

    // A move that completes at once (a reorder) leaves no throttle behind; one that finishes
    // by catching up takes it along.
    assert_eq!(img.apply(&move_to(0, vec![3, 2, 4], Some(1_000)), 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, None, "nothing to copy: no throttle");
    assert_eq!(img.apply(&move_to(0, vec![3, 2, 1], Some(1_000)), 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, Some(1_000));
    assert_eq!(img.apply(&alter(&img, "t", 0, vec![1, 2, 3, 4]), 0), ApplyResult::Done);
    assert_eq!(img.reassignment_throttle, None, "gone once the last move completed");
    // Lifting it by hand is always accepted.
    assert_eq!(img.apply(&set(None), 0), ApplyResult::Done);
}

#[test]
fn an_image_and_a_move_from_before_the_throttle_still_load() {
    let mut img = cluster(1);
    create(&mut img, "t", 1, vec![vec![1]]);
    let json = serde_json::to_string(&img).expect("encodes");
    assert!(!json.contains("throttle"), "no throttle: nothing written");
    let back: MetadataImage = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back.reassignment_throttle, None);
    // A command in an older raft log, written before moves carried a throttle.
    let old = r#"{"ReassignPartition":{"topic":"t","partition":0,"target":[1]}}"#;
    let cmd: MetadataCommand = serde_json::from_str(old).expect("decodes");
    assert_eq!(
        cmd,
        MetadataCommand::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target: vec![1],
            throttle_bytes_per_s: None,
        }
    );
}

#[test]
fn a_decommissioned_broker_takes_no_new_replica_and_is_fenced_for_good_once_emptied() {
    let mut img = cluster(4);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    let decommission = MetadataCommand::DecommissionBroker { id: 1 };
    assert_eq!(img.apply(&decommission, 0), ApplyResult::Done);
    assert!(!img.brokers[&1].fenced, "it still holds a replica: it keeps serving it");
    assert_eq!(img.placeable_brokers().collect::<Vec<_>>(), vec![2, 3, 4]);
    assert!(
        assign_replicas(&img, 4, 3, 0).unwrap().iter().all(|r| !r.contains(&1)),
        "new topics are placed on the others"
    );
    assert!(matches!(create(&mut img, "u", 2, vec![vec![1, 2]]), ApplyResult::Rejected(_)));
    let onto = |target: Vec<NodeId>| MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        target,
        throttle_bytes_per_s: None,
    };

    // Its replica moves to broker 4; once 4 is in sync the move ends and 1 is fenced.
    assert_eq!(img.apply(&onto(vec![4, 2, 3]), 0), ApplyResult::Done);
    assert_eq!(img.apply(&alter(&img, "t", 0, vec![1, 2, 3, 4]), 0), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.leader), (vec![4, 2, 3], Some(4)));
    assert!(img.brokers[&1].fenced, "emptied: fenced");

    // A restart does not bring it back; its heartbeats do not unfence it.
    register(&mut img, 1, 50);
    assert!(img.brokers[&1].decommissioned && img.brokers[&1].fenced);
    assert!(matches!(unfence(&mut img, 1), ApplyResult::Rejected(_)));
    assert!(matches!(img.apply(&onto(vec![1, 2, 3]), 0), ApplyResult::Rejected(_)));

    // Taken back, it is unfenced as any broker and takes replicas again.
    let recommission = MetadataCommand::RecommissionBroker { id: 1 };
    assert_eq!(img.apply(&recommission, 0), ApplyResult::Done);
    assert_eq!(unfence(&mut img, 1), ApplyResult::Done);
    assert_eq!(img.placeable_brokers().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(matches!(img.apply(&recommission, 0), ApplyResult::Rejected(_)));
}

#[test]
fn a_broker_a_move_is_adding_cannot_be_decommissioned_and_an_empty_one_is_fenced_at_once() {
    let mut img = cluster(4);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    let onto = MetadataCommand::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        target: vec![1, 2, 4],
        throttle_bytes_per_s: None,
    };
    assert_eq!(img.apply(&onto, 0), ApplyResult::Done);
    let before = img.clone();
    let refused = img.apply(&MetadataCommand::DecommissionBroker { id: 4 }, 0);
    assert!(matches!(&refused, ApplyResult::Rejected(r) if r.contains("t-0")), "{refused:?}");
    assert_eq!(img, before);
    assert!(matches!(
        img.apply(&MetadataCommand::DecommissionBroker { id: 9 }, 0),
        ApplyResult::Rejected(_)
    ));

    let mut empty = cluster(3);
    assert_eq!(empty.apply(&MetadataCommand::DecommissionBroker { id: 2 }, 0), ApplyResult::Done);
    assert!(empty.brokers[&2].fenced, "it holds nothing: fenced at once");
}

#[test]
fn an_image_from_before_decommissions_still_loads() {
    let img = cluster(2);
    let mut json: serde_json::Value = serde_json::to_value(&img).unwrap();
    for b in json["brokers"].as_object_mut().unwrap().values_mut() {
        b.as_object_mut().unwrap().remove("decommissioned");
    }
    let back: MetadataImage = serde_json::from_value(json).unwrap();
    assert_eq!(back, img);
}

#[test]
fn an_image_from_before_reassignments_still_loads() {
    let mut img = cluster(1);
    create(&mut img, "t", 1, vec![vec![1]]);
    let json = serde_json::to_string(&img).expect("encodes");
    assert!(!json.contains("adding"), "nothing under way: nothing written");
    let back: MetadataImage = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back, img);
}

#[test]
fn the_last_in_sync_replica_dying_leaves_the_partition_offline_until_it_returns() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    // The ISR shrinks to the leader alone (followers lagging).
    let cmd = alter(&img, "t", 0, vec![1]);
    assert_eq!(img.apply(&cmd, 0), ApplyResult::Done);
    assert_eq!(fence(&mut img, 1), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap().clone();
    assert_eq!(p.leader, None);
    assert_eq!(p.isr, vec![1], "the ISR is kept: no unclean election");
    assert_eq!(p.leader_epoch, 1);
    assert_eq!(img.offline(), vec![("t".to_string(), 0)]);

    // The out-of-sync replicas stay followers of nobody: no unclean election.
    assert_eq!(fence(&mut img, 2), ApplyResult::Done);
    assert_eq!(unfence(&mut img, 2), ApplyResult::Done);
    assert_eq!(img.partition("t", 0).unwrap().leader, None);

    // The last in-sync replica comes back: it leads again, with a higher epoch.
    assert_eq!(unfence(&mut img, 1), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
    assert!(img.offline().is_empty());
    assert_eq!(img.under_replicated(), vec![("t".to_string(), 0)]);
}

#[test]
fn a_re_created_topic_starts_above_every_epoch_its_name_ever_had() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3], vec![2, 3, 1]]);
    fence(&mut img, 1);
    unfence(&mut img, 1);
    fence(&mut img, 2);
    assert_eq!(img.partition("t", 0).unwrap().leader_epoch, 2);
    assert_eq!(img.epoch_floor["t"], 2);
    assert_eq!(img.apply(&MetadataCommand::DeleteTopic { name: "t".into() }, 0), ApplyResult::Done);
    assert!(img.partition("t", 0).is_none());
    unfence(&mut img, 2);
    assert_eq!(create(&mut img, "t", 2, vec![vec![1, 2, 3]]), ApplyResult::Done);
    assert_eq!(img.partition("t", 0).unwrap().leader_epoch, 3);
    // Added partitions start above the floor too.
    let add = MetadataCommand::AddPartitions { name: "t".into(), replicas: vec![vec![3, 1, 2]] };
    assert_eq!(img.apply(&add, 0), ApplyResult::Done);
    let p1 = img.partition("t", 1).unwrap();
    assert_eq!((p1.leader, p1.leader_epoch), (Some(3), 4));
}

#[test]
fn alter_partition_is_a_compare_and_set_on_leader_and_epochs() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    let shrink = alter(&img, "t", 0, vec![1, 2]);
    assert_eq!(img.apply(&shrink, 0), ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.isr.clone(), p.partition_epoch, p.leader_epoch), (vec![1, 2], 1, 0));

    // The same request again carries a stale partition epoch.
    let r = img.apply(&shrink, 0);
    assert!(matches!(&r, ApplyResult::Rejected(m) if m.contains("partition epoch")), "{r:?}");

    // A deposed leader's request is refused.
    let stale = alter(&img, "t", 0, vec![1]);
    fence(&mut img, 1);
    let r = img.apply(&stale, 0);
    assert!(matches!(r, ApplyResult::Rejected(_)), "{r:?}");
    unfence(&mut img, 1);

    let bad = |isr: Vec<NodeId>, img: &mut MetadataImage| {
        let before = img.clone();
        let cmd = alter(img, "t", 0, isr);
        let r = img.apply(&cmd, 0);
        assert_eq!(*img, before, "a rejected command changes nothing");
        r
    };
    // Leader is now 2, ISR [2].
    assert!(
        matches!(bad(vec![3], &mut img), ApplyResult::Rejected(m) if m.contains("lacks the leader"))
    );
    assert!(matches!(bad(vec![2, 4], &mut img), ApplyResult::Rejected(_)));
    assert!(matches!(bad(vec![2, 2], &mut img), ApplyResult::Rejected(_)));
    assert!(matches!(bad(vec![], &mut img), ApplyResult::Rejected(_)));
    fence(&mut img, 3);
    assert!(matches!(bad(vec![2, 3], &mut img), ApplyResult::Rejected(m) if m.contains("fenced")));
    let grow = alter(&img, "t", 0, vec![2, 1]);
    assert_eq!(img.apply(&grow, 0), ApplyResult::Done);
}

#[test]
fn create_topic_refuses_bad_names_and_replica_lists() {
    let mut img = cluster(3);
    register(&mut img, 4, 10); // registered, still fenced
    assert_eq!(create(&mut img, "t", 1, vec![vec![1, 2]]), ApplyResult::Done);
    let before = img.clone();
    for (name, id, replicas) in [
        ("t", 2, vec![vec![1, 2]]),          // existing name
        ("u", 1, vec![vec![1, 2]]),          // existing id
        ("u", 2, vec![vec![1, 9]]),          // unknown broker
        ("u", 2, vec![vec![1, 1]]),          // duplicate
        ("u", 2, vec![vec![]]),              // empty list
        ("u", 2, vec![]),                    // no partitions
        ("u", 2, vec![vec![1, 2], vec![3]]), // uneven replication factor
        ("u", 2, vec![vec![4]]),             // every replica fenced
        ("", 2, vec![vec![1]]),              // empty name
    ] {
        let r = create(&mut img, name, id, replicas.clone());
        assert!(matches!(r, ApplyResult::Rejected(_)), "{name} {replicas:?}: {r:?}");
    }
    let add = MetadataCommand::AddPartitions { name: "t".into(), replicas: vec![vec![3]] };
    assert!(matches!(img.apply(&add, 0), ApplyResult::Rejected(_)), "rf must match the topic's");
    assert_eq!(img, before);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut img = MetadataImage::default();
    let alloc = |img: &mut MetadataImage, count| {
        img.apply(&MetadataCommand::AllocateProducerIds { count }, 0)
    };
    assert_eq!(alloc(&mut img, 1000), ApplyResult::ProducerIds { first: 0 });
    assert_eq!(alloc(&mut img, 10), ApplyResult::ProducerIds { first: 1000 });
    assert!(matches!(alloc(&mut img, 0), ApplyResult::Rejected(_)));
    assert!(matches!(alloc(&mut img, i64::MAX), ApplyResult::Rejected(_)));
    assert_eq!(alloc(&mut img, 1), ApplyResult::ProducerIds { first: 1010 });
}

#[test]
fn committed_offsets_are_kept_per_group_and_dropped_with_their_topic_or_group() {
    let mut img = cluster(1);
    create(&mut img, "a", 1, vec![vec![1], vec![1]]);
    create(&mut img, "b", 2, vec![vec![1]]);
    let off = |topic: &str, partition, offset| GroupOffset {
        topic: topic.into(),
        partition,
        offset,
        metadata: None,
    };
    let commit =
        |group: &str, offsets| MetadataCommand::CommitOffsets { group: group.into(), offsets };
    assert_eq!(img.apply(&commit("g", vec![off("b", 0, 5), off("a", 1, 7)]), 0), ApplyResult::Done);
    assert_eq!(img.apply(&commit("g", vec![off("a", 1, 9), off("a", 0, 1)]), 0), ApplyResult::Done);
    assert_eq!(img.committed_offset("g", "a", 1).map(|o| o.offset), Some(9));
    assert_eq!(img.group_offsets["g"].len(), 3);
    let r = img.apply(&commit("g", vec![off("a", 2, 1)]), 0);
    assert!(matches!(r, ApplyResult::Rejected(_)), "unknown partition: {r:?}");
    assert_eq!(img.committed_offset("g", "a", 0).map(|o| o.offset), Some(1));

    img.apply(&commit("h", vec![off("a", 0, 3)]), 0);
    img.apply(&MetadataCommand::DeleteTopic { name: "a".into() }, 0);
    assert_eq!(img.group_offsets["g"], vec![off("b", 0, 5)]);
    assert!(!img.group_offsets.contains_key("h"), "a group left with no offsets is gone");
    assert_eq!(
        img.apply(&MetadataCommand::DeleteGroup { group: "g".into() }, 0),
        ApplyResult::Done
    );
    assert!(img.group_offsets.is_empty());
    let r = img.apply(&MetadataCommand::DeleteGroup { group: "g".into() }, 0);
    assert!(matches!(r, ApplyResult::Rejected(_)));
}

pub(super) fn member(id: &str, assignment: &[u8]) -> GroupMemberRecord {
    GroupMemberRecord {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 60_000,
        metadata: b"sub".to_vec(),
        assignment: assignment.to_vec(),
    }
}

pub(super) fn membership(
    generation: i32,
    leader: &str,
    members: Vec<GroupMemberRecord>,
) -> GroupMembership {
    GroupMembership {
        generation,
        protocol_type: "consumer".into(),
        protocol: "range".into(),
        leader: leader.into(),
        members,
    }
}

fn record(img: &mut MetadataImage, group: &str, m: GroupMembership) -> ApplyResult {
    img.apply(&MetadataCommand::RecordGroup { group: group.into(), membership: m }, 0)
}

#[test]
fn a_group_membership_is_recorded_per_generation_and_never_goes_back() {
    let mut img = cluster(3);
    let two = membership(2, "a", vec![member("a", b"p0"), member("b", b"p1p2")]);
    assert_eq!(record(&mut img, "g", two.clone()), ApplyResult::Done);
    assert_eq!(img.groups["g"], two);

    // A coordinator that lost the group cannot take it back to an older generation.
    let r = record(&mut img, "g", membership(1, "a", vec![member("a", b"all")]));
    assert!(matches!(r, ApplyResult::Rejected(_)), "older generation: {r:?}");
    assert_eq!(img.groups["g"], two);

    // The next generation replaces it; an emptied group keeps only its generation.
    let three = membership(3, "b", vec![member("b", b"p0p1p2")]);
    assert_eq!(record(&mut img, "g", three.clone()), ApplyResult::Done);
    assert_eq!(img.groups["g"], three);
    let empty = membership(4, "", vec![]);
    assert_eq!(record(&mut img, "g", empty.clone()), ApplyResult::Done);
    assert_eq!(img.groups["g"], empty);
}

#[test]
fn a_malformed_membership_is_refused_and_changes_nothing() {
    let mut img = cluster(1);
    let before = img.clone();
    let bad = [
        ("", membership(1, "a", vec![member("a", b"")])),
        ("g", membership(-1, "a", vec![member("a", b"")])),
        ("g", membership(1, "z", vec![member("a", b"")])),
        ("g", membership(1, "a", vec![member("b", b""), member("a", b"")])),
        ("g", membership(1, "a", vec![member("a", b""), member("a", b"")])),
        ("g", membership(1, "", vec![member("", b"")])),
        (
            "g",
            membership(
                1,
                "m0",
                (0..=MAX_RECORDED_MEMBERS).map(|i| member(&format!("m{i:05}"), b"")).collect(),
            ),
        ),
    ];
    for (group, m) in bad {
        let r = record(&mut img, group, m.clone());
        assert!(matches!(r, ApplyResult::Rejected(_)), "{group:?} {:?}: {r:?}", m.leader);
    }
    assert_eq!(img, before);
}

#[test]
fn deleting_a_group_removes_its_membership_and_offsets() {
    let mut img = cluster(1);
    create(&mut img, "t", 1, vec![vec![1]]);
    assert_eq!(
        record(&mut img, "g", membership(1, "a", vec![member("a", b"")])),
        ApplyResult::Done
    );
    assert_eq!(
        img.apply(&MetadataCommand::DeleteGroup { group: "g".into() }, 0),
        ApplyResult::Done,
        "a group with a membership and no offsets can be deleted"
    );
    assert!(img.groups.is_empty());
    // Re-created, it starts again from generation 1.
    assert_eq!(
        record(&mut img, "g", membership(1, "a", vec![member("a", b"")])),
        ApplyResult::Done
    );
}

#[test]
fn deleting_some_offsets_keeps_the_others() {
    let mut img = cluster(1);
    create(&mut img, "t", 1, vec![vec![1], vec![1]]);
    let off =
        |partition, offset| GroupOffset { topic: "t".into(), partition, offset, metadata: None };
    let commit =
        MetadataCommand::CommitOffsets { group: "g".into(), offsets: vec![off(0, 5), off(1, 7)] };
    assert_eq!(img.apply(&commit, 0), ApplyResult::Done);
    let delete = |partitions: Vec<(String, u32)>| MetadataCommand::DeleteOffsets {
        group: "g".into(),
        partitions,
    };
    assert_eq!(img.apply(&delete(vec![("t".into(), 0), ("u".into(), 3)]), 0), ApplyResult::Done);
    assert_eq!(img.group_offsets["g"], vec![off(1, 7)]);
    assert_eq!(img.apply(&delete(vec![("t".into(), 1)]), 0), ApplyResult::Done);
    assert!(img.group_offsets.is_empty(), "a group left with no offsets is gone");
    assert!(matches!(img.apply(&delete(vec![]), 0), ApplyResult::Rejected(_)));
}

#[test]
fn an_image_from_before_group_memberships_still_loads() {
    let mut img = cluster(1);
    create(&mut img, "t", 1, vec![vec![1]]);
    let mut json = serde_json::to_value(&img).expect("encodes");
    json.as_object_mut().expect("an object").remove("groups");
    let back: MetadataImage = serde_json::from_value(json).expect("decodes without groups");
    assert_eq!(back, img);
}

#[test]
fn a_restarted_broker_registers_fenced_with_a_new_incarnation_and_loses_its_leadership() {
    let mut img = cluster(3);
    create(&mut img, "t", 1, vec![vec![1, 2, 3]]);
    let old = img.brokers[&1].incarnation;
    register(&mut img, 1, 50);
    let b = &img.brokers[&1];
    assert_eq!((b.incarnation, b.fenced), (50, true));
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (Some(2), vec![2, 3], 1));
    // Messages from the old incarnation change nothing.
    let r = img.apply(&MetadataCommand::UnfenceBroker { id: 1, incarnation: old }, 0);
    assert!(matches!(r, ApplyResult::Rejected(_)));
    let r = img.apply(&MetadataCommand::ShutdownBroker { id: 2, incarnation: 99 }, 0);
    assert!(matches!(r, ApplyResult::Rejected(_)));
    assert_eq!(unfence(&mut img, 1), ApplyResult::Done);
    // Not in the ISR: it follows until the leader lets it back in.
    assert_eq!(img.partition("t", 0).unwrap().leader, Some(2));

    // Controlled shutdown of the leader moves leadership like a fence.
    let inc = img.brokers[&2].incarnation;
    let r = img.apply(&MetadataCommand::ShutdownBroker { id: 2, incarnation: inc }, 0);
    assert_eq!(r, ApplyResult::Done);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (Some(3), vec![3], 2));
    assert!(img.brokers[&2].fenced);
}

#[test]
fn replicas_are_spread_round_robin_over_live_brokers() {
    let mut img = cluster(4);
    fence(&mut img, 4);
    let a = assign_replicas(&img, 6, 3, 0).unwrap();
    assert_eq!(a.len(), 6);
    for list in &a {
        let mut s = list.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 3, "{list:?}");
        assert!(!list.contains(&4), "fenced broker 4 got a replica: {list:?}");
    }
    let leaders: Vec<_> = a.iter().map(|l| l[0]).collect();
    assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(assign_replicas(&img, 1, 1, 5).unwrap(), vec![vec![3]]);
    assert!(assign_replicas(&img, 3, 4, 0).is_err());
    assert!(assign_replicas(&img, 3, 0, 0).is_err());
    assert!(assign_replicas(&MetadataImage::default(), 1, 1, 0).is_err());
    assert_eq!(create(&mut img, "t", 1, a), ApplyResult::Done);
}
