//! The log cleaner: compaction of `cleanup.policy=compact` partitions, as Kafka defines it
//! (protocol.md §4).
//!
//! Owns scheduling (a background thread picks the dirtiest due log, see [`plan`]), the bounded
//! key → offset map ([`key_map`]), the record rewrite ([`rewrite`]), writing cleaned segments
//! beside the originals as `<base>.{log,index,timeindex}.cleaned` (fsynced, outside any lock),
//! and `cleaner-offset-checkpoint` (Kafka's text format) recording where each partition's cleaned
//! section ends. The swap itself is the partition's [`Partition::replace_segments`] (`.cleaned` →
//! `.swap` → final, under the partition lock, completed or discarded by start-up recovery).
//!
//! One cleaning pass: build the map over the dirty section [first dirty, first uncleanable) until
//! it is full, then rewrite every sealed segment from the log start up to where the map ended,
//! in groups of small neighbours merged up to `segment.bytes`; a key's latest record stays, older
//! ones and keyless ones go, tombstones stay until their delete horizon (and always when they lie
//! beyond where the map ended, whose older values the map does not cover); records of aborted
//! transactions go (`aborted.rs`), and a transaction's marker goes once no record of its
//! transaction is left and its delete horizon has passed (`markers.rs`). The last batch of each
//! group always stays (emptied if needed), so a cleaned segment ends at the same offset as the
//! segments it replaces and an interrupted swap is completed exactly. I/O is rate limited by
//! `log.cleaner.io.max.bytes.per.second`.
//!
//! Threads: `log.cleaner.threads` threads clean at once, each its own partition: they share one
//! [`Cleaner`] state (checkpoints, failures, horizons, and the partitions being cleaned, which no
//! other thread picks), locked only between passes, never during one.
//!
//! Scheduling: a log is due when its dirty ratio exceeds `min.cleanable.dirty.ratio`, when its
//! oldest dirty data is older than `max.compaction.lag.ms`, or when a tombstone kept by its last
//! cleaning has passed its delete horizon (remembered in memory only: after a restart such
//! tombstones go at the next cleaning the log needs anyway). The thread sleeps
//! `log.cleaner.backoff.ms` when nothing is due, waking early when a compacted partition rolls a
//! segment or a kept tombstone's horizon arrives.
//!
//! Depends on the log engine's partition, segment and batch types only; never on requests,
//! handlers or the group coordinator.

pub(crate) mod aborted;
mod cleaned;
pub mod key_map;
mod markers;
pub mod plan;
pub mod rewrite;
mod threads;

pub(crate) use threads::{run, CleanerSettings};

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use aborted::AbortedRanges;
use key_map::KeyOffsetMap;
use plan::{GroupLimits, Plan, PlanInput, SegmentSummary};
use rewrite::{FilterStats, RetainRules, RewriteError};

use super::batch::{BatchHeader, HEADER_SIZE};
use super::checkpoint::{self, OffsetMap};
use super::io::read_exact_at;
use super::open_files::SegmentFile;
use super::partition::{segment_limits, Partition};
use super::producer_state::ProducerStateManager;
use super::segment::{BatchScanner, Scan};
use super::{now_ms, LogError, Shared};
use crate::config::BrokerConfig;

/// Kafka's file recording the end of each compacted partition's cleaned section.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// How long a partition whose cleaning failed is left alone.
const FAILURE_BACKOFF: Duration = Duration::from_secs(60);
/// How often the idle cleaner looks for a newly rolled segment on a compacted topic.
const ROLL_POLL: Duration = Duration::from_millis(200);

/// Why a cleaning failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanerError {
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error("corrupt segment {path}: {reason}")]
    CorruptSegment { path: PathBuf, reason: String },
    #[error("cleaning stopped: the log is shutting down")]
    Stopped,
}

/// Broker-level cleaner settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory for the key → offset map.
    pub dedupe_buffer_size: usize,
    /// `log.cleaner.io.max.bytes.per.second` (read + written).
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: sleep when nothing is due.
    pub backoff: Duration,
}

impl CleanerConfig {
    pub fn from_broker(broker: &BrokerConfig) -> CleanerConfig {
        CleanerConfig {
            dedupe_buffer_size: usize::try_from(broker.cleaner_dedupe_buffer_size().max(1024))
                .unwrap_or(usize::MAX),
            io_max_bytes_per_second: broker.cleaner_io_max_bytes_per_second(),
            backoff: Duration::from_millis(broker.cleaner_backoff_ms().max(0) as u64),
        }
    }
}

/// `log.cleaner.threads`: partitions cleaned at once (at least 1).
pub fn threads(broker: &BrokerConfig) -> usize {
    broker
        .get("log.cleaner.threads")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig::from_broker(&BrokerConfig::default())
    }
}

/// What one cleaning pass did.
#[derive(Debug, Clone, Default)]
pub struct CleanStats {
    pub first_dirty_offset: i64,
    /// The new end of the cleaned section (where the map stopped).
    pub end_offset: i64,
    /// The end of the cleanable range; `end_offset` < this means another pass is needed.
    pub first_uncleanable_offset: i64,
    pub dirty_ratio: f64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    /// Transaction markers removed (no record of their transaction left, horizon passed).
    pub markers_removed: u64,
    pub map_keys: usize,
    pub map_capacity: usize,
    pub map_memory_bytes: usize,
    pub bytes_read: u64,
    pub duration: Duration,
    /// Time spent building the key map.
    pub map_duration: Duration,
    /// Time spent in [`Partition::replace_segments`] (under the partition lock).
    pub swap_duration: Duration,
    /// The longest single swap: the longest the partition lock was held by this pass.
    pub longest_swap: Duration,
}

impl CleanStats {
    /// True when this pass reached the end of the cleanable range.
    pub fn complete(&self) -> bool {
        self.end_offset >= self.first_uncleanable_offset
    }
}

/// Options of one cleaning call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CleanOptions {
    /// Clean even when the log is not due (dirty ratio and max lag ignored).
    pub force: bool,
    /// Write the first group's `.cleaned` files and stop without swapping them in (crash tests:
    /// the files on disk are then exactly what a crash before the swap leaves).
    pub prepare_only: bool,
}

/// A sealed segment as the cleaner read it under the partition lock.
pub(super) struct SegmentView {
    pub(super) summary: SegmentSummary,
    /// The `.log`, opened as the cleaner reaches it.
    pub(super) file: SegmentFile,
    pub(super) log_path: PathBuf,
}

/// A partition's state copied under its lock.
struct Snapshot {
    sealed: Vec<SegmentView>,
    active_base_offset: i64,
    log_start_offset: i64,
    last_stable_offset: i64,
    producers: ProducerStateManager,
    aborted: AbortedRanges,
}

struct CheckpointEntry {
    offset: i64,
    /// The partition the offset belongs to, once seen (a re-created topic is a new partition).
    owner: Option<Weak<Partition>>,
}

/// The cleaner: plans and runs cleanings and keeps `cleaner-offset-checkpoint`. Each cleaner
/// thread has one; [`Cleaner::sibling`]s share their state.
pub struct Cleaner {
    data_dir: PathBuf,
    config: CleanerConfig,
    state: Arc<Mutex<CleanerState>>,
    /// Threads sharing `log.cleaner.io.max.bytes.per.second`: each pass gets its share.
    io_share: usize,
}

/// What the cleaner threads share; locked briefly, never during a pass's I/O.
#[derive(Default)]
struct CleanerState {
    checkpoints: HashMap<(String, i32), CheckpointEntry>,
    failed: HashMap<(String, i32), Instant>,
    /// Per partition, the earliest delete horizon among the tombstones its last cleaning kept
    /// (KIP-534's "latest delete horizon"): once passed, the log is cleaned even with nothing
    /// dirty, so deleted keys disappear without new writes. In memory only.
    horizons: HashMap<(String, i32), i64>,
    /// Partitions a thread is cleaning now; the others leave them alone.
    in_progress: HashSet<(String, i32)>,
}

fn key_of(p: &Partition) -> (String, i32) {
    (p.topic.clone(), p.index)
}

/// Rate limiter over the bytes the cleaner reads and writes.
pub(super) struct Throttle<'a> {
    rate: f64,
    started: Instant,
    bytes: f64,
    shared: &'a Shared,
}

impl Throttle<'_> {
    pub(super) fn account(&mut self, n: usize) -> Result<(), CleanerError> {
        if self.shared.is_shutting_down() {
            return Err(CleanerError::Stopped);
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate < 1e300) {
            return Ok(());
        }
        self.bytes += n as f64;
        let due = Duration::from_secs_f64(self.bytes / self.rate);
        let elapsed = self.started.elapsed();
        if due > elapsed + Duration::from_millis(10) && self.shared.wait_stop(due - elapsed) {
            return Err(CleanerError::Stopped);
        }
        Ok(())
    }
}

impl Cleaner {
    /// A cleaner for the partitions of `data_dir`, starting from its `cleaner-offset-checkpoint`.
    pub fn new(data_dir: &Path, config: CleanerConfig) -> Cleaner {
        let checkpoints = checkpoint::read_offsets(&data_dir.join(CHECKPOINT_FILE))
            .into_iter()
            .map(|(k, offset)| {
                (
                    k,
                    CheckpointEntry {
                        offset,
                        owner: None,
                    },
                )
            })
            .collect();
        Cleaner {
            data_dir: data_dir.to_path_buf(),
            config,
            state: Arc::new(Mutex::new(CleanerState {
                checkpoints,
                ..CleanerState::default()
            })),
            io_share: 1,
        }
    }

    /// A cleaner for another thread, sharing this one's checkpoints and state.
    pub fn sibling(&self) -> Cleaner {
        Cleaner {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            state: self.state.clone(),
            io_share: self.io_share,
        }
    }

    fn state(&self) -> MutexGuard<'_, CleanerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The end of `partition`'s cleaned section as checkpointed (None when never cleaned).
    pub fn cleaned_offset(&mut self, partition: &Arc<Partition>) -> Option<i64> {
        let mut state = self.state();
        let entry = state.checkpoints.get_mut(&key_of(partition))?;
        match &entry.owner {
            // Compared through upgrade: a dropped partition's address may be reused.
            Some(w) if !w.upgrade().is_some_and(|a| Arc::ptr_eq(&a, partition)) => None,
            Some(_) => Some(entry.offset),
            None => {
                entry.owner = Some(Arc::downgrade(partition));
                Some(entry.offset)
            }
        }
    }

    fn set_cleaned_offset(&mut self, partition: &Arc<Partition>, offset: i64) -> io::Result<()> {
        let mut state = self.state();
        state.checkpoints.insert(
            key_of(partition),
            CheckpointEntry {
                offset,
                owner: Some(Arc::downgrade(partition)),
            },
        );
        // Partitions that no longer exist (deleted topics) leave the file.
        state
            .checkpoints
            .retain(|_, e| e.owner.as_ref().is_none_or(|w| w.strong_count() > 0));
        self.write_checkpoint(&state)
    }

    /// Forgets the entries of partitions that are gone (deleted topics, also those deleted while
    /// the broker was down), as Kafka does on deletion, so a re-created topic starts dirty.
    pub fn forget_missing(&mut self, live: &[Arc<Partition>]) -> io::Result<()> {
        let keys: std::collections::HashSet<(String, i32)> =
            live.iter().map(|p| key_of(p)).collect();
        let mut state = self.state();
        state.horizons.retain(|k, _| keys.contains(k));
        let before = state.checkpoints.len();
        state.checkpoints.retain(|k, e| {
            keys.contains(k) && e.owner.as_ref().is_none_or(|w| w.strong_count() > 0)
        });
        if state.checkpoints.len() == before {
            return Ok(());
        }
        self.write_checkpoint(&state)
    }

    /// Called with the state locked, so threads write the file one at a time.
    fn write_checkpoint(&self, state: &CleanerState) -> io::Result<()> {
        let map: OffsetMap = state
            .checkpoints
            .iter()
            .map(|(k, e)| (k.clone(), e.offset))
            .collect();
        checkpoint::write_atomic(
            &self.data_dir.join(CHECKPOINT_FILE),
            checkpoint::encode_offsets(&map).as_bytes(),
        )
    }

    /// Copies what planning and cleaning need from the partition, under its lock.
    fn snapshot(
        &self,
        p: &Partition,
        min_lag_needed: bool,
    ) -> Result<Option<Snapshot>, CleanerError> {
        let limits = segment_limits(&p.config());
        let mut st = p.lock();
        if st.deleted || st.closed {
            return Ok(None);
        }
        let n = st.segments.len();
        let active_base_offset = st.segments[n - 1].base_offset;
        let mut sealed = Vec::with_capacity(n - 1);
        for seg in st.segments[..n - 1].iter_mut() {
            let max_timestamp = if min_lag_needed {
                seg.max_timestamp(p.io.as_ref(), &limits)?
                    .map_or(-1, |(ts, _)| ts)
            } else {
                -1
            };
            sealed.push(SegmentView {
                summary: SegmentSummary {
                    base_offset: seg.base_offset,
                    size: seg.size,
                    max_timestamp,
                },
                file: seg.log_handle().clone(),
                log_path: seg.path("log"),
            });
        }
        Ok(Some(Snapshot {
            sealed,
            active_base_offset,
            log_start_offset: st.log_start_offset,
            last_stable_offset: st.offsets().last_stable_offset,
            producers: st.producers.clone(),
            aborted: AbortedRanges::new(st.aborted.clone()),
        }))
    }

    /// Plans `partition`: (plan, whether it is due). None for partitions that are not compacted
    /// or are closed.
    fn evaluate(
        &mut self,
        partition: &Arc<Partition>,
        now: i64,
    ) -> Result<Option<(Plan, bool, Snapshot)>, CleanerError> {
        let cfg = partition.config();
        if !cfg.cleanup_policy.compact {
            return Ok(None);
        }
        let Some(snap) = self.snapshot(partition, cfg.min_compaction_lag_ms > 0)? else {
            return Ok(None);
        };
        let summaries: Vec<SegmentSummary> = snap.sealed.iter().map(|s| s.summary).collect();
        let plan = plan::plan(&PlanInput {
            sealed: &summaries,
            active_base_offset: snap.active_base_offset,
            log_start_offset: snap.log_start_offset,
            last_stable_offset: snap.last_stable_offset,
            checkpoint: self.cleaned_offset(partition),
            now_ms: now,
            min_compaction_lag_ms: cfg.min_compaction_lag_ms,
            min_cleanable_dirty_ratio: cfg.min_cleanable_dirty_ratio,
        });
        let lag_exceeded = plan.has_dirty()
            && cfg.max_compaction_lag_ms < i64::MAX
            && plan::max_lag_exceeded(
                first_batch_timestamp(&snap, plan.first_dirty_offset)?,
                now,
                cfg.max_compaction_lag_ms,
            );
        let horizon_passed = self
            .state()
            .horizons
            .get(&key_of(partition))
            .is_some_and(|&h| h <= now);
        let due =
            plan::is_due(&plan, cfg.min_cleanable_dirty_ratio, lag_exceeded) || horizon_passed;
        Ok(Some((plan, due, snap)))
    }

    /// The dirty ratio and due-ness of `partition` now (for tests and diagnostics).
    pub fn plan(
        &mut self,
        partition: &Arc<Partition>,
        now: i64,
    ) -> Result<Option<(Plan, bool)>, CleanerError> {
        Ok(self.evaluate(partition, now)?.map(|(p, due, _)| (p, due)))
    }

    /// Runs one cleaning pass on `partition` at time `now` if it is due (or `options.force`).
    /// Returns None when there was nothing to do.
    pub fn clean(
        &mut self,
        partition: &Arc<Partition>,
        now: i64,
        options: CleanOptions,
    ) -> Result<Option<CleanStats>, CleanerError> {
        let Some((plan, due, snap)) = self.evaluate(partition, now)? else {
            return Ok(None);
        };
        // Due with nothing dirty means a tombstone's delete horizon has passed: the pass then
        // rewrites the clean section with an empty map, removing expired tombstones.
        if !(due || options.force && plan.has_dirty()) {
            return Ok(None);
        }
        self.run_pass(partition, plan, snap, now, options)
    }

    /// Cleans `partition` until its whole cleanable range is clean (several passes when the
    /// dirty section has more keys than the map holds). Returns the passes' stats.
    pub fn clean_fully(
        &mut self,
        partition: &Arc<Partition>,
        now: i64,
        force: bool,
    ) -> Result<Vec<CleanStats>, CleanerError> {
        let mut passes = Vec::new();
        let mut options = CleanOptions {
            force,
            prepare_only: false,
        };
        // Bounded: each pass advances the cleaned offset by at least one record.
        while let Some(stats) = self.clean(partition, now, options)? {
            let complete = stats.complete();
            passes.push(stats);
            if complete {
                break;
            }
            options.force = true;
        }
        Ok(passes)
    }

    fn run_pass(
        &mut self,
        partition: &Arc<Partition>,
        plan: Plan,
        snap: Snapshot,
        now: i64,
        options: CleanOptions,
    ) -> Result<Option<CleanStats>, CleanerError> {
        let started = Instant::now();
        let cfg = partition.config();
        let mut throttle = Throttle {
            rate: self.config.io_max_bytes_per_second / self.io_share as f64,
            started,
            bytes: 0.0,
            shared: &partition.shared,
        };
        let mut stats = CleanStats {
            first_dirty_offset: plan.first_dirty_offset,
            first_uncleanable_offset: plan.first_uncleanable_offset,
            dirty_ratio: plan.dirty_ratio(),
            ..CleanStats::default()
        };
        // The dirty section holds at most this many records (offsets are unique).
        let (map, end_offset) = build_sized_map(
            &snap,
            &plan,
            self.config.dedupe_buffer_size,
            &mut throttle,
            &mut stats,
        )?;
        stats.map_duration = started.elapsed();
        stats.end_offset = end_offset;
        stats.map_keys = map.len();
        stats.map_capacity = map.capacity();
        stats.map_memory_bytes = map.memory_bytes();

        let summaries: Vec<SegmentSummary> = snap.sealed.iter().map(|s| s.summary).collect();
        let group_limits = GroupLimits {
            max_bytes: cfg.segment_bytes.min(i32::MAX as u64),
            max_index_entries: (cfg.segment_index_bytes / super::index::ENTRY_SIZE as u64).max(1),
            index_interval_bytes: cfg.index_interval_bytes,
        };
        let groups = plan::group_segments(
            &summaries,
            snap.active_base_offset,
            end_offset,
            &group_limits,
        );
        let rules = RetainRules {
            map: &map,
            now_ms: now,
            delete_retention_ms: cfg.delete_retention_ms,
            upper_bound_offset: end_offset,
        };
        let mut filter = FilterStats::default();
        let mut markers = markers::TxnMarkers::default();
        for group in groups {
            let segments = &snap.sealed[group];
            let bases: Vec<i64> = segments.iter().map(|s| s.summary.base_offset).collect();
            let before: u64 = segments.iter().map(|s| s.summary.size).sum();
            let written = cleaned::write_group(
                partition,
                segments,
                &snap.producers,
                &snap.aborted,
                &mut markers,
                &rules,
                &mut throttle,
                &mut filter,
                &mut stats,
            );
            let size = match written {
                Ok(Some((size, changed))) => {
                    if !changed && bases.len() == 1 {
                        // Already clean: swapping in an identical copy would only cost I/O.
                        cleaned::remove_cleaned(partition, bases[0]);
                        continue;
                    }
                    size
                }
                Ok(None) => continue,
                Err(e) => {
                    cleaned::remove_cleaned(partition, bases[0]);
                    return Err(e);
                }
            };
            if options.prepare_only {
                stats.segments_before = bases.len();
                stats.bytes_before = before;
                stats.bytes_after = size;
                return Ok(Some(stats));
            }
            let swap_started = Instant::now();
            let swapped = partition.replace_segments(&bases);
            stats.swap_duration += swap_started.elapsed();
            stats.longest_swap = stats.longest_swap.max(swap_started.elapsed());
            if let Err(e) = swapped {
                cleaned::remove_cleaned(partition, bases[0]);
                return Err(e.into());
            }
            stats.segments_before += bases.len();
            stats.segments_after += 1;
            stats.bytes_before += before;
            stats.bytes_after += size;
        }
        stats.records_read = filter.records_read;
        stats.records_kept = filter.records_kept;
        stats.tombstones_removed = filter.tombstones_removed;
        stats.markers_removed = markers.removed;
        match filter.earliest_horizon {
            Some(h) => self.state().horizons.insert(key_of(partition), h),
            None => self.state().horizons.remove(&key_of(partition)),
        };
        self.set_cleaned_offset(partition, end_offset)?;
        stats.duration = started.elapsed();
        let cleaner_stats = &partition.shared.stats.cleaner;
        let ended = now_ms();
        cleaner_stats.pass_done(stats.bytes_before, stats.bytes_after, ended);
        cleaner_stats.update(&partition.topic, partition.index, |c| {
            c.last_cleaned_ms = Some(ended);
            c.uncleanable = false;
        });
        let secs = stats.duration.as_secs_f64().max(1e-6);
        tracing::info!(
            topic = %partition.topic,
            partition = partition.index,
            from_offset = stats.first_dirty_offset,
            to_offset = stats.end_offset,
            dirty_ratio = format!("{:.3}", stats.dirty_ratio),
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            segments_before = stats.segments_before,
            segments_after = stats.segments_after,
            records_removed = stats.records_read - stats.records_kept,
            tombstones_removed = stats.tombstones_removed,
            markers_removed = stats.markers_removed,
            map_keys = stats.map_keys,
            duration_ms = stats.duration.as_millis() as u64,
            swap_ms = stats.swap_duration.as_millis() as u64,
            mb_per_sec = format!("{:.1}", stats.bytes_before as f64 / 1e6 / secs),
            "cleaned log"
        );
        Ok(Some(stats))
    }
}

/// The first batch's max timestamp of the segment holding `offset` (Kafka's
/// `getFirstBatchTimestamp`), for the max-compaction-lag rule.
fn first_batch_timestamp(snap: &Snapshot, offset: i64) -> Result<Option<i64>, CleanerError> {
    let i = snap
        .sealed
        .partition_point(|s| s.summary.base_offset <= offset)
        .saturating_sub(1);
    let Some(seg) = snap.sealed.get(i) else {
        return Ok(None);
    };
    if seg.summary.size < HEADER_SIZE as u64 {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_SIZE];
    read_exact_at(seg.file.file()?.as_ref(), &mut head, 0)?;
    Ok(BatchHeader::parse(&head).ok().map(|h| h.max_timestamp))
}

/// Slots of the first map tried; a map that fills up is replaced by one this many times larger.
const INITIAL_SLOTS: usize = 1 << 16;
const GROWTH: usize = 8;

/// Builds the key map over the dirty section with a table as small as its distinct keys allow:
/// it starts small and, when full, is dropped and the scan restarted with a table `GROWTH` times
/// larger, up to `log.cleaner.dedupe.buffer.size` (never two tables at once, so memory stays
/// within the budget; the re-read prefix costs little next to the cache misses a needlessly
/// large table causes). Returns the map and where it stopped.
fn build_sized_map(
    snap: &Snapshot,
    plan: &Plan,
    budget: usize,
    throttle: &mut Throttle<'_>,
    stats: &mut CleanStats,
) -> Result<(KeyOffsetMap, i64), CleanerError> {
    let max_slots = KeyOffsetMap::slots_for(budget);
    // The dirty section holds at most this many records, hence keys (offsets are unique).
    let records = (plan.first_uncleanable_offset - plan.first_dirty_offset).max(1) as usize;
    let wanted = ((records as f64 / key_map::LOAD_FACTOR) as usize).saturating_add(2);
    let mut slots = max_slots
        .min(wanted)
        .min(INITIAL_SLOTS)
        .max(16.min(max_slots));
    loop {
        let mut map = KeyOffsetMap::with_slots(slots);
        let end = build_map(snap, plan, &mut map, throttle, stats)?;
        let bigger = max_slots.min(wanted).min(slots.saturating_mul(GROWTH));
        if end >= plan.first_uncleanable_offset || bigger <= slots {
            return Ok((map, end));
        }
        drop(map);
        slots = bigger;
    }
}

/// Fills `map` with the latest offset of each key in [first dirty, first uncleanable), stopping
/// when the map is full. Returns where it stopped: the offset of the first record not mapped.
fn build_map(
    snap: &Snapshot,
    plan: &Plan,
    map: &mut KeyOffsetMap,
    throttle: &mut Throttle<'_>,
    stats: &mut CleanStats,
) -> Result<i64, CleanerError> {
    let (from, to) = (plan.first_dirty_offset, plan.first_uncleanable_offset);
    for (i, seg) in snap.sealed.iter().enumerate() {
        let next_base = snap
            .sealed
            .get(i + 1)
            .map_or(snap.active_base_offset, |s| s.summary.base_offset);
        if next_base <= from {
            continue;
        }
        if seg.summary.base_offset >= to {
            break;
        }
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
            let h = b.header;
            // Markers carry no keys; an aborted value never stands for its key.
            if h.last_offset() < from || h.is_control() || snap.aborted.holds(&h) {
                continue;
            }
            let bytes = b.bytes.expect("the scan was asked for bodies");
            throttle.account(bytes.len())?;
            stats.bytes_read += bytes.len() as u64;
            if h.records_count == 0 {
                continue;
            }
            if let Some(full_at) = rewrite::map_keys(&h, &bytes, map, (from, to))? {
                return Ok(full_at);
            }
        }
    }
    Ok(to)
}

/// What changes when a compacted partition rolls: (topic, partition, segments, active base).
/// What changes when a compacted partition may have become cleanable: a roll, or (in fsync mode,
/// where only the durable part of the log is cleanable) the high watermark catching up with the
/// active segment after a roll. Without the second, a roll noticed before its segment was
/// fsynced would leave the cleaner asleep for a whole `log.cleaner.backoff.ms`.
fn roll_signature(shared: &Shared) -> Vec<(String, i32, usize, i64, i64)> {
    let mut sig = Vec::new();
    for p in shared.partitions() {
        if !p.config().cleanup_policy.compact {
            continue;
        }
        let st = p.lock();
        let n = st.segments.len();
        let active = st.segments.last().map_or(0, |s| s.base_offset);
        let durable_sealed_end = st.high_watermark.min(active);
        sig.push((p.topic.clone(), p.index, n, active, durable_sealed_end));
    }
    sig
}

impl Cleaner {
    /// The earliest delete horizon after `now` of any tombstone kept by the last cleanings.
    pub fn next_horizon(&self, now: i64) -> Option<i64> {
        self.state()
            .horizons
            .values()
            .copied()
            .filter(|&h| h > now)
            .min()
    }

    /// Picks the due compacted partition with the dirtiest log and cleans it fully.
    /// `partitions` must be every live partition (checkpoint entries of others are forgotten). Returns true when something was cleaned.
    pub fn clean_dirtiest(&mut self, partitions: &[Arc<Partition>], now: i64) -> bool {
        if let Err(e) = self.forget_missing(partitions) {
            tracing::warn!(error = %e, "cannot write {CHECKPOINT_FILE}");
        }
        if let Some(p) = partitions.first() {
            let compacted: std::collections::HashSet<(String, i32)> = partitions
                .iter()
                .filter(|p| p.config().cleanup_policy.compact)
                .map(|p| key_of(p))
                .collect();
            p.shared.stats.cleaner.retain(|k| compacted.contains(k));
        }
        // Kafka's choice: the due log with the highest dirty ratio.
        let mut best: Option<(f64, &Arc<Partition>)> = None;
        for p in partitions {
            let key = key_of(p);
            {
                let state = self.state();
                let failed = state
                    .failed
                    .get(&key)
                    .is_some_and(|until| Instant::now() < *until);
                if failed || state.in_progress.contains(&key) {
                    continue;
                }
            }
            let stats = &p.shared.stats.cleaner;
            let plan = match self.evaluate(p, now) {
                Ok(Some((plan, due, _))) => {
                    stats.update(&p.topic, p.index, |c| {
                        c.dirty_ratio = plan.dirty_ratio();
                        c.uncleanable = false;
                    });
                    if !due {
                        continue;
                    }
                    plan
                }
                Ok(None) => {
                    // Not compacted (any more) or closed.
                    self.state().horizons.remove(&key);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot plan cleaning");
                    stats.update(&p.topic, p.index, |c| c.uncleanable = true);
                    self.state()
                        .failed
                        .insert(key, Instant::now() + FAILURE_BACKOFF);
                    continue;
                }
            };
            if best.is_none_or(|(ratio, _)| plan.dirty_ratio() > ratio) {
                best = Some((plan.dirty_ratio(), p));
            }
        }
        let Some((_, p)) = best else {
            return false;
        };
        let p = p.clone();
        let key = key_of(&p);
        if !self.state().in_progress.insert(key.clone()) {
            // Another thread took it since: look again.
            return true;
        }
        let stats = &p.shared.stats.cleaner;
        stats.update(&p.topic, p.index, |c| c.cleaning = true);
        let result = self.clean_fully(&p, now, true);
        self.state().in_progress.remove(&key);
        stats.update(&p.topic, p.index, |c| {
            c.cleaning = false;
            c.uncleanable = matches!(&result, Err(e) if !matches!(e, CleanerError::Stopped));
            if result.is_ok() {
                // Cleaned fully: nothing left dirty up to the first uncleanable offset.
                c.dirty_ratio = 0.0;
            }
        });
        match result {
            Ok(passes) => !passes.is_empty(),
            Err(CleanerError::Stopped) => false,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e,
                    "cleaning failed; the partition is skipped for a while");
                self.state()
                    .failed
                    .insert(key, Instant::now() + FAILURE_BACKOFF);
                false
            }
        }
    }
}
