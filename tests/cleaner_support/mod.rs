//! Helpers shared by the cleaner's integration tests: a log manager on a temp dir with the
//! background cleaner off (tests drive cleanings with an explicit clock), keyed batches built
//! with the protocol crate, and a full read of a partition from its log start.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn::config::BrokerConfig;
use cairn::log::batch::{self, BatchHeader};
use cairn::log::{AppendOrigin, Isolation, LogManager, LogManagerOptions, Partition};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub fn broker(settings: &[(&str, &str)]) -> BrokerConfig {
    let mut b = BrokerConfig::default();
    b.set("log.cleaner.enable", "false").expect("valid");
    for (k, v) in settings {
        b.set(k, v).expect("valid broker setting");
    }
    b
}

pub fn open(dir: &Path, settings: &[(&str, &str)]) -> Arc<LogManager> {
    LogManager::open(LogManagerOptions {
        data_dir: dir.to_path_buf(),
        broker: broker(settings),
    })
    .expect("open log")
}

/// A compacted topic's overrides: page-cache mode (the high watermark follows appends), small
/// segments, plus `extra`.
pub fn compacted(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("flush.messages", "1000000000"),
        ("segment.bytes", "4096"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// One batch of (key, value-or-tombstone) records.
pub fn keyed_batch(entries: &[(String, Option<String>)], compression: Compression) -> Bytes {
    keyed_batch_from(entries, compression, None)
}

/// A keyed batch from an idempotent producer (pid, epoch, base sequence).
pub fn keyed_batch_from(
    entries: &[(String, Option<String>)],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    keyed_batch_at(entries, compression, producer, now_ms())
}

/// A keyed batch whose records carry timestamp `ts`.
pub fn keyed_batch_at(
    entries: &[(String, Option<String>)],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
    ts: i64,
) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { -1 } else { seq + i as i32 },
            timestamp: ts,
            key: Some(Bytes::from(k.clone())),
            value: v.as_ref().map(|v| Bytes::from(v.clone())),
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
    .expect("encode batch");
    buf.freeze()
}

/// Appends one record with timestamp `ts`.
pub fn put_at(p: &Partition, key: &str, value: Option<&str>, ts: i64) {
    let entries = [(key.to_string(), value.map(str::to_string))];
    let batch = keyed_batch_at(&entries, Compression::None, None, ts);
    p.append(batch, AppendOrigin::Client).expect("append");
}

pub fn put(p: &Partition, key: &str, value: Option<&str>) {
    let batch = keyed_batch(
        &[(key.to_string(), value.map(str::to_string))],
        Compression::None,
    );
    p.append(batch, AppendOrigin::Client).expect("append");
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: i64,
    pub key: String,
    pub value: Option<String>,
}

/// Every batch header and record from the log start to the log end.
pub fn read_all(p: &Partition) -> (Vec<BatchHeader>, Vec<Stored>) {
    let offsets = p.offsets();
    let mut next = offsets.log_start_offset;
    let mut headers = Vec::new();
    let mut records = Vec::new();
    for _ in 0..1_000_000 {
        if next >= offsets.log_end_offset {
            break;
        }
        let info = p.read(next, 1 << 20, Isolation::LogEnd).expect("read");
        if info.records.is_empty() {
            break;
        }
        let mut pos = 0;
        while let Some((_, size, last)) = batch::peek(&info.records[pos..]) {
            let size = size as usize;
            let slice = &info.records[pos..pos + size];
            headers.push(batch::check_batch(slice).expect("stored batches are valid"));
            let mut b = Bytes::copy_from_slice(slice);
            for r in RecordBatchDecoder::decode(&mut b).expect("decodes").records {
                if r.offset >= next {
                    records.push(Stored {
                        offset: r.offset,
                        key: String::from_utf8(r.key.expect("keyed").to_vec()).expect("utf8"),
                        value: r
                            .value
                            .map(|v| String::from_utf8(v.to_vec()).expect("utf8")),
                    });
                }
            }
            next = next.max(last + 1);
            pos += size;
            if pos >= info.records.len() {
                break;
            }
        }
    }
    (headers, records)
}

/// Offsets strictly increase; returns the latest value per key, tombstones removing the key.
pub fn fold(records: &[Stored]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last = -1;
    for r in records {
        assert!(
            r.offset > last,
            "offsets must strictly increase: {} after {last}",
            r.offset
        );
        last = r.offset;
        match &r.value {
            Some(v) => out.insert(r.key.clone(), v.clone()),
            None => out.remove(&r.key),
        };
    }
    out
}

pub fn total_log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}
