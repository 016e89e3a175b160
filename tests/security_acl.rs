//! ACLs against the real binary (`authorizer.class.name` = StandardAuthorizer): CreateAcls,
//! DescribeAcls and DeleteAcls managed by a super user over SASL, a principal with no ACLs
//! refused everything Kafka refuses (read, write, create, delete, alter configs, commit
//! offsets, learn topic names), ACLs that allow and deny, and ACLs kept across a restart.

mod security_support;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest,
    DescribeAclsRequest, DescribeProducersRequest, DescribeTransactionsRequest, EndTxnRequest,
    FetchRequest, GroupId, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    ListTransactionsRequest, MetadataRequest, OffsetCommitRequest, ProduceRequest,
    SaslAuthenticateRequest, SaslHandshakeRequest, TopicName, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use security_support::{free_port, Broker, Client};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;

// Wire codes of Kafka's ACL enums.
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ANY: i8 = 1;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const ALTER_CONFIGS: i8 = 11;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic(text: &str) -> TopicName {
    TopicName(s(text))
}

/// A SASL_PLAINTEXT listener with PLAIN users admin (a super user), alice and bob, and the
/// StandardAuthorizer; the data directory is `data` so a second start finds the same ACLs.
fn start(data: &std::path::Path, authorizer: bool) -> (Broker, SocketAddr) {
    start_with(data, authorizer, &[])
}

fn start_with(data: &std::path::Path, authorizer: bool, extra: &[String]) -> (Broker, SocketAddr) {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let jaas = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-pw" user_admin="admin-pw" user_alice="alice-pw" user_bob="bob-pw";"#;
    let mut lines = vec![
        format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
        "sasl.enabled.mechanisms=PLAIN".into(),
        format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}"),
        format!("log.dirs={}", data.display()),
        "super.users=User:admin".into(),
    ];
    if authorizer {
        lines.push(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        );
    }
    lines.extend_from_slice(extra);
    (Broker::start(&lines, &[addr]), addr)
}

fn login(addr: SocketAddr, user: &str) -> Client {
    let mut client = Client::plain(addr);
    let r = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
    );
    assert_eq!(r.error_code, 0);
    let token = format!("\0{user}\0{user}-pw");
    let r = client.call(
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
    );
    assert_eq!(r.error_code, 0, "{user} login: {:?}", r.error_message);
    client
}

fn metadata(client: &mut Client, names: Option<&[&str]>) -> Vec<(String, i16)> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(names.map(|ns| {
            ns.iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                .collect()
        }));
    let r = client.call(12, &request);
    let mut out: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
        .collect();
    out.sort();
    out
}

fn create_topic(client: &mut Client, name: &str) -> i16 {
    let r = client.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    r.topics[0].error_code
}

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon_ms: None,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce(client: &mut Client, name: &str) -> i16 {
    produce_with_acks(client, name, 1)
}

fn produce_with_acks(client: &mut Client, name: &str, acks: i16) -> i16 {
    let r = client.call(
        9,
        &ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic(name))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch()))])]),
    );
    r.responses[0].partition_responses[0].error_code
}

fn fetch(client: &mut Client, name: &str) -> i16 {
    let r = client.call(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    r.responses[0].partitions[0].error_code
}

fn commit(client: &mut Client, group: &str, name: &str) -> i16 {
    let r = client.call(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(0)])]),
    );
    r.topics[0].partitions[0].error_code
}

fn acl(resource: i8, name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

fn create_acls(client: &mut Client, acls: Vec<AclCreation>) -> Vec<i16> {
    let r = client.call(3, &CreateAclsRequest::default().with_creations(acls));
    r.results.iter().map(|r| r.error_code).collect()
}

fn every_acl() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// (resource name, principal, operation, permission) of every ACL, sorted.
fn list_acls(client: &mut Client) -> Vec<(String, String, i8, i8)> {
    let r = client.call(3, &every_acl());
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let mut out: Vec<_> = r
        .resources
        .iter()
        .flat_map(|res| {
            res.acls.iter().map(|a| {
                (
                    res.resource_name.to_string(),
                    a.principal.to_string(),
                    a.operation,
                    a.permission_type,
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_principal_without_acls_can_do_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    assert_eq!(create_topic(&mut admin, "orders"), 0);
    assert_eq!(produce(&mut admin, "orders"), 0);

    let mut bob = login(addr, "bob");
    // Learns no topic name: all topics is empty, a named one is refused, and auto-creation
    // (which needs CREATE) neither happens nor reveals anything.
    assert_eq!(metadata(&mut bob, None), vec![]);
    assert_eq!(
        metadata(&mut bob, Some(&["orders", "fresh"])),
        vec![
            ("fresh".into(), TOPIC_AUTHORIZATION_FAILED),
            ("orders".into(), TOPIC_AUTHORIZATION_FAILED)
        ]
    );
    assert_eq!(metadata(&mut admin, None), vec![("orders".into(), 0)]);
    assert_eq!(produce(&mut bob, "orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(fetch(&mut bob, "orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(create_topic(&mut bob, "mine"), TOPIC_AUTHORIZATION_FAILED);
    let r = bob.call(
        5,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topic_names(vec![topic("orders")]),
    );
    assert_eq!(r.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let r = bob.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(s("orders"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("1000")))]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(commit(&mut bob, "g", "orders"), GROUP_AUTHORIZATION_FAILED);
    let r = bob.call(4, &ListGroupsRequest::default());
    assert_eq!(r.groups.len(), 0);
    assert_eq!(
        create_acls(
            &mut bob,
            vec![acl(TOPIC, "orders", LITERAL, "User:bob", READ, ALLOW)]
        ),
        vec![CLUSTER_AUTHORIZATION_FAILED]
    );
    // The topic is still there, unchanged, and nothing was auto-created.
    assert_eq!(metadata(&mut admin, None), vec![("orders".into(), 0)]);
}

/// CreateTopics v7 creating `name` with one topic config; the topic's result.
fn create_with_config(
    client: &mut Client,
    name: &str,
) -> kafka_protocol::messages::create_topics_response::CreatableTopicResult {
    let mut r = client.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("-1")))])]),
    );
    r.topics.remove(0)
}

#[test]
fn create_topics_returns_configs_only_to_who_may_describe_them() {
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    // alice may create `jobs-*` topics but not describe their configs; bob may do both.
    assert_eq!(
        create_acls(
            &mut admin,
            vec![
                acl(TOPIC, "jobs-", PREFIXED, "User:alice", CREATE, ALLOW),
                acl(TOPIC, "jobs-", PREFIXED, "User:bob", CREATE, ALLOW),
                acl(TOPIC, "jobs-", PREFIXED, "User:bob", ALTER_CONFIGS, ALLOW),
            ]
        ),
        vec![0, 0, 0]
    );

    // As Kafka: created, but the configs, partition count and replication factor stay hidden
    // and topic_config_error_code says why.
    let mut alice = login(addr, "alice");
    let r = create_with_config(&mut alice, "jobs-alice");
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.topic_config_error_code, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!((r.num_partitions, r.replication_factor), (-1, -1));
    assert_eq!(r.configs.as_deref().unwrap_or_default().len(), 0);
    assert_eq!(
        metadata(&mut admin, Some(&["jobs-alice"])),
        vec![("jobs-alice".into(), 0)]
    );

    // ALTER_CONFIGS implies DESCRIBE_CONFIGS: bob sees what he created, as does a super user.
    let mut bob = login(addr, "bob");
    for (client, name) in [(&mut bob, "jobs-bob"), (&mut admin, "jobs-admin")] {
        let r = create_with_config(client, name);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.topic_config_error_code, 0);
        assert_eq!((r.num_partitions, r.replication_factor), (2, 1));
        let retention = r
            .configs
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .expect("retention.ms is returned");
        assert_eq!(retention.value.as_deref(), Some("-1"));
    }
}

#[test]
fn acls_allow_and_deny_and_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    for t in ["orders", "logs-app", "logs-secret"] {
        assert_eq!(create_topic(&mut admin, t), 0);
    }
    let created = create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW),
            acl(TOPIC, "logs-", PREFIXED, "User:alice", WRITE, ALLOW),
            acl(TOPIC, "logs-secret", LITERAL, "User:alice", WRITE, DENY),
            acl(GROUP, "*", LITERAL, "User:alice", READ, ALLOW),
        ],
    );
    assert_eq!(created, vec![0, 0, 0, 0]);
    let check = |addr: SocketAddr| {
        let mut alice = login(addr, "alice");
        // DESCRIBE is implied by READ and WRITE: alice sees exactly her three topics.
        assert_eq!(
            metadata(&mut alice, None),
            vec![
                ("logs-app".into(), 0),
                ("logs-secret".into(), 0),
                ("orders".into(), 0)
            ]
        );
        assert_eq!(produce(&mut alice, "logs-app"), 0);
        assert_eq!(
            produce(&mut alice, "logs-secret"),
            TOPIC_AUTHORIZATION_FAILED
        );
        assert_eq!(produce(&mut alice, "orders"), TOPIC_AUTHORIZATION_FAILED);
        assert_eq!(fetch(&mut alice, "orders"), 0);
        assert_eq!(fetch(&mut alice, "logs-app"), TOPIC_AUTHORIZATION_FAILED);
        assert_eq!(commit(&mut alice, "g", "orders"), 0);
        assert_eq!(
            commit(&mut alice, "g", "logs-app"),
            TOPIC_AUTHORIZATION_FAILED
        );
    };
    check(addr);
    let before = list_acls(&mut admin);
    assert_eq!(before.len(), 4);
    drop(admin);
    drop(broker);

    let (broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    assert_eq!(list_acls(&mut admin), before);
    check(addr);

    // Delete alice's topic ACLs by filter; her group ACL stays.
    let r = admin.call(
        3,
        &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(ANY)
            .with_principal_filter(Some(s("User:alice")))
            .with_operation(ANY)
            .with_permission_type(ANY)]),
    );
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 3);
    assert_eq!(list_acls(&mut admin).len(), 1);
    let mut alice = login(addr, "alice");
    assert_eq!(metadata(&mut alice, None), vec![]);
    assert_eq!(fetch(&mut alice, "orders"), TOPIC_AUTHORIZATION_FAILED);
    drop(broker);
}

#[test]
fn without_an_authorizer_acl_apis_say_security_disabled_and_all_is_allowed() {
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), false);
    let mut bob = login(addr, "bob");
    let r = bob.call(3, &every_acl());
    assert_eq!(r.error_code, SECURITY_DISABLED);
    assert_eq!(
        create_acls(
            &mut bob,
            vec![acl(TOPIC, "t", LITERAL, "User:bob", READ, ALLOW)]
        ),
        vec![SECURITY_DISABLED]
    );
    assert_eq!(create_topic(&mut bob, "t"), 0);
    assert_eq!(produce(&mut bob, "t"), 0);
    assert_eq!(fetch(&mut bob, "t"), 0);
}

/// One GET over a fresh connection; the status code of the answer.
fn http_get(addr: SocketAddr, path: &str, basic: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = basic
        .map(|b| {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(b);
            format!("Authorization: Basic {encoded}\r\n")
        })
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

#[test]
fn the_http_listener_asks_for_the_same_users_and_cluster_describe() {
    let data = tempfile::tempdir().unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (_broker, addr) = start_with(
        data.path(),
        true,
        &[
            format!("cairn.http.listen={http}"),
            "cairn.http.authentication=basic".into(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(std::time::Instant::now() < deadline, "no HTTP listener");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(http_get(http, "/metrics", None), 401);
    assert_eq!(http_get(http, "/metrics", Some("admin:wrong")), 401);
    assert_eq!(http_get(http, "/v1/status", Some("alice:alice-pw")), 403);
    assert_eq!(http_get(http, "/metrics", Some("admin:admin-pw")), 200);
    // A cluster DESCRIBE ACL lets alice in.
    let mut admin = login(addr, "admin");
    let describe_cluster = AclCreation::default()
        .with_resource_type(4)
        .with_resource_name(s("kafka-cluster"))
        .with_resource_pattern_type(LITERAL)
        .with_principal(s("User:alice"))
        .with_host(s("*"))
        .with_operation(8)
        .with_permission_type(ALLOW);
    assert_eq!(create_acls(&mut admin, vec![describe_cluster]), vec![0]);
    assert_eq!(http_get(http, "/v1/status", Some("alice:alice-pw")), 200);
    assert!(!std::fs::read_to_string(&_broker.log)
        .unwrap()
        .contains("alice-pw"));
}

#[test]
fn http_key_lookups_need_read_on_the_topic() {
    let data = tempfile::tempdir().unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (_broker, addr) = start_with(
        data.path(),
        true,
        &[
            format!("cairn.http.listen={http}"),
            "cairn.http.authentication=basic".into(),
        ],
    );
    let mut admin = login(addr, "admin");
    let r = admin.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic("kv"))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("cairn.key.index.enable"))
                    .with_value(Some(s("true")))])]),
    );
    assert_eq!(r.topics[0].error_code, 0);
    // acks=all: the record is below the high watermark when acknowledged, so the next lookup
    // sees it.
    assert_eq!(produce_with_acks(&mut admin, "kv", -1), 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(std::time::Instant::now() < deadline, "no HTTP listener");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let path = "/v1/topics/kv/keys/k";
    assert_eq!(http_get(http, path, None), 401);
    assert_eq!(http_get(http, path, Some("admin:admin-pw")), 200);
    // No ACL at all: the topic's existence is not revealed.
    assert_eq!(http_get(http, path, Some("alice:alice-pw")), 404);
    // DESCRIBE alone (or a cluster DESCRIBE) does not read values.
    let describe = acl(2, "kv", LITERAL, "User:alice", 8, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![describe]), vec![0]);
    assert_eq!(http_get(http, path, Some("alice:alice-pw")), 403);
    let read = acl(2, "kv", LITERAL, "User:alice", 3, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![read]), vec![0]);
    assert_eq!(http_get(http, path, Some("alice:alice-pw")), 200);
    assert_eq!(http_get(http, path, Some("bob:bob-pw")), 404);
}

#[test]
fn a_transactional_id_needs_write_on_it() {
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    assert_eq!(create_topic(&mut admin, "t"), 0);
    let init = |client: &mut Client| {
        client
            .call(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(s("tx-alice").into()))
                    .with_transaction_timeout_ms(10_000)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            )
            .error_code
    };
    let mut alice = login(addr, "alice");
    let write = acl(2, "t", LITERAL, "User:alice", 4, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![write]), vec![0]);
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED without WRITE on the transactional id.
    assert_eq!(init(&mut alice), 53);
    let txn_write = acl(5, "tx-", PREFIXED, "User:alice", 4, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![txn_write]), vec![0]);
    assert_eq!(init(&mut alice), 0);
    // EndTxn for an id alice may not use is refused before the coordinator sees it.
    let r = alice.call(
        3,
        &EndTxnRequest::default()
            .with_transactional_id(s("other").into())
            .with_producer_id(0.into())
            .with_producer_epoch(0)
            .with_committed(true),
    );
    assert_eq!(r.error_code, 53);
}

#[test]
fn transaction_admin_apis_show_only_what_acls_allow() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    assert_eq!(create_topic(&mut admin, "t"), 0);
    for id in ["tx-a", "tx-b"] {
        let r = admin.call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(s(id).into()))
                .with_transaction_timeout_ms(10_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        );
        assert_eq!(r.error_code, 0);
    }
    let mut alice = login(addr, "alice");
    let listed = |client: &mut Client| -> Vec<String> {
        let r = client.call(
            1,
            &ListTransactionsRequest::default().with_duration_filter(-1),
        );
        assert_eq!(r.error_code, 0);
        let mut ids: Vec<String> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect();
        ids.sort();
        ids
    };
    // Nothing listed without DESCRIBE on a transactional id (5); then only that id.
    assert!(listed(&mut alice).is_empty());
    let describe_a = acl(5, "tx-a", LITERAL, "User:alice", 8, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![describe_a]), vec![0]);
    assert_eq!(listed(&mut alice), vec!["tx-a"]);
    assert_eq!(listed(&mut admin), vec!["tx-a", "tx-b"]);
    let r = alice.call(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![s("tx-a").into(), s("tx-b").into()]),
    );
    let codes: Vec<i16> = r.transaction_states.iter().map(|t| t.error_code).collect();
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the id alice may not describe.
    assert_eq!(codes, vec![0, 53]);
    assert_eq!(r.transaction_states[0].transaction_state.as_str(), "Empty");
    // DescribeProducers needs READ on the topic.
    let producers = |client: &mut Client| {
        let r = client.call(
            0,
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0])]),
        );
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(producers(&mut alice), TOPIC_AUTHORIZATION_FAILED);
    let read = acl(TOPIC, "t", LITERAL, "User:alice", READ, ALLOW);
    assert_eq!(create_acls(&mut admin, vec![read]), vec![0]);
    assert_eq!(producers(&mut alice), 0);
    // WriteTxnMarkers needs CLUSTER_ACTION on the cluster.
    let markers = |client: &mut Client| {
        use kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        let r = client.call(
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(7.into())
                .with_producer_epoch(0)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0])])]),
        );
        r.markers[0].topics[0].partitions[0].error_code
    };
    assert_eq!(markers(&mut alice), CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(markers(&mut admin), 0);
}

#[test]
fn a_consumer_group_member_may_subscribe_only_to_topics_it_may_describe() {
    let data = tempfile::tempdir().unwrap();
    let (_broker, addr) = start(data.path(), true);
    let mut admin = login(addr, "admin");
    assert_eq!(create_topic(&mut admin, "open"), 0);
    assert_eq!(create_topic(&mut admin, "secret"), 0);
    assert_eq!(
        create_acls(
            &mut admin,
            vec![
                acl(GROUP, "g", LITERAL, "User:alice", READ, ALLOW),
                acl(TOPIC, "open", LITERAL, "User:alice", READ, ALLOW),
            ]
        ),
        vec![0, 0]
    );
    let mut alice = login(addr, "alice");
    let join = |topics: &[&str]| {
        kafka_protocol::messages::ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("m-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(topics.iter().map(|t| topic(t)).collect()))
            .with_topic_partitions(Some(vec![]))
    };
    // READ implies DESCRIBE: the open topic is fine; the secret one refuses the whole request.
    let r = alice.call(1, &join(&["open", "secret"]));
    assert_eq!(r.error_code, TOPIC_AUTHORIZATION_FAILED);
    let r = alice.call(1, &join(&["open"]));
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.member_epoch, 1);
}
