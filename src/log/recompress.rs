//! `compression.type` applied on the way in: a topic (or broker) codec other than `producer`
//! stores every client batch with that codec, as Kafka does.
//!
//! Kafka's rule (LogValidator): a batch whose codec differs from the topic's is rebuilt with the
//! topic's codec (`uncompressed` included); a batch already in it is kept as sent. Here the
//! rebuilt batch keeps its records byte for byte (offset and timestamp deltas, keys, values,
//! headers), its base timestamp, max timestamp, producer id, epoch and sequence, and its
//! transactional flag; only the codec bits of the attributes, the length and the CRC change (the
//! offsets are assigned by the append afterwards, as for any batch). Kafka rebuilds the records
//! too, which gives the same bytes for every batch a producer writes (consecutive offset deltas,
//! base timestamp = first record's). Control batches and empty batches are never rebuilt. Each
//! batch's CRC is checked before it is rebuilt, so a damaged batch is refused, never given a
//! fresh CRC. Codec levels (KIP-390's `compression.*.level`) are not applied: each codec's
//! default level is used. Knows nothing of Kafka requests.

use bytes::Bytes;

use super::batch::{self, BatchError, CRC_START, HEADER_SIZE, LOG_OVERHEAD};
use super::cleaner::rewrite;
use super::LogError;

/// The attribute bits naming the codec.
const CODEC_BITS: i16 = 0x07;
/// Where the attributes sit in a batch.
const ATTRIBUTES_AT: usize = 21;
/// Where the CRC sits in a batch.
const CRC_AT: usize = 17;

/// `records` (whole client batches) with every batch in `codec`; `None` (`producer`) keeps
/// them as sent.
pub fn to_codec(records: Bytes, codec: Option<i16>) -> Result<Bytes, LogError> {
    let Some(codec) = codec else {
        return Ok(records);
    };
    let batches = batch::split_batches(&records).map_err(|e| match e {
        BatchError::Corrupt(m) => LogError::CorruptBatch(m),
        other => LogError::InvalidRecord(other.to_string()),
    })?;
    let rebuild =
        |h: &batch::BatchHeader| h.compression() != codec && !h.is_control() && h.records_count > 0;
    if !batches.iter().any(|(_, h)| rebuild(h)) {
        return Ok(records);
    }
    let mut out = Vec::with_capacity(records.len());
    for (range, h) in &batches {
        let sent = &records[range.clone()];
        if !rebuild(h) {
            out.extend_from_slice(sent);
            continue;
        }
        let block = rewrite::decompress(h.compression(), h.base_offset, &sent[HEADER_SIZE..])
            .map_err(|e| LogError::CorruptBatch(e.to_string()))?;
        let packed = rewrite::compress(codec, h.base_offset, &block)
            .map_err(|e| LogError::InvalidRecord(e.to_string()))?;
        let start = out.len();
        out.extend_from_slice(&sent[..HEADER_SIZE]);
        out.extend_from_slice(&packed);
        let built = &mut out[start..];
        let length = i32::try_from(built.len() - LOG_OVERHEAD)
            .map_err(|_| LogError::InvalidRecord("recompressed batch too large".into()))?;
        built[8..12].copy_from_slice(&length.to_be_bytes());
        let attributes = (h.attributes & !CODEC_BITS) | codec;
        built[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch::compute_crc(built);
        built[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn encoded(compression: Compression, n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: 3 + i as i32,
                timestamp: 1_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!(
                    r#"{{"id":{i},"kind":"order","status":"shipped","amount":{}}}"#,
                    i * 3
                ))),
                headers: Default::default(),
                delete_horizon_ms: None,
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    /// (offset, timestamp, key, value, sequence) of a record.
    type Decoded = (i64, i64, Option<Bytes>, Option<Bytes>, i32);

    fn decoded(bytes: &Bytes) -> Vec<Decoded> {
        let mut b = bytes.clone();
        let set = RecordBatchDecoder::decode(&mut b).unwrap();
        set.records
            .into_iter()
            .map(|r| (r.offset, r.timestamp, r.key, r.value, r.sequence))
            .collect()
    }

    const CODECS: [(Compression, i16); 5] = [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ];

    #[test]
    fn every_codec_to_every_codec_keeps_the_records() {
        for (from, _) in CODECS {
            let sent = encoded(from, 20);
            for (_, to) in CODECS {
                let stored = to_codec(sent.clone(), Some(to)).unwrap();
                let h = batch::check_batch(&stored).expect("a valid batch with its CRC");
                assert_eq!(h.compression(), to);
                let before = batch::check_batch(&sent).unwrap();
                assert_eq!(
                    (
                        h.base_timestamp,
                        h.max_timestamp,
                        h.producer_id,
                        h.base_sequence
                    ),
                    (
                        before.base_timestamp,
                        before.max_timestamp,
                        before.producer_id,
                        before.base_sequence
                    )
                );
                assert_eq!(h.last_offset_delta, before.last_offset_delta);
                assert_eq!(decoded(&stored), decoded(&sent));
            }
        }
    }

    #[test]
    fn producer_keeps_batches_and_a_batch_in_the_topic_codec_is_untouched() {
        let sent = encoded(Compression::Lz4, 5);
        let kept = to_codec(sent.clone(), None).unwrap();
        assert_eq!(kept.as_ptr(), sent.as_ptr());
        let same = to_codec(sent.clone(), Some(3)).unwrap();
        assert_eq!(same.as_ptr(), sent.as_ptr());
    }

    #[test]
    fn a_damaged_batch_is_refused_not_given_a_new_crc() {
        let mut sent = encoded(Compression::Gzip, 5).to_vec();
        let last = sent.len() - 3;
        sent[last] ^= 0x20;
        let refused = to_codec(Bytes::from(sent), Some(4));
        assert!(
            matches!(refused, Err(LogError::CorruptBatch(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn json_like_records_shrink_with_zstd() {
        let sent = encoded(Compression::None, 200);
        let stored = to_codec(sent.clone(), Some(4)).unwrap();
        assert!(
            stored.len() * 2 < sent.len(),
            "{} vs {}",
            stored.len(),
            sent.len()
        );
    }
}
