//! Cairn's fuzz targets and their generated seeds: request frames (framing + header + body
//! decoding with the broker's version table), record batch validation (splitting, CRC, limits,
//! in-place patches, record decoding), appends of arbitrary produce payloads to a real log, and
//! log recovery from arbitrary segment bytes.
//!
//! Each target returns an outcome signature (digits stripped, so that values do not flood the
//! corpus) or an invariant violation. Uses only Cairn's public API; drives no network.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cairn::config::BrokerConfig;
use cairn::log::batch::{self, Limits};
use cairn::log::record_errors;
use cairn::log::{AppendOrigin, Isolation, LogManager, LogManagerOptions, Partition};
use cairn::protocol::codec::{decode_request, DecodeError, Decoded};
use cairn::protocol::frame::check_length;
use cairn::protocol::versions::VersionTable;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::engine::Rng;

/// Largest frame the request target accepts (the broker's limit is 100 MiB; fuzz inputs are
/// far smaller, so this only keeps the length check on the path).
const FRAME_MAX: usize = 1 << 20;

/// Keeps the shape of a message, not its numbers.
pub(crate) fn strip_digits(s: &str) -> String {
    let words: Vec<&str> = s
        .split(' ')
        .map(|w| if w.starts_with("0x") { "0x" } else { w })
        .collect();
    let mut out: String = words
        .join(" ")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    out.truncate(120);
    out
}

// ------------------------------------------------------------------ request frames

/// One encoded request body per API key: the default message (empty arrays, null strings).
macro_rules! default_bodies {
    ($($key:ident => $ty:ty),* $(,)?) => {
        const SEED_APIS: &[ApiKey] = &[$(ApiKey::$key),*];
        fn encode_default(key: ApiKey, version: i16, buf: &mut BytesMut) -> bool {
            match key {
                $(ApiKey::$key => <$ty>::default().encode(buf, version).is_ok(),)*
                _ => false,
            }
        }
    };
}

default_bodies! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    Metadata => MetadataRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    SyncGroup => SyncGroupRequest,
    DescribeGroups => DescribeGroupsRequest,
    ListGroups => ListGroupsRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DeleteRecords => DeleteRecordsRequest,
    InitProducerId => InitProducerIdRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    DescribeConfigs => DescribeConfigsRequest,
    AlterConfigs => AlterConfigsRequest,
    DeleteGroups => DeleteGroupsRequest,
    CreatePartitions => CreatePartitionsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    OffsetDelete => OffsetDeleteRequest,
    DescribeCluster => DescribeClusterRequest,
}

fn header(key: ApiKey, version: i16, correlation_id: i32, buf: &mut BytesMut) -> bool {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(buf, key.request_header_version(version))
        .is_ok()
}

fn framed(body: BytesMut) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A request frame (length prefix included) with a message body, if it encodes at `version`.
fn frame_of(key: ApiKey, version: i16, body: &impl Encodable) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    if !header(key, version, 7, &mut buf) || body.encode(&mut buf, version).is_err() {
        return None;
    }
    Some(framed(buf))
}

/// A v2 batch of `n` records (keyed, with a header) in the given codec.
pub(crate) fn record_batch(
    n: usize,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
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
            timestamp: 1_700_000_000_000 + i as i64,
            key: (i % 3 != 2).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 7)))),
            headers: vec![(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )],
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
    .expect("a batch of plain records encodes");
    buf.to_vec()
}

pub(crate) const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Request seeds: every API at every version it encodes at (default bodies), plus Produce,
/// Fetch and Metadata requests with content.
pub(crate) fn request_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for &key in SEED_APIS {
        for version in 0..=17 {
            let mut buf = BytesMut::new();
            if header(key, version, 7, &mut buf) && encode_default(key, version, &mut buf) {
                seeds.push(framed(buf));
            }
        }
    }
    let topic = || TopicName(StrBytes::from_static_str("fuzz-topic"));
    for (i, codec) in CODECS.into_iter().enumerate() {
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(record_batch(
                        3,
                        codec,
                        Some((1, 0, 0)),
                    ))))])]);
        seeds.extend(frame_of(ApiKey::Produce, [3, 7, 9, 11, 12][i], &produce));
    }
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20)])]);
    for v in [4, 11, 12] {
        seeds.extend(frame_of(ApiKey::Fetch, v, &fetch));
    }
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic())),
    ]));
    for v in [1, 9, 12] {
        seeds.extend(frame_of(ApiKey::Metadata, v, &metadata));
    }
    // Two pipelined frames in one stream.
    let mut two = seeds[0].clone();
    two.extend_from_slice(seeds.last().expect("seeds"));
    seeds.push(two);
    seeds
}

/// The request target: `input` is the byte stream a client sends; every complete frame is
/// decoded as the broker would.
pub(crate) fn run_request(input: &[u8], table: &VersionTable) -> Result<String, String> {
    let mut rest = input;
    let mut sig = String::new();
    for _ in 0..8 {
        if rest.len() < 4 {
            break;
        }
        let prefix: [u8; 4] = rest[..4].try_into().expect("4 bytes");
        let length = match check_length(prefix, FRAME_MAX) {
            Ok(length) => length,
            Err(e) => {
                sig.push_str(&format!("frame:{};", strip_digits(&e.to_string())));
                break;
            }
        };
        if rest.len() < 4 + length {
            sig.push_str("partial;");
            break;
        }
        let frame = &rest[4..4 + length];
        rest = &rest[4 + length..];
        match decode_request(Bytes::copy_from_slice(frame), table) {
            Ok(Decoded::Request { header, body }) => {
                let key = i16::from_be_bytes([frame[0], frame[1]]);
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let corr = i32::from_be_bytes(frame[4..8].try_into().expect("4 bytes"));
                if header.request_api_key != key
                    || header.request_api_version != version
                    || header.correlation_id != corr
                {
                    return Err(format!(
                        "decoded header {header:?} disagrees with the frame's key {key}, version {version}, correlation id {corr}"
                    ));
                }
                if ApiKey::try_from(key)
                    .map(|k| k.request_header_version(version))
                    .is_err()
                {
                    return Err(format!("decoded a request of unknown api key {key}"));
                }
                sig.push_str(&format!("ok:{key}:{version}:{};", body_kind(&body)));
            }
            Ok(Decoded::ApiVersionsTooNew { .. }) => sig.push_str("apiversions-too-new;"),
            Err(DecodeError::Malformed { reason, .. }) if reason.contains("panicked") => {
                return Err(format!(
                    "the request decoder panicked (caught by the codec): {reason}"
                ));
            }
            Err(e) => sig.push_str(&format!("err:{};", strip_digits(&e.to_string()))),
        }
    }
    Ok(sig)
}

fn body_kind(body: &RequestKind) -> String {
    let debug = format!("{body:?}");
    debug.split('(').next().unwrap_or("").to_string()
}

// ------------------------------------------------------------------ batch validation

/// Batch seeds: one batch per codec, idempotent and not, two batches back to back, a control
/// batch.
pub(crate) fn batch_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for codec in CODECS {
        seeds.push(record_batch(1, codec, None));
        seeds.push(record_batch(5, codec, Some((3, 1, 100))));
    }
    let mut two = record_batch(2, Compression::None, None);
    two.extend(record_batch(4, Compression::Gzip, Some((9, 0, 0))));
    seeds.push(two);
    let mut control = record_batch(1, Compression::None, Some((9, 0, 0)));
    control[22] |= 0x20;
    crate::engine::fix_batch_crcs(&mut control, 0);
    seeds.push(control);
    seeds
}

/// The batch target: `input` is a Produce request's `records` field. Whatever it holds,
/// splitting and validation answer without panicking, and what they accept is self-consistent:
/// the batches tile the input, each passes `check_batch`, and the log's in-place patches keep
/// the CRC valid.
pub(crate) fn run_batch(input: &[u8]) -> Result<String, String> {
    let batches = match batch::split_batches(input) {
        Ok(b) => b,
        Err(e) => return Ok(format!("split:{}", strip_digits(&e.to_string()))),
    };
    let mut sig = format!("ok:{}", batches.len().min(4));
    let mut expect = 0;
    for (range, header) in &batches {
        if range.start != expect {
            return Err(format!("batch ranges do not tile the input: {batches:?}"));
        }
        expect = range.end;
        let bytes = &input[range.clone()];
        let again = batch::check_batch(bytes)
            .map_err(|e| format!("split_batches accepted a batch check_batch refuses: {e}"))?;
        if &again != header {
            return Err("check_batch parsed a different header".into());
        }
        let limits = Limits {
            max_message_bytes: 1 << 20,
            timestamp_bounds: Some((3_600_000, 3_600_000)),
            reject_control: true,
        };
        match batch::validate(header, bytes.len(), &limits, 1_700_000_000_000) {
            Ok(()) => sig.push_str(":valid"),
            Err(e) => sig.push_str(&format!(":{}", strip_digits(&e.to_string()))),
        }
        let mut patched = bytes.to_vec();
        batch::set_base_offset(&mut patched, 1_234_567);
        batch::set_partition_leader_epoch(&mut patched, 3);
        batch::check_batch(&patched)
            .map_err(|e| format!("patching the base offset broke the batch: {e}"))?;
        batch::set_log_append_time(&mut patched, 1_700_000_000_000);
        let h = batch::check_batch(&patched)
            .map_err(|e| format!("applying LogAppendTime broke the batch: {e}"))?;
        if h.max_timestamp != 1_700_000_000_000 || !h.is_log_append_time() {
            return Err("LogAppendTime was not applied".into());
        }
        sig.push_str(&format!(":c{}", header.compression()));
        match record_errors::keyless_records(bytes, "fuzz", 0) {
            Ok(k) => sig.push_str(if k.is_empty() { ":keyed" } else { ":keyless" }),
            Err(e) => sig.push_str(&format!(":{}", strip_digits(&e.to_string()))),
        }
        if let Ok(ts) = batch::record_timestamps(bytes) {
            sig.push_str(&format!(":ts{}", ts.len().min(3)));
        }
    }
    if expect != input.len() {
        return Err("batches do not cover the whole input".into());
    }
    Ok(sig)
}

/// Makes mutated batches more often well formed: CRCs recomputed, and sometimes the record
/// count aligned with the last offset delta.
pub(crate) fn fix_batches(data: &mut [u8], rng: &mut Rng) {
    if data.len() >= 61 && rng.chance(2) {
        let delta = i32::from_be_bytes(data[23..27].try_into().expect("4 bytes"));
        data[57..61].copy_from_slice(&delta.wrapping_add(1).to_be_bytes());
    }
    crate::engine::fix_batch_crcs(data, 0);
}

// ------------------------------------------------------------------ a real log

/// A data directory on tmpfs when there is one (recovery fuzzing opens logs thousands of times).
pub(crate) fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("cairn-fuzz")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temp dir")
}

pub(crate) fn open_log(dir: &Path) -> Result<Arc<LogManager>, cairn::log::LogError> {
    LogManager::open(LogManagerOptions {
        data_dir: dir.to_path_buf(),
        broker: BrokerConfig::default(),
    })
}

/// Waits (bounded) for the log's background verification to finish.
pub(crate) fn wait_verified(log: &LogManager) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !log.background_verification_done() {
        if std::time::Instant::now() > deadline {
            return Err("background verification did not finish in 60 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

fn small_segments() -> BTreeMap<String, String> {
    BTreeMap::from([("segment.bytes".to_string(), "4096".to_string())])
}

/// Reads the whole partition (up to the log end) and checks it: every batch valid, offsets
/// strictly increasing from the log start. Returns the batches' (base offset, last offset).
pub(crate) fn read_all(p: &Partition) -> Result<Vec<(i64, i64)>, String> {
    read_all_checked(p, true).map(|(batches, _)| batches)
}

/// [`read_all`], or when not `strict`, reads until the first anomaly (a bad CRC, offsets out of
/// order, a read that returns nothing or fails) and reports whether there was one: after a clean
/// shutdown Cairn, like Kafka, does not re-check sealed segments, so damage there is served as
/// stored (a known weakness, see RELIABILITY.md).
pub(crate) fn read_all_checked(
    p: &Partition,
    strict: bool,
) -> Result<(Vec<(i64, i64)>, bool), String> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    match read_into(p, &mut out) {
        Ok(()) => Ok((out, false)),
        Err(e) if strict || e.starts_with("inconsistent") => Err(e),
        Err(_) => Ok((out, true)),
    }
}

fn read_into(p: &Partition, out: &mut Vec<(i64, i64)>) -> Result<(), String> {
    let offsets = p.offsets();
    if !(offsets.log_start_offset <= offsets.high_watermark
        && offsets.high_watermark <= offsets.log_end_offset)
    {
        return Err(format!("inconsistent offsets {offsets:?}"));
    }
    let mut next = offsets.log_start_offset;
    for _ in 0..100_000 {
        if next >= offsets.log_end_offset {
            return Ok(());
        }
        let read = p
            .read(next, 64 * 1024, Isolation::LogEnd)
            .map_err(|e| format!("read at {next} failed: {e}"))?;
        if read.records.is_empty() {
            return Err(format!(
                "read at {next} returned nothing below the log end {}",
                offsets.log_end_offset
            ));
        }
        let mut pos = 0;
        while pos < read.records.len() {
            let rest = &read.records[pos..];
            let Some((_, size, _)) = batch::peek(rest) else {
                return Err(format!("read at {next} returned a partial batch"));
            };
            let size = size as usize;
            if size > rest.len() {
                return Err(format!("read at {next} returned a truncated batch"));
            }
            let h = batch::check_batch(&rest[..size])
                .map_err(|e| format!("stored batch at {next} is invalid: {e}"))?;
            if h.last_offset() >= offsets.log_end_offset {
                return Err(format!(
                    "batch {}..={} reaches past the log end {}",
                    h.base_offset,
                    h.last_offset(),
                    offsets.log_end_offset
                ));
            }
            if let Some(&(_, last)) = out.last() {
                if h.base_offset <= last {
                    return Err(format!(
                        "offsets go backwards: {} after {last}",
                        h.base_offset
                    ));
                }
            }
            if h.last_offset() >= next {
                out.push((h.base_offset, h.last_offset()));
                next = h.last_offset() + 1;
            }
            pos += size;
        }
    }
    Err("reading the log did not terminate".into())
}

/// The append target's state: one log that every input is produced to.
pub(crate) struct AppendState {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) log: Arc<LogManager>,
    pub(crate) acknowledged: Mutex<Vec<(i64, i64, u32)>>,
}

pub(crate) fn append_state() -> AppendState {
    let dir = temp_dir();
    let log = open_log(dir.path()).expect("open log");
    log.create_topic("fuzz", 1, small_segments(), false)
        .expect("create topic");
    AppendState {
        _dir: dir,
        log,
        acknowledged: Mutex::new(Vec::new()),
    }
}

/// The append target: `input` is produced to a real partition as a client's records. It is
/// accepted or refused with an error, never a panic; what is accepted gets contiguous offsets
/// and reads back byte for byte (after the base offset patch).
pub(crate) fn run_append(input: &[u8], state: &AppendState) -> Result<String, String> {
    let p = state.log.partition("fuzz", 0).expect("partition");
    let before = p.offsets().log_end_offset;
    match p.append(Bytes::copy_from_slice(input), AppendOrigin::Client) {
        Ok(info) => {
            if !info.duplicate && info.base_offset != before {
                return Err(format!(
                    "append at log end {before} got base offset {}",
                    info.base_offset
                ));
            }
            if !info.duplicate {
                let read = p
                    .read(info.base_offset, 1, Isolation::LogEnd)
                    .map_err(|e| format!("reading back an acknowledged append failed: {e}"))?;
                let h = batch::check_batch(
                    &read.records[..batch::peek(&read.records).map_or(0, |x| x.1 as usize)],
                )
                .map_err(|e| format!("an accepted batch reads back invalid: {e}"))?;
                if h.base_offset != info.base_offset {
                    return Err("an accepted batch reads back at another offset".into());
                }
                let mut acknowledged = state.acknowledged.lock().expect("lock");
                acknowledged.push((info.base_offset, info.last_offset, h.crc));
                // Long runs make thousands of 4 KiB segments, each holding open files: move
                // the log start now and then (DeleteRecords), which also exercises it beside
                // appends. What is still above the log start is checked at the end.
                if acknowledged.len().is_multiple_of(4096) {
                    let hw = p.offsets().high_watermark;
                    p.delete_records_before(hw)
                        .map_err(|e| format!("delete records before {hw} failed: {e}"))?;
                }
            }
            Ok(format!("ok:{}", info.duplicate))
        }
        Err(e) => Ok(format!("err:{}", strip_digits(&e.to_string()))),
    }
}

// ------------------------------------------------------------------ recovery

/// Recovery seeds: flags byte + a real segment written by the log (several codecs, an
/// idempotent producer, more than one index interval).
pub(crate) fn recovery_seeds() -> Vec<Vec<u8>> {
    let dir = temp_dir();
    let log = open_log(dir.path()).expect("open log");
    log.create_topic("seed", 1, BTreeMap::new(), false)
        .expect("create topic");
    let p = log.partition("seed", 0).expect("partition");
    for (i, codec) in CODECS.into_iter().enumerate() {
        p.append(
            Bytes::from(record_batch(2 + i, codec, Some((0, 0, i as i32 * 10)))),
            AppendOrigin::Client,
        )
        .map(|_| ())
        .unwrap_or_else(|_| {
            // Sequences of one producer must follow each other; fall back to no producer.
            p.append(
                Bytes::from(record_batch(2 + i, codec, None)),
                AppendOrigin::Client,
            )
            .map(|_| ())
            .expect("append a seed batch");
        });
    }
    log.shutdown().expect("shutdown");
    let segment = std::fs::read(dir.path().join("seed-0").join("00000000000000000000.log"))
        .expect("segment file");
    let mut seeds = Vec::new();
    for flags in [0u8, 1, 2, 4, 7] {
        let mut s = vec![flags];
        s.extend_from_slice(&segment);
        seeds.push(s);
    }
    seeds
}

/// Base offset of the second segment some recovery inputs get.
const SECOND_SEGMENT_BASE: i64 = 1_000_000;

/// Fixes CRCs of the segment part (after the flags byte).
pub(crate) fn fix_segment(data: &mut [u8], _rng: &mut Rng) {
    crate::engine::fix_batch_crcs(data, 1);
}

/// The recovery target: the first byte chooses how the broker went down (bit 0: cleanly, i.e.
/// with Kafka's clean-shutdown marker; bit 1: keep the old index files; bit 2: a second, valid
/// segment follows); the rest becomes the first segment file of a partition. Start-up must
/// succeed, the log must read back consistently, take a new append at its end, and keep that
/// append across a clean restart.
pub(crate) fn run_recovery(input: &[u8]) -> Result<String, String> {
    let flags = input.first().copied().unwrap_or(0);
    let segment = input.get(1..).unwrap_or(&[]);
    let dir = temp_dir();
    let log = open_log(dir.path()).map_err(|e| format!("first open: {e}"))?;
    log.create_topic("t", 1, BTreeMap::new(), false)
        .map_err(|e| format!("create topic: {e}"))?;
    log.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    drop(log);
    let pdir = dir.path().join("t-0");
    std::fs::write(pdir.join("00000000000000000000.log"), segment).map_err(|e| e.to_string())?;
    if flags & 2 == 0 {
        let _ = std::fs::remove_file(pdir.join("00000000000000000000.index"));
        let _ = std::fs::remove_file(pdir.join("00000000000000000000.timeindex"));
    }
    if flags & 4 != 0 {
        let mut later = record_batch(2, Compression::None, None);
        batch::set_base_offset(&mut later, SECOND_SEGMENT_BASE);
        std::fs::write(pdir.join("00000000000001000000.log"), later).map_err(|e| e.to_string())?;
    }
    if flags & 1 == 0 {
        let _ = std::fs::remove_file(dir.path().join(".kafka_cleanshutdown"));
    }
    let log = match open_log(dir.path()) {
        Ok(log) => log,
        Err(e) => {
            return Err(format!(
                "start-up failed on a damaged segment (it should repair it and go on): {e}"
            ));
        }
    };
    wait_verified(&log)?;
    let p = log
        .partition("t", 0)
        .ok_or("partition missing after recovery")?;
    // Every batch of every segment is verified (in the background after start-up, by default),
    // so once that is done, whatever the damage and however the broker went down, the log must
    // read back consistently.
    let strict = true;
    let (batches, damaged) = read_all_checked(&p, strict)?;
    let end = p.offsets().log_end_offset;
    let info = p
        .append(
            Bytes::from(record_batch(3, Compression::None, None)),
            AppendOrigin::Client,
        )
        .map_err(|e| format!("append after recovery failed: {e}"))?;
    if info.base_offset != end {
        return Err(format!(
            "append after recovery got base offset {}, log end was {end}",
            info.base_offset
        ));
    }
    let (after, _) = read_all_checked(&p, strict)?;
    let new = p
        .read(end, 64 * 1024, Isolation::LogEnd)
        .map_err(|e| format!("reading the new batch at {end} failed: {e}"))?;
    let mut pos = 0;
    let mut found = false;
    while let Some((base, size, _)) = batch::peek(&new.records[pos..]) {
        let size = size.max(0) as usize;
        if base == end && pos + size <= new.records.len() {
            let h = batch::check_batch(&new.records[pos..pos + size])
                .map_err(|e| format!("the new batch at {end} reads back damaged: {e}"))?;
            found = h.records_count == 3;
            break;
        }
        // Only a damaged old batch (served as stored after a clean start) may come first.
        if strict || size == 0 {
            break;
        }
        pos += size;
        if pos >= new.records.len() {
            break;
        }
    }
    // After a clean start a damaged old batch may even hide the new one (W2).
    if !found && strict {
        return Err(format!("the new batch at {end} does not read back"));
    }
    if p.offsets().log_end_offset != end + 3 {
        return Err(format!(
            "log end after appending 3 records at {end} is {:?}",
            p.offsets()
        ));
    }
    log.shutdown()
        .map_err(|e| format!("shutdown after recovery: {e}"))?;
    drop((p, log));
    let log = open_log(dir.path()).map_err(|e| format!("reopen after recovery: {e}"))?;
    let p = log.partition("t", 0).ok_or("partition missing on reopen")?;
    if p.offsets().log_end_offset != end + 3 {
        return Err(format!(
            "after a clean restart the log end is {:?}, it was {}",
            p.offsets(),
            end + 3
        ));
    }
    let (again, _) = read_all_checked(&p, strict)?;
    if again != after {
        return Err(format!(
            "a clean restart changed the log: {after:?} became {again:?}"
        ));
    }
    log.shutdown().map_err(|e| format!("final shutdown: {e}"))?;
    Ok(format!(
        "flags{}:damaged{}:batches{}:end{}",
        flags & 7,
        damaged as u8,
        batches.len().min(8),
        (end > 0) as u8
    ))
}
