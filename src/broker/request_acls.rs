//! The ACL checks of the non-group APIs whose handlers do not check for themselves: run in the
//! dispatch before the handler. [`authorize`] refuses a request whose one resource (the
//! cluster, a transactional id) the principal may not use, or trims from it the topics and
//! config resources it may not touch; [`Patch::apply`] then appends their refusals to the
//! response (Kafka, too, answers the unauthorized resources after the authorized ones).
//! Produce, Fetch, Metadata and the topic APIs check in their handlers; the group APIs in
//! `group_acls.rs`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    alter_client_quotas_response, alter_configs_response, incremental_alter_configs_response,
    AlterClientQuotasResponse, AlterUserScramCredentialsResponse, DescribeClientQuotasResponse,
    DescribeLogDirsResponse, DescribeUserScramCredentialsResponse, InitProducerIdResponse,
    ListConfigResourcesResponse, ProducerId, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{requester, Broker};
use crate::authz::{Operation, ResourceType};
use crate::listener::Session;

/// Kafka's config resource types (DescribeConfigs, AlterConfigs).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

/// What to append to a response: refused topics with their partitions, or refused config
/// resources (type, name, error).
#[derive(Default)]
pub(super) struct Patch {
    topics: Vec<(TopicName, Vec<i32>)>,
    configs: Vec<(i8, StrBytes, i16)>,
}

fn cluster_refused() -> i16 {
    ResponseError::ClusterAuthorizationFailed.code()
}

/// The resource a config resource is authorized on, and the error its refusal gets.
fn config_resource(resource_type: i8, name: &str) -> (ResourceType, String, i16) {
    match resource_type {
        CONFIG_TOPIC => (
            ResourceType::Topic,
            name.to_string(),
            ResponseError::TopicAuthorizationFailed.code(),
        ),
        CONFIG_GROUP => (
            ResourceType::Group,
            name.to_string(),
            ResponseError::GroupAuthorizationFailed.code(),
        ),
        // Brokers, broker loggers and client-metrics subscriptions are the cluster's.
        _ => (
            ResourceType::Cluster,
            crate::authz::CLUSTER_NAME.to_string(),
            cluster_refused(),
        ),
    }
}

/// Splits `items` into those `allowed` and the refused rest.
fn split<T>(items: Vec<T>, allowed: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| allowed(t))
}

/// Splits config resources into those `op` is allowed on and the refusals of the rest (type,
/// name, error); `id` gives a resource's type and name.
fn split_configs<T>(
    broker: &Broker,
    session: &Session,
    resources: Vec<T>,
    op: Operation,
    id: impl Fn(&T) -> (i8, &StrBytes),
) -> (Vec<T>, Vec<(i8, StrBytes, i16)>) {
    let (kept, refused) = split(resources, |c| {
        let (resource_type, name) = id(c);
        let (rt, name, _) = config_resource(resource_type, name);
        broker.allowed(session, op, rt, &name)
    });
    let refused = refused
        .iter()
        .map(|c| {
            let (resource_type, name) = id(c);
            (
                resource_type,
                name.clone(),
                config_resource(resource_type, name).2,
            )
        })
        .collect();
    (kept, refused)
}

/// Checks a request before its handler: `Err` is the whole answer (refused), `Ok` the
/// request to hand on (perhaps trimmed) and what to append to its answer.
#[allow(clippy::result_large_err)]
pub(super) fn authorize(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: RequestKind,
) -> Result<(RequestKind, Patch), ResponseKind> {
    if !broker.authorizer.enabled() {
        return Ok((request, Patch::default()));
    }
    let topic = |op: Operation, name: &str| broker.allowed(session, op, ResourceType::Topic, name);
    let cluster = |op: Operation| broker.cluster_allowed(session, op);
    let mut patch = Patch::default();
    let request = match request {
        RequestKind::ListOffsets(mut r) => {
            let (kept, refused) = split(r.topics, |t| topic(Operation::Describe, &t.name));
            r.topics = kept;
            patch.topics = refused
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            RequestKind::ListOffsets(r)
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (kept, refused) = split(r.topics, |t| topic(Operation::Describe, &t.topic));
            r.topics = kept;
            patch.topics = refused
                .into_iter()
                .map(|t| (t.topic, t.partitions.iter().map(|p| p.partition).collect()))
                .collect();
            RequestKind::OffsetForLeaderEpoch(r)
        }
        RequestKind::DeleteRecords(mut r) => {
            let (kept, refused) = split(r.topics, |t| topic(Operation::Delete, &t.name));
            r.topics = kept;
            patch.topics = refused
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            RequestKind::DeleteRecords(r)
        }
        RequestKind::DescribeConfigs(mut r) => {
            (r.resources, patch.configs) = split_configs(
                broker,
                session,
                r.resources,
                Operation::DescribeConfigs,
                |c| (c.resource_type, &c.resource_name),
            );
            RequestKind::DescribeConfigs(r)
        }
        RequestKind::AlterConfigs(mut r) => {
            (r.resources, patch.configs) =
                split_configs(broker, session, r.resources, Operation::AlterConfigs, |c| {
                    (c.resource_type, &c.resource_name)
                });
            RequestKind::AlterConfigs(r)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            (r.resources, patch.configs) =
                split_configs(broker, session, r.resources, Operation::AlterConfigs, |c| {
                    (c.resource_type, &c.resource_name)
                });
            RequestKind::IncrementalAlterConfigs(r)
        }
        RequestKind::InitProducerId(r) => {
            let refusal = match r.transactional_id.as_ref().filter(|id| !id.0.is_empty()) {
                Some(id) => (!broker.transactional_id_allowed(session, Operation::Write, id))
                    .then(|| ResponseError::TransactionalIdAuthorizationFailed.code()),
                // Idempotence: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
                None => (!cluster(Operation::IdempotentWrite)
                    && !broker.authorizer.authorize_any(
                        requester(session),
                        Operation::Write,
                        ResourceType::Topic,
                    ))
                .then(cluster_refused),
            };
            if let Some(error) = refusal {
                return Err(ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(error)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                ));
            }
            RequestKind::InitProducerId(r)
        }
        RequestKind::DescribeClientQuotas(_) if !cluster(Operation::DescribeConfigs) => {
            return Err(ResponseKind::DescribeClientQuotas(
                DescribeClientQuotasResponse::default()
                    .with_error_code(cluster_refused())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "cluster DESCRIBE_CONFIGS is needed to describe client quotas",
                    ))),
            ))
        }
        RequestKind::AlterClientQuotas(r) if !cluster(Operation::AlterConfigs) => {
            let entries = r
                .entries
                .into_iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(cluster_refused())
                        .with_entity(
                            e.entity
                                .into_iter()
                                .map(|d| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(d.entity_type)
                                        .with_entity_name(d.entity_name)
                                })
                                .collect(),
                        )
                })
                .collect();
            return Err(ResponseKind::AlterClientQuotas(
                AlterClientQuotasResponse::default().with_entries(entries),
            ));
        }
        RequestKind::DescribeLogDirs(_) if !cluster(Operation::Describe) => {
            let mut response = DescribeLogDirsResponse::default();
            if version >= 3 {
                response.error_code = cluster_refused();
            }
            return Err(ResponseKind::DescribeLogDirs(response));
        }
        RequestKind::ListConfigResources(_) if !cluster(Operation::DescribeConfigs) => {
            return Err(ResponseKind::ListConfigResources(
                ListConfigResourcesResponse::default().with_error_code(cluster_refused()),
            ))
        }
        RequestKind::DescribeUserScramCredentials(_) if !cluster(Operation::Describe) => {
            return Err(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default()
                    .with_error_code(cluster_refused())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "cluster DESCRIBE is needed to list SCRAM users",
                    ))),
            ))
        }
        RequestKind::AlterUserScramCredentials(r) if !cluster(Operation::Alter) => {
            let mut users: Vec<StrBytes> = r.deletions.into_iter().map(|d| d.name).collect();
            users.extend(r.upsertions.into_iter().map(|u| u.name));
            users.dedup();
            let results = users
                .into_iter()
                .map(|user| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(user)
                        .with_error_code(cluster_refused())
                })
                .collect();
            return Err(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            ));
        }
        other => other,
    };
    Ok((request, patch))
}

impl Patch {
    pub(super) fn apply(self, response: &mut ResponseKind) {
        let topic_refused = ResponseError::TopicAuthorizationFailed.code();
        let message = |code: i16| {
            Some(StrBytes::from_string(
                ResponseError::try_from_code(code)
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ))
        };
        match response {
            ResponseKind::ListOffsets(r) => {
                r.topics.extend(self.topics.into_iter().map(|(name, ps)| {
                    ListOffsetsTopicResponse::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(topic_refused)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                        .with_leader_epoch(-1)
                                })
                                .collect(),
                        )
                }))
            }
            ResponseKind::OffsetForLeaderEpoch(r) => {
                r.topics.extend(self.topics.into_iter().map(|(name, ps)| {
                    OffsetForLeaderTopicResult::default()
                        .with_topic(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    EpochEndOffset::default()
                                        .with_partition(p)
                                        .with_error_code(topic_refused)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                }))
            }
            ResponseKind::DeleteRecords(r) => {
                r.topics.extend(self.topics.into_iter().map(|(name, ps)| {
                    DeleteRecordsTopicResult::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_error_code(topic_refused)
                                        .with_low_watermark(-1)
                                })
                                .collect(),
                        )
                }))
            }
            ResponseKind::DescribeConfigs(r) => {
                r.results
                    .extend(self.configs.into_iter().map(|(t, name, code)| {
                        DescribeConfigsResult::default()
                            .with_resource_type(t)
                            .with_resource_name(name)
                            .with_error_code(code)
                            .with_error_message(message(code))
                    }))
            }
            ResponseKind::AlterConfigs(r) => {
                r.responses
                    .extend(self.configs.into_iter().map(|(t, name, code)| {
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(t)
                            .with_resource_name(name)
                            .with_error_code(code)
                            .with_error_message(message(code))
                    }))
            }
            ResponseKind::IncrementalAlterConfigs(r) => {
                r.responses
                    .extend(self.configs.into_iter().map(|(t, name, code)| {
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(t)
                            .with_resource_name(name)
                            .with_error_code(code)
                            .with_error_message(message(code))
                    }))
            }
            _ => {}
        }
    }
}
