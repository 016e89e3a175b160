//! Harness for the rdkafka compatibility suite: it starts, stops, kills and restarts the real `cairn`
//! binary (or targets an already running broker named by `KAFKA_BOOTSTRAP`), and gives the tests small
//! rdkafka helpers (topic creation, ordered producing with delivery reports, reading a topic back to its
//! high watermark). It knows Cairn only through its command line and the Kafka protocol: it must not
//! depend on the `cairn` crate or on anything in Cairn's data directory beyond the partition directory
//! names of `shared/disk-format.md`. For the security tests it also starts Cairn with named listeners
//! (SASL_SSL, SSL), adds SCRAM users with `cairn add-scram` before start, and makes certificates with
//! the main repository's `scripts/make-test-certs` (openssl).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// How long a started Cairn may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd Cairn may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for single client requests (metadata, watermarks, offsets).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker under test: either a Cairn process this harness owns, or an external broker.
pub struct Broker {
    external: Option<String>,
    cairn: Option<Cairn>,
}

impl Broker {
    /// Targets `KAFKA_BOOTSTRAP` when set, otherwise starts Cairn with the given `--set` overrides.
    pub fn start(sets: &[(&str, &str)]) -> Result<Broker> {
        match external_bootstrap() {
            Some(bootstrap) => Ok(Broker {
                external: Some(bootstrap),
                cairn: None,
            }),
            None => Ok(Broker {
                external: None,
                cairn: Some(Cairn::start(sets)?),
            }),
        }
    }

    /// The bootstrap address clients use.
    pub fn bootstrap(&self) -> String {
        match (&self.external, &self.cairn) {
            (Some(b), _) => b.clone(),
            (None, Some(c)) => c.bootstrap(),
            (None, None) => unreachable!("a Broker always has a target"),
        }
    }

    /// The owned Cairn process, if the suite is not targeting an external broker.
    pub fn cairn(&mut self) -> Option<&mut Cairn> {
        self.cairn.as_mut()
    }
}

/// `KAFKA_BOOTSTRAP` when set and non-empty.
pub fn external_bootstrap() -> Option<String> {
    std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Prints a notice that the test harness does not capture, so a skip is never silent.
pub fn notice(text: &str) {
    use std::io::Write as _;
    // Written to the stderr handle directly: libtest captures only the print macros.
    let _ = writeln!(std::io::stderr(), "NOTICE: {text}");
}

/// Starts Cairn for a test that must own the process (restart and crash tests). Against an external
/// broker it prints a skip notice and returns `None`.
pub fn owned_cairn(test: &str, sets: &[(&str, &str)]) -> Result<Option<Cairn>> {
    if let Some(b) = external_bootstrap() {
        notice(&format!(
            "{test} SKIPPED: KAFKA_BOOTSTRAP={b} targets an external broker that this test \
             cannot restart or kill"
        ));
        return Ok(None);
    }
    Cairn::start(sets).map(Some)
}

/// A `cairn` process on a free loopback port with a temporary data directory. Dropping it kills the
/// process (SIGKILL) if it is still running.
pub struct Cairn {
    bin: PathBuf,
    root: tempfile::TempDir,
    sets: Vec<String>,
    port: u16,
    /// Named listeners (name, port) instead of `--listen`; the first one is `port`.
    listeners: Vec<(String, u16)>,
    child: Option<Child>,
}

impl Cairn {
    /// Starts Cairn with `--set key=value` for each pair and waits until its port accepts.
    pub fn start(sets: &[(&str, &str)]) -> Result<Cairn> {
        let mut cairn = Cairn::prepare(&[], sets)?;
        cairn.spawn()?;
        Ok(cairn)
    }

    /// A Cairn that is not started yet, with one loopback listener per name in `listeners`
    /// (`SASL_SSL`, `SSL`, ... mapped to protocols as Kafka maps them) or, when that is empty, a
    /// PLAINTEXT `--listen`. Start it with [`Cairn::launch`]; before that, [`Cairn::add_scram`]
    /// may add users.
    pub fn prepare(listeners: &[&str], sets: &[(&str, &str)]) -> Result<Cairn> {
        let bin = cairn_bin();
        if !bin.is_file() {
            bail!(
                "cairn binary not found at {} (build it with `cargo build --release` in the main \
                 crate, or set CAIRN_BIN)",
                bin.display()
            );
        }
        let root = tempfile::Builder::new()
            .prefix("cairn-compat-")
            .tempdir()
            .context("creating temp dir")?;
        std::fs::create_dir(root.path().join("data")).context("creating data dir")?;
        let listeners = listeners
            .iter()
            .map(|name| Ok((name.to_string(), free_port()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Cairn {
            bin,
            root,
            sets: sets.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            port: match listeners.first() {
                Some((_, port)) => *port,
                None => free_port()?,
            },
            listeners,
            child: None,
        })
    }

    /// Starts a prepared Cairn and waits until its first listener accepts.
    pub fn launch(&mut self) -> Result<()> {
        self.spawn()
    }

    /// Adds a SCRAM credential before start with `cairn add-scram`, in `kafka-storage format
    /// --add-scram`'s form: `SCRAM-SHA-256=[name=alice,password=alice-secret]`.
    pub fn add_scram(&self, spec: &str) -> Result<()> {
        if self.child.is_some() {
            bail!("add-scram needs a stopped broker");
        }
        let out = Command::new(&self.bin)
            .arg("add-scram")
            .arg(spec)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .context("running cairn add-scram")?;
        if !out.status.success() {
            bail!(
                "cairn add-scram failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `127.0.0.1:<port>` of the named listener.
    pub fn listener(&self, name: &str) -> String {
        let (_, port) = self
            .listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener named {name}"));
        format!("127.0.0.1:{port}")
    }

    /// The broker's log so far (secrets must never be in it).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("cairn.log")
    }

    /// The process id of the running Cairn.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("cairn is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening cairn.log")?;
        let mut cmd = Command::new(&self.bin);
        if self.listeners.is_empty() {
            cmd.arg("--listen")
                .arg(self.bootstrap())
                .arg("--advertised-listener")
                .arg(self.bootstrap());
        } else {
            let listeners: Vec<String> = self
                .listeners
                .iter()
                .map(|(name, port)| format!("{name}://127.0.0.1:{port}"))
                .collect();
            cmd.arg("--set")
                .arg(format!("listeners={}", listeners.join(",")));
        }
        cmd.arg("--data-dir").arg(self.data_dir());
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning log handle")?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let addr: SocketAddr = self.bootstrap().parse().expect("loopback address parses");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("spawned")
                .try_wait()
                .context("polling cairn")?
            {
                self.child = None;
                bail!(
                    "cairn exited during start-up with {status}; log tail:\n{}",
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cairn did not accept on {addr} within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("cairn is not running")?;
        signal(&child, Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for cairn")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "cairn did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills Cairn with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("cairn is not running")?;
        signal(&child, Signal::SIGKILL)?;
        child.wait().context("reaping cairn")?;
        Ok(())
    }

    /// Starts Cairn again on the same data directory and the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()
    }

    /// The last lines of Cairn's combined stdout/stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Total size in bytes of the files named `*.<ext>` in the partition directories of `topic`.
    pub fn topic_disk_bytes_with_ext(&self, topic: &str, ext: &str) -> Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(self.data_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_partition = name
                .rsplit_once('-')
                .is_some_and(|(t, p)| t == topic && p.parse::<u32>().is_ok());
            if is_partition && entry.file_type()?.is_dir() {
                total += dir_bytes(&entry.path(), ext)?;
            }
        }
        Ok(total)
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn dir_bytes(dir: &Path, ext: &str) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && entry.path().extension().is_some_and(|e| e == ext) {
            total += meta.len();
        }
    }
    Ok(total)
}

fn signal(child: &Child, sig: Signal) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    kill(Pid::from_raw(pid), sig).with_context(|| format!("sending {sig} to cairn"))
}

/// A temporary directory holding a CA, a server certificate (localhost, 127.0.0.1) and a client
/// certificate (DN `CN=alice,OU=clients,O=Cairn Test,C=US`), made by the main repository's
/// `scripts/make-test-certs` with openssl: `ca.pem`, `server.keystore.pem`, `client.pem`,
/// `client.key`.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Result<Certs> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-compat-certs-")
            .tempdir()
            .context("creating temp dir")?;
        let script = repo_root().join("scripts/make-test-certs");
        let status = Command::new(&script)
            .arg(dir.path())
            .status()
            .with_context(|| format!("running {} (needs openssl)", script.display()))?;
        if !status.success() {
            bail!("{} failed: {status}", script.display());
        }
        Ok(Certs { dir })
    }

    /// The path of one of the files above, as a string for client configs.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The main repository (this suite lives in its `compat/rdkafka`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `CAIRN_BIN`, or the main crate's release binary.
pub fn cairn_bin() -> PathBuf {
    match std::env::var_os("CAIRN_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/cairn"),
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A topic name unique to this process and call, so tests can share an external broker.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// Creates a topic with the given partition count and topic configs, and waits until its metadata
/// shows every partition with a leader.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating admin client")?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = tokio::time::timeout(REQUEST_TIMEOUT * 2, admin.create_topics([&new], &opts))
        .await
        .context("create_topics timed out")?
        .context("create_topics failed")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name} failed: {code:?}");
        }
    }
    let probe: StreamConsumer = base_consumer_config(bootstrap).create()?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Ok(md) = probe.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                let ready = t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0);
                if ready {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} not visible with {partitions} partitions after creation");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Config for a consumer that only assigns partitions and commits nothing. librdkafka's assign()
/// needs a group id; a fresh one per consumer keeps readers independent.
pub fn base_consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", unique_topic("compat-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("socket.timeout.ms", "10000");
    c
}

/// An idempotent acks=all producer with the given extra settings.
pub fn idempotent_producer(bootstrap: &str, extra: &[(&str, &str)]) -> Result<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().context("creating producer")
}

/// One record as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
}

/// A record the broker acknowledged, with where it said it put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub partition: i32,
    pub offset: i64,
    pub rec: Rec,
}

/// What to send: key, value (None = tombstone), optional partition and timestamp.
pub struct Outgoing {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
}

/// Sends `records` in order (enqueue order is the produce order) and returns each delivery report in
/// the same order. Any failed delivery is an error.
pub async fn produce_ordered(
    producer: &FutureProducer,
    topic: &str,
    records: impl IntoIterator<Item = Outgoing>,
    deadline: Duration,
) -> Result<Vec<Acked>> {
    let start = Instant::now();
    let mut pending: VecDeque<(Rec, DeliveryFuture)> = VecDeque::new();
    let mut acked = Vec::new();
    for out in records {
        let rec = Rec {
            key: Some(out.key),
            value: out.value,
            timestamp: out.timestamp,
        };
        loop {
            let mut fr: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(topic).key(rec.key.as_ref().expect("set above"));
            if let Some(v) = &rec.value {
                fr = fr.payload(v);
            }
            if let Some(p) = out.partition {
                fr = fr.partition(p);
            }
            if let Some(ts) = out.timestamp {
                fr = fr.timestamp(ts);
            }
            match producer.send_result(fr) {
                Ok(f) => {
                    pending.push_back((rec.clone(), f));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: wait for the oldest delivery, then retry.
                    let (r, f) = pending
                        .pop_front()
                        .context("queue full with nothing in flight")?;
                    acked.push(await_delivery(r, f, start, deadline).await?);
                }
                Err((e, _)) => bail!("enqueue failed: {e}"),
            }
        }
    }
    while let Some((r, f)) = pending.pop_front() {
        acked.push(await_delivery(r, f, start, deadline).await?);
    }
    Ok(acked)
}

async fn await_delivery(
    rec: Rec,
    f: DeliveryFuture,
    start: Instant,
    deadline: Duration,
) -> Result<Acked> {
    let left = deadline.saturating_sub(start.elapsed());
    let res = tokio::time::timeout(left, f)
        .await
        .map_err(|_| anyhow!("producing did not finish within {deadline:?}"))?
        .map_err(|_| anyhow!("producer dropped a delivery"))?;
    match res {
        Ok(d) => Ok(Acked {
            partition: d.partition,
            offset: d.offset,
            rec,
        }),
        Err((e, _)) => bail!("delivery failed: {e}"),
    }
}

/// A record read back, with its partition and offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub offset: i64,
    pub rec: Rec,
}

/// Low and high watermarks of every partition in `0..partitions`.
pub fn watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    let c: StreamConsumer = base_consumer_config(bootstrap).create()?;
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .with_context(|| format!("watermarks of {topic}-{p}"))
        })
        .collect()
}

/// Reads every partition of `topic` from its log start to the high watermark observed at the call,
/// with a fresh consumer, and returns the records per partition in the order received.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    deadline: Duration,
) -> Result<BTreeMap<i32, Vec<Fetched>>> {
    let marks = watermarks(bootstrap, topic, partitions)?;
    let ends: Vec<i64> = marks.iter().map(|m| m.1).collect();
    read_until(bootstrap, topic, &ends, deadline).await
}

/// Reads every partition `p` of `topic` from the beginning until a record at offset `ends[p] - 1` or
/// later was received.
pub async fn read_until(
    bootstrap: &str,
    topic: &str,
    ends: &[i64],
    deadline: Duration,
) -> Result<BTreeMap<i32, Vec<Fetched>>> {
    let consumer: StreamConsumer = base_consumer_config(bootstrap).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut out: BTreeMap<i32, Vec<Fetched>> = BTreeMap::new();
    for (p, _) in ends.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
        out.insert(p as i32, Vec::new());
    }
    consumer.assign(&tpl)?;
    let done = |out: &BTreeMap<i32, Vec<Fetched>>| {
        ends.iter().enumerate().all(|(p, &end)| {
            end <= 0 || out[&(p as i32)].last().is_some_and(|r| r.offset >= end - 1)
        })
    };
    let start = Instant::now();
    while !done(&out) {
        let left = deadline.saturating_sub(start.elapsed());
        let msg = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(m) => m.context("consumer error")?,
            Err(_) => {
                let got: Vec<String> = out
                    .iter()
                    .map(|(p, v)| {
                        format!(
                            "p{p}: {} records, last offset {:?}, end {}",
                            v.len(),
                            v.last().map(|r| r.offset),
                            ends[*p as usize]
                        )
                    })
                    .collect();
                bail!(
                    "reading {topic} did not reach the high watermark within {deadline:?}: {}",
                    got.join("; ")
                );
            }
        };
        out.get_mut(&msg.partition())
            .context("record from an unassigned partition")?
            .push(Fetched {
                offset: msg.offset(),
                rec: Rec {
                    key: msg.key().map(<[u8]>::to_vec),
                    value: msg.payload().map(<[u8]>::to_vec),
                    timestamp: msg.timestamp().to_millis(),
                },
            });
    }
    Ok(out)
}

/// Flushes a producer with a bounded wait.
pub fn flush(producer: &FutureProducer) -> Result<()> {
    producer.flush(REQUEST_TIMEOUT).context("flushing producer")
}

/// Polls `cond` every `every` until it returns true or `timeout` passes.
pub async fn wait_for<F>(what: &str, timeout: Duration, every: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Session timeout of group members in these tests: a killed member's partitions move after it.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;

/// Config for a consumer in `group` with manual commits, reading from the earliest offset when the
/// group has no committed offset.
pub fn group_consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "500")
        .set("socket.timeout.ms", "10000");
    c
}
