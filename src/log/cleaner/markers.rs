//! Which transaction markers a cleaning keeps, by Kafka's rule: a COMMIT or ABORT marker stays
//! while any batch of its transaction is still in the log (an emptied batch kept for its
//! producer's sequence counts: without its marker it would look like an open transaction).
//! Once a cleaning finds none left, it stamps the marker with a delete horizon
//! (`now + delete.retention.ms` in baseTimestamp, attribute bit 6, as KIP-534 does for
//! tombstones), and the first cleaning past the horizon removes it, so a consumer that read
//! the transaction's records within `delete.retention.ms` still sees how it ended. An aborted
//! transaction keeps its `.txnindex` entry only while a cleaning still finds its records.
//!
//! One [`TxnMarkers`] walks a whole pass, from the log start, in offset order: a producer's
//! transactions do not overlap, so the data batches seen since its last marker are the
//! transaction its next marker ends. The markers of a producer whose state holds no data batch
//! stay (its epoch lives there, as in Kafka's rule for a producer's last batch).

use std::collections::HashSet;

use super::rewrite::{self, BatchOutcome, FilterStats, RetainRules, RewriteError};
use crate::log::batch::BatchHeader;
use crate::log::partition::txn::{marker, ABORT};
use crate::log::producer_state::ProducerStateManager;

/// The marker decisions of one cleaning pass.
#[derive(Debug, Default)]
pub(super) struct TxnMarkers {
    /// Producers with a batch seen since their last marker: their next marker stays.
    with_data: HashSet<i64>,
    /// Marker offsets of the aborts whose records this pass still found: their index entries stay.
    aborts_with_data: HashSet<i64>,
    /// Markers removed by this pass.
    pub(super) removed: u64,
}

impl TxnMarkers {
    /// Notes a transactional data batch (kept or not by this pass).
    pub(super) fn on_data(&mut self, h: &BatchHeader) {
        if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
            self.with_data.insert(h.producer_id);
        }
    }

    /// Whether the entry of the abort whose marker is at `marker_offset` stays in the index.
    pub(super) fn keeps_abort_entry(&self, marker_offset: i64) -> bool {
        self.aborts_with_data.contains(&marker_offset)
    }

    /// The fate of control batch `batch` (header `h`) at this pass.
    pub(super) fn on_control(
        &mut self,
        h: &BatchHeader,
        batch: &[u8],
        producers: &ProducerStateManager,
        rules: &RetainRules<'_>,
        filter: &mut FilterStats,
    ) -> Result<BatchOutcome, RewriteError> {
        let Some((kind, _)) = marker(batch) else {
            // A marker emptied by an earlier cleaning goes (unless its group needs it last);
            // a control record of another kind stays as it is.
            return Ok(match h.records_count {
                0 => BatchOutcome::Dropped,
                _ => BatchOutcome::Unchanged,
            });
        };
        if self.with_data.remove(&h.producer_id) {
            if kind == ABORT {
                self.aborts_with_data.insert(h.base_offset);
            }
            return Ok(BatchOutcome::Unchanged);
        }
        // The producer's epoch lives in its last marker when its state has no data batch.
        let holds_epoch = producers
            .get(h.producer_id)
            .is_some_and(|e| e.batches.is_empty() && e.epoch == h.producer_epoch);
        if holds_epoch {
            return Ok(BatchOutcome::Unchanged);
        }
        match rewrite::delete_horizon(h) {
            Some(horizon) if rules.now_ms >= horizon => {
                self.removed += 1;
                Ok(BatchOutcome::Dropped)
            }
            Some(horizon) => {
                filter.note_horizon(horizon);
                Ok(BatchOutcome::Unchanged)
            }
            None => {
                let horizon = rules.now_ms.saturating_add(rules.delete_retention_ms);
                filter.note_horizon(horizon);
                Ok(BatchOutcome::Rewritten(rewrite::stamp_horizon(
                    batch, h, horizon,
                )?))
            }
        }
    }
}
