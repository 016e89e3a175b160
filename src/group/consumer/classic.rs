//! Classic-protocol members inside a consumer group: the online migration between the two
//! protocols (KIP-848's upgrade and downgrade, governed by `group.consumer.migration.policy`).
//!
//! Upgrade: a consumer-protocol member joining a classic group that has members turns it into
//! a consumer group ([`ConsumerGroup::from_classic`]); every classic member keeps its
//! generation as member epoch and its partitions as its assignment. From then on classic
//! members keep speaking JoinGroup, SyncGroup, Heartbeat and LeaveGroup: a JoinGroup updates the
//! member's subscription and reconciles it towards the target assignment at once (no leader,
//! no waiting for the others), SyncGroup hands out the member's partitions in the consumer
//! protocol's bytes, and Heartbeat answers REBALANCE_IN_PROGRESS when the member must rejoin
//! to give partitions up or receive new ones. Downgrade: when the last consumer-protocol
//! member leaves and only classic members remain, [`ConsumerGroup::to_classic`] hands them
//! to a classic group with their target assignments. Pure, like the rest of the machine.

use std::collections::BTreeSet;

use super::embedded::{self, NamedPartitions};
use super::group::{ConsumerGroup, ConsumerMember, MemberState};
use super::{Assignment, ConsumerConfig, Topics};
use crate::group::state::{
    AdoptedMember, Group, GroupError, JoinRequest, JoinResponse, PartitionResults, Protocol,
    SyncRequest, SyncResponse,
};

/// What a member using the classic protocol adds (Kafka's ClassicMemberMetadata, persisted
/// with the member's metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    pub session_timeout_ms: i32,
    /// The protocols of its last JoinGroup, in its order of preference.
    pub protocols: Vec<Protocol>,
}

impl ClassicMember {
    /// The protocol the member is told it uses: its first.
    fn protocol_name(&self) -> &str {
        self.protocols.first().map_or("", |p| p.name.as_str())
    }

    /// The consumer protocol version its assignments are written in: its subscription's.
    fn version(&self) -> i16 {
        self.protocols
            .first()
            .map_or(0, |p| embedded::version_of(&p.metadata))
    }
}

/// A consumer group turned classic: what the classic machine takes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgraded {
    pub group_id: String,
    pub generation_id: i32,
    pub members: Vec<AdoptedMember>,
}

/// Partitions by topic id, from partitions by name (topics that do not exist are left out).
fn by_id(named: &NamedPartitions, topics: &Topics) -> Assignment {
    named
        .iter()
        .filter_map(|(name, ps)| topics.get(name).map(|(id, _)| (*id, ps.clone())))
        .collect()
}

/// Partitions by name, from partitions by topic id (ids not in `topics` are left out).
fn by_name(a: &Assignment, topics: &Topics) -> NamedPartitions {
    topics
        .iter()
        .filter_map(|(name, (id, _))| a.get(id).map(|ps| (name.clone(), ps.clone())))
        .collect()
}

fn classic_of(m: &ConsumerMember) -> Result<&ClassicMember, GroupError> {
    // A consumer-protocol member cannot use the classic APIs.
    m.classic.as_ref().ok_or(GroupError::UnknownMemberId)
}

impl ConsumerGroup {
    /// The consumer group a classic group with members becomes (an online upgrade). `Err` when
    /// a member's subscription or assignment is not the consumer protocol's.
    pub(super) fn from_classic(
        classic: &Group,
        topics: &Topics,
        now: i64,
    ) -> Result<ConsumerGroup, String> {
        let generation = classic.generation_id();
        let mut group = ConsumerGroup::new(classic.group_id());
        group.epoch = generation;
        group.assignment_epoch = generation;
        for m in classic.members() {
            let metadata = match classic.protocol_name() {
                Some(name) => m.metadata(name),
                None => m
                    .protocols
                    .first()
                    .map(|p| p.metadata.clone())
                    .unwrap_or_default(),
            };
            let subscription = embedded::parse_subscription(&metadata)?;
            let assigned = by_id(&embedded::parse_assignment(&m.assignment)?, topics);
            let mut subscribed = subscription.topics;
            subscribed.sort();
            subscribed.dedup();
            group.target.insert(m.member_id.clone(), assigned.clone());
            group.members.insert(
                m.member_id.clone(),
                ConsumerMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.group_instance_id.clone(),
                    rack_id: subscription.rack_id,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed,
                    regex: None,
                    server_assignor: None,
                    epoch: generation,
                    previous_epoch: generation,
                    state: MemberState::Stable,
                    assigned,
                    revoking: Assignment::new(),
                    session_deadline_ms: now + i64::from(m.session_timeout_ms),
                    revoke_deadline_ms: None,
                    sent: None,
                    session_timeout_ms: m.session_timeout_ms,
                    classic: Some(ClassicMember {
                        session_timeout_ms: m.session_timeout_ms,
                        protocols: m.protocols.clone(),
                    }),
                    join_deadline_ms: None,
                    sync_deadline_ms: None,
                },
            );
        }
        // The snapshot the classic assignment was made from: no new epoch for it.
        group.refresh_topics(topics);
        Ok(group)
    }

    /// The classic group this one becomes (an online downgrade): every member with its target
    /// assignment, at the group epoch.
    pub(super) fn to_classic(&self) -> Downgraded {
        let members = self
            .members
            .values()
            .filter_map(|m| {
                let classic = m.classic.as_ref()?;
                let target = by_name(&self.target(&m.member_id), &self.topics);
                Some(AdoptedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: classic.protocols.clone(),
                    assignment: embedded::write_assignment(classic.version(), &target),
                })
            })
            .collect();
        Downgraded {
            group_id: self.group_id.clone(),
            generation_id: self.epoch,
            members,
        }
    }

    /// The member a classic request names: by instance id when it has one (the member id must
    /// then match), else by member id.
    fn classic_member_id(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<String, GroupError> {
        match instance_id {
            Some(instance) => {
                let m = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(instance))
                    .ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && m.member_id != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                Ok(m.member_id.clone())
            }
            None => self
                .members
                .get(member_id)
                .map(|m| m.member_id.clone())
                .ok_or(GroupError::UnknownMemberId),
        }
    }

    /// Whether a protocol of a joining classic member is one every classic member supports.
    fn supports_classic(&self, req: &JoinRequest) -> bool {
        if req.protocol_type != "consumer" || req.protocols.is_empty() {
            return false;
        }
        let classic: Vec<&ClassicMember> = self
            .members
            .values()
            .filter(|m| m.member_id != req.member_id)
            .filter_map(|m| m.classic.as_ref())
            .collect();
        req.protocols.iter().any(|p| {
            classic
                .iter()
                .all(|c| c.protocols.iter().any(|q| q.name == p.name))
        })
    }

    /// A JoinGroup: the member joins or updates its subscription, and is reconciled towards
    /// the target assignment at once; the answer names no leader and no other member, so the
    /// member syncs with nothing to assign.
    pub(super) fn classic_join(
        &mut self,
        cfg: &ConsumerConfig,
        req: &JoinRequest,
        new_member_id: &str,
        topics: &Topics,
        now: i64,
    ) -> Result<JoinResponse, GroupError> {
        let unknown = req.member_id.is_empty();
        let member_id = if unknown {
            new_member_id.to_string()
        } else {
            req.member_id.clone()
        };
        if !self.supports_classic(req) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if unknown && req.require_known_member_id && req.group_instance_id.is_none() {
            return Err(GroupError::MemberIdRequired(member_id));
        }
        let subscription = embedded::parse_subscription(&req.protocols[0].metadata)
            .map_err(|_| GroupError::InconsistentGroupProtocol)?;
        let holder = req.group_instance_id.as_ref().and_then(|instance| {
            self.members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| m.member_id.clone())
        });
        let mut changed = false;
        match holder {
            Some(old) if old == member_id => {}
            Some(_) if !unknown => return Err(GroupError::FencedInstanceId),
            Some(old) => {
                // A static member coming back under a new id takes over its predecessor's place
                // and partitions, as in the classic protocol.
                let mut m = self.members.remove(&old).expect("present");
                m.member_id = member_id.clone();
                if m.epoch == -2 {
                    m.epoch = m.previous_epoch.max(0);
                }
                if let Some(t) = self.target.remove(&old) {
                    self.target.insert(member_id.clone(), t);
                }
                self.members.insert(member_id.clone(), m);
            }
            None if self.members.contains_key(&member_id) => {}
            None => {
                if self.members.len() >= cfg.max_size {
                    return Err(GroupError::GroupMaxSizeReached);
                }
                self.members
                    .insert(member_id.clone(), ConsumerMember::new(&member_id, cfg));
                changed = true;
            }
        }
        let member = self.members.get_mut(&member_id).expect("present");
        let mut subscribed = subscription.topics;
        subscribed.sort();
        subscribed.dedup();
        if subscribed != member.subscribed {
            member.subscribed = subscribed;
            changed = true;
        }
        if member.regex.take().is_some() {
            changed = true;
        }
        member.instance_id = req.group_instance_id.clone();
        if subscription.rack_id.is_some() {
            member.rack_id = subscription.rack_id;
        }
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.session_deadline_ms = now + i64::from(req.session_timeout_ms);
        member.join_deadline_ms = None;
        member.sync_deadline_ms = Some(now + i64::from(req.rebalance_timeout_ms));
        let classic = ClassicMember {
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols.clone(),
        };
        let protocol_name = classic.protocol_name().to_string();
        member.classic = Some(classic);
        if self.refresh_topics(topics) || changed {
            self.epoch += 1;
        }
        self.update_target();
        let owned = by_id(&subscription.owned, topics);
        self.reconcile(&member_id, Some(&owned), now);
        let member = &self.members[&member_id];
        Ok(JoinResponse {
            generation_id: member.epoch,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some(protocol_name),
            leader: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        })
    }

    /// A SyncGroup: the member's current partitions, unless it must first rejoin.
    pub(super) fn classic_sync(
        &mut self,
        req: &SyncRequest,
        now: i64,
    ) -> Result<SyncResponse, GroupError> {
        let member_id = self.classic_member_id(&req.member_id, req.group_instance_id.as_deref())?;
        let group_epoch = self.epoch;
        let topics = &self.topics;
        let member = self.members.get_mut(&member_id).expect("present");
        let classic = classic_of(member)?;
        if req.generation_id != member.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != "consumer")
            || req
                .protocol_name
                .as_deref()
                .is_some_and(|n| n != classic.protocol_name())
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let assignment =
            embedded::write_assignment(classic.version(), &by_name(&member.assigned, topics));
        if group_epoch > member.epoch && member.state != MemberState::UnrevokedPartitions {
            member
                .join_deadline_ms
                .get_or_insert(now + i64::from(member.rebalance_timeout_ms));
            return Err(GroupError::RebalanceInProgress);
        }
        member.sync_deadline_ms = None;
        member.session_deadline_ms = now + i64::from(member.session_timeout_ms);
        Ok(SyncResponse {
            protocol_type: req.protocol_type.clone(),
            protocol_name: req.protocol_name.clone(),
            assignment,
        })
    }

    /// A Heartbeat: REBALANCE_IN_PROGRESS when the member must rejoin (the group moved to a
    /// new epoch, it must give partitions up, or partitions it waits for were released).
    pub(super) fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let member_id = self.classic_member_id(member_id, instance_id)?;
        let waiting = self.waiting_on_unreleased(&member_id);
        let group_epoch = self.epoch;
        let member = self.members.get_mut(&member_id).expect("present");
        classic_of(member)?;
        if generation_id != member.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        member.session_deadline_ms = now + i64::from(member.session_timeout_ms);
        let rejoin = member.epoch < group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions && !waiting);
        if rejoin {
            member
                .join_deadline_ms
                .get_or_insert(now + i64::from(member.rebalance_timeout_ms));
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// A LeaveGroup for several members: one result each. Only classic members leave this way.
    pub(super) fn classic_leave(
        &mut self,
        cfg: &ConsumerConfig,
        members: &[(String, Option<String>)],
    ) -> PartitionResults {
        members
            .iter()
            .map(|(member_id, instance_id)| {
                let id = self.classic_member_id(member_id, instance_id.as_deref())?;
                classic_of(&self.members[&id])?;
                self.remove(cfg, &id);
                Ok(())
            })
            .collect()
    }

    /// Whether some partition of the member's target is still held by another member.
    fn waiting_on_unreleased(&self, member_id: &str) -> bool {
        let Some(member) = self.members.get(member_id) else {
            return false;
        };
        let held: BTreeSet<(super::TopicId, i32)> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| [&m.assigned, &m.revoking])
            .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
            .collect();
        self.target(member_id).iter().any(|(t, ps)| {
            ps.iter().any(|p| {
                !member.assigned.get(t).is_some_and(|a| a.contains(p)) && held.contains(&(*t, *p))
            })
        })
    }
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
