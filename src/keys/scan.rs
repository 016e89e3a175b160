//! Reading a partition's records in an offset range through the log's public read path (whole
//! CRC-checked batches below the high watermark), for building key files, linear searches and
//! snapshots. Holds at most one read's worth of batches. A lookup's one record is read alone
//! ([`record_at`]): its batch only, into a buffer kept for the next lookup.
//!
//! Only committed records are seen: batches of aborted transactions are skipped, using the
//! partition's aborted-transaction index as a `read_committed` fetch does. Callers keep `to` at
//! or below the last stable offset, where every transaction is decided, so what a scan sees
//! never changes once seen (short of the cleaner or retention removing records).

use std::ops::ControlFlow;
use std::sync::Mutex;

use super::record::{batches, record_in, BatchView, Record};
use super::KeysError;
use crate::log::batch::BatchHeader;
use crate::log::partition::Partition;
use crate::log::txn_index::AbortedTxn;
use crate::log::{Isolation, LogError};

/// Bytes asked of one read.
const READ_BYTES: usize = 1 << 20;

/// Calls `f` with every committed user record in `[from, to)`, in offset order, until it
/// breaks. `to` must not pass the last stable offset (later records may still be aborted).
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
        let batches = batches(&read.records).map_err(KeysError::Corrupt)?;
        let aborted = match batches
            .iter()
            .filter(|b| b.header.is_transactional())
            .count()
        {
            0 => Vec::new(),
            _ => {
                let end = batches.last().map_or(pos, |b| b.header.last_offset() + 1);
                partition.aborted_transactions(pos, end.min(to))
            }
        };
        let Some(next) = visit(&batches, (pos, to), &aborted, &mut f)? else {
            return Ok(());
        };
        if next == pos {
            return Ok(());
        }
        pos = next;
    }
    Ok(())
}

/// Calls `f` with every committed user record of `batches` (read from `pos`) in `[pos, to)`.
/// Returns the offset after the last batch, or `None` once `f` broke or a batch reached `to`.
pub(crate) fn visit(
    batches: &[BatchView],
    (pos, to): (i64, i64),
    aborted: &[AbortedTxn],
    f: &mut impl FnMut(Record) -> ControlFlow<()>,
) -> Result<Option<i64>, KeysError> {
    let mut next = pos;
    for batch in batches {
        if batch.header.base_offset >= to {
            return Ok(None);
        }
        next = next.max(batch.header.last_offset() + 1);
        if !batch.is_data()
            || batch.header.last_offset() < pos
            || is_aborted(&batch.header, aborted)
        {
            continue;
        }
        for r in batch.records().map_err(KeysError::Corrupt)? {
            if r.offset >= pos && r.offset < to && f(r).is_break() {
                return Ok(None);
            }
        }
    }
    Ok(Some(next))
}

/// True when the batch of header `h` belongs to one of the `aborted` transactions: same
/// producer, between the transaction's first offset and its ABORT marker.
pub(crate) fn is_aborted(h: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    h.is_transactional()
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset < a.last_offset
        })
}

/// Read buffers kept between lookups: at most this many, of at most [`KEPT_BYTES`] each, so
/// the memory held stays a few MiB whatever the number of threads looking up (buffers freed
/// on many threads would stay in glibc's per-thread arenas instead).
const KEPT_BUFFERS: usize = 4;
const KEPT_BYTES: usize = 2 << 20;
static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The record at exactly `offset`, if the log still holds it below the high watermark and it
/// is a committed user record. Reads only the batch holding it (found through the offset index,
/// its length from its header) and decodes only that record.
pub(crate) fn record_at(partition: &Partition, offset: i64) -> Result<Option<Record>, KeysError> {
    let mut buf = BUFFERS
        .lock()
        .expect("read buffers lock")
        .pop()
        .unwrap_or_default();
    let found = record_in_batch(partition, offset, &mut buf);
    if buf.capacity() <= KEPT_BYTES {
        let mut kept = BUFFERS.lock().expect("read buffers lock");
        if kept.len() < KEPT_BUFFERS {
            kept.push(buf);
        }
    }
    found
}

fn record_in_batch(
    partition: &Partition,
    offset: i64,
    buf: &mut Vec<u8>,
) -> Result<Option<Record>, KeysError> {
    match partition.read_batch_into(offset, buf) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        // Retention or delete-records removed it.
        Err(LogError::OffsetOutOfRange {
            log_start_offset, ..
        }) if log_start_offset > offset => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let h = BatchHeader::parse(buf).map_err(|e| KeysError::Corrupt(e.to_string()))?;
    if h.is_control() || offset < h.base_offset || h.last_offset() < offset {
        return Ok(None);
    }
    if h.is_transactional() && is_aborted(&h, &partition.aborted_transactions(offset, offset + 1)) {
        return Ok(None);
    }
    record_in(buf, &h, offset).map_err(KeysError::Corrupt)
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
