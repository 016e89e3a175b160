//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs on GROUP resources (KIP-848 group
//! configs) and CLIENT_METRICS resources (KIP-714 subscriptions): the requests' side of
//! `resource_configs/`, which validates, describes and stores them. Also ListConfigResources
//! (KIP-1142; v0 was ListClientMetricsResources), which `kafka-configs` asks before describing a
//! subscription or a group it does not see in ListGroups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info};

use super::configs::{APPEND, DELETE, SET, SUBTRACT};
use super::errors::{code, resource_config_error_code, NONE};
use super::Broker;
use crate::resource_configs::{DescribedConfig, Overrides, ResourceConfigError, ResourceKind};

/// A refused resource: its error code and message.
type Failure = (i16, String);

/// The kind of resource a DescribeConfigs / AlterConfigs resource type names, if stored here.
pub(super) fn kind(resource_type: i8) -> Option<ResourceKind> {
    match resource_type {
        16 => Some(ResourceKind::ClientMetrics),
        32 => Some(ResourceKind::Group),
        _ => None,
    }
}

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

/// ListConfigResources: the resources of the asked types (all it knows when none is named) that
/// configs can be described for: every topic, this broker (also as a logger resource), and the
/// subscriptions and groups that have configs. v0 knows client-metrics subscriptions only; a
/// type the version does not know is UNSUPPORTED_VERSION, as in Kafka.
pub(super) fn list(
    broker: &Broker,
    version: i16,
    request: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    let supported: &[i8] = if version == 0 {
        &[CLIENT_METRICS]
    } else {
        &[TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP]
    };
    let asked = if request.resource_types.is_empty() {
        supported.to_vec()
    } else {
        request.resource_types
    };
    if let Some(unknown) = asked.iter().find(|t| !supported.contains(t)) {
        debug!(
            resource_type = *unknown,
            version, "ListConfigResources of a type this version does not list"
        );
        return ListConfigResourcesResponse::default()
            .with_error_code(code(ResponseError::UnsupportedVersion));
    }
    let mut resources = Vec::new();
    let mut add = |resource_type: i8, names: Vec<String>| {
        resources.extend(names.into_iter().map(|name| {
            ConfigResource::default()
                .with_resource_name(StrBytes::from_string(name))
                .with_resource_type(resource_type)
        }))
    };
    for &resource_type in supported.iter().filter(|t| asked.contains(t)) {
        match resource_type {
            TOPIC => add(
                TOPIC,
                broker.log.topics().into_iter().map(|t| t.name).collect(),
            ),
            BROKER | BROKER_LOGGER => add(resource_type, vec![broker.node_id.to_string()]),
            CLIENT_METRICS => add(
                CLIENT_METRICS,
                broker.resource_configs.names(ResourceKind::ClientMetrics),
            ),
            _ => add(GROUP, broker.resource_configs.names(ResourceKind::Group)),
        }
    }
    ListConfigResourcesResponse::default()
        .with_error_code(NONE)
        .with_config_resources(resources)
}

/// Kafka refuses an empty group id or subscription name with INVALID_REQUEST.
fn check_name(kind: ResourceKind, name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        let what = match kind {
            ResourceKind::Group => "a group id",
            ResourceKind::ClientMetrics => "a subscription name",
        };
        return Err((
            code(ResponseError::InvalidRequest),
            format!("The config resource needs {what}; it is empty."),
        ));
    }
    Ok(())
}

fn refused(e: ResourceConfigError) -> Failure {
    (resource_config_error_code(&e), e.to_string())
}

fn store(
    broker: &Broker,
    kind: ResourceKind,
    name: &str,
    overrides: Overrides,
    validate_only: bool,
) -> Result<(), Failure> {
    if validate_only {
        return kind.validate(&overrides, &broker.config).map_err(refused);
    }
    broker
        .resource_configs
        .set(kind, name, overrides.clone(), &broker.config)
        .map_err(refused)?;
    info!(?kind, name, ?overrides, "altered resource config");
    Ok(())
}

/// Every config of the resource (any name may be described, existing group or not).
pub(super) fn describe(
    broker: &Broker,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<DescribedConfig>, Failure> {
    check_name(kind, name)?;
    Ok(kind.describe(
        &broker.resource_configs.overrides(kind, name),
        &broker.config,
    ))
}

/// AlterConfigs: the resource's overrides become exactly `configs`.
pub(super) fn replace<'a>(
    broker: &Broker,
    kind: ResourceKind,
    name: &str,
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    validate_only: bool,
) -> Result<(), Failure> {
    check_name(kind, name)?;
    let mut overrides = Overrides::new();
    for (key, value) in configs {
        let Some(value) = value else {
            return Err((
                code(ResponseError::InvalidConfig),
                format!("Null value not supported for '{key}'"),
            ));
        };
        overrides.insert(key.to_string(), value.to_string());
    }
    store(broker, kind, name, overrides, validate_only)
}

/// IncrementalAlterConfigs: SET, DELETE, and APPEND / SUBTRACT on list keys, applied to the
/// resource's current overrides, then validated as a whole.
pub(super) fn alter<'a>(
    broker: &Broker,
    kind: ResourceKind,
    name: &str,
    ops: impl Iterator<Item = (&'a str, i8, Option<&'a str>)>,
    validate_only: bool,
) -> Result<(), Failure> {
    check_name(kind, name)?;
    let invalid = |message: String| (code(ResponseError::InvalidConfig), message);
    let mut overrides = broker.resource_configs.overrides(kind, name);
    for (key, op, value) in ops {
        let items = |overrides: &Overrides| -> Vec<String> {
            overrides
                .get(key)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let given = || {
            value
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        match op {
            SET => {
                let Some(value) = value else {
                    return Err(invalid(format!("Null value not supported for '{key}'")));
                };
                overrides.insert(key.to_string(), value.to_string());
            }
            DELETE => {
                overrides.remove(key);
            }
            APPEND | SUBTRACT => {
                match kind.is_list(key) {
                    // An unknown key is refused by validation, with the known ones named.
                    None => {
                        overrides.insert(key.to_string(), value.unwrap_or("").to_string());
                        continue;
                    }
                    Some(false) => {
                        return Err(invalid(format!(
                            "Config '{key}' is not a list: APPEND and SUBTRACT apply only to lists."
                        )))
                    }
                    Some(true) => {}
                }
                let mut list = items(&overrides);
                if op == APPEND {
                    for item in given() {
                        if !list.iter().any(|i| i == item) {
                            list.push(item.to_string());
                        }
                    }
                } else {
                    let remove: Vec<&str> = given().collect();
                    list.retain(|i| !remove.contains(&i.as_str()));
                }
                overrides.insert(key.to_string(), list.join(","));
            }
            other => {
                return Err((
                    code(ResponseError::InvalidRequest),
                    format!("Unknown config operation {other}"),
                ))
            }
        }
    }
    store(broker, kind, name, overrides, validate_only)
}
