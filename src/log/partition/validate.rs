//! Validating the batch a client produces before it is appended: size, control bit, timestamp
//! bounds, and keys on compacted topics. A batch refused because of some of its records names
//! them ([`LogError::RecordsRefused`]), so the producer can fail exactly those. Pure: no I/O, time
//! comes in as an argument; knows nothing of Kafka requests.

use super::super::batch::{self, BatchError, BatchHeader, Limits};
use super::super::record_errors::{self, RecordFault};
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
/// `message.timestamp.before.max.ms`, or once the header shows a timestamp out of bounds.
pub(super) fn validate_batch(
    bytes: &[u8],
    header: &BatchHeader,
    limits: &Limits,
    compacted: bool,
    (topic, partition): (&str, i32),
    now: i64,
) -> Result<(), LogError> {
    match batch::validate(header, bytes.len(), limits, now) {
        Err(BatchError::Timestamp(m)) => {
            // The header's bounds say no; when no record's own timestamp does, the header's
            // word stands.
            return Err(
                refused_timestamps(bytes, limits, now)?.unwrap_or(LogError::InvalidTimestamp(m))
            );
        }
        other => other.map_err(map_batch_error)?,
    }
    // A record may carry a timestamp below its batch's first one: under a finite
    // message.timestamp.before.max.ms, only the records themselves tell.
    if limits
        .timestamp_bounds
        .is_some_and(|(before, _)| before < i64::MAX)
    {
        if let Some(refusal) = refused_timestamps(bytes, limits, now)? {
            return Err(refusal);
        }
    }
    if compacted && !header.is_control() {
        let keyless =
            record_errors::keyless_records(bytes, topic, partition).map_err(map_batch_error)?;
        if !keyless.is_empty() {
            return Err(LogError::RecordsRefused {
                fault: RecordFault::KeylessOnCompactedTopic,
                records: keyless,
            });
        }
    }
    Ok(())
}

/// The records of a batch whose timestamps put it out of `limits`' bounds, as a refusal; `None`
/// when no record's own timestamp is out of them.
fn refused_timestamps(
    batch: &[u8],
    limits: &Limits,
    now: i64,
) -> Result<Option<LogError>, LogError> {
    let Some((before, after)) = limits.timestamp_bounds else {
        return Ok(None);
    };
    let (low, high) = (now.saturating_sub(before), now.saturating_add(after));
    let records =
        record_errors::timestamps_out_of_bounds(batch, low, high).map_err(map_batch_error)?;
    Ok((!records.is_empty()).then_some(LogError::RecordsRefused {
        fault: RecordFault::TimestampOutOfBounds,
        records,
    }))
}
