//! The KIP-848 consumer group protocol as a pure state machine.
//!
//! Owns every consumer-protocol group: its epoch, members (subscriptions, member epochs,
//! assigned partitions and partitions being revoked), and the target assignment computed by a
//! server-side assignor ([`assignor`]). ConsumerGroupHeartbeat drives it: a member joins with
//! epoch 0, heartbeats with its epoch, and leaves with -1 (or -2, a static member leaving for a
//! while). A partition moves to its new owner only once the previous owner has reported it
//! revoked. Sessions and revocation deadlines expire in [`ConsumerGroups::tick`]. Like the
//! classic machine it does no I/O and reads no clock: time and fresh member ids are arguments,
//! topic metadata is passed in as a [`Topics`] snapshot. A member subscribes by topic names, by
//! a regular expression, or both; the expression is matched against the snapshot at every
//! heartbeat, so topics created or deleted later join or leave the subscription. [`stored`] is
//! the group's persisted form (Kafka's `__consumer_offsets` records): the coordinator writes the
//! difference after each change and rebuilds the groups from it at start-up. Committed offsets
//! live in the classic machine's offset store.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{
    GroupError, JoinRequest, JoinResponse, PartitionResults, SyncRequest, SyncResponse,
};

pub mod assignor;
mod classic;
pub mod embedded;
mod group;
pub mod stored;

pub use classic::{ClassicMember, Downgraded};
pub use group::{ConsumerGroup, ConsumerMember, MemberState, TopicRegex};

/// A topic id (Kafka's topic UUID).
pub type TopicId = uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// The topics that exist, by name: (id, partition count).
pub type Topics = BTreeMap<String, (TopicId, i32)>;

/// The consumer group settings of the broker config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`
    pub max_size: usize,
    /// `group.consumer.migration.policy`
    pub migration: MigrationPolicy,
    /// `group.max.size`: a group larger than this cannot turn classic.
    pub classic_max_size: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            migration: MigrationPolicy::Bidirectional,
            classic_max_size: i32::MAX as usize,
        }
    }
}

/// Which online conversions of a group with members are allowed (Kafka's
/// `group.consumer.migration.policy`; empty groups convert either way whatever it says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Upgrade and downgrade (Kafka's default).
    Bidirectional,
    /// A classic group may become a consumer group, not back.
    Upgrade,
    /// A consumer group may become classic, not the other way.
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    /// Kafka's values, case-insensitive.
    pub const NAMES: [&'static str; 4] = ["bidirectional", "upgrade", "downgrade", "disabled"];

    /// The policy a config value names; `None` for anything else.
    pub fn parse(value: &str) -> Option<MigrationPolicy> {
        match value.to_ascii_lowercase().as_str() {
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "disabled" => Some(MigrationPolicy::Disabled),
            _ => None,
        }
    }

    pub fn upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade
        )
    }

    pub fn downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade
        )
    }
}

/// Why a consumer group operation was refused. Kafka's names; the handlers map them to codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("the member epoch is fenced")]
    FencedMemberEpoch,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("the instance id is still used by another member")]
    UnreleasedInstanceId,
    #[error("the instance id belongs to another member")]
    FencedInstanceId,
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    #[error("the group is not a consumer group")]
    GroupIdNotFound,
    #[error("the group has reached group.consumer.max.size")]
    GroupMaxSizeReached,
    #[error("members using the consumer group protocol must commit with a request that carries their member epoch")]
    UnsupportedVersion,
    #[error("invalid regular expression: {0}")]
    InvalidRegularExpression(String),
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("the group's coordinator is loading it")]
    CoordinatorLoadInProgress,
    #[error("the received generation id does not match the member epoch")]
    IllegalGeneration,
}

/// A ConsumerGroupHeartbeat, in the machine's terms.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Empty only in a v0 join: the broker then names the member.
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for a while, else the current one.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `None`: unchanged; empty: no regular-expression subscription.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns; `None`: unchanged since its last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// The group's own `consumer.session.timeout.ms`; `None`: the broker's.
    pub session_timeout_ms: Option<i32>,
    /// The group's own `consumer.heartbeat.interval.ms`; `None`: the broker's.
    pub heartbeat_interval_ms: Option<i32>,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed (or the member just joined).
    pub assignment: Option<Assignment>,
}

/// Every consumer-protocol group of this coordinator.
#[derive(Debug, Default)]
pub struct ConsumerGroups {
    config: ConsumerConfig,
    groups: BTreeMap<String, ConsumerGroup>,
    /// Groups that turned classic and that the coordinator has yet to hand to the classic
    /// machine ([`ConsumerGroups::take_downgraded`]).
    downgraded: Vec<Downgraded>,
}

impl ConsumerGroups {
    pub fn new(config: ConsumerConfig) -> ConsumerGroups {
        ConsumerGroups {
            config,
            groups: BTreeMap::new(),
            downgraded: Vec::new(),
        }
    }

    pub fn group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values()
    }

    /// Removes a group that has no members (DeleteGroups, or a classic member taking the id
    /// over). Returns whether it existed; a group with members stays.
    pub fn remove_if_empty(&mut self, group_id: &str) -> bool {
        match self.groups.get(group_id) {
            Some(g) if g.members().next().is_none() => {
                self.groups.remove(group_id);
                true
            }
            _ => false,
        }
    }

    /// Forgets a group whatever its members (its coordinator moved to another broker, which
    /// loads it from `__consumer_offsets`).
    pub fn unload(&mut self, group_id: &str) {
        self.groups.remove(group_id);
        self.downgraded.retain(|d| d.group_id != group_id);
    }

    /// ConsumerGroupHeartbeat. `new_member_id` names a member that joins without an id (v0).
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        req: Heartbeat,
        topics: &Topics,
        new_member_id: &str,
        now: i64,
    ) -> Result<HeartbeatResponse, ConsumerError> {
        validate(group_id, &req)?;
        if req.member_epoch == 0 && !self.groups.contains_key(group_id) {
            self.groups
                .insert(group_id.to_string(), ConsumerGroup::new(group_id));
        }
        // Without a group no member can be known (membership is not kept across restarts).
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ConsumerError::UnknownMemberId)?;
        let result = group.heartbeat(&self.config, req, topics, new_member_id, now);
        if group.members().next().is_none() && group.epoch() == 0 {
            // A join refused before any member was added leaves no group behind.
            self.groups.remove(group_id);
        }
        self.collect_downgrade(group_id);
        result
    }

    /// Turns a classic group with members into a consumer group (an online upgrade), if the
    /// migration policy and `group.consumer.max.size` allow it and every member speaks the
    /// consumer protocol; else GROUP_ID_NOT_FOUND, as Kafka answers.
    pub fn upgrade(
        &mut self,
        classic: &crate::group::state::Group,
        topics: &Topics,
        now: i64,
    ) -> Result<(), ConsumerError> {
        if !self.config.migration.upgrade()
            || classic.protocol_type() != "consumer"
            || classic.members().count() > self.config.max_size
        {
            return Err(ConsumerError::GroupIdNotFound);
        }
        let group = ConsumerGroup::from_classic(classic, topics, now)
            .map_err(|_| ConsumerError::GroupIdNotFound)?;
        self.groups.insert(group.group_id().to_string(), group);
        Ok(())
    }

    /// JoinGroup from a classic member of a consumer group with members.
    pub fn classic_join(
        &mut self,
        group_id: &str,
        req: &JoinRequest,
        new_member_id: &str,
        topics: &Topics,
        now: i64,
    ) -> Result<JoinResponse, GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.classic_join(&self.config, req, new_member_id, topics, now)
    }

    /// SyncGroup from a classic member of a consumer group.
    pub fn classic_sync(
        &mut self,
        group_id: &str,
        req: &SyncRequest,
        now: i64,
    ) -> Result<SyncResponse, GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.classic_sync(req, now)
    }

    /// Heartbeat from a classic member of a consumer group.
    pub fn classic_heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.classic_heartbeat(member_id, instance_id, generation_id, now)
    }

    /// LeaveGroup for classic members of a consumer group: one result per member.
    pub fn classic_leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> PartitionResults {
        match self.groups.get_mut(group_id) {
            Some(group) => group.classic_leave(&self.config, members),
            None => vec![Err(GroupError::UnknownMemberId); members.len()],
        }
    }

    /// The groups that turned classic since the last call (see [`classic`]).
    pub fn take_downgraded(&mut self) -> Vec<Downgraded> {
        std::mem::take(&mut self.downgraded)
    }

    fn collect_downgrade(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(|g| g.downgrade) {
            let group = self.groups.remove(group_id).expect("present");
            self.downgraded.push(group.to_classic());
        }
    }

    /// Checks an OffsetCommit from `member_id` at `member_epoch` against a consumer group: a
    /// commit without a member (epoch < 0) only while the group has no members; else the member
    /// must exist at exactly that epoch, and commit with a request that can carry it
    /// (`epoch_aware`: OffsetCommit v9+).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        epoch_aware: bool,
    ) -> Result<(), ConsumerError> {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(());
        };
        if member_epoch < 0 && group.members().next().is_none() {
            return Ok(());
        }
        let member = group
            .member(member_id)
            .ok_or(ConsumerError::UnknownMemberId)?;
        if member.classic.is_some() {
            // A classic member commits at its generation, with any version.
            return match member_epoch == member.epoch {
                true => Ok(()),
                false => Err(ConsumerError::IllegalGeneration),
            };
        }
        if !epoch_aware {
            return Err(ConsumerError::UnsupportedVersion);
        }
        match member_epoch.cmp(&member.epoch) {
            std::cmp::Ordering::Greater => Err(ConsumerError::FencedMemberEpoch),
            std::cmp::Ordering::Less => Err(ConsumerError::StaleMemberEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Checks an OffsetFetch that names a member (OffsetFetch v9+ with an epoch ≥ 0).
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ConsumerError> {
        let Some(group) = self.groups.get(group_id) else {
            return Err(ConsumerError::UnknownMemberId);
        };
        let member = group
            .member(member_id)
            .ok_or(ConsumerError::UnknownMemberId)?;
        if member.epoch != member_epoch {
            return Err(ConsumerError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Expires sessions and revocations past their deadline; returns the groups that changed.
    /// Groups that turn classic on the way are collected for [`ConsumerGroups::take_downgraded`].
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        let config = self.config;
        let changed: Vec<String> = self
            .groups
            .values_mut()
            .filter_map(|g| g.tick(&config, now).then(|| g.group_id().to_string()))
            .collect();
        for group_id in &changed {
            self.collect_downgrade(group_id);
        }
        changed
    }

    /// Puts back a group rebuilt from `__consumer_offsets` (see [`stored`]).
    pub fn restore(&mut self, group: ConsumerGroup) {
        self.groups.insert(group.group_id().to_string(), group);
    }

    /// The broker's consumer group settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The earliest instant at which [`ConsumerGroups::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(ConsumerGroup::next_deadline)
            .min()
    }
}

/// Kafka's checks of a heartbeat's fields, before any state is looked at.
fn validate(group_id: &str, req: &Heartbeat) -> Result<(), ConsumerError> {
    use ConsumerError::InvalidRequest;
    if group_id.is_empty() {
        return Err(InvalidRequest("GroupId can't be empty."));
    }
    if req.instance_id.as_deref() == Some("") {
        return Err(InvalidRequest("InstanceId can't be empty."));
    }
    if req.rack_id.as_deref() == Some("") {
        return Err(InvalidRequest("RackId can't be empty."));
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return Err(InvalidRequest(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return Err(InvalidRequest(
                    "TopicPartitions must be empty when (re-)joining.",
                ));
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return Err(InvalidRequest(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        -2 if req.instance_id.is_none() => {
            return Err(InvalidRequest("InstanceId can't be null."));
        }
        -2 | -1 => {}
        e if e < 0 => return Err(InvalidRequest("MemberEpoch is invalid.")),
        _ => {}
    }
    if req.member_epoch != 0 && req.member_id.is_empty() {
        return Err(InvalidRequest("MemberId can't be empty."));
    }
    if let Some(source) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        TopicRegex::new(source).map_err(ConsumerError::InvalidRegularExpression)?;
    }
    if let Some(name) = &req.server_assignor {
        if !assignor::NAMES.contains(&name.as_str()) {
            return Err(ConsumerError::UnsupportedAssignor);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
