//! Transactions on the wire: InitProducerId with a transactional id, AddPartitionsToTxn,
//! transactional Produce, EndTxn, AddOffsetsToTxn and TxnOffsetCommit; `read_committed` Fetch
//! and ListOffsets; fencing, out-of-order use, timeouts and a crash (SIGKILL) between steps.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::harness::{Cairn, Client};
use crate::util::*;

pub(crate) const FAST: &[&str] = &[
    "offsets.topic.num.partitions=2",
    "transaction.state.log.num.partitions=2",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
    "transaction.max.timeout.ms=60000",
];

pub(crate) fn tid(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

/// InitProducerId v4 for `id`: (error, producer id, epoch).
pub(crate) fn init(client: &mut Client, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let r = client.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(tid(id)))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// AddPartitionsToTxn v3: the error of every partition.
pub(crate) fn add(
    client: &mut Client,
    id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    ps: &[i32],
) -> Vec<i16> {
    let r = client.call(
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(ps.to_vec())]),
    );
    r.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

pub(crate) fn end(
    client: &mut Client,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> i16 {
    client
        .call(
            version,
            &EndTxnRequest::default()
                .with_transactional_id(tid(id))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        )
        .error_code
}

/// A transactional batch of `values` from `pid`/`epoch` at `sequence`.
pub(crate) fn txn_batch(values: &[&str], pid: i64, epoch: i16, sequence: i32) -> bytes::Bytes {
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = record(Some("k"), Some(v), 1_000 + i as i64);
            r.offset = i as i64;
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.sequence = sequence + i as i32;
            r.transactional = true;
            r
        })
        .collect();
    encode(&records, Compression::None)
}

/// Produces with a transactional id: (error, base offset).
pub(crate) fn txn_produce(
    client: &mut Client,
    id: Option<&str>,
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
) -> (i16, i64) {
    let request = produce_request(topic, partition, -1, records).with_transactional_id(id.map(tid));
    let response = client.call(9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetches at `isolation` (0 uncommitted, 1 committed) from offset 0 until nothing more comes
/// (a read stops at a segment's end, as Kafka's do): (records, LSO, HW, aborted (pid, first)).
fn fetch_all(
    client: &mut Client,
    topic: &str,
    partition: i32,
    isolation: i8,
) -> (
    Vec<kafka_protocol::records::Record>,
    i64,
    i64,
    Vec<(i64, i64)>,
) {
    let mut next = 0;
    let mut records = Vec::new();
    let mut aborted = Vec::new();
    loop {
        let request = fetch_request(topic, partition, next, 0, 0).with_isolation_level(isolation);
        let response: FetchResponse = client.call(12, &request);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        for a in p.aborted_transactions.iter().flatten() {
            if !aborted.contains(&(a.producer_id.0, a.first_offset)) {
                aborted.push((a.producer_id.0, a.first_offset));
            }
        }
        let batch = records_of(p.records.clone().unwrap_or_default());
        if batch.is_empty() {
            return (records, p.last_stable_offset, p.high_watermark, aborted);
        }
        next = batch.last().map_or(next, |r| r.offset + 1);
        records.extend(batch);
    }
}

/// A fetch at `isolation`: (values, LSO, HW, aborted (pid, first)).
fn fetch_at(
    client: &mut Client,
    topic: &str,
    partition: i32,
    isolation: i8,
) -> (Vec<String>, i64, i64, Vec<(i64, i64)>) {
    let (records, lso, hw, aborted) = fetch_all(client, topic, partition, isolation);
    let values = records
        .into_iter()
        .filter(|r| !r.control)
        .filter_map(|r| r.value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        .collect();
    (values, lso, hw, aborted)
}

/// The `read_committed` view a consumer gets, as Kafka's consumers build it: a batch of a
/// producer at or past the first offset of one of its aborted transactions is skipped until
/// that producer's next marker.
pub(crate) fn committed_values(client: &mut Client, topic: &str, partition: i32) -> Vec<String> {
    let (records, _, _, mut aborted) = fetch_all(client, topic, partition, 1);
    let mut out = Vec::new();
    let mut skipping: Vec<i64> = Vec::new();
    {
        for r in records {
            if r.control {
                skipping.retain(|&pid| pid != r.producer_id);
                continue;
            }
            if let Some(i) = aborted
                .iter()
                .position(|&(pid, first)| pid == r.producer_id && first <= r.offset)
            {
                aborted.remove(i);
                skipping.push(r.producer_id);
            }
            if r.transactional && skipping.contains(&r.producer_id) {
                continue;
            }
            out.extend(r.value.map(|v| String::from_utf8_lossy(&v).into_owned()));
        }
    }
    out
}

/// Every record of every batch in `bytes`, control records included, decoded batch by batch.
fn records_of(mut bytes: bytes::Bytes) -> Vec<kafka_protocol::records::Record> {
    let mut out = Vec::new();
    while bytes.len() >= 12 {
        let size = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let mut one = bytes.split_to(size);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut one).unwrap();
        out.extend(set.records);
    }
    out
}

pub(crate) fn list_latest(client: &mut Client, topic: &str, isolation: i8) -> i64 {
    let r = client.call(
        5,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]),
    );
    r.topics[0].partitions[0].offset
}

#[test]
fn commit_and_abort_over_two_partitions_with_read_committed() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "tx", 2, &[]);
    let (e, pid, epoch) = init(&mut client, "app", 10_000);
    assert_eq!((e, epoch), (0, 0));

    assert_eq!(
        add(&mut client, "app", pid, epoch, "tx", &[0, 1]),
        vec![0, 0]
    );
    assert_eq!(
        txn_produce(
            &mut client,
            Some("app"),
            "tx",
            0,
            txn_batch(&["a", "b"], pid, epoch, 0)
        )
        .0,
        0
    );
    assert_eq!(
        txn_produce(
            &mut client,
            Some("app"),
            "tx",
            1,
            txn_batch(&["c"], pid, epoch, 0)
        )
        .0,
        0
    );
    // Ongoing: read_uncommitted sees it, read_committed stops at the LSO (its first offset).
    let (values, lso, hw, _) = fetch_at(&mut client, "tx", 0, 0);
    assert_eq!((values.len(), lso, hw), (2, 0, 2));
    assert!(fetch_at(&mut client, "tx", 0, 1).0.is_empty());
    assert_eq!(list_latest(&mut client, "tx", 1), 0);
    assert_eq!(list_latest(&mut client, "tx", 0), 2);
    assert_eq!(end(&mut client, 3, "app", pid, epoch, true), 0);
    // Committed: a marker follows in each partition and the LSO is the HW.
    let (values, lso, hw, aborted) = fetch_at(&mut client, "tx", 0, 1);
    assert_eq!(values, vec!["a", "b"]);
    assert_eq!((lso, hw), (3, 3));
    assert!(aborted.is_empty());
    assert_eq!(committed_values(&mut client, "tx", 1), vec!["c"]);
    // A repeated EndTxn of the completed transaction is answered as done.
    assert_eq!(end(&mut client, 3, "app", pid, epoch, true), 0);

    // The next transaction is aborted: its records stay in the log, listed as aborted.
    assert_eq!(add(&mut client, "app", pid, epoch, "tx", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("app"),
            "tx",
            0,
            txn_batch(&["x"], pid, epoch, 2)
        )
        .0,
        0
    );
    assert_eq!(end(&mut client, 3, "app", pid, epoch, false), 0);
    let (values, lso, hw, aborted) = fetch_at(&mut client, "tx", 0, 1);
    assert_eq!(values, vec!["a", "b", "x"]);
    assert_eq!((lso, hw), (5, 5));
    assert_eq!(aborted, vec![(pid, 3)]);
    assert_eq!(committed_values(&mut client, "tx", 0), vec!["a", "b"]);
}

#[test]
fn a_second_producer_fences_the_first() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "fence", 1, &[]);
    let (_, pid, old) = init(&mut client, "zombie", 10_000);
    assert_eq!(add(&mut client, "zombie", pid, old, "fence", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("zombie"),
            "fence",
            0,
            txn_batch(&["z1"], pid, old, 0)
        )
        .0,
        0
    );
    // The new instance bumps the epoch; the open transaction is aborted.
    let (e, pid2, new) = init(&mut client, "zombie", 10_000);
    assert_eq!((e, pid2), (0, pid));
    assert!(new > old);
    // The zombie's writes and requests are refused with Kafka's codes.
    assert_eq!(
        txn_produce(
            &mut client,
            Some("zombie"),
            "fence",
            0,
            txn_batch(&["z2"], pid, old, 1)
        )
        .0,
        47
    );
    assert_eq!(end(&mut client, 3, "zombie", pid, old, true), 90);
    assert_eq!(end(&mut client, 1, "zombie", pid, old, true), 47);
    assert_eq!(
        add(&mut client, "zombie", pid, old, "fence", &[0]),
        vec![90]
    );
    let (values, lso, hw, aborted) = fetch_at(&mut client, "fence", 0, 1);
    assert_eq!(values, vec!["z1"]);
    assert_eq!(lso, hw);
    assert_eq!(aborted, vec![(pid, 0)]);
    assert!(committed_values(&mut client, "fence", 0).is_empty());
    // The new producer works.
    assert_eq!(add(&mut client, "zombie", pid, new, "fence", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("zombie"),
            "fence",
            0,
            txn_batch(&["n"], pid, new, 0)
        )
        .0,
        0
    );
    assert_eq!(end(&mut client, 3, "zombie", pid, new, true), 0);
    assert_eq!(committed_values(&mut client, "fence", 0), vec!["n"]);
}

#[test]
fn out_of_order_use_gets_kafkas_errors_and_writes_nothing() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "ooo", 1, &[]);
    // A timeout above transaction.max.timeout.ms.
    assert_eq!(init(&mut client, "big", 120_000).0, 50);
    let (_, pid, epoch) = init(&mut client, "t", 10_000);
    // EndTxn with no partition added.
    assert_eq!(end(&mut client, 3, "t", pid, epoch, true), 48);
    // An unknown transactional id, and a producer id of another one.
    assert_eq!(end(&mut client, 3, "nope", pid, epoch, true), 49);
    assert_eq!(end(&mut client, 3, "t", pid + 1000, epoch, true), 49);
    // A transactional batch to a partition not in the transaction, and without any id.
    assert_eq!(
        txn_produce(
            &mut client,
            Some("t"),
            "ooo",
            0,
            txn_batch(&["x"], pid, epoch, 0)
        )
        .0,
        48
    );
    assert_eq!(
        txn_produce(
            &mut client,
            None,
            "ooo",
            0,
            txn_batch(&["x"], pid, epoch, 0)
        )
        .0,
        53
    );
    // TxnOffsetCommit of an unknown transaction, and before AddOffsetsToTxn.
    let commit = |client: &mut Client, id: &str| -> i16 {
        client
            .call(
                3,
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(tid(id))
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_generation_id(-1)
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name("ooo"))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5)])]),
            )
            .topics[0]
            .partitions[0]
            .error_code
    };
    assert_eq!(commit(&mut client, "unknown"), 49);
    assert_eq!(commit(&mut client, "t"), 48);
    // Nothing was written anywhere.
    let (values, lso, hw, _) = fetch_at(&mut client, "ooo", 0, 0);
    assert!(values.is_empty());
    assert_eq!((lso, hw), (0, 0));
    assert_eq!(committed_offset(&mut client, "g", "ooo"), -1);
}

fn committed_offset(client: &mut Client, group: &str, topic: &str) -> i64 {
    let r = client.call(
        5,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0])])),
    );
    r.topics[0].partitions[0].committed_offset
}

#[test]
fn offsets_become_visible_at_commit_and_survive_a_crash() {
    let mut cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "in", 1, &[]);
    create_topic(&mut client, "out", 1, &[]);
    let (_, pid, epoch) = init(&mut client, "ctp", 30_000);
    let add_offsets = |client: &mut Client| {
        client
            .call(
                3,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(tid("ctp"))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(StrBytes::from_static_str("cg"))),
            )
            .error_code
    };
    let txn_commit = |client: &mut Client, offset: i64| {
        client
            .call(
                3,
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(tid("ctp"))
                    .with_group_id(GroupId(StrBytes::from_static_str("cg")))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_generation_id(-1)
                    .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name("in"))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)])]),
            )
            .topics[0]
            .partitions[0]
            .error_code
    };
    // Transaction 1: output and offset 10, committed.
    assert_eq!(add(&mut client, "ctp", pid, epoch, "out", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("ctp"),
            "out",
            0,
            txn_batch(&["o1"], pid, epoch, 0)
        )
        .0,
        0
    );
    assert_eq!(add_offsets(&mut client), 0);
    assert_eq!(txn_commit(&mut client, 10), 0);
    assert_eq!(committed_offset(&mut client, "cg", "in"), -1);
    assert_eq!(end(&mut client, 3, "ctp", pid, epoch, true), 0);
    assert_eq!(committed_offset(&mut client, "cg", "in"), 10);
    // Transaction 2: offset 20, aborted: the offset stays 10.
    assert_eq!(add_offsets(&mut client), 0);
    assert_eq!(txn_commit(&mut client, 20), 0);
    assert_eq!(end(&mut client, 3, "ctp", pid, epoch, false), 0);
    assert_eq!(committed_offset(&mut client, "cg", "in"), 10);
    // Transaction 3 is open when the broker is killed.
    assert_eq!(add(&mut client, "ctp", pid, epoch, "out", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("ctp"),
            "out",
            0,
            txn_batch(&["o3"], pid, epoch, 1)
        )
        .0,
        0
    );
    assert_eq!(add_offsets(&mut client), 0);
    assert_eq!(txn_commit(&mut client, 30), 0);
    cairn.kill_and_restart();
    let mut client = cairn.client();
    // The open transaction still holds the LSO and its offset is not visible.
    let (values, lso, hw, _) = fetch_at(&mut client, "out", 0, 0);
    assert_eq!(values, vec!["o1", "o3"]);
    assert_eq!((lso, hw), (2, 3));
    assert_eq!(committed_offset(&mut client, "cg", "in"), 10);
    // The same producer commits it after the restart.
    assert_eq!(end(&mut client, 3, "ctp", pid, epoch, true), 0);
    assert_eq!(committed_offset(&mut client, "cg", "in"), 30);
    assert_eq!(committed_values(&mut client, "out", 0), vec!["o1", "o3"]);
    // And everything survives another crash, the aborted index included.
    cairn.kill_and_restart();
    let mut client = cairn.client();
    assert_eq!(committed_offset(&mut client, "cg", "in"), 30);
    let (_, lso, hw, _) = fetch_at(&mut client, "out", 0, 1);
    assert_eq!(lso, hw);
    assert_eq!(committed_values(&mut client, "out", 0), vec!["o1", "o3"]);
}

#[test]
fn a_timed_out_transaction_is_aborted_and_releases_the_lso() {
    let mut cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "slow", 1, &[]);
    let (_, pid, epoch) = init(&mut client, "dead", 1_000);
    assert_eq!(add(&mut client, "dead", pid, epoch, "slow", &[0]), vec![0]);
    assert_eq!(
        txn_produce(
            &mut client,
            Some("dead"),
            "slow",
            0,
            txn_batch(&["lost"], pid, epoch, 0)
        )
        .0,
        0
    );
    // A plain record after it is held back by the open transaction.
    assert_eq!(
        produce(&mut client, 9, "slow", 0, batch(&["plain"], 0)).0,
        0
    );
    assert_eq!(fetch_at(&mut client, "slow", 0, 1).1, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, lso, hw, _) = fetch_at(&mut client, "slow", 0, 1);
        if lso == hw {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transaction was never aborted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(committed_values(&mut client, "slow", 0), vec!["plain"]);
    // The producer was fenced by the abort.
    assert_eq!(end(&mut client, 3, "dead", pid, epoch, true), 90);
    // The aborted index survives a crash.
    cairn.kill_and_restart();
    let mut client = cairn.client();
    let (_, lso, hw, aborted) = fetch_at(&mut client, "slow", 0, 1);
    assert_eq!(lso, hw);
    assert_eq!(aborted, vec![(pid, 0)]);
    assert_eq!(committed_values(&mut client, "slow", 0), vec!["plain"]);
}
