//! Which batches belong to aborted transactions, as the cleaner sees them. Kafka's cleaner
//! never lets an aborted record stand for its key and removes aborted records: were an aborted
//! value mapped as a key's latest, the cleaner would delete the committed value below it, and a
//! `read_committed` reader (which skips the aborted one) would lose the key. The transaction
//! markers stay, and so do the `.txnindex` entries of the segments that hold them.

use std::collections::HashMap;

use crate::log::batch::BatchHeader;
use crate::log::txn_index::AbortedTxn;

/// The aborted transactions of a partition, by producer, as [first offset, marker offset].
#[derive(Debug, Default, Clone)]
pub(crate) struct AbortedRanges {
    entries: Vec<AbortedTxn>,
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedRanges {
    /// `entries` is the partition's aborted list, ordered by marker offset.
    pub(crate) fn new(entries: Vec<AbortedTxn>) -> AbortedRanges {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in &entries {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        for ranges in by_producer.values_mut() {
            ranges.sort_unstable();
        }
        AbortedRanges {
            entries,
            by_producer,
        }
    }

    /// Whether `h` is a data batch of a transaction that was aborted.
    pub(crate) fn holds(&self, h: &BatchHeader) -> bool {
        if !h.is_transactional() || h.is_control() {
            return false;
        }
        let Some(ranges) = self.by_producer.get(&h.producer_id) else {
            return false;
        };
        // A producer's transactions do not overlap: the candidate is the last one starting at
        // or before the batch.
        let i = ranges.partition_point(|&(first, _)| first <= h.base_offset);
        i > 0 && ranges[i - 1].1 > h.base_offset
    }

    /// The entries whose markers lie in [from, to]: a cleaned segment's `.txnindex`.
    pub(super) fn markers_within(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.entries.partition_point(|a| a.last_offset < from);
        self.entries[start..]
            .iter()
            .take_while(|a| a.last_offset <= to)
            .copied()
            .collect()
    }
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
    fn a_batch_is_aborted_only_inside_its_own_producers_aborted_range() {
        let ranges = AbortedRanges::new(vec![txn(1, 10, 20), txn(2, 12, 25), txn(1, 30, 40)]);
        let batch = |producer_id, base_offset, transactional: bool| BatchHeader {
            base_offset,
            batch_length: 61,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: if transactional { 0x10 } else { 0 },
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: 1,
        };
        assert!(ranges.holds(&batch(1, 10, true)));
        assert!(ranges.holds(&batch(1, 19, true)));
        assert!(
            !ranges.holds(&batch(1, 25, true)),
            "between producer 1's aborts"
        );
        assert!(ranges.holds(&batch(2, 24, true)));
        assert!(!ranges.holds(&batch(3, 15, true)), "another producer");
        assert!(!ranges.holds(&batch(1, 15, false)), "not transactional");
        assert!(ranges.holds(&batch(1, 35, true)));
        assert!(!ranges.holds(&batch(1, 9, true)));
        let within: Vec<i64> = ranges
            .markers_within(20, 39)
            .iter()
            .map(|a| a.last_offset)
            .collect();
        assert_eq!(within, vec![20, 25]);
    }
}
