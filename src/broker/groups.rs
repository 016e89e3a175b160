//! Handlers of the consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups, ListGroups and
//! DescribeGroups (the classic protocol; KIP-848's own APIs are in `consumer_groups.rs`).
//!
//! Turns Kafka requests into calls on [`crate::group::GroupCoordinator`] and its answers into
//! responses at the negotiated version, leaving fields the version lacks at their defaults. The
//! only place that maps group and offsets-topic errors to Kafka error codes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, ApiKey, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, RequestKind,
    ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::operations::{authorized_operations, ResourceType};
use super::Broker;
use crate::group::offsets::OffsetsError;
use crate::group::state::{
    CommittedOffset, GroupError, JoinRequest, Protocol, SyncRequest, TopicPartition,
};
use crate::group::CoordinatorError;
use crate::listener::Session;
use crate::log::LogError;

/// The group APIs this broker implements, with the versions it accepts (min, max).
pub const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// Builds a (non-exhaustive) message struct from its default and the named fields.
macro_rules! build {
    (@set $m:ident $field:ident : $value:expr) => {
        $m.$field = $value;
    };
    (@set $m:ident $field:ident) => {
        $m.$field = $field;
    };
    ($ty:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let mut message = $ty::default();
        $(build!(@set message $field $(: $value)?);)*
        message
    }};
}

tokio::task_local! {
    /// The client's address as Kafka shows it in DescribeGroups ("/127.0.0.1"). The
    /// connection code sets it around JoinGroup and ConsumerGroupHeartbeat with
    /// `CLIENT_HOST.scope(..)`; they record it for the member.
    pub static CLIENT_HOST: String;
}

/// Kafka's `offset.metadata.max.bytes` default: longer commit metadata is refused.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Handles a request whose api key is in [`APIS`].
pub(crate) async fn handle(
    broker: &Broker,
    session: &Session,
    header: &RequestHeader,
    request: RequestKind,
) -> ResponseKind {
    let v = header.request_api_version;
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let (request, patch) = match super::group_acls::authorize(broker, session, request) {
        Ok(allowed) => allowed,
        Err(refused) => return refused,
    };
    let mut response = match request {
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator(broker, session, v, r).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group(broker, v, client_id, r).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group(broker, v, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group(broker, v, r)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit(broker, v, r).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch(broker, v, r)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete(broker, r).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups(broker, r).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups(broker, v, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups(broker, session, v, r))
        }
        other => unreachable!(
            "the dispatch routes only the APIs in groups::APIS here, not {:?}",
            std::mem::discriminant(&other)
        ),
    };
    patch.apply(broker, session, v, &mut response);
    response
}

/// The Kafka error code of a group state machine error.
fn group_error_code(e: &GroupError) -> i16 {
    let e = match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
    };
    e.code()
}

/// The Kafka error code of a coordinator error. Storage problems become the retriable codes
/// Kafka's coordinator gives for them, so clients retry instead of failing.
pub(super) fn coordinator_error_code(e: &CoordinatorError) -> i16 {
    match e {
        CoordinatorError::Group(g) => group_error_code(g),
        CoordinatorError::Offsets(o) => {
            tracing::warn!(error = %o, "group coordinator storage error");
            match o {
                OffsetsError::Log(LogError::BatchTooLarge { .. }) => {
                    ResponseError::InvalidCommitOffsetSize.code()
                }
                OffsetsError::Log(LogError::Io(_)) => ResponseError::NotCoordinator.code(),
                OffsetsError::Log(_) | OffsetsError::MissingPartition(_) => {
                    ResponseError::CoordinatorNotAvailable.code()
                }
                OffsetsError::Encode(_) | OffsetsError::Corrupt { .. } => {
                    ResponseError::UnknownServerError.code()
                }
            }
        }
        CoordinatorError::Consumer(c) => super::consumer_groups::consumer_error_code(c),
    }
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

async fn find_coordinator(
    broker: &Broker,
    session: &Session,
    v: i16,
    r: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // Groups (0) and transactions (1): the coordinator is the leader of the key's partition of
    // the offsets or transaction topic (this broker, on a single node). The topic is created
    // when a coordinator is first looked for, as Kafka does.
    let (error, topic, replication_factor) = match r.key_type {
        0 => (
            broker
                .groups
                .ensure_offsets_topic()
                .err()
                .map_or(0, |e| coordinator_error_code(&e)),
            crate::group::offsets::OFFSETS_TOPIC,
            broker.config.offsets_topic_replication_factor(),
        ),
        1 => (
            broker
                .txn
                .ensure_topic()
                .err()
                .map_or(0, |e| super::txn::txn_error_code(e, true)),
            crate::txn::topic::TRANSACTION_STATE_TOPIC,
            broker.config.transaction_state_replication_factor(),
        ),
        _ => (ResponseError::InvalidRequest.code(), "", 1),
    };
    let mut error = error;
    if let (0, Some(cluster), Some(local)) = (error, &broker.cluster, broker.log.topic(topic)) {
        if let Err(e) = cluster
            .ensure_internal_topic(topic, local.partitions, replication_factor, local.overrides)
            .await
        {
            tracing::warn!(topic, error = %e, "cannot create the internal topic in the cluster");
            error = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    let partitions = super::leaders::topic(broker, topic).map_or(0, |t| t.partitions.len() as i32);
    // The coordinator of one key, or COORDINATOR_NOT_AVAILABLE while its partition has no
    // live leader.
    let coordinator = |key: &str| -> Result<super::leaders::BrokerAddress, i16> {
        if error != 0 {
            return Err(error);
        }
        let partition = crate::group::offsets::partition_for(key, partitions.max(1));
        super::leaders::leader_address(broker, session, topic, partition)
            .ok_or(ResponseError::CoordinatorNotAvailable.code())
    };
    if v >= 4 {
        let coordinators = r
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = coordinator(&key);
                build!(Coordinator {
                    key: key,
                    node_id: found.as_ref().map_or(-1, |b| b.node_id).into(),
                    host: found.as_ref().map_or_else(
                        |_| StrBytes::default(),
                        |b| str_bytes(b.endpoint.host.clone())
                    ),
                    port: found.as_ref().map_or(-1, |b| i32::from(b.endpoint.port)),
                    error_code: found.as_ref().err().copied().unwrap_or(0),
                    error_message: None,
                })
            })
            .collect();
        return build!(FindCoordinatorResponse {
            error_message: None,
            coordinators: coordinators,
        });
    }
    let found = coordinator(&r.key);
    build!(FindCoordinatorResponse {
        error_code: found.as_ref().err().copied().unwrap_or(0),
        error_message: None,
        node_id: found.as_ref().map_or(-1, |b| b.node_id).into(),
        host: found.as_ref().map_or_else(
            |_| StrBytes::default(),
            |b| str_bytes(b.endpoint.host.clone())
        ),
        port: found.as_ref().map_or(-1, |b| i32::from(b.endpoint.port)),
    })
}

async fn join_group(
    broker: &Broker,
    v: i16,
    client_id: String,
    r: JoinGroupRequest,
) -> JoinGroupResponse {
    let request = JoinRequest {
        member_id: r.member_id.to_string(),
        group_instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        client_host: CLIENT_HOST.try_with(Clone::clone).unwrap_or_default(),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        },
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: v >= 4,
    };
    // Before v7 the protocol name is a non-nullable string.
    let name = |n: Option<String>| -> Option<StrBytes> {
        match n {
            Some(n) => Some(str_bytes(n)),
            None if v >= 7 => None,
            None => Some(StrBytes::default()),
        }
    };
    let topics = super::consumer_groups::topics(broker);
    match broker.groups.join(&r.group_id, request, &topics).await {
        Ok(res) => {
            // KIP-814: only v9 can tell a static leader to keep the current assignment; older
            // versions get no member list, so the leader has nothing to reassign.
            let skip = res.skip_assignment && v >= 9;
            let members = if res.skip_assignment && v < 9 {
                Vec::new()
            } else {
                res.members
                    .into_iter()
                    .map(|m| {
                        build!(JoinGroupResponseMember {
                            member_id: str_bytes(m.member_id),
                            group_instance_id: if v >= 5 {
                                m.group_instance_id.map(str_bytes)
                            } else {
                                None
                            },
                            metadata: m.metadata,
                        })
                    })
                    .collect()
            };
            build!(JoinGroupResponse {
                error_code: 0,
                generation_id: res.generation_id,
                protocol_type: if v >= 7 {
                    res.protocol_type.map(str_bytes)
                } else {
                    None
                },
                protocol_name: name(res.protocol_name),
                leader: str_bytes(res.leader),
                skip_assignment: skip,
                member_id: str_bytes(res.member_id),
                members: members,
            })
        }
        Err(e) => {
            let member_id = match &e {
                GroupError::MemberIdRequired(id) => str_bytes(id.clone()),
                // Kafka answers a member it turned away with no member id.
                GroupError::GroupMaxSizeReached => StrBytes::default(),
                _ => r.member_id.clone(),
            };
            build!(JoinGroupResponse {
                error_code: group_error_code(&e),
                generation_id: -1,
                protocol_type: None,
                protocol_name: name(None),
                leader: StrBytes::default(),
                member_id: member_id,
            })
        }
    }
}

async fn sync_group(broker: &Broker, v: i16, r: SyncGroupRequest) -> SyncGroupResponse {
    let request = SyncRequest {
        generation_id: r.generation_id,
        member_id: r.member_id.to_string(),
        group_instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: r.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: r.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: r
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    match broker.groups.sync(&r.group_id, request).await {
        Ok(res) => build!(SyncGroupResponse {
            error_code: 0,
            protocol_type: if v >= 5 {
                res.protocol_type.map(str_bytes)
            } else {
                None
            },
            protocol_name: if v >= 5 {
                res.protocol_name.map(str_bytes)
            } else {
                None
            },
            assignment: res.assignment,
        }),
        Err(e) => build!(SyncGroupResponse {
            error_code: group_error_code(&e),
        }),
    }
}

fn heartbeat(broker: &Broker, r: HeartbeatRequest) -> HeartbeatResponse {
    let result = broker.groups.heartbeat(
        &r.group_id,
        &r.member_id,
        r.group_instance_id.as_deref(),
        r.generation_id,
    );
    build!(HeartbeatResponse {
        error_code: result.err().map_or(0, |e| group_error_code(&e)),
    })
}

fn leave_group(broker: &Broker, v: i16, r: LeaveGroupRequest) -> LeaveGroupResponse {
    if v < 3 {
        let error_code = match broker
            .groups
            .leave(&r.group_id, &[(r.member_id.to_string(), None)])
        {
            Ok(results) => results
                .first()
                .and_then(|res| res.as_ref().err())
                .map_or(0, group_error_code),
            Err(e) => group_error_code(&e),
        };
        return build!(LeaveGroupResponse {
            error_code: error_code
        });
    }
    let members: Vec<(String, Option<String>)> = r
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let results = match broker.groups.leave(&r.group_id, &members) {
        Ok(results) => results,
        // A request-level error carries no member results, as Kafka answers it.
        Err(e) => {
            return build!(LeaveGroupResponse {
                error_code: group_error_code(&e),
            })
        }
    };
    let responses = r
        .members
        .into_iter()
        .zip(results)
        .map(|(m, res)| {
            build!(MemberResponse {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                error_code: res.err().map_or(0, |e| group_error_code(&e)),
            })
        })
        .collect();
    build!(LeaveGroupResponse {
        error_code: 0,
        members: responses,
    })
}

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    partition >= 0
        && broker
            .log
            .topic(topic)
            .is_some_and(|t| partition < t.partitions)
}

async fn offset_commit(broker: &Broker, v: i16, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let expire = (v <= 4 && r.retention_time_ms >= 0).then(|| now + r.retention_time_ms);
    // Per-partition errors decided before the commit; `None` = to be committed.
    let mut codes: Vec<Vec<Option<i16>>> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &r.topics {
        let mut topic_codes = Vec::new();
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("").to_string();
            let code = if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge.code())
            } else if !partition_exists(broker, &topic.name, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition.code())
            } else {
                offsets.push((
                    TopicPartition::new(topic.name.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata,
                        commit_timestamp_ms: now,
                        expire_timestamp_ms: expire,
                    },
                ));
                None
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    let result = broker
        .groups
        .commit(
            &r.group_id,
            &r.member_id,
            r.group_instance_id.as_deref(),
            r.generation_id_or_member_epoch,
            // From v9 the generation field carries a consumer-protocol member's epoch.
            v >= 9,
            offsets,
        )
        .await;
    let commit_code = result.err().map_or(0, |e| coordinator_error_code(&e));
    let topics = r
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, topic_codes)| {
            build!(OffsetCommitResponseTopic {
                name: topic.name,
                partitions: topic
                    .partitions
                    .iter()
                    .zip(topic_codes)
                    .map(|(p, code)| build!(OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        // The group check comes first in Kafka: when it fails, every
                        // partition of an existing topic gets its error, whatever its metadata.
                        error_code: match code {
                            Some(c)
                                if c == ResponseError::OffsetMetadataTooLarge.code()
                                    && commit_code != 0 =>
                            {
                                commit_code
                            }
                            Some(c) => c,
                            None => commit_code,
                        },
                    }))
                    .collect(),
            })
        })
        .collect();
    build!(OffsetCommitResponse { topics })
}

/// One group's committed offsets, as (topic, [(partition, offset)]) in request order, or every
/// committed partition grouped by topic when `topics` is `None`.
#[allow(clippy::type_complexity)]
fn fetch_group(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<(i32, Option<CommittedOffset>)>)> {
    match topics {
        Some(topics) => {
            let wanted: Vec<TopicPartition> = topics
                .iter()
                .flat_map(|(t, ps)| {
                    ps.iter()
                        .map(move |p| TopicPartition::new(t.to_string(), *p))
                })
                .collect();
            let mut found = broker.groups.fetch(group_id, Some(&wanted)).into_iter();
            topics
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .iter()
                        .map(|p| (*p, found.next().and_then(|(_, o)| o)))
                        .collect();
                    (t, partitions)
                })
                .collect()
        }
        None => {
            let mut out: Vec<(TopicName, Vec<(i32, Option<CommittedOffset>)>)> = Vec::new();
            for (tp, o) in broker.groups.fetch(group_id, None) {
                match out.last_mut() {
                    Some((t, ps)) if **t == *tp.topic => ps.push((tp.partition, o)),
                    _ => out.push((TopicName(str_bytes(tp.topic)), vec![(tp.partition, o)])),
                }
            }
            out
        }
    }
}

/// The error code when this broker does not coordinate `group_id` now (in a cluster), else 0.
pub(super) fn coordinator_refusal(broker: &Broker, group_id: &str) -> i16 {
    broker
        .groups
        .check_coordinator(group_id)
        .err()
        .map_or(0, |e| group_error_code(&e))
}

fn offset_fetch(broker: &Broker, v: i16, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let metadata = |o: &Option<CommittedOffset>| {
        Some(str_bytes(
            o.as_ref().map(|o| o.metadata.clone()).unwrap_or_default(),
        ))
    };
    if v >= 8 {
        let groups = r
            .groups
            .into_iter()
            .map(|g| {
                // v9: a consumer-protocol member fetches at its epoch (admins send -1).
                if v >= 9 && g.member_epoch >= 0 {
                    let member = g.member_id.as_deref().unwrap_or("");
                    if let Err(e) =
                        broker
                            .groups
                            .check_offset_fetch(&g.group_id, member, g.member_epoch)
                    {
                        return build!(OffsetFetchResponseGroup {
                            group_id: g.group_id,
                            error_code: super::consumer_groups::consumer_error_code(&e),
                        });
                    }
                }
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                // In a cluster: NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS, with no offsets.
                let refused = coordinator_refusal(broker, &g.group_id);
                let fetched = fetch_group(broker, &g.group_id, topics);
                build!(OffsetFetchResponseGroup {
                    group_id: g.group_id,
                    topics: fetched
                        .into_iter()
                        .map(|(name, ps)| build!(OffsetFetchResponseTopics {
                            name: name,
                            partitions: ps
                                .into_iter()
                                .map(|(p, o)| build!(OffsetFetchResponsePartitions {
                                    partition_index: p,
                                    committed_offset: o.as_ref().map_or(-1, |o| o.offset),
                                    committed_leader_epoch: o
                                        .as_ref()
                                        .map_or(-1, |o| o.leader_epoch),
                                    metadata: metadata(&o),
                                    error_code: refused,
                                }))
                                .collect(),
                        }))
                        .collect(),
                    error_code: refused,
                })
            })
            .collect();
        return build!(OffsetFetchResponse { groups });
    }
    let topics = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let refused = coordinator_refusal(broker, &r.group_id);
    let fetched = fetch_group(broker, &r.group_id, topics);
    build!(OffsetFetchResponse {
        topics: fetched
            .into_iter()
            .map(|(name, ps)| build!(OffsetFetchResponseTopic {
                name: name,
                partitions: ps
                    .into_iter()
                    .map(|(p, o)| build!(OffsetFetchResponsePartition {
                        partition_index: p,
                        committed_offset: o.as_ref().map_or(-1, |o| o.offset),
                        committed_leader_epoch: if v >= 5 {
                            o.as_ref().map_or(-1, |o| o.leader_epoch)
                        } else {
                            -1
                        },
                        metadata: metadata(&o),
                        error_code: refused,
                    }))
                    .collect(),
            }))
            .collect(),
        error_code: if v >= 2 { refused } else { 0 },
    })
}

async fn offset_delete(broker: &Broker, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<TopicPartition> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.to_string(), p.partition_index))
        })
        .collect();
    match broker.groups.delete_offsets(&r.group_id, &partitions).await {
        Err(e) => build!(OffsetDeleteResponse {
            error_code: coordinator_error_code(&e),
        }),
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = r
                .topics
                .into_iter()
                .map(|t| {
                    build!(OffsetDeleteResponseTopic {
                        name: t.name,
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| build!(OffsetDeleteResponsePartition {
                                partition_index: p.partition_index,
                                error_code: results
                                    .next()
                                    .and_then(|res| res.err())
                                    .map_or(0, |e| group_error_code(&e)),
                            }))
                            .collect(),
                    })
                })
                .collect();
            build!(OffsetDeleteResponse {
                error_code: 0,
                topics: topics,
            })
        }
    }
}

async fn delete_groups(broker: &Broker, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for group_id in r.groups_names {
        // The empty group id is allowed, as Kafka allows it (commits may create that group).
        let error_code = match broker.groups.delete_group(&group_id).await {
            Ok(()) => 0,
            Err(e) => coordinator_error_code(&e),
        };
        results.push(build!(DeletableGroupResult {
            group_id: group_id,
            error_code,
        }));
    }
    build!(DeleteGroupsResponse { results })
}

fn list_groups(broker: &Broker, v: i16, r: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = r.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = r.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            build!(ListedGroup {
                group_id: GroupId(str_bytes(g.group_id)),
                protocol_type: str_bytes(g.protocol_type),
                group_state: if v >= 4 {
                    StrBytes::from_static_str(g.state)
                } else {
                    StrBytes::default()
                },
                group_type: if v >= 5 {
                    StrBytes::from_static_str(g.group_type)
                } else {
                    StrBytes::default()
                },
            })
        })
        .collect();
    build!(ListGroupsResponse {
        error_code: 0,
        groups: groups,
    })
}

fn describe_groups(
    broker: &Broker,
    session: &Session,
    v: i16,
    r: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    // The field exists from v3; below it must stay at its default.
    let asked = v >= 3 && r.include_authorized_operations;
    let groups = r
        .groups
        .into_iter()
        // The empty group id is described like any other, as Kafka does (commits may use it).
        .map(|group_id| {
            let operations =
                authorized_operations(broker, session, ResourceType::Group, &group_id, asked);
            (group_id, operations)
        })
        .map(
            |(group_id, operations)| match broker.groups.describe(&group_id) {
                None => build!(DescribedGroup {
                    error_code: coordinator_refusal(broker, &group_id),
                    group_id: group_id,
                    group_state: StrBytes::from_static_str("Dead"),
                    protocol_type: StrBytes::default(),
                    protocol_data: StrBytes::default(),
                    authorized_operations: operations,
                }),
                Some(d) => build!(DescribedGroup {
                    error_code: 0,
                    group_id: group_id,
                    group_state: StrBytes::from_static_str(d.state.name()),
                    protocol_type: str_bytes(d.protocol_type),
                    protocol_data: str_bytes(d.protocol_name),
                    authorized_operations: operations,
                    members: d
                        .members
                        .into_iter()
                        .map(|m| build!(DescribedGroupMember {
                            member_id: str_bytes(m.member_id),
                            group_instance_id: if v >= 4 {
                                m.group_instance_id.map(str_bytes)
                            } else {
                                None
                            },
                            client_id: str_bytes(m.client_id),
                            client_host: str_bytes(m.client_host),
                            member_metadata: m.metadata,
                            member_assignment: m.assignment,
                        }))
                        .collect(),
                }),
            },
        )
        .collect();
    build!(DescribeGroupsResponse { groups })
}
