//! The cleaner on a real partition: latest value per key across merged segments, tombstones
//! until their delete horizon, multiple passes under a tiny key map, every codec written back,
//! an idempotent producer's last batch kept, `compact,delete` retention alongside, the checkpoint
//! file, and the background thread compacting a small-segment topic within seconds.

#[path = "log_support/mod.rs"]
mod log_support;
#[path = "cleaner_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn::log::cleaner::{CleanOptions, Cleaner, CleanerConfig, CHECKPOINT_FILE};
use cairn::log::{retention, AppendOrigin};
use kafka_protocol::records::Compression;
use log_support::transactional;
use support::*;

fn config(buffer: usize) -> CleanerConfig {
    CleanerConfig {
        dedupe_buffer_size: buffer,
        io_max_bytes_per_second: f64::MAX,
        backoff: Duration::from_millis(100),
    }
}

/// Writes `rounds` rounds of `keys` keys (value `v<round>-<key>`), one record per batch.
fn write_rounds(p: &cairn::log::Partition, keys: usize, rounds: usize) -> BTreeMap<String, String> {
    let mut model = BTreeMap::new();
    for round in 0..rounds {
        for k in 0..keys {
            let key = format!("key-{k:05}");
            let value = format!("v{round}-{k}");
            put(p, &key, Some(&value));
            model.insert(key, value);
        }
    }
    model
}

#[test]
fn keeps_the_latest_value_per_key_and_merges_small_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let model = write_rounds(&p, 200, 3);
    p.roll().unwrap();
    let segments_before = p.sealed_segments().len();
    let bytes_before = total_log_bytes(p.dir());
    let end_before = p.offsets();

    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    let passes = cleaner.clean_fully(&p, now_ms(), false).unwrap();
    assert_eq!(
        passes.len(),
        1,
        "a dirty ratio of 1.0 is due and the map holds every key"
    );
    let stats = &passes[0];
    assert_eq!(stats.records_read, 600);
    assert_eq!(stats.records_kept, 200);

    let (_, records) = read_all(&p);
    assert_eq!(records.len(), 200, "exactly one record per key");
    assert_eq!(fold(&records), model);
    // The survivors are the last round, at their original offsets.
    assert_eq!(records[0].offset, 400);
    assert_eq!(records[199].offset, 599);
    assert_eq!(
        p.offsets(),
        end_before,
        "offsets and the log start never move"
    );
    assert!(total_log_bytes(p.dir()) < bytes_before / 2);
    // Groups are formed from the sizes before cleaning (as Kafka does), so the now small
    // neighbours merge on the next cleaning.
    put(&p, "key-00001", Some("v3-1"));
    p.roll().unwrap();
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    let mut model = model;
    model.insert("key-00001".into(), "v3-1".into());
    let segments_after = p.sealed_segments().len();
    assert!(
        segments_after < segments_before / 2,
        "{segments_after} segments after, {segments_before} before"
    );
    assert_eq!(fold(&read_all(&p).1), model);

    // The cleaned end is checkpointed in Kafka's format.
    let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n1\nt 0 601\n");
    // Nothing left to do, and appends go on at the right offset.
    assert!(cleaner
        .clean(&p, now_ms(), CleanOptions::default())
        .unwrap()
        .is_none());
    put(&p, "key-00000", Some("after"));
    assert_eq!(p.offsets().log_end_offset, 602);
    log.shutdown().unwrap();

    // After a restart the checkpoint is read back: nothing is dirty.
    let log = open(dir.path(), &[]);
    let p = log.partition("t", 0).unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    assert_eq!(cleaner.cleaned_offset(&p), Some(601));
    let mut expected = model.clone();
    expected.insert("key-00000".into(), "after".into());
    assert_eq!(fold(&read_all(&p).1), expected);
    log.shutdown().unwrap();
}

#[test]
fn a_deleted_and_recreated_topic_does_not_inherit_the_cleaned_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    write_rounds(&p, 50, 2);
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert_eq!(cleaner.cleaned_offset(&p), Some(100));
    log.delete_topic("t").unwrap();
    drop(p);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    write_rounds(&p, 10, 2);
    p.roll().unwrap();
    assert_eq!(
        cleaner.cleaned_offset(&p),
        None,
        "a new partition starts dirty"
    );
    cleaner.forget_missing(std::slice::from_ref(&p)).unwrap();
    let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(text, "0\n0\n");
    let passes = cleaner.clean_fully(&p, now_ms(), false).unwrap();
    assert_eq!(passes[0].first_dirty_offset, 0);
    assert_eq!(read_all(&p).1.len(), 10);
    log.shutdown().unwrap();
}

#[test]
fn segments_with_nothing_to_remove_are_not_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let model = write_rounds(&p, 200, 1);
    p.roll().unwrap();
    let inodes = |p: &cairn::log::Partition| -> Vec<u64> {
        p.sealed_segments()
            .iter()
            .map(|s| std::fs::metadata(&s.log_path).unwrap().ino())
            .collect()
    };
    let before = inodes(&p);
    assert!(before.len() > 2);
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert_eq!(passes[0].records_kept, 200);
    assert_eq!(passes[0].segments_before, 0, "no segment was replaced");
    assert_eq!(inodes(&p), before);
    assert_eq!(fold(&read_all(&p).1), model);
    assert_eq!(cleaner.cleaned_offset(&p), Some(200));
    log.shutdown().unwrap();
}

#[test]
fn cleaned_segments_carry_the_same_indexes_the_log_would_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    let overrides = compacted(&[("segment.bytes", "20000"), ("index.interval.bytes", "200")]);
    log.create_topic("t", 1, overrides, false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let model = write_rounds(&p, 150, 3);
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert!(passes[0].segments_after > 0);
    let bases: Vec<i64> = p.sealed_segments().iter().map(|s| s.base_offset).collect();
    let pdir = p.dir().to_path_buf();
    log.shutdown().unwrap();
    drop(p);
    let mut written = Vec::new();
    for b in &bases {
        for ext in ["index", "timeindex"] {
            let path = pdir.join(format!("{b:020}.{ext}"));
            written.push(std::fs::read(&path).unwrap());
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert!(
        written.iter().any(|w| w.len() > 8),
        "the indexes have entries"
    );
    // Reopen: the missing indexes are rebuilt from the cleaned logs when first used.
    let log = open(dir.path(), &[]);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(fold(&read_all(&p).1), model);
    // The largest timestamp loads (here: rebuilds) every segment's indexes.
    assert!(p.max_timestamp().unwrap().is_some());
    log.shutdown().unwrap();
    let mut rebuilt = Vec::new();
    for b in &bases {
        for ext in ["index", "timeindex"] {
            rebuilt.push(std::fs::read(pdir.join(format!("{b:020}.{ext}"))).unwrap());
        }
    }
    assert_eq!(written, rebuilt);
}

#[test]
fn tombstones_stay_until_their_delete_horizon_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "t",
        1,
        compacted(&[("delete.retention.ms", "60000")]),
        false,
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    put(&p, "a", Some("1"));
    put(&p, "b", Some("1"));
    put(&p, "a", None);
    p.roll().unwrap();
    let now = now_ms();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now, true).unwrap();
    let (headers, records) = read_all(&p);
    assert_eq!(
        records,
        vec![
            Stored {
                offset: 1,
                key: "b".into(),
                value: Some("1".into())
            },
            Stored {
                offset: 2,
                key: "a".into(),
                value: None
            },
        ]
    );
    let stamped = headers.iter().find(|h| h.base_offset == 2).unwrap();
    assert_ne!(stamped.attributes & 0x40, 0, "KIP-534 delete-horizon bit");
    assert_eq!(stamped.base_timestamp, now + 60_000);

    // Before the horizon a later cleaning keeps the tombstone.
    put(&p, "c", Some("1"));
    p.roll().unwrap();
    cleaner.clean_fully(&p, now + 59_999, true).unwrap();
    assert!(read_all(&p)
        .1
        .iter()
        .any(|r| r.key == "a" && r.value.is_none()));
    // At the horizon it goes.
    put(&p, "d", Some("1"));
    p.roll().unwrap();
    let passes = cleaner.clean_fully(&p, now + 60_000, true).unwrap();
    assert_eq!(passes.iter().map(|s| s.tombstones_removed).sum::<u64>(), 1);
    let keys: Vec<String> = read_all(&p).1.into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec!["b", "c", "d"]);
    log.shutdown().unwrap();
}

#[test]
fn tombstones_past_their_horizon_go_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "t",
        1,
        compacted(&[("delete.retention.ms", "60000")]),
        false,
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    put(&p, "a", Some("1"));
    put(&p, "b", Some("1"));
    put(&p, "a", None);
    p.roll().unwrap();
    let now = now_ms();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    assert_eq!(cleaner.clean_fully(&p, now, false).unwrap().len(), 1);
    assert_eq!(cleaner.next_horizon(now), Some(now + 60_000));
    assert_eq!(read_all(&p).1.len(), 2);
    // Nothing is dirty: not due before the horizon...
    let (plan, due) = cleaner.plan(&p, now + 59_999).unwrap().unwrap();
    assert!(!plan.has_dirty());
    assert!(!due);
    assert!(cleaner
        .clean(&p, now + 59_999, CleanOptions::default())
        .unwrap()
        .is_none());
    // ...and due at it: the tombstone goes.
    let passes = cleaner.clean_fully(&p, now + 60_000, false).unwrap();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].tombstones_removed, 1);
    assert_eq!(
        read_all(&p).1,
        vec![Stored {
            offset: 1,
            key: "b".into(),
            value: Some("1".into())
        }]
    );
    assert_eq!(cleaner.next_horizon(now + 60_000), None);
    log.shutdown().unwrap();
}

#[test]
fn an_expired_tombstone_beyond_the_map_never_brings_an_old_value_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    let overrides = compacted(&[("segment.bytes", "1048576"), ("delete.retention.ms", "0")]);
    log.create_topic("t", 1, overrides, false).unwrap();
    let p = log.partition("t", 0).unwrap();
    put(&p, "victim", Some("old"));
    let mut model = BTreeMap::new();
    for k in 0..100 {
        put(&p, &format!("filler-{k}"), Some("x"));
        model.insert(format!("filler-{k}"), "x".to_string());
    }
    put(&p, "victim", None); // offset 101
    p.roll().unwrap();
    // A 37-key map: pass 1 maps [0, 37) and stamps the tombstone (horizon = now) as it rewrites
    // the whole segment; pass 2 maps [37, 74) with the horizon passed, but the tombstone lies
    // beyond its map and must stay, or "victim" = "old" would come back.
    let mut cleaner = Cleaner::new(dir.path(), config(1024));
    let now = now_ms();
    let force = CleanOptions {
        force: true,
        prepare_only: false,
    };
    for pass in 1..=5 {
        let Some(stats) = cleaner.clean(&p, now + pass, force).unwrap() else {
            break;
        };
        assert_eq!(fold(&read_all(&p).1), model, "after pass {pass}");
        if stats.complete() {
            break;
        }
    }
    let (_, records) = read_all(&p);
    assert!(records.iter().all(|r| r.key != "victim"), "{records:?}");
    assert_eq!(fold(&records), model);
    log.shutdown().unwrap();
}

#[test]
fn more_keys_than_the_map_holds_cleans_in_several_exact_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut model = write_rounds(&p, 150, 2);
    // Tombstones for a third of the keys.
    for k in (0..150).step_by(3) {
        let key = format!("key-{k:05}");
        put(&p, &key, None);
        model.remove(&key);
    }
    p.roll().unwrap();
    let budget = 1024; // 42 slots: 37 keys per pass
    let mut cleaner = Cleaner::new(dir.path(), config(budget));
    let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert!(
        passes.len() >= 4,
        "only {} passes for 150 keys in a 37-key map",
        passes.len()
    );
    for s in &passes {
        assert!(
            s.map_memory_bytes <= budget,
            "map used {} bytes",
            s.map_memory_bytes
        );
        assert!(s.map_keys <= s.map_capacity);
    }
    assert!(passes.last().unwrap().complete());
    let (_, records) = read_all(&p);
    assert_eq!(fold(&records), model);
    let live = records.iter().filter(|r| r.value.is_some()).count();
    assert_eq!(live, model.len(), "exactly one record per live key");
    assert_eq!(
        records.len(),
        150,
        "live keys plus the 50 tombstones before their horizon"
    );
    log.shutdown().unwrap();
}

#[test]
fn the_key_map_grows_to_the_keys_it_needs_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[("segment.bytes", "1048576")]), false)
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let keys = 70_000;
    let mut model = BTreeMap::new();
    for round in 0..2 {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
            let entries: Vec<(String, Option<String>)> = chunk
                .iter()
                .map(|k| (format!("k{k}"), Some(format!("r{round}"))))
                .collect();
            for (k, v) in &entries {
                model.insert(k.clone(), v.clone().unwrap());
            }
            p.append(
                keyed_batch(&entries, Compression::Lz4),
                AppendOrigin::Client,
            )
            .unwrap();
        }
    }
    p.roll().unwrap();
    // 64 Ki slots hold fewer than 60,000 keys: the first map fills, the scan restarts with a
    // bigger one, and one pass still covers everything.
    let budget = 8 << 20;
    let mut cleaner = Cleaner::new(dir.path(), config(budget));
    let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert_eq!(passes.len(), 1);
    let s = &passes[0];
    assert!(
        s.map_memory_bytes > (1 << 16) * 24,
        "the map grew: {} bytes",
        s.map_memory_bytes
    );
    assert!(s.map_memory_bytes <= budget);
    // Sized by the 140,000 records of the dirty section, not by the whole budget.
    assert!(
        s.map_memory_bytes < budget / 2,
        "{} bytes",
        s.map_memory_bytes
    );
    assert_eq!(s.map_keys, keys);
    let (_, records) = read_all(&p);
    assert_eq!(records.len(), keys);
    assert_eq!(fold(&records), model);
    log.shutdown().unwrap();
}

#[test]
fn every_codec_is_decompressed_cleaned_and_written_back_in_the_same_codec() {
    let codecs = [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[("segment.bytes", "1048576")]), false)
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut model = BTreeMap::new();
    for round in 0..2 {
        for (c, (compression, _)) in codecs.iter().enumerate() {
            let entries: Vec<(String, Option<String>)> = (0..20)
                .map(|i| {
                    // Odd keys are rewritten in round 1; even keys only live in round 0.
                    let key = format!("c{c}-k{}", if round == 1 { 2 * i + 1 } else { i });
                    (key, Some(format!("r{round}-{}", "x".repeat(50))))
                })
                .collect();
            for (k, v) in &entries {
                model.insert(k.clone(), v.clone().unwrap());
            }
            p.append(keyed_batch(&entries, *compression), AppendOrigin::Client)
                .unwrap();
        }
    }
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    let (headers, records) = read_all(&p);
    assert_eq!(fold(&records), model);
    assert_eq!(records.len(), model.len());
    // Round 0's batches lost their odd keys and keep their codec; round 1's are untouched.
    assert_eq!(headers.len(), 10);
    for (i, h) in headers.iter().enumerate() {
        let expected_codec = codecs[i % 5].1;
        assert_eq!(h.compression(), expected_codec, "batch {i}");
        assert_eq!(h.last_offset_delta, 19, "lastOffsetDelta preserved");
        let expected_count = if i < 5 { 10 } else { 20 };
        assert_eq!(h.records_count, expected_count, "batch {i}");
    }
    log.shutdown().unwrap();
}

#[test]
fn an_active_producers_emptied_last_batch_stays_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let pid = log.allocate_producer_id().unwrap();
    let entries = vec![
        ("a".to_string(), Some("1".to_string())),
        ("b".to_string(), Some("1".to_string())),
    ];
    p.append(
        keyed_batch_from(&entries, Compression::Lz4, Some((pid, 0, 0))),
        AppendOrigin::Client,
    )
    .unwrap();
    put(&p, "a", Some("2"));
    put(&p, "b", Some("2"));
    put(&p, "z", Some("tail"));
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    let (headers, records) = read_all(&p);
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let first = headers[0];
    assert_eq!(first.base_offset, 0);
    assert_eq!(first.records_count, 0, "emptied but kept");
    assert_eq!(
        (first.producer_id, first.producer_epoch, first.base_sequence),
        (pid, 0, 0)
    );
    assert_eq!(first.last_offset(), 1);
    // The producer continues at the next sequence.
    let next = vec![("c".to_string(), Some("1".to_string()))];
    p.append(
        keyed_batch_from(&next, Compression::None, Some((pid, 0, 2))),
        AppendOrigin::Client,
    )
    .unwrap();
    log.shutdown().unwrap();
}

#[test]
fn compact_delete_topics_get_both_retention_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "t",
        1,
        compacted(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "3600000"),
        ]),
        false,
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    let model = write_rounds(&p, 100, 3);
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now_ms(), false).unwrap();
    assert_eq!(fold(&read_all(&p).1), model);
    // Retention still deletes whole segments once they are old enough, and moves the log start.
    let deleted = retention::apply_retention(&p, now_ms() + 7_200_000).unwrap();
    assert!(deleted > 0);
    assert!(p.offsets().log_start_offset > 0);
    // Cleaning goes on from the new log start.
    write_rounds(&p, 10, 2);
    p.roll().unwrap();
    let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
    assert!(!passes.is_empty());
    let keys: Vec<String> = read_all(&p).1.into_iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 10);
    log.shutdown().unwrap();
}

#[test]
fn max_compaction_lag_makes_a_barely_dirty_log_due_and_rolls_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    let overrides = compacted(&[
        ("segment.bytes", "1048576"),
        ("min.cleanable.dirty.ratio", "0.9"),
        ("max.compaction.lag.ms", "60000"),
    ]);
    log.create_topic("t", 1, overrides, false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let ts = now_ms();
    for k in 0..200 {
        put_at(&p, &format!("key-{k}"), Some("value"), ts);
    }
    p.roll().unwrap();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    assert_eq!(cleaner.clean_fully(&p, ts, false).unwrap().len(), 1);
    // A little dirty data: far below the ratio, so not due until it is older than the lag.
    put_at(&p, "key-0", Some("new"), ts + 10);
    p.roll().unwrap();
    let (plan, due) = cleaner.plan(&p, ts + 1_000).unwrap().unwrap();
    assert!(plan.dirty_ratio() < 0.1, "ratio {}", plan.dirty_ratio());
    assert!(!due);
    let (_, due) = cleaner.plan(&p, ts + 60_011).unwrap().unwrap();
    assert!(due, "dirty data older than max.compaction.lag.ms is due");
    assert_eq!(
        cleaner.clean_fully(&p, ts + 60_011, false).unwrap().len(),
        1
    );

    // The active segment rolls once its data spans max.compaction.lag.ms (segment.ms is a week).
    let sealed = p.sealed_segments().len();
    put_at(&p, "key-1", Some("a"), ts + 100_000);
    put_at(&p, "key-1", Some("b"), ts + 130_000);
    assert_eq!(p.sealed_segments().len(), sealed);
    put_at(&p, "key-1", Some("c"), ts + 160_001);
    assert_eq!(p.sealed_segments().len(), sealed + 1);
    log.shutdown().unwrap();
}

#[test]
fn the_background_cleaner_compacts_a_small_segment_topic_within_seconds() {
    // Page-cache mode, and fsync mode (flush.messages=1, the default) where only the durable
    // part of the log is cleanable.
    for flush_messages in ["1000000000", "1"] {
        let dir = tempfile::tempdir().unwrap();
        // Default backoff (15 s): the cleaner must wake on the roll, not on its timer.
        let log = open(dir.path(), &[("log.cleaner.enable", "true")]);
        let overrides = compacted(&[
            ("min.cleanable.dirty.ratio", "0.01"),
            ("flush.messages", flush_messages),
        ]);
        log.create_topic("t", 1, overrides, false).unwrap();
        let p = log.partition("t", 0).unwrap();
        let model = write_rounds(&p, 50, 20);
        let written = 1000;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = written;
        while Instant::now() < deadline {
            seen = read_all(&p).1.len();
            if seen < written / 4 && dir.path().join(CHECKPOINT_FILE).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            seen < written / 4,
            "flush.messages={flush_messages}: still {seen} of {written} records after 10 s"
        );
        assert_eq!(fold(&read_all(&p).1), model);
        log.shutdown().unwrap();
    }
}

#[test]
fn the_background_cleaner_removes_deleted_keys_once_delete_retention_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[("log.cleaner.enable", "true")]);
    let overrides = compacted(&[
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1000"),
    ]);
    log.create_topic("t", 1, overrides, false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut model = write_rounds(&p, 50, 4);
    for k in 0..25 {
        let key = format!("key-{k:05}");
        put(&p, &key, None);
        model.remove(&key);
    }
    p.roll().unwrap();
    // No more writes: the tombstones go when their horizon passes (1 s after the cleaning
    // that first kept them), not at the next roll.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut records = read_all(&p).1;
    while Instant::now() < deadline {
        records = read_all(&p).1;
        if records.len() == model.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records.len(), model.len(), "{} records left", records.len());
    assert!(records.iter().all(|r| r.value.is_some()));
    assert_eq!(fold(&records), model);
    log.shutdown().unwrap();
}

#[test]
fn a_rate_limited_cleaning_never_blocks_appends_or_reads_for_long() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let model = write_rounds(&p, 300, 4);
    p.roll().unwrap();
    let log_bytes: u64 = p.sealed_segments().iter().map(|s| s.size).sum();
    // Reads at least the whole log once (map scan) and again (rewrite): at 100 KB/s that is
    // at least 2 × log_bytes / 100_000 seconds.
    let rate = 100_000.0;
    let min_secs = 2.0 * log_bytes as f64 / rate;
    assert!(
        min_secs > 1.5,
        "log of {log_bytes} bytes is too small for this test"
    );
    let cleaning = {
        let p = p.clone();
        let data_dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut cleaner = Cleaner::new(
                &data_dir,
                CleanerConfig {
                    io_max_bytes_per_second: rate,
                    ..config(1 << 20)
                },
            );
            let started = Instant::now();
            let passes = cleaner.clean_fully(&p, now_ms(), true).unwrap();
            (started.elapsed(), passes)
        })
    };
    // Meanwhile appends and reads go on, each one quick, and a reader going through the whole
    // log while segments are swapped under it still sees every latest value.
    let mut slowest = Duration::ZERO;
    let mut appended = 0;
    let mut expected = model.clone();
    while !cleaning.is_finished() && appended < 100_000 {
        let started = Instant::now();
        put(&p, "live", Some(&format!("{appended}")));
        p.read(0, 4096, cairn::log::Isolation::LogEnd).unwrap();
        slowest = slowest.max(started.elapsed());
        expected.insert("live".into(), format!("{appended}"));
        appended += 1;
        if appended % 20 == 0 {
            assert_eq!(fold(&read_all(&p).1), expected);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (elapsed, passes) = cleaning.join().unwrap();
    assert!(
        elapsed.as_secs_f64() >= min_secs * 0.9,
        "cleaning took {elapsed:?}, the limit allows no less than {min_secs:.2} s"
    );
    assert!(appended > 10);
    // Blocked for the cleaning would mean waiting about as long as the cleaning itself; the
    // bound leaves room for a loaded machine's scheduling without losing that distinction.
    let bound = Duration::from_secs(1).max(elapsed / 2);
    assert!(
        slowest < bound,
        "an append or read waited {slowest:?} during a cleaning of {elapsed:?}"
    );
    assert_eq!(passes.len(), 1);
    assert_eq!(fold(&read_all(&p).1), expected);
    log.shutdown().unwrap();
}

#[test]
fn aborted_values_never_replace_a_keys_committed_value_and_their_index_survives_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic("t", 1, compacted(&[]), false).unwrap();
    let p = log.partition("t", 0).unwrap();
    let append = |batch| p.append(batch, AppendOrigin::Internal).unwrap();
    put(&p, "k", Some("committed")); // 0
    append(transactional(7, 0, "k", "aborted", None)); // 1
    append(transactional(8, 0, "j", "in-a-commit", None)); // 2
    append(transactional(7, 0, "", "", Some(0))); // 3: ABORT
    append(transactional(8, 0, "", "", Some(1))); // 4: COMMIT
    put(&p, "tail", Some("x")); // 5
    p.roll().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(p.wait_durable(6))
        .unwrap();
    assert_eq!(p.aborted_transactions(0, i64::MAX).len(), 1);

    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    let (headers, records) = read_all(&p);
    // Markers' keys are binary (version 0, then the type).
    let data: Vec<(&str, Option<&str>)> = records
        .iter()
        .filter(|r| !r.key.starts_with('\0'))
        .map(|r| (r.key.as_str(), r.value.as_deref()))
        .collect();
    assert_eq!(
        data,
        vec![
            ("k", Some("committed")),
            ("j", Some("in-a-commit")),
            ("tail", Some("x"))
        ],
        "the aborted value is gone and the committed one stays"
    );
    assert_eq!(
        headers.iter().filter(|h| h.is_control()).count(),
        2,
        "markers stay"
    );
    let index = p.dir().join(format!("{:020}.txnindex", 0));
    assert!(
        index.exists(),
        "the cleaned segment keeps the abort's entry"
    );
    log.shutdown().unwrap();

    let log = open(dir.path(), &[]);
    let p = log.partition("t", 0).unwrap();
    let aborted = p.aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1, "the abort is known after a restart");
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (1, 3));
    log.shutdown().unwrap();
}

#[test]
fn markers_go_once_their_transaction_has_no_record_left_and_the_delete_horizon_passed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), &[]);
    log.create_topic(
        "t",
        1,
        compacted(&[("delete.retention.ms", "60000")]),
        false,
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    let append = |batch| p.append(batch, AppendOrigin::Internal).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    put(&p, "k", Some("committed")); // 0
    append(transactional(7, 0, "k", "aborted", None)); // 1
    append(transactional(7, 0, "", "", Some(0))); // 2: ABORT
    append(transactional(7, 1, "j", "in-a-commit", None)); // 3
    append(transactional(7, 0, "", "", Some(1))); // 4: COMMIT
    append(transactional(7, 2, "m", "last", None)); // 5: the producer's last batch
    append(transactional(7, 0, "", "", Some(1))); // 6: COMMIT
    put(&p, "j", Some("newer")); // 7: j's transactional value is superseded
    p.roll().unwrap();
    runtime.block_on(p.wait_durable(8)).unwrap();
    let markers = |p: &cairn::log::Partition| -> Vec<i64> {
        read_all(p)
            .0
            .iter()
            .filter(|h| h.is_control() && h.records_count > 0)
            .map(|h| h.base_offset)
            .collect()
    };
    let index = p.dir().join(format!("{:020}.txnindex", 0));
    let now = now_ms();
    let mut cleaner = Cleaner::new(dir.path(), config(1 << 20));

    // Pass 1 removes the aborted value and j's superseded one; their transactions still had
    // records in this pass, so every marker and the abort's index entry stay.
    cleaner.clean_fully(&p, now, true).unwrap();
    assert_eq!(markers(&p), vec![2, 4, 6]);
    assert!(
        index.exists(),
        "the abort's entry stays while its records were found"
    );
    let data: Vec<(String, Option<String>)> = read_all(&p)
        .1
        .into_iter()
        .filter(|r| !r.key.starts_with('\0'))
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        data,
        vec![
            ("k".to_string(), Some("committed".to_string())),
            ("m".to_string(), Some("last".to_string())),
            ("j".to_string(), Some("newer".to_string())),
        ]
    );

    // Pass 2 (more dirty data): markers 2 and 4 have no record left: stamped with a delete
    // horizon, still there; the abort's index entry goes. Marker 6 ends the producer's last
    // batch's transaction and stays as it is.
    put(&p, "x", Some("1"));
    p.roll().unwrap();
    runtime.block_on(p.wait_durable(9)).unwrap();
    let passes = cleaner.clean_fully(&p, now, true).unwrap();
    assert_eq!(passes.iter().map(|s| s.markers_removed).sum::<u64>(), 0);
    assert_eq!(markers(&p), vec![2, 4, 6]);
    let stamped: Vec<(i64, bool)> = read_all(&p)
        .0
        .iter()
        .filter(|h| h.is_control())
        .map(|h| (h.base_offset, h.attributes & 0x40 != 0))
        .collect();
    assert_eq!(stamped, vec![(2, true), (4, true), (6, false)]);
    assert!(
        !index.exists(),
        "no abort with records left: no index entry"
    );

    // Before the horizon nothing more goes; past it, the cleaner is due by itself and the two
    // markers go. Marker 6 stays.
    assert!(cleaner
        .clean(&p, now + 59_000, Default::default())
        .unwrap()
        .is_none());
    let passes = cleaner.clean_fully(&p, now + 60_001, false).unwrap();
    assert_eq!(passes.iter().map(|s| s.markers_removed).sum::<u64>(), 2);
    assert_eq!(markers(&p), vec![6]);
    log.shutdown().unwrap();

    // After a restart: no open transaction (the LSO is the high watermark) and the data reads
    // the same.
    let log = open(dir.path(), &[]);
    let p = log.partition("t", 0).unwrap();
    let offsets = p.offsets();
    assert_eq!(offsets.last_stable_offset, offsets.high_watermark);
    assert_eq!(markers(&p), vec![6]);
    assert!(p.aborted_transactions(0, i64::MAX).is_empty());
    log.shutdown().unwrap();
}
