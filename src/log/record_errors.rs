//! Per-record refusals: which records of a batch make the log refuse the whole batch, and why,
//! so that a producer can fail exactly those records (KIP-467) and resend the others.
//!
//! Finding them means decoding the records, so these checks run only where a rule needs it:
//! keyless records on compacted topics, and record timestamps under a finite
//! `message.timestamp.before.max.ms` or once the batch header has shown one out of bounds
//! (`partition/validate.rs` decides). Pure (no I/O), and free of Kafka error codes: the handlers
//! map the [`RecordFault`]s to one.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::batch::BatchError;

/// The rule the refused records of a batch break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    /// A record without a key, on a compacted topic.
    KeylessOnCompactedTopic,
    /// A CreateTime timestamp outside `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` of now.
    TimestampOutOfBounds,
}

/// One refused record: its index in its batch (0 for the first record), the rule it breaks, and
/// a message saying how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub fault: RecordFault,
    pub message: String,
}

/// A one-line summary of refused records, for logs and the response's error message.
pub(crate) fn summary(records: &[RecordError]) -> String {
    match records {
        [] => "no record refused".to_string(),
        [only] => format!("record {} refused: {}", only.batch_index, only.message),
        [first, ..] => format!(
            "{} records refused, the first being record {}: {}",
            records.len(),
            first.batch_index,
            first.message
        ),
    }
}

/// The records of `batch` that have no key, in a compacted topic's partition.
pub fn keyless_records(
    batch: &[u8],
    topic: &str,
    partition: i32,
) -> Result<Vec<RecordError>, BatchError> {
    Ok(decode(batch)?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| RecordError {
            batch_index: i as i32,
            fault: RecordFault::KeylessOnCompactedTopic,
            message: format!(
                "a record without a key cannot be written to the compacted topic partition {topic}-{partition}"
            ),
        })
        .collect())
}

/// The records of `batch` whose timestamp lies outside [`low`, `high`] (records without a
/// timestamp, -1, are never out of bounds).
pub fn timestamps_out_of_bounds(
    batch: &[u8],
    low: i64,
    high: i64,
) -> Result<Vec<RecordError>, BatchError> {
    Ok(decode(batch)?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.timestamp >= 0 && (r.timestamp < low || r.timestamp > high))
        .map(|(i, r)| RecordError {
            batch_index: i as i32,
            fault: RecordFault::TimestampOutOfBounds,
            message: format!(
                "timestamp {} is outside [{low}, {high}] (message.timestamp.before.max.ms and message.timestamp.after.max.ms)",
                r.timestamp
            ),
        })
        .collect())
}

fn decode(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let mut buf = Bytes::copy_from_slice(batch);
    RecordBatchDecoder::decode(&mut buf)
        .map(|set| set.records)
        .map_err(|e| BatchError::Corrupt(format!("cannot decode records: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::batch_with;

    #[test]
    fn keyless_records_are_named_by_their_index_in_the_batch() {
        assert_eq!(
            keyless_records(&batch_with(3, 1_000, None, true), "t", 0).unwrap(),
            vec![]
        );
        let found = keyless_records(&batch_with(3, 1_000, None, false), "t", 2).unwrap();
        assert_eq!(
            found.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(found[0].message.contains("t-2"), "{}", found[0].message);
    }

    #[test]
    fn timestamps_out_of_bounds_are_named_by_their_index_in_the_batch() {
        // batch_with gives record i the timestamp ts + i.
        let batch = batch_with(4, 1_000, None, true);
        let found = timestamps_out_of_bounds(&batch, 1_001, 1_002).unwrap();
        assert_eq!(
            found.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert!(timestamps_out_of_bounds(&batch, 0, 2_000)
            .unwrap()
            .is_empty());
        assert!(summary(&found).starts_with("2 records refused, the first being record 0"));
    }
}
