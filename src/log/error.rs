//! The log engine's errors. They speak of offsets, batches and records, never of Kafka error
//! codes: the request handlers (`broker/errors.rs`) map each to one.

use super::record_errors::{self, RecordError};

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
    /// Structurally valid but not acceptable (control batch from a client, several batches).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The batch is refused because of some of its records: these, in batch order, each with
    /// the rule it breaks.
    #[error("{}", record_errors::summary(.records))]
    RecordsRefused { records: Vec<RecordError> },
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
