//! Writing a cleaned segment beside the originals: `<base>.log.cleaned` with its sparse
//! `.index.cleaned` and `.timeindex.cleaned` built by Kafka's rules (an entry when more than
//! `index.interval.bytes` were written since the last one) and, when the group holds abort
//! markers, their `.txnindex.cleaned` entries; data of aborted transactions is dropped
//! ([`super::aborted`]). All are fsynced before the partition
//! swaps them in. The group's last batch always stays (emptied if need be), so the cleaned
//! segment ends at the same offset as the segments it replaces: start-up recovery then completes
//! an interrupted swap exactly. Runs outside the partition lock; reads go through file handles
//! taken under it (still valid if retention unlinks the files meanwhile).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::aborted::AbortedRanges;
use super::markers::TxnMarkers;
use super::rewrite::{self, BatchOutcome, FilterStats, RetainRules, RewriteError};
use super::{CleanStats, CleanerError, SegmentView, Throttle};
use crate::log::batch::BatchHeader;
use crate::log::io::IoFile;
use crate::log::partition::Partition;
use crate::log::producer_state::ProducerStateManager;
use crate::log::segment::{segment_file, BatchScanner, Scan};

/// Output is written in chunks of this size.
const WRITE_CHUNK: usize = 1 << 20;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The sparse offset and time indexes of a segment being written (Kafka's rules, as the
/// segment applies them on append).
struct IndexBuilder {
    base_offset: i64,
    interval: u64,
    bytes_since_entry: u64,
    max_timestamp: (i64, i64),
    last_time_entry: i64,
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl IndexBuilder {
    fn new(base_offset: i64, interval: u64) -> IndexBuilder {
        IndexBuilder {
            base_offset,
            interval,
            bytes_since_entry: 0,
            max_timestamp: (-1, base_offset),
            last_time_entry: -1,
            offsets: Vec::new(),
            times: Vec::new(),
        }
    }

    fn rel(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    fn push_time(&mut self) {
        let (ts, offset) = self.max_timestamp;
        if ts > self.last_time_entry {
            let entry = crate::log::time_index::encode_entry(ts, self.rel(offset));
            self.times.extend_from_slice(&entry);
            self.last_time_entry = ts;
        }
    }

    fn add(&mut self, h: &BatchHeader, position: u64) {
        if h.max_timestamp > self.max_timestamp.0 {
            self.max_timestamp = (h.max_timestamp, h.last_offset());
        }
        if self.bytes_since_entry > self.interval {
            let entry = crate::log::index::encode_entry(self.rel(h.last_offset()), position as u32);
            self.offsets.extend_from_slice(&entry);
            self.push_time();
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += h.size() as u64;
    }

    fn finish(mut self) -> (Vec<u8>, Vec<u8>) {
        self.push_time();
        (self.offsets, self.times)
    }
}

/// The `.cleaned` segment being written.
struct CleanedWriter {
    file: Arc<dyn IoFile>,
    position: u64,
    buf: Vec<u8>,
    index: IndexBuilder,
}

impl CleanedWriter {
    fn write(&mut self, batch: &[u8], throttle: &mut Throttle<'_>) -> Result<(), CleanerError> {
        let h = BatchHeader::parse(batch).map_err(|e| RewriteError::Corrupt {
            base_offset: -1,
            reason: e.to_string(),
        })?;
        let at = self.position + self.buf.len() as u64;
        if at + batch.len() as u64 > i32::MAX as u64 {
            return Err(CleanerError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cleaned segment would exceed 2 GiB",
            )));
        }
        self.index.add(&h, at);
        self.buf.extend_from_slice(batch);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush(throttle)?;
        }
        Ok(())
    }

    fn flush(&mut self, throttle: &mut Throttle<'_>) -> Result<(), CleanerError> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.position)?;
            self.position += self.buf.len() as u64;
            throttle.account(self.buf.len())?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Writes the cleaned version of `segments` as `<first base>.*.cleaned`, fsynced. Returns its
/// size and whether any batch changed, or None when the group holds no batch at all.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_group(
    partition: &Partition,
    segments: &[SegmentView],
    producers: &ProducerStateManager,
    aborted: &AbortedRanges,
    markers: &mut TxnMarkers,
    rules: &RetainRules<'_>,
    throttle: &mut Throttle<'_>,
    filter: &mut FilterStats,
    stats: &mut CleanStats,
) -> Result<Option<(u64, bool)>, CleanerError> {
    let cfg = partition.config();
    let base = segments[0].summary.base_offset;
    let io = partition.io.as_ref();
    let log_path = with_suffix(&segment_file(&partition.dir, base, "log"), ".cleaned");
    let file = io.open(&log_path, true)?;
    file.set_len(0)?;
    let mut out = CleanedWriter {
        file,
        position: 0,
        buf: Vec::with_capacity(WRITE_CHUNK + 64 * 1024),
        index: IndexBuilder::new(base, cfg.index_interval_bytes),
    };
    // The previous batch waits until we know whether it is the group's last one, which
    // always stays (emptied if need be) so the cleaned segment ends where the group ended.
    let mut pending: Option<(Vec<u8>, BatchOutcome)> = None;
    let mut any = false;
    let mut changed = false;
    let mut last_offset = base;
    for seg in segments {
        let file = seg.file.file()?;
        let mut scan = BatchScanner::new(file.as_ref(), 0, seg.summary.size);
        loop {
            let b = match scan.next(true)? {
                Scan::Batch(b) => b,
                Scan::End => break,
                Scan::Torn { position, reason } | Scan::Corrupt { position, reason } => {
                    return Err(CleanerError::CorruptSegment {
                        path: seg.log_path.clone(),
                        reason: format!("at position {position}: {reason}"),
                    });
                }
            };
            let bytes = b.bytes.expect("the scan was asked for bodies");
            throttle.account(bytes.len())?;
            stats.bytes_read += bytes.len() as u64;
            any = true;
            let h = b.header;
            let producer_last = h.producer_id >= 0
                && producers
                    .get(h.producer_id)
                    .and_then(|e| e.batches.back())
                    .is_some_and(|m| m.last_offset == h.last_offset());
            last_offset = h.last_offset();
            markers.on_data(&h);
            let outcome = if h.is_control() {
                markers.on_control(&h, &bytes, producers, rules, filter)?
            } else if aborted.holds(&h) {
                // An aborted transaction's data goes; the producer's last batch stays empty,
                // as an emptied batch does, so its sequence survives.
                filter.records_read += h.records_count.max(0) as u64;
                match producer_last {
                    true => BatchOutcome::Rewritten(rewrite::empty_batch(&h)),
                    false => BatchOutcome::Dropped,
                }
            } else {
                rewrite::filter_batch(&bytes, rules, producer_last, filter)?
            };
            if let Some((prev, prev_outcome)) = pending.replace((bytes, outcome)) {
                changed |= emit(&mut out, &prev, prev_outcome, false, throttle)?;
            }
        }
    }
    if !any {
        let _ = std::fs::remove_file(&log_path);
        return Ok(None);
    }
    if let Some((prev, prev_outcome)) = pending {
        changed |= emit(&mut out, &prev, prev_outcome, true, throttle)?;
    }
    out.flush(throttle)?;
    let size = out.position;
    out.file.sync()?;
    let (offsets, times) = out.index.finish();
    // The aborts whose markers the group holds keep their index entries while their records
    // were still found (none: no file).
    let txn_entries: Vec<u8> = aborted
        .markers_within(base, last_offset)
        .iter()
        .filter(|a| markers.keeps_abort_entry(a.last_offset))
        .flat_map(|a| a.encode())
        .collect();
    let mut files = vec![("index", offsets), ("timeindex", times)];
    if !txn_entries.is_empty() {
        files.push(("txnindex", txn_entries));
    }
    for (ext, bytes) in files {
        let path = with_suffix(&segment_file(&partition.dir, base, ext), ".cleaned");
        let f = io.open(&path, true)?;
        f.set_len(0)?;
        f.write_all_at(&bytes, 0)?;
        f.sync()?;
    }
    // Kafka copies the last replaced segment's modification time (time-based retention of
    // segments without timestamps looks at it).
    if let Some(last) = segments.last() {
        if let Ok(modified) = std::fs::metadata(&last.log_path).and_then(|m| m.modified()) {
            if let Ok(f) = std::fs::File::options().write(true).open(&log_path) {
                let _ = f.set_modified(modified);
            }
        }
    }
    Ok(Some((size, changed)))
}

/// Writes one batch's outcome; the group's last batch is kept (as an empty batch) even when
/// every record of it goes. Returns true when the output differs from the original batch.
fn emit(
    out: &mut CleanedWriter,
    original: &[u8],
    outcome: BatchOutcome,
    last_of_group: bool,
    throttle: &mut Throttle<'_>,
) -> Result<bool, CleanerError> {
    match outcome {
        BatchOutcome::Unchanged => out.write(original, throttle).map(|()| false),
        BatchOutcome::Rewritten(bytes) => out.write(&bytes, throttle).map(|()| true),
        BatchOutcome::Dropped if last_of_group => {
            let h = BatchHeader::parse(original).map_err(|e| RewriteError::Corrupt {
                base_offset: -1,
                reason: e.to_string(),
            })?;
            let empty = rewrite::empty_batch(&h);
            out.write(&empty, throttle)?;
            Ok(empty != original)
        }
        BatchOutcome::Dropped => Ok(true),
    }
}

/// Removes the `.cleaned` files of an abandoned group (best effort).
pub(super) fn remove_cleaned(partition: &Partition, base: i64) {
    for ext in ["log", "index", "timeindex", "txnindex"] {
        let path = with_suffix(&segment_file(&partition.dir, base, ext), ".cleaned");
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove an abandoned cleaned file");
            }
        }
    }
}
