//! A small mutational fuzzer that runs on the stable toolchain inside an ordinary test binary.
//!
//! Owns the mutation engine (byte-level mutations, splicing, Kafka-aware fix-ups), the corpus
//! handling (seed files under `fuzz/corpus/<target>/`, inputs kept when they reach an outcome not
//! seen before) and the crash reporting (the failing input is written under
//! `target/fuzz-artifacts/<target>/` and its path printed). It knows nothing of Cairn: targets
//! are closures returning an outcome signature or a failure message. Coverage is not measured
//! (that needs nightly sanitizer flags); the outcome signature is the feedback instead: an input
//! whose signature is new (a new error kind, a new API, a new recovery result) joins the corpus.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: fast, deterministic from its seed, good enough to pick mutations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that tend to break length and count handling, as big-endian bytes.
const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    7,
    8,
    16,
    60,
    61,
    127,
    128,
    255,
    256,
    0x7fff,
    -0x8000,
    0xffff,
    0x7fff_ffff,
    -0x8000_0000,
    0x1_0000_0000,
    i64::MAX,
    i64::MIN,
];

/// Applies one to four random mutations to `data`, possibly splicing from `other`.
pub(crate) fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng, max_len: usize) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = data.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // An interesting value of width 1, 2, 4 or 8 at a random place.
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = value.to_be_bytes();
                let at = rng.below(len);
                for (k, b) in bytes[8 - width..].iter().enumerate() {
                    if at + k < len {
                        data[at + k] = *b;
                    }
                }
            }
            3 if len < max_len => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16.min(max_len - len));
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, fill);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                data.drain(at..at + n);
            }
            5 if len > 0 && len < max_len => {
                // Duplicate a range (repeats fields, array elements, batches).
                let at = rng.below(len);
                let n = (1 + rng.below((len - at).min(64))).min(max_len - len);
                let copy = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            6 if len > 0 => {
                data.truncate(rng.below(len));
            }
            7 if !other.is_empty() => {
                // Splice: our head, the other input's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                let room = max_len.saturating_sub(data.len());
                data.extend_from_slice(&other[from..other.len().min(from + room)]);
            }
            8 if len > 0 => {
                // An unsigned varint (compact lengths in flexible versions) at a random place.
                let at = rng.below(len);
                let value = INTERESTING[rng.below(INTERESTING.len())] as u64;
                let mut v = value & 0xffff_ffff;
                let mut enc = Vec::new();
                loop {
                    if v < 0x80 {
                        enc.push(v as u8);
                        break;
                    }
                    enc.push((v as u8 & 0x7f) | 0x80);
                    v >>= 7;
                }
                let end = (at + enc.len()).min(len);
                data.splice(at..end, enc);
            }
            9 if len > 1 => {
                // Swap two bytes (order-sensitive fields).
                let a = rng.below(len);
                let b = rng.below(len);
                data.swap(a, b);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                data[i] = data[i]
                    .wrapping_add(1 + rng.below(16) as u8)
                    .wrapping_sub(8);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(max_len);
}

/// Walks `data` as a sequence of v2 record batches (from `start`) and rewrites each one's CRC,
/// so that mutated batches get past the CRC check and reach the code behind it.
pub(crate) fn fix_batch_crcs(data: &mut [u8], start: usize) {
    let mut pos = start;
    while pos + 61 <= data.len() {
        let length = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if length < 49 {
            return;
        }
        let end = pos + 12 + length as usize;
        if end > data.len() {
            return;
        }
        let crc = crc32c::crc32c(&data[pos + 21..end]);
        data[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// The corpus directory of a target, inside the repository.
pub(crate) fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

/// Reads every file of a corpus directory (none when it does not exist).
pub(crate) fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// How long each target runs: `CAIRN_FUZZ_SECONDS` when set, else `default`.
pub(crate) fn budget(default: Duration) -> Duration {
    std::env::var("CAIRN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

/// The seed of the random choices: `CAIRN_FUZZ_SEED` when set; else a fixed seed for the short
/// CI run (so CI replays the same inputs and cannot turn red by chance), and the clock for long
/// runs (`CAIRN_FUZZ_SECONDS` set). Printed, so a failing run can be repeated.
pub(crate) fn seed() -> u64 {
    if std::env::var("CAIRN_FUZZ_SECONDS").is_err() && std::env::var("CAIRN_FUZZ_SEED").is_err() {
        return 0x5eed_cafe;
    }
    std::env::var("CAIRN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// What a run did.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) target: &'static str,
    pub(crate) executions: u64,
    pub(crate) corpus: usize,
    pub(crate) outcomes: usize,
    /// Inputs that hit a known, reported weakness (outcome starting with `known-weakness`).
    pub(crate) known_weakness_hits: u64,
    pub(crate) elapsed: Duration,
    pub(crate) seed: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz {}: {} executions in {:.1} s ({:.0}/s), corpus {}, distinct outcomes {}, known-weakness hits {}, seed {}",
            self.target,
            self.executions,
            self.elapsed.as_secs_f64(),
            self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.corpus,
            self.outcomes,
            self.known_weakness_hits,
            self.seed
        )
    }
}

/// One fuzz target: a name, its seeds, and a run function that returns the input's outcome
/// signature, or `Err` when the input broke an invariant.
pub(crate) struct Target<'a> {
    pub(crate) name: &'static str,
    pub(crate) seeds: Vec<Vec<u8>>,
    pub(crate) max_len: usize,
    /// Applied to one mutated input in two (e.g. CRC fix-ups); may be a no-op.
    pub(crate) fixup: &'a dyn Fn(&mut [u8], &mut Rng),
    pub(crate) run: &'a dyn Fn(&[u8]) -> Result<String, String>,
}

fn save_artifact(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("fuzz-artifacts")
        .join(target);
    let _ = std::fs::create_dir_all(&dir);
    let name = format!("crash-{:08x}", crc32c::crc32c(input));
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    path
}

fn run_one(target: &Target<'_>, input: &[u8]) -> Result<String, String> {
    match catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// Runs every seed, then mutated inputs until `budget` has passed. Returns the statistics, or
/// the first failure with the path of the saved input.
pub(crate) fn fuzz(target: &Target<'_>, budget: Duration, seed: u64) -> Result<Stats, String> {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen = HashSet::new();
    let mut executions = 0u64;
    let mut known = 0u64;
    let fail = |input: &[u8], why: String| {
        let path = save_artifact(target.name, input);
        format!(
            "fuzz target {} failed (seed {seed}): {why}\ninput saved to {} ({} bytes)",
            target.name,
            path.display(),
            input.len()
        )
    };
    for input in &target.seeds {
        executions += 1;
        let sig = run_one(target, input).map_err(|why| fail(input, why))?;
        seen.insert(sig);
        corpus.push(input.clone());
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    const MAX_CORPUS: usize = 4096;
    while started.elapsed() < budget {
        for _ in 0..16 {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let mut input = base.clone();
            mutate(&mut input, other, &mut rng, target.max_len);
            if rng.chance(2) {
                (target.fixup)(&mut input, &mut rng);
            }
            executions += 1;
            let sig = run_one(target, &input).map_err(|why| fail(&input, why))?;
            if sig.starts_with("known-weakness") {
                known += 1;
            }
            if seen.insert(sig) && corpus.len() < MAX_CORPUS {
                corpus.push(input);
            }
        }
    }
    Ok(Stats {
        target: target.name,
        executions,
        corpus: corpus.len(),
        outcomes: seen.len(),
        known_weakness_hits: known,
        elapsed: started.elapsed(),
        seed,
    })
}
