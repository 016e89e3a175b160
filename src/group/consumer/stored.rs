//! A consumer-protocol group in its persisted form, as Kafka keeps it in `__consumer_offsets`:
//! the group epoch, each member's metadata, the target assignment (its epoch and each member's
//! share) and each member's current assignment, one record per key.
//!
//! [`StoredGroup::of`] takes the form of a live group; [`changes`] lists the records that turn
//! one form into another, in Kafka's order (a leaving member's tombstones first, the group's
//! tombstones last), so the coordinator writes only what changed; [`StoredGroup::restore`]
//! rebuilds a live group at start-up. Pure: the byte layout of the records is in
//! `group/consumer_records.rs`.

use std::collections::BTreeMap;

use super::classic::ClassicMember;
use super::group::{ConsumerGroup, ConsumerMember, MemberState, TopicRegex};
use super::{Assignment, Topics};

/// A member's metadata (Kafka's ConsumerGroupMemberMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member using the classic protocol (Kafka's tagged ClassicMemberMetadata).
    pub classic: Option<ClassicMember>,
}

/// A member's current assignment (Kafka's ConsumerGroupCurrentMemberAssignmentValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCurrent {
    pub epoch: i32,
    pub previous_epoch: i32,
    /// Kafka's MemberState byte: 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned: Assignment,
    pub revoking: Assignment,
}

/// One group's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    /// ConsumerGroupMetadataValue; `None` until the record is read (a group without it is not
    /// rebuilt).
    pub epoch: Option<i32>,
    /// ConsumerGroupTargetAssignmentMetadataValue.
    pub assignment_epoch: Option<i32>,
    pub members: BTreeMap<String, StoredMember>,
    pub targets: BTreeMap<String, Assignment>,
    pub current: BTreeMap<String, StoredCurrent>,
}

/// One record of a consumer group; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// ConsumerGroupMetadata (record type 3).
    Epoch {
        group_id: String,
        epoch: Option<i32>,
    },
    /// ConsumerGroupMemberMetadata (5).
    Member {
        group_id: String,
        member_id: String,
        value: Option<StoredMember>,
    },
    /// ConsumerGroupTargetAssignmentMetadata (6).
    AssignmentEpoch {
        group_id: String,
        epoch: Option<i32>,
    },
    /// ConsumerGroupTargetAssignmentMember (7).
    Target {
        group_id: String,
        member_id: String,
        value: Option<Assignment>,
    },
    /// ConsumerGroupCurrentMemberAssignment (8).
    Current {
        group_id: String,
        member_id: String,
        value: Option<StoredCurrent>,
    },
}

impl ConsumerRecord {
    pub fn group_id(&self) -> &str {
        match self {
            ConsumerRecord::Epoch { group_id, .. }
            | ConsumerRecord::Member { group_id, .. }
            | ConsumerRecord::AssignmentEpoch { group_id, .. }
            | ConsumerRecord::Target { group_id, .. }
            | ConsumerRecord::Current { group_id, .. } => group_id,
        }
    }

    /// Applies the record to its group's state as read so far (later records win).
    pub fn apply(self, group: &mut StoredGroup) {
        match self {
            ConsumerRecord::Epoch { epoch, .. } => group.epoch = epoch,
            ConsumerRecord::AssignmentEpoch { epoch, .. } => group.assignment_epoch = epoch,
            ConsumerRecord::Member {
                member_id, value, ..
            } => set(&mut group.members, member_id, value),
            ConsumerRecord::Target {
                member_id, value, ..
            } => set(&mut group.targets, member_id, value),
            ConsumerRecord::Current {
                member_id, value, ..
            } => set(&mut group.current, member_id, value),
        }
    }
}

fn set<V>(map: &mut BTreeMap<String, V>, key: String, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

fn state_byte(state: MemberState) -> i8 {
    match state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    }
}

fn state_of(byte: i8) -> MemberState {
    match byte {
        1 => MemberState::UnrevokedPartitions,
        2 => MemberState::UnreleasedPartitions,
        _ => MemberState::Stable,
    }
}

impl StoredGroup {
    /// The persisted form of a live group.
    pub fn of(group: &ConsumerGroup) -> StoredGroup {
        let members = group.members.values();
        StoredGroup {
            epoch: Some(group.epoch),
            assignment_epoch: Some(group.assignment_epoch),
            members: members
                .clone()
                .map(|m| {
                    let stored = StoredMember {
                        instance_id: m.instance_id.clone(),
                        rack_id: m.rack_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed: m.subscribed.clone(),
                        regex: m.regex.as_ref().map(|r| r.as_str().to_string()),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        server_assignor: m.server_assignor.clone(),
                        classic: m.classic.clone(),
                    };
                    (m.member_id.clone(), stored)
                })
                .collect(),
            targets: group
                .target
                .iter()
                .filter(|(id, _)| group.members.contains_key(*id))
                .map(|(id, a)| (id.clone(), a.clone()))
                .collect(),
            current: members
                .map(|m| {
                    let stored = StoredCurrent {
                        epoch: m.epoch,
                        previous_epoch: m.previous_epoch,
                        state: state_byte(m.state),
                        assigned: m.assigned.clone(),
                        revoking: m.revoking.clone(),
                    };
                    (m.member_id.clone(), stored)
                })
                .collect(),
        }
    }

    /// Rebuilds the live group; `None` without a group epoch record. Every member gets a fresh
    /// session from `now` (and a member revoking partitions a fresh rebalance timeout): a
    /// classic member of its own session timeout, the others of `session_timeout_ms` (the
    /// group's or the broker's); `topics` are the topics that exist now.
    pub fn restore(
        &self,
        group_id: &str,
        topics: &Topics,
        session_timeout_ms: i32,
        now: i64,
    ) -> Option<ConsumerGroup> {
        let epoch = self.epoch?;
        let mut group = ConsumerGroup::new(group_id);
        group.epoch = epoch;
        group.assignment_epoch = self.assignment_epoch.unwrap_or(0);
        for (member_id, m) in &self.members {
            let current = self.current.get(member_id);
            let state = current.map_or(MemberState::Stable, |c| state_of(c.state));
            let rebalance_timeout_ms = m.rebalance_timeout_ms.max(0);
            let session_timeout_ms = m
                .classic
                .as_ref()
                .map_or(session_timeout_ms, |c| c.session_timeout_ms);
            let member = ConsumerMember {
                member_id: member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms,
                subscribed: m.subscribed.clone(),
                // An expression that no longer compiles (none should) is dropped, not fatal.
                regex: m.regex.as_deref().and_then(|r| TopicRegex::new(r).ok()),
                server_assignor: m.server_assignor.clone(),
                epoch: current.map_or(0, |c| c.epoch),
                previous_epoch: current.map_or(0, |c| c.previous_epoch),
                state,
                assigned: current.map(|c| c.assigned.clone()).unwrap_or_default(),
                revoking: current.map(|c| c.revoking.clone()).unwrap_or_default(),
                session_deadline_ms: now + i64::from(session_timeout_ms),
                revoke_deadline_ms: (state == MemberState::UnrevokedPartitions)
                    .then(|| now + i64::from(rebalance_timeout_ms)),
                sent: None,
                session_timeout_ms,
                classic: m.classic.clone(),
                join_deadline_ms: None,
                sync_deadline_ms: None,
            };
            group.members.insert(member_id.clone(), member);
        }
        group.target = self
            .targets
            .iter()
            .filter(|(id, _)| group.members.contains_key(*id))
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        // Topics cannot change while the broker is down: the snapshot of the subscribed topics
        // is the one the target assignment was computed from.
        group.refresh_topics(topics);
        group.assignor = group.preferred_assignor();
        Some(group)
    }
}

/// The records that turn `old` into `new` (`None`: no group), in Kafka's order.
pub fn changes(
    group_id: &str,
    old: Option<&StoredGroup>,
    new: Option<&StoredGroup>,
) -> Vec<ConsumerRecord> {
    let empty = StoredGroup::default();
    let (before, after) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let g = || group_id.to_string();
    let mut out = Vec::new();
    for member_id in before.members.keys() {
        if !after.members.contains_key(member_id) {
            let m = || member_id.clone();
            out.push(ConsumerRecord::Current {
                group_id: g(),
                member_id: m(),
                value: None,
            });
            out.push(ConsumerRecord::Target {
                group_id: g(),
                member_id: m(),
                value: None,
            });
            out.push(ConsumerRecord::Member {
                group_id: g(),
                member_id: m(),
                value: None,
            });
        }
    }
    if new.is_none() {
        if old.is_some() {
            out.push(ConsumerRecord::AssignmentEpoch {
                group_id: g(),
                epoch: None,
            });
            out.push(ConsumerRecord::Epoch {
                group_id: g(),
                epoch: None,
            });
        }
        return out;
    }
    for (member_id, m) in &after.members {
        if before.members.get(member_id) != Some(m) {
            out.push(ConsumerRecord::Member {
                group_id: g(),
                member_id: member_id.clone(),
                value: Some(m.clone()),
            });
        }
    }
    if before.epoch != after.epoch {
        out.push(ConsumerRecord::Epoch {
            group_id: g(),
            epoch: after.epoch,
        });
    }
    for (member_id, a) in &after.targets {
        if before.targets.get(member_id) != Some(a) {
            out.push(ConsumerRecord::Target {
                group_id: g(),
                member_id: member_id.clone(),
                value: Some(a.clone()),
            });
        }
    }
    if before.assignment_epoch != after.assignment_epoch {
        out.push(ConsumerRecord::AssignmentEpoch {
            group_id: g(),
            epoch: after.assignment_epoch,
        });
    }
    for (member_id, c) in &after.current {
        if before.current.get(member_id) != Some(c) {
            out.push(ConsumerRecord::Current {
                group_id: g(),
                member_id: member_id.clone(),
                value: Some(c.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ConsumerConfig, ConsumerGroups, Heartbeat};
    use super::*;

    fn join(member: &str) -> Heartbeat {
        Heartbeat {
            member_id: member.to_string(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".to_string()]),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        }
    }

    fn replay(records: &[ConsumerRecord], into: &mut StoredGroup) {
        for r in records {
            r.clone().apply(into);
        }
    }

    #[test]
    fn the_written_changes_rebuild_the_group_exactly() {
        let topics: Topics = [("t".to_string(), (uuid::Uuid::from_u128(1), 4))].into();
        let mut groups = ConsumerGroups::new(ConsumerConfig::default());
        let mut disk = StoredGroup::default();
        let mut last: Option<StoredGroup> = None;
        let mut step = |groups: &ConsumerGroups, disk: &mut StoredGroup| {
            let now = groups.group("g").map(StoredGroup::of);
            replay(&changes("g", last.as_ref(), now.as_ref()), disk);
            last = now;
        };
        groups.heartbeat("g", join("a"), &topics, "", 0).unwrap();
        step(&groups, &mut disk);
        groups.heartbeat("g", join("b"), &topics, "", 0).unwrap();
        step(&groups, &mut disk);
        assert_eq!(Some(&disk), last.as_ref());
        let rebuilt = disk.restore("g", &topics, 45_000, 0).unwrap();
        assert_eq!(StoredGroup::of(&rebuilt), disk);
        assert_eq!(rebuilt.epoch(), 2);
        assert_eq!(rebuilt.member("a").unwrap().epoch, 1);
        assert_eq!(rebuilt.member("b").unwrap().epoch, 2);
        assert_eq!(rebuilt.state(), "Reconciling");

        // A member leaving writes its three tombstones and the new epoch.
        groups
            .heartbeat(
                "g",
                Heartbeat {
                    member_id: "b".into(),
                    member_epoch: -1,
                    ..Heartbeat::default()
                },
                &topics,
                "",
                0,
            )
            .unwrap();
        let now = StoredGroup::of(groups.group("g").unwrap());
        let records = changes("g", last.as_ref(), Some(&now));
        assert!(
            matches!(&records[0], ConsumerRecord::Current { member_id, value: None, .. } if member_id == "b")
        );
        assert!(
            matches!(&records[2], ConsumerRecord::Member { member_id, value: None, .. } if member_id == "b")
        );
        assert!(records
            .iter()
            .any(|r| matches!(r, ConsumerRecord::Epoch { epoch: Some(3), .. })));
        replay(&records, &mut disk);
        assert_eq!(disk, now);
        // Nothing changed, nothing written; a group removed leaves only tombstones.
        assert!(changes("g", Some(&now), Some(&now)).is_empty());
        let gone = changes("g", Some(&now), None);
        replay(&gone, &mut disk);
        assert_eq!(disk.epoch, None);
        assert!(disk.members.is_empty() && disk.current.is_empty() && disk.targets.is_empty());
        assert!(disk.restore("g", &topics, 45_000, 0).is_none());
    }
}
