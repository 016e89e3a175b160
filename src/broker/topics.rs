//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::errors::{cluster_error_code, code, config_error_code, log_error_code, NONE};
use super::{leaders, Broker};
use crate::authz::{Operation, ResourceType};
use crate::config::{self, describe_topic};
use crate::listener::Session;
use crate::log::LogError;

/// Kafka's longest topic name.
const MAX_NAME_LENGTH: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "topic name is {} characters, more than {MAX_NAME_LENGTH}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only ASCII alphanumerics, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// An error code with its message, as CreateTopics answers it.
type Failure = (i16, Option<StrBytes>);

fn error(e: ResponseError, message: String) -> Failure {
    (code(e), Some(StrBytes::from_string(message)))
}

pub(super) async fn create_topics(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = (|| -> Result<(i32, i32, BTreeMap<String, String>), Failure> {
            // CREATE on the cluster or on the topic, checked first as in Kafka.
            if !broker.cluster_allowed(session, Operation::Create)
                && !broker.allowed(session, Operation::Create, ResourceType::Topic, &name)
            {
                return Err(error(
                    ResponseError::TopicAuthorizationFailed,
                    format!("{} may not create topic '{name}'", session.principal),
                ));
            }
            valid_topic_name(&name).map_err(|m| error(ResponseError::InvalidTopicException, m))?;
            if leaders::topic(broker, &name).is_some() || broker.log.topic(&name).is_some() {
                return Err(error(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ));
            }
            if !topic.assignments.is_empty() {
                if topic.num_partitions != -1 || topic.replication_factor != -1 {
                    return Err(error(
                        ResponseError::InvalidRequest,
                        "both assignments and partitions/replication factor were given".into(),
                    ));
                }
                if topic.assignments.iter().any(|a| {
                    a.broker_ids.iter().any(|b| b.0 != broker.node_id) || a.broker_ids.len() != 1
                }) {
                    return Err(error(
                        ResponseError::InvalidReplicaAssignment,
                        format!("only broker {} with one replica exists", broker.node_id),
                    ));
                }
            }
            let partitions = match (topic.num_partitions, topic.assignments.len()) {
                (-1, 0) => broker.config.num_partitions(),
                (-1, n) => n as i32,
                (n, _) if n >= 1 => n,
                (n, _) => {
                    return Err(error(
                        ResponseError::InvalidPartitions,
                        format!(
                            "Number of partitions was set to an invalid non-positive value {n}."
                        ),
                    ))
                }
            };
            let replication_factor = match (topic.replication_factor, &broker.cluster) {
                (-1, Some(cluster)) => cluster.default_replication_factor(),
                (-1 | 1, _) => 1,
                (rf, Some(cluster)) if rf >= 1 => {
                    let live = cluster.view().brokers.len();
                    if rf as usize > live {
                        return Err(error(
                            ResponseError::InvalidReplicationFactor,
                            format!("Replication factor: {rf} larger than available brokers: {live}."),
                        ));
                    }
                    rf as i32
                }
                (rf, Some(_)) => {
                    return Err(error(
                        ResponseError::InvalidReplicationFactor,
                        format!("Replication factor must be larger than 0, or -1 to use the default value; got {rf}."),
                    ))
                }
                (rf, None) => {
                    return Err(error(
                        ResponseError::InvalidReplicationFactor,
                        format!("Replication factor {rf} is larger than the 1 available broker."),
                    ))
                }
            };
            let mut overrides = BTreeMap::new();
            for c in &topic.configs {
                let key = c.name.to_string();
                let Some(value) = c.value.as_ref().map(|v| v.to_string()) else {
                    return Err(error(
                        ResponseError::InvalidConfig,
                        format!("Null value not supported for topic config '{key}'"),
                    ));
                };
                config::validate_topic_config(&key, &value).map_err(|e| {
                    (
                        config_error_code(&e),
                        Some(StrBytes::from_string(e.to_string())),
                    )
                })?;
                overrides.insert(key, value);
            }
            config::validate_topic_overrides(&broker.dynamic.current(), &overrides).map_err(
                |e| {
                    (
                        config_error_code(&e),
                        Some(StrBytes::from_string(e.to_string())),
                    )
                },
            )?;
            Ok((partitions, replication_factor, overrides))
        })();
        match outcome {
            Err((error_code, message)) => {
                result.error_code = error_code;
                result.error_message = message;
                if version >= 5 {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
            Ok((partitions, replication_factor, overrides)) => {
                let created = if request.validate_only {
                    Ok(None)
                } else if let Some(cluster) = &broker.cluster {
                    cluster
                        .create_topic(
                            &name,
                            partitions,
                            replication_factor,
                            overrides.clone(),
                            false,
                        )
                        .await
                        .map(|t| Some(t.topic_id))
                        .map_err(|e| (cluster_error_code(&e), e.to_string()))
                } else {
                    broker
                        .log
                        .create_topic(&name, partitions, overrides.clone(), false)
                        .map(|t| Some(t.topic_id))
                        .map_err(|e| (log_error_code(&e), e.to_string()))
                };
                match created {
                    Err((error_code, message)) => {
                        result.error_code = error_code;
                        result.error_message = Some(StrBytes::from_string(message));
                        if version >= 5 {
                            result.num_partitions = -1;
                            result.replication_factor = -1;
                        }
                    }
                    Ok(topic_id) => {
                        if let Some(topic_id) = topic_id {
                            if version >= 7 {
                                result.topic_id = topic_id;
                            }
                        }
                        result.error_code = NONE;
                        // As Kafka: a creator without DESCRIBE_CONFIGS on the topic learns that
                        // it was created, not its configs, partition count or replication factor.
                        let describable = broker.allowed(
                            session,
                            Operation::DescribeConfigs,
                            ResourceType::Topic,
                            &name,
                        );
                        if version >= 5 && !describable {
                            result.topic_config_error_code =
                                code(ResponseError::TopicAuthorizationFailed);
                        } else if version >= 5 {
                            result.num_partitions = partitions;
                            result.replication_factor = replication_factor as i16;
                            result.configs = Some(
                                describe_topic(&broker.dynamic.current(), &overrides)
                                    .into_iter()
                                    .map(|d| {
                                        CreatableTopicConfigs::default()
                                            .with_name(StrBytes::from_static_str(d.def.name))
                                            .with_value(d.value.map(StrBytes::from_string))
                                            .with_read_only(false)
                                            .with_config_source(d.source.wire())
                                            .with_is_sensitive(false)
                                    })
                                    .collect(),
                            );
                        }
                    }
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) async fn delete_topics(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, topic_id) in targets {
        responses.push(delete_topic(broker, session, version, name, topic_id).await);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Deletes one topic (by name, or by id when the name is unknown).
async fn delete_topic(
    broker: &Broker,
    session: &Session,
    version: i16,
    name: Option<String>,
    topic_id: uuid::Uuid,
) -> DeletableTopicResult {
    let name = name.or_else(|| {
        (!topic_id.is_nil())
            .then(|| leaders::topic_name_by_id(broker, topic_id))
            .flatten()
    });
    let mut result = DeletableTopicResult::default();
    // Deleting needs topic DELETE; refused before the topic's existence shows.
    if let Some(n) = name
        .as_ref()
        .filter(|n| !broker.allowed(session, Operation::Delete, ResourceType::Topic, n))
    {
        result.error_code = code(ResponseError::TopicAuthorizationFailed);
        result.topic_id = topic_id;
        if topic_id.is_nil() {
            result.name = Some(TopicName(StrBytes::from_string(n.clone())));
        }
        return result;
    }
    let Some(name) = name else {
        result.error_code = code(ResponseError::UnknownTopicId);
        result.topic_id = topic_id;
        return result;
    };
    result.name = Some(TopicName(StrBytes::from_string(name.clone())));
    if version >= 6 {
        result.topic_id = leaders::topic(broker, &name)
            .map(|t| t.topic_id)
            .unwrap_or(topic_id);
    }
    let deleted = match (&broker.cluster, leaders::topic(broker, &name)) {
        (_, Some(t)) if t.internal => Err((
            code(ResponseError::TopicDeletionDisabled),
            format!("internal topic {name} cannot be deleted"),
        )),
        (Some(cluster), _) => cluster
            .delete_topic(&name)
            .await
            .map_err(|e| (cluster_error_code(&e), e.to_string())),
        (None, _) => broker
            .log
            .delete_topic(&name)
            .map_err(|e| (log_error_code(&e), e.to_string())),
    };
    match deleted {
        Ok(()) => {
            info!(topic = %name, "deleted topic");
            result.error_code = NONE;
        }
        Err((error_code, message)) => {
            result.error_code = error_code;
            if version >= 5 {
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
    }
    result
}

pub(super) async fn create_partitions(
    broker: &Broker,
    session: &Session,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        {
            let name = t.name.0.to_string();
            let allowed = broker.allowed(session, Operation::Alter, ResourceType::Topic, &name);
            let existing = leaders::topic(broker, &name).map(|t| t.partitions.len() as i32);
            let outcome = match existing {
                _ if !allowed => Err((
                    ResponseError::TopicAuthorizationFailed,
                    format!("{} may not alter topic '{name}'", session.principal),
                )),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(partitions) if t.count <= partitions => Err((
                    ResponseError::InvalidPartitions,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {}.",
                        partitions, t.count
                    ),
                )),
                Some(_) if request.validate_only => Ok(()),
                Some(_) if broker.cluster.is_some() => {
                    let cluster = broker.cluster.as_ref().expect("checked");
                    cluster
                        .create_partitions(&name, t.count)
                        .await
                        .map_err(|e| {
                            (
                                ResponseError::try_from_code(cluster_error_code(&e))
                                    .unwrap_or(ResponseError::UnknownServerError),
                                e.to_string(),
                            )
                        })
                }
                Some(_) => broker
                    .log
                    .create_partitions(&name, t.count)
                    .map_err(|e| match e {
                        LogError::InvalidPartitions(m) => (ResponseError::InvalidPartitions, m),
                        other => (
                            ResponseError::try_from_code(log_error_code(&other))
                                .unwrap_or(ResponseError::UnknownServerError),
                            other.to_string(),
                        ),
                    }),
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            results.push(match outcome {
                Ok(()) => result.with_error_code(NONE).with_error_message(None),
                Err((e, message)) => result
                    .with_error_code(code(e))
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::valid_topic_name;

    #[test]
    fn topic_name_rules() {
        assert!(valid_topic_name("orders").is_ok());
        assert!(valid_topic_name("a.b_c-D9").is_ok());
        assert!(valid_topic_name(&"x".repeat(249)).is_ok());
        assert!(valid_topic_name(&"x".repeat(250)).is_err());
        assert!(valid_topic_name("").is_err());
        assert!(valid_topic_name(".").is_err());
        assert!(valid_topic_name("..").is_err());
        assert!(valid_topic_name("a b").is_err());
        assert!(valid_topic_name("a/b").is_err());
    }
}
