//! Compaction in the tier: the cleaner's work on the segments of a compacted tiered topic that
//! only the bucket holds (below the local log start: after local retention, or after a restore
//! onto an empty disk). Local segments are cleaned by the log's cleaner and copied again by the
//! uploader; this module cleans the rest with the same rules: `log::cleaner`'s bounded key map,
//! its batch filter (a key's latest record stays, tombstones until their delete horizon) and its
//! aborted-transaction ranges (an aborted record never stands for its key, and goes).
//!
//! One pass, run by the uploader between its copies of the partition (so it stays the one writer
//! of the partition's manifest): (1) read every segment object from the log start with ranged
//! GETs, a batch at a time (each batch's CRC and each object's size and CRC-32C checked),
//! collecting the aborted transactions from their markers; (2) build the key map over the dirty
//! section, from where the last pass ended (`cleaned_to` in the manifest) to the end of the
//! tier or the first still-open transaction, until the map is full (memory bounded by
//! `log.cleaner.dedupe.buffer.size`); (3) rewrite each remote-only segment below where the map
//! ended into a new object (a new key; existing objects are never modified), its producer
//! snapshot copied beside it. The caller puts the cleaned segments into the next manifest
//! version in one atomic write; the objects they replace are retired there and deleted after
//! `file.delete.delay.ms`, so a reader holding the previous manifest keeps working. A crash
//! before that write leaves only orphans (collected at the next start); after it, the cleaned
//! state is complete. A reader or a restore sees one manifest version or the other, never a
//! half-cleaned partition. Knows no Kafka request type.

use std::collections::HashMap;

use bytes::Bytes;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::manifest::{Manifest, RemoteObject, RemoteSegment};
use super::object::BatchReader;
use super::pace::Pacer;
use super::remote_index::{self, log_stem, IndexBuilder};
use super::remote_txn;
use super::{now_ms, Bucket, TierError};
use crate::config::LogConfig;
use crate::log::batch::BatchHeader;
use crate::log::cleaner::aborted::AbortedRanges;
use crate::log::cleaner::key_map::KeyOffsetMap;
use crate::log::cleaner::rewrite::{self, BatchOutcome, FilterStats, RetainRules};
use crate::log::partition::txn;
use crate::log::txn_index::AbortedTxn;

/// Cleaned objects are written in multipart chunks of this size.
const WRITE_CHUNK: usize = 8 << 20;
/// Marker type of an ABORT control record.
const ABORT: i16 = 0;

/// What one pass produced: the caller inserts `segments` into the manifest and records
/// `cleaned_to` and `tombstone_horizon` in it.
#[derive(Debug, Default)]
pub(super) struct Cleaning {
    /// The cleaned replacements, each covering exactly the range of the segment it replaces.
    pub(super) segments: Vec<RemoteSegment>,
    /// Where the key map ended: every record below it was deduplicated against it.
    pub(super) cleaned_to: i64,
    /// The earliest delete horizon of a tombstone kept in the segments this pass filtered.
    pub(super) tombstone_horizon: Option<i64>,
    pub(super) stats: FilterStats,
}

/// True when the tier's part of a compacted partition needs a pass: it has remote-only segments,
/// and new data arrived since the last pass beyond `min.cleanable.dirty.ratio` (or waited half of
/// `delete.retention.ms`, so a tombstone's older values in the tier go before the log's cleaner
/// may drop the tombstone locally), or a kept tombstone reached its delete horizon.
pub(super) fn due(m: &Manifest, cfg: &LogConfig, local_start: i64, now: i64) -> bool {
    if !cfg.cleanup_policy.compact || !m.segments.iter().any(|s| s.end_offset <= local_start) {
        return false;
    }
    if m.tombstone_horizon.is_some_and(|h| h <= now) {
        return true;
    }
    let total: u64 = m.segments.iter().map(|s| s.log.size).sum();
    let dirty: Vec<&RemoteSegment> = m
        .segments
        .iter()
        .filter(|s| s.end_offset > m.cleaned_to)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.log.size).sum();
    if dirty.is_empty() || total == 0 {
        return false;
    }
    let ratio = dirty_bytes as f64 / total as f64;
    let oldest = dirty.iter().map(|s| s.uploaded_ms).min().unwrap_or(now);
    ratio >= cfg.min_cleanable_dirty_ratio || now - oldest >= cfg.delete_retention_ms / 2
}

/// The aborted transactions of the segments, and the first offset of a transaction still open at
/// their end (its outcome is unknown: nothing from it on is mapped).
async fn transactions(
    bucket: &Bucket,
    segments: &[&RemoteSegment],
) -> Result<(AbortedRanges, Option<i64>), TierError> {
    let mut open: HashMap<i64, i64> = HashMap::new();
    let mut aborted = Vec::new();
    for seg in segments {
        let mut reader = BatchReader::new(bucket, &seg.log);
        while let Some((h, bytes)) = reader.next().await? {
            if h.is_control() {
                let first = open.remove(&h.producer_id);
                if let (Some(first), Some((ABORT, _))) = (first, txn::marker(&bytes)) {
                    aborted.push(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset: first,
                        last_offset: h.base_offset,
                        last_stable_offset: h.base_offset,
                    });
                }
            } else if h.is_transactional() {
                open.entry(h.producer_id).or_insert(h.base_offset);
            }
        }
    }
    Ok((AbortedRanges::new(aborted), open.values().min().copied()))
}

/// Fills `map` with the latest offset of each key in [from, to), skipping markers and aborted
/// records; returns where it stopped (the first record not mapped, when the map filled).
async fn build_map(
    bucket: &Bucket,
    segments: &[&RemoteSegment],
    aborted: &AbortedRanges,
    map: &mut KeyOffsetMap,
    (from, to): (i64, i64),
) -> Result<i64, TierError> {
    for seg in segments
        .iter()
        .filter(|s| s.end_offset > from && s.base_offset < to)
    {
        let mut reader = BatchReader::new(bucket, &seg.log);
        while let Some((h, bytes)) = reader.next().await? {
            if h.base_offset >= to {
                return Ok(to);
            }
            if h.last_offset() < from || h.is_control() || h.records_count == 0 {
                continue;
            }
            if aborted.holds(&h) {
                continue;
            }
            let full_at =
                rewrite::map_keys(&h, &bytes, map, (from, to)).map_err(|e| corrupt(&seg.log, e))?;
            if let Some(offset) = full_at {
                return Ok(offset);
            }
        }
    }
    Ok(to)
}

fn corrupt(object: &RemoteObject, e: impl std::fmt::Display) -> TierError {
    tracing::error!(key = %object.key, error = %e, "corrupt object in the tier; not cleaned");
    TierError::Corrupt {
        key: object.key.clone(),
        reason: e.to_string(),
    }
}

/// Where the cleaned objects go and who may write them.
pub(super) struct Target<'a> {
    pub(super) bucket: &'a Bucket,
    pub(super) pacer: &'a Pacer,
    pub(super) lease: &'a super::lease::Lease,
    /// The partition's folder in the bucket.
    pub(super) dir: &'a str,
    /// `index.interval.bytes`: how the cleaned segments' indexes are built.
    pub(super) index_interval_bytes: u64,
}

/// One pass over the tier's part of a compacted partition whose local log starts at
/// `local_start`. Uploads the cleaned objects; changes nothing in `m` (the caller does).
pub(super) async fn clean(
    target: &Target<'_>,
    m: &Manifest,
    cfg: &LogConfig,
    local_start: i64,
    map_bytes: usize,
) -> Result<Cleaning, TierError> {
    let bucket = target.bucket;
    let now = now_ms();
    let segments: Vec<&RemoteSegment> = m
        .segments
        .iter()
        .filter(|s| s.end_offset > m.log_start_offset)
        .collect();
    let Some(tier_end) = m.end_offset() else {
        return Ok(Cleaning::default());
    };
    let (aborted, open_from) = transactions(bucket, &segments).await?;
    let from = m.cleaned_to.max(m.log_start_offset);
    let to = open_from.map_or(tier_end, |o| o.min(tier_end)).max(from);
    let mut map = KeyOffsetMap::new(map_bytes, (to - from).max(1) as usize);
    let end = build_map(bucket, &segments, &aborted, &mut map, (from, to)).await?;
    let rules = RetainRules {
        map: &map,
        now_ms: now,
        delete_retention_ms: cfg.delete_retention_ms,
        upper_bound_offset: end,
    };
    let mut out = Cleaning {
        cleaned_to: end,
        ..Cleaning::default()
    };
    for seg in segments
        .iter()
        .filter(|s| s.end_offset <= local_start && s.base_offset < end)
    {
        if let Some(cleaned) =
            rewrite_segment(target, seg, &aborted, &rules, &mut out.stats).await?
        {
            out.segments.push(cleaned);
        }
    }
    out.tombstone_horizon = out.stats.earliest_horizon;
    Ok(out)
}

/// A cleaned object being written: a multipart upload in [`WRITE_CHUNK`]s, so memory stays
/// bounded whatever the segment's size.
struct CleanedWriter<'a> {
    target: &'a Target<'a>,
    writer: WriteMultipart,
    size: u64,
    crc: u32,
    max_timestamp: i64,
    /// The cleaned segment's indexes, built from the bytes written.
    index: IndexBuilder,
}

impl CleanedWriter<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), TierError> {
        self.writer.wait_for_capacity(2).await?;
        self.target.pacer.reserve(bytes.len() as u64).await;
        if let Ok(h) = BatchHeader::parse(bytes) {
            if h.records_count > 0 {
                self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
            }
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.index.feed(bytes);
        self.size += bytes.len() as u64;
        self.writer.write(bytes);
        Ok(())
    }

    /// Writes one batch's outcome; true when the output differs from the original. The
    /// segment's last batch stays (emptied if need be).
    async fn emit(
        &mut self,
        original: &[u8],
        outcome: BatchOutcome,
        last: bool,
    ) -> Result<bool, TierError> {
        match outcome {
            BatchOutcome::Unchanged => self.write(original).await.map(|()| false),
            BatchOutcome::Rewritten(bytes) => self.write(&bytes).await.map(|()| true),
            BatchOutcome::Dropped if last => {
                let h = BatchHeader::parse(original).expect("the reader checked the batch");
                let empty = rewrite::empty_batch(&h);
                self.write(&empty).await?;
                Ok(empty[..] != original[..])
            }
            BatchOutcome::Dropped => Ok(true),
        }
    }
}

/// The cleaned copy of `seg` as a new object, or `None` when cleaning changes nothing in it
/// (the upload is then abandoned). The segment's last batch always stays (emptied if need
/// be), so a cleaned segment is never empty and still ends where the original did.
async fn rewrite_segment(
    target: &Target<'_>,
    seg: &RemoteSegment,
    aborted: &AbortedRanges,
    rules: &RetainRules<'_>,
    stats: &mut FilterStats,
) -> Result<Option<RemoteSegment>, TierError> {
    let bucket = target.bucket;
    target.lease.check()?;
    let uid = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let key = format!("{}/segments/{:020}-{uid}.log", target.dir, seg.base_offset);
    let upload = bucket.store.put_multipart(&bucket.key(&key)).await?;
    let mut out = CleanedWriter {
        target,
        writer: WriteMultipart::new_with_chunk_size(upload, WRITE_CHUNK),
        size: 0,
        crc: 0,
        max_timestamp: -1,
        index: IndexBuilder::new(seg.base_offset, target.index_interval_bytes),
    };
    let written = filter_into(&mut out, seg, aborted, rules, stats).await;
    let changed = match written {
        Ok(changed) => changed,
        Err(e) => {
            let _ = out.writer.abort().await;
            return Err(e);
        }
    };
    if !changed {
        let _ = out.writer.abort().await;
        return Ok(None);
    }
    let (size, crc, max_timestamp) = (out.size, out.crc, out.max_timestamp);
    let built = out.index.finish(size);
    out.writer.finish().await?;
    let indexes = match &built {
        Some(built) => {
            Some(remote_index::upload(bucket, target.pacer, log_stem(&key), built).await?)
        }
        None => None,
    };
    // Aborted batches were dropped: the cleaned segment's transaction index is empty.
    let txn_index = Some(remote_txn::upload(bucket, target.pacer, log_stem(&key), &[]).await?);
    let producer_snapshot = match &seg.producer_snapshot {
        Some(snap) => {
            let to = format!(
                "{}/segments/{:020}-{uid}.snapshot",
                target.dir, seg.end_offset
            );
            bucket
                .store
                .copy(&bucket.key(&snap.key), &bucket.key(&to))
                .await?;
            Some(RemoteObject {
                key: to,
                ..snap.clone()
            })
        }
        None => None,
    };
    Ok(Some(RemoteSegment {
        base_offset: seg.base_offset,
        end_offset: seg.end_offset,
        log: RemoteObject {
            key,
            size,
            crc32c: crc,
        },
        producer_snapshot,
        max_timestamp: if max_timestamp >= 0 {
            max_timestamp
        } else {
            seg.max_timestamp
        },
        uploaded_ms: seg.uploaded_ms,
        indexes,
        leader_epochs: built.map(|b| b.epochs).unwrap_or_default(),
        txn_index,
    }))
}

/// Filters every batch of `seg` into `out`; true when anything changed.
async fn filter_into(
    out: &mut CleanedWriter<'_>,
    seg: &RemoteSegment,
    aborted: &AbortedRanges,
    rules: &RetainRules<'_>,
    stats: &mut FilterStats,
) -> Result<bool, TierError> {
    let mut reader = BatchReader::new(out.target.bucket, &seg.log);
    let mut pending: Option<(Bytes, BatchOutcome)> = None;
    let mut changed = false;
    while let Some((h, bytes)) = reader.next().await? {
        let outcome = if aborted.holds(&h) {
            stats.records_read += h.records_count.max(0) as u64;
            BatchOutcome::Dropped
        } else {
            rewrite::filter_batch(&bytes, rules, false, stats).map_err(|e| corrupt(&seg.log, e))?
        };
        if let Some((prev, prev_outcome)) = pending.replace((bytes, outcome)) {
            changed |= out.emit(&prev, prev_outcome, false).await?;
        }
    }
    if let Some((prev, prev_outcome)) = pending {
        changed |= out.emit(&prev, prev_outcome, true).await?;
    }
    Ok(changed)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{BrokerConfig, CleanupPolicy};
    use crate::log::batch::HEADER_SIZE;
    use crate::tier::lease::Lease;
    use crate::tier::read::RemoteLog;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use std::sync::Arc;

    /// One batch at `base` of (key, value) records; `producer` makes it transactional, and
    /// `marker` a control batch of that type.
    pub(in crate::tier) fn batch_at(
        base: i64,
        entries: &[(&str, Option<&str>)],
        producer: i64,
        marker: Option<i16>,
    ) -> Vec<u8> {
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: producer >= 0,
                control: marker.is_some(),
                delete_horizon_ms: None,
                partition_leader_epoch: 0,
                producer_id: producer,
                producer_epoch: if producer >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: if producer >= 0 { i as i32 } else { -1 },
                timestamp: 1_000 + base + i as i64,
                key: Some(match marker {
                    Some(kind) => Bytes::from([0, 0, 0, kind as u8].to_vec()),
                    None => Bytes::from(k.to_string()),
                }),
                value: match marker {
                    Some(_) => Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
                    None => v.map(|v| Bytes::from(v.to_string())),
                },
                headers: vec![],
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    pub(in crate::tier) async fn segment(
        b: &Bucket,
        base: i64,
        end: i64,
        batches: &[Vec<u8>],
    ) -> RemoteSegment {
        let bytes: Vec<u8> = batches.concat();
        let key = format!("p/segments/{base:020}-orig.log");
        let log = RemoteObject {
            key: key.clone(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        b.store
            .put(&b.key(&key), PutPayload::from(bytes))
            .await
            .unwrap();
        RemoteSegment {
            base_offset: base,
            end_offset: end,
            log,
            producer_snapshot: None,
            max_timestamp: 2_000,
            uploaded_ms: 0,
            indexes: None,
            leader_epochs: Vec::new(),
            txn_index: None,
        }
    }

    /// The (key, value) pairs a reader gets from offset 0, in order.
    async fn read_all(b: &Bucket, m: &Manifest) -> Vec<(String, Option<String>)> {
        let remote = Arc::new(RemoteLog::new(b.clone(), 1 << 20));
        remote.publish(m);
        let mut out = Vec::new();
        let mut offset = 0;
        while let Some(bytes) = remote.read(&m.topic, 0, offset, 1 << 20).await.unwrap() {
            // Batch by batch (an emptied batch is one too).
            let mut at = 0;
            while at < bytes.len() {
                let h = BatchHeader::parse(&bytes[at..]).unwrap();
                let one = &bytes[at..at + h.size()];
                at += h.size();
                offset = h.last_offset() + 1;
                if h.is_control() || h.records_count == 0 {
                    continue;
                }
                let block =
                    rewrite::decompress(h.compression(), h.base_offset, &one[HEADER_SIZE..])
                        .unwrap();
                for r in rewrite::parse_records(&block).unwrap() {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    let value = (!r.value_is_null).then(String::new);
                    out.push((key, value));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn cleans_remote_only_segments_like_the_local_cleaner() {
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let lease = Lease::acquire(&b, "test").await.unwrap();
        let pacer = Pacer::new(None);
        let target = Target {
            bucket: &b,
            pacer: &pacer,
            lease: &lease,
            dir: "p",
            index_interval_bytes: 0,
        };
        // [0, 4): a=1 b=1 c=1, then an aborted transactional a=X at 3.
        // [4, 8): the abort marker at 4, a=2, b=tombstone, d=1.
        // [8, 10): c=2, d=2 (held locally too: not rewritten, but mapped).
        let s0 = segment(
            &b,
            0,
            4,
            &[
                batch_at(
                    0,
                    &[("a", Some("a1")), ("b", Some("b1")), ("c", Some("c1"))],
                    -1,
                    None,
                ),
                batch_at(3, &[("a", Some("aX"))], 7, None),
            ],
        )
        .await;
        let s1 = segment(
            &b,
            4,
            8,
            &[
                batch_at(4, &[("", None)], 7, Some(ABORT)),
                batch_at(
                    5,
                    &[("a", Some("a2")), ("b", None), ("d", Some("d1"))],
                    -1,
                    None,
                ),
            ],
        )
        .await;
        let s2 = segment(
            &b,
            8,
            10,
            &[batch_at(
                8,
                &[("c", Some("c2")), ("d", Some("d2"))],
                -1,
                None,
            )],
        )
        .await;
        let mut m = Manifest {
            topic: "t".into(),
            segments: vec![s0, s1, s2],
            ..Manifest::default()
        };
        let mut cfg = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        cfg.cleanup_policy = CleanupPolicy {
            compact: true,
            delete: false,
        };
        cfg.delete_retention_ms = 0;
        assert!(due(&m, &cfg, 8, 0));
        assert!(!due(&m, &cfg, 0, 0), "nothing is remote-only");
        let c = clean(&target, &m, &cfg, 8, 1 << 20).await.unwrap();
        assert_eq!(c.cleaned_to, 10);
        assert_eq!(c.segments.len(), 2);
        // Each cleaned segment comes with the indexes of its own bytes.
        assert!(c.segments.iter().all(|s| s.indexes.is_some()), "{c:?}");
        for s in c.segments {
            assert!(m.insert(s, 0));
        }
        m.cleaned_to = c.cleaned_to;
        m.tombstone_horizon = c.tombstone_horizon;
        let keys = |got: Vec<(String, Option<String>)>| -> Vec<(String, bool)> {
            got.into_iter().map(|(k, v)| (k, v.is_some())).collect()
        };
        // The aborted aX is gone and did not hide a2 (its emptied batch ends the segment); d1
        // went for d2 in the local segment; b's tombstone stays (stamped) this time.
        assert_eq!(
            keys(read_all(&b, &m).await),
            vec![
                ("a".into(), true),
                ("b".into(), false),
                ("c".into(), true),
                ("d".into(), true)
            ]
        );
        assert_eq!(m.retired.len(), 2);
        // The horizon passed: the next pass removes the tombstone, and nothing else changes.
        let horizon = m.tombstone_horizon.expect("a tombstone was kept");
        assert!(due(&m, &cfg, 8, horizon));
        let c = clean(&target, &m, &cfg, 8, 1 << 20).await.unwrap();
        for s in c.segments {
            assert!(m.insert(s, 0));
        }
        assert_eq!(
            keys(read_all(&b, &m).await),
            vec![("a".into(), true), ("c".into(), true), ("d".into(), true)]
        );
        assert!(c.tombstone_horizon.is_none());
    }

    #[tokio::test]
    async fn a_corrupt_object_stops_the_pass_and_changes_nothing() {
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let lease = Lease::acquire(&b, "test").await.unwrap();
        let pacer = Pacer::new(None);
        let target = Target {
            bucket: &b,
            pacer: &pacer,
            lease: &lease,
            dir: "p",
            index_interval_bytes: 0,
        };
        let mut s0 = segment(
            &b,
            0,
            2,
            &[batch_at(0, &[("a", Some("1")), ("a", Some("2"))], -1, None)],
        )
        .await;
        s0.log.crc32c ^= 1;
        let m = Manifest {
            segments: vec![s0],
            ..Manifest::default()
        };
        let cfg = LogConfig::resolve(&BrokerConfig::default(), &Default::default());
        let e = clean(&target, &m, &cfg, 2, 1 << 20).await.unwrap_err();
        assert!(matches!(e, TierError::Corrupt { .. }), "{e}");
        let listed: Vec<_> =
            futures_util::TryStreamExt::try_collect(b.store.list(Some(&b.key("p/segments"))))
                .await
                .unwrap();
        assert_eq!(listed.len(), 1, "no cleaned object was left behind");
    }
}
