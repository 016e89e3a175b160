//! A view of v2 record batch headers: parsing, CRC-32C checking, validation of what a producer
//! sent, and the in-place patches the log applies (base offset, partition leader epoch,
//! LogAppendTime).
//!
//! Pure: no I/O, no clock (time is an argument), no knowledge of segments or Kafka requests.
//! Records are never decoded here except by [`record_timestamps`], which timestamp lookups need
//! (`record_errors.rs` decodes them for the checks that need it).

use std::ops::Range;

use bytes::Bytes;

/// Size of the v2 batch header; the smallest possible batch.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the CRC-covered region starts (baseOffset..crc).
pub const CRC_START: usize = 21;
/// Bytes needed to learn a batch's base offset, length and last offset delta.
pub const PEEK_SIZE: usize = 27;
/// Overhead of the length prefix: baseOffset (8) and batchLength (4).
pub const LOG_OVERHEAD: usize = 12;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused. Mapped to [`super::LogError`] by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    Timestamp(String),
}

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The first fields of a batch, enough to walk a log: (base offset, total size, last offset).
/// `None` when fewer than [`PEEK_SIZE`] bytes are given. The size is not checked here.
pub fn peek(bytes: &[u8]) -> Option<(i64, i64, i64)> {
    if bytes.len() < PEEK_SIZE {
        return None;
    }
    let base = be_i64(bytes, 0);
    let size = be_i32(bytes, 8) as i64 + LOG_OVERHEAD as i64;
    let last = base.wrapping_add(be_i32(bytes, 23) as i64);
    Some((base, size, last))
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (which must hold at least 61 bytes).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Corrupt(format!(
                "record batch header needs {HEADER_SIZE} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes")),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        })
    }

    /// Total size of the batch in bytes, including the 12-byte offset/length prefix.
    pub fn size(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// True when the batch carries an idempotent producer's sequence numbers.
    pub fn has_sequence(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }
    /// Sequence of the batch's last record (wrapping past i32::MAX to 0, as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + delta`, wrapping past i32::MAX to 0.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// The CRC-32C a batch should carry (over bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks one whole batch (`batch.len()` == its declared size): magic, size, CRC and the
/// lastOffsetDelta/recordsCount agreement. Returns its header.
pub fn check_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2 {
        return Err(BatchError::Corrupt(format!(
            "unsupported record batch magic {} (only v2 is accepted)",
            header.magic
        )));
    }
    if header.size() != batch.len() || (header.batch_length as i64) < (HEADER_SIZE - 12) as i64 {
        return Err(BatchError::Corrupt(format!(
            "batch length {} disagrees with the {} bytes present",
            header.batch_length,
            batch.len()
        )));
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::Corrupt(format!(
            "negative last offset delta {}",
            header.last_offset_delta
        )));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC mismatch: stored {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Splits a producer's `records` into whole batches and checks each one ([`check_batch`]) plus
/// the record count, which a stored compacted batch may legitimately break but a new one may not.
pub fn split_batches(records: &[u8]) -> Result<Vec<(Range<usize>, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    if records.is_empty() {
        return Err(BatchError::Invalid("no record batch in the request".into()));
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < HEADER_SIZE {
            return Err(BatchError::Corrupt(format!(
                "truncated record batch: {} bytes left, a header needs {HEADER_SIZE}",
                rest.len()
            )));
        }
        let batch_length = be_i32(rest, 8);
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(format!(
                "record batch length {batch_length} is below the minimum {}",
                HEADER_SIZE - LOG_OVERHEAD
            )));
        }
        let size = batch_length as usize + LOG_OVERHEAD;
        if size > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "record batch declares {size} bytes but only {} are present",
                rest.len()
            )));
        }
        let header = check_batch(&rest[..size])?;
        if header.records_count <= 0
            || header.last_offset_delta as i64 + 1 != header.records_count as i64
        {
            return Err(BatchError::Corrupt(format!(
                "records count {} disagrees with last offset delta {}",
                header.records_count, header.last_offset_delta
            )));
        }
        out.push((pos..pos + size, header));
        pos += size;
    }
    Ok(out)
}

/// What the topic accepts, for [`validate`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// `Some((before_max_ms, after_max_ms))` to check CreateTime timestamps.
    pub timestamp_bounds: Option<(i64, i64)>,
    /// Control batches are refused (client produce).
    pub reject_control: bool,
}

/// Validates a batch against the topic's limits at time `now_ms`.
pub fn validate(
    header: &BatchHeader,
    size: usize,
    limits: &Limits,
    now_ms: i64,
) -> Result<(), BatchError> {
    if size > limits.max_message_bytes {
        return Err(BatchError::TooLarge {
            size,
            max: limits.max_message_bytes,
        });
    }
    if limits.reject_control && header.is_control() {
        return Err(BatchError::Invalid(
            "control batches may not be produced by clients".into(),
        ));
    }
    if let Some((before, after)) = limits.timestamp_bounds {
        // Header-only check: the first record's timestamp and the largest must lie in the window.
        let low = now_ms.saturating_sub(before);
        let high = now_ms.saturating_add(after);
        for ts in [header.base_timestamp, header.max_timestamp] {
            if ts >= 0 && (ts < low || ts > high) {
                return Err(BatchError::Timestamp(format!(
                    "timestamp {ts} is outside [{low}, {high}] (message.timestamp.before/after.max.ms)"
                )));
            }
        }
    }
    Ok(())
}

/// Rewrites the base offset in place (outside the CRC-covered bytes).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch in place (outside the CRC-covered bytes).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Applies LogAppendTime: maxTimestamp = `now_ms`, attribute bit 3, and a fresh CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes the records of one batch into (offset, timestamp) pairs. Used by timestamp lookups.
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, BatchError> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Corrupt(format!("cannot decode records: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(crate) fn batch_with(
        n: usize,
        ts: i64,
        producer: Option<(i64, i16, i32)>,
        keyed: bool,
    ) -> Vec<u8> {
        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon_ms: None,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if seq < 0 { -1 } else { seq + i as i32 },
                timestamp: ts + i as i64,
                key: keyed.then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                headers: vec![(StrBytes::from_static_str("h"), None)],
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    #[test]
    fn parses_an_encoded_batch_and_its_crc_holds() {
        let b = batch_with(3, 1_000, Some((7, 1, 10)), true);
        let h = check_batch(&b).expect("valid");
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 1, 10)
        );
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.size(), b.len());
        assert_eq!(peek(&b), Some((0, b.len() as i64, 2)));
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut b = batch_with(2, 5, None, true);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(check_batch(&b), Err(BatchError::Corrupt(m)) if m.contains("CRC")));
    }

    #[test]
    fn a_negative_last_offset_delta_is_corrupt_even_with_a_valid_crc() {
        let mut b = batch_with(2, 5, None, true);
        b[23..27].copy_from_slice(&(-3i32).to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(check_batch(&b), Err(BatchError::Corrupt(m)) if m.contains("negative last offset delta"))
        );
    }

    #[test]
    fn patches_outside_the_crc_keep_it_valid_and_log_append_time_recomputes_it() {
        let mut b = batch_with(2, 5, None, true);
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 0);
        let h = check_batch(&b).expect("still valid");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 0);
        set_log_append_time(&mut b, 99_999);
        let h = check_batch(&b).expect("crc recomputed");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
    }

    #[test]
    fn split_rejects_truncation_bad_magic_and_count_mismatch() {
        let a = batch_with(1, 5, None, true);
        let b = batch_with(4, 6, None, true);
        let both = [a.clone(), b.clone()].concat();
        let split = split_batches(&both).expect("two batches");
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].0, a.len()..a.len() + b.len());

        assert!(matches!(
            split_batches(&both[..both.len() - 1]),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            split_batches(&a[..40]),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(split_batches(&[]), Err(BatchError::Invalid(_))));

        let mut bad_magic = a.clone();
        bad_magic[16] = 1;
        assert!(
            matches!(split_batches(&bad_magic), Err(BatchError::Corrupt(m)) if m.contains("magic"))
        );

        // recordsCount 2 with lastOffsetDelta 0: CRC recomputed so only the count is wrong.
        let mut bad_count = a.clone();
        bad_count[57..61].copy_from_slice(&2i32.to_be_bytes());
        let crc = compute_crc(&bad_count);
        bad_count[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(split_batches(&bad_count), Err(BatchError::Corrupt(m)) if m.contains("count"))
        );

        let mut short_len = a.clone();
        short_len[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            split_batches(&short_len),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn validate_checks_size_control_and_timestamps() {
        let b = batch_with(2, 1_000_000, None, true);
        let h = check_batch(&b).unwrap();
        let ok = Limits {
            max_message_bytes: 1 << 20,
            timestamp_bounds: Some((10_000, 10_000)),
            reject_control: true,
        };
        assert_eq!(validate(&h, b.len(), &ok, 1_000_000), Ok(()));
        let small = Limits {
            max_message_bytes: b.len() - 1,
            ..ok
        };
        assert!(matches!(
            validate(&h, b.len(), &small, 1_000_000),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(matches!(
            validate(&h, b.len(), &ok, 2_000_000),
            Err(BatchError::Timestamp(_))
        ));
        assert!(matches!(
            validate(&h, b.len(), &ok, 0),
            Err(BatchError::Timestamp(_))
        ));
        let mut control = h;
        control.attributes |= ATTR_CONTROL;
        assert!(matches!(
            validate(&control, b.len(), &ok, 1_000_000),
            Err(BatchError::Invalid(_))
        ));
    }

    #[test]
    fn sequences_wrap_past_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }

    #[test]
    fn record_timestamps_are_found_by_decoding() {
        let ts = record_timestamps(&batch_with(3, 100, None, true)).unwrap();
        assert_eq!(ts, vec![(0, 100), (1, 101), (2, 102)]);
    }
}
