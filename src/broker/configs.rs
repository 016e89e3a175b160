//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, the broker, groups and
//! client-metrics subscriptions.
//!
//! Topic overrides are durable in the log manager and take effect at once. Broker configs
//! (static and dynamic) are handled in `broker_configs.rs`, group configs (KIP-848) and
//! client-metrics subscriptions (KIP-714) in `resource_configs.rs`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyAlterResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::errors::{code, log_error_code, NONE};
use super::{broker_configs, resource_configs, Broker};
use crate::config::{self, describe_topic, ConfigSource, ConfigType};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub(super) const SET: i8 = 0;
pub(super) const DELETE: i8 = 1;
pub(super) const APPEND: i8 = 2;
pub(super) const SUBTRACT: i8 = 3;

type Failure = (i16, String);

fn fail(e: ResponseError, message: impl Into<String>) -> Failure {
    (code(e), message.into())
}

pub(super) fn describe_configs(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entry = |name: &'static str,
                         value: Option<String>,
                         source: config::ConfigSource,
                         read_only: bool,
                         ty: ConfigType,
                         doc: &'static str,
                         synonyms: Vec<DescribeConfigsSynonym>| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_value(value.map(StrBytes::from_string))
                    .with_read_only(read_only)
                    .with_config_source(source.wire())
                    .with_is_sensitive(false);
                if request.include_synonyms {
                    e.synonyms = synonyms;
                }
                if version >= 3 {
                    e.config_type = ty as i8;
                    if request.include_documentation {
                        e.documentation = Some(StrBytes::from_static_str(doc));
                    }
                }
                e
            };
            match resource.resource_type {
                TOPIC => {
                    let name = resource.resource_name.to_string();
                    let Some(info) = broker.log.topic(&name) else {
                        return result
                            .with_error_code(code(ResponseError::UnknownTopicOrPartition))
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Topic '{name}' does not exist."
                            ))));
                    };
                    let configs = describe_topic(&broker.dynamic.current(), &info.overrides)
                        .into_iter()
                        .filter(|d| wanted(d.def.name))
                        .map(|d| {
                            let synonyms = d
                                .synonyms
                                .into_iter()
                                .map(|(name, value, source)| synonym(name, value, source))
                                .collect();
                            entry(
                                d.def.name, d.value, d.source, false, d.def.ty, d.def.doc, synonyms,
                            )
                        })
                        .collect();
                    result.with_error_code(NONE).with_configs(configs)
                }
                BROKER => match broker_configs::describe(broker, resource.resource_name.as_str()) {
                    Ok(described) => {
                        let configs = described
                            .into_iter()
                            .filter(|d| wanted(d.def.name))
                            .map(|d| {
                                let synonyms = d
                                    .synonyms
                                    .into_iter()
                                    .map(|(name, value, source)| synonym(name, value, source))
                                    .collect();
                                entry(
                                    d.def.name,
                                    d.value,
                                    d.source,
                                    d.read_only,
                                    d.def.ty,
                                    d.def.doc,
                                    synonyms,
                                )
                                .with_is_sensitive(d.sensitive)
                            })
                            .collect();
                        result.with_error_code(NONE).with_configs(configs)
                    }
                    Err((error_code, message)) => result
                        .with_error_code(error_code)
                        .with_error_message(Some(StrBytes::from_string(message))),
                },
                other => match resource_configs::kind(other) {
                    None => result
                        .with_error_code(code(ResponseError::InvalidRequest))
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Describing configs of resource type {other} is not supported."
                        )))),
                    Some(kind) => {
                        match resource_configs::describe(
                            broker,
                            kind,
                            resource.resource_name.as_str(),
                        ) {
                            Ok(described) => {
                                let configs = described
                                    .into_iter()
                                    .filter(|d| wanted(d.name))
                                    .map(|d| {
                                        let synonyms = d
                                            .synonyms
                                            .into_iter()
                                            .map(|(name, value, source)| {
                                                synonym(name, Some(value), source)
                                            })
                                            .collect();
                                        entry(
                                            d.name,
                                            Some(d.value),
                                            d.source,
                                            false,
                                            d.ty,
                                            d.doc,
                                            synonyms,
                                        )
                                    })
                                    .collect();
                                result.with_error_code(NONE).with_configs(configs)
                            }
                            Err((error_code, message)) => result
                                .with_error_code(error_code)
                                .with_error_message(Some(StrBytes::from_string(message))),
                        }
                    }
                },
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Validates new overrides for a topic and (unless validate-only) stores them.
fn apply_topic_overrides(
    broker: &Broker,
    topic: &str,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Failure> {
    config::validate_topic_overrides(&broker.dynamic.current(), &overrides)
        .map_err(|e| fail(ResponseError::InvalidConfig, e.to_string()))?;
    if validate_only {
        return Ok(());
    }
    broker
        .log
        .alter_topic_config(topic, overrides.clone())
        .map_err(|e| (log_error_code(&e), e.to_string()))?;
    info!(topic, ?overrides, "altered topic config");
    Ok(())
}

fn topic_overrides(broker: &Broker, name: &str) -> Result<BTreeMap<String, String>, Failure> {
    broker.log.topic(name).map(|t| t.overrides).ok_or_else(|| {
        fail(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })
}

pub(super) fn alter_configs(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let outcome = match resource.resource_type {
                TOPIC => topic_overrides(broker, &name).and_then(|_| {
                    // The legacy API replaces the whole set of overrides.
                    let mut overrides = BTreeMap::new();
                    for c in &resource.configs {
                        let Some(value) = &c.value else {
                            return Err(fail(
                                ResponseError::InvalidConfig,
                                format!("Null value not supported for '{}'", c.name.as_str()),
                            ));
                        };
                        overrides.insert(c.name.to_string(), value.to_string());
                    }
                    apply_topic_overrides(broker, &name, overrides, request.validate_only)
                }),
                BROKER => broker_configs::replace(
                    broker,
                    &name,
                    resource
                        .configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                    request.validate_only,
                ),
                other => match resource_configs::kind(other) {
                    Some(kind) => resource_configs::replace(
                        broker,
                        kind,
                        &name,
                        resource
                            .configs
                            .iter()
                            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                        request.validate_only,
                    ),
                    None => Err(fail(
                        ResponseError::InvalidRequest,
                        format!("Altering configs of resource type {other} is not supported."),
                    )),
                },
            };
            let (error_code, message) = match outcome {
                Ok(()) => (NONE, None),
                Err((c, m)) => (c, Some(StrBytes::from_string(m))),
            };
            LegacyAlterResult::default()
                .with_error_code(error_code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) fn incremental_alter_configs(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            // (name, operation, value) of each change.
            let changes = || {
                resource.configs.iter().map(|c| {
                    (
                        c.name.as_str(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                })
            };
            let outcome = match resource.resource_type {
                TOPIC => topic_overrides(broker, &name).and_then(|mut overrides| {
                    for (key, op, value) in changes() {
                        incremental_op(broker, &mut overrides, key, op, value)?;
                    }
                    apply_topic_overrides(broker, &name, overrides, request.validate_only)
                }),
                BROKER => broker_configs::alter(broker, &name, changes(), request.validate_only),
                other => match resource_configs::kind(other) {
                    Some(kind) => resource_configs::alter(
                        broker,
                        kind,
                        &name,
                        changes(),
                        request.validate_only,
                    ),
                    None => Err(fail(
                        ResponseError::InvalidRequest,
                        format!("Altering configs of resource type {other} is not supported."),
                    )),
                },
            };
            let (error_code, message) = match outcome {
                Ok(()) => (NONE, None),
                Err((c, m)) => (c, Some(StrBytes::from_string(m))),
            };
            AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Applies one SET / DELETE / APPEND / SUBTRACT to a topic's overrides.
fn incremental_op(
    broker: &Broker,
    overrides: &mut BTreeMap<String, String>,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), Failure> {
    let Some(def) = config::topic_def(key) else {
        return Err(fail(
            ResponseError::InvalidConfig,
            format!("Unknown topic config name: {key}"),
        ));
    };
    let is_list = def.def.ty == ConfigType::List;
    let current_list = |overrides: &BTreeMap<String, String>| -> Vec<String> {
        overrides
            .get(key)
            .cloned()
            .or_else(|| {
                broker
                    .dynamic
                    .current()
                    .topic_default(key)
                    .map(|(v, _, _)| v)
            })
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match op {
        SET => {
            let Some(value) = value else {
                return Err(fail(
                    ResponseError::InvalidConfig,
                    format!("Null value not supported for '{key}'"),
                ));
            };
            overrides.insert(key.to_string(), value.to_string());
        }
        DELETE => {
            overrides.remove(key);
        }
        APPEND | SUBTRACT if !is_list => {
            return Err(fail(
                ResponseError::InvalidConfig,
                format!("Config '{key}' is not a list: APPEND and SUBTRACT apply only to lists."),
            ))
        }
        APPEND => {
            let mut items = current_list(overrides);
            for item in value
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                }
            }
            overrides.insert(key.to_string(), items.join(","));
        }
        SUBTRACT => {
            let remove: Vec<&str> = value.unwrap_or("").split(',').map(str::trim).collect();
            let items: Vec<String> = current_list(overrides)
                .into_iter()
                .filter(|i| !remove.contains(&i.as_str()))
                .collect();
            overrides.insert(key.to_string(), items.join(","));
        }
        other => {
            return Err(fail(
                ResponseError::InvalidRequest,
                format!("Unknown config operation {other}"),
            ))
        }
    }
    Ok(())
}

/// One entry of a config's synonym list, as DescribeConfigs answers it.
fn synonym(name: String, value: Option<String>, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name))
        .with_value(value.map(StrBytes::from_string))
        .with_source(source.wire())
}
