//! The offset and time indexes of a segment in the bucket, and the leader epochs of its batches.
//!
//! They are built from the segment's own bytes as those are uploaded (by the uploader, the
//! tier's cleaner, or the scrub reading a segment back), so they describe exactly the object
//! beside them; the rule is the log's (`index.interval.bytes`: an entry once more than that many
//! bytes were appended since the last one, and the time index's final entry at the segment's
//! end), and the bytes are Kafka's `.index` (8-byte entries: offset relative to the base, and the
//! position of the batch whose last offset it is) and `.timeindex` (12-byte entries: the largest
//! timestamp so far, and the relative offset of the batch carrying it). Remote reads fetch an
//! index whole, check its size and CRC-32C against the manifest and its entries' order once,
//! cache it, and then look entries up in its raw bytes. Pure apart from [`upload`]; knows no
//! Kafka request type.

use object_store::{ObjectStoreExt, PutPayload};

use super::manifest::{EpochStart, RemoteIndexes, RemoteObject, RemoteSegment};
use super::pace::Pacer;
use super::{Bucket, TierError};
use crate::log::batch::{BatchHeader, HEADER_SIZE};
use crate::log::{index, time_index};

/// Builds a segment's indexes from its bytes, fed in pieces of any size, in order.
pub(super) struct IndexBuilder {
    base_offset: i64,
    interval: u64,
    offset: Vec<u8>,
    time: Vec<u8>,
    last_offset_rel: Option<u32>,
    last_time: Option<i64>,
    /// (largest timestamp so far, last offset of the batch carrying it).
    max_timestamp: Option<(i64, i64)>,
    bytes_since_index: u64,
    epochs: Vec<EpochStart>,
    /// Bytes fed so far.
    fed: u64,
    /// Where the next batch starts.
    next_batch: u64,
    /// The next batch's header bytes collected so far.
    head: Vec<u8>,
    /// The bytes do not make a segment these indexes can describe: none are built.
    failed: bool,
}

/// What [`IndexBuilder::finish`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuiltIndexes {
    pub(super) offset: Vec<u8>,
    pub(super) time: Vec<u8>,
    pub(super) epochs: Vec<EpochStart>,
    pub(super) interval: u64,
}

impl IndexBuilder {
    pub(super) fn new(base_offset: i64, interval: u64) -> IndexBuilder {
        IndexBuilder {
            base_offset,
            interval,
            offset: Vec::new(),
            time: Vec::new(),
            last_offset_rel: None,
            last_time: None,
            max_timestamp: None,
            bytes_since_index: 0,
            epochs: Vec::new(),
            fed: 0,
            next_batch: 0,
            head: Vec::with_capacity(HEADER_SIZE),
            failed: false,
        }
    }

    /// The next bytes of the segment.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() && !self.failed {
            let at = self.fed + i as u64;
            if at < self.next_batch {
                i += (self.next_batch - at).min((bytes.len() - i) as u64) as usize;
                continue;
            }
            let take = (HEADER_SIZE - self.head.len()).min(bytes.len() - i);
            self.head.extend_from_slice(&bytes[i..i + take]);
            i += take;
            if self.head.len() == HEADER_SIZE {
                match BatchHeader::parse(&self.head) {
                    Ok(h) if h.size() >= HEADER_SIZE => {
                        let position = self.next_batch;
                        self.next_batch += h.size() as u64;
                        self.batch(&h, position);
                    }
                    _ => self.failed = true,
                }
                self.head.clear();
            }
        }
        self.fed += bytes.len() as u64;
    }

    /// One batch at `position`, indexed as the log's segment indexes it.
    fn batch(&mut self, h: &BatchHeader, position: u64) {
        let last = h.last_offset();
        let rel = last - self.base_offset;
        if !(0..=i32::MAX as i64).contains(&rel)
            || position > i32::MAX as u64
            || self.last_offset_rel.is_some_and(|r| r as i64 >= rel)
        {
            self.failed = true;
            return;
        }
        self.last_offset_rel = Some(rel as u32);
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| h.max_timestamp > ts)
        {
            self.max_timestamp = Some((h.max_timestamp, last));
        }
        if self.bytes_since_index > self.interval {
            self.offset
                .extend_from_slice(&index::encode_entry(rel as u32, position as u32));
            self.time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        let epoch = h.partition_leader_epoch;
        if epoch >= 0 && self.epochs.last().is_none_or(|e| e.epoch < epoch) {
            self.epochs.push(EpochStart {
                epoch,
                start_offset: h.base_offset,
            });
        }
    }

    /// A time index entry for the largest timestamp so far, when it is above the last one's.
    fn time_entry(&mut self) {
        let Some((ts, offset)) = self.max_timestamp else {
            return;
        };
        if ts < 0 || self.last_time.is_some_and(|last| last >= ts) {
            return;
        }
        let rel = (offset - self.base_offset) as u32;
        self.time
            .extend_from_slice(&time_index::encode_entry(ts, rel));
        self.last_time = Some(ts);
    }

    /// The indexes of the `size` bytes fed, with the time index's final entry; `None` when they
    /// were not whole, well-formed batches in ascending offsets.
    pub(super) fn finish(mut self, size: u64) -> Option<BuiltIndexes> {
        if self.failed || !self.head.is_empty() || self.fed != size || self.next_batch != size {
            return None;
        }
        self.time_entry();
        Some(BuiltIndexes {
            offset: self.offset,
            time: self.time,
            epochs: self.epochs,
            interval: self.interval,
        })
    }
}

/// The key of a segment's log object without its `.log`: its index objects' stem.
pub(super) fn log_stem(log_key: &str) -> &str {
    log_key.strip_suffix(".log").unwrap_or(log_key)
}

/// Puts `built`'s index objects as `<stem>.index` and `<stem>.timeindex` (the caller checked
/// the lease, and gives a stem no manifest names objects under: an upload never overwrites an
/// object in use).
pub(super) async fn upload(
    bucket: &Bucket,
    pacer: &Pacer,
    stem: &str,
    built: &BuiltIndexes,
) -> Result<RemoteIndexes, TierError> {
    let put = |ext: &'static str, bytes: &[u8]| {
        let key = format!("{stem}.{ext}");
        let object = RemoteObject {
            key: key.clone(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        };
        let payload = PutPayload::from(bytes.to_vec());
        async move {
            pacer.reserve(object.size).await;
            bucket.store.put(&bucket.key(&key), payload).await?;
            Ok::<_, TierError>(object)
        }
    };
    let offset_index = put("index", &built.offset).await?;
    let time_index = put("timeindex", &built.time).await?;
    Ok(RemoteIndexes {
        offset_index,
        time_index,
        interval_bytes: built.interval,
    })
}

/// Checks a fetched offset index of `seg`: size and CRC-32C as the manifest says, then whole
/// entries in ascending offsets inside the segment, at non-decreasing positions inside the log.
pub(super) fn check_offset_index(
    seg: &RemoteSegment,
    object: &RemoteObject,
    bytes: &[u8],
) -> Result<(), String> {
    check_object(object, bytes)?;
    let entries = index::decode_entries(bytes, seg.log.size)?;
    let span = seg.end_offset - seg.base_offset;
    match entries.last() {
        Some(&(rel, _)) if rel as i64 >= span => Err(format!(
            "index entry offset {rel} is past the segment's end"
        )),
        _ => Ok(()),
    }
}

/// Checks a fetched time index of `seg` as [`check_offset_index`] does an offset index, with
/// strictly increasing timestamps.
pub(super) fn check_time_index(
    seg: &RemoteSegment,
    object: &RemoteObject,
    bytes: &[u8],
) -> Result<(), String> {
    check_object(object, bytes)?;
    let entries = time_index::decode_entries(bytes)?;
    let span = seg.end_offset - seg.base_offset;
    match entries.last() {
        Some(&(_, rel)) if rel as i64 >= span => Err(format!(
            "time index entry offset {rel} is past the segment's end"
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_object(object: &RemoteObject, bytes: &[u8]) -> Result<(), String> {
    let crc = crc32c::crc32c(bytes);
    if bytes.len() as u64 != object.size || crc != object.crc32c {
        return Err(format!(
            "{} bytes with CRC-32C {crc:#010x}, the manifest says {} bytes with {:#010x}",
            bytes.len(),
            object.size,
            object.crc32c
        ));
    }
    Ok(())
}

/// In a checked offset index: the last entry whose offset is at or below `offset`, as (its
/// absolute offset, the position of the batch ending there).
pub(super) fn offset_floor(bytes: &[u8], base_offset: i64, offset: i64) -> Option<(i64, u64)> {
    let n = bytes.len() / index::ENTRY_SIZE;
    let entry = |i: usize| {
        let e = &bytes[i * index::ENTRY_SIZE..(i + 1) * index::ENTRY_SIZE];
        let rel = u32::from_be_bytes(e[..4].try_into().expect("4 bytes"));
        let pos = u32::from_be_bytes(e[4..].try_into().expect("4 bytes"));
        (base_offset + rel as i64, pos as u64)
    };
    let below = partition_point(n, |i| entry(i).0 <= offset);
    below.checked_sub(1).map(entry)
}

/// In a checked time index: the offset of the last entry whose timestamp is below `timestamp`
/// (every record up to it is older), or `None` when there is none.
pub(super) fn time_floor(bytes: &[u8], base_offset: i64, timestamp: i64) -> Option<i64> {
    let n = bytes.len() / time_index::ENTRY_SIZE;
    let entry = |i: usize| {
        let e = &bytes[i * time_index::ENTRY_SIZE..(i + 1) * time_index::ENTRY_SIZE];
        let ts = i64::from_be_bytes(e[..8].try_into().expect("8 bytes"));
        let rel = u32::from_be_bytes(e[8..].try_into().expect("4 bytes"));
        (ts, base_offset + rel as i64)
    };
    let below = partition_point(n, |i| entry(i).0 < timestamp);
    below.checked_sub(1).map(|i| entry(i).1)
}

/// The first index in `0..n` where `pred` turns false (`pred` is true, then false).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::log::batch::{self, tests::batch_with};

    /// A segment of `n` one-record batches from `base`, timestamps 1000 + 10 × offset, leader
    /// epoch 0 then 3 from `base + n / 2`.
    pub(crate) fn segment_bytes(base: i64, n: i64) -> Vec<u8> {
        let mut out = Vec::new();
        for o in base..base + n {
            let mut one = batch_with(1, 1000 + 10 * o, None, true);
            batch::set_base_offset(&mut one, o);
            batch::set_partition_leader_epoch(&mut one, if o < base + n / 2 { 0 } else { 3 });
            out.extend_from_slice(&one);
        }
        out
    }

    #[test]
    fn built_in_any_pieces_the_same_and_as_the_log_indexes() {
        let bytes = segment_bytes(100, 40);
        let whole = {
            let mut b = IndexBuilder::new(100, 200);
            b.feed(&bytes);
            b.finish(bytes.len() as u64).unwrap()
        };
        for piece in [1, 7, 61, 500] {
            let mut b = IndexBuilder::new(100, 200);
            for chunk in bytes.chunks(piece) {
                b.feed(chunk);
            }
            assert_eq!(b.finish(bytes.len() as u64).as_ref(), Some(&whole));
        }
        let offsets = index::decode_entries(&whole.offset, bytes.len() as u64).unwrap();
        assert!(offsets.len() > 5, "{offsets:?}");
        // Each entry names the position of the batch ending at its offset.
        for (rel, pos) in offsets {
            let h = BatchHeader::parse(&bytes[pos as usize..]).unwrap();
            assert_eq!(h.last_offset(), 100 + rel as i64);
        }
        let times = time_index::decode_entries(&whole.time).unwrap();
        // The final entry carries the segment's largest timestamp (offset 139's).
        assert_eq!(times.last(), Some(&(2390, 39)));
        assert_eq!(
            whole.epochs,
            vec![
                EpochStart {
                    epoch: 0,
                    start_offset: 100
                },
                EpochStart {
                    epoch: 3,
                    start_offset: 120
                }
            ]
        );
        assert_eq!(
            time_floor(&whole.time, 100, 2390),
            times.iter().rev().nth(1).map(|e| 100 + e.1 as i64)
        );
        assert_eq!(time_floor(&whole.time, 100, 0), None);
        let (at, pos) = offset_floor(&whole.offset, 100, 130).unwrap();
        assert!(at <= 130 && pos > 0);
        assert_eq!(offset_floor(&whole.offset, 100, 100), None);
        // A torn or foreign tail builds nothing.
        let mut b = IndexBuilder::new(100, 200);
        b.feed(&bytes[..bytes.len() - 3]);
        assert!(b.finish(bytes.len() as u64 - 3).is_none());
        let mut b = IndexBuilder::new(100, 200);
        b.feed(&bytes);
        b.feed(&[0xff; 70]);
        assert!(b.finish(bytes.len() as u64 + 70).is_none());
    }
}
