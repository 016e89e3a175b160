//! Offsets committed inside a transaction (TxnOffsetCommit): written to `__consumer_offsets` in
//! a transactional batch of the producer and held aside until the transaction coordinator has
//! written the marker, then applied (COMMIT) or dropped (ABORT). OffsetFetch never sees them
//! before. The transaction coordinator calls in here; nothing here knows its state.

use super::{now_ms, CoordinatorError, GroupCoordinator};
use crate::group::consumer::ConsumerError;
use crate::group::offsets::{partition_for, OffsetsRecord, OFFSETS_TOPIC};
use crate::group::state::{CommittedOffset, GroupError, TopicPartition};

/// Who commits inside the transaction (TxnOffsetCommit v3+; before, no member and generation
/// -1): checked against the group as Kafka checks transactional commits.
#[derive(Debug, Clone, Copy)]
pub struct TxnCommitMember<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation_id: i32,
}

impl GroupCoordinator {
    /// Checks `member` against the group (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
    /// FENCED_INSTANCE_ID as Kafka), then appends transactional offsets of `producer` (id,
    /// epoch) for `group_id` and keeps them pending; returns once they are durable.
    pub async fn txn_commit(
        &self,
        group_id: &str,
        member: TxnCommitMember<'_>,
        producer: (i64, i16),
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), CoordinatorError> {
        let check = |inner: &mut super::Inner| {
            self.owner(inner, group_id)?;
            if inner.consumer.group(group_id).is_some() {
                // Kafka: TxnOffsetCommit has no STALE_MEMBER_EPOCH; a stale epoch is an
                // illegal generation.
                return match inner.consumer.check_commit(
                    group_id,
                    member.member_id,
                    member.generation_id,
                    true,
                ) {
                    Err(ConsumerError::StaleMemberEpoch) => {
                        Err(GroupError::IllegalGeneration.into())
                    }
                    other => other.map_err(CoordinatorError::from),
                };
            }
            inner.groups.check_txn_commit(
                group_id,
                member.member_id,
                member.instance_id,
                member.generation_id,
                now_ms(),
            )?;
            Ok::<(), CoordinatorError>(())
        };
        if offsets.is_empty() {
            return check(&mut self.lock());
        }
        let (partition, end, epoch) = {
            let mut inner = self.lock();
            check(&mut inner)?;
            let epoch = self.owner(&inner, group_id)?;
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
            (appended.0, appended.1, epoch)
        };
        self.wait_stored(group_id, epoch, &partition, end).await?;
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
