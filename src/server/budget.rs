//! The broker-wide budget of request bytes held by readers (`queued.max.request.bytes`).
//!
//! Before a reader allocates a frame body of n bytes it takes min(n, budget) bytes, waiting for
//! room if there is none, and gives them back when the permit drops. Budget is taken for a whole
//! frame at once, never piecemeal; free bytes go to the first waiter they fit (no queue).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The broker-wide budget of request bytes held by readers (`queued.max.request.bytes`).
#[derive(Debug)]
pub(super) struct RequestBudget {
    /// The whole budget; `None` is unbounded (-1).
    limit: Option<usize>,
    available: Mutex<usize>,
    /// Woken whenever bytes are given back.
    released: Notify,
    /// Told the bytes in use after each change (`cairn_request_budget_in_use_bytes`).
    metrics: Option<crate::metrics::Metrics>,
}

/// Bytes taken from a [`RequestBudget`], given back when dropped.
#[derive(Debug)]
pub(super) struct BudgetPermit {
    budget: Arc<RequestBudget>,
    bytes: usize,
}

impl RequestBudget {
    #[cfg(test)]
    pub(super) fn new(limit: Option<usize>) -> Arc<RequestBudget> {
        Self::reporting(limit, None)
    }

    /// A budget that reports the bytes in use to `metrics`.
    pub(super) fn reporting(
        limit: Option<usize>,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Arc<RequestBudget> {
        Arc::new(RequestBudget {
            limit,
            available: Mutex::new(limit.unwrap_or(0)),
            released: Notify::new(),
            metrics,
        })
    }

    /// Called with the lock held, so reports arrive in the order of the changes.
    fn report(&self, available: usize) {
        if let (Some(metrics), Some(limit)) = (&self.metrics, self.limit) {
            metrics.set_budget_in_use(limit.saturating_sub(available) as u64);
        }
    }

    /// Takes min(`frame_len`, the whole budget) bytes, waiting until that much is free. A frame
    /// larger than the whole budget takes all of it. Free bytes go to whichever waiter fits
    /// first, so a small request is not queued behind a big one.
    pub(super) async fn acquire(self: &Arc<Self>, frame_len: usize) -> BudgetPermit {
        let Some(limit) = self.limit else {
            return BudgetPermit {
                budget: self.clone(),
                bytes: 0,
            };
        };
        let bytes = frame_len.min(limit);
        loop {
            // Registered before looking, so a release between the look and the wait wakes us.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(bytes) {
                return BudgetPermit {
                    budget: self.clone(),
                    bytes,
                };
            }
            released.await;
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut available = self
            .available
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *available >= bytes {
            *available -= bytes;
            self.report(*available);
            true
        } else {
            false
        }
    }

    /// Free bytes now (`None` when unbounded).
    #[cfg(test)]
    fn available(&self) -> Option<usize> {
        self.limit.map(|_| {
            *self
                .available
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        })
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut available = self
            .budget
            .available
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *available += self.bytes;
        self.budget.report(*available);
        drop(available);
        self.budget.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn budget_waits_for_room_lets_small_requests_pass_and_gives_everything_back() {
        runtime().block_on(async {
            let budget = RequestBudget::new(Some(100));
            let a = budget.acquire(60).await;
            assert_eq!(budget.available(), Some(40));
            // 50 does not fit: it waits, without taking anything meanwhile.
            let waiting = tokio::spawn({
                let budget = budget.clone();
                async move { budget.acquire(50).await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished());
            assert_eq!(budget.available(), Some(40));
            // A small request is not queued behind the big one.
            let small = tokio::time::timeout(Duration::from_secs(5), budget.acquire(30))
                .await
                .expect("a small request waited behind a big one");
            assert_eq!(budget.available(), Some(10));
            drop(small);
            assert_eq!(budget.available(), Some(40));
            drop(a);
            let b = tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the waiter was not woken by the release")
                .expect("task");
            assert_eq!(b.bytes, 50);
            assert_eq!(budget.available(), Some(50));
            drop(b);
            assert_eq!(budget.available(), Some(100));
        });
    }

    #[test]
    fn a_frame_larger_than_the_budget_takes_all_of_it_and_unbounded_takes_nothing() {
        runtime().block_on(async {
            let budget = RequestBudget::new(Some(100));
            let huge = budget.acquire(1 << 30).await;
            assert_eq!(huge.bytes, 100);
            assert_eq!(budget.available(), Some(0));
            let empty = budget.acquire(0).await;
            assert_eq!(empty.bytes, 0);
            drop((huge, empty));
            assert_eq!(budget.available(), Some(100));

            let unbounded = RequestBudget::new(None);
            let p = unbounded.acquire(1 << 30).await;
            assert_eq!(p.bytes, 0);
            assert_eq!(unbounded.available(), None);
        });
    }

    #[test]
    fn a_cancelled_wait_takes_nothing() {
        runtime().block_on(async {
            let budget = RequestBudget::new(Some(100));
            let a = budget.acquire(100).await;
            let timed_out =
                tokio::time::timeout(Duration::from_millis(20), budget.acquire(10)).await;
            assert!(timed_out.is_err());
            drop(a);
            assert_eq!(budget.available(), Some(100));
        });
    }
}
