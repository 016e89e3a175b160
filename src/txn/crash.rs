//! Named crash points of a transaction's commit and abort, for the kill -9 tests: with the
//! environment variable `CAIRN_CRASH_AT` naming one of [`POINTS`] (`name`, or `name@N` for the
//! N-th time), the broker kills itself with SIGKILL (no destructor, no flush: exactly a
//! `kill -9`) when it reaches that step. The variable is read once, when the coordinator
//! starts; unset, a crash point costs one load of an initialised `OnceLock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The steps a broker can be stopped at, in the order a transaction reaches them.
pub const POINTS: &[&str] = &[
    // TxnOffsetCommit's offsets are appended to __consumer_offsets, not yet answered.
    "txn-offset-commit",
    // EndTxn accepted; the PrepareCommit/PrepareAbort record not yet written.
    "before-prepare",
    // The prepare record durable; no marker written.
    "after-prepare",
    // The first partition's marker written; the others not.
    "between-markers",
    // Every marker written; the CompleteCommit/CompleteAbort record not.
    "before-complete",
    // The complete record durable; EndTxn not answered.
    "after-complete",
];

/// The armed point: its name and which of its hits kills (1 = the first).
struct Armed {
    point: String,
    nth: u64,
    hits: AtomicU64,
}

static CRASH_AT: OnceLock<Option<Armed>> = OnceLock::new();

/// Reads `CAIRN_CRASH_AT` (at start-up); warns about a value that names no crash point.
pub fn init() {
    let armed = CRASH_AT.get_or_init(|| {
        let value = std::env::var("CAIRN_CRASH_AT").ok()?;
        let (point, nth) = match value.split_once('@') {
            Some((point, n)) => (point, n.parse().ok().filter(|&n| n >= 1)),
            None => (value.as_str(), Some(1)),
        };
        match nth {
            Some(nth) if POINTS.contains(&point) => Some(Armed {
                point: point.to_string(),
                nth,
                hits: AtomicU64::new(0),
            }),
            _ => {
                tracing::warn!(value = %value, known = ?POINTS, "CAIRN_CRASH_AT names no crash point (name or name@N); ignored");
                None
            }
        }
    });
    if let Some(a) = armed {
        tracing::warn!(point = %a.point, nth = a.nth, "CAIRN_CRASH_AT set: this broker kills itself at that step");
    }
}

/// Kills the process here when `CAIRN_CRASH_AT` names `point` and this is its N-th time.
pub fn point(point: &str) {
    debug_assert!(POINTS.contains(&point), "unknown crash point {point}");
    let Some(Some(armed)) = CRASH_AT.get() else {
        return;
    };
    if armed.point != point || armed.hits.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return;
    }
    eprintln!("CAIRN_CRASH_AT: killing this broker at {point}");
    // SIGKILL from outside, as an operator's kill -9; abort() if `kill` cannot be run.
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::thread::sleep(std::time::Duration::from_secs(5));
    std::process::abort();
}
