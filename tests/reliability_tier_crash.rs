//! The short tiered crash loop in CI: `scripts/crash-loop --tier --cycles 8` against the binary
//! cargo built, with a moto S3 server on loopback: tiered topics whose data leaves the local
//! disk (one keeping everything, one whose remote segments expire, one compacted whose remote
//! segments the tier's cleaner rewrites), acks=all producers, and one cycle each of kill -9 at
//! a random moment, right after a segment upload, right after a manifest write, right after a
//! remote deletion, right after the upload of a cleaned segment (before the manifest naming it),
//! right after the manifest swapping cleaned segments in (before the objects they replace are
//! collected), part-way through a restore from the bucket into an empty data directory, and of
//! the S3 server itself; after every restart each acknowledged record is read back at its offset,
//! once, in order, the compacted topic holds exactly the latest value of each key, and after the
//! restore the topics' configs and a group's committed offsets are back. The script fails when
//! no record was left only in the bucket or remote retention deleted none. The long run is
//! recorded in RELIABILITY.md. Needs python3 with confluent-kafka and boto3, and `moto_server`
//! (scripts/test installs them).

mod script_support;

use std::time::Duration;

#[test]
fn tiered_crash_loop_eight_cycles_loses_nothing_acknowledged() {
    let (status, text) = script_support::run_script(
        "crash-loop",
        &["--tier", "--cycles", "8"],
        Duration::from_secs(400),
        |l| l.starts_with("cycle ") || l.starts_with("crash-loop") || l.contains("VIOLATION"),
    );
    assert!(
        status.success(),
        "tiered crash loop failed ({status}):\n{text}"
    );
    assert!(
        text.contains("8 cycles survived (tiered)"),
        "unexpected output:\n{text}"
    );
    for moment in [
        "'upload': 1",
        "'manifest': 1",
        "'deletion': 1",
        "'clean-upload': 1",
        "'clean-swap': 1",
        "'restore': 1",
        "kills of the S3 server 1",
    ] {
        assert!(
            text.contains(moment),
            "a kill moment was not reached ({moment}):\n{text}"
        );
    }
}
