//! The internal, compacted `__transaction_state` topic in Kafka's record format: key version 0
//! (transactional id), value version 0 (producer id, epoch, timeout, state id, partitions,
//! last update and start times). A null value is a tombstone (an expired transactional id).
//! The transactional id → partition mapping is Kafka's (`abs(hashCode) % partitions`). Written
//! and rebuilt like `__consumer_offsets`; depends on the log engine's contract only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::state::{TxnMetadata, TxnState};
use crate::config::BrokerConfig;
use crate::group::offsets::partition_for;
use crate::log::{AppendOrigin, Isolation, LogError, LogManager, Partition};

/// The name of the transaction state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Errors of the transaction state topic.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("log error on {TRANSACTION_STATE_TOPIC}: {0}")]
    Log(#[from] LogError),
    #[error("{TRANSACTION_STATE_TOPIC} partition {0} does not exist")]
    MissingPartition(i32),
    #[error("cannot encode a {TRANSACTION_STATE_TOPIC} record: {0}")]
    Encode(String),
}

/// The key of a transactional id's record.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&0i16.to_be_bytes());
    put_string(&mut out, transactional_id);
    Bytes::from(out)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as i16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The value (version 0) of a transaction's metadata.
pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state.id() as u8);
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &m.partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (topic, partitions) in topics {
        put_string(&mut out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    Bytes::from(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record ends early".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String, String> {
        let len = usize::try_from(self.i16()?).map_err(|_| "negative string length")?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| e.to_string())
    }
}

/// Decodes a key: the transactional id (`Ok(None)` for key versions Cairn does not know).
pub fn decode_key(key: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader(key);
    match r.i16()? {
        0 => Ok(Some(r.string()?)),
        _ => Ok(None),
    }
}

/// Decodes a version 0 value (later versions are flexible; Cairn writes version 0).
pub fn decode_value(value: &[u8]) -> Result<TxnMetadata, String> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if version != 0 {
        return Err(format!("value version {version} is not read by Cairn"));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state_id = r.take(1)?[0] as i8;
    let state = TxnState::from_id(state_id).ok_or(format!("unknown state {state_id}"))?;
    let mut partitions = std::collections::BTreeSet::new();
    let topics = r.i32()?;
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let count = r.i32()?;
        if count < 0 || count as usize > r.0.len() / 4 {
            return Err("bad partition count".into());
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Ok(TxnMetadata {
        producer_id,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

/// The topic of one broker, created on first use (FindCoordinator for a transaction, or the
/// first InitProducerId with a transactional id), as Kafka does.
pub struct StateTopic {
    log: Arc<LogManager>,
    num_partitions: i32,
    segment_bytes: i32,
    partitions: OnceLock<i32>,
    creating: Mutex<()>,
}

impl StateTopic {
    pub fn open(config: &BrokerConfig, log: Arc<LogManager>) -> StateTopic {
        let partitions = OnceLock::new();
        if let Some(info) = log.topic(TRANSACTION_STATE_TOPIC) {
            let _ = partitions.set(info.partitions);
        }
        StateTopic {
            log,
            num_partitions: config.transaction_state_num_partitions(),
            segment_bytes: config.transaction_state_segment_bytes(),
            partitions,
            creating: Mutex::new(()),
        }
    }

    /// Creates the topic unless it exists; returns its partition count.
    pub fn ensure(&self) -> Result<i32, TopicError> {
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let n = match self.log.topic(TRANSACTION_STATE_TOPIC) {
            Some(info) => info.partitions,
            None => {
                let mut overrides = BTreeMap::new();
                overrides.insert("cleanup.policy".to_string(), "compact".to_string());
                overrides.insert("segment.bytes".to_string(), self.segment_bytes.to_string());
                match self.log.create_topic(
                    TRANSACTION_STATE_TOPIC,
                    self.num_partitions,
                    overrides,
                    true,
                ) {
                    Ok(info) => info.partitions,
                    Err(LogError::TopicExists(_)) => self
                        .log
                        .topic(TRANSACTION_STATE_TOPIC)
                        .map_or(self.num_partitions, |t| t.partitions),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(*self.partitions.get_or_init(|| n))
    }

    /// Appends the record of `transactional_id` (`None`: a tombstone); returns the partition
    /// and the offset just past it, to wait for with [`Partition::wait_durable`].
    pub fn append(
        &self,
        transactional_id: &str,
        value: Option<&TxnMetadata>,
        now: i64,
    ) -> Result<(Arc<Partition>, i64), TopicError> {
        let p = partition_for(transactional_id, self.ensure()?);
        let partition = self
            .log
            .partition(TRANSACTION_STATE_TOPIC, p)
            .ok_or(TopicError::MissingPartition(p))?;
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now,
            key: Some(encode_key(transactional_id)),
            value: value.map(encode_value),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| TopicError::Encode(e.to_string()))?;
        let info = partition.append(buf.freeze(), AppendOrigin::Internal)?;
        Ok((partition, info.last_offset + 1))
    }

    /// Every transactional id's latest metadata (tombstoned ids left out). An undecodable
    /// record is skipped with a warning.
    pub fn load(&self) -> Result<HashMap<String, TxnMetadata>, TopicError> {
        self.load_partitions(0..self.partitions.get().copied().unwrap_or(0))
    }

    /// [`StateTopic::load`] of one partition (a coordinator elected for it in a cluster).
    pub fn load_partition(
        &self,
        partition: i32,
    ) -> Result<HashMap<String, TxnMetadata>, TopicError> {
        self.load_partitions(partition..partition + 1)
    }

    /// The partition count, when the topic exists.
    pub fn partition_count(&self) -> Option<i32> {
        match self.partitions.get() {
            Some(n) => Some(*n),
            None => self
                .log
                .topic(TRANSACTION_STATE_TOPIC)
                .map(|t| t.partitions),
        }
    }

    fn load_partitions(
        &self,
        partitions: std::ops::Range<i32>,
    ) -> Result<HashMap<String, TxnMetadata>, TopicError> {
        let mut latest: HashMap<String, Option<TxnMetadata>> = HashMap::new();
        for p in partitions {
            let partition = self
                .log
                .partition(TRANSACTION_STATE_TOPIC, p)
                .ok_or(TopicError::MissingPartition(p))?;
            let mut next = partition.offsets().log_start_offset;
            loop {
                let read = partition.read(next, 1 << 20, Isolation::LogEnd)?;
                if read.records.is_empty() {
                    break;
                }
                let mut data = read.records.clone();
                let before = next;
                while data.len() >= 61 {
                    let length = i32::from_be_bytes(data[8..12].try_into().expect("4"));
                    let total = 12 + length.max(0) as usize;
                    if total > data.len() || total < 61 {
                        break;
                    }
                    let mut batch = data.split_to(total);
                    let base = i64::from_be_bytes(batch[0..8].try_into().expect("8"));
                    let delta = i32::from_be_bytes(batch[23..27].try_into().expect("4"));
                    next = base + i64::from(delta) + 1;
                    let set = match RecordBatchDecoder::decode(&mut batch) {
                        Ok(set) => set,
                        Err(e) => {
                            tracing::warn!(partition = p, offset = base, error = %e, "skipping an undecodable {TRANSACTION_STATE_TOPIC} batch");
                            continue;
                        }
                    };
                    for record in set.records.iter().filter(|r| !r.control) {
                        let Some(key) = &record.key else { continue };
                        let decoded = decode_key(key).and_then(|id| {
                            let value = record.value.as_deref().map(decode_value).transpose()?;
                            Ok(id.map(|id| (id, value)))
                        });
                        match decoded {
                            Ok(Some((id, value))) => {
                                latest.insert(id, value);
                            }
                            Ok(None) => {}
                            Err(reason) => tracing::warn!(partition = p, %reason,
                                "skipping an undecodable {TRANSACTION_STATE_TOPIC} record"),
                        }
                    }
                }
                if next <= before {
                    break;
                }
            }
        }
        Ok(latest
            .into_iter()
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip_in_kafkas_layout() {
        let mut m = TxnMetadata::new(42, 60_000, 1_000);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions.insert(("a".into(), 1));
        m.partitions.insert(("a".into(), 0));
        m.partitions.insert(("b".into(), 2));
        m.start_ms = 900;
        let key = encode_key("tx-1");
        assert_eq!(&key[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(&key).unwrap().as_deref(), Some("tx-1"));
        let value = encode_value(&m);
        // version, producer id, epoch, timeout, state id.
        assert_eq!(&value[0..2], &[0, 0]);
        assert_eq!(i64::from_be_bytes(value[2..10].try_into().unwrap()), 42);
        assert_eq!(value[16], 1);
        assert_eq!(decode_value(&value).unwrap(), m);
        assert!(decode_value(&value[..20]).is_err());
        assert!(decode_value(&[0, 1, 2]).is_err());
    }
}
