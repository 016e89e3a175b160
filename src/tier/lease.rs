//! One writer per bucket prefix: a lease made of numbered claim objects written with
//! create-only conditional writes (S3 `If-None-Match: *`, `O_EXCL`-like on a directory).
//!
//! A broker claims epoch E+1 above the highest claim E when E is its own (same data
//! directory), was released by a clean stop, or its heartbeat is older than the timeout; two
//! brokers racing for E+1 cannot both create it. The holder renews its heartbeat and, on each
//! renewal, looks for a higher claim: finding one, or failing to renew for a whole timeout,
//! means it no longer writes (every write to the bucket asks [`Lease::check`] first). A holder
//! that could not renew for that long (a store outage) resumes only by claiming the next epoch
//! itself, create-only, so it never writes beside a broker that took over meanwhile. Uses only
//! create-if-absent, so it works on every store `object_store` offers.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{now_ms, Bucket, TierError};

/// A heartbeat older than this lets another broker take the prefix: the default of
/// `cairn.remote.lease.timeout.ms`.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The holder renews this many times per timeout (every 5 s with the default timeout).
const RENEWALS_PER_TIMEOUT: u32 = 6;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    owner: String,
    epoch: u64,
    host: String,
    pid: u32,
    claimed_ms: i64,
}

/// The lease this broker holds on the bucket prefix.
#[derive(Debug)]
pub struct Lease {
    bucket: Bucket,
    /// The epoch held: the claim's, or a later one claimed again after an outage.
    epoch: AtomicU64,
    owner: String,
    lost: AtomicBool,
    /// When the last renewal (or the claim) succeeded.
    renewed_ms: AtomicI64,
    /// `cairn.remote.lease.timeout.ms`.
    timeout: Duration,
}

fn claim_key(epoch: u64, ext: &str) -> String {
    format!("lease/{epoch:020}.{ext}")
}

/// Every claimed epoch, ascending.
async fn claimed_epochs(bucket: &Bucket) -> Result<Vec<u64>, TierError> {
    let listed: Vec<_> = bucket
        .store
        .list(Some(&bucket.key("lease")))
        .try_collect()
        .await?;
    let mut epochs: Vec<u64> = listed
        .iter()
        .filter_map(|m| {
            let rel = bucket.relative(&m.location);
            rel.strip_prefix("lease/")?
                .strip_suffix(".claim")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

async fn read_i64(bucket: &Bucket, rel: &str) -> Result<Option<i64>, TierError> {
    match bucket.store.get(&bucket.key(rel)).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            Ok(std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok()))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Lease {
    /// [`Lease::acquire_with_timeout`] with the default [`LEASE_TIMEOUT`].
    pub async fn acquire(bucket: &Bucket, owner: &str) -> Result<Lease, TierError> {
        Self::acquire_with_timeout(bucket, owner, LEASE_TIMEOUT).await
    }

    /// Claims the prefix for `owner` (a stable id of this data directory), or fails with
    /// [`TierError::LeaseHeld`] when another live broker holds it. A claim whose heartbeat is
    /// older than `timeout` is expired; the holder renews every `timeout / 6`. Every broker on
    /// one prefix must use the same timeout.
    pub async fn acquire_with_timeout(
        bucket: &Bucket,
        owner: &str,
        timeout: Duration,
    ) -> Result<Lease, TierError> {
        let epochs = claimed_epochs(bucket).await?;
        let next = match epochs.last() {
            None => 1,
            Some(&top) => {
                let r = bucket
                    .store
                    .get(&bucket.key(&claim_key(top, "claim")))
                    .await?;
                let claim: Claim =
                    serde_json::from_slice(&r.bytes().await?).map_err(|e| TierError::Corrupt {
                        key: claim_key(top, "claim"),
                        reason: e.to_string(),
                    })?;
                let released = read_i64(bucket, &claim_key(top, "released")).await?;
                let beat = read_i64(bucket, &claim_key(top, "heartbeat"))
                    .await?
                    .unwrap_or(claim.claimed_ms);
                let age_ms = now_ms() - beat;
                let timeout_ms = timeout.as_millis() as i64;
                if claim.owner != owner && released.is_none() && age_ms < timeout_ms {
                    return Err(TierError::LeaseHeld {
                        url: bucket.url.clone(),
                        owner: format!("{} on {} pid {}", claim.owner, claim.host, claim.pid),
                        epoch: top,
                        age_ms,
                        timeout_ms,
                    });
                }
                top + 1
            }
        };
        let claim = Claim {
            owner: owner.to_string(),
            epoch: next,
            host: hostname(),
            pid: std::process::id(),
            claimed_ms: now_ms(),
        };
        let body = serde_json::to_vec(&claim).expect("a claim serializes");
        let created = bucket
            .store
            .put_opts(
                &bucket.key(&claim_key(next, "claim")),
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match created {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(TierError::LeaseHeld {
                    url: bucket.url.clone(),
                    owner: "a broker that claimed it at the same moment".into(),
                    epoch: next,
                    age_ms: 0,
                    timeout_ms: timeout.as_millis() as i64,
                })
            }
            Err(e) => return Err(e.into()),
        }
        let lease = Lease {
            bucket: bucket.clone(),
            epoch: AtomicU64::new(next),
            owner: owner.to_string(),
            lost: AtomicBool::new(false),
            renewed_ms: AtomicI64::new(now_ms()),
            timeout,
        };
        lease.renew().await?;
        // Old claims are history; keep the last few for diagnosis.
        for old in epochs.iter().filter(|&&e| e + 3 < next) {
            for ext in ["claim", "heartbeat", "released"] {
                let _ = bucket
                    .store
                    .delete(&bucket.key(&claim_key(*old, ext)))
                    .await;
            }
        }
        tracing::info!(url = %bucket.url, epoch = next, owner, "holding the bucket lease");
        Ok(lease)
    }

    /// The epoch this broker holds.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Renews the heartbeat, first making sure no broker claimed a higher epoch. After a
    /// whole timeout without a renewal (the store was unreachable), another broker may be
    /// claiming the next epoch at this moment: this one then claims it itself, create-only,
    /// and writes again only if it won.
    pub async fn renew(&self) -> Result<(), TierError> {
        let epoch = self.epoch();
        if self.lost.load(Ordering::SeqCst) {
            return Err(TierError::LeaseLost { epoch });
        }
        let epochs = claimed_epochs(&self.bucket).await?;
        if epochs.last().is_some_and(|&top| top > epoch) {
            return Err(self.lose(epoch));
        }
        if self.check().is_err() {
            self.claim(epoch + 1).await?;
            self.epoch.store(epoch + 1, Ordering::SeqCst);
            tracing::warn!(url = %self.bucket.url, epoch = epoch + 1,
                "the bucket lease went stale while the store was unreachable; claimed the next epoch");
        } else if !epochs.contains(&epoch) {
            // The store lost the claim (e.g. an S3 server that restarted empty): claim the
            // epoch again, create-only, so that no other broker can take it meanwhile.
            self.claim(epoch).await?;
            tracing::warn!(url = %self.bucket.url, epoch,
                "the bucket lost this broker's lease claim; claimed it again");
        }
        self.bucket
            .store
            .put(
                &self.bucket.key(&claim_key(self.epoch(), "heartbeat")),
                PutPayload::from(now_ms().to_string()),
            )
            .await?;
        self.renewed_ms.store(now_ms(), Ordering::SeqCst);
        Ok(())
    }

    /// Marks the lease lost (another broker holds a higher epoch), logging it once.
    fn lose(&self, epoch: u64) -> TierError {
        if !self.lost.swap(true, Ordering::SeqCst) {
            tracing::error!(url = %self.bucket.url, epoch,
                "another broker claimed this bucket prefix; no longer writing to it");
        }
        TierError::LeaseLost { epoch }
    }

    /// Creates the claim of `epoch` for this broker, create-only: an existing claim means
    /// another broker holds it, and the lease is lost.
    async fn claim(&self, epoch: u64) -> Result<(), TierError> {
        let claim = Claim {
            owner: self.owner.clone(),
            epoch,
            host: hostname(),
            pid: std::process::id(),
            claimed_ms: now_ms(),
        };
        let body = serde_json::to_vec(&claim).expect("a claim serializes");
        let created = self
            .bucket
            .store
            .put_opts(
                &self.bucket.key(&claim_key(epoch, "claim")),
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(self.lose(epoch)),
            Err(e) => Err(e.into()),
        }
    }

    /// Ok while this broker may write: the lease is not lost, and it was renewed within the
    /// timeout (less a margin, so a broker cut off from the store stops before another may take
    /// over).
    pub fn check(&self) -> Result<(), TierError> {
        let stale = now_ms() - self.renewed_ms.load(Ordering::SeqCst)
            > (self.timeout - self.renew_interval()).as_millis() as i64;
        if self.lost.load(Ordering::SeqCst) || stale {
            return Err(TierError::LeaseLost {
                epoch: self.epoch(),
            });
        }
        Ok(())
    }

    /// Marks the lease released (a clean stop), so the next broker need not wait it out.
    pub async fn release(&self) -> Result<(), TierError> {
        self.check()?;
        self.bucket
            .store
            .put(
                &self.bucket.key(&claim_key(self.epoch(), "released")),
                PutPayload::from(now_ms().to_string()),
            )
            .await?;
        tracing::info!(url = %self.bucket.url, epoch = self.epoch(), owner = %self.owner, "released the bucket lease");
        Ok(())
    }

    /// How often the holder renews: a sixth of the timeout.
    fn renew_interval(&self) -> Duration {
        self.timeout / RENEWALS_PER_TIMEOUT
    }

    /// Renews every sixth of the timeout until `stop` fires; a failed renewal is logged once.
    pub async fn keep_renewed(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.renew_interval()) => {}
                _ = stop.changed() => return,
            }
            match self.renew().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(url = %self.bucket.url, "lease renewed again");
                }
                Ok(()) => {}
                Err(TierError::LeaseLost { .. }) if self.lost.load(Ordering::SeqCst) => return,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(url = %self.bucket.url, error = %e, "cannot renew the bucket lease; retrying");
                }
                Err(_) => {}
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn bucket() -> Bucket {
        Bucket::new(Arc::new(InMemory::new()), "pre", "memory://test/pre")
    }

    #[tokio::test]
    async fn a_second_owner_is_refused_and_the_first_keeps_the_lease() {
        let b = bucket();
        let first = Lease::acquire(&b, "broker-a").await.unwrap();
        assert_eq!(first.epoch(), 1);
        let err = Lease::acquire(&b, "broker-b").await.unwrap_err();
        assert!(
            matches!(err, TierError::LeaseHeld { epoch: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("memory://test/pre"));
        first.renew().await.unwrap();
        first.check().unwrap();
    }

    #[tokio::test]
    async fn the_same_owner_or_a_released_lease_is_taken_over_and_the_old_holder_stops() {
        let b = bucket();
        let first = Lease::acquire(&b, "broker-a").await.unwrap();
        // The same data directory restarting (e.g. after kill -9) takes over at once.
        let again = Lease::acquire(&b, "broker-a").await.unwrap();
        assert_eq!(again.epoch(), 2);
        assert!(matches!(
            first.renew().await,
            Err(TierError::LeaseLost { epoch: 1 })
        ));
        assert!(first.check().is_err());
        again.release().await.unwrap();
        let other = Lease::acquire(&b, "broker-b").await.unwrap();
        assert_eq!(other.epoch(), 3);
        assert!(again.renew().await.is_err());
    }

    #[tokio::test]
    async fn a_dead_holders_claim_expires_after_the_configured_timeout_not_before() {
        let b = bucket();
        let timeout = Duration::from_millis(1000);
        // A holder killed with -9: it never renews nor releases. Its last renewal is inside
        // acquire, so time is counted from before it, on the lease's own clock.
        let killed = std::time::Instant::now();
        let killed_ms = now_ms();
        let since_killed_ms = || now_ms() - killed_ms;
        let dead = Lease::acquire_with_timeout(&b, "broker-a", timeout)
            .await
            .unwrap();
        let err = Lease::acquire_with_timeout(&b, "broker-b", timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TierError::LeaseHeld {
                    timeout_ms: 1000,
                    ..
                }
            ),
            "{err}"
        );
        // Not renewed for the timeout less a sixth, the holder stops writing by itself.
        let deadline = killed + Duration::from_secs(10);
        while dead.check().is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the holder never went stale"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stale_after = (timeout - timeout / RENEWALS_PER_TIMEOUT).as_millis() as i64;
        assert!(since_killed_ms() >= stale_after, "{}", since_killed_ms());
        let taken = loop {
            match Lease::acquire_with_timeout(&b, "broker-b", timeout).await {
                Ok(lease) => break lease,
                Err(TierError::LeaseHeld { .. }) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the claim never expired"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let expired_after = timeout.as_millis() as i64;
        assert!(since_killed_ms() >= expired_after, "{}", since_killed_ms());
        assert_eq!(taken.epoch(), 2);
        taken.check().unwrap();
        assert!(matches!(
            dead.renew().await,
            Err(TierError::LeaseLost { epoch: 1 })
        ));
    }

    #[tokio::test]
    async fn a_holder_stale_after_an_outage_claims_the_next_epoch_and_writes_again() {
        let b = bucket();
        let timeout = Duration::from_millis(300);
        let lease = Lease::acquire_with_timeout(&b, "broker-a", timeout)
            .await
            .unwrap();
        // No renewal for longer than the timeout, as while the store was unreachable.
        tokio::time::sleep(timeout + Duration::from_millis(50)).await;
        assert!(lease.check().is_err());
        lease.renew().await.unwrap();
        assert_eq!(lease.epoch(), 2);
        lease.check().unwrap();
        // Another broker sees the fresh claim as held.
        let err = Lease::acquire_with_timeout(&b, "broker-b", timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TierError::LeaseHeld { epoch: 2, .. }),
            "{err}"
        );
        // Had it taken over first, the stale holder would have stopped for good.
        let stale = Lease::acquire_with_timeout(&bucket(), "broker-a", timeout)
            .await
            .unwrap();
        let other = stale.bucket.clone();
        tokio::time::sleep(timeout + Duration::from_millis(50)).await;
        let taken = Lease::acquire_with_timeout(&other, "broker-b", timeout)
            .await
            .unwrap();
        assert_eq!(taken.epoch(), 2);
        assert!(matches!(
            stale.renew().await,
            Err(TierError::LeaseLost { epoch: 1 })
        ));
        assert!(stale.check().is_err());
    }

    #[tokio::test]
    async fn racing_claims_of_one_epoch_cannot_both_win() {
        let b = bucket();
        b.store
            .put_opts(
                &b.key(&claim_key(1, "claim")),
                PutPayload::from_static(b"{}"),
                PutOptions::from(PutMode::Create),
            )
            .await
            .unwrap();
        let again = b
            .store
            .put_opts(
                &b.key(&claim_key(1, "claim")),
                PutPayload::from_static(b"{}"),
                PutOptions::from(PutMode::Create),
            )
            .await;
        assert!(matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. })
        ));
    }
}
