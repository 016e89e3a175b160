//! Crash safety of compaction: a crash at any step of the segment swap leaves a log that reads
//! exactly as before the cleaning or exactly as after it.
//!
//! The cleaner writes a merged group of segments as `.cleaned` files; the directory is then
//! copied while the broker runs (a `kill -9` image: no clean-shutdown marker), and each step of
//! the swap (`.cleaned` → `.swap`, old files → `.deleted` → gone, `.swap` → final) is replayed on
//! its own copy, one file operation at a time. Every copy is opened (start-up recovery runs) and
//! read from its log start; it must equal the log as read before or after the real swap.

#[path = "cleaner_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::log::cleaner::{CleanOptions, Cleaner, CleanerConfig};
use support::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// One file operation of the swap, in the order the partition performs them.
#[derive(Debug, Clone)]
enum Step {
    Rename(String, String),
    Remove(String),
}

fn apply(dir: &Path, step: &Step) {
    match step {
        Step::Rename(from, to) => {
            if dir.join(from).exists() {
                std::fs::rename(dir.join(from), dir.join(to)).unwrap();
            }
        }
        Step::Remove(file) => {
            if dir.join(file).exists() {
                std::fs::remove_file(dir.join(file)).unwrap();
            }
        }
    }
}

fn swap_steps(new_base: i64, old_bases: &[i64]) -> Vec<Step> {
    let exts = ["log", "index", "timeindex"];
    let mut steps = Vec::new();
    for ext in exts {
        steps.push(Step::Rename(
            name(new_base, &format!("{ext}.cleaned")),
            name(new_base, &format!("{ext}.swap")),
        ));
    }
    for &b in old_bases {
        for ext in exts {
            steps.push(Step::Rename(
                name(b, ext),
                name(b, &format!("{ext}.deleted")),
            ));
            steps.push(Step::Remove(name(b, &format!("{ext}.deleted"))));
        }
    }
    for ext in exts {
        steps.push(Step::Rename(
            name(new_base, &format!("{ext}.swap")),
            name(new_base, ext),
        ));
    }
    steps
}

/// Opens a copy of the data dir (recovery runs), reads everything, checks that appends continue.
fn read_copy(dir: &Path) -> Vec<Stored> {
    let log = open(dir, &[]);
    let p = log.partition("t", 0).expect("topic survives");
    let (_, records) = read_all(&p);
    let end = p.offsets().log_end_offset;
    put(&p, "after-crash", Some("x"));
    assert_eq!(p.offsets().log_end_offset, end + 1);
    log.halt();
    records
}

#[test]
fn a_crash_at_any_step_of_the_swap_reads_as_before_or_after() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let log = open(&live, &[]);
    log.create_topic("t", 1, compacted(&[("delete.retention.ms", "0")]), false)
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let config = CleanerConfig {
        dedupe_buffer_size: 1 << 20,
        io_max_bytes_per_second: f64::MAX,
        backoff: Duration::from_millis(100),
    };
    let mut cleaner = Cleaner::new(&live, config);
    // A first cleaning leaves small segments, which the next one merges into one group.
    for round in 0..3 {
        for k in 0..120 {
            put(
                &p,
                &format!("key-{k}"),
                Some(&format!("r{round}-{}", "v".repeat(40))),
            );
        }
    }
    p.roll().unwrap();
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    for k in 0..120 {
        let value = (k % 4 != 0).then(|| format!("r3-{k}"));
        put(&p, &format!("key-{k}"), value.as_deref());
    }
    p.roll().unwrap();

    let before = read_all(&p).1;
    let stats = cleaner
        .clean(
            &p,
            now_ms(),
            CleanOptions {
                force: true,
                prepare_only: true,
            },
        )
        .unwrap()
        .expect("a group was written");
    let old_bases: Vec<i64> = p
        .sealed_segments()
        .iter()
        .take(stats.segments_before)
        .map(|s| s.base_offset)
        .collect();
    assert!(
        old_bases.len() >= 3,
        "the group merges several segments: {old_bases:?}"
    );
    let new_base = old_bases[0];
    let pdir: PathBuf = p.dir().to_path_buf();
    assert!(pdir.join(name(new_base, "log.cleaned")).exists());

    // The crash image: the directory as a running broker leaves it.
    let image = root.path().join("image");
    copy_dir(&live, &image);
    p.replace_segments(&old_bases).unwrap();
    let after = read_all(&p).1;
    log.shutdown().unwrap();
    assert_ne!(before, after, "the cleaning changes what a reader sees");
    assert_eq!(fold(&before), fold(&after));
    let image_part = image.join("t-0");

    // A crash while the .cleaned log was being written: a torn file.
    let copy = root.path().join("torn-cleaned");
    copy_dir(&image, &copy);
    let torn = copy.join("t-0").join(name(new_base, "log.cleaned"));
    let len = std::fs::metadata(&torn).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(read_copy(&copy), before, "torn .cleaned file");
    assert!(!copy
        .join("t-0")
        .join(name(new_base, "log.cleaned"))
        .exists());

    // Every prefix of the swap's file operations.
    let steps = swap_steps(new_base, &old_bases);
    let first_swap_done = 1; // once the .log is .swap, recovery completes the swap
    for done in 0..=steps.len() {
        let copy = root.path().join(format!("step-{done}"));
        copy_dir(&image, &copy);
        for step in &steps[..done] {
            apply(&copy.join("t-0"), step);
        }
        let got = read_copy(&copy);
        let expected = if done >= first_swap_done {
            &after
        } else {
            &before
        };
        assert!(
            &got == expected,
            "crash after {done} of {} steps (last: {:?}) reads neither as expected",
            steps.len(),
            steps[..done].last()
        );
        let leftovers: Vec<String> = std::fs::read_dir(copy.join("t-0"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".cleaned") || n.ends_with(".deleted") || n.ends_with(".log.swap")
            })
            .collect();
        assert!(leftovers.is_empty(), "step {done}: leftovers {leftovers:?}");
    }
    assert!(image_part.exists());
}

/// Where the child process of the kill -9 test cleans (set only in that child).
const CHILD_DIR_ENV: &str = "CAIRN_CLEANER_CRASH_CHILD_DIR";

/// The child side of `kill_9_during_compaction_recovers_exactly`: cleans the given data dir in
/// a loop, rate limited so that a kill lands anywhere in the map scan, the rewrite or a swap.
/// A no-op unless started by that test.
#[test]
fn child_cleaner_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let log = open(&dir, &[]);
    let p = log.partition("t", 0).expect("topic");
    let mut cleaner = Cleaner::new(
        &dir,
        CleanerConfig {
            dedupe_buffer_size: 4096,
            io_max_bytes_per_second: 2_000_000.0,
            backoff: Duration::from_millis(10),
        },
    );
    // Runs until the parent kills it (bounded in case the parent dies first).
    for _ in 0..10_000 {
        if cleaner
            .clean_fully(&p, now_ms(), true)
            .expect("clean")
            .is_empty()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn kill_9_during_compaction_recovers_exactly() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let mut model = std::collections::BTreeMap::new();
    {
        let log = open(&dir, &[]);
        log.create_topic("t", 1, compacted(&[]), false).unwrap();
        log.shutdown().unwrap();
    }
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..6 {
        // New updates (and some tombstones), written by this process.
        {
            let log = open(&dir, &[]);
            let p = log.partition("t", 0).unwrap();
            for i in 0..400 {
                let key = format!("key-{}", random(300));
                if i % 10 == 9 {
                    put(&p, &key, None);
                    model.remove(&key);
                } else {
                    let value = format!("r{round}-{i}-{}", "x".repeat(60));
                    put(&p, &key, Some(&value));
                    model.insert(key, value);
                }
            }
            p.roll().unwrap();
            log.shutdown().unwrap();
        }
        // A cleaner process, killed at a random moment.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_cleaner_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A random kill time, not a wait for a condition: the point is to land anywhere.
        std::thread::sleep(Duration::from_millis(100 + random(600)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Start-up recovery, then the log must read as the model.
        let log = open(&dir, &[]);
        let p = log.partition("t", 0).unwrap();
        let (_, records) = read_all(&p);
        assert_eq!(fold(&records), model, "round {round}");
        log.shutdown().unwrap();
    }
    // And a final uninterrupted cleaning still reaches one record per key.
    let log = open(&dir, &[]);
    let p = log.partition("t", 0).unwrap();
    let mut cleaner = Cleaner::new(&dir, CleanerConfig::default());
    cleaner.clean_fully(&p, now_ms(), true).unwrap();
    let (_, records) = read_all(&p);
    assert_eq!(fold(&records), model);
    let mut keys: Vec<&String> = records.iter().map(|r| &r.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        records.len(),
        "one record per key after a full cleaning"
    );
    log.shutdown().unwrap();
}
