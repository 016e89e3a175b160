//! The short crash loop in CI: `scripts/crash-loop --cycles 5` against the binary cargo built:
//! kill -9 under acks=all load (idempotent and plain producers, a keyed producer on a compacted
//! topic, a topic under retention, a committing group member and a second one joining and
//! leaving), one cycle each killed at a random moment, during a cleaning, during a rebalance and
//! right after retention deleted a segment; every acknowledged record and group commit checked
//! after each restart. The script itself fails when the run did not clean, apply retention or
//! commit on every partition. The long run (50+ cycles) is recorded in RELIABILITY.md. Needs
//! python3 with confluent-kafka (scripts/test installs it).

mod script_support;

use std::time::Duration;

#[test]
fn crash_loop_five_cycles_loses_nothing_acknowledged() {
    let (status, text) = script_support::run_script(
        "crash-loop",
        &["--cycles", "5"],
        Duration::from_secs(400),
        |l| l.starts_with("cycle ") || l.starts_with("crash-loop") || l.contains("VIOLATION"),
    );
    assert!(status.success(), "crash loop failed ({status}):\n{text}");
    assert!(
        text.contains("5 cycles survived"),
        "unexpected output:\n{text}"
    );
    assert!(
        text.contains("group checks on"),
        "the group checks did not run (group APIs not advertised?):\n{text}"
    );
}
