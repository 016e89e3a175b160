//! SASL against the real binary (KIP-152): PLAIN and SCRAM-SHA-256/512 on SASL_PLAINTEXT and
//! SASL_SSL listeners, SCRAM users managed with AlterUserScramCredentials and
//! DescribeUserScramCredentials (KIP-554) and kept across a restart, and the gate: nothing but
//! ApiVersions, SaslHandshake and SaslAuthenticate before authentication, wrong credentials
//! answered alike after the delay and then closed, no secret in the log.

mod security_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest,
    DescribeUserScramCredentialsRequest, MetadataRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use ring::{digest, hmac, pbkdf2};
use security_support::{free_port, Broker, Certs, Client};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_VERSION: i16 = 35;
const RESOURCE_NOT_FOUND: i16 = 91;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Setup {
    certs: Certs,
    broker: Broker,
    plain: SocketAddr,
    sasl_plaintext: SocketAddr,
    sasl_ssl: SocketAddr,
}

/// A PLAINTEXT listener (to manage SCRAM users before any exists), a SASL_PLAINTEXT and a
/// SASL_SSL listener offering PLAIN (alice, admin) and both SCRAM mechanisms.
fn start(extra: &[String]) -> Setup {
    let certs = Certs::make();
    let (plain, sasl_plaintext, sasl_ssl) = (free_port(), free_port(), free_port());
    let jaas = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-pw" user_admin="admin-pw" user_alice="plain-secret-42";"#;
    let mut lines = vec![
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl_plaintext},SASL_SSL://127.0.0.1:{sasl_ssl}"
        ),
        format!(
            "ssl.keystore.location={}",
            certs.path("server.keystore.pem").display()
        ),
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
        format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}"),
        format!("listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}"),
        "connection.failed.authentication.delay.ms=300".into(),
    ];
    lines.extend_from_slice(extra);
    let broker = Broker::start(&lines, &[addr(plain), addr(sasl_plaintext), addr(sasl_ssl)]);
    Setup {
        certs,
        broker,
        plain: addr(plain),
        sasl_plaintext: addr(sasl_plaintext),
        sasl_ssl: addr(sasl_ssl),
    }
}

fn metadata(client: &mut Client) -> std::io::Result<usize> {
    client
        .try_call(12, &MetadataRequest::default().with_topics(None))
        .map(|r| r.brokers.len())
}

fn handshake(client: &mut Client, mechanism: &str) -> (i16, Vec<String>) {
    let r = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    );
    (
        r.error_code,
        r.mechanisms.iter().map(|m| m.to_string()).collect(),
    )
}

/// One SaslAuthenticate (v2): error code, message and the server's bytes.
fn authenticate(client: &mut Client, token: &[u8]) -> (i16, Option<String>, Vec<u8>) {
    let r = client.call(
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    );
    (
        r.error_code,
        r.error_message.map(|m| m.to_string()),
        r.auth_bytes.to_vec(),
    )
}

fn plain_login(client: &mut Client, user: &str, password: &str) -> (i16, Option<String>) {
    assert_eq!(handshake(client, "PLAIN").0, 0);
    let (code, message, _) = authenticate(client, format!("\0{user}\0{password}").as_bytes());
    (code, message)
}

/// SCRAM as a client computes it (RFC 5802).
#[derive(Clone, Copy)]
enum Sha {
    S256,
    S512,
}

impl Sha {
    fn name(self) -> &'static str {
        match self {
            Sha::S256 => "SCRAM-SHA-256",
            Sha::S512 => "SCRAM-SHA-512",
        }
    }
    fn wire(self) -> i8 {
        match self {
            Sha::S256 => 1,
            Sha::S512 => 2,
        }
    }
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Sha::S256 => hmac::HMAC_SHA256,
            Sha::S512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(alg, key), data)
            .as_ref()
            .to_vec()
    }
    fn hash(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Sha::S256 => &digest::SHA256,
            Sha::S512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
    fn salted(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let (alg, len) = match self {
            Sha::S256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            Sha::S512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let mut out = vec![0u8; len];
        let rounds = std::num::NonZeroU32::new(iterations).unwrap();
        pbkdf2::derive(alg, rounds, salt, password.as_bytes(), &mut out);
        out
    }
}

/// A full SCRAM exchange; the error code of the step that failed, or 0 after checking the
/// server's signature.
fn scram_login(client: &mut Client, sha: Sha, user: &str, password: &str) -> (i16, Option<String>) {
    assert_eq!(handshake(client, sha.name()).0, 0);
    let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
    let first_bare = format!("n={user},r={client_nonce}");
    let (code, message, server_first) = authenticate(client, format!("n,,{first_bare}").as_bytes());
    if code != 0 {
        return (code, message);
    }
    let server_first = String::from_utf8(server_first).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for field in server_first.split(',') {
        match field.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = B64.decode(v).unwrap(),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    assert!(nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len());
    let salted = sha.salted(password, &salt, iterations);
    let client_key = sha.hmac(&salted, b"Client Key");
    let stored_key = sha.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = sha.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let final_message = format!("{without_proof},p={}", B64.encode(proof));
    let (code, message, server_final) = authenticate(client, final_message.as_bytes());
    if code == 0 {
        let server_key = sha.hmac(&salted, b"Server Key");
        let expected = sha.hmac(&server_key, auth_message.as_bytes());
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            format!("v={}", B64.encode(expected)),
            "the server did not prove it knows the credential"
        );
    }
    (code, message)
}

/// AlterUserScramCredentials upserting `user`'s credential for `sha` (what kafka-configs
/// sends: the client salts the password).
fn add_scram_user(client: &mut Client, sha: Sha, user: &str, password: &str) -> i16 {
    let salt = b"a-salt-of-sixteen".to_vec();
    let upsert = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(sha.wire())
        .with_iterations(4096)
        .with_salt(Bytes::from(salt.clone()))
        .with_salted_password(Bytes::from(sha.salted(password, &salt, 4096)));
    let r = client.call(
        0,
        &AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert]),
    );
    assert_eq!(r.results.len(), 1);
    r.results[0].error_code
}

/// One user as DescribeUserScramCredentials shows it: name, error, (mechanism, iterations).
type Described = (String, i16, Vec<(i8, i32)>);

fn describe_users(client: &mut Client, users: Option<&[&str]>) -> Vec<Described> {
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
        us.iter()
            .map(|u| UserName::default().with_name(StrBytes::from_string(u.to_string())))
            .collect()
    }));
    let r = client.call(0, &request);
    assert_eq!(r.error_code, 0);
    r.results
        .iter()
        .map(|u| {
            (
                u.user.to_string(),
                u.error_code,
                u.credential_infos
                    .iter()
                    .map(|c| (c.mechanism, c.iterations))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn sasl_apis_are_advertised_and_plain_unlocks_the_connection() {
    let s = start(&[]);
    for tls in [false, true] {
        let connect = || {
            if tls {
                Client::tls(s.sasl_ssl, s.certs.client_config(false))
            } else {
                Client::plain(s.sasl_plaintext)
            }
        };
        // ApiVersions is served before authentication and lists the SASL APIs.
        let mut client = connect();
        let versions = client.call(3, &ApiVersionsRequest::default());
        let range = |key: ApiKey| {
            versions
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| (k.min_version, k.max_version))
        };
        // v0 advertised for librdkafka < 2.10's sake, never served (below).
        assert_eq!(range(ApiKey::SaslHandshake), Some((0, 1)));
        assert_eq!(range(ApiKey::SaslAuthenticate), Some((0, 2)));
        let (code, mechanisms) = handshake(&mut client, "PLAIN");
        assert_eq!(code, 0);
        assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
        let (code, _, _) = authenticate(&mut client, b"\0alice\0plain-secret-42");
        assert_eq!(code, 0);
        assert_eq!(metadata(&mut client).unwrap(), 1);
        // After authentication, another handshake is out of place (and the connection lives).
        assert_eq!(handshake(&mut client, "PLAIN").0, ILLEGAL_SASL_STATE);
        assert_eq!(metadata(&mut client).unwrap(), 1);

        // A request other than ApiVersions before authentication closes the connection
        // unanswered, before and after a handshake.
        let mut early = connect();
        assert!(
            metadata(&mut early).is_err(),
            "served before authentication"
        );
        let mut half = connect();
        assert_eq!(handshake(&mut half, "PLAIN").0, 0);
        assert!(
            metadata(&mut half).is_err(),
            "served between handshake and authenticate"
        );
    }
    s.broker
        .wait_for_log("before SASL authentication completed");
    s.broker.wait_for_log("principal=User:alice");
}

#[test]
fn wrong_credentials_fail_alike_after_the_delay_and_close_without_logging_secrets() {
    let mut s = start(&[]);
    let mut messages = Vec::new();
    for (user, password) in [("alice", "WRONG-pw-7731"), ("mallory", "plain-secret-42")] {
        let mut client = Client::plain(s.sasl_plaintext);
        let started = Instant::now();
        let (code, message) = plain_login(&mut client, user, password);
        assert_eq!(code, SASL_AUTHENTICATION_FAILED);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "answered before connection.failed.authentication.delay.ms"
        );
        assert!(client.closed_by_broker(), "left open after a failed login");
        messages.push(message);
    }
    assert_eq!(
        messages[0], messages[1],
        "unknown user and wrong password told apart"
    );

    // A client hammering wrong passwords does not hold others up.
    let hammer = std::thread::spawn({
        let target = s.sasl_ssl;
        let config = s.certs.client_config(false);
        move || {
            for _ in 0..5 {
                let mut c = Client::tls(target, config.clone());
                assert_eq!(
                    plain_login(&mut c, "alice", "WRONG-pw-7731").0,
                    SASL_AUTHENTICATION_FAILED
                );
            }
        }
    });
    let started = Instant::now();
    let mut good = Client::tls(s.sasl_ssl, s.certs.client_config(false));
    assert_eq!(plain_login(&mut good, "alice", "plain-secret-42").0, 0);
    assert_eq!(metadata(&mut good).unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
    hammer.join().unwrap();

    s.broker.wait_for_log("authentication failed");
    let log = s.broker.log_text();
    for secret in ["WRONG-pw-7731", "plain-secret-42", "admin-pw"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
    assert!(s.broker.alive());
}

#[test]
fn bad_sasl_sequences_are_refused_and_closed() {
    let mut s = start(&["sasl.server.max.receive.size=1024".into()]);
    // An unknown or disabled mechanism: UNSUPPORTED_SASL_MECHANISM with what is offered.
    let mut client = Client::plain(s.sasl_plaintext);
    let (code, mechanisms) = handshake(&mut client, "GSSAPI");
    assert_eq!(code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(mechanisms.len(), 3);
    assert!(client.closed_by_broker());
    // A v0 handshake (unframed tokens to follow) is refused.
    let mut client = Client::plain(s.sasl_plaintext);
    let r = client.call(
        0,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);
    assert!(client.closed_by_broker());
    // SaslAuthenticate without a handshake.
    let mut client = Client::plain(s.sasl_plaintext);
    let (code, _, _) = authenticate(&mut client, b"\0alice\0plain-secret-42");
    assert_eq!(code, ILLEGAL_SASL_STATE);
    assert!(client.closed_by_broker());
    // A token over sasl.server.max.receive.size: closed unanswered.
    let mut client = Client::plain(s.sasl_plaintext);
    assert_eq!(handshake(&mut client, "PLAIN").0, 0);
    let big = vec![b'x'; 4096];
    let answered = client.try_call(
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(big)),
    );
    assert!(answered.is_err(), "an oversized token was answered");
    // A SCRAM client-final message with a tampered proof.
    let mut admin = Client::plain(s.plain);
    assert_eq!(
        add_scram_user(&mut admin, Sha::S256, "carol", "carol-pw"),
        0
    );
    let mut client = Client::plain(s.sasl_plaintext);
    assert_eq!(handshake(&mut client, "SCRAM-SHA-256").0, 0);
    let (code, _, server_first) = authenticate(&mut client, b"n,,n=carol,r=abcdef");
    assert_eq!(code, 0);
    let nonce = String::from_utf8(server_first).unwrap()[2..]
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let forged = format!("c=biws,r={nonce},p={}", B64.encode([7u8; 32]));
    assert_eq!(
        authenticate(&mut client, forged.as_bytes()).0,
        SASL_AUTHENTICATION_FAILED
    );
    assert!(client.closed_by_broker());
    // Everyone else is still served.
    let mut good = Client::plain(s.sasl_plaintext);
    assert_eq!(scram_login(&mut good, Sha::S256, "carol", "carol-pw").0, 0);
    assert!(s.broker.alive());
}

#[test]
fn scram_users_are_managed_with_kip_554_and_survive_a_restart() {
    // The data directory outlives the first broker.
    let keep = tempfile::tempdir().unwrap();
    let data = format!("log.dirs={}", keep.path().join("data").display());
    let s = start(std::slice::from_ref(&data));
    let mut admin = Client::plain(s.plain);
    assert!(describe_users(&mut admin, None).is_empty());
    assert_eq!(
        add_scram_user(&mut admin, Sha::S512, "alice", "scram-512-pw"),
        0
    );
    assert_eq!(
        add_scram_user(&mut admin, Sha::S256, "alice", "scram-256-pw"),
        0
    );
    assert_eq!(add_scram_user(&mut admin, Sha::S512, "bob", "bob-pw"), 0);
    assert_eq!(
        describe_users(&mut admin, Some(&["alice", "nobody"])),
        [
            ("alice".to_string(), 0, vec![(1, 4096), (2, 4096)]),
            ("nobody".to_string(), RESOURCE_NOT_FOUND, vec![]),
        ]
    );
    // Both mechanisms over both SASL listeners.
    let mut c = Client::plain(s.sasl_plaintext);
    assert_eq!(scram_login(&mut c, Sha::S512, "alice", "scram-512-pw").0, 0);
    assert_eq!(metadata(&mut c).unwrap(), 1);
    let mut c = Client::tls(s.sasl_ssl, s.certs.client_config(false));
    assert_eq!(scram_login(&mut c, Sha::S256, "alice", "scram-256-pw").0, 0);
    assert_eq!(metadata(&mut c).unwrap(), 1);
    // Wrong password, a password of the other mechanism, an unknown user.
    for (sha, user, password) in [
        (Sha::S512, "alice", "wrong"),
        (Sha::S512, "alice", "scram-256-pw"),
        (Sha::S256, "bob", "bob-pw"),
        (Sha::S512, "nobody", "x"),
    ] {
        let mut c = Client::plain(s.sasl_plaintext);
        let (code, _) = scram_login(&mut c, sha, user, password);
        assert_eq!(
            code,
            SASL_AUTHENTICATION_FAILED,
            "{user} with {}",
            sha.name()
        );
        assert!(c.closed_by_broker());
    }
    // Too few iterations and an unknown mechanism are refused; deletion of a missing one too.
    let weak = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_static_str("weak"))
        .with_mechanism(2)
        .with_iterations(10)
        .with_salt(Bytes::from_static(b"salt"))
        .with_salted_password(Bytes::from(vec![0u8; 64]));
    let missing = ScramCredentialDeletion::default()
        .with_name(StrBytes::from_static_str("bob"))
        .with_mechanism(1);
    let r = admin.call(
        0,
        &AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![weak])
            .with_deletions(vec![missing]),
    );
    let codes: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("bob".into(), RESOURCE_NOT_FOUND),
            ("weak".into(), UNACCEPTABLE_CREDENTIAL)
        ]
    );
    // Delete bob's credential: bob can no longer log in.
    let delete = ScramCredentialDeletion::default()
        .with_name(StrBytes::from_static_str("bob"))
        .with_mechanism(2);
    let r = admin.call(
        0,
        &AlterUserScramCredentialsRequest::default().with_deletions(vec![delete]),
    );
    assert_eq!(r.results[0].error_code, 0);

    // Restart on the same data directory: alice's credentials are still there, bob's are not.
    drop(s);
    let s2 = start(&[data]);
    let mut c = Client::plain(s2.sasl_plaintext);
    assert_eq!(scram_login(&mut c, Sha::S512, "alice", "scram-512-pw").0, 0);
    let mut c = Client::plain(s2.sasl_plaintext);
    assert_eq!(
        scram_login(&mut c, Sha::S512, "bob", "bob-pw").0,
        SASL_AUTHENTICATION_FAILED
    );
    let mut admin = Client::plain(s2.plain);
    let users: Vec<String> = describe_users(&mut admin, None)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(users, ["alice"]);
    let store =
        std::fs::read_to_string(keep.path().join("data/cairn-security/scram-credentials")).unwrap();
    assert!(!store.contains("scram-512-pw") && !store.contains("alice"));
}

#[test]
fn a_first_user_is_added_before_start_with_cairn_add_scram() {
    let keep = tempfile::tempdir().unwrap();
    let data = keep.path().join("data");
    let add = |spec: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("add-scram")
            .arg(spec)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = add("SCRAM-SHA-512=[name=admin,password=first-admin-pw,iterations=8192]");
    assert!(out.status.success(), "{out:?}");
    let out = add("SCRAM-SHA-512=[name=admin]");
    assert!(!out.status.success());
    let s = start(&[format!("log.dirs={}", data.display())]);
    // The broker holds the data directory: add-scram refuses to write beside it.
    let out = add("SCRAM-SHA-256=[name=late,password=late-pw]");
    assert!(
        !out.status.success(),
        "add-scram wrote beside a running broker"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    let mut c = Client::tls(s.sasl_ssl, s.certs.client_config(false));
    assert_eq!(
        scram_login(&mut c, Sha::S512, "admin", "first-admin-pw").0,
        0
    );
    let users = describe_users(&mut c, None);
    assert_eq!(users, [("admin".to_string(), 0, vec![(2, 8192)])]);
}

/// SaslAuthenticate v2 as a client that re-authenticates: the session lifetime it is given.
fn plain_login_lifetime(client: &mut Client, user: &str, password: &str) -> (i16, i64) {
    assert_eq!(handshake(client, "PLAIN").0, 0);
    let r = client.call(
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(format!("\0{user}\0{password}").into_bytes())),
    );
    (r.error_code, r.session_lifetime_ms)
}

#[test]
fn sessions_expire_unless_the_client_re_authenticates() {
    let s = start(&["connections.max.reauth.ms=1500".into()]);
    // Told its lifetime; after it, the next request closes the connection.
    let mut lapsed = Client::plain(s.sasl_plaintext);
    assert_eq!(
        plain_login_lifetime(&mut lapsed, "alice", "plain-secret-42"),
        (0, 1500)
    );
    assert_eq!(metadata(&mut lapsed).unwrap(), 1);
    // Re-authenticating within the lifetime keeps the connection past the first expiry.
    let mut renewed = Client::tls(s.sasl_ssl, s.certs.client_config(false));
    assert_eq!(
        plain_login_lifetime(&mut renewed, "alice", "plain-secret-42"),
        (0, 1500)
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        plain_login_lifetime(&mut renewed, "alice", "plain-secret-42"),
        (0, 1500)
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        metadata(&mut lapsed).is_err(),
        "served after the session expired"
    );
    assert_eq!(metadata(&mut renewed).unwrap(), 1);
    // Re-authenticating as someone else is refused and closes the connection.
    let (code, _) = plain_login(&mut renewed, "admin", "admin-pw");
    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
    assert!(renewed.closed_by_broker());
    s.broker.wait_for_log("after the SASL session expired");
    s.broker.wait_for_log("re-authenticated");
    // A v0 SaslAuthenticate cannot carry a lifetime: the session ends all the same.
    let mut old = Client::plain(s.sasl_plaintext);
    assert_eq!(handshake(&mut old, "PLAIN").0, 0);
    let r = old.call(
        0,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"\0alice\0plain-secret-42")),
    );
    assert_eq!(r.error_code, 0);
    assert_eq!(metadata(&mut old).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(1600));
    assert!(
        metadata(&mut old).is_err(),
        "a v0 session outlived its lifetime"
    );
}
