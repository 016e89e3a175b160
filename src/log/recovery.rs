//! Loading one partition directory at start-up (disk-format.md §7): finishing or undoing
//! interrupted segment swaps, deleting leftovers, opening segments, and after an unclean stop
//! validating only the tail written since the recovery point (CRC check, truncation of a torn or
//! corrupt tail, index rebuild). Then rebuilds producer state (with ongoing transactions) from
//! the newest snapshot plus the log after it, and the aborted-transaction index from the
//! `.txnindex` files before that point plus the markers replayed after it.
//!
//! Produces a [`PartitionState`]; knows nothing of topics, the flusher or requests.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Instant;

use super::batch::{self, BatchHeader};
use super::cleaner;
use super::io::FileIo;
use super::partition::txn;
use super::partition::{scan_headers, PartitionState};
use super::producer_snapshot::{self, SnapshotFiles};
use super::producer_state::{PendingUpdates, ProducerStateManager};
use super::segment::{segment_file, BatchScanner, Scan, Segment, SegmentLimits};
use super::txn_index::{self, AbortedTxn};
use super::verify;
use super::{now_ms, LogError};

/// Splits a file name into (base offset, extension after the first dot).
fn parse_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Step 1–2 of Kafka's loader: delete `.deleted`/`.cleaned`/`.tmp` files, complete `.swap` files.
fn clean_directory(dir: &Path) -> io::Result<()> {
    let mut swaps = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".deleted") || name.ends_with(".cleaned") || name.ends_with(".tmp") {
            tracing::info!(file = %entry.path().display(), "removing leftover file");
            fs::remove_file(entry.path())?;
        } else if let Some(stripped) = name.strip_suffix(".swap") {
            if let Some((base, "log")) = parse_name(stripped) {
                swaps.insert(base);
            }
        }
    }
    for base in swaps {
        // A complete swap replaces every segment from its base up to its end.
        let swap_log = dir.join(format!("{base:020}.log.swap"));
        let file = fs::File::open(&swap_log)?;
        let len = file.metadata()?.len();
        let io_file = super::io::StdIo.open(&swap_log, false)?;
        let mut next = base;
        scan_headers(io_file.as_ref(), 0, len, |h| next = h.last_offset() + 1)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((b, ext)) = parse_name(&name) {
                let replaced = b >= base && b < next.max(base + 1) && !ext.ends_with(".swap");
                let is_segment_file = matches!(ext, "log" | "index" | "timeindex" | "txnindex");
                if replaced && is_segment_file {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let swap = dir.join(format!("{base:020}.{ext}.swap"));
            if swap.exists() {
                fs::rename(&swap, segment_file(dir, base, ext))?;
            }
        }
        tracing::info!(dir = %dir.display(), base_offset = base, "completed an interrupted segment swap");
    }
    Ok(())
}

/// What loading found, for the start-up report.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    pub segments: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: u64,
    pub indexes_rebuilt: usize,
    /// Damaged byte ranges found by whole-segment verification and moved aside.
    pub damaged_ranges: usize,
    pub damaged_bytes: u64,
    /// Batches whose damaged base offset was restored.
    pub restored_base_offsets: usize,
}

/// Loads a partition directory into its in-memory state.
pub(crate) fn load_partition(
    io: &dyn FileIo,
    dir: &Path,
    limits: &SegmentLimits,
    clean: bool,
    recovery_point: i64,
    log_start_checkpoint: i64,
    verify: verify::Mode,
) -> Result<(PartitionState, LoadReport), LogError> {
    let started = Instant::now();
    clean_directory(dir)?;
    let mut bases = BTreeSet::new();
    let mut index_files = Vec::new();
    let (mut snapshots, mut companions) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        match parse_name(&name) {
            Some((base, "log")) => {
                bases.insert(base);
            }
            Some((base, "index" | "timeindex" | "txnindex")) => index_files.push((base, name)),
            Some((offset, "snapshot")) => snapshots.push(offset),
            Some((offset, "producers")) => companions.push(offset),
            _ => {}
        }
    }
    for (base, name) in index_files {
        if !bases.contains(&base) {
            fs::remove_file(dir.join(&name))?;
        }
    }
    let mut report = LoadReport::default();
    let mut segments = Vec::new();
    for &base in &bases {
        segments.push(Segment::open(io, dir, base)?);
    }
    if segments.is_empty() {
        segments.push(Segment::create(
            io,
            dir,
            log_start_checkpoint.max(0),
            limits,
        )?);
    }
    report.segments = segments.len();
    // Before serving: everything, or after a crash the segments recovery re-reads (so damage there
    // is moved aside rather than cutting the log); the rest is verified in the background.
    let from = match verify {
        verify::Mode::BeforeServing => Some(0),
        verify::Mode::Background if !clean => Some(
            segments
                .partition_point(|s| s.base_offset <= recovery_point)
                .saturating_sub(1),
        ),
        _ => None,
    };
    if let Some(from) = from {
        verify_segments(
            io,
            dir,
            &mut segments,
            from,
            clean,
            recovery_point,
            &mut report,
        )?;
    }

    let mut log_end_offset = None;
    let mut clean = clean;
    if clean {
        let active = segments.last_mut().expect("one segment");
        match active.load_tail(io, limits) {
            Ok(next) => log_end_offset = Some(next.unwrap_or(active.base_offset)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "active segment is inconsistent despite a clean shutdown; recovering");
                clean = false;
                // Damage, not a torn write: move it aside so the batches after it stay.
                if verify != verify::Mode::Off && from.is_none() {
                    let last = segments.len() - 1;
                    verify_segments(
                        io,
                        dir,
                        &mut segments,
                        last,
                        true,
                        recovery_point,
                        &mut report,
                    )?;
                }
            }
        }
    }
    if !clean {
        let first = segments
            .partition_point(|s| s.base_offset <= recovery_point)
            .saturating_sub(1);
        let mut i = first;
        while i < segments.len() {
            let seg = &mut segments[i];
            let seg_base = seg.base_offset;
            let (next, truncated, reason) = seg.recover(io, limits, recovery_point)?;
            report.recovered_segments += 1;
            report.indexes_rebuilt += 1;
            if let Some(reason) = reason {
                tracing::warn!(dir = %dir.display(), base_offset = seg_base,
                    offset = next.unwrap_or(seg_base), bytes_truncated = truncated, %reason,
                    "truncated a torn or corrupt log tail");
                report.truncated_bytes += truncated;
                for later in segments.drain(i + 1..) {
                    report.truncated_bytes += later.size;
                    tracing::warn!(dir = %dir.display(), base_offset = later.base_offset, bytes = later.size,
                        "deleting a segment after the corruption");
                    later.delete_files()?;
                }
            }
            log_end_offset = Some(next.unwrap_or(seg_base));
            i += 1;
        }
        if first > 0 && log_end_offset.is_none() {
            log_end_offset = Some(segments.last().expect("one segment").base_offset);
        }
        for seg in &segments[first..] {
            seg.log_file()?.sync()?;
            for f in seg.index_files()? {
                f.sync()?;
            }
        }
        io.sync_dir(dir)?;
    }
    let mut log_end_offset =
        log_end_offset.unwrap_or_else(|| segments.last().expect("one").base_offset);
    let mut log_start_offset = log_start_checkpoint.max(segments[0].base_offset);
    if log_end_offset < log_start_offset {
        tracing::warn!(dir = %dir.display(), log_end_offset, log_start_offset,
            "log ends before its start offset; starting empty at the start offset");
        for seg in segments.drain(..) {
            seg.delete_files()?;
        }
        segments.push(Segment::create(io, dir, log_start_offset, limits)?);
        log_end_offset = log_start_offset;
    }
    let removed = report.damaged_ranges > 0 || report.truncated_bytes > 0;
    if removed && log_end_offset < recovery_point {
        // Offsets below the recovery point were durable: damage took them. The log continues
        // after them, so that no offset a consumer has seen is ever given to a different record.
        tracing::error!(dir = %dir.display(), log_end_offset, recovery_point,
            "damage removed offsets that had been made durable; the log continues after them");
        log_end_offset = skip_lost_offsets(
            io,
            dir,
            limits,
            &mut segments,
            log_end_offset,
            recovery_point,
        )?;
    }
    log_start_offset = log_start_offset.min(log_end_offset);

    let listed = (snapshots, companions);
    let (producers, snapshots, aborted) =
        rebuild_producer_state(io, dir, limits, &mut segments, listed, log_end_offset)?;
    if !clean || report.recovered_segments > 0 {
        tracing::info!(dir = %dir.display(), segments = report.segments, recovered_segments = report.recovered_segments,
            truncated_bytes = report.truncated_bytes, log_end_offset, producers = producers.len(),
            elapsed_ms = started.elapsed().as_millis() as u64, "recovered partition after an unclean shutdown");
    }
    let state = PartitionState {
        segments,
        log_start_offset,
        log_end_offset,
        durable_offset: log_end_offset,
        high_watermark: log_end_offset,
        producers,
        snapshots,
        aborted,
        unflushed_messages: 0,
        last_flush_ms: now_ms(),
        pending_sync: Vec::new(),
        dir_dirty: false,
        failed: None,
        deleted: false,
        closed: false,
    };
    Ok((state, report))
}

/// Makes the log continue at `to` after damage took the offsets `[from, to)`: an empty batch
/// covering them (as compaction leaves, so consumers step over the gap), or when it cannot
/// carry the range, a new segment starting at `to`. Returns the new log end.
pub(crate) fn skip_lost_offsets(
    io: &dyn FileIo,
    dir: &Path,
    limits: &SegmentLimits,
    segments: &mut Vec<Segment>,
    from: i64,
    to: i64,
) -> Result<i64, LogError> {
    let active = segments.last_mut().expect("one segment");
    let fits = to - 1 - from <= i32::MAX as i64 && to - 1 - active.base_offset <= i32::MAX as i64;
    if fits && from >= active.base_offset {
        active.ensure_indexes(io, limits)?;
        let gap = BatchHeader {
            base_offset: from,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: (to - 1 - from) as i32,
            base_timestamp: -1,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 0,
        };
        let bytes = cleaner::rewrite::empty_batch(&gap);
        let header =
            batch::check_batch(&bytes).map_err(|e| LogError::CorruptBatch(e.to_string()))?;
        active.append(&bytes, &[], &[(0..bytes.len(), header)], limits)?;
        active.log_file()?.sync()?;
        active.write_indexes(0)?;
        for f in active.index_files()? {
            f.sync()?;
        }
    } else {
        segments.push(Segment::create(io, dir, to, limits)?);
        io.sync_dir(dir)?;
    }
    Ok(to)
}

/// Whole-segment verification ([`verify`]) of `segments[from..]`: reports and repairs damage.
fn verify_segments(
    io: &dyn FileIo,
    dir: &Path,
    segments: &mut [Segment],
    from: usize,
    clean: bool,
    recovery_point: i64,
    report: &mut LoadReport,
) -> Result<(), LogError> {
    let count = segments.len();
    for i in from..count {
        // The last segment ends at the log end a clean shutdown recorded (its recovery point).
        let upper = match segments.get(i + 1) {
            Some(next) => Some(next.base_offset),
            None => (clean && recovery_point > segments[i].base_offset).then_some(recovery_point),
        };
        let torn_tail_from = (!clean && i + 1 == count).then_some(recovery_point);
        let seg = &mut segments[i];
        let verdict = match verify::verify_segment(io, dir, seg, upper, torn_tail_from) {
            Ok(verdict) => verdict,
            Err(e) => {
                // E.g. no space for the saved bytes: the segment is left as found (after a crash
                // recovery then cuts the log at the damage, as Kafka does).
                tracing::error!(dir = %dir.display(), base_offset = seg.base_offset, error = %e,
                    "cannot verify or repair a segment; left as found");
                continue;
            }
        };
        verify::log_verdict(dir, seg.base_offset, &verdict, "start-up");
        if verdict.index_discarded {
            report.indexes_rebuilt += 1;
        }
        report.damaged_ranges += verdict.damage.len();
        report.damaged_bytes += verdict.damaged_bytes();
        report.restored_base_offsets += verdict.restored_base_offsets;
    }
    Ok(())
}

/// The newest snapshot at or below the log end (with the earlier batches its companion keeps),
/// plus every batch after it; `listed` are the directory's `.snapshot` and `.producers`
/// offsets. Without a snapshot,
/// the scan starts at the active segment (older producers are then unknown and may restart at
/// any sequence). Aborted transactions come from the `.txnindex` files below the replay's
/// start and from the markers replayed; the files of the replayed segments are rewritten to
/// match.
fn rebuild_producer_state(
    io: &dyn FileIo,
    dir: &Path,
    limits: &SegmentLimits,
    segments: &mut [Segment],
    listed: (Vec<i64>, Vec<i64>),
    log_end_offset: i64,
) -> Result<(ProducerStateManager, SnapshotFiles, Vec<AbortedTxn>), LogError> {
    let (snapshots, companions) = listed;
    let (files, latest) =
        producer_snapshot::load_latest(dir, snapshots, &companions, log_end_offset)?;
    let (from, mut state) = match latest {
        Some((offset, state)) => (offset, state),
        None => (
            segments.last().expect("one segment").base_offset,
            ProducerStateManager::new(),
        ),
    };
    let mut aborted = Vec::new();
    for seg in segments.iter() {
        aborted.extend(
            txn_index::load(dir, seg.base_offset)?
                .into_iter()
                .filter(|a| a.last_offset < from.min(log_end_offset)),
        );
    }
    if from >= log_end_offset {
        return Ok((state, files, aborted));
    }
    let now = now_ms();
    let first = segments
        .partition_point(|s| s.base_offset <= from)
        .saturating_sub(1);
    let mut replayed = Vec::new();
    for seg in segments[first..].iter_mut() {
        let position = seg.lookup(io, limits, from)?;
        let file = seg.log_file()?;
        let mut scan = BatchScanner::new(file.as_ref(), position, seg.size);
        while let Scan::Batch(b) = scan.next(false)? {
            if b.header.last_offset() < from {
                continue;
            }
            let mut pending = PendingUpdates::default();
            state.record(&mut pending, &b.header, now);
            let mut abort = None;
            if b.header.is_control() {
                // A marker is one small record: its first bytes are enough.
                let mut head = vec![0u8; b.header.size().min(256)];
                super::io::read_exact_at(file.as_ref(), &mut head, b.position)?;
                abort = txn::record_marker(&state, &mut pending, &b.header, &head);
            }
            state.commit(pending);
            replayed.extend(txn::aborted_entries(&state, abort.as_slice()));
        }
    }
    aborted.extend(replayed);
    for (i, seg) in segments.iter().enumerate().skip(first) {
        let end = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
        let own: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|a| a.last_offset >= seg.base_offset && a.last_offset < end)
            .copied()
            .collect();
        txn_index::rewrite(dir, seg.base_offset, &own)?;
    }
    Ok((state, files, aborted))
}
