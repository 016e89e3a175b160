//! DescribeTopicPartitions (KIP-966's paginated topic description): what the admin client's
//! `describeTopics`, and so `kafka-topics --describe`, uses on brokers that offer it. Topics come
//! in name order with at most a page of partitions per response; a cursor says where the next
//! page starts. Reads topic metadata only. With ACLs on, listing every topic leaves out those
//! the principal may not describe, and a topic asked for by name gets TOPIC_AUTHORIZATION_FAILED,
//! as in Kafka.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::errors::{code, NONE};
use super::operations::{authorized_operations, ResourceType};
use super::{valid_topic_name, Broker};
use crate::authz::Operation;
use crate::listener::Session;

/// The most partitions one response describes, whatever the client asks for (the default of
/// Kafka's `max.request.partition.size.limit`).
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub(super) fn describe_topic_partitions(
    broker: &Broker,
    session: &Session,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let all_topics = request.topics.is_empty();
    let cursor = request
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    let cursor_topic = cursor.as_ref().map(|(t, _)| t.as_str()).unwrap_or("");
    // Each topic once, in name order, from the cursor's topic on.
    let may_describe =
        |name: &str| broker.allowed(session, Operation::Describe, ResourceType::Topic, name);
    let names: BTreeSet<String> = if all_topics {
        super::leaders::topic_names(broker)
            .into_iter()
            .filter(|n| may_describe(n))
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.to_string())
            .collect()
    };
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| n.as_str() >= cursor_topic)
        .collect();
    if let Some((topic, partition)) = &cursor {
        // As Kafka: a cursor names one of the topics asked for, and a partition that can exist;
        // otherwise the whole request is invalid.
        if (!all_topics && !names.contains(topic)) || *partition < 0 {
            debug!(
                topic,
                partition, "DescribeTopicPartitions with an invalid cursor"
            );
            return request_error(&request, ResponseError::InvalidRequest);
        }
    }

    let mut remaining = request
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut response = DescribeTopicPartitionsResponse::default();
    let operations =
        |name: &str| authorized_operations(broker, session, ResourceType::Topic, name, true);
    for name in names {
        if remaining == 0 {
            // The page is full at a topic's end: the next one starts with this topic.
            response.next_cursor = Some(next_cursor(&name, 0));
            break;
        }
        if !may_describe(&name) {
            response.topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                    .with_topic_authorized_operations(authorized_operations(
                        broker,
                        session,
                        ResourceType::Topic,
                        &name,
                        false,
                    ))
                    .with_name(Some(TopicName(StrBytes::from_string(name)))),
            );
            continue;
        }
        let Some(info) = super::leaders::topic(broker, &name) else {
            // Listing every topic, one deleted meanwhile is left out; one asked for is answered.
            if !all_topics {
                let error = if valid_topic_name(&name).is_err() {
                    ResponseError::InvalidTopicException
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code(error))
                        .with_topic_authorized_operations(operations(&name))
                        .with_name(Some(TopicName(StrBytes::from_string(name)))),
                );
            }
            continue;
        };
        let first = match &cursor {
            Some((topic, partition)) if *topic == name => *partition,
            _ => 0,
        };
        let count = info.partitions.len() as i32;
        let end = count.min(first.saturating_add(remaining));
        let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let partitions: Vec<_> = info
            .partitions
            .iter()
            .filter(|p| p.index >= first && p.index < end)
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.index)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(ids(&p.replicas))
                    .with_isr_nodes(ids(&p.isr))
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
                    .with_offline_replicas(ids(&p.offline))
            })
            .collect();
        remaining -= partitions.len() as i32;
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(NONE)
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_topic_id(info.topic_id)
                .with_is_internal(info.internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(operations(&name)),
        );
        if end < count {
            // The page ends inside this topic.
            response.next_cursor = Some(next_cursor(&name, end));
            break;
        }
    }
    response
}

fn next_cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_index(partition)
}

/// Kafka's answer to a request that fails as a whole: each topic asked for, with the error.
fn request_error(
    request: &DescribeTopicPartitionsRequest,
    error: ResponseError,
) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(code(error))
                .with_name(Some(t.name.clone()))
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}
