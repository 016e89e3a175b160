//! The segment limits a partition's config implies (when to roll, how dense the indexes are).

use super::super::segment::SegmentLimits;
use crate::config::LogConfig;

pub(crate) fn segment_limits(cfg: &LogConfig) -> SegmentLimits {
    SegmentLimits {
        segment_bytes: cfg.segment_bytes,
        // A compacted topic rolls by max.compaction.lag.ms too, so the active segment (never
        // cleaned) cannot hold dirty data past that lag (protocol.md §4).
        segment_ms: if cfg.cleanup_policy.compact {
            cfg.segment_ms.min(cfg.max_compaction_lag_ms)
        } else {
            cfg.segment_ms
        },
        index_bytes: cfg.segment_index_bytes,
        index_interval_bytes: cfg.index_interval_bytes,
    }
}
