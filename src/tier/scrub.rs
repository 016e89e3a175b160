//! Scrub: the tier checked against its manifests. Every segment a manifest names is read back
//! in full once per `cairn.remote.scrub.interval.ms` (a few per partition per upload pass), and
//! at once when a remote read found it damaged: its log object batch by batch (each batch's CRC,
//! then the object's size and CRC-32C against the manifest) and its producer snapshot. A missing
//! or damaged object is re-uploaded by the uploader from the local copy when the local log still
//! holds the segment; otherwise it is logged with its key once and counted
//! (`cairn_tier_unrepairable_segments_total`), and remote reads keep refusing its damaged batches.
//! Knows no Kafka request type.

use std::sync::atomic::{AtomicU64, Ordering};

use super::manifest::RemoteSegment;
use super::object::BatchReader;
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

/// Reads back `seg`'s objects: `Ok(None)` when they match the manifest, `Ok(Some(reason))` when
/// one is missing or damaged, `Err` when the store cannot be read now (an outage is not damage).
pub(super) async fn check(
    bucket: &Bucket,
    seg: &RemoteSegment,
) -> Result<Option<String>, TierError> {
    let mut reader = BatchReader::new(bucket, &seg.log);
    loop {
        match reader.next().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(TierError::Corrupt { key, reason }) => return Ok(Some(format!("{key}: {reason}"))),
            Err(TierError::Store(object_store::Error::NotFound { .. })) => {
                return Ok(Some(format!("{}: missing", seg.log.key)))
            }
            Err(e) => {
                // A range past a truncated object's end fails as a store error: the object's
                // size tells damage from an outage.
                return match bucket.store.head(&bucket.key(&seg.log.key)).await {
                    Ok(meta) if meta.size != seg.log.size => Ok(Some(format!(
                        "{}: {} bytes, the manifest says {}",
                        seg.log.key, meta.size, seg.log.size
                    ))),
                    Err(object_store::Error::NotFound { .. }) => {
                        Ok(Some(format!("{}: missing", seg.log.key)))
                    }
                    _ => Err(e),
                };
            }
        }
    }
    if let Some(snapshot) = &seg.producer_snapshot {
        match read::fetch(bucket, snapshot).await {
            Ok(_) => {}
            Err(TierError::Corrupt { key, reason }) => return Ok(Some(format!("{key}: {reason}"))),
            Err(TierError::Store(object_store::Error::NotFound { .. })) => {
                return Ok(Some(format!("{}: missing", snapshot.key)))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::manifest::RemoteObject;
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use std::sync::Arc;

    #[tokio::test]
    async fn sound_damaged_truncated_and_missing_objects_are_told_apart() {
        let b = Bucket::new(Arc::new(InMemory::new()), "p", "memory://");
        let mut bytes = crate::log::batch::tests::batch_with(3, 1000, None, true);
        bytes.extend(crate::log::batch::tests::batch_with(2, 2000, None, true));
        let seg = RemoteSegment {
            base_offset: 0,
            end_offset: 5,
            log: RemoteObject {
                key: "s.log".into(),
                size: bytes.len() as u64,
                crc32c: crc32c::crc32c(&bytes),
            },
            producer_snapshot: None,
            max_timestamp: 2001,
            uploaded_ms: 0,
        };
        assert!(check(&b, &seg).await.unwrap().unwrap().contains("missing"));
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
        assert_eq!(check(&b, &seg).await.unwrap(), None);
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 3] ^= 1;
        put(flipped).await;
        assert!(check(&b, &seg).await.unwrap().is_some());
        put(bytes[..bytes.len() - 10].to_vec()).await;
        assert!(check(&b, &seg).await.unwrap().is_some());
    }
}
