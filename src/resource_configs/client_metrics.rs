//! Client-metrics subscriptions (KIP-714): `metrics` (metric name prefixes), `interval.ms` (how
//! often matching clients push) and `match` (which clients). Pure: keys, validation and
//! description. Cairn stores and describes subscriptions; it does not yet serve the telemetry
//! APIs (GetTelemetrySubscriptions, PushTelemetry) that would hand them to clients.

use super::{DescribedConfig, Overrides, ResourceConfigError, ResourceKind};
use crate::config::{ConfigSource, ConfigType};

const METRICS: &str = "metrics";
const INTERVAL_MS: &str = "interval.ms";
const MATCH: &str = "match";

/// Every key: (name, type, default, doc).
const KEYS: &[(&str, ConfigType, &str, &str)] = &[
    (METRICS, ConfigType::List, "", "Prefixes of the metric names the matching clients push; '*' for all."),
    (INTERVAL_MS, ConfigType::Int, "300000", "How often matching clients push metrics, from 100 ms to one hour."),
    (MATCH, ConfigType::List, "", "Which clients the subscription applies to: name=regex pairs over client_instance_id, client_id, client_software_name, client_software_version, client_source_address, client_source_port; empty for every client."),
];

/// The client properties a `match` entry may test.
const MATCH_PARAMS: &[&str] = &[
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
];

const INTERVAL_BOUNDS: (i32, i32) = (100, 3_600_000);

pub(super) fn is_list(key: &str) -> Option<bool> {
    KEYS.iter()
        .find(|(name, ..)| *name == key)
        .map(|(_, ty, ..)| *ty == ConfigType::List)
}

fn out_of_range(key: &str, value: &str, reason: String) -> ResourceConfigError {
    ResourceConfigError::OutOfRange {
        kind: ResourceKind::ClientMetrics,
        key: key.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// Checks a subscription's overrides: known keys, an integer interval within its bounds, and
/// `match` entries of the form `<client property>=<regex>`.
pub(super) fn validate(overrides: &Overrides) -> Result<(), ResourceConfigError> {
    for key in overrides.keys() {
        if is_list(key).is_none() {
            return Err(ResourceConfigError::UnknownName {
                kind: ResourceKind::ClientMetrics,
                key: key.clone(),
                known: format!("{METRICS}, {INTERVAL_MS}, {MATCH}"),
            });
        }
    }
    if let Some(value) = overrides.get(INTERVAL_MS) {
        let interval: i32 =
            value
                .trim()
                .parse()
                .map_err(|_| ResourceConfigError::InvalidValue {
                    key: INTERVAL_MS.to_string(),
                    value: value.clone(),
                    reason: "not an integer".to_string(),
                })?;
        let (min, max) = INTERVAL_BOUNDS;
        if !(min..=max).contains(&interval) {
            return Err(out_of_range(
                INTERVAL_MS,
                value,
                format!("must be from {min} to {max} ms"),
            ));
        }
    }
    if let Some(value) = overrides.get(MATCH) {
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            check_match(entry).map_err(|reason| ResourceConfigError::InvalidValue {
                key: MATCH.to_string(),
                value: entry.to_string(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// One `match` entry: exactly one '=', a known client property before it, a regex after it.
fn check_match(entry: &str) -> Result<(), String> {
    let parts: Vec<&str> = entry.split('=').collect();
    let [param, pattern] = parts[..] else {
        return Err("a match entry is <client property>=<regex>".to_string());
    };
    let param = param.trim();
    if !MATCH_PARAMS.contains(&param) {
        return Err(format!(
            "'{param}' is not a client property; they are {}",
            MATCH_PARAMS.join(", ")
        ));
    }
    regex_syntax::Parser::new()
        .parse(pattern.trim())
        .map(|_| ())
        .map_err(|e| format!("not a regular expression: {e}"))
}

/// Every config of a subscription with `overrides`.
pub(super) fn describe(overrides: &Overrides) -> Vec<DescribedConfig> {
    KEYS.iter()
        .map(|&(name, ty, default, doc)| {
            let (value, source) = match overrides.get(name) {
                Some(v) => (v.clone(), ConfigSource::ClientMetrics),
                None => (default.to_string(), ConfigSource::Default),
            };
            DescribedConfig {
                name,
                value: value.clone(),
                source,
                ty,
                doc,
                synonyms: vec![(name.to_string(), value, source)],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::overrides;
    use super::*;

    #[test]
    fn subscriptions_are_validated() {
        assert!(validate(&overrides(&[
            (
                METRICS,
                "org.apache.kafka.producer.,org.apache.kafka.consumer."
            ),
            (INTERVAL_MS, "1000"),
            (
                MATCH,
                "client_software_name=Java, client_software_version=11\\.1\\..*"
            ),
        ]))
        .is_ok());
        assert!(matches!(
            validate(&overrides(&[(INTERVAL_MS, "99")])),
            Err(ResourceConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            validate(&overrides(&[(INTERVAL_MS, "3600001")])),
            Err(ResourceConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            validate(&overrides(&[(INTERVAL_MS, "often")])),
            Err(ResourceConfigError::InvalidValue { .. })
        ));
        for bad in [
            "client_id",
            "client_id=a=b",
            "colour=red",
            "client_id=(unclosed",
        ] {
            assert!(
                matches!(
                    validate(&overrides(&[(MATCH, bad)])),
                    Err(ResourceConfigError::InvalidValue { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            validate(&overrides(&[("push.interval", "1000")])),
            Err(ResourceConfigError::UnknownName { .. })
        ));
    }

    #[test]
    fn defaults_and_overrides_are_described() {
        let d = describe(&overrides(&[(INTERVAL_MS, "1000")]));
        let names: Vec<&str> = d.iter().map(|c| c.name).collect();
        assert_eq!(names, [METRICS, INTERVAL_MS, MATCH]);
        assert_eq!(
            (d[1].value.as_str(), d[1].source),
            ("1000", ConfigSource::ClientMetrics)
        );
        assert_eq!(
            (d[0].value.as_str(), d[0].source),
            ("", ConfigSource::Default)
        );
    }
}
