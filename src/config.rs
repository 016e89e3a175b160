//! Broker and topic configuration: Apache Kafka's names, defaults, validation and sources.
//!
//! Owns the one table of every config key Cairn accepts. The broker reads a
//! `server.properties`-style file plus `--set` overrides into [`BrokerConfig`];
//! topics keep only their explicit overrides (Kafka names → strings), and
//! [`LogConfig::resolve`] turns broker defaults plus overrides into the typed
//! values the log engine uses. Depends on nothing else in the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A config value failed validation, or a key is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key '{0}'")]
    UnknownKey(String),
    #[error("invalid value '{value}' for config '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Kafka's DescribeConfigs config types (the `config_type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// Where an effective config value came from (Kafka's DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic,
    DynamicBrokerLogger,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    /// A client-metrics subscription's own config (KIP-714).
    ClientMetrics,
    /// A group's own config (KIP-848 group configs).
    DynamicGroup,
}

impl ConfigSource {
    /// The wire value: Kafka numbers sources
    /// DYNAMIC_TOPIC_CONFIG(1), DYNAMIC_BROKER_CONFIG(2), DYNAMIC_DEFAULT_BROKER_CONFIG(3),
    /// STATIC_BROKER_CONFIG(4), DEFAULT_CONFIG(5), DYNAMIC_BROKER_LOGGER_CONFIG(6),
    /// CLIENT_METRICS_CONFIG(7) and GROUP_CONFIG(8).
    pub fn wire(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::DynamicBrokerLogger => 6,
            ConfigSource::ClientMetrics => 7,
            ConfigSource::DynamicGroup => 8,
        }
    }

    /// The rank of a broker-level source in Kafka's precedence (lower wins).
    fn precedence(self) -> u8 {
        match self {
            ConfigSource::DynamicBroker => 0,
            ConfigSource::DynamicDefaultBroker => 1,
            ConfigSource::StaticBroker => 2,
            _ => 3,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Check {
    Any,
    /// Integer (i64) at least this value.
    AtLeast(i64),
    /// Integer (i64): -1 (unbounded) or at least this value.
    UnboundedOrAtLeast(i64),
    /// Integer in [min, max].
    Range(i64, i64),
    /// Double in [min, max].
    DoubleRange(f64, f64),
    Bool,
    OneOf(&'static [&'static str]),
    CleanupPolicy,
    /// A comma list of these words that includes the first one.
    ListOf(&'static [&'static str]),
    /// A comma list of `NAME://host:port` (or one bare `host:port`), names unique.
    Listeners,
    /// `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR`.
    RemoteUrl,
    /// `IP:PORT`, or empty for "off".
    SocketAddrOrEmpty,
}

/// Producer ids of one cluster node: `node.id << 44` plus a local counter.
pub const PRODUCER_ID_NODE_SHIFT: u32 = 44;

/// One accepted config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    /// The default, as Kafka prints it; `None` means null.
    pub default: Option<&'static str>,
    check: Check,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    ty: ConfigType,
    default: Option<&'static str>,
    check: Check,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        check,
        doc,
    }
}

use Check::*;
use ConfigType as T;

const I64_MAX: &str = "9223372036854775807";
const I32_MAX: &str = "2147483647";
const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPE: &[&str] = &["CreateTime", "LogAppendTime"];
const VERIFY_ON_STARTUP: &[&str] = &["background", "before-serving", "off"];
const REBALANCE_PROTOCOLS: &[&str] = &["classic", "consumer"];
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Keys that may be set for one listener with Kafka's `listener.name.<name>.` prefix.
const PER_LISTENER_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.truststore.password",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.cipher.suites",
    "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
];

/// The name the HTTP listener's TLS keys (`cairn.http.ssl.*`) are kept under, as a listener's
/// `listener.name.<name>.ssl.*` overrides are; no Kafka listener can have it (listener names
/// hold no `.`).
pub const HTTP_TLS_NAME: &str = "cairn.http";

/// SASL mechanisms whose JAAS config can be set per listener as
/// `listener.name.<name>.<mechanism>.sasl.jaas.config`.
const JAAS_MECHANISMS: &[&str] = &["plain", "scram-sha-256", "scram-sha-512"];

/// Every broker-level key Cairn accepts, with Kafka's defaults except where noted.
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    def("listeners", T::String, Some("PLAINTEXT://127.0.0.1:9092"), Listeners, "Named listeners, NAME://HOST:PORT, comma separated; a bare HOST:PORT is a PLAINTEXT listener."),
    def("advertised.listeners", T::String, None, Listeners, "What Metadata gives a client of each listener, NAME://HOST:PORT; defaults to the listener's own address."),
    def("listener.security.protocol.map", T::List, Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"), Any, "Listener name to security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)."),
    def("inter.broker.listener.name", T::String, None, Any, "Accepted for compatibility; a single node has no inter-broker traffic."),
    def("security.inter.broker.protocol", T::String, Some("PLAINTEXT"), OneOf(SECURITY_PROTOCOLS), "Accepted for compatibility; a single node has no inter-broker traffic."),
    def("sasl.mechanism.inter.broker.protocol", T::String, Some("GSSAPI"), Any, "Accepted for compatibility; a single node has no inter-broker traffic."),
    def("ssl.keystore.type", T::String, Some("PEM"), OneOf(&["PEM"]), "Keystore format; Cairn reads PEM only."),
    def("ssl.keystore.location", T::String, None, Any, "PEM file with the private key and the certificate chain."),
    def("ssl.keystore.password", T::Password, None, Any, "Accepted for compatibility; PEM keystore files carry no store password."),
    def("ssl.keystore.certificate.chain", T::Password, None, Any, "The certificate chain in PEM, inline (instead of ssl.keystore.location)."),
    def("ssl.keystore.key", T::Password, None, Any, "The private key in PEM, inline (instead of ssl.keystore.location)."),
    def("ssl.key.password", T::Password, None, Any, "Password of an encrypted private key; Cairn reads unencrypted keys only, so this must stay unset."),
    def("ssl.truststore.type", T::String, Some("PEM"), OneOf(&["PEM"]), "Truststore format; Cairn reads PEM only."),
    def("ssl.truststore.location", T::String, None, Any, "PEM file of CA certificates that client certificates are checked against."),
    def("ssl.truststore.certificates", T::Password, None, Any, "CA certificates in PEM, inline (instead of ssl.truststore.location)."),
    def("ssl.truststore.password", T::Password, None, Any, "Accepted for compatibility; PEM truststores carry no password."),
    def("ssl.client.auth", T::String, Some("none"), OneOf(&["none", "requested", "required"]), "Whether TLS clients must present a certificate."),
    def("ssl.enabled.protocols", T::List, Some("TLSv1.2,TLSv1.3"), Any, "TLS versions accepted (TLSv1.2, TLSv1.3)."),
    def("ssl.protocol", T::String, Some("TLSv1.3"), Any, "Accepted for compatibility; ssl.enabled.protocols decides."),
    def("ssl.cipher.suites", T::List, Some(""), Any, "TLS cipher suites by IANA name; empty means rustls's safe defaults."),
    def("ssl.principal.mapping.rules", T::String, Some("DEFAULT"), OneOf(&["DEFAULT"]), "How a client certificate's DN becomes a principal; Cairn supports DEFAULT (the full RFC 2253 DN)."),
    def("ssl.endpoint.identification.algorithm", T::String, Some("https"), Any, "Accepted for compatibility (a client-side check)."),
    def("sasl.enabled.mechanisms", T::List, Some("SCRAM-SHA-256,SCRAM-SHA-512"), Any, "SASL mechanisms offered: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Cairn's default; Kafka's is GSSAPI, which Cairn does not offer)."),
    def("sasl.server.max.receive.size", T::Int, Some("524288"), AtLeast(1), "Largest request accepted on a SASL listener before authentication completes."),
    def("connections.max.reauth.ms", T::Long, Some("0"), AtLeast(0), "Session lifetime of a SASL client (KIP-368): it must re-authenticate on the connection within this time, or the connection closes at its next request; 0 means sessions never expire."),
    def("connection.failed.authentication.delay.ms", T::Int, Some("100"), AtLeast(0), "Wait this long before answering a failed authentication (and closing)."),
    def("authorizer.class.name", T::String, Some(""), OneOf(&["", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer"]), "Kafka's StandardAuthorizer (or the old AclAuthorizer name) turns ACLs on; empty means no authorizer: every client may do everything."),
    def("super.users", T::String, Some(""), Any, "Principals allowed every operation whatever the ACLs, separated by ';' (User:admin;User:CN=ops)."),
    def("allow.everyone.if.no.acl.found", T::Boolean, Some("false"), Bool, "With an authorizer, allow an operation on a resource that has no ACL at all."),
    def("log.dirs", T::String, Some("./data"), Any, "Directory holding the data."),
    def("log.dir", T::String, Some("./data"), Any, "Synonym of log.dirs (used when log.dirs is not set)."),
    def("node.id", T::Int, Some("1"), AtLeast(0), "This broker's id."),
    def("broker.id", T::Int, Some("1"), AtLeast(0), "Synonym of node.id."),
    def("broker.rack", T::String, None, Any, "This broker's rack: in a cluster, partitions are placed so that consecutive brokers alternate racks."),
    def("cairn.cluster.etcd.endpoints", T::List, Some(""), Any, "Cairn only. etcd endpoints (http://host:port, comma separated) of the cluster this broker joins; empty (the default) means a single node without etcd."),
    def("cairn.cluster.etcd.tls.ca.file", T::String, Some(""), Any, "Cairn only. PEM file of the CA certificates that etcd's server certificate is checked against (https endpoints); empty means the system's roots."),
    def("cairn.cluster.etcd.tls.cert.file", T::String, Some(""), Any, "Cairn only. PEM file of this broker's client certificate chain for etcd (with --client-cert-auth); needs cairn.cluster.etcd.tls.key.file."),
    def("cairn.cluster.etcd.tls.key.file", T::String, Some(""), Any, "Cairn only. PEM file of the private key of cairn.cluster.etcd.tls.cert.file."),
    def("cairn.cluster.etcd.username", T::String, Some(""), Any, "Cairn only. etcd user this broker authenticates as when etcd has authentication enabled; empty means none."),
    def("cairn.cluster.etcd.password", T::Password, None, Any, "Cairn only. Password of cairn.cluster.etcd.username."),
    def("broker.session.timeout.ms", T::Int, Some("9000"), AtLeast(2000), "In a cluster, how long a broker stays live without renewing its etcd lease (rounded up to whole seconds)."),
    def("num.partitions", T::Int, Some("1"), AtLeast(1), "Partitions of an auto-created topic, or of one created with -1."),
    def("default.replication.factor", T::Short, Some("1"), Range(1, 32767), "In a cluster, the replication factor of topics created without one; a single node has one replica."),
    def("replica.lag.time.max.ms", T::Long, Some("30000"), AtLeast(1), "In a cluster, a follower that has not caught up with its leader's log end for this long leaves the ISR."),
    def("controlled.shutdown.enable", T::Boolean, Some("true"), Bool, "In a cluster, on SIGTERM move the leadership of every partition this broker leads to another in-sync replica (and leave the ISRs it is in) before stopping."),
    def("cairn.controlled.shutdown.timeout.ms", T::Long, Some("30000"), AtLeast(0), "Cairn only. How long a controlled shutdown waits for its leaderships to move before the broker stops anyway."),
    def("auto.leader.rebalance.enable", T::Boolean, Some("true"), Bool, "In a cluster, the controller gives partitions back to their preferred (first) replica when a broker leads too few of its preferred partitions."),
    def("leader.imbalance.check.interval.seconds", T::Long, Some("300"), AtLeast(1), "In a cluster, how often the controller checks the leader balance."),
    def("leader.imbalance.per.broker.percentage", T::Int, Some("10"), Range(0, 100), "In a cluster, the share (percent) of its preferred partitions a broker may not lead before the controller rebalances them."),
    def("auto.create.topics.enable", T::Boolean, Some("true"), Bool, "Create unknown topics named in Metadata requests."),
    def("socket.request.max.bytes", T::Int, Some("104857600"), AtLeast(1), "Largest request frame accepted."),
    def("quota.window.num", T::Int, Some("11"), AtLeast(1), "Samples kept for client quota rates."),
    def("quota.window.size.seconds", T::Int, Some("1"), AtLeast(1), "Time span of each client quota rate sample."),
    def("max.incremental.fetch.session.cache.slots", T::Int, Some("1000"), AtLeast(0), "Most incremental fetch sessions (KIP-227) kept at once; 0 turns sessions off."),
    def("max.connections", T::Int, Some("10000"), AtLeast(1), "Most client connections at once (Cairn's default; Kafka's is unbounded)."),
    def("connections.max.idle.ms", T::Long, Some("600000"), AtLeast(-1), "Close connections idle this long."),
    def("queued.max.request.bytes", T::Long, Some("268435456"), UnboundedOrAtLeast(1), "Most bytes of requests being read or handled at once, broker-wide; a connection waits for room before reading a frame. -1 is unbounded (Kafka's default; Cairn's is 256 MiB)."),
    def("log.retention.ms", T::Long, None, AtLeast(-1), "Default retention.ms; -1 keeps data forever."),
    def("log.retention.minutes", T::Int, None, AtLeast(-1), "Default retention in minutes, used when log.retention.ms is not set."),
    def("log.retention.hours", T::Int, Some("168"), AtLeast(-1), "Default retention in hours, used when neither ms nor minutes is set."),
    def("log.retention.bytes", T::Long, Some("-1"), AtLeast(-1), "Default retention.bytes per partition; -1 is unlimited."),
    def("log.segment.bytes", T::Int, Some("1073741824"), AtLeast(14), "Default segment.bytes."),
    def("log.roll.ms", T::Long, None, AtLeast(1), "Default segment.ms."),
    def("log.roll.hours", T::Int, Some("168"), AtLeast(1), "Default segment roll time in hours, used when log.roll.ms is not set."),
    def("log.cleanup.policy", T::List, Some("delete"), CleanupPolicy, "Default cleanup.policy."),
    def("log.flush.interval.messages", T::Long, Some("1"), AtLeast(1), "Default flush.messages. Cairn's default 1 fsyncs before acknowledging (with group commit); Kafka's default 9223372036854775807 leaves data in the page cache."),
    def("log.flush.interval.ms", T::Long, None, AtLeast(0), "Default flush.ms; null means no time-based flush."),
    def("message.max.bytes", T::Int, Some("1048588"), AtLeast(0), "Default max.message.bytes (largest record batch)."),
    def("log.message.timestamp.type", T::String, Some("CreateTime"), OneOf(TIMESTAMP_TYPE), "Default message.timestamp.type."),
    def("log.message.timestamp.before.max.ms", T::Long, Some(I64_MAX), AtLeast(0), "Default message.timestamp.before.max.ms."),
    def("log.message.timestamp.after.max.ms", T::Long, Some("3600000"), AtLeast(0), "Default message.timestamp.after.max.ms."),
    def("compression.type", T::String, Some("producer"), OneOf(COMPRESSION), "Default compression.type: 'producer' stores batches as sent; a codec recompresses batches sent with another one."),
    def("log.index.interval.bytes", T::Int, Some("4096"), AtLeast(0), "Default index.interval.bytes."),
    def("log.index.size.max.bytes", T::Int, Some("10485760"), AtLeast(4), "Default segment.index.bytes."),
    def("log.segment.delete.delay.ms", T::Long, Some("60000"), AtLeast(0), "Default file.delete.delay.ms."),
    def("log.retention.check.interval.ms", T::Long, Some("300000"), AtLeast(1), "How often retention runs."),
    def("log.cleaner.enable", T::Boolean, Some("true"), Bool, "Run the log cleaner for compacted topics."),
    def("log.cleaner.threads", T::Int, Some("1"), AtLeast(0), "Cleaner threads."),
    def("log.cleaner.dedupe.buffer.size", T::Long, Some("134217728"), AtLeast(1024), "Memory for the cleaner's key to offset map."),
    def("log.cleaner.io.max.bytes.per.second", T::Double, Some("1.7976931348623157E308"), DoubleRange(0.0, f64::MAX), "Cleaner I/O rate limit."),
    def("log.cleaner.backoff.ms", T::Long, Some("15000"), AtLeast(0), "Cleaner sleep when nothing is cleanable."),
    def("log.cleaner.min.cleanable.ratio", T::Double, Some("0.5"), DoubleRange(0.0, 1.0), "Default min.cleanable.dirty.ratio."),
    def("log.cleaner.min.compaction.lag.ms", T::Long, Some("0"), AtLeast(0), "Default min.compaction.lag.ms."),
    def("log.cleaner.max.compaction.lag.ms", T::Long, Some(I64_MAX), AtLeast(1), "Default max.compaction.lag.ms."),
    def("log.cleaner.delete.retention.ms", T::Long, Some("86400000"), AtLeast(0), "Default delete.retention.ms."),
    def("cairn.http.listen", T::String, Some("127.0.0.1:9644"), SocketAddrOrEmpty, "Cairn only. HOST:PORT of the operator's HTTP listener (/metrics, the status page at /, /v1/status); empty disables it. When the default port is taken, Cairn serves without it (and says so); a port set here must be free."),
    def("cairn.key.index.memory.bytes", T::Long, Some("16777216"), AtLeast(1024), "Cairn only. Memory per indexed partition for the key index of its active segment (sealed segments are indexed on disk); past it, the rest of the active segment is searched linearly. A snapshot holds at most twice this per partition for its plan (see ARCHITECTURE.md)."),
    def("cairn.key.index.remote.cache.bytes", T::Long, Some("1073741824"), AtLeast(0), "Cairn only. Local disk for the key files of segments only the object-storage tier holds, over all partitions (least recently used deleted first; a lookup then builds the file again from the bucket)."),
    def("cairn.http.authentication", T::String, Some("none"), OneOf(&["none", "basic"]), "Cairn only. basic: the HTTP listener asks for HTTP Basic credentials of a PLAIN or SCRAM user of the Kafka listeners, who needs cluster DESCRIBE when ACLs are on; none: open to anyone who can reach it."),
    def("cairn.http.ssl.enable", T::Boolean, Some("false"), Bool, "Cairn only. Serve the HTTP listener over TLS (https) with the broker's ssl.* keys, each overridable for it alone as cairn.http.ssl.<key> (e.g. cairn.http.ssl.keystore.location); SIGHUP re-reads its certificates."),
    def("cairn.log.open.files.max", T::Int, Some("0"), AtLeast(0), "Cairn only. Most segment files (.log, .index, .timeindex) kept open at once; the least recently used are closed and reopened on demand, so the number of partitions and segments is not capped by the open-files limit. 0 (the default): half the process's open-files limit (after Cairn raises its soft limit to the hard one), leaving the rest for connections."),
    def("cairn.log.verify.on.startup", T::String, Some("background"), OneOf(VERIFY_ON_STARTUP), "Cairn only. When the CRC and offsets of every batch of every segment are checked, damage moved aside and repaired: 'background' (serve at once, verify in a background pass; after a crash the re-read tail first), 'before-serving' (everything before serving), 'off' (Kafka's behaviour: only the tail after a crash, where damage cuts the log)."),
    def("min.insync.replicas", T::Int, Some("1"), AtLeast(1), "In a cluster, the fewest in-sync replicas an acks=all write needs (NOT_ENOUGH_REPLICAS below it); a single node has one replica."),
    def("unclean.leader.election.enable", T::Boolean, Some("false"), Bool, "In a cluster, elect a live replica outside the ISR when no in-sync replica is live (acknowledged writes may be lost); no effect on a single node."),
    def("group.initial.rebalance.delay.ms", T::Int, Some("3000"), AtLeast(0), "Wait for more members before the first rebalance of a new group."),
    def("group.min.session.timeout.ms", T::Int, Some("6000"), AtLeast(0), "Smallest session timeout a member may ask for."),
    def("group.max.session.timeout.ms", T::Int, Some("1800000"), AtLeast(0), "Largest session timeout a member may ask for."),
    def("group.max.size", T::Int, Some(I32_MAX), AtLeast(1), "Most members in one group."),
    def("group.coordinator.rebalance.protocols", T::List, Some("classic,consumer"), ListOf(REBALANCE_PROTOCOLS), "The group protocols served: classic, and consumer (KIP-848: ConsumerGroupHeartbeat and ConsumerGroupDescribe, advertised only when it is listed)."),
    def("group.consumer.session.timeout.ms", T::Int, Some("45000"), AtLeast(1), "Session timeout of consumer-protocol (KIP-848) group members."),
    def("group.consumer.heartbeat.interval.ms", T::Int, Some("5000"), AtLeast(1), "Heartbeat interval given to consumer-protocol (KIP-848) group members."),
    def("group.consumer.min.session.timeout.ms", T::Int, Some("45000"), AtLeast(1), "Smallest consumer.session.timeout.ms a group config may set."),
    def("group.consumer.max.session.timeout.ms", T::Int, Some("60000"), AtLeast(1), "Largest consumer.session.timeout.ms a group config may set."),
    def("group.consumer.min.heartbeat.interval.ms", T::Int, Some("5000"), AtLeast(1), "Smallest consumer.heartbeat.interval.ms a group config may set."),
    def("group.consumer.max.heartbeat.interval.ms", T::Int, Some("15000"), AtLeast(1), "Largest consumer.heartbeat.interval.ms a group config may set."),
    def("group.consumer.max.size", T::Int, Some(I32_MAX), AtLeast(1), "Most members in one consumer-protocol (KIP-848) group."),
    def("group.consumer.migration.policy", T::String, Some("bidirectional"), OneOf(&crate::group::consumer::MigrationPolicy::NAMES), "Whether a group with members converts online between the protocols: bidirectional, upgrade (a classic group a consumer-protocol member joins becomes a consumer group), downgrade (a consumer group whose last consumer-protocol member leaves becomes classic), disabled. Empty groups convert either way."),
    def("offsets.retention.minutes", T::Int, Some("10080"), AtLeast(1), "Keep offsets of an empty group this long."),
    def("offsets.retention.check.interval.ms", T::Long, Some("600000"), AtLeast(1), "How often expired offsets are removed."),
    def("offsets.topic.num.partitions", T::Int, Some("50"), AtLeast(1), "Partitions of __consumer_offsets."),
    def("offsets.topic.replication.factor", T::Short, Some("3"), Range(1, 32767), "Replicas of each __consumer_offsets partition in a cluster (at most the live brokers when it is created)."),
    def("offsets.topic.segment.bytes", T::Int, Some("104857600"), AtLeast(14), "segment.bytes of __consumer_offsets."),
    def("producer.id.expiration.ms", T::Int, Some("86400000"), AtLeast(1), "Forget an idle producer's idempotence state after this long."),
    def("transaction.max.timeout.ms", T::Int, Some("900000"), AtLeast(1), "Largest transaction timeout a producer may ask for."),
    def("transactional.id.expiration.ms", T::Int, Some("604800000"), AtLeast(1), "Forget a transactional id with no transaction for this long."),
    def("transaction.abort.timed.out.transaction.cleanup.interval.ms", T::Int, Some("10000"), AtLeast(1), "How often timed-out transactions are aborted."),
    def("transaction.state.log.num.partitions", T::Int, Some("50"), AtLeast(1), "Partitions of __transaction_state."),
    def("transaction.state.log.replication.factor", T::Short, Some("3"), Range(1, 32767), "Replicas of each __transaction_state partition in a cluster (at most the live brokers when it is created)."),
    def("transaction.state.log.segment.bytes", T::Int, Some("104857600"), AtLeast(14), "segment.bytes of __transaction_state."),
    def("log.local.retention.ms", T::Long, Some("-2"), AtLeast(-2), "Default local.retention.ms; -2 means retention.ms."),
    def("log.local.retention.bytes", T::Long, Some("-2"), AtLeast(-2), "Default local.retention.bytes; -2 means retention.bytes."),
    def("remote.log.storage.system.enable", T::Boolean, Some("false"), Bool, "Enable the object-storage tier (needs cairn.remote.storage.url)."),
    def("cairn.remote.storage.url", T::String, None, RemoteUrl, "Cairn only. Where the tier lives: s3://BUCKET/PREFIX or file:///ABSOLUTE/DIR."),
    def("cairn.remote.storage.s3.endpoint", T::String, None, Any, "Cairn only. S3 endpoint URL (else AWS_ENDPOINT_URL, else AWS's)."),
    def("cairn.remote.storage.s3.region", T::String, None, Any, "Cairn only. S3 region (else AWS_REGION)."),
    def("cairn.remote.storage.s3.access.key.id", T::String, None, Any, "Cairn only. S3 access key id (else AWS_ACCESS_KEY_ID)."),
    def("cairn.remote.storage.s3.secret.access.key", T::Password, None, Any, "Cairn only. S3 secret access key (else AWS_SECRET_ACCESS_KEY)."),
    def("cairn.remote.storage.s3.allow.http", T::Boolean, None, Bool, "Cairn only. Allow a plain-http endpoint (else AWS_ALLOW_HTTP)."),
    def("remote.log.manager.copy.max.bytes.per.second", T::Long, Some("9223372036854775807"), AtLeast(1), "Upper bound on the bandwidth of copies to the object-storage tier."),
    def("cairn.remote.cache.bytes", T::Long, Some("268435456"), AtLeast(0), "Cairn only. Memory for segment objects read from the tier (an LRU cache)."),
    def("cairn.remote.upload.interval.ms", T::Long, Some("600000"), AtLeast(100), "Cairn only. Longest time acknowledged data of a tiered partition stays only on local disk: the active segment is rolled and uploaded at least this often."),
    def("cairn.remote.scrub.interval.ms", T::Long, Some("86400000"), AtLeast(1000), "Cairn only. How often every object of the object-storage tier is read back and checked against its manifest (size, CRC-32C, each batch's CRC); a damaged one is uploaded again from the local copy when there is one."),
    def("cairn.remote.lease.timeout.ms", T::Long, Some("30000"), AtLeast(1000), "Cairn only. How long the bucket lease outlives its holder's last heartbeat: a broker killed without a clean stop keeps the prefix from other data directories this long (its own data directory takes it back at once), and a holder that cannot renew for this long less a sixth stops writing. Renewed every sixth of it; every broker on one prefix must use the same value."),
];

/// A topic-level key: its definition and the broker keys it defaults from, most specific first.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub def: ConfigDef,
    pub broker_synonyms: &'static [&'static str],
}

const fn topic(
    name: &'static str,
    ty: ConfigType,
    check: Check,
    broker_synonyms: &'static [&'static str],
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        def: ConfigDef {
            name,
            ty,
            default: None,
            check,
            doc,
        },
        broker_synonyms,
    }
}

/// A topic-level boolean with no broker synonym, false by default (Kafka's tiered-storage flags).
const fn topic_flag(name: &'static str, doc: &'static str) -> TopicConfigDef {
    TopicConfigDef {
        def: ConfigDef {
            name,
            ty: ConfigType::Boolean,
            default: Some("false"),
            check: Bool,
            doc,
        },
        broker_synonyms: &[],
    }
}

/// Every topic-level key Cairn accepts. Defaults come from the broker synonyms (or, for a key
/// without any, from its own default).
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic(
        "cleanup.policy",
        T::List,
        CleanupPolicy,
        &["log.cleanup.policy"],
        "delete, compact, or compact,delete.",
    ),
    topic(
        "retention.ms",
        T::Long,
        AtLeast(-1),
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "Delete sealed segments older than this; -1 keeps forever.",
    ),
    topic(
        "retention.bytes",
        T::Long,
        AtLeast(-1),
        &["log.retention.bytes"],
        "Delete oldest sealed segments beyond this size; -1 is unlimited.",
    ),
    topic(
        "segment.bytes",
        T::Int,
        AtLeast(14),
        &["log.segment.bytes"],
        "Roll a segment at this size.",
    ),
    topic(
        "segment.ms",
        T::Long,
        AtLeast(1),
        &["log.roll.ms", "log.roll.hours"],
        "Roll a segment after this long.",
    ),
    topic(
        "segment.index.bytes",
        T::Int,
        AtLeast(4),
        &["log.index.size.max.bytes"],
        "Size of a segment's offset index.",
    ),
    topic(
        "index.interval.bytes",
        T::Int,
        AtLeast(0),
        &["log.index.interval.bytes"],
        "Bytes between offset index entries.",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        T::Double,
        DoubleRange(0.0, 1.0),
        &["log.cleaner.min.cleanable.ratio"],
        "Clean when dirty bytes exceed this share of the log.",
    ),
    topic(
        "min.compaction.lag.ms",
        T::Long,
        AtLeast(0),
        &["log.cleaner.min.compaction.lag.ms"],
        "Leave records younger than this uncompacted.",
    ),
    topic(
        "max.compaction.lag.ms",
        T::Long,
        AtLeast(1),
        &["log.cleaner.max.compaction.lag.ms"],
        "Compact records at the latest after this long.",
    ),
    topic(
        "delete.retention.ms",
        T::Long,
        AtLeast(0),
        &["log.cleaner.delete.retention.ms"],
        "Keep tombstones this long after their first cleaning.",
    ),
    topic(
        "max.message.bytes",
        T::Int,
        AtLeast(0),
        &["message.max.bytes"],
        "Largest record batch accepted.",
    ),
    topic(
        "message.timestamp.type",
        T::String,
        OneOf(TIMESTAMP_TYPE),
        &["log.message.timestamp.type"],
        "CreateTime or LogAppendTime.",
    ),
    topic(
        "message.timestamp.before.max.ms",
        T::Long,
        AtLeast(0),
        &["log.message.timestamp.before.max.ms"],
        "Reject records whose timestamp is further in the past.",
    ),
    topic(
        "message.timestamp.after.max.ms",
        T::Long,
        AtLeast(0),
        &["log.message.timestamp.after.max.ms"],
        "Reject records whose timestamp is further in the future.",
    ),
    topic(
        "compression.type",
        T::String,
        OneOf(COMPRESSION),
        &["compression.type"],
        "The codec batches are stored with: 'producer' keeps each batch as sent; a codec recompresses every batch sent with another one on the way in.",
    ),
    topic(
        "flush.messages",
        T::Long,
        AtLeast(1),
        &["log.flush.interval.messages"],
        "fsync after this many records; 1 means before every acknowledgement.",
    ),
    topic(
        "flush.ms",
        T::Long,
        AtLeast(0),
        &["log.flush.interval.ms"],
        "fsync at least this often.",
    ),
    topic(
        "file.delete.delay.ms",
        T::Long,
        AtLeast(0),
        &["log.segment.delete.delay.ms"],
        "Delay before deleted segment files are removed.",
    ),
    topic_flag(
        "remote.storage.enable",
        "Copy sealed segments to the object-storage tier (needs remote.log.storage.system.enable).",
    ),
    topic(
        "local.retention.ms",
        T::Long,
        AtLeast(-2),
        &["log.local.retention.ms"],
        "Local retention of a tiered topic; -2 means retention.ms.",
    ),
    topic(
        "local.retention.bytes",
        T::Long,
        AtLeast(-2),
        &["log.local.retention.bytes"],
        "Local retention of a tiered topic; -2 means retention.bytes.",
    ),
    topic_flag(
        "remote.log.copy.disable",
        "Stop copying new segments to the tier (what is there stays).",
    ),
    topic_flag(
        "remote.log.delete.on.disable",
        "Delete the topic's tiered data when remote.storage.enable is turned off.",
    ),
    topic_flag(
        "cairn.key.index.enable",
        "Cairn only. Index keys for HTTP lookups and snapshots (/v1/topics/T/keys) even when cleanup.policy has no compact (compacted topics always are).",
    ),
    topic(
        "min.insync.replicas",
        T::Int,
        AtLeast(1),
        &["min.insync.replicas"],
        "In a cluster, the fewest in-sync replicas an acks=all write to the topic needs.",
    ),
    topic(
        "unclean.leader.election.enable",
        T::Boolean,
        Bool,
        &["unclean.leader.election.enable"],
        "Accepted for compatibility.",
    ),
];

fn check_value(def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidValue {
        key: def.name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v = value.trim();
    match def.ty {
        T::Int | T::Short | T::Long => {
            let n: i64 = v.parse().map_err(|_| bad("not an integer"))?;
            let (lo, hi) = match def.ty {
                T::Int => (i32::MIN as i64, i32::MAX as i64),
                T::Short => (i16::MIN as i64, i16::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if n < lo || n > hi {
                return Err(bad("out of range for its type"));
            }
            match def.check {
                AtLeast(min) if n < min => return Err(bad(&format!("must be at least {min}"))),
                UnboundedOrAtLeast(min) if n != -1 && n < min => {
                    return Err(bad(&format!("must be -1 (unbounded) or at least {min}")))
                }
                Range(min, max) if n < min || n > max => {
                    return Err(bad(&format!("must be between {min} and {max}")))
                }
                _ => {}
            }
        }
        T::Double => {
            let x: f64 = v.parse().map_err(|_| bad("not a number"))?;
            if let DoubleRange(min, max) = def.check {
                if !(min..=max).contains(&x) {
                    return Err(bad(&format!("must be between {min} and {max}")));
                }
            }
        }
        T::Boolean => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err(bad("must be true or false"));
            }
        }
        _ => match def.check {
            OneOf(allowed) if !allowed.contains(&v) => {
                return Err(bad(&format!("must be one of {}", allowed.join(", "))))
            }
            CleanupPolicy => {
                CleanupPolicy::parse(v).map_err(|reason| bad(&reason))?;
            }
            ListOf(allowed) => {
                let words: Vec<&str> = v.split(',').map(str::trim).collect();
                if let Some(w) = words.iter().find(|w| !allowed.contains(w)) {
                    return Err(bad(&format!("'{w}' is not one of {}", allowed.join(", "))));
                }
                if !words.contains(&allowed[0]) {
                    return Err(bad(&format!("must include {}", allowed[0])));
                }
            }
            Listeners => {
                parse_listeners(v).map_err(|reason| bad(&reason))?;
            }
            RemoteUrl => {
                RemoteUrl::parse(v).map_err(|reason| bad(&reason))?;
            }
            SocketAddrOrEmpty
                if !v.trim().is_empty() && v.trim().parse::<SocketAddr>().is_err() =>
            {
                return Err(bad(
                    "expected IP:PORT (e.g. 127.0.0.1:9644), or empty to disable",
                ));
            }
            _ => {}
        },
    }
    Ok(())
}

/// One entry of `listeners` or `advertised.listeners`: a listener name and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAddr {
    /// The listener name, upper case as Kafka compares them (`PLAINTEXT` for a bare address).
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// Parses a `listeners`-style list: `NAME://host:port,...`, or a single bare `host:port` (a
/// PLAINTEXT listener, as `--listen` gives). Names must be unique.
pub fn parse_listeners(value: &str) -> Result<Vec<ListenerAddr>, String> {
    let parts: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("no listener given".into());
    }
    let mut out: Vec<ListenerAddr> = Vec::with_capacity(parts.len());
    for part in &parts {
        let (name, addr) = match part.split_once("://") {
            Some((name, rest)) => (name.to_ascii_uppercase(), rest),
            None if parts.len() == 1 => ("PLAINTEXT".to_string(), *part),
            None => return Err(format!("'{part}' has no listener name (NAME://HOST:PORT)")),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad listener name '{name}'"));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener name '{name}' appears twice"));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("'{part}': expected HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| format!("bad port '{port}'"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        out.push(ListenerAddr {
            name,
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// Parses `listener.security.protocol.map`: `NAME:PROTOCOL,...` (names upper-cased).
pub fn parse_protocol_map(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, protocol) = part
            .split_once(':')
            .ok_or_else(|| format!("'{part}': expected NAME:PROTOCOL"))?;
        let protocol = protocol.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(format!("unknown security protocol '{protocol}'"));
        }
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// `cleanup.policy`: delete, compact, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(value: &str) -> Result<CleanupPolicy, String> {
        let mut policy = CleanupPolicy::default();
        for part in value.split(',').map(str::trim) {
            match part {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                "" => {}
                other => return Err(format!("unknown cleanup policy '{other}'")),
            }
        }
        if !policy.delete && !policy.compact {
            return Err("at least one of delete and compact is required".into());
        }
        Ok(policy)
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The broker's configuration: defaults, then the file, then `--set` values, then the dynamic
/// configs (see `dynamic_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    values: BTreeMap<&'static str, String>,
    explicit: BTreeSet<&'static str>,
    /// `listener.name.<name>.<key>` values, keyed by (lower-case listener name, key).
    per_listener: BTreeMap<(String, String), String>,
    /// Dynamic values (`kafka-configs --entity-type brokers --alter`) over the static ones, in
    /// Kafka's precedence: this broker's own, then the cluster-wide default entity's.
    dynamic_broker: BTreeMap<&'static str, String>,
    dynamic_default: BTreeMap<&'static str, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let values = BROKER_CONFIGS
            .iter()
            .filter_map(|d| d.default.map(|v| (d.name, v.to_string())))
            .collect();
        BrokerConfig {
            values,
            explicit: BTreeSet::new(),
            per_listener: BTreeMap::new(),
            dynamic_broker: BTreeMap::new(),
            dynamic_default: BTreeMap::new(),
        }
    }
}

fn broker_def(key: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == key)
}

/// Checks one broker key and value as the config file's are; the key's definition when valid.
pub fn check_broker_value(key: &str, value: &str) -> Result<&'static ConfigDef, ConfigError> {
    let def = broker_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    check_value(def, value)?;
    Ok(def)
}

/// The definition of a topic-level key.
pub fn topic_def(key: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.def.name == key)
}

impl BrokerConfig {
    /// Sets one key, validating name and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if let Some(rest) = key.strip_prefix("listener.name.") {
            return self.set_per_listener(key, rest, value);
        }
        if let Some(ssl_key) = key
            .strip_prefix("cairn.http.")
            .filter(|k| k.starts_with("ssl.") && PER_LISTENER_KEYS.contains(k))
        {
            // The HTTP listener's own TLS keys, kept as a listener's overrides are.
            let def = broker_def(ssl_key).ok_or_else(|| ConfigError::UnknownKey(key.into()))?;
            check_value(def, value)?;
            self.per_listener.insert(
                (HTTP_TLS_NAME.to_string(), ssl_key.to_string()),
                value.trim().to_string(),
            );
            return Ok(());
        }
        let def = broker_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        check_value(def, value)?;
        self.values.insert(def.name, value.trim().to_string());
        self.explicit.insert(def.name);
        Ok(())
    }

    /// Sets `listener.name.<name>.<key>`: a per-listener security key, or a mechanism's
    /// `<mechanism>.sasl.jaas.config`.
    fn set_per_listener(&mut self, full: &str, rest: &str, value: &str) -> Result<(), ConfigError> {
        let unknown = || ConfigError::UnknownKey(full.to_string());
        let (listener, key) = rest.split_once('.').ok_or_else(unknown)?;
        let jaas = key
            .strip_suffix(".sasl.jaas.config")
            .is_some_and(|m| JAAS_MECHANISMS.contains(&m));
        if !jaas {
            let def = PER_LISTENER_KEYS
                .contains(&key)
                .then(|| broker_def(key))
                .flatten()
                .ok_or_else(unknown)?;
            check_value(def, value)?;
        }
        self.per_listener.insert(
            (listener.to_ascii_lowercase(), key.to_string()),
            value.trim().to_string(),
        );
        Ok(())
    }

    /// The value of a security key for one listener: its `listener.name.<name>.` override,
    /// else the broker-wide value.
    pub fn listener_value(&self, listener: &str, key: &str) -> Option<&str> {
        self.per_listener
            .get(&(listener.to_ascii_lowercase(), key.to_string()))
            .map(String::as_str)
            .or_else(|| self.get(key))
    }

    /// Reads a `server.properties`-style file (`key=value` or `key: value`, `#`/`!` comments).
    pub fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) = match (line.find('='), line.find(':')) {
                (Some(e), Some(c)) => line.split_at(e.min(c)),
                (Some(i), None) | (None, Some(i)) => line.split_at(i),
                (None, None) => (line, "="),
            };
            self.set(key.trim(), &value[1..])?;
        }
        Ok(())
    }

    /// The value of a broker key: dynamic, else static, else its default; `None` when null.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.dynamic_broker
            .get(key)
            .or_else(|| self.dynamic_default.get(key))
            .or_else(|| self.values.get(key))
            .map(String::as_str)
    }

    /// True when the key was set: in the file, with `--set`, or dynamically.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(key)
            || self.dynamic_broker.contains_key(key)
            || self.dynamic_default.contains_key(key)
    }

    /// Where the value [`BrokerConfig::get`] returns comes from.
    pub fn source(&self, key: &str) -> ConfigSource {
        self.layers(key)
            .first()
            .map_or(ConfigSource::Default, |(_, source)| *source)
    }

    /// Every value a broker key has, most specific first (Kafka's synonym list for one name):
    /// this broker's dynamic value, the cluster-wide dynamic default, the static value, the
    /// default.
    pub fn layers(&self, key: &str) -> Vec<(Option<String>, ConfigSource)> {
        let mut layers = Vec::new();
        if let Some(v) = self.dynamic_broker.get(key) {
            layers.push((Some(v.clone()), ConfigSource::DynamicBroker));
        }
        if let Some(v) = self.dynamic_default.get(key) {
            layers.push((Some(v.clone()), ConfigSource::DynamicDefaultBroker));
        }
        if self.explicit.contains(key) {
            layers.push((self.values.get(key).cloned(), ConfigSource::StaticBroker));
        }
        if let Some(d) = broker_def(key).and_then(|d| d.default) {
            layers.push((Some(d.to_string()), ConfigSource::Default));
        }
        layers
    }

    /// This static config with the dynamic layers replaced: `broker` for this broker's entity,
    /// `default` for the cluster-wide one. Every key and value is checked as the file's are.
    pub fn with_dynamic(
        &self,
        default: &BTreeMap<String, String>,
        broker: &BTreeMap<String, String>,
    ) -> Result<BrokerConfig, ConfigError> {
        let layer = |entries: &BTreeMap<String, String>| {
            entries
                .iter()
                .map(|(key, value)| {
                    let def = check_broker_value(key, value)?;
                    Ok((def.name, value.trim().to_string()))
                })
                .collect::<Result<BTreeMap<_, _>, ConfigError>>()
        };
        let mut next = self.clone();
        next.dynamic_default = layer(default)?;
        next.dynamic_broker = layer(broker)?;
        Ok(next)
    }

    fn long(&self, key: &str) -> i64 {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("broker config {key} has a validated integer value"))
    }

    fn int(&self, key: &str) -> i32 {
        self.long(key) as i32
    }

    fn boolean(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    fn double(&self, key: &str) -> f64 {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::MAX)
    }

    /// The configured listeners (validated when set).
    pub fn listeners(&self) -> Vec<ListenerAddr> {
        parse_listeners(self.get("listeners").unwrap_or("127.0.0.1:9092"))
            .expect("listeners was validated")
    }

    /// The `advertised.listeners` entries (validated when set); empty when unset.
    pub fn advertised_listeners(&self) -> Vec<ListenerAddr> {
        self.get("advertised.listeners")
            .map(|v| parse_listeners(v).expect("advertised.listeners was validated"))
            .unwrap_or_default()
    }

    /// `cairn.http.listen`: the operator's HTTP listener, `None` when disabled.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.get("cairn.http.listen")?.trim().parse().ok()
    }

    /// `cairn.http.ssl.enable`: the HTTP listener serves https.
    pub fn http_tls(&self) -> bool {
        self.boolean("cairn.http.ssl.enable")
    }

    /// `listener.security.protocol.map`, names upper case.
    pub fn protocol_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let raw = self.get("listener.security.protocol.map").unwrap_or("");
        parse_protocol_map(raw).map_err(|reason| ConfigError::InvalidValue {
            key: "listener.security.protocol.map".into(),
            value: raw.to_string(),
            reason,
        })
    }

    /// `sasl.server.max.receive.size`.
    pub fn sasl_server_max_receive_size(&self) -> usize {
        self.int("sasl.server.max.receive.size").max(1) as usize
    }

    /// `connections.max.reauth.ms` (0: SASL sessions do not expire).
    pub fn connections_max_reauth_ms(&self) -> u64 {
        self.long("connections.max.reauth.ms").max(0) as u64
    }

    /// `connection.failed.authentication.delay.ms`.
    pub fn failed_authentication_delay_ms(&self) -> u64 {
        self.long("connection.failed.authentication.delay.ms")
            .max(0) as u64
    }

    pub fn data_dir(&self) -> PathBuf {
        let dirs = if self.is_explicit("log.dirs") || !self.is_explicit("log.dir") {
            self.get("log.dirs")
        } else {
            self.get("log.dir")
        };
        PathBuf::from(
            dirs.unwrap_or("./data")
                .split(',')
                .next()
                .unwrap_or("./data"),
        )
    }

    pub fn node_id(&self) -> i32 {
        if self.is_explicit("node.id") || !self.is_explicit("broker.id") {
            self.int("node.id")
        } else {
            self.int("broker.id")
        }
    }

    /// `cairn.cluster.etcd.endpoints`; empty when this broker is a single node.
    pub fn cluster_etcd_endpoints(&self) -> Vec<String> {
        self.get("cairn.cluster.etcd.endpoints")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    }
    /// `broker.rack`, `None` when unset or empty.
    pub fn broker_rack(&self) -> Option<String> {
        self.get("broker.rack")
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    }
    /// Added to every producer id this broker hands out. In a cluster each broker's ids live in
    /// their own range (`node.id` << 44), so ids from different brokers never collide on a
    /// partition's leader; 0 on a single node.
    pub fn producer_id_base(&self) -> i64 {
        if self.cluster_etcd_endpoints().is_empty() {
            0
        } else {
            i64::from(self.node_id()) << PRODUCER_ID_NODE_SHIFT
        }
    }
    pub fn broker_session_timeout_ms(&self) -> i32 {
        self.int("broker.session.timeout.ms")
    }
    pub fn default_replication_factor(&self) -> i32 {
        self.int("default.replication.factor")
    }
    pub fn min_insync_replicas(&self) -> i32 {
        self.int("min.insync.replicas")
    }
    pub fn unclean_leader_election(&self) -> bool {
        self.boolean("unclean.leader.election.enable")
    }
    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.long("replica.lag.time.max.ms")
    }
    pub fn controlled_shutdown_enable(&self) -> bool {
        self.boolean("controlled.shutdown.enable")
    }
    pub fn controlled_shutdown_timeout_ms(&self) -> i64 {
        self.long("cairn.controlled.shutdown.timeout.ms")
    }
    pub fn auto_leader_rebalance_enable(&self) -> bool {
        self.boolean("auto.leader.rebalance.enable")
    }
    pub fn leader_imbalance_check_interval_seconds(&self) -> u64 {
        self.long("leader.imbalance.check.interval.seconds").max(1) as u64
    }
    pub fn leader_imbalance_per_broker_percentage(&self) -> i64 {
        i64::from(self.int("leader.imbalance.per.broker.percentage"))
    }
    pub fn num_partitions(&self) -> i32 {
        self.int("num.partitions")
    }
    pub fn auto_create_topics(&self) -> bool {
        self.boolean("auto.create.topics.enable")
    }
    pub fn socket_request_max_bytes(&self) -> usize {
        self.int("socket.request.max.bytes") as usize
    }
    /// `quota.window.num`: samples of a client quota's rate.
    pub fn quota_window_num(&self) -> u32 {
        self.int("quota.window.num").max(1) as u32
    }
    /// `quota.window.size.seconds`: the span of each sample.
    pub fn quota_window_size_seconds(&self) -> u64 {
        self.int("quota.window.size.seconds").max(1) as u64
    }
    pub fn max_incremental_fetch_session_cache_slots(&self) -> usize {
        self.int("max.incremental.fetch.session.cache.slots").max(0) as usize
    }
    pub fn max_connections(&self) -> usize {
        self.int("max.connections") as usize
    }
    pub fn connections_max_idle_ms(&self) -> i64 {
        self.long("connections.max.idle.ms")
    }
    /// The broker-wide budget of request bytes; `None` when unbounded (-1).
    pub fn queued_max_request_bytes(&self) -> Option<usize> {
        usize::try_from(self.long("queued.max.request.bytes")).ok()
    }
    pub fn retention_check_interval_ms(&self) -> i64 {
        self.long("log.retention.check.interval.ms")
    }
    pub fn cleaner_enable(&self) -> bool {
        self.boolean("log.cleaner.enable")
    }
    pub fn cleaner_dedupe_buffer_size(&self) -> i64 {
        self.long("log.cleaner.dedupe.buffer.size")
    }
    pub fn cleaner_io_max_bytes_per_second(&self) -> f64 {
        self.double("log.cleaner.io.max.bytes.per.second")
    }
    pub fn cleaner_backoff_ms(&self) -> i64 {
        self.long("log.cleaner.backoff.ms")
    }
    pub fn group_initial_rebalance_delay_ms(&self) -> i64 {
        self.long("group.initial.rebalance.delay.ms")
    }
    pub fn group_min_session_timeout_ms(&self) -> i64 {
        self.long("group.min.session.timeout.ms")
    }
    pub fn group_max_session_timeout_ms(&self) -> i64 {
        self.long("group.max.session.timeout.ms")
    }
    pub fn group_max_size(&self) -> i64 {
        self.long("group.max.size")
    }
    /// Whether the KIP-848 consumer group protocol is served
    /// (`group.coordinator.rebalance.protocols` lists `consumer`).
    pub fn consumer_group_protocol_enabled(&self) -> bool {
        self.get("group.coordinator.rebalance.protocols")
            .is_some_and(|v| v.split(',').any(|w| w.trim() == "consumer"))
    }
    pub fn group_consumer_session_timeout_ms(&self) -> i32 {
        self.int("group.consumer.session.timeout.ms")
    }
    pub fn group_consumer_heartbeat_interval_ms(&self) -> i32 {
        self.int("group.consumer.heartbeat.interval.ms")
    }
    /// The bounds a group's `consumer.session.timeout.ms` must lie within (inclusive).
    pub fn group_consumer_session_timeout_bounds(&self) -> (i32, i32) {
        (
            self.int("group.consumer.min.session.timeout.ms"),
            self.int("group.consumer.max.session.timeout.ms"),
        )
    }
    /// The bounds a group's `consumer.heartbeat.interval.ms` must lie within (inclusive).
    pub fn group_consumer_heartbeat_interval_bounds(&self) -> (i32, i32) {
        (
            self.int("group.consumer.min.heartbeat.interval.ms"),
            self.int("group.consumer.max.heartbeat.interval.ms"),
        )
    }
    pub fn group_consumer_migration_policy(&self) -> crate::group::consumer::MigrationPolicy {
        let value = self
            .get("group.consumer.migration.policy")
            .unwrap_or_default();
        crate::group::consumer::MigrationPolicy::parse(value)
            .unwrap_or(crate::group::consumer::MigrationPolicy::Bidirectional)
    }
    pub fn group_consumer_max_size(&self) -> i32 {
        self.int("group.consumer.max.size")
    }
    /// Kafka's checks of the `group.consumer.*` timeouts against each other (the broker does not
    /// start when they fail): each default within its min and max, and the heartbeat interval
    /// below the session timeout.
    pub fn check_group_consumer_timeouts(&self) -> Result<(), ConfigError> {
        const HB: &str = "group.consumer.heartbeat.interval.ms";
        const MIN_HB: &str = "group.consumer.min.heartbeat.interval.ms";
        const MAX_HB: &str = "group.consumer.max.heartbeat.interval.ms";
        const SESSION: &str = "group.consumer.session.timeout.ms";
        const MIN_SESSION: &str = "group.consumer.min.session.timeout.ms";
        const MAX_SESSION: &str = "group.consumer.max.session.timeout.ms";
        let checks: [(&str, &str, bool, &str); 7] = [
            (
                MAX_HB,
                MIN_HB,
                self.int(MAX_HB) >= self.int(MIN_HB),
                "greater than or equal to",
            ),
            (
                HB,
                MIN_HB,
                self.int(HB) >= self.int(MIN_HB),
                "greater than or equal to",
            ),
            (
                HB,
                MAX_HB,
                self.int(HB) <= self.int(MAX_HB),
                "less than or equal to",
            ),
            (
                MAX_SESSION,
                MIN_SESSION,
                self.int(MAX_SESSION) >= self.int(MIN_SESSION),
                "greater than or equal to",
            ),
            (
                SESSION,
                MIN_SESSION,
                self.int(SESSION) >= self.int(MIN_SESSION),
                "greater than or equal to",
            ),
            (
                SESSION,
                MAX_SESSION,
                self.int(SESSION) <= self.int(MAX_SESSION),
                "less than or equal to",
            ),
            (HB, SESSION, self.int(HB) < self.int(SESSION), "less than"),
        ];
        for (key, other, ok, relation) in checks {
            if !ok {
                return Err(ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: self.get(key).unwrap_or_default().to_string(),
                    reason: format!("{key} must be {relation} {other} ({})", self.int(other)),
                });
            }
        }
        Ok(())
    }
    pub fn offsets_retention_ms(&self) -> i64 {
        self.long("offsets.retention.minutes") * 60_000
    }
    pub fn offsets_retention_check_interval_ms(&self) -> i64 {
        self.long("offsets.retention.check.interval.ms")
    }
    pub fn offsets_topic_num_partitions(&self) -> i32 {
        self.int("offsets.topic.num.partitions")
    }
    pub fn offsets_topic_replication_factor(&self) -> i32 {
        self.int("offsets.topic.replication.factor")
    }
    pub fn transaction_state_replication_factor(&self) -> i32 {
        self.int("transaction.state.log.replication.factor")
    }
    pub fn offsets_topic_segment_bytes(&self) -> i32 {
        self.int("offsets.topic.segment.bytes")
    }
    pub fn producer_id_expiration_ms(&self) -> i64 {
        self.long("producer.id.expiration.ms")
    }
    pub fn transaction_max_timeout_ms(&self) -> i32 {
        self.int("transaction.max.timeout.ms")
    }
    pub fn transactional_id_expiration_ms(&self) -> i64 {
        self.long("transactional.id.expiration.ms")
    }
    pub fn transaction_abort_interval_ms(&self) -> i64 {
        self.long("transaction.abort.timed.out.transaction.cleanup.interval.ms")
    }
    pub fn transaction_state_num_partitions(&self) -> i32 {
        self.int("transaction.state.log.num.partitions")
    }
    pub fn transaction_state_segment_bytes(&self) -> i32 {
        self.int("transaction.state.log.segment.bytes")
    }
    /// `remote.log.storage.system.enable`.
    pub fn remote_storage_enabled(&self) -> bool {
        self.boolean("remote.log.storage.system.enable")
    }
    /// `remote.log.manager.copy.max.bytes.per.second`; `None` when unlimited (the default).
    pub fn remote_copy_bytes_per_second(&self) -> Option<u64> {
        let v = self.long("remote.log.manager.copy.max.bytes.per.second");
        (v > 0 && v < i64::MAX).then_some(v as u64)
    }
    /// `cairn.remote.cache.bytes`.
    pub fn remote_cache_bytes(&self) -> i64 {
        self.long("cairn.remote.cache.bytes")
    }
    /// `cairn.remote.scrub.interval.ms`.
    pub fn remote_scrub_interval_ms(&self) -> i64 {
        self.long("cairn.remote.scrub.interval.ms")
    }
    /// `cairn.remote.lease.timeout.ms`.
    pub fn remote_lease_timeout_ms(&self) -> i64 {
        self.long("cairn.remote.lease.timeout.ms")
    }
    /// `cairn.remote.upload.interval.ms`.
    pub fn remote_upload_interval_ms(&self) -> i64 {
        self.long("cairn.remote.upload.interval.ms")
    }
    /// `cairn.key.index.memory.bytes`.
    pub fn key_index_memory_bytes(&self) -> usize {
        self.long("cairn.key.index.memory.bytes").max(1024) as usize
    }
    /// `cairn.key.index.remote.cache.bytes`.
    pub fn key_index_remote_cache_bytes(&self) -> u64 {
        self.long("cairn.key.index.remote.cache.bytes").max(0) as u64
    }
    /// `cairn.log.open.files.max` (0: derived from the open-files limit).
    pub fn log_open_files_max(&self) -> usize {
        self.int("cairn.log.open.files.max").max(0) as usize
    }
    /// `cairn.log.verify.on.startup`: background, before-serving or off.
    pub fn verify_on_startup(&self) -> &str {
        self.get("cairn.log.verify.on.startup")
            .unwrap_or("background")
    }

    /// The broker-level default of a topic key: (value, the broker key it came from, its
    /// source). `None` for a null default (e.g. `flush.ms` when `log.flush.interval.ms` is unset).
    pub fn topic_default(&self, topic_key: &str) -> Option<(String, &'static str, ConfigSource)> {
        let tdef = topic_def(topic_key)?;
        if tdef.broker_synonyms.is_empty() {
            return tdef
                .def
                .default
                .map(|d| (d.to_string(), tdef.def.name, ConfigSource::Default));
        }
        // The most specific explicitly set synonym wins; then the first with a default.
        let pick = tdef
            .broker_synonyms
            .iter()
            .find(|k| self.is_explicit(k))
            .or_else(|| tdef.broker_synonyms.iter().find(|k| self.get(k).is_some()))?;
        let raw = self.get(pick)?.trim().to_string();
        let value = match *pick {
            "log.retention.minutes" => scale(&raw, 60_000),
            "log.retention.hours" | "log.roll.hours" => scale(&raw, 3_600_000),
            _ => raw,
        };
        Some((value, pick, self.source(pick)))
    }

    /// Every broker key with its value and source, for DescribeConfigs on the broker.
    pub fn describe(&self) -> Vec<(&'static ConfigDef, Option<String>, ConfigSource)> {
        BROKER_CONFIGS
            .iter()
            .map(|d| {
                let source = self.source(d.name);
                // Kafka never shows a password's value.
                let value = if d.ty == T::Password {
                    None
                } else {
                    self.get(d.name).map(str::to_string)
                };
                (d, value, source)
            })
            .collect()
    }
}

fn scale(raw: &str, factor: i64) -> String {
    match raw.parse::<i64>() {
        Ok(n) if n < 0 => "-1".to_string(),
        Ok(n) => n.saturating_mul(factor).to_string(),
        Err(_) => raw.to_string(),
    }
}

/// Validates a topic's explicit overrides (CreateTopics, AlterConfigs).
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), ConfigError> {
    let tdef = topic_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    check_value(&tdef.def, value)
}

/// Validates a topic's overrides as a whole against this broker: each key, then the rules
/// between keys (a topic cannot enable remote storage on a broker without a tier).
pub fn validate_topic_overrides(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in overrides {
        validate_topic_config(key, value)?;
    }
    let Some(v) = overrides
        .get("remote.storage.enable")
        .filter(|v| is_true(v))
    else {
        return Ok(());
    };
    if !broker.remote_storage_enabled() {
        return Err(ConfigError::InvalidValue {
            key: "remote.storage.enable".into(),
            value: v.clone(),
            reason:
                "this broker has no object-storage tier (remote.log.storage.system.enable=false)"
                    .into(),
        });
    }
    // Local retention keeps a part of what the whole log keeps (-2: the same).
    let value = |key: &str| -> i64 {
        overrides
            .get(key)
            .cloned()
            .or_else(|| broker.topic_default(key).map(|d| d.0))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-2)
    };
    for (local_key, whole_key) in [
        ("local.retention.ms", "retention.ms"),
        ("local.retention.bytes", "retention.bytes"),
    ] {
        let (local, whole) = (value(local_key), value(whole_key));
        if local == -2 || whole == -1 {
            continue;
        }
        if local == -1 || local > whole {
            return Err(ConfigError::InvalidValue {
                key: local_key.into(),
                value: local.to_string(),
                reason: format!("must be at most {whole_key} ({whole}) on a tiered topic"),
            });
        }
    }
    Ok(())
}

fn is_true(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true")
}

/// Where the object-storage tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteUrl {
    /// `s3://BUCKET/PREFIX` (the prefix may be empty).
    S3 { bucket: String, prefix: String },
    /// `file:///ABSOLUTE/DIR`.
    File { dir: PathBuf },
}

impl RemoteUrl {
    pub fn parse(url: &str) -> Result<RemoteUrl, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("expected s3://BUCKET/PREFIX".into());
            }
            Ok(RemoteUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err("expected file:///ABSOLUTE/DIR (an absolute path)".into());
            }
            Ok(RemoteUrl::File {
                dir: PathBuf::from(dir),
            })
        } else {
            Err("expected s3://BUCKET/PREFIX or file:///ABSOLUTE/DIR".into())
        }
    }
}

/// One described topic config: value, source, and the synonyms in Kafka's order.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    pub def: &'static ConfigDef,
    pub value: Option<String>,
    pub source: ConfigSource,
    /// (name, value, source), most specific first.
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// Describes every topic key for a topic with these overrides.
pub fn describe_topic(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|t| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(t.def.name) {
                synonyms.push((
                    t.def.name.to_string(),
                    Some(v.clone()),
                    ConfigSource::DynamicTopic,
                ));
            }
            // Kafka's order: by source (dynamic broker, dynamic default, static, default), and
            // within a source the most specific synonym first.
            let mut broker_layers: Vec<(String, Option<String>, ConfigSource)> = t
                .broker_synonyms
                .iter()
                .flat_map(|syn| {
                    broker
                        .layers(syn)
                        .into_iter()
                        .map(|(value, source)| (syn.to_string(), value, source))
                })
                .collect();
            broker_layers.sort_by_key(|(_, _, source)| source.precedence());
            synonyms.extend(broker_layers);
            if let (true, Some(d)) = (t.broker_synonyms.is_empty(), t.def.default) {
                synonyms.push((
                    t.def.name.to_string(),
                    Some(d.to_string()),
                    ConfigSource::Default,
                ));
            }
            let (value, source) = match overrides.get(t.def.name) {
                Some(v) => (Some(v.clone()), ConfigSource::DynamicTopic),
                None => match broker.topic_default(t.def.name) {
                    Some((v, _, source)) => (Some(v), source),
                    None => (None, ConfigSource::Default),
                },
            };
            DescribedConfig {
                def: &t.def,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

/// The typed, effective configuration of one topic's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub cleanup_policy: CleanupPolicy,
    /// -1 = forever.
    pub retention_ms: i64,
    /// -1 = unlimited.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub index_interval_bytes: u64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    /// `compression.type` as a batch codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd); `None`
    /// for `producer` (batches stored as sent).
    pub compression: Option<i16>,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    /// fsync after this many records; 1 = before every acknowledgement (Cairn's default).
    pub flush_messages: i64,
    /// fsync at least this often; `None` = no time-based flush.
    pub flush_ms: Option<i64>,
    pub file_delete_delay_ms: i64,
    /// `remote.storage.enable`, and the broker has a tier: sealed segments go to the tier.
    pub remote_storage_enable: bool,
    /// `local.retention.ms` with -2 resolved to `retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes` with -2 resolved to `retention.bytes`.
    pub local_retention_bytes: i64,
    pub remote_log_copy_disable: bool,
    pub remote_log_delete_on_disable: bool,
    /// `cairn.key.index.enable`: index keys though the topic is not compacted.
    pub key_index_enable: bool,
}

impl LogConfig {
    /// True when acknowledgements wait for fsync (flush.messages = 1).
    pub fn fsync_before_ack(&self) -> bool {
        self.flush_messages <= 1
    }

    /// Broker defaults plus a topic's overrides. Overrides must have been validated.
    pub fn resolve(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
        let value = |key: &str| -> Option<String> {
            overrides
                .get(key)
                .cloned()
                .or_else(|| broker.topic_default(key).map(|(v, _, _)| v))
        };
        let long = |key: &str| -> i64 {
            value(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("topic config {key} has a validated integer value"))
        };
        let double = |key: &str| -> f64 {
            value(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.5)
        };
        LogConfig {
            cleanup_policy: CleanupPolicy::parse(&value("cleanup.policy").unwrap_or_default())
                .unwrap_or(CleanupPolicy {
                    delete: true,
                    compact: false,
                }),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            segment_bytes: long("segment.bytes").max(14) as u64,
            segment_ms: long("segment.ms"),
            segment_index_bytes: long("segment.index.bytes").max(8) as u64,
            index_interval_bytes: long("index.interval.bytes").max(0) as u64,
            min_cleanable_dirty_ratio: double("min.cleanable.dirty.ratio"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            delete_retention_ms: long("delete.retention.ms"),
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            compression: match value("compression.type").as_deref() {
                Some("uncompressed") => Some(0),
                Some("gzip") => Some(1),
                Some("snappy") => Some(2),
                Some("lz4") => Some(3),
                Some("zstd") => Some(4),
                _ => None,
            },
            message_timestamp_type: match value("message.timestamp.type").as_deref() {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            message_timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            message_timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            flush_messages: long("flush.messages"),
            flush_ms: value("flush.ms").and_then(|v| v.trim().parse().ok()),
            file_delete_delay_ms: long("file.delete.delay.ms"),
            remote_storage_enable: broker.remote_storage_enabled()
                && value("remote.storage.enable").is_some_and(|v| is_true(&v)),
            local_retention_ms: match long("local.retention.ms") {
                -2 => long("retention.ms"),
                n => n,
            },
            local_retention_bytes: match long("local.retention.bytes") {
                -2 => long("retention.bytes"),
                n => n,
            },
            remote_log_copy_disable: value("remote.log.copy.disable").is_some_and(|v| is_true(&v)),
            remote_log_delete_on_disable: value("remote.log.delete.on.disable")
                .is_some_and(|v| is_true(&v)),
            key_index_enable: value("cairn.key.index.enable").is_some_and(|v| is_true(&v)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiered_topic_configs_are_checked_against_the_broker_and_each_other() {
        let ov = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut broker = BrokerConfig::default();
        let tiered = ov(&[("remote.storage.enable", "true")]);
        let e = validate_topic_overrides(&broker, &tiered).unwrap_err();
        assert!(e.to_string().contains("remote.storage.enable"), "{e}");
        broker
            .set("remote.log.storage.system.enable", "true")
            .unwrap();
        validate_topic_overrides(&broker, &tiered).unwrap();
        let too_long = ov(&[
            ("remote.storage.enable", "true"),
            ("retention.ms", "1000"),
            ("local.retention.ms", "2000"),
        ]);
        let e = validate_topic_overrides(&broker, &too_long).unwrap_err();
        assert!(e.to_string().contains("local.retention.ms"), "{e}");
        let fine = ov(&[
            ("remote.storage.enable", "true"),
            ("retention.ms", "-1"),
            ("local.retention.bytes", "1"),
        ]);
        validate_topic_overrides(&broker, &fine).unwrap();
    }

    use super::*;

    #[test]
    fn defaults_resolve_like_kafka() {
        let broker = BrokerConfig::default();
        let cfg = LogConfig::resolve(&broker, &BTreeMap::new());
        assert_eq!(cfg.retention_ms, 604_800_000);
        assert_eq!(cfg.retention_bytes, -1);
        assert_eq!(cfg.segment_bytes, 1_073_741_824);
        assert_eq!(cfg.segment_ms, 604_800_000);
        assert_eq!(cfg.max_message_bytes, 1_048_588);
        assert_eq!(cfg.delete_retention_ms, 86_400_000);
        assert!(cfg.cleanup_policy.delete && !cfg.cleanup_policy.compact);
        assert!(cfg.fsync_before_ack());
        assert_eq!(cfg.flush_ms, None);
    }

    #[test]
    fn broker_synonyms_and_overrides() {
        let mut broker = BrokerConfig::default();
        broker.set("log.retention.minutes", "2").unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let cfg = LogConfig::resolve(&broker, &overrides);
        assert_eq!(cfg.retention_ms, 120_000);
        assert!(cfg.cleanup_policy.compact && cfg.cleanup_policy.delete);
        let described = describe_topic(&broker, &overrides);
        let retention = described
            .iter()
            .find(|d| d.def.name == "retention.ms")
            .unwrap();
        assert_eq!(retention.value.as_deref(), Some("120000"));
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        let policy = described
            .iter()
            .find(|d| d.def.name == "cleanup.policy")
            .unwrap();
        assert_eq!(policy.source, ConfigSource::DynamicTopic);
        assert_eq!(policy.synonyms[0].2, ConfigSource::DynamicTopic);
    }

    #[test]
    fn the_http_listener_has_its_own_tls_keys() {
        let mut broker = BrokerConfig::default();
        assert!(!broker.http_tls());
        broker.set("cairn.http.ssl.enable", "true").unwrap();
        assert!(broker.http_tls());
        broker.set("ssl.keystore.location", "/kafka.pem").unwrap();
        broker.set("ssl.client.auth", "requested").unwrap();
        broker
            .set("cairn.http.ssl.keystore.location", "/http.pem")
            .unwrap();
        // Its own key wins; the others fall back to the broker's, as a listener's do.
        assert_eq!(
            broker.listener_value(HTTP_TLS_NAME, "ssl.keystore.location"),
            Some("/http.pem")
        );
        assert_eq!(
            broker.listener_value(HTTP_TLS_NAME, "ssl.client.auth"),
            Some("requested")
        );
        assert_eq!(
            broker.listener_value("SASL_SSL", "ssl.keystore.location"),
            Some("/kafka.pem")
        );
        assert!(broker.set("cairn.http.ssl.client.auth", "maybe").is_err());
        for unknown in [
            "cairn.http.ssl.bogus",
            "cairn.http.sasl.enabled.mechanisms",
            "listener.name.cairn.http.ssl.keystore.location",
        ] {
            assert!(matches!(
                broker.set(unknown, "x"),
                Err(ConfigError::UnknownKey(_))
            ));
        }
    }

    #[test]
    fn validation_rejects_bad_values_and_keys() {
        let mut broker = BrokerConfig::default();
        assert!(matches!(
            broker.set("no.such.key", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(broker.set("num.partitions", "0").is_err());
        assert!(broker.set("num.partitions", "abc").is_err());
        assert_eq!(broker.remote_lease_timeout_ms(), 30_000);
        assert!(broker.set("cairn.remote.lease.timeout.ms", "999").is_err());
        assert!(broker.set("cairn.remote.lease.timeout.ms", "1000").is_ok());
        assert_eq!(broker.remote_lease_timeout_ms(), 1000);
        assert!(broker.set("listeners", "x:1,y:2").is_err());
        assert!(broker.set("listeners", "A://x:1,a://y:2").is_err());
        assert!(broker
            .set("listeners", "PLAINTEXT://127.0.0.1:9093")
            .is_ok());
        assert_eq!(broker.listeners()[0].port, 9093);
        assert!(broker
            .set("listeners", "PLAINTEXT://:9092,sasl_ssl://127.0.0.1:9093")
            .is_ok());
        let listeners = broker.listeners();
        assert_eq!(listeners[0].host, "0.0.0.0");
        assert_eq!(listeners[1].name, "SASL_SSL");
        assert!(broker
            .set("listener.name.sasl_ssl.ssl.client.auth", "maybe")
            .is_err());
        assert!(broker
            .set("listener.name.sasl_ssl.ssl.client.auth", "required")
            .is_ok());
        assert!(broker
            .set("listener.name.sasl_ssl.num.partitions", "2")
            .is_err());
        assert!(broker
            .set(
                "listener.name.SASL_SSL.plain.sasl.jaas.config",
                "x required;"
            )
            .is_ok());
        assert_eq!(
            broker.listener_value("SASL_SSL", "ssl.client.auth"),
            Some("required")
        );
        assert_eq!(
            broker.listener_value("OTHER", "ssl.client.auth"),
            Some("none")
        );
        assert!(broker.set("ssl.key.password", "secret").is_ok());
        let described = broker.describe();
        let (_, value, _) = described
            .iter()
            .find(|(d, ..)| d.name == "ssl.key.password")
            .unwrap();
        assert_eq!(value, &None);
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "squash").is_err());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("bogus", "1").is_err());
        assert!(broker.set("queued.max.request.bytes", "0").is_err());
        assert!(broker.set("queued.max.request.bytes", "-2").is_err());
        assert!(broker.set("queued.max.request.bytes", "-1").is_ok());
        assert_eq!(broker.queued_max_request_bytes(), None);
        assert!(broker.set("queued.max.request.bytes", "1048576").is_ok());
        assert_eq!(broker.queued_max_request_bytes(), Some(1 << 20));
        assert_eq!(
            BrokerConfig::default().queued_max_request_bytes(),
            Some(256 << 20)
        );
    }

    #[test]
    fn group_consumer_timeouts_are_checked_against_each_other() {
        let with = |pairs: &[(&str, &str)]| {
            let mut c = BrokerConfig::default();
            for (k, v) in pairs {
                c.set(k, v).unwrap();
            }
            c.check_group_consumer_timeouts()
        };
        assert!(with(&[]).is_ok());
        let e = with(&[("group.consumer.session.timeout.ms", "6000")]).unwrap_err();
        assert!(
            e.to_string().contains(
                "group.consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
            ),
            "{e}"
        );
        assert!(with(&[("group.consumer.heartbeat.interval.ms", "20000")]).is_err());
        assert!(with(&[("group.consumer.max.session.timeout.ms", "40000")]).is_err());
        let low = [
            ("group.consumer.min.session.timeout.ms", "1000"),
            ("group.consumer.session.timeout.ms", "6000"),
            ("group.consumer.min.heartbeat.interval.ms", "500"),
            ("group.consumer.heartbeat.interval.ms", "500"),
        ];
        assert!(with(&low).is_ok());
        let mut inverted = low.to_vec();
        inverted.push(("group.consumer.heartbeat.interval.ms", "6000"));
        inverted.push(("group.consumer.max.heartbeat.interval.ms", "6000"));
        let e = with(&inverted).unwrap_err();
        assert!(
            e.to_string()
                .contains("must be less than group.consumer.session.timeout.ms"),
            "{e}"
        );
    }
}
