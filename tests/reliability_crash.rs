//! The short crash loop in CI: `scripts/crash-loop --cycles 5` against the binary cargo built:
//! kill -9 under acks=all load (idempotent and plain producers, a keyed producer on a compacted
//! topic, a topic under retention, a committing group member and a second one joining and
//! leaving), one cycle each killed at a random moment, during a cleaning, during a rebalance and
//! right after retention deleted a segment; every acknowledged record and group commit checked
//! after each restart. The script itself fails when the run did not clean, apply retention or
//! commit on every partition. The long run (50+ cycles) is recorded in RELIABILITY.md. Needs
//! python3 with confluent-kafka (scripts/test installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn crash_loop_five_cycles_loses_nothing_acknowledged() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/crash-loop");
    let out = std::env::temp_dir().join(format!("cairn-crash-loop-{}.log", std::process::id()));
    let log = std::fs::File::create(&out).expect("log file");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--cycles", "5", "--bin", env!("CARGO_BIN_EXE_cairn")])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs scripts/crash-loop");
    let deadline = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the crash loop did not finish in 400 s:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("cycle ") || l.starts_with("crash-loop") || l.contains("VIOLATION")
        })
        .collect();
    eprintln!("{}", summary.join("\n"));
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
