//! Reads from the tier: the offsets a tiered partition holds only in the bucket (below its local
//! log start, after local retention deleted the local copy) are served from the segment objects.
//!
//! Owns the catalog of every tiered partition's latest manifest (published by the uploader each
//! time it reads or writes one), a cache of 1 MiB chunks of segment objects (ranged GETs) bounded
//! by `cairn.remote.cache.bytes`, and, per object, the batch positions already found, so a
//! sequential reader's next fetch goes straight to its batch. A batch is found by walking batch
//! headers; the chunk a sequential reader needs next is fetched in the background while it
//! handles the current one. Every batch served has its CRC-32C checked first, and a damaged or truncated one is
//! logged with the object's key (once) and reported as an error, never served. No partition lock
//! is held here: the handlers call this after the local read answered. Knows no Kafka request
//! type.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;

use super::manifest::{Manifest, RemoteObject, RemoteSegment};
use super::{Bucket, TierError};
use crate::log::batch::{self, HEADER_SIZE, LOG_OVERHEAD};

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
            let Some(mut pos) = self.locate(seg, start).await? else {
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
    /// before it; `None` past the segment's last batch.
    async fn locate(&self, seg: &RemoteSegment, offset: i64) -> Result<Option<u64>, TierError> {
        let mut pos = {
            let known = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            known
                .get(&seg.log.key)
                .and_then(|m| m.range(..=offset).next_back().map(|(_, &p)| p))
                .unwrap_or(0)
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
}
