//! Coordinators that move with partition leadership (Kafka's `onElection` /
//! `onResignation`): the broker that leads a partition of `__consumer_offsets` coordinates the
//! groups stored in it, and no other broker does.
//!
//! Owns one task that watches which partitions of a coordinator's topic this broker serves as
//! leader (the view says so, its lease is live, and its log has recorded the leader epoch:
//! [`Cluster::check_leader`]) and tells the coordinator when that set changes: elected (at a
//! leader epoch) or resigned. A partition whose leader epoch changes while this broker keeps
//! leading it is resigned then elected again, so the coordinator reloads what the partition
//! holds at the new epoch. It knows nothing of groups or transactions: the coordinator
//! implements [`PartitionCoordinator`].

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Cluster;

/// How often leadership is looked at. Leadership changes arrive with the etcd watch; the
/// view is read here rather than pushed so that `mod.rs` stays as it is.
const POLL: Duration = Duration::from_millis(200);

/// Where a coordinator stands with one partition of its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Elected at this leader epoch; its state is being read.
    Loading(i32),
    /// Coordinated at this leader epoch.
    Loaded(i32),
}

/// A coordinator whose state lives in the partitions of one internal topic.
pub trait PartitionCoordinator: Send + Sync + 'static {
    /// The internal topic whose partitions hold the coordinator's state.
    fn topic(&self) -> &'static str;
    /// This broker now leads `partition` at `leader_epoch`: load its state and coordinate it.
    /// Runs on a blocking thread (it reads the partition's log).
    fn elected(&self, partition: i32, leader_epoch: i32);
    /// This broker no longer leads `partition`: forget its state and refuse its keys.
    fn resigned(&self, partition: i32);
}

/// Starts the task that keeps `coordinator` in step with this broker's leadership of its
/// topic's partitions. The task ends when the coordinator is dropped.
pub fn follow_leadership<C: PartitionCoordinator>(cluster: Arc<Cluster>, coordinator: &Arc<C>) {
    let coordinator = Arc::downgrade(coordinator);
    tokio::spawn(run(cluster, coordinator));
}

async fn run<C: PartitionCoordinator>(cluster: Arc<Cluster>, coordinator: Weak<C>) {
    // Partition → the leader epoch it was elected at.
    let mut led: BTreeMap<i32, i32> = BTreeMap::new();
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let now = serving(&cluster, c.topic());
        for (&partition, &epoch) in &led {
            if now.get(&partition) != Some(&epoch) {
                tracing::info!(
                    topic = c.topic(),
                    partition,
                    leader_epoch = epoch,
                    "resigning as coordinator"
                );
                c.resigned(partition);
            }
        }
        let mut failed = Vec::new();
        for (&partition, &epoch) in &now {
            if led.get(&partition) != Some(&epoch) {
                tracing::info!(
                    topic = c.topic(),
                    partition,
                    leader_epoch = epoch,
                    "elected coordinator: loading"
                );
                let elected = c.clone();
                // A load that panics leaves the partition resigned, to be tried again.
                if tokio::task::spawn_blocking(move || elected.elected(partition, epoch))
                    .await
                    .is_err()
                {
                    c.resigned(partition);
                    failed.push(partition);
                }
            }
        }
        // Leadership that changed during a load shows as a difference on the next pass.
        led = now;
        for partition in failed {
            led.remove(&partition);
        }
        drop(c);
        tokio::time::sleep(POLL).await;
    }
}

/// The partitions of `topic` this broker serves as leader now, with their leader epochs.
fn serving(cluster: &Cluster, topic: &str) -> BTreeMap<i32, i32> {
    let view = cluster.view();
    let Some(t) = view.topics.get(topic) else {
        return BTreeMap::new();
    };
    (0..t.record.replicas.len() as i32)
        .filter(|&index| cluster.check_leader(topic, index, -1).is_ok())
        .filter_map(|index| Some((index, view.partition(topic, index)?.leader_epoch())))
        .collect()
}
