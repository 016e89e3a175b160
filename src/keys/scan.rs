//! Reading a partition's records in an offset range through the log's public read path (whole
//! CRC-checked batches below the high watermark), for building key files, linear searches and
//! snapshots. Holds at most one read's worth of batches.

use std::ops::ControlFlow;

use super::record::{batches, Record};
use super::KeysError;
use crate::log::partition::Partition;
use crate::log::{Isolation, LogError};

/// Bytes asked of one read.
const READ_BYTES: usize = 1 << 20;

/// Calls `f` with every user record in `[from, to)`, in offset order, until it breaks.
pub(crate) fn scan(
    partition: &Partition,
    from: i64,
    to: i64,
    mut f: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<(), KeysError> {
    let mut pos = from;
    while pos < to {
        let read = match partition.read(pos, READ_BYTES, Isolation::ReadUncommitted) {
            Ok(r) => r,
            // Retention or delete-records moved the start past `pos`: what is gone is gone.
            Err(LogError::OffsetOutOfRange {
                log_start_offset, ..
            }) if log_start_offset > pos => {
                pos = log_start_offset;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if read.records.is_empty() {
            return Ok(());
        }
        let mut next = pos;
        for batch in batches(&read.records).map_err(KeysError::Corrupt)? {
            if batch.header.base_offset >= to {
                return Ok(());
            }
            next = next.max(batch.header.last_offset() + 1);
            if !batch.is_data() || batch.header.last_offset() < pos {
                continue;
            }
            for r in batch.records().map_err(KeysError::Corrupt)? {
                if r.offset >= pos && r.offset < to && f(r).is_break() {
                    return Ok(());
                }
            }
        }
        if next == pos {
            return Ok(());
        }
        pos = next;
    }
    Ok(())
}

/// The record at exactly `offset`, if the log still holds it.
pub(crate) fn record_at(partition: &Partition, offset: i64) -> Result<Option<Record>, KeysError> {
    let mut found = None;
    scan(partition, offset, offset + 1, |r| {
        found = Some(r);
        ControlFlow::Break(())
    })?;
    Ok(found.filter(|r| r.offset == offset))
}

/// The latest record with `key` in `[from, to)`.
pub(crate) fn latest_in(
    partition: &Partition,
    from: i64,
    to: i64,
    key: &[u8],
) -> Result<Option<Record>, KeysError> {
    let mut found = None;
    scan(partition, from, to, |r| {
        if r.key.as_deref() == Some(key) {
            found = Some(r);
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}
