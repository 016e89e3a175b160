//! The transaction admin APIs on the wire (what `kafka-transactions` sends): ListTransactions
//! with its state, producer id and duration filters, DescribeTransactions and
//! DescribeProducers, against one transaction left open and one committed; WriteTxnMarkers
//! aborting an open transaction, as `kafka-transactions abort` does.

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{Cairn, Client};
use crate::transactions::{
    add, committed_values, end, init, list_latest, tid, txn_batch, txn_produce, FAST,
};
use crate::util::*;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// ListTransactions at `version`: (unknown state filters, sorted (id, producer id, state)).
fn list(
    client: &mut Client,
    version: i16,
    states: &[&str],
    pids: &[i64],
    duration: i64,
) -> (Vec<String>, Vec<(String, i64, String)>) {
    let r = client.call(
        version,
        &ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            )
            .with_producer_id_filters(pids.iter().map(|&p| ProducerId(p)).collect())
            .with_duration_filter(duration),
    );
    assert_eq!(r.error_code, 0);
    let mut listed: Vec<_> = r
        .transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.producer_id.0,
                t.transaction_state.to_string(),
            )
        })
        .collect();
    listed.sort();
    let unknown = r
        .unknown_state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    (unknown, listed)
}

#[test]
fn list_describe_and_describe_producers_show_open_and_committed_transactions() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "adm", 2, &[]);
    let (e, open, _) = init(&mut client, "t-open", 30_000);
    assert_eq!(e, 0);
    assert_eq!(add(&mut client, "t-open", open, 0, "adm", &[0]), vec![0]);
    let batch = txn_batch(&["a", "b"], open, 0, 0);
    assert_eq!(
        txn_produce(&mut client, Some("t-open"), "adm", 0, batch).0,
        0
    );
    let (e, done, _) = init(&mut client, "t-done", 30_000);
    assert_eq!(e, 0);
    assert_eq!(add(&mut client, "t-done", done, 0, "adm", &[1]), vec![0]);
    let batch = txn_batch(&["c"], done, 0, 0);
    assert_eq!(
        txn_produce(&mut client, Some("t-done"), "adm", 1, batch).0,
        0
    );
    assert_eq!(end(&mut client, 3, "t-done", done, 0, true), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));

    let ongoing = ("t-open".to_string(), open, "Ongoing".to_string());
    let committed = ("t-done".to_string(), done, "CompleteCommit".to_string());
    let (unknown, listed) = list(&mut client, 0, &[], &[], -1);
    assert!(unknown.is_empty());
    assert_eq!(listed, vec![committed.clone(), ongoing.clone()]);
    let (unknown, listed) = list(&mut client, 1, &["Ongoing", "Bogus"], &[], -1);
    assert_eq!(unknown, vec!["Bogus"]);
    assert_eq!(listed, vec![ongoing.clone()]);
    assert_eq!(list(&mut client, 1, &[], &[done], -1).1, vec![committed]);
    // KIP-994: only transactions running longer than the duration.
    let (_, listed) = list(&mut client, 1, &["Ongoing"], &[], 10);
    assert_eq!(listed, vec![ongoing]);
    assert!(list(&mut client, 1, &["Ongoing"], &[], 3_600_000)
        .1
        .is_empty());

    let r = client.call(
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![
            tid("t-open"),
            tid("t-done"),
            tid("nope"),
        ]),
    );
    let t = &r.transaction_states[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.transactional_id, tid("t-open"));
    assert_eq!(t.transaction_state.as_str(), "Ongoing");
    assert_eq!((t.producer_id.0, t.producer_epoch), (open, 0));
    assert_eq!(t.transaction_timeout_ms, 30_000);
    assert!(t.transaction_start_time_ms > 0);
    assert_eq!(t.topics.len(), 1);
    assert_eq!(t.topics[0].topic, topic_name("adm"));
    assert_eq!(t.topics[0].partitions, vec![0]);
    let t = &r.transaction_states[1];
    assert_eq!(t.transaction_state.as_str(), "CompleteCommit");
    assert!(t.topics.is_empty());
    assert_eq!(
        r.transaction_states[2].error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );

    let r = client.call(
        0,
        &DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default()
                .with_name(topic_name("adm"))
                .with_partition_indexes(vec![0, 1, 7]),
            TopicRequest::default()
                .with_name(topic_name("missing"))
                .with_partition_indexes(vec![0]),
        ]),
    );
    let parts = &r.topics[0].partitions;
    assert_eq!(parts[0].error_code, 0);
    let p = &parts[0].active_producers;
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].producer_id.0, p[0].producer_epoch), (open, 0));
    assert_eq!(p[0].last_sequence, 1);
    assert_eq!(p[0].current_txn_start_offset, 0);
    assert!(p[0].last_timestamp > 0);
    // The committed producer: its marker ended the transaction here.
    let p = &parts[1].active_producers;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].producer_id.0, done);
    assert_eq!((p[0].last_sequence, p[0].current_txn_start_offset), (0, -1));
    assert_eq!(p[0].coordinator_epoch, 0);
    assert_eq!(parts[2].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(
        r.topics[1].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    // Once the open transaction is aborted, no transaction is listed as ongoing.
    assert_eq!(end(&mut client, 3, "t-open", open, 0, false), 0);
    assert!(list(&mut client, 1, &["Ongoing"], &[], -1).1.is_empty());
}

/// WriteTxnMarkers v1 of one marker for partitions 0 and 9 (which does not exist) of `topic`:
/// the error of each.
fn write_marker(client: &mut Client, topic: &str, pid: i64, epoch: i16, commit: bool) -> Vec<i16> {
    let r = client.call(
        1,
        &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0, 9])])]),
    );
    r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

#[test]
fn write_txn_markers_aborts_an_open_transaction_and_moves_the_lso() {
    let cairn = Cairn::start(FAST);
    let mut client = cairn.client();
    create_topic(&mut client, "hang", 1, &[]);
    let (e, pid, _) = init(&mut client, "t-hang", 30_000);
    assert_eq!(e, 0);
    assert_eq!(add(&mut client, "t-hang", pid, 0, "hang", &[0]), vec![0]);
    let batch = txn_batch(&["x", "y"], pid, 0, 0);
    assert_eq!(
        txn_produce(&mut client, Some("t-hang"), "hang", 0, batch).0,
        0
    );
    assert_eq!(list_latest(&mut client, "hang", 1), 0);
    // A marker of an older epoch than the producer's is refused and changes nothing.
    assert_eq!(
        write_marker(&mut client, "hang", pid, -1, false),
        vec![INVALID_PRODUCER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(list_latest(&mut client, "hang", 1), 0);
    // The abort marker ends the transaction here: the LSO reaches the high watermark (past
    // the marker) and read_committed reads skip the aborted records.
    assert_eq!(
        write_marker(&mut client, "hang", pid, 0, false),
        vec![0, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(list_latest(&mut client, "hang", 1), 3);
    assert_eq!(list_latest(&mut client, "hang", 0), 3);
    assert!(committed_values(&mut client, "hang", 0).is_empty());
}
