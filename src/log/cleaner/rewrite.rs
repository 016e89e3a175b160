//! Rewriting one stored record batch for compaction: which records stay, and the batch that
//! carries them.
//!
//! A record stays iff it has a key, it is the latest for that key (its offset ≥ the map's), and it
//! has a value or is a tombstone still before its delete horizon. The rewritten batch keeps the
//! original base offset, lastOffsetDelta, partition leader epoch, producer id / epoch / base
//! sequence, timestamp type and codec (records are decompressed, filtered and compressed again
//! with the same codec); recordsCount becomes the number kept. The first cleaning that keeps a
//! tombstone stamps `now + delete.retention.ms` into baseTimestamp with attribute bit 6
//! (KIP-534), rebasing the records' timestamp deltas. A batch that loses every record is dropped,
//! or written as an empty header-only batch when the caller must keep it (the last batch of an
//! active producer, so its sequence state survives). Control batches are not filtered here: the
//! cleaner's `markers.rs` decides them, and [`stamp_horizon`] stamps a marker's horizon.
//!
//! Pure: bytes in, bytes out; the codecs come from the protocol crate. No I/O, no clock.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::key_map::KeyOffsetMap;
use crate::log::batch::{self, BatchHeader, HEADER_SIZE};

const ATTR_CODEC: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: baseTimestamp holds the delete horizon.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Why a stored batch could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("corrupt stored batch at offset {base_offset}: {reason}")]
    Corrupt { base_offset: i64, reason: String },
    #[error("codec {codec} failed on the batch at offset {base_offset}: {reason}")]
    Codec {
        codec: i16,
        base_offset: i64,
        reason: String,
    },
}

/// What the retention decision needs besides the batch.
pub struct RetainRules<'a> {
    /// Latest offset per key over the section being cleaned.
    pub map: &'a KeyOffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Where the map ends (the cleaning round's upper bound). A tombstone at or above it is
    /// never removed: the map does not cover the older records of its key that may still exist
    /// below it, and removing the tombstone would bring them back.
    pub upper_bound_offset: i64,
}

/// The fate of one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every record stays and nothing needs stamping: copy the original bytes.
    Unchanged,
    /// A new batch (some records removed, or a delete horizon stamped, or emptied but kept).
    Rewritten(Vec<u8>),
    /// Nothing stays.
    Dropped,
}

/// Counts for the progress log and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilterStats {
    /// The earliest delete horizon of the tombstones kept: when a cleaning can next remove one.
    pub earliest_horizon: Option<i64>,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
}

impl FilterStats {
    /// Remembers a delete horizon kept: the next cleaning is due when the earliest passes.
    pub fn note_horizon(&mut self, horizon: i64) {
        self.earliest_horizon = Some(self.earliest_horizon.map_or(horizon, |e| e.min(horizon)));
    }
}

/// One record inside an uncompressed records block.
pub struct RecordView<'a> {
    /// The whole record, length prefix included.
    pub raw: &'a [u8],
    /// Byte range of the timestampDelta varlong within `raw`.
    pub timestamp_field: Range<usize>,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value_is_null: bool,
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let v = read_varlong(buf, pos)?;
    i32::try_from(v).ok()
}

/// Appends `v` as a zig-zag varlong.
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Walks the records of an uncompressed records block.
pub fn parse_records(block: &[u8]) -> Result<Vec<RecordView<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let len = read_varint(block, &mut pos).ok_or("bad record length")?;
        if len < 0 || pos + len as usize > block.len() {
            return Err(format!("record length {len} runs past the batch"));
        }
        let end = pos + len as usize;
        let body = &block[..end];
        let mut p = pos + 1; // attributes
        let ts_start = p;
        let timestamp_delta = read_varlong(body, &mut p).ok_or("bad timestamp delta")?;
        let timestamp_field = ts_start - start..p - start;
        let offset_delta = read_varint(body, &mut p).ok_or("bad offset delta")?;
        let key_len = read_varint(body, &mut p).ok_or("bad key length")?;
        let key = if key_len < 0 {
            None
        } else {
            let k = body
                .get(p..p + key_len as usize)
                .ok_or("key runs past the record")?;
            p += key_len as usize;
            Some(k)
        };
        let value_len = read_varint(body, &mut p).ok_or("bad value length")?;
        if value_len >= 0 && p + value_len as usize > end {
            return Err("value runs past the record".into());
        }
        out.push(RecordView {
            raw: &block[start..end],
            timestamp_field,
            timestamp_delta,
            offset_delta,
            key,
            value_is_null: value_len < 0,
        });
        pos = end;
    }
    Ok(out)
}

fn codec_error(codec: i16, base_offset: i64, e: impl std::fmt::Display) -> RewriteError {
    RewriteError::Codec {
        codec,
        base_offset,
        reason: e.to_string(),
    }
}

/// The uncompressed records block of a batch.
pub fn decompress(codec: i16, base_offset: i64, data: &[u8]) -> Result<Bytes, RewriteError> {
    let mut input = Bytes::copy_from_slice(data);
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let out = match codec {
        0 => return Ok(input),
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut input, take),
        2 => <Snappy as Decompressor<Bytes>>::decompress(&mut input, take),
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut input, take),
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut input, take),
        other => {
            return Err(codec_error(other, base_offset, "unknown compression codec"));
        }
    };
    out.map_err(|e| codec_error(codec, base_offset, e))
}

/// Records in `map` the offset of every keyed record of one stored data batch (`bytes`, header
/// included) that lies in [from, to). Returns the offset of the first record that did not fit
/// when the map filled, or `None` when the whole batch was mapped. The caller skips control
/// batches and aborted data: they never stand for a key.
pub fn map_keys(
    h: &BatchHeader,
    bytes: &[u8],
    map: &mut KeyOffsetMap,
    (from, to): (i64, i64),
) -> Result<Option<i64>, RewriteError> {
    let block = decompress(h.compression(), h.base_offset, &bytes[HEADER_SIZE..])?;
    let records = parse_records(&block).map_err(|reason| RewriteError::Corrupt {
        base_offset: h.base_offset,
        reason,
    })?;
    for r in &records {
        let offset = h.base_offset + r.offset_delta as i64;
        if offset < from || offset >= to {
            continue;
        }
        if let Some(key) = r.key {
            if !map.put(key, offset) {
                return Ok(Some(offset));
            }
        }
    }
    Ok(None)
}

/// `records` compressed with `codec`.
pub fn compress(codec: i16, base_offset: i64, records: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(records);
        Ok(())
    };
    let result = match codec {
        0 => return Ok(records.to_vec()),
        1 => <Gzip as Compressor<BytesMut>>::compress(&mut out, fill),
        2 => <Snappy as Compressor<BytesMut>>::compress(&mut out, fill),
        3 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, fill),
        4 => <Zstd as Compressor<BytesMut>>::compress(&mut out, fill),
        other => return Err(codec_error(other, base_offset, "unknown compression codec")),
    };
    result.map_err(|e| codec_error(codec, base_offset, e))?;
    Ok(out.to_vec())
}

/// Writes a v2 batch: `h`'s base offset, leader epoch, lastOffsetDelta and producer fields with
/// the given attributes, timestamps, count and (already compressed) records; fills length and CRC.
fn encode_batch(
    h: &BatchHeader,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    records: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    let batch_length = (HEADER_SIZE - 12 + records.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Kafka's empty batch (`writeEmptyHeader`): no records, no codec, baseTimestamp -1, the
/// original maxTimestamp, offsets and producer fields.
pub fn empty_batch(h: &BatchHeader) -> Vec<u8> {
    let attributes = h.attributes & (ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL);
    encode_batch(h, attributes, -1, h.max_timestamp, 0, &[])
}

/// The delete horizon stamped into `h` by an earlier cleaning, if any.
pub fn delete_horizon(h: &BatchHeader) -> Option<i64> {
    (h.attributes & ATTR_DELETE_HORIZON != 0).then_some(h.base_timestamp)
}

/// `batch` (uncompressed, as control batches are) with `horizon` stamped into baseTimestamp
/// and the records' timestamp deltas rebased on it; everything else as it was.
pub fn stamp_horizon(batch: &[u8], h: &BatchHeader, horizon: i64) -> Result<Vec<u8>, RewriteError> {
    let corrupt = |reason: String| RewriteError::Corrupt {
        base_offset: h.base_offset,
        reason,
    };
    if h.compression() != 0 {
        return Err(corrupt("a compressed control batch".to_string()));
    }
    let records = parse_records(&batch[HEADER_SIZE..]).map_err(corrupt)?;
    let mut raw = Vec::with_capacity(batch.len() - HEADER_SIZE + 8 * records.len());
    for r in &records {
        let timestamp = h.base_timestamp.wrapping_add(r.timestamp_delta);
        let mut body = Vec::with_capacity(r.raw.len() + 8);
        body.push(r.raw[r.timestamp_field.start - 1]);
        write_varlong(&mut body, timestamp.wrapping_sub(horizon));
        body.extend_from_slice(&r.raw[r.timestamp_field.end..]);
        write_varlong(&mut raw, body.len() as i64);
        raw.extend_from_slice(&body);
    }
    Ok(encode_batch(
        h,
        h.attributes | ATTR_DELETE_HORIZON,
        horizon,
        h.max_timestamp,
        h.records_count,
        &raw,
    ))
}

/// Decides which records of `batch` (one whole stored batch, CRC already checked) stay, and
/// builds the batch that carries them. With `keep_if_empty`, an emptied batch is written as an
/// empty batch instead of being dropped.
pub fn filter_batch(
    batch: &[u8],
    rules: &RetainRules<'_>,
    keep_if_empty: bool,
    stats: &mut FilterStats,
) -> Result<BatchOutcome, RewriteError> {
    let h = BatchHeader::parse(batch).map_err(|e| RewriteError::Corrupt {
        base_offset: -1,
        reason: e.to_string(),
    })?;
    if h.is_control() {
        return Ok(BatchOutcome::Unchanged);
    }
    if h.records_count == 0 {
        // An empty batch kept by an earlier cleaning: it stays only while it is still needed.
        return Ok(if keep_if_empty {
            BatchOutcome::Unchanged
        } else {
            BatchOutcome::Dropped
        });
    }
    let codec = h.compression();
    let block = decompress(codec, h.base_offset, &batch[HEADER_SIZE..])?;
    let records = parse_records(&block).map_err(|reason| RewriteError::Corrupt {
        base_offset: h.base_offset,
        reason,
    })?;
    let has_horizon = h.attributes & ATTR_DELETE_HORIZON != 0;
    let mut kept: Vec<&RecordView<'_>> = Vec::with_capacity(records.len());
    let mut kept_tombstone = false;
    for r in &records {
        stats.records_read += 1;
        let Some(key) = r.key else { continue };
        let offset = h.base_offset + r.offset_delta as i64;
        let latest = rules.map.get(key).is_none_or(|latest| offset >= latest);
        if !latest {
            continue;
        }
        if r.value_is_null {
            // Unstamped tombstones stay (this cleaning stamps them); stamped ones until the horizon.
            if has_horizon && rules.now_ms >= h.base_timestamp && offset < rules.upper_bound_offset
            {
                stats.tombstones_removed += 1;
                continue;
            }
            kept_tombstone = true;
        }
        kept.push(r);
    }
    stats.records_kept += kept.len() as u64;
    let stamp = kept_tombstone && !has_horizon;
    if kept_tombstone {
        let horizon = if stamp {
            rules.now_ms.saturating_add(rules.delete_retention_ms)
        } else {
            h.base_timestamp
        };
        stats.earliest_horizon = Some(stats.earliest_horizon.map_or(horizon, |e| e.min(horizon)));
    }
    if kept.len() == records.len() && !stamp && kept.len() as i32 == h.records_count {
        return Ok(BatchOutcome::Unchanged);
    }
    if kept.is_empty() {
        return Ok(if keep_if_empty {
            BatchOutcome::Rewritten(empty_batch(&h))
        } else {
            BatchOutcome::Dropped
        });
    }
    let base_timestamp = if stamp {
        rules.now_ms.saturating_add(rules.delete_retention_ms)
    } else {
        h.base_timestamp
    };
    let mut raw = Vec::with_capacity(block.len());
    let mut max_timestamp = i64::MIN;
    for r in &kept {
        let timestamp = h.base_timestamp.wrapping_add(r.timestamp_delta);
        max_timestamp = max_timestamp.max(timestamp);
        if stamp {
            // Rebase the timestamp delta on the horizon now stored in baseTimestamp.
            let mut body = Vec::with_capacity(r.raw.len() + 8);
            let attributes_at = r.timestamp_field.start - 1;
            body.push(r.raw[attributes_at]);
            write_varlong(&mut body, timestamp.wrapping_sub(base_timestamp));
            body.extend_from_slice(&r.raw[r.timestamp_field.end..]);
            write_varlong(&mut raw, body.len() as i64);
            raw.extend_from_slice(&body);
        } else {
            raw.extend_from_slice(r.raw);
        }
    }
    let max_timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        max_timestamp
    };
    let mut attributes = h.attributes & (ATTR_CODEC | ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL);
    if stamp || has_horizon {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let records_bytes = compress(codec, h.base_offset, &raw)?;
    Ok(BatchOutcome::Rewritten(encode_batch(
        &h,
        attributes,
        base_timestamp,
        max_timestamp,
        kept.len() as i32,
        &records_bytes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    const BASE: i64 = 100;
    const TS: i64 = 1_700_000_000_000;

    /// A stored batch at offset 100 from producer (7, 2, seq 40): records (key, value).
    fn stored(entries: &[(Option<&str>, Option<&str>)], compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon_ms: None,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 2,
                timestamp_type: TimestampType::Creation,
                offset: BASE + i as i64,
                sequence: 40 + i as i32,
                timestamp: TS + 10 * i as i64,
                key: k.map(|k| Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers: vec![],
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    fn decode(batch: &[u8]) -> Vec<Record> {
        let mut b = Bytes::copy_from_slice(batch);
        RecordBatchDecoder::decode(&mut b)
            .expect("decodes, CRC valid")
            .records
    }

    const CODECS: [(Compression, i16); 5] = [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ];

    #[test]
    fn keeps_latest_per_key_drops_keyless_stamps_tombstones_in_every_codec() {
        for (compression, codec) in CODECS {
            let batch = stored(
                &[
                    (Some("a"), Some("a1")),
                    (Some("b"), Some("b1")),
                    (None, Some("keyless")),
                    (Some("c"), None),
                    (Some("d"), Some("d1")),
                ],
                compression,
            );
            let mut map = KeyOffsetMap::new(1 << 16, 16);
            map.put(b"a", 500); // superseded later in the log
            map.put(b"b", BASE + 1); // this record is the latest
            map.put(b"c", BASE + 3);
            let now = TS + 1_000;
            let rules = RetainRules {
                map: &map,
                now_ms: now,
                delete_retention_ms: 5_000,
                upper_bound_offset: i64::MAX,
            };
            let mut stats = FilterStats::default();
            let BatchOutcome::Rewritten(out) =
                filter_batch(&batch, &rules, false, &mut stats).unwrap()
            else {
                panic!("codec {codec}: expected a rewritten batch");
            };
            let h = BatchHeader::parse(&out).unwrap();
            assert_eq!(h.compression(), codec, "same codec written back");
            assert_eq!(h.base_offset, BASE);
            assert_eq!(h.last_offset_delta, 4, "lastOffsetDelta preserved");
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 2, 40)
            );
            assert_eq!(h.records_count, 3);
            assert_ne!(
                h.attributes & ATTR_DELETE_HORIZON,
                0,
                "tombstone kept: horizon stamped"
            );
            assert_eq!(h.base_timestamp, now + 5_000);
            assert_eq!(h.max_timestamp, TS + 40);
            let records = decode(&out);
            type Row<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>, i64);
            let got: Vec<Row<'_>> = records
                .iter()
                .map(|r| (r.offset, r.key.as_deref(), r.value.as_deref(), r.timestamp))
                .collect();
            assert_eq!(
                got,
                vec![
                    (BASE + 1, Some(&b"b"[..]), Some(&b"b1"[..]), TS + 10),
                    (BASE + 3, Some(&b"c"[..]), None, TS + 30),
                    (BASE + 4, Some(&b"d"[..]), Some(&b"d1"[..]), TS + 40),
                ],
                "codec {codec}"
            );
            assert_eq!(records[0].delete_horizon_ms, Some(now + 5_000));
            assert_eq!(stats.records_read, 5);
            assert_eq!(stats.records_kept, 3);

            // A later cleaning before the horizon keeps the batch as it is...
            let before = RetainRules {
                map: &map,
                now_ms: now + 4_999,
                delete_retention_ms: 5_000,
                upper_bound_offset: i64::MAX,
            };
            let outcome = filter_batch(&out, &before, false, &mut FilterStats::default()).unwrap();
            assert_eq!(outcome, BatchOutcome::Unchanged);
            // ...and one after it removes the tombstone, keeping the horizon and codec.
            let after = RetainRules {
                map: &map,
                now_ms: now + 5_000,
                delete_retention_ms: 5_000,
                upper_bound_offset: i64::MAX,
            };
            let mut stats = FilterStats::default();
            let BatchOutcome::Rewritten(out2) =
                filter_batch(&out, &after, false, &mut stats).unwrap()
            else {
                panic!("tombstone past its horizon must go");
            };
            assert_eq!(stats.tombstones_removed, 1);
            let h2 = BatchHeader::parse(&out2).unwrap();
            assert_eq!(h2.compression(), codec);
            assert_eq!(h2.last_offset_delta, 4);
            let offsets: Vec<i64> = decode(&out2).iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![BASE + 1, BASE + 4]);
            let timestamps: Vec<i64> = decode(&out2).iter().map(|r| r.timestamp).collect();
            assert_eq!(timestamps, vec![TS + 10, TS + 40]);
        }
    }

    #[test]
    fn a_batch_of_only_latest_values_is_copied_unchanged() {
        for (compression, _) in CODECS {
            let batch = stored(
                &[(Some("a"), Some("1")), (Some("b"), Some("2"))],
                compression,
            );
            let map = KeyOffsetMap::new(1 << 16, 16);
            let rules = RetainRules {
                map: &map,
                now_ms: TS,
                delete_retention_ms: 1,
                upper_bound_offset: i64::MAX,
            };
            let outcome = filter_batch(&batch, &rules, false, &mut FilterStats::default()).unwrap();
            assert_eq!(outcome, BatchOutcome::Unchanged);
        }
    }

    #[test]
    fn an_emptied_batch_is_dropped_or_kept_empty_with_its_producer_fields() {
        let batch = stored(
            &[(Some("a"), Some("1")), (Some("a"), Some("2"))],
            Compression::Zstd,
        );
        let mut map = KeyOffsetMap::new(1 << 16, 16);
        map.put(b"a", 900);
        let rules = RetainRules {
            map: &map,
            now_ms: TS,
            delete_retention_ms: 1,
            upper_bound_offset: i64::MAX,
        };
        let outcome = filter_batch(&batch, &rules, false, &mut FilterStats::default()).unwrap();
        assert_eq!(outcome, BatchOutcome::Dropped);
        let BatchOutcome::Rewritten(empty) =
            filter_batch(&batch, &rules, true, &mut FilterStats::default()).unwrap()
        else {
            panic!("kept empty");
        };
        assert_eq!(empty.len(), HEADER_SIZE);
        let h = crate::log::batch::check_batch(&empty).expect("valid CRC");
        assert_eq!(h.records_count, 0);
        assert_eq!(h.compression(), 0);
        assert_eq!(h.base_offset, BASE);
        assert_eq!(h.last_offset(), BASE + 1);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 2, 40)
        );
        assert_eq!(
            h.last_sequence(),
            41,
            "the producer's last sequence survives"
        );
        assert_eq!(h.base_timestamp, -1);
        assert!(decode(&empty).is_empty());
        // An empty batch that is no longer needed goes.
        let outcome = filter_batch(&empty, &rules, false, &mut FilterStats::default()).unwrap();
        assert_eq!(outcome, BatchOutcome::Dropped);
    }

    #[test]
    fn an_expired_tombstone_at_or_above_the_upper_bound_stays() {
        let batch = stored(&[(Some("a"), None)], Compression::None);
        let map = KeyOffsetMap::new(1 << 16, 16);
        let stamp = RetainRules {
            map: &map,
            now_ms: TS,
            delete_retention_ms: 0,
            upper_bound_offset: i64::MAX,
        };
        let BatchOutcome::Rewritten(stamped) =
            filter_batch(&batch, &stamp, false, &mut FilterStats::default()).unwrap()
        else {
            panic!("stamped");
        };
        let later = |upper_bound_offset| RetainRules {
            map: &map,
            now_ms: TS + 1,
            delete_retention_ms: 0,
            upper_bound_offset,
        };
        let outcome = filter_batch(&stamped, &later(BASE), false, &mut FilterStats::default());
        assert_eq!(outcome.unwrap(), BatchOutcome::Unchanged);
        let outcome = filter_batch(
            &stamped,
            &later(BASE + 1),
            false,
            &mut FilterStats::default(),
        );
        assert_eq!(outcome.unwrap(), BatchOutcome::Dropped);
    }

    #[test]
    fn varlongs_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn garbage_records_are_an_error_not_a_panic() {
        assert!(parse_records(&[0x7f]).is_err());
        assert!(parse_records(&[0x02, 0x00]).is_err());
        assert!(parse_records(&[0xff; 12]).is_err());
    }
}
