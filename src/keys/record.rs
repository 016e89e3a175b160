//! Decoding the records of stored v2 batches, enough for lookups and snapshots: offset,
//! timestamp, key, value and headers. Pure: bytes in, records out; no I/O. Compressed batches are
//! inflated with the cleaner's codecs.

use bytes::Bytes;

use crate::log::batch::{peek, BatchHeader};
use crate::log::cleaner::rewrite::decompress;

/// Size of a v2 batch header; its records follow.
const HEADER_SIZE: usize = 61;

/// One record, as a lookup or snapshot answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// One stored batch: its header, and whether its records are user data.
pub(crate) struct BatchView {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

impl BatchView {
    /// Control batches (transaction markers) carry no user records.
    pub(crate) fn is_data(&self) -> bool {
        !self.header.is_control()
    }

    /// The batch's records, decompressed and decoded, in offset order.
    pub(crate) fn records(&self) -> Result<Vec<Record>, String> {
        let h = &self.header;
        let block = decompress(h.compression(), h.base_offset, &self.bytes[HEADER_SIZE..])
            .map_err(|e| e.to_string())?;
        decode_records(&block, h)
    }
}

/// Splits `bytes` (whole batches as a read returns them) into batches. A torn tail is dropped.
pub(crate) fn batches(bytes: &Bytes) -> Result<Vec<BatchView>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some((_, size, _)) = peek(&bytes[pos..]) else {
            break;
        };
        let size = usize::try_from(size).map_err(|_| "negative batch size")?;
        if size < HEADER_SIZE || pos + size > bytes.len() {
            break;
        }
        let header = BatchHeader::parse(&bytes[pos..pos + size]).map_err(|e| e.to_string())?;
        out.push(BatchView {
            header,
            bytes: bytes.slice(pos..pos + size),
        });
        pos += size;
    }
    Ok(out)
}

fn varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
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

/// A length-prefixed byte field; `None` inside `Some` for a null (-1 length).
fn field(block: &Bytes, pos: &mut usize, end: usize) -> Option<Option<Bytes>> {
    let len = varlong(&block[..end], pos)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if *pos + len > end {
        return None;
    }
    let b = block.slice(*pos..*pos + len);
    *pos += len;
    Some(Some(b))
}

fn decode_records(block: &Bytes, h: &BatchHeader) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let (start, end) = next_record(block, &mut pos)?;
        out.push(decode_at(block, start, end, h)?);
    }
    Ok(out)
}

/// The bounds of the record at `pos` (after its length), moving `pos` past it.
fn next_record(block: &[u8], pos: &mut usize) -> Result<(usize, usize), String> {
    let len = varlong(block, pos).ok_or("bad record length")?;
    let len = usize::try_from(len).map_err(|_| "negative record length")?;
    let start = *pos;
    let end = start.checked_add(len).filter(|&e| e <= block.len());
    *pos = end.ok_or("record runs past the batch")?;
    Ok((start, *pos))
}

/// The record in `block[pos..end]`.
fn decode_at(block: &Bytes, pos: usize, end: usize, h: &BatchHeader) -> Result<Record, String> {
    let mut p = pos + 1; // attributes
    let bad = || format!("malformed record in batch at offset {}", h.base_offset);
    let ts_delta = varlong(&block[..end], &mut p).ok_or_else(bad)?;
    let offset_delta = varlong(&block[..end], &mut p).ok_or_else(bad)?;
    let key = field(block, &mut p, end).ok_or_else(bad)?;
    let value = field(block, &mut p, end).ok_or_else(bad)?;
    let count = varlong(&block[..end], &mut p).ok_or_else(bad)?;
    let mut headers = Vec::new();
    for _ in 0..count.max(0) {
        let k = field(block, &mut p, end)
            .ok_or_else(bad)?
            .unwrap_or_default();
        let v = field(block, &mut p, end).ok_or_else(bad)?;
        headers.push((k, v));
    }
    let timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        h.base_timestamp.wrapping_add(ts_delta)
    };
    Ok(Record {
        offset: h.base_offset + offset_delta,
        timestamp,
        key,
        value,
        headers,
    })
}

/// Calls `f` with the offset, key and bounds (after the length prefix) of every keyed record in
/// `block`, the records of a batch of header `h` (inflated when compressed), in order.
pub(crate) fn walk_keys(
    block: &[u8],
    h: &BatchHeader,
    mut f: impl FnMut(i64, &[u8], usize, usize),
) -> Result<(), String> {
    let bad = || format!("malformed record in batch at offset {}", h.base_offset);
    let mut pos = 0;
    while pos < block.len() {
        let (start, end) = next_record(block, &mut pos)?;
        let mut p = start + 1; // attributes
        varlong(&block[..end], &mut p).ok_or_else(bad)?; // timestamp delta
        let delta = varlong(&block[..end], &mut p).ok_or_else(bad)?;
        let len = varlong(&block[..end], &mut p).ok_or_else(bad)?;
        if len < 0 {
            continue;
        }
        let key_end = usize::try_from(len)
            .ok()
            .and_then(|l| p.checked_add(l))
            .filter(|&e| e <= end)
            .ok_or_else(bad)?;
        f(
            h.base_offset.wrapping_add(delta),
            &block[p..key_end],
            start,
            end,
        );
    }
    Ok(())
}

/// The one record whose bytes (after its length prefix) are `record`, of a batch of header `h`.
pub(crate) fn decode_one(record: &Bytes, h: &BatchHeader) -> Result<Record, String> {
    decode_at(record, 0, record.len(), h)
}

/// The record at `offset` in one whole stored batch (`batch`, header `h`), or `None` when the
/// batch does not hold it. Only that record is decoded: an uncompressed batch is walked record by
/// record up to it without copying; a compressed one is inflated first. The record is copied
/// out, so the caller may reuse `batch`.
pub(crate) fn record_in(
    batch: &[u8],
    h: &BatchHeader,
    offset: i64,
) -> Result<Option<Record>, String> {
    if batch.len() < HEADER_SIZE || offset < h.base_offset || offset > h.last_offset() {
        return Ok(None);
    }
    let inflated;
    let block: &[u8] = match h.compression() {
        0 => &batch[HEADER_SIZE..],
        codec => {
            inflated = decompress(codec, h.base_offset, &batch[HEADER_SIZE..])
                .map_err(|e| e.to_string())?;
            &inflated
        }
    };
    let mut pos = 0;
    while pos < block.len() {
        let (start, end) = next_record(block, &mut pos)?;
        let mut p = start + 1; // attributes
        let bad = || format!("malformed record in batch at offset {}", h.base_offset);
        varlong(&block[..end], &mut p).ok_or_else(bad)?; // timestamp delta
        let delta = varlong(&block[..end], &mut p).ok_or_else(bad)?;
        let at = h.base_offset.wrapping_add(delta);
        if at == offset {
            let one = Bytes::copy_from_slice(&block[start..end]);
            return decode_at(&one, 0, one.len(), h).map(Some);
        }
        if at > offset {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KafkaRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const BASE: i64 = 100;
    const TS: i64 = 1_700_000_000_000;

    /// A stored batch at offset 100: record i has key `k{i}` (none for i = 2), value `v{i}`
    /// (a tombstone for i = 3) and, for i = 1, a header.
    fn stored(n: usize, compression: Compression) -> Vec<u8> {
        let records: Vec<KafkaRecord> = (0..n)
            .map(|i| {
                let headers = match i {
                    1 => vec![(
                        StrBytes::from_static_str("h"),
                        Some(Bytes::from_static(b"x")),
                    )],
                    _ => vec![],
                };
                KafkaRecord {
                    transactional: false,
                    control: false,
                    delete_horizon_ms: None,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: BASE + i as i64,
                    sequence: -1,
                    timestamp: TS + 10 * i as i64,
                    key: (i != 2).then(|| Bytes::from(format!("k{i}"))),
                    value: (i != 3).then(|| Bytes::from(format!("v{i}"))),
                    headers,
                }
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

    #[test]
    fn record_in_finds_each_record_of_a_batch_and_nothing_outside_it() {
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = stored(6, codec);
            let h = BatchHeader::parse(&batch).unwrap();
            let all = batches(&Bytes::from(batch.clone())).unwrap()[0]
                .records()
                .unwrap();
            assert_eq!(all.len(), 6);
            for (i, expected) in all.iter().enumerate() {
                let offset = BASE + i as i64;
                let got = record_in(&batch, &h, offset).unwrap().expect("held");
                assert_eq!(&got, expected, "{codec:?} offset {offset}");
                assert_eq!(got.offset, offset);
                assert_eq!(got.timestamp, TS + 10 * i as i64);
                assert_eq!(got.key.is_none(), i == 2);
                assert_eq!(got.value.is_none(), i == 3);
            }
            assert_eq!(all[1].headers.len(), 1);
            assert_eq!(record_in(&batch, &h, BASE - 1).unwrap(), None);
            assert_eq!(record_in(&batch, &h, BASE + 6).unwrap(), None);
            // A batch cut short is an error or nothing, never a wrong record.
            let cut = &batch[..batch.len() - 3];
            assert!(!matches!(record_in(cut, &h, BASE + 5), Ok(Some(r)) if r != all[5]));
        }
    }
}
