//! A windowed rate, as Kafka's quota sensors measure one: `samples` windows of `window` each,
//! and a rate over the time they cover, never less than `samples - 1` whole windows (so a
//! client's first burst is not measured over a few milliseconds).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The sum of recorded values per window, oldest first.
#[derive(Debug)]
pub(super) struct Rate {
    samples: VecDeque<(Instant, f64)>,
    last_record: Instant,
}

/// How a rate is sampled (`quota.window.num`, `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub samples: u32,
    pub window: Duration,
}

impl Rate {
    pub(super) fn new(now: Instant) -> Rate {
        Rate {
            samples: VecDeque::new(),
            last_record: now,
        }
    }

    /// Adds `value` (negative to take back a recorded value) at `now`.
    pub(super) fn record(&mut self, value: f64, now: Instant, windows: Windows) {
        self.purge(now, windows);
        self.last_record = now;
        match self.samples.back_mut() {
            Some((start, sum)) if now < *start + windows.window => *sum += value,
            _ => self.samples.push_back((now, value)),
        }
    }

    /// The rate per second at `now`.
    pub(super) fn measure(&mut self, now: Instant, windows: Windows) -> f64 {
        self.purge(now, windows);
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        total / self.window_size(now, windows).as_secs_f64()
    }

    /// The time the rate is taken over: since the oldest sample began, but at least
    /// `samples - 1` whole windows (Kafka's `Rate.windowSize`), and at least a millisecond.
    pub(super) fn window_size(&self, now: Instant, windows: Windows) -> Duration {
        let elapsed = self.samples.front().map_or(Duration::ZERO, |(start, _)| {
            now.saturating_duration_since(*start)
        });
        let full = (elapsed.as_nanos() / windows.window.as_nanos().max(1)) as u32;
        let min_full = windows.samples.saturating_sub(1);
        let size = if full < min_full {
            elapsed + windows.window * (min_full - full)
        } else {
            elapsed
        };
        size.max(Duration::from_millis(1))
    }

    /// True when nothing was recorded for longer than all the windows together.
    pub(super) fn idle(&self, now: Instant, windows: Windows) -> bool {
        now.saturating_duration_since(self.last_record) > windows.window * windows.samples
    }

    fn purge(&mut self, now: Instant, windows: Windows) {
        let span = windows.window * windows.samples;
        while let Some((start, _)) = self.samples.front() {
            if now.saturating_duration_since(*start) >= span {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: Windows = Windows {
        samples: 11,
        window: Duration::from_secs(1),
    };

    #[test]
    fn a_first_burst_is_measured_over_the_minimum_window() {
        let t0 = Instant::now();
        let mut rate = Rate::new(t0);
        rate.record(10_000.0, t0, WINDOWS);
        // Half a second in: 10 full windows plus the half.
        let r = rate.measure(t0 + Duration::from_millis(500), WINDOWS);
        assert!((r - 10_000.0 / 10.5).abs() < 1.0, "{r}");
    }

    #[test]
    fn old_samples_leave_the_rate() {
        let t0 = Instant::now();
        let mut rate = Rate::new(t0);
        for s in 0..20 {
            rate.record(100.0, t0 + Duration::from_secs(s), WINDOWS);
        }
        // Eleven windows of 100 each over 11 s (the oldest began 10.5 s ago + half of one).
        let r = rate.measure(t0 + Duration::from_millis(19_500), WINDOWS);
        assert!((r - 1100.0 / 10.5).abs() < 1.0, "{r}");
        rate.record(-100.0, t0 + Duration::from_millis(19_500), WINDOWS);
        let r = rate.measure(t0 + Duration::from_millis(19_500), WINDOWS);
        assert!((r - 1000.0 / 10.5).abs() < 1.0, "{r}");
        assert!(!rate.idle(t0 + Duration::from_secs(25), WINDOWS));
        assert!(rate.idle(t0 + Duration::from_secs(31), WINDOWS));
    }
}
