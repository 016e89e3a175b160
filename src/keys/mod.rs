//! Compacted topics as a key-value store: the key index, and the lookups and snapshots built on
//! it (issue 17). Owns `cairn-key-index/` in the data directory, a cache of the log that can be
//! deleted at any time. Reads the log only through [`Partition`]'s public read path,
//! [`Partition::segment_layout`] and [`Partition::read_batch_into`], and a sealed segment's log
//! file by the path the layout gives, read-only, checked to be the file a key file was built
//! from ([`placed`]); the log engine knows nothing of it, and it knows nothing of
//! HTTP or Kafka requests (`src/http/keys.rs` maps its answers and errors to HTTP).
//!
//! Per partition, key → offset of its latest record is answered newest segment first:
//! - the active segment from a small in-memory map (key hash → offset), caught up lazily to the
//!   last stable offset at each lookup and bounded by `cairn.key.index.memory.bytes` (past the
//!   bound, the rest of the active segment is searched linearly);
//! - each sealed segment from its immutable key file ([`file`]), built on first use by reading
//!   the segment, rebuilt when the segment changes (cleaner swap, repair, truncation);
//! - a segment that straddles the bound (a snapshot's `as_of`, or an unflushed roll) from a
//!   temporary map of its part below the bound, or linearly.
//!
//! Only committed records count: every bound is at most the last stable offset (below it every
//! transaction is decided), and reads skip the batches of aborted transactions, so neither the
//! map nor a key file ever holds an aborted record; a key whose newest record was aborted is
//! answered by its previous committed one, found in the same or an older segment.
//!
//! Every candidate offset is checked by reading the record and comparing the key, so a hash
//! collision or a record the cleaner removed costs a slower path, never a wrong answer; a lookup
//! that saw the segment layout change under it starts again (see ARCHITECTURE.md).

pub mod builder;
pub mod file;
mod placed;
mod plan;
pub mod record;
mod remote;
mod scan;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use file::{key_hash, Identity, KeyFile, Place};
pub use record::Record;
use scan::{latest_in, record_at, scan};

use crate::config::LogConfig;
use crate::log::partition::{Partition, SegmentInfo};
use crate::log::segment::segment_file;
use crate::log::{LogError, PartitionOffsets};
use crate::tier::manifest::RemoteSegment;
use crate::tier::read::RemoteLog;

/// Directory of key files inside the data directory.
pub const KEY_INDEX_DIR: &str = "cairn-key-index";
/// Bytes one in-memory entry of the active segment's map is charged (hash, offset, table slack).
const ACTIVE_ENTRY_BYTES: usize = 32;
/// How many times a lookup starts again when the segment layout changes under it.
const ATTEMPTS: u32 = 5;

/// The key index's errors.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("key index I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("the log's segments changed under {0} lookups in a row (cleaner swaps); retry")]
    Busy(u32),
    #[error("cannot read the object-storage tier: {0}")]
    Tier(String),
}

/// True when a topic's partitions are indexed: `cleanup.policy` has `compact`, or
/// `cairn.key.index.enable=true`.
pub fn indexed(config: &LogConfig) -> bool {
    config.cleanup_policy.compact || config.key_index_enable
}

/// The latest record for a key below a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// The record, read and its key compared.
    Record(Record),
    /// The offset the caller already holds the record of (a snapshot's `known` offset).
    Known(i64),
}

/// The active segment's in-memory part.
#[derive(Default)]
struct Active {
    base_offset: i64,
    /// Records below this are in `map` (or, once `full`, the rest is searched linearly).
    next: i64,
    map: HashMap<u64, i64>,
    full: bool,
}

/// A segment's part below a bound, indexed for one snapshot.
pub(crate) struct Overlay {
    base_offset: i64,
    bound: i64,
    map: HashMap<u64, i64>,
}

#[derive(Default)]
struct PartitionKeys {
    sealed: BTreeMap<i64, KeyFile>,
    active: Active,
    remote: remote::RemoteKeys,
}

/// Every indexed partition's key index.
pub struct KeyIndex {
    memory_bytes: usize,
    /// Per partition, the one it indexes (a topic deleted and created again is another) and
    /// its index.
    #[allow(clippy::type_complexity)]
    partitions: Mutex<HashMap<(String, i32), (Weak<Partition>, Arc<Mutex<PartitionKeys>>)>>,
    /// The object-storage tier, when there is one: segments only it holds are indexed too.
    tiered: Option<remote::Tiered>,
}

/// The layout facts a search needs: segments with their end offsets.
struct Layout {
    segments: Vec<(SegmentInfo, i64)>,
    offsets: PartitionOffsets,
}

impl Layout {
    fn of(partition: &Partition) -> Result<Layout, KeysError> {
        let (segs, offsets) = partition.segment_layout()?;
        let ends: Vec<i64> = segs
            .iter()
            .skip(1)
            .map(|s| s.base_offset)
            .chain(std::iter::once(offsets.log_end_offset))
            .collect();
        Ok(Layout {
            segments: segs.into_iter().zip(ends).collect(),
            offsets,
        })
    }

    /// Sealed segments unchanged (the active one may grow).
    fn same_sealed(&self, other: &Layout) -> bool {
        let n = self.segments.len();
        n == other.segments.len()
            && self.segments[..n.saturating_sub(1)] == other.segments[..n.saturating_sub(1)]
            && self.segments.last().map(|s| s.0.base_offset)
                == other.segments.last().map(|s| s.0.base_offset)
    }
}

impl KeyIndex {
    /// A key index whose active-segment maps hold at most `memory_bytes` per partition.
    pub fn new(memory_bytes: usize) -> KeyIndex {
        KeyIndex {
            memory_bytes,
            partitions: Mutex::new(HashMap::new()),
            tiered: None,
        }
    }

    /// Also answers from the segments only the tier holds, read through `remote`; their key
    /// files take at most `disk_bytes` of local disk.
    pub fn with_tier(mut self, remote: Arc<RemoteLog>, disk_bytes: u64) -> KeyIndex {
        self.tiered = Some(remote::Tiered::new(remote, disk_bytes));
        self
    }

    /// The tier's state for the layout check of a lookup.
    fn stamp(&self, partition: &Partition) -> remote::Stamp {
        self.tiered.as_ref().and_then(|t| t.stamp(partition))
    }

    fn keys_of(&self, partition: &Arc<Partition>) -> Arc<Mutex<PartitionKeys>> {
        let mut all = self.partitions.lock().expect("key index map lock");
        let id = (partition.topic().to_string(), partition.partition_index());
        match all.get(&id) {
            Some((owner, k)) if owner.as_ptr() == Arc::as_ptr(partition) => k.clone(),
            _ => {
                let k = Arc::new(Mutex::new(PartitionKeys::default()));
                all.insert(id, (Arc::downgrade(partition), k.clone()));
                k
            }
        }
    }

    /// The latest committed record of `key` below the last stable offset at the time of the call
    /// (the high watermark when no transaction is open; a tombstone has `value: None`), or `None`
    /// when the partition holds no such record. Records of aborted transactions are skipped, so
    /// a key whose newest record was aborted answers its previous committed record.
    pub fn lookup(
        &self,
        partition: &Arc<Partition>,
        key: &[u8],
    ) -> Result<Option<Record>, KeysError> {
        for _ in 0..ATTEMPTS {
            let stamp = self.stamp(partition);
            let layout = Layout::of(partition)?;
            let bound = layout.offsets.last_stable_offset;
            let found = self.search(partition, &layout, key, bound, None, None)?;
            if Layout::of(partition)?.same_sealed(&layout) && self.stamp(partition) == stamp {
                return Ok(found.map(|l| match l {
                    Latest::Record(r) => r,
                    Latest::Known(_) => unreachable!("no known offset was given"),
                }));
            }
        }
        Err(KeysError::Busy(ATTEMPTS))
    }

    /// Whether the record at `offset` with `key` is the latest for its key below `bound`.
    /// Used by snapshots; `overlay` indexes the segment straddling `bound` and is rebuilt here
    /// when the layout moved.
    pub(crate) fn is_latest(
        &self,
        partition: &Arc<Partition>,
        key: &[u8],
        offset: i64,
        bound: i64,
        overlay: &mut Option<Overlay>,
    ) -> Result<bool, KeysError> {
        for _ in 0..ATTEMPTS {
            let stamp = self.stamp(partition);
            let layout = Layout::of(partition)?;
            let straddling = layout
                .segments
                .iter()
                .find(|(s, end)| s.base_offset < bound && bound < *end)
                .map(|(s, _)| s.base_offset);
            match straddling {
                Some(base) if overlay.as_ref().is_none_or(|o| o.base_offset != base) => {
                    *overlay = Some(build_overlay(partition, base, bound)?);
                }
                _ => {}
            }
            let found = self.search(
                partition,
                &layout,
                key,
                bound,
                Some(offset),
                overlay.as_ref(),
            )?;
            if Layout::of(partition)?.same_sealed(&layout) && self.stamp(partition) == stamp {
                return Ok(match found {
                    Some(Latest::Known(o)) => o == offset,
                    Some(Latest::Record(r)) => r.offset == offset,
                    None => false,
                });
            }
        }
        Err(KeysError::Busy(ATTEMPTS))
    }

    /// Newest segment first: the latest record of `key` below `bound`.
    fn search(
        &self,
        partition: &Arc<Partition>,
        layout: &Layout,
        key: &[u8],
        bound: i64,
        known: Option<i64>,
        overlay: Option<&Overlay>,
    ) -> Result<Option<Latest>, KeysError> {
        let hash = key_hash(key);
        let shared = self.keys_of(partition);
        let mut keys = shared.lock().expect("partition key index lock");
        let start = layout.offsets.log_start_offset;
        let n = layout.segments.len();
        let check = |candidate: Option<i64>| -> Result<Option<Latest>, KeysError> {
            let Some(c) = candidate.filter(|&c| c < bound) else {
                return Ok(None);
            };
            if known == Some(c) {
                return Ok(Some(Latest::Known(c)));
            }
            Ok(record_at(partition, c)?
                .filter(|r| r.key.as_deref() == Some(key))
                .map(Latest::Record))
        };
        for (i, (seg, end)) in layout.segments.iter().enumerate().rev() {
            let base = seg.base_offset;
            if base >= bound || *end <= start {
                continue;
            }
            let from = base.max(start);
            let overlay = overlay.filter(|o| o.base_offset == base && o.bound == bound);
            let a = &keys.active;
            // The active segment's map serves any bound it has not passed (it is caught up to
            // the bound); an older bound (a snapshot's) takes the overlay or a linear search.
            let map_serves = a.base_offset != base || a.next <= bound;
            let candidate = if i + 1 == n && overlay.is_none() && map_serves {
                let tail = self.catch_up(&mut keys.active, partition, base, bound)?;
                if let Some(tail_from) = tail {
                    if let Some(r) = latest_in(partition, tail_from, bound, key)? {
                        return Ok(Some(Latest::Record(r)));
                    }
                }
                let a = &keys.active;
                match check(a.map.get(&hash).copied())? {
                    Some(l) => Some(l),
                    None if a.map.contains_key(&hash) => {
                        latest_in(partition, from, a.next, key)?.map(Latest::Record)
                    }
                    None => None,
                }
            } else if bound < *end {
                // Straddling the bound: the overlay when it fits, else a linear search.
                match overlay {
                    Some(o) => match check(o.map.get(&hash).copied())? {
                        Some(l) => Some(l),
                        None if o.map.contains_key(&hash) => {
                            latest_in(partition, from, bound, key)?.map(Latest::Record)
                        }
                        None => None,
                    },
                    None => latest_in(partition, from, bound, key)?.map(Latest::Record),
                }
            } else {
                let file = sealed_file(&mut keys.sealed, partition, seg, *end, bound)?;
                // `Some(entry)`: the file's answer. `None`: no usable file, or one deleted from
                // under us (by hand, or the sweep of a topic deleted meanwhile): forgotten, and
                // the segment is read instead.
                let answer = match &file {
                    Some(f) => match f.find_placed(hash) {
                        Ok(entry) => Some(entry),
                        Err(e) => {
                            tracing::debug!(path = %f.path.display(), error = %e, "key file unreadable");
                            keys.sealed.remove(&base);
                            None
                        }
                    },
                    None => None,
                };
                match (answer, &file) {
                    (Some(None), _) => None,
                    // Below the log start: every record of the key here is deleted.
                    (Some(Some((c, _))), _) if c < from => None,
                    (Some(Some((c, place))), Some(f)) => {
                        // The record alone, by its place; else (the file changed, a failed
                        // CRC) through the log.
                        let placed = match place.filter(|_| c < bound && known != Some(c)) {
                            Some(p) => placed::record_placed(&seg.log_path, &f.identity, p, c),
                            None => None,
                        };
                        let hit = match placed {
                            Some(r) => (r.key.as_deref() == Some(key)).then_some(Latest::Record(r)),
                            None => check(Some(c))?,
                        };
                        match hit {
                            Some(l) => Some(l),
                            // A collision, or a record gone from under the file: read the
                            // segment.
                            None => latest_in(partition, from, *end, key)?.map(Latest::Record),
                        }
                    }
                    _ => latest_in(partition, from, *end, key)?.map(Latest::Record),
                }
            };
            if let Some(l) = candidate {
                return Ok(Some(l));
            }
        }
        // Not held while the tier is read (a key file built from the bucket takes long).
        drop(keys);
        self.search_remote(partition, &shared, layout, key, bound, known)
    }

    /// The key file of the remote segment `seg`, held or loaded or built; built without
    /// holding the partition's index (`keys`), so lookups of the partition go on meanwhile.
    fn remote_file(
        &self,
        tier: &remote::Tiered,
        keys: &Mutex<PartitionKeys>,
        partition: &Partition,
        view: &remote::View,
        seg: &RemoteSegment,
        bound: i64,
    ) -> Result<Option<KeyFile>, KeysError> {
        let held = {
            let mut k = keys.lock().expect("partition key index lock");
            tier.cached(&mut k.remote, partition, view, seg)
        };
        if held.is_some() {
            return Ok(held);
        }
        let Some(file) = tier.load_or_build(partition, seg, bound)? else {
            return Ok(None);
        };
        let mut k = keys.lock().expect("partition key index lock");
        tier.remember(&mut k.remote, seg, &file);
        Ok(Some(file))
    }

    /// For a snapshot plan: the start of what only the tier holds of `partition` below
    /// `local_start`, and the key files of every remote segment from there on, when each one
    /// has a file and together they cover `[start, local_start)` without a gap; else `None`.
    pub(crate) fn remote_files(
        &self,
        partition: &Arc<Partition>,
        local_start: i64,
        bound: i64,
    ) -> Result<Option<(i64, Vec<KeyFile>)>, KeysError> {
        let Some(tier) = &self.tiered else {
            return Ok(None);
        };
        let Some(view) = tier.view(partition, local_start)? else {
            return Ok(None);
        };
        let keys = self.keys_of(partition);
        let mut files = Vec::new();
        let mut covered = view.start;
        let segments: Vec<_> = view.segments().cloned().collect();
        for seg in &segments {
            if seg.base_offset > covered {
                return Ok(None);
            }
            match self.remote_file(tier, &keys, partition, &view, seg, bound)? {
                Some(f) => files.push(f),
                None => return Ok(None),
            }
            covered = covered.max(seg.end_offset);
        }
        Ok((covered >= local_start).then_some((view.start, files)))
    }

    /// Newest remote segment first: the latest record of `key` below `bound` among the offsets
    /// only the tier holds (below the local log start of `layout`).
    fn search_remote(
        &self,
        partition: &Partition,
        keys: &Mutex<PartitionKeys>,
        layout: &Layout,
        key: &[u8],
        bound: i64,
        known: Option<i64>,
    ) -> Result<Option<Latest>, KeysError> {
        let Some(tier) = &self.tiered else {
            return Ok(None);
        };
        let Some(view) = tier.view(partition, layout.offsets.log_start_offset)? else {
            return Ok(None);
        };
        let hash = key_hash(key);
        let linear = |from: i64, to: i64, seg| -> Result<Option<Latest>, KeysError> {
            let mut found = None;
            tier.records(partition, seg, from, to, |r| {
                if r.key.as_deref() == Some(key) {
                    found = Some(r);
                }
                ControlFlow::Continue(())
            })?;
            Ok(found.map(|r| match known == Some(r.offset) {
                true => Latest::Known(r.offset),
                false => Latest::Record(r),
            }))
        };
        let segments: Vec<_> = view.segments().cloned().collect();
        for seg in segments.iter().rev() {
            let (from, to) = view.range(seg);
            let to = to.min(bound);
            if from >= to {
                continue;
            }
            let file = self.remote_file(tier, keys, partition, &view, seg, bound)?;
            let answer = match &file {
                Some(f) => match f.find(hash) {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        tracing::debug!(path = %f.path.display(), error = %e, "remote key file unreadable");
                        let mut k = keys.lock().expect("partition key index lock");
                        tier.drop_file(&mut k.remote, seg.base_offset);
                        None
                    }
                },
                None => None,
            };
            let candidate = match answer {
                Some(None) => None,
                // Below the tier's start: the key's records here are all deleted.
                Some(Some(c)) if c < from => None,
                Some(Some(c)) if c < to => {
                    let hit = match known == Some(c) {
                        true => Some(Latest::Known(c)),
                        false => tier
                            .record_at(partition, c)?
                            .filter(|r| r.key.as_deref() == Some(key))
                            .map(Latest::Record),
                    };
                    match hit {
                        Some(l) => Some(l),
                        // A collision, or a record gone from under the file.
                        None => linear(from, to, seg)?,
                    }
                }
                // The file's newest lies in the local part (already searched: a collision) or
                // at the bound: an older record may still hold the key.
                Some(Some(_)) | None => linear(from, to, seg)?,
            };
            if candidate.is_some() {
                return Ok(candidate);
            }
        }
        Ok(None)
    }

    /// Indexes the active segment up to `bound` (never past the last stable offset, so only
    /// committed records enter the map). Returns where the unindexed tail starts when
    /// the memory bound stopped the map short of `bound`.
    fn catch_up(
        &self,
        active: &mut Active,
        partition: &Partition,
        base: i64,
        bound: i64,
    ) -> Result<Option<i64>, KeysError> {
        if active.base_offset != base || active.next > bound || active.next < base {
            *active = Active {
                base_offset: base,
                next: base,
                ..Active::default()
            };
        }
        if !active.full && active.next < bound {
            let limit = (self.memory_bytes / ACTIVE_ENTRY_BYTES).max(1);
            let mut reached = active.next;
            let (map, full) = (&mut active.map, &mut active.full);
            scan(partition, active.next, bound, |r| {
                if let Some(k) = &r.key {
                    let h = key_hash(k);
                    if map.len() >= limit && !map.contains_key(&h) {
                        *full = true;
                        return ControlFlow::Break(());
                    }
                    map.insert(h, r.offset);
                }
                reached = r.offset + 1;
                ControlFlow::Continue(())
            })?;
            active.next = if active.full { reached } else { bound };
        }
        Ok(active.full.then_some(active.next))
    }
}

/// The key file of a sealed segment `[seg.base_offset, end)`, built when missing or stale.
/// `None` when it cannot be built now (the segment is not yet wholly below `bound`, the last
/// stable offset or an older snapshot bound, below which every transaction is decided: a file
/// never indexes a record whose transaction may still abort).
fn sealed_file(
    sealed: &mut BTreeMap<i64, KeyFile>,
    partition: &Partition,
    seg: &SegmentInfo,
    end: i64,
    bound: i64,
) -> Result<Option<KeyFile>, KeysError> {
    if let Some(f) = cached(sealed, seg, end) {
        return Ok(Some(f));
    }
    sealed.remove(&seg.base_offset);
    let file = load_or_build(partition, seg, end, bound)?;
    if let Some(f) = &file {
        remember(sealed, f.clone());
    }
    Ok(file)
}

/// The checked file held for the segment, if it still describes it.
fn cached(sealed: &BTreeMap<i64, KeyFile>, seg: &SegmentInfo, end: i64) -> Option<KeyFile> {
    sealed
        .get(&seg.base_offset)
        .filter(|f| f.identity.end_offset == end && f.identity.size == seg.size)
        .cloned()
}

/// Holds `file` for its segment; files of segments merged into it by the cleaner go with them.
fn remember(sealed: &mut BTreeMap<i64, KeyFile>, file: KeyFile) {
    let (base, end) = (file.identity.base_offset, file.identity.end_offset);
    let stale: Vec<i64> = sealed.range(base + 1..end).map(|(b, _)| *b).collect();
    for b in stale {
        if let Some(f) = sealed.remove(&b) {
            let _ = KeyFile::remove(&f.path);
        }
    }
    sealed.insert(base, file);
}

/// The segment's key file from disk when it is there and describes the segment, else built by
/// reading the segment (see [`sealed_file`] for `None`). Touches no in-memory state, so the
/// background builder runs it without holding the partition's index.
fn load_or_build(
    partition: &Partition,
    seg: &SegmentInfo,
    end: i64,
    bound: i64,
) -> Result<Option<KeyFile>, KeysError> {
    let base = seg.base_offset;
    if end > bound {
        return Ok(None);
    }
    let Ok(id) = Identity::of(&seg.log_path, base, end) else {
        // Swapped away under us: the caller's layout check starts the lookup again.
        return Ok(None);
    };
    if id.size != seg.size {
        return Ok(None);
    }
    let path = key_file_path(partition, base);
    if let Some(f) = KeyFile::open(&path, id) {
        return Ok(Some(f));
    }
    // From the segment file itself, with places; else (a torn or damaged batch) through the
    // log's read path, which repairs, without places.
    let entries = match placed::index_segment(partition, seg, id)? {
        Some(entries) => entries,
        None => {
            let mut entries = Vec::new();
            scan(partition, base, end, |r| {
                if let Some(k) = &r.key {
                    entries.push((key_hash(k), r.offset, Place::NONE));
                }
                ControlFlow::Continue(())
            })?;
            entries
        }
    };
    // The segment must be the one stat'ed, start to end, for the file to describe it.
    match Identity::of(&seg.log_path, base, end) {
        Ok(after) if after == id => match KeyFile::write_placed(&path, id, entries) {
            Ok(f) => Ok(Some(f)),
            Err(e) => {
                // A full or read-only disk slows lookups down (linear search), no more.
                tracing::warn!(path = %path.display(), error = %e, "cannot write a key file");
                Ok(None)
            }
        },
        _ => Ok(None),
    }
}

/// `cairn-key-index/<topic>-<p>/<base>.keys` in the partition's data directory.
fn key_file_path(partition: &Partition, base: i64) -> PathBuf {
    let dir = partition.dir();
    let name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let data_dir = dir.parent().unwrap_or(dir);
    segment_file(&data_dir.join(KEY_INDEX_DIR).join(name), base, "keys")
}

/// Indexes `[base, bound)` of one segment for a snapshot.
fn build_overlay(partition: &Partition, base: i64, bound: i64) -> Result<Overlay, KeysError> {
    let mut map = HashMap::new();
    scan(partition, base, bound, |r| {
        if let Some(k) = &r.key {
            map.insert(key_hash(k), r.offset);
        }
        ControlFlow::Continue(())
    })?;
    Ok(Overlay {
        base_offset: base,
        bound,
        map,
    })
}
