//! The cleaner threads: `log.cleaner.threads` of them, each cleaning its own partition. Their
//! settings (thread count, `log.cleaner.io.max.bytes.per.second`, `log.cleaner.dedupe.buffer.size`,
//! `log.cleaner.backoff.ms`) are read again before every pass, so a dynamic broker config change
//! reaches them without a restart: the first thread starts the missing siblings, a sibling beyond
//! the count finishes its pass and returns, and a sleeping thread wakes when the settings change.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{roll_signature, Cleaner, CleanerConfig, ROLL_POLL};
use crate::config::BrokerConfig;
use crate::log::{now_ms, Shared};

/// The cleaner settings in force, as the log manager last set them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CleanerSettings {
    pub(crate) config: CleanerConfig,
    /// `log.cleaner.threads`, at least 1.
    pub(crate) threads: usize,
}

impl CleanerSettings {
    pub(crate) fn from_broker(broker: &BrokerConfig) -> CleanerSettings {
        CleanerSettings {
            config: CleanerConfig::from_broker(broker),
            threads: super::threads(broker),
        }
    }
}

/// The first cleaner thread: cleans like the others, starts and reaps its siblings; returns when
/// the manager stops and every sibling has returned.
pub(crate) fn run(shared: Arc<Shared>) {
    let settings = shared.cleaner_settings();
    let cleaner = Cleaner::new(&shared.data_dir, settings.config.clone());
    run_thread(shared, cleaner, 0);
}

/// Starts the siblings `threads` calls for that are not running, and forgets those that returned.
fn supervise(
    shared: &Arc<Shared>,
    cleaner: &Cleaner,
    siblings: &mut Vec<(usize, JoinHandle<()>)>,
    threads: usize,
) {
    siblings.retain(|(_, t)| !t.is_finished());
    for index in 1..threads {
        if siblings.iter().any(|(i, _)| *i == index) {
            continue;
        }
        let (s, c) = (shared.clone(), cleaner.sibling());
        match std::thread::Builder::new()
            .name(format!("cairn-cleaner-{index}"))
            .spawn(move || run_thread(s, c, index))
        {
            Ok(t) => siblings.push((index, t)),
            Err(e) => tracing::warn!(error = %e, "cannot start a cleaner thread"),
        }
    }
}

/// One cleaner thread: cleans due logs, sleeps `log.cleaner.backoff.ms` when none is due (waking
/// early when a compacted partition rolls a segment, its durable end reaches the active segment,
/// or the settings change), returns when the manager stops or (a sibling) when the thread count
/// drops below its index.
fn run_thread(shared: Arc<Shared>, mut cleaner: Cleaner, index: usize) {
    let mut siblings = Vec::new();
    while !shared.is_shutting_down() {
        let settings = shared.cleaner_settings();
        if index >= settings.threads {
            break;
        }
        cleaner.config = settings.config.clone();
        cleaner.io_share = settings.threads;
        if index == 0 {
            supervise(&shared, &cleaner, &mut siblings, settings.threads);
        }
        if cleaner.clean_dirtiest(&shared.partitions(), now_ms()) {
            continue;
        }
        let backoff = settings.config.backoff;
        // Wake at the next tombstone horizon too, so deleted keys go on time.
        let now = now_ms();
        let until_horizon = cleaner
            .next_horizon(now)
            .map(|h| Duration::from_millis((h - now) as u64 + 1));
        let deadline = Instant::now() + until_horizon.map_or(backoff, |d| d.min(backoff));
        let signature = roll_signature(&shared);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if shared.wait_stop(left.min(ROLL_POLL)) {
                break;
            }
            if roll_signature(&shared) != signature
                || !Arc::ptr_eq(&shared.cleaner_settings(), &settings)
            {
                break;
            }
        }
    }
    for (_, t) in siblings {
        let _ = t.join();
    }
}
