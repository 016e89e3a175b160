//! The last minutes of the broker, sampled every [`INTERVAL`]: bytes in and out, and each group's
//! committed position and lag. The status page draws throughput from it and, for a group that
//! is behind, its consumption rate and time to catch up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::status::Status;
use crate::broker::Broker;

/// Time between samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes.
const KEEP: usize = 120;

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// Group id → (sum of committed offsets, lag).
    groups: BTreeMap<String, (i64, i64)>,
}

#[derive(Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// What the page shows from the history.
#[derive(Debug, Default)]
pub(crate) struct Trends {
    /// (seconds before now, bytes in per second, bytes out per second), oldest first.
    pub throughput: Vec<(f64, f64, f64)>,
    /// Group id → records committed per second over the window (positive while it advances).
    pub group_rates: BTreeMap<String, f64>,
}

impl History {
    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    pub(crate) fn snapshot(&self) -> Trends {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back() else {
            return Trends::default();
        };
        let now = Instant::now();
        let throughput = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| {
                let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
                (
                    now.duration_since(b.at).as_secs_f64(),
                    b.bytes_in.saturating_sub(a.bytes_in) as f64 / secs,
                    b.bytes_out.saturating_sub(a.bytes_out) as f64 / secs,
                )
            })
            .collect();
        // A group's rate: over the longest stretch of the window in which it existed.
        let group_rates = last
            .groups
            .iter()
            .filter_map(|(group, &(committed, _))| {
                let first = samples.iter().find(|s| s.groups.contains_key(group))?;
                let secs = last.at.duration_since(first.at).as_secs_f64();
                (secs > 0.0).then(|| {
                    (
                        group.clone(),
                        (committed - first.groups[group].0) as f64 / secs,
                    )
                })
            })
            .collect();
        Trends {
            throughput,
            group_rates,
        }
    }
}

/// Samples the broker forever (the listener aborts it when it stops).
pub(crate) async fn sample(broker: Arc<Broker>, history: Arc<History>) {
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        ticker.tick().await;
        let b = broker.clone();
        let Ok(status) =
            tokio::task::spawn_blocking(move || Status::gather(&b, Instant::now())).await
        else {
            return;
        };
        let (bytes_in, bytes_out) = broker.metrics.total_bytes();
        history.push(Sample {
            at: Instant::now(),
            bytes_in,
            bytes_out,
            groups: status
                .groups
                .iter()
                .map(|g| {
                    let committed = g.offsets.iter().map(|o| o.committed_offset).sum();
                    (g.group_id.clone(), (committed, g.lag))
                })
                .collect(),
        });
    }
}
