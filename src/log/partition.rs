//! One partition's log: its segments, offsets (log start, high watermark, log end, durable end),
//! producer state, and the append / read / flush / roll / delete-records operations.
//!
//! Concurrency: one mutex guards the state; appends write under it, but no fsync ever happens
//! under it (the flusher clones file handles, syncs outside, then publishes the durable offset).
//! Reads hold the lock only to find positions, then read with positioned reads. Knows nothing of
//! Kafka requests; talks to the manager only through [`Shared`].

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use bytes::Bytes;
use tokio::sync::watch;

use super::batch::{self, BatchHeader};
use super::io::{FileIo, IoFile};
use super::open_files::SegmentFile;
use super::producer_state::{PendingUpdates, ProducerStateManager, SequenceCheck};
use super::segment::{BatchScanner, Scan, Segment, SegmentLimits};
use super::{now_ms, AppendInfo, AppendOrigin, LogError, PartitionOffsets, Shared};
use crate::config::{LogConfig, TimestampType};

mod batch_at;
mod durable;
pub mod epochs;
mod follower;
mod layout;
mod limits;
mod patch;
mod read;
mod repair;
mod size;
mod slice;
mod timestamps;
pub mod txn;
mod validate;

pub(crate) use limits::segment_limits;
pub use slice::{Served, ServedRead};
use validate::map_batch_error;

/// The durable end as published to [`Partition::wait_durable`] callers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Durability {
    /// Every offset below this is fsynced.
    pub offset: i64,
    /// Set when an fsync failed: the partition takes no writes until it is reopened.
    pub failed: Option<Arc<str>>,
    pub shutting_down: bool,
}

/// A segment as the cleaner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub size: u64,
    pub log_path: PathBuf,
}

pub(crate) struct PartitionState {
    pub segments: Vec<Segment>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub durable_offset: i64,
    pub high_watermark: i64,
    pub producers: ProducerStateManager,
    pub snapshots: super::producer_snapshot::SnapshotFiles,
    /// Aborted transactions by marker offset (the `.txnindex` files' entries).
    pub aborted: Vec<super::txn_index::AbortedTxn>,
    pub unflushed_messages: i64,
    pub last_flush_ms: i64,
    /// Files of sealed segments not yet fsynced.
    pub pending_sync: Vec<SegmentFile>,
    /// Directory entries changed since the last fsync of the directory.
    pub dir_dirty: bool,
    pub failed: Option<Arc<str>>,
    pub deleted: bool,
    pub closed: bool,
}

impl PartitionState {
    fn active(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a partition always has a segment")
    }

    /// Index of the segment holding `offset`: the last one whose base is ≤ it.
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    pub(crate) fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
            last_stable_offset: self
                .producers
                .first_unstable_offset()
                .map_or(self.high_watermark, |f| f.min(self.high_watermark)),
            log_end_offset: self.log_end_offset,
        }
    }
}

/// One partition's log.
pub struct Partition {
    pub(crate) topic: String,
    pub(crate) index: i32,
    pub(crate) dir: PathBuf,
    pub(crate) io: Arc<dyn FileIo>,
    config: RwLock<Arc<LogConfig>>,
    pub(crate) state: Mutex<PartitionState>,
    durable: watch::Sender<Durability>,
    pub(crate) shared: Arc<Shared>,
    self_ref: Weak<Partition>,
    /// Which leader epoch wrote which offsets (lock order: after `state`), and the epoch
    /// appends stamp; see `epochs.rs`.
    epochs: Mutex<epochs::LeaderEpochCache>,
    append_epoch: AtomicI32,
    /// The high watermark never passes this (`follower.rs`: the in-sync followers' floor).
    hw_cap: AtomicI64,
}

impl Partition {
    pub(crate) fn new(
        topic: String,
        index: i32,
        dir: PathBuf,
        io: Arc<dyn FileIo>,
        config: Arc<LogConfig>,
        state: PartitionState,
        shared: Arc<Shared>,
    ) -> Arc<Partition> {
        let durable = watch::Sender::new(Durability {
            offset: state.durable_offset,
            failed: None,
            shutting_down: false,
        });
        let epochs = epochs::LeaderEpochCache::open(&dir, &state);
        Arc::new_cyclic(|weak| Partition {
            append_epoch: AtomicI32::new(epochs.latest_epoch().unwrap_or(0)),
            hw_cap: AtomicI64::new(i64::MAX),
            epochs: Mutex::new(epochs),
            topic,
            index,
            dir,
            io,
            config: RwLock::new(config),
            state: Mutex::new(state),
            durable,
            shared,
            self_ref: weak.clone(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topic this partition belongs to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The partition number.
    pub fn partition_index(&self) -> i32 {
        self.index
    }
    /// The partition's directory (`<topic>-<p>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The effective config, as of now.
    pub fn config(&self) -> Arc<LogConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_config(&self, config: Arc<LogConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    fn request_flush(&self) {
        if let Some(me) = self.self_ref.upgrade() {
            self.shared.flush_queue.push(me);
        }
    }

    /// Validates and appends the record batches in `records` (one or more v2 batches, as sent).
    /// Assigns offsets by patching baseOffset in place; applies LogAppendTime; checks producer
    /// epochs and sequences (idempotence), answering a retry with its original offsets.
    pub fn append(&self, records: Bytes, origin: AppendOrigin) -> Result<AppendInfo, LogError> {
        if self.shared.is_shutting_down() {
            return Err(LogError::ShuttingDown);
        }
        let cfg = self.config();
        let now = now_ms();
        let mut batches = batch::split_batches(&records).map_err(map_batch_error)?;
        if origin == AppendOrigin::Client && batches.len() != 1 {
            return Err(LogError::InvalidRecord(format!(
                "a produce request must carry exactly one record batch per partition, got {}",
                batches.len()
            )));
        }
        let log_append_time = cfg.message_timestamp_type == TimestampType::LogAppendTime;
        let limits = validate::limits(&cfg, origin);
        for (range, h) in &batches {
            let bytes = &records[range.clone()];
            let partition = (self.topic.as_str(), self.index);
            validate::validate_batch(
                bytes,
                h,
                &limits,
                cfg.cleanup_policy.compact,
                partition,
                now,
            )?;
        }
        let seg_limits = segment_limits(&cfg);

        let mut st = self.lock_for_append()?;
        let mut pending = PendingUpdates::default();
        let mut next = st.log_end_offset;
        let mut count = 0i64;
        let single = batches.len() == 1;
        let mut aborts = Vec::new();
        for (range, h) in batches.iter_mut() {
            match st.producers.check(&pending, h)? {
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } => {
                    if single {
                        return Ok(AppendInfo {
                            base_offset: first_offset,
                            last_offset,
                            log_append_time: -1,
                            log_start_offset: st.log_start_offset,
                            duplicate: true,
                        });
                    }
                    return Err(LogError::InvalidRecord(
                        "a retried batch may not share an append with new batches".into(),
                    ));
                }
                SequenceCheck::Append => {}
            }
            h.base_offset = next;
            h.partition_leader_epoch = self.append_epoch.load(Ordering::SeqCst);
            if log_append_time {
                h.max_timestamp = now;
                h.attributes |= 0x08;
            }
            st.producers.record(&mut pending, h, now);
            let marker = &records[range.clone()];
            aborts.extend(txn::record_marker(&st.producers, &mut pending, h, marker));
            next += h.last_offset_delta as i64 + 1;
            count += h.records_count as i64;
        }
        self.roll_for(&mut st, &seg_limits, &batches, records.len(), next - 1, now)?;
        let bytes = patch::Patched::new(&records, &batches, log_append_time.then_some(now));
        st.active()
            .append(bytes.head(), bytes.tail(), &batches, &seg_limits)?;
        st.producers.commit(pending);
        self.complete_aborts(&mut st, &aborts);
        let base_offset = st.log_end_offset;
        st.log_end_offset = next;
        st.unflushed_messages += count;
        let fsync_mode = cfg.fsync_before_ack();
        let hw_target = next.min(self.hw_cap.load(Ordering::SeqCst));
        let hw_advanced = !fsync_mode && st.high_watermark < hw_target;
        if hw_advanced {
            st.high_watermark = hw_target;
        }
        let flush_now = fsync_mode || st.unflushed_messages >= cfg.flush_messages;
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: if log_append_time { now } else { -1 },
            log_start_offset: st.log_start_offset,
            duplicate: false,
        };
        drop(st);
        // Capped: followers long-polling for the new data are woken too.
        if hw_advanced || hw_target < next {
            self.shared.data_arrived.notify_waiters();
        }
        if flush_now {
            self.request_flush();
        }
        Ok(info)
    }

    /// Seals the active segment and starts a new one at the log end offset. A no-op when the
    /// active segment is empty.
    pub fn roll(&self) -> Result<(), LogError> {
        let limits = segment_limits(&self.config());
        let mut st = self.lock();
        if st.closed || st.deleted {
            return Err(LogError::ShuttingDown);
        }
        if st.active().size == 0 {
            return Ok(());
        }
        self.roll_locked(&mut st, &limits)
    }

    /// The partition's state, locked, when it can take an append: not deleted, closed or
    /// offline after a storage error.
    fn lock_for_append(&self) -> Result<MutexGuard<'_, PartitionState>, LogError> {
        let st = self.lock();
        if st.deleted {
            return Err(LogError::UnknownTopicOrPartition);
        }
        if st.closed {
            return Err(LogError::ShuttingDown);
        }
        if let Some(reason) = &st.failed {
            return Err(LogError::Io(io::Error::other(format!(
                "partition {}-{} is offline after a storage error: {reason}",
                self.topic, self.index
            ))));
        }
        Ok(st)
    }

    /// Rolls first when `batches` (`len` bytes, ending at `last_offset`) do not belong in the
    /// active segment: it is full, too old, or its indexes are full.
    fn roll_for(
        &self,
        st: &mut PartitionState,
        limits: &SegmentLimits,
        batches: &[(Range<usize>, BatchHeader)],
        len: usize,
        last_offset: i64,
        now: i64,
    ) -> Result<(), LogError> {
        let incoming_ts = batches
            .iter()
            .map(|(_, h)| h.max_timestamp)
            .max()
            .unwrap_or(now);
        if st
            .active()
            .should_roll(limits, len as u64, incoming_ts, last_offset, now)
        {
            self.roll_locked(st, limits)?;
        }
        Ok(())
    }

    fn roll_locked(&self, st: &mut PartitionState, limits: &SegmentLimits) -> Result<(), LogError> {
        let new_base = st.log_end_offset;
        self.sync_txn_index(st.active().base_offset)?;
        st.snapshots
            .write(&self.dir, new_base, &st.producers, false)?;
        let segment = Segment::create(self.io.as_ref(), &self.dir, new_base, limits)?;
        let old = st.active();
        old.seal_indexes()?;
        let files = old.files_to_sync();
        st.pending_sync.extend(files);
        st.segments.push(segment);
        st.dir_dirty = true;
        // A sealed segment is flushed soon in every mode, so the recovery point keeps up.
        self.request_flush();
        tracing::debug!(topic = %self.topic, partition = self.index, base_offset = new_base, "rolled segment");
        Ok(())
    }

    /// fsyncs everything appended so far (outside the lock) and publishes the new durable end.
    pub(crate) fn flush(&self) {
        let (files, dir_dirty, target, count) = {
            let mut st = self.lock();
            if st.failed.is_some()
                || st.deleted
                || st.durable_offset >= st.log_end_offset
                    && st.pending_sync.is_empty()
                    && !st.dir_dirty
            {
                return;
            }
            let mut files = std::mem::take(&mut st.pending_sync);
            files.push(st.active().log_handle().clone());
            let dir_dirty = std::mem::take(&mut st.dir_dirty);
            (files, dir_dirty, st.log_end_offset, st.unflushed_messages)
        };
        let result = files.iter().try_for_each(|f| f.sync()).and_then(|()| {
            if dir_dirty {
                self.io.sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        let fsync_mode = self.config().fsync_before_ack();
        let mut st = self.lock();
        let mut hw_advanced = false;
        match result {
            Ok(()) => {
                st.durable_offset = st.durable_offset.max(target);
                st.unflushed_messages = (st.unflushed_messages - count).max(0);
                st.last_flush_ms = now_ms();
                let hw_target = st.durable_offset.min(self.hw_cap.load(Ordering::SeqCst));
                if fsync_mode && st.high_watermark < hw_target {
                    st.high_watermark = hw_target;
                    hw_advanced = true;
                }
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e,
                    "fsync failed; the partition takes no writes until the disk takes an fsync again");
                st.failed = Some(Arc::from(e.to_string()));
            }
        }
        let durable = Durability {
            offset: st.durable_offset,
            failed: st.failed.clone(),
            shutting_down: st.closed,
        };
        drop(st);
        self.durable.send_replace(durable);
        if hw_advanced {
            self.shared.data_arrived.notify_waiters();
        }
    }

    /// True when time-based flushing (`flush.ms`) is due.
    pub(crate) fn flush_due(&self, now: i64) -> bool {
        let cfg = self.config();
        let st = self.lock();
        let dirty = st.durable_offset < st.log_end_offset || !st.pending_sync.is_empty();
        dirty
            && (cfg.fsync_before_ack()
                || !st.pending_sync.is_empty()
                || cfg.flush_ms.is_some_and(|ms| now - st.last_flush_ms >= ms))
    }

    pub fn offsets(&self) -> PartitionOffsets {
        self.lock().offsets()
    }

    /// Moves the log start offset forward to `offset` (≤ high watermark), deleting whole
    /// segments below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let (new_start, removed) = {
            let mut st = self.lock();
            if st.deleted {
                return Err(LogError::UnknownTopicOrPartition);
            }
            if offset > st.high_watermark || offset < 0 {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.high_watermark,
                });
            }
            if offset <= st.log_start_offset {
                return Ok(st.log_start_offset);
            }
            st.log_start_offset = offset;
            self.shared
                .set_log_start(&self.topic, self.index, st.log_start_offset);
            let removed = remove_segments_below_start(&mut st);
            (st.log_start_offset, removed)
        };
        self.shared.write_log_start_checkpoint()?;
        delete_segment_files(&self.topic, self.index, removed);
        Ok(new_start)
    }

    /// True while an fsync failure keeps the partition offline.
    pub(crate) fn is_failed(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// Brings a partition an fsync failure took offline back, once the disk takes an fsync
    /// again. Only what an fsync confirmed is trusted: after a failed fsync the kernel may have
    /// dropped the unwritten pages while reads still return them (PostgreSQL's lesson), so the
    /// log is cut at the durable offset, the cut is fsynced (the probe that the disk is healthy),
    /// and the partition is reloaded from its files as after a crash. Nothing past the durable
    /// offset was acknowledged in fsync mode, nor visible to consumers. Returns true when the
    /// partition came back.
    pub(crate) fn reopen_after_failure(&self) -> Result<bool, LogError> {
        let mut st = self.lock();
        if st.failed.is_none() || st.deleted || st.closed {
            return Ok(false);
        }
        let durable = st.durable_offset;
        let limits = segment_limits(&self.config());
        let io = self.io.as_ref();
        let i = st.segment_for(durable);
        for later in st.segments.drain(i + 1..) {
            later.delete_files()?;
        }
        let seg = &mut st.segments[i];
        let from = seg.lookup(io, &limits, durable)?;
        let file = seg.log_file()?;
        let mut cut = seg.size;
        let mut scan = BatchScanner::new(file.as_ref(), from, seg.size);
        while let Scan::Batch(b) = scan.next(false)? {
            if b.header.base_offset >= durable {
                cut = b.position;
                break;
            }
        }
        seg.unverify_from(cut);
        file.set_len(cut)?;
        seg.size = cut;
        file.sync()?;
        io.sync_dir(&self.dir)?;
        let (state, _) = super::recovery::load_partition(
            io,
            &self.dir,
            &limits,
            false,
            durable,
            st.log_start_offset,
            super::verify::Mode::Off,
        )?;
        *st = state;
        let durability = Durability {
            offset: st.durable_offset,
            failed: None,
            shutting_down: false,
        };
        let log_end_offset = st.log_end_offset;
        drop(st);
        self.durable.send_replace(durability);
        tracing::warn!(topic = %self.topic, partition = self.index, log_end_offset,
            "partition back online after a storage error; the log was cut at its last durable offset");
        Ok(true)
    }

    /// Final flush at shutdown: fsync, the closing time index entry, a producer snapshot at the
    /// log end offset, and fsync of the indexes. Appends are refused afterwards.
    pub(crate) fn close(&self) -> Result<(), LogError> {
        self.flush();
        let mut st = self.lock();
        if st.deleted || st.closed {
            return Ok(());
        }
        st.closed = true;
        if let Some(reason) = &st.failed {
            return Err(LogError::Io(io::Error::other(reason.to_string())));
        }
        let active = st.active();
        active.seal_indexes()?;
        let files = active.index_files()?;
        let state = &mut *st;
        let end = state.log_end_offset;
        state
            .snapshots
            .write(&self.dir, end, &state.producers, true)?;
        drop(st);
        for f in files {
            f.sync()?;
        }
        self.publish_closed(None);
        Ok(())
    }

    fn publish_closed(&self, failed: Option<Arc<str>>) {
        self.durable.send_modify(|d| {
            d.shutting_down = true;
            if failed.is_some() {
                d.failed = failed;
            }
        });
    }

    /// Refuses further work without flushing (a simulated crash).
    pub(crate) fn mark_closed(&self) {
        self.lock().closed = true;
        self.publish_closed(None);
    }

    /// The topic was deleted: refuse all further work and release waiters.
    pub(crate) fn mark_deleted(&self) {
        {
            let mut st = self.lock();
            st.deleted = true;
            st.closed = true;
        }
        self.publish_closed(Some(Arc::from("the topic was deleted")));
    }

    /// Replaces the consecutive sealed segments starting at `old_bases[0]` with the cleaned
    /// segment the cleaner wrote as `<old_bases[0]>.log.cleaned` (plus optional
    /// `.index.cleaned` / `.timeindex.cleaned` / `.txnindex.cleaned`). Crash-safe: `.cleaned` files are fsynced and
    /// renamed to `.swap`, the old files deleted, then `.swap` renamed to the final names, with a
    /// directory fsync between steps; start-up completes an interrupted swap.
    pub fn replace_segments(&self, old_bases: &[i64]) -> Result<(), LogError> {
        let limits = segment_limits(&self.config());
        let Some(&base) = old_bases.first() else {
            return Ok(());
        };
        let mut st = self.lock();
        if st.closed || st.deleted {
            return Err(LogError::ShuttingDown);
        }
        let start = st
            .segments
            .iter()
            .position(|s| s.base_offset == base)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no segment at {base}"))
            })?;
        let end = start + old_bases.len();
        if end >= st.segments.len()
            || st.segments[start..end]
                .iter()
                .zip(old_bases)
                .any(|(s, &b)| s.base_offset != b)
        {
            return Err(LogError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "replace_segments needs consecutive sealed segments",
            )));
        }
        let exts = ["log", "index", "timeindex", "txnindex"];
        let with_suffix = |ext: &str, suffix: &str| {
            let mut p = super::segment::segment_file(&self.dir, base, ext).into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        if !with_suffix("log", ".cleaned").exists() {
            return Err(LogError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{base:020}.log.cleaned is missing"),
            )));
        }
        for ext in exts {
            let cleaned = with_suffix(ext, ".cleaned");
            if cleaned.exists() {
                self.io.open(&cleaned, false)?.sync()?;
            }
        }
        // Highest offset first, as Kafka does; one segment here, so any order is equivalent.
        for ext in exts {
            let cleaned = with_suffix(ext, ".cleaned");
            if cleaned.exists() {
                std::fs::rename(&cleaned, with_suffix(ext, ".swap"))?;
            }
        }
        self.io.sync_dir(&self.dir)?;
        let old: Vec<Segment> = st.segments.drain(start..end).collect();
        for seg in &old {
            seg.delete_files()?;
        }
        for ext in exts {
            let swap = with_suffix(ext, ".swap");
            if swap.exists() {
                std::fs::rename(&swap, super::segment::segment_file(&self.dir, base, ext))?;
            }
        }
        self.io.sync_dir(&self.dir)?;
        let mut segment = Segment::open(self.io.as_ref(), &self.dir, base)?;
        segment.ensure_indexes(self.io.as_ref(), &limits)?;
        st.segments.insert(start, segment);
        Ok(())
    }

    /// The sealed segments (all but the active one), oldest first: what a cleaner may rewrite.
    pub fn sealed_segments(&self) -> Vec<SegmentInfo> {
        let st = self.lock();
        let n = st.segments.len();
        st.segments[..n.saturating_sub(1)]
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                size: s.size,
                log_path: s.path("log"),
            })
            .collect()
    }
}

/// Drops segments entirely below the log start offset (never the active one).
pub(crate) fn remove_segments_below_start(st: &mut PartitionState) -> Vec<Segment> {
    let mut keep_from = 0;
    while keep_from + 1 < st.segments.len()
        && st.segments[keep_from + 1].base_offset <= st.log_start_offset
    {
        keep_from += 1;
    }
    let removed: Vec<Segment> = st.segments.drain(..keep_from).collect();
    // Aborts whose markers were in the removed segments leave with their `.txnindex` files.
    let first_base = st.segments[0].base_offset;
    let gone = st.aborted.partition_point(|a| a.last_offset < first_base);
    st.aborted.drain(..gone);
    removed
}

pub(crate) fn delete_segment_files(topic: &str, partition: i32, segments: Vec<Segment>) {
    for seg in segments {
        match seg.delete_files() {
            Ok(()) => tracing::info!(
                topic,
                partition,
                base_offset = seg.base_offset,
                size = seg.size,
                "deleted segment"
            ),
            Err(e) => {
                tracing::warn!(topic, partition, base_offset = seg.base_offset, error = %e, "cannot delete segment files")
            }
        }
    }
}

/// Recovery support: the byte range of the batches starting at or after `from_offset`.
pub(crate) fn scan_headers(
    file: &dyn IoFile,
    position: u64,
    end: u64,
    mut f: impl FnMut(&BatchHeader),
) -> io::Result<()> {
    let mut scan = BatchScanner::new(file, position, end);
    while let Scan::Batch(b) = scan.next(false)? {
        f(&b.header);
    }
    Ok(())
}
