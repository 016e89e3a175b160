//! Helpers shared by the log engine's integration tests: batches built with the protocol crate's
//! encoder, a manager opened on a temp dir, and decoding of what a read returned.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn::config::BrokerConfig;
use cairn::log::{LogManager, LogManagerOptions};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One v2 batch of `values`, keyed `k<i>`, timestamps `ts + i`.
pub fn batch(values: &[&str], ts: i64) -> Bytes {
    batch_full(values, ts, None, Compression::None)
}

/// A batch from an idempotent producer (pid, epoch, base sequence).
pub fn idempotent(values: &[&str], producer: (i64, i16, i32)) -> Bytes {
    batch_full(values, now_ms(), Some(producer), Compression::None)
}

pub fn batch_full(
    values: &[&str],
    ts: i64,
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
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
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
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
    .unwrap();
    buf.freeze()
}

/// (offset, value, timestamp) of every record in `bytes`.
pub fn decode(bytes: &Bytes) -> Vec<(i64, String, i64)> {
    let mut buf = bytes.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).expect("stored batches decode");
        for r in set.records {
            let v = r
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            out.push((r.offset, v, r.timestamp));
        }
    }
    out
}

/// Broker config with `settings` applied.
pub fn broker(settings: &[(&str, &str)]) -> BrokerConfig {
    let mut b = BrokerConfig::default();
    for (k, v) in settings {
        b.set(k, v).unwrap();
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

pub fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a future to completion on a small runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A transactional batch of producer (pid, epoch 0): one keyed record at `seq`, or, with
/// `marker` = Some(0 ABORT / 1 COMMIT), the producer's control record ending its transaction.
pub fn transactional(pid: i64, seq: i32, key: &str, value: &str, marker: Option<i16>) -> Bytes {
    let (key, value, sequence) = match marker {
        Some(kind) => {
            let [hi, lo] = kind.to_be_bytes();
            (vec![0u8, 0, hi, lo], vec![0u8; 6], -1)
        }
        None => (key.as_bytes().to_vec(), value.as_bytes().to_vec(), seq),
    };
    let record = Record {
        transactional: true,
        control: marker.is_some(),
        delete_horizon_ms: None,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: now_ms(),
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: vec![],
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
    .expect("encode batch");
    buf.freeze()
}
