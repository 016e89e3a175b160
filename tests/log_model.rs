//! Model test: one partition driven through random append / read / roll / retention /
//! delete-records / clean restart / crash sequences, compared after every step with an in-memory
//! model (offset → value, log start, log end). A crash stops the engine without flushing
//! checkpoints or writing the clean-shutdown marker, and leaves garbage (a torn write) after the
//! last acknowledged batch.

mod log_support;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use cairn::log::retention::apply_retention;
use cairn::log::{AppendOrigin, Isolation, LogError, LogManager, Partition};
use log_support::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        len: usize,
    },
    /// Append without waiting for durability, then crash: the batch may or may not survive.
    AppendThenCrash {
        len: usize,
    },
    Read {
        pick: usize,
        max_bytes: usize,
    },
    Roll,
    DeleteRecords {
        pick: usize,
    },
    Retention {
        bytes: i64,
    },
    Restart,
    Crash {
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..5, 0usize..300).prop_map(|(records, len)| Op::Append { records, len }),
        1 => (0usize..200).prop_map(|len| Op::AppendThenCrash { len }),
        6 => (0usize..1000, 1usize..2000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        2 => Just(Op::Roll),
        1 => (0usize..1000).prop_map(|pick| Op::DeleteRecords { pick }),
        1 => (0i64..3000).prop_map(|bytes| Op::Retention { bytes }),
        1 => Just(Op::Restart),
        1 => proptest::collection::vec(any::<u8>(), 1..120).prop_map(|garbage| Op::Crash { garbage }),
    ]
}

const TOPIC: &str = "model";

struct Harness {
    dir: tempfile::TempDir,
    log: Arc<LogManager>,
    p: Arc<Partition>,
    /// Every record ever acknowledged, by offset (records below the log start stay here: a read
    /// may legitimately return them as part of the batch holding the log start).
    history: BTreeMap<i64, String>,
    start: i64,
    end: i64,
    counter: usize,
}

fn reopen(dir: &Path) -> (Arc<LogManager>, Arc<Partition>) {
    let log = open(dir, &[]);
    let p = log
        .partition(TOPIC, 0)
        .expect("the topic survives restarts");
    (log, p)
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), &[]);
        log.create_topic(
            TOPIC,
            1,
            overrides(&[
                ("segment.bytes", "700"),
                ("index.interval.bytes", "100"),
                ("retention.ms", "-1"),
            ]),
            false,
        )
        .unwrap();
        let p = log.partition(TOPIC, 0).unwrap();
        Harness {
            dir,
            log,
            p,
            history: BTreeMap::new(),
            start: 0,
            end: 0,
            counter: 0,
        }
    }

    fn values(&mut self, records: usize, len: usize) -> Vec<String> {
        (0..records)
            .map(|_| {
                self.counter += 1;
                let mut v = format!("r{}-", self.counter);
                while v.len() < len {
                    v.push('x');
                }
                v
            })
            .collect()
    }

    fn append(&mut self, records: usize, len: usize) {
        let values = self.values(records, len);
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let info = self
            .p
            .append(batch(&refs, now_ms()), AppendOrigin::Client)
            .unwrap();
        assert_eq!(info.base_offset, self.end);
        assert_eq!(info.last_offset, self.end + records as i64 - 1);
        block_on(self.p.wait_durable(info.last_offset + 1)).unwrap();
        for (i, v) in values.into_iter().enumerate() {
            self.history.insert(self.end + i as i64, v);
        }
        self.end += records as i64;
    }

    fn crash(&mut self, garbage: &[u8]) {
        self.log.halt();
        let part_dir = self.dir.path().join(format!("{TOPIC}-0"));
        let active = std::fs::read_dir(&part_dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix(".log").map(|s| s.parse::<i64>().unwrap())
            })
            .max()
            .unwrap();
        OpenOptions::new()
            .append(true)
            .open(part_dir.join(format!("{active:020}.log")))
            .unwrap()
            .write_all(garbage)
            .unwrap();
        (self.log, self.p) = reopen(self.dir.path());
    }

    fn check_read(&self, offset: i64, max_bytes: usize) {
        let result = self.p.read(offset, max_bytes, Isolation::ReadUncommitted);
        if offset < self.start || offset > self.end {
            assert!(
                matches!(result, Err(LogError::OffsetOutOfRange { .. })),
                "offset {offset} outside [{}, {}]: {result:?}",
                self.start,
                self.end
            );
            return;
        }
        let read = result.unwrap();
        assert_eq!(read.offsets.log_start_offset, self.start);
        assert_eq!(read.offsets.high_watermark, self.end);
        if offset == self.end {
            assert!(read.records.is_empty());
            return;
        }
        let first_batch = i32::from_be_bytes(read.records[8..12].try_into().unwrap()) as usize + 12;
        assert!(
            read.records.len() <= max_bytes.max(first_batch),
            "read exceeds max_bytes"
        );
        let records = decode(&read.records);
        assert!(
            records[0].0 <= offset,
            "the first batch contains the offset"
        );
        assert!(records.iter().any(|r| r.0 == offset));
        for (i, (o, v, _)) in records.iter().enumerate() {
            assert_eq!(*o, records[0].0 + i as i64, "offsets are contiguous");
            assert!(*o < self.end);
            assert_eq!(self.history.get(o), Some(v), "value at offset {o}");
        }
    }

    fn check_all(&self) {
        let offsets = self.p.offsets();
        assert_eq!(offsets.log_start_offset, self.start);
        assert_eq!(offsets.log_end_offset, self.end);
        assert_eq!(offsets.high_watermark, self.end);
        let mut next = self.start;
        while next < self.end {
            let read = self.p.read(next, 500, Isolation::ReadUncommitted).unwrap();
            let records: Vec<_> = decode(&read.records)
                .into_iter()
                .filter(|r| r.0 >= next)
                .collect();
            assert!(!records.is_empty(), "read at {next} returned nothing");
            for (o, v, _) in records {
                assert_eq!(o, next);
                assert_eq!(self.history.get(&o), Some(&v));
                next += 1;
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { records, len } => self.append(*records, *len),
            Op::AppendThenCrash { len } => {
                let values = self.values(1, *len);
                let info = self
                    .p
                    .append(batch(&[&values[0]], now_ms()), AppendOrigin::Client)
                    .unwrap();
                self.crash(&[]);
                let end = self.p.offsets().log_end_offset;
                assert!(end == self.end || end == self.end + 1, "end {end}");
                if end == self.end + 1 {
                    self.history.insert(info.base_offset, values[0].clone());
                    self.end = end;
                }
            }
            Op::Read { pick, max_bytes } => {
                let span = (self.end - self.start + 3) as usize;
                let offset = self.start + (pick % span) as i64 - 1;
                self.check_read(offset, *max_bytes);
            }
            Op::Roll => self.p.roll().unwrap(),
            Op::DeleteRecords { pick } => {
                let offset = self.start + (pick % (self.end - self.start + 1) as usize) as i64;
                let new_start = self.p.delete_records_before(offset).unwrap();
                assert_eq!(new_start, offset.max(self.start));
                self.start = new_start;
            }
            Op::Retention { bytes } => {
                let cfg = [
                    ("segment.bytes", "700"),
                    ("index.interval.bytes", "100"),
                    ("retention.ms", "-1"),
                ];
                let mut with_bytes = overrides(&cfg);
                with_bytes.insert("retention.bytes".into(), bytes.to_string());
                self.log.alter_topic_config(TOPIC, with_bytes).unwrap();
                apply_retention(&self.p, now_ms()).unwrap();
                self.log.alter_topic_config(TOPIC, overrides(&cfg)).unwrap();
                let new_start = self.p.offsets().log_start_offset;
                assert!(new_start >= self.start && new_start <= self.end);
                let kept: u64 = self.p.sealed_segments().iter().map(|s| s.size).sum();
                // What remains beyond the active segment respects retention.bytes, unless
                // deleting a segment would have gone below it.
                if new_start > self.start {
                    assert!(kept as i64 <= *bytes + 700 * 2, "kept {kept} for {bytes}");
                }
                self.start = new_start;
            }
            Op::Restart => {
                self.log.shutdown().unwrap();
                (self.log, self.p) = reopen(self.dir.path());
                self.check_all();
            }
            Op::Crash { garbage } => {
                self.crash(garbage);
                self.check_all();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        h.check_all();
        h.log.shutdown().unwrap();
        let (log, p) = reopen(h.dir.path());
        h.log = log;
        h.p = p;
        h.check_all();
        h.log.shutdown().unwrap();
    }
}
