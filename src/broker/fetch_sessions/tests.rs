//! The session state machine and cache, driven directly with a clock passed in.

use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::protocol::StrBytes;

use super::*;

const NOT_FOUND: i16 = 70;
const BAD_EPOCH: i16 = 71;

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// A request naming (topic, partition, fetch offset).
fn request(id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
    let mut r = FetchRequest::default()
        .with_session_id(id)
        .with_session_epoch(epoch);
    for &(t, p, offset) in parts {
        let partition = FetchPartition::default()
            .with_partition(p)
            .with_fetch_offset(offset);
        match r.topics.iter_mut().find(|x| x.topic == name(t)) {
            Some(x) => x.partitions.push(partition),
            None => r.topics.push(
                FetchTopic::default()
                    .with_topic(name(t))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    r
}

/// An answer giving (topic, partition, high watermark, record bytes).
fn response(parts: &[(&str, i32, i64, usize)]) -> FetchResponse {
    let mut r = FetchResponse::default();
    for &(t, p, hw, records) in parts {
        let data = PartitionData::default()
            .with_partition_index(p)
            .with_high_watermark(hw)
            .with_log_start_offset(0)
            .with_records(Some(bytes::Bytes::from(vec![0u8; records])));
        match r.responses.iter_mut().find(|x| x.topic == name(t)) {
            Some(x) => x.partitions.push(data),
            None => r.responses.push(
                FetchableTopicResponse::default()
                    .with_topic(name(t))
                    .with_partitions(vec![data]),
            ),
        }
    }
    r
}

/// (topic, partition, fetch offset) of a request, in order.
fn listed(r: &FetchRequest) -> Vec<(String, i32, i64)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic.0.to_string(), p.partition, p.fetch_offset))
        })
        .collect()
}

/// (topic, partition) of an answer, in order.
fn answered(r: &FetchResponse) -> Vec<(String, i32)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic.0.to_string(), p.partition_index))
        })
        .collect()
}

/// Opens a session for `parts` (all at high watermark 10) at `now`.
fn open(s: &FetchSessions, parts: &[(&str, i32, i64)], now: i64) -> i32 {
    let full = request(0, 0, parts);
    assert_eq!(s.begin(&full, now), Ok(Begun::Full { create: true }));
    let answer: Vec<_> = parts.iter().map(|&(t, p, _)| (t, p, 10, 0)).collect();
    s.create(&full.topics, &response(&answer), now)
}

fn incremental(s: &FetchSessions, id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
    match s.begin(&request(id, epoch, parts), 0) {
        Ok(Begun::Incremental { id: got, request }) => {
            assert_eq!(got, id);
            *request
        }
        other => panic!("expected an incremental fetch, got {other:?}"),
    }
}

#[test]
fn a_session_is_opened_continued_and_checked_by_epoch() {
    let s = FetchSessions::new(10);
    let id = open(&s, &[("a", 0, 5), ("a", 1, 7), ("b", 0, 0)], 0);
    assert!(id > 0);
    // An empty incremental request reads every partition at its cached position.
    let read = incremental(&s, id, 1, &[]);
    let expected = vec![("a".into(), 0, 5), ("a".into(), 1, 7), ("b".into(), 0, 0)];
    assert_eq!(listed(&read), expected);
    // The epoch moved on: repeating 1 is refused, and so is skipping ahead.
    assert_eq!(s.begin(&request(id, 1, &[]), 0), Err(BAD_EPOCH));
    assert_eq!(s.begin(&request(id, 3, &[]), 0), Err(BAD_EPOCH));
    incremental(&s, id, 2, &[]);
    assert_eq!(s.begin(&request(id + 1, 3, &[]), 0), Err(NOT_FOUND));
    // An incremental epoch without a session id is not a session.
    assert_eq!(s.begin(&request(0, 3, &[]), 0), Err(BAD_EPOCH));
}

#[test]
fn incremental_requests_add_update_and_forget_partitions() {
    let s = FetchSessions::new(10);
    let id = open(&s, &[("a", 0, 5), ("a", 1, 7)], 0);
    let read = incremental(&s, id, 1, &[("a", 1, 9), ("c", 3, 1)]);
    assert_eq!(
        listed(&read),
        vec![("a".into(), 0, 5), ("a".into(), 1, 9), ("c".into(), 3, 1)]
    );
    let mut forget = request(id, 2, &[]);
    forget.forgotten_topics_data = vec![ForgottenTopic::default()
        .with_topic(name("a"))
        .with_partitions(vec![0])];
    let Ok(Begun::Incremental { request: read, .. }) = s.begin(&forget, 0) else {
        panic!("incremental");
    };
    assert_eq!(listed(&read), vec![("a".into(), 1, 9), ("c".into(), 3, 1)]);
    assert!(read.forgotten_topics_data.is_empty());
}

#[test]
fn answers_carry_only_what_changed_and_those_partitions_go_last() {
    let s = FetchSessions::new(10);
    let id = open(&s, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)], 0);
    incremental(&s, id, 1, &[]);
    // a-0 unchanged, a-1 has records, b-0's high watermark moved.
    let mut answer = response(&[("a", 0, 10, 0), ("a", 1, 10, 100), ("b", 0, 11, 0)]);
    s.trim(id, &mut answer);
    assert_eq!(answered(&answer), vec![("a".into(), 1), ("b".into(), 0)]);
    let read = incremental(&s, id, 2, &[]);
    assert_eq!(
        listed(&read)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect::<Vec<_>>(),
        vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]
    );
    // Nothing changed: an empty answer, with no topic left over.
    let mut answer = response(&[("a", 0, 10, 0), ("a", 1, 10, 0), ("b", 0, 11, 0)]);
    s.trim(id, &mut answer);
    assert!(answer.responses.is_empty());
    // An error is always sent, and the partition is sent again once it clears.
    incremental(&s, id, 3, &[]);
    let mut answer = response(&[("a", 0, 10, 0)]);
    answer.responses[0].partitions[0].error_code = 6;
    s.trim(id, &mut answer);
    assert_eq!(answered(&answer), vec![("a".into(), 0)]);
    let mut answer = response(&[("a", 0, 10, 0)]);
    s.trim(id, &mut answer);
    assert_eq!(answered(&answer), vec![("a".into(), 0)]);
}

#[test]
fn epoch_zero_and_final_epoch_close_the_session() {
    let s = FetchSessions::new(10);
    let id = open(&s, &[("a", 0, 0)], 0);
    assert_eq!(
        s.begin(&request(id, FINAL_EPOCH, &[("a", 0, 0)]), 0),
        Ok(Begun::Full { create: false })
    );
    assert_eq!(s.begin(&request(id, 1, &[]), 0), Err(NOT_FOUND));
    let id = open(&s, &[("a", 0, 0)], 0);
    assert_eq!(
        s.begin(&request(id, INITIAL_EPOCH, &[("a", 0, 0)]), 0),
        Ok(Begun::Full { create: true })
    );
    assert!(s.is_empty());
}

#[test]
fn a_full_cache_evicts_stale_then_smaller_sessions_only() {
    let s = FetchSessions::new(2);
    let small = open(&s, &[("a", 0, 0)], 0);
    let big = open(&s, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)], 1_000);
    assert!(small > 0 && big > 0 && small != big);
    // Full: a session no larger than the smallest is refused (served without a session).
    assert_eq!(open(&s, &[("b", 0, 0)], 2_000), 0);
    // A larger one evicts the smallest.
    let two = open(&s, &[("b", 0, 0), ("b", 1, 0)], 3_000);
    assert!(two > 0);
    assert_eq!(s.begin(&request(small, 1, &[]), 3_000), Err(NOT_FOUND));
    assert_eq!(s.len(), 2);
    // After two minutes unused, even a small new session evicts the stalest one.
    let late = 1_000 + EVICTION_MS;
    let one = open(&s, &[("c", 0, 0)], late);
    assert!(one > 0);
    assert_eq!(s.begin(&request(big, 1, &[]), late), Err(NOT_FOUND));
    assert!(matches!(
        s.begin(&request(two, 1, &[]), late),
        Ok(Begun::Incremental { .. })
    ));
}

#[test]
fn no_slots_no_sessions_and_epochs_wrap() {
    let off = FetchSessions::new(0);
    assert_eq!(open(&off, &[("a", 0, 0)], 0), 0);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(1), 2);
}
