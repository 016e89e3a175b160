//! Upload bandwidth: a pacer shared by every upload, so copying to the tier never takes more than
//! `remote.log.manager.copy.max.bytes.per.second` (Kafka's name) of the machine's bandwidth.
//! Each upload reserves its bytes before sending them and waits until the reservation is due.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces out byte reservations to at most `bytes_per_second` (unlimited when `None`).
pub struct Pacer {
    bytes_per_second: Option<u64>,
    /// When the bytes reserved so far will have been sent at the allowed rate.
    next_free: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(bytes_per_second: Option<u64>) -> Pacer {
        Pacer {
            bytes_per_second: bytes_per_second.filter(|&r| r > 0),
            next_free: Mutex::new(None),
        }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn reserve(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        let start = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = next.filter(|&t| t > now).unwrap_or(now);
            let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
            *next = Some(start + cost);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_spaced_to_the_rate() {
        let pacer = Pacer::new(Some(10_000));
        let t0 = Instant::now();
        pacer.reserve(500).await; // the first is due at once
        pacer.reserve(1000).await; // after the first 500 bytes' 50 ms
        pacer.reserve(1).await; // after 150 ms
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let unlimited = Pacer::new(None);
        let t1 = Instant::now();
        unlimited.reserve(u64::MAX).await;
        assert!(t1.elapsed() < Duration::from_millis(50));
    }
}
