//! The transaction index of a segment in the bucket built again from the log objects, for the
//! segments uploaded before transaction indexes were (their manifest entry names none). A
//! `read_committed` fetch over such a segment collects its aborted transactions from here
//! meanwhile, and the scrub uploads the rebuilt index and puts it into the manifest.
//!
//! An entry needs what the segment alone may not tell: the offset of the aborted transaction's
//! first batch (which can lie in an earlier segment) and the partition's last stable offset once
//! the abort completed (the first offset of every transaction still open then). The segment is
//! read front to back with the segments before it, one more at a time, until every transaction
//! that matters is known from its start: a producer's transaction is known from its start when a
//! control marker of the same producer was read before its first batch. A transaction cannot stay
//! open longer than the transaction coordinator allows, so the walk back stops at a segment whose
//! records all precede the segment's ABORT markers by more than [`OPEN_TXN_BOUND_MS`] (or at the
//! tier's first segment), and uses what it read. Each batch's CRC and each object's size and
//! CRC-32C are checked as it is read. Knows no Kafka request type.

use std::collections::{HashMap, HashSet};

use super::manifest::RemoteSegment;
use super::object::BatchReader;
use super::{Bucket, TierError};
use crate::log::partition::txn;
use crate::log::txn_index::AbortedTxn;

/// Marker type of an ABORT control record.
const ABORT: i16 = 0;

/// How long before its ABORT marker a transaction may have begun: well past Kafka's default
/// `transaction.max.timeout.ms` (15 minutes), after which the coordinator aborts it.
pub(super) const OPEN_TXN_BOUND_MS: i64 = 60 * 60 * 1000;

/// The aborted transactions whose ABORT marker lies in `segments[k]`, in marker order, as the
/// segment's `.txnindex` would list them.
pub(super) async fn rebuild(
    bucket: &Bucket,
    segments: &[RemoteSegment],
    k: usize,
) -> Result<Vec<AbortedTxn>, TierError> {
    let mut from = k;
    loop {
        let scan = scan(bucket, &segments[from..=k]).await?;
        let bounded = from == 0
            || scan.earliest_abort.is_some_and(|t| {
                segments[from - 1].max_timestamp < t.saturating_sub(OPEN_TXN_BOUND_MS)
            });
        if scan.resolved || bounded {
            return Ok(scan.entries);
        }
        from -= 1;
    }
}

/// What reading some segments found about the last one's ABORT markers.
struct Scan {
    entries: Vec<AbortedTxn>,
    /// Every entry's first offset and last stable offset are exact.
    resolved: bool,
    /// The earliest timestamp of an ABORT marker in the last segment.
    earliest_abort: Option<i64>,
}

/// A transaction open at the point read: its first batch seen, and whether that is its start
/// (the producer's previous marker was read before it).
#[derive(Clone, Copy)]
struct Open {
    first: i64,
    exact: bool,
}

/// Reads `segments` front to back and lists the aborted transactions of the last one.
async fn scan(bucket: &Bucket, segments: &[RemoteSegment]) -> Result<Scan, TierError> {
    let last = segments.last().expect("at least one segment");
    let mut open: HashMap<i64, Open> = HashMap::new();
    let mut decided: HashSet<i64> = HashSet::new();
    let mut out = Scan {
        entries: Vec::new(),
        resolved: true,
        earliest_abort: None,
    };
    for seg in segments {
        let mut reader = BatchReader::new(bucket, &seg.log);
        while let Some((h, bytes)) = reader.next().await? {
            let producer = h.producer_id;
            if !h.is_control() {
                if h.is_transactional() {
                    let exact = decided.contains(&producer);
                    open.entry(producer).or_insert(Open {
                        first: h.base_offset,
                        exact,
                    });
                }
                continue;
            }
            let begun = open.remove(&producer);
            let was_decided = !decided.insert(producer);
            if h.base_offset < last.base_offset || !matches!(txn::marker(&bytes), Some((ABORT, _)))
            {
                continue;
            }
            out.earliest_abort = Some(
                out.earliest_abort
                    .map_or(h.max_timestamp, |t| t.min(h.max_timestamp)),
            );
            let first = match begun {
                Some(o) => {
                    out.resolved &= o.exact;
                    o.first
                }
                // A marker read before any batch of its transaction: an empty transaction when
                // the producer's previous marker was read, else one begun before these segments.
                None if was_decided => continue,
                None => {
                    out.resolved = false;
                    segments[0].base_offset
                }
            };
            out.resolved &= open.values().all(|o| o.exact);
            let stable = open
                .values()
                .map(|o| o.first)
                .min()
                .unwrap_or(h.base_offset + 1)
                .min(h.base_offset + 1);
            out.entries.push(AbortedTxn {
                producer_id: producer,
                first_offset: first,
                last_offset: h.base_offset,
                last_stable_offset: stable,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::clean::tests::{batch_at, segment};
    use crate::tier::manifest::Manifest;
    use crate::tier::read::RemoteLog;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;
    use std::sync::Arc;

    const COMMIT: i16 = 1;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64, stable: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: stable,
        }
    }

    /// [0, 10): producer 1 commits a transaction, producer 2 begins one at 3, producer 1 begins
    /// another at 5; [10, 20): producer 1 aborts (producer 2 still open), producer 2 aborts.
    async fn two_segments(b: &Bucket) -> Vec<RemoteSegment> {
        let a =
            |base, producer| batch_at(base, &[("k", Some("v")), ("k", Some("v"))], producer, None);
        let marker = |base, producer, kind| batch_at(base, &[("", None)], producer, Some(kind));
        let plain = |base| {
            batch_at(
                base,
                &[("p", Some("v")), ("p", Some("v")), ("p", Some("v"))],
                -1,
                None,
            )
        };
        let first = [a(0, 1), marker(2, 1, COMMIT), a(3, 2), a(5, 1), plain(7)];
        let second = [
            marker(10, 1, ABORT),
            batch_at(11, &[("k", Some("v"))], 2, None),
            marker(12, 2, ABORT),
            plain(13),
        ];
        vec![
            segment(b, 0, 10, &first).await,
            segment(b, 10, 16, &second).await,
        ]
    }

    #[tokio::test]
    async fn a_segments_index_is_built_with_transactions_begun_in_earlier_segments() {
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let segments = two_segments(&b).await;
        // Producer 1's aborted transaction began at 5, in the segment before; producer 2's,
        // begun at 3, was still open then (the stable offset stays at 3).
        let expected = vec![txn(1, 5, 10, 3), txn(2, 3, 12, 13)];
        assert_eq!(rebuild(&b, &segments, 1).await.unwrap(), expected);
        // The first segment holds no ABORT marker.
        assert!(rebuild(&b, &segments, 0).await.unwrap().is_empty());
        // A read_committed fetch over them gets the same entries, with no index in the manifest.
        let remote = RemoteLog::new(b.clone(), 1 << 20);
        remote.publish(&Manifest {
            topic: "t".into(),
            segments: segments.clone(),
            ..Manifest::default()
        });
        let found = remote
            .aborted_transactions("t", 0, (4, 16), 100)
            .await
            .unwrap();
        assert_eq!(found, (expected.clone(), false));
        // A damaged earlier segment is an error, never an index missing its entries.
        let mut damaged = segments.clone();
        damaged[0].log.crc32c ^= 1;
        assert!(matches!(
            rebuild(&b, &damaged, 1).await,
            Err(TierError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn segments_older_than_any_open_transaction_are_not_read() {
        let b = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let mut segments = two_segments(&b).await;
        // The earlier segment's records precede the markers by more than a transaction may
        // stay open, and its object is gone: the walk back stops before it.
        segments[0].max_timestamp = 1_010 - OPEN_TXN_BOUND_MS - 1;
        b.store.delete(&b.key(&segments[0].log.key)).await.unwrap();
        let built = rebuild(&b, &segments, 1).await.unwrap();
        assert_eq!(built, vec![txn(1, 10, 10, 11), txn(2, 11, 12, 13)]);
    }
}
