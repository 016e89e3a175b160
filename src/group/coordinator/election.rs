//! The group coordinator in a cluster: which `__consumer_offsets` partitions it coordinates.
//!
//! A broker coordinates the groups of a partition while it leads it, as in Kafka: when elected
//! (the cluster's [`PartitionCoordinator`] hook) it reads the partition from its log and
//! installs its groups and committed offsets (answering COORDINATOR_LOAD_IN_PROGRESS meanwhile);
//! when it resigns it forgets them and answers NOT_COORDINATOR. What it writes in a cluster is
//! acknowledged only once every in-sync replica has it (the partition's high watermark passed
//! it), and only if the broker still coordinates the partition at the same leader epoch, so an
//! acknowledged commit survives the loss of its coordinator.

use std::time::Duration;

use tracing::{info, warn};

use super::{now_ms, CoordinatorError, GroupCoordinator, Inner};
use crate::cluster::coordination::{Ownership, PartitionCoordinator};
use crate::group::consumer::Topics;
use crate::group::offsets::{partition_for, Loaded, OFFSETS_TOPIC};
use crate::group::state::GroupError;
use crate::log::{LogManager, Partition};

/// How long a write to `__consumer_offsets` waits for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How much [`install`] brought in.
pub(super) struct Counts {
    pub groups: usize,
    pub consumer_groups: usize,
    pub offsets: usize,
}

/// Puts what was read from `__consumer_offsets` into the state machines: committed offsets,
/// classic groups, and KIP-848 groups (their members get `session_timeout(group)`, else the
/// broker's `group.consumer.session.timeout.ms`, which is what a group loaded at an election
/// gets: the group's own override is read at start-up only).
pub(super) fn install(
    inner: &mut Inner,
    loaded: Loaded,
    log: &LogManager,
    session_timeout: &dyn Fn(&str) -> Option<i32>,
    now: i64,
) -> Counts {
    let counts = Counts {
        groups: loaded.groups.len(),
        consumer_groups: loaded.consumer.len(),
        offsets: loaded.offsets.len(),
    };
    for (group_id, offsets) in loaded.offsets {
        inner.groups.apply_commit(&group_id, offsets, now);
    }
    for (group_id, stored) in loaded.groups {
        inner.groups.restore_group(&group_id, stored, now);
    }
    let topics: Topics = log
        .topics()
        .into_iter()
        .filter(|t| !t.internal)
        .map(|t| (t.name, (t.topic_id, t.partitions)))
        .collect();
    for (group_id, stored) in loaded.consumer {
        let session =
            session_timeout(&group_id).unwrap_or(inner.consumer.config().session_timeout_ms);
        if let Some(group) = stored.restore(&group_id, &topics, session, now) {
            inner.consumer.restore(group);
            inner.persisted.insert(group_id, stored);
        }
    }
    for (producer_id, pending) in loaded.pending_txn {
        inner
            .pending_txn
            .entry(producer_id)
            .or_default()
            .extend(pending);
    }
    counts
}

impl GroupCoordinator {
    /// The leader epoch at which this broker coordinates `group_id` (`None` on a single node,
    /// where it coordinates every group); NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS
    /// otherwise.
    pub(in crate::group) fn owner(
        &self,
        inner: &Inner,
        group_id: &str,
    ) -> Result<Option<i32>, GroupError> {
        let Some(owned) = &inner.owned else {
            return Ok(None);
        };
        let count = self
            .offsets
            .partition_count()
            .ok_or(GroupError::NotCoordinator)?;
        match owned.get(&partition_for(group_id, count)) {
            Some(Ownership::Loaded(epoch)) => Ok(Some(*epoch)),
            Some(Ownership::Loading(_)) => Err(GroupError::CoordinatorLoadInProgress),
            None => Err(GroupError::NotCoordinator),
        }
    }

    /// Whether this broker coordinates `group_id` now (OffsetFetch, DescribeGroups and
    /// ConsumerGroupDescribe ask before reading).
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), GroupError> {
        self.owner(&self.lock(), group_id).map(|_| ())
    }

    /// Waits until a write to `__consumer_offsets` is durable and, in a cluster, in every
    /// in-sync replica, with this broker still coordinating `group_id` at `epoch` (the one it
    /// wrote at); else NOT_COORDINATOR (leadership moved) or COORDINATOR_NOT_AVAILABLE (the
    /// replicas did not follow in time), which clients retry.
    pub(in crate::group) async fn wait_stored(
        &self,
        group_id: &str,
        epoch: Option<i32>,
        partition: &Partition,
        end: i64,
    ) -> Result<(), CoordinatorError> {
        partition.wait_durable(end).await?;
        let Some(epoch) = epoch else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let arrived = self.offsets.data_arrived();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.owner(&self.lock(), group_id)? != Some(epoch) {
                return Err(GroupError::NotCoordinator.into());
            }
            if partition.offsets().high_watermark >= end {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GroupError::CoordinatorNotAvailable.into());
            }
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            }
        }
    }

    /// The groups stored in `partition` of `__consumer_offsets`.
    fn groups_of(&self, inner: &Inner, partition: i32) -> Vec<String> {
        let Some(count) = self.offsets.partition_count() else {
            return Vec::new();
        };
        let mut ids: Vec<String> = inner
            .groups
            .groups()
            .map(|g| g.group_id().to_string())
            .chain(inner.consumer.groups().map(|g| g.group_id().to_string()))
            .chain(
                inner
                    .pending_txn
                    .values()
                    .flatten()
                    .map(|(g, _, _)| g.clone()),
            )
            .filter(|g| partition_for(g, count) == partition)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Forgets every group of `partition`: parked requests get NOT_COORDINATOR.
    fn unload(&self, inner: &mut Inner, partition: i32) -> usize {
        let ids = self.groups_of(inner, partition);
        let mut fx = Vec::new();
        for id in &ids {
            fx.extend(inner.groups.unload(id));
            inner.consumer.unload(id);
            inner.persisted.remove(id);
        }
        inner.applied.retain(|(g, _), _| !ids.contains(g));
        for pending in inner.pending_txn.values_mut() {
            pending.retain(|(g, _, _)| !ids.contains(g));
        }
        inner.pending_txn.retain(|_, pending| !pending.is_empty());
        // Only replies: an unloaded group writes nothing.
        self.deliver(inner, fx);
        ids.len()
    }
}

impl PartitionCoordinator for GroupCoordinator {
    fn topic(&self) -> &'static str {
        OFFSETS_TOPIC
    }

    fn elected(&self, partition: i32, leader_epoch: i32) {
        {
            let mut inner = self.lock();
            let Some(owned) = inner.owned.as_mut() else {
                return;
            };
            owned.insert(partition, Ownership::Loading(leader_epoch));
            // Whatever an earlier term of this broker left is superseded by the log.
            self.unload(&mut inner, partition);
        }
        let started = std::time::Instant::now();
        let loaded = match self.offsets.load_partition(partition) {
            Ok(loaded) => loaded,
            Err(e) => {
                // Clients get COORDINATOR_LOAD_IN_PROGRESS until a later election loads it.
                warn!(partition, error = %e, "cannot load consumer groups; retrying on the next election");
                let mut inner = self.lock();
                if let Some(owned) = inner.owned.as_mut() {
                    owned.remove(&partition);
                }
                return;
            }
        };
        let records = loaded.records;
        let mut inner = self.lock();
        let Some(owned) = inner.owned.as_mut() else {
            return;
        };
        // Resigned (or elected again) while loading: this load is stale.
        if owned.get(&partition) != Some(&Ownership::Loading(leader_epoch)) {
            return;
        }
        owned.insert(partition, Ownership::Loaded(leader_epoch));
        let counts = install(&mut inner, loaded, self.offsets.log(), &|_| None, now_ms());
        drop(inner);
        self.wake.notify_one();
        info!(
            partition,
            leader_epoch,
            groups = counts.groups,
            consumer_groups = counts.consumer_groups,
            groups_with_offsets = counts.offsets,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinating the consumer groups of a {OFFSETS_TOPIC} partition"
        );
    }

    fn resigned(&self, partition: i32) {
        let mut inner = self.lock();
        let Some(owned) = inner.owned.as_mut() else {
            return;
        };
        owned.remove(&partition);
        let groups = self.unload(&mut inner, partition);
        info!(
            partition,
            groups, "no longer coordinating a {OFFSETS_TOPIC} partition"
        );
    }
}
