//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs on GROUP resources (type 32, KIP-848
//! group configs) and CLIENT_METRICS resources (type 16, KIP-714 subscriptions): described with
//! their defaults, altered within Kafka's bounds, refused with Kafka's error codes otherwise, and
//! kept across a restart.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request as inc;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};

const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Describes one resource: its error code, and each config as name → (value, source).
fn describe(
    client: &mut Client,
    version: i16,
    resource_type: i8,
    name: &str,
) -> (i16, BTreeMap<String, (Option<String>, i8)>) {
    let response = client.call(
        version,
        &DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None)]),
    );
    let result = &response.results[0];
    assert_eq!(result.resource_type, resource_type);
    let configs = result
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                (c.value.as_ref().map(|v| v.to_string()), c.config_source),
            )
        })
        .collect();
    (result.error_code, configs)
}

/// One IncrementalAlterConfigs of one resource; returns (error code, message).
fn alter(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let response: IncrementalAlterConfigsResponse = client.call(
        1,
        &IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![inc::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(
                    ops.iter()
                        .map(|(key, op, value)| {
                            inc::AlterableConfig::default()
                                .with_name(StrBytes::from_string(key.to_string()))
                                .with_config_operation(*op)
                                .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]),
    );
    let r = &response.responses[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn value(configs: &BTreeMap<String, (Option<String>, i8)>, key: &str) -> (String, i8) {
    let (value, source) = configs
        .get(key)
        .unwrap_or_else(|| panic!("{key} not described"));
    (value.clone().unwrap_or_default(), *source)
}

#[test]
fn group_configs_are_described_altered_within_bounds_and_kept() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    const SESSION: &str = "consumer.session.timeout.ms";
    const HEARTBEAT: &str = "consumer.heartbeat.interval.ms";

    // Any group id, existing or not: the broker defaults (source 5, DEFAULT_CONFIG).
    for version in [1i16, 4] {
        let (error, configs) = describe(&mut client, version, GROUP, "g");
        assert_eq!(error, 0, "v{version}");
        assert_eq!(value(&configs, SESSION), ("45000".into(), 5));
        assert_eq!(value(&configs, HEARTBEAT), ("5000".into(), 5));
    }

    assert_eq!(
        alter(
            &mut client,
            GROUP,
            "g",
            &[(SESSION, SET, Some("50000"))],
            false
        )
        .0,
        0
    );
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(
        value(&configs, SESSION),
        ("50000".into(), 8),
        "GROUP_CONFIG source"
    );
    // Another group keeps the defaults.
    let (_, other) = describe(&mut client, 4, GROUP, "h");
    assert_eq!(value(&other, SESSION), ("45000".into(), 5));

    // Kafka's bounds: session 45000..=60000, heartbeat 5000..=15000 and below the session.
    for (key, bad) in [
        (SESSION, "44999"),
        (SESSION, "60001"),
        (HEARTBEAT, "4999"),
        (HEARTBEAT, "15001"),
        (HEARTBEAT, "often"),
        ("session.timeout.ms", "50000"),
    ] {
        let (error, message) = alter(&mut client, GROUP, "g", &[(key, SET, Some(bad))], false);
        assert_eq!(error, INVALID_CONFIG, "{key}={bad}: {message:?}");
        assert!(message.is_some_and(|m| m.contains(key)), "{key}={bad}");
    }
    let (error, _) = alter(
        &mut client,
        GROUP,
        "g",
        &[(HEARTBEAT, APPEND, Some("6000"))],
        false,
    );
    assert_eq!(error, INVALID_CONFIG, "APPEND on a non-list");
    let (error, _) = alter(
        &mut client,
        GROUP,
        "",
        &[(SESSION, SET, Some("50000"))],
        false,
    );
    assert_eq!(
        error, INVALID_REQUEST,
        "empty group id, as Kafka answers it"
    );

    // validate_only checks without storing.
    assert_eq!(
        alter(
            &mut client,
            GROUP,
            "g",
            &[(HEARTBEAT, SET, Some("6000"))],
            true
        )
        .0,
        0
    );
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(
        value(&configs, SESSION),
        ("50000".into(), 8),
        "refusals changed nothing"
    );
    assert_eq!(value(&configs, HEARTBEAT), ("5000".into(), 5));

    assert_eq!(
        alter(
            &mut client,
            GROUP,
            "g",
            &[(HEARTBEAT, SET, Some("6000"))],
            false
        )
        .0,
        0
    );
    drop(client);
    cairn.restart();
    let mut client = cairn.client();
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(
        value(&configs, SESSION),
        ("50000".into(), 8),
        "kept across a restart"
    );
    assert_eq!(value(&configs, HEARTBEAT), ("6000".into(), 8));

    // DELETE goes back to the default; the legacy AlterConfigs replaces the whole set.
    assert_eq!(
        alter(&mut client, GROUP, "g", &[(HEARTBEAT, DELETE, None)], false).0,
        0
    );
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(value(&configs, HEARTBEAT), ("5000".into(), 5));
    let legacy: AlterConfigsResponse = client.call(
        2,
        &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(GROUP)
            .with_resource_name(StrBytes::from_static_str("g"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(HEARTBEAT))
                .with_value(Some(StrBytes::from_static_str("7000")))])]),
    );
    assert_eq!(legacy.responses[0].error_code, 0);
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(value(&configs, SESSION), ("45000".into(), 5));
    assert_eq!(value(&configs, HEARTBEAT), ("7000".into(), 8));
}

#[test]
fn group_config_bounds_follow_the_broker() {
    let cairn = Cairn::start(&[
        "group.consumer.min.session.timeout.ms=10000",
        "group.consumer.session.timeout.ms=20000",
    ]);
    let mut client = cairn.client();
    let (_, configs) = describe(&mut client, 4, GROUP, "g");
    assert_eq!(
        value(&configs, "consumer.session.timeout.ms"),
        ("20000".into(), 4),
        "STATIC_BROKER_CONFIG default"
    );
    let set = |client: &mut Client, v: &str| {
        alter(
            client,
            GROUP,
            "g",
            &[("consumer.session.timeout.ms", SET, Some(v))],
            false,
        )
        .0
    };
    assert_eq!(set(&mut client, "10000"), 0);
    assert_eq!(set(&mut client, "9999"), INVALID_CONFIG);
    // The heartbeat interval must stay below the session timeout (now 10000).
    let (error, message) = alter(
        &mut client,
        GROUP,
        "g",
        &[("consumer.heartbeat.interval.ms", SET, Some("10000"))],
        false,
    );
    assert_eq!(error, INVALID_CONFIG, "{message:?}");
}

#[test]
fn client_metrics_subscriptions_are_described_altered_and_kept() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [1i16, 4] {
        let (error, configs) = describe(&mut client, version, CLIENT_METRICS, "sub");
        assert_eq!(error, 0, "v{version}");
        assert_eq!(value(&configs, "interval.ms"), ("300000".into(), 5));
        assert_eq!(value(&configs, "metrics"), ("".into(), 5));
        assert_eq!(value(&configs, "match"), ("".into(), 5));
    }
    let ops = [
        ("interval.ms", SET, Some("1000")),
        (
            "metrics",
            APPEND,
            Some("org.apache.kafka.producer.,org.apache.kafka.consumer."),
        ),
        ("match", SET, Some("client_software_name=apache-kafka-java")),
    ];
    assert_eq!(
        alter(&mut client, CLIENT_METRICS, "sub", &ops, false),
        (0, None)
    );
    let subtract = [("metrics", SUBTRACT, Some("org.apache.kafka.consumer."))];
    assert_eq!(
        alter(&mut client, CLIENT_METRICS, "sub", &subtract, false).0,
        0
    );

    // Kafka's codes: an out-of-range interval or an unknown key is INVALID_REQUEST, a bad match
    // pattern INVALID_CONFIG.
    for (ops, expected) in [
        (vec![("interval.ms", SET, Some("99"))], INVALID_REQUEST),
        (
            vec![("push.interval.ms", SET, Some("1000"))],
            INVALID_REQUEST,
        ),
        (vec![("match", SET, Some("colour=red"))], INVALID_CONFIG),
        (
            vec![("match", SET, Some("client_id=(unclosed"))],
            INVALID_CONFIG,
        ),
        (vec![("interval.ms", APPEND, Some("5"))], INVALID_CONFIG),
    ] {
        let (error, message) = alter(&mut client, CLIENT_METRICS, "sub", &ops, false);
        assert_eq!(error, expected, "{ops:?}: {message:?}");
        assert!(message.is_some(), "{ops:?}");
    }
    let (error, _) = alter(&mut client, CLIENT_METRICS, "", &ops, false);
    assert_eq!(
        error, INVALID_REQUEST,
        "empty subscription name, as Kafka answers it"
    );

    drop(client);
    cairn.restart();
    let mut client = cairn.client();
    let (_, configs) = describe(&mut client, 4, CLIENT_METRICS, "sub");
    assert_eq!(
        value(&configs, "interval.ms"),
        ("1000".into(), 7),
        "CLIENT_METRICS_CONFIG"
    );
    assert_eq!(
        value(&configs, "metrics"),
        ("org.apache.kafka.producer.".into(), 7)
    );
    assert_eq!(
        value(&configs, "match"),
        ("client_software_name=apache-kafka-java".into(), 7)
    );
}

fn list_config_resources(
    client: &mut Client,
    version: i16,
    types: &[i8],
) -> (i16, Vec<(String, i8)>) {
    let response: ListConfigResourcesResponse = client.call(
        version,
        &ListConfigResourcesRequest::default().with_resource_types(types.to_vec()),
    );
    let mut resources: Vec<(String, i8)> = response
        .config_resources
        .iter()
        .map(|r| (r.resource_name.to_string(), r.resource_type))
        .collect();
    resources.sort();
    (response.error_code, resources)
}

#[test]
fn list_config_resources_names_what_can_be_described() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    crate::util::create_topic(&mut client, "listed", 1, &[]);
    let set_group = [("consumer.session.timeout.ms", SET, Some("50000"))];
    assert_eq!(
        alter(&mut client, GROUP, "configured", &set_group, false).0,
        0
    );
    let set_sub = [("interval.ms", SET, Some("1000"))];
    assert_eq!(
        alter(&mut client, CLIENT_METRICS, "sub", &set_sub, false).0,
        0
    );

    // v0 (ListClientMetricsResources) lists subscriptions only (its response has no type
    // field, which decodes as 16).
    let (error, resources) = list_config_resources(&mut client, 0, &[]);
    assert_eq!(
        (error, resources),
        (0, vec![("sub".to_string(), CLIENT_METRICS)])
    );

    let (error, resources) = list_config_resources(&mut client, 1, &[GROUP, CLIENT_METRICS]);
    assert_eq!(error, 0);
    assert_eq!(
        resources,
        vec![
            ("configured".to_string(), GROUP),
            ("sub".to_string(), CLIENT_METRICS)
        ]
    );
    // No type named: every type v1 knows.
    let (error, all) = list_config_resources(&mut client, 1, &[]);
    assert_eq!(error, 0);
    for expected in [
        ("listed".to_string(), 2),
        ("1".to_string(), 4),
        ("1".to_string(), 8),
    ] {
        assert!(all.contains(&expected), "{expected:?} missing from {all:?}");
    }
    // A type the version does not list: UNSUPPORTED_VERSION (35), as in Kafka.
    assert_eq!(list_config_resources(&mut client, 1, &[64]).0, 35);
}
