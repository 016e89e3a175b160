//! The bytes one append writes: the batches as sent, with their offsets and leader epoch (and,
//! under LogAppendTime, their timestamp and CRC) patched in.
//!
//! A lone batch that keeps its own timestamps changes only in its first 16 bytes, outside the
//! CRC: those are patched in a small copy and the rest is written from the request's buffer as it
//! is, in the same positioned write (`pwritev`), so the records are never copied on the way to
//! the page cache. Anything else (several batches, LogAppendTime) is copied and patched whole.

use std::ops::Range;

use bytes::Bytes;

use crate::log::batch::{self, BatchHeader};

/// The leading bytes of a batch that an append rewrites when timestamps are kept: baseOffset
/// (0..8), batchLength (8..12, unchanged) and partitionLeaderEpoch (12..16).
const PATCHED_HEAD: usize = 16;

/// The bytes of one append: `head` then `tail`, written back to back.
pub(super) struct Patched {
    head: Vec<u8>,
    tail: Bytes,
}

impl Patched {
    /// Patches `records` (whose batches are `batches`, with final offsets in their headers);
    /// `log_append_time` is the broker time to stamp, under LogAppendTime.
    pub(super) fn new(
        records: &Bytes,
        batches: &[(Range<usize>, BatchHeader)],
        log_append_time: Option<i64>,
    ) -> Patched {
        let lone = batches.len() == 1 && batches[0].0 == (0..records.len());
        if lone && log_append_time.is_none() && records.len() >= PATCHED_HEAD {
            let mut head = records[..PATCHED_HEAD].to_vec();
            stamp(&mut head, &batches[0].1, None);
            return Patched {
                head,
                tail: records.slice(PATCHED_HEAD..),
            };
        }
        let mut head = records.to_vec();
        for (range, h) in batches {
            stamp(&mut head[range.clone()], h, log_append_time);
        }
        Patched {
            head,
            tail: Bytes::new(),
        }
    }

    pub(super) fn head(&self) -> &[u8] {
        &self.head
    }

    pub(super) fn tail(&self) -> &[u8] {
        &self.tail
    }
}

/// Writes the broker's fields into one batch (or its first [`PATCHED_HEAD`] bytes).
fn stamp(bytes: &mut [u8], h: &BatchHeader, log_append_time: Option<i64>) {
    batch::set_base_offset(bytes, h.base_offset);
    batch::set_partition_leader_epoch(bytes, h.partition_leader_epoch);
    if let Some(now) = log_append_time {
        batch::set_log_append_time(bytes, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::split_batches;

    fn joined(p: &Patched) -> Vec<u8> {
        [p.head(), p.tail()].concat()
    }

    /// Both ways of patching a lone batch write the same bytes as patching a whole copy.
    #[test]
    fn lone_batch_is_patched_in_its_head_only() {
        let raw = crate::log::batch::tests::batch_with(3, 1_000, None, true);
        let records = Bytes::from(raw.clone());
        let mut batches = split_batches(&records).unwrap();
        batches[0].1.base_offset = 77;
        batches[0].1.partition_leader_epoch = 9;
        let p = Patched::new(&records, &batches, None);
        assert_eq!(p.head().len(), PATCHED_HEAD);
        let mut expected = raw.clone();
        batch::set_base_offset(&mut expected, 77);
        batch::set_partition_leader_epoch(&mut expected, 9);
        assert_eq!(joined(&p), expected);
        batch::check_batch(&joined(&p)).unwrap();

        let p = Patched::new(&records, &batches, Some(5_000));
        assert!(p.tail().is_empty());
        batch::set_log_append_time(&mut expected, 5_000);
        assert_eq!(joined(&p), expected);
        batch::check_batch(&joined(&p)).unwrap();
    }
}
