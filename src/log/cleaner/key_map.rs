//! The cleaner's key → offset map: a fixed-size open-addressing table of 128-bit key digests
//! and offsets, like Kafka's `SkimpyOffsetMap` (24 bytes per slot, filled to 90% at most).
//!
//! Its table never grows after creation; the cleaner sizes it (never above
//! `log.cleaner.dedupe.buffer.size`) and, when it is full, [`KeyOffsetMap::put`] refuses new keys
//! and the cleaner either retries with a larger table or ends the pass there.
//! Keys are digested with two SipHash instances under random per-map keys, so a collision needs
//! two 64-bit matches at once (probability ~2⁻¹²⁸ per pair) and cannot be aimed at by a client.
//! Pure: no I/O, knows nothing of batches or segments.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Bytes one slot takes: a 16-byte digest and an 8-byte offset.
pub const BYTES_PER_ENTRY: usize = 24;
/// Share of the slots that may be filled (Kafka's `log.cleaner.io.buffer.load.factor`).
pub const LOAD_FACTOR: f64 = 0.9;

#[derive(Clone, Copy)]
struct Slot {
    hi: u64,
    lo: u64,
    /// -1 marks an empty slot (offsets are never negative).
    offset: i64,
}

const EMPTY: Slot = Slot {
    hi: 0,
    lo: 0,
    offset: -1,
};

/// A bounded map from key digests to the latest offset seen for that key.
pub struct KeyOffsetMap {
    slots: Vec<Slot>,
    entries: usize,
    max_entries: usize,
    hash_hi: RandomState,
    hash_lo: RandomState,
}

impl KeyOffsetMap {
    /// A map using at most `memory_bytes` for its table, sized down to what `expected_keys`
    /// distinct keys need (so a small dirty section does not allocate the whole budget).
    /// Holds at least one key.
    pub fn new(memory_bytes: usize, expected_keys: usize) -> KeyOffsetMap {
        let budget_slots = (memory_bytes / BYTES_PER_ENTRY).max(2);
        let wanted = ((expected_keys as f64 / LOAD_FACTOR).ceil() as usize).saturating_add(1);
        let slots = budget_slots.min(wanted.max(16)).max(2);
        let max_entries = ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1);
        KeyOffsetMap {
            slots: vec![EMPTY; slots],
            entries: 0,
            max_entries,
            hash_hi: RandomState::new(),
            hash_lo: RandomState::new(),
        }
    }

    /// A map of exactly `slots` slots (at least 2).
    pub fn with_slots(slots: usize) -> KeyOffsetMap {
        let slots = slots.max(2);
        let max_entries = ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1);
        KeyOffsetMap {
            slots: vec![EMPTY; slots],
            entries: 0,
            max_entries,
            hash_hi: RandomState::new(),
            hash_lo: RandomState::new(),
        }
    }

    /// Slots that fit in `memory_bytes`.
    pub fn slots_for(memory_bytes: usize) -> usize {
        (memory_bytes / BYTES_PER_ENTRY).max(2)
    }

    /// Slot count.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The largest number of distinct keys a map of `memory_bytes` holds.
    pub fn capacity_for(memory_bytes: usize) -> usize {
        let slots = (memory_bytes / BYTES_PER_ENTRY).max(2);
        ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1)
    }

    /// Distinct keys stored.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Distinct keys this map can hold.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Bytes used by the table.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * BYTES_PER_ENTRY
    }

    fn digest(&self, key: &[u8]) -> (u64, u64) {
        (self.hash_hi.hash_one(key), self.hash_lo.hash_one(key))
    }

    /// Index of the slot holding `digest`, or of the empty slot where it would go.
    fn find(&self, (hi, lo): (u64, u64)) -> usize {
        let n = self.slots.len();
        let mut i = (hi % n as u64) as usize;
        loop {
            let s = &self.slots[i];
            if s.offset < 0 || (s.hi == hi && s.lo == lo) {
                return i;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, storing nothing, when the key is
    /// new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        debug_assert!(offset >= 0, "offsets are never negative");
        let d = self.digest(key);
        let i = self.find(d);
        let slot = &mut self.slots[i];
        if slot.offset < 0 {
            if self.entries >= self.max_entries {
                return false;
            }
            self.entries += 1;
            slot.hi = d.0;
            slot.lo = d.1;
        }
        slot.offset = offset;
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let s = self.slots[self.find(self.digest(key))];
        (s.offset >= 0).then_some(s.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_wins_and_absent_keys_are_none() {
        let mut m = KeyOffsetMap::new(1 << 20, 100);
        assert!(m.put(b"a", 1));
        assert!(m.put(b"b", 2));
        assert!(m.put(b"a", 7));
        assert_eq!(m.get(b"a"), Some(7));
        assert_eq!(m.get(b"b"), Some(2));
        assert_eq!(m.get(b"c"), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_a_full_map_refuses_new_keys_only() {
        let budget = 1024;
        let mut m = KeyOffsetMap::new(budget, 1_000_000);
        assert!(m.memory_bytes() <= budget);
        let cap = m.capacity();
        assert_eq!(cap, KeyOffsetMap::capacity_for(budget));
        for i in 0..cap {
            assert!(m.put(format!("key-{i}").as_bytes(), i as i64));
        }
        assert!(!m.put(b"one too many", 99));
        assert_eq!(m.get(b"one too many"), None);
        // Known keys still update when full.
        assert!(m.put(b"key-0", 500));
        assert_eq!(m.get(b"key-0"), Some(500));
        for i in 1..cap {
            assert_eq!(m.get(format!("key-{i}").as_bytes()), Some(i as i64));
        }
    }

    #[test]
    fn small_expected_key_counts_allocate_little() {
        let m = KeyOffsetMap::new(128 << 20, 10);
        assert!(m.memory_bytes() < 4096);
        assert!(m.capacity() >= 10);
    }
}
