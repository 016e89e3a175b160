//! Starts the real `cairn` binary on a free loopback port with a fresh data directory, and
//! speaks the Kafka protocol to it with kafka-protocol-encoded requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// A running broker; killed on drop.
pub(crate) struct Cairn {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cairn {
    /// Starts a broker with a new temp data directory and these `--set` configs.
    pub(crate) fn start(sets: &[&str]) -> Cairn {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut c = Cairn {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            _temp: Some(temp),
            extra: sets.iter().map(|s| s.to_string()).collect(),
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for s in &self.extra {
            cmd.arg("--set").arg(s);
        }
        self.child = Some(cmd.spawn().expect("spawn cairn"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cairn exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "cairn did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for a clean exit (status 0), then start again on the same data.
    pub(crate) fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "cairn exited with {status} on SIGTERM");
        self.spawn();
    }

    /// SIGKILL (no clean shutdown), then start again on the same data.
    pub(crate) fn kill_and_restart(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        self.spawn();
    }

    /// SIGTERM and wait.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cairn did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data after [`Cairn::stop`].
    pub(crate) fn start_again(&mut self) {
        self.spawn();
    }

    /// True while the process runs.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub(crate) fn client(&self) -> Client {
        Client::connect(self.addr)
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

/// A blocking Kafka protocol client over one connection.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a request frame (length prefix included) with a fresh correlation id.
    pub(crate) fn frame<R: Request>(&mut self, version: i16, request: &R) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("protocol-tests")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).unwrap();
        request.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        (self.correlation_id, buf.freeze())
    }

    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame body (after the length prefix), or an error if the connection
    /// was closed.
    pub(crate) fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Sends a request and decodes its response, checking the correlation id.
    pub(crate) fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response
    where
        R::Response: Decodable + HeaderVersion,
    {
        let (id, frame) = self.frame(version, request);
        self.send_raw(&frame).unwrap();
        self.response::<R>(id, version)
    }

    /// Reads and decodes the response to request `id`.
    pub(crate) fn response<R: Request>(&mut self, id: i32, version: i16) -> R::Response
    where
        R::Response: Decodable + HeaderVersion,
    {
        let mut body = self.read_frame().expect("response frame");
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id, "responses out of order");
        let response = R::Response::decode(&mut body, version).unwrap();
        assert_eq!(body.remaining(), 0, "trailing bytes in response");
        response
    }

    /// True when the broker closed this connection (read returns EOF or reset within 10 s).
    pub(crate) fn closed_by_broker(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}
