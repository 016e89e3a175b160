//! The coordinator's side of the KIP-848 consumer group protocol: heartbeats and descriptions
//! under the coordinator's one lock, beside the classic groups.
//!
//! A group id belongs to one protocol at a time: a heartbeat for a classic group that is not
//! empty is refused (GROUP_ID_NOT_FOUND, as Kafka answers it); an empty classic group (one that
//! only holds offsets) becomes a consumer group, and an empty consumer group becomes classic
//! again on a JoinGroup (see `GroupCoordinator::join`). Every change is written to
//! `__consumer_offsets` (`GroupCoordinator::persist_consumer`), and a heartbeat is answered once
//! what it changed is durable. Like the rest of the coordinator it reads the clock and draws
//! member ids, and knows no Kafka request types.

use super::consumer::{ConsumerError, ConsumerGroup, Heartbeat, HeartbeatResponse, Topics};
use super::coordinator::now_ms;
use super::state::GroupState;
use super::GroupCoordinator;
use tracing::warn;

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat, with the topics that exist now.
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: Heartbeat,
        topics: &Topics,
    ) -> Result<HeartbeatResponse, ConsumerError> {
        let (response, written) = {
            let mut inner = self.lock();
            if inner.shutting_down {
                // Members keep their epoch and retry once the broker is back.
                return Err(ConsumerError::UnknownMemberId);
            }
            if inner.consumer.group(group_id).is_none() {
                if let Some(classic) = inner.groups.group(group_id) {
                    if classic.state() != GroupState::Empty {
                        return Err(ConsumerError::GroupIdNotFound);
                    }
                }
            }
            let new_member_id = uuid::Uuid::new_v4().to_string();
            let response =
                inner
                    .consumer
                    .heartbeat(group_id, request, topics, &new_member_id, now_ms());
            (response, self.persist_consumer(&mut inner, group_id))
        };
        self.wake.notify_one();
        if let Some((partition, end)) = written {
            if let Err(e) = partition.wait_durable(end).await {
                // The state is applied; the member learns of trouble from its next requests.
                warn!(group = %group_id, error = %e, "consumer group state not made durable");
            }
        }
        response
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
