//! Storage faults through the log engine's file-I/O seam (`cairn::log::io::FaultyIo`): failed
//! writes (EIO), a full disk (ENOSPC), short writes and failed fsyncs must never be
//! acknowledged, reads must keep working, and the log must accept writes again once the fault
//! clears (for a failed fsync, once an fsync succeeds again, with the log cut back to what was
//! durable). Damage done to segment files while Cairn is down must be found at start-up,
//! reported with the partition and offset, and the rest of the log must stay readable.
//!
//! Uses the log engine's public API only (the handlers map `LogError::Io` to
//! KAFKA_STORAGE_ERROR 56); no network.

mod log_support;

#[allow(dead_code)]
#[path = "../fuzz/engine.rs"]
mod engine;
#[allow(dead_code)]
#[path = "../fuzz/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::config::BrokerConfig;
use cairn::log::io::{Fault, FaultyIo, FileIo, StdIo};
use cairn::log::{AppendOrigin, LogError, LogManager, LogManagerOptions, Partition};
use kafka_protocol::records::Compression;
use log_support::transactional;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(dir: &std::path::Path, io: Arc<dyn FileIo>) -> Arc<LogManager> {
    LogManager::open_with_io(
        LogManagerOptions {
            data_dir: dir.to_path_buf(),
            broker: BrokerConfig::default(),
        },
        io,
    )
    .expect("open log")
}

fn batch(n: usize) -> Bytes {
    Bytes::from(targets::record_batch(n, Compression::None, None))
}

/// Appends and waits until durable, as a Produce with acks=all does before answering.
fn produce(rt: &tokio::runtime::Runtime, p: &Partition, n: usize) -> Result<(i64, i64), LogError> {
    let info = p.append(batch(n), AppendOrigin::Client)?;
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            p.wait_durable(info.last_offset + 1),
        )
        .await
        .map_err(|_| LogError::Io(std::io::Error::other("wait_durable timed out")))?
    })?;
    Ok((info.base_offset, info.last_offset))
}

fn is_storage_error(e: &LogError) -> bool {
    matches!(e, LogError::Io(_))
}

#[test]
fn write_faults_are_refused_reads_go_on_and_writes_resume() {
    let rt = runtime();
    for fault in [Fault::WriteEio, Fault::WriteNoSpace, Fault::ShortWrite] {
        let dir = targets::temp_dir();
        let faulty = Arc::new(FaultyIo::new());
        let log = open(dir.path(), faulty.clone());
        log.create_topic("t", 1, BTreeMap::new(), false)
            .expect("topic");
        let p = log.partition("t", 0).expect("partition");
        let mut acked = vec![produce(&rt, &p, 3).expect("healthy produce")];
        acked.push(produce(&rt, &p, 2).expect("healthy produce"));
        let before = p.offsets();

        faulty.set(fault);
        for _ in 0..3 {
            match p.append(batch(4), AppendOrigin::Client) {
                Err(e) => assert!(is_storage_error(&e), "{fault:?}: wrong error {e}"),
                Ok(info) => panic!("{fault:?}: a failed write was accepted: {info:?}"),
            }
        }
        assert_eq!(
            p.offsets(),
            before,
            "{fault:?}: a failed write moved the offsets"
        );
        // Reads of what was acknowledged keep working during the fault.
        assert_eq!(targets::read_all(&p).expect("read during fault"), acked);

        faulty.set(Fault::None);
        let resumed = produce(&rt, &p, 5).unwrap_or_else(|e| {
            panic!("{fault:?}: writes did not resume after the fault cleared: {e}")
        });
        assert_eq!(
            resumed.0, before.log_end_offset,
            "{fault:?}: the failed writes left a hole or garbage"
        );
        acked.push(resumed);
        assert_eq!(targets::read_all(&p).expect("read after"), acked);

        // And the bytes on disk are a clean log: a crash now recovers exactly this.
        log.halt();
        drop((p, log));
        let log = open(dir.path(), Arc::new(StdIo));
        let p = log.partition("t", 0).expect("partition");
        assert_eq!(
            targets::read_all(&p).expect("read after restart"),
            acked,
            "{fault:?}"
        );
        log.shutdown().expect("shutdown");
    }
}

#[test]
fn failed_fsync_is_not_acknowledged_and_the_partition_comes_back_when_the_disk_does() {
    let capture = captured();
    let rt = runtime();
    let dir = targets::temp_dir();
    let faulty = Arc::new(FaultyIo::new());
    let log = open(dir.path(), faulty.clone());
    log.create_topic("fsync-fault", 1, BTreeMap::new(), false)
        .expect("topic");
    let p = log.partition("fsync-fault", 0).expect("partition");
    let first = produce(&rt, &p, 3).expect("healthy produce");
    let durable = p.offsets().high_watermark;

    faulty.set(Fault::SyncEio);
    let err = produce(&rt, &p, 2).expect_err("an append whose fsync failed was acknowledged");
    assert!(is_storage_error(&err), "wrong error {err}");
    assert_eq!(
        p.offsets().high_watermark,
        durable,
        "consumers can see a record that was never made durable"
    );
    assert_eq!(
        targets::read_all(&p)
            .expect("reads during the fault")
            .first(),
        Some(&first)
    );
    // While the disk keeps failing fsyncs, the periodic retry leaves the partition offline.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&capture.lock().expect("lock"))
        .lines()
        .any(|l| l.contains("still offline") && l.contains("fsync-fault"))
    {
        assert!(
            Instant::now() < deadline,
            "no retry of the offline partition"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        p.append(batch(1), AppendOrigin::Client).is_err(),
        "the partition took writes while fsync still fails"
    );

    // Once the disk is healthy, the partition comes back without a restart. The refused
    // records were never acknowledged nor visible: the log continues at the durable end.
    faulty.set(Fault::None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        match produce(&rt, &p, 2) {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                assert!(is_storage_error(&e), "wrong error {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the partition did not come back after the fault cleared: {e}"),
        }
    };
    assert_eq!(next.0, durable);
    assert_eq!(targets::read_all(&p).expect("reads"), [first, next]);

    log.halt();
    drop((p, log));
    let log = open(dir.path(), Arc::new(StdIo));
    let p = log.partition("fsync-fault", 0).expect("partition");
    assert_eq!(
        targets::read_all(&p).expect("read after restart"),
        [first, next],
        "an acknowledged record was lost"
    );
    log.shutdown().expect("shutdown");
}

// ------------------------------------------------------------------ damage while down

/// Every log line of this test binary, for checking what start-up reported.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (acknowledged batches, batches read back after start-up, start-up log lines).
type Damaged = (Vec<(i64, i64)>, Vec<(i64, i64)>, String);

/// Writes 6 acknowledged batches of 2 records, crashes (or stops cleanly when `clean`), damages
/// the segment with `damage` (given the batch positions), restarts; returns (acked, recovered,
/// start-up log lines).
fn damage_while_down(clean: bool, damage: impl FnOnce(&std::path::Path, &[u64])) -> Damaged {
    let capture = captured();
    let rt = runtime();
    let dir = targets::temp_dir();
    let log = open(dir.path(), Arc::new(StdIo));
    log.create_topic("t", 1, BTreeMap::new(), false)
        .expect("topic");
    let p = log.partition("t", 0).expect("partition");
    let mut acked = Vec::new();
    let mut positions = Vec::new();
    let segment = dir.path().join("t-0").join("00000000000000000000.log");
    for _ in 0..6 {
        positions.push(std::fs::metadata(&segment).expect("segment").len());
        acked.push(produce(&rt, &p, 2).expect("produce"));
    }
    if clean {
        log.shutdown().expect("clean shutdown");
    } else {
        log.halt();
    }
    drop((p, log));
    damage(&segment, &positions);
    let log = open(dir.path(), Arc::new(StdIo));
    targets::wait_verified(&log).expect("background verification");
    let p = log.partition("t", 0).expect("partition");
    let recovered = targets::read_all(&p).expect("the log reads back after recovery");
    let dir_name = dir.path().display().to_string();
    let lines: String = String::from_utf8_lossy(&capture.lock().expect("lock"))
        .lines()
        .filter(|l| l.contains(&dir_name))
        .map(|l| format!("{l}\n"))
        .collect();
    log.shutdown().expect("shutdown");
    (acked, recovered, lines)
}

fn truncate_last_batch(segment: &std::path::Path, positions: &[u64]) {
    // Cut the file in the middle of the last batch.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open");
    f.set_len(positions[5] + 20).expect("truncate");
}

fn flip_a_byte_of_the_fourth_batch(segment: &std::path::Path, positions: &[u64]) {
    // Flip one byte inside the records of the fourth batch (offsets 6 and 7).
    let mut bytes = std::fs::read(segment).expect("read");
    let at = positions[3] as usize + 70;
    bytes[at] ^= 0x40;
    std::fs::write(segment, bytes).expect("write");
}

#[test]
fn truncated_segment_is_detected_and_reported_at_startup() {
    for clean in [false, true] {
        let (acked, recovered, lines) = damage_while_down(clean, truncate_last_batch);
        assert_eq!(
            recovered[..5],
            acked[..5],
            "clean stop {clean}: the batches before the cut must stay readable"
        );
        if clean {
            // Offsets 10 and 11 were durable (a clean stop records the log end): an empty batch
            // now spans them, so consumers step over the loss and new records never reuse them.
            assert_eq!(recovered[5..], [(10, 11)]);
        } else {
            // After a crash the recovery point may lag: the cut tail counts as torn and is
            // truncated, as in Kafka.
            assert_eq!(recovered.len(), 5);
        }
        assert!(
            lines.contains("t-0") && lines.contains("offset=10"),
            "clean stop {clean}: start-up did not report the damage with partition and offset:\n{lines}"
        );
    }
}

#[test]
fn corrupted_batch_is_detected_by_crc_and_reported_at_startup() {
    for clean in [false, true] {
        let (acked, recovered, lines) = damage_while_down(clean, flip_a_byte_of_the_fourth_batch);
        // Only the damaged batch is lost; everything after it stays readable at its offsets.
        let mut expected = acked.clone();
        expected.remove(3);
        assert_eq!(
            recovered, expected,
            "clean stop {clean}: every batch but the damaged one must stay readable"
        );
        assert!(
            lines.contains("CRC") && lines.contains("t-0") && lines.contains("offset=6"),
            "clean stop {clean}: start-up did not report the CRC damage with partition and offset:\n{lines}"
        );
        assert!(
            lines.contains("moved aside"),
            "clean stop {clean}: the damaged bytes were not moved aside:\n{lines}"
        );
    }
}

/// Recovery takes the aborted transactions below the newest producer snapshot from the
/// `.txnindex` files alone, so sealing a segment must make its index durable before the
/// snapshot written at the roll: with fsyncs failing, the roll of a segment holding an abort
/// fails (a roll does no other fsync itself; the flusher syncs the sealed files later), and the
/// abort is still known after a restart.
#[test]
fn a_sealed_segments_aborted_transaction_index_is_synced_before_the_roll_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = Arc::new(FaultyIo::new());
    let log = open(dir.path(), faulty.clone());
    let fsync_each = BTreeMap::from([("flush.messages".to_string(), "1".to_string())]);
    log.create_topic("t", 1, fsync_each, false).expect("create");
    let p = log.partition("t", 0).expect("partition");
    let rt = runtime();

    p.append(transactional(7, 0, "k", "v", None), AppendOrigin::Internal)
        .expect("transactional batch");
    p.append(transactional(7, 0, "", "", Some(0)), AppendOrigin::Internal)
        .expect("abort marker");
    // Everything durable first, so no background flush runs while fsyncs fail.
    rt.block_on(p.wait_durable(2)).expect("durable");
    let index = dir.path().join("t-0").join(format!("{:020}.txnindex", 0));
    assert!(
        index.exists(),
        "the abort is indexed in {}",
        index.display()
    );

    faulty.set(Fault::SyncEio);
    let roll = p.roll();
    faulty.set(Fault::None);
    assert!(
        matches!(roll, Err(LogError::Io(_))),
        "the roll must sync the .txnindex and report its failure, got {roll:?}"
    );
    p.roll().expect("roll once fsyncs work");
    assert_eq!(p.offsets().log_end_offset, 2);
    log.shutdown().expect("shutdown");

    let log = open(dir.path(), Arc::new(StdIo));
    let p = log.partition("t", 0).expect("partition after restart");
    let aborted = p.aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (0, 1));
}
