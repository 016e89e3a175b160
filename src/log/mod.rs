//! The log engine: topics → partitions → segments on local disk.
//!
//! Speaks offsets, record batches (`Bytes`) and its own errors ([`LogError`]); it never sees a
//! Kafka request type or error code, and never depends on `broker/`, `protocol/` or `group/`.
//! Files follow Apache Kafka's layout (disk-format.md): a directory per partition
//! (`<topic>-<p>/`) holding `<base:020>.log` segments with `.index` and `.timeindex`, producer
//! `.snapshot` files and `partition.metadata`; in the data directory, Kafka's
//! `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and `.kafka_cleanshutdown`,
//! plus Cairn's own `cairn-metadata/` (topic metadata files and the producer-id block).
//!
//! Code map:
//! - [`LogManager`] (this file): topics, durable topic metadata, producer ids, start-up,
//!   background threads, shutdown.
//! - [`partition`]: append / read / flush / roll / delete-records of one partition.
//! - [`segment`], [`index`], [`time_index`]: one segment's files.
//! - [`txn_index`]: the aborted-transaction index (`.txnindex`); markers and the last stable
//!   offset are in `partition/txn.rs`.
//! - [`batch`]: v2 batch header view, CRC, validation, in-place patches (pure).
//! - `error.rs`: [`LogError`], the engine's errors; [`record_errors`]: refused records, and why.
//! - [`producer_state`]: idempotence and its snapshots; [`producer_snapshot`]: the snapshot
//!   files and Cairn's companions keeping each producer's last five batches.
//!   [`checkpoint`]: small metadata files.
//! - [`recovery`]: loading a partition directory. [`retention`]: deleting old segments.
//! - [`flusher`]: group commit. [`io`]: the file-I/O seam for fault injection.
//!
//! Durability invariants: in fsync mode (`flush.messages` = 1, the default) the high watermark
//! is the durable end, so consumers never see what a crash could take away, and an append is
//! acknowledged by [`Partition::wait_durable`] only after its bytes are fsynced (group commit: one
//! fsync covers every append made before it started). No fsync runs under a partition's lock.
//! A failed write is cut back before the error returns; a failed fsync takes the partition
//! offline (writes refused, reads served) until an fsync succeeds again: the flusher retries
//! every few seconds, cutting the log back to its durable offset and reloading the partition.
//!
//! Hook for the compaction cleaner (`cleaner.rs`, to be written): list what may be cleaned with
//! [`Partition::sealed_segments`] (never the active segment), read the segment files directly,
//! write the result beside them as `<base>.log.cleaned` (+ `.index.cleaned`,
//! `.timeindex.cleaned`, optional; missing indexes are rebuilt), where `base` is the first
//! replaced segment's base offset, then call [`Partition::replace_segments`] with the replaced
//! bases. It renames `.cleaned` → `.swap`, deletes the old files, renames `.swap` → final with
//! directory fsyncs in between; start-up recovery completes or discards an interrupted swap, so
//! a crash leaves either the old or the new segments. Cleaning must keep offsets, order, batch
//! base offsets and producer fields, and must not move the log start offset.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
mod error;
pub(crate) mod flusher;
pub mod index;
pub mod io;
pub mod open_files;
pub mod partition;
pub mod producer_snapshot;
pub mod producer_state;
pub mod recompress;
mod reconfigure;
pub mod record_errors;
pub(crate) mod recovery;
pub mod retention;
pub mod segment;
mod shared;
pub mod stats;
pub mod time_index;
pub mod txn_index;
pub(crate) mod verify;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{self, BrokerConfig, LogConfig};
use checkpoint::{
    OffsetMap, CLEAN_SHUTDOWN_FILE, LOG_START_FILE, PARTITION_METADATA_FILE, RECOVERY_POINT_FILE,
};
pub use error::LogError;
use flusher::FlushQueue;
use io::{FileIo, StdIo};
pub use partition::{Partition, SegmentInfo, Served, ServedRead};
pub(crate) use shared::Shared;

/// What a topic is: durable metadata kept by the log manager.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    /// Random v4 UUID assigned at creation, never the zero UUID.
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    /// Explicit topic-level overrides, Kafka names → values (already validated).
    pub overrides: BTreeMap<String, String>,
    /// Internal topics (`__consumer_offsets`) are flagged in Metadata.
    pub internal: bool,
}

/// Options for [`LogManager::open`].
#[derive(Debug, Clone)]
pub struct LogManagerOptions {
    pub data_dir: PathBuf,
    pub broker: BrokerConfig,
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the first batch appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The timestamp written when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// True when the batch was a retry of a batch already in the log (idempotent producer):
    /// nothing was written and `base_offset`/`last_offset` are the original ones.
    pub duplicate: bool,
}

/// Whose batches these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A client's Produce: full validation, no control batches.
    Client,
    /// The broker itself (group offsets, markers): trusted, control batches allowed.
    Internal,
}

/// Which records a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset.
    ReadCommitted,
    /// Up to the log end offset (internal readers only, e.g. rebuilding group state).
    LogEnd,
}

/// The offsets of a partition at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    /// What consumers may read up to. In fsync mode (flush.messages = 1) this is the durable end:
    /// a consumer never sees a record that a crash could take away. In page-cache mode it is the
    /// log end offset.
    pub high_watermark: i64,
    /// The high watermark, or the first offset of the oldest ongoing transaction if lower.
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

/// The result of a read.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole batches, as stored, starting with the batch that contains the requested offset.
    /// Empty when the offset equals the upper bound.
    pub records: Bytes,
    pub offsets: PartitionOffsets,
}

/// Cairn's own metadata directory inside the data directory.
const META_DIR: &str = "cairn-metadata";
/// Producer ids are reserved durably in blocks of this size.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type PartitionLoad = Result<(Arc<Partition>, recovery::LoadReport), LogError>;

struct TopicEntry {
    info: TopicInfo,
    partitions: Vec<Arc<Partition>>,
}

struct ProducerIdBlock {
    next: i64,
    /// First id not reserved on disk.
    limit: i64,
}

/// All topics and partitions in one data directory.
pub struct LogManager {
    shared: Arc<Shared>,
    /// The broker config topic defaults come from; replaced by [`LogManager::reconfigure`].
    broker: RwLock<Arc<BrokerConfig>>,
    io: Arc<dyn FileIo>,
    topics: RwLock<BTreeMap<String, TopicEntry>>,
    producer_ids: Mutex<ProducerIdBlock>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shut_down: AtomicBool,
    /// Serializes topic administration, so its fsyncs never hold the `topics` lock that every
    /// produce and fetch takes.
    admin: Mutex<()>,
}

/// Topic names Kafka accepts: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn invalid_input(msg: String) -> LogError {
    LogError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
}

fn validate_overrides(
    b: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<(), LogError> {
    config::validate_topic_overrides(b, overrides)
        .map_err(|e| LogError::InvalidRecord(format!("invalid topic config: {e}")))?;
    Ok(())
}

pub(crate) fn topic_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir
        .join(META_DIR)
        .join("topics")
        .join(format!("{name}.topic"))
}

/// Moves a directory aside as `<name>.<uuid>-<suffix>` (Kafka's naming for deleted/stray logs).
fn move_aside(dir: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let mut short: String = name.chars().take(200).collect();
    short.push_str(&format!(".{}-{suffix}", uuid::Uuid::new_v4().simple()));
    let target = dir.with_file_name(short);
    fs::rename(dir, &target)?;
    Ok(target)
}

impl LogManager {
    /// Opens (creating if needed) the data directory, runs recovery, and starts the background
    /// work (flusher, retention, cleaner). Must be called inside a tokio runtime.
    pub fn open(options: LogManagerOptions) -> Result<Arc<LogManager>, LogError> {
        Self::open_with_io(options, Arc::new(StdIo))
    }

    /// [`LogManager::open`] with a chosen file-I/O implementation (tests inject faults with
    /// [`io::FaultyIo`]).
    pub fn open_with_io(
        options: LogManagerOptions,
        io: Arc<dyn FileIo>,
    ) -> Result<Arc<LogManager>, LogError> {
        let started = Instant::now();
        let data_dir = options.data_dir.clone();
        // A data directory without Cairn's metadata is new: nothing was shut down, cleanly or not.
        let new_dir = !data_dir.join(META_DIR).exists();
        fs::create_dir_all(data_dir.join(META_DIR).join("topics"))?;
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if clean {
            // Removed at once, so a crash while loading counts as unclean.
            fs::remove_file(&marker)?;
            io.sync_dir(&data_dir)?;
        }
        let recovery_points = checkpoint::read_offsets(&data_dir.join(RECOVERY_POINT_FILE));
        let log_starts = checkpoint::read_offsets(&data_dir.join(LOG_START_FILE));

        let mut infos = BTreeMap::new();
        for entry in fs::read_dir(data_dir.join(META_DIR).join("topics"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("topic") {
                continue;
            }
            let text = fs::read_to_string(&path)?;
            let info = checkpoint::decode_topic(&text).map_err(|e| {
                invalid_input(format!(
                    "topic metadata {} is unreadable: {e}",
                    path.display()
                ))
            })?;
            infos.insert(info.name.clone(), info);
        }

        let shared = Arc::new(Shared {
            data_dir: data_dir.clone(),
            data_arrived: tokio::sync::Notify::new(),
            flush_queue: FlushQueue::default(),
            registry: Mutex::new(Vec::new()),
            log_starts: Mutex::new(OffsetMap::new()),
            checkpoint_lock: Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            producer_id_expiration_ms: options.broker.producer_id_expiration_ms(),
            verify: verify::Mode::from_config(options.broker.verify_on_startup()),
            verified: AtomicBool::new(false),
            tiered_end: Mutex::new(OffsetMap::new()),
            stats: stats::LogStats::default(),
            cleaner_settings: RwLock::new(Arc::new(cleaner::CleanerSettings::from_broker(
                &options.broker,
            ))),
        });

        // Which partition directories exist; the rest of the data dir is left alone.
        let mut found = BTreeMap::new();
        for entry in fs::read_dir(&data_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == META_DIR || name.ends_with("-stray") {
                continue;
            }
            if name.ends_with("-delete") {
                tracing::info!(dir = %entry.path().display(), "removing a deleted topic's data");
                fs::remove_dir_all(entry.path())?;
                continue;
            }
            let Some((topic, p)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(p) = p.parse::<i32>() else { continue };
            let known = infos.get(topic).filter(|i| p >= 0 && p < i.partitions);
            let id_matches = known.is_some_and(|info| {
                match fs::read_to_string(entry.path().join(PARTITION_METADATA_FILE)) {
                    Ok(text) => checkpoint::decode_partition_metadata(&text) == Ok(info.topic_id),
                    Err(_) => true,
                }
            });
            if id_matches {
                found.insert((topic.to_string(), p), entry.path());
            } else {
                let target = move_aside(&entry.path(), "stray")?;
                tracing::warn!(dir = %entry.path().display(), moved_to = %target.display(),
                    "partition directory belongs to no known topic; moved aside");
            }
        }

        let manager = LogManager {
            shared: shared.clone(),
            broker: RwLock::new(Arc::new(options.broker.clone())),
            io: io.clone(),
            topics: RwLock::new(BTreeMap::new()),
            producer_ids: Mutex::new(ProducerIdBlock { next: 0, limit: 0 }),
            threads: Mutex::new(Vec::new()),
            shut_down: AtomicBool::new(false),
            admin: Mutex::new(()),
        };
        let limit = match fs::read_to_string(data_dir.join(META_DIR).join("producer-id-block")) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| {
                invalid_input("cairn-metadata/producer-id-block is unreadable".into())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        *manager
            .producer_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ProducerIdBlock { next: limit, limit };

        // Load partitions on a few threads: start-up is dominated by per-directory work.
        let mut jobs = Vec::new();
        for info in infos.values() {
            let config = Arc::new(LogConfig::resolve(&options.broker, &info.overrides));
            for p in 0..info.partitions {
                jobs.push((info.clone(), p, config.clone()));
            }
        }
        let results: Mutex<BTreeMap<(String, i32), PartitionLoad>> = Mutex::new(BTreeMap::new());
        let next_job = Mutex::new(jobs.into_iter());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| loop {
                    let job = next_job.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((info, p, config)) = job else { break };
                    let key = (info.name.clone(), p);
                    let result = match found.get(&key) {
                        Some(dir) => manager.load_partition_dir(
                            &info,
                            p,
                            dir,
                            config,
                            clean,
                            recovery_points.get(&key).copied().unwrap_or(0),
                            log_starts.get(&key).copied().unwrap_or(0),
                        ),
                        None => {
                            tracing::warn!(topic = %info.name, partition = p, "partition directory missing; creating it empty");
                            manager
                                .create_partition_dir(&info, p, config)
                                .map(|part| (part, recovery::LoadReport::default()))
                        }
                    };
                    results.lock().unwrap_or_else(|e| e.into_inner()).insert(key, result);
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut partition_count = 0;
        let mut recovered = recovery::LoadReport::default();
        let mut recovered_partitions = 0;
        {
            let mut topics = manager.topics.write().unwrap_or_else(|e| e.into_inner());
            for (name, info) in infos {
                let mut partitions = Vec::new();
                for p in 0..info.partitions {
                    let (part, report) = results
                        .remove(&(name.clone(), p))
                        .expect("every partition was loaded")?;
                    if report.recovered_segments > 0 {
                        recovered_partitions += 1;
                    }
                    recovered.recovered_segments += report.recovered_segments;
                    recovered.truncated_bytes += report.truncated_bytes;
                    recovered.indexes_rebuilt += report.indexes_rebuilt;
                    recovered.damaged_ranges += report.damaged_ranges;
                    recovered.damaged_bytes += report.damaged_bytes;
                    recovered.restored_base_offsets += report.restored_base_offsets;
                    partitions.push(part);
                    partition_count += 1;
                }
                topics.insert(name, TopicEntry { info, partitions });
            }
        }
        shared.write_log_start_checkpoint()?;

        let manager = Arc::new(manager);
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("cairn-flusher".into())
                .spawn(move || flusher::run(s))?,
        );
        let s = shared.clone();
        let interval =
            Duration::from_millis(options.broker.retention_check_interval_ms().max(1) as u64);
        threads.push(
            std::thread::Builder::new()
                .name("cairn-retention".into())
                .spawn(move || retention::run(s, interval))?,
        );
        if shared.verify != verify::Mode::Background {
            shared.verified.store(true, Ordering::SeqCst);
        } else {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("cairn-verify".into())
                    .spawn(move || verify::run_background(s))?,
            );
        }
        if options.broker.cleaner_enable() {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("cairn-cleaner".into())
                    .spawn(move || cleaner::run(s))?,
            );
        }
        *manager.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        shared.stats.set_startup(stats::StartupReport {
            shutdown: if new_dir {
                "new"
            } else if clean {
                "clean"
            } else {
                "unclean"
            },
            partitions: partition_count,
            recovered_partitions,
            recovered_segments: recovered.recovered_segments,
            truncated_bytes: recovered.truncated_bytes,
            indexes_rebuilt: recovered.indexes_rebuilt,
            damaged_ranges: recovered.damaged_ranges,
            damaged_bytes: recovered.damaged_bytes,
            restored_base_offsets: recovered.restored_base_offsets,
            elapsed_ms: started.elapsed().as_millis() as u64,
            verify: options.broker.verify_on_startup().to_string(),
            verification: stats::VerificationReport::default(),
        });
        if new_dir {
            tracing::info!(data_dir = %data_dir.display(), "log opened in a new data directory");
        } else if clean {
            tracing::info!(data_dir = %data_dir.display(), partitions = partition_count,
                verify = options.broker.verify_on_startup(),
                damaged_ranges = recovered.damaged_ranges, damaged_bytes = recovered.damaged_bytes,
                restored_base_offsets = recovered.restored_base_offsets,
                elapsed_ms = started.elapsed().as_millis() as u64, "log opened after a clean shutdown");
        } else {
            tracing::info!(data_dir = %data_dir.display(), partitions = partition_count,
                recovered_partitions, recovered_segments = recovered.recovered_segments,
                truncated_bytes = recovered.truncated_bytes, indexes_rebuilt = recovered.indexes_rebuilt,
                damaged_ranges = recovered.damaged_ranges, damaged_bytes = recovered.damaged_bytes,
                restored_base_offsets = recovered.restored_base_offsets,
                elapsed_ms = started.elapsed().as_millis() as u64, "log opened after an unclean shutdown; recovery done");
        }
        Ok(manager)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_partition_dir(
        &self,
        info: &TopicInfo,
        p: i32,
        dir: &Path,
        config: Arc<LogConfig>,
        clean: bool,
        recovery_point: i64,
        log_start: i64,
    ) -> PartitionLoad {
        let limits = partition::segment_limits(&config);
        let (state, report) = recovery::load_partition(
            self.io.as_ref(),
            dir,
            &limits,
            clean,
            recovery_point,
            log_start,
            self.shared.verify,
        )?;
        if !dir.join(PARTITION_METADATA_FILE).exists() {
            checkpoint::write_atomic(
                &dir.join(PARTITION_METADATA_FILE),
                checkpoint::encode_partition_metadata(&info.topic_id).as_bytes(),
            )?;
        }
        self.shared
            .set_log_start(&info.name, p, state.log_start_offset);
        let part = Partition::new(
            info.name.clone(),
            p,
            dir.to_path_buf(),
            self.io.clone(),
            config,
            state,
            self.shared.clone(),
        );
        self.shared.register(&part);
        Ok((part, report))
    }

    /// Creates `<topic>-<p>/` with its metadata and an empty first segment.
    fn create_partition_dir(
        &self,
        info: &TopicInfo,
        p: i32,
        config: Arc<LogConfig>,
    ) -> Result<Arc<Partition>, LogError> {
        let dir = self.shared.data_dir.join(format!("{}-{p}", info.name));
        if dir.exists() {
            let target = move_aside(&dir, "stray")?;
            tracing::warn!(dir = %dir.display(), moved_to = %target.display(), "moved an old partition directory aside");
        }
        fs::create_dir(&dir)?;
        checkpoint::write_atomic(
            &dir.join(PARTITION_METADATA_FILE),
            checkpoint::encode_partition_metadata(&info.topic_id).as_bytes(),
        )?;
        let limits = partition::segment_limits(&config);
        let segment = segment::Segment::create(self.io.as_ref(), &dir, 0, &limits)?;
        self.io.sync_dir(&dir)?;
        self.io.sync_dir(&self.shared.data_dir)?;
        let state = partition::PartitionState {
            segments: vec![segment],
            log_start_offset: 0,
            log_end_offset: 0,
            durable_offset: 0,
            high_watermark: 0,
            producers: producer_state::ProducerStateManager::new(),
            snapshots: producer_snapshot::SnapshotFiles::default(),
            aborted: Vec::new(),
            unflushed_messages: 0,
            last_flush_ms: now_ms(),
            pending_sync: Vec::new(),
            dir_dirty: false,
            failed: None,
            deleted: false,
            closed: false,
        };
        self.shared.set_log_start(&info.name, p, 0);
        let part = Partition::new(
            info.name.clone(),
            p,
            dir,
            self.io.clone(),
            config,
            state,
            self.shared.clone(),
        );
        self.shared.register(&part);
        Ok(part)
    }

    /// Takes partitions out of service and removes their directories.
    fn discard_partitions(&self, partitions: &[Arc<Partition>]) {
        for p in partitions {
            p.mark_deleted();
            self.shared.unregister(p);
            match move_aside(&p.dir, "delete") {
                Ok(target) => {
                    if let Err(e) = fs::remove_dir_all(&target) {
                        tracing::warn!(dir = %target.display(), error = %e, "cannot remove deleted partition data");
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %p.dir.display(), error = %e, "cannot move deleted partition aside")
                }
            }
        }
    }

    fn write_topic_file(&self, info: &TopicInfo) -> Result<(), LogError> {
        checkpoint::write_atomic(
            &topic_file(&self.shared.data_dir, &info.name),
            checkpoint::encode_topic(info).as_bytes(),
        )?;
        Ok(())
    }

    fn check_open(&self) -> Result<(), LogError> {
        if self.shared.is_shutting_down() {
            Err(LogError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Creates a topic durably (returns after the metadata is fsynced).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<TopicInfo, LogError> {
        self.check_open()?;
        if !valid_topic_name(name) {
            return Err(invalid_input(format!("invalid topic name {name:?}")));
        }
        if partitions < 1 {
            return Err(LogError::InvalidPartitions(format!(
                "a topic needs at least one partition, got {partitions}"
            )));
        }
        validate_overrides(&self.broker(), &overrides)?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        if self.topic(name).is_some() {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let info = TopicInfo {
            name: name.to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions,
            overrides,
            internal,
        };
        let config = Arc::new(LogConfig::resolve(&self.broker(), &info.overrides));
        let mut parts = Vec::new();
        let created = (0..partitions).try_for_each(|p| {
            parts.push(self.create_partition_dir(&info, p, config.clone())?);
            Ok(())
        });
        // The topic file is the commit point: directories without it are moved aside at start-up.
        if let Err(e) = created.and_then(|()| self.write_topic_file(&info)) {
            self.discard_partitions(&parts);
            return Err(e);
        }
        // New partitions start at 0, which is also what a missing checkpoint entry means.
        if let Err(e) = self.shared.write_log_start_checkpoint() {
            tracing::warn!(error = %e, "cannot write the log-start-offset checkpoint");
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        topics.insert(
            name.to_string(),
            TopicEntry {
                info: info.clone(),
                partitions: parts,
            },
        );
        tracing::info!(topic = name, partitions, topic_id = %info.topic_id, "created topic");
        Ok(info)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.check_open()?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        if self.topic(name).is_none() {
            return Err(LogError::UnknownTopicOrPartition);
        }
        let path = topic_file(&self.shared.data_dir, name);
        fs::remove_file(&path)?;
        self.io
            .sync_dir(path.parent().expect("topic files live in a directory"))?;
        let entry = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .expect("checked above");
        self.discard_partitions(&entry.partitions);
        self.shared.write_log_start_checkpoint()?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `new_total` partitions.
    pub fn create_partitions(&self, name: &str, new_total: i32) -> Result<(), LogError> {
        self.check_open()?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = self.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
        if new_total <= info.partitions {
            return Err(LogError::InvalidPartitions(format!(
                "topic {name} has {} partitions; the new total {new_total} must be larger",
                info.partitions
            )));
        }
        let config = Arc::new(LogConfig::resolve(&self.broker(), &info.overrides));
        let mut added = Vec::new();
        let created = (info.partitions..new_total).try_for_each(|p| {
            added.push(self.create_partition_dir(&info, p, config.clone())?);
            Ok(())
        });
        info.partitions = new_total;
        if let Err(e) = created.and_then(|()| self.write_topic_file(&info)) {
            self.discard_partitions(&added);
            return Err(e);
        }
        // New partitions start at 0, which is also what a missing checkpoint entry means.
        if let Err(e) = self.shared.write_log_start_checkpoint() {
            tracing::warn!(error = %e, "cannot write the log-start-offset checkpoint");
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        let entry = topics
            .get_mut(name)
            .expect("admin operations are serialized");
        entry.info = info;
        entry.partitions.extend(added);
        Ok(())
    }

    /// Replaces a topic's overrides durably; takes effect at once.
    pub fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), LogError> {
        self.check_open()?;
        validate_overrides(&self.broker(), &overrides)?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = self.topic(name).ok_or(LogError::UnknownTopicOrPartition)?;
        info.overrides = overrides;
        self.write_topic_file(&info)?;
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        let entry = topics
            .get_mut(name)
            .expect("admin operations are serialized");
        let config = Arc::new(LogConfig::resolve(&self.broker(), &info.overrides));
        for p in &entry.partitions {
            p.set_config(config.clone());
        }
        entry.info = info;
        Ok(())
    }

    pub fn topics(&self) -> Vec<TopicInfo> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.values().map(|e| e.info.clone()).collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(name).map(|e| e.info.clone())
    }

    /// The effective config of a topic (broker defaults + overrides).
    pub fn topic_config(&self, name: &str) -> Option<LogConfig> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .get(name)
            .map(|e| LogConfig::resolve(&self.broker(), &e.info.overrides))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let entry = topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| entry.partitions.get(p))
            .cloned()
    }

    /// Records that the object-storage tier holds `topic`/`partition` up to `end` (exclusive):
    /// retention of a tiered topic may then delete local segments below it.
    pub fn set_tiered_end(&self, topic: &str, partition: i32, end: i64) {
        let mut map = self
            .shared
            .tiered_end
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.insert((topic.to_string(), partition), end);
    }

    /// Resolves when any partition's high watermark may have advanced since the returned future
    /// was created (create it before checking, to never miss a wake-up).
    /// What the flusher, cleaner and verifier did since start-up.
    pub fn stats(&self) -> &stats::LogStats {
        &self.shared.stats
    }

    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.data_arrived.notified()
    }

    /// A producer id never handed out before, durable across restarts.
    pub fn allocate_producer_id(&self) -> Result<i64, LogError> {
        self.check_open()?;
        let mut block = self.producer_ids.lock().unwrap_or_else(|e| e.into_inner());
        if block.next >= block.limit {
            // Reserve the next block on disk before handing out any id from it.
            let limit = block.next + PRODUCER_ID_BLOCK;
            checkpoint::write_atomic(
                &self
                    .shared
                    .data_dir
                    .join(META_DIR)
                    .join("producer-id-block"),
                format!("{limit}\n").as_bytes(),
            )?;
            block.limit = limit;
        }
        let id = self.broker().producer_id_base() + block.next;
        block.next += 1;
        Ok(id)
    }

    fn stop_threads(&self) {
        self.shared.signal_stop();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a log background thread panicked");
            }
        }
    }

    /// True once the background verification of the log loaded at start-up has finished (or
    /// when `cairn.log.verify.on.startup` is not `background`).
    pub fn background_verification_done(&self) -> bool {
        self.shared.verified.load(Ordering::SeqCst)
    }

    /// Flush everything, write checkpoints and the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), LogError> {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.stop_threads();
        let mut failure = None;
        for p in self.shared.partitions() {
            if let Err(e) = p.close() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "cannot close partition cleanly");
                failure.get_or_insert(e);
            }
        }
        self.shared.write_recovery_checkpoint()?;
        self.shared.write_log_start_checkpoint()?;
        if let Some(e) = failure {
            return Err(e);
        }
        checkpoint::write_atomic(
            &self.shared.data_dir.join(CLEAN_SHUTDOWN_FILE),
            b"{\"version\":0,\"brokerEpoch\":0}",
        )?;
        tracing::info!(data_dir = %self.shared.data_dir.display(), "log shut down cleanly");
        Ok(())
    }

    /// Stops the background threads without flushing or writing the clean-shutdown marker, as
    /// a crash would (for tests of recovery).
    pub fn halt(&self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.stop_threads();
        for p in self.shared.partitions() {
            p.mark_closed();
        }
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        if !self.shut_down.load(Ordering::SeqCst) {
            self.halt();
        }
    }
}
