//! The coordinator's side of the KIP-848 consumer group protocol: heartbeats and descriptions
//! under the coordinator's one lock, beside the classic groups.
//!
//! A group id belongs to one protocol at a time. An empty classic group (one that only holds
//! offsets) becomes a consumer group on a heartbeat, and an empty consumer group becomes
//! classic again on a JoinGroup (see `GroupCoordinator::join`). A classic group with members
//! becomes a consumer group when `group.consumer.migration.policy` allows it (an online
//! upgrade; else the heartbeat gets GROUP_ID_NOT_FOUND, as Kafka answers it); its members, and
//! any classic member joining later, use the classic APIs inside the consumer group until the
//! last consumer-protocol member leaves, when the group turns classic again (an online
//! downgrade, see `consumer/classic.rs`). Every change is written to `__consumer_offsets`
//! (`GroupCoordinator::persist_consumer`), and a heartbeat or JoinGroup is answered once what
//! it changed is durable. Like the rest of the coordinator it reads the clock and draws member
//! ids, and knows no Kafka request types.

use std::sync::Arc;

use super::consumer::{ConsumerError, ConsumerGroup, Heartbeat, HeartbeatResponse, Topics};
use super::coordinator::{now_ms, Inner};
use super::state::{GroupError, GroupState};
use super::GroupCoordinator;
use crate::log::Partition;
use tracing::{info, warn};

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat, with the topics that exist now.
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: Heartbeat,
        topics: &Topics,
    ) -> Result<HeartbeatResponse, ConsumerError> {
        let (response, waits) = {
            let mut inner = self.lock();
            if inner.shutting_down {
                // A retriable error: members keep their epoch and look for the coordinator
                // again, as Kafka's coordinator answers while it unloads.
                return Err(ConsumerError::CoordinatorNotAvailable);
            }
            match self.owner(&inner, group_id) {
                Err(GroupError::CoordinatorLoadInProgress) => {
                    return Err(ConsumerError::CoordinatorLoadInProgress)
                }
                Err(_) => return Err(ConsumerError::NotCoordinator),
                Ok(_) => {}
            }
            let mut waits = Vec::new();
            if inner.consumer.group(group_id).is_none() {
                if let Some(classic) = inner.groups.group(group_id) {
                    if classic.state() != GroupState::Empty {
                        waits = self.upgrade(&mut inner, group_id, topics)?;
                    }
                }
            }
            let new_member_id = uuid::Uuid::new_v4().to_string();
            let response =
                inner
                    .consumer
                    .heartbeat(group_id, request, topics, &new_member_id, now_ms());
            waits.extend(self.settle_consumer(&mut inner, group_id));
            (response, waits)
        };
        self.wake.notify_one();
        self.after_durable(group_id, waits, response).await
    }

    /// Turns the classic group `group_id`, which has members, into a consumer group (an online
    /// upgrade): GROUP_ID_NOT_FOUND when the policy or the group does not allow it. Returns the
    /// writes to wait for (the classic group's tombstone).
    fn upgrade(
        &self,
        inner: &mut Inner,
        group_id: &str,
        topics: &Topics,
    ) -> Result<Vec<(Arc<Partition>, i64)>, ConsumerError> {
        let now = now_ms();
        let Inner {
            consumer, groups, ..
        } = inner;
        let classic = groups
            .group(group_id)
            .ok_or(ConsumerError::GroupIdNotFound)?;
        let members = classic.members().count();
        if let Err(e) = consumer.upgrade(classic, topics, now) {
            info!(group = %group_id, "classic group with members not turned into a consumer group (group.consumer.migration.policy, group.consumer.max.size or a member's subscription)");
            return Err(e);
        }
        let fx = inner.groups.release(group_id, now);
        info!(group = %group_id, members, "classic group turned into a consumer group: a consumer-protocol member joined");
        Ok(self.deliver(inner, fx))
    }

    /// Writes what changed in the consumer group `group_id`, and hands every group that turned
    /// classic meanwhile to the classic machine (its consumer records get tombstones, then its
    /// classic record is written). Returns the writes to wait for.
    pub(super) fn settle_consumer(
        &self,
        inner: &mut Inner,
        group_id: &str,
    ) -> Vec<(Arc<Partition>, i64)> {
        let mut waits: Vec<_> = self.persist_consumer(inner, group_id).into_iter().collect();
        for d in inner.consumer.take_downgraded() {
            waits.extend(self.persist_consumer(inner, &d.group_id));
            let members = d.members.len();
            let fx = inner
                .groups
                .adopt(&d.group_id, d.generation_id, d.members, now_ms());
            waits.extend(self.deliver(inner, fx));
            info!(group = %d.group_id, members, "consumer group turned classic: its last consumer-protocol member left");
        }
        waits
    }

    /// Returns `result` once `waits` are durable. The state is applied already; a failed write
    /// is logged, and the member learns of trouble from its next requests.
    pub(super) async fn after_durable<T>(
        &self,
        group_id: &str,
        waits: Vec<(Arc<Partition>, i64)>,
        result: T,
    ) -> T {
        for (partition, end) in waits {
            if let Err(e) = partition.wait_durable(end).await {
                warn!(group = %group_id, error = %e, "consumer group state not made durable");
            }
        }
        result
    }

    /// A consumer-protocol group as it is now; `None` if `group_id` is not one.
    pub fn consumer_group(&self, group_id: &str) -> Option<ConsumerGroup> {
        self.lock().consumer.group(group_id).cloned()
    }

    /// Whether `group_id` is a classic group (of any state, offsets only included).
    pub fn is_classic_group(&self, group_id: &str) -> bool {
        let inner = self.lock();
        inner.consumer.group(group_id).is_none() && inner.groups.group(group_id).is_some()
    }

    /// Checks an OffsetFetch made on behalf of a member (OffsetFetch v9+ with an epoch ≥ 0):
    /// only consumer-protocol groups check it.
    pub fn check_offset_fetch(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ConsumerError> {
        let inner = self.lock();
        if inner.consumer.group(group_id).is_none() {
            return Ok(());
        }
        inner
            .consumer
            .check_fetch(group_id, member_id, member_epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::{LogManager, LogManagerOptions};

    fn heartbeat(member: &str, epoch: i32) -> Heartbeat {
        Heartbeat {
            member_id: member.to_string(),
            member_epoch: epoch,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".to_string()]),
            owned: Some(Default::default()),
            ..Heartbeat::default()
        }
    }

    async fn coordinator(
        dir: &std::path::Path,
        session: Option<i32>,
    ) -> (Arc<GroupCoordinator>, BrokerConfig) {
        let mut config = BrokerConfig::default();
        config
            .set("log.dirs", dir.to_str().expect("utf-8 path"))
            .expect("log.dirs");
        let log = LogManager::open(LogManagerOptions {
            data_dir: dir.to_path_buf(),
            broker: config.clone(),
        })
        .expect("log");
        let c = GroupCoordinator::start(&config, log, &|_| session)
            .await
            .expect("coordinator");
        c.ensure_offsets_topic().expect("offsets topic");
        (c, config)
    }

    #[tokio::test]
    async fn a_heartbeat_during_shutdown_gets_a_retriable_error_and_sessions_survive_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let topics = Topics::new();
        let (c, _) = coordinator(dir.path(), None).await;
        let joined = c.consumer_heartbeat("g", heartbeat("a", 0), &topics).await;
        let epoch = joined.expect("joined").member_epoch;
        c.shutdown().await;
        // Not UNKNOWN_MEMBER_ID: the member keeps its epoch and finds the coordinator again.
        assert_eq!(
            c.consumer_heartbeat("g", heartbeat("a", epoch), &topics)
                .await,
            Err(ConsumerError::CoordinatorNotAvailable)
        );
        drop(c);
        // Rebuilt at start-up, the member gets the group's own session timeout (here 50 s,
        // not the broker's 45 s).
        let before = now_ms();
        let (c, _) = coordinator(dir.path(), Some(50_000)).await;
        let deadline = c.lock().consumer.next_deadline().expect("a member");
        assert!(deadline >= before + 50_000, "{deadline} < {before} + 50000");
        c.shutdown().await;
    }
}
