//! Fetch size limits as Kafka defines them (KIP-74), checked on the response frames themselves:
//! only the first batch of the first partition that yields data may exceed `max_bytes` or its
//! `partition_max_bytes`, whatever the order of the partitions in the request.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use crate::harness::{Cairn, Client};
use crate::util::*;

/// Response bytes other than records, for a response of one topic and up to three partitions:
/// generous, yet far below any batch used here.
const FRAME_OVERHEAD: usize = 300;

/// One fetch of `partitions` (partition, offset) of `topic`, in that order; returns the size of
/// the response frame as read from the socket, and the decoded response.
fn fetch_frame(
    client: &mut Client,
    version: i16,
    topic: &str,
    partitions: &[(i32, i64)],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> (usize, FetchResponse) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let (id, frame) = client.frame(version, &request);
    client.send_raw(&frame).unwrap();
    let mut body = client.read_frame().expect("fetch response");
    let frame_size = 4 + body.len();
    let header =
        ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, id);
    let response = FetchResponse::decode(&mut body, version).unwrap();
    assert_eq!(body.remaining(), 0);
    (frame_size, response)
}

/// The record bytes each partition of the response carries, by partition index.
fn record_bytes(response: &FetchResponse, partition: i32) -> Bytes {
    let p = response.responses[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .expect("partition answered");
    assert_eq!(p.error_code, 0, "{p:?}");
    p.records.clone().unwrap_or_default()
}

/// Sizes of the whole batches in `records`.
fn batch_sizes(records: &Bytes) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut at = 0;
    while at + 12 <= records.len() {
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
        sizes.push(12 + len);
        at += 12 + len;
    }
    assert_eq!(at, records.len(), "a partial batch was served");
    sizes
}

/// Topic `limits`: partition 0 holds four small batches (about 110 bytes each), partition 1 two
/// batches of about 2 KB, partition 2 nothing. Returns (small batch size, big batch size).
fn setup(client: &mut Client) -> (usize, usize) {
    create_topic(client, "limits", 3, &[]);
    let small = batch(&[&"s".repeat(40)], 1_000);
    let big = batch(&[&"B".repeat(2_000)], 1_000);
    for _ in 0..4 {
        assert_eq!(produce(client, 12, "limits", 0, small.clone()).0, 0);
    }
    for _ in 0..2 {
        assert_eq!(produce(client, 12, "limits", 1, big.clone()).0, 0);
    }
    (small.len(), big.len())
}

#[test]
fn fetch_max_bytes_is_exceeded_only_by_the_first_batch_of_the_first_non_empty_partition() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let (small, big) = setup(&mut client);
    assert!(small * 4 < 1_000 && big > 1_000);
    for version in [4i16, 12] {
        // Small partition first: its batches fit in max_bytes, the big batch does not fit in
        // what is left, and it is not the first non-empty partition: nothing from partition 1.
        let (frame, r) = fetch_frame(
            &mut client,
            version,
            "limits",
            &[(0, 0), (1, 0), (2, 0)],
            1_000,
            1 << 20,
        );
        assert_eq!(batch_sizes(&record_bytes(&r, 0)), vec![small; 4]);
        assert!(
            record_bytes(&r, 1).is_empty(),
            "v{version}: partition 1 exceeded max_bytes"
        );
        assert!(
            frame <= 1_000 + FRAME_OVERHEAD,
            "v{version}: frame of {frame} bytes"
        );

        // Empty partition first, then the big one: the big one is the first non-empty partition
        // and gets exactly its first batch; the small one after it gets nothing.
        let (frame, r) = fetch_frame(
            &mut client,
            version,
            "limits",
            &[(2, 0), (1, 0), (0, 0)],
            1_000,
            1 << 20,
        );
        assert_eq!(batch_sizes(&record_bytes(&r, 1)), vec![big]);
        assert!(record_bytes(&r, 0).is_empty());
        assert!(
            frame <= big + FRAME_OVERHEAD,
            "v{version}: frame of {frame} bytes"
        );

        // Room for one big batch and a bit: the second big batch does not fit, small ones do.
        let (frame, r) = fetch_frame(
            &mut client,
            version,
            "limits",
            &[(1, 0), (0, 0)],
            (big + 2 * small + 10) as i32,
            1 << 20,
        );
        assert_eq!(batch_sizes(&record_bytes(&r, 1)), vec![big]);
        assert_eq!(batch_sizes(&record_bytes(&r, 0)), vec![small; 2]);
        assert!(frame <= big + 2 * small + 10 + FRAME_OVERHEAD);
    }
}

#[test]
fn partition_max_bytes_is_exceeded_only_by_the_first_batch_of_the_first_non_empty_partition() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let (small, big) = setup(&mut client);
    let partition_max = (2 * small + 10) as i32;
    for version in [4i16, 12] {
        // The small partition first gets what its limit allows; the big one, not first, gets
        // nothing, although the request's max_bytes has room.
        let (frame, r) = fetch_frame(
            &mut client,
            version,
            "limits",
            &[(0, 0), (1, 0)],
            1 << 20,
            partition_max,
        );
        assert_eq!(batch_sizes(&record_bytes(&r, 0)), vec![small; 2]);
        assert!(
            record_bytes(&r, 1).is_empty(),
            "v{version}: partition 1 exceeded partition_max_bytes"
        );
        assert!(frame <= 2 * small + 10 + FRAME_OVERHEAD);

        // The big partition first: exactly its first batch; then the small one within its limit.
        let (_, r) = fetch_frame(
            &mut client,
            version,
            "limits",
            &[(1, 0), (0, 0)],
            1 << 20,
            partition_max,
        );
        assert_eq!(batch_sizes(&record_bytes(&r, 1)), vec![big]);
        assert_eq!(batch_sizes(&record_bytes(&r, 0)), vec![small; 2]);
    }
}

#[test]
fn a_consumer_with_limits_below_its_batch_sizes_reads_everything_exactly_once() {
    let cairn = Cairn::start(&[]);
    let mut client = cairn.client();
    let (_, big) = setup(&mut client);
    let (max_bytes, partition_max) = (600usize, 300i32);
    let mut next = [0i64; 3];
    let mut batches = [0usize; 3];
    for round in 0..20 {
        if next == [4, 2, 0] {
            break;
        }
        // Rotate the partition order as librdkafka does, so each partition gets to be first.
        let mut order: Vec<(i32, i64)> = (0..3).map(|p| (p, next[p as usize])).collect();
        order.rotate_left(round % 3);
        let (frame, r) = fetch_frame(
            &mut client,
            12,
            "limits",
            &order,
            max_bytes as i32,
            partition_max,
        );
        assert!(
            frame <= big.max(max_bytes) + FRAME_OVERHEAD,
            "frame of {frame} bytes"
        );
        for p in 0..3i32 {
            let records = record_bytes(&r, p);
            let n = batch_sizes(&records).len();
            batches[p as usize] += n;
            next[p as usize] += n as i64;
        }
    }
    assert_eq!(next, [4, 2, 0]);
    assert_eq!(batches, [4, 2, 0]);
}
