//! Hostile and broken clients against the real binary: a client that sends its frame a byte at
//! a time, a client that pipelines requests and never reads the answers, a thousand idle
//! connections, and a request storm. In each case a well-behaved client keeps being served
//! promptly and the broker's resident memory (from /proc) stays bounded.
//!
//! Starts `cairn` (CARGO_BIN_EXE_cairn) on 127.0.0.1 with a temp data dir and stops it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Cairn {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cairn {
    fn start(extra: &[&str]) -> Cairn {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", dir.path().to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for kv in extra {
            cmd.args(["--set", kv]);
        }
        let child = cmd.spawn().expect("start cairn");
        let c = Cairn {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cairn did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    /// Resident memory in MiB.
    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("VmRSS")
            / 1024
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ApiVersions v0 request frame (length prefix included).
fn api_versions(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Reads one response frame and returns its correlation id.
fn read_response(s: &mut TcpStream) -> std::io::Result<i32> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(i32::from_be_bytes(body[..4].try_into().expect("4 bytes")))
}

/// A well-behaved client: one ApiVersions round trip on a fresh connection; its duration.
fn probe(c: &Cairn) -> Duration {
    let started = Instant::now();
    let mut s = c.connect();
    s.write_all(&api_versions(42)).expect("send");
    assert_eq!(
        read_response(&mut s).expect("a healthy client is answered"),
        42
    );
    started.elapsed()
}

const PROMPT: Duration = Duration::from_secs(2);

#[test]
fn slow_client_does_not_hold_up_others_and_is_cut_at_the_idle_limit() {
    let mut c = Cairn::start(&["connections.max.idle.ms=3000"]);
    let frame = api_versions(7);
    let mut slow = c.connect();
    let started = Instant::now();
    let mut cut = false;
    // One byte every 300 ms: the 14-byte frame would take 4.2 s, longer than the idle limit.
    for b in &frame {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        assert!(probe(&c) < PROMPT, "a slow client delayed another client");
        std::thread::sleep(Duration::from_millis(300));
    }
    if !cut {
        // The frame was completed late: the broker must have closed instead of answering.
        slow.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let r = read_response(&mut slow);
        assert!(
            r.is_err(),
            "a frame that took longer than connections.max.idle.ms was served"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(c.alive());
}

#[test]
fn client_that_never_reads_is_throttled_and_others_are_served() {
    let mut c = Cairn::start(&[]);
    let base = c.rss_mib();
    let mut greedy = c.connect();
    greedy
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // Pipeline requests without reading a single response until the broker stops reading
    // (back-pressure) or 2M requests (28 MB, more than socket buffers hold) are out.
    let frame = api_versions(1);
    let mut sent = 0;
    let started = Instant::now();
    while sent < 2_000_000 && started.elapsed() < Duration::from_secs(20) {
        match greedy.write_all(&frame) {
            Ok(()) => sent += 1,
            Err(_) => break,
        }
    }
    assert!(
        sent < 2_000_000,
        "the broker kept reading requests whose answers pile up unread"
    );
    let rss = c.rss_mib();
    eprintln!("never-reading client: {sent} requests accepted before back-pressure; RSS {base} -> {rss} MiB");
    assert!(rss < base + 64, "memory grew from {base} to {rss} MiB");
    assert!(probe(&c) < PROMPT, "other clients are not served");
    assert!(c.alive());
}

#[test]
fn a_thousand_idle_connections_are_held_cheaply_and_closed_when_idle() {
    let mut c = Cairn::start(&["connections.max.idle.ms=4000"]);
    let base = c.rss_mib();
    let mut idle: Vec<TcpStream> = (0..1000).map(|_| c.connect()).collect();
    let rss = c.rss_mib();
    eprintln!("1000 idle connections: RSS {base} -> {rss} MiB");
    assert!(
        rss < base + 64,
        "1000 idle connections took {} MiB",
        rss - base
    );
    assert!(
        probe(&c) < PROMPT,
        "a client was not served beside 1000 idle connections"
    );
    // After the idle limit, the broker closes them: each read sees end of stream.
    std::thread::sleep(Duration::from_millis(4500));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    for s in idle.iter_mut() {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .expect("timeout");
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000, "idle connections were not closed");
    assert!(probe(&c) < PROMPT);
    assert!(c.alive());
}

#[test]
fn request_storm_keeps_memory_bounded_and_others_served() {
    let mut c = Cairn::start(&[]);
    let base = c.rss_mib();
    let port = c.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return 0;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let batch: Vec<u8> = (0..32).flat_map(api_versions).collect();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(&batch).is_err() {
                        break;
                    }
                    for _ in 0..32 {
                        if read_response(&mut s).is_err() {
                            return n;
                        }
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut peak = base;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        worst = worst.max(probe(&c));
        peak = peak.max(c.rss_mib());
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    eprintln!(
        "storm: {total} requests in 5 s from 16 pipelining clients; worst probe {worst:?}; RSS {base} -> peak {peak} MiB"
    );
    assert!(total > 1000, "the storm was not served");
    assert!(worst < PROMPT, "a client waited {worst:?} during the storm");
    assert!(peak < base + 128, "memory grew from {base} to {peak} MiB");
    assert!(c.alive());
}
