//! Per-record errors in Produce (KIP-467): a batch refused because of some of its records names
//! exactly those records, by index in the batch, in `record_errors` (v8+), and nothing of the
//! batch is written.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::records::{Compression, Record};

use crate::harness::{Cairn, Client};
use crate::util::*;

const INVALID_TIMESTAMP: i16 = 32;
const INVALID_RECORD: i16 = 87;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One batch of these (key, timestamp) records, offsets from 0.
fn batch_of(records: &[(Option<&str>, i64)]) -> bytes::Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, &(key, timestamp))| {
            let mut r = record(key, Some("v"), timestamp);
            r.offset = i as i64;
            r
        })
        .collect();
    encode(&records, Compression::None)
}

fn produce_answer(
    client: &mut Client,
    version: i16,
    topic: &str,
    records: bytes::Bytes,
) -> PartitionProduceResponse {
    let response: ProduceResponse = client.call(version, &produce_request(topic, 0, -1, records));
    response.responses[0].partition_responses[0].clone()
}

/// The indexes named in `record_errors`, each checked to come with a message.
fn refused_indexes(answer: &PartitionProduceResponse) -> Vec<i32> {
    answer
        .record_errors
        .iter()
        .map(|e| {
            let message = e.batch_index_error_message.as_ref().map(|m| m.to_string());
            assert!(
                message.as_deref().is_some_and(|m| !m.is_empty()),
                "record {} refused without a message",
                e.batch_index
            );
            e.batch_index
        })
        .collect()
}

/// The records the partition holds, as (key, timestamp).
fn stored(client: &mut Client, topic: &str) -> Vec<(Option<String>, i64)> {
    fetched_records(&fetch(client, 12, topic, 0, 0))
        .into_iter()
        .map(|(_, key, _, ts)| (key, ts))
        .collect()
}

#[test]
fn a_keyless_record_on_a_compacted_topic_is_named_by_its_index() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(
        &mut client,
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    );
    let now = now_ms();
    let mixed = batch_of(&[(Some("a"), now), (None, now), (Some("c"), now), (None, now)]);

    for version in [8i16, 12] {
        let answer = produce_answer(&mut client, version, "compacted", mixed.clone());
        assert_eq!(answer.error_code, INVALID_RECORD, "v{version}: {answer:?}");
        assert_eq!(
            refused_indexes(&answer),
            vec![1, 3],
            "v{version}: {answer:?}"
        );
        assert_eq!(answer.base_offset, -1);
        assert!(answer.error_message.is_some(), "v{version}: {answer:?}");
    }
    // Before v8 there is no place for them: the error code alone.
    let answer = produce_answer(&mut client, 7, "compacted", mixed);
    assert_eq!(answer.error_code, INVALID_RECORD);
    assert!(answer.record_errors.is_empty());

    assert!(
        stored(&mut client, "compacted").is_empty(),
        "a refused batch was written"
    );
    let keyed = batch_of(&[(Some("a"), now), (Some("b"), now)]);
    let answer = produce_answer(&mut client, 12, "compacted", keyed);
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (0, 0),
        "{answer:?}"
    );
    assert!(answer.record_errors.is_empty());
}

#[test]
fn timestamps_out_of_bounds_are_named_by_their_index() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let hour = 3_600_000i64;
    create_topic(
        &mut client,
        "bounded",
        1,
        &[
            ("message.timestamp.before.max.ms", "3600000"),
            ("message.timestamp.after.max.ms", "3600000"),
        ],
    );
    let now = now_ms();

    // Too old, in the middle of the batch: the batch's first and largest timestamps are fine, so
    // only the records themselves show it.
    let old_inside = batch_of(&[
        (Some("a"), now),
        (Some("b"), now - 2 * hour),
        (Some("c"), now),
    ]);
    let answer = produce_answer(&mut client, 12, "bounded", old_inside);
    assert_eq!(answer.error_code, INVALID_TIMESTAMP, "{answer:?}");
    assert_eq!(refused_indexes(&answer), vec![1], "{answer:?}");

    // Too new, last in the batch; and one too old first.
    let both = batch_of(&[
        (Some("a"), now - 2 * hour),
        (Some("b"), now),
        (Some("c"), now + 2 * hour),
    ]);
    for version in [8i16, 12] {
        let answer = produce_answer(&mut client, version, "bounded", both.clone());
        assert_eq!(
            answer.error_code, INVALID_TIMESTAMP,
            "v{version}: {answer:?}"
        );
        assert_eq!(
            refused_indexes(&answer),
            vec![0, 2],
            "v{version}: {answer:?}"
        );
    }

    assert!(
        stored(&mut client, "bounded").is_empty(),
        "a refused batch was written"
    );
    let fine = batch_of(&[(Some("a"), now - hour / 2), (Some("b"), now + hour / 2)]);
    let answer = produce_answer(&mut client, 12, "bounded", fine);
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (0, 0),
        "{answer:?}"
    );
    assert_eq!(stored(&mut client, "bounded").len(), 2);
}

#[test]
fn the_default_future_bound_names_the_record_too() {
    // message.timestamp.after.max.ms defaults to one hour; before.max.ms to no bound at all.
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(&mut client, "defaults", 1, &[]);
    let now = now_ms();
    let batch = batch_of(&[
        (Some("a"), 0),
        (Some("b"), now),
        (Some("c"), now + 3 * 3_600_000),
    ]);
    let answer = produce_answer(&mut client, 12, "defaults", batch);
    assert_eq!(answer.error_code, INVALID_TIMESTAMP, "{answer:?}");
    assert_eq!(refused_indexes(&answer), vec![2], "{answer:?}");
}

#[test]
fn records_breaking_different_rules_are_all_named() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    create_topic(
        &mut client,
        "both",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("message.timestamp.before.max.ms", "3600000"),
        ],
    );
    let now = now_ms();
    let old = now - 2 * 3_600_000;
    let batch = batch_of(&[(Some("a"), now), (None, now), (Some("c"), old), (None, old)]);
    let answer = produce_answer(&mut client, 12, "both", batch);
    // Any refused timestamp makes it INVALID_TIMESTAMP, as in Kafka; each record is named once,
    // the last for its missing key (checked first).
    assert_eq!(answer.error_code, INVALID_TIMESTAMP, "{answer:?}");
    assert_eq!(refused_indexes(&answer), vec![1, 2, 3], "{answer:?}");
    let messages: Vec<String> = answer
        .record_errors
        .iter()
        .map(|e| e.batch_index_error_message.as_ref().unwrap().to_string())
        .collect();
    assert!(messages[0].contains("key"), "{messages:?}");
    assert!(messages[1].contains("timestamp"), "{messages:?}");
    assert!(messages[2].contains("key"), "{messages:?}");
}
