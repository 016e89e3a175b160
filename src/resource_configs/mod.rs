//! Configs of the resources other than topics and brokers, which Kafka keeps in its metadata log:
//! groups' own configs (KIP-848, [`group`]) and client-metrics subscriptions (KIP-714,
//! [`client_metrics`]).
//!
//! Owns their keys, validation, description, and one durable store: a small file in the data
//! directory, rewritten atomically on each change. Any resource name may carry configs, whether
//! or not a group of that name exists (as in Kafka). Knows nothing of Kafka requests or error
//! codes: the handlers in `broker/resource_configs.rs` translate.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{BrokerConfig, ConfigSource, ConfigType};
use crate::log::checkpoint::write_atomic;

pub mod client_metrics;
pub mod group;

/// The store's file in the data directory.
pub const RESOURCE_CONFIGS_FILE: &str = "cairn-resource-configs";

/// One resource's config overrides: key → value.
pub type Overrides = BTreeMap<String, String>;

/// The kinds of resource whose configs live here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    Group,
    ClientMetrics,
}

impl ResourceKind {
    /// The name in the store's file.
    fn file_name(self) -> &'static str {
        match self {
            ResourceKind::Group => "group",
            ResourceKind::ClientMetrics => "client-metrics",
        }
    }

    /// Checks a resource's whole set of overrides.
    pub fn validate(
        self,
        overrides: &Overrides,
        broker: &BrokerConfig,
    ) -> Result<(), ResourceConfigError> {
        match self {
            ResourceKind::Group => group::validate(overrides, broker),
            ResourceKind::ClientMetrics => client_metrics::validate(overrides),
        }
    }

    /// Every config of a resource with `overrides`.
    pub fn describe(self, overrides: &Overrides, broker: &BrokerConfig) -> Vec<DescribedConfig> {
        match self {
            ResourceKind::Group => group::describe(overrides, broker),
            ResourceKind::ClientMetrics => client_metrics::describe(overrides),
        }
    }

    /// Whether `key` is a list (APPEND and SUBTRACT apply to lists only); `None` for an unknown
    /// key.
    pub fn is_list(self, key: &str) -> Option<bool> {
        match self {
            ResourceKind::Group => group::is_known(key).then_some(false),
            ResourceKind::ClientMetrics => client_metrics::is_list(key),
        }
    }
}

/// Errors of resource configs. The handlers map each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ResourceConfigError {
    #[error("'{key}' is not a {} config; they are: {known}", .kind.file_name())]
    UnknownName {
        kind: ResourceKind,
        key: String,
        known: String,
    },
    /// Not a value of the key's type.
    #[error("invalid value '{value}' for config '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A value of the right type outside what the key allows.
    #[error("value '{value}' of config '{key}' is out of range: {reason}")]
    OutOfRange {
        kind: ResourceKind,
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot store resource configs in {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("resource configs file {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
}

/// One described config: its effective value and where it came from, with its synonyms (the
/// resource's own value, then any broker default), most specific first.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub ty: ConfigType,
    pub doc: &'static str,
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// The durable store of every resource's overrides.
#[derive(Debug)]
pub struct ResourceConfigs {
    path: PathBuf,
    entries: Mutex<BTreeMap<(ResourceKind, String), Overrides>>,
}

impl ResourceConfigs {
    /// Opens the store in `data_dir` (empty when the file does not exist yet).
    pub fn open(data_dir: &Path) -> Result<ResourceConfigs, ResourceConfigError> {
        let path = data_dir.join(RESOURCE_CONFIGS_FILE);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => decode(&text).map_err(|reason| ResourceConfigError::Corrupt {
                path: path.display().to_string(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(ResourceConfigError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(ResourceConfigs {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// A resource's overrides (empty when it has none).
    pub fn overrides(&self, kind: ResourceKind, name: &str) -> Overrides {
        self.lock()
            .get(&(kind, name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The names of the resources of `kind` that have configs, in order.
    pub fn names(&self, kind: ResourceKind) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Replaces a resource's overrides, durably, after validating them.
    pub fn set(
        &self,
        kind: ResourceKind,
        name: &str,
        overrides: Overrides,
        broker: &BrokerConfig,
    ) -> Result<(), ResourceConfigError> {
        kind.validate(&overrides, broker)?;
        let mut entries = self.lock();
        let mut next = entries.clone();
        if overrides.is_empty() {
            next.remove(&(kind, name.to_string()));
        } else {
            next.insert((kind, name.to_string()), overrides);
        }
        write_atomic(&self.path, encode(&next).as_bytes()).map_err(|source| {
            ResourceConfigError::Io {
                path: self.path.display().to_string(),
                source,
            }
        })?;
        *entries = next;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(ResourceKind, String), Overrides>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const HEADER: &str = "cairn resource configs v1";

/// The file: a header line, then one `kind<TAB>name<TAB>key<TAB>value` line per override, each
/// field with `%`, tab, CR and LF percent-escaped (names may hold any character).
fn encode(entries: &BTreeMap<(ResourceKind, String), Overrides>) -> String {
    let mut out = format!("{HEADER}\n");
    for ((kind, name), overrides) in entries {
        for (key, value) in overrides {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                kind.file_name(),
                escape(name),
                escape(key),
                escape(value)
            ));
        }
    }
    out
}

fn decode(text: &str) -> Result<BTreeMap<(ResourceKind, String), Overrides>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not '{HEADER}'"));
    }
    let mut entries: BTreeMap<(ResourceKind, String), Overrides> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [kind, name, key, value] = fields[..] else {
            return Err(format!("bad line {line:?}"));
        };
        let kind = [ResourceKind::Group, ResourceKind::ClientMetrics]
            .into_iter()
            .find(|k| k.file_name() == kind)
            .ok_or_else(|| format!("unknown resource kind in {line:?}"))?;
        entries
            .entry((kind, unescape(name)?))
            .or_default()
            .insert(unescape(key)?, unescape(value)?);
    }
    Ok(entries)
}

/// Percent-escapes `%`, tab, CR and LF, so a field fits in a tab-separated line.
pub(crate) fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '%' | '\t' | '\n' | '\r' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub(crate) fn unescape(field: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = field
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {field:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("bad UTF-8 in {field:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_file_format_round_trips_any_name() {
        let mut entries = BTreeMap::new();
        entries.insert(
            (ResourceKind::Group, "odd\tgroup\n%20 é".to_string()),
            overrides(&[("consumer.session.timeout.ms", "50000")]),
        );
        entries.insert(
            (ResourceKind::ClientMetrics, "sub".to_string()),
            overrides(&[("metrics", "a.,b."), ("interval.ms", "1000")]),
        );
        let text = encode(&entries);
        assert_eq!(text.lines().count(), 4);
        assert_eq!(decode(&text).unwrap(), entries);
        assert!(decode("something else\n").is_err());
        assert!(decode(&format!("{HEADER}\ngroup\ta\tb\n")).is_err());
        assert!(decode(&format!("{HEADER}\ntopic\ta\tb\tc\n")).is_err());
        assert!(decode(&format!("{HEADER}\ngroup\ta\tb\t%G1\n")).is_err());
    }

    #[test]
    fn the_store_survives_reopening_and_refuses_invalid_sets() {
        let dir = tempfile::tempdir().unwrap();
        let b = BrokerConfig::default();
        let store = ResourceConfigs::open(dir.path()).unwrap();
        let group = ResourceKind::Group;
        store
            .set(
                group,
                "g",
                overrides(&[("consumer.session.timeout.ms", "50000")]),
                &b,
            )
            .unwrap();
        assert!(store
            .set(
                group,
                "h",
                overrides(&[("consumer.session.timeout.ms", "1")]),
                &b
            )
            .is_err());
        // A group and a subscription of one name are different resources.
        store
            .set(
                ResourceKind::ClientMetrics,
                "g",
                overrides(&[("interval.ms", "1000")]),
                &b,
            )
            .unwrap();
        let again = ResourceConfigs::open(dir.path()).unwrap();
        assert_eq!(
            again.overrides(group, "g")["consumer.session.timeout.ms"],
            "50000"
        );
        assert_eq!(
            again.overrides(ResourceKind::ClientMetrics, "g")["interval.ms"],
            "1000"
        );
        assert!(again.overrides(group, "h").is_empty());
        assert_eq!(again.names(group), ["g"]);
        assert_eq!(again.names(ResourceKind::ClientMetrics), ["g"]);
        again.set(group, "g", Overrides::new(), &b).unwrap();
        let third = ResourceConfigs::open(dir.path()).unwrap();
        assert!(third.overrides(group, "g").is_empty());
        assert!(!third.overrides(ResourceKind::ClientMetrics, "g").is_empty());
    }
}
