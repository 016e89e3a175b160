//! Group coordination in a two-broker cluster: `__consumer_offsets` gets a replica on each
//! live broker (offsets.topic.replication.factor, capped at the live brokers), the leader of a
//! group's partition coordinates the group, and the other broker answers NOT_COORDINATOR; a
//! transactional id's state moves to the new leader of its `__transaction_state` partition.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Etcd;
use crate::harness::{Cairn, Client};
use crate::util::{create_topic, topic_name};

fn node(etcd: &Etcd, id: i32) -> Cairn {
    Cairn::start(&[
        &format!("node.id={id}"),
        &format!("cairn.cluster.etcd.endpoints={}", etcd.endpoint),
        "broker.session.timeout.ms=3000",
        "offsets.topic.num.partitions=4",
        "cairn.http.listen=",
    ])
}

/// OffsetCommit v8 of offset `offset` for `t`/0 by an admin (no member): the error code.
fn commit(client: &mut Client, group: &str, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response: OffsetCommitResponse = client.call(8, &request);
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 of `t`/0: (error code, committed offset).
fn fetch(client: &mut Client, group: &str) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = client.call(7, &request);
    (
        response.error_code,
        response.topics[0].partitions[0].committed_offset,
    )
}

#[test]
fn only_the_leader_of_a_groups_offsets_partition_coordinates_it() {
    let etcd = Etcd::start();
    let one = node(&etcd, 1);
    let two = node(&etcd, 2);
    let mut clients = [one.client(), two.client()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m: MetadataResponse =
            clients[0].call(12, &MetadataRequest::default().with_topics(Some(vec![])));
        if m.brokers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 never listed: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    create_topic(&mut clients[0], "t", 1, &[]);

    // The first FindCoordinator creates __consumer_offsets: default factor 3, two live
    // brokers, so two replicas per partition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let coordinator = loop {
        let found: FindCoordinatorResponse = clients[0].call(
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        );
        if found.error_code == 0 {
            break found.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let offsets: MetadataResponse = clients[0].call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("__consumer_offsets"))),
        ])),
    );
    assert_eq!(offsets.topics[0].partitions.len(), 4);
    for p in &offsets.topics[0].partitions {
        let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|r| r.0).collect();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2], "{p:?}");
    }

    let (at, other) = if coordinator == 1 { (0, 1) } else { (1, 0) };
    // The coordinator takes the commit once it has loaded the partition (it may answer
    // COORDINATOR_LOAD_IN_PROGRESS until then).
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match commit(&mut clients[at], "g", 42) {
            0 => break,
            e if e == loading || e == ResponseError::NotCoordinator.code() => {
                assert!(Instant::now() < deadline, "the coordinator never loaded");
                std::thread::sleep(Duration::from_millis(100));
            }
            e => panic!("commit refused with {e}"),
        }
    }
    assert_eq!(fetch(&mut clients[at], "g"), (0, 42));

    // The other broker holds a replica of the partition but does not coordinate the group.
    let not_coordinator = ResponseError::NotCoordinator.code();
    assert_eq!(commit(&mut clients[other], "g", 7), not_coordinator);
    assert_eq!(fetch(&mut clients[other], "g").0, not_coordinator);
    let heartbeat: HeartbeatResponse = clients[other].call(
        4,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("m")),
    );
    assert_eq!(heartbeat.error_code, not_coordinator);
    // The refused commit changed nothing.
    assert_eq!(fetch(&mut clients[at], "g"), (0, 42));
}

/// Retries `call` while the coordinator is being looked up or loaded; its last error code.
fn until_served(mut call: impl FnMut() -> (i16, i64, i16)) -> (i16, i64, i16) {
    let retriable = [
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
        ResponseError::CoordinatorNotAvailable.code(),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = call();
        if !retriable.contains(&answer.0) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_transactional_id_moves_with_the_leadership_of_its_state_partition() {
    let etcd = Etcd::start();
    let mut nodes = [node(&etcd, 1), node(&etcd, 2)];
    let mut c = nodes[0].client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m: MetadataResponse = c.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
        if m.brokers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "broker 2 never listed: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let coordinator = loop {
        let found: FindCoordinatorResponse = c.call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("tx"))
                .with_key_type(1),
        );
        if found.error_code == 0 {
            break found.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (at, other) = if coordinator == 1 { (0, 1) } else { (1, 0) };
    let mut c_at = nodes[at].client();
    let (error, producer_id, epoch) =
        until_served(|| crate::transactions::init(&mut c_at, "tx", 60_000));
    assert_eq!((error, epoch), (0, 0));
    // The other broker holds a replica of the state but does not coordinate the id.
    let mut c_other = nodes[other].client();
    assert_eq!(
        crate::transactions::init(&mut c_other, "tx", 60_000).0,
        ResponseError::NotCoordinator.code()
    );
    // The coordinator goes; the other broker leads the partition, loads the id's state from
    // its replica, and the next InitProducerId bumps the same producer's epoch.
    assert!(nodes[at].stop().success());
    let (error, again, bumped) =
        until_served(|| crate::transactions::init(&mut c_other, "tx", 60_000));
    assert_eq!((error, again, bumped), (0, producer_id, 1));
}
