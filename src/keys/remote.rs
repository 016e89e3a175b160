//! The key index over the object-storage tier: lookups and snapshots of a tiered compacted topic
//! answer from the segments only the bucket holds (below the local log start, once local
//! retention deleted the local copy), read through the tier's [`RemoteLog`].
//!
//! Each remote segment gets a key file like a local one ([`super::file`]), built lazily by reading
//! the segment object through [`RemoteLog::read`] and kept in
//! `cairn-key-index/<topic>-<p>/remote/<base:020>-<object hash:016x>.keys`. Its identity is the
//! segment's range, the object's size and CRC-32C and the hash of its key: object keys are never
//! reused (each upload and each rewrite by the tier's cleaner writes a new one), so a file
//! describes exactly one immutable object and is never stale while the manifest lists it. Why
//! build from the object rather than keep the file of the local segment when retention deletes
//! it: the tier's cleaner rewrites remote-only segments, which no local file describes, and a
//! restored broker has no local copy at all; one path for every case.
//!
//! Bounds: the files of remote segments take at most `cairn.key.index.remote.cache.bytes` of
//! local disk over all partitions (least recently used deleted first; a lookup then builds the
//! file again, or searches the segment linearly); memory holds one small entry per remote
//! segment and one read ([`READ_BYTES`]).
//!
//! Consistency: a lookup notes the partition's manifest (version, start) before and after its
//! search, and starts again when it changed, as it does when the local layout changes; a file is
//! only written when the manifest did not change while its segment was read (each read goes
//! through the current manifest). Transactions: the segment's ABORT markers are collected first
//! (for a transaction still open at the segment's end, the following objects are read until its
//! marker, then the local log's aborted-transaction index is asked), and batches of aborted
//! transactions are skipped, so a file never indexes an aborted record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::file::{key_hash, Identity, KeyFile};
use super::record::{batches, record_in, Record};
use super::scan;
use super::KeysError;
use crate::log::partition::{txn, Partition};
use crate::log::txn_index::AbortedTxn;
use crate::tier::manifest::{Manifest, RemoteSegment};
use crate::tier::read::RemoteLog;

/// Bytes asked of one remote read.
const READ_BYTES: usize = 1 << 20;
/// Marker type of an ABORT control record.
const ABORT: i16 = 0;

/// What a lookup notes of the tier to see whether it changed under it.
pub(crate) type Stamp = Option<(u64, Option<i64>)>;

/// The tier's side of the key index: the remote reader and the disk bound of remote key files.
pub(crate) struct Tiered {
    pub(crate) log: Arc<RemoteLog>,
    disk: Mutex<DiskLru>,
}

/// Remote key files on disk, least recently used first, deleted past `capacity` bytes.
struct DiskLru {
    capacity: u64,
    bytes: u64,
    tick: u64,
    by_path: HashMap<PathBuf, (u64, u64)>,
    by_tick: BTreeMap<u64, PathBuf>,
}

impl DiskLru {
    fn touch(&mut self, path: &Path, size: u64) {
        self.tick += 1;
        if let Some((tick, old)) = self.by_path.remove(path) {
            self.by_tick.remove(&tick);
            self.bytes -= old;
        }
        self.by_path.insert(path.to_path_buf(), (self.tick, size));
        self.by_tick.insert(self.tick, path.to_path_buf());
        self.bytes += size;
        while self.bytes > self.capacity && self.by_tick.len() > 1 {
            let Some((_, victim)) = self.by_tick.pop_first() else {
                break;
            };
            if let Some((_, size)) = self.by_path.remove(&victim) {
                self.bytes -= size;
            }
            let _ = KeyFile::remove(&victim);
        }
    }

    fn forget(&mut self, path: &Path) {
        if let Some((tick, size)) = self.by_path.remove(path) {
            self.by_tick.remove(&tick);
            self.bytes -= size;
        }
    }
}

/// One partition's remote key files, by segment base offset, with the object each describes.
#[derive(Default)]
pub(crate) struct RemoteKeys {
    files: BTreeMap<i64, (String, KeyFile)>,
    /// The manifest version the files were last matched against (stale ones removed).
    seen_version: Option<u64>,
}

/// The remote segments a search of one partition covers: offsets `[start, below)`.
pub(crate) struct View {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) start: i64,
    pub(crate) below: i64,
}

impl View {
    /// The segments holding offsets of `[start, below)`, oldest first.
    pub(crate) fn segments(&self) -> impl DoubleEndedIterator<Item = &RemoteSegment> {
        let (start, below) = (self.start, self.below);
        self.manifest
            .segments
            .iter()
            .filter(move |s| s.end_offset > start && s.base_offset < below)
    }

    /// The part of `seg` this view covers.
    pub(crate) fn range(&self, seg: &RemoteSegment) -> (i64, i64) {
        (
            seg.base_offset.max(self.start),
            seg.end_offset.min(self.below),
        )
    }
}

impl Tiered {
    pub(crate) fn new(log: Arc<RemoteLog>, disk_bytes: u64) -> Tiered {
        Tiered {
            log,
            disk: Mutex::new(DiskLru {
                capacity: disk_bytes,
                bytes: 0,
                tick: 0,
                by_path: HashMap::new(),
                by_tick: BTreeMap::new(),
            }),
        }
    }

    pub(crate) fn stamp(&self, partition: &Partition) -> Stamp {
        let (t, p) = (partition.topic(), partition.partition_index());
        let m = self.log.manifest_of(t, p)?;
        Some((m.version, self.log.start_offset(t, p)))
    }

    /// What the tier alone holds of `partition` below `local_start` (`None`: nothing).
    /// An error while the tier has not read the partition's manifest yet (it may hold older
    /// records of a key: answering without them could say 404 for a live key).
    pub(crate) fn view(
        &self,
        partition: &Partition,
        local_start: i64,
    ) -> Result<Option<View>, KeysError> {
        let (t, p) = (partition.topic(), partition.partition_index());
        if !partition.config().remote_storage_enable {
            return Ok(None);
        }
        let Some(manifest) = self.log.manifest_of(t, p) else {
            return match local_start > 0 {
                true => Err(KeysError::Tier(
                    "the tier's manifest of the partition is not read yet".into(),
                )),
                false => Ok(None),
            };
        };
        let Some(start) = self.log.start_offset(t, p) else {
            return Ok(None);
        };
        Ok((start < local_start).then_some(View {
            manifest,
            start,
            below: local_start,
        }))
    }

    /// The key file held for `seg`, if there is one for its object.
    pub(crate) fn cached(
        &self,
        keys: &mut RemoteKeys,
        partition: &Partition,
        view: &View,
        seg: &RemoteSegment,
    ) -> Option<KeyFile> {
        self.forget_stale(keys, partition, &view.manifest);
        let (object, f) = keys.files.get(&seg.base_offset)?;
        if *object != seg.log.key {
            return None;
        }
        let f = f.clone();
        self.disk_touch(&f);
        Some(f)
    }

    /// Holds `file`, the key file of `seg`.
    pub(crate) fn remember(&self, keys: &mut RemoteKeys, seg: &RemoteSegment, file: &KeyFile) {
        self.disk_touch(file);
        keys.files
            .insert(seg.base_offset, (seg.log.key.clone(), file.clone()));
    }

    /// The key file of `seg` from disk, or built by reading the segment from the tier (`None`
    /// when it cannot be now: the segment is not wholly below `bound`, or the manifest changed
    /// while it was read). Touches no partition state: callers run it without holding the
    /// partition's index, which a read from the bucket would hold for its whole duration.
    pub(crate) fn load_or_build(
        &self,
        partition: &Partition,
        seg: &RemoteSegment,
        bound: i64,
    ) -> Result<Option<KeyFile>, KeysError> {
        if seg.end_offset > bound {
            return Ok(None);
        }
        let id = identity(seg);
        let path = remote_file_path(partition, seg);
        if let Some(f) = KeyFile::open(&path, id) {
            return Ok(Some(f));
        }
        let before = self.stamp(partition);
        let mut entries = Vec::new();
        self.records(partition, seg, seg.base_offset, seg.end_offset, |r| {
            if let Some(k) = &r.key {
                entries.push((key_hash(k), r.offset));
            }
            ControlFlow::Continue(())
        })?;
        if self.stamp(partition) != before {
            return Ok(None);
        }
        match KeyFile::write(&path, id, entries) {
            Ok(f) => Ok(Some(f)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a remote key file");
                Ok(None)
            }
        }
    }

    /// Forgets a file found unreadable (deleted by the disk bound, or by hand).
    pub(crate) fn drop_file(&self, keys: &mut RemoteKeys, base: i64) {
        if let Some((_, f)) = keys.files.remove(&base) {
            self.disk
                .lock()
                .expect("remote key files lock")
                .forget(&f.path);
        }
    }

    fn disk_touch(&self, f: &KeyFile) {
        let size = f.disk_bytes();
        self.disk
            .lock()
            .expect("remote key files lock")
            .touch(&f.path, size);
    }

    /// Once per manifest version: the files of segments the manifest no longer lists (replaced
    /// by the tier's cleaner, trimmed by retention, or left by an earlier run) are deleted.
    fn forget_stale(&self, keys: &mut RemoteKeys, partition: &Partition, m: &Manifest) {
        if keys.seen_version == Some(m.version) {
            return;
        }
        keys.seen_version = Some(m.version);
        let current: HashSet<PathBuf> = m
            .segments
            .iter()
            .map(|s| remote_file_path(partition, s))
            .collect();
        keys.files.retain(|_, (_, f)| current.contains(&f.path));
        let dir = remote_dir(partition);
        let mut disk = self.disk.lock().expect("remote key files lock");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if !current.contains(&path) {
                disk.forget(&path);
                let _ = KeyFile::remove(&path);
            }
        }
    }

    /// Calls `f` with every committed user record of `seg` in `[from, to)`, in offset order,
    /// until it breaks.
    pub(crate) fn records(
        &self,
        partition: &Partition,
        seg: &RemoteSegment,
        from: i64,
        to: i64,
        mut f: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<(), KeysError> {
        let to = to.min(seg.end_offset);
        // Below the tier's start (DeleteRecords, retention) the reader serves nothing.
        let (t, p) = (partition.topic(), partition.partition_index());
        let from = from.max(self.log.start_offset(t, p).unwrap_or(from));
        let aborted = self.aborted(partition, seg, from, to)?;
        let mut pos = from;
        while pos < to {
            let Some(bytes) = self.read(partition, pos, READ_BYTES)? else {
                return Ok(());
            };
            let batches = batches(&bytes).map_err(KeysError::Corrupt)?;
            let Some(next) = scan::visit(&batches, (pos, to), &aborted, &mut f)? else {
                return Ok(());
            };
            if next == pos {
                return Ok(());
            }
            pos = next;
        }
        Ok(())
    }

    /// The aborted transactions with batches in `[from, to)` of `seg`.
    fn aborted(
        &self,
        partition: &Partition,
        seg: &RemoteSegment,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, KeysError> {
        // Producer → first offset of its transaction not yet decided at the read position.
        let mut open: HashMap<i64, i64> = HashMap::new();
        let mut aborted = Vec::new();
        let mut pos = from;
        let mut past_to = false;
        loop {
            if past_to && open.is_empty() {
                break;
            }
            let Some(bytes) = self.read(partition, pos, READ_BYTES)? else {
                break;
            };
            let mut next = pos;
            for batch in batches(&bytes).map_err(KeysError::Corrupt)? {
                let h = &batch.header;
                next = next.max(h.last_offset() + 1);
                if h.last_offset() < pos {
                    continue;
                }
                if h.base_offset >= to {
                    past_to = true;
                }
                if h.is_control() {
                    let first = open.remove(&h.producer_id);
                    let first = match (first, past_to) {
                        (Some(f), _) => Some(f),
                        // A transaction begun before `from`, decided after it.
                        (None, false) => Some(seg.base_offset),
                        (None, true) => None,
                    };
                    if let (Some(first), Some((ABORT, _))) = (first, txn::marker(&batch.bytes)) {
                        aborted.push(AbortedTxn {
                            producer_id: h.producer_id,
                            first_offset: first,
                            last_offset: h.base_offset,
                            last_stable_offset: h.base_offset,
                        });
                    }
                } else if h.is_transactional() && !past_to {
                    open.entry(h.producer_id).or_insert(h.base_offset);
                }
            }
            if next == pos {
                break;
            }
            pos = next;
        }
        // Decided in the local log (or never: then the batches lie at or above the bound).
        for (producer, first) in open {
            aborted.extend(
                partition
                    .aborted_transactions(first, first + 1)
                    .into_iter()
                    .filter(|a| a.producer_id == producer),
            );
        }
        Ok(aborted)
    }

    /// The record at exactly `offset` in the tier, if it holds it (the caller knows it is
    /// committed: it comes from a key file).
    pub(crate) fn record_at(
        &self,
        partition: &Partition,
        offset: i64,
    ) -> Result<Option<Record>, KeysError> {
        let Some(bytes) = self.read(partition, offset, 1)? else {
            return Ok(None);
        };
        let Some(batch) = batches(&bytes)
            .map_err(KeysError::Corrupt)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let h = &batch.header;
        if h.is_control() || offset < h.base_offset || h.last_offset() < offset {
            return Ok(None);
        }
        record_in(&batch.bytes, h, offset).map_err(KeysError::Corrupt)
    }

    /// Whole batches from `offset` on, through the tier's reader (its cache of object chunks).
    /// Runs on a blocking thread of the runtime (the HTTP handlers'), as every key index call.
    fn read(
        &self,
        partition: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, KeysError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| KeysError::Tier("no runtime to read the tier from".into()))?;
        let read = self.log.read(
            partition.topic(),
            partition.partition_index(),
            offset,
            max_bytes,
        );
        handle
            .block_on(async { tokio::time::timeout(crate::tier::read::READ_TIMEOUT, read).await })
            .map_err(|_| KeysError::Tier("a read from the tier timed out".into()))?
            .map_err(|e| KeysError::Tier(e.to_string()))
    }
}

/// The identity a remote segment's key file is checked against: its range, and the object's
/// size, CRC-32C and key hash in the places a local file keeps size, inode and mtime.
fn identity(seg: &RemoteSegment) -> Identity {
    Identity {
        base_offset: seg.base_offset,
        end_offset: seg.end_offset,
        size: seg.log.size,
        inode: seg.log.crc32c as u64,
        mtime_ns: key_hash(seg.log.key.as_bytes()) as i64,
    }
}

/// `cairn-key-index/<topic>-<p>/remote/<base:020>-<object key hash:016x>.keys`.
fn remote_file_path(partition: &Partition, seg: &RemoteSegment) -> PathBuf {
    remote_dir(partition).join(format!(
        "{:020}-{:016x}.keys",
        seg.base_offset,
        key_hash(seg.log.key.as_bytes())
    ))
}

/// `cairn-key-index/<topic>-<p>/remote/`.
fn remote_dir(partition: &Partition) -> PathBuf {
    let local = super::key_file_path(partition, 0);
    local.parent().unwrap_or(Path::new(".")).join("remote")
}
