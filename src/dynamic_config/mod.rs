//! Dynamic broker configs: what `kafka-configs --entity-type brokers --alter` changes while the
//! broker runs, for this broker (`--entity-name <id>`) or cluster-wide (`--entity-default`).
//!
//! Owns which keys may change at runtime (Kafka's dynamic keys that Cairn applies live), their
//! durable store (a small file in the data directory, rewritten atomically on each change, read
//! at start-up so a change survives a restart) and the [`LiveConfig`] snapshot the rest of the
//! broker reads. Precedence is Kafka's: this broker's dynamic value, then the cluster-wide
//! dynamic default, then the static config (file and `--set`), then the default. Knows nothing
//! of Kafka requests or error codes: `broker/broker_configs.rs` translates, and tells the log
//! manager to re-resolve its topics' configs.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{BrokerConfig, ConfigError};
use crate::log::checkpoint::write_atomic;
use crate::resource_configs::{escape, unescape};

mod live;

pub use live::LiveConfig;

/// The store's file in the data directory.
pub const DYNAMIC_BROKER_CONFIGS_FILE: &str = "cairn-dynamic-broker-configs";

/// One entity's dynamic configs: key → value.
pub type Overrides = BTreeMap<String, String>;

/// Whose dynamic configs: the cluster-wide default (resource name "") or this broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    ClusterDefault,
    Broker,
}

impl Entity {
    fn file_name(self) -> &'static str {
        match self {
            Entity::ClusterDefault => "default",
            Entity::Broker => "broker",
        }
    }
}

/// Broker keys Kafka lets `kafka-configs` change at runtime and Cairn applies at once: the
/// topic defaults (the first broker synonym of each topic config, as in Kafka: `log.retention.ms`
/// but not `log.retention.hours`), the connection limit and the cleaner's threads, I/O rate,
/// memory and backoff. All may be set per broker and cluster-wide.
const LIVE: &[&str] = &[
    "log.cleanup.policy",
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.size.max.bytes",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.segment.delete.delay.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.delete.retention.ms",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "log.local.retention.ms",
    "log.local.retention.bytes",
    "message.max.bytes",
    "compression.type",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "max.connections",
    "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
];

/// Keys Kafka updates dynamically that Cairn reads only at start-up.
const RESTART_ONLY: &[&str] = &[
    "producer.id.expiration.ms",
    "remote.log.manager.copy.max.bytes.per.second",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
];

/// Whether a broker key may be altered dynamically in Cairn.
pub fn is_dynamic(key: &str) -> bool {
    LIVE.contains(&key)
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum DynamicConfigError {
    #[error("Unknown broker config name: {0}")]
    UnknownName(String),
    /// Kafka's words for keys it cannot change at runtime either.
    #[error("Cannot update these configs dynamically: Set({})", .0.join(", "))]
    NotDynamic(Vec<String>),
    /// Keys Kafka changes at runtime but Cairn reads only at start-up.
    #[error(
        "Cairn cannot update these configs without a restart: Set({}); set them in the config file",
        .0.join(", ")
    )]
    RestartOnly(Vec<String>),
    #[error(transparent)]
    InvalidValue(ConfigError),
    #[error("cannot store dynamic broker configs in {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("dynamic broker configs file {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Entries {
    cluster_default: Overrides,
    broker: Overrides,
}

impl Entries {
    fn get(&self, entity: Entity) -> &Overrides {
        match entity {
            Entity::ClusterDefault => &self.cluster_default,
            Entity::Broker => &self.broker,
        }
    }

    fn get_mut(&mut self, entity: Entity) -> &mut Overrides {
        match entity {
            Entity::ClusterDefault => &mut self.cluster_default,
            Entity::Broker => &mut self.broker,
        }
    }
}

/// The durable dynamic configs and the live snapshot built from them.
#[derive(Debug)]
pub struct DynamicConfigs {
    path: PathBuf,
    static_config: BrokerConfig,
    entries: Mutex<Entries>,
    live: LiveConfig,
}

impl DynamicConfigs {
    /// Opens the store in `data_dir` and builds the first snapshot over `static_config`.
    pub fn open(
        static_config: BrokerConfig,
        data_dir: &Path,
    ) -> Result<DynamicConfigs, DynamicConfigError> {
        let path = data_dir.join(DYNAMIC_BROKER_CONFIGS_FILE);
        let corrupt = |reason: String| DynamicConfigError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => decode(&text).map_err(corrupt)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Entries::default(),
            Err(source) => {
                return Err(DynamicConfigError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let config = static_config
            .with_dynamic(&entries.cluster_default, &entries.broker)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(DynamicConfigs {
            path,
            static_config,
            entries: Mutex::new(entries),
            live: LiveConfig::new(config),
        })
    }

    /// The config in force now (static plus dynamic).
    pub fn current(&self) -> Arc<BrokerConfig> {
        self.live.current()
    }

    /// The live handle, for those who follow changes.
    pub fn live(&self) -> &LiveConfig {
        &self.live
    }

    /// One entity's dynamic configs.
    pub fn overrides(&self, entity: Entity) -> Overrides {
        self.lock().get(entity).clone()
    }

    /// Replaces one entity's dynamic configs after checking them; unless `validate_only`, stores
    /// them durably and publishes the new snapshot, which it returns.
    pub fn set(
        &self,
        entity: Entity,
        overrides: Overrides,
        validate_only: bool,
    ) -> Result<Arc<BrokerConfig>, DynamicConfigError> {
        check_keys(&overrides)?;
        let mut entries = self.lock();
        let mut next = entries.clone();
        *next.get_mut(entity) = overrides;
        let config = Arc::new(
            self.static_config
                .with_dynamic(&next.cluster_default, &next.broker)
                .map_err(DynamicConfigError::InvalidValue)?,
        );
        if validate_only {
            return Ok(config);
        }
        write_atomic(&self.path, encode(&next).as_bytes()).map_err(|source| {
            DynamicConfigError::Io {
                path: self.path.display().to_string(),
                source,
            }
        })?;
        *entries = next;
        self.live.publish(config.clone());
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refuses unknown keys, then (listing every offender, as Kafka does) keys that cannot change
/// at runtime.
fn check_keys(overrides: &Overrides) -> Result<(), DynamicConfigError> {
    let known = |key: &str| {
        key.starts_with("listener.name.")
            || crate::config::BROKER_CONFIGS.iter().any(|d| d.name == key)
    };
    if let Some(key) = overrides.keys().find(|k| !known(k)) {
        return Err(DynamicConfigError::UnknownName(key.clone()));
    }
    let restart_only = |key: &str| {
        RESTART_ONLY.contains(&key) || key.starts_with("ssl.") || key.starts_with("listener.name.")
    };
    let not_dynamic: Vec<String> = overrides
        .keys()
        .filter(|k| !is_dynamic(k) && !restart_only(k))
        .cloned()
        .collect();
    if !not_dynamic.is_empty() {
        return Err(DynamicConfigError::NotDynamic(not_dynamic));
    }
    let later: Vec<String> = overrides
        .keys()
        .filter(|k| restart_only(k))
        .cloned()
        .collect();
    if !later.is_empty() {
        return Err(DynamicConfigError::RestartOnly(later));
    }
    Ok(())
}

const HEADER: &str = "cairn dynamic broker configs v1";

/// The file: a header line, then one `entity<TAB>key<TAB>value` line per config, fields
/// percent-escaped as in the resource-configs file.
fn encode(entries: &Entries) -> String {
    let mut out = format!("{HEADER}\n");
    for entity in [Entity::ClusterDefault, Entity::Broker] {
        for (key, value) in entries.get(entity) {
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                entity.file_name(),
                escape(key),
                escape(value)
            ));
        }
    }
    out
}

fn decode(text: &str) -> Result<Entries, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not '{HEADER}'"));
    }
    let mut entries = Entries::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [entity, key, value] = fields[..] else {
            return Err(format!("bad line {line:?}"));
        };
        let entity = [Entity::ClusterDefault, Entity::Broker]
            .into_iter()
            .find(|e| e.file_name() == entity)
            .ok_or_else(|| format!("unknown entity in {line:?}"))?;
        entries
            .get_mut(entity)
            .insert(unescape(key)?, unescape(value)?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_is_broker_then_cluster_default_then_static_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut static_config = BrokerConfig::default();
        static_config.set("log.retention.bytes", "1000").unwrap();
        let store = DynamicConfigs::open(static_config, dir.path()).unwrap();
        let c = store.current();
        assert_eq!(c.source("log.retention.bytes"), ConfigSource::StaticBroker);
        assert_eq!(c.source("log.segment.bytes"), ConfigSource::Default);

        store
            .set(
                Entity::ClusterDefault,
                overrides(&[("log.retention.bytes", "2000"), ("max.connections", "50")]),
                false,
            )
            .unwrap();
        let c = store
            .set(
                Entity::Broker,
                overrides(&[("log.retention.bytes", "3000")]),
                false,
            )
            .unwrap();
        assert_eq!(c.get("log.retention.bytes"), Some("3000"));
        assert_eq!(c.source("log.retention.bytes"), ConfigSource::DynamicBroker);
        assert_eq!(c.max_connections(), 50);
        assert_eq!(
            c.source("max.connections"),
            ConfigSource::DynamicDefaultBroker
        );
        let layers: Vec<ConfigSource> = c
            .layers("log.retention.bytes")
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            layers,
            [
                ConfigSource::DynamicBroker,
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );
        // The topic default follows, with its source.
        assert_eq!(
            c.topic_default("retention.bytes"),
            Some((
                "3000".to_string(),
                "log.retention.bytes",
                ConfigSource::DynamicBroker
            ))
        );
        assert_eq!(*store.live().current(), *c);

        // Deleting this broker's value falls back to the cluster-wide one.
        let c = store.set(Entity::Broker, Overrides::new(), false).unwrap();
        assert_eq!(c.get("log.retention.bytes"), Some("2000"));
    }

    #[test]
    fn changes_survive_reopening_and_validate_only_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DynamicConfigs::open(BrokerConfig::default(), dir.path()).unwrap();
        store
            .set(
                Entity::Broker,
                overrides(&[("log.retention.ms", "60000")]),
                false,
            )
            .unwrap();
        let checked = store
            .set(
                Entity::ClusterDefault,
                overrides(&[("max.connections", "5")]),
                true,
            )
            .unwrap();
        assert_eq!(checked.max_connections(), 5);
        assert_eq!(store.current().max_connections(), 10000);
        let again = DynamicConfigs::open(BrokerConfig::default(), dir.path()).unwrap();
        assert_eq!(again.current().get("log.retention.ms"), Some("60000"));
        assert!(again.overrides(Entity::ClusterDefault).is_empty());
        assert_eq!(
            again.overrides(Entity::Broker),
            overrides(&[("log.retention.ms", "60000")])
        );
        assert!(decode("something else\n").is_err());
        assert!(decode(&format!("{HEADER}\nnobody\ta\tb\n")).is_err());
    }

    #[test]
    fn refusals_name_the_offending_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = DynamicConfigs::open(BrokerConfig::default(), dir.path()).unwrap();
        let refused = |pairs: &[(&str, &str)]| {
            store
                .set(Entity::Broker, overrides(pairs), false)
                .unwrap_err()
        };
        assert!(matches!(
            refused(&[("no.such.key", "1")]),
            DynamicConfigError::UnknownName(k) if k == "no.such.key"
        ));
        // Kafka refuses log.retention.hours dynamically: only log.retention.ms is.
        assert!(matches!(
            refused(&[("log.dirs", "/x"), ("log.retention.hours", "1")]),
            DynamicConfigError::NotDynamic(k) if k == ["log.dirs", "log.retention.hours"]
        ));
        assert!(matches!(
            refused(&[("producer.id.expiration.ms", "1000")]),
            DynamicConfigError::RestartOnly(_)
        ));
        assert!(matches!(
            refused(&[("max.connections", "0")]),
            DynamicConfigError::InvalidValue(_)
        ));
        assert!(matches!(
            refused(&[("log.cleanup.policy", "shred")]),
            DynamicConfigError::InvalidValue(_)
        ));
        assert!(store.overrides(Entity::Broker).is_empty());
        assert!(!dir.path().join(DYNAMIC_BROKER_CONFIGS_FILE).exists());
    }
}
