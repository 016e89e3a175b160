//! Group configs (KIP-848): a group's own `consumer.session.timeout.ms` and
//! `consumer.heartbeat.interval.ms`, overriding the broker's `group.consumer.*` defaults within
//! the broker's `group.consumer.min/max.*` bounds. Pure: keys, validation and description.

use super::{DescribedConfig, Overrides, ResourceConfigError, ResourceKind};
use crate::config::{BrokerConfig, ConfigSource, ConfigType};

const SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
const HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";

/// Every group config key: (name, the broker config it defaults from, doc). All are integers.
const KEYS: &[(&str, &str, &str)] = &[
    (
        SESSION_TIMEOUT,
        "group.consumer.session.timeout.ms",
        "This group's session timeout for consumer-protocol members, within group.consumer.min/max.session.timeout.ms.",
    ),
    (
        HEARTBEAT_INTERVAL,
        "group.consumer.heartbeat.interval.ms",
        "This group's heartbeat interval for consumer-protocol members, within group.consumer.min/max.heartbeat.interval.ms and below the session timeout.",
    ),
];

pub(super) fn is_known(key: &str) -> bool {
    KEYS.iter().any(|(name, ..)| *name == key)
}

/// The broker's default for a group config.
fn broker_value(key: &str, broker: &BrokerConfig) -> i32 {
    if key == SESSION_TIMEOUT {
        broker.group_consumer_session_timeout_ms()
    } else {
        broker.group_consumer_heartbeat_interval_ms()
    }
}

fn parse(key: &str, value: &str) -> Result<i32, ResourceConfigError> {
    let invalid = |reason: &str| ResourceConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let n: i32 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not an integer"))?;
    if n < 1 {
        return Err(invalid("must be at least 1"));
    }
    Ok(n)
}

/// The effective value of `key` for a group with `overrides`.
fn effective(
    key: &str,
    overrides: &Overrides,
    broker: &BrokerConfig,
) -> Result<i32, ResourceConfigError> {
    match overrides.get(key) {
        Some(v) => parse(key, v),
        None => Ok(broker_value(key, broker)),
    }
}

fn out_of_range(key: &str, value: i32, reason: String) -> ResourceConfigError {
    ResourceConfigError::OutOfRange {
        kind: ResourceKind::Group,
        key: key.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// Checks a group's whole set of overrides: known keys, integers, each effective value within
/// the broker's bounds, and the heartbeat interval below the session timeout.
pub(super) fn validate(
    overrides: &Overrides,
    broker: &BrokerConfig,
) -> Result<(), ResourceConfigError> {
    for (key, value) in overrides {
        if !is_known(key) {
            return Err(ResourceConfigError::UnknownName {
                kind: ResourceKind::Group,
                key: key.clone(),
                known: format!("{SESSION_TIMEOUT}, {HEARTBEAT_INTERVAL}"),
            });
        }
        parse(key, value)?;
    }
    let session = effective(SESSION_TIMEOUT, overrides, broker)?;
    let heartbeat = effective(HEARTBEAT_INTERVAL, overrides, broker)?;
    let checks = [
        (
            SESSION_TIMEOUT,
            session,
            broker.group_consumer_session_timeout_bounds(),
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        ),
        (
            HEARTBEAT_INTERVAL,
            heartbeat,
            broker.group_consumer_heartbeat_interval_bounds(),
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        ),
    ];
    for (key, value, (min, max), min_key, max_key) in checks {
        if value < min {
            return Err(out_of_range(
                key,
                value,
                format!("below the broker's {min_key} ({min})"),
            ));
        }
        if value > max {
            return Err(out_of_range(
                key,
                value,
                format!("above the broker's {max_key} ({max})"),
            ));
        }
    }
    if heartbeat >= session {
        return Err(out_of_range(
            HEARTBEAT_INTERVAL,
            heartbeat,
            format!("must be below {SESSION_TIMEOUT} ({session})"),
        ));
    }
    Ok(())
}

/// A group's own (session timeout, heartbeat interval) for consumer-protocol members; `None`
/// where it has none (the broker's `group.consumer.*` value applies).
pub fn consumer_timeouts(overrides: &Overrides) -> (Option<i32>, Option<i32>) {
    let own = |key: &str| overrides.get(key).and_then(|v| parse(key, v).ok());
    (own(SESSION_TIMEOUT), own(HEARTBEAT_INTERVAL))
}

/// Every group config of a group with `overrides`.
pub(super) fn describe(overrides: &Overrides, broker: &BrokerConfig) -> Vec<DescribedConfig> {
    KEYS.iter()
        .map(|&(name, broker_key, doc)| {
            let default_source = if broker.is_explicit(broker_key) {
                ConfigSource::StaticBroker
            } else {
                ConfigSource::Default
            };
            let mut synonyms = Vec::new();
            if let Some(own) = overrides.get(name) {
                synonyms.push((name.to_string(), own.clone(), ConfigSource::DynamicGroup));
            }
            synonyms.push((
                broker_key.to_string(),
                broker_value(name, broker).to_string(),
                default_source,
            ));
            let (_, value, source) = synonyms[0].clone();
            DescribedConfig {
                name,
                value,
                source,
                ty: ConfigType::Int,
                doc,
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::overrides;
    use super::*;

    fn broker(sets: &[(&str, &str)]) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        for (k, v) in sets {
            config.set(k, v).unwrap();
        }
        config
    }

    #[test]
    fn values_must_lie_within_the_brokers_bounds() {
        let b = broker(&[]);
        assert!(validate(&overrides(&[]), &b).is_ok());
        assert!(validate(&overrides(&[(SESSION_TIMEOUT, "50000")]), &b).is_ok());
        for (key, value) in [
            (SESSION_TIMEOUT, "44999"),
            (SESSION_TIMEOUT, "60001"),
            (HEARTBEAT_INTERVAL, "4999"),
            (HEARTBEAT_INTERVAL, "15001"),
        ] {
            let e = validate(&overrides(&[(key, value)]), &b).unwrap_err();
            assert!(
                matches!(&e, ResourceConfigError::OutOfRange { key: k, .. } if k == key),
                "{key}={value}: {e}"
            );
        }
        for value in ["0", "soon"] {
            assert!(matches!(
                validate(&overrides(&[(HEARTBEAT_INTERVAL, value)]), &b),
                Err(ResourceConfigError::InvalidValue { .. })
            ));
        }
        assert!(matches!(
            validate(&overrides(&[("session.timeout.ms", "50000")]), &b),
            Err(ResourceConfigError::UnknownName { .. })
        ));
        // Wider broker bounds admit more, but the heartbeat stays below the session timeout.
        let wide = broker(&[
            ("group.consumer.min.session.timeout.ms", "1000"),
            ("group.consumer.min.heartbeat.interval.ms", "1000"),
        ]);
        assert!(validate(&overrides(&[(SESSION_TIMEOUT, "6000")]), &wide).is_ok());
        let e = validate(
            &overrides(&[(SESSION_TIMEOUT, "6000"), (HEARTBEAT_INTERVAL, "6000")]),
            &wide,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("must be below consumer.session.timeout.ms"),
            "{e}"
        );
    }

    #[test]
    fn described_values_say_where_they_come_from() {
        let b = broker(&[("group.consumer.heartbeat.interval.ms", "6000")]);
        let d = describe(&overrides(&[(SESSION_TIMEOUT, "50000")]), &b);
        assert_eq!(d[0].name, SESSION_TIMEOUT);
        assert_eq!(
            (d[0].value.as_str(), d[0].source),
            ("50000", ConfigSource::DynamicGroup)
        );
        assert_eq!(d[0].synonyms.len(), 2);
        assert_eq!(d[0].synonyms[1].2, ConfigSource::Default);
        assert_eq!(
            (d[1].value.as_str(), d[1].source),
            ("6000", ConfigSource::StaticBroker)
        );
    }
}
