//! The log engine's public API end to end on a temp dir: topics, append, read, offsets,
//! durability waits, rolling, timestamps, retention, delete-records, restarts and storage faults.

mod log_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::log::io::{Fault, FaultyIo};
use cairn::log::record_errors::RecordFault;
use cairn::log::{AppendOrigin, Isolation, LogError, LogManager, LogManagerOptions};
use log_support::*;

fn values(read: &bytes::Bytes) -> Vec<(i64, String)> {
    decode(read).into_iter().map(|(o, v, _)| (o, v)).collect()
}

#[test]
fn append_read_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    let info = log
        .create_topic("orders", 2, overrides(&[]), false)
        .unwrap();
    assert_eq!(info.partitions, 2);
    assert!(!info.topic_id.is_nil());
    let p = log.partition("orders", 1).unwrap();
    assert!(log.partition("orders", 2).is_none());
    assert!(log.partition("nope", 0).is_none());

    let a = p
        .append(batch(&["a", "b", "c"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (0, 2, false));
    let b = p
        .append(batch(&["d"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 3));
    block_on(p.wait_durable(4)).unwrap();
    let offsets = p.offsets();
    assert_eq!(offsets.log_end_offset, 4);
    assert_eq!(offsets.high_watermark, 4);
    assert_eq!(offsets.last_stable_offset, 4);
    assert_eq!(offsets.log_start_offset, 0);

    let all = p.read(0, 1 << 20, Isolation::ReadUncommitted).unwrap();
    assert_eq!(
        values(&all.records),
        vec![
            (0, "a".into()),
            (1, "b".into()),
            (2, "c".into()),
            (3, "d".into())
        ]
    );
    // The batch containing offset 1 starts at 0: returned whole.
    let mid = p.read(1, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(values(&mid.records).first().map(|v| v.0), Some(0));
    // max_bytes smaller than the first batch: exactly that batch.
    let one = p.read(0, 1, Isolation::ReadUncommitted).unwrap();
    assert_eq!(values(&one.records).len(), 3);
    // At the high watermark: empty, no error. Past the log end: out of range.
    assert!(p
        .read(4, 1 << 20, Isolation::ReadUncommitted)
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        p.read(5, 1 << 20, Isolation::ReadUncommitted),
        Err(LogError::OffsetOutOfRange { offset: 5, .. })
    ));
    // The other partition is independent.
    let p0 = log.partition("orders", 0).unwrap();
    assert_eq!(p0.offsets().log_end_offset, 0);
    log.shutdown().unwrap();
}

#[test]
fn data_arrived_fires_when_the_high_watermark_moves() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, overrides(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    block_on(async {
        let notified = log.data_arrived();
        p.append(batch(&["x"], now_ms()), AppendOrigin::Client)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("woken by the flush");
    });
    assert_eq!(p.offsets().high_watermark, 1);
    log.shutdown().unwrap();
}

#[test]
fn page_cache_mode_exposes_data_before_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("fast", 1, overrides(&[("flush.messages", "1000")]), false)
        .unwrap();
    let p = log.partition("fast", 0).unwrap();
    p.append(batch(&["x", "y"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert_eq!(p.offsets().high_watermark, 2);
    block_on(p.wait_durable(2)).unwrap();
    log.shutdown().unwrap();
}

#[test]
fn topics_persist_across_restart_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let (id, expected) = {
        let log = open(dir.path(), &[]);
        let info = log
            .create_topic("keep", 3, overrides(&[("retention.ms", "-1")]), false)
            .unwrap();
        log.create_topic(
            "__consumer_offsets",
            1,
            overrides(&[("cleanup.policy", "compact")]),
            true,
        )
        .unwrap();
        let p = log.partition("keep", 2).unwrap();
        for i in 0..10 {
            p.append(batch(&[&format!("v{i}")], now_ms()), AppendOrigin::Client)
                .unwrap();
        }
        block_on(p.wait_durable(10)).unwrap();
        let expected = values(
            &p.read(0, 1 << 20, Isolation::ReadUncommitted)
                .unwrap()
                .records,
        );
        log.shutdown().unwrap();
        (info.topic_id, expected)
    };
    assert!(dir.path().join(".kafka_cleanshutdown").exists());
    let meta = std::fs::read_to_string(dir.path().join("keep-2/partition.metadata")).unwrap();
    assert!(meta.starts_with("version: 0\ntopic_id: ") && !meta.ends_with('\n'));
    assert!(dir.path().join("keep-2/00000000000000000000.log").exists());

    let log = open(dir.path(), &[]);
    assert!(!dir.path().join(".kafka_cleanshutdown").exists());
    let info = log.topic("keep").unwrap();
    assert_eq!((info.topic_id, info.partitions), (id, 3));
    assert_eq!(
        info.overrides.get("retention.ms").map(String::as_str),
        Some("-1")
    );
    assert_eq!(log.topic_config("keep").unwrap().retention_ms, -1);
    assert!(log.topic("__consumer_offsets").unwrap().internal);
    assert_eq!(log.topics().len(), 2);
    let p = log.partition("keep", 2).unwrap();
    assert_eq!(p.offsets().log_end_offset, 10);
    assert_eq!(p.offsets().high_watermark, 10);
    assert_eq!(
        values(
            &p.read(0, 1 << 20, Isolation::ReadUncommitted)
                .unwrap()
                .records
        ),
        expected
    );
    let next = p
        .append(batch(&["after"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert_eq!(next.base_offset, 10);
    log.shutdown().unwrap();
}

#[test]
fn topic_admin_operations() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("a", 1, overrides(&[]), false).unwrap();
    assert!(matches!(
        log.create_topic("a", 1, overrides(&[]), false),
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(
        log.create_topic("b", 0, overrides(&[]), false),
        Err(LogError::InvalidPartitions(_))
    ));
    assert!(log
        .create_topic("../evil", 1, overrides(&[]), false)
        .is_err());
    assert!(log
        .create_topic("c", 1, overrides(&[("retention.ms", "x")]), false)
        .is_err());

    log.create_partitions("a", 3).unwrap();
    assert_eq!(log.topic("a").unwrap().partitions, 3);
    assert!(log.partition("a", 2).is_some());
    assert!(matches!(
        log.create_partitions("a", 2),
        Err(LogError::InvalidPartitions(_))
    ));

    log.alter_topic_config("a", overrides(&[("max.message.bytes", "100")]))
        .unwrap();
    assert_eq!(log.topic_config("a").unwrap().max_message_bytes, 100);
    let p = log.partition("a", 0).unwrap();
    assert!(matches!(
        p.append(batch(&["0123456789"; 10], now_ms()), AppendOrigin::Client),
        Err(LogError::BatchTooLarge { .. })
    ));

    p.append(batch(&["x"], now_ms()), AppendOrigin::Client)
        .unwrap();
    log.delete_topic("a").unwrap();
    assert!(log.topic("a").is_none());
    assert!(matches!(
        p.append(batch(&["x"], now_ms()), AppendOrigin::Client),
        Err(LogError::UnknownTopicOrPartition)
    ));
    assert!(matches!(
        log.delete_topic("a"),
        Err(LogError::UnknownTopicOrPartition)
    ));
    assert!(!dir.path().join("a-0").exists());
    // Recreated empty, with a new id.
    log.create_topic("a", 1, overrides(&[]), false).unwrap();
    assert_eq!(log.partition("a", 0).unwrap().offsets().log_end_offset, 0);
    log.shutdown().unwrap();
    let log = open(dir.path(), &[]);
    assert_eq!(log.topics().len(), 1);
    assert_eq!(log.topic("a").unwrap().partitions, 1);
    log.shutdown().unwrap();
}

#[test]
fn validation_refuses_bad_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("v", 1, overrides(&[]), false).unwrap();
    log.create_topic(
        "compacted",
        1,
        overrides(&[("cleanup.policy", "compact")]),
        false,
    )
    .unwrap();
    let p = log.partition("v", 0).unwrap();

    let mut corrupt = batch(&["a"], now_ms()).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        p.append(corrupt.into(), AppendOrigin::Client),
        Err(LogError::CorruptBatch(_))
    ));

    let two = [
        batch(&["a"], now_ms()).to_vec(),
        batch(&["b"], now_ms()).to_vec(),
    ]
    .concat();
    assert!(matches!(
        p.append(two.clone().into(), AppendOrigin::Client),
        Err(LogError::InvalidRecord(_))
    ));
    assert_eq!(
        p.append(two.into(), AppendOrigin::Internal)
            .unwrap()
            .last_offset,
        1
    );

    let mut control = batch(&["a"], now_ms()).to_vec();
    control[22] |= 0x20;
    let crc = crc32c::crc32c(&control[21..]);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        p.append(control.clone().into(), AppendOrigin::Client),
        Err(LogError::InvalidRecord(_))
    ));
    assert!(p.append(control.into(), AppendOrigin::Internal).is_ok());

    let future = now_ms() + 2 * 3_600_000;
    assert!(matches!(
        p.append(batch(&["a"], future), AppendOrigin::Client),
        Err(LogError::RecordsRefused { records })
            if records.len() == 1 && records[0].batch_index == 0
                && records[0].fault == RecordFault::TimestampOutOfBounds
    ));

    assert!(matches!(
        p.append(bytes::Bytes::new(), AppendOrigin::Client),
        Err(LogError::InvalidRecord(_))
    ));
    assert!(matches!(
        p.append(bytes::Bytes::from_static(&[0u8; 20]), AppendOrigin::Client),
        Err(LogError::CorruptBatch(_))
    ));

    let c = log.partition("compacted", 0).unwrap();
    let keyless = {
        use kafka_protocol::records::*;
        let rec = Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: vec![],
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [&rec],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    };
    assert!(matches!(
        c.append(keyless, AppendOrigin::Client),
        Err(LogError::RecordsRefused { records })
            if records.len() == 1 && records[0].batch_index == 0
                && records[0].fault == RecordFault::KeylessOnCompactedTopic
    ));
    assert!(c
        .append(batch(&["keyed"], now_ms()), AppendOrigin::Client)
        .is_ok());
    // Nothing refused reached the log.
    block_on(p.wait_durable(3)).unwrap();
    assert_eq!(p.offsets().log_end_offset, 3);
    log.shutdown().unwrap();
}

#[test]
fn log_append_time_rewrites_the_timestamp_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "lat",
        1,
        overrides(&[("message.timestamp.type", "LogAppendTime")]),
        false,
    )
    .unwrap();
    let p = log.partition("lat", 0).unwrap();
    let before = now_ms();
    let info = p
        .append(batch(&["a", "b"], 5), AppendOrigin::Client)
        .unwrap();
    assert!(info.log_append_time >= before);
    block_on(p.wait_durable(2)).unwrap();
    let read = p.read(0, 1 << 20, Isolation::ReadUncommitted).unwrap();
    let records = decode(&read.records); // the decoder checks the CRC
    assert_eq!(records.len(), 2);
    // Readers take every record's timestamp from maxTimestamp when attribute bit 3 is set.
    let raw = &read.records;
    assert_eq!(raw[22] & 0x08, 0x08);
    assert_eq!(
        i64::from_be_bytes(raw[35..43].try_into().unwrap()),
        info.log_append_time
    );
    assert_eq!(p.max_timestamp().unwrap(), Some((0, info.log_append_time)));
    log.shutdown().unwrap();
}

#[test]
fn rolls_segments_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "roll",
        1,
        overrides(&[("segment.bytes", "2000"), ("index.interval.bytes", "200")]),
        false,
    )
    .unwrap();
    let p = log.partition("roll", 0).unwrap();
    let t0 = now_ms() - 1000;
    for i in 0..100 {
        p.append(
            batch(&[&format!("value-{i:04}-padding-padding")], t0 + i),
            AppendOrigin::Client,
        )
        .unwrap();
    }
    block_on(p.wait_durable(100)).unwrap();
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("roll-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(logs.len() > 3, "segments: {logs:?}");
    assert!(p.sealed_segments().len() >= 3);
    let mut seen = Vec::new();
    let mut next = 0;
    while next < 100 {
        let r = p.read(next, 300, Isolation::ReadUncommitted).unwrap();
        let got = values(&r.records);
        assert!(!got.is_empty());
        for (o, v) in got {
            if o >= next {
                seen.push((o, v));
            }
        }
        next = seen.last().unwrap().0 + 1;
    }
    assert_eq!(seen.len(), 100);
    assert!(seen
        .iter()
        .enumerate()
        .all(|(i, (o, v))| *o == i as i64 && v.starts_with(&format!("value-{i:04}"))));
    // Timestamps: each record's timestamp is t0 + i.
    assert_eq!(
        p.offset_for_timestamp(t0 + 57).unwrap(),
        Some((57, t0 + 57))
    );
    assert_eq!(p.offset_for_timestamp(0).unwrap(), Some((0, t0)));
    assert_eq!(p.offset_for_timestamp(t0 + 1000).unwrap(), None);
    assert_eq!(p.max_timestamp().unwrap(), Some((99, t0 + 99)));
    log.shutdown().unwrap();

    // Indexes of sealed segments are exact and Kafka-shaped: 8-byte entries, increasing.
    let index = std::fs::read(dir.path().join("roll-0/00000000000000000000.index")).unwrap();
    assert!(!index.is_empty() && index.len().is_multiple_of(8));
    let log = open(dir.path(), &[]);
    let p = log.partition("roll", 0).unwrap();
    assert_eq!(
        p.offset_for_timestamp(t0 + 33).unwrap(),
        Some((33, t0 + 33))
    );
    assert_eq!(
        values(&p.read(42, 1, Isolation::ReadUncommitted).unwrap().records)[0].0,
        42
    );
    log.shutdown().unwrap();
}

#[test]
fn retention_and_delete_records_move_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("log.retention.check.interval.ms", "50")];
    let log = open(dir.path(), &settings);
    log.create_topic(
        "ret",
        1,
        overrides(&[("segment.bytes", "500"), ("retention.bytes", "1500")]),
        false,
    )
    .unwrap();
    log.create_topic(
        "old",
        1,
        overrides(&[("segment.bytes", "500"), ("retention.ms", "60000")]),
        false,
    )
    .unwrap();
    log.create_topic("dr", 1, overrides(&[("segment.bytes", "500")]), false)
        .unwrap();
    let p = log.partition("ret", 0).unwrap();
    let old = log.partition("old", 0).unwrap();
    let dr = log.partition("dr", 0).unwrap();
    for i in 0..60 {
        let v = format!("record-{i:03}-xxxxxxxxxxxxxxxxxxxxxxxx");
        p.append(batch(&[&v], now_ms()), AppendOrigin::Client)
            .unwrap();
        // Two hours old: beyond retention.ms but within message.timestamp.before.max.ms.
        old.append(batch(&[&v], now_ms() - 7_200_000), AppendOrigin::Client)
            .unwrap();
        dr.append(batch(&[&v], now_ms()), AppendOrigin::Client)
            .unwrap();
    }
    block_on(p.wait_durable(60)).unwrap();
    block_on(old.wait_durable(60)).unwrap();
    block_on(dr.wait_durable(60)).unwrap();
    // Retention may already have run while the appends went on, so wait for its settled
    // outcome (size within the limit), not just for its first effect.
    let sealed_bytes = || -> u64 { p.sealed_segments().iter().map(|s| s.size).sum() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while (p.offsets().log_start_offset == 0
        || sealed_bytes() > 1500 + 500
        || !old.sealed_segments().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = p.offsets().log_start_offset;
    assert!(start > 0, "retention.bytes moved the log start");
    let total = sealed_bytes();
    assert!(total <= 1500 + 500, "sealed segments hold {total} bytes");
    assert!(matches!(
        p.read(0, 100, Isolation::ReadUncommitted),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        values(
            &p.read(start, 1, Isolation::ReadUncommitted)
                .unwrap()
                .records
        )[0]
        .0,
        start
    );
    // retention.ms removed every sealed segment of "old"; the active one stays.
    let old_start = old.offsets().log_start_offset;
    assert!(
        old_start > 0 && old.sealed_segments().is_empty(),
        "old start {old_start}"
    );

    // delete_records_before: inside a segment, beyond the high watermark refused.
    assert!(matches!(
        dr.delete_records_before(61),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(dr.delete_records_before(37).unwrap(), 37);
    assert_eq!(dr.delete_records_before(10).unwrap(), 37);
    assert!(matches!(
        dr.read(36, 100, Isolation::ReadUncommitted),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let first = values(&dr.read(37, 1, Isolation::ReadUncommitted).unwrap().records);
    assert!(first.iter().any(|r| r.0 == 37));
    log.shutdown().unwrap();

    let log = open(dir.path(), &settings);
    assert_eq!(
        log.partition("dr", 0).unwrap().offsets().log_start_offset,
        37
    );
    assert_eq!(
        log.partition("ret", 0).unwrap().offsets().log_start_offset,
        start
    );
    log.shutdown().unwrap();
}

#[test]
fn producer_ids_are_never_reused_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..3 {
        let log = open(dir.path(), &[]);
        for _ in 0..5 {
            assert!(seen.insert(log.allocate_producer_id().unwrap()));
        }
        if round == 1 {
            log.halt();
        } else {
            log.shutdown().unwrap();
        }
    }
    assert_eq!(seen.len(), 15);
}

fn open_faulty(dir: &std::path::Path) -> (Arc<LogManager>, Arc<FaultyIo>) {
    let io = Arc::new(FaultyIo::new());
    let log = LogManager::open_with_io(
        LogManagerOptions {
            data_dir: dir.to_path_buf(),
            broker: broker(&[]),
        },
        io.clone(),
    )
    .unwrap();
    (log, io)
}

#[test]
fn a_failed_write_leaves_nothing_behind_and_the_log_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (log, io) = open_faulty(dir.path());
    log.create_topic("f", 1, overrides(&[]), false).unwrap();
    let p = log.partition("f", 0).unwrap();
    p.append(batch(&["ok1"], now_ms()), AppendOrigin::Client)
        .unwrap();
    block_on(p.wait_durable(1)).unwrap();
    for fault in [Fault::WriteEio, Fault::WriteNoSpace, Fault::ShortWrite] {
        io.set(fault);
        assert!(matches!(
            p.append(batch(&["lost"], now_ms()), AppendOrigin::Client),
            Err(LogError::Io(_))
        ));
        assert_eq!(p.offsets().log_end_offset, 1);
    }
    io.set(Fault::None);
    let info = p
        .append(batch(&["ok2"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert_eq!(info.base_offset, 1);
    block_on(p.wait_durable(2)).unwrap();
    assert_eq!(
        values(
            &p.read(0, 1 << 20, Isolation::ReadUncommitted)
                .unwrap()
                .records
        ),
        vec![(0, "ok1".into()), (1, "ok2".into())]
    );
    log.shutdown().unwrap();
    let log = open(dir.path(), &[]);
    let p = log.partition("f", 0).unwrap();
    assert_eq!(
        values(
            &p.read(0, 1 << 20, Isolation::ReadUncommitted)
                .unwrap()
                .records
        )
        .len(),
        2
    );
    log.shutdown().unwrap();
}

#[test]
fn a_failed_fsync_is_never_acknowledged_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, io) = open_faulty(dir.path());
    log.create_topic("s", 1, overrides(&[]), false).unwrap();
    let p = log.partition("s", 0).unwrap();
    p.append(batch(&["durable"], now_ms()), AppendOrigin::Client)
        .unwrap();
    block_on(p.wait_durable(1)).unwrap();
    io.set(Fault::SyncEio);
    p.append(batch(&["maybe"], now_ms()), AppendOrigin::Client)
        .unwrap();
    assert!(matches!(block_on(p.wait_durable(2)), Err(LogError::Io(_))));
    assert_eq!(p.offsets().high_watermark, 1);
    assert!(matches!(
        p.append(batch(&["x"], now_ms()), AppendOrigin::Client),
        Err(LogError::Io(_))
    ));
    assert_eq!(
        values(
            &p.read(0, 1 << 20, Isolation::ReadUncommitted)
                .unwrap()
                .records
        ),
        vec![(0, "durable".into())]
    );
    assert!(log.shutdown().is_err());
    io.set(Fault::None);
    drop(log);
    // No clean-shutdown marker: the next start re-validates the tail.
    assert!(!dir.path().join(".kafka_cleanshutdown").exists());
    let log = open(dir.path(), &[]);
    let p = log.partition("s", 0).unwrap();
    assert!(p.offsets().log_end_offset >= 1);
    p.append(batch(&["again"], now_ms()), AppendOrigin::Client)
        .unwrap();
    log.shutdown().unwrap();
}

#[test]
fn segment_ms_rolls_on_record_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("timed", 1, overrides(&[("segment.ms", "1000")]), false)
        .unwrap();
    let p = log.partition("timed", 0).unwrap();
    let now = now_ms();
    p.append(batch(&["old"], now - 5_000), AppendOrigin::Client)
        .unwrap();
    p.append(batch(&["older still"], now - 4_500), AppendOrigin::Client)
        .unwrap();
    assert!(p.sealed_segments().is_empty());
    // More than segment.ms after the segment's first batch: a new segment.
    p.append(batch(&["new"], now), AppendOrigin::Client)
        .unwrap();
    let sealed = p.sealed_segments();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].base_offset, 0);
    assert!(dir.path().join("timed-0/00000000000000000002.log").exists());
    // A snapshot of producer state is written at each roll, named by the new base offset.
    assert!(dir
        .path()
        .join("timed-0/00000000000000000002.snapshot")
        .exists());
    log.shutdown().unwrap();
}

#[test]
fn concurrent_appends_and_reads_see_a_consistent_log() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 100;
    const TOTAL: i64 = (WRITERS * PER_WRITER) as i64;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "busy",
        1,
        overrides(&[("segment.bytes", "4000"), ("index.interval.bytes", "300")]),
        false,
    )
    .unwrap();
    let p = log.partition("busy", 0).unwrap();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let p = p.clone();
            s.spawn(move || {
                for i in 0..PER_WRITER {
                    let info = p
                        .append(
                            batch(&[&format!("w{w}-{i:03}")], now_ms()),
                            AppendOrigin::Client,
                        )
                        .unwrap();
                    block_on(p.wait_durable(info.last_offset + 1)).unwrap();
                }
            });
        }
        for _ in 0..2 {
            let p = p.clone();
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut next = 0;
                let mut last_seen = [-1i64; WRITERS];
                while next < TOTAL {
                    assert!(Instant::now() < deadline, "reader stuck at {next}");
                    let read = p.read(next, 700, Isolation::ReadUncommitted).unwrap();
                    assert!(next <= read.offsets.high_watermark);
                    for (o, v) in values(&read.records) {
                        assert!(
                            o < read.offsets.high_watermark,
                            "read above the high watermark"
                        );
                        if o < next {
                            continue;
                        }
                        assert_eq!(o, next, "offsets are contiguous");
                        let (w, i) = v[1..].split_once('-').unwrap();
                        let (w, i): (usize, i64) = (w.parse().unwrap(), i.parse().unwrap());
                        assert!(i > last_seen[w], "writer {w} order");
                        last_seen[w] = i;
                        next += 1;
                    }
                    if read.records.is_empty() {
                        std::thread::yield_now();
                    }
                }
                assert!(last_seen.iter().all(|&i| i == PER_WRITER as i64 - 1));
            });
        }
    });
    assert_eq!(p.offsets().log_end_offset, TOTAL);
    log.shutdown().unwrap();
}

#[test]
fn aborted_transactions_leave_with_the_segments_that_held_their_markers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, overrides(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(transactional(7, 0, "k", "v", None), AppendOrigin::Internal)
        .unwrap();
    p.append(transactional(7, 0, "", "", Some(0)), AppendOrigin::Internal)
        .unwrap();
    p.roll().unwrap();
    p.append(batch(&["a", "b"], now_ms()), AppendOrigin::Client)
        .unwrap();
    block_on(p.wait_durable(4)).unwrap();
    assert_eq!(p.aborted_transactions(0, i64::MAX).len(), 1);
    // Deleting records inside the second segment removes the first, marker and all.
    assert_eq!(p.delete_records_before(3).unwrap(), 3);
    assert!(p.aborted_transactions(0, i64::MAX).is_empty());
    assert!(!dir
        .path()
        .join("t-0")
        .join(format!("{:020}.txnindex", 0))
        .exists());
    log.shutdown().unwrap();
    let log = open(dir.path(), &[]);
    let p = log.partition("t", 0).unwrap();
    assert!(p.aborted_transactions(0, i64::MAX).is_empty());
}
