//! Fuzzing on the stable toolchain: runs each target of `fuzz/targets.rs` for a time budget
//! (`CAIRN_FUZZ_SECONDS` per target, short by default so CI stays fast; `scripts/fuzz` runs
//! long), starting from the seed corpus in `fuzz/corpus/<target>/` plus generated seeds.
//! A failing input is saved under `target/fuzz-artifacts/` and the test fails with its path;
//! `CAIRN_FUZZ_SEED` repeats a run. `CAIRN_FUZZ_WRITE_SEEDS=1` refreshes the corpus files.
//!
//! Depends only on Cairn's public API and the fuzz engine; no network.

#[path = "../fuzz/engine.rs"]
mod engine;
#[path = "../fuzz/targets.rs"]
mod targets;

use std::time::Duration;

use engine::{budget, corpus_dir, fuzz, load_corpus, seed, Rng, Target};

fn no_fixup(_: &mut [u8], _: &mut Rng) {}

/// Generated seeds plus the committed corpus of `name`.
fn seeds(name: &str, generated: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = corpus_dir(name);
    if std::env::var("CAIRN_FUZZ_WRITE_SEEDS").as_deref() == Ok("1") {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for s in &generated {
            let path = dir.join(format!("seed-{:08x}", crc32c::crc32c(s)));
            std::fs::write(path, s).expect("write seed");
        }
    }
    let mut all = load_corpus(&dir);
    assert!(
        !all.is_empty(),
        "the seed corpus {} is missing (CAIRN_FUZZ_WRITE_SEEDS=1 writes it)",
        dir.display()
    );
    all.extend(generated);
    all
}

/// `CAIRN_FUZZ_REPLAY=<file>` runs that one input through the target and fails with its result
/// (to reproduce a saved failure); `true` when it did.
fn replay(target: &Target<'_>) -> bool {
    let Ok(path) = std::env::var("CAIRN_FUZZ_REPLAY") else {
        return false;
    };
    if std::env::var("CAIRN_FUZZ_TARGET").is_ok_and(|t| t != target.name) {
        return true;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let input = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    match (target.run)(&input) {
        Ok(sig) => eprintln!("replay {path} on {}: ok, outcome {sig}", target.name),
        Err(e) => panic!("replay {path} on {}: {e}", target.name),
    }
    true
}

fn report(stats: &engine::Stats) {
    eprintln!("{stats}");
    // One line per target in a file scripts/fuzz reads for RELIABILITY.md.
    if let Ok(path) = std::env::var("CAIRN_FUZZ_STATS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{stats}");
        }
    }
}

#[test]
fn fuzz_request_frames() {
    let table = cairn::broker::version_table(true);
    let run = |input: &[u8]| targets::run_request(input, &table);
    let target = Target {
        name: "request",
        seeds: seeds("request", targets::request_seeds()),
        max_len: 4096,
        fixup: &no_fixup,
        run: &run,
    };
    if replay(&target) {
        return;
    }
    let stats =
        fuzz(&target, budget(Duration::from_secs(8)), seed()).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.executions > 100, "too few executions: {stats}");
    report(&stats);
}

#[test]
fn fuzz_batch_validation() {
    let target = Target {
        name: "batch",
        seeds: seeds("batch", targets::batch_seeds()),
        max_len: 16 * 1024,
        fixup: &targets::fix_batches,
        run: &targets::run_batch,
    };
    if replay(&target) {
        return;
    }
    let stats =
        fuzz(&target, budget(Duration::from_secs(6)), seed()).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.executions > 100, "too few executions: {stats}");
    report(&stats);
}

#[test]
fn fuzz_produce_append() {
    let state = targets::append_state();
    let run = |input: &[u8]| targets::run_append(input, &state);
    let target = Target {
        name: "append",
        seeds: seeds("batch", targets::batch_seeds()),
        max_len: 16 * 1024,
        fixup: &targets::fix_batches,
        run: &run,
    };
    if replay(&target) {
        return;
    }
    let stats =
        fuzz(&target, budget(Duration::from_secs(6)), seed()).unwrap_or_else(|e| panic!("{e}"));
    report(&stats);
    // Everything accepted (above the log start the run moved) is still there, at its offsets.
    let p = state.log.partition("fuzz", 0).expect("partition");
    let stored = targets::read_all(&p).unwrap_or_else(|e| panic!("{e}"));
    let acknowledged = state.acknowledged.lock().expect("lock").clone();
    assert!(!acknowledged.is_empty(), "no append was accepted: {stats}");
    let start = p.offsets().log_start_offset;
    let ranges: Vec<(i64, i64)> = acknowledged
        .iter()
        .filter(|&&(b, _, _)| b >= start)
        .map(|&(b, l, _)| (b, l))
        .collect();
    assert_eq!(stored, ranges, "the log differs from the accepted appends");
    state.log.shutdown().expect("shutdown");
}

#[test]
fn fuzz_log_recovery() {
    let target = Target {
        name: "recovery",
        seeds: seeds("recovery", targets::recovery_seeds()),
        max_len: 64 * 1024,
        fixup: &targets::fix_segment,
        run: &targets::run_recovery,
    };
    if replay(&target) {
        return;
    }
    let stats =
        fuzz(&target, budget(Duration::from_secs(10)), seed()).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.executions > 20, "too few executions: {stats}");
    report(&stats);
}

/// Every recovery input in `fuzz/findings/` (each once found a weakness: W1 start-up failures,
/// W2 damage served after a clean start, W3 segments overlapping) now passes the strict
/// recovery target: the broker starts, the log reads back consistently and takes appends.
#[test]
fn recovery_findings_replay_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/findings");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/findings") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("recovery-") {
            continue;
        }
        let input = std::fs::read(&path).expect("finding");
        match targets::run_recovery(&input) {
            Ok(outcome) => assert!(!outcome.starts_with("known-weakness"), "{name}: {outcome}"),
            Err(e) => panic!("{name}: {e}"),
        }
        replayed += 1;
    }
    assert!(replayed >= 6, "only {replayed} recovery findings replayed");
}
