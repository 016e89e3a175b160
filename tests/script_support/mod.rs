//! Runs one of the repository's Python harnesses (`scripts/<name>`) against the binary cargo
//! built, for the reliability tests whose short versions run in CI. Depends on nothing in Cairn.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `python3 scripts/<name> <args> --bin <cairn>` with its output in a temp file; kills it
/// and fails the test after `limit`. Returns its exit status and output, after printing the
/// lines `summary` picks.
pub(crate) fn run_script(
    name: &str,
    args: &[&str],
    limit: Duration,
    summary: impl Fn(&str) -> bool,
) -> (ExitStatus, String) {
    let script = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("cairn-{name}-{}.log", std::process::id()));
    let log = std::fs::File::create(&out).expect("log file");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .args(["--bin", env!("CARGO_BIN_EXE_cairn")])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 runs scripts/{name}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "scripts/{name} did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let picked: Vec<&str> = text.lines().filter(|l| summary(l)).collect();
    eprintln!("{}", picked.join("\n"));
    (status, text)
}
