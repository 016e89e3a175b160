//! What Cairn keeps in etcd: the key layout, the records (JSON), the cluster view built from
//! one read of every key, replica placement, and the controller's leader decisions. Pure: no
//! I/O, no clock, so tests drive it with plain values.
//!
//! Key layout (ARCHITECTURE.md has the table with who writes each key):
//! - `/cairn/cluster_id`: the cluster's id, written once by the first broker.
//! - `/cairn/brokers/<node.id>`: a live broker's registration, bound to its lease.
//! - `/cairn/controller`: the controller's node id, bound to its lease.
//! - `/cairn/topics/<name>`: a topic: id, configs and each partition's replica list.
//! - `/cairn/partitions/<name>/<index>`: a partition's leader, leader epoch and ISR (the
//!   controller elects leaders; the leader shrinks and expands the ISR).
//! - `/cairn/shutting_down/<node.id>`: a broker in controlled shutdown, bound to its lease.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub const ROOT: &str = "/cairn/";
pub const CLUSTER_ID_KEY: &str = "/cairn/cluster_id";
pub const BROKERS: &str = "/cairn/brokers/";
pub const CONTROLLER_KEY: &str = "/cairn/controller";
pub const TOPICS: &str = "/cairn/topics/";
pub const PARTITIONS: &str = "/cairn/partitions/";
pub const SHUTTING_DOWN: &str = "/cairn/shutting_down/";

/// Leader id meaning "no leader" (Kafka's -1).
pub const NO_LEADER: i32 = -1;

pub fn broker_key(node_id: i32) -> String {
    format!("{BROKERS}{node_id}")
}

pub fn topic_key(name: &str) -> String {
    format!("{TOPICS}{name}")
}

/// The prefix of a topic's partition-state keys (topic names never contain '/').
pub fn partitions_prefix(name: &str) -> String {
    format!("{PARTITIONS}{name}/")
}

pub fn partition_key(name: &str, index: i32) -> String {
    format!("{PARTITIONS}{name}/{index}")
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// `/cairn/brokers/<id>`: written by that broker, under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub node_id: i32,
    pub rack: Option<String>,
    pub listeners: Vec<ListenerRecord>,
    /// The data directory's `directory.id`: a broker restarted on the same directory replaces
    /// its own registration instead of being refused as a duplicate.
    pub directory_id: String,
}

/// `/cairn/controller`: written by the elected controller, under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub node_id: i32,
}

/// `/cairn/topics/<name>`: written by the broker that creates, grows or deletes the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    #[serde(with = "uuid_text")]
    pub topic_id: uuid::Uuid,
    pub internal: bool,
    /// Topic-level config overrides (Kafka names), validated before they were written.
    pub configs: BTreeMap<String, String>,
    /// Replica broker ids of each partition, the preferred leader first.
    pub replicas: Vec<Vec<i32>>,
}

/// A UUID as its hyphenated text.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &uuid::Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<uuid::Uuid, D::Error> {
        let text = String::deserialize(d)?;
        uuid::Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// `/cairn/partitions/<name>/<index>`: written by the controller (leaders, and the ISR when a
/// member's lease is gone) and by the partition's leader (ISR shrink and expand), every write a
/// compare-and-swap on the key's revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// A record with the etcd revision it was last written at (the compare-and-swap token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub record: T,
    pub mod_revision: i64,
}

/// Everything under `/cairn/`, as of one revision.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub revision: i64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRecord>,
    pub controller: Option<i32>,
    pub topics: BTreeMap<String, Versioned<TopicRecord>>,
    pub partitions: BTreeMap<(String, i32), Versioned<PartitionRecord>>,
    /// Brokers in controlled shutdown: leadership moves away from them, and they leave ISRs.
    pub shutting_down: BTreeSet<i32>,
}

impl ClusterView {
    /// Builds the view from `(key, value, mod_revision)` triples; keys that do not parse are
    /// skipped with a warning (a newer Cairn may have written them).
    pub fn from_keys<'a>(
        revision: i64,
        keys: impl IntoIterator<Item = (&'a str, &'a [u8], i64)>,
    ) -> ClusterView {
        let mut view = ClusterView {
            revision,
            ..ClusterView::default()
        };
        for (key, value, mod_revision) in keys {
            let parsed = if key == CLUSTER_ID_KEY {
                view.cluster_id = Some(String::from_utf8_lossy(value).into_owned());
                Ok(())
            } else if key == CONTROLLER_KEY {
                serde_json::from_slice::<ControllerRecord>(value)
                    .map(|c| view.controller = Some(c.node_id))
            } else if key.starts_with(BROKERS) {
                serde_json::from_slice::<BrokerRecord>(value).map(|b| {
                    view.brokers.insert(b.node_id, b);
                })
            } else if let Some(name) = key.strip_prefix(TOPICS) {
                serde_json::from_slice::<TopicRecord>(value).map(|record| {
                    view.topics.insert(
                        name.to_string(),
                        Versioned {
                            record,
                            mod_revision,
                        },
                    );
                })
            } else if let Some(id) = key.strip_prefix(SHUTTING_DOWN) {
                if let Ok(id) = id.parse::<i32>() {
                    view.shutting_down.insert(id);
                }
                Ok(())
            } else if let Some(rest) = key.strip_prefix(PARTITIONS) {
                let Some((name, index)) = rest
                    .rsplit_once('/')
                    .and_then(|(n, i)| Some((n, i.parse::<i32>().ok()?)))
                else {
                    tracing::warn!(key, "skipping an etcd key Cairn does not know");
                    continue;
                };
                serde_json::from_slice::<PartitionRecord>(value).map(|record| {
                    view.partitions.insert(
                        (name.to_string(), index),
                        Versioned {
                            record,
                            mod_revision,
                        },
                    );
                })
            } else {
                Ok(())
            };
            if let Err(e) = parsed {
                tracing::warn!(key, error = %e, "skipping an etcd key that does not parse");
            }
        }
        view
    }

    /// A partition's state: its replicas (from the topic) and leader state (when the
    /// controller has written it).
    pub fn partition(&self, topic: &str, index: i32) -> Option<PartitionView<'_>> {
        let t = self.topics.get(topic)?;
        let replicas = t.record.replicas.get(usize::try_from(index).ok()?)?;
        Some(PartitionView {
            replicas,
            state: self
                .partitions
                .get(&(topic.to_string(), index))
                .map(|v| &v.record),
        })
    }
}

/// One partition as the view knows it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionView<'a> {
    pub replicas: &'a [i32],
    pub state: Option<&'a PartitionRecord>,
}

impl PartitionView<'_> {
    pub fn leader(&self) -> i32 {
        self.state.map_or(NO_LEADER, |s| s.leader)
    }
    pub fn leader_epoch(&self) -> i32 {
        self.state.map_or(-1, |s| s.leader_epoch)
    }
}

/// Places `partitions` new partitions, `replication_factor` replicas each, on `brokers`
/// (id → rack), starting after the partitions a topic already has (`first`). Leaders go round
/// robin over the brokers ordered so that consecutive ones alternate racks; followers are the
/// next brokers in that order, so with racks a partition's replicas span racks when it can.
pub fn place(
    brokers: &BTreeMap<i32, Option<String>>,
    first: usize,
    partitions: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    let order = rack_alternating(brokers);
    if order.is_empty() {
        return Vec::new();
    }
    (first..first + partitions)
        .map(|p| {
            (0..replication_factor.min(order.len()))
                .map(|r| order[(p + r) % order.len()])
                .collect()
        })
        .collect()
}

/// Broker ids ordered so that racks alternate (Kafka's rack-aware order): one broker from each
/// rack in turn. Brokers without a rack count as one rack of their own each.
fn rack_alternating(brokers: &BTreeMap<i32, Option<String>>) -> Vec<i32> {
    let mut racks: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (&id, rack) in brokers {
        let rack = rack.clone().unwrap_or_else(|| format!("\u{0}{id}"));
        racks.entry(rack).or_default().push(id);
    }
    let mut order = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while order.len() < brokers.len() {
        for ids in racks.values() {
            if let Some(&id) = ids.get(round) {
                order.push(id);
            }
        }
        round += 1;
    }
    order
}

/// One change the controller wants to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    pub topic: String,
    pub index: i32,
    /// The revision the state was read at; `None` when it does not exist yet.
    pub expected: Option<i64>,
    pub record: PartitionRecord,
}

/// Whether unclean leader election is enabled for a topic: its `unclean.leader.election.enable`
/// override, else `default` (the broker's).
pub fn unclean_election(topic: &TopicRecord, default: bool) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .map_or(default, |v| v.trim().eq_ignore_ascii_case("true"))
}

/// The controller's decisions for `view`: every partition gets a leader state (its replicas
/// are its first ISR, the first live one leads). A live leader keeps leading; the ISR loses its
/// members whose lease is gone (never its last). A partition whose leader is gone gets the first
/// live member of its ISR as leader, at the next leader epoch, with the ISR cut to its live
/// members; when none is live, a live replica outside the ISR only if unclean election is
/// enabled (`unclean_default`, or the topic's override), else no leader (the ISR is kept, so the
/// replicas that have every acknowledged write are still known when one returns).
pub fn leader_changes(view: &ClusterView, unclean_default: bool) -> Vec<LeaderChange> {
    let live: BTreeSet<i32> = view.brokers.keys().copied().collect();
    let mut changes = Vec::new();
    for (topic, t) in &view.topics {
        let unclean = unclean_election(&t.record, unclean_default);
        for (index, replicas) in t.record.replicas.iter().enumerate() {
            let index = index as i32;
            let current = view.partitions.get(&(topic.clone(), index));
            let Some(c) = current else {
                let leader = replicas
                    .iter()
                    .copied()
                    .find(|id| live.contains(id))
                    .unwrap_or(NO_LEADER);
                changes.push(LeaderChange {
                    topic: topic.clone(),
                    index,
                    expected: None,
                    record: PartitionRecord {
                        leader,
                        leader_epoch: 0,
                        isr: replicas.clone(),
                    },
                });
                continue;
            };
            let live_isr: Vec<i32> = c
                .record
                .isr
                .iter()
                .copied()
                .filter(|id| live.contains(id))
                .collect();
            let record = if c.record.leader != NO_LEADER && live.contains(&c.record.leader) {
                if live_isr.len() == c.record.isr.len() || live_isr.is_empty() {
                    continue;
                }
                PartitionRecord {
                    isr: live_isr,
                    ..c.record.clone()
                }
            } else if let Some(&leader) = live_isr.first() {
                PartitionRecord {
                    leader,
                    leader_epoch: c.record.leader_epoch + 1,
                    isr: live_isr,
                }
            } else if let Some(leader) = replicas
                .iter()
                .copied()
                .find(|id| unclean && live.contains(id))
            {
                tracing::warn!(
                    topic,
                    partition = index,
                    leader,
                    "unclean leader election: no in-sync replica is live; acknowledged writes may be lost"
                );
                PartitionRecord {
                    leader,
                    leader_epoch: c.record.leader_epoch + 1,
                    isr: vec![leader],
                }
            } else if c.record.leader != NO_LEADER {
                PartitionRecord {
                    leader: NO_LEADER,
                    leader_epoch: c.record.leader_epoch + 1,
                    isr: c.record.isr.clone(),
                }
            } else {
                continue;
            };
            changes.push(LeaderChange {
                topic: topic.clone(),
                index,
                expected: Some(c.mod_revision),
                record,
            });
        }
    }
    changes
}

/// Views for the controller's and elections' unit tests.
#[cfg(test)]
impl ClusterView {
    /// Brokers `live` (no listeners) and topic "t" with `replicas` per partition; no partition
    /// state yet.
    pub(crate) fn with_topic(live: &[i32], replicas: Vec<Vec<i32>>) -> ClusterView {
        let mut v = ClusterView::default();
        for &id in live {
            let broker = BrokerRecord {
                node_id: id,
                rack: None,
                listeners: vec![],
                directory_id: String::new(),
            };
            v.brokers.insert(id, broker);
        }
        let topic = TopicRecord {
            topic_id: uuid::Uuid::nil(),
            internal: false,
            configs: BTreeMap::new(),
            replicas,
        };
        let topic = Versioned {
            record: topic,
            mod_revision: 1,
        };
        v.topics.insert("t".into(), topic);
        v
    }

    /// Sets the state of partition `index` of "t", written at etcd revision `mod_revision`.
    pub(crate) fn set_state(&mut self, index: i32, state: PartitionRecord, mod_revision: i64) {
        let state = Versioned {
            record: state,
            mod_revision,
        };
        self.partitions.insert(("t".into(), index), state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(list: &[(i32, Option<&str>)]) -> BTreeMap<i32, Option<String>> {
        list.iter()
            .map(|&(id, rack)| (id, rack.map(str::to_string)))
            .collect()
    }

    #[test]
    fn leaders_spread_round_robin_over_brokers() {
        let placed = place(&brokers(&[(1, None), (2, None), (3, None)]), 0, 6, 1);
        assert_eq!(
            placed,
            vec![vec![1], vec![2], vec![3], vec![1], vec![2], vec![3]]
        );
        // New partitions continue the rotation.
        let more = place(&brokers(&[(1, None), (2, None), (3, None)]), 6, 2, 1);
        assert_eq!(more, vec![vec![1], vec![2]]);
    }

    #[test]
    fn racks_alternate_in_placement() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
        ]);
        assert_eq!(rack_alternating(&b), vec![1, 3, 2, 4]);
        let placed = place(&b, 0, 4, 2);
        for replicas in &placed {
            let racks: BTreeSet<_> = replicas.iter().map(|id| b[id].clone()).collect();
            assert_eq!(racks.len(), 2, "{replicas:?} span both racks");
        }
    }

    #[test]
    fn no_brokers_places_nothing() {
        assert!(place(&BTreeMap::new(), 0, 3, 1).is_empty());
    }

    fn view(live: &[i32], states: &[(i32, i32, i64)]) -> ClusterView {
        let mut v = ClusterView::with_topic(live, vec![vec![1], vec![2]]);
        for &(index, leader, revision) in states {
            let state = PartitionRecord {
                leader,
                leader_epoch: 3,
                isr: vec![index + 1],
            };
            v.set_state(index, state, revision);
        }
        v
    }

    fn leader_changes_of(view: &ClusterView) -> Vec<LeaderChange> {
        leader_changes(view, false)
    }

    #[test]
    fn controller_creates_missing_states_with_live_leaders() {
        let changes = leader_changes_of(&view(&[1], &[]));
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].record.leader, 1);
        assert_eq!(changes[0].expected, None);
        assert_eq!(changes[1].record.leader, NO_LEADER, "broker 2 is not live");
        assert_eq!(
            changes[1].record.isr,
            vec![2],
            "the ISR keeps the offline replica"
        );
    }

    #[test]
    fn controller_moves_leadership_with_liveness_and_bumps_the_epoch() {
        // Broker 2 died: partition 1 loses its leader; broker 1's partition is untouched.
        let changes = leader_changes_of(&view(&[1], &[(0, 1, 10), (1, 2, 11)]));
        assert_eq!(
            changes,
            vec![LeaderChange {
                topic: "t".into(),
                index: 1,
                expected: Some(11),
                record: PartitionRecord {
                    leader: NO_LEADER,
                    leader_epoch: 4,
                    isr: vec![2]
                },
            }]
        );
        // Broker 2 came back: it leads again, at a new epoch.
        let changes = leader_changes_of(&view(&[1, 2], &[(0, 1, 10), (1, NO_LEADER, 12)]));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].record.leader, 2);
        assert_eq!(changes[0].record.leader_epoch, 4);
        assert!(leader_changes_of(&view(&[1, 2], &[(0, 1, 10), (1, 2, 12)])).is_empty());
    }

    /// A three-replica partition led by `leader` with `isr`, brokers `live` alive.
    fn replicated(live: &[i32], leader: i32, isr: &[i32], unclean: Option<bool>) -> ClusterView {
        let mut v = view(live, &[]);
        let t = v.topics.get_mut("t").unwrap();
        t.record.replicas = vec![vec![1, 2, 3]];
        if let Some(u) = unclean {
            t.record
                .configs
                .insert("unclean.leader.election.enable".into(), u.to_string());
        }
        v.partitions.insert(
            ("t".into(), 0),
            Versioned {
                record: PartitionRecord {
                    leader,
                    leader_epoch: 7,
                    isr: isr.to_vec(),
                },
                mod_revision: 20,
            },
        );
        v
    }

    #[test]
    fn a_dead_leader_is_replaced_from_the_isr_at_the_next_epoch() {
        let changes = leader_changes_of(&replicated(&[2, 3], 1, &[1, 3], None));
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].record,
            PartitionRecord {
                leader: 3,
                leader_epoch: 8,
                isr: vec![3]
            },
            "broker 2 is live but not in sync: only 3 may lead"
        );
        assert_eq!(changes[0].expected, Some(20));
        // A live leader stays; a dead follower leaves the ISR at the same epoch.
        let changes = leader_changes_of(&replicated(&[1, 2], 1, &[1, 2, 3], None));
        assert_eq!(changes[0].record.leader, 1);
        assert_eq!(changes[0].record.leader_epoch, 7);
        assert_eq!(changes[0].record.isr, vec![1, 2]);
        assert!(leader_changes_of(&replicated(&[1, 2, 3], 1, &[1, 2], None)).is_empty());
    }

    #[test]
    fn without_a_live_in_sync_replica_only_unclean_election_picks_a_leader() {
        let changes = leader_changes_of(&replicated(&[2], 1, &[1, 3], None));
        assert_eq!(changes[0].record.leader, NO_LEADER);
        assert_eq!(changes[0].record.isr, vec![1, 3], "the ISR is kept");
        let changes = leader_changes_of(&replicated(&[2], 1, &[1, 3], Some(true)));
        assert_eq!(changes[0].record.leader, 2);
        assert_eq!(changes[0].record.isr, vec![2]);
        assert_eq!(changes[0].record.leader_epoch, 8);
        assert_eq!(
            leader_changes(&replicated(&[2], 1, &[1, 3], None), true)[0]
                .record
                .leader,
            2
        );
        assert_eq!(
            leader_changes(&replicated(&[2], 1, &[1, 3], Some(false)), true)[0]
                .record
                .leader,
            NO_LEADER,
            "the topic's override wins"
        );
    }

    #[test]
    fn view_parses_the_key_layout() {
        let broker = serde_json::to_vec(&BrokerRecord {
            node_id: 2,
            rack: Some("r".into()),
            listeners: vec![],
            directory_id: "d".into(),
        })
        .unwrap();
        let state = serde_json::to_vec(&PartitionRecord {
            leader: 2,
            leader_epoch: 1,
            isr: vec![2],
        })
        .unwrap();
        let v = ClusterView::from_keys(
            9,
            [
                ("/cairn/cluster_id", &b"abc"[..], 1),
                ("/cairn/brokers/2", &broker[..], 2),
                ("/cairn/controller", &b"{\"node_id\":2}"[..], 3),
                ("/cairn/partitions/a.b/7", &state[..], 4),
                ("/cairn/partitions/bad", &state[..], 5),
            ],
        );
        assert_eq!(v.cluster_id.as_deref(), Some("abc"));
        assert_eq!(v.brokers[&2].rack.as_deref(), Some("r"));
        assert_eq!(v.controller, Some(2));
        assert_eq!(v.partitions[&("a.b".to_string(), 7)].mod_revision, 4);
        assert_eq!(v.partitions.len(), 1);
    }
}
