//! The transaction coordinator in a cluster: which `__transaction_state` partitions it
//! coordinates.
//!
//! As for groups (`group/coordinator/election.rs`): a broker coordinates the transactional ids
//! of a partition while it leads it. Elected (the cluster's [`PartitionCoordinator`] hook), it
//! reads the partition from its log and installs every id's latest metadata, answering
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile; the timer then completes the transactions it finds
//! prepared and aborts ongoing ones past their timeout, and a producer that re-initialises
//! aborts its own, as Kafka's new coordinator does. Resigned, it forgets them and answers
//! NOT_COORDINATOR. A state change is acknowledged only once every in-sync replica has it.

use std::time::Duration;

use tracing::{info, warn};

use super::TransactionCoordinator;
use crate::cluster::coordination::{Ownership, PartitionCoordinator};
use crate::group::offsets::partition_for;
use crate::log::Partition;
use crate::txn::state::TxnError;
use crate::txn::topic::TRANSACTION_STATE_TOPIC;

/// How long a state change waits for the in-sync replicas.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

impl TransactionCoordinator {
    /// The leader epoch at which this broker coordinates `id` (`None` on a single node, where
    /// it coordinates every id); NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS otherwise.
    pub(super) fn owner(&self, id: &str) -> Result<Option<i32>, TxnError> {
        let Some(owned) = &self.owned else {
            return Ok(None);
        };
        let count = self
            .topic
            .partition_count()
            .ok_or(TxnError::NotCoordinator)?;
        let owned = owned.lock().unwrap_or_else(|p| p.into_inner());
        match owned.get(&partition_for(id, count)) {
            Some(Ownership::Loaded(epoch)) => Ok(Some(*epoch)),
            Some(Ownership::Loading(_)) => Err(TxnError::CoordinatorLoadInProgress),
            None => Err(TxnError::NotCoordinator),
        }
    }

    /// In a cluster, waits until every in-sync replica has `id`'s record below `end`, with
    /// this broker still coordinating `id` at `epoch`.
    pub(super) async fn wait_replicated(
        &self,
        id: &str,
        epoch: Option<i32>,
        partition: &Partition,
        end: i64,
    ) -> Result<(), TxnError> {
        let Some(epoch) = epoch else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let arrived = self.log.data_arrived();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.owner(id)? != Some(epoch) {
                return Err(TxnError::NotCoordinator);
            }
            if partition.offsets().high_watermark >= end {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TxnError::CoordinatorNotAvailable);
            }
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            }
        }
    }

    /// Forgets the ids of `partition`; returns how many.
    fn unload(&self, partition: i32) -> usize {
        let Some(count) = self.topic.partition_count() else {
            return 0;
        };
        let mut txns = self.lock();
        let before = txns.len();
        txns.retain(|id, _| partition_for(id, count) != partition);
        before - txns.len()
    }

    fn set_owned(&self, partition: i32, state: Option<Ownership>) {
        if let Some(owned) = &self.owned {
            let mut owned = owned.lock().unwrap_or_else(|p| p.into_inner());
            match state {
                Some(s) => owned.insert(partition, s),
                None => owned.remove(&partition),
            };
        }
    }
}

impl PartitionCoordinator for TransactionCoordinator {
    fn topic(&self) -> &'static str {
        TRANSACTION_STATE_TOPIC
    }

    fn elected(&self, partition: i32, leader_epoch: i32) {
        self.set_owned(partition, Some(Ownership::Loading(leader_epoch)));
        self.unload(partition);
        let loaded = match self.topic.load_partition(partition) {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!(partition, error = %e, "cannot load transactions; retrying on the next election");
                self.set_owned(partition, None);
                return;
            }
        };
        let ids = loaded.len();
        if let Some(owned) = &self.owned {
            // Held while installing, so a resignation cannot come between.
            let mut owned = owned.lock().unwrap_or_else(|p| p.into_inner());
            // Resigned (or elected again) while loading: this load is stale.
            if owned.get(&partition) != Some(&Ownership::Loading(leader_epoch)) {
                return;
            }
            self.lock().extend(loaded);
            owned.insert(partition, Ownership::Loaded(leader_epoch));
        }
        info!(
            partition,
            leader_epoch,
            ids,
            "coordinating the transactions of a {TRANSACTION_STATE_TOPIC} partition"
        );
    }

    fn resigned(&self, partition: i32) {
        let Some(owned) = &self.owned else {
            return;
        };
        let mut owned = owned.lock().unwrap_or_else(|p| p.into_inner());
        owned.remove(&partition);
        let ids = self.unload(partition);
        drop(owned);
        info!(
            partition,
            ids, "no longer coordinating a {TRANSACTION_STATE_TOPIC} partition"
        );
    }
}
