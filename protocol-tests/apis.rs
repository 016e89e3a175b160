//! Each implemented API at its lowest and highest advertised version.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request as inc;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::harness::{Cairn, Client};
use crate::util::*;

fn api_versions(client: &mut Client, version: i16) -> BTreeMap<i16, (i16, i16)> {
    let response = client.call(
        version,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("protocol-tests"))
            .with_client_software_version(StrBytes::from_static_str("1.0")),
    );
    assert_eq!(response.error_code, 0);
    response
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

#[test]
fn api_versions_lowest_and_highest() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [0, 4] {
        let apis = api_versions(&mut client, version);
        assert_eq!(apis[&(ApiKey::Produce as i16)], (0, 12));
        assert_eq!(apis[&(ApiKey::Fetch as i16)], (4, 12));
        assert_eq!(apis[&(ApiKey::Metadata as i16)], (0, 12));
        assert_eq!(apis[&(ApiKey::ApiVersions as i16)], (0, 4));
        assert_eq!(apis[&(ApiKey::ListOffsets as i16)], (1, 10));
        // KIP-848, served by default as in Kafka 4.
        assert_eq!(apis[&(ApiKey::ConsumerGroupHeartbeat as i16)], (0, 1));
        assert_eq!(apis[&(ApiKey::ConsumerGroupDescribe as i16)], (0, 1));
        // Transactions, without transaction version 2 (AddPartitionsToTxn v4+, EndTxn v5).
        assert_eq!(apis[&(ApiKey::AddPartitionsToTxn as i16)], (0, 3));
        assert_eq!(apis[&(ApiKey::EndTxn as i16)], (0, 4));
        assert_eq!(apis[&(ApiKey::TxnOffsetCommit as i16)], (0, 4));
        assert_eq!(apis[&(ApiKey::ListTransactions as i16)], (0, 1));
        assert_eq!(apis[&(ApiKey::DescribeTransactions as i16)], (0, 0));
        assert_eq!(apis[&(ApiKey::DescribeProducers as i16)], (0, 0));
        // Not implemented, so not advertised.
        assert_eq!(apis[&(ApiKey::WriteTxnMarkers as i16)], (1, 1));
        assert!(!apis.contains_key(&(ApiKey::GetTelemetrySubscriptions as i16)));
    }
}

/// What the Java clients of Kafka 4.4 do on every connection: ApiVersions v5 (newer than
/// Cairn's), the KIP-511 refusal, ApiVersions v4, then Metadata and InitProducerId. Every request
/// after the refusal is answered, however many follow (the refusal was once written without
/// being counted in the connection's unwritten-answer backlog, which then stopped the reader).
#[test]
fn a_newer_client_handshake_then_every_request_is_answered() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let (id, mut frame) = client.frame(4, &ApiVersionsRequest::default());
    let mut raw = frame.to_vec();
    raw[6..8].copy_from_slice(&5i16.to_be_bytes());
    frame = raw.into();
    client.send_raw(&frame).unwrap();
    let mut refusal = client.read_frame().unwrap();
    assert_eq!(bytes::Buf::get_i32(&mut refusal), id);
    let refusal = ApiVersionsResponse::decode(&mut refusal, 0).unwrap();
    assert_eq!(refusal.error_code, 35);
    let apis = api_versions(&mut client, 4);
    assert_eq!(apis[&(ApiKey::InitProducerId as i16)], (0, 5));
    for _ in 0..100 {
        let metadata = client.call(12, &MetadataRequest::default().with_topics(None));
        assert_eq!(metadata.brokers.len(), 1);
        let init = client.call(
            5,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        );
        assert_eq!(init.error_code, 0);
        assert!(init.producer_id.0 >= 0);
    }
}

#[test]
fn metadata_auto_create_unknown_and_invalid() {
    let cairn = Cairn::start(&["num.partitions=2"]);
    let mut client = cairn.client();
    // v0: an empty list means all topics; none exist yet.
    let all: MetadataResponse =
        client.call(0, &MetadataRequest::default().with_topics(Some(vec![])));
    assert!(all.topics.iter().all(|t| t.is_internal));
    assert_eq!(all.brokers.len(), 1);
    assert_eq!(all.brokers[0].port, cairn.addr.port() as i32);

    let named = |name: &str| {
        Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(name)))
        ])
    };
    // v12: auto-creation answers LEADER_NOT_AVAILABLE once, then the topic with 2 partitions.
    let req = MetadataRequest::default()
        .with_topics(named("auto"))
        .with_allow_auto_topic_creation(true);
    let first = client.call(12, &req);
    assert_eq!(first.topics[0].error_code, 5);
    let second = client.call(12, &req);
    assert_eq!(second.topics[0].error_code, 0);
    assert_eq!(second.topics[0].partitions.len(), 2);
    assert_ne!(second.topics[0].topic_id, uuid::Uuid::nil());
    assert_eq!(second.controller_id.0, 1);
    assert!(second.cluster_id.as_ref().is_some_and(|c| c.len() == 22));
    let p = &second.topics[0].partitions[0];
    assert_eq!(
        (p.leader_id.0, p.replica_nodes.len(), p.isr_nodes.len()),
        (1, 1, 1)
    );

    let no_create = MetadataRequest::default()
        .with_topics(named("nope"))
        .with_allow_auto_topic_creation(false);
    assert_eq!(client.call(12, &no_create).topics[0].error_code, 3);
    let invalid = MetadataRequest::default()
        .with_topics(named("bad name!"))
        .with_allow_auto_topic_creation(true);
    assert_eq!(client.call(12, &invalid).topics[0].error_code, 17);
    // v1+: null = all topics.
    let all = client.call(12, &MetadataRequest::default().with_topics(None));
    assert_eq!(user_topics(&all), 1);
}

#[test]
fn metadata_respects_auto_create_disabled() {
    let cairn = Cairn::start(&["auto.create.topics.enable=false"]);
    let mut client = cairn.client();
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("t")))
        ]))
        .with_allow_auto_topic_creation(true);
    assert_eq!(client.call(12, &req).topics[0].error_code, 3);
}

#[test]
fn create_delete_and_grow_topics() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let creatable = |name: &str, partitions: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    };
    for version in [2i16, 7] {
        let t = format!("created-v{version}");
        let response = client.call(
            version,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    creatable(&t, 3, 1),
                    creatable(&t, 3, 1),
                    creatable("bad/name", 1, 1),
                    creatable(&format!("{t}-zero"), 0, 1),
                    creatable(&format!("{t}-rf"), 1, 3),
                    creatable(&format!("{t}-cfg"), 1, 1).with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_value(Some(StrBytes::from_static_str("shred"))),
                    ]),
                ]),
        );
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        // The duplicate inside one request is answered after the first was created.
        assert_eq!(codes, vec![0, 36, 17, 37, 38, 40], "v{version}");
        if version >= 5 {
            assert_eq!(response.topics[0].num_partitions, 3);
            assert!(response.topics[0]
                .configs
                .as_ref()
                .is_some_and(|c| !c.is_empty()));
        }
    }
    // validate_only creates nothing.
    let response = client.call(
        7,
        &CreateTopicsRequest::default()
            .with_validate_only(true)
            .with_topics(vec![creatable("only-validated", 2, -1)]),
    );
    assert_eq!(response.topics[0].error_code, 0);
    let all = client.call(12, &MetadataRequest::default().with_topics(None));
    assert!(all
        .topics
        .iter()
        .all(|t| t.name.as_ref().unwrap().0.as_str() != "only-validated"));

    // CreatePartitions v0 and v3: grow, refuse shrinking and unknown topics.
    for (version, t) in [(0i16, "created-v2"), (3, "created-v7")] {
        let response = client.call(
            version,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(topic_name(t))
                        .with_count(5),
                    CreatePartitionsTopic::default()
                        .with_name(topic_name(t))
                        .with_count(2),
                    CreatePartitionsTopic::default()
                        .with_name(topic_name("missing"))
                        .with_count(2),
                ]),
        );
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 37, 3]);
    }
    let all = client.call(12, &MetadataRequest::default().with_topics(None));
    let grown = all
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "created-v7")
        .unwrap();
    assert_eq!(grown.partitions.len(), 5);

    // DeleteTopics v1 (names) and v6 (topic states).
    let v1 = client.call(
        1,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topic_names(vec![topic_name("created-v2"), topic_name("missing")]),
    );
    let codes: Vec<i16> = v1.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    let v6 = client.call(
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name("created-v7")))
            ]),
    );
    assert_eq!(v6.responses[0].error_code, 0);
    assert_ne!(v6.responses[0].topic_id, uuid::Uuid::nil());
    let all = client.call(12, &MetadataRequest::default().with_topics(None));
    let names: Vec<&str> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.as_str())
        .collect();
    assert!(
        !names.contains(&"created-v2") && !names.contains(&"created-v7"),
        "{names:?}"
    );
    // A deleted topic can be created again, empty.
    create_topic(&mut client, "created-v7", 1, &[]);
    assert!(fetched_records(&fetch(&mut client, 12, "created-v7", 0, 0)).is_empty());
}

#[test]
fn produce_and_fetch_lowest_and_highest_versions() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "pf", 1, &[]);
    let (error, base) = produce(&mut client, 3, "pf", 0, batch(&["a", "b", "c"], 1_000));
    assert_eq!((error, base), (0, 0));
    let (error, base) = produce(&mut client, 12, "pf", 0, batch(&["d", "e"], 2_000));
    assert_eq!((error, base), (0, 3));
    for version in [4i16, 12] {
        let response = fetch(&mut client, version, "pf", 0, 0);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, 5);
        assert_eq!(p.last_stable_offset, 5);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let records = fetched_records(&response);
        let values: Vec<(i64, String)> = records
            .iter()
            .map(|r| (r.0, r.2.clone().unwrap()))
            .collect();
        assert_eq!(
            values,
            vec![
                (0, "a".into()),
                (1, "b".into()),
                (2, "c".into()),
                (3, "d".into()),
                (4, "e".into())
            ]
        );
        assert_eq!(records[3].3, 2_000);
    }
    // Fetching from inside a batch returns the whole batch that contains the offset.
    let from_middle = fetched_records(&fetch(&mut client, 12, "pf", 0, 1));
    assert_eq!(from_middle.first().unwrap().0, 0);
    // At the high watermark: empty, no error. Past it: OFFSET_OUT_OF_RANGE.
    let at_end = fetch(&mut client, 12, "pf", 0, 5);
    assert_eq!(at_end.responses[0].partitions[0].error_code, 0);
    assert!(fetched_records(&at_end).is_empty());
    assert_eq!(
        fetch(&mut client, 12, "pf", 0, 6).responses[0].partitions[0].error_code,
        1
    );
    // Unknown partition.
    assert_eq!(
        fetch(&mut client, 12, "pf", 7, 0).responses[0].partitions[0].error_code,
        3
    );
    let (error, _) = produce(&mut client, 12, "pf", 9, batch(&["x"], 0));
    assert_eq!(error, 3);
}

#[test]
fn acks_zero_gets_no_response_and_order_is_kept() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "a0", 1, &[]);
    let (_, silent) = client.frame(9, &produce_request("a0", 0, 0, batch(&["quiet"], 1)));
    client.send_raw(&silent).unwrap();
    // The next response on the connection is the Metadata answer, with its own correlation id.
    let metadata = client.call(12, &MetadataRequest::default().with_topics(None));
    assert_eq!(user_topics(&metadata), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let records = fetched_records(&fetch(&mut client, 12, "a0", 0, 0));
        if records.len() == 1 {
            assert_eq!(records[0].2.as_deref(), Some("quiet"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acks=0 record never appeared"
        );
    }
}

#[test]
fn long_poll_waits_and_is_woken_by_produce_and_keeps_order() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "lp", 1, &[]);
    // A parked fetch, then a Metadata request pipelined behind it on the same connection.
    let (fetch_id, fetch_frame) = client.frame(12, &fetch_request("lp", 0, 0, 20_000, 1));
    let (meta_id, meta_frame) = client.frame(12, &MetadataRequest::default().with_topics(None));
    client.send_raw(&fetch_frame).unwrap();
    client.send_raw(&meta_frame).unwrap();
    let started = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut producer = cairn.client();
    assert_eq!(
        produce(&mut producer, 12, "lp", 0, batch(&["wake"], 5)).0,
        0
    );
    let fetched: FetchResponse = client.response::<FetchRequest>(fetch_id, 12);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "fetch was not woken by the produce"
    );
    assert_eq!(fetched_records(&fetched)[0].2.as_deref(), Some("wake"));
    let meta: MetadataResponse = client.response::<MetadataRequest>(meta_id, 12);
    assert_eq!(user_topics(&meta), 1);
    // With nothing to read, max_wait_ms bounds the wait.
    let started = std::time::Instant::now();
    let empty = client.call(12, &fetch_request("lp", 0, 1, 300, 1));
    assert!(fetched_records(&empty).is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
}

#[test]
fn list_offsets_lowest_and_highest_versions() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "lo", 1, &[]);
    produce(&mut client, 12, "lo", 0, batch(&["a", "b"], 1_000));
    produce(&mut client, 12, "lo", 0, batch(&["c", "d"], 5_000));
    let query = |client: &mut Client, version: i16, ts: i64| {
        let response = client.call(
            version,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name("lo"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts)])]),
        );
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    for version in [1i16, 10] {
        assert_eq!(query(&mut client, version, -1), (0, 4, -1));
        assert_eq!(query(&mut client, version, -2), (0, 0, -1));
        assert_eq!(query(&mut client, version, 1_001), (0, 1, 1_001));
        assert_eq!(query(&mut client, version, 1_002), (0, 2, 5_000));
        assert_eq!(query(&mut client, version, 9_999), (0, -1, -1));
    }
    assert_eq!(query(&mut client, 10, -3), (0, 3, 5_001));
}

#[test]
fn idempotent_producer_dedupes_and_checks_sequences() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "idem", 1, &[]);
    for version in [0i16, 5] {
        let r = client.call(
            version,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        assert_eq!(r.error_code, 0);
        assert!(r.producer_id.0 >= 0);
        assert_eq!(r.producer_epoch, 0);
    }
    let init = client.call(
        4,
        &InitProducerIdRequest::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    let pid = init.producer_id.0;
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["a", "b"], pid, 0, 0)
        ),
        (0, 0)
    );
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["c"], pid, 0, 2)
        ),
        (0, 2)
    );
    // A retry of the first batch: no error, its original offset, nothing written twice.
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["a", "b"], pid, 0, 0)
        ),
        (0, 0)
    );
    // A gap in the sequence.
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["z"], pid, 0, 7)
        )
        .0,
        45
    );
    // Dedup state survives a restart.
    cairn.restart();
    let mut client = cairn.client();
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["c"], pid, 0, 2)
        ),
        (0, 2)
    );
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["d"], pid, 0, 3)
        ),
        (0, 3)
    );
    // A bumped epoch starts again at 0; the old epoch is then fenced.
    let bumped = client.call(
        4,
        &InitProducerIdRequest::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0),
    );
    assert_eq!((bumped.producer_id.0, bumped.producer_epoch), (pid, 1));
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["e"], pid, 1, 0)
        ),
        (0, 4)
    );
    assert_eq!(
        produce(
            &mut client,
            12,
            "idem",
            0,
            idempotent_batch(&["f"], pid, 0, 4)
        )
        .0,
        47
    );
    let values: Vec<String> = fetched_records(&fetch(&mut client, 12, "idem", 0, 0))
        .into_iter()
        .map(|r| r.2.unwrap())
        .collect();
    assert_eq!(values, vec!["a", "b", "c", "d", "e"]);
    // A transactional id needs a positive transaction timeout.
    let txn = client.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(txn.error_code, 50);
}

#[test]
fn restart_keeps_every_record_and_topic() {
    let mut cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "durable", 2, &[("retention.ms", "-1")]);
    for i in 0..20 {
        let value = format!("v{i}");
        assert_eq!(
            produce(
                &mut client,
                12,
                "durable",
                i % 2,
                batch(&[&value], i as i64)
            )
            .0,
            0
        );
    }
    cairn.restart();
    let mut client = cairn.client();
    for p in 0..2 {
        let records = fetched_records(&fetch(&mut client, 12, "durable", p, 0));
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (0..10).collect::<Vec<_>>());
        let values: Vec<String> = records.iter().map(|r| r.2.clone().unwrap()).collect();
        let expected: Vec<String> = (0..20)
            .filter(|i| i % 2 == p)
            .map(|i| format!("v{i}"))
            .collect();
        assert_eq!(values, expected);
    }
    let described = describe_topic_configs(&mut client, 4, "durable");
    assert_eq!(described["retention.ms"], (Some("-1".to_string()), 1));
    // Production continues at the next offset.
    assert_eq!(
        produce(&mut client, 12, "durable", 0, batch(&["after"], 99)),
        (0, 10)
    );
}

fn describe_topic_configs(
    client: &mut Client,
    version: i16,
    topic: &str,
) -> BTreeMap<String, (Option<String>, i8)> {
    let response = client.call(
        version,
        &DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None)]),
    );
    assert_eq!(response.results[0].error_code, 0);
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                (c.value.as_ref().map(|v| v.to_string()), c.config_source),
            )
        })
        .collect()
}

#[test]
fn describe_and_alter_configs() {
    let cairn = Cairn::start(&["log.retention.hours=48"]);
    let mut client = cairn.client();
    create_topic(&mut client, "cfg", 1, &[("cleanup.policy", "compact")]);
    for version in [1i16, 4] {
        let configs = describe_topic_configs(&mut client, version, "cfg");
        assert_eq!(configs["cleanup.policy"], (Some("compact".into()), 1));
        assert_eq!(
            configs["retention.ms"],
            (Some("172800000".into()), 4),
            "static broker synonym"
        );
        assert_eq!(
            configs["segment.bytes"],
            (Some("1073741824".into()), 5),
            "default"
        );
    }
    // Broker configs: the explicit one is static (4), the rest defaults (5).
    let broker = client.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(Some(vec![
                StrBytes::from_static_str("log.retention.hours"),
                StrBytes::from_static_str("num.partitions"),
            ]))]),
    );
    let b: BTreeMap<String, (Option<String>, i8)> = broker.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                (c.value.as_ref().map(|v| v.to_string()), c.config_source),
            )
        })
        .collect();
    assert_eq!(b.len(), 2);
    assert_eq!(b["log.retention.hours"], (Some("48".into()), 4));
    assert_eq!(b["num.partitions"], (Some("1".into()), 5));
    // Unknown topic.
    let missing = client.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("nope"))]),
    );
    assert_eq!(missing.results[0].error_code, 3);

    // IncrementalAlterConfigs v0 and v1: SET, APPEND, DELETE; invalid values refused.
    let op = |name: &str, operation: i8, value: Option<&str>| {
        inc::AlterableConfig::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_config_operation(operation)
            .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
    };
    let alter = |client: &mut Client, version: i16, ops: Vec<inc::AlterableConfig>| {
        client
            .call(
                version,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    inc::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("cfg"))
                        .with_configs(ops),
                ]),
            )
            .responses[0]
            .error_code
    };
    assert_eq!(
        alter(
            &mut client,
            0,
            vec![
                op("retention.ms", 0, Some("60000")),
                op("cleanup.policy", 2, Some("delete"))
            ]
        ),
        0
    );
    let configs = describe_topic_configs(&mut client, 4, "cfg");
    assert_eq!(configs["retention.ms"], (Some("60000".into()), 1));
    assert_eq!(
        configs["cleanup.policy"],
        (Some("compact,delete".into()), 1)
    );
    assert_eq!(alter(&mut client, 1, vec![op("retention.ms", 1, None)]), 0);
    assert_eq!(
        describe_topic_configs(&mut client, 4, "cfg")["retention.ms"].1,
        4
    );
    assert_eq!(
        alter(&mut client, 1, vec![op("retention.ms", 0, Some("soon"))]),
        40
    );
    assert_eq!(
        alter(&mut client, 1, vec![op("no.such.config", 0, Some("1"))]),
        40
    );
    assert_eq!(
        alter(&mut client, 1, vec![op("retention.ms", 2, Some("1"))]),
        40,
        "APPEND on a non-list"
    );

    // Legacy AlterConfigs v0 and v2 replace the whole set.
    for version in [0i16, 2] {
        let r = client.call(
            version,
            &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.ms"))
                    .with_value(Some(StrBytes::from_static_str("3600000")))])]),
        );
        assert_eq!(r.responses[0].error_code, 0);
    }
    let configs = describe_topic_configs(&mut client, 4, "cfg");
    assert_eq!(configs["segment.ms"], (Some("3600000".into()), 1));
    assert_eq!(
        configs["cleanup.policy"].1, 5,
        "replaced set no longer holds cleanup.policy"
    );
    // num.partitions cannot change at runtime: Kafka's INVALID_REQUEST.
    let r = client.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1"))
                .with_configs(vec![op("num.partitions", 0, Some("3"))]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 42);
}

#[test]
fn delete_records_moves_log_start_offset() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "dr", 1, &[]);
    for i in 0..5 {
        produce(&mut client, 12, "dr", 0, batch(&[&format!("v{i}")], i));
    }
    let delete = |client: &mut Client, version: i16, offset: i64| {
        let r = client.call(
            version,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic_name("dr"))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset)])]),
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };
    assert_eq!(delete(&mut client, 0, 2), (0, 2));
    assert_eq!(delete(&mut client, 2, 99).0, 1);
    let response = fetch(&mut client, 12, "dr", 0, 2);
    assert_eq!(response.responses[0].partitions[0].log_start_offset, 2);
    assert_eq!(
        fetch(&mut client, 12, "dr", 0, 0).responses[0].partitions[0].error_code,
        1
    );
    assert_eq!(delete(&mut client, 2, -1), (0, 5));
}

#[test]
fn describe_cluster_and_offset_for_leader_epoch() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [0i16, 1] {
        let r = client.call(version, &DescribeClusterRequest::default());
        assert_eq!(r.error_code, 0);
        assert_eq!(r.controller_id.0, 1);
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].port, cairn.addr.port() as i32);
    }
    create_topic(&mut client, "ep", 1, &[]);
    produce(&mut client, 12, "ep", 0, batch(&["a", "b", "c"], 0));
    for version in [2i16, 4] {
        let r = client.call(
            version,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(topic_name("ep"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(0)])]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));
    }
}

/// Topics other than internal ones (`__consumer_offsets`).
fn user_topics(metadata: &MetadataResponse) -> usize {
    metadata.topics.iter().filter(|t| !t.is_internal).count()
}

#[test]
fn describe_log_dirs_reports_partition_sizes_and_the_volume() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "ld", 2, &[]);
    let values: Vec<String> = (0..100).map(|i| format!("{i:0>100}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    produce(&mut client, 12, "ld", 0, batch(&refs, 0));
    let sizes = |r: &DescribeLogDirsResponse| -> BTreeMap<(String, i32), i64> {
        assert_eq!(r.results.len(), 1, "one data directory");
        r.results[0]
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ((t.name.0.to_string(), p.partition_index), p.partition_size))
            })
            .collect()
    };
    for version in [1i16, 4] {
        // Every partition when no topic is named.
        let all = client.call(
            version,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(all.results[0].error_code, 0);
        let all = sizes(&all);
        assert!(all[&("ld".to_string(), 0)] > 100 * 100, "{all:?}");
        assert_eq!(all[&("ld".to_string(), 1)], 0);
        assert_eq!(all.keys().filter(|(t, _)| t == "ld").count(), 2, "{all:?}");

        // Only the named partitions that exist.
        let some = client.call(
            version,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(topic_name("ld"))
                    .with_partitions(vec![1, 7]),
                DescribableLogDirTopic::default()
                    .with_topic(topic_name("nope"))
                    .with_partitions(vec![0]),
            ])),
        );
        let dir = &some.results[0];
        let expected = std::fs::canonicalize(&cairn.data_dir).expect("data dir");
        assert_eq!(dir.log_dir.as_str(), expected.display().to_string());
        assert_eq!(
            sizes(&some).into_keys().collect::<Vec<_>>(),
            [("ld".to_string(), 1)]
        );
        if version >= 4 {
            assert!(dir.total_bytes > 0, "{dir:?}");
            assert!((0..=dir.total_bytes).contains(&dir.usable_bytes), "{dir:?}");
        }
    }
}

/// ElectLeaders on a single node: each partition's one replica already leads (v0 has no
/// election type and means PREFERRED); an unknown partition and an unknown election type are
/// refused.
#[test]
fn elect_leaders_on_a_single_node() {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "el", 2, &[]);
    let asked = |election_type: i8| {
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(5000)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name("el"))
                .with_partitions(vec![1, 5])]))
    };
    for (version, election_type) in [(0i16, 0i8), (1, 1), (2, 0)] {
        let r = client.call(version, &asked(election_type));
        assert_eq!(r.error_code, 0);
        let codes: Vec<(i32, i16)> = r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(codes, vec![(1, 84), (5, 3)], "v{version}");
    }
    let r = client.call(2, &asked(7));
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    let all = client.call(
        2,
        &ElectLeadersRequest::default()
            .with_topic_partitions(None)
            .with_timeout_ms(5000),
    );
    assert_eq!(all.error_code, 0);
    assert!(
        all.replica_election_results.is_empty(),
        "no election needed anywhere"
    );
}
