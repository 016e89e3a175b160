//! Per-topic counters found by name without a lock or an allocation: an insert-only
//! open-addressing table of [`OnceLock`] slots. Reading a slot is one atomic load; a topic's
//! first record claims a free slot once (racing claimers of one slot: one wins, the other probes
//! on). Slots are never freed, so a re-created topic continues its counters; the scrape shows
//! only topics that exist. Past [`SLOTS`] distinct topic names, further topics are not counted.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// Distinct topic names counted at most.
pub(super) const SLOTS: usize = 8192;
/// Slots probed before a name is given up on (keeps a miss in a full table cheap).
const MAX_PROBES: usize = 512;

/// What one topic's clients moved.
#[derive(Debug)]
pub(super) struct TopicCounters {
    pub(super) name: Box<str>,
    pub(super) bytes_in: AtomicU64,
    pub(super) messages_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
}

pub(super) struct TopicTable {
    slots: Box<[OnceLock<Box<TopicCounters>>]>,
}

impl Default for TopicTable {
    fn default() -> Self {
        TopicTable {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl TopicTable {
    /// `topic`'s counters, created on first use; `None` once the table is full.
    pub(super) fn get(&self, topic: &str) -> Option<&TopicCounters> {
        // A fixed hasher: the same name always starts at the same slot.
        let start = BuildHasherDefault::<DefaultHasher>::default().hash_one(topic) as usize;
        for i in 0..MAX_PROBES {
            let slot = &self.slots[(start.wrapping_add(i)) % SLOTS];
            let counters = match slot.get() {
                Some(c) => c,
                None => slot.get_or_init(|| {
                    Box::new(TopicCounters {
                        name: topic.into(),
                        bytes_in: AtomicU64::new(0),
                        messages_in: AtomicU64::new(0),
                        bytes_out: AtomicU64::new(0),
                    })
                }),
            };
            if &*counters.name == topic {
                return Some(counters);
            }
        }
        None
    }

    /// Every topic counted so far.
    pub(super) fn iter(&self) -> impl Iterator<Item = &TopicCounters> {
        self.slots.iter().filter_map(|s| s.get().map(|b| &**b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn each_name_has_its_own_counters() {
        let table = TopicTable::default();
        for i in 0..1000 {
            table
                .get(&format!("t{i}"))
                .expect("room")
                .bytes_in
                .fetch_add(i, Ordering::Relaxed);
        }
        for i in 0..1000 {
            let c = table.get(&format!("t{i}")).expect("found");
            assert_eq!(c.bytes_in.load(Ordering::Relaxed), i);
        }
        assert_eq!(table.iter().count(), 1000);
    }
}
