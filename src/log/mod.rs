//! The log engine: topics → partitions → segments on local disk.
//!
//! Speaks offsets, record batches (`Bytes`) and its own errors ([`LogError`]); it never sees a
//! Kafka request type or error code. Files follow Apache Kafka's layout (see ARCHITECTURE.md).
//!
//! CONTRACT (the handlers are written against exactly this API; bodies are being implemented).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{BrokerConfig, LogConfig};

/// Errors of the log engine. The handlers map each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic already exists: {0}")]
    TopicExists(String),
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Bad magic, bad CRC, truncated batch, count/lastOffsetDelta mismatch.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// Structurally valid but not acceptable (control batch from a client, keyless on compacted).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("producer {producer_id}: epoch {epoch} is older than {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    #[error("producer {producer_id}: sequence {sequence} out of order, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        sequence: i32,
        expected: i32,
    },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the log is shutting down")]
    ShuttingDown,
}

/// What a topic is: durable metadata kept by the log manager.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    /// Random v4 UUID assigned at creation, never the zero UUID.
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    /// Explicit topic-level overrides, Kafka names → values (already validated).
    pub overrides: BTreeMap<String, String>,
    /// Internal topics (`__consumer_offsets`) are flagged in Metadata.
    pub internal: bool,
}

/// Options for [`LogManager::open`].
#[derive(Debug, Clone)]
pub struct LogManagerOptions {
    pub data_dir: PathBuf,
    pub broker: BrokerConfig,
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the first batch appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The timestamp written when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// True when the batch was a retry of a batch already in the log (idempotent producer):
    /// nothing was written and `base_offset`/`last_offset` are the original ones.
    pub duplicate: bool,
}

/// Whose batches these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A client's Produce: full validation, no control batches.
    Client,
    /// The broker itself (group offsets, markers): trusted, control batches allowed.
    Internal,
}

/// Which records a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset.
    ReadCommitted,
    /// Up to the log end offset (internal readers only, e.g. rebuilding group state).
    LogEnd,
}

/// The offsets of a partition at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    /// What consumers may read up to. In fsync mode (flush.messages = 1) this is the durable end:
    /// a consumer never sees a record that a crash could take away. In page-cache mode it is the
    /// log end offset.
    pub high_watermark: i64,
    /// Equal to the high watermark while transactions are not implemented.
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

/// The result of a read.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole batches, as stored, starting with the batch that contains the requested offset.
    /// Empty when the offset equals the upper bound.
    pub records: Bytes,
    pub offsets: PartitionOffsets,
}

/// All topics and partitions in one data directory.
pub struct LogManager {
    _private: (),
}

impl LogManager {
    /// Opens (creating if needed) the data directory, runs recovery, and starts the background
    /// work (flusher, retention, cleaner). Must be called inside a tokio runtime.
    pub fn open(_options: LogManagerOptions) -> Result<Arc<LogManager>, LogError> {
        unimplemented!("log engine under construction")
    }

    /// Creates a topic durably (returns after the metadata is fsynced).
    pub fn create_topic(
        &self,
        _name: &str,
        _partitions: i32,
        _overrides: BTreeMap<String, String>,
        _internal: bool,
    ) -> Result<TopicInfo, LogError> {
        unimplemented!()
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, _name: &str) -> Result<(), LogError> {
        unimplemented!()
    }

    /// Grows a topic to `new_total` partitions.
    pub fn create_partitions(&self, _name: &str, _new_total: i32) -> Result<(), LogError> {
        unimplemented!()
    }

    /// Replaces a topic's overrides durably; takes effect at once.
    pub fn alter_topic_config(
        &self,
        _name: &str,
        _overrides: BTreeMap<String, String>,
    ) -> Result<(), LogError> {
        unimplemented!()
    }

    pub fn topics(&self) -> Vec<TopicInfo> {
        unimplemented!()
    }

    pub fn topic(&self, _name: &str) -> Option<TopicInfo> {
        unimplemented!()
    }

    /// The effective config of a topic (broker defaults + overrides).
    pub fn topic_config(&self, _name: &str) -> Option<LogConfig> {
        unimplemented!()
    }

    pub fn partition(&self, _topic: &str, _partition: i32) -> Option<Arc<Partition>> {
        unimplemented!()
    }

    /// Resolves when any partition's high watermark may have advanced since the returned future
    /// was created (create it before checking, to never miss a wake-up).
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        unimplemented!()
    }

    /// A producer id never handed out before, durable across restarts.
    pub fn allocate_producer_id(&self) -> Result<i64, LogError> {
        unimplemented!()
    }

    /// Flush everything, write checkpoints and the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), LogError> {
        unimplemented!()
    }
}

/// One partition's log.
pub struct Partition {
    _private: (),
}

impl Partition {
    /// Validates and appends the record batches in `records` (one or more v2 batches, as sent).
    /// Assigns offsets by patching baseOffset in place; applies LogAppendTime; checks producer
    /// epochs and sequences (idempotence), answering a retry with its original offsets.
    pub fn append(&self, _records: Bytes, _origin: AppendOrigin) -> Result<AppendInfo, LogError> {
        unimplemented!()
    }

    /// Resolves once every offset below `offset` is durable (fsynced). Returns at once in
    /// page-cache mode. Group commit: concurrent waiters share one fsync.
    pub async fn wait_durable(&self, _offset: i64) -> Result<(), LogError> {
        unimplemented!()
    }

    /// Reads whole batches starting with the one containing `offset`, at most `max_bytes` unless
    /// the first batch alone is larger (then exactly that batch).
    pub fn read(
        &self,
        _offset: i64,
        _max_bytes: usize,
        _isolation: Isolation,
    ) -> Result<ReadInfo, LogError> {
        unimplemented!()
    }

    pub fn offsets(&self) -> PartitionOffsets {
        unimplemented!()
    }

    /// The first offset whose record timestamp is ≥ `timestamp`, with that record's timestamp;
    /// `None` when no such record exists below the high watermark.
    pub fn offset_for_timestamp(&self, _timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        unimplemented!()
    }

    /// The record with the largest timestamp: (offset, timestamp); `None` when empty.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        unimplemented!()
    }

    /// Moves the log start offset forward to `offset` (≤ high watermark), deleting whole
    /// segments below it. Returns the new log start offset.
    pub fn delete_records_before(&self, _offset: i64) -> Result<i64, LogError> {
        unimplemented!()
    }
}
