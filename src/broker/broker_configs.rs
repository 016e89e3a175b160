//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs on BROKER resources: this broker's
//! configs (resource name = its node id) and the cluster-wide dynamic defaults (name "").
//!
//! Checks the request as Kafka's broker does (node id, duplicate keys, null values, list
//! operations), hands the entity's new set to [`crate::dynamic_config`], and on success gives
//! the new snapshot to the log manager so topic defaults change at once; the accept loops follow
//! `max.connections` themselves.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use tracing::info;

use super::configs::{APPEND, DELETE, SET, SUBTRACT};
use super::errors::{code, dynamic_config_error_code};
use super::Broker;
use crate::config::{ConfigDef, ConfigSource, ConfigType, BROKER_CONFIGS};
use crate::dynamic_config::{self, Entity, Overrides};

type Failure = (i16, String);

fn invalid_request(message: impl Into<String>) -> Failure {
    (code(ResponseError::InvalidRequest), message.into())
}

/// One described broker config.
pub(super) struct Described {
    pub(super) def: &'static ConfigDef,
    pub(super) value: Option<String>,
    pub(super) source: ConfigSource,
    pub(super) read_only: bool,
    pub(super) sensitive: bool,
    /// (name, value, source), most specific first.
    pub(super) synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// The entity a resource name stands for: "" is the cluster-wide default, this node's id is
/// this broker; anything else is refused with Kafka's words.
fn entity(broker: &Broker, name: &str) -> Result<Entity, Failure> {
    if name.is_empty() {
        return Ok(Entity::ClusterDefault);
    }
    let id: i32 = name
        .parse()
        .map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {name}")))?;
    if id != broker.node_id {
        return Err(invalid_request(format!(
            "Unexpected broker id, expected {}, but received {name}",
            broker.node_id
        )));
    }
    Ok(Entity::Broker)
}

/// Every config of this broker with its source and synonyms; for the cluster-wide entity, its
/// dynamic defaults only (as Kafka describes it).
pub(super) fn describe(broker: &Broker, name: &str) -> Result<Vec<Described>, Failure> {
    let config = broker.dynamic.current();
    match entity(broker, name)? {
        Entity::ClusterDefault => Ok(broker
            .dynamic
            .overrides(Entity::ClusterDefault)
            .into_iter()
            .filter_map(|(key, value)| {
                let def = BROKER_CONFIGS.iter().find(|d| d.name == key)?;
                let source = ConfigSource::DynamicDefaultBroker;
                Some(Described {
                    def,
                    value: Some(value.clone()),
                    source,
                    read_only: false,
                    sensitive: false,
                    synonyms: vec![(key, Some(value), source)],
                })
            })
            .collect()),
        Entity::Broker => Ok(config
            .describe()
            .into_iter()
            .map(|(def, value, source)| {
                // A secret (e.g. the S3 secret key) is never sent back: Kafka answers a null
                // value marked sensitive.
                let sensitive = def.ty == ConfigType::Password;
                let synonyms = config
                    .layers(def.name)
                    .into_iter()
                    .map(|(v, s)| (def.name.to_string(), v.filter(|_| !sensitive), s))
                    .collect();
                Described {
                    def,
                    value: value.filter(|_| !sensitive),
                    source,
                    read_only: !dynamic_config::is_dynamic(def.name),
                    sensitive,
                    synonyms,
                }
            })
            .collect()),
    }
}

/// Legacy AlterConfigs: the entity's dynamic configs become exactly `configs`.
pub(super) fn replace<'a>(
    broker: &Broker,
    name: &str,
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    validate_only: bool,
) -> Result<(), Failure> {
    let entity = entity(broker, name)?;
    let configs: Vec<_> = configs.collect();
    check_duplicates(configs.iter().map(|(k, _)| *k))?;
    let mut next = Overrides::new();
    for (key, value) in configs {
        let value = value.ok_or_else(|| null_value(key))?;
        next.insert(key.to_string(), value.to_string());
    }
    store(broker, entity, next, validate_only)
}

/// IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on the entity's dynamic configs.
pub(super) fn alter<'a>(
    broker: &Broker,
    name: &str,
    ops: impl Iterator<Item = (&'a str, i8, Option<&'a str>)>,
    validate_only: bool,
) -> Result<(), Failure> {
    let entity = entity(broker, name)?;
    let ops: Vec<_> = ops.collect();
    check_duplicates(ops.iter().map(|(k, _, _)| *k))?;
    if let Some((key, ..)) = ops.iter().find(|(_, op, v)| *op != DELETE && v.is_none()) {
        return Err(null_value(key));
    }
    let mut next = broker.dynamic.overrides(entity);
    for (key, op, value) in ops {
        let value = value.unwrap_or("");
        match op {
            SET => {
                next.insert(key.to_string(), value.to_string());
            }
            DELETE => {
                next.remove(key);
            }
            APPEND | SUBTRACT => {
                let verb = if op == APPEND { "append" } else { "subtract" };
                let def = BROKER_CONFIGS
                    .iter()
                    .find(|d| d.name == key)
                    .ok_or_else(|| {
                        (
                            code(ResponseError::InvalidConfig),
                            format!("Unknown config name: {key}"),
                        )
                    })?;
                if def.ty != ConfigType::List {
                    return Err((
                        code(ResponseError::InvalidConfig),
                        format!("Config value {verb} is not allowed for config key: {key}"),
                    ));
                }
                let mut items: Vec<String> = next
                    .get(key)
                    .map(String::as_str)
                    .or(def.default)
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let given = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                if op == APPEND {
                    for item in given {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    }
                } else {
                    let remove: BTreeSet<&str> = given.collect();
                    items.retain(|i| !remove.contains(i.as_str()));
                }
                next.insert(key.to_string(), items.join(","));
            }
            other => return Err(invalid_request(format!("Unknown operations type {other}"))),
        }
    }
    store(broker, entity, next, validate_only)
}

fn store(
    broker: &Broker,
    entity: Entity,
    overrides: Overrides,
    validate_only: bool,
) -> Result<(), Failure> {
    let config = broker
        .dynamic
        .set(entity, overrides.clone(), validate_only)
        .map_err(|e| (dynamic_config_error_code(&e), e.to_string()))?;
    if !validate_only {
        let topics = broker.log.reconfigure(config);
        info!(
            ?entity,
            ?overrides,
            topics_changed = topics,
            "altered dynamic broker configs"
        );
    }
    Ok(())
}

fn check_duplicates<'a>(keys: impl Iterator<Item = &'a str>) -> Result<(), Failure> {
    let mut seen = BTreeSet::new();
    if keys.into_iter().any(|k| !seen.insert(k)) {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    Ok(())
}

fn null_value(key: &str) -> Failure {
    invalid_request(format!("Null value not supported for : {key}"))
}
