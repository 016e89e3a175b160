//! Metadata and DescribeCluster: this broker is the only broker, leader of every partition and
//! the controller.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::{code, log_error_code, NONE};
use super::operations::{authorized_operations, ResourceType};
use super::{valid_topic_name, Broker};
use crate::authz::{Operation, CLUSTER_NAME};
use crate::listener::{Endpoint, Session};
use crate::log::TopicInfo;

pub(super) fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let Endpoint { host, port } = &session.advertised;
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id))
        .with_host(StrBytes::from_string(host.clone()))
        .with_port(*port as i32)
        .with_rack(None)];
    // v0: an empty list means all topics; v1+: null means all, empty means none. A topic is
    // named, or (v10+, as KIP-848 consumers ask for their assigned topics) given by id alone.
    let requested: Option<Vec<Result<String, uuid::Uuid>>> = match request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|t| match t.name {
                    Some(n) => Some(Ok(n.0.to_string())),
                    None if !t.topic_id.is_nil() => Some(Err(t.topic_id)),
                    None => None,
                })
                .collect(),
        ),
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => broker
            .log
            .topics()
            .iter()
            .filter(|t| describable(broker, session, &t.name))
            .map(|t| topic_metadata(broker, t))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|wanted| match wanted {
                Ok(name) if !describable(broker, session, &name) => unauthorized(name),
                Ok(name) => requested_topic(broker, session, name, allow_auto_create),
                Err(id) => topic_by_id(broker, session, id),
            })
            .collect(),
    };
    // Every topic answered, known or not, as Kafka does: the operations are the client's on that
    // name (v8+).
    let asked = version >= 8 && request.include_topic_authorized_operations;
    for topic in &mut topics {
        let name = topic.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
        topic.topic_authorized_operations =
            authorized_operations(broker, session, ResourceType::Topic, name, asked);
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(broker.node_id);
    }
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id.clone()));
    }
    // The cluster's operations were asked for in v8-10 only (DescribeCluster answers them since).
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations = authorized_operations(
            broker,
            session,
            ResourceType::Cluster,
            CLUSTER_NAME,
            request.include_cluster_authorized_operations,
        );
    }
    response
}

/// Whether `session` may learn that the topic `name` exists (topic DESCRIBE).
fn describable(broker: &Broker, session: &Session, name: &str) -> bool {
    broker.allowed(session, Operation::Describe, ResourceType::Topic, name)
}

/// The answer for a topic the client may not describe: Kafka's error, nothing else.
fn unauthorized(name: String) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name))))
        .with_error_code(code(ResponseError::TopicAuthorizationFailed))
}

fn requested_topic(
    broker: &Broker,
    session: &Session,
    name: String,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    if let Some(info) = broker.log.topic(&name) {
        return topic_metadata(broker, &info);
    }
    let error = if valid_topic_name(&name).is_err() {
        ResponseError::InvalidTopicException
    } else if allow_auto_create && broker.config.auto_create_topics() {
        // Auto-creation needs CREATE on the cluster or on the topic, as in Kafka.
        if !broker.cluster_allowed(session, Operation::Create)
            && !broker.allowed(session, Operation::Create, ResourceType::Topic, &name)
        {
            return unauthorized(name);
        }
        match broker.log.create_topic(
            &name,
            broker.config.num_partitions(),
            Default::default(),
            false,
        ) {
            Ok(_) => {
                // Clients retry on LEADER_NOT_AVAILABLE and then see the partitions.
                ResponseError::LeaderNotAvailable
            }
            Err(crate::log::LogError::TopicExists(_)) => {
                if let Some(info) = broker.log.topic(&name) {
                    return topic_metadata(broker, &info);
                }
                ResponseError::LeaderNotAvailable
            }
            Err(e) => {
                return MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(log_error_code(&e))
            }
        }
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name))))
        .with_error_code(code(error))
}

/// A topic asked for by id: UNKNOWN_TOPIC_ID (with no name) when no topic has it.
/// A topic the client may not describe is answered TOPIC_AUTHORIZATION_FAILED, as Kafka does.
fn topic_by_id(broker: &Broker, session: &Session, id: uuid::Uuid) -> MetadataResponseTopic {
    match broker.log.topics().iter().find(|t| t.topic_id == id) {
        Some(info) if !describable(broker, session, &info.name) => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code(ResponseError::TopicAuthorizationFailed)),
        Some(info) => topic_metadata(broker, info),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code(ResponseError::UnknownTopicId)),
    }
}

fn topic_metadata(broker: &Broker, info: &TopicInfo) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id);
    let partitions = (0..info.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(NONE)
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(vec![])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(NONE)
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_topic_id(info.topic_id)
        .with_is_internal(info.internal)
        .with_partitions(partitions)
}

pub(super) fn describe_cluster(
    broker: &Broker,
    session: &Session,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let Endpoint { host, port } = &session.advertised;
    DescribeClusterResponse::default()
        .with_error_code(NONE)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id))
            .with_host(StrBytes::from_string(host.clone()))
            .with_port(*port as i32)
            .with_rack(None)])
        .with_cluster_authorized_operations(authorized_operations(
            broker,
            session,
            ResourceType::Cluster,
            CLUSTER_NAME,
            request.include_cluster_authorized_operations,
        ))
}
