//! The transaction state machine of one transactional id: Kafka's states and the checks of
//! each request against them. Pure: no I/O, no clock (time comes in as an argument); the
//! coordinator persists what the transitions produce and writes the markers.

use std::collections::BTreeSet;

/// Kafka's transaction states, with the ids `__transaction_state` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// Kafka's in-memory state while an ongoing transaction is aborted to fence its producer;
    /// stored as PrepareAbort, as Kafka does.
    PrepareEpochFence,
}

impl TxnState {
    /// The id in `__transaction_state` (PrepareEpochFence is stored as PrepareAbort).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort | TxnState::PrepareEpochFence => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    /// The state of a stored id; `None` for Dead (6) and unknown ids.
    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions show it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// Why a request is refused; the handlers map these to Kafka error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transaction timeout is above transaction.max.timeout.ms or not positive")]
    InvalidTransactionTimeout,
    #[error("a transaction of this transactional id is completing; retry")]
    ConcurrentTransactions,
    #[error("a newer producer with this transactional id has fenced this one")]
    ProducerFenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("the request does not fit the transaction's state")]
    InvalidTxnState,
    #[error("the transaction state topic cannot be written")]
    CoordinatorNotAvailable,
    #[error("a marker from a coordinator epoch older than the one that last wrote here")]
    CoordinatorFenced,
    /// Another broker coordinates the transactional id (in a cluster).
    #[error("this broker is not the transactional id's coordinator")]
    NotCoordinator,
    /// This broker has just become the id's coordinator and is loading it.
    #[error("the transactional id's coordinator is loading it")]
    CoordinatorLoadInProgress,
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (-1 if none): a KIP-360 producer may recover from it.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition) of the transaction: markers go to each.
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// A fresh epoch for InitProducerId: `None` when the id's epochs are exhausted and a new
/// producer id is needed.
pub fn bumped_epoch(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then_some(epoch + 1)
}

impl TxnMetadata {
    /// A new transactional id: no epoch yet, Empty.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        }
    }

    /// KIP-360: InitProducerId with a producer id and epoch is valid only for the current
    /// producer at its current or previous epoch.
    pub fn check_recovery(&self, expected: Option<(i64, i16)>) -> Result<(), TxnError> {
        match expected {
            Some((id, epoch))
                if id != self.producer_id
                    || (epoch != self.producer_epoch && epoch != self.last_producer_epoch) =>
            {
                Err(TxnError::ProducerFenced)
            }
            _ => Ok(()),
        }
    }

    /// The producer id and epoch of a request must be the current ones.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            Err(TxnError::InvalidProducerIdMapping)
        } else if epoch != self.producer_epoch {
            Err(TxnError::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the transaction after adding `partitions`, or
    /// `None` when nothing changes (all present while Ongoing).
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing if partitions.iter().all(|p| self.partitions.contains(p)) => Ok(None),
            TxnState::Ongoing => {
                let mut next = self.clone();
                next.partitions.extend(partitions.iter().cloned());
                next.last_update_ms = now;
                Ok(Some(next))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = self.clone();
                next.state = TxnState::Ongoing;
                next.partitions = partitions.iter().cloned().collect();
                next.start_ms = now;
                next.last_update_ms = now;
                Ok(Some(next))
            }
        }
    }

    /// EndTxn: the prepared transaction, or `None` when the request repeats a completed one.
    pub fn prepare_end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.check_producer(producer_id, epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = self.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now;
                Ok(Some(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// The fencing abort of an ongoing transaction (a new producer, or its timeout): the epoch
    /// is bumped so the old producer's writes and requests are refused from now on.
    pub fn prepare_fence(&self, now: i64) -> Option<TxnMetadata> {
        let mut next = self.clone();
        next.last_producer_epoch = self.producer_epoch;
        next.producer_epoch = bumped_epoch(self.producer_epoch)?;
        next.state = TxnState::PrepareEpochFence;
        next.last_update_ms = now;
        Some(next)
    }

    /// After the markers: CompleteCommit or CompleteAbort, with no partitions.
    pub fn complete(&self, now: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.last_update_ms = now;
        next
    }

    /// Whether a transactional write of `producer_id`/`epoch` to `partition` is part of this
    /// transaction now (KIP-890's verification, local to this single broker).
    pub fn verify_write(
        &self,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        if self.state == TxnState::Ongoing && self.partitions.contains(partition) {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMetadata {
        let mut m = TxnMetadata::new(7, 60_000, 0);
        m.producer_epoch = 2;
        m.add_partitions(7, 2, &[("t".into(), 0)], 10)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn add_end_and_complete() {
        let m = ongoing();
        assert_eq!(m.state, TxnState::Ongoing);
        assert_eq!(m.start_ms, 10);
        assert_eq!(m.add_partitions(7, 2, &[("t".into(), 0)], 11), Ok(None));
        let m2 = m
            .add_partitions(7, 2, &[("t".into(), 1)], 11)
            .unwrap()
            .unwrap();
        assert_eq!(m2.partitions.len(), 2);
        let prepared = m2.prepare_end(7, 2, true, 12).unwrap().unwrap();
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(
            prepared.add_partitions(7, 2, &[("t".into(), 2)], 13),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = prepared.complete(13);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(done.prepare_end(7, 2, true, 14), Ok(None));
        assert_eq!(
            done.prepare_end(7, 2, false, 14),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn out_of_order_and_stale_requests_are_refused() {
        let mut empty = TxnMetadata::new(7, 60_000, 0);
        empty.producer_epoch = 0;
        assert_eq!(
            empty.prepare_end(7, 0, true, 1),
            Err(TxnError::InvalidTxnState)
        );
        let m = ongoing();
        assert_eq!(m.prepare_end(7, 1, true, 1), Err(TxnError::ProducerFenced));
        assert_eq!(
            m.prepare_end(8, 2, true, 1),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            m.verify_write(7, 2, &("t".into(), 5)),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(m.verify_write(7, 2, &("t".into(), 0)), Ok(()));
    }

    #[test]
    fn fencing_bumps_the_epoch_and_allows_recovery_from_the_last() {
        let m = ongoing();
        let fenced = m.prepare_fence(20).unwrap();
        assert_eq!((fenced.producer_epoch, fenced.last_producer_epoch), (3, 2));
        assert_eq!(fenced.state.id(), TxnState::PrepareAbort.id());
        assert_eq!(
            fenced.verify_write(7, 2, &("t".into(), 0)),
            Err(TxnError::ProducerFenced)
        );
        let done = fenced.complete(21);
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert_eq!(done.check_recovery(Some((7, 2))), Ok(()));
        assert_eq!(
            done.check_recovery(Some((7, 1))),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            done.check_recovery(Some((9, 3))),
            Err(TxnError::ProducerFenced)
        );
        assert!(bumped_epoch(i16::MAX - 1).is_none());
    }
}
