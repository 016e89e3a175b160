//! Reads from the tier: the offsets a tiered partition holds only in the bucket (below its local
//! log start, after local retention deleted the local copy) are served from the segment objects.
//!
//! Owns the catalog of every tiered partition's latest manifest (published by the uploader each
//! time it reads or writes one), a cache of 1 MiB chunks of segment objects (ranged GETs) and of
//! their index objects bounded by `cairn.remote.cache.bytes`, and, per object, the batch
//! positions already found, so a sequential reader's next fetch goes straight to its batch. A
//! batch is found through the segment's offset index (a timestamp through its time index first,
//! see `remote_index`), then by walking batch headers from the indexed position (from
//! the start for a segment without a usable index: uploaded before indexes were, or with a
//! damaged one, which is logged once by its key); the chunk a sequential reader needs next is
//! fetched in the background while it handles the current one. Every batch served has its CRC-32C checked first, and a damaged or truncated one is
//! logged with the object's key (once) and reported as an error, never served. No partition lock
//! is held here: the handlers call this after the local read answered. Knows no Kafka request
//! type.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;

use super::manifest::{Manifest, RemoteObject, RemoteSegment};
use super::remote_index;
use super::remote_txn;
use super::txn_rebuild;
use super::{Bucket, TierError};
use crate::log::batch::{self, HEADER_SIZE, LOG_OVERHEAD};
use crate::log::txn_index::AbortedTxn;

/// A remote read that takes longer fails (a retriable error for the client), so a consumer
/// never waits past its request timeout on an unreachable store.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tier holds of one partition, and the records it serves.
pub struct RemoteLog {
    bucket: Bucket,
    manifests: RwLock<BTreeMap<(String, i32), Arc<Manifest>>>,
    /// DeleteRecords requests below what the tier has trimmed, by partition.
    deleted_before: Mutex<BTreeMap<(String, i32), i64>>,
    cache: Mutex<Cache>,
    /// Per object, offsets known to lie at or after a batch start: offset → position. A
    /// sequential reader's next offset is found without walking the segment again.
    positions: Mutex<BTreeMap<String, BTreeMap<i64, u64>>>,
    /// Objects found corrupt, so each is logged once.
    corrupt: Mutex<BTreeSet<String>>,
    /// Index objects found missing or damaged (logged once): their segments' reads walk batch
    /// headers instead, and the scrub builds them again.
    bad_indexes: Mutex<BTreeSet<String>>,
    /// The size of a ranged GET ([`CHUNK`]; tests use tiny ones to cross chunk boundaries).
    chunk_size: u64,
}

type ChunkKey = (String, u64);

/// Objects are read in aligned chunks of this size (ranged GETs), each cached on its own.
const CHUNK: u64 = 1 << 20;
/// Remembered batch positions, over all objects (the map is emptied past it).
const MAX_POSITIONS: usize = 100_000;

/// Chunks of segment objects by (key, chunk index), least recently used first, evicted past
/// `capacity` bytes.
struct Cache {
    entries: VecDeque<(ChunkKey, Bytes)>,
    bytes: u64,
    capacity: u64,
}

impl Cache {
    fn get(&mut self, key: &ChunkKey) -> Option<Bytes> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at).expect("found above");
        let bytes = entry.1.clone();
        self.entries.push_back(entry);
        Some(bytes)
    }

    fn put(&mut self, key: ChunkKey, bytes: Bytes) {
        if bytes.len() as u64 > self.capacity || self.entries.iter().any(|(k, _)| *k == key) {
            return;
        }
        self.bytes += bytes.len() as u64;
        self.entries.push_back((key, bytes));
        while self.bytes > self.capacity {
            let Some((_, old)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.len() as u64;
        }
    }
}

impl RemoteLog {
    pub fn new(bucket: Bucket, cache_bytes: u64) -> RemoteLog {
        RemoteLog {
            bucket,
            manifests: RwLock::new(BTreeMap::new()),
            deleted_before: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(Cache {
                entries: VecDeque::new(),
                bytes: 0,
                capacity: cache_bytes,
            }),
            positions: Mutex::new(BTreeMap::new()),
            corrupt: Mutex::new(BTreeSet::new()),
            bad_indexes: Mutex::new(BTreeSet::new()),
            chunk_size: CHUNK,
        }
    }

    /// Makes `manifest` the one reads use for its partition.
    pub(crate) fn publish(&self, manifest: &Manifest) {
        let key = (manifest.topic.clone(), manifest.partition);
        let mut map = self.manifests.write().unwrap_or_else(|e| e.into_inner());
        map.insert(key, Arc::new(manifest.clone()));
    }

    /// Forgets a deleted topic's partitions.
    pub(crate) fn forget_topic(&self, topic: &str) {
        let mut map = self.manifests.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|(t, _), _| t != topic);
        let mut del = self
            .deleted_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        del.retain(|(t, _), _| t != topic);
    }

    fn manifest(&self, topic: &str, partition: i32) -> Option<Arc<Manifest>> {
        let map = self.manifests.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(topic.to_string(), partition)).cloned()
    }

    /// The partition's latest manifest, as reads use it (for the key index over the tier).
    pub fn manifest_of(&self, topic: &str, partition: i32) -> Option<Arc<Manifest>> {
        self.manifest(topic, partition)
    }

    /// True once the partition's manifest was read (or it was found to have none).
    pub fn knows(&self, topic: &str, partition: i32) -> bool {
        self.manifest(topic, partition).is_some()
    }

    /// The first offset the tier holds of a partition (`None` when it holds nothing).
    pub fn start_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let m = self.manifest(topic, partition)?;
        let first = m.segments.first()?;
        let requested = self.deleted_before(topic, partition).unwrap_or(i64::MIN);
        Some(first.base_offset.max(m.log_start_offset).max(requested))
    }

    /// Bytes of the partition's segments in the bucket (`None` when it has no manifest).
    pub fn size_bytes(&self, topic: &str, partition: i32) -> Option<u64> {
        let m = self.manifest(topic, partition)?;
        Some(m.segments.iter().map(|s| s.log.size).sum())
    }

    /// The end (exclusive) of what the tier holds of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.manifest(topic, partition)?.end_offset()
    }

    /// The log start offset of the whole log (tier and local disk): the tier's start when the
    /// tier holds offsets below `local_start`, else `local_start`.
    pub fn log_start_offset(&self, topic: &str, partition: i32, local_start: i64) -> i64 {
        match (
            self.start_offset(topic, partition),
            self.end_offset(topic, partition),
        ) {
            (Some(start), Some(end)) if start < local_start && end >= local_start => start,
            _ => local_start,
        }
    }

    /// Records a DeleteRecords below the local log start: reads below `offset` stop at once,
    /// and the uploader trims the manifest.
    pub fn delete_records_before(&self, topic: &str, partition: i32, offset: i64) {
        let mut del = self
            .deleted_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let e = del.entry((topic.to_string(), partition)).or_insert(offset);
        *e = (*e).max(offset);
    }

    pub(crate) fn deleted_before(&self, topic: &str, partition: i32) -> Option<i64> {
        let del = self
            .deleted_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        del.get(&(topic.to_string(), partition)).copied()
    }

    /// Whole batches from the tier starting with the one holding `offset`, at most `max_bytes`
    /// unless the first batch alone is larger; `None` when the tier does not hold `offset`.
    pub async fn read(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, TierError> {
        let Some(m) = self.manifest(topic, partition) else {
            return Ok(None);
        };
        let start = self.start_offset(topic, partition).unwrap_or(i64::MAX);
        if offset < start {
            return Ok(None);
        }
        let first = m.segments.partition_point(|s| s.end_offset <= offset);
        // A compacted segment may end in a gap: the next segment then holds the next batch.
        for seg in m.segments.iter().skip(first) {
            let Some(pos) = self.locate(seg, offset).await? else {
                continue;
            };
            let mut end = pos;
            let mut last_offset = offset;
            while end < seg.log.size {
                let (size, header) = self.header_at(seg, end).await?;
                if end > pos && (end + size - pos) as usize > max_bytes {
                    break;
                }
                end += size;
                last_offset = header.last_offset();
            }
            let bytes = self.bytes_at(seg, pos, end).await?;
            if let Err(e) = scan(&bytes, &seg.log.key) {
                return Err(self.found_corrupt(seg, e));
            }
            self.remember(&seg.log.key, last_offset + 1, end);
            self.prefetch(&m, seg, end);
            return Ok(Some(bytes));
        }
        Ok(None)
    }

    /// The aborted transactions a `read_committed` fetch at `from` returning records below
    /// `upper` must skip, from the transaction indexes of the tier's segments below `local_start`
    /// (the local log answers from there), as (entries, complete: no later entry can concern the
    /// range). A segment uploaded before transaction indexes were has its entries built from the
    /// log objects ([`txn_rebuild`]). `None` when one of those segments' index object is missing
    /// or damaged: the caller must not serve the records.
    pub async fn aborted_transactions(
        &self,
        topic: &str,
        partition: i32,
        (from, upper): (i64, i64),
        local_start: i64,
    ) -> Result<Option<(Vec<AbortedTxn>, bool)>, TierError> {
        let Some(m) = self.manifest(topic, partition) else {
            return Ok(Some((Vec::new(), false)));
        };
        let first = m.segments.partition_point(|s| s.end_offset <= from);
        let mut out = Vec::new();
        for (i, seg) in m.segments.iter().enumerate().skip(first) {
            if seg.base_offset >= local_start {
                break;
            }
            let Some(object) = &seg.txn_index else {
                // Uploaded before transaction indexes were: built from the log objects until
                // the scrub puts one into the manifest.
                let entries = txn_rebuild::rebuild(&self.bucket, &m.segments, i).await?;
                if remote_txn::collect(&entries, from, upper, &mut out) {
                    return Ok(Some((out, true)));
                }
                continue;
            };
            let bytes = if object.size == 0 {
                Bytes::new()
            } else {
                let check = |b: &[u8]| remote_index::check_object(object, b);
                match self.index_object(object, check).await? {
                    Some(b) => b,
                    None => return Ok(None),
                }
            };
            let entries = AbortedTxn::decode_all(&bytes);
            if remote_txn::collect(&entries, from, upper, &mut out) {
                return Ok(Some((out, true)));
            }
        }
        Ok(Some((out, false)))
    }

    /// Starts fetching, in the background, the chunk a sequential reader needs next: the one
    /// holding `end` of `seg`, or the first of the next segment.
    fn prefetch(self: &Arc<Self>, m: &Manifest, seg: &RemoteSegment, end: u64) {
        let (next, at) = if end < seg.log.size {
            (seg.clone(), end)
        } else {
            match m.segments.iter().find(|s| s.base_offset >= seg.end_offset) {
                Some(s) => (s.clone(), 0),
                None => return,
            }
        };
        let index = at / self.chunk_size;
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let key = (next.log.key.clone(), index);
            cache.entries.iter().any(|(k, _)| *k == key)
        };
        if cached {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // A failure here is met again, and reported, by the read that needs the chunk.
            let _ = this.chunk(&next, index).await;
        });
    }

    /// The first offset the tier holds below `below` whose record timestamp is ≥ `timestamp`,
    /// with that timestamp (`None` when there is none: the answer lies at or above `below`).
    /// Walks batch headers; only batches that may hold the answer are decoded.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        below: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let Some(m) = self.manifest(topic, partition) else {
            return Ok(None);
        };
        let start = self.start_offset(topic, partition).unwrap_or(i64::MAX);
        let wanted = |s: &&RemoteSegment| s.end_offset > start && s.base_offset < below;
        for seg in m.segments.iter().filter(wanted) {
            if seg.max_timestamp < timestamp {
                continue;
            }
            // Every record up to the time index's floor is older than `timestamp`.
            let from = match self.time_floor(seg, timestamp).await? {
                Some(older_to) => start.max(older_to + 1),
                None => start,
            };
            let Some(mut pos) = self.locate(seg, from).await? else {
                continue;
            };
            while pos < seg.log.size {
                let (size, header) = self.header_at(seg, pos).await?;
                let here = pos;
                pos += size;
                if header.max_timestamp < timestamp || header.is_control() {
                    continue;
                }
                let one = self.bytes_at(seg, here, here + size).await?;
                batch::check_batch(&one).map_err(|e| self.found_corrupt(seg, e))?;
                let records =
                    batch::record_timestamps(&one).map_err(|e| self.found_corrupt(seg, e))?;
                let record_ts = |ts: i64| match header.is_log_append_time() {
                    true => header.max_timestamp,
                    false => ts,
                };
                let found = records
                    .into_iter()
                    .map(|(o, ts)| (o, record_ts(ts)))
                    .find(|&(o, ts)| o >= start && o < below && ts >= timestamp);
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp the tier holds below `below` (the first such),
    /// as (offset, timestamp).
    pub async fn max_timestamp(
        &self,
        topic: &str,
        partition: i32,
        below: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let Some(m) = self.manifest(topic, partition) else {
            return Ok(None);
        };
        let start = self.start_offset(topic, partition).unwrap_or(i64::MAX);
        let best = m
            .segments
            .iter()
            .filter(|s| s.end_offset > start && s.base_offset < below && s.max_timestamp >= 0)
            .fold(None::<&RemoteSegment>, |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(s),
            });
        let Some(seg) = best else {
            return Ok(None);
        };
        self.offset_for_timestamp(topic, partition, seg.max_timestamp, below)
            .await
            .map(|found| found.filter(|&(_, ts)| ts == seg.max_timestamp))
    }

    /// The position of the batch holding `offset` (or of the first batch after it, in a
    /// compacted segment), walking batch headers from the nearest position known to start at or
    /// before it (remembered from earlier reads, or the segment's offset index); `None` past the
    /// segment's last batch.
    async fn locate(&self, seg: &RemoteSegment, offset: i64) -> Result<Option<u64>, TierError> {
        let known = {
            let known = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            known
                .get(&seg.log.key)
                .and_then(|m| m.range(..=offset).next_back().map(|(&o, &p)| (o, p)))
        };
        let mut pos = match known {
            // A sequential reader's next batch: nothing to look up.
            Some((o, p)) if o == offset => p,
            // From the segment's start (a sequential reader entering it): nothing to look up.
            _ if offset <= seg.base_offset => known.map_or(0, |(_, p)| p),
            _ => {
                let indexed = self.indexed_position(seg, offset).await?.unwrap_or(0);
                known.map_or(0, |(_, p)| p).max(indexed)
            }
        };
        while pos < seg.log.size {
            let (size, header) = self.header_at(seg, pos).await?;
            if header.last_offset() >= offset {
                self.remember(&seg.log.key, header.base_offset.min(offset), pos);
                return Ok(Some(pos));
            }
            pos += size;
        }
        Ok(None)
    }

    /// From `seg`'s offset index: the position of the last indexed batch ending at or below
    /// `offset` (the batch holding it starts there or later), checked against the batch header
    /// found there; `None` without a usable index entry.
    async fn indexed_position(
        &self,
        seg: &RemoteSegment,
        offset: i64,
    ) -> Result<Option<u64>, TierError> {
        let Some(ix) = &seg.indexes else {
            return Ok(None);
        };
        let object = &ix.offset_index;
        let check = |b: &[u8]| remote_index::check_offset_index(seg, object, b);
        let Some(bytes) = self.index_object(object, check).await? else {
            return Ok(None);
        };
        let Some((last_offset, pos)) = remote_index::offset_floor(&bytes, seg.base_offset, offset)
        else {
            return Ok(None);
        };
        // The entry must name a batch start that ends at its offset, or walking from it could
        // pass the batch asked for: a wrong index is never followed.
        let head = self.bytes_at(seg, pos, pos + HEADER_SIZE as u64).await?;
        let fits = batch::BatchHeader::parse(&head).is_ok_and(|h| {
            h.last_offset() == last_offset
                && h.size() >= HEADER_SIZE
                && pos + h.size() as u64 <= seg.log.size
        });
        if !fits {
            self.index_bad(
                object,
                format!("entry ({last_offset}, {pos}) names no batch ending there"),
            );
            return Ok(None);
        }
        Ok(Some(pos))
    }

    /// From `seg`'s time index: an offset up to which every record is older than `timestamp`;
    /// `None` without a usable entry.
    async fn time_floor(
        &self,
        seg: &RemoteSegment,
        timestamp: i64,
    ) -> Result<Option<i64>, TierError> {
        let Some(ix) = &seg.indexes else {
            return Ok(None);
        };
        let object = &ix.time_index;
        let check = |b: &[u8]| remote_index::check_time_index(seg, object, b);
        let Some(bytes) = self.index_object(object, check).await? else {
            return Ok(None);
        };
        Ok(remote_index::time_floor(&bytes, seg.base_offset, timestamp))
    }

    /// An index object, whole: from the cache, or fetched and checked (`check`) first. `None`
    /// when it is missing or damaged, which is logged once with its key.
    async fn index_object(
        &self,
        object: &RemoteObject,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Option<Bytes>, TierError> {
        if self.index_known_bad(&object.key) {
            return Ok(None);
        }
        let cache_key = (object.key.clone(), 0);
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(Some(b));
        }
        let path = self.bucket.key(&object.key);
        let got = tokio::time::timeout(READ_TIMEOUT, async {
            self.bucket.store.get(&path).await?.bytes().await
        })
        .await
        .map_err(|_| {
            TierError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("reading {} from the tier timed out", object.key),
            ))
        })?;
        let bytes = match got {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                self.index_bad(object, "missing");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(reason) = check(&bytes) {
            self.index_bad(object, reason);
            return Ok(None);
        }
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(cache_key, bytes.clone());
        Ok(Some(bytes))
    }

    fn index_known_bad(&self, key: &str) -> bool {
        let bad = self.bad_indexes.lock().unwrap_or_else(|e| e.into_inner());
        bad.contains(key)
    }

    /// Notes a missing or damaged index object, logged with its key the first time.
    fn index_bad(&self, object: &RemoteObject, reason: impl std::fmt::Display) {
        let mut bad = self.bad_indexes.lock().unwrap_or_else(|e| e.into_inner());
        if bad.insert(object.key.clone()) {
            tracing::error!(key = %object.key, %reason,
                "damaged index object in the tier; its segment is read by walking batch headers");
        }
    }

    /// True when a read found one of `seg`'s index objects missing or damaged (the scrub builds
    /// them again next).
    pub(crate) fn index_found_bad(&self, seg: &RemoteSegment) -> bool {
        seg.indexes.as_ref().is_some_and(|ix| {
            self.index_known_bad(&ix.offset_index.key) || self.index_known_bad(&ix.time_index.key)
        })
    }

    /// Notes that every offset from `offset` on lies at or after `position` of object `key`.
    fn remember(&self, key: &str, offset: i64, position: u64) {
        let mut known = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if known.values().map(BTreeMap::len).sum::<usize>() >= MAX_POSITIONS {
            known.clear();
        }
        // A sequential reader's object is known already: no key to allocate.
        match known.get_mut(key) {
            Some(positions) => {
                positions.insert(offset, position);
            }
            None => {
                known.insert(key.to_string(), BTreeMap::from([(offset, position)]));
            }
        }
    }

    /// The header of the batch at `pos` and the batch's total size, checked to fit the object.
    async fn header_at(
        &self,
        seg: &RemoteSegment,
        pos: u64,
    ) -> Result<(u64, batch::BatchHeader), TierError> {
        let head = self.bytes_at(seg, pos, pos + HEADER_SIZE as u64).await?;
        if head.len() < HEADER_SIZE {
            return Err(self.found_corrupt(seg, format!("a truncated batch at position {pos}")));
        }
        let header = batch::BatchHeader::parse(&head).map_err(|e| self.found_corrupt(seg, e))?;
        let size = header.size() as u64;
        if size < HEADER_SIZE as u64 || pos + size > seg.log.size {
            return Err(self.found_corrupt(
                seg,
                format!("a batch of {size} bytes at position {pos} does not fit the object"),
            ));
        }
        Ok((size, header))
    }

    /// Bytes [start, end) of a segment's log object, from cached chunks or ranged GETs.
    async fn bytes_at(
        &self,
        seg: &RemoteSegment,
        start: u64,
        end: u64,
    ) -> Result<Bytes, TierError> {
        let end = end.min(seg.log.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        let (first, last) = (start / self.chunk_size, (end - 1) / self.chunk_size);
        if first == last {
            let chunk = self.chunk(seg, first).await?;
            let lo = (start - first * self.chunk_size) as usize;
            return Ok(chunk.slice(lo..lo + (end - start) as usize));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for i in first..=last {
            let chunk = self.chunk(seg, i).await?;
            let lo = start.max(i * self.chunk_size) - i * self.chunk_size;
            let hi = end.min((i + 1) * self.chunk_size) - i * self.chunk_size;
            out.extend_from_slice(&chunk[lo as usize..hi as usize]);
        }
        Ok(out.freeze())
    }

    /// Chunk `index` of a segment's log object (one ranged GET, then cached).
    async fn chunk(&self, seg: &RemoteSegment, index: u64) -> Result<Bytes, TierError> {
        let cache_key = (seg.log.key.clone(), index);
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(b);
        }
        let (lo, hi) = (
            index * self.chunk_size,
            ((index + 1) * self.chunk_size).min(seg.log.size),
        );
        let path = self.bucket.key(&seg.log.key);
        let got = tokio::time::timeout(READ_TIMEOUT, self.bucket.store.get_range(&path, lo..hi))
            .await
            .map_err(|_| {
                TierError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("reading {} from the tier timed out", seg.log.key),
                ))
            })??;
        if got.len() as u64 != hi - lo {
            return Err(self.found_corrupt(
                seg,
                format!(
                    "short read: {} bytes at {lo}, expected {}",
                    got.len(),
                    hi - lo
                ),
            ));
        }
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(cache_key, got.clone());
        Ok(got)
    }

    /// True when a read found object `key` damaged (the scrub checks it next).
    pub(crate) fn was_found_corrupt(&self, key: &str) -> bool {
        let known = self.corrupt.lock().unwrap_or_else(|e| e.into_inner());
        known.contains(key)
    }

    /// A corruption of `seg`'s object, logged with its key the first time.
    fn found_corrupt(&self, seg: &RemoteSegment, reason: impl std::fmt::Display) -> TierError {
        let e = corrupt(seg, reason);
        let mut known = self.corrupt.lock().unwrap_or_else(|e| e.into_inner());
        if known.insert(seg.log.key.clone()) {
            tracing::error!(key = %seg.log.key, error = %e,
                "corrupt object in the tier; its damaged batches are not served");
        }
        e
    }
}

fn corrupt(seg: &RemoteSegment, e: impl std::fmt::Display) -> TierError {
    TierError::Corrupt {
        key: seg.log.key.clone(),
        reason: e.to_string(),
    }
}

/// Reads a whole object and checks its size and CRC-32C; a mismatch is logged with its key.
pub(crate) async fn fetch(bucket: &Bucket, object: &RemoteObject) -> Result<Bytes, TierError> {
    let bytes = bucket
        .store
        .get(&bucket.key(&object.key))
        .await?
        .bytes()
        .await?;
    let crc = crc32c::crc32c(&bytes);
    if bytes.len() as u64 != object.size || crc != object.crc32c {
        tracing::error!(key = %object.key, expected_size = object.size, size = bytes.len(),
            expected_crc32c = object.crc32c, crc32c = crc, "corrupt object in the tier; not used");
        return Err(TierError::Corrupt {
            key: object.key.clone(),
            reason: format!(
                "{} bytes with CRC-32C {crc:#010x}, the manifest says {} bytes with {:#010x}",
                bytes.len(),
                object.size,
                object.crc32c
            ),
        });
    }
    Ok(bytes)
}

/// Checks every batch of `bytes` (whole batches of a segment object) and counts them; nothing is
/// allocated, a read pays only for the CRCs.
fn scan(bytes: &[u8], key: &str) -> Result<usize, TierError> {
    let mut batches = 0;
    let mut pos = 0;
    let bad = |reason: String| TierError::Corrupt {
        key: key.to_string(),
        reason,
    };
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < HEADER_SIZE {
            return Err(bad(format!("a truncated batch at position {pos}")));
        }
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let size = (length.max(0) as usize).saturating_add(LOG_OVERHEAD);
        if size < HEADER_SIZE || size > rest.len() {
            return Err(bad(format!(
                "a bad batch length {length} at position {pos}"
            )));
        }
        batch::check_batch(&rest[..size])
            .map_err(|e| bad(format!("batch at position {pos}: {e}")))?;
        batches += 1;
        pos += size;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::batch_with;
    use crate::tier::manifest::RemoteObject;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    async fn put(b: &Bucket, key: &str, bytes: Vec<u8>) -> RemoteObject {
        let object = RemoteObject {
            key: key.to_string(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        b.store
            .put(&b.key(key), PutPayload::from(bytes))
            .await
            .unwrap();
        object
    }

    #[tokio::test]
    async fn reads_batches_from_the_offset_and_refuses_a_corrupt_object() {
        let b = Bucket::new(Arc::new(InMemory::new()), "p", "memory://");
        let mut remote = RemoteLog::new(b.clone(), 1 << 20);
        // Tiny ranged GETs: batches and headers cross chunk boundaries.
        remote.chunk_size = 7;
        let remote = Arc::new(remote);
        let mut segments = Vec::new();
        for (i, base) in [0i64, 3].into_iter().enumerate() {
            let mut bytes = Vec::new();
            for o in base..base + 3 {
                let mut one = batch_with(1, 1000 + o, None, true);
                batch::set_base_offset(&mut one, o);
                bytes.extend_from_slice(&one);
            }
            let log = put(&b, &format!("s{i}.log"), bytes).await;
            segments.push(RemoteSegment {
                base_offset: base,
                end_offset: base + 3,
                log,
                producer_snapshot: None,
                max_timestamp: 1000 + base + 2,
                uploaded_ms: 0,
                indexes: None,
                leader_epochs: Vec::new(),
                txn_index: None,
            });
        }
        let m = Manifest {
            topic: "t".into(),
            segments,
            ..Manifest::default()
        };
        remote.publish(&m);
        assert_eq!(remote.start_offset("t", 0), Some(0));
        assert_eq!(remote.log_start_offset("t", 0, 4), 0);
        let one = remote.read("t", 0, 4, 1).await.unwrap().unwrap();
        assert_eq!(batch::peek(&one).map(|p| p.0), Some(4));
        let rest = remote.read("t", 0, 1, 1 << 20).await.unwrap().unwrap();
        assert_eq!(scan(&rest, "x").unwrap(), 2);
        assert!(remote.read("t", 0, 6, 100).await.unwrap().is_none());
        assert_eq!(
            remote.offset_for_timestamp("t", 0, 1004, 6).await.unwrap(),
            Some((4, 1004))
        );
        assert_eq!(
            remote.offset_for_timestamp("t", 0, 1004, 4).await.unwrap(),
            None
        );
        assert_eq!(
            remote.max_timestamp("t", 0, 6).await.unwrap(),
            Some((5, 1005))
        );
        remote.delete_records_before("t", 0, 2);
        assert_eq!(remote.start_offset("t", 0), Some(2));
        assert!(remote.read("t", 0, 1, 100).await.unwrap().is_none());
        // A damaged object is refused, never served (emptied cache: the store is read again).
        {
            let mut cache = remote.cache.lock().unwrap();
            cache.entries.clear();
            cache.bytes = 0;
        }
        let stored = b.store.get(&b.key("s0.log")).await.unwrap();
        let mut damaged = stored.bytes().await.unwrap().to_vec();
        let at = damaged.len() - 5;
        damaged[at] ^= 0xff;
        b.store
            .put(&b.key("s0.log"), PutPayload::from(damaged.clone()))
            .await
            .unwrap();
        assert!(matches!(
            remote.read("t", 0, 2, 100).await,
            Err(TierError::Corrupt { .. })
        ));
        // A truncated object is an error too, never a short answer.
        remote.cache.lock().unwrap().entries.clear();
        damaged.truncate(at);
        b.store
            .put(&b.key("s0.log"), PutPayload::from(damaged))
            .await
            .unwrap();
        assert!(remote.read("t", 0, 2, 100).await.is_err());
    }

    /// An in-memory store that records every GET: (key, range; `None` for a whole object).
    #[derive(Debug, Default)]
    struct Counting {
        inner: InMemory,
        gets: Mutex<Vec<(String, Option<std::ops::Range<u64>>)>>,
    }

    impl std::fmt::Display for Counting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Counting")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for Counting {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            let range = match &options.range {
                Some(object_store::GetRange::Bounded(r)) => Some(r.clone()),
                Some(other) => panic!("unexpected range {other:?}"),
                None => None,
            };
            self.gets
                .lock()
                .unwrap()
                .push((location.to_string(), range));
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures_util::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    impl Counting {
        /// The GETs of `key` since the last call.
        fn take(&self, key: &str) -> Vec<Option<std::ops::Range<u64>>> {
            let mut gets = self.gets.lock().unwrap();
            let (of_key, rest) = gets.drain(..).partition(|(k, _)| k.ends_with(key));
            *gets = rest;
            of_key.into_iter().map(|(_, r)| r).collect()
        }
    }

    /// 400 one-record batches at offsets 0..400 (timestamps 1000 + 10 × offset) with their indexes built every 256 bytes, in a partition `t`-0
    /// of one segment; reads use 1 KiB chunks. Returns the batch positions by offset.
    async fn indexed_segment() -> (Arc<Counting>, Arc<RemoteLog>, RemoteSegment, Vec<u64>) {
        let store = Arc::new(Counting::default());
        let b = Bucket::new(store.clone(), "p", "memory://");
        let bytes = remote_index::tests::segment_bytes(0, 400);
        let mut positions = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            positions.push(at as u64);
            at += batch::BatchHeader::parse(&bytes[at..]).unwrap().size();
        }
        let mut index = remote_index::IndexBuilder::new(0, 256);
        index.feed(&bytes);
        let built = index.finish(bytes.len() as u64).unwrap();
        let indexes = remote_index::upload(&b, &crate::tier::pace::Pacer::new(None), "s", &built)
            .await
            .unwrap();
        let log = put(&b, "s.log", bytes).await;
        let seg = RemoteSegment {
            base_offset: 0,
            end_offset: 400,
            log,
            producer_snapshot: None,
            max_timestamp: 4990,
            uploaded_ms: 0,
            indexes: Some(indexes),
            leader_epochs: built.epochs,
            txn_index: None,
        };
        let mut remote = RemoteLog::new(b, 1 << 20);
        remote.chunk_size = 1024;
        let remote = Arc::new(remote);
        remote.publish(&Manifest {
            topic: "t".into(),
            segments: vec![seg.clone()],
            ..Manifest::default()
        });
        store.take("");
        (store, remote, seg, positions)
    }

    fn first_offset(bytes: &[u8]) -> i64 {
        batch::BatchHeader::parse(bytes).unwrap().base_offset
    }

    fn clear_cache(remote: &RemoteLog) {
        let mut cache = remote.cache.lock().unwrap();
        cache.entries.clear();
        cache.bytes = 0;
        remote.positions.lock().unwrap().clear();
    }

    #[tokio::test]
    async fn a_read_in_the_middle_gets_from_the_indexed_position_not_the_start() {
        let (store, remote, seg, positions) = indexed_segment().await;
        // A reader entering the segment at its start needs no index.
        let one = remote.read("t", 0, 0, 1).await.unwrap().unwrap();
        assert_eq!(first_offset(&one), 0);
        assert!(store.take("s.index").is_empty());
        clear_cache(&remote);
        store.take("");
        let one = remote.read("t", 0, 300, 1).await.unwrap().unwrap();
        assert_eq!(first_offset(&one), 300);
        // The offset index, whole, once; then the log from the chunk before the batch at most
        // (the indexed batch ends at most 256 bytes and a batch before it).
        assert_eq!(store.take("s.index"), vec![None]);
        let gets = store.take("s.log");
        let lowest = gets.iter().map(|r| r.clone().unwrap().start).min().unwrap();
        let floor = (positions[300] - 256 - 200) / 1024 * 1024;
        assert!(
            lowest >= floor && lowest > 0,
            "{gets:?} for {}",
            positions[300]
        );
        // Another read, elsewhere: the index comes from the cache.
        let one = remote.read("t", 0, 123, 1).await.unwrap().unwrap();
        assert_eq!(first_offset(&one), 123);
        assert!(store.take("s.index").is_empty());
        // A timestamp lookup: the time index, then the offset index, then the log near it.
        clear_cache(&remote);
        store.take("");
        assert_eq!(
            remote
                .offset_for_timestamp("t", 0, 3500, 400)
                .await
                .unwrap(),
            Some((250, 3500))
        );
        assert_eq!(store.take("s.timeindex"), vec![None]);
        let lowest = store
            .take("s.log")
            .iter()
            .map(|r| r.clone().unwrap().start)
            .min()
            .unwrap();
        assert!(
            lowest >= (positions[250] - 256 - 200) / 1024 * 1024,
            "{lowest}"
        );
        assert_eq!(
            remote
                .offset_for_timestamp("t", 0, 3495, 400)
                .await
                .unwrap(),
            Some((250, 3500))
        );
        assert_eq!(
            remote.max_timestamp("t", 0, 400).await.unwrap(),
            Some((399, 4990))
        );
        assert_eq!(remote.max_timestamp("t", 0, 390).await.unwrap(), None);
        // The same segment in a manifest written before indexes (no `indexes`): the same
        // answers, by walking from the start.
        let old = Manifest {
            topic: "old".into(),
            segments: vec![RemoteSegment {
                indexes: None,
                ..seg
            }],
            ..Manifest::default()
        };
        remote.publish(&old);
        clear_cache(&remote);
        store.take("");
        let one = remote.read("old", 0, 300, 1).await.unwrap().unwrap();
        assert_eq!(first_offset(&one), 300);
        let gets = store.take("s.log");
        assert_eq!(gets.first(), Some(&Some(0..1024)), "{gets:?}");
        assert_eq!(
            remote
                .offset_for_timestamp("old", 0, 3495, 400)
                .await
                .unwrap(),
            Some((250, 3500))
        );
        assert_eq!(
            remote.max_timestamp("old", 0, 400).await.unwrap(),
            Some((399, 4990))
        );
    }

    #[tokio::test]
    async fn a_damaged_or_wrong_index_is_never_followed() {
        let (store, remote, seg, positions) = indexed_segment().await;
        let ix = seg.indexes.clone().unwrap();
        let b = remote.bucket.clone();
        // An index whose CRC matches the manifest but whose entry for offset 300 names the
        // batch of offset 310: followed, it would serve 310 for 300.
        let mut wrong = crate::log::index::encode_entry(300, positions[310] as u32).to_vec();
        wrong.extend(crate::log::index::encode_entry(350, positions[350] as u32));
        let wrong_object = put(&b, "w.index", wrong).await;
        let mut bad_seg = seg.clone();
        bad_seg.indexes = Some(crate::tier::manifest::RemoteIndexes {
            offset_index: wrong_object,
            ..ix.clone()
        });
        let publish = |s: RemoteSegment| {
            remote.publish(&Manifest {
                topic: "t".into(),
                segments: vec![s],
                ..Manifest::default()
            })
        };
        publish(bad_seg.clone());
        let one = remote.read("t", 0, 300, 1).await.unwrap().unwrap();
        assert_eq!(first_offset(&one), 300);
        assert!(remote.index_found_bad(&bad_seg));
        // Known bad: not fetched again.
        clear_cache(&remote);
        store.take("");
        assert_eq!(
            first_offset(&remote.read("t", 0, 320, 1).await.unwrap().unwrap()),
            320
        );
        assert!(store.take("w.index").is_empty());
        // A damaged object (its CRC no longer matches) and a missing one: the walk serves.
        for damage in [true, false] {
            let (store, remote, seg, _) = indexed_segment().await;
            let key = remote.bucket.key(&ix.offset_index.key);
            if damage {
                let mut bytes = remote
                    .bucket
                    .store
                    .get(&key)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec();
                bytes[5] ^= 0x10;
                remote
                    .bucket
                    .store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .unwrap();
            } else {
                remote.bucket.store.delete(&key).await.unwrap();
            }
            store.take("");
            let one = remote.read("t", 0, 300, 1).await.unwrap().unwrap();
            assert_eq!(first_offset(&one), 300);
            assert!(remote.index_found_bad(&seg));
            assert_eq!(store.take("s.log").first(), Some(&Some(0..1024)));
        }
    }

    #[tokio::test]
    async fn aborted_transactions_come_from_the_segments_txn_indexes_in_order() {
        let store = Arc::new(Counting::default());
        let b = Bucket::new(store.clone(), "p", "memory://");
        let pacer = crate::tier::pace::Pacer::new(None);
        let txn = |producer_id, first_offset, last_offset, last_stable_offset| AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset,
        };
        let (t1, t2, t3) = (txn(1, 5, 12, 13), txn(2, 15, 18, 19), txn(3, 25, 27, 40));
        let seg = |base: i64, txn_index| RemoteSegment {
            base_offset: base,
            end_offset: base + 10,
            log: RemoteObject {
                key: format!("s{base}.log"),
                size: 1,
                crc32c: 0,
            },
            producer_snapshot: None,
            max_timestamp: -1,
            uploaded_ms: 0,
            indexes: None,
            leader_epochs: Vec::new(),
            txn_index,
        };
        let empty = remote_txn::upload(&b, &pacer, "s0", &[]).await.unwrap();
        let one = remote_txn::upload(&b, &pacer, "s10", &[t1, t2])
            .await
            .unwrap();
        let two = remote_txn::upload(&b, &pacer, "s20", &[t3]).await.unwrap();
        let remote = RemoteLog::new(b, 1 << 20);
        // [30, 40) was uploaded before transaction indexes were.
        let segments = vec![
            seg(0, Some(empty)),
            seg(10, Some(one.clone())),
            seg(20, Some(two)),
            seg(30, None),
        ];
        remote.publish(&Manifest {
            topic: "t".into(),
            segments: segments.clone(),
            ..Manifest::default()
        });
        store.take("");
        let found = |from, upper, local_start| {
            let remote = &remote;
            async move {
                remote
                    .aborted_transactions("t", 0, (from, upper), local_start)
                    .await
                    .unwrap()
            }
        };
        // t1 began before 10 and aborted after it; its stable offset (13) shows the rest of
        // the tier cannot concern [0, 10).
        assert_eq!(found(0, 10, 100).await, Some((vec![t1], true)));
        // An empty index is never fetched; a fetched one is kept in the cache.
        assert!(store.take("s0.txnindex").is_empty());
        assert_eq!(store.take("s10.txnindex").len(), 1);
        assert_eq!(found(13, 30, 100).await, Some((vec![t2, t3], true)));
        assert!(store.take("s10.txnindex").is_empty());
        // Up to the local log start only: the local log answers for the rest.
        assert_eq!(found(28, 50, 30).await, Some((vec![], false)));
        // A segment without an index is read to build one: here its log object is missing.
        assert!(remote
            .aborted_transactions("t", 0, (30, 35), 100)
            .await
            .is_err());
        let mut damaged = segments;
        damaged[1].txn_index = Some(RemoteObject {
            crc32c: one.crc32c ^ 1,
            ..one
        });
        remote.publish(&Manifest {
            topic: "t".into(),
            segments: damaged,
            version: 1,
            ..Manifest::default()
        });
        clear_cache(&remote);
        assert_eq!(found(0, 10, 100).await, None);
    }
}
