//! Hostile and broken clients against the real binary: a client that sends its frame a byte at
//! a time, a client that pipelines requests and never reads the answers, a thousand idle
//! connections, and a request storm. In each case a well-behaved client keeps being served
//! promptly and the broker's resident memory (from /proc) stays bounded.
//!
//! Clients that each send most of a big frame and hold it cannot take more memory than the
//! broker-wide request budget (`queued.max.request.bytes`).
//!
//! Starts `cairn` (CARGO_BIN_EXE_cairn) on 127.0.0.1 with a temp data dir and stops it.

#[allow(dead_code)]
#[path = "../protocol-tests/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../protocol-tests/util.rs"]
mod util;

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
        self.status_mib("VmRSS:")
    }

    /// The most resident memory so far (the kernel's high-water mark), in MiB.
    fn peak_rss_mib(&self) -> u64 {
        self.status_mib("VmHWM:")
    }

    fn status_mib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("memory field in /proc status")
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

const MIB: usize = 1 << 20;

/// A client that sends the length prefix of a `frame_mib` MiB frame and then all but its last
/// MiB, stopping when the broker stops reading (a send blocked for 3 s). Returns the
/// connection, held open, and how many MiB of the body went out.
fn send_most_of_a_big_frame(port: u16, frame_mib: usize) -> (TcpStream, usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut sent = 0;
    if s.write_all(&((frame_mib * MIB) as i32).to_be_bytes())
        .is_ok()
    {
        let chunk = vec![0u8; MIB];
        while sent < frame_mib - 1 && s.write_all(&chunk).is_ok() {
            sent += 1;
        }
    }
    (s, sent)
}

#[test]
fn clients_holding_big_frames_stay_within_the_request_budget_and_others_are_served() {
    const BUDGET_MIB: usize = 80;
    const FRAME_MIB: usize = 36;
    const CLIENTS: usize = 6;
    let budget = format!("queued.max.request.bytes={}", BUDGET_MIB * MIB);
    let mut c = Cairn::start(&[&budget]);
    let base = c.rss_mib();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], c.port));
    let mut normal = harness::Client::connect(addr);
    util::create_topic(&mut normal, "small", 1, &[]);

    // Six clients each send 35 MiB of a 36 MiB frame and hold it. Two frames fit the 80 MiB
    // budget; the other four are not read (their sends block) until room is made.
    let port = c.port;
    let big: Vec<(TcpStream, usize)> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || send_most_of_a_big_frame(port, FRAME_MIB)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("sender thread"))
        .collect();
    let sent: Vec<usize> = big.iter().map(|(_, n)| *n).collect();
    let read_whole = sent.iter().filter(|&&n| n == FRAME_MIB - 1).count();
    assert!(
        (1..CLIENTS).contains(&read_whole),
        "expected some frames read and the rest held back, MiB sent per client: {sent:?}"
    );

    // Meanwhile a normal client is served: ApiVersions, Metadata, a small Produce (acks=all).
    let started = Instant::now();
    assert!(
        probe(&c) < PROMPT,
        "ApiVersions waited behind the big frames"
    );
    let metadata: kafka_protocol::messages::MetadataResponse = normal.call(
        9,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(util::topic_name("small"))),
        ])),
    );
    assert_eq!(metadata.topics[0].error_code, 0);
    let (error, base_offset) = util::produce(&mut normal, 9, "small", 0, util::batch(&["a"], 1));
    assert_eq!((error, base_offset), (0, 0), "small produce refused");
    let served_in = started.elapsed();
    assert!(
        served_in < 3 * PROMPT,
        "the normal client took {served_in:?}"
    );
    let peak = c.peak_rss_mib();
    eprintln!(
        "{CLIENTS} clients holding {}/{FRAME_MIB} MiB frames, budget {BUDGET_MIB} MiB: MiB sent per client {sent:?}; \
         RSS {base} -> peak {peak} MiB; normal client served in {served_in:?}",
        FRAME_MIB - 1
    );
    assert!(
        peak < base + BUDGET_MIB as u64 + 32,
        "memory grew from {base} to {peak} MiB with a {BUDGET_MIB} MiB request budget"
    );

    // The big senders go away: their budget comes back, so a request needing nearly all of it
    // is read and gets its normal answer (the batch is larger than message.max.bytes).
    drop(big);
    let value = "x".repeat((BUDGET_MIB - 4) * MIB);
    let huge = util::encode(
        &[util::record(Some("k"), Some(&value), 1)],
        kafka_protocol::records::Compression::None,
    );
    let started = Instant::now();
    let (error, _) = util::produce(&mut normal, 9, "small", 0, huge);
    assert_eq!(
        error,
        kafka_protocol::error::ResponseError::MessageTooLarge.code(),
        "a request needing the whole budget was not served normally"
    );
    eprintln!(
        "after the big senders left: a {} MiB request answered in {:?}",
        BUDGET_MIB - 4,
        started.elapsed()
    );
    let (error, base_offset) = util::produce(&mut normal, 9, "small", 0, util::batch(&["b"], 2));
    assert_eq!((error, base_offset), (0, 1));
    assert!(c.alive());
}

#[test]
fn client_pipelining_fetches_it_never_reads_holds_one_response_and_is_cut_at_the_idle_limit() {
    const IDLE_MS: u64 = 2000;
    const FETCHES: usize = 64;
    let mut c = Cairn::start(&[&format!("connections.max.idle.ms={IDLE_MS}")]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], c.port));
    let mut normal = harness::Client::connect(addr);
    util::create_topic(&mut normal, "f", 1, &[]);
    // 24 MiB stored: each Fetch below is answered with 10 MiB (partition_max_bytes).
    let value = "v".repeat(1_000_000);
    for i in 0..24 {
        let batch = util::encode(
            &[util::record(Some("k"), Some(&value), i)],
            kafka_protocol::records::Compression::None,
        );
        assert_eq!(util::produce(&mut normal, 9, "f", 0, batch), (0, i));
    }
    let base = c.rss_mib();

    // 64 pipelined Fetch requests whose answers are never read: 640 MiB if all were built.
    let mut greedy = harness::Client::connect(addr);
    for _ in 0..FETCHES {
        let (_, frame) = greedy.frame(12, &util::fetch_request("f", 0, 0, 0, 0));
        greedy.send_raw(&frame).expect("send fetch");
    }
    let watched = Instant::now();
    let mut peak = base;
    while watched.elapsed() < Duration::from_millis(IDLE_MS) {
        peak = peak.max(c.peak_rss_mib());
        assert!(
            peak < base + 128,
            "unread Fetch answers took the broker from {base} to {peak} MiB"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(probe(&c) < PROMPT, "other clients are not served");
    eprintln!("{FETCHES} pipelined 10 MiB Fetches never read: RSS {base} -> peak {peak} MiB");

    // Past the idle limit (the reader's, then the writer's) the broker closes the connection:
    // reading now yields what was written before, then the end, not all 64 answers.
    std::thread::sleep(Duration::from_millis(2 * IDLE_MS + 1000));
    greedy
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answered = 0;
    while answered < FETCHES && greedy.read_frame().is_ok() {
        answered += 1;
    }
    assert!(
        answered < FETCHES,
        "a client that read nothing for 2 idle limits was kept"
    );
    eprintln!("the never-reading client was closed after {answered} answers");
    assert!(c.alive());
}

#[test]
fn client_pipelining_long_poll_fetches_has_one_answer_built_at_a_time() {
    const FETCHES: usize = 64;
    let mut c = Cairn::start(&[]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], c.port));
    let mut normal = harness::Client::connect(addr);
    util::create_topic(&mut normal, "p", 1, &[]);
    assert_eq!(
        util::produce(&mut normal, 9, "p", 0, util::batch(&["first"], 1)),
        (0, 0)
    );
    let base = c.rss_mib();

    // 64 pipelined Fetches parked in a long poll for 5 MiB past the log end; nothing read.
    let mut greedy = harness::Client::connect(addr);
    let mut ids = Vec::new();
    for _ in 0..FETCHES {
        let (id, frame) = greedy.frame(12, &util::fetch_request("p", 0, 1, 20_000, 5 * MIB as i32));
        greedy.send_raw(&frame).expect("send fetch");
        ids.push(id);
    }
    // 12 MiB arrive: were every parked Fetch woken at once, each would build a 5-10 MiB answer.
    let value = "v".repeat(1_000_000);
    for i in 1..=12 {
        let batch = util::encode(
            &[util::record(Some("k"), Some(&value), i)],
            kafka_protocol::records::Compression::None,
        );
        assert_eq!(util::produce(&mut normal, 9, "p", 0, batch), (0, i));
    }
    let watched = Instant::now();
    let mut peak = base;
    while watched.elapsed() < Duration::from_secs(2) {
        peak = peak.max(c.peak_rss_mib());
        assert!(
            peak < base + 128,
            "parked Fetch answers took the broker from {base} to {peak} MiB"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(probe(&c) < PROMPT, "other clients are not served");
    eprintln!(
        "{FETCHES} pipelined long-poll Fetches woken by 12 MiB: RSS {base} -> peak {peak} MiB"
    );

    // Once the client reads, every Fetch is answered, in order, with the new records.
    greedy
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    for id in ids {
        let body = greedy
            .read_frame()
            .expect("a pipelined Fetch was not answered");
        assert_eq!(
            i32::from_be_bytes(body[..4].try_into().expect("4 bytes")),
            id
        );
        assert!(body.len() > MIB, "a Fetch answer without the new records");
    }
    assert!(c.alive());
}
