//! Start-up recovery of the log engine: torn tails, corrupt batches, missing indexes, leftover
//! and swap files, and recovery bounded by the recovery point.

mod log_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn::log::{AppendOrigin, Isolation};
use log_support::*;

fn seg(dir: &Path, topic: &str, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{topic}-0/{base:020}.{ext}"))
}

fn read_all(p: &cairn::log::Partition) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut next = p.offsets().log_start_offset;
    let end = p.offsets().high_watermark;
    while next < end {
        let r = p.read(next, 4096, Isolation::ReadUncommitted).unwrap();
        let got: Vec<_> = decode(&r.records)
            .into_iter()
            .filter(|r| r.0 >= next)
            .collect();
        assert!(!got.is_empty(), "read at {next} returned nothing");
        next = got.last().unwrap().0 + 1;
        out.extend(got.into_iter().map(|(o, v, _)| (o, v)));
    }
    out
}

/// Writes `n` single-record batches and stops without a clean shutdown.
fn write_then_crash(
    dir: &Path,
    topic: &str,
    n: usize,
    topic_overrides: &[(&str, &str)],
) -> Vec<u64> {
    let log = open(dir, &[]);
    log.create_topic(topic, 1, overrides(topic_overrides), false)
        .unwrap();
    let p = log.partition(topic, 0).unwrap();
    let mut sizes = Vec::new();
    for i in 0..n {
        let b = batch(&[&format!("v{i}")], now_ms());
        sizes.push(b.len() as u64);
        p.append(b, AppendOrigin::Client).unwrap();
    }
    block_on(p.wait_durable(n as i64)).unwrap();
    log.halt();
    // As if the crash came before the first periodic recovery-point checkpoint: the whole log
    // is above the recovery point and gets validated.
    let _ = fs::remove_file(dir.join("recovery-point-offset-checkpoint"));
    sizes
}

#[test]
fn a_torn_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = write_then_crash(dir.path(), "torn", 5, &[]);
    let log_path = seg(dir.path(), "torn", 0, "log");
    // Half of a sixth batch reached the disk before the crash.
    let partial = batch(&["never acknowledged"], now_ms());
    OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(&partial[..partial.len() / 2])
        .unwrap();

    let log = open(dir.path(), &[]);
    let p = log.partition("torn", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 5);
    assert_eq!(
        fs::metadata(&log_path).unwrap().len(),
        sizes.iter().sum::<u64>()
    );
    assert_eq!(read_all(&p).len(), 5);
    assert_eq!(
        p.append(batch(&["v5"], now_ms()), AppendOrigin::Client)
            .unwrap()
            .base_offset,
        5
    );
    log.shutdown().unwrap();
    let log = open(dir.path(), &[]);
    let p = log.partition("torn", 0).unwrap();
    let all = read_all(&p);
    assert_eq!(all.len(), 6);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, (o, v))| *o == i as i64 && v == &format!("v{i}")));
    log.shutdown().unwrap();
}

#[test]
fn a_corrupt_batch_is_moved_aside_and_the_batches_after_it_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = write_then_crash(dir.path(), "bad", 10, &[]);
    let log_path = seg(dir.path(), "bad", 0, "log");
    let mut bytes = fs::read(&log_path).unwrap();
    let sixth: u64 = sizes[..6].iter().sum();
    bytes[sixth as usize + 70] ^= 0xff; // inside batch 6's records: the CRC no longer holds
    fs::write(&log_path, &bytes).unwrap();

    let log = open(dir.path(), &[]);
    let p = log.partition("bad", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 10);
    assert_eq!(p.offsets().high_watermark, 10);
    let all = read_all(&p);
    assert_eq!(
        all.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 7, 8, 9]
    );
    assert!(all.iter().all(|(o, v)| v == &format!("v{o}")));
    // The damaged batch's bytes are kept for the operator, named by segment and position.
    let aside = dir
        .path()
        .join(format!("bad-0/{:020}.log.damaged-at-{sixth}", 0));
    let damaged = &bytes[sixth as usize..(sixth + sizes[6]) as usize];
    assert_eq!(fs::read(&aside).unwrap(), damaged);
    let next = p.append(batch(&["next"], now_ms()), AppendOrigin::Client);
    assert_eq!(next.unwrap().base_offset, 10);
    log.shutdown().unwrap();
    // A clean restart finds nothing more to repair and the same records.
    let log = open(dir.path(), &[]);
    let p = log.partition("bad", 0).unwrap();
    assert_eq!(read_all(&p).len(), 10);
    log.shutdown().unwrap();
}

#[test]
fn a_corrupt_segment_in_the_middle_of_the_tail_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_then_crash(dir.path(), "mid", 30, &[("segment.bytes", "300")]);
    let mut logs: Vec<i64> = fs::read_dir(dir.path().join("mid-0"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").map(|s| s.parse().unwrap())
        })
        .collect();
    logs.sort();
    assert!(logs.len() >= 4, "{logs:?}");
    let broken = logs[1];
    let path = seg(dir.path(), "mid", broken, "log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x55; // inside the first batch's CRC-covered header
    fs::write(&path, &bytes).unwrap();

    let log = open(dir.path(), &[]);
    let p = log.partition("mid", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 30);
    let offsets: Vec<i64> = read_all(&p).iter().map(|r| r.0).collect();
    let expected: Vec<i64> = (0..30).filter(|&o| o != broken).collect();
    assert_eq!(offsets, expected);
    assert!(seg(dir.path(), "mid", logs[2], "log").exists());
    assert_eq!(
        p.append(batch(&["next"], now_ms()), AppendOrigin::Client)
            .unwrap()
            .base_offset,
        30
    );
    log.shutdown().unwrap();
}

/// Writes `n` single-record batches into segments of `segment_bytes`, stops cleanly, and returns
/// the segment base offsets.
fn write_then_stop(dir: &Path, topic: &str, n: usize, segment_bytes: &str) -> Vec<i64> {
    let log = open(dir, &[]);
    log.create_topic(
        topic,
        1,
        overrides(&[
            ("segment.bytes", segment_bytes),
            ("index.interval.bytes", "1"),
        ]),
        false,
    )
    .unwrap();
    let p = log.partition(topic, 0).unwrap();
    for i in 0..n {
        p.append(batch(&[&format!("v{i}")], now_ms()), AppendOrigin::Client)
            .unwrap();
    }
    log.shutdown().unwrap();
    let mut bases: Vec<i64> = fs::read_dir(dir.join(format!("{topic}-0")))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort();
    bases
}

/// (position, size) of each batch of a segment file.
fn batch_positions(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 12 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        out.push((pos, len + 12));
        pos += len + 12;
    }
    out
}

/// Opens the log and waits for its background verification (the default) to finish.
fn open_verified(dir: &Path, settings: &[(&str, &str)]) -> std::sync::Arc<cairn::log::LogManager> {
    let log = open(dir, settings);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !log.background_verification_done() {
        assert!(
            std::time::Instant::now() < deadline,
            "background verification never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    log
}

fn offsets_of(p: &cairn::log::Partition) -> Vec<i64> {
    read_all(p).iter().map(|r| r.0).collect()
}

#[test]
fn damage_in_a_sealed_segment_after_a_clean_stop_is_found_at_start_up() {
    for mode in ["background", "before-serving"] {
        let dir = tempfile::tempdir().unwrap();
        let bases = write_then_stop(dir.path(), "sealed", 40, "400");
        assert!(bases.len() >= 4, "{bases:?}");
        let path = seg(dir.path(), "sealed", bases[1], "log");
        let mut bytes = fs::read(&path).unwrap();
        let batches = batch_positions(&bytes);
        let (pos, _) = batches[1];
        bytes[pos + 65] ^= 0x10; // a record byte of the segment's second batch
        fs::write(&path, &bytes).unwrap();

        let settings = [("cairn.log.verify.on.startup", mode)];
        let log = if mode == "background" {
            open_verified(dir.path(), &settings)
        } else {
            let log = open(dir.path(), &settings);
            // Repaired before the log was handed out.
            assert_ne!(fs::read(&path).unwrap(), bytes, "{mode}");
            log
        };
        let p = log.partition("sealed", 0).unwrap();
        let lost = bases[1] + 1;
        let expected: Vec<i64> = (0..40).filter(|&o| o != lost).collect();
        assert_eq!(offsets_of(&p), expected, "{mode}");
        assert!(dir
            .path()
            .join(format!("sealed-0/{:020}.log.damaged-at-{pos}", bases[1]))
            .exists());
        // The log goes on: appends, and a clean restart finds nothing left to repair.
        let next = p.append(batch(&["v40"], now_ms()), AppendOrigin::Client);
        assert_eq!(next.unwrap().base_offset, 40);
        log.shutdown().unwrap();
        let repaired = fs::read(&path).unwrap();
        let log = open_verified(dir.path(), &settings);
        assert_eq!(fs::read(&path).unwrap(), repaired, "{mode}");
        log.shutdown().unwrap();
    }
}

#[test]
fn verification_off_leaves_sealed_segments_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bases = write_then_stop(dir.path(), "kafka", 40, "400");
    let path = seg(dir.path(), "kafka", bases[1], "log");
    let mut bytes = fs::read(&path).unwrap();
    let (pos, _) = batch_positions(&bytes)[1];
    bytes[pos + 65] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let log = open(dir.path(), &[("cairn.log.verify.on.startup", "off")]);
    assert_eq!(fs::read(&path).unwrap(), bytes, "not rewritten");
    log.shutdown().unwrap();
}

#[test]
fn a_damaged_base_offset_is_restored_from_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let bases = write_then_stop(dir.path(), "base", 40, "400");
    for (which, value) in [(1usize, 1_000_000i64), (2, 0)] {
        // A huge base offset would hide the batches after it; a small one overlaps the ones
        // before it. Neither is covered by the CRC.
        let path = seg(dir.path(), "base", bases[which], "log");
        let mut bytes = fs::read(&path).unwrap();
        let (pos, _) = batch_positions(&bytes)[2];
        bytes[pos..pos + 8].copy_from_slice(&(bases[which] + value).to_be_bytes());
        fs::write(&path, &bytes).unwrap();
    }
    let log = open_verified(dir.path(), &[]);
    let p = log.partition("base", 0).unwrap();
    assert_eq!(offsets_of(&p), (0..40).collect::<Vec<_>>());
    assert!(read_all(&p).iter().all(|(o, v)| v == &format!("v{o}")));
    assert_eq!(p.offsets().log_end_offset, 40);
    log.shutdown().unwrap();
}

#[test]
fn a_segment_reaching_past_the_next_one_is_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let bases = write_then_stop(dir.path(), "over", 40, "400");
    // The last batch of segment 1 claims offsets of segment 2 and cannot be placed exactly.
    let path = seg(dir.path(), "over", bases[1], "log");
    let mut bytes = fs::read(&path).unwrap();
    let &(pos, _) = batch_positions(&bytes).last().unwrap();
    bytes[pos..pos + 8].copy_from_slice(&(bases[2] + 1).to_be_bytes());
    fs::write(&path, &bytes).unwrap();
    let log = open_verified(dir.path(), &[]);
    let p = log.partition("over", 0).unwrap();
    // Restored: its neighbours leave exactly one offset free before segment 2.
    assert_eq!(offsets_of(&p), (0..40).collect::<Vec<_>>());
    log.shutdown().unwrap();
}

#[test]
fn a_truncated_last_segment_does_not_give_its_offsets_to_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let bases = write_then_stop(dir.path(), "cut", 40, "400");
    let last = *bases.last().unwrap();
    let path = seg(dir.path(), "cut", last, "log");
    let bytes = fs::read(&path).unwrap();
    let batches = batch_positions(&bytes);
    assert!(batches.len() >= 2);
    let (pos, _) = batches[batches.len() - 2];
    fs::write(&path, &bytes[..pos + 30]).unwrap(); // cut inside the next-to-last batch
    let log = open(dir.path(), &[]);
    let p = log.partition("cut", 0).unwrap();
    let kept = last + batches.len() as i64 - 2;
    // Offsets up to 40 were acknowledged and may have been consumed: new records come after.
    assert_eq!(p.offsets().log_end_offset, 40);
    let next = p.append(batch(&["new"], now_ms()), AppendOrigin::Client);
    assert_eq!(next.unwrap().base_offset, 40);
    block_on(p.wait_durable(41)).unwrap();
    let mut expected: Vec<i64> = (0..kept).collect();
    expected.push(40);
    assert_eq!(offsets_of(&p), expected);
    // A consumer at the first lost offset is not stuck: it reads an empty batch spanning the
    // gap, then the new record.
    let r = p.read(kept, 4096, Isolation::ReadUncommitted).unwrap();
    assert_eq!(decode(&r.records).first().map(|r| r.0), Some(40));
    log.shutdown().unwrap();
}

#[test]
fn an_offset_index_that_disagrees_with_the_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let bases = write_then_stop(dir.path(), "ixbad", 40, "400");
    let index = seg(dir.path(), "ixbad", bases[1], "index");
    let mut bytes = fs::read(&index).unwrap();
    assert!(bytes.len() >= 16);
    bytes[12..16].copy_from_slice(&1u32.to_be_bytes()); // the second entry points mid-batch
    fs::write(&index, &bytes).unwrap();
    let log = open_verified(dir.path(), &[]);
    let p = log.partition("ixbad", 0).unwrap();
    assert_eq!(offsets_of(&p), (0..40).collect::<Vec<_>>());
    for o in 0..40 {
        let r = p.read(o, 4096, Isolation::ReadUncommitted).unwrap();
        assert!(
            decode(&r.records).iter().any(|r| r.0 == o),
            "offset {o} readable"
        );
    }
    log.shutdown().unwrap();
}

#[test]
fn missing_indexes_are_rebuilt_identically() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - 10_000;
    {
        let log = open(dir.path(), &[]);
        log.create_topic(
            "ix",
            1,
            overrides(&[("segment.bytes", "3000"), ("index.interval.bytes", "100")]),
            false,
        )
        .unwrap();
        let p = log.partition("ix", 0).unwrap();
        for i in 0..60 {
            p.append(
                batch(&[&format!("value-{i:03}")], t0 + i * 10),
                AppendOrigin::Client,
            )
            .unwrap();
        }
        log.shutdown().unwrap();
    }
    let index = seg(dir.path(), "ix", 0, "index");
    let time_index = seg(dir.path(), "ix", 0, "timeindex");
    let original = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
    assert!(!original.0.is_empty() && !original.1.is_empty());
    fs::remove_file(&index).unwrap();
    fs::remove_file(&time_index).unwrap();

    let log = open(dir.path(), &[]);
    let p = log.partition("ix", 0).unwrap();
    assert_eq!(read_all(&p).len(), 60);
    assert_eq!(
        p.offset_for_timestamp(t0 + 205).unwrap(),
        Some((21, t0 + 210))
    );
    assert_eq!(
        (fs::read(&index).unwrap(), fs::read(&time_index).unwrap()),
        original
    );
    log.shutdown().unwrap();
}

#[test]
fn recovery_scans_only_from_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), &[]);
        log.create_topic("rp", 1, overrides(&[("segment.bytes", "300")]), false)
            .unwrap();
        let p = log.partition("rp", 0).unwrap();
        for i in 0..20 {
            p.append(batch(&[&format!("v{i}")], now_ms()), AppendOrigin::Client)
                .unwrap();
        }
        log.shutdown().unwrap(); // recovery point = 20
    }
    let checkpoint =
        fs::read_to_string(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    assert!(checkpoint.contains("rp 0 20"), "{checkpoint}");
    // With `unflushed` verification (Kafka's behaviour), damage below the recovery point is not
    // looked at (it was fsynced and checkpointed); a torn tail above it is.
    let first = seg(dir.path(), "rp", 0, "log");
    let mut bytes = fs::read(&first).unwrap();
    bytes[70] ^= 1;
    fs::write(&first, &bytes).unwrap();
    let kafka = [("cairn.log.verify.on.startup", "off")];
    {
        let log = open(dir.path(), &kafka);
        let p = log.partition("rp", 0).unwrap();
        p.append(batch(&["v20"], now_ms()), AppendOrigin::Client)
            .unwrap();
        block_on(p.wait_durable(21)).unwrap();
        log.halt();
    }
    let active = fs::read_dir(dir.path().join("rp-0"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .strip_suffix(".log")
                .map(|s| s.parse::<i64>().unwrap())
        })
        .max()
        .unwrap();
    OpenOptions::new()
        .append(true)
        .open(seg(dir.path(), "rp", active, "log"))
        .unwrap()
        .write_all(&[0, 0, 0, 0, 0, 0, 0, 21, 0, 0])
        .unwrap();
    let log = open(dir.path(), &kafka);
    let p = log.partition("rp", 0).unwrap();
    assert_eq!(p.offsets().log_end_offset, 21);
    assert_eq!(
        fs::read(&first).unwrap(),
        bytes,
        "the first segment was not rewritten"
    );
    log.shutdown().unwrap();
}

#[test]
fn leftover_files_are_removed_and_swaps_completed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), &[]);
        log.create_topic("sw", 1, overrides(&[("segment.bytes", "300")]), false)
            .unwrap();
        let p = log.partition("sw", 0).unwrap();
        for i in 0..20 {
            p.append(batch(&[&format!("v{i}")], now_ms()), AppendOrigin::Client)
                .unwrap();
        }
        block_on(p.wait_durable(20)).unwrap();
        let sealed = p.sealed_segments();
        assert!(sealed.len() >= 2);
        // The cleaner hook: an identity "cleaning" of the first sealed segment.
        let base = sealed[0].base_offset;
        fs::copy(
            &sealed[0].log_path,
            seg(dir.path(), "sw", base, "log.cleaned"),
        )
        .unwrap();
        p.replace_segments(&[base]).unwrap();
        assert!(!seg(dir.path(), "sw", base, "log.cleaned").exists());
        assert_eq!(read_all(&p).len(), 20);
        log.shutdown().unwrap();
    }
    let sealed_base = {
        let mut bases: Vec<i64> = fs::read_dir(dir.path().join("sw-0"))
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .strip_suffix(".log")
                    .map(|s| s.parse().unwrap())
            })
            .collect();
        bases.sort();
        bases[1]
    };
    // A crash mid-swap: the .swap is complete, the old segment still present; plus leftovers.
    fs::copy(
        seg(dir.path(), "sw", sealed_base, "log"),
        seg(dir.path(), "sw", sealed_base, "log.swap"),
    )
    .unwrap();
    fs::write(seg(dir.path(), "sw", 0, "log.deleted"), b"junk").unwrap();
    fs::write(seg(dir.path(), "sw", 0, "log.cleaned"), b"junk").unwrap();
    let log = open(dir.path(), &[]);
    let p = log.partition("sw", 0).unwrap();
    assert!(!seg(dir.path(), "sw", sealed_base, "log.swap").exists());
    assert!(!seg(dir.path(), "sw", 0, "log.deleted").exists());
    assert!(!seg(dir.path(), "sw", 0, "log.cleaned").exists());
    let all = read_all(&p);
    assert_eq!(all.len(), 20);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, (o, v))| *o == i as i64 && v == &format!("v{i}")));
    log.shutdown().unwrap();
}

#[test]
fn partition_directories_of_unknown_topics_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("ghost-0")).unwrap();
    fs::write(dir.path().join("ghost-0/00000000000000000000.log"), b"").unwrap();
    let log = open(dir.path(), &[]);
    assert!(log.topics().is_empty());
    assert!(!dir.path().join("ghost-0").exists());
    log.create_topic("ghost", 1, overrides(&[]), false).unwrap();
    assert_eq!(
        log.partition("ghost", 0).unwrap().offsets().log_end_offset,
        0
    );
    log.shutdown().unwrap();
}

#[test]
fn damage_while_running_is_caught_on_read_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "live",
        1,
        overrides(&[("segment.bytes", "400"), ("index.interval.bytes", "1")]),
        false,
    )
    .unwrap();
    let p = log.partition("live", 0).unwrap();
    for i in 0..40 {
        p.append(batch(&[&format!("v{i}")], now_ms()), AppendOrigin::Client)
            .unwrap();
    }
    block_on(p.wait_durable(40)).unwrap();
    // A bit flips in a sealed segment while Cairn runs.
    let base = p.sealed_segments()[1].base_offset;
    let path = seg(dir.path(), "live", base, "log");
    let mut bytes = fs::read(&path).unwrap();
    let (pos, _) = batch_positions(&bytes)[1];
    bytes[pos + 65] ^= 0x08;
    // In place, as bit rot would be: the broker's open file sees it.
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
    // And in another, a damaged length field: without repair, reads would skip the rest of it.
    let base2 = p.sealed_segments()[2].base_offset;
    let path2 = seg(dir.path(), "live", base2, "log");
    let mut bytes2 = fs::read(&path2).unwrap();
    let (pos2, _) = batch_positions(&bytes2)[1];
    bytes2[pos2 + 10] ^= 0x40;
    let mut file = fs::OpenOptions::new().write(true).open(&path2).unwrap();
    file.write_all(&bytes2).unwrap();
    file.sync_all().unwrap();
    let lost = base + 1;
    // Reads before the damage stop short of it; the damaged batch is never served; the read at
    // it repairs the segment and serves what follows.
    let r = p.read(base, 1 << 20, Isolation::ReadUncommitted).unwrap();
    let got: Vec<i64> = decode(&r.records).iter().map(|r| r.0).collect();
    assert!(!got.contains(&lost), "{got:?}");
    let expected: Vec<i64> = (0..40).filter(|&o| o != lost && o != base2 + 1).collect();
    assert_eq!(offsets_of(&p), expected);
    assert!(dir
        .path()
        .join(format!("live-0/{base:020}.log.damaged-at-{pos}"))
        .exists());
    log.shutdown().unwrap();
}
