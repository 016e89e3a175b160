//! AlterClientQuotas and DescribeClientQuotas at their lowest and highest versions: Kafka's
//! filters, entity rules and errors, and quotas kept across a restart.

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An entity from (type, name) pairs; a `None` name is the default.
fn entity(parts: &[(&str, Option<&str>)]) -> Vec<EntityData> {
    parts
        .iter()
        .map(|(kind, name)| {
            EntityData::default()
                .with_entity_type(s(kind))
                .with_entity_name(name.map(s))
        })
        .collect()
}

/// An entity and its changes: (key, new value, or `None` to remove).
type Change<'a> = (Vec<EntityData>, Vec<(&'a str, Option<f64>)>);

/// Alters one entity per entry; returns each entry's error code.
fn alter(client: &mut Client, version: i16, entries: Vec<Change<'_>>) -> Vec<i16> {
    let request = AlterClientQuotasRequest::default().with_entries(
        entries
            .into_iter()
            .map(|(entity, ops)| {
                EntryData::default().with_entity(entity).with_ops(
                    ops.into_iter()
                        .map(|(key, value)| {
                            OpData::default()
                                .with_key(s(key))
                                .with_value(value.unwrap_or(0.0))
                                .with_remove(value.is_none())
                        })
                        .collect(),
                )
            })
            .collect(),
    );
    client
        .call(version, &request)
        .entries
        .iter()
        .map(|e| e.error_code)
        .collect()
}

/// (match type, match) per entity type; the entries as "type=name,..: key=value,..".
fn describe(
    client: &mut Client,
    version: i16,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> (i16, Vec<String>) {
    let response = client.call(
        version,
        &DescribeClientQuotasRequest::default()
            .with_strict(strict)
            .with_components(
                components
                    .iter()
                    .map(|(kind, match_type, name)| {
                        ComponentData::default()
                            .with_entity_type(s(kind))
                            .with_match_type(*match_type)
                            .with_match(name.map(s))
                    })
                    .collect(),
            ),
    );
    let mut entries: Vec<String> = response
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let entity: Vec<String> = e
                .entity
                .iter()
                .map(|p| {
                    let name = p.entity_name.as_deref().unwrap_or("<default>");
                    format!("{}={name}", p.entity_type.as_str())
                })
                .collect();
            let values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", v.key.as_str(), v.value))
                .collect();
            format!("{}: {}", entity.join(","), values.join(","))
        })
        .collect();
    entries.sort();
    (response.error_code, entries)
}

#[test]
fn client_quotas_alter_describe_and_errors() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [0, 1] {
        let app = format!("app-v{version}");
        let codes = alter(
            &mut client,
            version,
            vec![
                (
                    entity(&[("client-id", Some(&app))]),
                    vec![("producer_byte_rate", Some(1024.0))],
                ),
                (
                    entity(&[("user", Some("alice")), ("client-id", Some(&app))]),
                    vec![("request_percentage", Some(12.5))],
                ),
                // Kafka's INVALID_REQUEST (42) cases, each failing only its own entry.
                (entity(&[]), vec![("producer_byte_rate", Some(1.0))]),
                (
                    entity(&[("client-id", Some("x"))]),
                    vec![("producer_byte_rate", Some(1.5))],
                ),
                (
                    entity(&[("client-id", Some("x"))]),
                    vec![("nope", Some(1.0))],
                ),
                (
                    entity(&[("user", Some(""))]),
                    vec![("consumer_byte_rate", Some(1.0))],
                ),
                (
                    entity(&[("group", Some("g"))]),
                    vec![("consumer_byte_rate", Some(1.0))],
                ),
            ],
        );
        assert_eq!(codes, [0, 0, 42, 42, 42, 42, 42]);
        let (error, entries) =
            describe(&mut client, version, &[("client-id", 0, Some(&app))], false);
        assert_eq!(error, 0);
        assert_eq!(
            entries,
            [
                format!("client-id={app}: producer_byte_rate=1024"),
                format!("user=alice,client-id={app}: request_percentage=12.5"),
            ]
        );
        let (_, strict) = describe(&mut client, version, &[("client-id", 0, Some(&app))], true);
        assert_eq!(
            strict,
            [format!("client-id={app}: producer_byte_rate=1024")]
        );
    }
    // Defaults: a null name.
    assert_eq!(
        alter(
            &mut client,
            1,
            vec![(
                entity(&[("user", None)]),
                vec![("consumer_byte_rate", Some(5000.0))]
            )]
        ),
        [0]
    );
    let (_, defaults) = describe(&mut client, 1, &[("user", 1, None)], false);
    assert_eq!(defaults, ["user=<default>: consumer_byte_rate=5000"]);
    let (_, users) = describe(&mut client, 1, &[("user", 2, None)], false);
    assert_eq!(users.len(), 3, "{users:?}");

    // Filter errors, as Kafka: INVALID_REQUEST, or UNSUPPORTED_VERSION (35) for an unknown type.
    for (components, code) in [
        (vec![("user", 0, None)], 42),
        (vec![("user", 1, Some("a"))], 42),
        (vec![("user", 2, None), ("user", 2, None)], 42),
        (vec![("ip", 2, None), ("user", 2, None)], 42),
        (vec![("user", 7, None)], 42),
        (vec![("group", 2, None)], 35),
    ] {
        let (error, entries) = describe(&mut client, 1, &components, false);
        assert_eq!((error, entries.len()), (code, 0), "{components:?}");
    }

    // Kept across a restart; removing the last quota removes the entity.
    cairn.restart();
    let mut client = cairn.client();
    let (_, all) = describe(&mut client, 1, &[], false);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        alter(
            &mut client,
            0,
            vec![(
                entity(&[("user", None)]),
                vec![("consumer_byte_rate", None)]
            )]
        ),
        [0]
    );
    let (_, defaults) = describe(&mut client, 0, &[("user", 1, None)], false);
    assert!(defaults.is_empty(), "{defaults:?}");
}

#[test]
fn a_client_over_its_request_percentage_sees_throttle_time_on_other_responses() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    // A thousandth of a percent of a thread: a few requests of this client exceed it.
    assert_eq!(
        alter(
            &mut client,
            1,
            vec![(
                entity(&[("client-id", Some("protocol-tests"))]),
                vec![("request_percentage", Some(0.001))],
            )],
        ),
        vec![0]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metadata: MetadataResponse = client.call(12, &MetadataRequest::default());
        if metadata.throttle_time_ms > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Metadata never carried a throttle time"
        );
    }
}
