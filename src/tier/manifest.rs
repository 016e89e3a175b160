//! The per-partition manifest: which segment objects make up a partition's copy in the bucket.
//!
//! Never modified in place: version N+1 is a new object `manifest/<N+1:020>.json` created only
//! if absent, and readers take the highest version that parses. A crash leaves either the old
//! version or the new one complete (object stores publish a whole object or nothing), and two
//! writers cannot both create one version. Objects a new version stops referencing are listed
//! in it as retired and deleted only after a delay, so a reader holding the previous version
//! keeps working.

use futures_util::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Bucket, TierError};

/// Versions kept behind the latest, for readers that listed a moment ago.
const KEEP_VERSIONS: u64 = 3;

/// One object of a remote segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteObject {
    /// Key relative to the bucket prefix.
    pub key: String,
    pub size: u64,
    /// CRC-32C of the whole object, checked before any byte of it is used.
    pub crc32c: u32,
}

/// One segment in the bucket: offsets [base_offset, end_offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    pub base_offset: i64,
    /// The next segment's base offset when it was sealed (exclusive end).
    pub end_offset: i64,
    pub log: RemoteObject,
    /// Producer state at `end_offset`, when the log had a snapshot there.
    pub producer_snapshot: Option<RemoteObject>,
    /// Largest record timestamp, -1 if none.
    pub max_timestamp: i64,
    pub uploaded_ms: i64,
    /// The segment's offset and time indexes (`remote_index`); absent in manifests
    /// written before they were uploaded, whose reads walk batch headers instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexes: Option<RemoteIndexes>,
    /// The leader epoch of the segment's batches, from the first offset each one wrote (the
    /// `partitionLeaderEpoch` of its batches); empty in older manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leader_epochs: Vec<EpochStart>,
    /// The segment's aborted-transaction index (`remote_txn`), empty when it holds no ABORT
    /// marker; absent in manifests written before it was uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_index: Option<RemoteObject>,
}

impl RemoteSegment {
    /// Every object of the segment: its log, producer snapshot and indexes.
    pub fn objects(&self) -> impl Iterator<Item = &RemoteObject> {
        let indexes = self
            .indexes
            .iter()
            .flat_map(|ix| [&ix.offset_index, &ix.time_index]);
        std::iter::once(&self.log)
            .chain(&self.producer_snapshot)
            .chain(indexes)
            .chain(&self.txn_index)
    }
}

/// A segment's index objects, in Kafka's `.index` and `.timeindex` formats, built from the log
/// object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteIndexes {
    pub offset_index: RemoteObject,
    pub time_index: RemoteObject,
    /// The `index.interval.bytes` they were built with (the scrub rebuilds them to compare).
    pub interval_bytes: u64,
}

/// A leader epoch and the first offset of a segment written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: i32,
    pub start_offset: i64,
}

/// An object no longer referenced, deleted once `since_ms` is old enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub key: String,
    pub since_ms: i64,
}

/// A partition's copy in the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// The lease epoch of the broker that wrote it.
    pub lease_epoch: u64,
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    /// Ascending, non-overlapping.
    pub segments: Vec<RemoteSegment>,
    pub retired: Vec<Retired>,
    pub written_ms: i64,
    /// Where the last cleaning of the tier's compacted segments ended ([`super::clean`]): the
    /// records below it were deduplicated together. 0 before any.
    #[serde(default)]
    pub cleaned_to: i64,
    /// The earliest delete horizon of a tombstone that cleaning kept: the next cleaning is due
    /// then.
    #[serde(default)]
    pub tombstone_horizon: Option<i64>,
    /// When the last scrub cycle over the segments finished (ms since the epoch), so that a
    /// restart does not read the whole partition back again before the scrub interval is up. 0
    /// before any.
    #[serde(default)]
    pub scrubbed_ms: i64,
}

impl Manifest {
    /// The end of what the bucket holds (exclusive), or `None` when it holds nothing.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.end_offset)
    }

    /// Puts `segment` in, replacing every segment inside its range (a compacted rewrite of
    /// several segments) and retiring their objects. Returns false, changing nothing, when an
    /// existing segment straddles its boundaries.
    pub fn insert(&mut self, segment: RemoteSegment, now_ms: i64) -> bool {
        let (lo, hi) = (segment.base_offset, segment.end_offset);
        let overlaps = |s: &RemoteSegment| s.base_offset < hi && s.end_offset > lo;
        if self
            .segments
            .iter()
            .any(|s| overlaps(s) && (s.base_offset < lo || s.end_offset > hi))
        {
            return false;
        }
        let (replaced, kept): (Vec<_>, Vec<_>) = self.segments.drain(..).partition(|s| overlaps(s));
        self.segments = kept;
        for s in replaced {
            self.retire(s, now_ms);
        }
        let at = self.segments.partition_point(|s| s.base_offset < lo);
        self.segments.insert(at, segment);
        true
    }

    /// Moves the log start offset up to `log_start_offset` (retention, DeleteRecords) and
    /// drops the segments wholly below it; true when anything changed.
    pub fn trim_below(&mut self, log_start_offset: i64, now_ms: i64) -> bool {
        let moved = log_start_offset > self.log_start_offset;
        self.log_start_offset = self.log_start_offset.max(log_start_offset);
        let gone = self
            .segments
            .iter()
            .take_while(|s| s.end_offset <= log_start_offset)
            .count();
        for s in self.segments.drain(..gone).collect::<Vec<_>>() {
            self.retire(s, now_ms);
        }
        moved || gone > 0
    }

    fn retire(&mut self, s: RemoteSegment, now_ms: i64) {
        self.retire_objects(s.objects().cloned(), now_ms);
    }

    fn retire_objects(&mut self, objects: impl IntoIterator<Item = RemoteObject>, now_ms: i64) {
        let retired = objects.into_iter().map(|o| Retired {
            key: o.key,
            since_ms: now_ms,
        });
        self.retired.extend(retired);
    }

    /// The segment at exactly [base_offset, end_offset) whose log object is `log_key`.
    fn segment_mut(
        &mut self,
        (base_offset, end_offset): (i64, i64),
        log_key: &str,
    ) -> Option<&mut RemoteSegment> {
        self.segments.iter_mut().find(|s| {
            s.base_offset == base_offset && s.end_offset == end_offset && s.log.key == log_key
        })
    }

    /// Gives the segment at exactly [base_offset, end_offset) whose log object is `log_key` new
    /// index objects (built again from that log object by the scrub), retiring the ones it had;
    /// false, changing nothing, when the manifest holds no such segment.
    pub fn set_indexes(
        &mut self,
        (base_offset, end_offset): (i64, i64),
        log_key: &str,
        indexes: RemoteIndexes,
        leader_epochs: Vec<EpochStart>,
        now_ms: i64,
    ) -> bool {
        let Some(s) = self.segment_mut((base_offset, end_offset), log_key) else {
            return false;
        };
        let old = s.indexes.replace(indexes);
        s.leader_epochs = leader_epochs;
        let old = old
            .into_iter()
            .flat_map(|ix| [ix.offset_index, ix.time_index]);
        self.retire_objects(old, now_ms);
        true
    }

    /// Gives the segment of `log_key` covering [`base_offset`, `end_offset`) a transaction
    /// index built again from its log objects (one uploaded before they were has none; a damaged
    /// one is retired); false when the manifest no longer names that segment.
    pub fn set_txn_index(
        &mut self,
        (base_offset, end_offset): (i64, i64),
        log_key: &str,
        txn_index: RemoteObject,
        now_ms: i64,
    ) -> bool {
        let Some(s) = self.segment_mut((base_offset, end_offset), log_key) else {
            return false;
        };
        let old = s.txn_index.replace(txn_index);
        self.retire_objects(old, now_ms);
        true
    }

    /// Takes out the retired objects older than `delay_ms`: the caller deletes them after
    /// writing the manifest that no longer lists them.
    pub fn take_expired(&mut self, now_ms: i64, delay_ms: i64) -> Vec<String> {
        let (expired, kept): (Vec<_>, Vec<_>) = self
            .retired
            .drain(..)
            .partition(|r| now_ms - r.since_ms >= delay_ms);
        self.retired = kept;
        expired.into_iter().map(|r| r.key).collect()
    }
}

/// The folder of one partition's objects, relative to the prefix.
pub fn partition_dir(topic_id: &uuid::Uuid, partition: i32) -> String {
    format!("partitions/{topic_id}/{partition}")
}

fn version_key(dir: &str, version: u64) -> String {
    format!("{dir}/manifest/{version:020}.json")
}

async fn versions(bucket: &Bucket, dir: &str) -> Result<Vec<u64>, TierError> {
    let listed: Vec<_> = bucket
        .store
        .list(Some(&bucket.key(&format!("{dir}/manifest"))))
        .try_collect()
        .await?;
    let mut v: Vec<u64> = listed
        .iter()
        .filter_map(|m| {
            let rel = bucket.relative(&m.location);
            rel.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The latest manifest that parses (`None` when the partition has none), and the highest
/// version number present, parsed or not (the next write must go above it). A version that
/// does not parse is logged with its key and skipped.
pub async fn read_latest(bucket: &Bucket, dir: &str) -> Result<(Option<Manifest>, u64), TierError> {
    let all = versions(bucket, dir).await?;
    let top = all.last().copied().unwrap_or(0);
    for version in all.into_iter().rev() {
        let key = version_key(dir, version);
        let bytes = match bucket.store.get(&bucket.key(&key)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.version == version => return Ok((Some(m), top)),
            Ok(_) => tracing::error!(key, "manifest names another version; skipped"),
            Err(e) => tracing::error!(key, error = %e, "corrupt manifest; skipped"),
        }
    }
    Ok((None, top))
}

/// True when version `version` of the manifest in `dir` exists.
pub async fn exists(bucket: &Bucket, dir: &str, version: u64) -> Result<bool, TierError> {
    match bucket
        .store
        .head(&bucket.key(&version_key(dir, version)))
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes `manifest` as version `manifest.version` (which the caller set to the previous + 1),
/// creating it only if absent, then deletes versions older than a few behind.
pub async fn write(bucket: &Bucket, dir: &str, manifest: &Manifest) -> Result<(), TierError> {
    let body = serde_json::to_vec(manifest).expect("a manifest serializes");
    let key = version_key(dir, manifest.version);
    match bucket
        .store
        .put_opts(
            &bucket.key(&key),
            PutPayload::from(body),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(TierError::LeaseLost {
                epoch: manifest.lease_epoch,
            })
        }
        Err(e) => return Err(e.into()),
    }
    // Each write creates one version and deletes one old one, so a partition keeps a few.
    if let Some(old) = manifest
        .version
        .checked_sub(KEEP_VERSIONS + 1)
        .filter(|&v| v > 0)
    {
        match bucket
            .store
            .delete(&bucket.key(&version_key(dir, old)))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::debug!(error = %e, "cannot delete an old manifest version"),
        }
    }
    Ok(())
}

/// Manifest entries for the tier's unit tests.
#[cfg(test)]
impl RemoteSegment {
    /// The entry of segment [base, end): a one-byte log object named after its range, no
    /// indexes, and `epochs` as (leader epoch, first offset) pairs.
    pub(crate) fn for_test(base: i64, end: i64, epochs: &[(i32, i64)]) -> RemoteSegment {
        let log = RemoteObject {
            key: format!("s/{base}-{end}.log"),
            size: 1,
            crc32c: 0,
        };
        let leader_epochs = epochs
            .iter()
            .map(|&(epoch, start_offset)| EpochStart {
                epoch,
                start_offset,
            })
            .collect();
        RemoteSegment {
            base_offset: base,
            end_offset: end,
            log,
            producer_snapshot: None,
            max_timestamp: -1,
            uploaded_ms: 0,
            indexes: None,
            leader_epochs,
            txn_index: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn seg(base: i64, end: i64) -> RemoteSegment {
        RemoteSegment::for_test(base, end, &[])
    }

    #[test]
    fn insert_replaces_segments_inside_its_range_and_refuses_straddling() {
        let mut m = Manifest::default();
        assert!(m.insert(seg(0, 10), 0));
        assert!(m.insert(seg(10, 20), 0));
        assert!(m.insert(seg(20, 30), 0));
        assert_eq!(m.end_offset(), Some(30));
        // A compacted rewrite of [0, 20) replaces two segments.
        assert!(m.insert(seg(0, 20), 5));
        assert_eq!(m.segments.len(), 2);
        assert_eq!(m.retired.len(), 2);
        assert!(!m.insert(seg(15, 25), 5));
        assert!(m.trim_below(20, 6));
        // Inside a segment: only the start moves, which is still a change to write.
        assert!(m.trim_below(21, 6));
        assert!(!m.trim_below(21, 6));
        assert_eq!(m.segments.len(), 1);
        assert_eq!(m.log_start_offset, 21);
        assert_eq!(m.take_expired(7, 2).len(), 2);
        assert_eq!(m.retired.len(), 1);
    }

    #[test]
    fn a_manifest_written_before_indexes_reads_and_index_objects_retire_with_their_segment() {
        // Version 1 of the format: segments without `indexes` or `leader_epochs`.
        let old = r#"{"version":7,"lease_epoch":2,"topic":"t","partition":0,"log_start_offset":0,
            "segments":[{"base_offset":0,"end_offset":10,
              "log":{"key":"s/0.log","size":100,"crc32c":5},"producer_snapshot":null,
              "max_timestamp":-1,"uploaded_ms":0}],
            "retired":[],"written_ms":0}"#;
        let mut m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.segments[0].indexes, None);
        assert!(m.segments[0].leader_epochs.is_empty());
        assert_eq!(m.segments[0].txn_index, None);
        // Written again without the new keys: an older Cairn reads it as before.
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            !text.contains("indexes")
                && !text.contains("leader_epochs")
                && !text.contains("txn_index"),
            "{text}"
        );
        let object = |key: &str| RemoteObject {
            key: key.into(),
            size: 0,
            crc32c: 0,
        };
        let indexes = |n: u8| RemoteIndexes {
            offset_index: object(&format!("s/0-{n}.index")),
            time_index: object(&format!("s/0-{n}.timeindex")),
            interval_bytes: 4096,
        };
        let epochs = vec![EpochStart {
            epoch: 0,
            start_offset: 0,
        }];
        assert!(!m.set_indexes((0, 10), "s/other.log", indexes(1), vec![], 0));
        assert!(m.set_indexes((0, 10), "s/0.log", indexes(1), epochs.clone(), 0));
        assert!(m.retired.is_empty(), "there were none to retire");
        assert!(m.set_indexes((0, 10), "s/0.log", indexes(2), epochs.clone(), 1));
        let retired: Vec<&str> = m.retired.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(retired, ["s/0-1.index", "s/0-1.timeindex"]);
        let again: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
        assert_eq!(m.segments[0].objects().count(), 3);
        m.segments[0].txn_index = Some(object("s/0-2.txnindex"));
        assert!(m.trim_below(10, 2));
        let retired: Vec<&str> = m.retired.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            retired[2..],
            [
                "s/0.log",
                "s/0-2.index",
                "s/0-2.timeindex",
                "s/0-2.txnindex"
            ]
        );
    }

    #[tokio::test]
    async fn versions_are_created_once_and_the_latest_wins() {
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let dir = "partitions/x/0";
        assert!(read_latest(&b, dir).await.unwrap().0.is_none());
        for v in 1..=20 {
            let m = Manifest {
                version: v,
                ..Manifest::default()
            };
            write(&b, dir, &m).await.unwrap();
        }
        assert_eq!(read_latest(&b, dir).await.unwrap().0.unwrap().version, 20);
        assert_eq!(versions(&b, dir).await.unwrap().len(), 4);
        let dup = Manifest {
            version: 20,
            ..Manifest::default()
        };
        assert!(matches!(
            write(&b, dir, &dup).await,
            Err(TierError::LeaseLost { .. })
        ));
        // A damaged latest version is skipped.
        b.store
            .put(
                &b.key(&version_key(dir, 21)),
                PutPayload::from_static(b"{torn"),
            )
            .await
            .unwrap();
        let (latest, top) = read_latest(&b, dir).await.unwrap();
        assert_eq!((latest.unwrap().version, top), (20, 21));
    }
}
