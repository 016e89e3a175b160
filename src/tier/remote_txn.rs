//! The aborted-transaction index of a segment in the bucket, and the aborted transactions a
//! `read_committed` fetch of offsets only the tier holds must skip.
//!
//! The uploader puts the local segment's `.txnindex` (Kafka's layout, [`crate::log::txn_index`])
//! beside its log object as `<stem>.txnindex`, empty when the segment holds no ABORT marker (an
//! empty object is never fetched back). A segment the tier's cleaner rewrites holds no aborted
//! data (its batches are dropped), so it gets an empty one. A read fetches an index whole, checks
//! its size and CRC-32C against the manifest, and caches it with the other index objects.
//! Collection follows Kafka's `collectAbortedTransactions`: the entries whose ABORT marker lies
//! at or after the fetch offset and whose transaction began below the end of the records
//! returned, over the remote segments from the one holding the fetch offset, stopping at the
//! first entry whose last stable offset reaches that end (nothing later can concern the records
//! returned). Knows no Kafka request type.

use object_store::{ObjectStoreExt, PutPayload};

use super::manifest::RemoteObject;
use super::pace::Pacer;
use super::{Bucket, TierError};
use crate::log::txn_index::AbortedTxn;

/// Puts `entries` as `<stem>.txnindex` (the caller checked the lease, and gives a stem no
/// manifest names objects under).
pub(super) async fn upload(
    bucket: &Bucket,
    pacer: &Pacer,
    stem: &str,
    entries: &[AbortedTxn],
) -> Result<RemoteObject, TierError> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
    let object = RemoteObject {
        key: format!("{stem}.txnindex"),
        size: bytes.len() as u64,
        crc32c: crc32c::crc32c(&bytes),
    };
    pacer.reserve(object.size).await;
    bucket
        .store
        .put(&bucket.key(&object.key), PutPayload::from(bytes))
        .await?;
    Ok(object)
}

/// Adds to `out` the entries of one segment's index concerning [`from`, `upper`); true when an
/// entry shows the search complete (its last stable offset is at or past `upper`).
pub(super) fn collect(
    entries: &[AbortedTxn],
    from: i64,
    upper: i64,
    out: &mut Vec<AbortedTxn>,
) -> bool {
    for e in entries {
        if e.last_offset >= from && e.first_offset < upper {
            out.push(*e);
        }
        if e.last_stable_offset >= upper {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: last_offset + 1,
        }
    }

    #[test]
    fn collects_the_transactions_overlapping_the_range_and_stops_once_it_is_decided() {
        // Decided before `from`; begun before and aborted inside; begun inside; begun past
        // `upper` (its marker's stable offset shows nothing later concerns the range).
        let seg1 = [txn(1, 0, 5), txn(2, 3, 12)];
        let seg2 = [txn(3, 14, 20), txn(4, 40, 45), txn(5, 50, 55)];
        let mut out = Vec::new();
        assert!(!collect(&seg1, 10, 30, &mut out));
        assert!(collect(&seg2, 10, 30, &mut out));
        assert_eq!(out, vec![txn(2, 3, 12), txn(3, 14, 20)]);
        // A range with no aborted transaction collects none.
        let mut none = Vec::new();
        collect(&seg2, 21, 39, &mut none);
        assert!(none.is_empty());
    }
}
