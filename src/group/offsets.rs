//! The internal `__consumer_offsets` topic: record schemas, the group → partition mapping,
//! appends, and the rebuild of every group's offsets and metadata at start-up.
//!
//! Records follow Apache Kafka's schemas, so Kafka's own tools can read them: offset commit key
//! version 1 (group, topic, partition) with value version 3 (offset, leader epoch, metadata,
//! commit timestamp) or version 1 when an expire timestamp is set; group metadata key version 2
//! (group) with value version 3; and the KIP-848 consumer group records, whose layout is in
//! [`super::consumer_records`]. A null value is a tombstone. Offsets committed inside a
//! transaction (TxnOffsetCommit) are written in a transactional batch of the producer and take
//! effect only at its COMMIT marker, at runtime as at load. Depends on the log engine's
//! contract and on [`super::state`]'s plain types; never on Kafka request types.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::consumer::stored::{ConsumerRecord, StoredGroup as StoredConsumerGroup};
use super::consumer_records;
use super::state::{CommittedOffset, StoredGroup, StoredMember, TopicPartition};
use super::wire::Reader;
use crate::config::BrokerConfig;
use crate::log::{AppendOrigin, Isolation, LogError, LogManager, Partition};

/// The name of the offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Errors of the offsets topic.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("log error on {OFFSETS_TOPIC}: {0}")]
    Log(#[from] LogError),
    #[error("{OFFSETS_TOPIC} partition {0} does not exist")]
    MissingPartition(i32),
    #[error("cannot encode an {OFFSETS_TOPIC} record batch: {0}")]
    Encode(String),
    #[error("corrupt {OFFSETS_TOPIC} data in partition {partition} at offset {offset}: {reason}")]
    Corrupt {
        partition: i32,
        offset: i64,
        reason: String,
    },
}

/// Kafka's choice of offsets partition for a group: `Utils.abs(groupId.hashCode()) % n`, where
/// `Utils.abs(i32::MIN)` is 0 and `hashCode` runs over UTF-16 code units.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// One decoded record of the offsets topic. `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group_id: String,
        partition: TopicPartition,
        value: Option<CommittedOffset>,
    },
    Group {
        group_id: String,
        value: Option<StoredGroup>,
    },
    /// A KIP-848 consumer group record (`super::consumer_records` has their layout).
    Consumer(ConsumerRecord),
}

impl OffsetsRecord {
    /// The record's key bytes.
    pub fn key(&self) -> Bytes {
        let mut w = Writer::default();
        match self {
            OffsetsRecord::Offset {
                group_id,
                partition,
                ..
            } => {
                w.i16(1);
                w.string(group_id);
                w.string(&partition.topic);
                w.i32(partition.partition);
            }
            OffsetsRecord::Group { group_id, .. } => {
                w.i16(2);
                w.string(group_id);
            }
            OffsetsRecord::Consumer(r) => return consumer_records::key(r),
        }
        w.finish()
    }

    /// The record's value bytes; `None` for a tombstone.
    pub fn value(&self) -> Option<Bytes> {
        let mut w = Writer::default();
        match self {
            OffsetsRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                match v.expire_timestamp_ms {
                    Some(expire) => {
                        w.i16(1);
                        w.i64(v.offset);
                        w.string(&v.metadata);
                        w.i64(v.commit_timestamp_ms);
                        w.i64(expire);
                    }
                    None => {
                        w.i16(3);
                        w.i64(v.offset);
                        w.i32(v.leader_epoch);
                        w.string(&v.metadata);
                        w.i64(v.commit_timestamp_ms);
                    }
                }
            }
            OffsetsRecord::Group { value, .. } => {
                let g = value.as_ref()?;
                w.i16(3);
                w.string(&g.protocol_type);
                w.i32(g.generation_id);
                w.nullable_string(g.protocol_name.as_deref());
                w.nullable_string(g.leader.as_deref());
                w.i64(g.state_timestamp_ms);
                w.i32(g.members.len() as i32);
                for m in &g.members {
                    w.string(&m.member_id);
                    w.nullable_string(m.group_instance_id.as_deref());
                    w.string(&m.client_id);
                    w.string(&m.client_host);
                    w.i32(m.rebalance_timeout_ms);
                    w.i32(m.session_timeout_ms);
                    w.bytes(&m.subscription);
                    w.bytes(&m.assignment);
                }
            }
            OffsetsRecord::Consumer(r) => return consumer_records::value(r),
        }
        Some(w.finish())
    }

    /// Decodes a record; `Ok(None)` for key versions Cairn does not use.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<OffsetsRecord>, String> {
        let mut k = Reader::new(key, false);
        let key_version = k.i16()?;
        match key_version {
            0 | 1 => {
                let group_id = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(OffsetsRecord::Offset {
                    group_id,
                    partition: TopicPartition { topic, partition },
                    value,
                }))
            }
            2 => {
                let group_id = k.string()?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(OffsetsRecord::Group { group_id, value }))
            }
            v if consumer_records::TYPES.contains(&v) => {
                Ok(consumer_records::decode(key, value)?.map(OffsetsRecord::Consumer))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(bytes: &[u8]) -> Result<CommittedOffset, String> {
    let version = Reader::new(bytes, false).i16()?;
    if !(0..=4).contains(&version) {
        return Err(format!("unknown offset commit value version {version}"));
    }
    let mut r = Reader::new(&bytes[2..], version >= 4);
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 {
        Some(r.i64()?).filter(|t| *t >= 0)
    } else {
        None
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn decode_group_value(bytes: &[u8]) -> Result<StoredGroup, String> {
    let version = Reader::new(bytes, false).i16()?;
    if !(0..=4).contains(&version) {
        return Err(format!("unknown group metadata value version {version}"));
    }
    let mut r = Reader::new(&bytes[2..], version >= 4);
    let protocol_type = r.string()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len()?;
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        r.tagged_fields()?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// Encodes records into one uncompressed v2 batch, as a broker-internal producer would.
pub fn encode_batch(records: &[OffsetsRecord], timestamp_ms: i64) -> Result<Bytes, OffsetsError> {
    encode_producer_batch(records, timestamp_ms, None)
}

/// Encodes records into one uncompressed v2 batch; with `producer` (id, epoch), a transactional
/// batch of that producer (no sequence), as Kafka writes TxnOffsetCommit's offsets.
pub fn encode_producer_batch(
    records: &[OffsetsRecord],
    timestamp_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, OffsetsError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp_ms,
            key: Some(r.key()),
            value: r.value(),
            headers: Vec::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| OffsetsError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// What the offsets topic held at start-up: the latest live value of every key.
#[derive(Debug, Default)]
pub struct Loaded {
    pub offsets: HashMap<String, Vec<(TopicPartition, CommittedOffset)>>,
    pub groups: HashMap<String, StoredGroup>,
    /// KIP-848 consumer groups, as their records left them (tombstoned groups included).
    pub consumer: HashMap<String, StoredConsumerGroup>,
    /// Records read, including tombstones and superseded values.
    pub records: u64,
    /// Transactional offsets whose transaction has no marker yet, by producer id.
    pub pending_txn: HashMap<i64, Vec<(String, TopicPartition, CommittedOffset)>>,
}

/// The offsets topic of one broker. Like Kafka, the topic is created on first use (a group
/// lookup or the first write), so a fresh broker lists no topics.
pub struct OffsetsTopic {
    log: Arc<LogManager>,
    num_partitions: i32,
    segment_bytes: i32,
    /// The partition count once the topic exists.
    partitions: std::sync::OnceLock<i32>,
    creating: std::sync::Mutex<()>,
}

impl OffsetsTopic {
    /// Opens `__consumer_offsets` if it exists; [`OffsetsTopic::ensure`] creates it.
    pub fn open(config: &BrokerConfig, log: Arc<LogManager>) -> OffsetsTopic {
        let partitions = std::sync::OnceLock::new();
        if let Some(info) = log.topic(OFFSETS_TOPIC) {
            let _ = partitions.set(info.partitions);
        }
        OffsetsTopic {
            log,
            num_partitions: config.offsets_topic_num_partitions(),
            segment_bytes: config.offsets_topic_segment_bytes(),
            partitions,
            creating: std::sync::Mutex::new(()),
        }
    }

    /// Creates the topic (compacted, internal, `offsets.topic.num.partitions` partitions,
    /// `offsets.topic.segment.bytes` segments) unless it exists; returns its partition count.
    pub fn ensure(&self) -> Result<i32, OffsetsError> {
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let n = match self.log.topic(OFFSETS_TOPIC) {
            Some(info) => info.partitions,
            None => {
                let mut overrides = std::collections::BTreeMap::new();
                overrides.insert("cleanup.policy".to_string(), "compact".to_string());
                overrides.insert("segment.bytes".to_string(), self.segment_bytes.to_string());
                match self
                    .log
                    .create_topic(OFFSETS_TOPIC, self.num_partitions, overrides, true)
                {
                    Ok(info) => info.partitions,
                    Err(LogError::TopicExists(_)) => self
                        .log
                        .topic(OFFSETS_TOPIC)
                        .map_or(self.num_partitions, |t| t.partitions),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(*self.partitions.get_or_init(|| n))
    }

    /// The partition that holds a group's records (creating the topic if needed).
    pub fn partition(&self, group_id: &str) -> Result<Arc<Partition>, OffsetsError> {
        let p = partition_for(group_id, self.ensure()?);
        self.log
            .partition(OFFSETS_TOPIC, p)
            .ok_or(OffsetsError::MissingPartition(p))
    }

    /// Appends records of one group (one batch, one partition); returns the partition and the
    /// offset just past the batch, to wait for with [`Partition::wait_durable`].
    pub fn append(
        &self,
        group_id: &str,
        records: &[OffsetsRecord],
        now: i64,
    ) -> Result<(Arc<Partition>, i64), OffsetsError> {
        self.append_for(group_id, records, now, None)
    }

    /// [`OffsetsTopic::append`], as a transactional batch of `producer` (id, epoch) when given.
    pub fn append_for(
        &self,
        group_id: &str,
        records: &[OffsetsRecord],
        now: i64,
        producer: Option<(i64, i16)>,
    ) -> Result<(Arc<Partition>, i64), OffsetsError> {
        let partition = self.partition(group_id)?;
        let batch = encode_producer_batch(records, now, producer)?;
        let info = partition.append(batch, AppendOrigin::Internal)?;
        Ok((partition, info.last_offset + 1))
    }

    /// Reads every partition from its log start to its log end; later records win.
    pub fn load(&self) -> Result<Loaded, OffsetsError> {
        self.load_partitions(0..self.partitions.get().copied().unwrap_or(0))
    }

    /// [`OffsetsTopic::load`] of one partition (a coordinator elected for it in a cluster).
    pub fn load_partition(&self, partition: i32) -> Result<Loaded, OffsetsError> {
        self.load_partitions(partition..partition + 1)
    }

    /// The log the topic lives in.
    pub fn log(&self) -> &LogManager {
        &self.log
    }

    /// Resolves when data arrives in any partition or a high watermark moves.
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.log.data_arrived()
    }

    /// The partition count, when the topic exists.
    pub fn partition_count(&self) -> Option<i32> {
        match self.partitions.get() {
            Some(n) => Some(*n),
            None => self.log.topic(OFFSETS_TOPIC).map(|t| t.partitions),
        }
    }

    fn load_partitions(&self, partitions: std::ops::Range<i32>) -> Result<Loaded, OffsetsError> {
        let mut offsets: HashMap<(String, TopicPartition), Option<CommittedOffset>> =
            HashMap::new();
        let mut groups: HashMap<String, Option<StoredGroup>> = HashMap::new();
        let mut consumer: HashMap<String, StoredConsumerGroup> = HashMap::new();
        let mut pending_txn: HashMap<i64, Vec<(String, TopicPartition, CommittedOffset)>> =
            HashMap::new();
        let mut records = 0u64;
        for p in partitions {
            let partition = self
                .log
                .partition(OFFSETS_TOPIC, p)
                .ok_or(OffsetsError::MissingPartition(p))?;
            let mut next = partition.offsets().log_start_offset;
            loop {
                let read = partition.read(next, 1 << 20, Isolation::LogEnd)?;
                if read.records.is_empty() {
                    break;
                }
                let end = for_each_record(&read.records, |entry| {
                    let (key, value, txn_producer) = match entry {
                        Entry::Record {
                            key,
                            value,
                            txn_producer,
                        } => (key, value, txn_producer),
                        Entry::Marker {
                            producer_id,
                            commit,
                        } => {
                            for (group, tp, o) in
                                pending_txn.remove(&producer_id).unwrap_or_default()
                            {
                                if commit {
                                    offsets.insert((group, tp), Some(o));
                                }
                            }
                            return;
                        }
                    };
                    records += 1;
                    match OffsetsRecord::decode(key, value) {
                        Ok(Some(OffsetsRecord::Offset {
                            group_id,
                            partition,
                            value: Some(value),
                        })) if txn_producer.is_some() => {
                            pending_txn
                                .entry(txn_producer.unwrap_or(-1))
                                .or_default()
                                .push((group_id, partition, value));
                        }
                        Ok(Some(OffsetsRecord::Offset {
                            group_id,
                            partition,
                            value,
                        })) => {
                            offsets.insert((group_id, partition), value);
                        }
                        Ok(Some(OffsetsRecord::Group { group_id, value })) => {
                            groups.insert(group_id, value);
                        }
                        Ok(Some(OffsetsRecord::Consumer(r))) => {
                            let group = consumer.entry(r.group_id().to_string()).or_default();
                            r.apply(group);
                        }
                        Ok(None) => {}
                        Err(reason) => {
                            tracing::warn!(partition = p, %reason, "skipping an undecodable {OFFSETS_TOPIC} record");
                        }
                    }
                })
                .map_err(|(offset, reason)| OffsetsError::Corrupt {
                    partition: p,
                    offset,
                    reason,
                })?;
                if end <= next {
                    return Err(OffsetsError::Corrupt {
                        partition: p,
                        offset: next,
                        reason: "the read did not advance".to_string(),
                    });
                }
                next = end;
            }
        }
        let mut loaded = Loaded {
            records,
            consumer,
            pending_txn,
            ..Loaded::default()
        };
        for ((group, tp), value) in offsets {
            if let Some(v) = value {
                loaded.offsets.entry(group).or_default().push((tp, v));
            }
        }
        for (group, value) in groups {
            if let Some(v) = value {
                loaded.groups.insert(group, v);
            }
        }
        Ok(loaded)
    }
}

/// What [`for_each_record`] hands its callback.
enum Entry<'a> {
    /// A keyed record; `txn_producer` is the producer id of a transactional batch.
    Record {
        key: &'a [u8],
        value: Option<&'a [u8]>,
        txn_producer: Option<i64>,
    },
    /// A transaction marker of `producer_id`.
    Marker { producer_id: i64, commit: bool },
}

/// Calls `f` for every keyed record and every transaction marker in `data`; returns the offset
/// just past the last batch, or (offset, reason) of a batch that does not decode.
fn for_each_record(data: &Bytes, mut f: impl FnMut(Entry<'_>)) -> Result<i64, (i64, String)> {
    let mut pos = 0usize;
    let mut end = -1i64;
    while pos + 61 <= data.len() {
        let base_offset = i64::from_be_bytes(data[pos..pos + 8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let total = 12
            + usize::try_from(length)
                .map_err(|_| (base_offset, "negative batch length".to_string()))?;
        if pos + total > data.len() || total < 61 {
            return Err((base_offset, "truncated batch".to_string()));
        }
        let attributes = i16::from_be_bytes(data[pos + 21..pos + 23].try_into().expect("2 bytes"));
        let last_offset_delta =
            i32::from_be_bytes(data[pos + 23..pos + 27].try_into().expect("4 bytes"));
        let mut batch = data.slice(pos..pos + total);
        pos += total;
        end = base_offset + i64::from(last_offset_delta) + 1;
        let producer_id = i64::from_be_bytes(batch[43..51].try_into().expect("8 bytes"));
        if attributes & (1 << 5) != 0 {
            if let Some((kind, _)) = crate::log::partition::txn::marker(&batch) {
                f(Entry::Marker {
                    producer_id,
                    commit: kind == crate::log::partition::txn::COMMIT,
                });
            }
            continue;
        }
        let txn_producer = (attributes & (1 << 4) != 0).then_some(producer_id);
        let set =
            RecordBatchDecoder::decode(&mut batch).map_err(|e| (base_offset, e.to_string()))?;
        for record in &set.records {
            if let Some(key) = &record.key {
                f(Entry::Record {
                    key,
                    value: record.value.as_deref(),
                    txn_producer,
                });
            }
        }
    }
    if pos != data.len() {
        return Err((end, "trailing bytes after the last batch".to_string()));
    }
    Ok(end)
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Group ids, topics and metadata come from requests whose strings are int16-length.
        let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
        self.i16(bytes.len() as i16);
        self.0.extend_from_slice(bytes);
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
    }
    fn finish(self) -> Bytes {
        Bytes::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_hash_code() {
        // String.hashCode as Java defines it (s[0]*31^(n-1) + ... + s[n-1], wrapping).
        let java = |s: &str| -> i32 {
            s.chars()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        };
        assert_eq!(java("a"), 97);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs maps it to 0.
        assert_eq!(java("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Java: "hello".hashCode() == 99162322; "my-group".hashCode() == -1906497762.
        assert_eq!(java("hello"), 99_162_322);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(java("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
    }

    fn sample_group() -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation_id: 7,
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 1234,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assign"),
            }],
        }
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            OffsetsRecord::Offset {
                group_id: "g".into(),
                partition: TopicPartition::new("events", 3),
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 5,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 99,
                    expire_timestamp_ms: None,
                }),
            },
            OffsetsRecord::Offset {
                group_id: "g".into(),
                partition: TopicPartition::new("events", 4),
                value: Some(CommittedOffset {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 99,
                    expire_timestamp_ms: Some(500),
                }),
            },
            OffsetsRecord::Offset {
                group_id: "g".into(),
                partition: TopicPartition::new("events", 5),
                value: None,
            },
            OffsetsRecord::Group {
                group_id: "g".into(),
                value: Some(sample_group()),
            },
            OffsetsRecord::Group {
                group_id: "h".into(),
                value: None,
            },
        ];
        let batch = encode_batch(&records, 99).unwrap();
        let mut decoded = Vec::new();
        let end = for_each_record(&batch, |entry| {
            if let Entry::Record { key, value, .. } = entry {
                decoded.push(OffsetsRecord::decode(key, value).unwrap().unwrap());
            }
        })
        .unwrap();
        assert_eq!(end, 5);
        assert_eq!(decoded, records);
    }

    #[test]
    fn kafka_byte_layout_of_an_offset_commit() {
        let r = OffsetsRecord::Offset {
            group_id: "g".into(),
            partition: TopicPartition::new("t", 2),
            value: Some(CommittedOffset {
                offset: 10,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp_ms: 1,
                expire_timestamp_ms: None,
            }),
        };
        assert_eq!(
            r.key().as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]
        );
        assert_eq!(
            r.value().unwrap().as_ref(),
            &[
                0, 3, 0, 0, 0, 0, 0, 0, 0, 10, 255, 255, 255, 255, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0,
                1
            ]
        );
    }

    #[test]
    fn flexible_v4_values_decode() {
        // OffsetCommitValue v4: offset, leader epoch, compact metadata, timestamp, tags.
        let mut v = vec![0, 4];
        v.extend_from_slice(&7i64.to_be_bytes());
        v.extend_from_slice(&3i32.to_be_bytes());
        v.extend_from_slice(&[3, b'h', b'i']);
        v.extend_from_slice(&5i64.to_be_bytes());
        v.push(0);
        let o = decode_offset_value(&v).unwrap();
        assert_eq!(
            (o.offset, o.leader_epoch, o.metadata.as_str()),
            (7, 3, "hi")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(OffsetsRecord::decode(&[], None).is_err());
        assert!(OffsetsRecord::decode(&[0, 1, 0, 9, b'x'], None).is_err());
        assert!(OffsetsRecord::decode(&[0, 2, 0, 1, b'g'], Some(&[0, 3, 0])).is_err());
        assert!(OffsetsRecord::decode(&[0, 2, 0, 1, b'g'], Some(&[0, 9])).is_err());
        assert_eq!(OffsetsRecord::decode(&[0, 9, 1, 2], Some(&[1])), Ok(None));
        assert!(OffsetsRecord::decode(&[0, 5, 1, 2], Some(&[1])).is_err());
        let huge = [
            0, 3, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 127, 255, 255, 255,
        ];
        assert!(decode_group_value(&huge).is_err());
        assert!(for_each_record(&Bytes::from_static(&[0; 70]), |_| {}).is_err());
    }
}
