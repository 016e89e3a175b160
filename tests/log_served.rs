//! Reads for Fetch responses served from the segment files (`Partition::read_served`): the same
//! batches as a copied read, file ranges only where the CRCs were checked since the segment was
//! opened, damage after a restart never served, and a range that outlives its segment's files.

mod log_support;

use std::fs;
use std::io::Write;

use bytes::Bytes;
use cairn::log::{AppendOrigin, Isolation, Partition, Served};
use log_support::*;

/// The start-up verification setting.
const VERIFY: &str = "cairn.log.verify.on.startup";

/// The bytes a served read stands for, and whether they came from a file range.
fn materialize(served: &Served) -> (Bytes, bool) {
    match served {
        Served::Bytes(b) => (b.clone(), false),
        Served::File(slice) => {
            let mut buf = vec![0u8; slice.len];
            let mut done = 0;
            while done < buf.len() {
                let n = slice
                    .file
                    .read_at(&mut buf[done..], slice.position + done as u64)
                    .unwrap();
                assert!(n > 0, "file range past the end of its file");
                done += n;
            }
            (Bytes::from(buf), true)
        }
    }
}

fn fill(p: &Partition, n: usize) {
    for i in 0..n {
        let values: Vec<String> = (0..(i % 4 + 1)).map(|j| format!("value-{i}-{j}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        p.append(batch(&values, now_ms()), AppendOrigin::Client)
            .unwrap();
    }
    let end = p.offsets().log_end_offset;
    block_on(p.wait_durable(end)).unwrap();
}

/// Every offset and a spread of limits, both limit modes: the served bytes equal the copied
/// read's. Returns how many reads came from file ranges.
fn compare_everywhere(p: &Partition) -> usize {
    let end = p.offsets().log_end_offset;
    let mut from_files = 0;
    for offset in 0..=end {
        for limit in [0usize, 1, 80, 300, 1000, 1 << 20] {
            for may_exceed in [true, false] {
                let copied = if may_exceed {
                    p.read(offset, limit, Isolation::ReadUncommitted)
                } else {
                    p.read_within_limit(offset, limit, Isolation::ReadUncommitted)
                }
                .unwrap();
                let served = p
                    .read_served(offset, limit, may_exceed, Isolation::ReadUncommitted)
                    .unwrap();
                let (bytes, file) = materialize(&served.records);
                assert_eq!(
                    bytes, copied.records,
                    "offset {offset}, limit {limit}, may exceed {may_exceed}"
                );
                assert_eq!(served.offsets, copied.offsets);
                from_files += usize::from(file);
            }
        }
    }
    from_files
}

#[test]
fn served_reads_are_the_copied_reads_and_appends_are_served_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[(VERIFY, "off")]);
    let segment = [("segment.bytes", "900"), ("index.interval.bytes", "100")];
    log.create_topic("z", 1, overrides(&segment), false)
        .unwrap();
    let p = log.partition("z", 0).unwrap();
    fill(&p, 40);
    assert!(p.sealed_segments().len() >= 3);
    // Appended batches were checked on the way in: served from the files at once.
    assert!(compare_everywhere(&p) > 0);
    let r = p
        .read_served(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap();
    assert!(matches!(r.records, Served::File(_)), "{:?}", r.records);
    log.shutdown().unwrap();

    // After a restart nothing is trusted (here without the background verification, which
    // would check everything): the first read of a range copies and checks it, the next one of
    // the same range is served from the file.
    let log = open(dir.path(), &[(VERIFY, "off")]);
    let p = log.partition("z", 0).unwrap();
    let first = p
        .read_served(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap();
    assert!(matches!(first.records, Served::Bytes(_)));
    let again = p
        .read_served(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap();
    assert!(matches!(again.records, Served::File(_)));
    assert_eq!(materialize(&again.records).0, materialize(&first.records).0);
    compare_everywhere(&p);
    log.shutdown().unwrap();
}

#[test]
fn damage_after_a_restart_is_never_served_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("d", 1, overrides(&[("segment.bytes", "400")]), false)
        .unwrap();
    let p = log.partition("d", 0).unwrap();
    fill(&p, 20);
    let base = p.sealed_segments()[1].base_offset;
    let path = p.sealed_segments()[1].log_path.clone();
    log.shutdown().unwrap();
    let log = open(dir.path(), &[(VERIFY, "off")]);
    let p = log.partition("d", 0).unwrap();
    // A bit flips in a sealed segment while Cairn runs, after start-up.
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    // Twice: the first read finds the damage and repairs the segment, the second (from the
    // file, if it can) must not serve it either.
    for _ in 0..2 {
        let r = p
            .read_served(base, 1 << 20, true, Isolation::ReadUncommitted)
            .unwrap();
        let (served, _) = materialize(&r.records);
        for (_, value, _) in decode(&served) {
            assert!(value.starts_with("value-"), "{value}");
        }
    }
    compare_everywhere(&p);
    log.shutdown().unwrap();
}

#[test]
fn a_file_range_stays_readable_after_its_segment_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("r", 1, overrides(&[("segment.bytes", "400")]), false)
        .unwrap();
    let p = log.partition("r", 0).unwrap();
    fill(&p, 20);
    let served = p
        .read_served(0, 1 << 20, true, Isolation::ReadUncommitted)
        .unwrap();
    assert!(matches!(served.records, Served::File(_)));
    let (before, _) = materialize(&served.records);
    let first_segment = p.sealed_segments()[0].log_path.clone();
    let next_base = p.sealed_segments()[1].base_offset;
    p.delete_records_before(next_base).unwrap();
    assert!(!first_segment.exists(), "the segment's file should be gone");
    let (after, _) = materialize(&served.records);
    assert_eq!(before, after);
    assert!(!decode(&after).is_empty());
    log.shutdown().unwrap();
}
