//! The ACL checks of the group APIs (classic and KIP-848), kept beside their handlers so the
//! handlers stay about groups: [`authorize`] runs before a group request is handled and either
//! refuses it whole, or trims from it what the principal may not touch (topics it may not
//! commit or delete offsets for, groups it may not delete); [`Patch::apply`] then adds those
//! refusals to the response and hides what the principal may not describe. The checks are
//! Kafka's: group READ to join, sync, heartbeat, leave and commit; group DESCRIBE to find a
//! coordinator, fetch offsets and describe; group DELETE to delete groups and offsets; topic
//! READ to commit or delete a topic's offsets and DESCRIBE to see them; ListGroups lists what
//! the principal may describe (all of it with cluster DESCRIBE).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, GroupId, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, OffsetCommitResponse, OffsetDeleteResponse, RequestKind, ResponseKind,
    SyncGroupResponse,
};

use super::Broker;
use crate::authz::{Operation, ResourceType};
use crate::listener::Session;

/// GROUP_AUTHORIZATION_FAILED.
const GROUP_DENIED: i16 = 30;

/// What to add to, or hide from, a group API's response after the handler ran.
#[derive(Default)]
pub(super) struct Patch {
    /// OffsetCommit / OffsetDelete topics removed from the request: (topic, partitions).
    denied_topics: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)>,
    /// DeleteGroups groups removed from the request.
    denied_groups: Vec<GroupId>,
    /// FindCoordinator keys the principal may not describe, with the error they get.
    denied_keys: Vec<String>,
    key_error: i16,
    /// OffsetFetch: per group (one before v8), whether all its topics were asked for (then
    /// those it may not describe are hidden, else refused).
    fetch_all: Vec<bool>,
}

fn group_allowed(broker: &Broker, session: &Session, op: Operation, group: &str) -> bool {
    broker.allowed(session, op, ResourceType::Group, group)
}

fn topic_allowed(broker: &Broker, session: &Session, op: Operation, topic: &str) -> bool {
    broker.allowed(session, op, ResourceType::Topic, topic)
}

/// Checks a group request: `Err` is the whole answer (refused), `Ok` the request to hand to
/// the handler (perhaps trimmed) and what to patch into its answer.
#[allow(clippy::result_large_err)]
pub(super) fn authorize(
    broker: &Broker,
    session: &Session,
    request: RequestKind,
) -> Result<(RequestKind, Patch), ResponseKind> {
    let read = |group: &str| group_allowed(broker, session, Operation::Read, group);
    let mut patch = Patch::default();
    let request = match request {
        RequestKind::JoinGroup(r) if !read(&r.group_id) => {
            return Err(ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_generation_id(-1),
            ))
        }
        RequestKind::SyncGroup(r) if !read(&r.group_id) => {
            return Err(ResponseKind::SyncGroup(
                SyncGroupResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::Heartbeat(r) if !read(&r.group_id) => {
            return Err(ResponseKind::Heartbeat(
                HeartbeatResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::LeaveGroup(r) if !read(&r.group_id) => {
            return Err(ResponseKind::LeaveGroup(
                LeaveGroupResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::ConsumerGroupHeartbeat(r) if !read(&r.group_id) => {
            return Err(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_member_epoch(-1),
            ))
        }
        // As Kafka: a member may subscribe only to topics it may describe (the names it sends;
        // a regular expression is matched against every topic).
        RequestKind::ConsumerGroupHeartbeat(r)
            if r.subscribed_topic_names.as_ref().is_some_and(|names| {
                names
                    .iter()
                    .any(|t| !topic_allowed(broker, session, Operation::Describe, t))
            }) =>
        {
            return Err(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_member_epoch(-1),
            ))
        }
        RequestKind::OffsetCommit(r) if !read(&r.group_id) => {
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partition_errors(
                            t.partitions.iter().map(|p| p.partition_index),
                            GROUP_DENIED,
                        ))
                })
                .collect();
            return Err(ResponseKind::OffsetCommit(
                OffsetCommitResponse::default().with_topics(topics),
            ));
        }
        RequestKind::OffsetCommit(mut r) => {
            let (kept, denied): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| topic_allowed(broker, session, Operation::Read, &t.name));
            r.topics = kept;
            patch.denied_topics = denied
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            RequestKind::OffsetCommit(r)
        }
        RequestKind::OffsetDelete(r)
            if !group_allowed(broker, session, Operation::Delete, &r.group_id) =>
        {
            return Err(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetDelete(mut r) => {
            let (kept, denied): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| topic_allowed(broker, session, Operation::Read, &t.name));
            r.topics = kept;
            patch.denied_topics = denied
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            RequestKind::OffsetDelete(r)
        }
        RequestKind::DeleteGroups(mut r) => {
            let (kept, denied): (Vec<_>, Vec<_>) = r
                .groups_names
                .into_iter()
                .partition(|g| group_allowed(broker, session, Operation::Delete, g));
            r.groups_names = kept;
            patch.denied_groups = denied;
            RequestKind::DeleteGroups(r)
        }
        RequestKind::FindCoordinator(r) => {
            let keys: Vec<String> = if r.coordinator_keys.is_empty() {
                vec![r.key.to_string()]
            } else {
                r.coordinator_keys.iter().map(|k| k.to_string()).collect()
            };
            let (resource, error) = match r.key_type {
                1 => (
                    ResourceType::TransactionalId,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                ),
                _ => (ResourceType::Group, GROUP_DENIED),
            };
            patch.key_error = error;
            patch.denied_keys = keys
                .into_iter()
                .filter(|k| !broker.allowed(session, Operation::Describe, resource, k))
                .collect();
            RequestKind::FindCoordinator(r)
        }
        RequestKind::OffsetFetch(r) => {
            patch.fetch_all = if r.groups.is_empty() {
                vec![r.topics.is_none()]
            } else {
                r.groups.iter().map(|g| g.topics.is_none()).collect()
            };
            RequestKind::OffsetFetch(r)
        }
        other => other,
    };
    Ok((request, patch))
}

fn partition_errors(
    partitions: impl Iterator<Item = i32>,
    error_code: i16,
) -> Vec<OffsetCommitResponsePartition> {
    partitions
        .map(|p| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(error_code)
        })
        .collect()
}

impl Patch {
    /// Adds the refusals decided before the handler ran, and hides or refuses what the
    /// principal may not describe.
    pub(super) fn apply(
        self,
        broker: &Broker,
        session: &Session,
        version: i16,
        response: &mut ResponseKind,
    ) {
        let topic_denied = ResponseError::TopicAuthorizationFailed.code();
        let describe_group =
            |group: &str| group_allowed(broker, session, Operation::Describe, group);
        let describe_topic =
            |topic: &str| topic_allowed(broker, session, Operation::Describe, topic);
        match response {
            ResponseKind::OffsetCommit(r) => {
                r.topics
                    .extend(self.denied_topics.into_iter().map(|(name, ps)| {
                        OffsetCommitResponseTopic::default()
                            .with_name(name)
                            .with_partitions(partition_errors(ps.into_iter(), topic_denied))
                    }));
            }
            ResponseKind::OffsetDelete(r) => {
                r.topics
                    .extend(self.denied_topics.into_iter().map(|(name, ps)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(name)
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(topic_denied)
                                    })
                                    .collect(),
                            )
                    }));
            }
            ResponseKind::DeleteGroups(r) => {
                r.results.extend(self.denied_groups.into_iter().map(|g| {
                    DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                }));
            }
            ResponseKind::FindCoordinator(r) if !self.denied_keys.is_empty() => {
                if version < 4 {
                    r.error_code = self.key_error;
                    r.node_id = (-1).into();
                    r.host = Default::default();
                    r.port = -1;
                }
                for c in &mut r.coordinators {
                    if self.denied_keys.iter().any(|k| **k == *c.key) {
                        c.error_code = self.key_error;
                        c.node_id = (-1).into();
                        c.host = Default::default();
                        c.port = -1;
                    }
                }
            }
            ResponseKind::OffsetFetch(r) if version >= 8 => {
                for (g, all) in r.groups.iter_mut().zip(self.fetch_all) {
                    if !describe_group(&g.group_id) {
                        g.error_code = GROUP_DENIED;
                        g.topics.clear();
                    } else if all {
                        g.topics.retain(|t| describe_topic(&t.name));
                    } else {
                        for t in g.topics.iter_mut().filter(|t| !describe_topic(&t.name)) {
                            for p in &mut t.partitions {
                                p.committed_offset = -1;
                                p.metadata = None;
                                p.error_code = topic_denied;
                            }
                        }
                    }
                }
            }
            ResponseKind::OffsetFetch(r) => {
                if self.fetch_all.first().copied().unwrap_or(true) {
                    r.topics.retain(|t| describe_topic(&t.name));
                } else {
                    for t in r.topics.iter_mut().filter(|t| !describe_topic(&t.name)) {
                        for p in &mut t.partitions {
                            p.committed_offset = -1;
                            p.metadata = None;
                            p.error_code = topic_denied;
                        }
                    }
                }
            }
            ResponseKind::ListGroups(r)
                if !broker.cluster_allowed(session, Operation::Describe) =>
            {
                r.groups.retain(|g| describe_group(&g.group_id));
            }
            ResponseKind::DescribeGroups(r) => {
                for g in &mut r.groups {
                    if !describe_group(&g.group_id) {
                        let group_id = std::mem::take(&mut g.group_id);
                        *g = Default::default();
                        g.group_id = group_id;
                        g.error_code = GROUP_DENIED;
                    }
                }
            }
            ResponseKind::ConsumerGroupDescribe(r) => {
                for g in &mut r.groups {
                    if !describe_group(&g.group_id) {
                        let group_id = std::mem::take(&mut g.group_id);
                        *g = Default::default();
                        g.group_id = group_id;
                        g.error_code = GROUP_DENIED;
                    }
                }
            }
            _ => {}
        }
    }
}
