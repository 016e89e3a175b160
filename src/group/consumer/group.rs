//! One consumer-protocol group: membership, the target assignment, and each member's
//! reconciliation towards it.
//!
//! The group epoch rises whenever membership, a subscription, or a subscribed topic's partition
//! count changes; the target assignment is then recomputed at that epoch. A member moves to the
//! target epoch in steps: first it gives up the partitions it must lose (it keeps its epoch
//! until it reports them revoked), then it receives the new ones that no other member still
//! holds; the rest follow on later heartbeats, once released.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, AssignorMember};
use super::classic::ClassicMember;
use super::{Assignment, ConsumerConfig, ConsumerError, Heartbeat, HeartbeatResponse, Topics};

/// Where a member stands in its reconciliation (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// It must first report the partitions in `revoking` revoked.
    UnrevokedPartitions,
    /// It is at the target epoch, but some of its partitions are still held by others.
    UnreleasedPartitions,
}

/// A member of a consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Vec<String>,
    /// A regular-expression subscription (RE2/J syntax, matching whole topic names).
    pub regex: Option<TopicRegex>,
    pub server_assignor: Option<String>,
    /// The member epoch; -2 while a static member is away.
    pub epoch: i32,
    pub(super) previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub revoking: Assignment,
    pub(super) session_deadline_ms: i64,
    pub(super) revoke_deadline_ms: Option<i64>,
    /// The assignment last sent to the member.
    pub(super) sent: Option<Assignment>,
    /// The session timeout the member was last given (its own when it uses the classic
    /// protocol, else the group's or the broker's).
    pub(super) session_timeout_ms: i32,
    /// Set while the member uses the classic protocol (JoinGroup, SyncGroup, Heartbeat) in this
    /// consumer group, after an online upgrade (see `classic.rs`).
    pub classic: Option<ClassicMember>,
    /// A classic member told to rejoin must do so by then.
    pub(super) join_deadline_ms: Option<i64>,
    /// A classic member that joined must send SyncGroup by then.
    pub(super) sync_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    /// A member that has just joined: nothing subscribed or assigned, epoch 0, the group's
    /// session timeout.
    pub(super) fn new(member_id: &str, cfg: &ConsumerConfig) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed: Vec::new(),
            regex: None,
            server_assignor: None,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline_ms: 0,
            revoke_deadline_ms: None,
            sent: None,
            session_timeout_ms: cfg.session_timeout_ms,
            classic: None,
            join_deadline_ms: None,
            sync_deadline_ms: None,
        }
    }

    /// Every instant at which the member is removed unless it acts: its session, a revocation
    /// it owes, and (classic members) a rejoin or a SyncGroup it owes.
    fn deadlines(&self) -> impl Iterator<Item = i64> {
        [
            Some(self.session_deadline_ms),
            self.revoke_deadline_ms,
            self.join_deadline_ms,
            self.sync_deadline_ms,
        ]
        .into_iter()
        .flatten()
    }

    /// Whether the member subscribes to `topic`, by name or by its regular expression.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed.iter().any(|n| n == topic)
            || self.regex.as_ref().is_some_and(|r| r.matches(topic))
    }
}

/// A compiled regular-expression subscription; it matches a topic name as a whole, as Kafka's
/// RE2/J `matches()` does.
#[derive(Debug, Clone)]
pub struct TopicRegex {
    source: String,
    compiled: regex::Regex,
}

impl TopicRegex {
    /// Compiles `source`; `Err` with the reason when it is not a regular expression.
    pub fn new(source: &str) -> Result<TopicRegex, String> {
        let compiled = regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| e.to_string())?;
        Ok(TopicRegex {
            source: source.to_string(),
            compiled,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.compiled.is_match(topic)
    }
}

/// A consumer-protocol group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub(super) group_id: String,
    pub(super) epoch: i32,
    pub(super) assignment_epoch: i32,
    pub(super) members: BTreeMap<String, ConsumerMember>,
    pub(super) target: BTreeMap<String, Assignment>,
    /// The subscribed topics as of the last target assignment: name → (id, partitions).
    pub(super) topics: Topics,
    pub(super) assignor: &'static str,
    /// Set when the last consumer-protocol member left a group of classic members that may
    /// turn classic again (see [`super::ConsumerGroups`]).
    pub(super) downgrade: bool,
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(qs) => ps.difference(qs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    minus(a, &minus(a, b))
}

fn contains(a: &Assignment, t: &super::TopicId, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

impl ConsumerGroup {
    pub(super) fn new(group_id: &str) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: Topics::new(),
            assignor: assignor::DEFAULT,
            downgrade: false,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn assignor(&self) -> &'static str {
        self.assignor
    }

    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    pub fn member(&self, member_id: &str) -> Option<&ConsumerMember> {
        self.members.get(member_id)
    }

    /// A member's target assignment.
    pub fn target(&self, member_id: &str) -> Assignment {
        self.target.get(member_id).cloned().unwrap_or_default()
    }

    /// Kafka's state name: Empty, Assigning, Reconciling or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        cfg: &ConsumerConfig,
        req: Heartbeat,
        topics: &Topics,
        new_member_id: &str,
        now: i64,
    ) -> Result<HeartbeatResponse, ConsumerError> {
        let mut changed = false;
        let member_id = match req.member_epoch {
            0 => {
                let (id, new) = self.join(cfg, &req, new_member_id)?;
                changed = new;
                id
            }
            -1 | -2 => return self.leave(cfg, &req),
            epoch => {
                let member = self
                    .members
                    .get(&req.member_id)
                    .ok_or(ConsumerError::UnknownMemberId)?;
                if member.epoch == -2 || member.classic.is_some() {
                    return Err(ConsumerError::UnknownMemberId);
                }
                // A null instance id means "unchanged since the last heartbeat".
                if req.instance_id.is_some() && member.instance_id != req.instance_id {
                    return Err(ConsumerError::FencedInstanceId);
                }
                // A member that missed the answer raising its epoch may retry with the previous
                // one, as long as it owns nothing it should not.
                let retry = epoch == member.previous_epoch
                    && req
                        .owned
                        .as_ref()
                        .is_some_and(|o| minus(o, &member.assigned).is_empty());
                if epoch != member.epoch && !retry {
                    return Err(ConsumerError::FencedMemberEpoch);
                }
                req.member_id.clone()
            }
        };
        let member = self.members.get_mut(&member_id).expect("present");
        let session_timeout_ms = req.session_timeout_ms.unwrap_or(cfg.session_timeout_ms);
        member.session_deadline_ms = now + i64::from(session_timeout_ms);
        member.session_timeout_ms = session_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        if req.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.rack_id.is_some() {
            member.rack_id = req.rack_id.clone();
        }
        if req.server_assignor.is_some() {
            member.server_assignor = req.server_assignor.clone();
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.subscribed {
                member.subscribed = names;
                changed = true;
            }
        }
        if let Some(source) = &req.subscribed_topic_regex {
            // An empty expression clears the regular-expression subscription.
            let regex = if source.is_empty() {
                None
            } else {
                Some(TopicRegex::new(source).map_err(ConsumerError::InvalidRegularExpression)?)
            };
            if regex.as_ref().map(TopicRegex::as_str)
                != member.regex.as_ref().map(TopicRegex::as_str)
            {
                member.regex = regex;
                changed = true;
            }
        }
        // One heartbeat raises the group epoch at most once.
        if self.refresh_topics(topics) || changed {
            self.epoch += 1;
        }
        self.update_target();
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let joined = req.member_epoch == 0;
        let member = self.members.get_mut(&member_id).expect("present");
        let assignment = (joined || member.sent.as_ref() != Some(&member.assigned))
            .then(|| member.assigned.clone());
        if assignment.is_some() {
            member.sent = assignment.clone();
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: member.epoch,
            heartbeat_interval_ms: req
                .heartbeat_interval_ms
                .unwrap_or(cfg.heartbeat_interval_ms),
            assignment,
        })
    }

    /// A member joining (epoch 0): new, rejoining after being fenced, or a static member
    /// coming back. Returns its id and whether it is a new member.
    fn join(
        &mut self,
        cfg: &ConsumerConfig,
        req: &Heartbeat,
        new_member_id: &str,
    ) -> Result<(String, bool), ConsumerError> {
        let member_id = if req.member_id.is_empty() {
            new_member_id.to_string()
        } else {
            req.member_id.clone()
        };
        if let Some(instance) = &req.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| (m.member_id.clone(), m.epoch));
            match holder {
                Some((old, _)) if old == member_id => {}
                Some((_, epoch)) if epoch != -2 => return Err(ConsumerError::UnreleasedInstanceId),
                Some((old, _)) => {
                    // The instance comes back under a new member id with its assignment.
                    let mut member = self.members.remove(&old).expect("present");
                    member.member_id = member_id.clone();
                    member.epoch = member.previous_epoch.max(0);
                    member.sent = None;
                    if let Some(target) = self.target.remove(&old) {
                        self.target.insert(member_id.clone(), target);
                    }
                    self.members.insert(member_id.clone(), member);
                    return Ok((member_id, false));
                }
                None => {}
            }
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            // A fenced member rejoining has dropped its partitions (and, if it used the classic
            // protocol, now uses the consumer protocol).
            member.classic = None;
            member.join_deadline_ms = None;
            member.sync_deadline_ms = None;
            member.epoch = 0;
            member.previous_epoch = 0;
            member.assigned.clear();
            member.revoking.clear();
            member.state = MemberState::Stable;
            member.revoke_deadline_ms = None;
            return Ok((member_id, false));
        }
        if self.members.len() >= cfg.max_size {
            return Err(ConsumerError::GroupMaxSizeReached);
        }
        self.members.insert(
            member_id.clone(),
            ConsumerMember {
                instance_id: req.instance_id.clone(),
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                ..ConsumerMember::new(&member_id, cfg)
            },
        );
        Ok((member_id, true))
    }

    fn leave(
        &mut self,
        cfg: &ConsumerConfig,
        req: &Heartbeat,
    ) -> Result<HeartbeatResponse, ConsumerError> {
        let member = self
            .members
            .get_mut(&req.member_id)
            .ok_or(ConsumerError::UnknownMemberId)?;
        if req.instance_id.is_some() && member.instance_id != req.instance_id {
            return Err(ConsumerError::FencedInstanceId);
        }
        if req.member_epoch == -2 {
            // A static member leaving for a while keeps its partitions until its session ends.
            if member.epoch != -2 {
                member.previous_epoch = member.epoch;
                member.epoch = -2;
            }
        } else {
            self.remove(cfg, &req.member_id);
        }
        Ok(HeartbeatResponse {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member that left or was fenced. When it was the last member using the
    /// consumer protocol and the classic members left may form a classic group (by the
    /// migration policy and `group.max.size`), the group is marked for the downgrade instead
    /// of rebalancing: it keeps its epoch and target assignment, which the classic group
    /// starts from.
    pub(super) fn remove(&mut self, cfg: &ConsumerConfig, member_id: &str) {
        let Some(gone) = self.members.remove(member_id) else {
            return;
        };
        if gone.classic.is_none()
            && !self.members.is_empty()
            && self.members.values().all(|m| m.classic.is_some())
            && cfg.migration.downgrade()
            && self.members.len() <= cfg.classic_max_size
        {
            self.downgrade = true;
            return;
        }
        self.target.remove(member_id);
        self.epoch += 1;
        self.update_target();
    }

    /// Whether a subscribed topic appeared, vanished or changed its partition count since the
    /// last target assignment (the group epoch must then rise).
    pub(super) fn refresh_topics(&mut self, topics: &Topics) -> bool {
        let now: Topics = topics
            .iter()
            .filter(|(name, _)| self.members.values().any(|m| m.subscribes_to(name)))
            .map(|(name, t)| (name.clone(), *t))
            .collect();
        if now == self.topics {
            return false;
        }
        self.topics = now;
        true
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    pub(super) fn update_target(&mut self) {
        if self.assignment_epoch >= self.epoch {
            return;
        }
        self.assignor = self.preferred_assignor();
        let empty = Assignment::new();
        let members: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: &m.member_id,
                topics: self
                    .topics
                    .iter()
                    .filter(|(name, _)| m.subscribes_to(name))
                    .map(|(_, (id, _))| *id)
                    .collect(),
                previous: self.target.get(&m.member_id).unwrap_or(&empty),
            })
            .collect();
        let partitions = self.topics.values().copied().collect();
        self.target = assignor::assign(self.assignor, &members, &partitions);
        self.assignment_epoch = self.epoch;
    }

    /// The assignor most members ask for (the default when none asks, or on a tie with it).
    pub(super) fn preferred_assignor(&self) -> &'static str {
        assignor::NAMES
            .iter()
            .copied()
            .max_by_key(|name| {
                let votes = self
                    .members
                    .values()
                    .filter(|m| m.server_assignor.as_deref() == Some(name))
                    .count();
                (votes, *name == assignor::DEFAULT)
            })
            .unwrap_or(assignor::DEFAULT)
    }

    /// Moves one member towards its target assignment, as far as revocations allow.
    pub(super) fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let target = self.target(member_id);
        let held_by_others: Vec<Assignment> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| [m.assigned.clone(), m.revoking.clone()])
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("present");
        if member.state == MemberState::UnrevokedPartitions {
            match owned {
                Some(owned) if !overlaps(owned, &member.revoking) => {
                    member.revoking.clear();
                    member.revoke_deadline_ms = None;
                    member.state = MemberState::Stable;
                }
                _ => return,
            }
        }
        if member.epoch == assignment_epoch && member.state == MemberState::Stable {
            return;
        }
        let revoke = minus(&member.assigned, &target);
        if !revoke.is_empty() {
            member.assigned = intersect(&member.assigned, &target);
            // A member that says it no longer owns them (an eager classic member rejoins with
            // none) need not be asked to revoke them, as in Kafka.
            if owned.is_none_or(|o| overlaps(o, &revoke)) {
                member.revoking = revoke;
                member.state = MemberState::UnrevokedPartitions;
                member.revoke_deadline_ms = Some(now + i64::from(member.rebalance_timeout_ms));
                return;
            }
        }
        let mut unreleased = false;
        for (topic, ps) in &target {
            for &p in ps {
                if contains(&member.assigned, topic, p) {
                    continue;
                }
                if held_by_others.iter().any(|a| contains(a, topic, p)) {
                    unreleased = true;
                } else {
                    member.assigned.entry(*topic).or_default().insert(p);
                }
            }
        }
        if member.epoch != assignment_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = assignment_epoch;
        }
        member.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Removes the members whose session or revocation deadline passed; returns whether any was.
    pub(super) fn tick(&mut self, cfg: &ConsumerConfig, now: i64) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadlines().any(|d| d <= now))
            .map(|m| m.member_id.clone())
            .collect();
        let any = !expired.is_empty();
        for id in expired {
            if self.downgrade {
                break;
            }
            self.remove(cfg, &id);
        }
        any
    }

    pub(super) fn next_deadline(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(ConsumerMember::deadlines)
            .min()
    }
}
