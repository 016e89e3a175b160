//! Shared request builders for the wire-level tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::harness::Client;

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Creates a topic and asserts success.
pub(crate) fn create_topic(
    client: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let response = client.call(7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
}

/// A record with this key, value and timestamp.
pub(crate) fn record(key: Option<&str>, value: Option<&str>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon_ms: None,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: Vec::new(),
    }
}

/// One v2 batch of `values` (keyed "k<i>"), offsets from 0, timestamps `base_ts + i`.
pub(crate) fn batch(values: &[&str], base_ts: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = record(Some(&format!("k{i}")), Some(v), base_ts + i as i64);
            r.offset = i as i64;
            r
        })
        .collect();
    encode(&records, Compression::None)
}

/// An idempotent batch from `producer_id`/`epoch` starting at `sequence`.
pub(crate) fn idempotent_batch(
    values: &[&str],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = record(Some("k"), Some(v), 1_000 + i as i64);
            r.offset = i as i64;
            r.producer_id = producer_id;
            r.producer_epoch = epoch;
            r.sequence = sequence + i as i32;
            r
        })
        .collect();
    encode(&records, Compression::None)
}

pub(crate) fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

pub(crate) fn produce_request(
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces and returns (error code, base offset).
pub(crate) fn produce(
    client: &mut Client,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let response: ProduceResponse =
        client.call(version, &produce_request(topic, partition, -1, records));
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub(crate) fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(10 * 1024 * 1024)])])
}

/// Fetches once without waiting.
pub(crate) fn fetch(
    client: &mut Client,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> FetchResponse {
    client.call(version, &fetch_request(topic, partition, offset, 0, 0))
}

/// Decodes every record of a fetch response's first partition: (offset, key, value, timestamp).
pub(crate) fn fetched_records(
    response: &FetchResponse,
) -> Vec<(i64, Option<String>, Option<String>, i64)> {
    let p = &response.responses[0].partitions[0];
    let mut bytes = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).expect("decodable batch");
        for r in set.records {
            out.push((
                r.offset,
                r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                r.timestamp,
            ));
        }
    }
    out
}
