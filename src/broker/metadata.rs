//! Metadata and DescribeCluster: the brokers, the controller and each partition's leadership
//! ([`super::leaders`]: this broker alone on a single node, the etcd view in a cluster).

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
use super::{leaders, valid_topic_name, Broker};
use crate::authz::{Operation, CLUSTER_NAME};
use crate::listener::Session;

pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let brokers = leaders::brokers(broker, session)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.endpoint.host))
                .with_port(b.endpoint.port as i32)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
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
    if let (Some(cluster), Some(names)) = (&broker.cluster, &requested) {
        // In a cluster auto-creation writes to etcd (and waits for leaders), so it happens
        // here, before the answer is built from the view.
        for name in names.iter().filter_map(|n| n.as_ref().ok()) {
            if allow_auto_create
                && broker.config.auto_create_topics()
                && valid_topic_name(name).is_ok()
                // Internal topics are created by FindCoordinator, with their own configs.
                && name != crate::group::offsets::OFFSETS_TOPIC
                && name != crate::txn::topic::TRANSACTION_STATE_TOPIC
                && !cluster.view().topics.contains_key(name)
                && describable(broker, session, name)
                && (broker.cluster_allowed(session, Operation::Create)
                    || broker.allowed(session, Operation::Create, ResourceType::Topic, name))
            {
                let partitions = broker.config.num_partitions();
                if let Err(e) = cluster
                    .create_topic(
                        name,
                        partitions,
                        cluster.default_replication_factor(),
                        Default::default(),
                        false,
                    )
                    .await
                {
                    tracing::debug!(topic = name, error = %e, "auto-creation in the cluster");
                }
            }
        }
    }
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => leaders::topic_names(broker)
            .into_iter()
            .filter(|name| describable(broker, session, name))
            .filter_map(|name| topic_metadata(broker, name))
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
        response.controller_id = BrokerId(leaders::controller_id(broker));
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
    if let Some(topic) = topic_metadata(broker, name.clone()) {
        return topic;
    }
    let error = if valid_topic_name(&name).is_err() {
        ResponseError::InvalidTopicException
    } else if broker.cluster.is_some() {
        // Auto-creation was tried before; the controller may not have given leaders yet.
        if allow_auto_create && broker.config.auto_create_topics() {
            ResponseError::LeaderNotAvailable
        } else {
            ResponseError::UnknownTopicOrPartition
        }
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
                if let Some(topic) = topic_metadata(broker, name.clone()) {
                    return topic;
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
    match leaders::topic_name_by_id(broker, id) {
        Some(name) if !describable(broker, session, &name) => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code(ResponseError::TopicAuthorizationFailed)),
        Some(name) => topic_metadata(broker, name).unwrap_or_else(|| {
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(code(ResponseError::UnknownTopicId))
        }),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(code(ResponseError::UnknownTopicId)),
    }
}

/// A topic's metadata, `None` when it does not exist.
fn topic_metadata(broker: &Broker, name: String) -> Option<MetadataResponseTopic> {
    let topic = leaders::topic(broker, &name)?;
    let ids = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .into_iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(p.error_code)
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(p.replicas))
                .with_isr_nodes(ids(p.isr))
                .with_offline_replicas(ids(p.offline))
        })
        .collect();
    Some(
        MetadataResponseTopic::default()
            .with_error_code(NONE)
            .with_name(Some(TopicName(StrBytes::from_string(name))))
            .with_topic_id(topic.topic_id)
            .with_is_internal(topic.internal)
            .with_partitions(partitions),
    )
}

pub(super) fn describe_cluster(
    broker: &Broker,
    session: &Session,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let brokers = leaders::brokers(broker, session)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.endpoint.host))
                .with_port(b.endpoint.port as i32)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_error_code(NONE)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(leaders::controller_id(broker)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized_operations(
            broker,
            session,
            ResourceType::Cluster,
            CLUSTER_NAME,
            request.include_cluster_authorized_operations,
        ))
}
