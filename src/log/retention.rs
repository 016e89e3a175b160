//! Retention: deletes whole sealed segments by `retention.ms` (the segment's largest timestamp)
//! and `retention.bytes` (for a tiered topic, `local.retention.ms` / `local.retention.bytes`:
//! the tier keeps the older data), and segments left entirely below the log start offset;
//! advances and persists the (local) log start offset. Also expires idle producers (`producer.id.expiration.ms`).
//!
//! Runs on a background thread every `log.retention.check.interval.ms`. Never touches the active
//! segment or data at or above the high watermark, nor a segment of a tiered topic before the
//! tier holds it ([`super::LogManager::set_tiered_end`]). Knows nothing of compaction (a `compact`-only
//! topic is skipped here).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::partition::{
    delete_segment_files, remove_segments_below_start, segment_limits, Partition,
};
use super::{now_ms, LogError, Shared};

/// Applies retention to one partition at time `now`; returns the number of segments deleted.
pub fn apply_retention(partition: &Partition, now: i64) -> Result<usize, LogError> {
    let cfg = partition.config();
    let limits = segment_limits(&cfg);
    let removed = {
        let mut st = partition.lock();
        if st.deleted || st.closed {
            return Ok(0);
        }
        if cfg.cleanup_policy.delete {
            let mut total: i64 = st.segments.iter().map(|s| s.size as i64).sum();
            let mut delete_upto = 0;
            let hw = st.high_watermark;
            // A tiered topic keeps every segment the tier does not hold yet, and keeps locally
            // what `local.retention.*` says (the tier keeps the rest, by `retention.*`).
            let tiered = cfg.remote_storage_enable && !cfg.remote_log_copy_disable;
            let tiered_limit = tiered.then(|| {
                partition
                    .shared
                    .tiered_end(&partition.topic, partition.index)
            });
            let (retention_ms, retention_bytes) = match tiered {
                true => (cfg.local_retention_ms, cfg.local_retention_bytes),
                false => (cfg.retention_ms, cfg.retention_bytes),
            };
            let n = st.segments.len();
            for i in 0..n.saturating_sub(1) {
                let next_base = st.segments[i + 1].base_offset;
                if next_base > hw || tiered_limit.is_some_and(|end| next_base > end) {
                    break;
                }
                let seg = &mut st.segments[i];
                let by_time = retention_ms >= 0 && {
                    let largest = match seg.max_timestamp(partition.io.as_ref(), &limits)? {
                        Some((ts, _)) if ts >= 0 => ts,
                        _ => modified_ms(&seg.path("log")),
                    };
                    now - largest > retention_ms
                };
                let by_size = retention_bytes >= 0 && total - seg.size as i64 >= retention_bytes;
                if by_time || by_size {
                    total -= seg.size as i64;
                    delete_upto = i + 1;
                } else {
                    break;
                }
            }
            if delete_upto > 0 {
                let new_start = st.segments[delete_upto].base_offset;
                if new_start > st.log_start_offset {
                    st.log_start_offset = new_start;
                }
            }
        }
        let expired = st
            .producers
            .remove_expired(now, partition.shared.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(topic = %partition.topic, partition = partition.index, expired, "expired idle producers");
        }
        partition
            .shared
            .set_log_start(&partition.topic, partition.index, st.log_start_offset);
        remove_segments_below_start(&mut st)
    };
    if removed.is_empty() {
        return Ok(0);
    }
    partition.shared.write_log_start_checkpoint()?;
    let count = removed.len();
    let bytes: u64 = removed.iter().map(|s| s.size).sum();
    delete_segment_files(&partition.topic, partition.index, removed);
    tracing::info!(topic = %partition.topic, partition = partition.index, segments = count, bytes,
        log_start_offset = partition.offsets().log_start_offset, "retention deleted segments");
    Ok(count)
}

fn modified_ms(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// The retention thread's loop: every `interval`, every partition; returns when stopped.
pub(crate) fn run(shared: Arc<Shared>, interval: Duration) {
    while !shared.wait_stop(interval) {
        let now = now_ms();
        for p in shared.partitions() {
            if let Err(e) = apply_retention(&p, now) {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
        }
    }
}
