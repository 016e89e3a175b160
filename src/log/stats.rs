//! What the log engine's background work did, for the operator: fsync (group commit) latency
//! and appends per group commit, the cleaner's runs and per-partition state, and the last
//! start-up's recovery and verification report. The flusher, cleaner and verifier record here;
//! `http/` reads it at scrape time. Recording is atomics only on the flusher's path; the
//! cleaner's per-partition state is behind a mutex only the cleaner threads and scrapes take.
//! Knows nothing of Kafka requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::metrics::histogram::{count_bounds, Histogram};

/// The log engine's statistics since start-up.
#[derive(Debug)]
pub struct LogStats {
    /// Duration of each group commit: the fsyncs of every partition flushed together.
    pub fsync_seconds: Histogram,
    /// Appends covered by each group commit.
    pub appends_per_commit: Histogram,
    pub cleaner: CleanerStats,
    pub startup: Mutex<StartupReport>,
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats {
            fsync_seconds: Histogram::latency(),
            appends_per_commit: Histogram::new(count_bounds()),
            cleaner: CleanerStats::default(),
            startup: Mutex::default(),
        }
    }
}

/// The cleaner's totals and each compacted partition's state.
#[derive(Debug, Default)]
pub struct CleanerStats {
    /// Cleaning passes completed.
    pub runs: AtomicU64,
    /// Segment bytes read and rewritten by cleaning passes.
    pub bytes_cleaned: AtomicU64,
    /// Bytes the passes removed (before minus after).
    pub bytes_removed: AtomicU64,
    /// When the last pass ended (ms since the epoch; 0 before the first).
    pub last_run_ms: AtomicI64,
    pub partitions: Mutex<BTreeMap<(String, i32), CleanerPartition>>,
}

/// One compacted partition as the cleaner last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanerPartition {
    /// Dirty bytes over cleanable bytes at the last evaluation.
    pub dirty_ratio: f64,
    /// When its last cleaning ended (ms since the epoch), `None` since start-up.
    pub last_cleaned_ms: Option<i64>,
    /// A cleaner thread is cleaning it now.
    pub cleaning: bool,
    /// Its last cleaning failed; it is skipped for a while (Kafka's uncleanable partitions).
    pub uncleanable: bool,
}

impl CleanerStats {
    /// Updates one partition's entry.
    pub fn update(&self, topic: &str, partition: i32, f: impl FnOnce(&mut CleanerPartition)) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry((topic.to_string(), partition)).or_default());
    }

    /// Keeps only the entries `keep` accepts (partitions deleted or no longer compacted go).
    pub fn retain(&self, keep: impl Fn(&(String, i32)) -> bool) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| keep(k));
    }

    /// A pass over `bytes_before` bytes that left `bytes_after`, ended at `now_ms`.
    pub fn pass_done(&self, bytes_before: u64, bytes_after: u64, now_ms: i64) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.bytes_cleaned
            .fetch_add(bytes_before, Ordering::Relaxed);
        self.bytes_removed
            .fetch_add(bytes_before.saturating_sub(bytes_after), Ordering::Relaxed);
        self.last_run_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BTreeMap<(String, i32), CleanerPartition> {
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the last start-up found and did, and what background verification has done since.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StartupReport {
    /// `new`, `clean` or `unclean` (a crash or kill before the last stop).
    pub shutdown: &'static str,
    pub partitions: usize,
    pub recovered_partitions: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: u64,
    pub indexes_rebuilt: usize,
    /// Damaged ranges found by verification at start-up and moved aside.
    pub damaged_ranges: usize,
    pub damaged_bytes: u64,
    pub restored_base_offsets: usize,
    pub elapsed_ms: u64,
    /// `cairn.log.verify.on.startup`.
    pub verify: String,
    pub verification: VerificationReport,
}

/// Background verification's progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerificationReport {
    pub finished: bool,
    pub partitions: usize,
    pub segments: usize,
    pub bytes: u64,
    pub repaired_segments: usize,
}

impl LogStats {
    pub fn startup(&self) -> StartupReport {
        self.startup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_startup(&self, report: StartupReport) {
        let mut startup = self.startup.lock().unwrap_or_else(|e| e.into_inner());
        // Background verification may already have reported.
        let verification = std::mem::take(&mut startup.verification);
        *startup = StartupReport {
            verification,
            ..report
        };
    }

    pub(crate) fn set_verification(&self, report: VerificationReport) {
        self.startup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verification = report;
    }
}
