//! The async shell around the group state machine: one mutex over every group, parked
//! JoinGroup/SyncGroup requests (tokio oneshot channels), one timer task, and persistence to
//! `__consumer_offsets`.
//!
//! The state machine ([`super::state`]) decides; this module only delivers its effects: it
//! answers parked requests, appends group metadata and tombstones, and waits for durability
//! before acknowledging a commit. It reads the wall clock and generates member ids. It must not
//! know Kafka request types or error codes (the handlers map [`CoordinatorError`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tracing::{error, info};

mod election;
mod txn;

use crate::cluster::coordination::Ownership;
use election::install;
pub use txn::TxnCommitMember;

use super::consumer::stored::StoredGroup as StoredConsumerGroup;
use super::consumer::{ConsumerConfig, ConsumerError, ConsumerGroups, Topics};
use super::offsets::{Loaded, OffsetsError, OffsetsRecord, OffsetsTopic};
use super::state::{
    CommittedOffset, Effect, GroupConfig, GroupError, GroupState, Groups, JoinRequest,
    JoinResponse, PartitionResults, SyncRequest, SyncResponse, TopicPartition, Waiter,
};
use crate::config::BrokerConfig;
use crate::log::{LogError, LogManager, Partition};

/// Why a coordinator operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

impl From<LogError> for CoordinatorError {
    fn from(e: LogError) -> Self {
        CoordinatorError::Offsets(OffsetsError::Log(e))
    }
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Kafka's state name (classic or consumer group states).
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the group's protocol; empty unless the group is Stable.
    pub metadata: bytes::Bytes,
    /// Empty unless the group is Stable.
    pub assignment: bytes::Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    /// The selected protocol while Stable, else "".
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

enum Parked {
    Join(oneshot::Sender<Result<JoinResponse, GroupError>>),
    Sync(oneshot::Sender<Result<SyncResponse, GroupError>>),
}

pub(super) struct Inner {
    pub(super) groups: Groups,
    /// KIP-848 groups; their committed offsets are kept in `groups`, as for any group.
    pub(super) consumer: ConsumerGroups,
    /// Each consumer group as its records in `__consumer_offsets` last left it: the coordinator
    /// writes the difference after every change (see [`GroupCoordinator::persist_consumer`]).
    pub(super) persisted: HashMap<String, StoredConsumerGroup>,
    parked: HashMap<Waiter, Parked>,
    next_waiter: Waiter,
    /// The offsets-topic position of the newest commit applied per (group, partition), so a
    /// commit whose durability wait finishes late cannot overwrite a newer one.
    applied: HashMap<(String, TopicPartition), i64>,
    /// Offsets of open transactions (TxnOffsetCommit), by producer id: applied at COMMIT.
    pending_txn: HashMap<i64, Vec<(String, TopicPartition, CommittedOffset)>>,
    pub(super) shutting_down: bool,
    /// In a cluster, the `__consumer_offsets` partitions this broker coordinates (it leads
    /// them); `None` on a single node, which coordinates every group.
    pub(super) owned: Option<HashMap<i32, Ownership>>,
}

/// Coordinates every consumer group of this broker.
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    offsets: OffsetsTopic,
    retention_ms: i64,
    retention_check_interval_ms: i64,
    pub(super) wake: Notify,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Wall-clock milliseconds since the epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl GroupCoordinator {
    /// Opens (creating if needed) `__consumer_offsets`, rebuilds every group's offsets and
    /// metadata from it, and starts the timer task. Must be called inside a tokio runtime.
    ///
    /// `group_session_timeout` gives a group's own `consumer.session.timeout.ms` (KIP-848 group
    /// config), which the consumer-protocol members of a rebuilt group get.
    pub async fn start(
        config: &BrokerConfig,
        log: Arc<LogManager>,
        group_session_timeout: &dyn Fn(&str) -> Option<i32>,
    ) -> Result<Arc<GroupCoordinator>, CoordinatorError> {
        let started = std::time::Instant::now();
        let offsets = OffsetsTopic::open(config, log.clone());
        // In a cluster a group is loaded when this broker is elected leader of its partition
        // (`election.rs`); on a single node every group is this broker's from the start.
        let clustered = !config.cluster_etcd_endpoints().is_empty();
        let loaded = if clustered {
            Loaded::default()
        } else {
            offsets.load()?
        };
        let groups = Groups::new(GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms(),
            min_session_timeout_ms: config.group_min_session_timeout_ms(),
            max_session_timeout_ms: config.group_max_session_timeout_ms(),
            max_size: usize::try_from(config.group_max_size()).unwrap_or(usize::MAX),
        });
        let consumer = ConsumerGroups::new(ConsumerConfig {
            session_timeout_ms: config.group_consumer_session_timeout_ms(),
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms(),
            max_size: usize::try_from(config.group_consumer_max_size()).unwrap_or(usize::MAX),
            migration: config.group_consumer_migration_policy(),
            classic_max_size: usize::try_from(config.group_max_size()).unwrap_or(usize::MAX),
        });
        let mut inner = Inner {
            groups,
            consumer,
            persisted: HashMap::new(),
            parked: HashMap::new(),
            next_waiter: 1,
            applied: HashMap::new(),
            pending_txn: HashMap::new(),
            shutting_down: false,
            owned: clustered.then(HashMap::new),
        };
        let records = loaded.records;
        let counts = install(&mut inner, loaded, &log, group_session_timeout, now_ms());
        if !clustered {
            info!(
                groups = counts.groups,
                consumer_groups = counts.consumer_groups,
                groups_with_offsets = counts.offsets,
                records,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded consumer groups from __consumer_offsets"
            );
        }
        let coordinator = Arc::new(GroupCoordinator {
            inner: Mutex::new(inner),
            offsets,
            retention_ms: config.offsets_retention_ms(),
            retention_check_interval_ms: config.offsets_retention_check_interval_ms(),
            wake: Notify::new(),
            timer: Mutex::new(None),
        });
        let handle = tokio::spawn(timer_loop(coordinator.clone()));
        *coordinator.timer.lock().expect("timer lock") = Some(handle);
        Ok(coordinator)
    }

    /// Stops the timer and answers every parked request (and every later JoinGroup or
    /// SyncGroup) with COORDINATOR_NOT_AVAILABLE, so clients look for the coordinator again
    /// after the restart. Safe to call more than once.
    pub async fn shutdown(&self) {
        {
            let mut inner = self.lock();
            inner.shutting_down = true;
            for (_, parked) in inner.parked.drain() {
                match parked {
                    Parked::Join(tx) => {
                        let _ = tx.send(Err(GroupError::CoordinatorNotAvailable));
                    }
                    Parked::Sync(tx) => {
                        let _ = tx.send(Err(GroupError::CoordinatorNotAvailable));
                    }
                }
            }
        }
        self.wake.notify_one();
        let handle = self.timer.lock().expect("timer lock").take();
        if let Some(handle) = handle {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet (FindCoordinator calls this, as
    /// Kafka creates the topic when a client first looks for a coordinator).
    pub fn ensure_offsets_topic(&self) -> Result<(), CoordinatorError> {
        self.offsets.ensure()?;
        Ok(())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the state is still the best there is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup: resolves when the group answers (at once, or when the rebalance completes).
    /// A consumer-protocol group with members takes the member in as a classic member (see
    /// `consumer/classic.rs`); `topics` are the topics that exist now.
    pub async fn join(
        &self,
        group_id: &str,
        request: JoinRequest,
        topics: &Topics,
    ) -> Result<JoinResponse, GroupError> {
        let rx = 'parked: {
            let mut inner = self.lock();
            if inner.shutting_down {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            self.owner(&inner, group_id)?;
            // A consumer-protocol group becomes classic on a JoinGroup only while it is empty.
            if inner.consumer.group(group_id).is_some() {
                if !inner.consumer.remove_if_empty(group_id) {
                    let new_member_id = uuid::Uuid::new_v4().to_string();
                    let result = inner.consumer.classic_join(
                        group_id,
                        &request,
                        &new_member_id,
                        topics,
                        now_ms(),
                    );
                    break 'parked Err((result, self.settle_consumer(&mut inner, group_id)));
                }
                self.persist_consumer(&mut inner, group_id);
            }
            let waiter = inner.next_waiter;
            inner.next_waiter += 1;
            let (tx, rx) = oneshot::channel();
            inner.parked.insert(waiter, Parked::Join(tx));
            let new_member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            let fx = inner
                .groups
                .join(group_id, &request, &new_member_id, waiter, now_ms());
            self.deliver(&mut inner, fx);
            Ok(rx)
        };
        self.wake.notify_one();
        match rx {
            Ok(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
            // Answered by the consumer group, once what it changed is durable.
            Err((result, waits)) => self.after_durable(group_id, waits, result).await,
        }
    }

    /// SyncGroup: followers resolve when the leader's assignment arrives.
    pub async fn sync(
        &self,
        group_id: &str,
        request: SyncRequest,
    ) -> Result<SyncResponse, GroupError> {
        let rx = {
            let mut inner = self.lock();
            if inner.shutting_down {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            self.owner(&inner, group_id)?;
            if inner.consumer.group(group_id).is_some() {
                return inner.consumer.classic_sync(group_id, &request, now_ms());
            }
            let waiter = inner.next_waiter;
            inner.next_waiter += 1;
            let (tx, rx) = oneshot::channel();
            inner.parked.insert(waiter, Parked::Sync(tx));
            let fx = inner.groups.sync(group_id, &request, waiter, now_ms());
            self.deliver(&mut inner, fx);
            rx
        };
        self.wake.notify_one();
        rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable))
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        let mut inner = self.lock();
        self.owner(&inner, group_id)?;
        if inner.consumer.group(group_id).is_some() {
            return inner.consumer.classic_heartbeat(
                group_id,
                member_id,
                group_instance_id,
                generation_id,
                now_ms(),
            );
        }
        inner.groups.heartbeat(
            group_id,
            member_id,
            group_instance_id,
            generation_id,
            now_ms(),
        )
    }

    /// LeaveGroup for several members (member id, instance id): one result each, or an error
    /// for the whole request.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<PartitionResults, GroupError> {
        let results = {
            let mut inner = self.lock();
            self.owner(&inner, group_id)?;
            if inner.consumer.group(group_id).is_some() {
                let results = inner.consumer.classic_leave(group_id, members);
                self.settle_consumer(&mut inner, group_id);
                results
            } else {
                let (results, fx) = inner.groups.leave(group_id, members, now_ms())?;
                self.deliver(&mut inner, fx);
                results
            }
        };
        self.wake.notify_one();
        Ok(results)
    }

    /// OffsetCommit: checks the member and generation (or member epoch, when the request can
    /// carry one: `epoch_aware`), appends the offsets to `__consumer_offsets`, and returns once
    /// they are durable.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        epoch_aware: bool,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), CoordinatorError> {
        let check = |inner: &mut Inner, now| {
            self.owner(inner, group_id)?;
            if inner.consumer.group(group_id).is_some() {
                inner
                    .consumer
                    .check_commit(group_id, member_id, generation_id, epoch_aware)?;
                return Ok::<(), CoordinatorError>(());
            }
            let groups = &mut inner.groups;
            groups.check_commit(group_id, member_id, group_instance_id, generation_id, now)?;
            Ok(())
        };
        if offsets.is_empty() {
            let mut inner = self.lock();
            check(&mut inner, now_ms())?;
            return Ok(());
        }
        let (partition, end, epoch) = {
            // Commits are still taken while shutting down: the log stays open until the
            // broker closes it, and a commit that arrives in time should not be lost.
            let mut inner = self.lock();
            let now = now_ms();
            check(&mut inner, now)?;
            let records: Vec<OffsetsRecord> = offsets
                .iter()
                .map(|(tp, o)| OffsetsRecord::Offset {
                    group_id: group_id.to_string(),
                    partition: tp.clone(),
                    value: Some(o.clone()),
                })
                .collect();
            // Appending under the lock keeps the topic's order equal to the order of checks.
            let appended = self.offsets.append(group_id, &records, now)?;
            let partitions: Vec<TopicPartition> =
                offsets.iter().map(|(tp, _)| tp.clone()).collect();
            inner.groups.begin_commit(group_id, &partitions, now);
            let epoch = self.owner(&inner, group_id)?;
            (appended.0, appended.1, epoch)
        };
        // Ends the in-flight mark however this future finishes (durable, failed or dropped).
        let mut in_flight = InFlightCommit {
            coordinator: self,
            group_id,
            partitions: offsets.iter().map(|(tp, _)| tp.clone()).collect(),
        };
        let durable = self.wait_stored(group_id, epoch, &partition, end).await;
        // The mark ends under the same lock that applies the offsets, so expiry never sees
        // the partition unmarked and not yet applied.
        let mut inner = self.lock();
        inner
            .groups
            .end_commit(group_id, &std::mem::take(&mut in_flight.partitions));
        durable?;
        let fresh: Vec<(TopicPartition, CommittedOffset)> = offsets
            .into_iter()
            .filter(|(tp, _)| {
                let key = (group_id.to_string(), tp.clone());
                match inner.applied.get(&key) {
                    Some(&at) if at > end => false,
                    _ => {
                        inner.applied.insert(key, end);
                        true
                    }
                }
            })
            .collect();
        inner.groups.apply_commit(group_id, fresh, now_ms());
        Ok(())
    }

    /// The committed offsets of a group: of the given partitions (`None` when nothing is
    /// committed), or of every committed partition when `partitions` is `None`.
    pub fn fetch(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Option<CommittedOffset>)> {
        let inner = self.lock();
        match partitions {
            Some(list) => list
                .iter()
                .map(|tp| (tp.clone(), inner.groups.committed(group_id, tp).cloned()))
                .collect(),
            None => inner
                .groups
                .group(group_id)
                .map(|g| {
                    g.offsets()
                        .iter()
                        .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Every live group, of both protocols.
    pub fn list(&self) -> Vec<GroupListing> {
        let inner = self.lock();
        let consumer = inner.consumer.groups().map(|g| GroupListing {
            group_id: g.group_id().to_string(),
            protocol_type: "consumer".to_string(),
            state: g.state(),
            group_type: "consumer",
        });
        let mut list: Vec<GroupListing> = inner
            .groups
            .groups()
            .filter(|g| g.state() != GroupState::Dead)
            // A consumer group's offsets are held by an empty classic entry: not a group.
            .filter(|g| inner.consumer.group(g.group_id()).is_none())
            .map(|g| GroupListing {
                group_id: g.group_id().to_string(),
                protocol_type: g.protocol_type().to_string(),
                state: g.state().name(),
                group_type: "classic",
            })
            .chain(consumer)
            .collect();
        list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        list
    }

    /// A classic group's state and members; `None` for an unknown group or a consumer-protocol
    /// group (DescribeGroups shows those as Dead, as Kafka does).
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let inner = self.lock();
        if inner.consumer.group(group_id).is_some() {
            return None;
        }
        let g = inner.groups.group(group_id)?;
        let stable = g.state() == GroupState::Stable;
        let protocol = g.protocol_name().unwrap_or_default().to_string();
        Some(GroupDescription {
            state: g.state(),
            protocol_type: g.protocol_type().to_string(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        bytes::Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        bytes::Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups for one group: removes it and its offsets, durably.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), CoordinatorError> {
        let (waits, epoch) = {
            let mut inner = self.lock();
            let epoch = self.owner(&inner, group_id)?;
            let mut tombstones = None;
            let fx = if inner.consumer.group(group_id).is_some() {
                if !inner.consumer.remove_if_empty(group_id) {
                    return Err(GroupError::NonEmptyGroup.into());
                }
                tombstones = self.persist_consumer(&mut inner, group_id);
                // Its offsets, if any, are held by a classic entry.
                match inner.groups.delete_group(group_id) {
                    Err(GroupError::GroupIdNotFound) => Vec::new(),
                    other => other?,
                }
            } else {
                inner.groups.delete_group(group_id)?
            };
            inner.applied.retain(|(g, _), _| g != group_id);
            let mut waits = self.deliver(&mut inner, fx);
            waits.extend(tombstones);
            (waits, epoch)
        };
        for (partition, end) in waits {
            self.wait_stored(group_id, epoch, &partition, end).await?;
        }
        Ok(())
    }

    /// OffsetDelete: one result per partition, after the tombstones are durable.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<PartitionResults, CoordinatorError> {
        let (results, waits, epoch) = {
            let mut inner = self.lock();
            let epoch = self.owner(&inner, group_id)?;
            let (results, fx) = inner.groups.delete_offsets(group_id, partitions)?;
            (results, self.deliver(&mut inner, fx), epoch)
        };
        for (partition, end) in waits {
            self.wait_stored(group_id, epoch, &partition, end).await?;
        }
        Ok(results)
    }

    /// Delivers the machine's effects: replies to parked requests, and records appended to
    /// `__consumer_offsets` (returned, to wait for their durability when it matters).
    pub(super) fn deliver(&self, inner: &mut Inner, fx: Vec<Effect>) -> Vec<(Arc<Partition>, i64)> {
        let mut waits = Vec::new();
        let now = now_ms();
        for effect in fx {
            let (group_id, records) = match effect {
                Effect::JoinReply { waiter, result } => {
                    if let Some(Parked::Join(tx)) = inner.parked.remove(&waiter) {
                        let _ = tx.send(result);
                    }
                    continue;
                }
                Effect::SyncReply { waiter, result } => {
                    if let Some(Parked::Sync(tx)) = inner.parked.remove(&waiter) {
                        let _ = tx.send(result);
                    }
                    continue;
                }
                Effect::StoreGroup { group_id } => {
                    let Some(group) = inner.groups.group(&group_id) else {
                        continue;
                    };
                    let record = OffsetsRecord::Group {
                        group_id: group_id.clone(),
                        value: Some(group.stored()),
                    };
                    (group_id, vec![record])
                }
                Effect::RemoveOffsets {
                    group_id,
                    partitions,
                } => {
                    let records = partitions
                        .into_iter()
                        .map(|tp| OffsetsRecord::Offset {
                            group_id: group_id.clone(),
                            partition: tp,
                            value: None,
                        })
                        .collect();
                    (group_id, records)
                }
                Effect::RemoveGroup { group_id } => {
                    let record = OffsetsRecord::Group {
                        group_id: group_id.clone(),
                        value: None,
                    };
                    (group_id, vec![record])
                }
            };
            match self.offsets.append(&group_id, &records, now) {
                Ok(wait) => waits.push(wait),
                Err(e) => error!(group = %group_id, error = %e, "cannot persist group state"),
            }
        }
        waits
    }

    /// Writes the records that bring `group_id`'s consumer-group state in `__consumer_offsets`
    /// up to date (tombstones when the group is gone); returns where to wait for their
    /// durability, `None` when nothing had changed. A failed write is logged and retried with
    /// the next change.
    pub(super) fn persist_consumer(
        &self,
        inner: &mut Inner,
        group_id: &str,
    ) -> Option<(Arc<Partition>, i64)> {
        let now = inner.consumer.group(group_id).map(StoredConsumerGroup::of);
        let records: Vec<OffsetsRecord> =
            super::consumer::stored::changes(group_id, inner.persisted.get(group_id), now.as_ref())
                .into_iter()
                .map(OffsetsRecord::Consumer)
                .collect();
        if records.is_empty() {
            return None;
        }
        match self.offsets.append(group_id, &records, now_ms()) {
            Ok(wait) => {
                match now {
                    Some(stored) => inner.persisted.insert(group_id.to_string(), stored),
                    None => inner.persisted.remove(group_id),
                };
                Some(wait)
            }
            Err(e) => {
                error!(group = %group_id, error = %e, "cannot persist consumer group state");
                None
            }
        }
    }

    fn tick(&self, now: i64, expire: bool) -> Option<i64> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return None;
        }
        let mut fx = inner.groups.tick(now);
        for group_id in inner.consumer.tick(now) {
            self.settle_consumer(&mut inner, &group_id);
        }
        if expire {
            let active = inner
                .consumer
                .groups()
                .filter(|g| g.members().next().is_some())
                .map(|g| g.group_id().to_string())
                .collect();
            fx.extend(inner.groups.expire_offsets(now, self.retention_ms, &active));
            let Inner {
                groups, applied, ..
            } = &mut *inner;
            applied.retain(|(group_id, tp), _| groups.committed(group_id, tp).is_some());
            // An empty consumer group goes once it has no offsets left, as in Kafka.
            let empty: Vec<String> = inner
                .consumer
                .groups()
                .filter(|g| g.members().next().is_none())
                .filter(|g| {
                    inner
                        .groups
                        .group(g.group_id())
                        .is_none_or(|c| c.offsets().is_empty())
                })
                .map(|g| g.group_id().to_string())
                .collect();
            for group_id in empty {
                inner.consumer.remove_if_empty(&group_id);
                self.persist_consumer(&mut inner, &group_id);
                info!(group = %group_id, "empty consumer group removed: its offsets expired");
            }
        }
        self.deliver(&mut inner, fx);
        [inner.groups.next_deadline(), inner.consumer.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A commit appended to `__consumer_offsets` whose durability is awaited; dropping it ends
/// the state machine's in-flight mark.
struct InFlightCommit<'a> {
    coordinator: &'a GroupCoordinator,
    group_id: &'a str,
    partitions: Vec<TopicPartition>,
}

impl Drop for InFlightCommit<'_> {
    fn drop(&mut self) {
        if !self.partitions.is_empty() {
            self.coordinator
                .lock()
                .groups
                .end_commit(self.group_id, &self.partitions);
        }
    }
}

/// Completes rebalances and expires sessions at their deadlines (checked at least every
/// 100 ms), and expires offsets every `offsets.retention.check.interval.ms`.
async fn timer_loop(coordinator: Arc<GroupCoordinator>) {
    let c = coordinator;
    let mut next_expiry = now_ms();
    loop {
        let now = now_ms();
        let expire = now >= next_expiry;
        if expire {
            next_expiry = now + c.retention_check_interval_ms;
        }
        let next = c.tick(now, expire);
        if c.lock().shutting_down {
            return;
        }
        let deadline = next.map_or(now + 100, |d| d.min(now + 100));
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()).max(1) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = c.wake.notified() => {}
        }
    }
}
