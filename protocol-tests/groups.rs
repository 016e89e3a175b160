//! The consumer group APIs on the wire: FindCoordinator, the classic join/sync/heartbeat/leave
//! protocol, offset commits and fetches (surviving a restart), and group administration.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::util::*;

/// Fast groups: no initial delay, short sessions allowed, few offsets partitions.
const FAST: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=500",
    "offsets.topic.num.partitions=4",
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// A consumer protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    session_ms: i32,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(&["events"]))])
}

/// JoinGroup v9 with the member id handshake: returns the accepted response.
fn join(client: &mut Client, group: &str) -> JoinGroupResponse {
    let first = client.call(9, &join_request(group, "", None, 10_000));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty());
    let second = client.call(9, &join_request(group, &first.member_id, None, 10_000));
    assert_eq!(second.error_code, 0);
    assert_eq!(second.member_id, first.member_id);
    second
}

fn sync_request(
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

fn heartbeat(client: &mut Client, version: i16, group: &str, generation: i32, member: &str) -> i16 {
    client
        .call(
            version,
            &HeartbeatRequest::default()
                .with_group_id(gid(group))
                .with_generation_id(generation)
                .with_member_id(s(member)),
        )
        .error_code
}

fn describe(
    client: &mut Client,
    version: i16,
    group: &str,
) -> describe_groups_response::DescribedGroup {
    let mut response = client.call(
        version,
        &DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
    );
    assert_eq!(response.groups.len(), 1);
    response.groups.remove(0)
}

fn list(client: &mut Client, version: i16, states: &[&str]) -> Vec<(String, String, String)> {
    let response = client.call(
        version,
        &ListGroupsRequest::default().with_states_filter(states.iter().map(|x| s(x)).collect()),
    );
    assert_eq!(response.error_code, 0);
    response
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect()
}

fn commit_request(
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, &str)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(s(metadata)));
        match topics.iter_mut().find(|t| *t.name == **topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

/// Commits and returns every partition's error code, in request order.
fn commit(client: &mut Client, version: i16, request: &OffsetCommitRequest) -> Vec<i16> {
    let response = client.call(version, request);
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v1–v7 for one group: (topic, partition, offset, metadata, error) per partition.
fn fetch_offsets(
    client: &mut Client,
    version: i16,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> Vec<(String, i32, i64, String, i16)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }));
    let response = client.call(version, &request);
    if version >= 2 {
        assert_eq!(response.error_code, 0);
    }
    let mut out: Vec<_> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    p.error_code,
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn find_coordinator_every_version() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    let topics = |client: &mut Client| -> Vec<(String, bool, usize)> {
        let metadata = client.call(12, &MetadataRequest::default().with_topics(None));
        metadata
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                (name, t.is_internal, t.partitions.len())
            })
            .collect()
    };
    assert!(
        topics(&mut client).is_empty(),
        "a fresh broker has no topics"
    );
    for version in 0..=3 {
        let response = client.call(
            version,
            &FindCoordinatorRequest::default().with_key(s("my-group")),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.node_id.0, 1);
        assert_eq!(response.host.to_string(), "127.0.0.1");
        assert_eq!(response.port, i32::from(cairn.addr.port()));
    }
    // Looking for a group coordinator created the internal offsets topic.
    assert_eq!(
        topics(&mut client),
        vec![("__consumer_offsets".to_string(), true, 4)]
    );
    for version in 4..=6 {
        let response = client.call(
            version,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("a"), s("b")]),
        );
        let keys: Vec<String> = response
            .coordinators
            .iter()
            .map(|c| c.key.to_string())
            .collect();
        assert_eq!(keys, vec!["a", "b"], "v{version}");
        for c in &response.coordinators {
            assert_eq!(
                (c.error_code, c.node_id.0, c.port),
                (0, 1, i32::from(cairn.addr.port()))
            );
            assert_eq!(c.host.to_string(), "127.0.0.1");
        }
    }
}

#[test]
fn one_member_lifecycle_at_highest_versions() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    let joined = join(&mut client, "solo");
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, subscription(&["events"]));
    let me = joined.member_id.to_string();
    assert_eq!(
        describe(&mut client, 5, "solo").group_state.to_string(),
        "CompletingRebalance"
    );

    let synced = client.call(
        5,
        &sync_request("solo", 1, &me, &[(&me, "my-assignment")])
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range"))),
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from("my-assignment"));
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    assert_eq!(heartbeat(&mut client, 4, "solo", 1, &me), 0);
    assert_eq!(
        heartbeat(&mut client, 4, "solo", 0, &me),
        22,
        "stale generation"
    );
    assert_eq!(
        heartbeat(&mut client, 4, "solo", 1, "stranger"),
        25,
        "unknown member"
    );

    let described = describe(&mut client, 5, "solo");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.to_string(), "Stable");
    assert_eq!(described.protocol_type.to_string(), "consumer");
    assert_eq!(described.protocol_data.to_string(), "range");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id.to_string(), me);
    assert_eq!(described.members[0].client_id.to_string(), "protocol-tests");
    assert_eq!(described.members[0].client_host.to_string(), "/127.0.0.1");
    assert_eq!(
        described.members[0].member_assignment,
        Bytes::from("my-assignment")
    );
    assert_eq!(
        described.members[0].member_metadata,
        subscription(&["events"])
    );

    let stable = list(&mut client, 5, &["Stable"]);
    assert_eq!(
        stable,
        vec![("solo".into(), "consumer".into(), "Stable".into())]
    );
    assert!(list(&mut client, 5, &["Empty"]).is_empty());

    let left = client.call(
        5,
        &LeaveGroupRequest::default()
            .with_group_id(gid("solo"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(s(&me)),
                MemberIdentity::default().with_member_id(s("stranger")),
            ]),
    );
    assert_eq!(left.error_code, 0);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, 25]);
    let described = describe(&mut client, 5, "solo");
    assert_eq!(described.group_state.to_string(), "Empty");
    assert!(described.members.is_empty());
    assert_eq!(
        list(&mut client, 4, &["empty"]),
        vec![("solo".into(), "consumer".into(), "Empty".into())]
    );
}

#[test]
fn one_member_lifecycle_at_lowest_versions() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    // v0 has no member id handshake and no rebalance timeout.
    let joined = client.call(0, &join_request("old", "", None, 10_000));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let me = joined.member_id.to_string();
    let synced = client.call(0, &sync_request("old", 1, &me, &[(&me, "a")]));
    assert_eq!(
        (synced.error_code, synced.assignment.clone()),
        (0, Bytes::from("a"))
    );
    assert_eq!(heartbeat(&mut client, 0, "old", 1, &me), 0);
    let described = describe(&mut client, 0, "old");
    assert_eq!(described.group_state.to_string(), "Stable");
    assert_eq!(
        list(&mut client, 0, &[]),
        vec![("old".into(), "consumer".into(), String::new())]
    );
    let left = client.call(
        0,
        &LeaveGroupRequest::default()
            .with_group_id(gid("old"))
            .with_member_id(s(&me)),
    );
    assert_eq!(left.error_code, 0);
    let again = client.call(
        0,
        &LeaveGroupRequest::default()
            .with_group_id(gid("old"))
            .with_member_id(s(&me)),
    );
    assert_eq!(again.error_code, 25);
    assert_eq!(
        describe(&mut client, 0, "old").group_state.to_string(),
        "Empty"
    );
}

#[test]
fn join_errors() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    let too_short = client.call(9, &join_request("g", "", None, 100));
    assert_eq!(
        too_short.error_code, 26,
        "session timeout below the minimum"
    );
    let too_long = client.call(9, &join_request("g", "", None, 1_800_001));
    assert_eq!(too_long.error_code, 26, "session timeout above the maximum");
    let unknown = client.call(9, &join_request("g", "made-up", None, 10_000));
    assert_eq!(unknown.error_code, 25);
    let empty_id = client.call(9, &join_request("", "", None, 10_000));
    assert_eq!(empty_id.error_code, 24);
    let unknown_sync = client.call(5, &sync_request("nope", 1, "m", &[]));
    assert_eq!(unknown_sync.error_code, 25);
}

#[test]
fn two_members_rebalance_and_followers_wait_for_the_leader() {
    let cairn = Cairn::start(FAST);
    let mut a = cairn.client();
    let mut b = cairn.client();
    let ja = join(&mut a, "pair");
    let a_id = ja.member_id.to_string();
    let sa = a.call(5, &sync_request("pair", 1, &a_id, &[(&a_id, "all")]));
    assert_eq!(sa.error_code, 0);

    // b's arrival starts a rebalance: a learns it from its heartbeat and rejoins.
    let first = b.call(9, &join_request("pair", "", None, 10_000));
    assert_eq!(first.error_code, 79);
    let b_id = first.member_id.to_string();
    let (b_join, b_frame) = b.frame(9, &join_request("pair", &b_id, None, 10_000));
    b.send_raw(&b_frame).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut a, 4, "pair", 1, &a_id) != 27 {
        assert!(
            Instant::now() < deadline,
            "a never saw REBALANCE_IN_PROGRESS"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ra = a.call(9, &join_request("pair", &a_id, None, 10_000));
    let rb = b.response::<JoinGroupRequest>(b_join, 9);
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.to_string(), a_id, "the leader keeps its role");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers get no member list");

    // The follower's SyncGroup waits for the leader's.
    let (b_sync, frame) = b.frame(5, &sync_request("pair", 2, &b_id, &[]));
    b.send_raw(&frame).unwrap();
    let sa = a.call(
        5,
        &sync_request("pair", 2, &a_id, &[(&a_id, "A"), (&b_id, "B")]),
    );
    assert_eq!((sa.error_code, sa.assignment), (0, Bytes::from("A")));
    let sb = b.response::<SyncGroupRequest>(b_sync, 5);
    assert_eq!((sb.error_code, sb.assignment), (0, Bytes::from("B")));
    assert_eq!(heartbeat(&mut a, 4, "pair", 2, &a_id), 0);
    assert_eq!(heartbeat(&mut b, 4, "pair", 2, &b_id), 0);

    // b leaves: a rebalances alone.
    let left = b.call(
        3,
        &LeaveGroupRequest::default()
            .with_group_id(gid("pair"))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&b_id))]),
    );
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut a, 4, "pair", 2, &a_id), 27);
    let ra = a.call(9, &join_request("pair", &a_id, None, 10_000));
    assert_eq!(
        (ra.error_code, ra.generation_id, ra.members.len()),
        (0, 3, 1)
    );
}

#[test]
fn an_expired_session_removes_the_member() {
    let cairn = Cairn::start(FAST);
    let mut a = cairn.client();
    let mut b = cairn.client();
    let a_id = join(&mut a, "expiry").member_id.to_string();
    let sa = a.call(5, &sync_request("expiry", 1, &a_id, &[]));
    assert_eq!(sa.error_code, 0);
    // b joins with a 1 s session; a learns of the rebalance from its heartbeat and rejoins.
    let first = b.call(9, &join_request("expiry", "", None, 1_000));
    assert_eq!(first.error_code, 79);
    let b_id = first.member_id.to_string();
    let (b_join, frame) = b.frame(9, &join_request("expiry", &b_id, None, 1_000));
    b.send_raw(&frame).unwrap();
    let until_rebalance = |a: &mut Client, generation: i32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let code = heartbeat(a, 4, "expiry", generation, &a_id);
            if code == 27 {
                return;
            }
            assert_eq!(code, 0);
            assert!(Instant::now() < deadline, "no rebalance within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until_rebalance(&mut a, 1);
    let ra = a.call(9, &join_request("expiry", &a_id, None, 10_000));
    let rb = b.response::<JoinGroupRequest>(b_join, 9);
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    let sa = a.call(5, &sync_request("expiry", 2, &a_id, &[]));
    assert_eq!(sa.error_code, 0);
    // b goes silent; its session expires and the group rebalances without it.
    until_rebalance(&mut a, 2);
    let ra = a.call(9, &join_request("expiry", &a_id, None, 10_000));
    assert_eq!((ra.error_code, ra.generation_id), (0, 3));
    let ids: Vec<String> = ra.members.iter().map(|m| m.member_id.to_string()).collect();
    assert_eq!(ids, vec![a_id.clone()]);
    assert_eq!(heartbeat(&mut b, 4, "expiry", 2, &b_id), 25);
}

#[test]
fn static_member_restart_keeps_the_generation_and_fences_the_old_id() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    let first = client.call(5, &join_request("static", "", Some("instance-1"), 10_000));
    assert_eq!(first.error_code, 0, "static members skip the handshake");
    assert_eq!(first.generation_id, 1);
    let old = first.member_id.to_string();
    let s1 = client.call(5, &sync_request("static", 1, &old, &[(&old, "mine")]));
    assert_eq!(s1.error_code, 0);
    let again = client.call(5, &join_request("static", "", Some("instance-1"), 10_000));
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, 1, "no rebalance");
    let new = again.member_id.to_string();
    assert_ne!(new, old);
    let fenced = client.call(
        4,
        &HeartbeatRequest::default()
            .with_group_id(gid("static"))
            .with_generation_id(1)
            .with_member_id(s(&old))
            .with_group_instance_id(Some(s("instance-1"))),
    );
    assert_eq!(fenced.error_code, 82);
    let synced = client.call(5, &sync_request("static", 1, &new, &[]));
    assert_eq!(
        synced.assignment,
        Bytes::from("mine"),
        "the assignment is kept"
    );
    assert_eq!(
        describe(&mut client, 5, "static").members[0]
            .group_instance_id
            .as_deref(),
        Some("instance-1")
    );
}

#[test]
fn offsets_commit_fetch_and_survive_a_restart() {
    let mut cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "orders", 3, &[]);
    // A simple (admin) commit creates the group.
    let request = commit_request(
        "reporting",
        -1,
        "",
        &[("orders", 0, 10, "m0"), ("orders", 1, 20, "")],
    );
    assert_eq!(commit(&mut client, 2, &request), vec![0, 0]);
    let request = commit_request(
        "reporting",
        -1,
        "",
        &[("orders", 2, 30, "m2"), ("nope", 0, 1, "")],
    );
    assert_eq!(
        commit(&mut client, 9, &request),
        vec![0, 3],
        "unknown topic: 3"
    );
    let request = commit_request("reporting", -1, "", &[("orders", 0, 11, &"x".repeat(5000))]);
    assert_eq!(
        commit(&mut client, 9, &request),
        vec![12],
        "metadata too large"
    );
    let described = describe(&mut client, 5, "reporting");
    assert_eq!(
        (
            described.group_state.to_string(),
            described.protocol_type.to_string()
        ),
        ("Empty".into(), String::new())
    );
    assert!(list(&mut client, 5, &[])
        .iter()
        .any(|g| g.0 == "reporting" && g.1.is_empty()));

    let expected = vec![
        ("orders".to_string(), 0, 10, "m0".to_string(), 0),
        ("orders".to_string(), 1, 20, String::new(), 0),
        ("orders".to_string(), 2, 30, "m2".to_string(), 0),
    ];
    let all = [("orders", &[0, 1, 2][..])];
    assert_eq!(
        fetch_offsets(&mut client, 1, "reporting", Some(&all)),
        expected
    );
    assert_eq!(
        fetch_offsets(&mut client, 7, "reporting", None),
        expected,
        "null topics = all"
    );
    let none = [("orders", &[0][..])];
    assert_eq!(
        fetch_offsets(&mut client, 7, "never-committed", Some(&none)),
        vec![("orders".to_string(), 0, -1, String::new(), 0)]
    );

    // A group with members refuses admin commits; its members commit with their generation.
    let joined = join(&mut client, "live");
    let me = joined.member_id.to_string();
    client.call(5, &sync_request("live", 1, &me, &[]));
    let admin = commit_request("live", -1, "", &[("orders", 0, 5, "")]);
    assert_eq!(commit(&mut client, 9, &admin), vec![25]);
    let stale = commit_request("live", 0, &me, &[("orders", 0, 5, "")]);
    assert_eq!(commit(&mut client, 9, &stale), vec![22]);
    let member = commit_request("live", 1, &me, &[("orders", 1, 7, "by-member")]);
    assert_eq!(commit(&mut client, 9, &member), vec![0]);

    cairn.restart();
    let mut client = cairn.client();
    assert_eq!(
        fetch_offsets(&mut client, 1, "reporting", Some(&all)),
        expected
    );
    // The batched form (v8+) with several groups.
    let response = client.call(
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("reporting"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("live"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name("orders"))
                    .with_partition_indexes(vec![0, 1])])),
        ]),
    );
    assert_eq!(response.groups.len(), 2);
    let reporting: Vec<(i32, i64)> = response.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(reporting, vec![(0, 10), (1, 20), (2, 30)]);
    let live: Vec<(i32, i64, String)> = response.groups[1].topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.metadata.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        live,
        vec![(0, -1, String::new()), (1, 7, "by-member".to_string())]
    );
    // The restored group still knows its member and generation.
    let described = describe(&mut client, 5, "live");
    assert_eq!(described.group_state.to_string(), "Stable");
    assert_eq!(heartbeat(&mut client, 4, "live", 1, &me), 0);
}

#[test]
fn offset_delete_and_delete_groups() {
    let mut cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "events", 1, &[]);
    create_topic(&mut client, "old", 2, &[]);
    let request = commit_request(
        "admin",
        -1,
        "",
        &[("old", 0, 1, ""), ("old", 1, 2, ""), ("events", 0, 3, "")],
    );
    assert_eq!(commit(&mut client, 9, &request), vec![0, 0, 0]);

    let deleted = client.call(
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(gid("admin"))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(topic_name("old"))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(1)
                ])]),
    );
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    let left = fetch_offsets(&mut client, 7, "admin", None);
    let left: Vec<(String, i32, i64)> = left.into_iter().map(|o| (o.0, o.1, o.2)).collect();
    assert_eq!(
        left,
        vec![("events".to_string(), 0, 3), ("old".to_string(), 0, 1)]
    );
    let unknown = client.call(
        0,
        &OffsetDeleteRequest::default().with_group_id(gid("missing")),
    );
    assert_eq!(unknown.error_code, 69);

    // An active group subscribed to "events" keeps that topic's offsets.
    let joined = join(&mut client, "busy");
    let me = joined.member_id.to_string();
    client.call(5, &sync_request("busy", 1, &me, &[]));
    let member = commit_request("busy", 1, &me, &[("events", 0, 9, ""), ("old", 0, 4, "")]);
    assert_eq!(commit(&mut client, 9, &member), vec![0, 0]);
    let refused = client.call(
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(gid("busy"))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("events"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ]),
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("old"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ]),
            ]),
    );
    let codes: Vec<i16> = refused
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![86, 0]);

    let response = client.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![
            gid("busy"),
            gid("admin"),
            gid("missing"),
        ]),
    );
    let codes: Vec<(String, i16)> = response
        .results
        .iter()
        .map(|r| (r.group_id.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("busy".into(), 68),
            ("admin".into(), 0),
            ("missing".into(), 69)
        ]
    );
    let dead = describe(&mut client, 5, "admin");
    assert_eq!(
        (
            dead.error_code,
            dead.group_state.to_string(),
            dead.protocol_type.to_string()
        ),
        (0, "Dead".into(), String::new())
    );
    assert_eq!(fetch_offsets(&mut client, 7, "admin", None), vec![]);

    // Deletions are durable: the deleted group and offset stay gone after a restart.
    cairn.restart();
    let mut client = cairn.client();
    assert_eq!(fetch_offsets(&mut client, 7, "admin", None), vec![]);
    assert!(!list(&mut client, 5, &[]).iter().any(|g| g.0 == "admin"));
    let busy: Vec<(String, i32, i64)> = fetch_offsets(&mut client, 7, "busy", None)
        .into_iter()
        .map(|o| (o.0, o.1, o.2))
        .collect();
    assert_eq!(busy, vec![("events".to_string(), 0, 9)]);
    let response = client.call(
        0,
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("admin")]),
    );
    assert_eq!(response.results[0].error_code, 69);
}

#[test]
fn sigterm_answers_a_join_parked_in_a_rebalance() {
    let mut cairn = Cairn::start(FAST);
    let mut a = cairn.client();
    let mut b = cairn.client();
    // a's long rebalance timeout would keep b's join parked for a minute.
    let slow = |member: &str| {
        join_request("parked", member, None, 10_000).with_rebalance_timeout_ms(60_000)
    };
    let first = a.call(9, &slow(""));
    let a_id = first.member_id.to_string();
    assert_eq!(a.call(9, &slow(&a_id)).error_code, 0);
    assert_eq!(
        a.call(5, &sync_request("parked", 1, &a_id, &[])).error_code,
        0
    );
    let b_id = b.call(9, &slow("")).member_id.to_string();
    let (b_join, frame) = b.frame(9, &slow(&b_id));
    b.send_raw(&frame).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut a, 4, "parked", 1, &a_id) != 27 {
        assert!(
            Instant::now() < deadline,
            "b's join never started a rebalance"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    assert!(cairn.stop().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?} for the parked join",
        started.elapsed()
    );
    let response = b.response::<JoinGroupRequest>(b_join, 9);
    assert_eq!(response.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
}

#[test]
fn a_leader_that_heartbeats_but_never_syncs_is_removed_after_the_rebalance_timeout() {
    let cairn = Cairn::start(FAST);
    let mut a = cairn.client();
    let mut b = cairn.client();
    const REBALANCE_MS: i32 = 1_500;
    let quick = |member: &str| {
        join_request("stuck", member, None, 10_000).with_rebalance_timeout_ms(REBALANCE_MS)
    };
    let a_id = a.call(9, &quick("")).member_id.to_string();
    assert_eq!(a.call(9, &quick(&a_id)).error_code, 0);
    assert_eq!(
        a.call(5, &sync_request("stuck", 1, &a_id, &[])).error_code,
        0
    );
    // b joins; a rejoins and stays leader of generation 2, then never sends SyncGroup.
    let b_id = b.call(9, &quick("")).member_id.to_string();
    let (b_join, frame) = b.frame(9, &quick(&b_id));
    b.send_raw(&frame).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut a, 4, "stuck", 1, &a_id) != 27 {
        assert!(
            Instant::now() < deadline,
            "b's join never started a rebalance"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Generation 2 completes after this instant, so its sync deadline is at least
    // REBALANCE_MS later.
    let rejoined = Instant::now();
    let ra = a.call(9, &quick(&a_id));
    let rb = b.response::<JoinGroupRequest>(b_join, 9);
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.to_string(), a_id);
    let (b_sync, frame) = b.frame(5, &sync_request("stuck", 2, &b_id, &[]));
    b.send_raw(&frame).unwrap();
    // a's heartbeats succeed until the rebalance timeout removes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut a, 4, "stuck", 2, &a_id);
        if code == 25 {
            break;
        }
        assert_eq!(code, 0, "heartbeat during CompletingRebalance");
        assert!(
            Instant::now() < deadline,
            "the silent leader was never removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (A few ms of slack for the broker's millisecond wall clock.)
    assert!(
        rejoined.elapsed() >= Duration::from_millis(REBALANCE_MS as u64 - 20),
        "removed after {:?}, before the rebalance timeout",
        rejoined.elapsed()
    );
    // The waiting follower is told to rejoin, and does so as the new leader.
    let sb = b.response::<SyncGroupRequest>(b_sync, 5);
    assert_eq!(sb.error_code, 27, "REBALANCE_IN_PROGRESS");
    let rb = b.call(9, &quick(&b_id));
    assert_eq!((rb.error_code, rb.generation_id), (0, 3));
    assert_eq!(rb.leader.to_string(), b_id);
    assert_eq!(rb.members.len(), 1);
}

#[test]
fn group_id_and_member_checks_match_kafka() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "events", 1, &[]);
    // Membership APIs refuse the empty group id; LeaveGroup v3+ says so at the top level.
    assert_eq!(heartbeat(&mut client, 4, "", 1, "m"), 24);
    assert_eq!(
        client.call(5, &sync_request("", 1, "m", &[])).error_code,
        24
    );
    let leave = |group: &str| {
        LeaveGroupRequest::default()
            .with_group_id(gid(group))
            .with_members(vec![
                MemberIdentity::default().with_member_id(s("m1")),
                MemberIdentity::default().with_member_id(s("m2")),
            ])
    };
    let left = client.call(4, &leave(""));
    assert_eq!((left.error_code, left.members.len()), (24, 0));
    // An unknown group: no top-level error, UNKNOWN_MEMBER_ID for each member.
    let left = client.call(4, &leave("nobody-here"));
    assert_eq!(left.error_code, 0);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![25, 25]);

    // Commits accept the empty group id and generation -1 with any member id, as Kafka does;
    // the empty group can then be described and deleted.
    let request = commit_request("", -1, "", &[("events", 0, 7, "")]);
    assert_eq!(commit(&mut client, 8, &request), vec![0]);
    let request = commit_request("manual", -1, "stale-member", &[("events", 0, 8, "")]);
    assert_eq!(commit(&mut client, 8, &request), vec![0]);
    // The member check comes before the metadata size check.
    let big = "x".repeat(5000);
    let request = commit_request(
        "manual",
        3,
        "m",
        &[("events", 0, 9, &big), ("none", 0, 1, "")],
    );
    assert_eq!(commit(&mut client, 8, &request), vec![25, 3]);
    let described = describe(&mut client, 5, "");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.to_string(), "Empty");
    let delete = |client: &mut Client| {
        let response = client.call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("")]),
        );
        response.results[0].error_code
    };
    assert_eq!(delete(&mut client), 0);
    assert_eq!(delete(&mut client), 69, "GROUP_ID_NOT_FOUND once gone");
    assert_eq!(describe(&mut client, 5, "").group_state.to_string(), "Dead");
}
