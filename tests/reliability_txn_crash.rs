//! The short transactional crash loop in CI: `scripts/crash-loop --txn --cycles 8` against the
//! binary cargo built: a consume-transform-produce processor (read_committed, offsets sent to
//! each transaction) killed with kill -9 at a random moment, inside commit_transaction, and at
//! each named step of EndTxn and TxnOffsetCommit (CAIRN_CRASH_AT); after every restart each
//! output partition as read_committed shows it must be its input transformed up to the
//! group's committed offset, nothing missing and nothing twice, and at the end the whole input
//! exactly once. The long run (24+ cycles) is recorded in RELIABILITY.md. Needs python3 with
//! confluent-kafka (scripts/test installs it).

mod script_support;

use std::time::Duration;

#[test]
fn transactional_crash_loop_eight_cycles_is_exactly_once() {
    let (status, text) = script_support::run_script(
        "crash-loop",
        &["--txn", "--cycles", "8"],
        Duration::from_secs(400),
        |l| l.starts_with("cycle ") || l.starts_with("crash-loop") || l.contains("VIOLATION"),
    );
    assert!(
        status.success(),
        "transactional crash loop failed ({status}):\n{text}"
    );
    assert!(
        text.contains("8 cycles survived (transactional)"),
        "unexpected output:\n{text}"
    );
    assert!(
        !text.contains("(not reached)"),
        "a crash point was never reached:\n{text}"
    );
}
