//! DeleteRecords into what the tier holds, made durable before it is answered.
//!
//! The manifest is written by the uploader alone (one writer per partition, versions in order),
//! so a DeleteRecords does not write one: it first creates a small marker object
//! `<partition dir>/delete-before/<offset:020>` in the bucket, and only then moves the tier's
//! start in memory ([`RemoteLog::delete_records_before`]) and answers. Reading a partition's
//! manifest (at start-up, after a restore onto an empty disk, after a lost lease) also reads its
//! markers, so an acknowledged deletion never comes back, whether the broker was killed before
//! the next manifest write or its disk was lost. The uploader's next manifest carries the new
//! start (and drops the segments wholly below it); once that manifest is written, the markers at
//! or below its start are deleted. A crash between the two leaves markers that only repeat what
//! the manifest says. No partition lock is held here; a store that does not answer within the
//! request's timeout fails the request (a retriable error) and deletes nothing.

use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::read::RemoteLog;
use super::upload::Tier;
use super::{Bucket, TierError};

fn marker_dir(dir: &str) -> String {
    format!("{dir}/delete-before")
}

/// The offsets of the markers in a partition's folder `dir`.
async fn markers(bucket: &Bucket, dir: &str) -> Result<Vec<i64>, TierError> {
    let listed: Vec<_> = bucket
        .store
        .list(Some(&bucket.key(&marker_dir(dir))))
        .try_collect()
        .await?;
    Ok(listed
        .iter()
        .filter_map(|m| {
            bucket
                .relative(&m.location)
                .rsplit('/')
                .next()?
                .parse()
                .ok()
        })
        .collect())
}

/// The highest DeleteRecords offset recorded for the partition in `dir`, if any.
pub(super) async fn recorded(bucket: &Bucket, dir: &str) -> Result<Option<i64>, TierError> {
    Ok(markers(bucket, dir).await?.into_iter().max())
}

/// Deletes the markers at or below `start` (a written manifest's log start offset).
pub(super) async fn clear_up_to(bucket: &Bucket, dir: &str, start: i64) -> Result<(), TierError> {
    for offset in markers(bucket, dir).await? {
        if offset > start {
            continue;
        }
        let key = bucket.key(&format!("{}/{offset:020}", marker_dir(dir)));
        match bucket.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Tier {
    /// Moves the start of a tiered partition (folder `dir`) to `offset` once that is durable in
    /// the bucket; nothing to do when the tier already starts at or after it. Fails, deleting
    /// nothing, when the store fails or does not answer within `timeout`.
    pub async fn delete_records_before(
        &self,
        dir: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), TierError> {
        if self.remote.knows(topic, partition)
            && self
                .remote
                .start_offset(topic, partition)
                .is_none_or(|start| start >= offset)
        {
            return Ok(());
        }
        self.lease.check()?;
        let key = self
            .bucket
            .key(&format!("{}/{offset:020}", marker_dir(dir)));
        let put = self.bucket.store.put(&key, PutPayload::from(Vec::new()));
        match tokio::time::timeout(timeout, put).await {
            Ok(done) => {
                done?;
            }
            Err(_) => {
                return Err(TierError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the store did not answer in time",
                )))
            }
        }
        self.remote.delete_records_before(topic, partition, offset);
        Ok(())
    }
}

/// Reads the partition's markers into `remote` (with its manifest, before it is published).
pub(super) async fn load(
    bucket: &Bucket,
    remote: &RemoteLog,
    dir: &str,
    topic: &str,
    partition: i32,
) -> Result<(), TierError> {
    if let Some(offset) = recorded(bucket, dir).await? {
        remote.delete_records_before(topic, partition, offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn markers_are_read_back_and_cleared_up_to_a_written_start() {
        let bucket = Bucket::new(Arc::new(InMemory::new()), "pre", "memory://");
        let dir = "partitions/x/0";
        assert_eq!(recorded(&bucket, dir).await.unwrap(), None);
        for offset in [110, 7, 300] {
            let key = bucket.key(&format!("{}/{offset:020}", marker_dir(dir)));
            bucket
                .store
                .put(&key, PutPayload::from(Vec::new()))
                .await
                .unwrap();
        }
        assert_eq!(recorded(&bucket, dir).await.unwrap(), Some(300));
        let remote = RemoteLog::new(bucket.clone(), 1 << 20);
        load(&bucket, &remote, dir, "t", 0).await.unwrap();
        assert_eq!(remote.deleted_before("t", 0), Some(300));
        clear_up_to(&bucket, dir, 110).await.unwrap();
        let mut left = markers(&bucket, dir).await.unwrap();
        left.sort_unstable();
        assert_eq!(left, vec![300]);
        clear_up_to(&bucket, dir, 300).await.unwrap();
        assert_eq!(recorded(&bucket, dir).await.unwrap(), None);
    }
}
