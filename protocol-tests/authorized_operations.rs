//! Authorized operations (KIP-430) in Metadata, DescribeCluster and DescribeGroups: with no
//! authorizer, every operation Kafka defines for the resource's type when the client asks, and
//! Kafka's "not requested" value (i32::MIN) when it does not.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::util::*;

const NOT_REQUESTED: i32 = i32::MIN;

/// The operation names a bitfield grants, as Kafka's AclOperation codes name them.
fn operations(bits: i32) -> Vec<&'static str> {
    assert_ne!(bits, NOT_REQUESTED, "operations were not answered");
    let names = [
        (3, "READ"),
        (4, "WRITE"),
        (5, "CREATE"),
        (6, "DELETE"),
        (7, "ALTER"),
        (8, "DESCRIBE"),
        (9, "CLUSTER_ACTION"),
        (10, "DESCRIBE_CONFIGS"),
        (11, "ALTER_CONFIGS"),
        (12, "IDEMPOTENT_WRITE"),
    ];
    let known: i32 = names.iter().fold(0, |b, (bit, _)| b | 1 << bit);
    assert_eq!(bits & !known, 0, "unknown operation bits in {bits:#x}");
    names
        .iter()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

const TOPIC: &[&str] = &[
    "READ",
    "WRITE",
    "CREATE",
    "DELETE",
    "ALTER",
    "DESCRIBE",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
];
const GROUP: &[&str] = &[
    "READ",
    "DELETE",
    "DESCRIBE",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
];
const CLUSTER: &[&str] = &[
    "CREATE",
    "ALTER",
    "DESCRIBE",
    "CLUSTER_ACTION",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
];

fn metadata(
    client: &mut Client,
    version: i16,
    topics: &[&str],
    include_cluster: bool,
    include_topics: bool,
) -> MetadataResponse {
    client.call(
        version,
        &MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false)
            .with_include_cluster_authorized_operations(include_cluster)
            .with_include_topic_authorized_operations(include_topics),
    )
}

#[test]
fn metadata_authorized_operations() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "ops", 1, &[]);
    for version in [8i16, 10, 12] {
        // v11 dropped the cluster's operations from Metadata (DescribeCluster answers them).
        let cluster_field = version <= 10;
        let asked = metadata(
            &mut client,
            version,
            &["ops", "missing"],
            cluster_field,
            true,
        );
        assert_eq!(asked.topics.len(), 2);
        for topic in &asked.topics {
            // The unknown topic too: the operations are the client's on that name.
            assert_eq!(
                operations(topic.topic_authorized_operations),
                TOPIC,
                "v{version} {:?}",
                topic.name
            );
        }
        let quiet = metadata(&mut client, version, &["ops"], false, false);
        assert_eq!(quiet.topics[0].topic_authorized_operations, NOT_REQUESTED);
        assert_eq!(quiet.cluster_authorized_operations, NOT_REQUESTED);
        if cluster_field {
            assert_eq!(
                operations(asked.cluster_authorized_operations),
                CLUSTER,
                "v{version}"
            );
        }
    }
    // Only the topics' operations asked for.
    let topics_only = metadata(&mut client, 9, &["ops"], false, true);
    assert_eq!(
        operations(topics_only.topics[0].topic_authorized_operations),
        TOPIC
    );
    assert_eq!(topics_only.cluster_authorized_operations, NOT_REQUESTED);
}

#[test]
fn describe_cluster_authorized_operations() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [0i16, 1] {
        let ask = |client: &mut Client, include: bool| -> DescribeClusterResponse {
            client.call(
                version,
                &DescribeClusterRequest::default()
                    .with_include_cluster_authorized_operations(include)
                    .with_endpoint_type(1),
            )
        };
        let asked = ask(&mut client, true);
        assert_eq!(asked.error_code, 0);
        assert_eq!(
            operations(asked.cluster_authorized_operations),
            CLUSTER,
            "v{version}"
        );
        let quiet = ask(&mut client, false);
        assert_eq!(
            quiet.cluster_authorized_operations, NOT_REQUESTED,
            "v{version}"
        );
    }
}

fn describe_group(cairn: &Cairn, version: i16, group: &str, include: bool) -> i32 {
    let mut client = cairn.client();
    let response = client.call(
        version,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))])
            .with_include_authorized_operations(include),
    );
    assert_eq!(response.groups.len(), 1);
    assert_eq!(response.groups[0].error_code, 0);
    response.groups[0].authorized_operations
}

#[test]
fn describe_groups_authorized_operations() {
    let cairn = Cairn::start(&[]);
    for version in 3..=5 {
        assert_eq!(
            operations(describe_group(&cairn, version, "g", true)),
            GROUP,
            "v{version}"
        );
        assert_eq!(
            describe_group(&cairn, version, "g", false),
            NOT_REQUESTED,
            "v{version}"
        );
    }
    // Before v3 the field exists in neither direction.
    assert_eq!(describe_group(&cairn, 2, "g", false), NOT_REQUESTED);
}
