//! State shared by the log manager, its partitions and the background threads (flusher,
//! retention, cleaner, verification): the partition registry, the log-start and recovery-point
//! checkpoints, and the stop signal. Depends only on the rest of `log/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::Duration;

use super::checkpoint::{self, OffsetMap, LOG_START_FILE, RECOVERY_POINT_FILE};
use super::flusher::FlushQueue;
use super::{verify, Partition};

/// State shared by the manager, its partitions and the background threads.
pub(crate) struct Shared {
    pub(crate) data_dir: PathBuf,
    pub(crate) data_arrived: tokio::sync::Notify,
    pub(crate) flush_queue: FlushQueue,
    pub(crate) registry: Mutex<Vec<Weak<Partition>>>,
    pub(crate) log_starts: Mutex<OffsetMap>,
    pub(crate) checkpoint_lock: Mutex<()>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) stop: Mutex<bool>,
    pub(crate) stop_cv: Condvar,
    pub(crate) producer_id_expiration_ms: i64,
    /// `cairn.log.verify.on.startup`.
    pub(crate) verify: verify::Mode,
    /// Set once no background verification is running or due.
    pub(crate) verified: AtomicBool,
    /// Per tiered partition, the end (exclusive) of what the object-storage tier holds, as
    /// reported by `tier/`. Retention of a tiered topic never deletes a segment beyond it.
    pub(crate) tiered_end: Mutex<OffsetMap>,
    /// What the flusher, cleaner and verifier did, for the operator.
    pub(crate) stats: super::stats::LogStats,
    /// The cleaner threads' settings; replaced whole by a dynamic broker config change.
    pub(crate) cleaner_settings: RwLock<Arc<super::cleaner::CleanerSettings>>,
}

impl Shared {
    pub(crate) fn cleaner_settings(&self) -> Arc<super::cleaner::CleanerSettings> {
        self.cleaner_settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Every live partition.
    pub(crate) fn partitions(&self) -> Vec<Arc<Partition>> {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        reg.iter().filter_map(Weak::upgrade).collect()
    }

    pub(crate) fn register(&self, p: &Arc<Partition>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(p));
    }

    pub(crate) fn unregister(&self, p: &Arc<Partition>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(p)));
        self.log_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(p.topic.clone(), p.index));
    }

    pub(crate) fn set_log_start(&self, topic: &str, partition: i32, offset: i64) {
        self.log_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic.to_string(), partition), offset);
    }

    /// Writes `log-start-offset-checkpoint` with every partition's current log start offset.
    pub(crate) fn write_log_start_checkpoint(&self) -> std::io::Result<()> {
        let _guard = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let map = self
            .log_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        checkpoint::write_atomic(
            &self.data_dir.join(LOG_START_FILE),
            checkpoint::encode_offsets(&map).as_bytes(),
        )
    }

    /// Writes `recovery-point-offset-checkpoint`: every partition's durable end.
    pub(crate) fn write_recovery_checkpoint(&self) -> std::io::Result<()> {
        let map: OffsetMap = self
            .partitions()
            .iter()
            .filter_map(|p| {
                let st = p.lock();
                (!st.deleted).then(|| ((p.topic.clone(), p.index), st.durable_offset))
            })
            .collect();
        let _guard = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        checkpoint::write_atomic(
            &self.data_dir.join(RECOVERY_POINT_FILE),
            checkpoint::encode_offsets(&map).as_bytes(),
        )
    }

    /// The end of what the tier holds for a partition (`i64::MIN` before it reported any).
    pub(crate) fn tiered_end(&self, topic: &str, partition: i32) -> i64 {
        let map = self.tiered_end.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(i64::MIN)
    }

    /// Sleeps up to `timeout`; true once the manager is stopping.
    pub(crate) fn wait_stop(&self, timeout: Duration) -> bool {
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if *stop {
            return true;
        }
        let (stop, _) = self
            .stop_cv
            .wait_timeout(stop, timeout)
            .unwrap_or_else(|e| e.into_inner());
        *stop
    }

    pub(crate) fn signal_stop(&self) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop_cv.notify_all();
        self.flush_queue.stop();
    }
}
