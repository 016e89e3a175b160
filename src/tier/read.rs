//! Reads from the tier: the offsets a tiered partition holds only in the bucket (below its local
//! log start, after local retention deleted the local copy) are served from the segment objects.
//!
//! Owns the catalog of every tiered partition's latest manifest (published by the uploader each
//! time it reads or writes one), one cache, least recently used first and bounded by
//! `cairn.remote.cache.bytes`, of 1 MiB chunks of segment objects (ranged GETs) and of whole
//! index objects (offset, time and transaction indexes: none is kept outside it, so a partition
//! of any number of remote segments holds at most that much of them), and, per object, the
//! batch positions already found (at most `MAX_POSITIONS` over all objects), so a sequential
//! reader's next fetch goes straight to its batch. A batch is found through the segment's
//! offset index (a timestamp through its time index first, see `remote_index`), then by walking
//! batch headers from the indexed position (from the start for a segment without a usable
//! index: uploaded before indexes were, or with a damaged one, which is logged once by its key);
//! the chunk a sequential reader needs next is fetched in the background while it handles the
//! current one. Every batch served has its CRC-32C checked first, and a damaged or truncated
//! one is logged with the object's key (once) and reported as an error, never served. Records
//! are handed out as slices of the cached chunks ([`RemoteRecords`]), so a Fetch writes them to
//! the socket from there: no copy gathers them into one buffer or into the response. No
//! partition lock is held here: the handlers call this after the local read answered. Knows no
//! Kafka request type.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStoreExt};

use super::manifest::{Manifest, RemoteObject, RemoteSegment};
use super::remote_index;
use super::remote_txn;
use super::txn_rebuild;
use super::{Bucket, TierError};
use crate::log::batch::{self, HEADER_SIZE};
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
    positions: Mutex<Positions>,
    /// Objects found corrupt, so each is logged once.
    corrupt: Mutex<BTreeSet<String>>,
    /// Index objects found missing or damaged (logged once): their segments' reads walk batch
    /// headers instead, and the scrub builds them again.
    bad_indexes: Mutex<BTreeSet<String>>,
    /// The size of a ranged GET ([`CHUNK`]; tests use tiny ones to cross chunk boundaries).
    chunk_size: u64,
}

/// Objects are read in aligned chunks of this size (ranged GETs), each cached on its own.
const CHUNK: u64 = 1 << 20;
/// Remembered batch positions, over all objects (the map is emptied past it).
const MAX_POSITIONS: usize = 100_000;

/// Chunks of segment objects and whole index objects, by object key and chunk index (an index
/// object is its chunk 0), least recently used evicted first past `capacity` bytes. A lookup
/// borrows the key: nothing is allocated on a hit.
struct Cache {
    objects: HashMap<Arc<str>, HashMap<u64, (Bytes, u64)>>,
    /// (key, chunk index) by the stamp of their last use.
    order: BTreeMap<u64, (Arc<str>, u64)>,
    stamp: u64,
    bytes: u64,
    capacity: u64,
}

impl Cache {
    fn new(capacity: u64) -> Cache {
        Cache {
            objects: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
            bytes: 0,
            capacity,
        }
    }

    fn get(&mut self, key: &str, index: u64) -> Option<Bytes> {
        let entry = self.objects.get_mut(key)?.get_mut(&index)?;
        self.stamp += 1;
        let used = self
            .order
            .remove(&entry.1)
            .expect("every entry is in the order");
        entry.1 = self.stamp;
        self.order.insert(self.stamp, used);
        Some(entry.0.clone())
    }

    fn contains(&self, key: &str, index: u64) -> bool {
        self.objects
            .get(key)
            .is_some_and(|chunks| chunks.contains_key(&index))
    }

    fn put(&mut self, key: &str, index: u64, bytes: Bytes) {
        if bytes.len() as u64 > self.capacity || self.contains(key, index) {
            return;
        }
        let name = match self.objects.get_key_value(key) {
            Some((name, _)) => name.clone(),
            None => Arc::from(key),
        };
        self.stamp += 1;
        self.bytes += bytes.len() as u64;
        self.order.insert(self.stamp, (name.clone(), index));
        self.objects
            .entry(name)
            .or_default()
            .insert(index, (bytes, self.stamp));
        while self.bytes > self.capacity {
            let Some((_, (name, index))) = self.order.pop_first() else {
                break;
            };
            let Some(chunks) = self.objects.get_mut(&name) else {
                continue;
            };
            if let Some((old, _)) = chunks.remove(&index) {
                self.bytes -= old.len() as u64;
            }
            if chunks.is_empty() {
                self.objects.remove(&name);
            }
        }
    }

    /// Entries held (chunks and index objects).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }

    #[cfg(test)]
    fn clear(&mut self) {
        self.objects.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

/// Batch positions found in objects: per object key, offset → a position at or before the
/// batch holding it; `count` over all objects.
#[derive(Default)]
struct Positions {
    by_object: BTreeMap<String, BTreeMap<i64, u64>>,
    count: usize,
}

impl Positions {
    fn clear(&mut self) {
        self.by_object.clear();
        self.count = 0;
    }
}

/// Records read from the tier: whole, checked batches of one segment object, as slices of the
/// cached chunks they lie in.
#[derive(Debug)]
pub struct RemoteRecords {
    pub pieces: Vec<Bytes>,
    /// Bytes over all pieces.
    pub len: usize,
    /// The last offset of the last batch.
    pub last_offset: i64,
}

impl RemoteRecords {
    /// The records in one buffer (copied when they lie in more than one chunk).
    pub fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.pieces) {
            Ok([one]) => one,
            Err(pieces) => {
                let mut out = BytesMut::with_capacity(self.len);
                for piece in &pieces {
                    out.extend_from_slice(piece);
                }
                out.freeze()
            }
        }
    }
}

/// Consecutive bytes [start, end) of one object, as slices of its cached chunks.
struct Span {
    start: u64,
    end: u64,
    pieces: Vec<Bytes>,
}

impl Span {
    /// Bytes [from, to) of the span: borrowed when one piece holds them, else copied.
    fn bytes(&self, from: u64, to: u64) -> Cow<'_, [u8]> {
        let mut at = self.start;
        let mut gathered = Vec::new();
        for piece in &self.pieces {
            let piece_end = at + piece.len() as u64;
            if from < piece_end && to > at {
                let (lo, hi) = (
                    (from.max(at) - at) as usize,
                    (to.min(piece_end) - at) as usize,
                );
                if from >= at && to <= piece_end {
                    return Cow::Borrowed(&piece[lo..hi]);
                }
                gathered.extend_from_slice(&piece[lo..hi]);
            }
            at = piece_end;
        }
        Cow::Owned(gathered)
    }

    /// The pieces holding [start, end).
    fn take(self, end: u64) -> Vec<Bytes> {
        let mut at = self.start;
        let mut out = Vec::with_capacity(self.pieces.len());
        for piece in self.pieces {
            if at >= end {
                break;
            }
            let keep = ((end - at) as usize).min(piece.len());
            at += piece.len() as u64;
            out.push(piece.slice(..keep));
        }
        out
    }
}

impl RemoteLog {
    pub fn new(bucket: Bucket, cache_bytes: u64) -> RemoteLog {
        RemoteLog {
            bucket,
            manifests: RwLock::new(BTreeMap::new()),
            deleted_before: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(Cache::new(cache_bytes)),
            positions: Mutex::new(Positions::default()),
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
        let records = self
            .read_pieces(topic, partition, offset, max_bytes)
            .await?;
        Ok(records.map(RemoteRecords::into_bytes))
    }

    /// [`RemoteLog::read`]'s batches as slices of the cached chunks they lie in, for a caller
    /// that writes them out without gathering them into one buffer.
    pub async fn read_pieces(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<RemoteRecords>, TierError> {
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
            let records = self.batches_from(seg, pos, max_bytes).await?;
            let end = pos + records.len as u64;
            self.remember(&seg.log.key, records.last_offset + 1, end);
            self.prefetch(&m, seg, end);
            return Ok(Some(records));
        }
        Ok(None)
    }

    /// The whole batches of `seg` from `pos` (a batch start) that fit `max_bytes` (the first
    /// one whatever its size), each checked (size, CRC-32C) before it is served. Headers and
    /// CRCs are read in the cached chunks themselves; only a batch crossing a chunk boundary is
    /// copied, for its check.
    async fn batches_from(
        &self,
        seg: &RemoteSegment,
        pos: u64,
        max_bytes: usize,
    ) -> Result<RemoteRecords, TierError> {
        let mut span = Span {
            start: pos,
            end: pos,
            pieces: Vec::new(),
        };
        let (mut end, mut last_offset) = (pos, None);
        while end < seg.log.size {
            // The next batch cannot fit when its header alone does not.
            if end > pos && (end - pos) as usize + HEADER_SIZE > max_bytes {
                break;
            }
            let head_end = (end + HEADER_SIZE as u64).min(seg.log.size);
            self.cover(seg, &mut span, head_end).await?;
            let size = {
                let head = span.bytes(end, head_end);
                if head.len() < HEADER_SIZE {
                    return Err(
                        self.found_corrupt(seg, format!("a truncated batch at position {end}"))
                    );
                }
                let header =
                    batch::BatchHeader::parse(&head).map_err(|e| self.found_corrupt(seg, e))?;
                header.size() as u64
            };
            if size < HEADER_SIZE as u64 || end + size > seg.log.size {
                return Err(self.found_corrupt(
                    seg,
                    format!("a batch of {size} bytes at position {end} does not fit the object"),
                ));
            }
            if end > pos && (end + size - pos) as usize > max_bytes {
                break;
            }
            self.cover(seg, &mut span, end + size).await?;
            let header = batch::check_batch(&span.bytes(end, end + size))
                .map_err(|e| self.found_corrupt(seg, format!("batch at position {end}: {e}")))?;
            last_offset = Some(header.last_offset());
            end += size;
        }
        let Some(last_offset) = last_offset else {
            return Err(self.found_corrupt(seg, format!("no batch at position {pos}")));
        };
        Ok(RemoteRecords {
            pieces: span.take(end),
            len: (end - pos) as usize,
            last_offset,
        })
    }

    /// Extends `span` with the chunks of `seg` it needs to reach `to` (at most the object's
    /// size).
    async fn cover(&self, seg: &RemoteSegment, span: &mut Span, to: u64) -> Result<(), TierError> {
        while span.end < to {
            let index = span.end / self.chunk_size;
            let chunk = self.chunk(seg, index).await?;
            let lo = span.end - index * self.chunk_size;
            if lo >= chunk.len() as u64 {
                return Err(self.found_corrupt(seg, format!("no bytes at position {}", span.end)));
            }
            span.pieces.push(chunk.slice(lo as usize..));
            span.end = index * self.chunk_size + chunk.len() as u64;
        }
        Ok(())
    }

    /// The aborted transactions a `read_committed` fetch at `from` returning records below
    /// `upper` must skip, from the transaction indexes of the tier's segments below `local_start`
    /// (the local log answers from there), as (entries, complete: no later entry can concern the
    /// range). A segment uploaded before transaction indexes were, or whose index object is
    /// missing or damaged, has its entries built from the log objects ([`txn_rebuild`]) until the
    /// scrub puts a sound index into the manifest.
    pub async fn aborted_transactions(
        &self,
        topic: &str,
        partition: i32,
        (from, upper): (i64, i64),
        local_start: i64,
    ) -> Result<(Vec<AbortedTxn>, bool), TierError> {
        let Some(m) = self.manifest(topic, partition) else {
            return Ok((Vec::new(), false));
        };
        let first = m.segments.partition_point(|s| s.end_offset <= from);
        let mut out = Vec::new();
        for (i, seg) in m.segments.iter().enumerate().skip(first) {
            if seg.base_offset >= local_start {
                break;
            }
            let entries = match self.txn_index(seg).await? {
                Some(bytes) => AbortedTxn::decode_all(&bytes),
                None => txn_rebuild::rebuild(&self.bucket, &m.segments, i).await?,
            };
            if remote_txn::collect(&entries, from, upper, &mut out) {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// The transaction index object of `seg`, checked; `None` when it has none (uploaded before
    /// they were) or it is missing or damaged (noted for the scrub).
    pub(crate) async fn txn_index(&self, seg: &RemoteSegment) -> Result<Option<Bytes>, TierError> {
        match &seg.txn_index {
            None => Ok(None),
            Some(object) if object.size == 0 => Ok(Some(Bytes::new())),
            Some(object) => {
                let check = |b: &[u8]| remote_index::check_object(object, b);
                self.index_object(object, check).await
            }
        }
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
            cache.contains(&next.log.key, index)
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
                .by_object
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
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&object.key, 0)
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
            .put(&object.key, 0, bytes.clone());
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
        let bad = |o: &RemoteObject| self.index_known_bad(&o.key);
        seg.indexes
            .as_ref()
            .is_some_and(|ix| bad(&ix.offset_index) || bad(&ix.time_index))
            || seg.txn_index.as_ref().is_some_and(bad)
    }

    /// Notes that every offset from `offset` on lies at or after `position` of object `key`.
    fn remember(&self, key: &str, offset: i64, position: u64) {
        let mut known = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if known.count >= MAX_POSITIONS {
            known.clear();
        }
        // A sequential reader's object is known already: no key to allocate.
        let added = match known.by_object.get_mut(key) {
            Some(positions) => positions.insert(offset, position).is_none(),
            None => {
                let positions = BTreeMap::from([(offset, position)]);
                known.by_object.insert(key.to_string(), positions);
                true
            }
        };
        known.count += usize::from(added);
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
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&seg.log.key, index)
        {
            return Ok(b);
        }
        let (lo, hi) = (
            index * self.chunk_size,
            ((index + 1) * self.chunk_size).min(seg.log.size),
        );
        let path = self.bucket.key(&seg.log.key);
        let got = tokio::time::timeout(READ_TIMEOUT, get_range(&self.bucket, &path, lo..hi))
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
            .put(&seg.log.key, index, got.clone());
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

/// Bytes `range` of the object at `path`. A directory store's answer is its open file, read here
/// straight into a buffer of the range's size (object_store's own ranged read zeroes the buffer
/// first, which cost as much CPU as the read); any other store's answer is collected.
async fn get_range(bucket: &Bucket, path: &Path, range: Range<u64>) -> Result<Bytes, TierError> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..GetOptions::default()
    };
    let got = bucket.store.get_opts(path, options).await?;
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(file, _) => {
            tokio::task::spawn_blocking(move || read_file_range(file, range))
                .await
                .map_err(std::io::Error::other)?
        }
        GetResultPayload::Stream(stream) => {
            Ok(object_store::collect_bytes(stream, Some(range.end - range.start)).await?)
        }
    }
}

/// Bytes `range` of `file` (fewer at its end), read into a buffer never zeroed.
fn read_file_range(mut file: std::fs::File, range: Range<u64>) -> Result<Bytes, TierError> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(range.start))?;
    let len = range.end.saturating_sub(range.start);
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
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
        let second = batch::BatchHeader::parse(&rest).unwrap().size();
        assert_eq!(batch::peek(&rest[second..]).map(|p| p.0), Some(2));
        assert_eq!(rest.len(), 2 * second);
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
        remote.cache.lock().unwrap().clear();
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
        remote.cache.lock().unwrap().clear();
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
        remote.cache.lock().unwrap().clear();
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

    /// A partition of many remote segments, each with offset, time and transaction indexes, read
    /// under a cache far smaller than those indexes together: what the cache holds stays within
    /// its bound (an index read once is not kept for good: a second pass fetches it again) and
    /// every answer stays exact.
    #[tokio::test]
    async fn many_segments_read_under_a_small_cache_stay_bounded_and_exact() {
        const SEGMENTS: i64 = 40;
        const PER: i64 = 50;
        const CAPACITY: u64 = 2048;
        let store = Arc::new(Counting::default());
        let b = Bucket::new(store.clone(), "p", "memory://");
        let pacer = crate::tier::pace::Pacer::new(None);
        let mut segments = Vec::new();
        for s in 0..SEGMENTS {
            let base = s * PER;
            let bytes = remote_index::tests::segment_bytes(base, PER);
            let mut index = remote_index::IndexBuilder::new(base, 256);
            index.feed(&bytes);
            let built = index.finish(bytes.len() as u64).unwrap();
            let stem = format!("s{base}");
            let indexes = remote_index::upload(&b, &pacer, &stem, &built)
                .await
                .unwrap();
            // One aborted transaction per segment, over [base + 10, base + 20].
            let aborted = AbortedTxn {
                producer_id: s,
                first_offset: base + 10,
                last_offset: base + 20,
                last_stable_offset: base + 21,
            };
            let txn_index = remote_txn::upload(&b, &pacer, &stem, &[aborted])
                .await
                .unwrap();
            segments.push(RemoteSegment {
                base_offset: base,
                end_offset: base + PER,
                log: put(&b, &format!("{stem}.log"), bytes).await,
                producer_snapshot: None,
                max_timestamp: 1000 + 10 * (base + PER - 1),
                uploaded_ms: 0,
                indexes: Some(indexes),
                leader_epochs: built.epochs,
                txn_index: Some(txn_index),
            });
        }
        let index_bytes: u64 = segments
            .iter()
            .map(|s| {
                let ix = s.indexes.as_ref().unwrap();
                ix.offset_index.size + ix.time_index.size + s.txn_index.as_ref().unwrap().size
            })
            .sum();
        assert!(index_bytes > 4 * CAPACITY, "{index_bytes} bytes of indexes");
        let mut remote = RemoteLog::new(b, CAPACITY);
        remote.chunk_size = 1024;
        let remote = Arc::new(remote);
        remote.publish(&Manifest {
            topic: "t".into(),
            segments,
            ..Manifest::default()
        });
        for pass in 0..2 {
            store.take("");
            for s in 0..SEGMENTS {
                let base = s * PER;
                let offset = base + 37;
                let one = remote.read("t", 0, offset, 1).await.unwrap().unwrap();
                assert_eq!(first_offset(&one), offset);
                let ts = 1000 + 10 * (base + 33) - 5;
                let found = remote
                    .offset_for_timestamp("t", 0, ts, SEGMENTS * PER)
                    .await
                    .unwrap();
                assert_eq!(found, Some((base + 33, ts + 5)));
                let (aborted, complete) = remote
                    .aborted_transactions("t", 0, (base + 5, base + 15), i64::MAX)
                    .await
                    .unwrap();
                let producers: Vec<i64> = aborted.iter().map(|a| a.producer_id).collect();
                assert_eq!((producers, complete), (vec![s], true));
                let cache = remote.cache.lock().unwrap();
                let held: u64 = cache
                    .objects
                    .values()
                    .flat_map(|chunks| chunks.values())
                    .map(|(bytes, _)| bytes.len() as u64)
                    .sum();
                assert_eq!(held, cache.bytes);
                assert!(held <= CAPACITY, "{held} bytes cached");
                assert!(
                    cache.len() <= CAPACITY as usize / 20,
                    "{} entries",
                    cache.len()
                );
            }
            if pass == 1 {
                // Every segment's time and transaction indexes were fetched again.
                let gets = store.gets.lock().unwrap();
                for ext in [".timeindex", ".txnindex"] {
                    let n = gets.iter().filter(|(k, _)| k.ends_with(ext)).count();
                    assert_eq!(n, SEGMENTS as usize, "{ext}");
                }
            }
        }
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
        assert_eq!(found(0, 10, 100).await, (vec![t1], true));
        // An empty index is never fetched; a fetched one is kept in the cache.
        assert!(store.take("s0.txnindex").is_empty());
        assert_eq!(store.take("s10.txnindex").len(), 1);
        assert_eq!(found(13, 30, 100).await, (vec![t2, t3], true));
        assert!(store.take("s10.txnindex").is_empty());
        // Up to the local log start only: the local log answers for the rest.
        assert_eq!(found(28, 50, 30).await, (vec![], false));
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
        let damaged_segment = damaged[1].clone();
        remote.publish(&Manifest {
            topic: "t".into(),
            segments: damaged,
            version: 1,
            ..Manifest::default()
        });
        clear_cache(&remote);
        // A damaged index is never followed: its entries are built from the log objects
        // instead (missing here, so the tier cannot answer), and the scrub is told.
        assert!(remote
            .aborted_transactions("t", 0, (0, 10), 100)
            .await
            .is_err());
        assert!(remote.index_found_bad(&damaged_segment));
    }
}
