//! The KIP-848 consumer group protocol on the wire: ConsumerGroupHeartbeat with the `uniform`
//! and `range` server-side assignors, ConsumerGroupDescribe, offsets committed and fetched at
//! member epochs, ListGroups' group types, and the two protocols refusing each other's members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::util::*;

const ENABLED: &[&str] = &[
    "group.coordinator.rebalance.protocols=classic,consumer",
    "offsets.topic.num.partitions=4",
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Partitions per topic name.
type Owned = BTreeMap<String, BTreeSet<i32>>;

/// One consumer-protocol member, as a client keeps it.
struct Member {
    group: String,
    id: String,
    epoch: i32,
    instance: Option<String>,
    assignor: Option<String>,
    topics: Vec<String>,
    owned: Owned,
}

impl Member {
    fn new(group: &str, id: &str, topics: &[&str]) -> Member {
        Member {
            group: group.into(),
            id: id.into(),
            epoch: 0,
            instance: None,
            assignor: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: Owned::new(),
        }
    }

    fn request(&self, ids: &BTreeMap<String, uuid::Uuid>) -> ConsumerGroupHeartbeatRequest {
        let joining = self.epoch == 0;
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.id))
            .with_member_epoch(self.epoch)
            .with_instance_id(self.instance.as_deref().map(s))
            .with_rebalance_timeout_ms(if joining { 30_000 } else { -1 })
            .with_server_assignor(self.assignor.as_deref().map(s))
            .with_subscribed_topic_names(
                joining.then(|| self.topics.iter().map(|t| topic_name(t)).collect()),
            )
            .with_topic_partitions(Some(
                self.owned
                    .iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(ids[t])
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            ))
    }

    /// One heartbeat at `version` (1 unless said otherwise): applies the answer as a client
    /// does (revoked partitions are given up at once) and returns the error code.
    fn heartbeat(&mut self, client: &mut Client, version: i16) -> i16 {
        let ids = topic_ids(client);
        let response = client.call(version, &self.request(&ids));
        if response.error_code != 0 {
            return response.error_code;
        }
        self.id = response.member_id.expect("a member id").to_string();
        self.epoch = response.member_epoch;
        self.take_assignment(response.assignment, ids);
        0
    }

    /// Takes a heartbeat's assignment (by topic id) as the partitions this member owns.
    fn take_assignment(
        &mut self,
        assignment: Option<consumer_group_heartbeat_response::Assignment>,
        ids: BTreeMap<String, uuid::Uuid>,
    ) {
        if let Some(a) = assignment {
            let names: BTreeMap<uuid::Uuid, String> =
                ids.into_iter().map(|(n, id)| (id, n)).collect();
            self.owned = a
                .topic_partitions
                .into_iter()
                .map(|tp| {
                    (
                        names[&tp.topic_id].clone(),
                        tp.partitions.into_iter().collect(),
                    )
                })
                .collect();
        }
    }

    fn ok(&mut self, client: &mut Client) {
        assert_eq!(self.heartbeat(client, 1), 0, "heartbeat of {}", self.id);
    }

    fn leave(&mut self, client: &mut Client, epoch: i32) -> ConsumerGroupHeartbeatResponse {
        let mut r = self.request(&topic_ids(client)).with_member_epoch(epoch);
        r.topic_partitions = None;
        client.call(1, &r)
    }

    fn count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }
}

/// Every topic's id, by name.
fn topic_ids(client: &mut Client) -> BTreeMap<String, uuid::Uuid> {
    let response = client.call(12, &MetadataRequest::default().with_topics(None));
    response
        .topics
        .into_iter()
        .map(|t| (t.name.expect("name").to_string(), t.topic_id))
        .collect()
}

/// Heartbeats every member in turn until all are at one epoch with nothing left to revoke or
/// to receive, and returns that epoch.
fn settle(client: &mut Client, members: &mut [&mut Member]) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before: Vec<(i32, Owned)> =
            members.iter().map(|m| (m.epoch, m.owned.clone())).collect();
        for m in members.iter_mut() {
            m.ok(client);
        }
        let after: Vec<(i32, Owned)> = members.iter().map(|m| (m.epoch, m.owned.clone())).collect();
        let group = describe(client, &members[0].group);
        if before == after && group.group_state.as_str() == "Stable" {
            return after[0].0;
        }
        assert!(
            Instant::now() < deadline,
            "the group never settled: {group:?}"
        );
    }
}

fn describe(client: &mut Client, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let mut response = client.call(
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
    );
    response.groups.remove(0)
}

fn all_partitions(members: &[&Member]) -> Vec<(String, i32)> {
    let mut all: Vec<(String, i32)> = members
        .iter()
        .flat_map(|m| {
            m.owned
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| (t.clone(), *p)))
        })
        .collect();
    all.sort();
    all
}

fn api_versions(client: &mut Client) -> BTreeMap<i16, (i16, i16)> {
    client
        .call(3, &ApiVersionsRequest::default())
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

#[test]
fn the_consumer_protocol_is_served_and_advertised_only_when_enabled() {
    let classic = Cairn::start(&["group.coordinator.rebalance.protocols=classic"]);
    let apis = api_versions(&mut classic.client());
    assert!(!apis.contains_key(&(ApiKey::ConsumerGroupHeartbeat as i16)));
    assert!(!apis.contains_key(&(ApiKey::ConsumerGroupDescribe as i16)));
    let both = Cairn::start(ENABLED);
    let apis = api_versions(&mut both.client());
    assert_eq!(apis[&(ApiKey::ConsumerGroupHeartbeat as i16)], (0, 1));
    assert_eq!(apis[&(ApiKey::ConsumerGroupDescribe as i16)], (0, 1));
}

#[test]
fn two_members_share_a_topic_and_partitions_move_only_once_revoked() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "events", 4, &[]);
    // v0: the broker names the member.
    let mut a = Member::new("g", "", &["events"]);
    assert_eq!(a.heartbeat(&mut client, 0), 0);
    assert!(!a.id.is_empty());
    assert_eq!(a.epoch, 1);
    assert_eq!(a.count(), 4);
    // v1: the member names itself; it gets nothing the first member still holds.
    let mut b = Member::new("g", "member-b", &["events"]);
    b.ok(&mut client);
    assert_eq!(b.id, "member-b");
    assert_eq!(b.count(), 0);
    assert_eq!(
        describe(&mut client, "g").group_state.as_str(),
        "Reconciling"
    );
    // The first member is told to give up two partitions and keeps its epoch until it has.
    a.ok(&mut client);
    assert_eq!((a.epoch, a.count()), (1, 2));
    a.ok(&mut client);
    assert_eq!(a.epoch, 2);
    b.ok(&mut client);
    assert_eq!((b.epoch, b.count()), (2, 2));
    assert_eq!(all_partitions(&[&a, &b]).len(), 4);

    let group = describe(&mut client, "g");
    assert_eq!(group.error_code, 0);
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.group_epoch, 2);
    assert_eq!(group.assignment_epoch, 2);
    assert_eq!(group.assignor_name.as_str(), "uniform");
    assert_eq!(group.members.len(), 2);
    for m in &group.members {
        assert_eq!(m.member_epoch, 2);
        assert_eq!(m.subscribed_topic_names, vec![topic_name("events")]);
        assert_eq!(m.assignment.topic_partitions.len(), 1);
        assert_eq!(
            m.assignment.topic_partitions[0].topic_name,
            topic_name("events")
        );
        assert_eq!(m.assignment.topic_partitions[0].partitions.len(), 2);
    }

    // ListGroups tells the protocols apart.
    let listed = client.call(5, &ListGroupsRequest::default());
    let g = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "g")
        .unwrap();
    assert_eq!(
        (
            g.protocol_type.as_str(),
            g.group_state.as_str(),
            g.group_type.as_str()
        ),
        ("consumer", "Stable", "consumer")
    );
    let filtered = client.call(
        5,
        &ListGroupsRequest::default().with_types_filter(vec![s("classic")]),
    );
    assert!(filtered.groups.iter().all(|g| g.group_id.as_str() != "g"));

    // A member leaving gives its partitions to the other at the next heartbeat.
    let left = b.leave(&mut client, -1);
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    a.ok(&mut client);
    assert_eq!((a.epoch, a.count()), (3, 4));
    assert_eq!(describe(&mut client, "g").members.len(), 1);
}

#[test]
fn the_range_assignor_gives_contiguous_ranges() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 5, &[]);
    let mut a = Member::new("r", "a", &["t"]);
    let mut b = Member::new("r", "b", &["t"]);
    a.assignor = Some("range".into());
    b.assignor = Some("range".into());
    a.ok(&mut client);
    b.ok(&mut client);
    settle(&mut client, &mut [&mut a, &mut b]);
    assert_eq!(a.owned["t"], BTreeSet::from([0, 1, 2]));
    assert_eq!(b.owned["t"], BTreeSet::from([3, 4]));
    assert_eq!(describe(&mut client, "r").assignor_name.as_str(), "range");
    let mut c = Member::new("r", "c", &["t"]);
    c.assignor = Some("sticky".into());
    assert_eq!(
        c.heartbeat(&mut client, 1),
        code(ResponseError::UnsupportedAssignor)
    );
}

#[test]
fn heartbeats_are_checked_as_kafka_checks_them() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 2, &[]);
    let mut a = Member::new("h", "a", &["t"]);
    a.ok(&mut client);
    // A member epoch ahead of the broker's is fenced; an unknown member is unknown.
    let ids = topic_ids(&mut client);
    let ahead = client.call(1, &a.request(&ids).with_member_epoch(a.epoch + 5));
    assert_eq!(ahead.error_code, code(ResponseError::FencedMemberEpoch));
    let stranger = client.call(1, &a.request(&ids).with_member_id(s("nobody")));
    assert_eq!(stranger.error_code, code(ResponseError::UnknownMemberId));
    // A join needs a rebalance timeout and a subscription; v1 needs a member id.
    let mut join = Member::new("h", "x", &["t"]).request(&ids);
    join.rebalance_timeout_ms = -1;
    assert_eq!(
        client.call(1, &join).error_code,
        code(ResponseError::InvalidRequest)
    );
    let nameless = Member::new("h", "", &["t"]).request(&ids);
    assert_eq!(
        client.call(1, &nameless).error_code,
        code(ResponseError::InvalidRequest)
    );
    // A regular expression that does not compile is refused with its own error.
    let regex = Member::new("h", "y", &[])
        .request(&ids)
        .with_subscribed_topic_regex(Some(s("t(")));
    let refused = client.call(1, &regex);
    assert_eq!(
        refused.error_code,
        code(ResponseError::InvalidRegularExpression)
    );
    assert!(refused.error_message.is_some());
}

#[test]
fn a_member_whose_session_expires_loses_its_partitions() {
    let cairn = Cairn::start(&[
        ENABLED[0],
        ENABLED[1],
        "group.consumer.min.session.timeout.ms=1000",
        "group.consumer.session.timeout.ms=1000",
        "group.consumer.min.heartbeat.interval.ms=500",
        "group.consumer.heartbeat.interval.ms=500",
    ]);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 4, &[]);
    let mut a = Member::new("s", "a", &["t"]);
    let mut b = Member::new("s", "b", &["t"]);
    a.ok(&mut client);
    b.ok(&mut client);
    settle(&mut client, &mut [&mut a, &mut b]);
    assert_eq!((a.count(), b.count()), (2, 2));
    // b stops heartbeating; a keeps going and ends up with everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.count() < 4 {
        assert!(
            Instant::now() < deadline,
            "b's partitions were never reassigned"
        );
        std::thread::sleep(Duration::from_millis(200));
        a.ok(&mut client);
    }
    let group = describe(&mut client, "s");
    assert_eq!(group.members.len(), 1);
    assert_eq!(
        b.heartbeat(&mut client, 1),
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_topic_gaining_partitions_raises_the_group_epoch() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 2, &[]);
    let mut a = Member::new("p", "a", &["t"]);
    let mut b = Member::new("p", "b", &["t"]);
    a.ok(&mut client);
    b.ok(&mut client);
    let before = settle(&mut client, &mut [&mut a, &mut b]);
    let response = client.call(
        3,
        &CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name("t"))
                    .with_count(4),
            ])
            .with_timeout_ms(5_000),
    );
    assert_eq!(response.results[0].error_code, 0);
    let after = settle(&mut client, &mut [&mut a, &mut b]);
    assert!(after > before);
    assert_eq!((a.count(), b.count()), (2, 2));
    assert_eq!(all_partitions(&[&a, &b]).len(), 4);
}

#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 4, &[]);
    let mut a = Member::new("st", "a1", &["t"]);
    a.instance = Some("instance-a".into());
    let mut b = Member::new("st", "b", &["t"]);
    a.ok(&mut client);
    b.ok(&mut client);
    let epoch = settle(&mut client, &mut [&mut a, &mut b]);
    let held = a.owned.clone();
    // The instance id is taken while its member is there.
    let mut twin = Member::new("st", "a2", &["t"]);
    twin.instance = Some("instance-a".into());
    assert_eq!(
        twin.heartbeat(&mut client, 1),
        code(ResponseError::UnreleasedInstanceId)
    );
    // Leaving for a while (-2) keeps the partitions; the instance comes back under a new id.
    assert_eq!(a.leave(&mut client, -2).member_epoch, -2);
    assert_eq!(twin.heartbeat(&mut client, 1), 0);
    assert_eq!((twin.epoch, &twin.owned), (epoch, &held));
    b.ok(&mut client);
    assert_eq!(b.epoch, epoch, "no rebalance");
    // The old member id is gone.
    assert_eq!(
        a.heartbeat(&mut client, 1),
        code(ResponseError::UnknownMemberId)
    );
}

fn commit_at(client: &mut Client, group: &str, member: &str, epoch: i32, offset: i64) -> i16 {
    commit_v(client, 9, group, member, epoch, offset)
}

fn commit_v(
    client: &mut Client,
    version: i16,
    group: &str,
    member: &str,
    epoch: i32,
    offset: i64,
) -> i16 {
    let response = client.call(
        version,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]),
    );
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch v9 of partition t-0: (group error, offset).
fn fetch_at(client: &mut Client, group: &str, member: Option<&str>, epoch: i32) -> (i16, i64) {
    let response = client.call(
        9,
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(member.map(s))
            .with_member_epoch(epoch)
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name("t"))
                .with_partition_indexes(vec![0])]))]),
    );
    let g = &response.groups[0];
    let offset = g
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (g.error_code, offset)
}

#[test]
fn offsets_are_committed_and_fetched_at_the_member_epoch() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 2, &[]);
    let mut a = Member::new("o", "a", &["t"]);
    a.ok(&mut client);
    let mut b = Member::new("o", "b", &["t"]);
    b.ok(&mut client);
    settle(&mut client, &mut [&mut a, &mut b]);
    let epoch = a.epoch;
    assert_eq!(commit_at(&mut client, "o", "a", epoch, 7), 0);
    assert_eq!(
        commit_at(&mut client, "o", "a", epoch - 1, 8),
        code(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        commit_at(&mut client, "o", "a", epoch + 1, 8),
        code(ResponseError::FencedMemberEpoch)
    );
    // Before v9 the field is a generation: a consumer-protocol member must not use it.
    assert_eq!(
        commit_v(&mut client, 8, "o", "a", epoch, 8),
        code(ResponseError::UnsupportedVersion)
    );
    assert_eq!(
        commit_at(&mut client, "o", "nobody", epoch, 8),
        code(ResponseError::UnknownMemberId)
    );
    // An admin commit (epoch -1) waits for the group to be empty.
    assert_eq!(
        commit_at(&mut client, "o", "", -1, 8),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(fetch_at(&mut client, "o", Some("a"), epoch), (0, 7));
    assert_eq!(
        fetch_at(&mut client, "o", Some("a"), epoch - 1).0,
        code(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(fetch_at(&mut client, "o", None, -1), (0, 7));

    // Once everyone left, the tools may reset the offsets, and the classic API sees them.
    a.leave(&mut client, -1);
    b.leave(&mut client, -1);
    assert_eq!(describe(&mut client, "o").group_state.as_str(), "Empty");
    assert_eq!(commit_at(&mut client, "o", "", -1, 3), 0);
    let classic = client.call(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s("o")))
            .with_topics(None),
    );
    let p0 = classic.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .unwrap();
    assert_eq!(p0.committed_offset, 3);
    // And a member joining again starts from them.
    let mut c = Member::new("o", "c", &["t"]);
    c.ok(&mut client);
    assert_eq!(fetch_at(&mut client, "o", Some("c"), c.epoch), (0, 3));
}

/// A classic JoinGroup v3 (no member id handshake), answered once the join completes.
fn classic_join(client: &mut Client, group: &str) -> i16 {
    client
        .call(
            3,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(bytes::Bytes::from_static(&[
                        0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
                    ]))]),
        )
        .error_code
}

#[test]
fn a_group_of_one_protocol_refuses_the_other() {
    let cairn = Cairn::start(&[
        ENABLED[0],
        ENABLED[1],
        "group.initial.rebalance.delay.ms=0",
        "group.consumer.migration.policy=disabled",
    ]);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 1, &[]);
    let mut a = Member::new("k", "a", &["t"]);
    a.ok(&mut client);
    // A classic member of another protocol type is refused by a consumer group (one of the
    // consumer protocol type joins it: see the migration tests).
    let connect = client.call(
        5,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(s("k")))
            .with_member_id(s("m"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("connect"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("v1"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0]))]),
    );
    assert_eq!(
        connect.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    // DescribeGroups does not describe a consumer group (the admin client asks
    // ConsumerGroupDescribe first).
    let old = client.call(
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("k"))]),
    );
    assert_eq!(old.groups[0].group_state.as_str(), "Dead");

    // A classic group with a member: with the migration disabled, a consumer-protocol member
    // is refused, and ConsumerGroupDescribe says it is not a consumer group.
    assert_eq!(classic_join(&mut client, "c"), 0);
    let mut x = Member::new("c", "x", &["t"]);
    assert_eq!(
        x.heartbeat(&mut client, 1),
        code(ResponseError::GroupIdNotFound)
    );
    assert_eq!(
        describe(&mut client, "c").error_code,
        code(ResponseError::GroupIdNotFound)
    );
    assert_eq!(
        describe(&mut client, "none").error_code,
        code(ResponseError::GroupIdNotFound)
    );

    // An empty consumer group becomes classic on a JoinGroup.
    a.leave(&mut client, -1);
    assert_eq!(classic_join(&mut client, "k"), 0);
    let listed = client.call(5, &ListGroupsRequest::default());
    let k = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "k")
        .unwrap();
    assert_eq!(k.group_type.as_str(), "classic");
}

#[test]
fn a_group_config_sets_the_heartbeat_interval_its_members_are_given() {
    let cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 2, &[]);
    let mut a = Member::new("gc", "a", &["t"]);
    a.ok(&mut client);
    let interval = |client: &mut Client, a: &Member| {
        let request = a.request(&topic_ids(client));
        let response = client.call(1, &request);
        assert_eq!(response.error_code, 0);
        response.heartbeat_interval_ms
    };
    assert_eq!(interval(&mut client, &a), 5_000, "the broker's default");
    let set = |client: &mut Client, group: &str, key: &str, value: &str| {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let response = client.call(
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(s(group))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s(key))
                        .with_config_operation(0)
                        .with_value(Some(s(value)))]),
            ]),
        );
        assert_eq!(response.responses[0].error_code, 0);
    };
    set(&mut client, "gc", "consumer.heartbeat.interval.ms", "7000");
    assert_eq!(interval(&mut client, &a), 7_000, "the group's own");
    // Another group's config does not apply here.
    set(
        &mut client,
        "other",
        "consumer.heartbeat.interval.ms",
        "9000",
    );
    assert_eq!(interval(&mut client, &a), 7_000);
}

#[test]
fn broker_timeouts_outside_their_bounds_stop_the_broker_from_starting() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    let dir = tempfile::tempdir().unwrap();
    let out = cmd
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", crate::harness::free_port()))
        .args(["--set", "group.consumer.session.timeout.ms=6000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("group.consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
        "{text}"
    );
}

#[test]
fn membership_survives_a_restart_and_a_kill() {
    let mut cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 4, &[]);
    let mut a = Member::new("keep", "a", &["t"]);
    let mut b = Member::new("keep", "b", &["t"]);
    a.instance = Some("static-a".into());
    a.ok(&mut client);
    b.ok(&mut client);
    let epoch = settle(&mut client, &mut [&mut a, &mut b]);
    let held = (a.owned.clone(), b.owned.clone());
    for kill in [false, true] {
        if kill {
            cairn.kill_and_restart();
        } else {
            cairn.restart();
        }
        let mut client = cairn.client();
        let group = describe(&mut client, "keep");
        assert_eq!(group.error_code, 0, "after restart (kill: {kill})");
        assert_eq!(group.group_epoch, epoch);
        assert_eq!(group.members.len(), 2);
        let instance = group
            .members
            .iter()
            .find(|m| m.member_id.as_str() == "a")
            .and_then(|m| m.instance_id.clone());
        assert_eq!(instance.as_deref(), Some("static-a"));
        // The members carry on at their epochs with their partitions: no rebalance.
        a.ok(&mut client);
        b.ok(&mut client);
        assert_eq!((a.epoch, b.epoch), (epoch, epoch));
        assert_eq!((a.owned.clone(), b.owned.clone()), held);
        assert_eq!(describe(&mut client, "keep").group_state.as_str(), "Stable");
    }
    // A member that leaves stays gone after a restart; the empty group is still a consumer
    // group, with its offsets.
    let mut client = cairn.client();
    assert_eq!(commit_at(&mut client, "keep", "a", epoch, 11), 0);
    a.leave(&mut client, -1);
    b.leave(&mut client, -1);
    cairn.restart();
    let mut client = cairn.client();
    let listed = client.call(5, &ListGroupsRequest::default());
    let keep = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "keep")
        .expect("listed");
    assert_eq!(
        (
            keep.group_type.as_str(),
            keep.protocol_type.as_str(),
            keep.group_state.as_str()
        ),
        ("consumer", "consumer", "Empty")
    );
    assert_eq!(fetch_at(&mut client, "keep", None, -1), (0, 11));
    // Deleted, it stays deleted.
    let deleted = client.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("keep"))]),
    );
    assert_eq!(deleted.results[0].error_code, 0);
    cairn.restart();
    let mut client = cairn.client();
    let listed = client.call(5, &ListGroupsRequest::default());
    assert!(listed.groups.iter().all(|g| g.group_id.as_str() != "keep"));
    assert_eq!(
        describe(&mut client, "keep").error_code,
        code(ResponseError::GroupIdNotFound)
    );
}

#[test]
fn a_regular_expression_subscription_follows_topics_created_and_deleted() {
    let mut cairn = Cairn::start(ENABLED);
    let mut client = cairn.client();
    create_topic(&mut client, "re-a", 2, &[]);
    create_topic(&mut client, "other", 2, &[]);
    let regex = |m: &Member, client: &mut Client| {
        let mut r = m.request(&topic_ids(client));
        if m.epoch == 0 {
            r.subscribed_topic_names = None;
            r.subscribed_topic_regex = Some(s("re-.*"));
        }
        r
    };
    let mut a = Member::new("rx", "a", &[]);
    // The topic ids are taken before the call: the member may still own a deleted topic.
    let beat_with = |a: &mut Member,
                     client: &mut Client,
                     request: ConsumerGroupHeartbeatRequest,
                     ids: BTreeMap<String, uuid::Uuid>| {
        let response = client.call(1, &request);
        assert_eq!(response.error_code, 0);
        a.epoch = response.member_epoch;
        a.take_assignment(response.assignment, ids);
    };
    let beat = |a: &mut Member, client: &mut Client| {
        let (request, ids) = (regex(a, client), topic_ids(client));
        beat_with(a, client, request, ids);
    };
    beat(&mut a, &mut client);
    assert_eq!(a.owned.keys().collect::<Vec<_>>(), ["re-a"]);
    let group = describe(&mut client, "rx");
    assert_eq!(
        group.members[0].subscribed_topic_regex.as_deref(),
        Some("re-.*")
    );
    assert!(group.members[0].subscribed_topic_names.is_empty());
    // A topic created later that matches is assigned at the next heartbeat.
    create_topic(&mut client, "re-b", 3, &[]);
    create_topic(&mut client, "xre-c", 1, &[]);
    let before = a.epoch;
    beat(&mut a, &mut client);
    assert!(a.epoch > before);
    assert_eq!(a.owned.keys().collect::<Vec<_>>(), ["re-a", "re-b"]);
    assert_eq!(a.owned["re-b"].len(), 3);
    // The expression and its topics survive a restart.
    cairn.restart();
    let mut client = cairn.client();
    let epoch = a.epoch;
    beat(&mut a, &mut client);
    assert_eq!(a.epoch, epoch);
    assert_eq!(
        describe(&mut client, "rx").members[0]
            .subscribed_topic_regex
            .as_deref(),
        Some("re-.*")
    );
    // A deleted topic leaves the subscription.
    let (request, ids) = (regex(&a, &mut client), topic_ids(&mut client));
    let deleted = client.call(
        5,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name("re-a")])
            .with_timeout_ms(5_000),
    );
    assert_eq!(deleted.responses[0].error_code, 0);
    beat_with(&mut a, &mut client, request, ids);
    assert_eq!(a.owned.keys().collect::<Vec<_>>(), ["re-b"]);
}

/// A consumer protocol subscription (version 0) to `topics`.
fn classic_subscription(topics: &[&str]) -> bytes::Bytes {
    let mut b = 0i16.to_be_bytes().to_vec();
    b.extend((topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend((t.len() as i16).to_be_bytes());
        b.extend(t.as_bytes());
    }
    b.extend((-1i32).to_be_bytes());
    b.into()
}

/// A consumer protocol assignment (version 0) of `partitions` of topic `t`.
fn classic_assignment(partitions: &[i32]) -> bytes::Bytes {
    let mut b = 0i16.to_be_bytes().to_vec();
    b.extend(1i32.to_be_bytes());
    b.extend([0, 1, b't']);
    b.extend((partitions.len() as i32).to_be_bytes());
    for p in partitions {
        b.extend(p.to_be_bytes());
    }
    b.extend((-1i32).to_be_bytes());
    b.into()
}

/// The partitions of topic `t` in a consumer protocol assignment (one topic at most).
fn assigned_partitions(bytes: &[u8]) -> BTreeSet<i32> {
    let count = i32::from_be_bytes(bytes[2..6].try_into().unwrap());
    if count == 0 {
        return BTreeSet::new();
    }
    assert_eq!(&bytes[6..9], &[0, 1, b't']);
    let n = i32::from_be_bytes(bytes[9..13].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| i32::from_be_bytes(bytes[13 + 4 * i..17 + 4 * i].try_into().unwrap()))
        .collect()
}

/// One classic member, as an eager client keeps it: joins with the member id handshake,
/// heartbeats, and on REBALANCE_IN_PROGRESS rejoins and syncs.
struct Classic {
    group: String,
    id: String,
    generation: i32,
    partitions: BTreeSet<i32>,
}

impl Classic {
    fn join_request(&self) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.id))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(classic_subscription(&["t"]))])
    }

    /// Joins (the handshake first when it has no id yet); returns the JoinGroup answer.
    fn join(&mut self, client: &mut Client) -> JoinGroupResponse {
        if self.id.is_empty() {
            let first = client.call(9, &self.join_request());
            assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
            self.id = first.member_id.to_string();
        }
        let joined = client.call(9, &self.join_request());
        assert_eq!(joined.error_code, 0, "join of {}", self.id);
        self.generation = joined.generation_id;
        joined
    }

    fn sync(&mut self, client: &mut Client, assignments: &[(&str, &[i32])]) -> i16 {
        let response = client.call(
            5,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id(self.generation)
                .with_member_id(s(&self.id))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(
                    assignments
                        .iter()
                        .map(|(m, ps)| {
                            sync_group_request::SyncGroupRequestAssignment::default()
                                .with_member_id(s(m))
                                .with_assignment(classic_assignment(ps))
                        })
                        .collect(),
                ),
        );
        if response.error_code == 0 {
            self.partitions = assigned_partitions(&response.assignment);
        }
        response.error_code
    }

    fn heartbeat(&self, client: &mut Client) -> i16 {
        client
            .call(
                4,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_generation_id(self.generation)
                    .with_member_id(s(&self.id)),
            )
            .error_code
    }

    /// Heartbeats; told to rebalance, gives everything up, rejoins and syncs.
    fn turn(&mut self, client: &mut Client) {
        match self.heartbeat(client) {
            0 => {}
            e if e == code(ResponseError::RebalanceInProgress) => {
                self.partitions.clear();
                let joined = self.join(client);
                assert!(joined.members.is_empty() && joined.leader.is_empty());
                assert_eq!(self.sync(client, &[]), 0);
            }
            e => panic!("heartbeat of {}: error {e}", self.id),
        }
    }
}

fn group_type(client: &mut Client, group: &str) -> (String, String) {
    let listed = client.call(5, &ListGroupsRequest::default());
    let g = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == group)
        .expect("listed");
    (g.group_type.to_string(), g.group_state.to_string())
}

#[test]
fn a_classic_group_with_members_is_upgraded_and_downgraded_online() {
    let mut cairn = Cairn::start(&[ENABLED[0], ENABLED[1], "group.initial.rebalance.delay.ms=0"]);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 4, &[]);
    // A classic group: its one member leads and takes every partition.
    let mut a = Classic {
        group: "up".into(),
        id: String::new(),
        generation: 0,
        partitions: BTreeSet::new(),
    };
    let joined = a.join(&mut client);
    assert_eq!(joined.leader, joined.member_id);
    let a_id = a.id.clone();
    assert_eq!(a.sync(&mut client, &[(&a_id, &[0, 1, 2, 3])]), 0);
    assert_eq!(a.partitions, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(
        group_type(&mut client, "up"),
        ("classic".into(), "Stable".into())
    );

    // A consumer-protocol member joins: the group becomes a consumer group at once, the
    // classic member keeps its generation as member epoch and its partitions.
    let mut n = Member::new("up", "n", &["t"]);
    n.ok(&mut client);
    assert_eq!(n.epoch, a.generation + 1);
    assert_eq!(
        n.count(),
        0,
        "nothing until the classic member releases partitions"
    );
    assert_eq!(group_type(&mut client, "up").0, "consumer");
    let described = describe(&mut client, "up");
    let types: BTreeMap<String, i8> = described
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_type))
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([(a.id.clone(), 0), ("n".to_string(), 1)])
    );

    // The classic member is told to rejoin, and the partitions are split.
    assert_eq!(
        a.heartbeat(&mut client),
        code(ResponseError::RebalanceInProgress)
    );
    for _ in 0..4 {
        a.turn(&mut client);
        n.ok(&mut client);
    }
    assert_eq!(a.generation, n.epoch);
    let n_partitions: BTreeSet<i32> = n.owned.values().flatten().copied().collect();
    assert_eq!((a.partitions.len(), n_partitions.len()), (2, 2));
    assert_eq!(&a.partitions | &n_partitions, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(describe(&mut client, "up").group_state.as_str(), "Stable");
    // The classic member commits at its generation, with a pre-KIP-848 OffsetCommit.
    assert_eq!(commit_v(&mut client, 8, "up", &a.id, a.generation, 5), 0);
    assert_eq!(
        commit_v(&mut client, 8, "up", &a.id, a.generation - 1, 5),
        code(ResponseError::IllegalGeneration)
    );

    // The classic member and its protocol metadata survive a restart.
    cairn.restart();
    let mut client = cairn.client();
    let described = describe(&mut client, "up");
    assert_eq!(described.members.len(), 2);
    assert_eq!(a.heartbeat(&mut client), 0);
    n.ok(&mut client);

    // The last consumer-protocol member leaves: the group is classic again, rebalancing, and
    // the classic member rejoins it as its leader.
    assert_eq!(n.leave(&mut client, -1).error_code, 0);
    assert_eq!(
        group_type(&mut client, "up"),
        ("classic".into(), "PreparingRebalance".into())
    );
    assert_eq!(
        a.heartbeat(&mut client),
        code(ResponseError::RebalanceInProgress)
    );
    let joined = a.join(&mut client);
    assert_eq!(joined.leader.as_str(), a.id);
    assert_eq!(a.sync(&mut client, &[(&a_id, &[0, 1, 2, 3])]), 0);
    assert_eq!(
        group_type(&mut client, "up"),
        ("classic".into(), "Stable".into())
    );
    assert_eq!(fetch_at(&mut client, "up", None, -1), (0, 5));
    // And it stays classic after a restart.
    cairn.restart();
    let mut client = cairn.client();
    assert_eq!(
        group_type(&mut client, "up"),
        ("classic".into(), "Stable".into())
    );
    assert_eq!(a.heartbeat(&mut client), 0);
}

#[test]
fn an_empty_consumer_group_is_deleted_when_its_offsets_expire() {
    let mut cairn = Cairn::start(&[
        ENABLED[0],
        ENABLED[1],
        "offsets.retention.check.interval.ms=200",
    ]);
    let mut client = cairn.client();
    create_topic(&mut client, "t", 1, &[]);
    let mut a = Member::new("exp", "a", &["t"]);
    a.ok(&mut client);
    assert_eq!(a.leave(&mut client, -1).error_code, 0);
    // An offset committed without a member (OffsetCommit v2, with a 100 ms retention).
    let response = client.call(
        2,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s("exp")))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(100)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(3)])]),
    );
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = client.call(5, &ListGroupsRequest::default());
        if listed.groups.iter().all(|g| g.group_id.as_str() != "exp") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the empty group was never deleted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        describe(&mut client, "exp").error_code,
        code(ResponseError::GroupIdNotFound)
    );
    // Gone for good: its records have tombstones.
    cairn.restart();
    let mut client = cairn.client();
    assert_eq!(
        describe(&mut client, "exp").error_code,
        code(ResponseError::GroupIdNotFound)
    );
}
