//! Offsets committed inside a transaction (TxnOffsetCommit): written to `__consumer_offsets` in
//! a transactional batch of the producer and held aside until the transaction coordinator has
//! written the marker, then applied (COMMIT) or dropped (ABORT). OffsetFetch never sees them
//! before. The transaction coordinator calls in here; nothing here knows its state.

use super::{now_ms, CoordinatorError, GroupCoordinator};
use crate::group::offsets::{partition_for, OffsetsRecord, OFFSETS_TOPIC};
use crate::group::state::{CommittedOffset, TopicPartition};

impl GroupCoordinator {
    /// Appends transactional offsets of `producer` (id, epoch) for `group_id` and keeps them
    /// pending; returns once they are durable.
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer: (i64, i16),
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), CoordinatorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (partition, end) = {
            let mut inner = self.lock();
            let records: Vec<OffsetsRecord> = offsets
                .iter()
                .map(|(tp, o)| OffsetsRecord::Offset {
                    group_id: group_id.to_string(),
                    partition: tp.clone(),
                    value: Some(o.clone()),
                })
                .collect();
            let appended = self
                .offsets
                .append_for(group_id, &records, now_ms(), Some(producer))?;
            let pending = inner.pending_txn.entry(producer.0).or_default();
            pending.extend(
                offsets
                    .into_iter()
                    .map(|(tp, o)| (group_id.to_string(), tp, o)),
            );
            appended
        };
        partition.wait_durable(end).await?;
        Ok(())
    }

    /// The `__consumer_offsets` partition that holds `group_id`'s records, creating the topic
    /// if needed: where the transaction's marker for its offsets goes.
    pub fn offsets_partition(&self, group_id: &str) -> Result<(String, i32), CoordinatorError> {
        let partitions = self.offsets.ensure()?;
        Ok((
            OFFSETS_TOPIC.to_string(),
            partition_for(group_id, partitions),
        ))
    }

    /// Called once the marker of `producer_id`'s transaction is in every offsets partition it
    /// wrote to: its pending offsets become committed, or are dropped.
    pub fn complete_txn(&self, producer_id: i64, commit: bool) {
        let mut inner = self.lock();
        let Some(pending) = inner.pending_txn.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        let now = now_ms();
        let mut by_group: std::collections::HashMap<String, Vec<_>> = Default::default();
        for (group, tp, o) in pending {
            by_group.entry(group).or_default().push((tp, o));
        }
        for (group, offsets) in by_group {
            inner.groups.apply_commit(&group, offsets, now);
        }
    }
}
