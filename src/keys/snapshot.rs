//! Consistent snapshots: the latest live record of every key as of one offset per partition,
//! produced in offset order with memory bounded by one read plus, per partition, a map of the
//! one segment straddling its `as_of` offset. A record is emitted when it is the latest for its
//! key below `as_of` and not a tombstone, checked against the key index at the moment it is
//! read; the caller hands `as_of` to a consumer, which continues from there. `as_of` is at most
//! the last stable offset, and records of aborted transactions are not seen, so a snapshot holds
//! committed records only and the consumer that follows reads `read_committed`.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::scan::scan;
use super::{KeyIndex, KeysError, Record};
use crate::log::partition::Partition;

/// Calls `emit` with every live key's latest record below `as_of` in `partition`, in offset
/// order, until it breaks (then returns `Ok(false)`); `Ok(true)` when the snapshot is complete.
pub fn partition_snapshot(
    index: &KeyIndex,
    partition: &Arc<Partition>,
    as_of: i64,
    mut emit: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<bool, KeysError> {
    let start = partition.offsets().log_start_offset;
    let mut overlay = None;
    let mut failed = None;
    let mut stopped = false;
    scan(partition, start, as_of, |r| {
        let (Some(key), Some(_)) = (&r.key, &r.value) else {
            return ControlFlow::Continue(());
        };
        match index.is_latest(partition, key, r.offset, as_of, &mut overlay) {
            Ok(true) => {
                if emit(r).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
            Ok(false) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(!stopped),
    }
}
