//! Controlled shutdown (Kafka's `controlled.shutdown.enable`): before a broker stops, the
//! leadership of every partition it leads moves to another live in-sync replica, and it leaves
//! the ISR of the partitions it follows, so a rolling restart never leaves a partition without
//! a leader and `acks=all` never waits on a replica that is about to go.
//!
//! The broker asks by writing `/cairn/shutting_down/<node.id>`, bound to its lease (so the
//! request ends with the broker, however it ends). The controller makes the moves
//! ([`with_moves`]) as it makes every leader change: one compare-and-swap per partition key, a
//! leader change at the next leader epoch. The broker waits until its view shows nothing left
//! that can move ([`pending`]), at most `cairn.controlled.shutdown.timeout.ms`, then stops. A
//! partition with no other live in-sync replica keeps its leader until the broker's lease is
//! revoked (then it has none, as without controlled shutdown). The decisions are pure; the I/O
//! is [`Cluster::controlled_shutdown`].

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::etcd::Op;
use super::model::{self, LeaderChange, PartitionRecord};
use super::{Cluster, ClusterView, NO_LEADER};

/// `planned` (the controller's other changes) plus the moves controlled shutdown asks for on
/// the partitions `planned` leaves alone.
pub(super) fn with_moves(view: &ClusterView, mut planned: Vec<LeaderChange>) -> Vec<LeaderChange> {
    if view.shutting_down.is_empty() {
        return planned;
    }
    let touched: BTreeSet<(String, i32)> =
        planned.iter().map(|c| (c.topic.clone(), c.index)).collect();
    for ((topic, index), state) in &view.partitions {
        if touched.contains(&(topic.clone(), *index)) {
            continue;
        }
        let Some(p) = view.partition(topic, *index) else {
            continue;
        };
        if let Some(record) = moved(view, p.replicas, &state.record) {
            planned.push(LeaderChange {
                topic: topic.clone(),
                index: *index,
                expected: Some(state.mod_revision),
                record,
            });
        }
    }
    planned
}

/// A partition's state without the brokers in controlled shutdown as leader or ISR members, or
/// `None` when nothing changes (or nothing can: no other live in-sync replica to lead).
fn moved(
    view: &ClusterView,
    replicas: &[i32],
    record: &PartitionRecord,
) -> Option<PartitionRecord> {
    if record.leader == NO_LEADER {
        return None;
    }
    let staying = |id: &i32| view.brokers.contains_key(id) && !view.shutting_down.contains(id);
    if view.shutting_down.contains(&record.leader) {
        let isr: Vec<i32> = record.isr.iter().copied().filter(staying).collect();
        // The preferred order: the first replica (as assigned) among the in-sync ones.
        let leader = replicas.iter().copied().find(|id| isr.contains(id))?;
        return Some(PartitionRecord {
            leader,
            leader_epoch: record.leader_epoch + 1,
            isr,
        });
    }
    let isr: Vec<i32> = record
        .isr
        .iter()
        .copied()
        .filter(|id| !view.shutting_down.contains(id))
        .collect();
    if isr.len() == record.isr.len() || !isr.contains(&record.leader) {
        return None;
    }
    Some(PartitionRecord {
        isr,
        ..record.clone()
    })
}

/// How many partitions still have to move before broker `node_id` may stop (it leads them with
/// another live in-sync replica to take over, or is in their ISR beside a leader that stays);
/// `None` until the view shows its request.
pub(super) fn pending(view: &ClusterView, node_id: i32) -> Option<usize> {
    if !view.shutting_down.contains(&node_id) {
        return None;
    }
    let left = view
        .partitions
        .iter()
        .filter(|(_, s)| s.record.leader == node_id || s.record.isr.contains(&node_id))
        .filter(|((topic, index), s)| {
            view.partition(topic, *index)
                .is_some_and(|p| moved(view, p.replicas, &s.record).is_some())
        })
        .count();
    Some(left)
}

impl Cluster {
    /// Asks the controller to move this broker's leaderships away and waits (at most
    /// `timeout`) until they have moved. Returns early, with a warning, when etcd cannot be
    /// written: the broker then stops as it would without controlled shutdown.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let led_before = self.led_count(&self.view());
        let put = Op::Put {
            key: format!("{}{}", model::SHUTTING_DOWN, self.node_id),
            value: b"{}".to_vec(),
            lease: Some(self.lease.load(Ordering::SeqCst)),
        };
        if let Err(e) = self.etcd.txn(&[], &[put]).await {
            warn!(error = %e, "controlled shutdown: cannot write the request to etcd; stopping without it");
            return;
        }
        info!(
            node_id = self.node_id,
            leads = led_before,
            "controlled shutdown: asked the controller to move this broker's leaderships"
        );
        loop {
            self.changed.notify_one();
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "controlled shutdown: cannot read the cluster's metadata");
            }
            let view = self.view();
            let left = pending(&view, self.node_id);
            if left == Some(0) {
                info!(
                    node_id = self.node_id,
                    moved = led_before.saturating_sub(self.led_count(&view)),
                    still_leads = self.led_count(&view),
                    "controlled shutdown complete"
                );
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    node_id = self.node_id,
                    partitions_left = left.unwrap_or(usize::MAX),
                    timeout_ms = timeout.as_millis() as u64,
                    "controlled shutdown timed out (cairn.controlled.shutdown.timeout.ms); stopping anyway"
                );
                return;
            }
            let wait = Duration::from_millis(100)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(wait).await;
        }
    }

    /// How many partitions this broker leads in `view`.
    fn led_count(&self, view: &ClusterView) -> usize {
        view.partitions
            .values()
            .filter(|s| s.record.leader == self.node_id)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brokers `live` (those in `stopping` in controlled shutdown), one partition of replicas
    /// [1, 2, 3] led by `leader` with `isr`.
    fn view(live: &[i32], stopping: &[i32], leader: i32, isr: &[i32]) -> ClusterView {
        let mut v = ClusterView::with_topic(live, vec![vec![1, 2, 3]]);
        v.shutting_down = stopping.iter().copied().collect();
        let state = PartitionRecord {
            leader,
            leader_epoch: 5,
            isr: isr.to_vec(),
        };
        v.set_state(0, state, 9);
        v
    }

    #[test]
    fn leadership_moves_to_the_first_other_in_sync_replica_at_the_next_epoch() {
        let v = view(&[1, 2, 3], &[1], 1, &[3, 1, 2]);
        assert_eq!(pending(&v, 1), Some(1));
        let changes = with_moves(&v, Vec::new());
        assert_eq!(
            changes,
            vec![LeaderChange {
                topic: "t".into(),
                index: 0,
                expected: Some(9),
                record: PartitionRecord {
                    leader: 2,
                    leader_epoch: 6,
                    isr: vec![3, 2]
                },
            }],
            "replica order decides (2 before 3), and the stopping broker leaves the ISR"
        );
        // Once the change is in etcd, nothing is left to move.
        let after = view(&[1, 2, 3], &[1], 2, &[3, 2]);
        assert_eq!(pending(&after, 1), Some(0));
        assert!(with_moves(&after, Vec::new()).is_empty());
    }

    #[test]
    fn a_stopping_follower_leaves_the_isr_at_the_same_epoch() {
        let v = view(&[1, 2, 3], &[3], 1, &[1, 2, 3]);
        assert_eq!(pending(&v, 3), Some(1));
        let changes = with_moves(&v, Vec::new());
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].record,
            PartitionRecord {
                leader: 1,
                leader_epoch: 5,
                isr: vec![1, 2]
            }
        );
    }

    #[test]
    fn without_another_live_in_sync_replica_the_leader_stays() {
        // 2 is live but out of sync, 3 is in sync but dead.
        let v = view(&[1, 2], &[1], 1, &[1, 3]);
        assert!(with_moves(&v, Vec::new()).is_empty());
        assert_eq!(
            pending(&v, 1),
            Some(0),
            "nothing can move: the broker may stop"
        );
        // Another broker also stopping is no candidate either.
        let v = view(&[1, 2, 3], &[1, 2], 1, &[1, 2]);
        assert!(with_moves(&v, Vec::new()).is_empty());
    }

    #[test]
    fn the_request_counts_only_once_the_view_shows_it() {
        assert_eq!(pending(&view(&[1, 2, 3], &[], 1, &[1, 2, 3]), 1), None);
        assert!(with_moves(&view(&[1, 2, 3], &[], 1, &[1, 2, 3]), Vec::new()).is_empty());
    }

    #[test]
    fn the_controllers_own_changes_come_first() {
        let v = view(&[1, 2, 3], &[1], 1, &[1, 2, 3]);
        let planned = vec![LeaderChange {
            topic: "t".into(),
            index: 0,
            expected: Some(9),
            record: PartitionRecord {
                leader: 1,
                leader_epoch: 5,
                isr: vec![1, 2],
            },
        }];
        assert_eq!(with_moves(&v, planned.clone()), planned);
    }
}
