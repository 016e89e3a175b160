//! The leader's side of replication: where each follower's log ends (from its replica
//! Fetches), the high watermark that follows from it, `acks=all` waits, and ISR shrink and
//! expand proposals.
//!
//! A follower's fetch offset is its log end (under fsync-before-ack, its durable end: the
//! fetcher fsyncs before it asks again). The leader's high watermark is the least log end of
//! the in-sync set, itself included (capped through [`Partition::cap_high_watermark`]); it only
//! moves forward. A follower that has not reached the leader's log end for
//! `replica.lag.time.max.ms` is proposed out of the ISR, one that has reached the high
//! watermark is proposed back in; both are compare-and-swap writes of the partition's key, so
//! a proposal made from a stale view (another leader epoch, a controller's change) loses. The
//! ISR used for the high watermark is always the one etcd holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::etcd::{Compare, Op};
use super::model::{self, PartitionRecord};
use super::{now_ms, Cluster, ClusterView};
use crate::log::Partition;

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Its log end, from its last fetch (-1 before its first in this epoch).
    log_end: i64,
    /// When it was last caught up: it fetched at the leader's log end, or at the log end the
    /// leader had when it answered its previous fetch (Kafka's rule: under steady production a
    /// follower never sees the very end).
    caught_up_ms: i64,
    /// The previous fetch: when, and the leader's log end then.
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
}

/// One partition this broker leads.
#[derive(Debug)]
struct Led {
    leader_epoch: i32,
    followers: BTreeMap<i32, Follower>,
}

/// The followers of every partition this broker leads.
#[derive(Default)]
pub(super) struct Followers {
    led: Mutex<HashMap<(String, i32), Led>>,
}

/// Why an `acks=all` write was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRefusal {
    /// The ISR is smaller than `min.insync.replicas` (before the append).
    NotEnoughReplicas,
    /// The ISR shrank below `min.insync.replicas` while the write was replicated.
    NotEnoughReplicasAfterAppend,
    /// This broker stopped leading the partition (or lost its etcd lease).
    NotLeader,
    TimedOut,
}

impl Followers {
    fn with_led<T>(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        replicas: &[i32],
        f: impl FnOnce(&mut Led) -> T,
    ) -> T {
        let mut led = self.led.lock().unwrap_or_else(|e| e.into_inner());
        let entry = led
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Led {
                leader_epoch: -1,
                followers: BTreeMap::new(),
            });
        if entry.leader_epoch != leader_epoch {
            // A new leadership: every follower is given a full lag period from now (as Kafka
            // does), and its log end is unknown until it fetches.
            let now = now_ms();
            entry.leader_epoch = leader_epoch;
            entry.followers = replicas
                .iter()
                .map(|&id| {
                    (
                        id,
                        Follower {
                            log_end: -1,
                            caught_up_ms: now,
                            last_fetch_ms: now,
                            leader_end_at_last_fetch: i64::MAX,
                        },
                    )
                })
                .collect();
        }
        f(entry)
    }

    fn forget_unled(&self, node_id: i32, view: &ClusterView) {
        let mut led = self.led.lock().unwrap_or_else(|e| e.into_inner());
        led.retain(|(topic, index), _| {
            view.partition(topic, *index)
                .is_some_and(|p| p.leader() == node_id)
        });
    }
}

impl Cluster {
    /// The high watermark floor of a partition this broker leads: the least log end of the
    /// other members of its ISR (`i64::MAX` when it is alone in it).
    fn isr_floor(&self, led: &Led, isr: &[i32]) -> i64 {
        isr.iter()
            .filter(|&&id| id != self.node_id)
            .map(|id| led.followers.get(id).map_or(-1, |f| f.log_end))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Caps a partition that this broker now leads at what its ISR is known to have.
    pub(super) fn start_leading(
        &self,
        view: &ClusterView,
        topic: &str,
        index: i32,
        log: &Partition,
    ) {
        let Some(p) = view.partition(topic, index) else {
            return;
        };
        let Some(state) = p.state else { return };
        let floor = self
            .followers
            .with_led(topic, index, state.leader_epoch, p.replicas, |led| {
                self.isr_floor(led, &state.isr)
            });
        // Until every in-sync follower has fetched (floor -1), the high watermark stays.
        log.cap_high_watermark(floor);
    }

    /// A replica Fetch from `replica` at `fetch_offset` for a partition this broker leads (the
    /// caller checked the leader epoch): records it and moves the high watermark.
    pub fn follower_fetched(&self, topic: &str, index: i32, replica: i32, fetch_offset: i64) {
        let view = self.view();
        let Some(p) = view.partition(topic, index) else {
            return;
        };
        let (Some(state), Some(log)) = (p.state, self.log.partition(topic, index)) else {
            return;
        };
        if !p.replicas.contains(&replica) || replica == self.node_id {
            return;
        }
        let leader_end = log.offsets().log_end_offset;
        let floor = self
            .followers
            .with_led(topic, index, state.leader_epoch, p.replicas, |led| {
                let now = now_ms();
                let f = led.followers.entry(replica).or_insert(Follower {
                    log_end: -1,
                    caught_up_ms: now,
                    last_fetch_ms: now,
                    leader_end_at_last_fetch: i64::MAX,
                });
                f.log_end = fetch_offset;
                if fetch_offset >= leader_end {
                    f.caught_up_ms = now;
                } else if fetch_offset >= f.leader_end_at_last_fetch {
                    f.caught_up_ms = f.caught_up_ms.max(f.last_fetch_ms);
                }
                f.last_fetch_ms = now;
                f.leader_end_at_last_fetch = leader_end;
                self.isr_floor(led, &state.isr)
            });
        log.cap_high_watermark(floor);
    }

    /// Whether `topic` has more than one replica (only then is the high watermark the ISR's).
    pub fn is_replicated(&self, topic: &str) -> bool {
        self.view()
            .topics
            .get(topic)
            .is_some_and(|t| t.record.replicas.iter().any(|r| r.len() > 1))
    }

    /// The `min.insync.replicas` of a topic (its override, else the broker's).
    fn min_insync(&self, view: &ClusterView, topic: &str) -> usize {
        view.topics
            .get(topic)
            .and_then(|t| t.record.configs.get("min.insync.replicas"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(self.settings.min_insync_replicas)
    }

    /// Whether an `acks=all` write to a partition may be appended: its ISR is at least
    /// `min.insync.replicas`.
    pub fn check_insync(&self, topic: &str, index: i32) -> Result<(), AckRefusal> {
        let view = self.view();
        let isr = view
            .partition(topic, index)
            .and_then(|p| p.state.map(|s| s.isr.len()))
            .unwrap_or(0);
        if isr < self.min_insync(&view, topic) {
            return Err(AckRefusal::NotEnoughReplicas);
        }
        Ok(())
    }

    /// Waits until the ISR has every offset below `end` of a partition this broker leads (its
    /// high watermark reaches `end`), at most `timeout`.
    pub async fn wait_replicated(
        &self,
        log: &Partition,
        end: i64,
        timeout: Duration,
    ) -> Result<(), AckRefusal> {
        let (topic, index) = (log.topic().to_string(), log.partition_index());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.log.data_arrived();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.check_leader(&topic, index, -1).is_err() {
                return Err(AckRefusal::NotLeader);
            }
            if log.offsets().high_watermark >= end {
                return match self.check_insync(&topic, index) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(AckRefusal::NotEnoughReplicasAfterAppend),
                };
            }
            // The lease may lapse (or the view change) without any append: look again soon.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(AckRefusal::TimedOut);
                    }
                }
            }
        }
    }

    /// Every few hundred milliseconds: recomputes the high watermark of every partition this
    /// broker leads (its ISR may have changed without a fetch) and proposes ISR changes.
    pub(super) async fn isr_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let view = self.view();
            self.followers.forget_unled(self.node_id, &view);
            if self.lease_expired() {
                continue;
            }
            for ((topic, index), state) in &view.partitions {
                let record = &state.record;
                if record.leader != self.node_id {
                    continue;
                }
                let Some(p) = view.partition(topic, *index) else {
                    continue;
                };
                if p.replicas.len() < 2 {
                    continue;
                }
                let Some(log) = self.log.partition(topic, *index) else {
                    continue;
                };
                if log.recorded_leader_epoch() != record.leader_epoch {
                    continue;
                }
                let offsets = log.offsets();
                let lag_ms = self.settings.replica_lag_time_max_ms;
                let (floor, wanted) = self.followers.with_led(
                    topic,
                    *index,
                    record.leader_epoch,
                    p.replicas,
                    |led| {
                        let now = now_ms();
                        let wanted: Vec<i32> = p
                            .replicas
                            .iter()
                            .copied()
                            .filter(|id| {
                                if *id == self.node_id {
                                    return true;
                                }
                                // A follower in controlled shutdown stays out (shutdown.rs).
                                if view.shutting_down.contains(id) {
                                    return false;
                                }
                                let f = led.followers.get(id);
                                let in_sync = record.isr.contains(id);
                                let fresh = f.is_some_and(|f| now - f.caught_up_ms <= lag_ms);
                                if in_sync {
                                    fresh
                                } else {
                                    fresh
                                        && f.is_some_and(|f| {
                                            f.log_end >= offsets.high_watermark && f.log_end >= 0
                                        })
                                }
                            })
                            .collect();
                        (self.isr_floor(led, &record.isr), wanted)
                    },
                );
                log.cap_high_watermark(floor);
                let mut current = record.isr.clone();
                current.sort_unstable();
                let mut next = wanted.clone();
                next.sort_unstable();
                if current != next {
                    self.propose_isr(topic, *index, state.mod_revision, record, wanted)
                        .await;
                }
            }
        }
    }

    /// Writes a new ISR for a partition this broker leads, if its state is still the one read
    /// at `revision`.
    async fn propose_isr(
        &self,
        topic: &str,
        index: i32,
        revision: i64,
        record: &PartitionRecord,
        isr: Vec<i32>,
    ) {
        let next = PartitionRecord {
            isr: isr.clone(),
            ..record.clone()
        };
        let key = model::partition_key(topic, index);
        let written = self
            .etcd
            .txn(
                &[Compare::ModRevision(key.clone(), revision)],
                &[Op::Put {
                    key,
                    value: serde_json::to_vec(&next).expect("a record serializes"),
                    lease: None,
                }],
            )
            .await;
        match written {
            Ok(true) => {
                info!(
                    topic,
                    partition = index,
                    from = ?record.isr,
                    to = ?isr,
                    leader_epoch = record.leader_epoch,
                    "ISR changed"
                );
                self.changed.notify_one();
            }
            Ok(false) => {}
            Err(e) => warn!(topic, partition = index, error = %e, "cannot write the ISR to etcd"),
        }
    }

    /// Whether this broker's etcd lease may have expired (no renewal within its TTL): it then
    /// acts as if it were not live, before etcd says so.
    pub(super) fn lease_expired(&self) -> bool {
        now_ms() >= self.lease_valid_until.load(Ordering::SeqCst)
    }
}
