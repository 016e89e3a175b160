//! Shared by the security tests: certificates made by `scripts/make-test-certs` (openssl) at
//! test time, the real `cairn` binary started from a properties file, and a blocking Kafka
//! client over plain TCP or TLS (rustls).

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp directory with a CA, a server and a client certificate.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-certs");
        let status = Command::new(script)
            .arg(dir.path())
            .status()
            .expect("run scripts/make-test-certs (needs openssl)");
        assert!(status.success(), "make-test-certs failed");
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A rustls client config trusting the test CA, with the client certificate if `mtls`.
    pub fn client_config(&self, mtls: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if mtls {
            let chain = CertificateDer::pem_file_iter(self.path("client.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

/// A running broker started from a properties file; killed on drop.
pub struct Broker {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Broker {
    /// Starts `cairn --config` with these lines (plus a fresh `log.dirs`), and waits until
    /// every address in `wait_for` accepts connections.
    pub fn start(lines: &[String], wait_for: &[SocketAddr]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let props = dir.path().join("server.properties");
        let mut text = format!("log.dirs={}\n", dir.path().join("data").display());
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&props, text).unwrap();
        let log = dir.path().join("cairn.log");
        // Tracing writes to stdout, panics to stderr: both go to the log.
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--config")
            .arg(&props)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn cairn");
        let mut broker = Broker {
            child: Some(child),
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for addr in wait_for {
            while TcpStream::connect(addr).is_err() {
                if let Some(status) = broker.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("cairn exited at start: {status}: {}", broker.log_text());
                }
                assert!(Instant::now() < deadline, "cairn did not start listening");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        broker
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 10 s for `needle` to appear in the broker's log.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "'{needle}' not logged: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends a signal (e.g. "HUP") to the broker.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A byte stream a client can speak over.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A blocking Kafka client over one connection.
pub struct Client {
    stream: Box<dyn Stream>,
    correlation_id: i32,
}

impl Client {
    pub fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            stream: Box::new(tcp),
            correlation_id: 0,
        }
    }

    /// Connects with TLS; the handshake completes on the first read or write, so a refused
    /// handshake shows as an I/O error there.
    pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        Client {
            stream: Box::new(rustls::StreamOwned::new(conn, tcp)),
            correlation_id: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Sends a request and decodes its response, or the I/O error that ended the connection.
    pub fn try_call<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> std::io::Result<R::Response>
    where
        R::Response: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("security-tests")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).unwrap();
        request.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.send_raw(&buf)?;
        let mut body = self.read_frame()?;
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let response = R::Response::decode(&mut body, version).unwrap();
        assert_eq!(body.remaining(), 0, "trailing bytes in response");
        Ok(response)
    }

    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response
    where
        R::Response: Decodable + HeaderVersion,
    {
        self.try_call(version, request).expect("response")
    }

    /// True when the broker closed this connection within 20 s (EOF or reset, after whatever
    /// it sent last, e.g. a TLS alert); false if it stayed open.
    pub fn closed_by_broker(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
        false
    }
}
