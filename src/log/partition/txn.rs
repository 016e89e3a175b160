//! Transactions in one partition: commit and abort markers end a producer's ongoing
//! transaction, an abort adds an entry to the aborted-transaction index ([`txn_index`]), and
//! the oldest ongoing transaction holds back the last stable offset. Recovery replays markers
//! through the same code. Knows markers (control batches) as Kafka stores them, never Kafka
//! requests; the transaction coordinator that writes the markers lives outside the log engine.

use super::super::batch::BatchHeader;
use super::super::producer_state::{PendingUpdates, ProducerEntry, ProducerStateManager};
use super::super::segment::segment_file;
use super::super::txn_index::{self, AbortedTxn};
use super::super::LogError;
use super::{Partition, PartitionState};

/// Marker type of an ABORT control record.
pub const ABORT: i16 = 0;
/// Marker type of a COMMIT control record.
pub const COMMIT: i16 = 1;

/// An abort recorded during an append, completed once the append is committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingAbort {
    producer_id: i64,
    first_offset: i64,
    marker_offset: i64,
}

/// The (type, coordinator epoch) of a transaction marker: the first record of an uncompressed
/// control batch, key `int16 version, int16 type`, value `int16 version, int32 epoch`. `None`
/// for anything else (another control record, or bytes that do not parse).
pub fn marker(batch: &[u8]) -> Option<(i16, i32)> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != 0 || header.records_count < 1 {
        return None;
    }
    let mut pos = super::super::batch::HEADER_SIZE;
    let _length = varint(batch, &mut pos)?;
    pos += 1; // attributes
    let _timestamp_delta = varint(batch, &mut pos)?;
    let _offset_delta = varint(batch, &mut pos)?;
    let key_length = usize::try_from(varint(batch, &mut pos)?).ok()?;
    let key = batch.get(pos..pos + key_length)?;
    pos += key_length;
    if key_length < 4 {
        return None;
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let value_length = usize::try_from(varint(batch, &mut pos)?).ok()?;
    let epoch = match batch.get(pos..pos + value_length) {
        Some(v) if value_length >= 6 => i32::from_be_bytes(v[2..6].try_into().ok()?),
        _ => -1,
    };
    matches!(kind, ABORT | COMMIT).then_some((kind, epoch))
}

/// A zig-zag varint as records use them.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// Records the effect of a batch already recorded into `pending` (its offsets assigned): a
/// marker ends its producer's transaction; an abort of a transaction that wrote here is
/// returned, for [`complete_aborts`] once the append is committed.
pub(crate) fn record_marker(
    producers: &ProducerStateManager,
    pending: &mut PendingUpdates,
    header: &BatchHeader,
    bytes: &[u8],
) -> Option<PendingAbort> {
    if !header.is_control() || header.producer_id < 0 {
        return None;
    }
    let (kind, coordinator_epoch) = marker(bytes)?;
    let first_offset = producers.end_txn(pending, header.producer_id, coordinator_epoch)?;
    (kind == ABORT).then_some(PendingAbort {
        producer_id: header.producer_id,
        first_offset,
        marker_offset: header.base_offset,
    })
}

/// The index entries of committed aborts: each with the last stable offset after it.
pub(crate) fn aborted_entries(
    producers: &ProducerStateManager,
    aborts: &[PendingAbort],
) -> Vec<AbortedTxn> {
    aborts
        .iter()
        .map(|a| AbortedTxn {
            producer_id: a.producer_id,
            first_offset: a.first_offset,
            last_offset: a.marker_offset,
            last_stable_offset: producers
                .first_unstable_offset()
                .unwrap_or(a.marker_offset + 1),
        })
        .collect()
}

impl Partition {
    /// Adds committed aborts to the in-memory index and to the active segment's `.txnindex`.
    /// A failed file write is logged, not returned: the marker is in the log already, and
    /// recovery rebuilds the entries of everything after the last producer snapshot.
    pub(super) fn complete_aborts(&self, st: &mut PartitionState, aborts: &[PendingAbort]) {
        if aborts.is_empty() {
            return;
        }
        let base = st.active().base_offset;
        // The first entry creates the file: its directory entry must reach the disk too.
        st.dir_dirty |= !segment_file(&self.dir, base, "txnindex").exists();
        for entry in aborted_entries(&st.producers, aborts) {
            if let Err(e) = txn_index::append(&self.dir, base, &entry) {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e,
                    "cannot append to the aborted-transaction index");
            }
            st.aborted.push(entry);
        }
    }

    /// Makes the `.txnindex` of the segment based at `base` durable, if it has one. Called
    /// when that segment is sealed, before the producer snapshot at its end: recovery takes
    /// the entries below a snapshot from the files alone, so a snapshot must never reach the
    /// disk ahead of the entries it relies on.
    pub(super) fn sync_txn_index(&self, base: i64) -> Result<(), LogError> {
        let path = segment_file(&self.dir, base, "txnindex");
        match self.io.open(&path, false) {
            Ok(file) => Ok(file.sync()?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The aborted transactions that overlap `[from, upper)`: what a `read_committed` fetch of
    /// that range must be told to skip.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let st = self.lock();
        let start = st.aborted.partition_point(|a| a.last_offset < from);
        st.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upper)
            .copied()
            .collect()
    }

    /// The coordinator epoch of `producer_id`'s last marker here (-1 before any).
    pub fn coordinator_epoch(&self, producer_id: i64) -> i32 {
        self.lock()
            .producers
            .get(producer_id)
            .map_or(-1, |e| e.coordinator_epoch)
    }

    /// The ongoing transactions here: (producer id, epoch, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i16, i64)> {
        self.lock().producers.ongoing_transactions()
    }

    /// Every producer here with a copy of its state, by producer id (DescribeProducers).
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        let st = self.lock();
        st.producers
            .entries()
            .into_iter()
            .map(|(id, e)| (id, e.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn control_batch(kind: i16, epoch: i32) -> Vec<u8> {
        let mut key = Vec::new();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::new();
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&epoch.to_be_bytes());
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: 4,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(key.into()),
            value: Some(value.into()),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn markers_parse_and_other_batches_do_not() {
        assert_eq!(marker(&control_batch(COMMIT, 3)), Some((COMMIT, 3)));
        assert_eq!(marker(&control_batch(ABORT, 0)), Some((ABORT, 0)));
        assert_eq!(marker(&control_batch(5, 0)), None);
        let mut torn = control_batch(ABORT, 0);
        torn.truncate(64);
        assert_eq!(marker(&torn), None);
        assert_eq!(marker(&[0u8; 10]), None);
    }
}
