//! Model test of the key index (issue 17): random keyed writes, overwrites and tombstones (some
//! in compressed multi-record batches), rolls, compactions, clean and crash-style restarts, and
//! damaged or deleted key files, against a map of latest values. Every key's lookup must agree
//! with the model at the high watermark; a snapshot as of an earlier offset, followed by the
//! records from that offset on (what a consumer would read), must fold to the model exactly,
//! and a snapshot as of the high watermark must equal it with each key once.

#[path = "cleaner_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn::keys::builder::{pass, PassReport};
use cairn::keys::snapshot::partition_snapshot;
use cairn::keys::{KeyIndex, KEY_INDEX_DIR};
use cairn::log::cleaner::{Cleaner, CleanerConfig};
use cairn::log::{AppendOrigin, LogManager, Partition};
use kafka_protocol::records::Compression;
use proptest::prelude::*;
use support::*;

const KEYS: u8 = 30;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    /// Several records in one lz4 batch.
    Batch(Vec<(u8, Option<u16>)>),
    /// Many records with long values in one batch larger than a segment (uncompressed or
    /// zstd): lookups read one record of it by its place in the segment file.
    BigBatch(Vec<(u8, Option<u16>)>, bool),
    Roll,
    Compact(u32),
    Restart {
        clean: bool,
    },
    /// Deletes or garbles every key file.
    DamageKeyFiles {
        delete: bool,
    },
    /// Remembers the high watermark and the model, for a snapshot as of then.
    Mark,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KEYS, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..KEYS).prop_map(Op::Delete),
        2 => proptest::collection::vec((0..KEYS, proptest::option::of(any::<u16>())), 1..6)
            .prop_map(Op::Batch),
        2 => (proptest::collection::vec((0..KEYS, proptest::option::of(any::<u16>())), 20..120),
              any::<bool>())
            .prop_map(|(e, zstd)| Op::BigBatch(e, zstd)),
        2 => Just(Op::Roll),
        2 => (0u32..200).prop_map(Op::Compact),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        1 => any::<bool>().prop_map(|delete| Op::DamageKeyFiles { delete }),
        1 => Just(Op::Mark),
    ]
}

fn open_log(dir: &Path) -> Arc<LogManager> {
    open(dir, &[])
}

/// Every key's lookup against the model.
fn check_lookups(index: &KeyIndex, p: &Arc<Partition>, model: &BTreeMap<String, String>) {
    for k in 0..KEYS {
        let key = format!("k{k}");
        let got = index.lookup(p, key.as_bytes()).expect("lookup");
        let value = got
            .and_then(|r| r.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert_eq!(value.as_ref(), model.get(&key), "lookup of {key}");
    }
}

fn snapshot(index: &KeyIndex, p: &Arc<Partition>, as_of: i64) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    let done = partition_snapshot(index, p, as_of, |r| {
        let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
        out.push((k, v, r.offset));
        ControlFlow::Continue(())
    })
    .expect("snapshot");
    assert!(done);
    out
}

fn damage(dir: &Path, delete: bool) {
    let root = dir.join(KEY_INDEX_DIR);
    let Ok(parts) = std::fs::read_dir(&root) else {
        return;
    };
    for part in parts.flatten() {
        for f in std::fs::read_dir(part.path()).unwrap().flatten() {
            if delete {
                std::fs::remove_file(f.path()).unwrap();
            } else {
                let mut bytes = std::fs::read(f.path()).unwrap();
                let n = bytes.len();
                bytes[n / 2] ^= 0x55;
                std::fs::write(f.path(), bytes).unwrap();
            }
        }
    }
}

fn run(ops: Vec<Op>, memory_bytes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = CleanerConfig {
        dedupe_buffer_size: 1 << 20,
        io_max_bytes_per_second: f64::MAX,
        backoff: Duration::from_millis(100),
    };
    let mut log = open_log(dir.path());
    let mut cleaner = Cleaner::new(dir.path(), config.clone());
    let mut index = KeyIndex::new(memory_bytes);
    log.create_topic(
        "t",
        1,
        compacted(&[("segment.bytes", "500"), ("delete.retention.ms", "100")]),
        false,
    )
    .unwrap();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut mark: Option<i64> = None;
    let mut clock = now_ms();
    for op in ops {
        let p = log.partition("t", 0).expect("topic exists");
        match op {
            Op::Put(k, v) => {
                let (key, value) = (format!("k{k}"), format!("v{v}"));
                put(&p, &key, Some(&value));
                model.insert(key, value);
            }
            Op::Delete(k) => {
                let key = format!("k{k}");
                put(&p, &key, None);
                model.remove(&key);
            }
            Op::Batch(entries) => {
                let entries: Vec<(String, Option<String>)> = entries
                    .into_iter()
                    .map(|(k, v)| (format!("k{k}"), v.map(|v| format!("b{v}"))))
                    .collect();
                p.append(
                    keyed_batch(&entries, Compression::Lz4),
                    AppendOrigin::Client,
                )
                .expect("append");
                for (k, v) in entries {
                    match v {
                        Some(v) => model.insert(k, v),
                        None => model.remove(&k),
                    };
                }
            }
            Op::BigBatch(entries, zstd) => {
                let entries: Vec<(String, Option<String>)> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            format!("k{k}"),
                            v.map(|v| format!("g{v}-{}", "x".repeat(40))),
                        )
                    })
                    .collect();
                let codec = if zstd {
                    Compression::Zstd
                } else {
                    Compression::None
                };
                p.append(keyed_batch(&entries, codec), AppendOrigin::Client)
                    .expect("append");
                for (k, v) in entries {
                    match v {
                        Some(v) => model.insert(k, v),
                        None => model.remove(&k),
                    };
                }
            }
            Op::Roll => p.roll().unwrap(),
            Op::Compact(advance) => {
                clock += advance as i64;
                cleaner.clean_fully(&p, clock, true).unwrap();
            }
            Op::Restart { clean } => {
                if clean {
                    log.shutdown().unwrap();
                } else {
                    log.halt();
                }
                drop(p);
                drop(log);
                log = open_log(dir.path());
                cleaner = Cleaner::new(dir.path(), config.clone());
                index = KeyIndex::new(memory_bytes);
            }
            Op::DamageKeyFiles { delete } => {
                damage(dir.path(), delete);
                // A restart forgets what was checked; the files are checked again on first use.
                index = KeyIndex::new(memory_bytes);
            }
            Op::Mark => mark = Some(p.offsets().high_watermark),
        }
        let p = log.partition("t", 0).expect("topic exists");
        check_lookups(&index, &p, &model);
    }
    let p = log.partition("t", 0).expect("topic exists");
    // The sealed segments were answered through key files, not only by reading the log.
    if !p.sealed_segments().is_empty() {
        let files = std::fs::read_dir(dir.path().join(KEY_INDEX_DIR).join("t-0"))
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        assert!(
            files > 0,
            "no key file beside {} sealed segments",
            p.sealed_segments().len()
        );
    }
    // A snapshot at the high watermark is the model, each key once.
    let hw = p.offsets().high_watermark;
    let snap = snapshot(&index, &p, hw);
    let folded: BTreeMap<String, String> = snap
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(folded.len(), snap.len(), "a key twice in {snap:?}");
    assert_eq!(folded, model);
    // A snapshot as of an earlier mark, then the records from the mark on, is the model too.
    if let Some(as_of) = mark.filter(|&m| m >= p.offsets().log_start_offset) {
        let mut state: BTreeMap<String, String> = snapshot(&index, &p, as_of)
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let (_, records) = read_all(&p);
        for r in records.into_iter().filter(|r| r.offset >= as_of) {
            match r.value {
                Some(v) => state.insert(r.key, v),
                None => state.remove(&r.key),
            };
        }
        assert_eq!(state, model, "snapshot as of {as_of} then the rest");
    }
    log.shutdown().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn lookups_and_snapshots_match_a_map_of_latest_values(
        ops in proptest::collection::vec(op(), 1..70),
        memory_bytes in prop_oneof![Just(64usize), Just(1 << 20)],
    ) {
        run(ops, memory_bytes);
    }
}

/// The key files in `cairn-key-index/<name>/`, by file name.
fn key_files(dir: &Path, name: &str) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir.join(KEY_INDEX_DIR).join(name))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn sealed_key_file_names(p: &Partition) -> std::collections::BTreeSet<String> {
    p.sealed_segments()
        .iter()
        .map(|s| format!("{:020}.keys", s.base_offset))
        .collect()
}

#[test]
fn the_background_builder_builds_missing_files_and_sweeps_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let segments = compacted(&[("segment.bytes", "400"), ("delete.retention.ms", "100")]);
    log.create_topic("t", 1, segments.clone(), false).unwrap();
    log.create_topic("gone", 1, segments, false).unwrap();
    let mut model = BTreeMap::new();
    for round in 0..6 {
        for k in 0..KEYS {
            let (key, value) = (format!("k{k}"), format!("v{k}-{round}"));
            put(&log.partition("t", 0).unwrap(), &key, Some(&value));
            model.insert(key, value);
        }
    }
    let gone = log.partition("gone", 0).unwrap();
    for k in 0..KEYS {
        put(&gone, &format!("k{k}"), Some("x"));
    }
    gone.roll().unwrap();
    let index = KeyIndex::new(1 << 20);
    assert!(index.lookup(&gone, b"k1").unwrap().is_some());
    assert!(!key_files(dir.path(), "gone-0").is_empty());
    drop(gone);
    log.delete_topic("gone").unwrap();
    // Left by a crash: a temporary file, and the file of a segment merged away before it.
    let t_dir = dir.path().join(KEY_INDEX_DIR).join("t-0");
    std::fs::create_dir_all(&t_dir).unwrap();
    std::fs::write(t_dir.join("00000000000000000001.keys.tmp12-0"), b"torn").unwrap();
    std::fs::write(t_dir.join("00000000000000000001.keys"), b"stale").unwrap();

    // Restarted: nothing is indexed until the pass builds every sealed segment's file.
    let index = KeyIndex::new(1 << 20);
    let p = log.partition("t", 0).unwrap();
    let mut rests = 0;
    let report = pass(&index, &log, dir.path(), |_| rests += 1);
    let expected = sealed_key_file_names(&p);
    assert!(expected.len() > 3, "the topic rolled: {expected:?}");
    assert_eq!(report.ready, expected.len());
    assert_eq!(rests, expected.len(), "the builder rests after each file");
    assert_eq!(
        report.removed, 3,
        "gone-0, the stale file and the temporary file"
    );
    assert_eq!(key_files(dir.path(), "t-0"), expected);
    assert!(!dir.path().join(KEY_INDEX_DIR).join("gone-0").exists());
    check_lookups(&index, &p, &model);
    // Nothing left to do.
    assert_eq!(
        pass(&index, &log, dir.path(), |_| {}),
        PassReport::default()
    );

    // The cleaner merges segments: the next pass removes the files of the merged-away ones and
    // builds the merged segments' files; lookups agree throughout.
    let mut cleaner = Cleaner::new(
        dir.path(),
        CleanerConfig {
            dedupe_buffer_size: 1 << 20,
            io_max_bytes_per_second: f64::MAX,
            backoff: Duration::from_millis(100),
        },
    );
    cleaner.clean_fully(&p, now_ms() + 1000, true).unwrap();
    check_lookups(&index, &p, &model);
    let report = pass(&index, &log, dir.path(), |_| {});
    assert!(report.removed > 0 || report.ready > 0, "{report:?}");
    assert_eq!(key_files(dir.path(), "t-0"), sealed_key_file_names(&p));
    check_lookups(&index, &p, &model);
    // A key directory deleted by hand while lookups run costs a slower lookup, not an error.
    std::fs::remove_dir_all(dir.path().join(KEY_INDEX_DIR)).unwrap();
    check_lookups(&index, &p, &model);
    log.shutdown().unwrap();
}

/// A record changed in a sealed segment's file behind the log's back, its size and mtime put
/// back (so the file looks like the one its key file was built from): a lookup never serves the
/// changed bytes. Before the change, every key is answered through the key files.
#[test]
fn a_record_changed_under_its_key_file_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("t", 1, compacted(&[("segment.bytes", "100000")]), false)
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut model = BTreeMap::new();
    for (round, codec) in [Compression::None, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let entries: Vec<(String, Option<String>)> = (0..KEYS)
            .map(|k| {
                (
                    format!("k{k}"),
                    Some(format!("value-{round}-{k:02}-{}", "y".repeat(30))),
                )
            })
            .filter(|(k, _)| round == 0 || k.ends_with('1'))
            .collect();
        p.append(keyed_batch(&entries, codec), AppendOrigin::Client)
            .expect("append");
        for (k, v) in entries {
            model.insert(k, v.unwrap());
        }
    }
    p.roll().unwrap();
    let index = KeyIndex::new(1 << 20);
    check_lookups(&index, &p, &model);
    assert_eq!(key_files(dir.path(), "t-0"), sealed_key_file_names(&p));

    // The value of k7 (in the uncompressed batch) changed in place, one byte.
    let seg = dir.path().join("t-0").join(format!("{:020}.log", 0));
    let meta = std::fs::metadata(&seg).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"value-0-07-")
        .expect("k7's value in the segment");
    bytes[at + 6] = b'9';
    std::fs::write(&seg, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&seg).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    let index = KeyIndex::new(1 << 20);
    // An error, nothing (the repair cut the damaged batch) or the old value, never the new.
    if let Ok(Some(r)) = index.lookup(&p, b"k7") {
        assert_ne!(
            r.value.as_deref(),
            Some(&bytes[at..at + 11 + 30][..]),
            "the changed record was served"
        );
    }
    for k in (0..KEYS).filter(|&k| k != 7) {
        let key = format!("k{k}");
        if let Ok(Some(r)) = index.lookup(&p, key.as_bytes()) {
            assert_eq!(r.value.as_deref(), Some(model[&key].as_bytes()), "{key}");
        }
    }
    log.shutdown().unwrap();
}
