//! The rdkafka crate (librdkafka built with OpenSSL) against Cairn's security, with ACLs on
//! (Kafka's StandardAuthorizer): SASL_SSL with SCRAM-SHA-256 (a user added with `cairn add-scram`)
//! and with PLAIN (a user of the listener's JAAS config), and SSL with a client certificate whose
//! DN is the principal. Each round trip is refused before its principal holds an ACL, then
//! produces idempotently and consumes in a group once Kafka's own `kafka-acls` (run as a PLAIN
//! super user: the rdkafka crate has no ACL API) grants it `--producer --consumer` on one topic.
//! Wrong credentials and a missing client certificate end in an error the application sees,
//! never a hang. Cairn only: each test starts its own broker (against `KAFKA_BOOTSTRAP` they
//! print a SKIPPED notice).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cairn_compat_rdkafka::{
    external_bootstrap, notice, produce_ordered, repo_root, unique_topic, Cairn, Certs, Outgoing,
    REQUEST_TIMEOUT,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
const PLAIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// The principal of `scripts/make-test-certs`' client certificate, as Kafka prints its DN.
const CLIENT_DN: &str = "User:CN=alice,OU=clients,O=Cairn Test,C=US";
const RECORDS: usize = 2_000;
const PARTITIONS: i32 = 3;

/// A Cairn with a SASL_SSL listener (PLAIN users `admin`, a super user, and `paula` from JAAS;
/// the SCRAM-SHA-256 user `scott`) and an SSL listener that requires a client certificate.
struct Secure {
    cairn: Cairn,
    certs: Certs,
    /// The Java tools' client config of `admin` (`--command-config`).
    admin_properties: tempfile::NamedTempFile,
}

impl Secure {
    fn start(test: &str) -> Result<Option<Secure>> {
        if let Some(b) = external_bootstrap() {
            notice(&format!(
                "{test} SKIPPED: KAFKA_BOOTSTRAP={b} targets an external broker; this test starts \
                 Cairn with its own listeners, users and ACLs"
            ));
            return Ok(None);
        }
        let certs = Certs::make()?;
        let jaas = format!(
            "{PLAIN_MODULE} required user_admin=\"admin-secret\" user_paula=\"paula-secret\";"
        );
        let keystore = certs.path("server.keystore.pem");
        let ca = certs.path("ca.pem");
        let sets = [
            ("ssl.keystore.location", keystore.as_str()),
            ("ssl.truststore.location", ca.as_str()),
            ("listener.name.ssl.ssl.client.auth", "required"),
            ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
            (
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                jaas.as_str(),
            ),
            ("authorizer.class.name", AUTHORIZER),
            ("super.users", "User:admin"),
            ("connection.failed.authentication.delay.ms", "100"),
        ];
        let mut cairn = Cairn::prepare(&["SASL_SSL", "SSL"], &sets)?;
        cairn.add_scram("SCRAM-SHA-256=[name=scott,password=scott-secret]")?;
        cairn.launch()?;
        let admin_properties = tempfile::NamedTempFile::new()?;
        std::fs::write(
            admin_properties.path(),
            format!(
                "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config={PLAIN_MODULE} required username=\"admin\" password=\"admin-secret\";\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
            ),
        )?;
        Ok(Some(Secure {
            cairn,
            certs,
            admin_properties,
        }))
    }

    /// librdkafka settings for a SASL_SSL user.
    fn sasl(&self, mechanism: &str, user: &str, password: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.cairn.listener("SASL_SSL"))
            .set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", self.certs.path("ca.pem"))
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password);
        c
    }

    /// librdkafka settings for the SSL listener, with the client certificate if `certificate`.
    fn ssl(&self, certificate: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.cairn.listener("SSL"))
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", self.certs.path("ca.pem"));
        if certificate {
            c.set("ssl.certificate.location", self.certs.path("client.pem"))
                .set("ssl.key.location", self.certs.path("client.key"));
        }
        c
    }

    fn admin(&self) -> ClientConfig {
        self.sasl("PLAIN", "admin", "admin-secret")
    }

    /// Runs Kafka's `kafka-acls` as `admin` over SASL_SSL.
    fn kafka_acls(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(repo_root().join("scripts/kafka-tool"))
            .arg("kafka-acls")
            .arg("--bootstrap-server")
            .arg(self.cairn.listener("SASL_SSL"))
            .arg("--command-config")
            .arg(self.admin_properties.path())
            .args(args)
            .output()
            .context("running scripts/kafka-tool kafka-acls (needs Java)")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "kafka-acls {args:?} failed: {text}");
        Ok(text)
    }
}

/// Creates a topic as `admin`.
async fn create_topic(admin: &ClientConfig, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = admin.create()?;
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let results = tokio::time::timeout(REQUEST_TIMEOUT * 2, admin.create_topics([&new], &opts))
        .await
        .context("create_topics timed out")??;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating {name} failed: {code:?}");
        }
    }
    Ok(())
}

/// The topics a client's metadata shows.
fn visible_topics(client: &ClientConfig) -> Result<Vec<String>> {
    let c: StreamConsumer = client.clone().set("group.id", "metadata-probe").create()?;
    let md = c.fetch_metadata(None, REQUEST_TIMEOUT)?;
    let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
    names.sort();
    Ok(names)
}

/// The delivery error of one record sent by a plain acks=all producer, if it failed.
async fn produce_one(client: &ClientConfig, topic: &str) -> Result<Option<KafkaError>> {
    let p: FutureProducer = client
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create()?;
    let sent = p
        .send(
            FutureRecord::<str, str>::to(topic).key("k").payload("v"),
            Duration::from_secs(5),
        )
        .await;
    Ok(sent.err().map(|(e, _)| e))
}

/// The principal is refused and sees no topic; `kafka-acls` grants it `--producer --consumer`
/// (and `--idempotent`) on one topic and group; it then produces idempotently, reads every
/// record back in a group that commits, and still sees only its topic.
async fn round_trip_with_acls(s: &Secure, client: ClientConfig, principal: &str) -> Result<()> {
    let topic = unique_topic("sec");
    let hidden = unique_topic("sec-hidden");
    let group = unique_topic("sec-group");
    create_topic(&s.admin(), &topic).await?;
    create_topic(&s.admin(), &hidden).await?;

    let refused = produce_one(&client, &topic).await?;
    ensure!(
        matches!(
            refused,
            Some(KafkaError::MessageProduction(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))
        ),
        "{principal} produced without an ACL: {refused:?}"
    );
    ensure!(
        visible_topics(&client)?.is_empty(),
        "{principal} sees topics without an ACL"
    );

    let listed = s.kafka_acls(&[
        "--add",
        "--allow-principal",
        principal,
        "--producer",
        "--idempotent",
        "--consumer",
        "--topic",
        &topic,
        "--group",
        &group,
    ])?;
    ensure!(listed.contains(principal), "kafka-acls output: {listed}");
    ensure!(
        visible_topics(&client)? == vec![topic.clone()],
        "{principal} should see exactly {topic}"
    );

    let producer: FutureProducer = client
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?;
    let records = (0..RECORDS).map(|i| Outgoing {
        key: format!("key-{i}").into_bytes(),
        value: Some(format!("value-{i}-{}", "x".repeat(i % 200)).into_bytes()),
        partition: None,
        timestamp: None,
    });
    let acked = produce_ordered(&producer, &topic, records, Duration::from_secs(60)).await?;
    let mut expected: BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for a in &acked {
        let previous = expected.insert(
            (a.partition, a.offset),
            (
                a.rec.key.clone().expect("keyed"),
                a.rec.value.clone().expect("set"),
            ),
        );
        ensure!(previous.is_none(), "offset {a:?} acknowledged twice");
    }

    let consumer: StreamConsumer<DefaultConsumerContext> = client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, consumer.recv())
            .await
            .with_context(|| format!("read {} of {} records", got.len(), expected.len()))?
            .context("consumer error")?;
        got.insert(
            (m.partition(), m.offset()),
            (
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ),
        );
    }
    ensure!(
        got == expected,
        "{principal} read other records than it produced"
    );
    consumer.commit_consumer_state(CommitMode::Sync)?;
    let committed = consumer.committed(REQUEST_TIMEOUT)?;
    for p in 0..PARTITIONS {
        let end = expected.keys().filter(|(q, _)| *q == p).count() as i64;
        let offset = committed
            .find_partition(&topic, p)
            .map(|e| e.offset())
            .context("no committed offset")?;
        ensure!(
            offset == Offset::Offset(end),
            "partition {p}: committed {offset:?}, expected {end}"
        );
    }

    // Asked for by name, the topic without an ACL is refused, not described.
    let probe: StreamConsumer = client.clone().set("group.id", &group).create()?;
    let md = probe.fetch_metadata(Some(&hidden), REQUEST_TIMEOUT)?;
    let refused = md
        .topics()
        .iter()
        .find(|t| t.name() == hidden)
        .and_then(|t| t.error())
        .map(RDKafkaErrorCode::from);
    ensure!(
        refused == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{principal} asking for {hidden}: {refused:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_256_round_trip_with_acls() -> Result<()> {
    let Some(s) = Secure::start("sasl_ssl_scram_sha_256_round_trip_with_acls")? else {
        return Ok(());
    };
    let client = s.sasl("SCRAM-SHA-256", "scott", "scott-secret");
    round_trip_with_acls(&s, client, "User:scott")
        .await
        .with_context(|| s.cairn.log_tail())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_round_trip_with_acls() -> Result<()> {
    let Some(s) = Secure::start("sasl_ssl_plain_round_trip_with_acls")? else {
        return Ok(());
    };
    let client = s.sasl("PLAIN", "paula", "paula-secret");
    round_trip_with_acls(&s, client, "User:paula")
        .await
        .with_context(|| s.cairn.log_tail())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_client_certificate_principal_is_its_dn() -> Result<()> {
    let Some(s) = Secure::start("ssl_client_certificate_principal_is_its_dn")? else {
        return Ok(());
    };
    round_trip_with_acls(&s, s.ssl(true), CLIENT_DN)
        .await
        .with_context(|| s.cairn.log_tail())?;

    // Without a certificate the required client authentication fails the handshake.
    let errors = first_errors(s.ssl(false))?;
    ensure!(
        errors.iter().any(|(code, _)| matches!(
            code,
            RDKafkaErrorCode::SSL | RDKafkaErrorCode::BrokerTransportFailure
        )),
        "a client without a certificate: {errors:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_get_an_authentication_error_not_a_hang() -> Result<()> {
    let Some(s) = Secure::start("wrong_credentials_get_an_authentication_error_not_a_hang")? else {
        return Ok(());
    };
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "scott", "not-scotts-secret"),
        ("SCRAM-SHA-256", "nobody", "scott-secret"),
        ("PLAIN", "paula", "not-paulas-secret"),
        ("PLAIN", "nobody", "paula-secret"),
    ] {
        let errors = first_errors(s.sasl(mechanism, user, password))?;
        ensure!(
            errors
                .iter()
                .any(|(code, _)| *code == RDKafkaErrorCode::Authentication),
            "{mechanism} {user} with a wrong password: {errors:?}"
        );
        // librdkafka names the broker's answer: SASL_AUTHENTICATION_FAILED, not a timeout.
        ensure!(
            errors
                .iter()
                .any(|(_, reason)| reason.contains("Authentication failed")
                    || reason.contains("SASL_AUTHENTICATION_FAILED")),
            "{mechanism} {user}: {errors:?}"
        );
    }
    // The right password still works afterwards, and no secret reached the log.
    ensure!(visible_topics(&s.sasl("SCRAM-SHA-256", "scott", "scott-secret"))?.is_empty());
    let log = s.cairn.log_text();
    for secret in ["not-scotts-secret", "not-paulas-secret", "scott-secret"] {
        ensure!(!log.contains(secret), "the log holds a password: {secret}");
    }
    Ok(())
}

/// Errors librdkafka reports to the application (its error callback).
#[derive(Default)]
struct Recorder {
    errors: Mutex<Vec<(RDKafkaErrorCode, String)>>,
}

struct Recording(Arc<Recorder>);

impl ClientContext for Recording {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        self.0
            .errors
            .lock()
            .expect("not poisoned")
            .push((code, reason.to_string()));
    }
}

/// Connects a client with `config` and returns the errors it reports within 20 s; asking for
/// metadata must fail (bounded) rather than succeed.
fn first_errors(config: ClientConfig) -> Result<Vec<(RDKafkaErrorCode, String)>> {
    let recorder = Arc::new(Recorder::default());
    let producer: FutureProducer<Recording> =
        config.create_with_context(Recording(recorder.clone()))?;
    let metadata = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(5));
    ensure!(metadata.is_err(), "metadata succeeded with bad credentials");
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorder.errors.lock().expect("not poisoned").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let errors = recorder.errors.lock().expect("not poisoned").clone();
    ensure!(!errors.is_empty(), "no error reported within 20 s (a hang)");
    Ok(errors)
}
