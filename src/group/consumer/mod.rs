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

pub mod assignor;
mod group;
pub mod stored;

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
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
        }
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
}

impl ConsumerGroups {
    pub fn new(config: ConsumerConfig) -> ConsumerGroups {
        ConsumerGroups {
            config,
            groups: BTreeMap::new(),
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
        result
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
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        self.groups
            .values_mut()
            .filter_map(|g| g.tick(now).then(|| g.group_id().to_string()))
            .collect()
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
