//! The classic consumer group protocol as a pure state machine.
//!
//! Owns every group's members, generation, protocol, assignments and committed offsets, and the
//! transitions Empty → PreparingRebalance → CompletingRebalance → Stable (→ Dead) that JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, session expiry and rebalance timeouts cause. It does no I/O,
//! reads no clock and draws no random numbers: time (ms) and fresh member ids come in as
//! arguments, and the outcome comes back as [`Effect`]s (replies to parked requests, group
//! metadata to persist, offsets to tombstone). It must not depend on tokio, the log engine or
//! Kafka's wire types; [`crate::broker::groups`] maps [`GroupError`] to Kafka error codes.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

/// Identifies a parked request (a JoinGroup or SyncGroup waiting for the group).
pub type Waiter = u64;

/// The group settings of the broker config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i64,
    /// `group.max.size`
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// Why a group operation was refused. Kafka's names; the handlers map them to codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("session timeout outside the broker's allowed range")]
    InvalidSessionTimeout,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("stale or unknown generation")]
    IllegalGeneration,
    #[error("protocol type or protocols inconsistent with the group")]
    InconsistentGroupProtocol,
    /// JoinGroup v4+: the member must rejoin with this id.
    #[error("member id required: rejoin with {0}")]
    MemberIdRequired(String),
    #[error("a newer member holds this group.instance.id")]
    FencedInstanceId,
    #[error("the group has reached group.max.size")]
    GroupMaxSizeReached,
    #[error("the group is being removed")]
    CoordinatorNotAvailable,
    /// Another broker coordinates the group (in a cluster).
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// This broker has just become the group's coordinator and is loading it.
    #[error("the group's coordinator is loading it")]
    CoordinatorLoadInProgress,
    #[error("group not found")]
    GroupIdNotFound,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
}

/// The states of a classic group, named as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name of the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A committed offset, as kept in memory and in `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2–v4 with a retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// One protocol a member supports, in its order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request, in the machine's terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: an unknown dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinMember>,
    /// KIP-814: a static leader rejoining a stable group must not compute a new assignment.
    pub skip_assignment: bool,
}

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A SyncGroup request, in the machine's terms.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// What the caller must do after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer a parked (or the current) JoinGroup.
    JoinReply {
        waiter: Waiter,
        result: Result<JoinResponse, GroupError>,
    },
    /// Answer a parked (or the current) SyncGroup.
    SyncReply {
        waiter: Waiter,
        result: Result<SyncResponse, GroupError>,
    },
    /// Persist the group's metadata (its generation, protocol and members changed).
    StoreGroup { group_id: String },
    /// Write tombstones for these offsets (they are already gone from memory).
    RemoveOffsets {
        group_id: String,
        partitions: Vec<TopicPartition>,
    },
    /// Write a tombstone for the group's metadata (the group is gone from memory).
    RemoveGroup { group_id: String },
}

/// A member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: Option<Waiter>,
    awaiting_sync: Option<Waiter>,
}

impl Member {
    /// This member's metadata for `protocol` (empty when it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    fn session_alive(&self, now: i64) -> bool {
        self.awaiting_join.is_some()
            || self.awaiting_sync.is_some()
            || self.last_heartbeat_ms + i64::from(self.session_timeout_ms) > now
    }
}

/// A member as restored from `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's persisted metadata (Kafka's group metadata record value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// A member handed to a classic group by a consumer group that turns classic again (an online
/// downgrade, KIP-848), with the assignment it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
}

/// One result per partition, in request order.
pub type PartitionResults = Vec<Result<(), GroupError>>;

/// Every group of this coordinator.
#[derive(Debug, Default)]
pub struct Groups {
    config: GroupConfig,
    groups: HashMap<String, Group>,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            config,
            groups: HashMap::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// JoinGroup. The reply to `waiter` comes back among the effects, at once or when the
    /// rebalance completes. `new_member_id` is used if the request's member id is empty.
    pub fn join(
        &mut self,
        group_id: &str,
        req: &JoinRequest,
        new_member_id: &str,
        waiter: Waiter,
        now: i64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let fail = |fx: &mut Vec<Effect>, e| {
            fx.push(Effect::JoinReply {
                waiter,
                result: Err(e),
            })
        };
        if group_id.is_empty() {
            fail(&mut fx, GroupError::InvalidGroupId);
            return fx;
        }
        let timeout = i64::from(req.session_timeout_ms);
        if timeout < self.config.min_session_timeout_ms
            || timeout > self.config.max_session_timeout_ms
        {
            fail(&mut fx, GroupError::InvalidSessionTimeout);
            return fx;
        }
        if !self.groups.contains_key(group_id) {
            if !req.member_id.is_empty() {
                fail(&mut fx, GroupError::UnknownMemberId);
                return fx;
            }
            self.groups
                .insert(group_id.to_string(), Group::new(group_id, now));
        }
        let cfg = self.config;
        let group = self.groups.get_mut(group_id).expect("present");
        group.join(&cfg, req, new_member_id, waiter, now, &mut fx);
        group.maybe_complete_join(&cfg, now, &mut fx);
        self.drop_if_unused(group_id);
        fx
    }

    /// SyncGroup. Followers are answered when the leader's assignment arrives.
    pub fn sync(
        &mut self,
        group_id: &str,
        req: &SyncRequest,
        waiter: Waiter,
        now: i64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        match self.groups.get_mut(group_id) {
            None if group_id.is_empty() => fx.push(Effect::SyncReply {
                waiter,
                result: Err(GroupError::InvalidGroupId),
            }),
            None => fx.push(Effect::SyncReply {
                waiter,
                result: Err(GroupError::UnknownMemberId),
            }),
            Some(group) => group.sync(req, waiter, now, &mut fx),
        }
        fx
    }

    /// Heartbeat: keeps the member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        match self.groups.get_mut(group_id) {
            None if group_id.is_empty() => Err(GroupError::InvalidGroupId),
            None => Err(GroupError::UnknownMemberId),
            Some(group) => group.heartbeat(member_id, instance_id, generation_id, now),
        }
    }

    /// LeaveGroup for several members: one result per member, in order. An error for the
    /// whole request (an empty group id, a group being removed) comes back as `Err`, as Kafka
    /// answers it with a top-level error and no member results.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Result<(PartitionResults, Vec<Effect>), GroupError> {
        let mut fx = Vec::new();
        let cfg = self.config;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return Ok((vec![Err(GroupError::UnknownMemberId); members.len()], fx));
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let results = members
            .iter()
            .map(|(id, instance)| group.leave(&cfg, id, instance.as_deref(), now, &mut fx))
            .collect();
        Ok((results, fx))
    }

    /// Expires sessions and pending member ids, and completes rebalances whose time has come.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let cfg = self.config;
        for group in self.groups.values_mut() {
            group.tick(&cfg, now, &mut fx);
        }
        fx
    }

    /// The earliest instant at which [`Groups::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups.values().filter_map(Group::next_deadline).min()
    }

    /// Checks whether an OffsetCommit may be written, by Kafka's rules. A commit with
    /// generation < 0 to an unknown group creates it (Empty, no protocol type: a "simple"
    /// group), and is accepted while the group is Empty; any other commit must come from a
    /// current member at the current generation. The empty group id is allowed here, as Kafka
    /// allows it for commits (for old clients), unlike the membership APIs.
    pub fn check_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get_mut(group_id) else {
            if generation_id < 0 {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, now));
                return Ok(());
            }
            return Err(GroupError::IllegalGeneration);
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        group.validate_member(member_id, instance_id)?;
        let member = group.members.get_mut(member_id).expect("validated");
        if generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match group.state {
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.last_heartbeat_ms = now;
                Ok(())
            }
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    /// Checks whether a TxnOffsetCommit may be written, by Kafka's rules for transactional
    /// commits: as [`Groups::check_commit`], except that a commit naming no member, no
    /// instance and no generation (TxnOffsetCommit before v3, or a producer given no group
    /// metadata) is accepted in any state, and the group's state is not enforced (a member at
    /// the current generation commits while the group completes a rebalance).
    pub fn check_txn_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return self.check_commit(group_id, member_id, instance_id, generation_id, now);
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0
            && (group.state == GroupState::Empty || member_id.is_empty() && instance_id.is_none())
        {
            return Ok(());
        }
        group.validate_member(member_id, instance_id)?;
        if generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Marks commits of `partitions` as in flight: appended to `__consumer_offsets`, not yet
    /// durable. Until [`Groups::end_commit`], expiry neither removes those partitions' offsets
    /// (its tombstone would land after the commit and erase it on the next start) nor the
    /// group. Call after a successful [`Groups::check_commit`].
    pub fn begin_commit(&mut self, group_id: &str, partitions: &[TopicPartition], now: i64) {
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        for tp in partitions {
            *group.pending_commits.entry(tp.clone()).or_default() += 1;
        }
    }

    /// Ends commits begun with [`Groups::begin_commit`], durable or failed (the durable ones
    /// are then applied with [`Groups::apply_commit`]).
    pub fn end_commit(&mut self, group_id: &str, partitions: &[TopicPartition]) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        for tp in partitions {
            if let Some(n) = group.pending_commits.get_mut(tp) {
                *n -= 1;
                if *n == 0 {
                    group.pending_commits.remove(tp);
                }
            }
        }
    }

    /// Records offsets that are now durable in `__consumer_offsets`.
    pub fn apply_commit(
        &mut self,
        group_id: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
        now: i64,
    ) {
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        group.offsets.extend(offsets);
    }

    /// The committed offset of one partition.
    pub fn committed(&self, group_id: &str, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.groups.get(group_id)?.offsets.get(tp)
    }

    /// DeleteGroups for one group: only an Empty group (or one that only holds offsets) can go.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<Effect>, GroupError> {
        let group = self
            .groups
            .get(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        match group.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        let group = self.groups.remove(group_id).expect("present");
        let mut fx = Vec::new();
        if !group.offsets.is_empty() {
            fx.push(Effect::RemoveOffsets {
                group_id: group_id.to_string(),
                partitions: group.offsets.keys().cloned().collect(),
            });
        }
        fx.push(Effect::RemoveGroup {
            group_id: group_id.to_string(),
        });
        Ok(fx)
    }

    /// OffsetDelete, by Kafka's rules: an Empty group loses any of its offsets; an active
    /// "consumer" group only those of topics no member subscribes to (every topic counts as
    /// subscribed when a subscription does not parse); any other active group refuses with
    /// NON_EMPTY_GROUP. Returns per-partition results and the tombstones to write.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<(PartitionResults, Vec<Effect>), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        if group.state == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound);
        }
        let subscribed = if group.state == GroupState::Empty {
            Some(HashSet::new())
        } else if group.protocol_type.as_deref() == Some("consumer") {
            group.subscribed_topics()
        } else {
            return Err(GroupError::NonEmptyGroup);
        };
        let mut removed = Vec::new();
        let results = partitions
            .iter()
            .map(|tp| match &subscribed {
                Some(topics) if !topics.contains(&tp.topic) => {
                    if group.offsets.remove(tp).is_some() {
                        removed.push(tp.clone());
                    }
                    Ok(())
                }
                _ => Err(GroupError::GroupSubscribedToTopic),
            })
            .collect();
        let mut fx = Vec::new();
        if !removed.is_empty() {
            fx.push(Effect::RemoveOffsets {
                group_id: group_id.to_string(),
                partitions: removed,
            });
        }
        Ok((results, fx))
    }

    /// Removes offsets past `offsets.retention.minutes`, by Kafka's rule for each kind of group:
    /// - a group with a protocol type that is Empty: counted from when it became Empty;
    /// - a Stable "consumer" group whose subscriptions parse: offsets of topics no member
    ///   subscribes to, counted from each commit;
    /// - a simple group (no protocol type): counted from each commit;
    /// - any other group (rebalancing, or a subscription it cannot read): nothing expires.
    ///
    /// An explicit expire timestamp (OffsetCommit v2–v4) replaces the retention where the group's
    /// rule lets the offset expire at all. A group left with no members and no offsets is
    /// removed too.
    ///
    /// Groups in `active` (the ids of consumer-protocol groups with members, whose offsets this
    /// machine keeps) lose nothing.
    pub fn expire_offsets(
        &mut self,
        now: i64,
        retention_ms: i64,
        active: &HashSet<String>,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            if active.contains(&group.group_id) {
                continue;
            }
            let rule = match (group.protocol_type.as_deref(), group.state) {
                (None, _) => Some((None, HashSet::new())),
                (Some(_), GroupState::Empty) => {
                    Some((Some(group.state_timestamp_ms), HashSet::new()))
                }
                (Some("consumer"), GroupState::Stable) => {
                    group.subscribed_topics().map(|topics| (None, topics))
                }
                _ => None,
            };
            let Some((group_base, subscribed)) = rule else {
                continue;
            };
            let expired: Vec<TopicPartition> = group
                .offsets
                .iter()
                .filter(|(tp, _)| {
                    !subscribed.contains(&tp.topic) && !group.pending_commits.contains_key(tp)
                })
                .filter(|(_, o)| match o.expire_timestamp_ms {
                    Some(at) => now >= at,
                    None => now - group_base.unwrap_or(o.commit_timestamp_ms) >= retention_ms,
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in &expired {
                group.offsets.remove(tp);
            }
            if !expired.is_empty() {
                fx.push(Effect::RemoveOffsets {
                    group_id: group.group_id.clone(),
                    partitions: expired,
                });
            }
            if group.state == GroupState::Empty
                && group.offsets.is_empty()
                && group.pending_commits.is_empty()
                && group.pending_members.is_empty()
            {
                dead.push(group.group_id.clone());
            }
        }
        for id in dead {
            self.groups.remove(&id);
            fx.push(Effect::RemoveGroup { group_id: id });
        }
        fx
    }

    /// Restores a group from its persisted metadata (at start-up). A group with members comes
    /// back Stable with fresh sessions; members that are gone expire as usual.
    pub fn restore_group(&mut self, group_id: &str, stored: StoredGroup, now: i64) {
        let offsets = self
            .groups
            .remove(group_id)
            .map(|g| g.offsets)
            .unwrap_or_default();
        let mut group = Group::new(group_id, now);
        group.offsets = offsets;
        group.generation_id = stored.generation_id;
        group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        group.protocol_name = stored.protocol_name.clone();
        // Records older than value version 2 carry no state timestamp (-1).
        group.state_timestamp_ms = if stored.state_timestamp_ms >= 0 {
            stored.state_timestamp_ms
        } else {
            now
        };
        let protocol = stored.protocol_name.unwrap_or_default();
        for m in stored.members {
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: m.subscription,
                }],
                assignment: m.assignment,
                last_heartbeat_ms: now,
                awaiting_join: None,
                awaiting_sync: None,
            };
            group.members.insert(m.member_id, member);
        }
        if !group.members.is_empty() {
            group.state = GroupState::Stable;
            group.leader = stored
                .leader
                .filter(|l| group.members.contains_key(l))
                .or_else(|| group.members.keys().next().cloned());
        }
        self.groups.insert(group_id.to_string(), group);
    }

    /// Forgets a group (its coordinator moved to another broker): parked JoinGroup and
    /// SyncGroup requests are answered NOT_COORDINATOR, so their members find the new
    /// coordinator. Returns those replies.
    pub fn unload(&mut self, group_id: &str) -> Vec<Effect> {
        let Some(old) = self.groups.remove(group_id) else {
            return Vec::new();
        };
        answer_parked(&old, GroupError::NotCoordinator)
    }

    /// Hands a group's members over to a consumer group (an online upgrade, KIP-848): parked
    /// JoinGroup and SyncGroup requests are answered REBALANCE_IN_PROGRESS (their members rejoin
    /// the consumer group), the group keeps only its offsets, and its metadata record gets a
    /// tombstone. Returns the effects; nothing happens to an unknown group.
    pub fn release(&mut self, group_id: &str, now: i64) -> Vec<Effect> {
        let Some(old) = self.groups.remove(group_id) else {
            return Vec::new();
        };
        let mut fx = answer_parked(&old, GroupError::RebalanceInProgress);
        let mut group = Group::new(group_id, now);
        group.offsets = old.offsets;
        group.pending_commits = old.pending_commits;
        self.groups.insert(group_id.to_string(), group);
        fx.push(Effect::RemoveGroup {
            group_id: group_id.to_string(),
        });
        fx
    }

    /// Takes in the members of a consumer group that turns classic (an online downgrade,
    /// KIP-848): the group is Stable at `generation_id` with the members' current assignments
    /// (persisted so), then starts a rebalance so every member rejoins and the leader assigns.
    /// The group's offsets stay.
    pub fn adopt(
        &mut self,
        group_id: &str,
        generation_id: i32,
        members: Vec<AdoptedMember>,
        now: i64,
    ) -> Vec<Effect> {
        let cfg = self.config;
        let mut group = Group::new(group_id, now);
        if let Some(old) = self.groups.remove(group_id) {
            group.offsets = old.offsets;
            group.pending_commits = old.pending_commits;
        }
        group.generation_id = generation_id;
        group.protocol_type = Some("consumer".to_string());
        for m in members {
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: "consumer".to_string(),
                protocols: m.protocols,
                assignment: m.assignment,
                last_heartbeat_ms: now,
                awaiting_join: None,
                awaiting_sync: None,
            };
            group.members.insert(m.member_id, member);
        }
        group.protocol_name = group.select_protocol();
        group.leader = group.members.keys().next().cloned();
        group.transition(GroupState::Stable, now);
        let mut fx = vec![Effect::StoreGroup {
            group_id: group_id.to_string(),
        }];
        group.prepare_rebalance(&cfg, now, &mut fx);
        self.groups.insert(group_id.to_string(), group);
        fx
    }

    fn drop_if_unused(&mut self, group_id: &str) {
        // A join refused before any member was added must not leave an empty shell behind.
        if let Some(g) = self.groups.get(group_id) {
            if g.state == GroupState::Empty
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && g.offsets.is_empty()
                && g.generation_id == 0
                && g.protocol_type.is_none()
            {
                self.groups.remove(group_id);
            }
        }
    }
}

mod group;

pub use group::{parse_consumer_subscription, Group};

/// Answers the JoinGroup and SyncGroup requests `group`'s members have parked with `error`.
fn answer_parked(group: &Group, error: GroupError) -> Vec<Effect> {
    let mut fx = Vec::new();
    for m in group.members.values() {
        if let Some(waiter) = m.awaiting_join {
            let result = Err(error.clone());
            fx.push(Effect::JoinReply { waiter, result });
        }
        if let Some(waiter) = m.awaiting_sync {
            let result = Err(error.clone());
            fx.push(Effect::SyncReply { waiter, result });
        }
    }
    fx
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
