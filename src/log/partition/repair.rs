//! The background verification of one partition and the repair of a damaged segment under its
//! lock ([`crate::log::verify`] does the checking): split from `partition.rs`. Segment files are
//! opened one at a time as the pass reaches them, and a segment replaced or deleted since the
//! plan (by retention or the cleaner) is skipped, never repaired.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{segment_limits, Partition};
use crate::log::open_files::SegmentFile;
use crate::log::LogError;

impl Partition {
    /// The background verification of this partition ([`super::verify`]): checks every
    /// segment's bytes as they were when it began, without the lock (sealed segments and the
    /// written part of the active one never change in place), and repairs a damaged segment
    /// under the lock. `stop` is asked between segments. Returns (segments, bytes, repaired).
    pub(crate) fn verify_in_background(
        &self,
        stop: &dyn Fn() -> bool,
    ) -> Result<(usize, u64, usize), LogError> {
        // (base offset, file, size, next segment's base, index path, verified prefix) of each
        // segment; files open one at a time, as the pass reaches them.
        type Plan = Vec<(i64, SegmentFile, u64, i64, PathBuf, Arc<AtomicU64>)>;
        let plan: Plan = {
            let st = self.lock();
            if st.deleted || st.closed || st.failed.is_some() {
                return Ok((0, 0, 0));
            }
            st.segments
                .iter()
                .enumerate()
                .map(|(i, seg)| {
                    // Offsets end before the next segment, or for the active one the log end.
                    let upper = st
                        .segments
                        .get(i + 1)
                        .map_or(st.log_end_offset, |n| n.base_offset);
                    let file = seg.log_handle().clone();
                    let verified = seg.verified().clone();
                    (
                        seg.base_offset,
                        file,
                        seg.size,
                        upper,
                        seg.path("index"),
                        verified,
                    )
                })
                .collect()
        };
        let (mut segments, mut bytes, mut repaired) = (0, 0, 0);
        for (base, handle, size, upper, index_path, verified) in plan {
            if stop() {
                break;
            }
            let Some(file) = handle.file_if_present()? else {
                continue;
            };
            let intact =
                crate::log::verify::is_intact(file.as_ref(), size, base, Some(upper), &index_path)?;
            if intact {
                verified.fetch_max(size, Ordering::SeqCst);
            }
            segments += 1;
            bytes += size;
            if !intact && self.repair_segment(base, handle.id())? {
                repaired += 1;
            }
        }
        Ok((segments, bytes, repaired))
    }

    /// Repairs the segment at `base` under the lock, if it is still the one whose file the
    /// background verification read (retention or the cleaner may have replaced it since).
    /// Returns true when something was repaired.
    pub(super) fn repair_segment(&self, base: i64, id: u64) -> Result<bool, LogError> {
        let limits = segment_limits(&self.config());
        let io = self.io.as_ref();
        let mut st = self.lock();
        if st.deleted || st.closed || st.failed.is_some() {
            return Ok(false);
        }
        let Some(i) = st
            .segments
            .iter()
            .position(|s| s.base_offset == base && s.id() == id)
        else {
            return Ok(false);
        };
        let active = i + 1 == st.segments.len();
        let old_end = st.log_end_offset;
        let upper = st.segments.get(i + 1).map_or(old_end, |s| s.base_offset);
        let verdict = crate::log::verify::verify_segment(
            io,
            &self.dir,
            &mut st.segments[i],
            Some(upper),
            None,
        )?;
        crate::log::verify::log_verdict(&self.dir, base, &verdict, "background");
        if active {
            let next = st.segments[i].load_tail(io, &limits)?.unwrap_or(base);
            if next < old_end {
                // Acknowledged offsets were lost: never give them to new records.
                crate::log::recovery::skip_lost_offsets(
                    io,
                    &self.dir,
                    &limits,
                    &mut st.segments,
                    next,
                    old_end,
                )?;
                st.dir_dirty = true;
            }
        }
        // A false alarm (an index read while it was being written) changes nothing.
        Ok(!verdict.damage.is_empty()
            || verdict.restored_base_offsets > 0
            || verdict.index_discarded)
    }
}
