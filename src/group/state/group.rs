//! One group's state machine: membership, the join and sync phases, static members, session
//! and rebalance deadlines. Pure like its parent module: time comes in as an argument, and
//! outcomes go out as [`Effect`]s.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;

use super::{
    CommittedOffset, Effect, GroupConfig, GroupError, GroupState, JoinMember, JoinRequest,
    JoinResponse, Member, Protocol, StoredGroup, StoredMember, SyncRequest, SyncResponse,
    TopicPartition, Waiter,
};

#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining_ms: i64,
    delay_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Rebalance {
    deadline_ms: i64,
    /// Present for the first rebalance out of Empty (group.initial.rebalance.delay.ms).
    initial: Option<InitialDelay>,
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    pub(super) group_id: String,
    pub(super) state: GroupState,
    pub(super) state_timestamp_ms: i64,
    pub(super) generation_id: i32,
    /// `None` for a group that only stores offsets (a "simple" group).
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED: id → (deadline).
    pub(super) pending_members: HashMap<String, i64>,
    rebalance: Option<Rebalance>,
    new_member_added: bool,
    /// Members of the current generation that have not sent SyncGroup yet, and when they will
    /// be removed for it (the group's rebalance timeout after the join phase completed).
    pending_sync: HashSet<String>,
    pending_sync_deadline_ms: Option<i64>,
    /// Partitions with a commit appended to `__consumer_offsets` but not yet durable (and so
    /// not yet in `offsets`): how many such commits each. Expiry leaves them alone.
    pub(super) pending_commits: HashMap<TopicPartition, u32>,
    pub(super) offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

impl Group {
    pub(super) fn new(group_id: &str, now: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            rebalance: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            pending_sync_deadline_ms: None,
            pending_commits: HashMap::new(),
            offsets: BTreeMap::new(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }
    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }
    /// The protocol type, "" for a simple group.
    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }
    pub fn offsets(&self) -> &BTreeMap<TopicPartition, CommittedOffset> {
        &self.offsets
    }

    /// The metadata to persist for this group.
    pub fn stored(&self) -> StoredGroup {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type().to_string(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp_ms = now;
    }

    pub(super) fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.group_instance_id.as_deref() == Some(instance_id))
            .map(|m| m.member_id.as_str())
    }

    /// Kafka's check that a request comes from a current member: a named instance id must be
    /// held by this member id (FENCED_INSTANCE_ID when another member id holds it,
    /// UNKNOWN_MEMBER_ID when nobody does), and the member id must be in the group.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(instance_id) = instance_id {
            match self.static_member_id(instance_id) {
                Some(current) if current != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
                None => return Err(GroupError::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    pub(super) fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every current member (except `except`) supports.
    pub(super) fn candidate_protocols(&self, except: Option<&str>) -> Option<HashSet<&str>> {
        let mut set: Option<HashSet<&str>> = None;
        for m in self.members.values() {
            if Some(m.member_id.as_str()) == except {
                continue;
            }
            let names: HashSet<&str> = m.protocols.iter().map(|p| p.name.as_str()).collect();
            set = Some(match set {
                None => names,
                Some(s) => s.intersection(&names).copied().collect(),
            });
        }
        set
    }

    pub(super) fn supports_protocols(
        &self,
        member_id: Option<&str>,
        protocol_type: &str,
        protocols: &[Protocol],
    ) -> bool {
        let others = self
            .members
            .keys()
            .filter(|k| Some(k.as_str()) != member_id)
            .count();
        if others == 0 {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols(member_id).unwrap_or_default();
        protocols
            .iter()
            .any(|p| candidates.contains(p.name.as_str()))
    }

    /// Kafka's choice: among protocols every member supports, the one most members list first
    /// (each votes for its most preferred candidate); ties go to the earliest member's preference.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None)?;
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        self.members
            .values()
            .flat_map(|m| m.protocols.iter())
            .map(|p| p.name.as_str())
            .find(|name| votes.get(name) == Some(&best))
            .map(str::to_string)
    }

    pub(super) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    pub(super) fn join_response(
        &self,
        member_id: &str,
        leader_view: bool,
        skip_assignment: bool,
    ) -> JoinResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResponse {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if leader_view {
                self.members
                    .values()
                    .map(|m| JoinMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment,
        }
    }

    pub(super) fn sync_response(&self, assignment: Bytes) -> SyncResponse {
        SyncResponse {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    pub(super) fn add_member(
        &mut self,
        cfg: &GroupConfig,
        member_id: &str,
        req: &JoinRequest,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            member_id: member_id.to_string(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now,
            awaiting_join: Some(waiter),
            awaiting_sync: None,
        };
        self.members.insert(member_id.to_string(), member);
        if self.leader.is_none() {
            self.leader = Some(member_id.to_string());
        }
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        self.maybe_prepare_rebalance(cfg, now, fx);
    }

    pub(super) fn update_member(
        &mut self,
        member_id: &str,
        req: &JoinRequest,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let member = self
            .members
            .get_mut(member_id)
            .expect("caller checked membership");
        if let Some(old) = member.awaiting_join.replace(waiter) {
            // The same member joined twice: the older request is superseded.
            fx.push(Effect::JoinReply {
                waiter: old,
                result: Err(GroupError::RebalanceInProgress),
            });
        }
        member.protocols = req.protocols.clone();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.last_heartbeat_ms = now;
    }

    pub(super) fn maybe_prepare_rebalance(
        &mut self,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(cfg, now, fx);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        // The generation whose syncs were awaited is over.
        self.clear_pending_sync();
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.awaiting_sync.take() {
                    m.last_heartbeat_ms = now;
                    fx.push(Effect::SyncReply {
                        waiter: w,
                        result: Err(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        let max_timeout = self.max_rebalance_timeout_ms();
        self.rebalance = Some(if self.state == GroupState::Empty {
            let delay = cfg.initial_rebalance_delay_ms;
            Rebalance {
                deadline_ms: now + delay,
                initial: Some(InitialDelay {
                    remaining_ms: (max_timeout - delay).max(0),
                    delay_ms: delay,
                }),
            }
        } else {
            Rebalance {
                deadline_ms: now + max_timeout,
                initial: None,
            }
        });
        self.transition(GroupState::PreparingRebalance, now);
    }

    /// Completes the join phase when its time has come (all joined, or the deadline passed).
    pub(super) fn maybe_complete_join(
        &mut self,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let Some(rebalance) = self.rebalance else {
            return;
        };
        match rebalance.initial {
            Some(mut initial) => {
                let mut deadline = rebalance.deadline_ms;
                // Each extension counts from the previous deadline, as Kafka's timer would
                // have fired then, however late this tick comes.
                loop {
                    if now < deadline {
                        self.rebalance = Some(Rebalance {
                            deadline_ms: deadline,
                            initial: Some(initial),
                        });
                        return;
                    }
                    if !(self.new_member_added && initial.remaining_ms != 0) {
                        break;
                    }
                    self.new_member_added = false;
                    let delay = cfg.initial_rebalance_delay_ms.min(initial.remaining_ms);
                    initial = InitialDelay {
                        remaining_ms: (initial.remaining_ms - initial.delay_ms).max(0),
                        delay_ms: delay,
                    };
                    deadline += delay;
                }
            }
            None => {
                if now < rebalance.deadline_ms && !self.all_members_joined() {
                    return;
                }
            }
        }
        self.complete_join(now, fx);
    }

    pub(super) fn complete_join(&mut self, now: i64, fx: &mut Vec<Effect>) {
        // Dynamic members that did not rejoin in time leave the group; static members stay
        // until their session expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member_entry(&id, fx);
        }
        if !self.members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_none()) {
            // Only static members that have not rejoined: wait for them (or their sessions).
            self.rebalance = Some(Rebalance {
                deadline_ms: now + self.max_rebalance_timeout_ms(),
                initial: None,
            });
            return;
        }
        if let Some(leader) = &self.leader {
            let rejoined = self
                .members
                .get(leader)
                .is_some_and(|m| m.awaiting_join.is_some());
            if !rejoined {
                self.leader = self
                    .members
                    .values()
                    .find(|m| m.awaiting_join.is_some())
                    .map(|m| m.member_id.clone());
            }
        }
        self.rebalance = None;
        self.new_member_added = false;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.transition(GroupState::Empty, now);
            fx.push(Effect::StoreGroup {
                group_id: self.group_id.clone(),
            });
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now);
        // Every member of the new generation must sync within the rebalance timeout.
        self.pending_sync = self.members.keys().cloned().collect();
        self.pending_sync_deadline_ms = Some(now + self.max_rebalance_timeout_ms());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let response = self.join_response(&id, is_leader, false);
            let m = self.members.get_mut(&id).expect("id taken from members");
            m.last_heartbeat_ms = now;
            if let Some(w) = m.awaiting_join.take() {
                fx.push(Effect::JoinReply {
                    waiter: w,
                    result: Ok(response),
                });
            }
        }
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
    pub(super) fn remove_member_entry(&mut self, member_id: &str, fx: &mut Vec<Effect>) {
        self.remove_pending_sync(member_id);
        if let Some(m) = self.members.shift_remove(member_id) {
            if let Some(w) = m.awaiting_join {
                fx.push(Effect::JoinReply {
                    waiter: w,
                    result: Err(GroupError::UnknownMemberId),
                });
            }
            if let Some(w) = m.awaiting_sync {
                fx.push(Effect::SyncReply {
                    waiter: w,
                    result: Err(GroupError::UnknownMemberId),
                });
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    pub(super) fn remove_member_and_update(
        &mut self,
        cfg: &GroupConfig,
        member_id: &str,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        self.remove_member_entry(member_id, fx);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(cfg, now, fx);
                self.maybe_complete_join(cfg, now, fx);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(cfg, now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Kafka's `group.max.size` rule for a JoinGroup (member id as sent, "" for a new one):
    /// while a rebalance is prepared, a member already rejoined is accepted and others only
    /// while fewer than the maximum have rejoined; otherwise a current member is accepted and
    /// others only while the group has fewer members than the maximum. Member ids handed out
    /// with MEMBER_ID_REQUIRED are not members yet and count as new.
    fn accepts_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                let rejoined = self
                    .members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some());
                let awaiting = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_join.is_some())
                    .count();
                rejoined || awaiting < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    pub(super) fn join(
        &mut self,
        cfg: &GroupConfig,
        req: &JoinRequest,
        new_member_id: &str,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let reply = |fx: &mut Vec<Effect>, result| fx.push(Effect::JoinReply { waiter, result });
        if !self.accepts_joining_member(&req.member_id, cfg.max_size) {
            // Kafka drops a known member it turns away (one that had not rejoined yet), so
            // the members that rejoined first make up the next generation.
            self.remove_member_entry(&req.member_id, fx);
            return reply(fx, Err(GroupError::GroupMaxSizeReached));
        }
        if self.state == GroupState::Dead {
            return reply(fx, Err(GroupError::CoordinatorNotAvailable));
        }
        // The member being updated (or the static member being replaced) does not count
        // against its own new protocols.
        let member_key = if self.members.contains_key(&req.member_id) {
            Some(req.member_id.clone())
        } else if req.member_id.is_empty() {
            req.group_instance_id
                .as_deref()
                .and_then(|i| self.static_member_id(i))
                .map(str::to_string)
        } else {
            None
        };
        let member_key = member_key.as_deref();
        if !self.supports_protocols(member_key, &req.protocol_type, &req.protocols) {
            return reply(fx, Err(GroupError::InconsistentGroupProtocol));
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(cfg, req, new_member_id, waiter, now, fx);
        } else {
            self.join_known_member(cfg, req, waiter, now, fx);
        }
    }

    pub(super) fn join_unknown_member(
        &mut self,
        cfg: &GroupConfig,
        req: &JoinRequest,
        new_member_id: &str,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(instance_id) = &req.group_instance_id {
            if let Some(old) = self.static_member_id(instance_id).map(str::to_string) {
                return self.replace_static_member(cfg, req, &old, new_member_id, waiter, now, fx);
            }
        }
        if req.group_instance_id.is_none() && req.require_known_member_id {
            self.pending_members.insert(
                new_member_id.to_string(),
                now + i64::from(req.session_timeout_ms),
            );
            return fx.push(Effect::JoinReply {
                waiter,
                result: Err(GroupError::MemberIdRequired(new_member_id.to_string())),
            });
        }
        self.add_member(cfg, new_member_id, req, waiter, now, fx);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn replace_static_member(
        &mut self,
        cfg: &GroupConfig,
        req: &JoinRequest,
        old_id: &str,
        new_id: &str,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let mut member = self
            .members
            .shift_remove(old_id)
            .expect("static member exists");
        // The old incarnation's parked requests learn that they are fenced.
        if let Some(w) = member.awaiting_join.take() {
            fx.push(Effect::JoinReply {
                waiter: w,
                result: Err(GroupError::FencedInstanceId),
            });
        }
        if let Some(w) = member.awaiting_sync.take() {
            fx.push(Effect::SyncReply {
                waiter: w,
                result: Err(GroupError::FencedInstanceId),
            });
        }
        member.protocols = req.protocols.clone();
        member.member_id = new_id.to_string();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now;
        member.awaiting_join = Some(waiter);
        self.members.insert(new_id.to_string(), member);
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    let is_leader = self.leader.as_deref() == Some(new_id);
                    let response = self.join_response(new_id, is_leader, is_leader);
                    self.members
                        .get_mut(new_id)
                        .expect("just inserted")
                        .awaiting_join = None;
                    fx.push(Effect::StoreGroup {
                        group_id: self.group_id.clone(),
                    });
                    fx.push(Effect::JoinReply {
                        waiter,
                        result: Ok(response),
                    });
                } else {
                    self.prepare_rebalance(cfg, now, fx);
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(cfg, now, fx),
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(super) fn join_known_member(
        &mut self,
        cfg: &GroupConfig,
        req: &JoinRequest,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let reply = |fx: &mut Vec<Effect>, result| fx.push(Effect::JoinReply { waiter, result });
        let id = req.member_id.as_str();
        if self.pending_members.remove(id).is_some() {
            return self.add_member(cfg, id, req, waiter, now, fx);
        }
        if let Err(e) = self.validate_member(id, req.group_instance_id.as_deref()) {
            return reply(fx, Err(e));
        }
        let member = self.members.get(id).expect("validated");
        let unchanged = member.same_protocols(&req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member(id, req, waiter, now, fx),
            GroupState::CompletingRebalance => {
                if unchanged {
                    // A retry of a join whose response was lost: answer it again.
                    let is_leader = self.leader.as_deref() == Some(id);
                    let response = self.join_response(id, is_leader, false);
                    self.members.get_mut(id).expect("checked").last_heartbeat_ms = now;
                    reply(fx, Ok(response));
                } else {
                    self.update_member(id, req, waiter, now, fx);
                    self.prepare_rebalance(cfg, now, fx);
                }
            }
            GroupState::Stable => {
                let is_leader = self.leader.as_deref() == Some(id);
                if is_leader || !unchanged {
                    self.update_member(id, req, waiter, now, fx);
                    self.prepare_rebalance(cfg, now, fx);
                } else {
                    let response = self.join_response(id, false, false);
                    self.members.get_mut(id).expect("checked").last_heartbeat_ms = now;
                    reply(fx, Ok(response));
                }
            }
            GroupState::Empty | GroupState::Dead => reply(fx, Err(GroupError::UnknownMemberId)),
        }
    }

    pub(super) fn sync(
        &mut self,
        req: &SyncRequest,
        waiter: Waiter,
        now: i64,
        fx: &mut Vec<Effect>,
    ) {
        let reply = |fx: &mut Vec<Effect>, result| fx.push(Effect::SyncReply { waiter, result });
        let id = req.member_id.as_str();
        if self.state == GroupState::Dead {
            return reply(fx, Err(GroupError::CoordinatorNotAvailable));
        }
        if let Err(e) = self.validate_member(id, req.group_instance_id.as_deref()) {
            return reply(fx, Err(e));
        }
        if req.generation_id != self.generation_id {
            return reply(fx, Err(GroupError::IllegalGeneration));
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            return reply(fx, Err(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reply(fx, Err(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => reply(fx, Err(GroupError::RebalanceInProgress)),
            GroupState::CompletingRebalance => {
                self.remove_pending_sync(id);
                let member = self.members.get_mut(id).expect("checked");
                member.last_heartbeat_ms = now;
                if let Some(old) = member.awaiting_sync.replace(waiter) {
                    fx.push(Effect::SyncReply {
                        waiter: old,
                        result: Err(GroupError::RebalanceInProgress),
                    });
                }
                if self.leader.as_deref() == Some(id) {
                    let assignments: HashMap<&str, &Bytes> = req
                        .assignments
                        .iter()
                        .map(|(m, a)| (m.as_str(), a))
                        .collect();
                    for m in self.members.values_mut() {
                        m.assignment = assignments
                            .get(m.member_id.as_str())
                            .map(|a| (*a).clone())
                            .unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now);
                    fx.push(Effect::StoreGroup {
                        group_id: self.group_id.clone(),
                    });
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol_name.clone();
                    for m in self.members.values_mut() {
                        if let Some(w) = m.awaiting_sync.take() {
                            m.last_heartbeat_ms = now;
                            fx.push(Effect::SyncReply {
                                waiter: w,
                                result: Ok(SyncResponse {
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            });
                        }
                    }
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(id);
                let member = self.members.get_mut(id).expect("checked");
                member.last_heartbeat_ms = now;
                let assignment = member.assignment.clone();
                reply(fx, Ok(self.sync_response(assignment)));
            }
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, instance_id)?;
        let member = self.members.get_mut(member_id).expect("validated");
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.last_heartbeat_ms = now;
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat_ms = now;
                Ok(())
            }
        }
    }

    pub(super) fn leave(
        &mut self,
        cfg: &GroupConfig,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), GroupError> {
        let target = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_member_id(i)) {
                Some(id) => id.to_string(),
                None => return Err(GroupError::UnknownMemberId),
            }
        } else if self.pending_members.remove(member_id).is_some() {
            // A member id handed out with MEMBER_ID_REQUIRED that never joined.
            self.maybe_complete_join(cfg, now, fx);
            return Ok(());
        } else {
            self.validate_member(member_id, instance_id)?;
            member_id.to_string()
        };
        self.remove_member_and_update(cfg, &target, now, fx);
        Ok(())
    }

    pub(super) fn tick(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.session_alive(now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(cfg, &id, now, fx);
        }
        self.expire_pending_sync(cfg, now, fx);
        self.pending_members.retain(|_, deadline| *deadline > now);
        self.maybe_complete_join(cfg, now, fx);
    }

    pub(super) fn next_deadline(&self) -> Option<i64> {
        let rebalance = self
            .rebalance
            .filter(|_| self.state == GroupState::PreparingRebalance)
            .map(|r| r.deadline_ms);
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
        let pending = self.pending_members.values().copied();
        rebalance
            .into_iter()
            .chain(self.pending_sync_deadline_ms)
            .chain(sessions)
            .chain(pending)
            .min()
    }

    /// The members of the current generation that have not sent SyncGroup yet.
    pub fn pending_sync_members(&self) -> impl Iterator<Item = &str> {
        self.pending_sync.iter().map(String::as_str)
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        if self.pending_sync.remove(member_id) && self.pending_sync.is_empty() {
            self.pending_sync_deadline_ms = None;
        }
    }

    fn clear_pending_sync(&mut self) {
        self.pending_sync.clear();
        self.pending_sync_deadline_ms = None;
    }

    /// Kafka's pending-sync expiry: when the rebalance timeout has passed since the join phase
    /// completed, the members of that generation that never sent SyncGroup (leader or follower,
    /// static or dynamic) are removed and the group rebalances again. Followers parked in
    /// SyncGroup during CompletingRebalance are told REBALANCE_IN_PROGRESS by the new rebalance.
    fn expire_pending_sync(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Vec<Effect>) {
        let Some(deadline) = self.pending_sync_deadline_ms else {
            return;
        };
        if now < deadline {
            return;
        }
        if !matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            self.clear_pending_sync();
            return;
        }
        let mut gone: Vec<String> = self.pending_sync.drain().collect();
        gone.sort();
        self.pending_sync_deadline_ms = None;
        for id in &gone {
            self.remove_member_entry(id, fx);
        }
        if !gone.is_empty() {
            self.prepare_rebalance(cfg, now, fx);
            self.maybe_complete_join(cfg, now, fx);
        }
    }

    /// The topics the members subscribe to, when every subscription parses as the consumer
    /// protocol's; `None` when unknown.
    pub(super) fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(parse_consumer_subscription(&m.metadata(protocol))?);
        }
        Some(topics)
    }
}

/// Reads the topic list of a consumer protocol subscription (ConsumerProtocolSubscription).
///
/// Like Kafka, it reads only the version-0 prefix that every later version starts with: a
/// non-negative int16 version, the topics (int32 count, then int16-length UTF-8 names) and the
/// user data (int32 length, -1 for null, then the bytes). Later fields (owned partitions, the
/// generation, the rack) are ignored. `None` when the bytes do not hold that prefix.
pub fn parse_consumer_subscription(data: &[u8]) -> Option<Vec<String>> {
    let mut pos = 0usize;
    let read = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = data.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    };
    let version = i16::from_be_bytes(read(&mut pos, 2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(read(&mut pos, 4)?.try_into().ok()?);
    // A null (negative) topics array is invalid: the field is not nullable.
    let count = usize::try_from(count).ok()?;
    let mut topics = Vec::with_capacity(count.min(data.len() / 2));
    for _ in 0..count {
        let len = i16::from_be_bytes(read(&mut pos, 2)?.try_into().ok()?);
        let name = read(&mut pos, usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
    }
    let user_data_len = i32::from_be_bytes(read(&mut pos, 4)?.try_into().ok()?);
    if user_data_len >= 0 {
        read(&mut pos, usize::try_from(user_data_len).ok()?)?;
    } else if user_data_len != -1 {
        return None;
    }
    Some(topics)
}
