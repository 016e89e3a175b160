//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs on BROKER resources (type 4): dynamic
//! configs for this broker and cluster-wide, Kafka's precedence and sources, Kafka's refusals,
//! topics following a changed default (described and applied), `max.connections` changed live,
//! and everything kept across a restart.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request as inc;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::util::{batch, create_topic, fetch, produce};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT: i8 = 3;
const STATIC: i8 = 4;
const DEFAULT: i8 = 5;

type Described = BTreeMap<String, (Option<String>, i8, Vec<i8>)>;

/// Describes one resource: error code and name → (value, source, synonym sources).
fn describe(client: &mut Client, resource_type: i8, name: &str) -> (i16, Described) {
    let response: DescribeConfigsResponse = client.call(
        4,
        &DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None)]),
    );
    let result = &response.results[0];
    let configs = result
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                (
                    c.value.as_ref().map(|v| v.to_string()),
                    c.config_source,
                    c.synonyms.iter().map(|s| s.source).collect(),
                ),
            )
        })
        .collect();
    (result.error_code, configs)
}

fn value_and_source(configs: &Described, key: &str) -> (String, i8) {
    let (value, source, _) = configs
        .get(key)
        .unwrap_or_else(|| panic!("{key} not described"));
    (value.clone().unwrap_or_default(), *source)
}

/// One IncrementalAlterConfigs of one BROKER resource: (error code, message).
fn alter(client: &mut Client, name: &str, ops: &[(&str, i8, Option<&str>)]) -> (i16, String) {
    let response: IncrementalAlterConfigsResponse = client.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(BROKER)
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
                ),
        ]),
    );
    let r = &response.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// True when the broker closes a new connection at once (the connection limit is reached);
/// false when it keeps it open.
fn refused(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    match stream.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => panic!("the broker spoke first"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn dynamic_broker_configs_take_kafkas_precedence_and_survive_a_restart() {
    let mut cairn = Cairn::start(&["log.retention.bytes=1000000"]);
    let mut client = cairn.client();
    create_topic(&mut client, "plain", 1, &[]);
    create_topic(&mut client, "own", 1, &[("retention.bytes", "5000")]);

    let (error, configs) = describe(&mut client, BROKER, "1");
    assert_eq!(error, 0);
    assert_eq!(
        value_and_source(&configs, "log.retention.bytes"),
        ("1000000".into(), STATIC)
    );

    // Cluster-wide first: the broker and topics without their own value follow.
    assert_eq!(
        alter(
            &mut client,
            "",
            &[("log.retention.bytes", SET, Some("2000000"))]
        ),
        (0, String::new())
    );
    let (_, configs) = describe(&mut client, BROKER, "1");
    assert_eq!(
        value_and_source(&configs, "log.retention.bytes"),
        ("2000000".into(), DYNAMIC_DEFAULT)
    );
    let (_, topic) = describe(&mut client, TOPIC, "plain");
    assert_eq!(
        value_and_source(&topic, "retention.bytes"),
        ("2000000".into(), DYNAMIC_DEFAULT)
    );
    let (_, own) = describe(&mut client, TOPIC, "own");
    assert_eq!(
        value_and_source(&own, "retention.bytes"),
        ("5000".into(), 1)
    );

    // Then this broker's own value wins, with every layer among the synonyms in order.
    assert_eq!(
        alter(
            &mut client,
            "1",
            &[
                ("log.retention.bytes", SET, Some("3000000")),
                ("log.cleanup.policy", APPEND, Some("compact")),
            ]
        )
        .0,
        0
    );
    let (_, configs) = describe(&mut client, BROKER, "1");
    let (value, source, synonyms) = &configs["log.retention.bytes"];
    assert_eq!(
        (value.as_deref(), *source),
        (Some("3000000"), DYNAMIC_BROKER)
    );
    assert_eq!(
        synonyms,
        &[DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT]
    );
    assert_eq!(
        value_and_source(&configs, "log.cleanup.policy"),
        ("delete,compact".into(), DYNAMIC_BROKER)
    );
    let (_, topic) = describe(&mut client, TOPIC, "plain");
    assert_eq!(
        value_and_source(&topic, "retention.bytes"),
        ("3000000".into(), DYNAMIC_BROKER)
    );
    assert_eq!(
        topic["retention.bytes"].2,
        [DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT]
    );
    // The cluster-wide entity describes its own dynamic configs only.
    let (error, defaults) = describe(&mut client, BROKER, "");
    assert_eq!(error, 0);
    assert_eq!(defaults.len(), 1);
    assert_eq!(
        value_and_source(&defaults, "log.retention.bytes"),
        ("2000000".into(), DYNAMIC_DEFAULT)
    );

    // Kafka's refusals; nothing changes.
    for (name, ops, code, words) in [
        (
            "1",
            vec![("num.partitions", SET, Some("3"))],
            INVALID_REQUEST,
            "Cannot update these configs dynamically",
        ),
        (
            "1",
            vec![("log.retention.hours", SET, Some("1"))],
            INVALID_REQUEST,
            "Cannot update these configs dynamically",
        ),
        (
            "",
            vec![("log.dirs", SET, Some("/tmp/x"))],
            INVALID_REQUEST,
            "Cannot update these configs dynamically",
        ),
        (
            "1",
            vec![("producer.id.expiration.ms", SET, Some("1000"))],
            INVALID_REQUEST,
            "without a restart",
        ),
        (
            "1",
            vec![("no.such.config", SET, Some("1"))],
            INVALID_CONFIG,
            "Unknown broker config name",
        ),
        (
            "1",
            vec![("max.connections", SET, Some("0"))],
            INVALID_REQUEST,
            "max.connections",
        ),
        (
            "1",
            vec![("log.retention.ms", SET, Some("soon"))],
            INVALID_REQUEST,
            "log.retention.ms",
        ),
        (
            "1",
            vec![("log.retention.ms", SET, None)],
            INVALID_REQUEST,
            "Null value",
        ),
        (
            "1",
            vec![("log.retention.ms", APPEND, Some("1"))],
            INVALID_CONFIG,
            "append is not allowed",
        ),
        (
            "1",
            vec![
                ("log.retention.ms", SET, Some("1")),
                ("log.retention.ms", DELETE, None),
            ],
            INVALID_REQUEST,
            "duplicate",
        ),
        (
            "1",
            vec![("log.retention.ms", 9, Some("1"))],
            INVALID_REQUEST,
            "Unknown operations type",
        ),
        (
            "2",
            vec![("log.retention.ms", SET, Some("1"))],
            INVALID_REQUEST,
            "Unexpected broker id",
        ),
        (
            "one",
            vec![("log.retention.ms", SET, Some("1"))],
            INVALID_REQUEST,
            "must be an integer",
        ),
    ] {
        let (error, message) = alter(&mut client, name, &ops);
        assert_eq!(error, code, "{name:?} {ops:?}: {message}");
        assert!(message.contains(words), "{name:?} {ops:?}: {message}");
    }
    let (_, after) = describe(&mut client, BROKER, "1");
    assert_eq!(after, configs, "refused changes left everything as it was");

    // Legacy AlterConfigs replaces the entity's whole set: the cleanup policy goes back.
    let legacy: AlterConfigsResponse = client.call(
        2,
        &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("log.retention.bytes"))
                .with_value(Some(StrBytes::from_static_str("4000000")))])]),
    );
    assert_eq!(legacy.responses[0].error_code, 0);

    cairn.restart();
    let mut client = cairn.client();
    let (_, configs) = describe(&mut client, BROKER, "1");
    assert_eq!(
        value_and_source(&configs, "log.retention.bytes"),
        ("4000000".into(), DYNAMIC_BROKER)
    );
    assert_eq!(
        value_and_source(&configs, "log.cleanup.policy"),
        ("delete".into(), DEFAULT)
    );
    let (_, topic) = describe(&mut client, TOPIC, "plain");
    assert_eq!(
        value_and_source(&topic, "retention.bytes"),
        ("4000000".into(), DYNAMIC_BROKER)
    );
    // Deleting this broker's value falls back to the cluster-wide one.
    assert_eq!(
        alter(&mut client, "1", &[("log.retention.bytes", DELETE, None)]).0,
        0
    );
    let (_, configs) = describe(&mut client, BROKER, "1");
    assert_eq!(
        value_and_source(&configs, "log.retention.bytes"),
        ("2000000".into(), DYNAMIC_DEFAULT)
    );
}

#[test]
fn a_changed_retention_default_deletes_old_segments_without_a_restart() {
    let cairn = Cairn::start(&["log.retention.check.interval.ms=100"]);
    let mut client = cairn.client();
    // Tiny segments, so every batch seals the one before it; timestamps of now, so the default
    // time retention (a week) keeps them.
    create_topic(&mut client, "r", 1, &[("segment.bytes", "100")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..5 {
        assert_eq!(
            produce(&mut client, 9, "r", 0, batch(&[&"x".repeat(100)], now + i)).0,
            0
        );
    }
    let log_start = |client: &mut Client| {
        fetch(client, 12, "r", 0, 4).responses[0].partitions[0].log_start_offset
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(log_start(&mut client), 0, "nothing is deleted by default");

    // The cleaner's settings change live too (accepted here; their effect is a unit test's).
    assert_eq!(
        alter(
            &mut client,
            "",
            &[
                ("log.retention.bytes", SET, Some("1")),
                ("log.cleaner.threads", SET, Some("2")),
                ("log.cleaner.io.max.bytes.per.second", SET, Some("10485760")),
            ]
        ),
        (0, String::new())
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_start(&mut client) == 0 {
        assert!(
            Instant::now() < deadline,
            "retention did not follow the new default"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log_start(&mut client) >= 4);
}

#[test]
fn max_connections_changes_live() {
    let cairn = Cairn::start(&[]);
    let mut admin = cairn.client();
    // The admin connection is one; allow one more.
    assert_eq!(
        alter(&mut admin, "1", &[("max.connections", SET, Some("2"))]).0,
        0
    );
    let second = TcpStream::connect(cairn.addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The accept loop may still be taking the second connection in.
    while !refused(cairn.addr) {
        assert!(Instant::now() < deadline, "a third connection was accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    assert_eq!(
        alter(&mut admin, "1", &[("max.connections", DELETE, None)]).0,
        0
    );
    for _ in 0..3 {
        assert!(!refused(cairn.addr));
    }
}

#[test]
fn more_cleaner_threads_clean_two_partitions_at_once_without_a_restart() {
    let http: SocketAddr = ([127, 0, 0, 1], crate::harness::free_port()).into();
    let cairn = Cairn::start(&[
        &format!("cairn.http.listen={http}"),
        "log.cleaner.backoff.ms=100",
        // Slow enough that each pass lasts seconds, so two at once can be seen.
        "log.cleaner.io.max.bytes.per.second=4000",
    ]);
    let mut client = cairn.client();
    let both = crate::http::two_partitions_to_clean(&mut client, http);
    // One thread (the default): never two partitions at once while it works through them.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(!both(), "one cleaner thread cleaned two partitions at once");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        alter(&mut client, "1", &[("log.cleaner.threads", SET, Some("2"))]),
        (0, String::new())
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !both() {
        assert!(
            Instant::now() < deadline,
            "never saw both partitions being cleaned at once after the change"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
