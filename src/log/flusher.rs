//! Group commit: one background thread fsyncs dirty partitions and wakes every waiter of a
//! partition at once, so concurrent producers share an fsync. Also runs time-based flushes
//! (`flush.ms`), writes the recovery-point checkpoint periodically, and tries every few seconds to
//! bring back partitions an fsync failure took offline.
//!
//! Owns the queue of partitions to flush and the thread loop; the fsync itself is
//! [`Partition::flush`]. Depends on nothing but the partition and the manager's shared state.

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::partition::Partition;
use super::{now_ms, Shared};

/// How often the thread looks for time-based flushes.
const TICK: Duration = Duration::from_millis(50);
/// How often the recovery-point checkpoint is rewritten (when it changed).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often partitions an fsync failure took offline are tried again.
const RETRY_FAILED_EVERY: Duration = Duration::from_secs(5);
/// Partitions fsynced in parallel at most.
const PARALLEL_SYNCS: usize = 8;

#[derive(Default)]
struct QueueState {
    dirty: Vec<Arc<Partition>>,
    /// Appends that asked for an fsync since the last take (for appends per group commit).
    appends: u64,
    stop: bool,
}

/// Partitions waiting for an fsync.
#[derive(Default)]
pub(crate) struct FlushQueue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

impl FlushQueue {
    pub(crate) fn push(&self, partition: Arc<Partition>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stop {
            // Nobody would flush it; shutdown flushes every partition itself.
            return;
        }
        st.appends += 1;
        if !st.dirty.iter().any(|p| Arc::ptr_eq(p, &partition)) {
            st.dirty.push(partition);
        }
        drop(st);
        self.cv.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for dirty partitions; `None` once stopped and drained.
    /// Also returns how many appends asked for them.
    fn take(&self, timeout: Duration) -> Option<(Vec<Arc<Partition>>, u64)> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.dirty.is_empty() && !st.stop {
            st = self
                .cv
                .wait_timeout(st, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.stop && st.dirty.is_empty() {
            return None;
        }
        let appends = std::mem::take(&mut st.appends);
        Some((std::mem::take(&mut st.dirty), appends))
    }
}

/// A fixed set of threads that fsync partitions in parallel, started once: spawning threads on
/// every group commit cost more CPU than the fsyncs themselves (measured in BENCHMARKS.md).
struct SyncPool {
    workers: Vec<mpsc::Sender<SyncJob>>,
}

struct SyncJob {
    partitions: Vec<Arc<Partition>>,
    done: mpsc::Sender<()>,
}

impl SyncPool {
    fn start(threads: usize) -> SyncPool {
        let workers = (0..threads)
            .filter_map(|i| {
                let (tx, rx) = mpsc::channel::<SyncJob>();
                std::thread::Builder::new()
                    .name(format!("cairn-sync-{i}"))
                    .spawn(move || {
                        // Ends when the pool (the only sender) is dropped.
                        while let Ok(job) = rx.recv() {
                            job.partitions.iter().for_each(|p| p.flush());
                            let _ = job.done.send(());
                        }
                    })
                    .map_err(|e| tracing::warn!(error = %e, "cannot start an fsync thread"))
                    .ok()
                    .map(|_| tx)
            })
            .collect();
        SyncPool { workers }
    }

    /// fsyncs every partition, in parallel across the pool, and returns when all are done.
    fn flush_all(&self, partitions: &[Arc<Partition>]) {
        if partitions.len() <= 1 || self.workers.is_empty() {
            partitions.iter().for_each(|p| p.flush());
            return;
        }
        let chunk = partitions.len().div_ceil(self.workers.len());
        let (done_tx, done_rx) = mpsc::channel();
        let mut sent = 0;
        for (group, worker) in partitions.chunks(chunk).zip(&self.workers) {
            let job = SyncJob {
                partitions: group.to_vec(),
                done: done_tx.clone(),
            };
            match worker.send(job) {
                Ok(()) => sent += 1,
                // A worker that is gone: do its share here.
                Err(mpsc::SendError(job)) => job.partitions.iter().for_each(|p| p.flush()),
            }
        }
        drop(done_tx);
        for _ in 0..sent {
            if done_rx.recv().is_err() {
                break;
            }
        }
    }
}

/// The flusher thread's loop; returns when the queue is stopped.
pub(crate) fn run(shared: Arc<Shared>) {
    let pool = SyncPool::start(PARALLEL_SYNCS);
    let mut last_checkpoint = Instant::now();
    let mut last_retry = Instant::now();
    let mut last_tick = Instant::now();
    while let Some((dirty, appends)) = shared.flush_queue.take(TICK) {
        if !dirty.is_empty() {
            let started = Instant::now();
            pool.flush_all(&dirty);
            shared
                .stats
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            shared.stats.appends_per_commit.observe(appends as f64);
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            let now = now_ms();
            let due: Vec<Arc<Partition>> = shared
                .partitions()
                .into_iter()
                .filter(|p| p.flush_due(now))
                .collect();
            pool.flush_all(&due);
        }
        if last_retry.elapsed() >= RETRY_FAILED_EVERY {
            last_retry = Instant::now();
            for p in shared.partitions().iter().filter(|p| p.is_failed()) {
                if let Err(e) = p.reopen_after_failure() {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e,
                        "partition still offline after a storage error");
                }
            }
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = Instant::now();
            if let Err(e) = shared.write_recovery_checkpoint() {
                tracing::warn!(error = %e, "cannot write the recovery-point checkpoint");
            }
        }
    }
}
