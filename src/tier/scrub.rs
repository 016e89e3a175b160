//! Scrub: the tier checked against its manifests. Every segment a manifest names is read back
//! in full once per `cairn.remote.scrub.interval.ms` (a few per partition per upload pass; the
//! manifest remembers when a partition's cycle finished, across restarts), and
//! at once when a remote read found it damaged: its log object batch by batch (each batch's CRC,
//! then the object's size and CRC-32C against the manifest) and its producer snapshot. A missing
//! or damaged object is re-uploaded by the uploader from the local copy when the local log still
//! holds the segment; otherwise it is logged with its key once and counted
//! (`cairn_tier_unrepairable_segments_total`), and remote reads keep refusing its damaged batches.
//! The segment's offset and time indexes are built again from the log object as it is read and
//! compared byte for byte with the stored ones: missing, damaged or different ones (and those of
//! a segment uploaded before indexes were) are replaced by the rebuilt ones, which needs no local
//! copy. A sound segment uploaded before transaction indexes were gets one built from the log
//! objects (`txn_rebuild`; a few such segments per pass, whatever the scrub cycle). Knows no Kafka
//! request type.

use std::sync::atomic::{AtomicU64, Ordering};

use super::manifest::RemoteSegment;
use super::object::BatchReader;
use super::remote_index::{BuiltIndexes, IndexBuilder};
use super::{read, Bucket, TierError};
use object_store::ObjectStoreExt;

/// Segments checked per partition per upload pass, in a scrub cycle.
pub(super) const SEGMENTS_PER_PASS: usize = 2;

/// What scrubbing found since start-up.
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Segments read back and checked.
    pub checked: AtomicU64,
    /// Segments found with a missing or damaged object.
    pub damaged: AtomicU64,
    /// Damaged segments uploaded again from the local copy.
    pub repaired: AtomicU64,
    /// Damaged segments with no local copy to repair them from.
    pub unrepairable: AtomicU64,
}

impl ScrubStats {
    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (checked, damaged, repaired, unrepairable).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.checked),
            get(&self.damaged),
            get(&self.repaired),
            get(&self.unrepairable),
        )
    }
}

/// What reading a segment back found.
#[derive(Debug)]
pub(super) enum Finding {
    /// Every object matches the manifest.
    Sound,
    /// The log object or the producer snapshot is missing or damaged.
    Damaged(String),
    /// The log object is sound, but its index objects are missing, damaged, or not what it
    /// builds (`reason`), or it has none (`reason` is `None`: a segment uploaded before indexes
    /// were): here they are, built again from the log object.
    Reindex {
        reason: Option<String>,
        built: BuiltIndexes,
    },
}

/// Reads back `seg`'s objects and builds its indexes from the log object again (with the
/// interval they were built with, or `index_interval_bytes` for a segment without any) to
/// compare them with the stored ones. `Err` when the store cannot be read now (an outage is not
/// damage).
pub(super) async fn check(
    bucket: &Bucket,
    seg: &RemoteSegment,
    index_interval_bytes: u64,
) -> Result<Finding, TierError> {
    let interval = seg
        .indexes
        .as_ref()
        .map_or(index_interval_bytes, |ix| ix.interval_bytes);
    let mut index = IndexBuilder::new(seg.base_offset, interval);
    let mut reader = BatchReader::new(bucket, &seg.log);
    loop {
        match reader.next().await {
            Ok(Some((_, bytes))) => index.feed(&bytes),
            Ok(None) => break,
            Err(TierError::Corrupt { key, reason }) => {
                return Ok(Finding::Damaged(format!("{key}: {reason}")))
            }
            Err(TierError::Store(object_store::Error::NotFound { .. })) => {
                return Ok(Finding::Damaged(format!("{}: missing", seg.log.key)))
            }
            Err(e) => {
                // A range past a truncated object's end fails as a store error: the object's
                // size tells damage from an outage.
                return match bucket.store.head(&bucket.key(&seg.log.key)).await {
                    Ok(meta) if meta.size != seg.log.size => Ok(Finding::Damaged(format!(
                        "{}: {} bytes, the manifest says {}",
                        seg.log.key, meta.size, seg.log.size
                    ))),
                    Err(object_store::Error::NotFound { .. }) => {
                        Ok(Finding::Damaged(format!("{}: missing", seg.log.key)))
                    }
                    _ => Err(e),
                };
            }
        }
    }
    if let Some(snapshot) = &seg.producer_snapshot {
        match read::fetch(bucket, snapshot).await {
            Ok(_) => {}
            Err(TierError::Corrupt { key, reason }) => {
                return Ok(Finding::Damaged(format!("{key}: {reason}")))
            }
            Err(TierError::Store(object_store::Error::NotFound { .. })) => {
                return Ok(Finding::Damaged(format!("{}: missing", snapshot.key)))
            }
            Err(e) => return Err(e),
        }
    }
    // A sound log whose bytes build no index (offsets not ascending) is served by walking it.
    let Some(built) = index.finish(seg.log.size) else {
        return Ok(Finding::Sound);
    };
    let Some(ix) = &seg.indexes else {
        return Ok(Finding::Reindex {
            reason: None,
            built,
        });
    };
    let mut mismatch = None;
    for (object, expected) in [
        (&ix.offset_index, &built.offset),
        (&ix.time_index, &built.time),
    ] {
        let stored = match bucket.store.get(&bucket.key(&object.key)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                mismatch = Some(format!("{}: missing", object.key));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let crc = crc32c::crc32c(&stored);
        if stored[..] != expected[..] || crc != object.crc32c || stored.len() as u64 != object.size
        {
            mismatch = Some(format!(
                "{}: {} bytes with CRC-32C {crc:#010x}, not the index its segment builds",
                object.key,
                stored.len()
            ));
            break;
        }
    }
    if mismatch.is_some() {
        return Ok(Finding::Reindex {
            reason: mismatch,
            built,
        });
    }
    if built.epochs != seg.leader_epochs {
        let reason = Some(format!(
            "{}: leader epochs differ from its batches'",
            seg.log.key
        ));
        return Ok(Finding::Reindex { reason, built });
    }
    Ok(Finding::Sound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::manifest::RemoteObject;
    use crate::tier::pace::Pacer;
    use crate::tier::remote_index;
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use std::sync::Arc;

    fn damaged(f: Finding) -> Option<String> {
        match f {
            Finding::Damaged(reason) => Some(reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn sound_damaged_truncated_and_missing_objects_are_told_apart() {
        let b = Bucket::new(Arc::new(InMemory::new()), "p", "memory://");
        let bytes = remote_index::tests::segment_bytes(0, 5);
        let seg = RemoteSegment {
            base_offset: 0,
            end_offset: 5,
            log: RemoteObject {
                key: "s.log".into(),
                size: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
            },
            producer_snapshot: None,
            max_timestamp: 2005,
            uploaded_ms: 0,
            indexes: None,
            leader_epochs: Vec::new(),
            txn_index: None,
        };
        assert!(damaged(check(&b, &seg, 0).await.unwrap())
            .unwrap()
            .contains("missing"));
        let put = |data: Vec<u8>| {
            let b = b.clone();
            async move {
                b.store
                    .put(&b.key("s.log"), PutPayload::from(data))
                    .await
                    .unwrap()
            }
        };
        put(bytes.clone()).await;
        // Sound, but uploaded without indexes: they are built for it.
        let Finding::Reindex {
            reason: None,
            built,
        } = check(&b, &seg, 0).await.unwrap()
        else {
            panic!("a segment without indexes gets them");
        };
        let indexes = remote_index::upload(&b, &Pacer::new(None), "s", &built)
            .await
            .unwrap();
        let seg = RemoteSegment {
            indexes: Some(indexes.clone()),
            leader_epochs: built.epochs.clone(),
            ..seg
        };
        assert!(matches!(check(&b, &seg, 0).await.unwrap(), Finding::Sound));
        // A damaged index is built again from the log: no local copy is needed.
        let key = b.key(&indexes.offset_index.key);
        let mut bad = b
            .store
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        bad[3] ^= 1;
        b.store.put(&key, PutPayload::from(bad)).await.unwrap();
        match check(&b, &seg, 0).await.unwrap() {
            Finding::Reindex {
                reason: Some(reason),
                built: again,
            } => {
                assert!(reason.contains("s.index"), "{reason}");
                assert_eq!(again, built);
            }
            other => panic!("{other:?}"),
        }
        b.store.delete(&key).await.unwrap();
        assert!(matches!(
            check(&b, &seg, 0).await.unwrap(),
            Finding::Reindex {
                reason: Some(_),
                ..
            }
        ));
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 3] ^= 1;
        put(flipped).await;
        assert!(damaged(check(&b, &seg, 0).await.unwrap()).is_some());
        put(bytes[..bytes.len() - 10].to_vec()).await;
        assert!(damaged(check(&b, &seg, 0).await.unwrap()).is_some());
    }
}
