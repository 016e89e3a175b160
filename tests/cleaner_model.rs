//! Model test of compaction: random keyed writes and tombstones, rolls, cleanings at random
//! points (with a key map sometimes far too small, forcing several passes), clean restarts and
//! crash-style restarts, compared with a map of latest values. Reading from the log start must
//! always fold to the model with strictly increasing offsets; below the cleaned end each key
//! appears at most once; and a final cleaning past every delete horizon leaves exactly one
//! record per live key.

#[path = "cleaner_support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn::log::cleaner::{Cleaner, CleanerConfig};
use cairn::log::LogManager;
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Roll,
    Compact(u32),
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..40).prop_map(Op::Delete),
        2 => Just(Op::Roll),
        2 => (0u32..200).prop_map(Op::Compact),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

struct Harness {
    log: Arc<LogManager>,
    cleaner: Cleaner,
    config: CleanerConfig,
}

impl Harness {
    fn open(dir: &Path, config: &CleanerConfig) -> Harness {
        Harness {
            log: open(dir, &[]),
            cleaner: Cleaner::new(dir, config.clone()),
            config: config.clone(),
        }
    }

    fn partition(&self) -> Arc<cairn::log::Partition> {
        self.log.partition("t", 0).expect("topic exists")
    }
}

fn check(p: &cairn::log::Partition, model: &BTreeMap<String, String>, cleaned_end: i64) {
    let (_, records) = read_all(p);
    assert_eq!(&fold(&records), model);
    let mut seen = HashSet::new();
    for r in records.iter().filter(|r| r.offset < cleaned_end) {
        assert!(
            seen.insert(r.key.clone()),
            "key {} twice below the cleaned end {cleaned_end}",
            r.key
        );
    }
}

fn run(ops: Vec<Op>, buffer: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = CleanerConfig {
        dedupe_buffer_size: buffer,
        io_max_bytes_per_second: f64::MAX,
        backoff: Duration::from_millis(100),
    };
    let mut h = Harness::open(dir.path(), &config);
    h.log
        .create_topic(
            "t",
            1,
            compacted(&[("segment.bytes", "600"), ("delete.retention.ms", "100")]),
            false,
        )
        .unwrap();
    let mut model = BTreeMap::new();
    let mut clock = now_ms();
    let mut cleaned_end = 0;
    for op in ops {
        let p = h.partition();
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
            Op::Roll => p.roll().unwrap(),
            Op::Compact(advance) => {
                clock += advance as i64;
                let passes = h.cleaner.clean_fully(&p, clock, true).unwrap();
                if let Some(last) = passes.last() {
                    assert!(last.complete());
                    for s in &passes {
                        assert!(s.map_memory_bytes <= buffer.max(48));
                    }
                    cleaned_end = last.end_offset;
                }
                check(&p, &model, cleaned_end);
            }
            Op::Restart { clean } => {
                if clean {
                    h.log.shutdown().unwrap();
                } else {
                    h.log.halt();
                }
                drop(p);
                let config = h.config.clone();
                drop(h);
                h = Harness::open(dir.path(), &config);
                check(&h.partition(), &model, cleaned_end);
            }
        }
    }
    let p = h.partition();
    check(&p, &model, cleaned_end);
    // Past every horizon: the first cleaning stamps the remaining tombstones, the second removes
    // them. What is left is exactly the live keys, once each.
    p.roll().unwrap();
    for _ in 0..2 {
        clock += 1_000;
        put(&p, "filler", Some("x"));
        p.roll().unwrap();
        h.cleaner.clean_fully(&p, clock, true).unwrap();
    }
    model.insert("filler".into(), "x".into());
    let (_, records) = read_all(&p);
    assert_eq!(fold(&records), model);
    assert_eq!(
        records.len(),
        model.len(),
        "one record per live key: {records:?}"
    );
    assert!(
        records.iter().all(|r| r.value.is_some()),
        "no tombstone left"
    );
    h.log.shutdown().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn compaction_matches_a_map_of_latest_values(
        ops in proptest::collection::vec(op(), 1..80),
        buffer in prop_oneof![Just(1024usize), Just(4096), Just(1 << 20)],
    ) {
        run(ops, buffer);
    }
}
