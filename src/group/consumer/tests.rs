//! Unit tests of the consumer group state machine, with time and topics passed in.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn topics(list: &[(&str, u128, i32)]) -> Topics {
    list.iter()
        .map(|&(n, id, p)| (n.to_string(), (uuid::Uuid::from_u128(id), p)))
        .collect()
}

fn tid(n: u128) -> TopicId {
    uuid::Uuid::from_u128(n)
}

fn join(member: &str, subscribed: &[&str]) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(subscribed.iter().map(|s| s.to_string()).collect()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Heartbeat::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

struct H {
    groups: ConsumerGroups,
    topics: Topics,
    now: i64,
}

impl H {
    fn new() -> H {
        H {
            groups: ConsumerGroups::new(ConsumerConfig::default()),
            topics: topics(&[("t", 1, 4)]),
            now: 1_000,
        }
    }

    fn hb(&mut self, req: Heartbeat) -> Result<HeartbeatResponse, ConsumerError> {
        self.groups
            .heartbeat("g", req, &self.topics, "generated", self.now)
    }

    fn member(&self, id: &str) -> &ConsumerMember {
        self.groups.group("g").unwrap().member(id).unwrap()
    }
}

#[test]
fn a_lone_member_gets_every_partition() {
    let mut h = H::new();
    let r = h.hb(join("a", &["t"])).unwrap();
    assert_eq!(r.member_id, "a");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5_000);
    assert_eq!(r.assignment.unwrap()[&tid(1)], BTreeSet::from([0, 1, 2, 3]));
    // Nothing changed: no assignment in the next answer.
    let r = h.hb(beat("a", 1, None)).unwrap();
    assert_eq!((r.member_epoch, r.assignment), (1, None));
    assert_eq!(h.groups.group("g").unwrap().state(), "Stable");
}

#[test]
fn a_v0_join_without_member_id_gets_one() {
    let mut h = H::new();
    let r = h.hb(join("", &["t"])).unwrap();
    assert_eq!(r.member_id, "generated");
}

#[test]
fn partitions_move_only_after_their_owner_revoked_them() {
    let mut h = H::new();
    let a_all = h.hb(join("a", &["t"])).unwrap().assignment.unwrap();
    let b = h.hb(join("b", &["t"])).unwrap();
    // b is at the new epoch but gets nothing yet: a still owns everything.
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment, Some(Assignment::new()));
    assert_eq!(h.groups.group("g").unwrap().state(), "Reconciling");
    // a is told to give up two partitions, keeping its epoch.
    let r = h.hb(beat("a", 1, None)).unwrap();
    assert_eq!(r.member_epoch, 1);
    let kept = r.assignment.unwrap();
    assert_eq!(count(&kept), 2);
    assert_eq!(h.member("a").state, MemberState::UnrevokedPartitions);
    // b still gets nothing while a has not acknowledged.
    assert_eq!(h.hb(beat("b", 2, None)).unwrap().assignment, None);
    // a reports it owns only what it kept still (no ack) and then acks by owning the rest.
    let r = h.hb(beat("a", 1, Some(&a_all))).unwrap();
    assert_eq!(r.member_epoch, 1);
    let r = h.hb(beat("a", 1, Some(&kept))).unwrap();
    assert_eq!(r.member_epoch, 2);
    // Now b receives the released partitions.
    let got = h.hb(beat("b", 2, None)).unwrap().assignment.unwrap();
    assert_eq!(count(&got), 2);
    let a_now = &h.member("a").assigned;
    assert!(!got[&tid(1)].iter().any(|p| a_now[&tid(1)].contains(p)));
    assert_eq!(h.groups.group("g").unwrap().state(), "Stable");
}

#[test]
fn a_member_leaving_hands_its_partitions_over() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    h.hb(join("b", &["t"])).unwrap();
    let kept = h.hb(beat("a", 1, None)).unwrap().assignment.unwrap();
    h.hb(beat("a", 1, Some(&kept))).unwrap();
    h.hb(beat("b", 2, None)).unwrap();
    let r = h.hb(beat("b", -1, None)).unwrap();
    assert_eq!(r.member_epoch, -1);
    let r = h.hb(beat("a", 2, None)).unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(count(&r.assignment.unwrap()), 4);
    assert_eq!(
        h.hb(beat("b", 2, None)),
        Err(ConsumerError::UnknownMemberId)
    );
}

#[test]
fn an_expired_session_removes_the_member() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    assert_eq!(h.groups.next_deadline(), Some(h.now + 45_000));
    h.groups.tick(h.now + 44_999);
    assert!(h.groups.group("g").unwrap().member("a").is_some());
    h.groups.tick(h.now + 45_000);
    let g = h.groups.group("g").unwrap();
    assert!(g.member("a").is_none());
    assert_eq!(g.state(), "Empty");
}

#[test]
fn a_member_that_never_revokes_is_removed_after_its_rebalance_timeout() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    h.hb(join("b", &["t"])).unwrap();
    h.hb(beat("a", 1, None)).unwrap();
    assert_eq!(h.member("a").state, MemberState::UnrevokedPartitions);
    h.now += 30_000;
    h.hb(beat("b", 2, None)).unwrap();
    h.groups.tick(h.now);
    assert!(h.groups.group("g").unwrap().member("a").is_none());
    let r = h.hb(beat("b", 2, None)).unwrap();
    assert_eq!(count(&r.assignment.unwrap()), 4);
}

#[test]
fn a_topic_gaining_partitions_gets_them_assigned() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    h.topics = topics(&[("t", 1, 6)]);
    let r = h.hb(beat("a", 1, None)).unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment.unwrap()[&tid(1)], (0..6).collect());
}

#[test]
fn subscribing_to_a_topic_created_later_assigns_it() {
    let mut h = H::new();
    h.hb(join("a", &["t", "later"])).unwrap();
    h.topics = topics(&[("t", 1, 4), ("later", 2, 2)]);
    let r = h.hb(beat("a", 1, None)).unwrap();
    assert_eq!(r.assignment.unwrap()[&tid(2)], BTreeSet::from([0, 1]));
}

#[test]
fn epochs_are_checked() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    assert_eq!(
        h.hb(beat("a", 7, None)),
        Err(ConsumerError::FencedMemberEpoch)
    );
    assert_eq!(
        h.hb(beat("x", 1, None)),
        Err(ConsumerError::UnknownMemberId)
    );
    // A fenced member rejoins with epoch 0 and gets its partitions back.
    let r = h.hb(join("a", &["t"])).unwrap();
    assert_eq!(count(&r.assignment.unwrap()), 4);
}

#[test]
fn a_retry_with_the_previous_epoch_is_accepted() {
    let mut h = H::new();
    let all = h.hb(join("a", &["t"])).unwrap().assignment.unwrap();
    h.topics = topics(&[("t", 1, 5)]);
    assert_eq!(h.hb(beat("a", 1, None)).unwrap().member_epoch, 2);
    // The answer was lost: the member retries with epoch 1, owning a subset.
    assert_eq!(h.hb(beat("a", 1, Some(&all))).unwrap().member_epoch, 2);
}

#[test]
fn malformed_heartbeats_are_invalid_requests() {
    let mut h = H::new();
    let mut no_timeout = join("a", &["t"]);
    no_timeout.rebalance_timeout_ms = -1;
    let mut no_subscription = join("a", &["t"]);
    no_subscription.subscribed_topic_names = None;
    let mut owned = join("a", &["t"]);
    owned.owned = Some(BTreeMap::from([(tid(1), BTreeSet::from([0]))]));
    for req in [
        no_timeout,
        no_subscription,
        owned,
        beat("", 3, None),
        beat("a", -3, None),
    ] {
        assert!(matches!(h.hb(req), Err(ConsumerError::InvalidRequest(_))));
    }
    let mut assignor = join("a", &["t"]);
    assignor.server_assignor = Some("sticky".to_string());
    assert_eq!(h.hb(assignor), Err(ConsumerError::UnsupportedAssignor));
    assert!(
        h.groups.group("g").is_none(),
        "refused joins leave no group"
    );
    assert_eq!(
        h.hb(beat("a", 1, None)),
        Err(ConsumerError::UnknownMemberId)
    );
}

#[test]
fn range_is_used_when_members_ask_for_it() {
    let mut h = H::new();
    let mut a = join("a", &["t"]);
    a.server_assignor = Some("range".to_string());
    h.hb(a).unwrap();
    assert_eq!(h.groups.group("g").unwrap().assignor(), "range");
}

#[test]
fn a_static_member_comes_back_with_its_partitions() {
    let mut h = H::new();
    let mut a = join("a", &["t"]);
    a.instance_id = Some("i".to_string());
    let mine = h.hb(a).unwrap().assignment.unwrap();
    let mut b = join("b", &["t"]);
    b.instance_id = Some("i".to_string());
    // The instance is still in use.
    assert_eq!(h.hb(b.clone()), Err(ConsumerError::UnreleasedInstanceId));
    let mut leave = beat("a", -2, None);
    leave.instance_id = Some("i".to_string());
    assert_eq!(h.hb(leave).unwrap().member_epoch, -2);
    let epoch = h.groups.group("g").unwrap().epoch();
    let r = h.hb(b).unwrap();
    assert_eq!(r.member_id, "b");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.assignment.unwrap(), mine);
    assert_eq!(h.groups.group("g").unwrap().epoch(), epoch, "no rebalance");
    assert!(h.groups.group("g").unwrap().member("a").is_none());
}

#[test]
fn a_static_member_names_its_instance_only_when_it_changes() {
    let mut h = H::new();
    let mut a = join("a", &["t"]);
    a.instance_id = Some("i".to_string());
    let epoch = h.hb(a).unwrap().member_epoch;
    // Later heartbeats leave the instance id null (unchanged), as clients send them.
    assert!(h.hb(beat("a", epoch, None)).is_ok());
    // Another instance id under this member id is fenced.
    let mut other = beat("a", epoch, None);
    other.instance_id = Some("j".to_string());
    assert_eq!(h.hb(other), Err(ConsumerError::FencedInstanceId));
}

#[test]
fn a_static_member_away_too_long_is_removed() {
    let mut h = H::new();
    let mut a = join("a", &["t"]);
    a.instance_id = Some("i".to_string());
    h.hb(a).unwrap();
    let mut leave = beat("a", -2, None);
    leave.instance_id = Some("i".to_string());
    h.hb(leave).unwrap();
    h.groups.tick(h.now + 45_000);
    assert_eq!(h.groups.group("g").unwrap().state(), "Empty");
}

#[test]
fn commits_and_fetches_check_the_member_epoch() {
    let mut h = H::new();
    h.hb(join("a", &["t"])).unwrap();
    let g = &h.groups;
    assert_eq!(g.check_commit("g", "a", 1, true), Ok(()));
    assert_eq!(
        g.check_commit("g", "a", 0, true),
        Err(ConsumerError::StaleMemberEpoch)
    );
    assert_eq!(
        g.check_commit("g", "a", 2, true),
        Err(ConsumerError::FencedMemberEpoch)
    );
    assert_eq!(
        g.check_commit("g", "", -1, true),
        Err(ConsumerError::UnknownMemberId)
    );
    assert_eq!(g.check_commit("other", "", -1, true), Ok(()));
    // A member must use a request version that carries its epoch.
    assert_eq!(
        g.check_commit("g", "a", 1, false),
        Err(ConsumerError::UnsupportedVersion)
    );
    assert_eq!(g.check_fetch("g", "a", 1), Ok(()));
    assert_eq!(
        g.check_fetch("g", "a", 0),
        Err(ConsumerError::StaleMemberEpoch)
    );
    h.hb(beat("a", -1, None)).unwrap();
    assert_eq!(
        h.groups.check_commit("g", "", -1, true),
        Ok(()),
        "admin commit to an empty group"
    );
    assert!(h.groups.remove_if_empty("g"));
}
