//! Consistent snapshots: the latest live record of every key as of one offset per partition,
//! produced in offset order with memory bounded by one read, a [`plan`](super::plan) and, per
//! partition, a map of the one segment straddling its `as_of` offset. A record is emitted when it
//! is the latest for its key below `as_of` and not a tombstone: certain from the plan (most
//! records), else checked against the key index at the moment it is read; the caller hands
//! `as_of` to a consumer, which continues from there. `as_of` is at most the last stable offset,
//! and records of aborted transactions are not seen, so a snapshot holds committed records only
//! and the consumer that follows reads `read_committed`.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::plan::{plan, NoPlan, Plan};
use super::scan::scan;
use super::{KeyIndex, KeysError, Overlay, Record};
use crate::log::partition::Partition;

/// Records read without a plan before trying again to make one, after a file moved under it.
const RETRY_RECORDS: i64 = 1 << 16;

/// Calls `emit` with every live key's latest record below `as_of` in `partition`, in offset
/// order, until it breaks (then returns `Ok(false)`); `Ok(true)` when the snapshot is complete.
pub fn partition_snapshot(
    index: &KeyIndex,
    partition: &Arc<Partition>,
    as_of: i64,
    mut emit: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<bool, KeysError> {
    let mut overlay = None;
    let mut planner = Planner {
        planned: None,
        replan_at: i64::MIN,
    };
    // The offsets only the tier holds first, against a plan over the remote and local key
    // files as the local ones are (else each against the key index); retention that
    // deletes local segments meanwhile moves the local start up, and the tier serves those too.
    let mut start = partition.offsets().log_start_offset;
    let mut remote_from = i64::MIN;
    if let Some(tier) = &index.tiered {
        while let Some(view) = tier.view(partition, start)? {
            for seg in view.segments() {
                let (from, to) = view.range(seg);
                let (from, to) = (from.max(remote_from), to.min(as_of));
                if from >= to {
                    continue;
                }
                let mut failed = None;
                let mut stopped = false;
                tier.records(partition, seg, from, to, |r| {
                    let (Some(key), Some(_)) = (&r.key, &r.value) else {
                        return ControlFlow::Continue(());
                    };
                    match planner.is_latest(index, partition, key, r.offset, as_of, &mut overlay) {
                        Ok(true) if emit(r).is_break() => {
                            stopped = true;
                            ControlFlow::Break(())
                        }
                        Ok(_) => ControlFlow::Continue(()),
                        Err(e) => {
                            failed = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                if stopped {
                    return Ok(false);
                }
            }
            remote_from = view.below;
            let now = partition.offsets().log_start_offset;
            if now <= start {
                break;
            }
            start = now;
        }
    }
    let mut failed = None;
    let mut stopped = false;
    scan(partition, start, as_of, |r| {
        let (Some(key), Some(_)) = (&r.key, &r.value) else {
            return ControlFlow::Continue(());
        };
        let latest = planner.is_latest(index, partition, key, r.offset, as_of, &mut overlay);
        match latest {
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

/// The snapshot's plans: made where a record needs one, made again past each one's window.
struct Planner {
    planned: Option<Plan>,
    /// Where to (try to) make the next plan; `i64::MAX` once the tail is too large for one.
    replan_at: i64,
}

impl Planner {
    /// Whether the record at `offset` with `key` is the latest of its key below `as_of`: from
    /// the plan when it is certain, else asked of the key index.
    fn is_latest(
        &mut self,
        index: &KeyIndex,
        partition: &Arc<Partition>,
        key: &[u8],
        offset: i64,
        as_of: i64,
        overlay: &mut Option<Overlay>,
    ) -> Result<bool, KeysError> {
        if offset >= self.replan_at && self.planned.as_ref().is_none_or(|p| !p.covers(offset)) {
            self.planned = match plan(index, partition, as_of, offset)? {
                Ok(p) => Some(p),
                Err(NoPlan::Moved) => {
                    self.replan_at = offset + RETRY_RECORDS;
                    None
                }
                Err(NoPlan::TooLarge) => {
                    self.replan_at = i64::MAX;
                    None
                }
            };
            // Retention moved the log start past this record meanwhile: no plan speaks for it.
            if self.planned.as_ref().is_some_and(|p| !p.covers(offset)) {
                self.replan_at = offset + RETRY_RECORDS;
            }
        }
        if self
            .planned
            .as_ref()
            .is_some_and(|p| p.certain(key, offset))
        {
            return Ok(true);
        }
        index.is_latest(partition, key, offset, as_of, overlay)
    }
}
