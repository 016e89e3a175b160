//! Unit tests of the online migration: a classic group turned into a consumer group, its
//! classic members reconciled through JoinGroup/SyncGroup/Heartbeat, and the group turned
//! classic again when its last consumer-protocol member leaves.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::super::stored::StoredGroup as StoredConsumerGroup;
use super::super::*;
use crate::group::state::{
    GroupConfig, GroupState, Groups, Protocol, StoredGroup, StoredMember, SyncRequest,
};

fn topics() -> Topics {
    [("t".to_string(), (uuid::Uuid::from_u128(1), 4))].into()
}

/// A ConsumerProtocolSubscription v1 to `t`, owning `owned` of it.
fn subscription(owned: &[i32]) -> Bytes {
    let mut b = vec![0, 1, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
    b.extend(1i32.to_be_bytes());
    b.extend([0, 1, b't']);
    b.extend((owned.len() as i32).to_be_bytes());
    for p in owned {
        b.extend(p.to_be_bytes());
    }
    Bytes::from(b)
}

fn assignment(partitions: &[i32]) -> Bytes {
    let named: embedded::NamedPartitions =
        [("t".to_string(), partitions.iter().copied().collect())]
            .into_iter()
            .filter(|(_, ps): &(String, BTreeSet<i32>)| !ps.is_empty())
            .collect();
    embedded::write_assignment(1, &named)
}

fn partitions(bytes: &[u8]) -> BTreeSet<i32> {
    embedded::parse_assignment(bytes)
        .unwrap()
        .remove("t")
        .unwrap_or_default()
}

/// A Stable classic group "g" at generation 3: a holds 0 and 1, b holds 2 and 3.
fn classic_group() -> Groups {
    let mut groups = Groups::new(GroupConfig::default());
    let member = |id: &str, held: &[i32]| StoredMember {
        member_id: id.to_string(),
        group_instance_id: None,
        client_id: id.to_string(),
        client_host: "/127.0.0.1".to_string(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscription: subscription(&[]),
        assignment: assignment(held),
    };
    let stored = StoredGroup {
        protocol_type: "consumer".to_string(),
        generation_id: 3,
        protocol_name: Some("range".to_string()),
        leader: Some("a".to_string()),
        state_timestamp_ms: 0,
        members: vec![member("a", &[0, 1]), member("b", &[2, 3])],
    };
    groups.restore_group("g", stored, 0);
    groups
}

fn rejoin(member: &str, owned: &[i32]) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        group_instance_id: None,
        client_id: member.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![Protocol {
            name: "range".to_string(),
            metadata: subscription(owned),
        }],
        require_known_member_id: true,
    }
}

fn sync(member: &str, generation_id: i32) -> SyncRequest {
    SyncRequest {
        generation_id,
        member_id: member.to_string(),
        group_instance_id: None,
        protocol_type: Some("consumer".to_string()),
        protocol_name: Some("range".to_string()),
        assignments: Vec::new(),
    }
}

fn consumer_join(member: &str) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".to_string()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    }
}

fn consumer_beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Heartbeat::default()
    }
}

/// A classic member's turn, as an eager client takes it: heartbeat; on
/// REBALANCE_IN_PROGRESS give everything up, rejoin and sync. Returns its partitions.
fn classic_turn(
    c: &mut ConsumerGroups,
    member: &str,
    generation: &mut i32,
    now: i64,
) -> BTreeSet<i32> {
    match c.classic_heartbeat("g", member, None, *generation, now) {
        Ok(()) => {}
        Err(GroupError::RebalanceInProgress) => {
            let joined = c
                .classic_join("g", &rejoin(member, &[]), "x", &topics(), now)
                .unwrap();
            assert_eq!(joined.leader, "", "no member leads a consumer group");
            assert!(joined.members.is_empty());
            *generation = joined.generation_id;
        }
        Err(e) => panic!("heartbeat of {member}: {e:?}"),
    }
    partitions(
        &c.classic_sync("g", &sync(member, *generation), now)
            .unwrap()
            .assignment,
    )
}

#[test]
fn a_classic_group_is_upgraded_reconciled_and_downgraded() {
    let mut classic = classic_group();
    let mut c = ConsumerGroups::new(ConsumerConfig::default());
    c.upgrade(classic.group("g").unwrap(), &topics(), 0)
        .unwrap();
    let group = c.group("g").unwrap();
    assert_eq!((group.epoch(), group.state()), (3, "Stable"));
    assert!(group.members().all(|m| m.classic.is_some() && m.epoch == 3));
    // The classic side keeps only the offsets, and its record gets a tombstone.
    let fx = classic.release("g", 0);
    assert!(fx.contains(&crate::group::state::Effect::RemoveGroup {
        group_id: "g".to_string()
    }));
    assert_eq!(classic.group("g").unwrap().members().count(), 0);

    // A consumer-protocol member joins: a new epoch, nothing for it until released.
    let r = c
        .heartbeat("g", consumer_join("n"), &topics(), "", 10)
        .unwrap();
    assert_eq!(r.member_epoch, 4);
    let mut n_owned = r.assignment.unwrap();
    let (mut ga, mut gb) = (3, 3);
    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
    for round in 0..6 {
        a = classic_turn(&mut c, "a", &mut ga, 20 + round);
        b = classic_turn(&mut c, "b", &mut gb, 20 + round);
        if let Some(got) = c
            .heartbeat(
                "g",
                consumer_beat("n", 4, &n_owned),
                &topics(),
                "",
                20 + round,
            )
            .unwrap()
            .assignment
        {
            n_owned = got;
        }
    }
    let n: BTreeSet<i32> = n_owned.values().flatten().copied().collect();
    assert_eq!((ga, gb), (4, 4));
    assert!(
        a.len() + b.len() + n.len() == 4 && !n.is_empty(),
        "{a:?} {b:?} {n:?}"
    );
    assert_eq!(&(&(&a | &b) | &n), &BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(c.group("g").unwrap().state(), "Stable");
    // A classic member at an old generation is told so.
    assert_eq!(
        c.classic_heartbeat("g", "a", None, 3, 30),
        Err(GroupError::IllegalGeneration)
    );
    // The consumer-protocol member cannot use the classic APIs, nor a classic one the other.
    assert_eq!(
        c.classic_heartbeat("g", "n", None, 4, 30),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat(
            "g",
            consumer_beat("a", 4, &Assignment::new()),
            &topics(),
            "",
            30
        ),
        Err(ConsumerError::UnknownMemberId)
    );

    // Persisted with their classic metadata, the members come back with their own session.
    let stored = StoredConsumerGroup::of(c.group("g").unwrap());
    let rebuilt = stored.restore("g", &topics(), 45_000, 100).unwrap();
    let a_back = rebuilt.member("a").unwrap();
    assert_eq!(a_back.classic.as_ref().unwrap().session_timeout_ms, 10_000);
    assert_eq!(rebuilt.next_deadline(), Some(100 + 10_000));

    // The last consumer-protocol member leaves: the group turns classic, at its epoch, with
    // the classic members' target assignments.
    c.heartbeat("g", consumer_beat("n", -1, &n_owned), &topics(), "", 40)
        .unwrap();
    assert!(c.group("g").is_none());
    let mut down = c.take_downgraded();
    assert_eq!(down.len(), 1);
    let d = down.remove(0);
    assert_eq!(d.generation_id, 4);
    let held: BTreeSet<i32> = d
        .members
        .iter()
        .flat_map(|m| partitions(&m.assignment))
        .collect();
    assert_eq!(held, &a | &b);
    classic.adopt("g", d.generation_id, d.members, 40);
    let g = classic.group("g").unwrap();
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.protocol_name(), Some("range"));
    assert_eq!(g.members().count(), 2);
    // Its members learn of the rebalance from their next heartbeat.
    assert_eq!(
        classic.heartbeat("g", "a", None, 4, 41),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn the_migration_policy_decides_which_way_a_group_may_go() {
    let classic = classic_group();
    let config = |migration| ConsumerConfig {
        migration,
        ..ConsumerConfig::default()
    };
    for policy in [MigrationPolicy::Disabled, MigrationPolicy::Downgrade] {
        let mut c = ConsumerGroups::new(config(policy));
        assert_eq!(
            c.upgrade(classic.group("g").unwrap(), &topics(), 0),
            Err(ConsumerError::GroupIdNotFound)
        );
    }
    // Upgrade only: the group stays a consumer group of classic members when the last
    // consumer-protocol member leaves.
    let mut c = ConsumerGroups::new(config(MigrationPolicy::Upgrade));
    c.upgrade(classic.group("g").unwrap(), &topics(), 0)
        .unwrap();
    c.heartbeat("g", consumer_join("n"), &topics(), "", 1)
        .unwrap();
    c.heartbeat(
        "g",
        consumer_beat("n", -1, &Assignment::new()),
        &topics(),
        "",
        2,
    )
    .unwrap();
    assert!(c.take_downgraded().is_empty());
    let g = c.group("g").unwrap();
    assert_eq!(g.members().count(), 2);
    assert_eq!(g.epoch(), 5);
    // A group too large for group.max.size stays a consumer group too.
    let mut c = ConsumerGroups::new(ConsumerConfig {
        classic_max_size: 1,
        ..ConsumerConfig::default()
    });
    c.upgrade(classic.group("g").unwrap(), &topics(), 0)
        .unwrap();
    c.heartbeat("g", consumer_join("n"), &topics(), "", 1)
        .unwrap();
    c.heartbeat(
        "g",
        consumer_beat("n", -1, &Assignment::new()),
        &topics(),
        "",
        2,
    )
    .unwrap();
    assert!(c.take_downgraded().is_empty());
    // A group whose members do not speak the consumer protocol is not upgraded.
    let mut other = Groups::new(GroupConfig::default());
    other.restore_group(
        "g",
        StoredGroup {
            protocol_type: "connect".to_string(),
            generation_id: 1,
            protocol_name: Some("v1".to_string()),
            leader: None,
            state_timestamp_ms: 0,
            members: Vec::new(),
        },
        0,
    );
    let mut c = ConsumerGroups::new(ConsumerConfig::default());
    assert_eq!(
        c.upgrade(other.group("g").unwrap(), &topics(), 0),
        Err(ConsumerError::GroupIdNotFound)
    );
}

#[test]
fn a_classic_member_joins_a_consumer_group_and_a_silent_one_is_fenced() {
    let mut c = ConsumerGroups::new(ConsumerConfig::default());
    c.heartbeat("g", consumer_join("n"), &topics(), "", 0)
        .unwrap();
    // A member of another protocol type, or with a malformed subscription, is refused.
    let mut wrong = rejoin("", &[]);
    wrong.protocol_type = "connect".to_string();
    assert_eq!(
        c.classic_join("g", &wrong, "k", &topics(), 1),
        Err(GroupError::InconsistentGroupProtocol)
    );
    let mut garbled = rejoin("k", &[]);
    garbled.protocols[0].metadata = Bytes::from_static(&[0, 1, 0]);
    assert_eq!(
        c.classic_join("g", &garbled, "k", &topics(), 1),
        Err(GroupError::InconsistentGroupProtocol)
    );
    // JoinGroup v4+: first a member id.
    assert_eq!(
        c.classic_join("g", &rejoin("", &[]), "k", &topics(), 1),
        Err(GroupError::MemberIdRequired("k".to_string()))
    );
    let joined = c
        .classic_join("g", &rejoin("k", &[]), "x", &topics(), 1)
        .unwrap();
    assert_eq!(joined.generation_id, 2);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let g = c.group("g").unwrap();
    assert_eq!(g.members().count(), 2);
    assert!(g.member("k").unwrap().classic.is_some());
    // It never syncs: removed at its rebalance timeout, the group moves on.
    assert_eq!(c.tick(1 + 30_000), vec!["g".to_string()]);
    let g = c.group("g").unwrap();
    assert!(g.member("k").is_none());
    assert_eq!(g.epoch(), 3);
    assert!(c.take_downgraded().is_empty());
}
