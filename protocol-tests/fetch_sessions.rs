//! Fetch sessions (KIP-227) on the wire: a full fetch opens a session, incremental fetches
//! carry only changed partitions both ways, forgotten partitions leave the session, and a stale
//! epoch or an unknown session gets its error code; records stay whole and in order.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::records::RecordBatchDecoder;

use crate::harness::{Cairn, Client};
use crate::util::*;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// A fetch in session (`id`, `epoch`) naming `partitions` (partition, offset) of `topic` and
/// forgetting `forget`.
fn session_fetch(
    client: &mut Client,
    version: i16,
    (id, epoch): (i32, i32),
    topic: &str,
    partitions: &[(i32, i64)],
    forget: &[i32],
) -> FetchResponse {
    let mut request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch);
    if !partitions.is_empty() {
        request.topics = vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )];
    }
    if !forget.is_empty() {
        request.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(forget.to_vec())];
    }
    client.call(version, &request)
}

/// (partition, record offsets) of each partition answered, in order.
fn answered(response: &FetchResponse) -> Vec<(i32, Vec<i64>)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            assert_eq!(p.error_code, 0, "{p:?}");
            let mut bytes = p.records.clone().unwrap_or_default();
            let mut offsets = Vec::new();
            while !bytes.is_empty() {
                let set = RecordBatchDecoder::decode(&mut bytes).expect("whole batch");
                offsets.extend(set.records.iter().map(|r| r.offset));
            }
            (p.partition_index, offsets)
        })
        .collect()
}

#[test]
fn incremental_fetches_send_and_answer_only_what_changed() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    for version in [7i16, 12] {
        let topic = format!("s{version}");
        let s = topic.as_str();
        create_topic(&mut client, s, 3, &[]);
        for p in 0..3 {
            assert_eq!(
                produce(&mut client, 12, s, p, batch(&["a", "b"], 1_000)).0,
                0
            );
        }
        // A full fetch with epoch 0 opens a session and answers every partition.
        let all = [(0, 0), (1, 0), (2, 0)];
        let full = session_fetch(&mut client, version, (0, 0), s, &all, &[]);
        assert_eq!(full.error_code, 0);
        let id = full.session_id;
        assert!(id > 0, "v{version}: no session opened");
        assert_eq!(
            answered(&full),
            vec![(0, vec![0, 1]), (1, vec![0, 1]), (2, vec![0, 1])]
        );
        // The client moves every position to 2: nothing new, so an empty answer.
        let moved = [(0, 2), (1, 2), (2, 2)];
        let r = session_fetch(&mut client, version, (id, 1), s, &moved, &[]);
        assert_eq!((r.error_code, r.session_id), (0, id));
        assert!(answered(&r).is_empty(), "v{version}: {:?}", answered(&r));
        // New records in partition 1 only: an empty request, an answer with partition 1.
        produce(&mut client, 12, s, 1, batch(&["c"], 1_000));
        let r = session_fetch(&mut client, version, (id, 2), s, &[], &[]);
        let got = answered(&r);
        assert_eq!(got, vec![(1, vec![2])], "v{version}");
        // Partition 0 forgotten: new records there are no longer answered.
        produce(&mut client, 12, s, 0, batch(&["d"], 1_000));
        let r = session_fetch(&mut client, version, (id, 3), s, &[(1, 3)], &[0]);
        assert!(answered(&r).is_empty(), "v{version}: {:?}", answered(&r));
        // A repeated epoch and an unknown session get their errors and no data.
        let r = session_fetch(&mut client, version, (id, 3), s, &[], &[]);
        assert_eq!(
            (r.error_code, r.session_id),
            (INVALID_FETCH_SESSION_EPOCH, 0)
        );
        assert!(r.responses.is_empty());
        let r = session_fetch(&mut client, version, (id + 1, 1), s, &[], &[]);
        assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
        // The right epoch still works; the final epoch closes the session.
        let r = session_fetch(&mut client, version, (id, 4), s, &[(0, 2)], &[]);
        assert_eq!(answered(&r), vec![(0, vec![2])]);
        let r = session_fetch(&mut client, version, (id, -1), s, &[(0, 0)], &[]);
        assert_eq!((r.error_code, r.session_id), (0, 0));
        let r = session_fetch(&mut client, version, (id, 5), s, &[], &[]);
        assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
    }
}

#[test]
fn with_no_cache_slots_every_fetch_is_sessionless() {
    let cairn = Cairn::start(&["max.incremental.fetch.session.cache.slots=0"]);
    let mut client = cairn.client();
    create_topic(&mut client, "n", 1, &[]);
    produce(&mut client, 12, "n", 0, batch(&["x"], 1_000));
    let r = session_fetch(&mut client, 12, (0, 0), "n", &[(0, 0)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(answered(&r), vec![(0, vec![0])]);
}
