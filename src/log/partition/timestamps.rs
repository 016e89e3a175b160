//! Lookups by time: the first offset at or after a timestamp (ListOffsets by timestamp) and
//! the record with the largest timestamp (KIP-734), below the high watermark and from the log
//! start offset. Each finds its candidate segments under the partition lock through the time
//! index, then scans their batches outside it.

use std::io;

use super::{map_batch_error, segment_limits, Partition};
use crate::log::batch;
use crate::log::io::{read_exact_at, IoFile};
use crate::log::segment::{BatchScanner, Scan};
use crate::log::LogError;

impl Partition {
    /// The first offset whose record timestamp is ≥ `timestamp`, with that record's timestamp;
    /// `None` when no such record exists below the high watermark.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let limits = segment_limits(&self.config());
        let (upper, start, plan) = {
            let mut st = self.lock();
            let upper = st.high_watermark;
            let start = st.log_start_offset;
            // Candidate segments: those whose largest timestamp reaches the target. Usually the
            // first one holds the answer; later ones matter only when its match lies below the
            // log start offset.
            let mut plan = Vec::new();
            for seg in st.segments.iter_mut() {
                if seg.base_offset >= upper || plan.len() >= 4 {
                    break;
                }
                let Some((max_ts, _)) = seg.max_timestamp(self.io.as_ref(), &limits)? else {
                    continue;
                };
                if max_ts < timestamp {
                    continue;
                }
                let from = seg
                    .lookup_time(self.io.as_ref(), &limits, timestamp)?
                    .max(start);
                let position = seg.lookup(self.io.as_ref(), &limits, from)?;
                plan.push((seg.log_file()?, position, seg.size));
            }
            (upper, start, plan)
        };
        for (file, position, end) in plan {
            let mut scan = BatchScanner::new(file.as_ref(), position, end);
            while let Scan::Batch(b) = scan.next(false)? {
                let h = b.header;
                if h.base_offset >= upper {
                    return Ok(None);
                }
                if h.last_offset() < start || h.max_timestamp < timestamp {
                    continue;
                }
                if h.is_log_append_time() {
                    return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
                }
                let bytes = read_whole(file.as_ref(), b.position, h.size())?;
                let found = batch::record_timestamps(&bytes)
                    .map_err(map_batch_error)?
                    .into_iter()
                    .find(|&(o, ts)| o >= start && o < upper && ts >= timestamp);
                if let Some(found) = found {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp: (offset, timestamp); `None` when empty.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let limits = segment_limits(&self.config());
        // Segments by their largest timestamp, highest first, with where to start scanning.
        let (upper, start, plan) = {
            let mut st = self.lock();
            let upper = st.high_watermark;
            let start = st.log_start_offset;
            let mut ranked: Vec<(i64, usize)> = Vec::new();
            for (i, seg) in st.segments.iter_mut().enumerate() {
                if seg.base_offset >= upper {
                    break;
                }
                if let Some((ts, _)) = seg.max_timestamp(self.io.as_ref(), &limits)? {
                    ranked.push((ts, i));
                }
            }
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut plan = Vec::with_capacity(ranked.len());
            for (ts, i) in ranked {
                let seg = &mut st.segments[i];
                let from = seg.lookup_time(self.io.as_ref(), &limits, ts)?.max(start);
                let position = seg.lookup(self.io.as_ref(), &limits, from)?;
                plan.push((ts, seg.log_handle().clone(), position, seg.size));
            }
            (upper, start, plan)
        };
        // The record carrying a segment's largest timestamp may be gone (compaction keeps the
        // batch's max timestamp, not the record): then the segment is scanned whole, and the
        // next segments too, as long as they could still hold a larger timestamp.
        let mut best: Option<(i64, i64)> = None;
        for (segment_max, handle, position, end) in plan {
            if best.is_some_and(|(_, ts)| ts >= segment_max) {
                break;
            }
            // Opened one at a time (a segment deleted since the plan is skipped).
            let Some(file) = handle.file_if_present()? else {
                continue;
            };
            let mut found = scan_max_timestamp(file.as_ref(), position, end, upper, start)?;
            if found.is_none() && position > 0 {
                found = scan_max_timestamp(file.as_ref(), 0, end, upper, start)?;
            }
            if let Some((o, ts)) = found {
                if best.is_none_or_less(ts) {
                    best = Some((o, ts));
                }
            }
        }
        Ok(best)
    }
}

trait BestTs {
    fn is_none_or_less(&self, ts: i64) -> bool;
}
impl BestTs for Option<(i64, usize)> {
    fn is_none_or_less(&self, ts: i64) -> bool {
        self.is_none_or(|(best, _)| ts > best)
    }
}
impl BestTs for Option<(i64, i64)> {
    fn is_none_or_less(&self, ts: i64) -> bool {
        self.is_none_or(|(_, best)| ts > best)
    }
}

fn read_whole(file: &dyn IoFile, position: u64, size: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; size];
    read_exact_at(file, &mut bytes, position)?;
    Ok(bytes)
}

/// The record with the largest timestamp among the batches of `file` from `position` to `end`,
/// at offsets in `[start, upper)`: (offset, timestamp).
fn scan_max_timestamp(
    file: &dyn IoFile,
    position: u64,
    end: u64,
    upper: i64,
    start: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut best: Option<(i64, i64)> = None;
    let mut scan = BatchScanner::new(file, position, end);
    while let Scan::Batch(b) = scan.next(false)? {
        let h = b.header;
        if h.base_offset >= upper {
            break;
        }
        if h.last_offset() < start || best.is_some_and(|(_, ts)| ts >= h.max_timestamp) {
            continue;
        }
        let found = if h.is_log_append_time() {
            Some((h.base_offset.max(start), h.max_timestamp))
        } else {
            let bytes = read_whole(file, b.position, h.size())?;
            let records = batch::record_timestamps(&bytes).map_err(map_batch_error)?;
            records.into_iter().filter(|&(o, _)| o >= start).fold(
                None,
                |acc: Option<(i64, i64)>, (o, ts)| match acc {
                    Some((_, best_ts)) if best_ts >= ts => acc,
                    _ => Some((o, ts)),
                },
            )
        };
        if let Some((o, ts)) = found {
            if best.is_none_or_less(ts) {
                best = Some((o, ts));
            }
        }
    }
    Ok(best)
}
