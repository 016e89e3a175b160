//! Kafka's checks on the members and coordinators that take part in a transaction:
//! TxnOffsetCommit v3+ names a group member (member id, generation, instance id) and is refused
//! with UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION / FENCED_INSTANCE_ID as Kafka refuses it, while
//! the member-less form of older clients is still accepted; WriteTxnMarkers from a coordinator
//! epoch older than the one that last wrote a producer's marker is refused with
//! TRANSACTION_COORDINATOR_FENCED. A refused request writes nothing.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::transactions::{add, end, init, list_latest, tid, txn_batch, txn_produce, FAST};
use crate::util::*;

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const FENCED_INSTANCE_ID: i16 = 82;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// TxnOffsetCommit v3 of `offset` for partition 0 of `in`, from `member`/`instance` at
/// `generation`: the partition's error.
fn txn_commit(
    client: &mut Client,
    pid: i64,
    (member, instance, generation): (&str, Option<&str>, i32),
    offset: i64,
) -> i16 {
    client
        .call(
            3,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(tid("t-members"))
                .with_group_id(GroupId(s("cg")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_member_id(s(member))
                .with_group_instance_id(instance.map(s))
                .with_generation_id(generation)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("in"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        )
        .topics[0]
        .partitions[0]
        .error_code
}

fn committed_offset(client: &mut Client) -> i64 {
    client
        .call(
            5,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s("cg")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name("in"))
                    .with_partition_indexes(vec![0])])),
        )
        .topics[0]
        .partitions[0]
        .committed_offset
}

#[test]
fn txn_offset_commit_checks_the_member_generation_and_instance() {
    let mut fast = FAST.to_vec();
    fast.push("group.initial.rebalance.delay.ms=0");
    let cairn = Cairn::start(&fast);
    let mut client = cairn.client();
    create_topic(&mut client, "in", 1, &[]);
    // A static member "instance-1" joins group cg and syncs: generation 1.
    let joined = client.call(
        5,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(10_000)
            .with_group_instance_id(Some(s("instance-1")))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::new())]),
    );
    assert_eq!(joined.error_code, 0);
    let (member, generation) = (joined.member_id.to_string(), joined.generation_id);
    let synced = client.call(
        5,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_group_instance_id(Some(s("instance-1")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::new())]),
    );
    assert_eq!(synced.error_code, 0);

    let (e, pid, epoch) = init(&mut client, "t-members", 30_000);
    assert_eq!((e, epoch), (0, 0));
    let add_offsets = client.call(
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(tid("t-members"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_group_id(GroupId(s("cg"))),
    );
    assert_eq!(add_offsets.error_code, 0);
    // The member at its generation (and instance) commits; so does a request naming no member
    // and generation -1 (older clients' form), even though the group has a member.
    assert_eq!(txn_commit(&mut client, pid, ("", None, -1), 40), 0);
    assert_eq!(
        txn_commit(
            &mut client,
            pid,
            (&member, Some("instance-1"), generation),
            50
        ),
        0
    );
    // Refused as Kafka refuses them, and not written.
    assert_eq!(
        txn_commit(&mut client, pid, ("nobody", None, generation), 99),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        txn_commit(&mut client, pid, (&member, None, generation + 1), 99),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        txn_commit(&mut client, pid, (&member, None, -1), 99),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        txn_commit(
            &mut client,
            pid,
            ("other", Some("instance-1"), generation),
            99
        ),
        FENCED_INSTANCE_ID
    );
    assert_eq!(committed_offset(&mut client), -1, "not before the commit");
    assert_eq!(end(&mut client, 3, "t-members", pid, 0, true), 0);
    assert_eq!(committed_offset(&mut client), 50);
}

/// WriteTxnMarkers v1: an abort marker for partition 0 of `topic` at `coordinator_epoch`.
fn abort_marker(client: &mut Client, topic: &str, pid: i64, coordinator_epoch: i32) -> i16 {
    client
        .call(
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(vec![0])])]),
        )
        .markers[0]
        .topics[0]
        .partitions[0]
        .error_code
}

#[test]
fn a_marker_from_an_older_coordinator_epoch_is_fenced() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "hang", 1, &[]);
    let (e, pid, _) = init(&mut client, "t-epochs", 30_000);
    assert_eq!(e, 0);
    let open = |client: &mut Client, sequence: i32| {
        assert_eq!(add(client, "t-epochs", pid, 0, "hang", &[0]), vec![0]);
        let batch = txn_batch(&["x"], pid, 0, sequence);
        assert_eq!(txn_produce(client, Some("t-epochs"), "hang", 0, batch).0, 0);
    };
    // Transaction 1 is aborted by an operator's marker at coordinator epoch 5.
    open(&mut client, 0);
    assert_eq!(list_latest(&mut client, "hang", 1), 0);
    assert_eq!(abort_marker(&mut client, "hang", pid, 5), 0);
    assert_eq!(list_latest(&mut client, "hang", 1), 2);
    // The coordinator's own abort of it answers (nothing left to end there).
    assert_eq!(end(&mut client, 3, "t-epochs", pid, 0, false), 0);
    let hw = list_latest(&mut client, "hang", 0);
    // Transaction 2: a marker from epoch 3 (older than 5) is refused and writes nothing, so
    // the transaction still holds the LSO; one from epoch 5 ends it.
    open(&mut client, 1);
    let lso = list_latest(&mut client, "hang", 1);
    assert_eq!(
        lso, hw,
        "the open transaction holds the LSO at its first offset"
    );
    assert_eq!(
        abort_marker(&mut client, "hang", pid, 3),
        TRANSACTION_COORDINATOR_FENCED
    );
    assert_eq!(list_latest(&mut client, "hang", 1), lso);
    assert_eq!(
        list_latest(&mut client, "hang", 0),
        hw + 1,
        "no marker written"
    );
    assert_eq!(abort_marker(&mut client, "hang", pid, 5), 0);
    assert_eq!(list_latest(&mut client, "hang", 1), hw + 2);
}
