//! Restore: a broker started with an empty data directory and a tier that holds topics
//! rebuilds the data directory from the bucket before the log is opened.
//!
//! Every topic's metadata and configs come back. A partition of a topic with
//! `remote.storage.enable` gets only the producer snapshot at the tier's end and an empty active
//! segment there: its records are served from the bucket ([`super::read`]). Every other copied
//! partition (the internal topics, which the broker reads locally) gets its uploaded segments
//! at their original offsets (each object's size and CRC-32C checked first; a corrupt one is
//! logged with its key and left out), the producer snapshot of the last one, and an empty active
//! segment at the tier's end so new records never land in a restored segment.
//! Every restored partition gets its `leader-epoch-checkpoint` back from the leader epochs the
//! manifest records for its segments ([`super::epochs`]).
//! Topic files are written last: they are the commit point, so a crash during a restore leaves
//! no topic file and the next start restores again from scratch. The bucket's index objects are
//! not downloaded: the log's recovery rebuilds the local indexes (the restored directory starts as
//! after a crash).

use std::path::Path;

use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;

use super::deletion;
use super::manifest::{self, RemoteObject};
use super::read;
use super::{Bucket, TierError};
use crate::log::checkpoint::{self, OffsetMap, LOG_START_FILE, PARTITION_METADATA_FILE};
use crate::log::partition::epochs::LEADER_EPOCH_FILE;
use crate::log::segment::segment_file;
use crate::log::{producer_state, topic_file, TopicInfo};

/// What a restore brought back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub topics: usize,
    pub partitions: usize,
    pub segments: usize,
    pub bytes: u64,
    pub corrupt_objects: usize,
}

/// Restores `data_dir` from the bucket when the data directory holds no topic; returns `None`
/// when there was nothing to do.
pub async fn restore_if_empty(
    bucket: &Bucket,
    data_dir: &Path,
) -> Result<Option<Restored>, TierError> {
    let topics_dir = data_dir.join("cairn-metadata").join("topics");
    let has_topics = std::fs::read_dir(&topics_dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "topic")))
    });
    if has_topics {
        return Ok(None);
    }
    let listed: Vec<_> = bucket
        .store
        .list(Some(&bucket.key("topics")))
        .try_collect()
        .await?;
    let mut infos = Vec::new();
    for meta in listed {
        let key = bucket.relative(&meta.location);
        let bytes = bucket.store.get(&meta.location).await?.bytes().await?;
        match std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(checkpoint::decode_topic)
        {
            Ok(info) => infos.push(info),
            Err(reason) => {
                tracing::error!(key, reason, "corrupt topic metadata in the tier; skipped")
            }
        }
    }
    if infos.is_empty() {
        return Ok(None);
    }
    tracing::info!(url = %bucket.url, data_dir = %data_dir.display(), topics = infos.len(),
        "the data directory is empty and the tier holds topics: restoring");
    std::fs::create_dir_all(&topics_dir)?;
    if let Ok(r) = bucket.store.get(&bucket.key("producer-id-block")).await {
        let bytes = r.bytes().await?;
        checkpoint::write_atomic(
            &data_dir.join("cairn-metadata").join("producer-id-block"),
            &bytes,
        )?;
    }
    let mut total = Restored::default();
    let mut log_starts = OffsetMap::new();
    for info in &infos {
        let mut newest = 0;
        let mut offsets = (i64::MAX, i64::MIN);
        for p in 0..info.partitions {
            let r = restore_partition(bucket, data_dir, info, p, &mut total).await?;
            if let Some(r) = r {
                log_starts.insert((info.name.clone(), p), r.local_start);
                newest = newest.max(r.written_ms);
                offsets = (offsets.0.min(r.first), offsets.1.max(r.end));
            }
        }
        tracing::info!(topic = %info.name, partitions = info.partitions, configs = ?info.overrides,
            first_offset = (offsets.0 != i64::MAX).then_some(offsets.0),
            end_offset = (offsets.1 != i64::MIN).then_some(offsets.1),
            tier_written_ms = newest, "restored topic");
        total.topics += 1;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    checkpoint::write_atomic(
        &data_dir.join(LOG_START_FILE),
        checkpoint::encode_offsets(&log_starts).as_bytes(),
    )?;
    for info in &infos {
        checkpoint::write_atomic(
            &topic_file(data_dir, &info.name),
            checkpoint::encode_topic(info).as_bytes(),
        )?;
    }
    tracing::info!(url = %bucket.url, topics = total.topics, partitions = total.partitions,
        segments = total.segments, bytes = total.bytes, corrupt_objects = total.corrupt_objects,
        "restore from the tier done");
    Ok(Some(total))
}

/// Restores one partition, when the tier held data of it.
async fn restore_partition(
    bucket: &Bucket,
    data_dir: &Path,
    info: &TopicInfo,
    p: i32,
    total: &mut Restored,
) -> Result<Option<PartitionRestore>, TierError> {
    let dir = data_dir.join(format!("{}-{p}", info.name));
    if dir.exists() {
        // Left by an interrupted restore (no topic file was written): start it again.
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    checkpoint::write_atomic(
        &dir.join(PARTITION_METADATA_FILE),
        checkpoint::encode_partition_metadata(&info.topic_id).as_bytes(),
    )?;
    let (latest, _) =
        manifest::read_latest(bucket, &manifest::partition_dir(&info.topic_id, p)).await?;
    let Some(m) = latest else {
        return Ok(None);
    };
    total.partitions += 1;
    // The leader epochs the tier recorded come back as the partition's checkpoint (the log's
    // opening trims it to the restored local log; OffsetForLeaderEpoch reads the rest from the
    // manifest).
    let epochs = super::epochs::whole_log(&m, i64::MAX, &[]);
    if !epochs.entries().is_empty() {
        checkpoint::write_atomic(&dir.join(LEADER_EPOCH_FILE), epochs.encode().as_bytes())?;
    }
    let first = m
        .log_start_offset
        .max(m.segments.first().map_or(0, |s| s.base_offset));
    // DeleteRecords not yet in the manifest (its markers): for a topic with remote storage they
    // are read again with the manifest when the tier starts; an internal topic's log starts
    // there on disk.
    let folder = manifest::partition_dir(&info.topic_id, p);
    let first = first.max(deletion::recorded(bucket, &folder).await?.unwrap_or(first));
    if remote_storage(info) {
        // A topic with remote storage is served from the bucket: only the producer state at
        // the tier's end comes back to disk, and the local log starts there.
        let Some(last) = m.segments.last() else {
            return Ok(None);
        };
        if let Some(snap) = &last.producer_snapshot {
            if let Some(bytes) = fetch_checked(bucket, snap, total).await? {
                write_file(
                    &producer_state::snapshot_path(&dir, last.end_offset),
                    &bytes,
                )?;
            }
        }
        write_file(&segment_file(&dir, last.end_offset, "log"), &[])?;
        std::fs::File::open(&dir)?.sync_all()?;
        return Ok(Some(PartitionRestore {
            local_start: last.end_offset,
            first,
            end: last.end_offset,
            written_ms: m.written_ms,
        }));
    }
    let mut restored_end = None;
    for (i, seg) in m.segments.iter().enumerate() {
        let last = i + 1 == m.segments.len();
        if seg.end_offset <= first && !last {
            continue;
        }
        let Some(bytes) = fetch_checked(bucket, &seg.log, total).await? else {
            continue;
        };
        write_file(&segment_file(&dir, seg.base_offset, "log"), &bytes)?;
        total.segments += 1;
        total.bytes += bytes.len() as u64;
        restored_end = Some(seg.end_offset);
        if let (true, Some(snap)) = (last, &seg.producer_snapshot) {
            if let Some(bytes) = fetch_checked(bucket, snap, total).await? {
                write_file(&producer_state::snapshot_path(&dir, seg.end_offset), &bytes)?;
            }
        }
    }
    let Some(end) = restored_end else {
        return Ok(None);
    };
    // New records go to a new segment at the tier's end, never into a restored one.
    write_file(&segment_file(&dir, end, "log"), &[])?;
    std::fs::File::open(&dir)?.sync_all()?;
    // A deletion past what was uploaded leaves the log empty at its end.
    let first = first.min(end);
    Ok(Some(PartitionRestore {
        local_start: first,
        first,
        end,
        written_ms: m.written_ms,
    }))
}

/// What the restore of one partition brought back.
struct PartitionRestore {
    /// Where the restored local log starts.
    local_start: i64,
    /// Where the whole log (tier and disk) starts.
    first: i64,
    /// The end of the restored log.
    end: i64,
    /// When the manifest was written.
    written_ms: i64,
}

fn remote_storage(info: &TopicInfo) -> bool {
    info.overrides
        .get("remote.storage.enable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Reads an object checked against its size and CRC-32C ([`read::fetch`] logs a mismatch with
/// the key); a corrupt object yields `None` and is never restored.
async fn fetch_checked(
    bucket: &Bucket,
    object: &RemoteObject,
    total: &mut Restored,
) -> Result<Option<bytes::Bytes>, TierError> {
    match read::fetch(bucket, object).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(TierError::Corrupt { .. }) => {
            total.corrupt_objects += 1;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::epochs::LeaderEpochCache;
    use crate::tier::manifest::{Manifest, RemoteSegment};
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn seg(base: i64, end: i64, epochs: &[(i32, i64)]) -> RemoteSegment {
        RemoteSegment::for_test(base, end, epochs)
    }

    #[tokio::test]
    async fn a_restored_partition_gets_its_leader_epochs_back() {
        let b = Bucket::new(Arc::new(InMemory::new()), "c", "memory://");
        let info = TopicInfo {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 1,
            overrides: BTreeMap::from([("remote.storage.enable".into(), "true".into())]),
            internal: false,
        };
        let key = b.key(&format!("topics/{}.topic", info.topic_id));
        let text = checkpoint::encode_topic(&info);
        b.store.put(&key, PutPayload::from(text)).await.unwrap();
        let m = Manifest {
            version: 1,
            topic: "t".into(),
            log_start_offset: 10,
            segments: vec![
                seg(0, 20, &[(0, 0), (2, 15)]),
                seg(20, 40, &[(2, 20), (4, 30)]),
            ],
            ..Manifest::default()
        };
        manifest::write(&b, &manifest::partition_dir(&info.topic_id, 0), &m)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let restored = restore_if_empty(&b, dir.path()).await.unwrap().unwrap();
        assert_eq!((restored.topics, restored.partitions), (1, 1));
        let text = std::fs::read_to_string(dir.path().join("t-0").join(LEADER_EPOCH_FILE)).unwrap();
        let cache = LeaderEpochCache::decode(&text).unwrap();
        let got: Vec<(i32, i64)> = cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        // From the tier's start: epoch 0's first offsets went with retention.
        assert_eq!(got, vec![(0, 10), (2, 15), (4, 30)]);
        // Restoring again finds the topic there and does nothing.
        assert_eq!(restore_if_empty(&b, dir.path()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_internal_topics_deleterecords_marker_is_not_undone_by_a_restore() {
        use crate::tier::clean::tests::{batch_at, segment};
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let info = TopicInfo {
            name: "__consumer_offsets".into(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: 1,
            overrides: BTreeMap::new(),
            internal: true,
        };
        let key = b.key(&format!("topics/{}.topic", info.topic_id));
        let text = checkpoint::encode_topic(&info);
        b.store.put(&key, PutPayload::from(text)).await.unwrap();
        let folder = manifest::partition_dir(&info.topic_id, 0);
        let record = |base| batch_at(base, &[("k", Some("v")), ("k", Some("v"))], -1, None);
        let m = Manifest {
            version: 1,
            topic: info.name.clone(),
            segments: vec![
                segment(&b, 0, 2, &[record(0)]).await,
                segment(&b, 2, 6, &[record(2), record(4)]).await,
            ],
            ..Manifest::default()
        };
        manifest::write(&b, &folder, &m).await.unwrap();
        // DeleteRecords before 3, acknowledged before the next manifest was written.
        let marker = b.key(&format!("{folder}/delete-before/{:020}", 3));
        b.store
            .put(&marker, PutPayload::from(Vec::new()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let restored = restore_if_empty(&b, dir.path()).await.unwrap().unwrap();
        assert_eq!(
            restored.segments, 1,
            "the segment wholly deleted is not restored"
        );
        let part = dir.path().join("__consumer_offsets-0");
        assert!(!segment_file(&part, 0, "log").exists());
        assert!(segment_file(&part, 2, "log").exists());
        let starts = checkpoint::read_offsets(&dir.path().join(LOG_START_FILE));
        assert_eq!(starts.get(&(info.name.clone(), 0)), Some(&3));
    }
}
