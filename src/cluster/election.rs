//! Leader elections that do not follow from a failure: the ones an operator asks for with
//! ElectLeaders (KIP-460: PREFERRED makes a partition's first replica its leader again; UNCLEAN
//! gives a leaderless partition a leader even from outside its ISR), and the controller's
//! automatic preferred-leader rebalancing (`auto.leader.rebalance.enable`: every
//! `leader.imbalance.check.interval.seconds`, a broker that leads fewer than
//! `leader.imbalance.per.broker.percentage` percent of the partitions it is the preferred
//! leader of gets them back).
//!
//! Each election is a leader change at the next leader epoch, written as a compare-and-swap
//! on the partition's key (and its topic's), like every other leader change. A preferred
//! election only elects a live, in-sync replica that is not in controlled shutdown, so it
//! never gives up an acknowledged write. The decisions ([`decide`], [`rebalance`]) are pure;
//! the etcd writes are on [`Cluster`]. Knows no Kafka request types: the handler maps
//! [`ElectionRefusal`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::etcd::{Compare, Op};
use super::model::{self, LeaderChange, PartitionRecord};
use super::{Cluster, ClusterError, ClusterView, NO_LEADER};
use crate::config::BrokerConfig;

/// Which election (ElectLeaders' `election_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The first replica leads, if it is live and in sync.
    Preferred,
    /// A partition without a leader gets one: an in-sync replica if one is live, else any
    /// live replica (acknowledged writes may be lost).
    Unclean,
}

/// Why a partition's election did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRefusal {
    UnknownTopicOrPartition,
    /// The partition already has the leader the election would give it.
    ElectionNotNeeded,
    /// The preferred replica is not live, not in sync, or shutting down.
    PreferredLeaderNotAvailable,
    /// No live replica can lead.
    EligibleLeadersNotAvailable,
    /// etcd could not be written, or the state kept changing under the election.
    NotWritten,
}

/// The change an election of `kind` makes to `topic`/`index` in `view`.
pub(super) fn decide(
    view: &ClusterView,
    topic: &str,
    index: i32,
    kind: ElectionType,
) -> Result<LeaderChange, ElectionRefusal> {
    let p = view
        .partition(topic, index)
        .ok_or(ElectionRefusal::UnknownTopicOrPartition)?;
    let Some(state) = view.partitions.get(&(topic.to_string(), index)) else {
        return Err(ElectionRefusal::EligibleLeadersNotAvailable);
    };
    let current = &state.record;
    let eligible = |id: &i32| view.brokers.contains_key(id) && !view.shutting_down.contains(id);
    let record = match kind {
        ElectionType::Preferred => {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ElectionRefusal::EligibleLeadersNotAvailable)?;
            if current.leader == preferred {
                return Err(ElectionRefusal::ElectionNotNeeded);
            }
            if !eligible(&preferred) || !current.isr.contains(&preferred) {
                return Err(ElectionRefusal::PreferredLeaderNotAvailable);
            }
            PartitionRecord {
                leader: preferred,
                leader_epoch: current.leader_epoch + 1,
                isr: current.isr.clone(),
            }
        }
        ElectionType::Unclean => {
            if current.leader != NO_LEADER && view.brokers.contains_key(&current.leader) {
                return Err(ElectionRefusal::ElectionNotNeeded);
            }
            let live_isr: Vec<i32> = current.isr.iter().copied().filter(eligible).collect();
            if let Some(&leader) = live_isr.first() {
                PartitionRecord {
                    leader,
                    leader_epoch: current.leader_epoch + 1,
                    isr: live_isr,
                }
            } else {
                let leader = p
                    .replicas
                    .iter()
                    .copied()
                    .find(eligible)
                    .ok_or(ElectionRefusal::EligibleLeadersNotAvailable)?;
                warn!(
                    topic,
                    partition = index,
                    leader,
                    "unclean leader election asked for: no in-sync replica is live; acknowledged writes may be lost"
                );
                PartitionRecord {
                    leader,
                    leader_epoch: current.leader_epoch + 1,
                    isr: vec![leader],
                }
            }
        }
    };
    Ok(LeaderChange {
        topic: topic.to_string(),
        index,
        expected: Some(state.mod_revision),
        record,
    })
}

/// The preferred-leader elections automatic rebalancing makes in `view`: for each broker whose
/// share of led partitions among those it is the preferred leader of has fallen more than
/// `percentage` percent short, every one of those partitions whose preferred election can run.
pub(super) fn rebalance(view: &ClusterView, percentage: i64) -> Vec<LeaderChange> {
    // Broker → (partitions it is preferred for, those it does not lead).
    let mut preferred: BTreeMap<i32, Vec<(&str, i32, bool)>> = BTreeMap::new();
    for (name, topic) in &view.topics {
        for (index, replicas) in topic.record.replicas.iter().enumerate() {
            let (Some(&first), Ok(index)) = (replicas.first(), i32::try_from(index)) else {
                continue;
            };
            let leads = view
                .partitions
                .get(&(name.clone(), index))
                .is_some_and(|s| s.record.leader == first);
            preferred
                .entry(first)
                .or_default()
                .push((name.as_str(), index, leads));
        }
    }
    let mut changes = Vec::new();
    for partitions in preferred.values() {
        let total = partitions.len() as i64;
        let not_led = partitions.iter().filter(|(_, _, leads)| !leads).count() as i64;
        if total == 0 || not_led * 100 <= percentage * total {
            continue;
        }
        changes.extend(partitions.iter().filter(|(_, _, leads)| !leads).filter_map(
            |(topic, index, _)| decide(view, topic, *index, ElectionType::Preferred).ok(),
        ));
    }
    changes
}

/// `auto.leader.rebalance.enable` and its two settings.
pub(super) struct Rebalancing {
    enabled: bool,
    interval: Duration,
    percentage: i64,
}

impl Rebalancing {
    pub(super) fn from_config(config: &BrokerConfig) -> Rebalancing {
        Rebalancing {
            enabled: config.auto_leader_rebalance_enable(),
            interval: Duration::from_secs(config.leader_imbalance_check_interval_seconds().max(1)),
            percentage: config.leader_imbalance_per_broker_percentage(),
        }
    }
}

impl Cluster {
    /// Runs an election of `kind` on each partition (every partition of the cluster when
    /// `partitions` is `None`; then those that need none are left out of the answer).
    pub async fn elect_leaders(
        &self,
        kind: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Result<(), ElectionRefusal>)> {
        if let Err(e) = self.refresh().await {
            warn!(error = %e, "ElectLeaders: cannot read the cluster's metadata");
        }
        let all = partitions.is_none();
        let partitions = partitions.unwrap_or_else(|| {
            let view = self.view();
            view.topics
                .iter()
                .flat_map(|(name, t)| {
                    (0..t.record.replicas.len() as i32).map(move |i| (name.clone(), i))
                })
                .collect()
        });
        let mut results = Vec::with_capacity(partitions.len());
        for (topic, index) in partitions {
            let result = self.elect_one(&topic, index, kind).await;
            if all && result == Err(ElectionRefusal::ElectionNotNeeded) {
                continue;
            }
            results.push(((topic, index), result));
        }
        if let Err(e) = self.refresh().await {
            warn!(error = %e, "ElectLeaders: cannot read the cluster's metadata");
        }
        results
    }

    /// One election, decided again on a fresh view when another write won the race.
    async fn elect_one(
        &self,
        topic: &str,
        index: i32,
        kind: ElectionType,
    ) -> Result<(), ElectionRefusal> {
        for _ in 0..5 {
            let view = self.view();
            let change = decide(&view, topic, index, kind)?;
            match self
                .write_leader_change(&view, &change, "partition leader elected")
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    if self.refresh().await.is_err() {
                        return Err(ElectionRefusal::NotWritten);
                    }
                }
                Err(e) => {
                    warn!(topic, partition = index, error = %e, "ElectLeaders: cannot write to etcd");
                    return Err(ElectionRefusal::NotWritten);
                }
            }
        }
        Err(ElectionRefusal::NotWritten)
    }

    /// Writes `change` if the partition's state and its topic are still as `view` read them
    /// (the topic must still exist: a state written after a deletion would linger). Used by the
    /// controller and by elections, each logging the change with its own `message`.
    pub(super) async fn write_leader_change(
        &self,
        view: &ClusterView,
        change: &LeaderChange,
        message: &'static str,
    ) -> Result<bool, ClusterError> {
        let Some(topic) = view.topics.get(&change.topic) else {
            return Ok(false);
        };
        let key = model::partition_key(&change.topic, change.index);
        let compare = match change.expected {
            None => Compare::Absent(key.clone()),
            Some(revision) => Compare::ModRevision(key.clone(), revision),
        };
        let written = self
            .etcd
            .txn(
                &[
                    compare,
                    Compare::ModRevision(model::topic_key(&change.topic), topic.mod_revision),
                ],
                &[Op::Put {
                    key,
                    value: serde_json::to_vec(&change.record).expect("a record serializes"),
                    lease: None,
                }],
            )
            .await?;
        if written {
            info!(
                topic = change.topic,
                partition = change.index,
                leader = change.record.leader,
                leader_epoch = change.record.leader_epoch,
                "{message}"
            );
            self.changed.notify_one();
        }
        Ok(written)
    }

    /// As controller, every `leader.imbalance.check.interval.seconds`: gives preferred leaders
    /// their partitions back when their brokers are out of balance.
    pub(super) async fn rebalance_loop(self: Arc<Self>, settings: Rebalancing) {
        if !settings.enabled {
            return;
        }
        loop {
            tokio::time::sleep(settings.interval).await;
            let view = self.view();
            if view.controller != Some(self.node_id) || self.lease_expired() {
                continue;
            }
            for change in rebalance(&view, settings.percentage) {
                if let Err(e) = self
                    .write_leader_change(&view, &change, "partition leader elected")
                    .await
                {
                    warn!(error = %e, "controller: cannot rebalance leaders");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brokers `live`; topic "t" with `replicas` per partition; states (leader, isr).
    fn view(live: &[i32], replicas: &[&[i32]], states: &[(i32, &[i32])]) -> ClusterView {
        let replicas = replicas.iter().map(|r| r.to_vec()).collect();
        let mut v = ClusterView::with_topic(live, replicas);
        for (index, &(leader, isr)) in states.iter().enumerate() {
            let state = PartitionRecord {
                leader,
                leader_epoch: 4,
                isr: isr.to_vec(),
            };
            v.set_state(index as i32, state, 10 + index as i64);
        }
        v
    }

    #[test]
    fn preferred_election_needs_the_first_replica_live_and_in_sync() {
        let v = view(&[1, 2, 3], &[&[1, 2, 3]], &[(2, &[2, 3, 1])]);
        let change = decide(&v, "t", 0, ElectionType::Preferred).unwrap();
        assert_eq!(
            change.record,
            PartitionRecord {
                leader: 1,
                leader_epoch: 5,
                isr: vec![2, 3, 1]
            }
        );
        assert_eq!(change.expected, Some(10));
        let v = view(&[1, 2, 3], &[&[1, 2, 3]], &[(2, &[2, 3])]);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Preferred),
            Err(ElectionRefusal::PreferredLeaderNotAvailable),
            "out of sync"
        );
        let mut v = view(&[1, 2, 3], &[&[1, 2, 3]], &[(2, &[2, 3, 1])]);
        v.shutting_down.insert(1);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Preferred),
            Err(ElectionRefusal::PreferredLeaderNotAvailable),
            "shutting down"
        );
        let v = view(&[1, 2, 3], &[&[1, 2, 3]], &[(1, &[1, 2, 3])]);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Preferred),
            Err(ElectionRefusal::ElectionNotNeeded)
        );
        assert_eq!(
            decide(&v, "t", 1, ElectionType::Preferred),
            Err(ElectionRefusal::UnknownTopicOrPartition)
        );
        assert_eq!(
            decide(&v, "u", 0, ElectionType::Preferred),
            Err(ElectionRefusal::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn unclean_election_only_for_a_partition_without_a_leader() {
        let v = view(&[2], &[&[1, 2, 3]], &[(NO_LEADER, &[1, 3])]);
        let change = decide(&v, "t", 0, ElectionType::Unclean).unwrap();
        assert_eq!(
            change.record,
            PartitionRecord {
                leader: 2,
                leader_epoch: 5,
                isr: vec![2]
            },
            "no in-sync replica is live: a live replica outside the ISR leads"
        );
        let v = view(&[2, 3], &[&[1, 2, 3]], &[(NO_LEADER, &[1, 3])]);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Unclean)
                .unwrap()
                .record
                .leader,
            3,
            "a live in-sync replica comes first"
        );
        let v = view(&[1, 2], &[&[1, 2, 3]], &[(1, &[1])]);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Unclean),
            Err(ElectionRefusal::ElectionNotNeeded)
        );
        let v = view(&[], &[&[1, 2, 3]], &[(NO_LEADER, &[1])]);
        assert_eq!(
            decide(&v, "t", 0, ElectionType::Unclean),
            Err(ElectionRefusal::EligibleLeadersNotAvailable)
        );
    }

    #[test]
    fn rebalancing_returns_partitions_to_a_preferred_leader_past_the_threshold() {
        // Broker 1 is preferred for partitions 0 and 2 but leads neither; 2 and 3 lead theirs.
        let replicas: &[&[i32]] = &[&[1, 2, 3], &[2, 3, 1], &[1, 3, 2], &[3, 1, 2]];
        let states: &[(i32, &[i32])] = &[
            (2, &[1, 2, 3]),
            (2, &[1, 2, 3]),
            (3, &[3, 2]),
            (3, &[1, 2, 3]),
        ];
        let v = view(&[1, 2, 3], replicas, states);
        let changes = rebalance(&v, 10);
        assert_eq!(changes.len(), 1, "partition 2 has broker 1 out of its ISR");
        assert_eq!((changes[0].index, changes[0].record.leader), (0, 1));
        // At 100% a broker is never out of balance.
        assert_eq!(rebalance(&v, 100).len(), 0);
        // Balanced: nothing to do.
        let balanced: &[(i32, &[i32])] = &[
            (1, &[1, 2, 3]),
            (2, &[1, 2, 3]),
            (1, &[1, 2, 3]),
            (3, &[1, 2, 3]),
        ];
        assert!(rebalance(&view(&[1, 2, 3], replicas, balanced), 10).is_empty());
    }
}
