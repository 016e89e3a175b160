//! Handlers of the KIP-848 consumer group APIs: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe.
//!
//! Turns requests into calls on the coordinator's consumer-protocol side (topic ids and names
//! come from the log's topic metadata) and maps [`ConsumerError`] to Kafka's error codes.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_response as heartbeat;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::groups::CLIENT_HOST;
use super::operations::{authorized_operations, ResourceType};
use super::Broker;
use crate::group::consumer::{Assignment, ConsumerError, Heartbeat, TopicId, Topics};
use crate::listener::Session;
use crate::resource_configs::group::consumer_timeouts;
use crate::resource_configs::ResourceKind;

/// The KIP-848 APIs, with the versions accepted (min, max).
pub(super) const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// Handles a request whose api key is in [`APIS`].
pub(crate) async fn handle(
    broker: &Broker,
    session: &Session,
    v: i16,
    client_id: String,
    request: RequestKind,
) -> ResponseKind {
    let (request, patch) = match super::group_acls::authorize(broker, session, request) {
        Ok(allowed) => allowed,
        Err(refused) => return refused,
    };
    let mut response = match request {
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_heartbeat(broker, v, client_id, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_describe(broker, session, r))
        }
        other => unreachable!(
            "the dispatch routes only the APIs in consumer_groups::APIS here, not {:?}",
            std::mem::discriminant(&other)
        ),
    };
    patch.apply(broker, session, v, &mut response);
    response
}

/// The Kafka error code of a consumer group error.
pub(super) fn consumer_error_code(e: &ConsumerError) -> i16 {
    match e {
        ConsumerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ConsumerError::UnknownMemberId => ResponseError::UnknownMemberId,
        ConsumerError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        ConsumerError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        ConsumerError::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
        ConsumerError::FencedInstanceId => ResponseError::FencedInstanceId,
        ConsumerError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        ConsumerError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        ConsumerError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        ConsumerError::UnsupportedVersion => ResponseError::UnsupportedVersion,
        ConsumerError::InvalidRegularExpression(_) => ResponseError::InvalidRegularExpression,
        ConsumerError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        ConsumerError::NotCoordinator => ResponseError::NotCoordinator,
        ConsumerError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        ConsumerError::IllegalGeneration => ResponseError::IllegalGeneration,
    }
    .code()
}

/// Every user topic: name → (id, partitions).
pub(super) fn topics(broker: &Broker) -> Topics {
    broker
        .log
        .topics()
        .into_iter()
        .filter(|t| !t.internal)
        .map(|t| (t.name, (t.topic_id, t.partitions)))
        .collect()
}

async fn consumer_heartbeat(
    broker: &Broker,
    v: i16,
    client_id: String,
    r: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let fail = |e: ConsumerError| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(consumer_error_code(&e))
            .with_error_message(Some(StrBytes::from_string(e.to_string())))
    };
    // From v1 the client names itself (KIP-1082).
    if v >= 1 && r.member_id.is_empty() {
        return fail(ConsumerError::InvalidRequest("MemberId can't be empty."));
    }
    // The group's own configs (KIP-848), else the broker's.
    let (session_timeout_ms, heartbeat_interval_ms) = consumer_timeouts(
        &broker
            .resource_configs
            .overrides(ResourceKind::Group, &r.group_id),
    );
    let owned = r.topic_partitions.map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id).or_default().extend(tp.partitions);
        }
        a.retain(|_, ps| !ps.is_empty());
        a
    });
    let request = Heartbeat {
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        instance_id: r.instance_id.map(|s| s.to_string()),
        rack_id: r.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        subscribed_topic_names: r
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: r.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: r.server_assignor.map(|s| s.to_string()),
        owned,
        client_id,
        client_host: CLIENT_HOST.try_with(Clone::clone).unwrap_or_default(),
        session_timeout_ms,
        heartbeat_interval_ms,
    };
    match broker
        .groups
        .consumer_heartbeat(&r.group_id, request, &topics(broker))
        .await
    {
        Err(e) => fail(e),
        Ok(res) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(res.member_id)))
            .with_member_epoch(res.member_epoch)
            .with_heartbeat_interval_ms(res.heartbeat_interval_ms)
            .with_assignment(res.assignment.map(|a| {
                heartbeat::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            heartbeat::TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    }
}

/// An assignment as ConsumerGroupDescribe shows it, with topic names.
fn described(a: &Assignment, names: &BTreeMap<TopicId, String>) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                describe::TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(StrBytes::from_string(
                        names.get(id).cloned().unwrap_or_default(),
                    )))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

fn consumer_describe(
    broker: &Broker,
    session: &Session,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<TopicId, String> = topics(broker)
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    let groups = r
        .group_ids
        .into_iter()
        .map(|group_id| {
            let operations = authorized_operations(
                broker,
                session,
                ResourceType::Group,
                &group_id,
                r.include_authorized_operations,
            );
            let refused = super::groups::coordinator_refusal(broker, &group_id);
            if refused != 0 {
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(refused)
                    .with_authorized_operations(operations);
            }
            let Some(g) = broker.groups.consumer_group(&group_id) else {
                // The admin client then falls back to DescribeGroups (classic or unknown).
                let message = if broker.groups.is_classic_group(&group_id) {
                    format!("Group {} is not a consumer group.", &*group_id)
                } else {
                    format!("Group {} not found.", &*group_id)
                };
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_authorized_operations(operations);
            };
            let members = g
                .members()
                .map(|m| {
                    describe::Member::default()
                        .with_member_id(StrBytes::from_string(m.member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                        .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                        .with_member_epoch(m.epoch)
                        .with_client_id(StrBytes::from_string(m.client_id.clone()))
                        .with_client_host(StrBytes::from_string(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .iter()
                                .map(|n| TopicName(StrBytes::from_string(n.clone())))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(
                            m.regex
                                .as_ref()
                                .map(|r| StrBytes::from_string(r.as_str().to_string())),
                        )
                        .with_assignment(described(&m.assigned, &names))
                        .with_target_assignment(described(&g.target(&m.member_id), &names))
                        // 0: a member using the classic protocol, 1: the consumer protocol.
                        .with_member_type(if m.classic.is_some() { 0 } else { 1 })
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(StrBytes::from_static_str(g.state()))
                .with_group_epoch(g.epoch())
                .with_assignment_epoch(g.assignment_epoch())
                .with_assignor_name(StrBytes::from_static_str(g.assignor()))
                .with_members(members)
                .with_authorized_operations(operations)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
