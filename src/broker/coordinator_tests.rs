//! The group coordinator's state machine: joins, syncs, heartbeats, leaves and rebalances,
//! driven with explicit instants.

use super::*;

const G: &str = "g";

fn params(member: &str, v4: bool) -> JoinParams {
    JoinParams {
        group_id: G.into(),
        member_id: member.into(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        group_instance_id: None,
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: v4,
    }
}

fn now_reply<T: std::fmt::Debug>(r: Reply<T>) -> T {
    match r {
        Reply::Now(t) => t,
        Reply::Later(_) => panic!("expected an immediate reply"),
    }
}

fn ready<T>(r: &mut Reply<T>) -> Option<T> {
    match r {
        Reply::Now(_) => panic!("expected a deferred reply"),
        Reply::Later(rx) => rx.try_recv().ok(),
    }
}

/// Joins a brand-new member through the v4 MEMBER_ID_REQUIRED handshake.
fn join_new(c: &mut Coordinator, t: Instant) -> (String, Reply<JoinOutcome>) {
    let first = now_reply(c.join(t, params("", true)));
    assert_eq!(first.error_code, 79);
    let id = first.member_id.clone();
    assert!(!id.is_empty());
    (id.clone(), c.join(t, params(&id, true)))
}

#[test]
fn pending_member_ids_are_capped_and_expire_after_the_session_timeout() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    // One group: pending ids count towards the group's size.
    for _ in 0..MAX_MEMBERS_PER_GROUP {
        assert_eq!(now_reply(c.join(t, params("", true))).error_code, 79);
    }
    let full = now_reply(c.join(t, params("", true)));
    assert_eq!(full.error_code, code(GroupError::GroupMaxSizeReached));
    assert!(full.member_id.is_empty(), "a refused join hands out no id");
    assert_eq!(c.pending_count(), MAX_MEMBERS_PER_GROUP);
    // Many groups: the total is capped.
    let mut refused = 0;
    for i in 0..MAX_PENDING_MEMBERS * 2 {
        let mut p = params("", true);
        p.group_id = format!("g{}", i % 5_000);
        let out = now_reply(c.join(t, p));
        if out.error_code == code(GroupError::GroupMaxSizeReached) {
            refused += 1;
        } else {
            assert_eq!(out.error_code, 79);
        }
    }
    assert_eq!(c.pending_count(), MAX_PENDING_MEMBERS);
    assert_eq!(refused, MAX_PENDING_MEMBERS + MAX_MEMBERS_PER_GROUP);
    // A tick before the session timeout keeps them; one after it frees them all.
    c.tick(t + Duration::from_secs(9));
    assert_eq!(c.pending_count(), MAX_PENDING_MEMBERS);
    c.tick(t + Duration::from_secs(11));
    assert_eq!(c.pending_count(), 0);
    assert!(c.groups.is_empty(), "groups holding only expired ids are forgotten");
    // And a new member can join again.
    let (_, mut j) = join_new(&mut c, t + Duration::from_secs(12));
    assert_eq!(ready(&mut j).expect("joins").error_code, 0);
}

#[test]
fn single_member_joins_syncs_and_heartbeats() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (id, mut j) = join_new(&mut c, t);
    let out = ready(&mut j).expect("a lone member completes the round at once");
    assert_eq!(out.error_code, 0);
    assert_eq!(out.generation_id, 1);
    assert_eq!(out.leader, id);
    assert_eq!(out.protocol_name.as_deref(), Some("range"));
    assert_eq!(out.members, vec![(id.clone(), Bytes::from_static(b"meta"))]);
    let mut s = c.sync(t, G, 1, &id, vec![(id.clone(), Bytes::from_static(b"all"))]);
    assert_eq!(ready(&mut s).unwrap().assignment, Bytes::from_static(b"all"));
    assert_eq!(c.heartbeat(t, G, 1, &id), 0);
    assert_eq!(c.state(G).unwrap().0, GroupState::Stable);
    assert_eq!(c.members(G), vec![id.clone()], "the console sees the live member");
    assert!(id.starts_with("c-"), "member ids carry the client id: {id}");
    assert!(c.members("other").is_empty());
}

#[test]
fn old_clients_get_an_id_without_the_handshake() {
    let mut c = Coordinator::new();
    let mut j = c.join(Instant::now(), params("", false));
    let out = ready(&mut j).unwrap();
    assert_eq!(out.error_code, 0);
    assert!(!out.member_id.is_empty());
}

#[test]
fn unknown_member_and_wrong_generation_are_refused() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    assert_eq!(now_reply(c.join(t, params("ghost", true))).error_code, 25);
    let (id, mut j) = join_new(&mut c, t);
    ready(&mut j).unwrap();
    assert_eq!(c.heartbeat(t, G, 7, &id), 22);
    assert_eq!(c.heartbeat(t, G, 1, "ghost"), 25);
    assert_eq!(now_reply(c.sync(t, G, 9, &id, vec![])).error_code, 22);
    assert_eq!(c.check_commit(t, G, 9, &id), 22);
    assert_eq!(c.check_commit(t, G, 1, "ghost"), 25);
}

#[test]
fn second_member_triggers_a_rebalance_both_get_the_new_generation() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let mut sa = c.sync(t, G, 1, &a, vec![(a.clone(), Bytes::from_static(b"p0p1p2"))]);
    ready(&mut sa).unwrap();

    let (b, mut jb) = join_new(&mut c, t);
    assert!(ready(&mut jb).is_none(), "b waits until a rejoins");
    assert_eq!(c.heartbeat(t, G, 1, &a), 27, "a learns of the rebalance");
    // a may still commit what it processed in the old generation before rejoining.
    assert_eq!(c.check_commit(t, G, 1, &a), 0);
    let mut ja2 = c.join(t, params(&a, true));
    let oa = ready(&mut ja2).unwrap();
    let ob = ready(&mut jb).unwrap();
    assert_eq!((oa.generation_id, ob.generation_id), (2, 2));
    assert_eq!(oa.leader, a, "the leader keeps its role");
    assert_eq!(oa.members.len(), 2);
    assert!(ob.members.is_empty(), "only the leader sees the members");

    let mut sb = c.sync(t, G, 2, &b, vec![]);
    assert!(ready(&mut sb).is_none(), "followers wait for the leader's assignment");
    assert_eq!(c.check_commit(t, G, 2, &b), 27);
    let mut sa = c.sync(
        t,
        G,
        2,
        &a,
        vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1p2"))],
    );
    assert_eq!(ready(&mut sa).unwrap().assignment, Bytes::from_static(b"p0"));
    assert_eq!(ready(&mut sb).unwrap().assignment, Bytes::from_static(b"p1p2"));
    assert_eq!(c.heartbeat(t, G, 1, &a), 22, "the old generation is gone");
    assert_eq!(c.heartbeat(t, G, 2, &b), 0);
}

#[test]
fn leave_hands_partitions_to_the_survivor() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let (b, mut jb) = join_new(&mut c, t);
    let mut ja = c.join(t, params(&a, true));
    ready(&mut ja).unwrap();
    ready(&mut jb).unwrap();
    let _sb = c.sync(t, G, 2, &b, vec![]);
    let _sa = c.sync(t, G, 2, &a, vec![]);

    assert_eq!(c.leave(t, G, std::slice::from_ref(&a)), vec![0]);
    assert_eq!(c.heartbeat(t, G, 2, &b), 27);
    let mut jb = c.join(t, params(&b, true));
    let out = ready(&mut jb).unwrap();
    assert_eq!(out.generation_id, 3);
    assert_eq!(out.leader, b, "the survivor leads");
    assert_eq!(out.members.len(), 1);
    assert_eq!(c.leave(t, G, &["nobody".to_string()]), vec![25]);
}

#[test]
fn a_silent_member_expires_and_the_group_rebalances_without_it() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let (b, mut jb) = join_new(&mut c, t);
    let mut ja = c.join(t, params(&a, true));
    ready(&mut ja).unwrap();
    ready(&mut jb).unwrap();
    let mut sb = c.sync(t, G, 2, &b, vec![]);
    let mut sa = c.sync(t, G, 2, &a, vec![]);
    ready(&mut sa).unwrap();
    ready(&mut sb).unwrap();

    // b keeps heartbeating; a vanishes without leaving.
    let t5 = t + Duration::from_secs(5);
    assert_eq!(c.heartbeat(t5, G, 2, &b), 0);
    c.tick(t + Duration::from_secs(11));
    assert_eq!(c.state(G).unwrap().2, 1, "a was removed");
    assert_eq!(c.heartbeat(t + Duration::from_secs(11), G, 2, &b), 27);
    assert_eq!(c.heartbeat(t + Duration::from_secs(11), G, 2, &a), 25);
    let mut jb = c.join(t + Duration::from_secs(12), params(&b, true));
    assert_eq!(ready(&mut jb).unwrap().generation_id, 3);
}

#[test]
fn a_group_whose_last_member_expires_is_reported_emptied_at_its_next_generation() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let mut sa = c.sync(t, G, 1, &a, vec![]);
    ready(&mut sa).unwrap();
    assert!(c.tick(t + Duration::from_secs(5)).is_empty(), "a is still within its session");
    let emptied = c.tick(t + Duration::from_secs(11));
    assert_eq!(emptied.len(), 1, "a expired and the group emptied");
    let (group, settled) = &emptied[0];
    assert_eq!(group, G);
    assert_eq!(settled.generation, 2);
    assert!(settled.members.is_empty());
    assert!(c.tick(t + Duration::from_secs(12)).is_empty(), "reported once");
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_deadline() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let mut sa = c.sync(t, G, 1, &a, vec![]);
    ready(&mut sa).unwrap();
    let (_b, mut jb) = join_new(&mut c, t);
    // a keeps heartbeating (so its session is alive) but never rejoins.
    for s in 1..30 {
        assert_eq!(c.heartbeat(t + Duration::from_secs(s), G, 1, &a), 27);
        c.tick(t + Duration::from_secs(s));
    }
    assert!(ready(&mut jb).is_none());
    c.tick(t + Duration::from_secs(31));
    let out = ready(&mut jb).unwrap();
    assert_eq!(out.error_code, 0);
    assert_eq!(out.members.len(), 1);
    assert_eq!(c.heartbeat(t + Duration::from_secs(31), G, 1, &a), 25);
}

#[test]
fn a_rebalance_during_sync_tells_waiting_followers() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let (b, mut jb) = join_new(&mut c, t);
    let mut ja = c.join(t, params(&a, true));
    ready(&mut ja).unwrap();
    ready(&mut jb).unwrap();
    let mut sb = c.sync(t, G, 2, &b, vec![]);
    // A third member arrives before the leader assigned anything.
    let (_c3, _j3) = join_new(&mut c, t);
    assert_eq!(ready(&mut sb).unwrap().error_code, 27);
}

#[test]
fn incompatible_protocols_are_refused() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (_a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let mut p = params("", false);
    p.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(now_reply(c.join(t, p)).error_code, 23);
    let mut p = params("", false);
    p.protocols.clear();
    assert_eq!(now_reply(c.join(t, p)).error_code, 23);
    let mut p = params("", false);
    p.session_timeout = Duration::from_millis(10);
    assert_eq!(now_reply(c.join(t, p)).error_code, 26);
}

#[test]
fn standalone_commits_are_allowed_only_for_an_empty_group() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    assert_eq!(c.check_commit(t, "other", -1, ""), 0);
    let (_a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    assert_eq!(c.check_commit(t, G, -1, ""), 25);
}

#[test]
fn last_member_leaving_empties_the_group_and_forgets_it() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    assert_eq!(c.leave(t, G, &[a]), vec![0]);
    assert_eq!(c.state(G).unwrap().0, GroupState::Empty);
    c.tick(t);
    assert!(c.state(G).is_none());
}

#[test]
fn a_settled_group_resumes_on_another_coordinator_at_its_generation() {
    let t = Instant::now();
    let mut old = Coordinator::new();
    let (a, mut ja) = join_new(&mut old, t);
    ready(&mut ja).unwrap();
    let (b, mut jb) = join_new(&mut old, t);
    let mut ja = old.join(t, params(&a, true));
    ready(&mut ja).unwrap();
    ready(&mut jb).unwrap();
    assert!(old.settled(G).is_none(), "mid-rebalance nothing is settled");
    let mut sb = old.sync(t, G, 2, &b, vec![]);
    let assignments =
        vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))];
    let mut sa = old.sync(t, G, 2, &a, assignments);
    ready(&mut sa).unwrap();
    ready(&mut sb).unwrap();
    let settled = old.settled(G).expect("a Stable group is settled");
    assert_eq!((settled.generation, settled.leader.as_str()), (2, a.as_str()));
    assert_eq!(settled.members.len(), 2);

    // The coordinator moves: the new one takes the group over and the members carry on.
    let later = t + Duration::from_secs(60);
    let mut new = Coordinator::new();
    assert!(new.install(later, G, settled.clone()));
    assert_eq!(new.state(G), Some((GroupState::Stable, 2, 2)));
    assert_eq!(new.check_commit(later, G, 2, &a), 0, "a commits at its generation");
    assert_eq!(new.heartbeat(later, G, 2, &b), 0);
    assert_eq!(now_reply(new.sync(later, G, 2, &b, vec![])).assignment, Bytes::from_static(b"p1"));
    assert_eq!(new.check_commit(later, G, 1, &a), 22, "an older generation is still refused");
    let d = new.describe(G).unwrap();
    assert_eq!((d.protocol_type.as_str(), d.protocol.as_str()), ("consumer", "range"));
    assert_eq!(d.members[0].metadata, Bytes::from_static(b"meta"));
    // A rejoin with the same subscription is a rebalance that goes on at generation 3.
    let mut ja = new.join(later, params(&a, true));
    let mut jb = new.join(later, params(&b, true));
    assert_eq!(ready(&mut ja).unwrap().generation_id, 3);
    assert_eq!(ready(&mut jb).unwrap().generation_id, 3);

    // The same generation again, or an older one, changes nothing here.
    assert!(!new.install(later, G, settled.clone()));
    assert_eq!(new.state(G).unwrap().1, 3);
    // A newer one replaces a stale group.
    let newer = SettledGroup { generation: 5, ..settled };
    assert!(new.install(later, G, newer));
    assert_eq!(new.state(G), Some((GroupState::Stable, 5, 2)));
}

#[test]
fn an_emptied_group_resumes_empty_and_counts_generations_on() {
    let t = Instant::now();
    let mut c = Coordinator::new();
    let empty = SettledGroup {
        generation: 7,
        protocol_type: String::new(),
        protocol: String::new(),
        leader: String::new(),
        members: Vec::new(),
    };
    assert!(c.install(t, G, empty));
    assert_eq!(c.state(G), Some((GroupState::Empty, 7, 0)));
    assert_eq!(c.settled(G).unwrap().generation, 7);
    let (_a, mut ja) = join_new(&mut c, t);
    assert_eq!(ready(&mut ja).unwrap().generation_id, 8);
}

#[test]
fn describe_lists_live_members_and_forget_waits_for_them_to_leave() {
    let mut c = Coordinator::new();
    let t = Instant::now();
    let (a, mut ja) = join_new(&mut c, t);
    ready(&mut ja).unwrap();
    let mut sa = c.sync(t, G, 1, &a, vec![(a.clone(), Bytes::from_static(b"p0"))]);
    ready(&mut sa).unwrap();
    assert_eq!(c.list(), vec![(G.to_string(), GroupState::Stable, "consumer".to_string())]);
    let d = c.describe(G).expect("the group is known");
    assert_eq!((d.state.name(), d.protocol.as_str()), ("Stable", "range"));
    assert_eq!(d.members.len(), 1);
    let m = &d.members[0];
    assert_eq!((m.member_id.as_str(), m.client_id.as_str()), (a.as_str(), "c"));
    assert_eq!(m.client_host, "/127.0.0.1");
    assert_eq!(m.metadata, Bytes::from_static(b"meta"));
    assert_eq!(m.assignment, Bytes::from_static(b"p0"));
    assert!(!c.forget(G), "a group with a live member is not forgotten");
    assert!(c.has_members(G));
    c.leave(t, G, &[a]);
    assert!(c.forget(G));
    assert!(c.describe(G).is_none());
}
