//! A histogram recorded with atomic adds only: no lock and no allocation per observation, so
//! the request, produce and fsync paths can record into it freely. Scrapes read a
//! [`HistogramSnapshot`] (possibly a few observations apart between buckets, which Prometheus
//! tolerates) and encode it. Depends on nothing else in the crate.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// Upper bounds of the latency buckets: 0.1 ms to about 52 s, doubling.
pub fn latency_bounds() -> Vec<f64> {
    (0..20).map(|i| 0.0001 * 2f64.powi(i)).collect()
}

/// Upper bounds for small counts (1, 2, 4, … 4096).
pub fn count_bounds() -> Vec<f64> {
    (0..13).map(|i| 2f64.powi(i)).collect()
}

/// Counts of observations per bucket, and their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: Box<[f64]>,
    /// One per bound, and the last for values above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

/// A histogram's values at one moment: per bucket (upper bound, observations in it; the
/// encoder makes them cumulative).
#[derive(Debug, Clone, Default)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: Vec<f64>) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds: bounds.into_boxed_slice(),
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn latency() -> Histogram {
        Histogram::new(latency_bounds())
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // A compare-and-swap loop, lock-free: retried only when another thread added meanwhile.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        HistogramSnapshot {
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

/// A series' labels: (name, value) pairs, none for an unlabelled histogram.
pub type Labels = Vec<(&'static str, String)>;

/// Writes one histogram family: `series` are its label sets and values. Nothing is written
/// when `series` is empty.
pub fn encode_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(Labels, HistogramSnapshot)],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    for (labels, h) in series {
        if labels.is_empty() {
            family.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        } else {
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = Histogram::new(vec![1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 9.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert!((s.sum - 15.0).abs() < 1e-9);
        assert_eq!(
            s.buckets,
            vec![(1.0, 2), (2.0, 1), (4.0, 1), (f64::INFINITY, 1)]
        );
    }
}
