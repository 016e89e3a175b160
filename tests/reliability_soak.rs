//! The short soak in CI: `scripts/soak --minutes 1` against the binary cargo built. 50
//! idempotent acks=all producers and 50 consumers in 5 groups over a 100-partition topic for one
//! minute, sampled every 10 s; the script fails unless throughput is steady (no sample after the
//! warm-up one below half the median, produced or consumed), the broker's memory is flat (last
//! RSS sample at most twice the first plus 32 MiB), no client saw an error and every acknowledged
//! record reads back at its acknowledged offset. The 10-minute run is recorded in
//! RELIABILITY.md. Needs python3 with confluent-kafka (scripts/test installs it).

mod script_support;

use std::time::Duration;

#[test]
fn one_minute_soak_is_steady_and_loses_nothing() {
    // One minute of load, then the read-back: a generous bound for a loaded machine.
    let (status, text) =
        script_support::run_script("soak", &["--minutes", "1"], Duration::from_secs(600), |l| {
            l.starts_with("t=") || l.starts_with("soak")
        });
    assert!(status.success(), "soak failed ({status}):\n{text}");
    assert!(
        text.contains("soak: passed") && text.contains("missing 0"),
        "unexpected output:\n{text}"
    );
}
