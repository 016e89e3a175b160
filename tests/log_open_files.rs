//! Years of segments on one machine (RELIABILITY.md, W8): the log engine under an open-files
//! limit of 1024 and a small cap of open segment files (`cairn.log.open.files.max`, which is
//! process-wide, as the limit is). Many partitions, and one partition of many segments, are
//! written, reopened and read back whole, while the descriptors the process holds (counted in
//! `/proc/self/fd`) stay bounded. `CAIRN_TEST_SEGMENTS` sets the segment count of the second test
//! (10,000 by default; `CAIRN_TEST_SEGMENTS=100000 cargo test --release --test log_open_files`
//! is the full run whose figures RELIABILITY.md records).

mod log_support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn::log::{open_files, AppendOrigin, Isolation, LogManager, Partition};
use log_support::*;

/// The cap on open segment files in this process.
const CAP: usize = 32;
/// Descriptors beyond the cap a test may see: reads and flushes in flight, checkpoints, the
/// directory syncs, the test harness.
const SLACK: usize = 24;

/// The two tests count the process's descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The limit a new user's shell gives, and the small cap, for the whole process.
fn limit_process() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 1024.min(hard), hard).unwrap();
    open_files::set_capacity(CAP);
}

/// Every record of `p` from offset 0: (offset, value).
fn read_all(p: &Partition) -> Vec<(i64, String)> {
    let end = p.offsets().high_watermark;
    let mut out = Vec::new();
    let mut next = 0;
    while next < end {
        let read = p.read(next, 1 << 20, Isolation::ReadUncommitted).unwrap();
        let records = decode(&read.records);
        assert!(!records.is_empty(), "no progress at offset {next}");
        for (offset, value, _) in records {
            if offset >= next {
                out.push((offset, value));
            }
        }
        next = out.last().unwrap().0 + 1;
    }
    out
}

fn durable(p: &Arc<Partition>) {
    let end = p.offsets().log_end_offset;
    block_on(p.wait_durable(end)).unwrap();
}

fn reopen(dir: &std::path::Path, log: Arc<LogManager>) -> Arc<LogManager> {
    log.shutdown().unwrap();
    drop(log);
    open(dir, &[])
}

#[test]
fn many_partitions_stay_readable_with_few_open_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    limit_process();
    let partitions = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let before = open_fds();
    let log = open(dir.path(), &[]);
    log.create_topic("wide", partitions, overrides(&[]), false)
        .unwrap();
    for i in 0..partitions {
        let p = log.partition("wide", i).unwrap();
        for round in 0..2 {
            let value = format!("p{i}-{round}");
            p.append(batch(&[&value], now_ms()), AppendOrigin::Client)
                .unwrap();
        }
    }
    for i in 0..partitions {
        durable(&log.partition("wide", i).unwrap());
    }
    let written = open_fds() - before;
    assert!(
        written <= CAP + SLACK,
        "{written} descriptors open after writing {partitions} partitions (cap {CAP})"
    );
    assert!(open_files::open_count() <= CAP);

    let log = reopen(dir.path(), log);
    for i in (0..partitions).rev() {
        let p = log.partition("wide", i).unwrap();
        let want = vec![(0, format!("p{i}-0")), (1, format!("p{i}-1"))];
        assert_eq!(read_all(&p), want, "partition {i}");
    }
    let reading = open_fds() - before;
    assert!(
        reading <= CAP + SLACK,
        "{reading} descriptors open after reading {partitions} partitions (cap {CAP})"
    );
    log.shutdown().unwrap();
}

#[test]
fn a_partition_of_many_segments_opens_and_serves() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    limit_process();
    let segments: i64 = std::env::var("CAIRN_TEST_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let before = open_fds();
    let log = open(dir.path(), &[]);
    log.create_topic("long", 1, overrides(&[("segment.bytes", "14")]), false)
        .unwrap();
    log.shutdown().unwrap();
    drop(log);
    // Rolling through the API lists the partition directory at each roll (producer snapshots),
    // so a long history is laid down directly: one segment per record, as `segment.bytes=14`
    // leaves it, without indexes (the first read of a segment rebuilds them).
    let part = dir.path().join("long-0");
    for entry in std::fs::read_dir(&part).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ["log", "index", "timeindex"].contains(&ext) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let started = Instant::now();
    for i in 0..segments {
        let mut bytes = batch(&[&format!("r{i}")], now_ms()).to_vec();
        bytes[..8].copy_from_slice(&i.to_be_bytes());
        std::fs::write(part.join(format!("{i:020}.log")), bytes).unwrap();
    }
    eprintln!("laid down {segments} segments in {:?}", started.elapsed());

    let started = Instant::now();
    let log = open(dir.path(), &[]);
    eprintln!("opened in {:?}", started.elapsed());
    let p = log.partition("long", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, segments);
    let started = Instant::now();
    let all = read_all(&p);
    eprintln!("read {} records in {:?}", all.len(), started.elapsed());
    assert_eq!(all.len() as i64, segments);
    for (i, (offset, value)) in all.iter().enumerate() {
        assert_eq!(
            (*offset, value.as_str()),
            (i as i64, format!("r{i}").as_str())
        );
    }
    // Random access: each read lands in its own segment.
    let probes: Vec<i64> = (0..segments).step_by(997).collect();
    for &i in probes.iter().rev() {
        let read = p.read(i, 1, Isolation::ReadUncommitted).unwrap();
        assert_eq!(decode(&read.records)[0].1, format!("r{i}"));
    }
    // New records still go to the end, after a restart too.
    let started = Instant::now();
    p.append(batch(&["last"], now_ms()), AppendOrigin::Client)
        .unwrap();
    durable(&p);
    eprintln!("appended in {:?}", started.elapsed());
    let reading = open_fds() - before;
    assert!(
        reading <= CAP + SLACK,
        "{reading} descriptors after reading"
    );
    eprintln!(
        "descriptors held by the log: {reading}; files reopened so far: {}; {}",
        open_files::reopens(),
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("")
    );
    drop(p);
    let started = Instant::now();
    log.shutdown().unwrap();
    eprintln!("shut down in {:?}", started.elapsed());
    let log = reopen(dir.path(), log);
    eprintln!("restarted in {:?}", started.elapsed());
    let p = log.partition("long", 0).unwrap();
    let last = p.read(segments, 1, Isolation::ReadUncommitted).unwrap();
    assert_eq!(decode(&last.records)[0].1, "last");
    log.shutdown().unwrap();
}
