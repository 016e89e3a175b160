//! Listeners and TLS against the real binary: each listener advertises its own endpoint, TLS
//! with and without a required client certificate, hostile bytes on a TLS port, a stalled
//! handshake, and certificates replaced on SIGHUP.

mod security_support;

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use security_support::{free_port, Broker, Certs, Client};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Setup {
    certs: Certs,
    broker: Broker,
    plain: SocketAddr,
    ssl: SocketAddr,
    mtls: SocketAddr,
}

/// PLAINTEXT, SSL (no client auth) and MTLS (an SSL listener requiring client certificates).
fn start(extra: &[String]) -> Setup {
    let certs = Certs::make();
    let (plain, ssl, mtls) = (free_port(), free_port(), free_port());
    let mut lines = vec![
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl},MTLS://127.0.0.1:{mtls}"
        ),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL".into(),
        format!("advertised.listeners=SSL://localhost:{ssl}"),
        format!(
            "ssl.keystore.location={}",
            certs.path("server.keystore.pem").display()
        ),
        format!("ssl.truststore.location={}", certs.path("ca.pem").display()),
        "listener.name.mtls.ssl.client.auth=required".into(),
        "inter.broker.listener.name=PLAINTEXT".into(),
    ];
    lines.extend_from_slice(extra);
    let broker = Broker::start(&lines, &[addr(plain), addr(ssl), addr(mtls)]);
    Setup {
        certs,
        broker,
        plain: addr(plain),
        ssl: addr(ssl),
        mtls: addr(mtls),
    }
}

fn advertised(client: &mut Client) -> (String, i32) {
    let metadata = client.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
    let b = &metadata.brokers[0];
    (b.host.to_string(), b.port)
}

fn api_versions(client: &mut Client) -> std::io::Result<i16> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("security-tests"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    client.try_call(3, &request).map(|r| r.error_code)
}

#[test]
fn each_listener_advertises_its_own_endpoint() {
    let s = start(&[]);
    let mut plain = Client::plain(s.plain);
    assert_eq!(
        advertised(&mut plain),
        ("127.0.0.1".into(), s.plain.port() as i32)
    );
    let mut ssl = Client::tls(s.ssl, s.certs.client_config(false));
    assert_eq!(
        advertised(&mut ssl),
        ("localhost".into(), s.ssl.port() as i32)
    );
    let mut mtls = Client::tls(s.mtls, s.certs.client_config(true));
    assert_eq!(
        advertised(&mut mtls),
        ("127.0.0.1".into(), s.mtls.port() as i32)
    );
}

#[test]
fn a_required_client_certificate_is_enforced() {
    let s = start(&[]);
    let mut without = Client::tls(s.mtls, s.certs.client_config(false));
    assert!(
        api_versions(&mut without).is_err(),
        "served without a client certificate"
    );
    let mut with = Client::tls(s.mtls, s.certs.client_config(true));
    assert_eq!(api_versions(&mut with).unwrap(), 0);
    s.broker.wait_for_log("TLS handshake failed");
}

#[test]
fn hostile_bytes_on_a_tls_port_close_only_that_connection() {
    let mut s = start(&[]);
    // A Kafka request in plaintext, garbage, and a half-sent ClientHello that stalls.
    let mut plaintext = Client::plain(s.ssl);
    let _ = api_versions(&mut plaintext);
    assert!(plaintext.closed_by_broker());
    let mut garbage = Client::plain(s.ssl);
    let _ = garbage.send_raw(&[0xff; 4096]);
    assert!(garbage.closed_by_broker());
    let mut stalled = Client::plain(s.ssl);
    stalled
        .send_raw(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01])
        .unwrap();
    // Others are served meanwhile, over TLS and plaintext.
    let mut ssl = Client::tls(s.ssl, s.certs.client_config(false));
    assert_eq!(api_versions(&mut ssl).unwrap(), 0);
    let mut plain = Client::plain(s.plain);
    assert_eq!(api_versions(&mut plain).unwrap(), 0);
    // The stalled handshake is cut after the handshake timeout (10 s).
    let started = std::time::Instant::now();
    assert!(stalled.closed_by_broker());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(s.broker.alive());
}

#[test]
fn certificates_are_reloaded_on_sighup() {
    let s = start(&[]);
    // Replace the keystore with one signed by a new CA, then SIGHUP: new connections must
    // present the new certificate (the old CA no longer verifies it).
    let fresh = Certs::make();
    let mut before = Client::tls(s.ssl, fresh.client_config(false));
    assert!(
        api_versions(&mut before).is_err(),
        "new CA trusted before the swap"
    );
    std::fs::copy(
        fresh.path("server.keystore.pem"),
        s.certs.path("server.keystore.pem"),
    )
    .unwrap();
    s.broker.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut client = Client::tls(s.ssl, fresh.client_config(false));
        if api_versions(&mut client).is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served after SIGHUP: {}",
            s.broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken keystore on the next SIGHUP keeps the current certificate in use.
    std::fs::write(s.certs.path("server.keystore.pem"), "not pem").unwrap();
    s.broker.signal("HUP");
    s.broker.wait_for_log("keeping the old ones");
    let mut after = Client::tls(s.ssl, fresh.client_config(false));
    assert_eq!(api_versions(&mut after).unwrap(), 0);
}
