//! The cleaning plan of one partition, as Kafka computes it (protocol.md §4): where the dirty
//! section starts and ends, its share of the log (the dirty ratio), whether the log is due
//! (ratio above `min.cleanable.dirty.ratio`, or dirty data older than `max.compaction.lag.ms`),
//! and how sealed segments are grouped into cleaned segments.
//!
//! Pure: numbers in, numbers out. Knows nothing of files, locks or the clock (time is an argument).

use std::ops::Range;

/// What the plan needs to know of one sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    pub size: u64,
    /// Largest record timestamp, -1 when unknown or not needed.
    pub max_timestamp: i64,
}

/// A partition's state at planning time.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Sealed segments (never the active one), oldest first.
    pub sealed: &'a [SegmentSummary],
    pub active_base_offset: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// End of the cleaned section from `cleaner-offset-checkpoint`, if any.
    pub checkpoint: Option<i64>,
    pub now_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

/// The outcome of planning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Everything below this offset has been cleaned.
    pub first_dirty_offset: i64,
    /// Cleaning stops before this offset: min(active segment base, last stable offset, the first
    /// segment newer than now − min.compaction.lag.ms), always a segment base.
    pub first_uncleanable_offset: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
}

impl Plan {
    /// Dirty bytes over total bytes (0 for an empty log).
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// True when there is something to clean at all.
    pub fn has_dirty(&self) -> bool {
        self.dirty_bytes > 0 && self.first_dirty_offset < self.first_uncleanable_offset
    }
}

/// Where the dirty section starts: the checkpoint, unless it is missing or outside
/// [log start, active segment base], in which case the log start (Kafka resets a bad checkpoint).
pub fn first_dirty_offset(checkpoint: Option<i64>, log_start_offset: i64, active_base: i64) -> i64 {
    match checkpoint {
        Some(c) if c >= log_start_offset && c <= active_base => c,
        _ => log_start_offset,
    }
}

/// The plan for `input`.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let first_dirty = first_dirty_offset(
        input.checkpoint,
        input.log_start_offset,
        input.active_base_offset,
    );
    let mut first_uncleanable = input.active_base_offset;
    for (i, seg) in input.sealed.iter().enumerate() {
        let next_base = input
            .sealed
            .get(i + 1)
            .map_or(input.active_base_offset, |s| s.base_offset);
        let too_new = input.min_compaction_lag_ms > 0
            && seg.max_timestamp > input.now_ms.saturating_sub(input.min_compaction_lag_ms);
        if next_base > input.last_stable_offset || too_new {
            first_uncleanable = seg.base_offset;
            break;
        }
    }
    let mut clean_bytes = 0;
    let mut dirty_bytes = 0;
    for (i, seg) in input.sealed.iter().enumerate() {
        let next_base = input
            .sealed
            .get(i + 1)
            .map_or(input.active_base_offset, |s| s.base_offset);
        if next_base <= input.log_start_offset || seg.base_offset >= first_uncleanable {
            continue;
        }
        if next_base <= first_dirty {
            clean_bytes += seg.size;
        } else {
            dirty_bytes += seg.size;
        }
    }
    Plan {
        first_dirty_offset: first_dirty,
        first_uncleanable_offset: first_uncleanable.max(first_dirty),
        clean_bytes,
        dirty_bytes,
    }
}

/// True when the oldest dirty data (the first batch timestamp of the first dirty segment) is
/// older than `max.compaction.lag.ms`.
pub fn max_lag_exceeded(
    first_dirty_timestamp: Option<i64>,
    now_ms: i64,
    max_compaction_lag_ms: i64,
) -> bool {
    match first_dirty_timestamp {
        Some(ts) if ts >= 0 => now_ms.saturating_sub(ts) > max_compaction_lag_ms,
        _ => false,
    }
}

/// True when the log should be cleaned now.
pub fn is_due(plan: &Plan, min_cleanable_dirty_ratio: f64, lag_exceeded: bool) -> bool {
    plan.has_dirty() && (lag_exceeded || plan.dirty_ratio() > min_cleanable_dirty_ratio)
}

/// Limits of one cleaned segment.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// `segment.bytes`.
    pub max_bytes: u64,
    /// Offset-index entries a segment may hold (`segment.index.bytes` / 8).
    pub max_index_entries: u64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u64,
}

/// Groups the sealed segments that start below `end_offset` into runs of neighbours that fit one
/// segment together (size ≤ segment.bytes, index entries within limits, offsets within 2³¹ of
/// the base), as Kafka's `groupSegmentsBySize`. Returns index ranges into `sealed`.
pub fn group_segments(
    sealed: &[SegmentSummary],
    active_base: i64,
    end_offset: i64,
    limits: &GroupLimits,
) -> Vec<Range<usize>> {
    let n = sealed
        .iter()
        .take_while(|s| s.base_offset < end_offset)
        .count();
    let next_base = |i: usize| sealed.get(i + 1).map_or(active_base, |s| s.base_offset);
    let interval = limits.index_interval_bytes.max(1);
    let mut groups = Vec::new();
    let mut i = 0;
    while i < n {
        let start = i;
        let mut bytes = sealed[i].size;
        i += 1;
        while i < n {
            let candidate = bytes + sealed[i].size;
            let index_entries = candidate / interval + 1;
            let offset_span = next_base(i) - 1 - sealed[start].base_offset;
            if candidate > limits.max_bytes
                || index_entries > limits.max_index_entries
                || offset_span > i32::MAX as i64
            {
                break;
            }
            bytes = candidate;
            i += 1;
        }
        groups.push(start..i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, size: u64, max_ts: i64) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            size,
            max_timestamp: max_ts,
        }
    }

    fn input<'a>(sealed: &'a [SegmentSummary], active: i64) -> PlanInput<'a> {
        PlanInput {
            sealed,
            active_base_offset: active,
            log_start_offset: 0,
            last_stable_offset: active,
            checkpoint: None,
            now_ms: 1_000_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
        }
    }

    #[test]
    fn never_checkpointed_log_is_all_dirty_up_to_the_active_segment() {
        let sealed = [seg(0, 100, 1), seg(10, 100, 2)];
        let p = plan(&input(&sealed, 20));
        assert_eq!(p.first_dirty_offset, 0);
        assert_eq!(p.first_uncleanable_offset, 20);
        assert_eq!((p.clean_bytes, p.dirty_bytes), (0, 200));
        assert_eq!(p.dirty_ratio(), 1.0);
        assert!(is_due(&p, 0.5, false));
    }

    #[test]
    fn dirty_ratio_counts_segments_after_the_checkpoint() {
        let sealed = [seg(0, 300, 1), seg(10, 100, 2)];
        let mut inp = input(&sealed, 20);
        inp.checkpoint = Some(10);
        let p = plan(&inp);
        assert_eq!((p.clean_bytes, p.dirty_bytes), (300, 100));
        assert_eq!(p.dirty_ratio(), 0.25);
        assert!(!is_due(&p, 0.5, false));
        assert!(is_due(&p, 0.2, false));
        // The max-lag rule cleans even below the ratio.
        assert!(is_due(&p, 0.5, true));
    }

    #[test]
    fn active_segment_only_is_never_cleanable() {
        let p = plan(&input(&[], 50));
        assert!(!p.has_dirty());
        assert!(!is_due(&p, 0.0, true));
        // A fully cleaned log has nothing dirty either.
        let sealed = [seg(0, 100, 1)];
        let mut inp = input(&sealed, 10);
        inp.checkpoint = Some(10);
        let p = plan(&inp);
        assert!(!p.has_dirty());
        assert!(!is_due(&p, 0.0, true));
    }

    #[test]
    fn cleanable_range_stops_at_the_last_stable_offset() {
        let sealed = [seg(0, 100, 1), seg(10, 100, 2), seg(20, 100, 3)];
        let mut inp = input(&sealed, 30);
        inp.last_stable_offset = 15;
        let p = plan(&inp);
        // The segment [10, 20) reaches past the LSO: cleaning stops at its base.
        assert_eq!(p.first_uncleanable_offset, 10);
        assert_eq!(p.dirty_bytes, 100);
    }

    #[test]
    fn cleanable_range_stops_at_the_first_segment_newer_than_the_min_lag() {
        let now = 1_000_000;
        let sealed = [
            seg(0, 100, now - 5000),
            seg(10, 100, now - 500),
            seg(20, 100, now - 6000),
        ];
        let mut inp = input(&sealed, 30);
        inp.min_compaction_lag_ms = 1000;
        let p = plan(&inp);
        assert_eq!(p.first_uncleanable_offset, 10);
        inp.min_compaction_lag_ms = 0;
        assert_eq!(plan(&inp).first_uncleanable_offset, 30);
    }

    #[test]
    fn bad_checkpoints_reset_to_the_log_start() {
        assert_eq!(first_dirty_offset(Some(5), 10, 100), 10);
        assert_eq!(first_dirty_offset(Some(500), 10, 100), 10);
        assert_eq!(first_dirty_offset(Some(50), 10, 100), 50);
        assert_eq!(first_dirty_offset(None, 10, 100), 10);
    }

    #[test]
    fn max_lag_uses_the_first_dirty_batch_timestamp() {
        assert!(max_lag_exceeded(Some(1000), 5000, 3000));
        assert!(!max_lag_exceeded(Some(1000), 3000, 3000));
        assert!(!max_lag_exceeded(None, 5000, 1));
        assert!(!max_lag_exceeded(Some(-1), 5000, 1));
    }

    #[test]
    fn segments_below_the_log_start_do_not_count() {
        let sealed = [seg(0, 1000, 1), seg(10, 100, 2)];
        let mut inp = input(&sealed, 20);
        inp.log_start_offset = 10;
        let p = plan(&inp);
        assert_eq!(p.first_dirty_offset, 10);
        assert_eq!((p.clean_bytes, p.dirty_bytes), (0, 100));
    }

    #[test]
    fn small_neighbours_are_grouped_up_to_segment_bytes() {
        let sealed = [
            seg(0, 40, 1),
            seg(10, 40, 1),
            seg(20, 40, 1),
            seg(30, 90, 1),
            seg(40, 10, 1),
        ];
        let limits = GroupLimits {
            max_bytes: 100,
            max_index_entries: 1000,
            index_interval_bytes: 4096,
        };
        assert_eq!(
            group_segments(&sealed, 50, 50, &limits),
            vec![0..2, 2..3, 3..5]
        );
        // Only segments starting below the end offset take part.
        assert_eq!(group_segments(&sealed, 50, 25, &limits), vec![0..2, 2..3]);
        // Index limits split groups too.
        let tight = GroupLimits {
            max_index_entries: 1,
            index_interval_bytes: 30,
            ..limits
        };
        assert_eq!(
            group_segments(&sealed, 50, 50, &tight),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
    }

    #[test]
    fn groups_never_span_more_than_two_to_the_31_offsets() {
        let big = 1i64 << 31;
        let sealed = [seg(0, 1, 1), seg(big - 10, 1, 1), seg(big + 10, 1, 1)];
        let limits = GroupLimits {
            max_bytes: 1 << 30,
            max_index_entries: 1 << 20,
            index_interval_bytes: 4096,
        };
        assert_eq!(
            group_segments(&sealed, big + 20, big + 20, &limits),
            vec![0..1, 1..3]
        );
    }
}
