//! The local side of an upload: what the uploader copies out of a partition under its lock
//! (the sealed, durable segments with open file handles), where the whole log of a tiered topic
//! starts by `retention.*`, and the upload of one file (one PUT or multipart, paced, with its
//! CRC-32C). Holds no state of its own.

use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::manifest::{Manifest, RemoteObject};
use super::pace::Pacer;
use super::remote_index::IndexBuilder;
use super::{Bucket, TierError};
use crate::config::LogConfig;
use crate::log::io::IoFile;
use crate::log::partition::segment_limits;
use crate::log::Partition;

/// Objects up to this size go in one PUT; larger ones in multipart chunks of this size.
const CHUNK: u64 = 8 << 20;

/// A sealed, durable segment as copied out under the partition lock.
pub(super) struct Candidate {
    pub(super) base_offset: i64,
    pub(super) end_offset: i64,
    pub(super) size: u64,
    pub(super) max_timestamp: i64,
    /// The `.log`, opened when uploaded.
    pub(super) log: crate::log::open_files::SegmentFile,
}

pub(super) struct Snapshot {
    pub(super) log_start_offset: i64,
    /// Bytes of every local segment.
    pub(super) local_bytes: u64,
    pub(super) durable_offset: i64,
    pub(super) active_size: u64,
    pub(super) sealed: Vec<Candidate>,
}

/// Where the whole log (tier and local disk) of a topic with remote storage starts: past
/// DeleteRecords, and past the remote-only segments that `retention.ms` (by their largest
/// timestamp) or `retention.bytes` (counting remote-only and local bytes) expire.
pub(super) fn whole_log_start(
    m: &Manifest,
    cfg: &LogConfig,
    snap: &Snapshot,
    now: i64,
    deleted_before: Option<i64>,
) -> i64 {
    let mut start = m.log_start_offset.max(deleted_before.unwrap_or(i64::MIN));
    if !cfg.cleanup_policy.delete {
        return start;
    }
    let remote_only = || {
        m.segments
            .iter()
            .filter(|s| s.end_offset <= snap.log_start_offset)
    };
    let mut total = snap.local_bytes as i64 + remote_only().map(|s| s.log.size as i64).sum::<i64>();
    for s in remote_only() {
        let largest = if s.max_timestamp >= 0 {
            s.max_timestamp
        } else {
            s.uploaded_ms
        };
        let by_time = cfg.retention_ms >= 0 && now - largest > cfg.retention_ms;
        let by_size = cfg.retention_bytes >= 0 && total - s.log.size as i64 >= cfg.retention_bytes;
        if !(by_time || by_size) {
            break;
        }
        total -= s.log.size as i64;
        start = start.max(s.end_offset);
    }
    start
}

/// True when the manifest already holds exactly this segment.
pub(super) fn same_in(m: &Manifest, c: &Candidate) -> bool {
    m.segments.iter().any(|s| {
        s.base_offset == c.base_offset && s.end_offset == c.end_offset && s.log.size == c.size
    })
}

/// Copies out, under the partition lock, what the uploader needs: the sealed segments whose
/// every byte is durable, with open handles (a cleaner swap or retention may unlink the files
/// meanwhile; the handles still read what was sealed).
pub(super) fn snapshot(part: &Partition) -> Result<Snapshot, TierError> {
    let limits = segment_limits(&part.config());
    let mut st = part.lock();
    let durable = st.durable_offset;
    let n = st.segments.len();
    let mut sealed = Vec::new();
    for i in 0..n.saturating_sub(1) {
        let end_offset = st.segments[i + 1].base_offset;
        if end_offset > durable {
            break;
        }
        let seg = &mut st.segments[i];
        let max_timestamp = seg
            .max_timestamp(part.io.as_ref(), &limits)?
            .map_or(-1, |(ts, _)| ts);
        sealed.push(Candidate {
            base_offset: seg.base_offset,
            end_offset,
            size: seg.size,
            max_timestamp,
            log: seg.log_handle().clone(),
        });
    }
    Ok(Snapshot {
        log_start_offset: st.log_start_offset,
        local_bytes: st.segments.iter().map(|s| s.size).sum(),
        durable_offset: durable,
        active_size: st.segments.last().map_or(0, |s| s.size),
        sealed,
    })
}

/// Uploads the first `len` bytes of `file` as `key`, in one PUT or in multipart chunks, feeding
/// every byte uploaded to `index` (so the segment's indexes describe exactly the object); returns
/// the object's description with its CRC-32C.
pub(super) async fn upload_file(
    bucket: &Bucket,
    pacer: &Pacer,
    key: &str,
    file: Arc<dyn IoFile>,
    len: u64,
    index: &mut IndexBuilder,
) -> Result<RemoteObject, TierError> {
    let read = |pos: u64, n: u64| {
        let file = file.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n as usize];
                crate::log::io::read_exact_at(file.as_ref(), &mut buf, pos).map(|()| buf)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
        }
    };
    let path = bucket.key(key);
    let mut crc = 0u32;
    if len <= CHUNK {
        let bytes = read(0, len).await?;
        crc = crc32c::crc32c(&bytes);
        index.feed(&bytes);
        pacer.reserve(len).await;
        bucket.store.put(&path, PutPayload::from(bytes)).await?;
    } else {
        let upload = bucket.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK as usize);
        let mut pos = 0;
        while pos < len {
            let n = CHUNK.min(len - pos);
            let chunk = match read(pos, n).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            crc = crc32c::crc32c_append(crc, &chunk);
            index.feed(&chunk);
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            pacer.reserve(n).await;
            writer.put(bytes::Bytes::from(chunk));
            pos += n;
        }
        writer.finish().await?;
    }
    Ok(RemoteObject {
        key: key.to_string(),
        size: len,
        crc32c: crc,
    })
}
