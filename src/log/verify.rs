//! Whole-segment verification (`cairn.log.verify.on.startup`: in a background pass after start-up
//! by default, or before serving): finds damage anywhere in a segment, not only in the unflushed
//! tail that [`super::recovery`] re-validates, reports it with the partition directory and the offsets concerned, moves the
//! damaged bytes aside into a file for the operator, and keeps every intact batch readable.
//!
//! A batch is *intact* when its length, magic, last offset delta and CRC-32C are valid. After
//! damaged bytes the walk resynchronises at the next position where an intact batch starts. The
//! base offset is not covered by the CRC, so intact batches must then also be in offset order
//! within `[segment base, next segment's base)`; of two that conflict, the one breaking the
//! order of its neighbours is dropped, and a dropped batch that exactly fits the gap its
//! neighbours leave gets its base offset back (the only field a CRC-valid batch can have wrong).
//!
//! A damaged tail of the active segment past the recovery point is a torn write after a crash,
//! not damage: it is left for [`super::recovery`] to truncate, as Kafka does. Knows segment
//! files only (through [`super::io`]); nothing of producers, topics or requests.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use super::index;
use super::io::{read_exact_at, FileIo, IoFile};
use super::segment::{BatchScanner, Segment};

/// When segments are verified (`cairn.log.verify.on.startup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Serve at once; after a crash, the segments recovery re-reads are verified first; every
    /// other segment is verified by a background pass after start-up.
    Background,
    /// Every segment is verified before the broker serves.
    BeforeServing,
    /// Kafka's behaviour: only the tail after the recovery point is checked, after a crash, and
    /// a damaged batch there cuts the log.
    Off,
}

impl Mode {
    /// From the config value (validated by the config table).
    pub(crate) fn from_config(value: &str) -> Mode {
        match value {
            "before-serving" => Mode::BeforeServing,
            "off" => Mode::Off,
            _ => Mode::Background,
        }
    }
}

/// One intact batch found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    position: u64,
    size: u64,
    base_offset: i64,
    last_offset_delta: i32,
}

impl Found {
    fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }
    fn end(&self) -> u64 {
        self.position + self.size
    }
}

/// One damaged byte range removed from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub positions: Range<u64>,
    /// The offsets no intact batch covers around the damage: from the end of the intact batch
    /// before it to the start of the one after it (`None`: up to the log end).
    pub first_offset: i64,
    pub next_intact_offset: Option<i64>,
    pub reason: String,
    /// Where the damaged bytes were saved.
    pub moved_to: PathBuf,
}

/// What verifying one segment found and did.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub damage: Vec<Damage>,
    /// Batches whose damaged base offset was restored from their neighbours.
    pub restored_base_offsets: usize,
    /// The offset index disagreed with the batches and was deleted (to be rebuilt).
    pub index_discarded: bool,
}

impl Verdict {
    pub(crate) fn damaged_bytes(&self) -> u64 {
        self.damage
            .iter()
            .map(|d| d.positions.end - d.positions.start)
            .sum()
    }
}

/// Reads the batch at `position` if it is intact.
fn intact_at(
    scan: &mut BatchScanner<'_>,
    position: u64,
    end: u64,
) -> io::Result<Result<Found, String>> {
    let remaining = end - position;
    if remaining < HEADER_SIZE as u64 {
        return Ok(Err(format!("{remaining} trailing bytes")));
    }
    let head = scan.bytes(position, HEADER_SIZE)?;
    let header = BatchHeader::parse(head).expect("a whole header");
    if header.magic != 2 {
        return Ok(Err(format!("magic {}", header.magic)));
    }
    if header.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Ok(Err(format!("batch length {}", header.batch_length)));
    }
    let size = header.size() as u64;
    if size > remaining {
        return Ok(Err(format!(
            "a batch of {size} bytes with {remaining} bytes left"
        )));
    }
    let body = scan.bytes(position, size as usize)?;
    match batch::check_batch(body) {
        Ok(h) => Ok(Ok(Found {
            position,
            size,
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
        })),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// True when the header at `q` is plausible for this segment, before its CRC is computed: magic
/// 2, a length that fits the file, offsets the segment can hold, a known codec.
fn could_start(scan: &mut BatchScanner<'_>, q: u64, end: u64, base: i64) -> io::Result<bool> {
    let head = scan.bytes(q, HEADER_SIZE)?;
    if head[16] != 2 {
        return Ok(false);
    }
    let h = BatchHeader::parse(head).expect("a whole header");
    Ok(h.batch_length >= (HEADER_SIZE - LOG_OVERHEAD) as i32
        && q + h.size() as u64 <= end
        && h.base_offset >= base
        && h.base_offset - base <= i32::MAX as i64
        && h.last_offset_delta >= 0
        && h.compression() <= 4)
}

fn batch_size(scan: &mut BatchScanner<'_>, q: u64) -> io::Result<u64> {
    let head = scan.bytes(q, LOG_OVERHEAD)?;
    Ok(i32::from_be_bytes(head[8..12].try_into().expect("4 bytes")) as u64 + LOG_OVERHEAD as u64)
}

/// Intact batches, and damaged byte ranges with the reason found at their start.
type Walked = (Vec<Found>, Vec<(Range<u64>, String)>);

/// Every intact batch of the file in file order, and the damaged ranges between them (with the
/// reason found at the start of each).
fn walk(scan: &mut BatchScanner<'_>, end: u64, base: i64, budget: &mut u64) -> io::Result<Walked> {
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    let mut pos = 0u64;
    while pos < end {
        match intact_at(scan, pos, end)? {
            Ok(b) => {
                found.push(b);
                pos = b.end();
            }
            Err(reason) => {
                // Resynchronise: the next position where an intact batch starts.
                // Checking CRCs at plausible positions is bounded, so that hostile bytes cannot
                // make start-up quadratic; past the budget the rest counts as damaged.
                let mut next = None;
                let mut q = pos + 1;
                while q + HEADER_SIZE as u64 <= end && *budget > 0 {
                    if could_start(scan, q, end, base)? {
                        let size = batch_size(scan, q)?;
                        *budget = budget.saturating_sub(size);
                        if let Ok(b) = intact_at(scan, q, end)? {
                            next = Some(b);
                            break;
                        }
                    }
                    q += 1;
                }
                match next {
                    Some(b) => {
                        damaged.push((pos..b.position, reason));
                        pos = b.position;
                    }
                    None => {
                        damaged.push((pos..end, reason));
                        pos = end;
                    }
                }
            }
        }
    }
    Ok((found, damaged))
}

/// Chooses the batches whose offsets are consistent: increasing, not overlapping, within
/// `[base, upper)`. Returns a keep flag per batch and the base offsets restored.
fn select(found: &mut [Found], base: i64, upper: Option<i64>) -> (Vec<bool>, usize) {
    let fits = |b: &Found, from: i64| {
        // A damaged base offset can be anything; offsets that far out are never real.
        b.base_offset <= i64::MAX / 2
            && b.base_offset >= from
            && upper.is_none_or(|u| b.last_offset() < u)
            && b.last_offset() - base <= i32::MAX as i64
    };
    let mut keep = vec![false; found.len()];
    let mut next_allowed = base;
    for i in 0..found.len() {
        let b = found[i];
        if !fits(&b, next_allowed) {
            continue;
        }
        if let Some(nx) = found.get(i + 1) {
            if nx.base_offset <= b.last_offset() && fits(nx, next_allowed) {
                // The two conflict and either could follow what came before: drop the one
                // that breaks the order of its neighbours.
                let b_odd = if b.base_offset == next_allowed {
                    false
                } else if nx.base_offset == next_allowed {
                    true
                } else {
                    match found.get(i + 2) {
                        Some(nn)
                            if nn.base_offset > nx.last_offset()
                                && nn.base_offset <= b.last_offset() =>
                        {
                            true
                        }
                        Some(_) => false,
                        None => nx.base_offset < b.base_offset,
                    }
                };
                if b_odd {
                    continue;
                }
            }
        }
        keep[i] = true;
        next_allowed = b.last_offset() + 1;
    }
    // A dropped batch alone between two kept ones, that exactly fills the gap they leave, had
    // only its base offset damaged (the CRC covers everything else): restore it.
    let mut restored = 0;
    let mut prev_kept: Option<usize> = None;
    let mut i = 0;
    while i < found.len() {
        if keep[i] {
            prev_kept = Some(i);
            i += 1;
            continue;
        }
        let next_kept = (i + 1..found.len()).find(|&j| keep[j]);
        let alone = next_kept.map_or(i + 1 == found.len(), |j| j == i + 1);
        let from = prev_kept.map_or(base, |p| found[p].last_offset() + 1);
        let to = next_kept.map(|j| found[j].base_offset).or(upper);
        if let (true, Some(to)) = (alone, to) {
            if to - from == found[i].last_offset_delta as i64 + 1 {
                found[i].base_offset = from;
                keep[i] = true;
                restored += 1;
                prev_kept = Some(i);
            }
        }
        i += 1;
    }
    (keep, restored)
}

/// Checks the offset index entries against the batches found: each must name the last offset of
/// the batch starting at its position.
fn index_agrees(path: &Path, base: i64, size: u64, kept: &[Found]) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return true; // missing: rebuilt on first use
    };
    // Entries past `size` belong to batches appended since the walk began (the active segment).
    let Ok(entries) = index::decode_entries(&bytes, u32::MAX as u64) else {
        return false;
    };
    let mut at = 0;
    for (rel, position) in entries.into_iter().filter(|&(_, p)| (p as u64) < size) {
        while at < kept.len() && kept[at].position < position as u64 {
            at += 1;
        }
        match kept.get(at) {
            Some(b) if b.position == position as u64 && b.last_offset() == base + rel as i64 => {}
            _ => return false,
        }
    }
    true
}

/// The background verification after start-up: every partition loaded at start-up, one after
/// the other, on this thread. Stops early when the log shuts down.
pub(crate) fn run_background(shared: std::sync::Arc<super::Shared>) {
    let started = std::time::Instant::now();
    let (mut partitions, mut segments, mut bytes, mut repaired) = (0usize, 0usize, 0u64, 0usize);
    for p in shared.partitions() {
        if shared.is_shutting_down() {
            tracing::info!(partitions, "background verification stopped by shutdown");
            return;
        }
        match p.verify_in_background(&|| shared.is_shutting_down()) {
            Ok((s, b, r)) => {
                segments += s;
                bytes += b;
                repaired += r;
            }
            Err(e) => tracing::warn!(topic = %p.topic, partition = p.index, error = %e,
                "background verification of a partition failed"),
        }
        partitions += 1;
    }
    shared
        .verified
        .store(true, std::sync::atomic::Ordering::SeqCst);
    shared
        .stats
        .set_verification(super::stats::VerificationReport {
            finished: true,
            partitions,
            segments,
            bytes,
            repaired_segments: repaired,
        });
    tracing::info!(
        partitions,
        segments,
        bytes,
        repaired_segments = repaired,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "background verification of the log finished"
    );
}

/// Logs what verifying a segment found and did; `when` is "start-up" or "background verification".
pub(crate) fn log_verdict(dir: &Path, base_offset: i64, verdict: &Verdict, when: &str) {
    for d in &verdict.damage {
        let next = d
            .next_intact_offset
            .map_or("the end of the segment".to_string(), |o| o.to_string());
        tracing::error!(dir = %dir.display(), base_offset,
            offset = d.first_offset, next_intact_offset = %next,
            positions = %format!("{}..{}", d.positions.start, d.positions.end),
            reason = %d.reason, moved_to = %d.moved_to.display(),
            "damaged data found by {when} verification; moved aside, the rest of the log stays readable");
    }
    if verdict.restored_base_offsets > 0 {
        tracing::warn!(dir = %dir.display(), base_offset,
            batches = verdict.restored_base_offsets,
            "restored damaged batch base offsets from their neighbours");
    }
}

/// The name of the file the damaged bytes at `position` are moved to.
pub(crate) fn damaged_file(dir: &Path, base: i64, position: u64) -> PathBuf {
    dir.join(format!("{base:020}.log.damaged-at-{position}"))
}

/// What the walk of one segment file found.
struct Examined {
    kept: Vec<Found>,
    damaged: Vec<(Range<u64>, String)>,
    restored: usize,
}

/// Walks the first `end` bytes of a segment file: the intact batches to keep (base offsets
/// restored where possible) and the damaged ranges. `upper` and `torn_tail_from` as for
/// [`verify_segment`].
fn examine(
    file: &dyn IoFile,
    end: u64,
    base: i64,
    upper: Option<i64>,
    torn_tail_from: Option<i64>,
) -> io::Result<Examined> {
    let mut scan = BatchScanner::new(file, 0, end);
    let mut budget = end.saturating_mul(8).max(64 << 20);
    let (mut found, mut damaged) = walk(&mut scan, end, base, &mut budget)?;
    let (keep, restored) = select(&mut found, base, upper);
    for (b, &k) in found.iter().zip(&keep) {
        if !k {
            damaged.push((
                b.position..b.end(),
                format!(
                    "a batch with offsets {}..={} out of order with its neighbours",
                    b.base_offset,
                    b.last_offset()
                ),
            ));
        }
    }
    damaged.sort_by_key(|(r, _)| r.start);
    let kept: Vec<Found> = found
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(b, _)| *b)
        .collect();

    // A torn write after a crash: the damaged tail of the active segment past the recovery
    // point, with nothing intact after it.
    if let (Some(recovery_point), Some((last, _))) = (torn_tail_from, damaged.last()) {
        let tail = last.end == end && kept.last().is_none_or(|b| b.end() <= last.start);
        let next_offset = kept.last().map_or(base, |b| b.last_offset() + 1);
        if tail && next_offset >= recovery_point {
            damaged.pop();
        }
    }
    Ok(Examined {
        kept,
        damaged,
        restored,
    })
}

/// True when the first `end` bytes of the segment file need no repair: every batch intact and in
/// order, and its offset index (at `index_path`) agreeing. Reads only; for the background
/// verification, which repairs under the partition's lock with [`verify_segment`] when this says
/// no.
pub(crate) fn is_intact(
    file: &dyn IoFile,
    end: u64,
    base: i64,
    upper: Option<i64>,
    index_path: &Path,
) -> io::Result<bool> {
    let e = examine(file, end, base, upper, None)?;
    Ok(e.damaged.is_empty() && e.restored == 0 && index_agrees(index_path, base, end, &e.kept))
}

/// Verifies one segment and repairs it when damaged. `upper` bounds its offsets: the next
/// segment's base, or for the last one the log end a clean shutdown recorded. `torn_tail_from`
/// is the recovery point when this is the active segment after an unclean stop (a damaged tail
/// past it is left for recovery to truncate).
pub(crate) fn verify_segment(
    io: &dyn FileIo,
    dir: &Path,
    segment: &mut Segment,
    upper: Option<i64>,
    torn_tail_from: Option<i64>,
) -> io::Result<Verdict> {
    let base = segment.base_offset;
    let file = segment.log_file()?;
    let end = file.size()?;
    let Examined {
        kept,
        damaged,
        restored,
    } = examine(file.as_ref(), end, base, upper, torn_tail_from)?;
    let mut verdict = Verdict {
        restored_base_offsets: restored,
        ..Verdict::default()
    };
    if damaged.is_empty() && restored == 0 {
        if !index_agrees(&segment.path("index"), base, end, &kept) {
            tracing::warn!(segment = %segment.path("log").display(),
                "offset index disagrees with the log; deleting it to be rebuilt");
            remove_if_exists(&segment.path("index"))?;
            remove_if_exists(&segment.path("timeindex"))?;
            *segment = Segment::open(io, dir, base)?;
            verdict.index_discarded = true;
        }
        return Ok(verdict);
    }

    // Save each damaged range for the operator.
    for (range, reason) in &damaged {
        let before = kept.iter().rev().find(|b| b.end() <= range.start);
        let after = kept.iter().find(|b| b.position >= range.end);
        let moved_to = damaged_file(dir, base, range.start);
        let out = io.open(&moved_to, true)?;
        let saved = out
            .set_len(0)
            .and_then(|()| copy_range(&file, &out, range.clone(), 0))
            .and_then(|()| out.sync());
        if let Err(e) = saved {
            let _ = fs::remove_file(&moved_to);
            return Err(e);
        }
        verdict.damage.push(Damage {
            positions: range.clone(),
            first_offset: before.map_or(base, |b| b.last_offset() + 1),
            next_intact_offset: after.map(|b| b.base_offset),
            reason: reason.clone(),
            moved_to,
        });
    }

    // Rewrite the segment from its intact batches (restored base offsets included), then swap
    // it in with a rename; a crash before the rename leaves a `.tmp` that start-up deletes.
    let tmp = dir.join(format!("{base:020}.log.repair.tmp"));
    let out = io.open(&tmp, true)?;
    let write = || -> io::Result<()> {
        out.set_len(0)?;
        let mut written = 0u64;
        let mut buf = Vec::new();
        for b in &kept {
            buf.resize(b.size as usize, 0);
            read_exact_at(file.as_ref(), &mut buf, b.position)?;
            batch::set_base_offset(&mut buf, b.base_offset);
            out.write_all_at(&buf, written)?;
            written += b.size;
        }
        out.sync()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Nothing can fail between the rename and the segment taking the new file: the indexes go
    // first (a crash before the rename leaves the old log, whose indexes are rebuilt) and the new
    // file is already open.
    let repaired = Segment::with_log(io, dir, base, out)?;
    remove_if_exists(&segment.path("index"))?;
    remove_if_exists(&segment.path("timeindex"))?;
    fs::rename(&tmp, segment.path("log"))?;
    *segment = repaired;
    io.sync_dir(dir)?;
    Ok(verdict)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn copy_range(
    from: &std::sync::Arc<dyn super::io::IoFile>,
    to: &std::sync::Arc<dyn super::io::IoFile>,
    range: Range<u64>,
    mut at: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = range.start;
    while pos < range.end {
        let n = ((range.end - pos) as usize).min(buf.len());
        read_exact_at(from.as_ref(), &mut buf[..n], pos)?;
        to.write_all_at(&buf[..n], at)?;
        pos += n as u64;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of `counts` records laid out contiguously from offset `base`, 100 bytes each.
    fn layout(base: i64, counts: &[i32]) -> Vec<Found> {
        let mut next = base;
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let b = Found {
                    position: i as u64 * 100,
                    size: 100,
                    base_offset: next,
                    last_offset_delta: n - 1,
                };
                next += n as i64;
                b
            })
            .collect()
    }

    fn bases(found: &[Found], keep: &[bool]) -> Vec<Option<i64>> {
        found
            .iter()
            .zip(keep)
            .map(|(b, &k)| k.then_some(b.base_offset))
            .collect()
    }

    #[test]
    fn an_intact_segment_keeps_every_batch() {
        let mut found = layout(10, &[1, 3, 2, 5]);
        let (keep, restored) = select(&mut found, 10, Some(21));
        assert_eq!(
            bases(&found, &keep),
            [Some(10), Some(11), Some(14), Some(16)]
        );
        assert_eq!(restored, 0);
    }

    #[test]
    fn a_base_offset_damaged_up_or_down_is_restored() {
        let cases = [
            (1, 1 << 40),
            (1, 0),
            (2, 12),
            (3, 1_000),
            (0, 999),
            (2, i64::MAX - 1),
            (1, -5),
            (3, i64::MIN),
        ];
        for (which, damaged) in cases {
            let mut found = layout(0, &[2, 2, 2, 2]);
            let original = found.clone();
            found[which].base_offset = damaged;
            // The last batch needs a bound: the next segment, or the log end recorded at a clean
            // shutdown.
            let upper = (which == 3).then_some(8);
            let (keep, restored) = select(&mut found, 0, upper);
            assert_eq!(restored, 1, "batch {which} damaged to {damaged}");
            assert!(keep.iter().all(|&k| k));
            assert_eq!(found, original);
        }
    }

    #[test]
    fn a_batch_that_cannot_be_placed_exactly_is_dropped() {
        // Gaps (as compaction leaves them) around a batch whose base offset is damaged: no
        // exact fit, so it is dropped and the others keep their offsets.
        let mut found = layout(0, &[2, 2, 2]);
        found[2].base_offset = 10;
        found[1].base_offset = 1_000_000;
        let (keep, restored) = select(&mut found, 0, None);
        assert_eq!(restored, 0);
        assert_eq!(bases(&found, &keep), [Some(0), None, Some(10)]);
    }

    #[test]
    fn batches_past_the_next_segment_or_the_index_range_are_dropped() {
        let mut found = layout(0, &[2, 2, 2]);
        found[2].base_offset = 50; // beyond the next segment's base 20, no exact fit
        let (keep, _) = select(&mut found, 0, Some(20));
        assert_eq!(bases(&found, &keep), [Some(0), Some(2), None]);
        let mut found = layout(0, &[2]);
        found[0].base_offset = i32::MAX as i64 + 5;
        let (keep, _) = select(&mut found, 0, None);
        assert_eq!(keep, [false]);
    }
}
