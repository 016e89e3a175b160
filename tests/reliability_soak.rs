//! The short soak in CI: `scripts/soak --minutes 1` against the binary cargo built. 50
//! idempotent acks=all producers and 50 consumers in 5 groups over a 100-partition topic for one
//! minute, sampled every 10 s; the script fails unless throughput is steady (no sample after the
//! warm-up one below half the median, produced or consumed), the broker's memory is flat (last
//! RSS sample at most twice the first plus 32 MiB), no client saw an error and every acknowledged
//! record reads back at its acknowledged offset. The 10-minute run is recorded in
//! RELIABILITY.md. Needs python3 with confluent-kafka (scripts/test installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn one_minute_soak_is_steady_and_loses_nothing() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak");
    let out = std::env::temp_dir().join(format!("cairn-soak-{}.log", std::process::id()));
    let log = std::fs::File::create(&out).expect("log file");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--minutes", "1", "--bin", env!("CARGO_BIN_EXE_cairn")])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs scripts/soak");
    // One minute of load, then the read-back: a generous bound for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the soak did not finish in 600 s:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("t=") || l.starts_with("soak"))
        .collect();
    eprintln!("{}", summary.join("\n"));
    assert!(status.success(), "soak failed ({status}):\n{text}");
    assert!(
        text.contains("soak: passed") && text.contains("missing 0"),
        "unexpected output:\n{text}"
    );
}
