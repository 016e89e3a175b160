//! Snapshot plans: which records of a snapshot are certainly the latest of their key, decided for
//! a window of offsets at once so the snapshot's scan emits them without a lookup each. Before
//! plans, every record was looked up in the key file of every newer segment (a positioned read
//! per file per record), which made a snapshot of many segments far slower than a consumer.
//!
//! A plan is one merged pass, in hash order, over the key files of the sealed segments wholly
//! below the snapshot's bound (each read sequentially once, its CRC checked), those of the
//! segments only the object-storage tier holds included (all of them from the tier's start, with
//! no gap up to the local log start, or none: a tiered part costs what a local one does), and over the hashes
//! of the unindexed rest below the bound (the tail: the segment straddling the bound and the
//! active segment's part below it, read once into a sorted vector). For each hash, the highest
//! offset holding it below the bound is the only record with that hash that can be the latest of
//! its key: when it lies in the window, its bit is set. A set bit proves the record at that offset
//! is the latest of its key (a newer record of the same key would carry the same hash); an unset
//! bit proves nothing (a collision, or a superseded record), and the snapshot asks the key index as
//! before, which compares keys. Likewise a tail record whose offset is its hash's highest in the
//! tail is the latest of its key.
//!
//! Plans stay true while the cleaner and producers run: below the bound, records are only ever
//! removed (compaction, retention), never added, so a record that was its hash's newest when the
//! files were read is still its key's newest when the scan reaches it. The files read are one
//! layout's, each checked against the segment identity it was opened for, so they cover the
//! bound without gaps; a file replaced meanwhile (a cleaner swap rebuilt it) fails its check and
//! the plan is dropped for a while (the scan falls back to lookups, correct but slower).
//!
//! Memory: the bit window holds at most `cairn.key.index.memory.bytes` (eight offsets a byte; a
//! longer log takes several windows, each another pass over the files), the tail at most as much
//! (16 bytes a hash; a larger tail leaves the snapshot without a plan), and each file read takes a
//! 16 KiB buffer. Nothing grows with the key count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::file::{key_hash, KeyFile};
use super::scan::scan;
use super::{sealed_file, KeyIndex, KeysError, Layout};
use crate::log::partition::Partition;

/// Bytes one tail entry costs (hash, offset).
const TAIL_ENTRY_BYTES: usize = 16;

/// What the snapshot can take as certain for a range of its offsets.
pub(crate) struct Plan {
    /// `bits` covers `[lo, hi)` of the indexed segments.
    lo: i64,
    hi: i64,
    bits: Vec<u64>,
    /// The tail `[tail_from, bound)`: per hash, its highest offset there, sorted by hash.
    tail_from: i64,
    bound: i64,
    tail: Vec<(u64, i64)>,
}

/// Why no plan was made.
pub(crate) enum NoPlan {
    /// A file changed or vanished under the pass: worth trying again later.
    Moved,
    /// The tail does not fit the memory bound: no plan for this snapshot.
    TooLarge,
}

impl Plan {
    /// Whether the plan speaks for `offset`.
    pub(crate) fn covers(&self, offset: i64) -> bool {
        (self.lo..self.hi).contains(&offset) || (self.tail_from..self.bound).contains(&offset)
    }

    /// True when the record at `offset` with `key` is certainly the latest of its key below the
    /// bound; false when the plan cannot tell (ask the key index).
    pub(crate) fn certain(&self, key: &[u8], offset: i64) -> bool {
        if (self.lo..self.hi).contains(&offset) {
            let i = (offset - self.lo) as usize;
            return self.bits[i / 64] & (1 << (i % 64)) != 0;
        }
        if (self.tail_from..self.bound).contains(&offset) {
            let h = key_hash(key);
            return self
                .tail
                .binary_search_by_key(&h, |e| e.0)
                .is_ok_and(|i| self.tail[i].1 == offset);
        }
        false
    }
}

/// The plan for the snapshot of `partition` below `bound`, for offsets from `from` on.
pub(crate) fn plan(
    index: &KeyIndex,
    partition: &Arc<Partition>,
    bound: i64,
    from: i64,
) -> Result<Result<Plan, NoPlan>, KeysError> {
    let budget = index.memory_bytes;
    let layout = Layout::of(partition)?;
    let local_start = layout.offsets.log_start_offset;
    let mut lo = from.max(local_start);
    let mut files = Vec::new();
    let mut indexed_end = lo;
    // Below the local log start, the tier's segments: all of them with their key files, or the
    // plan starts at the local log start (the snapshot asks the key index for those records).
    if from < local_start {
        if let Some((start, remote)) = index.remote_files(partition, local_start, bound)? {
            lo = from.max(start);
            files = remote;
            indexed_end = local_start;
        }
    }
    // The sealed segments from `lo` on that lie wholly below the bound and have a key file, up
    // to the first that has none; never the active segment (it grows).
    {
        let keys = index.keys_of(partition);
        let mut keys = keys.lock().expect("partition key index lock");
        let sealed = layout.segments.len().saturating_sub(1);
        for (seg, end) in &layout.segments[..sealed] {
            if *end <= lo {
                continue;
            }
            if *end > bound {
                break;
            }
            match sealed_file(&mut keys.sealed, partition, seg, *end, bound)? {
                Some(f) => {
                    files.push(f);
                    indexed_end = *end;
                }
                None => break,
            }
        }
    }
    let mut tail = Vec::new();
    let mut too_large = false;
    let limit = budget / TAIL_ENTRY_BYTES;
    scan(partition, indexed_end, bound, |r| {
        if let Some(k) = &r.key {
            if tail.len() >= limit {
                too_large = true;
                return ControlFlow::Break(());
            }
            tail.push((key_hash(k), r.offset));
        }
        ControlFlow::Continue(())
    })?;
    if too_large {
        return Ok(Err(NoPlan::TooLarge));
    }
    tail.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    tail.dedup_by_key(|e| e.0);
    tail.shrink_to_fit();
    let hi = indexed_end.min(lo.saturating_add((budget as i64).saturating_mul(8)));
    let Some(bits) = newest_per_hash(&files, &tail, lo, hi.max(lo)) else {
        return Ok(Err(NoPlan::Moved));
    };
    Ok(Ok(Plan {
        lo,
        hi: hi.max(lo),
        bits,
        tail_from: indexed_end,
        bound,
        tail,
    }))
}

/// Merges `files` in hash order and sets, for each hash whose highest offset (over the files,
/// and not in `tail`) lies in `[lo, hi)`, that offset's bit. `None` when a file could not be read
/// whole or no longer describes its segment.
fn newest_per_hash(files: &[KeyFile], tail: &[(u64, i64)], lo: i64, hi: i64) -> Option<Vec<u64>> {
    let mut bits = vec![0u64; ((hi - lo) as usize).div_ceil(64)];
    let mut readers = Vec::with_capacity(files.len());
    let mut heap = BinaryHeap::with_capacity(files.len());
    for f in files {
        let mut r = f
            .entries()
            .map_err(|e| tracing::debug!(path = %f.path.display(), error = %e, "key file moved"))
            .ok()?;
        if let Some((h, o)) = r.read_next().ok()? {
            heap.push(Reverse((h, o, readers.len())));
        }
        readers.push(r);
    }
    let mut t = 0;
    let mut advance = Vec::with_capacity(files.len());
    while let Some(Reverse((h, mut newest, i))) = heap.pop() {
        advance.clear();
        advance.push(i);
        while let Some(&Reverse((h2, o2, j))) = heap.peek() {
            if h2 != h {
                break;
            }
            heap.pop();
            newest = newest.max(o2);
            advance.push(j);
        }
        for &j in &advance {
            if let Some((h, o)) = readers[j].read_next().ok()? {
                heap.push(Reverse((h, o, j)));
            }
        }
        while t < tail.len() && tail[t].0 < h {
            t += 1;
        }
        let in_tail = t < tail.len() && tail[t].0 == h;
        if !in_tail && (lo..hi).contains(&newest) {
            let b = (newest - lo) as usize;
            bits[b / 64] |= 1 << (b % 64);
        }
    }
    // Every file read to its end and its CRC checked.
    for r in readers {
        if !r.finish().ok()? {
            return None;
        }
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::file::Identity;

    fn id(base: i64, end: i64) -> Identity {
        Identity {
            base_offset: base,
            end_offset: end,
            size: 1,
            inode: 1,
            mtime_ns: 1,
        }
    }

    fn set(bits: &[u64], lo: i64) -> Vec<i64> {
        (0..bits.len() * 64)
            .filter(|i| bits[i / 64] & (1 << (i % 64)) != 0)
            .map(|i| lo + i as i64)
            .collect()
    }

    #[test]
    fn only_each_hashs_newest_offset_outside_the_tail_is_certain() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyFile::write(
            &dir.path().join("a.keys"),
            id(0, 10),
            vec![(1, 0), (2, 1), (3, 2), (4, 3), (1, 4)],
        )
        .unwrap();
        let b = KeyFile::write(
            &dir.path().join("b.keys"),
            id(10, 20),
            vec![(2, 11), (5, 12), (6, 13)],
        )
        .unwrap();
        // Hash 3 is newer in the tail; 1 is newest at 4 (its own file), 2 at 11.
        let tail = vec![(3, 25), (7, 26)];
        let bits = newest_per_hash(&[a.clone(), b.clone()], &tail, 0, 20).unwrap();
        assert_eq!(set(&bits, 0), vec![3, 4, 11, 12, 13]);
        // A window sees only its own offsets.
        let bits = newest_per_hash(&[a.clone(), b.clone()], &tail, 10, 12).unwrap();
        assert_eq!(set(&bits, 10), vec![11]);
        // A file rebuilt for another version of its segment, or damaged, makes no plan.
        KeyFile::write(&a.path, id(0, 9), vec![(1, 0)]).unwrap();
        assert!(newest_per_hash(&[a.clone(), b.clone()], &tail, 0, 20).is_none());
        let a = KeyFile::write(&a.path, id(0, 10), vec![(1, 0), (2, 1)]).unwrap();
        let mut bytes = std::fs::read(&b.path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 1;
        std::fs::write(&b.path, bytes).unwrap();
        assert!(newest_per_hash(&[a, b], &tail, 0, 20).is_none());
    }

    #[test]
    fn a_plan_speaks_for_its_window_and_its_tail_only() {
        let plan = Plan {
            lo: 100,
            hi: 164,
            bits: vec![1 << 5],
            tail_from: 200,
            bound: 210,
            tail: vec![(key_hash(b"k"), 204)],
        };
        assert!(plan.certain(b"x", 105));
        assert!(!plan.certain(b"x", 106));
        assert!(plan.certain(b"k", 204));
        assert!(!plan.certain(b"k", 203));
        assert!(!plan.certain(b"other", 204));
        assert!(!plan.covers(170) && !plan.covers(210) && plan.covers(100) && plan.covers(209));
    }
}
