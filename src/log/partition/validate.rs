//! Validating the batch a client produces before it is appended: size, control bit, timestamp
//! bounds, and keys on compacted topics. A batch refused because of some of its records names
//! them ([`LogError::RecordsRefused`]), so the producer can fail exactly those. Pure: no I/O, time
//! comes in as an argument; knows nothing of Kafka requests.

use super::super::batch::{self, BatchError, BatchHeader, Limits};
use super::super::record_errors::{self, RecordError};
use crate::config::{LogConfig, TimestampType};
use crate::log::{AppendOrigin, LogError};

/// A batch error as the log engine reports it.
pub(super) fn map_batch_error(e: BatchError) -> LogError {
    match e {
        BatchError::Corrupt(m) => LogError::CorruptBatch(m),
        BatchError::Invalid(m) => LogError::InvalidRecord(m),
        BatchError::TooLarge { size, max } => LogError::BatchTooLarge { size, max },
        BatchError::Timestamp(m) => LogError::InvalidTimestamp(m),
    }
}

/// What a partition with config `cfg` accepts from `origin`.
pub(super) fn limits(cfg: &LogConfig, origin: AppendOrigin) -> Limits {
    let log_append_time = cfg.message_timestamp_type == TimestampType::LogAppendTime;
    Limits {
        max_message_bytes: cfg.max_message_bytes,
        timestamp_bounds: (origin == AppendOrigin::Client && !log_append_time).then_some((
            cfg.message_timestamp_before_max_ms,
            cfg.message_timestamp_after_max_ms,
        )),
        reject_control: origin == AppendOrigin::Client,
    }
}

/// Checks one batch (`bytes`, with its parsed `header`) of partition `topic`-`partition` at time
/// `now`. Records are decoded only when a rule needs them: on compacted topics, under a finite
/// `message.timestamp.before.max.ms`, or once the header shows a timestamp out of bounds. Every
/// refused record is named, whichever rule it breaks.
pub(super) fn validate_batch(
    bytes: &[u8],
    header: &BatchHeader,
    limits: &Limits,
    compacted: bool,
    (topic, partition): (&str, i32),
    now: i64,
) -> Result<(), LogError> {
    let mut refused = Vec::new();
    // A record may carry a timestamp below its batch's first one: under a finite
    // message.timestamp.before.max.ms, only the records themselves tell.
    let mut check_records = limits
        .timestamp_bounds
        .is_some_and(|(before, _)| before < i64::MAX);
    match batch::validate(header, bytes.len(), limits, now) {
        Err(BatchError::Timestamp(m)) => {
            refused = refused_timestamps(bytes, limits, now)?;
            // The header's bounds say no; when no record's own timestamp does, its word stands.
            if refused.is_empty() {
                return Err(LogError::InvalidTimestamp(m));
            }
            check_records = false;
        }
        other => other.map_err(map_batch_error)?,
    }
    if check_records {
        refused = refused_timestamps(bytes, limits, now)?;
    }
    if compacted && !header.is_control() {
        // A record breaking both rules is named once, for its key (as Kafka checks it first).
        let mut keyless =
            record_errors::keyless_records(bytes, topic, partition).map_err(map_batch_error)?;
        keyless.append(&mut refused);
        refused = keyless;
    }
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort_by_key(|r| r.batch_index);
    refused.dedup_by_key(|r| r.batch_index);
    Err(LogError::RecordsRefused { records: refused })
}

/// The records of a batch whose timestamps lie outside `limits`' bounds.
fn refused_timestamps(
    batch: &[u8],
    limits: &Limits,
    now: i64,
) -> Result<Vec<RecordError>, LogError> {
    let Some((before, after)) = limits.timestamp_bounds else {
        return Ok(Vec::new());
    };
    let (low, high) = (now.saturating_sub(before), now.saturating_add(after));
    record_errors::timestamps_out_of_bounds(batch, low, high).map_err(map_batch_error)
}
