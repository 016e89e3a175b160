//! The server-side assignors of the KIP-848 protocol: `uniform` (Kafka's default) and `range`.
//!
//! Pure functions from the members' subscriptions, the subscribed topics' partition counts and
//! the previous target assignment to a new target assignment. `uniform` spreads every
//! subscribed partition so that members able to share a topic differ by at most one partition,
//! keeping each member's previous partitions where balance allows (fewer revocations). `range`
//! gives each member a contiguous range of every topic it subscribes to, members in id order,
//! the first ones one partition more when the count does not divide.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, TopicId};

/// The assignor used when no member names one.
pub const DEFAULT: &str = "uniform";

/// The assignors this broker offers, by Kafka's names.
pub const NAMES: &[&str] = &["uniform", "range"];

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct AssignorMember<'a> {
    pub member_id: &'a str,
    /// Ids of the subscribed topics that exist.
    pub topics: BTreeSet<TopicId>,
    /// The member's previous target assignment.
    pub previous: &'a Assignment,
}

/// Runs the named assignor (one of [`NAMES`]; anything else is treated as [`DEFAULT`]).
pub fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Balanced and sticky, for any mix of subscriptions.
fn uniform(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    let mut taken: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    // Keep what each member had, where it still exists and is still subscribed.
    for m in members {
        let mut kept = Assignment::new();
        for (topic, ps) in m.previous {
            let Some(&n) = partitions.get(topic) else {
                continue;
            };
            if !m.topics.contains(topic) {
                continue;
            }
            for &p in ps {
                if p < n && taken.insert((*topic, p)) {
                    kept.entry(*topic).or_default().insert(p);
                }
            }
        }
        out.insert(m.member_id.to_string(), kept);
    }
    // Place every free partition with the least loaded member that subscribes to its topic.
    for (&topic, &n) in partitions {
        for p in 0..n {
            if taken.contains(&(topic, p)) {
                continue;
            }
            let best = members
                .iter()
                .filter(|m| m.topics.contains(&topic))
                .min_by_key(|m| (count(&out[m.member_id]), m.member_id));
            if let Some(m) = best {
                out.get_mut(m.member_id)
                    .expect("every member has an entry")
                    .entry(topic)
                    .or_default()
                    .insert(p);
                taken.insert((topic, p));
            }
        }
    }
    // Move partitions from a member with two or more than another that could take them.
    loop {
        let mut moved = false;
        for giver in members {
            for taker in members {
                let (g, t) = (count(&out[giver.member_id]), count(&out[taker.member_id]));
                if g < t + 2 {
                    continue;
                }
                let movable = out[giver.member_id]
                    .iter()
                    .filter(|(topic, _)| taker.topics.contains(topic))
                    .find_map(|(topic, ps)| ps.iter().next_back().map(|&p| (*topic, p)));
                if let Some((topic, p)) = movable {
                    let from = out.get_mut(giver.member_id).expect("member");
                    let ps = from.get_mut(&topic).expect("present");
                    ps.remove(&p);
                    if ps.is_empty() {
                        from.remove(&topic);
                    }
                    out.get_mut(taker.member_id)
                        .expect("member")
                        .entry(topic)
                        .or_default()
                        .insert(p);
                    moved = true;
                }
            }
        }
        if !moved {
            return out;
        }
    }
}

/// Contiguous ranges per topic, members in id order.
fn range(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (&topic, &n) in partitions {
        let mut subscribed: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(&topic))
            .map(|m| m.member_id)
            .collect();
        subscribed.sort_unstable();
        let k = subscribed.len() as i32;
        if k == 0 {
            continue;
        }
        let (each, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, member) in subscribed.iter().enumerate() {
            let len = each + i32::from((i as i32) < extra);
            if len > 0 {
                out.get_mut(*member)
                    .expect("member")
                    .insert(topic, (next..next + len).collect());
            }
            next += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> TopicId {
        uuid::Uuid::from_u128(n)
    }

    fn member<'a>(id: &'a str, topics: &[u128], previous: &'a Assignment) -> AssignorMember<'a> {
        AssignorMember {
            member_id: id,
            topics: topics.iter().map(|&n| t(n)).collect(),
            previous,
        }
    }

    fn every(out: &BTreeMap<String, Assignment>) -> Vec<(TopicId, i32)> {
        let mut all: Vec<(TopicId, i32)> = out
            .values()
            .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn uniform_splits_evenly_and_covers_everything_once() {
        let none = Assignment::new();
        let members = [member("a", &[1, 2], &none), member("b", &[1, 2], &none)];
        let parts = BTreeMap::from([(t(1), 3), (t(2), 2)]);
        let out = assign("uniform", &members, &parts);
        assert_eq!(count(&out["a"]), 3);
        assert_eq!(count(&out["b"]), 2);
        let expected: Vec<(TopicId, i32)> =
            vec![(t(1), 0), (t(1), 1), (t(1), 2), (t(2), 0), (t(2), 1)];
        assert_eq!(every(&out), expected);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let all: Assignment = BTreeMap::from([(t(1), (0..4).collect())]);
        let none = Assignment::new();
        let members = [member("a", &[1], &all), member("b", &[1], &none)];
        let out = assign("uniform", &members, &BTreeMap::from([(t(1), 4)]));
        assert_eq!(count(&out["a"]), 2);
        assert_eq!(count(&out["b"]), 2);
        // a keeps two of its own partitions and only gives up two.
        assert!(out["a"][&t(1)].is_subset(&all[&t(1)]));
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let none = Assignment::new();
        let members = [member("a", &[1], &none), member("b", &[2], &none)];
        let out = assign("uniform", &members, &BTreeMap::from([(t(1), 2), (t(2), 3)]));
        assert_eq!(out["a"], BTreeMap::from([(t(1), BTreeSet::from([0, 1]))]));
        assert_eq!(
            out["b"],
            BTreeMap::from([(t(2), BTreeSet::from([0, 1, 2]))])
        );
    }

    #[test]
    fn uniform_drops_partitions_of_unsubscribed_or_missing_topics() {
        let prev: Assignment = BTreeMap::from([(t(1), BTreeSet::from([0, 5])), (t(9), [0].into())]);
        let members = [member("a", &[1], &prev)];
        let out = assign("uniform", &members, &BTreeMap::from([(t(1), 2)]));
        assert_eq!(out["a"], BTreeMap::from([(t(1), BTreeSet::from([0, 1]))]));
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let none = Assignment::new();
        let members = [member("b", &[1], &none), member("a", &[1], &none)];
        let out = assign("range", &members, &BTreeMap::from([(t(1), 5)]));
        assert_eq!(out["a"][&t(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t(1)], BTreeSet::from([3, 4]));
    }

    #[test]
    fn range_with_more_members_than_partitions_leaves_some_empty() {
        let none = Assignment::new();
        let members = [
            member("a", &[1], &none),
            member("b", &[1], &none),
            member("c", &[1], &none),
        ];
        let out = assign("range", &members, &BTreeMap::from([(t(1), 2)]));
        assert_eq!(out["a"][&t(1)], BTreeSet::from([0]));
        assert_eq!(out["b"][&t(1)], BTreeSet::from([1]));
        assert!(out["c"].is_empty());
    }
}
