//! Idempotent-producer state of one partition: per producer id, its epoch and the last five
//! batches' sequence and offset ranges, used to answer retries with their original offsets and to
//! refuse out-of-order sequences and fenced epochs. Also the encoding of Kafka's snapshot
//! format (`<offset:20>.snapshot`) that carries the state across restarts.
//!
//! Also each producer's ongoing transaction (the offset of its first transactional batch not
//! yet followed by a marker), which holds back the partition's last stable offset; snapshots
//! carry it in Kafka's `currentTxnFirstOffset` field.
//!
//! Pure: the snapshot files themselves (and Cairn's companion keeping the earlier batches) are
//! written and read by [`super::producer_snapshot`]. Knows batch headers, not segments.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::batch::{increment_sequence, BatchHeader};
use super::LogError;

/// Batches remembered per producer for duplicate detection (Kafka's value).
pub const RETAINED_BATCHES: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the partition knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock time (ms) of its last append, for `producer.id.expiration.ms`.
    pub last_timestamp: i64,
    /// First offset of its ongoing transaction in this partition (no marker yet).
    pub current_txn_first_offset: Option<i64>,
    /// Epoch of the transaction coordinator that wrote its last marker (-1 before any).
    pub coordinator_epoch: i32,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a retained batch: answer with these original offsets, write nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
}

/// Changes of one append, applied only if the append succeeds.
#[derive(Debug, Default)]
pub struct PendingUpdates {
    entries: HashMap<i64, ProducerEntry>,
}

/// Every producer's state in one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    fn view<'a>(&'a self, pending: &'a PendingUpdates, pid: i64) -> Option<&'a ProducerEntry> {
        pending
            .entries
            .get(&pid)
            .or_else(|| self.producers.get(&pid))
    }

    /// Checks a batch (as sent, offsets not yet assigned) against the state plus `pending`.
    pub fn check(
        &self,
        pending: &PendingUpdates,
        h: &BatchHeader,
    ) -> Result<SequenceCheck, LogError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        // A producer unknown here (new, expired, or its state lost) may start at any sequence.
        let Some(entry) = self.view(pending, h.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if !h.has_sequence() || h.is_control() {
            return Ok(SequenceCheck::Append);
        }
        let last_seq = h.last_sequence();
        if h.producer_epoch == entry.epoch {
            if let Some(b) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            {
                return Ok(SequenceCheck::Duplicate {
                    first_offset: b.first_offset,
                    last_offset: b.last_offset,
                });
            }
        }
        let expected = if h.producer_epoch > entry.epoch {
            Some(0)
        } else {
            entry
                .batches
                .back()
                .map(|b| increment_sequence(b.last_seq, 1))
        };
        match expected {
            Some(expected) if expected != h.base_sequence => Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                sequence: h.base_sequence,
                expected,
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch whose offsets are assigned (`h.base_offset` is final) into `pending`.
    pub fn record(&self, pending: &mut PendingUpdates, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = pending.entries.entry(h.producer_id).or_insert_with(|| {
            self.producers
                .get(&h.producer_id)
                .cloned()
                .unwrap_or(ProducerEntry {
                    epoch: h.producer_epoch,
                    batches: VecDeque::new(),
                    last_timestamp: now_ms,
                    current_txn_first_offset: None,
                    coordinator_epoch: -1,
                })
        });
        if h.is_transactional() && !h.is_control() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
        }
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.has_sequence() && !h.is_control() {
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
            while entry.batches.len() > RETAINED_BATCHES {
                entry.batches.pop_front();
            }
        }
        entry.last_timestamp = now_ms;
    }

    /// Ends the ongoing transaction of `producer_id` (a marker was recorded into `pending`):
    /// returns the offset its transaction began at here, `None` when it had written nothing.
    pub fn end_txn(
        &self,
        pending: &mut PendingUpdates,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Option<i64> {
        let entry = pending.entries.get_mut(&producer_id)?;
        entry.coordinator_epoch = coordinator_epoch;
        entry.current_txn_first_offset.take()
    }

    /// The first offset of the oldest ongoing transaction: the last stable offset when it is
    /// below the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.current_txn_first_offset)
            .min()
    }

    /// The ongoing transactions: (producer id, epoch, first offset), by producer id.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i16, i64)> {
        let mut out: Vec<(i64, i16, i64)> = self
            .producers
            .iter()
            .filter_map(|(id, e)| e.current_txn_first_offset.map(|f| (*id, e.epoch, f)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Every producer: (producer id, its entry), by producer id.
    pub fn entries(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut out: Vec<(i64, &ProducerEntry)> =
            self.producers.iter().map(|(id, e)| (*id, e)).collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Applies an append's updates.
    pub fn commit(&mut self, pending: PendingUpdates) {
        self.producers.extend(pending.entries);
    }

    /// Forgets producers idle for longer than `expiration_ms`, except those with an ongoing
    /// transaction (its marker is still to come).
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
            if e.current_txn_first_offset.is_some_and(|f| f >= offset) {
                e.current_txn_first_offset = None;
            }
        }
    }

    /// Gives `producer_id` back the batches it had before a restart (oldest first), as
    /// Cairn's companion of a snapshot kept them. Taken only when they agree with what the
    /// snapshot says: the producer is known at `epoch`, their last batch is its last batch, and
    /// they are at most [`RETAINED_BATCHES`] batches in ascending, non-overlapping offsets.
    /// Returns whether they were taken.
    pub fn restore_batches(&mut self, producer_id: i64, epoch: i16, batches: &[BatchMeta]) -> bool {
        let Some(entry) = self.producers.get_mut(&producer_id) else {
            return false;
        };
        let ordered = batches.iter().all(|b| b.first_offset <= b.last_offset)
            && batches
                .windows(2)
                .all(|w| w[0].last_offset < w[1].first_offset);
        let agrees = entry.epoch == epoch
            && !batches.is_empty()
            && batches.len() <= RETAINED_BATCHES
            && entry.batches.back() == batches.last();
        if !(ordered && agrees) {
            return false;
        }
        entry.batches = batches.iter().copied().collect();
        true
    }

    /// Kafka's snapshot format (version 1, CRC-32C over bytes 6..end, 46-byte entries). Only
    /// each producer's last batch is kept, as in Kafka.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut body = Vec::with_capacity(4 + 46 * ids.len());
        body.extend_from_slice(&(ids.len() as i32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            let (last_seq, last_offset, delta) = match e.batches.back() {
                Some(b) => (
                    b.last_seq,
                    b.last_offset,
                    (b.last_offset - b.first_offset) as i32,
                ),
                None => (-1, -1, 0),
            };
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&last_seq.to_be_bytes());
            body.extend_from_slice(&last_offset.to_be_bytes());
            body.extend_from_slice(&delta.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&1i16.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<ProducerStateManager, String> {
        if bytes.len() < 10 {
            return Err("snapshot shorter than its header".into());
        }
        if i16::from_be_bytes([bytes[0], bytes[1]]) != 1 {
            return Err("unknown snapshot version".into());
        }
        let crc = u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[6..]) != crc {
            return Err("snapshot CRC mismatch".into());
        }
        let count = i32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes"));
        if count < 0 || bytes.len() != 10 + 46 * count as usize {
            return Err("snapshot entry count disagrees with its size".into());
        }
        let mut producers = HashMap::new();
        for e in bytes[10..].chunks_exact(46) {
            let i64_at = |at: usize| i64::from_be_bytes(e[at..at + 8].try_into().expect("8"));
            let i32_at = |at: usize| i32::from_be_bytes(e[at..at + 4].try_into().expect("4"));
            let pid = i64_at(0);
            let epoch = i16::from_be_bytes([e[8], e[9]]);
            let last_seq = i32_at(10);
            let last_offset = i64_at(14);
            let delta = i32_at(22);
            let timestamp = i64_at(26);
            let coordinator_epoch = i32_at(34);
            let txn_first = i64_at(38);
            let mut batches = VecDeque::new();
            if last_seq >= 0 && last_offset >= 0 && delta >= 0 {
                let first_seq = if last_seq >= delta {
                    last_seq - delta
                } else {
                    // The batch wrapped past i32::MAX.
                    i32::MAX - (delta - last_seq - 1)
                };
                batches.push_back(BatchMeta {
                    first_seq,
                    last_seq,
                    first_offset: last_offset - delta as i64,
                    last_offset,
                });
            }
            producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp: timestamp,
                    current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
                    coordinator_epoch,
                },
            );
        }
        Ok(ProducerStateManager { producers })
    }
}

/// `<offset:20>.snapshot` in `dir`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The header of a batch of `count` records of producer `pid` at `epoch`, first sequence
    /// `seq`, at `base_offset`.
    pub(crate) fn header(
        pid: i64,
        epoch: i16,
        seq: i32,
        count: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn append(state: &mut ProducerStateManager, h: BatchHeader) -> Result<SequenceCheck, LogError> {
        let mut pending = PendingUpdates::default();
        let check = state.check(&pending, &h)?;
        if check == SequenceCheck::Append {
            state.record(&mut pending, &h, 1_000);
            state.commit(pending);
        }
        Ok(check)
    }

    #[test]
    fn retries_sequences_and_epochs() {
        let mut s = ProducerStateManager::new();
        assert_eq!(
            append(&mut s, header(1, 0, 0, 3, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            append(&mut s, header(1, 0, 3, 2, 10)).unwrap(),
            SequenceCheck::Append
        );
        // Retry of the first batch: its original offsets.
        assert_eq!(
            append(&mut s, header(1, 0, 0, 3, 99)).unwrap(),
            SequenceCheck::Duplicate {
                first_offset: 0,
                last_offset: 2
            }
        );
        assert!(matches!(
            append(&mut s, header(1, 0, 7, 1, 20)),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        // New epoch must restart at 0.
        assert!(matches!(
            append(&mut s, header(1, 1, 5, 1, 20)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            append(&mut s, header(1, 1, 0, 1, 20)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            append(&mut s, header(1, 0, 5, 1, 21)),
            Err(LogError::InvalidProducerEpoch {
                current_epoch: 1,
                ..
            })
        ));
        // An unknown producer may start anywhere.
        assert_eq!(
            append(&mut s, header(2, 0, 42, 1, 30)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            append(&mut s, header(1, 0, i * 2, 2, i as i64 * 2)).unwrap();
        }
        assert_eq!(s.get(1).unwrap().batches.len(), RETAINED_BATCHES);
        assert!(append(&mut s, header(1, 0, 0, 2, 0)).is_err()); // evicted: out of order
        let mut w = ProducerStateManager::new();
        append(&mut w, header(9, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(
            append(&mut w, header(9, 0, 0, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn snapshot_round_trips_the_last_batch_and_rejects_bad_crc() {
        let mut s = ProducerStateManager::new();
        append(&mut s, header(5, 2, 0, 3, 100)).unwrap();
        append(&mut s, header(5, 2, 3, 4, 103)).unwrap();
        append(&mut s, header(6, 0, i32::MAX, 2, 200)).unwrap();
        let bytes = s.encode_snapshot();
        assert_eq!(bytes.len(), 10 + 2 * 46);
        let back = ProducerStateManager::decode_snapshot(&bytes).unwrap();
        let e = back.get(5).unwrap();
        assert_eq!(e.epoch, 2);
        assert_eq!(
            e.batches.back(),
            Some(&BatchMeta {
                first_seq: 3,
                last_seq: 6,
                first_offset: 103,
                last_offset: 106
            })
        );
        assert_eq!(
            back.get(6).unwrap().batches.back().unwrap().first_seq,
            i32::MAX
        );
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(ProducerStateManager::decode_snapshot(&bad).is_err());
    }

    #[test]
    fn an_ongoing_transaction_holds_the_lso_and_survives_a_snapshot() {
        let mut s = ProducerStateManager::new();
        let mut txn = header(8, 1, 0, 2, 10);
        txn.attributes = 1 << 4;
        append(&mut s, txn).unwrap();
        append(&mut s, header(9, 0, 0, 1, 12)).unwrap();
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.ongoing_transactions(), vec![(8, 1, 10)]);
        let back = ProducerStateManager::decode_snapshot(&s.encode_snapshot()).unwrap();
        assert_eq!(back.first_unstable_offset(), Some(10));
        // The marker ends it.
        let mut marker = header(8, 1, -1, 1, 13);
        marker.attributes = (1 << 4) | (1 << 5);
        let mut pending = PendingUpdates::default();
        s.record(&mut pending, &marker, 2_000);
        assert_eq!(s.end_txn(&mut pending, 8, 0), Some(10));
        s.commit(pending);
        assert_eq!(s.first_unstable_offset(), None);
        // A producer with an open transaction is never expired.
        let mut open = ProducerStateManager::new();
        append(&mut open, txn).unwrap();
        assert_eq!(open.remove_expired(i64::MAX, 1), 0);
    }
}
