//! Unit tests of the group state machine, driven by a fake clock.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 20_000;
const DELAY: i64 = 3_000;

/// A consumer protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: subscription(&["events"]),
        })
        .collect()
}

struct Harness {
    groups: Groups,
    now: i64,
    next_waiter: Waiter,
    next_id: u32,
    effects: Vec<Effect>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(GroupConfig {
            initial_rebalance_delay_ms: DELAY,
            ..GroupConfig::default()
        })
    }

    fn with(config: GroupConfig) -> Harness {
        Harness {
            groups: Groups::new(config),
            now: 1_000_000,
            next_waiter: 1,
            next_id: 1,
            effects: Vec::new(),
        }
    }

    fn request(member_id: &str, instance: Option<&str>, names: &[&str], v4: bool) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".to_string(),
            protocols: protocols(names),
            require_known_member_id: v4,
        }
    }

    fn join_with(&mut self, req: JoinRequest) -> Waiter {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let fresh = format!("m{}", self.next_id);
        self.next_id += 1;
        let fx = self.groups.join("g", &req, &fresh, waiter, self.now);
        self.effects.extend(fx);
        waiter
    }

    /// A JoinGroup as an old (v3) client sends it: no member id handshake.
    fn join(&mut self, member_id: &str) -> Waiter {
        self.join_with(Self::request(member_id, None, &["range"], false))
    }

    fn join_reply(&mut self, waiter: Waiter) -> Option<Result<JoinResponse, GroupError>> {
        let pos = self
            .effects
            .iter()
            .position(|e| matches!(e, Effect::JoinReply { waiter: w, .. } if *w == waiter))?;
        match self.effects.remove(pos) {
            Effect::JoinReply { result, .. } => Some(result),
            _ => unreachable!(),
        }
    }

    fn joined(&mut self, waiter: Waiter) -> JoinResponse {
        self.join_reply(waiter)
            .expect("join answered")
            .expect("join succeeded")
    }

    fn sync(&mut self, member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> Waiter {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        let req = SyncRequest {
            generation_id: generation,
            member_id: member_id.to_string(),
            group_instance_id: None,
            protocol_type: Some("consumer".to_string()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        let fx = self.groups.sync("g", &req, waiter, self.now);
        self.effects.extend(fx);
        waiter
    }

    fn sync_reply(&mut self, waiter: Waiter) -> Option<Result<SyncResponse, GroupError>> {
        let pos = self
            .effects
            .iter()
            .position(|e| matches!(e, Effect::SyncReply { waiter: w, .. } if *w == waiter))?;
        match self.effects.remove(pos) {
            Effect::SyncReply { result, .. } => Some(result),
            _ => unreachable!(),
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Result<(), GroupError> {
        self.groups
            .heartbeat("g", member_id, None, generation, self.now)
    }

    fn leave(&mut self, members: &[(&str, Option<&str>)]) -> Vec<Result<(), GroupError>> {
        let members: Vec<(String, Option<String>)> = members
            .iter()
            .map(|(m, i)| (m.to_string(), i.map(str::to_string)))
            .collect();
        let (results, fx) = self
            .groups
            .leave("g", &members, self.now)
            .expect("no request-level error");
        self.effects.extend(fx);
        results
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let fx = self.groups.tick(self.now);
        self.effects.extend(fx);
    }

    fn state(&self) -> GroupState {
        self.groups.group("g").expect("group exists").state()
    }

    fn stored(&mut self) -> bool {
        let before = self.effects.len();
        self.effects
            .retain(|e| !matches!(e, Effect::StoreGroup { .. }));
        before != self.effects.len()
    }

    /// Two members "m1" (leader) and "m2", Stable at generation 1 with assignments.
    fn stable_pair() -> Harness {
        let mut h = Harness::new();
        let a = h.join("");
        let b = h.join("");
        h.advance(DELAY);
        assert!(
            h.join_reply(a).is_none(),
            "a second member extends the initial delay"
        );
        h.advance(DELAY);
        let ra = h.joined(a);
        let rb = h.joined(b);
        assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
        let f = h.sync("m2", 1, &[]);
        let l = h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
        assert_eq!(h.sync_reply(l).unwrap().unwrap().assignment, "A");
        assert_eq!(h.sync_reply(f).unwrap().unwrap().assignment, "B");
        assert_eq!(h.state(), GroupState::Stable);
        assert!(h.stored());
        h
    }
}

#[test]
fn member_id_handshake_then_initial_delay() {
    let mut h = Harness::new();
    let w = h.join_with(Harness::request("", None, &["range"], true));
    assert_eq!(
        h.join_reply(w),
        Some(Err(GroupError::MemberIdRequired("m1".to_string())))
    );
    assert!(
        h.groups.group("g").is_some(),
        "the pending member keeps the group"
    );
    let w = h.join_with(Harness::request("m1", None, &["range"], true));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    h.advance(DELAY - 1);
    assert!(
        h.join_reply(w).is_none(),
        "the initial delay has not passed"
    );
    h.advance(1);
    let r = h.joined(w);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.member_id, "m1");
    assert_eq!(r.leader, "m1");
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, subscription(&["events"]));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn unknown_member_id_on_unknown_group_creates_nothing() {
    let mut h = Harness::new();
    let w = h.join("ghost");
    assert_eq!(h.join_reply(w), Some(Err(GroupError::UnknownMemberId)));
    assert!(h.groups.group("g").is_none());
}

#[test]
fn session_timeout_bounds_and_group_id_are_checked() {
    let mut h = Harness::new();
    let mut req = Harness::request("", None, &["range"], true);
    req.session_timeout_ms = 5_999;
    let w = h.join_with(req.clone());
    assert_eq!(
        h.join_reply(w),
        Some(Err(GroupError::InvalidSessionTimeout))
    );
    req.session_timeout_ms = 1_800_001;
    let w = h.join_with(req.clone());
    assert_eq!(
        h.join_reply(w),
        Some(Err(GroupError::InvalidSessionTimeout))
    );
    req.session_timeout_ms = 6_000;
    let w = h.join_with(req.clone());
    assert!(matches!(
        h.join_reply(w),
        Some(Err(GroupError::MemberIdRequired(_)))
    ));
    let fx = h.groups.join("", &req, "x", 99, h.now);
    assert_eq!(
        fx,
        vec![Effect::JoinReply {
            waiter: 99,
            result: Err(GroupError::InvalidGroupId)
        }]
    );
}

#[test]
fn initial_delay_is_bounded_by_the_rebalance_timeout() {
    let mut h = Harness::new();
    let mut req = Harness::request("", None, &["range"], false);
    req.rebalance_timeout_ms = 5_000;
    let a = h.join_with(req.clone());
    h.advance(1_000);
    let b = h.join_with(req.clone());
    h.advance(2_000);
    // Extended once by min(delay, remaining = 5000 - 3000) = 2000 ms.
    assert!(h.join_reply(a).is_none());
    let c = h.join_with(req);
    h.advance(1_999);
    assert!(h.join_reply(a).is_none());
    h.advance(1);
    // The remaining budget is spent: c's arrival does not extend it again.
    assert_eq!(h.joined(a).generation_id, 1);
    assert_eq!(h.joined(b).members.len(), 0);
    assert_eq!(h.joined(c).generation_id, 1);
}

#[test]
fn followers_wait_for_the_leader_assignment() {
    let mut h = Harness::new();
    let a = h.join("");
    let b = h.join("");
    h.advance(DELAY * 2);
    let ra = h.joined(a);
    let rb = h.joined(b);
    assert_eq!(ra.leader, "m1");
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers see none");
    let f = h.sync("m2", 1, &[]);
    assert!(h.sync_reply(f).is_none(), "a follower waits for the leader");
    assert_eq!(
        h.heartbeat("m2", 1),
        Ok(()),
        "heartbeats are fine while completing"
    );
    let l = h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    assert_eq!(h.sync_reply(l).unwrap().unwrap().assignment, "A");
    let rf = h.sync_reply(f).unwrap().unwrap();
    assert_eq!(rf.assignment, "B");
    assert_eq!(rf.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state(), GroupState::Stable);
    assert!(h.stored());
    // In Stable, SyncGroup answers at once with the member's assignment.
    let again = h.sync("m2", 1, &[]);
    assert_eq!(h.sync_reply(again).unwrap().unwrap().assignment, "B");
}

#[test]
fn sync_errors() {
    let mut h = Harness::stable_pair();
    let w = h.sync("m1", 7, &[]);
    assert_eq!(h.sync_reply(w), Some(Err(GroupError::IllegalGeneration)));
    let w = h.sync("nobody", 1, &[]);
    assert_eq!(h.sync_reply(w), Some(Err(GroupError::UnknownMemberId)));
    let req = SyncRequest {
        generation_id: 1,
        member_id: "m1".into(),
        group_instance_id: None,
        protocol_type: Some("connect".into()),
        protocol_name: None,
        assignments: vec![],
    };
    let fx = h.groups.sync("g", &req, 500, h.now);
    assert_eq!(
        fx,
        vec![Effect::SyncReply {
            waiter: 500,
            result: Err(GroupError::InconsistentGroupProtocol)
        }]
    );
    let fx = h.groups.sync("other", &req, 501, h.now);
    assert_eq!(
        fx,
        vec![Effect::SyncReply {
            waiter: 501,
            result: Err(GroupError::UnknownMemberId)
        }]
    );
    h.join("");
    let w = h.sync("m1", 1, &[]);
    assert_eq!(h.sync_reply(w), Some(Err(GroupError::RebalanceInProgress)));
}

#[test]
fn heartbeat_errors_by_state() {
    let mut h = Harness::stable_pair();
    assert_eq!(h.heartbeat("m1", 1), Ok(()));
    assert_eq!(h.heartbeat("m1", 0), Err(GroupError::IllegalGeneration));
    assert_eq!(h.heartbeat("zz", 1), Err(GroupError::UnknownMemberId));
    assert_eq!(
        h.groups.heartbeat("nogroup", "m1", None, 1, h.now),
        Err(GroupError::UnknownMemberId)
    );
    let c = h.join("");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::RebalanceInProgress));
    assert_eq!(h.heartbeat("m2", 1), Err(GroupError::RebalanceInProgress));
    // Every known member rejoins: the rebalance completes before its timeout.
    let a = h.join("m1");
    assert!(h.join_reply(a).is_none());
    let b = h.join("m2");
    let ra = h.joined(a);
    assert_eq!(ra.generation_id, 2);
    assert_eq!(ra.members.len(), 3);
    assert_eq!(h.joined(b).generation_id, 2);
    assert_eq!(h.joined(c).member_id, "m3");
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::IllegalGeneration));
    assert_eq!(h.heartbeat("m1", 2), Ok(()));
}

#[test]
fn members_that_do_not_rejoin_are_removed_at_the_rebalance_timeout() {
    let mut h = Harness::stable_pair();
    let c = h.join("");
    h.advance(1_000);
    let a = h.join("m1");
    // m2 keeps heartbeating but never rejoins.
    for _ in 0..3 {
        h.advance(5_000);
        assert_eq!(h.heartbeat("m2", 1), Err(GroupError::RebalanceInProgress));
    }
    h.advance(REBALANCE as i64 - 16_001);
    assert!(h.join_reply(a).is_none());
    h.advance(1);
    let ra = h.joined(a);
    assert_eq!(ra.generation_id, 2);
    let ids: Vec<&str> = ra.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, vec!["m1", "m3"]);
    assert_eq!(h.joined(c).generation_id, 2);
    assert_eq!(h.heartbeat("m2", 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn an_expired_session_triggers_a_rebalance() {
    let mut h = Harness::stable_pair();
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("m1", 1), Ok(()));
    }
    h.advance(3_000);
    // 12 s without a heartbeat from m2 (session 10 s): it is gone.
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(h.groups.group("g").unwrap().member("m2").is_none());
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::RebalanceInProgress));
    let a = h.join("m1");
    let ra = h.joined(a);
    assert_eq!(ra.generation_id, 2);
    assert_eq!(ra.members.len(), 1);
    assert_eq!(h.groups.next_deadline(), Some(h.now + SESSION as i64));
}

#[test]
fn a_leader_whose_session_expires_hands_over_leadership() {
    let mut h = Harness::stable_pair();
    h.advance(SESSION as i64 - 1);
    assert_eq!(h.heartbeat("m2", 1), Ok(()));
    h.advance(1);
    assert!(h.groups.group("g").unwrap().member("m1").is_none());
    let b = h.join("m2");
    let rb = h.joined(b);
    assert_eq!(rb.leader, "m2");
    assert_eq!(rb.members.len(), 1);
}

#[test]
fn leave_group_single_and_batched() {
    let mut h = Harness::stable_pair();
    let results = h.leave(&[("m2", None)]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let results = h.leave(&[("m1", None), ("zz", None)]);
    assert_eq!(results, vec![Ok(()), Err(GroupError::UnknownMemberId)]);
    // The last member left: the group is Empty at the next generation, and persisted.
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.groups.group("g").unwrap().generation_id(), 2);
    assert!(h.stored());
    let (results, _) = h
        .groups
        .leave("nope", &[("m1".into(), None), ("m2".into(), None)], h.now)
        .unwrap();
    assert_eq!(
        results,
        vec![
            Err(GroupError::UnknownMemberId),
            Err(GroupError::UnknownMemberId)
        ]
    );
    assert_eq!(
        h.groups
            .leave("", &[("m1".into(), None)], h.now)
            .unwrap_err(),
        GroupError::InvalidGroupId
    );
}

#[test]
fn an_instance_id_must_belong_to_the_member() {
    let mut h = Harness::new();
    let a = h.join_with(static_request("", &["range"]));
    h.advance(DELAY);
    let id = h.joined(a).member_id;
    h.join("");
    h.advance(DELAY);
    // m2 (dynamic) names an instance id nobody holds: unknown, as Kafka answers.
    let req = SyncRequest {
        generation_id: h.groups.group("g").unwrap().generation_id(),
        member_id: "m2".into(),
        group_instance_id: Some("other".into()),
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    let w = 500;
    let fx = h.groups.sync("g", &req, w, h.now);
    h.effects.extend(fx);
    assert_eq!(h.sync_reply(w), Some(Err(GroupError::UnknownMemberId)));
    let generation = req.generation_id;
    assert_eq!(
        h.groups
            .heartbeat("g", "m2", Some("other"), generation, h.now),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        h.groups
            .check_commit("g", "m2", Some("other"), generation, h.now),
        Err(GroupError::UnknownMemberId)
    );
    // m2 naming the static member's instance id is fenced.
    assert_eq!(
        h.groups
            .heartbeat("g", "m2", Some("instance-1"), generation, h.now),
        Err(GroupError::FencedInstanceId)
    );
    let members = [("m2".to_string(), Some("other".to_string()))];
    let (results, _) = h.groups.leave("g", &members, h.now).unwrap();
    assert_eq!(results, vec![Err(GroupError::UnknownMemberId)]);
    // The right pair passes.
    assert_eq!(
        h.groups
            .heartbeat("g", &id, Some("instance-1"), generation, h.now),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn heartbeat_and_sync_with_an_empty_group_id_are_invalid() {
    let mut h = Harness::new();
    assert_eq!(
        h.groups.heartbeat("", "m1", None, 1, h.now),
        Err(GroupError::InvalidGroupId)
    );
    let req = SyncRequest {
        generation_id: 1,
        member_id: "m1".into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    let fx = h.groups.sync("", &req, 7, h.now);
    assert_eq!(
        fx,
        vec![Effect::SyncReply {
            waiter: 7,
            result: Err(GroupError::InvalidGroupId)
        }]
    );
}

#[test]
fn leaving_while_others_wait_completes_the_join() {
    let mut h = Harness::stable_pair();
    let a = h.join("m1");
    assert!(h.join_reply(a).is_none(), "m2 has not rejoined yet");
    let results = h.leave(&[("m2", None)]);
    assert_eq!(results, vec![Ok(())]);
    let ra = h.joined(a);
    assert_eq!((ra.generation_id, ra.members.len()), (2, 1));
}

#[test]
fn a_parked_join_of_a_leaving_member_is_answered() {
    let mut h = Harness::new();
    let a = h.join("");
    let results = h.leave(&[("m1", None)]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(h.join_reply(a), Some(Err(GroupError::UnknownMemberId)));
}

fn static_request(member_id: &str, names: &[&str]) -> JoinRequest {
    Harness::request(member_id, Some("instance-1"), names, true)
}

#[test]
fn static_member_rejoin_replaces_without_rebalance_and_fences_the_old_id() {
    let mut h = Harness::new();
    let a = h.join_with(static_request("", &["range"]));
    let b = h.join("");
    h.advance(DELAY * 2);
    let old = h.joined(a).member_id;
    assert_eq!(
        old, "m1",
        "a static member gets its id without the handshake"
    );
    h.joined(b);
    let l = h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    h.sync_reply(l).unwrap().unwrap();
    h.stored();
    // The same instance restarts: a new member id, the same generation, no rebalance.
    let w = h.join_with(static_request("", &["range"]));
    let r = h.joined(w);
    assert_eq!(r.member_id, "m3");
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, "m3", "leadership follows the instance");
    assert!(r.skip_assignment, "a static leader must not reassign");
    assert_eq!(h.state(), GroupState::Stable);
    assert!(h.stored(), "the new member id is persisted");
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::UnknownMemberId));
    assert_eq!(
        h.groups.heartbeat("g", "m1", Some("instance-1"), 1, h.now),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        h.groups
            .check_commit("g", "m1", Some("instance-1"), 1, h.now),
        Err(GroupError::FencedInstanceId)
    );
    let w = h.join_with(static_request("m1", &["range"]));
    assert_eq!(h.join_reply(w), Some(Err(GroupError::FencedInstanceId)));
    assert_eq!(h.heartbeat("m3", 1), Ok(()));
    let s = h.sync("m3", 1, &[]);
    assert_eq!(
        h.sync_reply(s).unwrap().unwrap().assignment,
        "A",
        "assignment kept"
    );
}

#[test]
fn static_member_with_new_protocols_triggers_a_rebalance() {
    let mut h = Harness::new();
    let a = h.join_with(static_request("", &["range"]));
    h.advance(DELAY);
    h.joined(a);
    let l = h.sync("m1", 1, &[("m1", "A")]);
    h.sync_reply(l).unwrap().unwrap();
    // The only member rejoined, so the rebalance it causes completes at once.
    let w = h.join_with(static_request("", &["cooperative-sticky"]));
    let r = h.joined(w);
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.protocol_name.as_deref(), Some("cooperative-sticky"));
}

#[test]
fn static_members_that_do_not_rejoin_stay_until_their_session_expires() {
    let mut h = Harness::new();
    let a = h.join_with(static_request("", &["range"]));
    let b = h.join("");
    h.advance(DELAY * 2);
    h.joined(a);
    h.joined(b);
    let l = h.sync("m1", 1, &[]);
    h.sync_reply(l).unwrap().unwrap();
    // A new member starts a rebalance; m2 (dynamic) rejoins; the static m1 is silent.
    let c = h.join("");
    let b = h.join("m2");
    assert!(h.join_reply(b).is_none());
    h.advance(SESSION as i64 - 1);
    assert!(
        h.join_reply(b).is_none(),
        "the static member is still in its session"
    );
    assert!(h.groups.group("g").unwrap().member("m1").is_some());
    h.advance(1);
    let rb = h.joined(b);
    assert_eq!(rb.members.len(), 2);
    assert_eq!(rb.leader, "m2");
    assert_eq!(h.joined(c).generation_id, 2);
}

#[test]
fn static_member_can_leave_by_instance_id() {
    let mut h = Harness::new();
    let a = h.join_with(static_request("", &["range"]));
    h.advance(DELAY);
    h.joined(a);
    let results = h.leave(&[("", Some("instance-1"))]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(h.state(), GroupState::Empty);
    let results = h.leave(&[("", Some("instance-9"))]);
    assert_eq!(results, vec![Err(GroupError::UnknownMemberId)]);
}

#[test]
fn protocol_selection_prefers_the_most_voted_common_protocol() {
    let mut h = Harness::new();
    let a = h.join_with(Harness::request("", None, &["range", "roundrobin"], false));
    let b = h.join_with(Harness::request("", None, &["roundrobin", "range"], false));
    let c = h.join_with(Harness::request(
        "",
        None,
        &["sticky", "roundrobin", "range"],
        false,
    ));
    // No protocol in common with the others.
    let d = h.join_with(Harness::request("", None, &["other"], false));
    assert_eq!(
        h.join_reply(d),
        Some(Err(GroupError::InconsistentGroupProtocol))
    );
    let mut wrong_type = Harness::request("", None, &["range"], false);
    wrong_type.protocol_type = "connect".into();
    let e = h.join_with(wrong_type);
    assert_eq!(
        h.join_reply(e),
        Some(Err(GroupError::InconsistentGroupProtocol))
    );
    h.advance(DELAY * 3);
    // "sticky" is not common; roundrobin gets 2 votes (b, c), range 1 (a).
    assert_eq!(h.joined(a).protocol_name.as_deref(), Some("roundrobin"));
    h.joined(b);
    h.joined(c);
}

#[test]
fn an_empty_protocol_list_is_inconsistent() {
    let mut h = Harness::new();
    let w = h.join_with(Harness::request("", None, &[], false));
    assert_eq!(
        h.join_reply(w),
        Some(Err(GroupError::InconsistentGroupProtocol))
    );
    assert!(h.groups.group("g").is_none());
}

#[test]
fn waiting_followers_learn_of_a_new_rebalance() {
    let mut h = Harness::new();
    let a = h.join("");
    let b = h.join("");
    h.advance(DELAY * 2);
    h.joined(a);
    h.joined(b);
    let f = h.sync("m2", 1, &[]);
    // A new member arrives before the leader syncs.
    h.join("");
    assert_eq!(h.sync_reply(f), Some(Err(GroupError::RebalanceInProgress)));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_lost_join_response_is_repeated_during_completing_rebalance() {
    let mut h = Harness::new();
    let a = h.join("");
    h.advance(DELAY);
    let first = h.joined(a);
    let again = h.join("m1");
    assert_eq!(h.joined(again), first);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_rejoining_leader_in_stable_triggers_a_rebalance_but_a_follower_does_not() {
    let mut h = Harness::stable_pair();
    let b = h.join("m2");
    let rb = h.joined(b);
    assert_eq!(rb.generation_id, 1);
    assert_eq!(h.state(), GroupState::Stable);
    let a = h.join("m1");
    assert!(h.join_reply(a).is_none());
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn pending_member_ids_expire_and_block_completion_until_then() {
    let mut h = Harness::stable_pair();
    let w = h.join_with(Harness::request("", None, &["range"], true));
    assert!(matches!(
        h.join_reply(w),
        Some(Err(GroupError::MemberIdRequired(_)))
    ));
    // The group is still stable; the pending member only joins when it comes back.
    assert_eq!(h.state(), GroupState::Stable);
    let a = h.join("m1");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let b = h.join("m2");
    assert!(
        h.join_reply(a).is_none(),
        "a pending member id holds the rebalance"
    );
    h.advance(SESSION as i64);
    assert_eq!(h.joined(a).generation_id, 2);
    h.joined(b);
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: DELAY,
        max_size: 1,
        ..GroupConfig::default()
    });
    h.join("");
    let w = h.join("");
    assert_eq!(h.join_reply(w), Some(Err(GroupError::GroupMaxSizeReached)));
}

fn offset(o: i64, at: i64) -> CommittedOffset {
    CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: "meta".into(),
        commit_timestamp_ms: at,
        expire_timestamp_ms: None,
    }
}

#[test]
fn txn_commit_checks() {
    let mut h = Harness::new();
    // An unknown group: generation -1 creates a simple group, anything else is refused.
    assert_eq!(
        h.groups.check_txn_commit("simple", "", None, -1, h.now),
        Ok(())
    );
    assert_eq!(
        h.groups.check_txn_commit("unknown", "m", None, 3, h.now),
        Err(GroupError::IllegalGeneration)
    );
    let mut h = Harness::stable_pair();
    // Unlike OffsetCommit, no member at generation -1 is accepted in a group with members
    // (TxnOffsetCommit before v3 names none).
    assert_eq!(h.groups.check_txn_commit("g", "", None, -1, h.now), Ok(()));
    assert_eq!(h.groups.check_txn_commit("g", "m1", None, 1, h.now), Ok(()));
    assert_eq!(
        h.groups.check_txn_commit("g", "m1", None, -1, h.now),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        h.groups.check_txn_commit("g", "m1", None, 2, h.now),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        h.groups.check_txn_commit("g", "zz", None, 1, h.now),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        h.groups
            .check_txn_commit("g", "m1", Some("not-a-static-member"), 1, h.now),
        Err(GroupError::UnknownMemberId)
    );
    // The group's state is not enforced: a member at the current generation commits while
    // the group completes a rebalance (OffsetCommit gets REBALANCE_IN_PROGRESS there).
    let a = h.join("m1");
    h.join("m2");
    h.joined(a);
    assert_eq!(
        h.groups.check_commit("g", "m1", None, 2, h.now),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(h.groups.check_txn_commit("g", "m1", None, 2, h.now), Ok(()));
}

#[test]
fn commit_checks() {
    let mut h = Harness::new();
    // Simple commit to an unknown group creates it, Empty, with no protocol type.
    assert_eq!(h.groups.check_commit("simple", "", None, -1, h.now), Ok(()));
    let g = h.groups.group("simple").unwrap();
    assert_eq!((g.state(), g.protocol_type()), (GroupState::Empty, ""));
    assert_eq!(
        h.groups.check_commit("unknown", "m", None, 3, h.now),
        Err(GroupError::IllegalGeneration)
    );
    // Kafka accepts generation -1 to an unknown group whatever the member id, and commits
    // to the empty group id (kept for old clients).
    assert_eq!(
        h.groups
            .check_commit("manual", "stale-member", None, -1, h.now),
        Ok(())
    );
    assert_eq!(h.groups.check_commit("", "", None, -1, h.now), Ok(()));
    assert_eq!(h.groups.group("").unwrap().state(), GroupState::Empty);
    let mut h = Harness::stable_pair();
    assert_eq!(
        h.groups.check_commit("g", "", None, -1, h.now),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(h.groups.check_commit("g", "m1", None, 1, h.now), Ok(()));
    assert_eq!(
        h.groups.check_commit("g", "m1", None, 0, h.now),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        h.groups.check_commit("g", "zz", None, 1, h.now),
        Err(GroupError::UnknownMemberId)
    );
    // A member may still commit its old generation while a rebalance is being prepared.
    let a = h.join("m1");
    assert_eq!(h.groups.check_commit("g", "m2", None, 1, h.now), Ok(()));
    h.join("m2");
    h.joined(a);
    assert_eq!(
        h.groups.check_commit("g", "m1", None, 2, h.now),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn commits_keep_the_group_and_read_back() {
    let mut h = Harness::new();
    let tp = TopicPartition::new("events", 0);
    h.groups
        .apply_commit("s", vec![(tp.clone(), offset(42, h.now))], h.now);
    assert_eq!(h.groups.committed("s", &tp).unwrap().offset, 42);
    assert_eq!(
        h.groups.committed("s", &TopicPartition::new("events", 1)),
        None
    );
    h.groups
        .apply_commit("s", vec![(tp.clone(), offset(43, h.now))], h.now);
    assert_eq!(h.groups.committed("s", &tp).unwrap().offset, 43);
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let mut h = Harness::stable_pair();
    let tp = TopicPartition::new("events", 0);
    h.groups
        .apply_commit("g", vec![(tp.clone(), offset(5, h.now))], h.now);
    let retention = 60_000;
    // Not while the group has members.
    h.now += retention * 2;
    assert_eq!(
        h.groups.expire_offsets(h.now, retention, &HashSet::new()),
        vec![]
    );
    h.leave(&[("m1", None), ("m2", None)]);
    assert_eq!(h.state(), GroupState::Empty);
    h.now += retention - 1;
    assert_eq!(
        h.groups.expire_offsets(h.now, retention, &HashSet::new()),
        vec![]
    );
    h.now += 1;
    let fx = h.groups.expire_offsets(h.now, retention, &HashSet::new());
    assert_eq!(
        fx,
        vec![
            Effect::RemoveOffsets {
                group_id: "g".into(),
                partitions: vec![tp.clone()]
            },
            Effect::RemoveGroup {
                group_id: "g".into()
            }
        ]
    );
    assert!(h.groups.group("g").is_none());
}

#[test]
fn offsets_of_simple_groups_expire_per_commit() {
    let mut h = Harness::new();
    let retention = 60_000;
    let old = TopicPartition::new("events", 0);
    let new = TopicPartition::new("events", 1);
    h.groups.check_commit("s", "", None, -1, h.now).unwrap();
    h.groups
        .apply_commit("s", vec![(old.clone(), offset(1, h.now))], h.now);
    h.groups
        .apply_commit("s", vec![(new.clone(), offset(2, h.now + 30_000))], h.now);
    let fx = h
        .groups
        .expire_offsets(h.now + retention, retention, &HashSet::new());
    assert_eq!(
        fx,
        vec![Effect::RemoveOffsets {
            group_id: "s".into(),
            partitions: vec![old]
        }]
    );
    assert_eq!(h.groups.committed("s", &new).unwrap().offset, 2);
    // An explicit expire timestamp (OffsetCommit v2-v4 retention) wins.
    let mut o = offset(3, h.now);
    o.expire_timestamp_ms = Some(h.now + 10);
    h.groups.apply_commit("s", vec![(new.clone(), o)], h.now);
    assert_eq!(
        h.groups
            .expire_offsets(h.now + 10, retention, &HashSet::new())
            .len(),
        2
    );
    assert!(h.groups.group("s").is_none());
}

#[test]
fn delete_group_rules() {
    let mut h = Harness::stable_pair();
    assert_eq!(h.groups.delete_group("g"), Err(GroupError::NonEmptyGroup));
    assert_eq!(h.groups.delete_group("x"), Err(GroupError::GroupIdNotFound));
    let tp = TopicPartition::new("events", 3);
    h.groups
        .apply_commit("s", vec![(tp.clone(), offset(1, h.now))], h.now);
    assert_eq!(
        h.groups.delete_group("s"),
        Ok(vec![
            Effect::RemoveOffsets {
                group_id: "s".into(),
                partitions: vec![tp]
            },
            Effect::RemoveGroup {
                group_id: "s".into()
            }
        ])
    );
    assert!(h.groups.group("s").is_none());
}

#[test]
fn delete_offsets_refuses_subscribed_topics_of_active_groups() {
    let mut h = Harness::stable_pair();
    let subscribed = TopicPartition::new("events", 0);
    let other = TopicPartition::new("old-topic", 0);
    h.groups.apply_commit(
        "g",
        vec![
            (subscribed.clone(), offset(1, h.now)),
            (other.clone(), offset(2, h.now)),
        ],
        h.now,
    );
    let (results, fx) = h
        .groups
        .delete_offsets("g", &[subscribed.clone(), other.clone()])
        .unwrap();
    assert_eq!(
        results,
        vec![Err(GroupError::GroupSubscribedToTopic), Ok(())]
    );
    assert_eq!(
        fx,
        vec![Effect::RemoveOffsets {
            group_id: "g".into(),
            partitions: vec![other.clone()]
        }]
    );
    assert!(h.groups.committed("g", &other).is_none());
    assert!(h.groups.committed("g", &subscribed).is_some());
    assert_eq!(
        h.groups.delete_offsets("nope", &[other]).unwrap_err(),
        GroupError::GroupIdNotFound
    );
}

#[test]
fn restored_groups_keep_their_generation_and_members() {
    let h = Harness::stable_pair();
    let stored = h.groups.group("g").unwrap().stored();
    assert_eq!(stored.members.len(), 2);
    assert_eq!(stored.members[1].assignment, "B");
    let mut fresh = Harness::new();
    let tp = TopicPartition::new("events", 0);
    fresh
        .groups
        .apply_commit("g", vec![(tp.clone(), offset(9, 0))], 0);
    fresh.groups.restore_group("g", stored, fresh.now);
    assert_eq!(fresh.state(), GroupState::Stable);
    assert_eq!(fresh.heartbeat("m2", 1), Ok(()));
    assert_eq!(fresh.groups.committed("g", &tp).unwrap().offset, 9);
    let s = fresh.sync("m2", 1, &[]);
    assert_eq!(fresh.sync_reply(s).unwrap().unwrap().assignment, "B");
    // m1 never comes back: its session expires and m2 rebalances alone.
    fresh.advance(SESSION as i64 / 2);
    assert_eq!(fresh.heartbeat("m2", 1), Ok(()));
    fresh.advance(SESSION as i64 / 2);
    assert_eq!(
        fresh.heartbeat("m2", 1),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn consumer_subscription_parsing() {
    assert_eq!(
        parse_consumer_subscription(&subscription(&["a", "bc"])),
        Some(vec!["a".to_string(), "bc".to_string()])
    );
    assert_eq!(parse_consumer_subscription(&[0, 0, 0, 0, 0, 5]), None);
    assert_eq!(parse_consumer_subscription(&[]), None);
}

#[test]
fn consumer_subscription_parsing_reads_the_v0_prefix_of_every_version() {
    // Version 3: topics, user data, owned partitions, generation, rack.
    let mut v3 = subscription(&["orders"]).to_vec();
    v3[..2].copy_from_slice(&3i16.to_be_bytes());
    let len = v3.len();
    // User data of 2 bytes instead of null.
    v3[len - 4..].copy_from_slice(&2i32.to_be_bytes());
    v3.extend_from_slice(b"ud");
    v3.extend_from_slice(&1i32.to_be_bytes()); // one owned topic
    v3.extend_from_slice(&6i16.to_be_bytes());
    v3.extend_from_slice(b"orders");
    v3.extend_from_slice(&1i32.to_be_bytes());
    v3.extend_from_slice(&0i32.to_be_bytes());
    v3.extend_from_slice(&7i32.to_be_bytes()); // generation
    v3.extend_from_slice(&(-1i16).to_be_bytes()); // rack: null
    assert_eq!(
        parse_consumer_subscription(&v3),
        Some(vec!["orders".to_string()])
    );
    // Bad bytes: no panic, just unknown.
    let good = subscription(&["a"]).to_vec();
    for cut in 0..good.len() {
        assert_eq!(
            parse_consumer_subscription(&good[..cut]),
            None,
            "cut at {cut}"
        );
    }
    let mut negative_version = good.clone();
    negative_version[..2].copy_from_slice(&(-1i16).to_be_bytes());
    assert_eq!(parse_consumer_subscription(&negative_version), None);
    let null_topics = [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(parse_consumer_subscription(&null_topics), None);
    let huge_count = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
    assert_eq!(parse_consumer_subscription(&huge_count), None);
    let mut bad_utf8 = good.clone();
    bad_utf8[8] = 0xff;
    assert_eq!(parse_consumer_subscription(&bad_utf8), None);
    let mut bad_user_data = good;
    let len = bad_user_data.len();
    bad_user_data[len - 4..].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(parse_consumer_subscription(&bad_user_data), None);
}

/// `stable_pair` with both members subscribed to `topics`.
fn stable_pair_subscribed(metadata: Bytes) -> Harness {
    let mut h = Harness::new();
    let mut req = Harness::request("", None, &["range"], false);
    req.protocols[0].metadata = metadata;
    let a = h.join_with(req.clone());
    let b = h.join_with(req);
    h.advance(DELAY * 2);
    h.joined(a);
    h.joined(b);
    h.sync("m2", 1, &[]);
    h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    assert_eq!(h.state(), GroupState::Stable);
    h
}

#[test]
fn offsets_of_unsubscribed_topics_expire_in_a_stable_consumer_group() {
    let mut h = stable_pair_subscribed(subscription(&["events", "audit"]));
    let retention = 60_000;
    let t0 = h.now;
    let events = TopicPartition::new("events", 0);
    let old = TopicPartition::new("old-topic", 0);
    let older = TopicPartition::new("old-topic", 1);
    h.groups.apply_commit(
        "g",
        vec![
            (events.clone(), offset(1, t0 - retention * 10)),
            (old.clone(), offset(2, t0)),
            (older.clone(), offset(3, t0 - 1)),
        ],
        t0,
    );
    assert_eq!(
        h.groups
            .expire_offsets(t0 + retention - 2, retention, &HashSet::new()),
        vec![]
    );
    // Each unsubscribed offset goes `retention` after its own commit; subscribed ones stay.
    assert_eq!(
        h.groups
            .expire_offsets(t0 + retention - 1, retention, &HashSet::new()),
        vec![Effect::RemoveOffsets {
            group_id: "g".into(),
            partitions: vec![older.clone()]
        }]
    );
    assert_eq!(
        h.groups
            .expire_offsets(t0 + retention, retention, &HashSet::new()),
        vec![Effect::RemoveOffsets {
            group_id: "g".into(),
            partitions: vec![old.clone()]
        }]
    );
    assert_eq!(h.groups.committed("g", &events).unwrap().offset, 1);
    assert!(h.groups.committed("g", &old).is_none());
    assert_eq!(
        h.groups
            .expire_offsets(t0 + retention * 100, retention, &HashSet::new()),
        vec![]
    );
    assert_eq!(h.state(), GroupState::Stable, "the group itself stays");
}

#[test]
fn active_groups_keep_offsets_they_cannot_judge() {
    let retention = 60_000;
    let old = TopicPartition::new("old-topic", 0);
    // A consumer group whose subscriptions do not parse keeps everything.
    let mut h = stable_pair_subscribed(Bytes::from_static(b"\x00\x00junk"));
    h.groups
        .apply_commit("g", vec![(old.clone(), offset(1, h.now))], h.now);
    assert_eq!(
        h.groups
            .expire_offsets(h.now + retention, retention, &HashSet::new()),
        vec![]
    );
    // So does a rebalancing consumer group, even for an explicit expire timestamp.
    let mut h = Harness::stable_pair();
    let mut o = offset(1, h.now);
    o.expire_timestamp_ms = Some(h.now + 10);
    h.groups.apply_commit("g", vec![(old.clone(), o)], h.now);
    h.join("m1");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.groups
            .expire_offsets(h.now + retention, retention, &HashSet::new()),
        vec![]
    );
    // And a stable group of another protocol type.
    let mut h = Harness::new();
    let mut req = Harness::request("", None, &["range"], false);
    req.protocol_type = "connect".into();
    let a = h.join_with(req);
    h.advance(DELAY);
    h.joined(a);
    let req = SyncRequest {
        generation_id: 1,
        member_id: "m1".into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    h.groups.sync("g", &req, 99, h.now);
    assert_eq!(h.state(), GroupState::Stable);
    h.groups
        .apply_commit("g", vec![(old.clone(), offset(1, h.now))], h.now);
    assert_eq!(
        h.groups
            .expire_offsets(h.now + retention, retention, &HashSet::new()),
        vec![]
    );
    assert!(h.groups.committed("g", &old).is_some());
}

#[test]
fn nobody_rejoining_empties_the_group_at_the_rebalance_timeout() {
    let mut h = Harness::stable_pair();
    // Both members keep heartbeating (in their sessions) but neither rejoins: the new member
    // that triggered the rebalance leaves again before it completes.
    let c = h.join("");
    let results = h.leave(&[("m3", None)]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(h.join_reply(c), Some(Err(GroupError::UnknownMemberId)));
    for _ in 0..3 {
        h.advance(5_000);
        assert_eq!(h.heartbeat("m1", 1), Err(GroupError::RebalanceInProgress));
        assert_eq!(h.heartbeat("m2", 1), Err(GroupError::RebalanceInProgress));
    }
    h.advance(REBALANCE as i64 - 15_000);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.groups.group("g").unwrap().generation_id(), 2);
    assert!(h.stored(), "the empty generation is persisted");
    assert_eq!(h.heartbeat("m1", 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn a_leader_that_never_syncs_is_replaced_after_its_session() {
    let mut h = Harness::new();
    let a = h.join("");
    let b = h.join("");
    h.advance(DELAY * 2);
    h.joined(a);
    h.joined(b);
    // The follower waits in SyncGroup; the leader is silent.
    let f = h.sync("m2", 1, &[]);
    h.advance(SESSION as i64 - 1);
    assert!(h.sync_reply(f).is_none());
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    h.advance(1);
    // The leader's session ended: a new rebalance starts and the follower is told to rejoin.
    assert_eq!(h.sync_reply(f), Some(Err(GroupError::RebalanceInProgress)));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let b = h.join("m2");
    let rb = h.joined(b);
    assert_eq!((rb.generation_id, rb.leader.as_str()), (2, "m2"));
}

impl Harness {
    /// Advances the clock by `ms` in steps shorter than a session, each member of `members`
    /// heartbeating at generation `generation` after every step (errors are ignored).
    fn advance_heartbeating(&mut self, ms: i64, members: &[&str], generation: i32) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(i64::from(SESSION) / 2);
            self.advance(step);
            left -= step;
            for m in members {
                let _ = self.heartbeat(m, generation);
            }
        }
    }
}

/// Two members joined at generation 1 (CompletingRebalance), nobody synced yet. The second
/// member's rebalance timeout is `follower_rebalance_ms`.
fn completing_pair(follower_rebalance_ms: i32) -> Harness {
    let mut h = Harness::new();
    let a = h.join("");
    let mut req = Harness::request("", None, &["range"], false);
    req.rebalance_timeout_ms = follower_rebalance_ms;
    let b = h.join_with(req);
    h.advance(DELAY * 2);
    assert_eq!(h.joined(a).generation_id, 1);
    assert_eq!(h.joined(b).generation_id, 1);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    h
}

#[test]
fn a_heartbeating_leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let mut h = completing_pair(REBALANCE);
    let f = h.sync("m2", 1, &[]);
    // The leader keeps its session alive but never sends SyncGroup.
    let mut elapsed = 0;
    while elapsed + 5_000 < REBALANCE as i64 {
        h.advance(5_000);
        elapsed += 5_000;
        assert_eq!(h.heartbeat("m1", 1), Ok(()));
    }
    h.advance(REBALANCE as i64 - elapsed - 1);
    assert!(
        h.sync_reply(f).is_none(),
        "still inside the rebalance timeout"
    );
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    h.advance(1);
    // The leader is gone; the waiting follower is told to rejoin.
    assert_eq!(h.sync_reply(f), Some(Err(GroupError::RebalanceInProgress)));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::UnknownMemberId));
    let members: Vec<&str> = h
        .groups
        .group("g")
        .unwrap()
        .members()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, vec!["m2"]);
    // m2 is the only member left: its rejoin completes generation 2 at once, as leader.
    let b = h.join("m2");
    let rb = h.joined(b);
    assert_eq!((rb.generation_id, rb.leader.as_str()), (2, "m2"));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_follower_that_never_syncs_is_removed_even_once_stable() {
    let mut h = completing_pair(REBALANCE);
    h.advance_heartbeating(1_000, &["m1", "m2"], 1);
    let l = h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    assert_eq!(h.sync_reply(l).unwrap().unwrap().assignment, "A");
    assert_eq!(h.state(), GroupState::Stable);
    assert!(h.stored());
    let pending: Vec<&str> = h
        .groups
        .group("g")
        .unwrap()
        .pending_sync_members()
        .collect();
    assert_eq!(pending, vec!["m2"]);
    // m2 heartbeats successfully but never fetches its assignment.
    h.advance_heartbeating(REBALANCE as i64 - 1_000 - 1, &["m1", "m2"], 1);
    assert_eq!(h.heartbeat("m2", 1), Ok(()));
    assert_eq!(h.heartbeat("m1", 1), Ok(()));
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(1);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("m2", 1), Err(GroupError::UnknownMemberId));
    assert_eq!(h.heartbeat("m1", 1), Err(GroupError::RebalanceInProgress));
    let a = h.join("m1");
    let ra = h.joined(a);
    assert_eq!((ra.generation_id, ra.members.len()), (2, 1));
}

#[test]
fn members_that_all_sync_in_time_are_not_removed() {
    let mut h = completing_pair(REBALANCE);
    let f = h.sync("m2", 1, &[]);
    h.advance_heartbeating(REBALANCE as i64 - 1, &["m1"], 1);
    let l = h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    assert_eq!(h.sync_reply(f).unwrap().unwrap().assignment, "B");
    assert_eq!(h.sync_reply(l).unwrap().unwrap().assignment, "A");
    let group = h.groups.group("g").unwrap();
    assert_eq!(group.pending_sync_members().count(), 0);
    // Nothing is due before the sessions end.
    assert_eq!(h.groups.next_deadline(), Some(h.now + i64::from(SESSION)));
    h.advance_heartbeating(REBALANCE as i64, &["m1", "m2"], 1);
    assert_eq!(h.heartbeat("m1", 1), Ok(()));
    assert_eq!(h.heartbeat("m2", 1), Ok(()));
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn the_pending_sync_timeout_is_the_largest_rebalance_timeout() {
    let long = REBALANCE * 2;
    let mut h = completing_pair(long);
    // The sync deadline is the first thing due after the session (both members keep heartbeats).
    assert_eq!(
        h.groups.next_deadline(),
        Some(h.now + i64::from(SESSION)),
        "sessions first"
    );
    let mut elapsed = 0;
    while elapsed < i64::from(long) - 1 {
        let step = 5_000.min(i64::from(long) - 1 - elapsed);
        h.advance(step);
        elapsed += step;
        assert_eq!(h.heartbeat("m1", 1), Ok(()));
        assert_eq!(h.heartbeat("m2", 1), Ok(()));
    }
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.groups.next_deadline(), Some(h.now + 1));
    h.advance(1);
    // Neither synced: both are removed and the group empties.
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.groups.group("g").unwrap().generation_id(), 2);
    assert_eq!(h.heartbeat("m1", 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn a_new_rebalance_cancels_the_pending_sync_timeout() {
    let mut h = completing_pair(REBALANCE);
    h.advance_heartbeating(5_000, &["m1", "m2"], 1);
    // A third member joins before anyone syncs: generation 1 is abandoned.
    let c = h.join("");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let a = h.join("m1");
    let b = h.join("m2");
    let (ra, rb, rc) = (h.joined(a), h.joined(b), h.joined(c));
    assert_eq!(
        (ra.generation_id, rb.generation_id, rc.generation_id),
        (2, 2, 2)
    );
    // Generation 1's sync deadline passes: generation 2 still has time.
    h.advance_heartbeating(REBALANCE as i64 - 5_000, &["m1", "m2", "m3"], 2);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.groups.group("g").unwrap().members().count(), 3);
    h.advance_heartbeating(4_999, &["m1", "m2", "m3"], 2);
    let l = h.sync("m1", 2, &[]);
    h.sync("m2", 2, &[]);
    h.sync("m3", 2, &[]);
    assert!(h.sync_reply(l).unwrap().is_ok());
    h.advance_heartbeating(REBALANCE as i64, &["m1", "m2", "m3"], 2);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.groups.group("g").unwrap().members().count(), 3);
}

#[test]
fn offsets_with_a_commit_in_flight_do_not_expire() {
    let mut h = Harness::new();
    let retention = 60_000;
    let tp = TopicPartition::new("events", 0);
    h.groups.check_commit("s", "", None, -1, h.now).unwrap();
    h.groups
        .apply_commit("s", vec![(tp.clone(), offset(1, h.now))], h.now);
    // A newer commit is appended but not durable yet when the old one reaches its retention.
    h.groups.begin_commit("s", std::slice::from_ref(&tp), h.now);
    h.groups.begin_commit("s", std::slice::from_ref(&tp), h.now);
    let later = h.now + retention;
    assert_eq!(
        h.groups.expire_offsets(later, retention, &HashSet::new()),
        vec![]
    );
    h.groups.end_commit("s", std::slice::from_ref(&tp));
    assert_eq!(
        h.groups.expire_offsets(later, retention, &HashSet::new()),
        vec![],
        "one commit still in flight"
    );
    h.groups.end_commit("s", std::slice::from_ref(&tp));
    h.groups
        .apply_commit("s", vec![(tp.clone(), offset(2, later))], later);
    assert_eq!(
        h.groups.expire_offsets(later, retention, &HashSet::new()),
        vec![]
    );
    assert_eq!(h.groups.committed("s", &tp).unwrap().offset, 2);

    // A group whose only offset is in flight is not removed as unused.
    let mut h = Harness::new();
    h.groups.check_commit("t", "", None, -1, h.now).unwrap();
    h.groups.begin_commit("t", std::slice::from_ref(&tp), h.now);
    assert_eq!(
        h.groups
            .expire_offsets(h.now + retention, retention, &HashSet::new()),
        vec![]
    );
    assert!(h.groups.group("t").is_some());
    // A failed commit ends its mark: the unused group then goes.
    h.groups.end_commit("t", std::slice::from_ref(&tp));
    assert_eq!(
        h.groups
            .expire_offsets(h.now + retention, retention, &HashSet::new()),
        vec![Effect::RemoveGroup {
            group_id: "t".into()
        }]
    );
}

#[test]
fn delete_offsets_of_an_active_non_consumer_group_is_refused() {
    let mut h = Harness::new();
    let mut req = Harness::request("", None, &["range"], false);
    req.protocol_type = "connect".into();
    let a = h.join_with(req);
    h.advance(DELAY);
    h.joined(a);
    let tp = TopicPartition::new("old-topic", 0);
    h.groups
        .apply_commit("g", vec![(tp.clone(), offset(1, h.now))], h.now);
    assert_eq!(
        h.groups.delete_offsets("g", std::slice::from_ref(&tp)),
        Err(GroupError::NonEmptyGroup)
    );
    assert!(h.groups.committed("g", &tp).is_some());
    // Once Empty, any offset may go.
    h.leave(&[("m1", None)]);
    assert_eq!(h.state(), GroupState::Empty);
    let (results, fx) = h
        .groups
        .delete_offsets("g", std::slice::from_ref(&tp))
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(fx.len(), 1);
    assert!(h.groups.committed("g", &tp).is_none());
}

#[test]
fn group_max_size_keeps_the_members_that_rejoin_first() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: DELAY,
        max_size: 2,
        ..GroupConfig::default()
    });
    let a = h.join("");
    let b = h.join("");
    h.advance(DELAY * 2);
    h.joined(a);
    h.joined(b);
    h.sync("m2", 1, &[]);
    h.sync("m1", 1, &[("m1", "A"), ("m2", "B")]);
    assert_eq!(h.state(), GroupState::Stable);
    // A full Stable group turns a new member away.
    let c = h.join("");
    assert_eq!(h.join_reply(c), Some(Err(GroupError::GroupMaxSizeReached)));
    // The leader rejoins: while the rebalance is prepared, a newcomer counts against those
    // that rejoined so far (one), so it is accepted...
    let a = h.join("m1");
    let d = h.join("");
    assert!(
        h.join_reply(d).is_none(),
        "the newcomer waits in the join phase"
    );
    // ...and m2, rejoining third, is the one turned away and removed.
    let b = h.join("m2");
    assert_eq!(h.join_reply(b), Some(Err(GroupError::GroupMaxSizeReached)));
    let ra = h.joined(a);
    let rd = h.joined(d);
    assert_eq!((ra.generation_id, rd.generation_id), (2, 2));
    let ids: Vec<&str> = ra.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, vec!["m1", rd.member_id.as_str()]);
    assert_ne!(rd.member_id, "m2");
    assert_eq!(h.heartbeat("m2", 1), Err(GroupError::UnknownMemberId));
}
