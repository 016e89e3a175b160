//! Client quotas as Kafka has them (KIP-13, KIP-55, KIP-124, KIP-257): `producer_byte_rate`,
//! `consumer_byte_rate` and `request_percentage` for users, client ids, their defaults and
//! their pairs.
//!
//! Owns the quotas (durable in the data directory, [`store`]), the lookup of the quota that
//! applies to a (user, client id) by Kafka's precedence, and the windowed rates ([`rate`]) that
//! say how long a client that went over must be throttled. It also holds the one per-connection
//! [`ChannelMute`] the server honours by not reading from a throttled connection. Knows nothing
//! of Kafka requests or error codes: the handlers in `broker/client_quotas.rs` translate, and
//! `broker/throttle.rs` applies throttle times to responses.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

pub mod rate;
pub mod store;

use rate::{Rate, Windows};

/// One part of a quota entity: a name, or the default for every name without its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityName {
    Default,
    Named(String),
}

/// Who a quota is for: a user, a client id, or both (each part a name or the default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// The quotas Cairn enforces, by Kafka's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaKey {
    /// Bytes per second a client may produce.
    ProducerByteRate,
    /// Bytes per second a client may fetch.
    ConsumerByteRate,
    /// Percent of one request-handling thread's time a client may use.
    RequestPercentage,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
    ];

    /// Kafka's name of the quota.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Byte rates are whole numbers (Kafka's LONG quotas); the percentage is a DOUBLE.
    fn integral(self) -> bool {
        !matches!(self, QuotaKey::RequestPercentage)
    }
}

/// An entity's quotas.
pub type Quotas = BTreeMap<QuotaKey, f64>;

/// Errors of client quotas. The handlers map each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// A malformed entity or an invalid key or value (Kafka's INVALID_REQUEST).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot store client quotas in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("client quotas file {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
}

/// One change to one entity: set a quota, or remove it (`None`).
pub type QuotaChange = (String, Option<f64>);

/// Which entities a description lists (Kafka's DescribeClientQuotas filter).
#[derive(Debug, Default)]
pub struct QuotaFilter {
    /// Per part: `Some(None)` matches the default, `Some(Some(n))` the name n, `None` does not
    /// constrain; `any_*` asks for the part to be present with any name.
    pub user: Option<Option<String>>,
    pub client_id: Option<Option<String>>,
    pub any_user: bool,
    pub any_client_id: bool,
    /// Only entities with no other parts than those named.
    pub strict: bool,
}

impl QuotaFilter {
    fn matches(&self, entity: &QuotaEntity) -> bool {
        let part = |part: &Option<EntityName>, exact: &Option<Option<String>>, any: bool| {
            let exact_ok = match exact {
                None => true,
                Some(wanted) => match (part, wanted) {
                    (Some(EntityName::Default), None) => true,
                    (Some(EntityName::Named(n)), Some(w)) => n == w,
                    _ => false,
                },
            };
            exact_ok && (!any || part.is_some())
        };
        let named = |exact: &Option<Option<String>>, any: bool| exact.is_some() || any;
        if self.strict
            && (entity.user.is_some() != named(&self.user, self.any_user)
                || entity.client_id.is_some() != named(&self.client_id, self.any_client_id))
        {
            return false;
        }
        part(&entity.user, &self.user, self.any_user)
            && part(&entity.client_id, &self.client_id, self.any_client_id)
    }
}

/// Where a rate is kept: per quota and the metric tags of the entity that applies (Kafka's
/// `user` and `client-id` tags, empty for a part the entity does not have), so clients that
/// share an entity share its rate.
type SensorKey = (QuotaKey, String, String);

/// The most rates kept before idle ones are dropped.
const MAX_SENSORS: usize = 10_000;

/// Every client quota, and the rates measured against them.
#[derive(Debug)]
pub struct ClientQuotas {
    path: PathBuf,
    entries: RwLock<BTreeMap<QuotaEntity, Quotas>>,
    /// False while no quota exists, so requests skip the rates entirely.
    any: AtomicBool,
    sensors: Mutex<HashMap<SensorKey, Rate>>,
    windows: Windows,
}

impl ClientQuotas {
    /// Opens the store in `data_dir`; rates are sampled in `windows`.
    pub fn open(data_dir: &Path, windows: Windows) -> Result<ClientQuotas, QuotaError> {
        let path = data_dir.join(store::CLIENT_QUOTAS_FILE);
        let entries = store::load(&path)?;
        Ok(ClientQuotas {
            path,
            any: AtomicBool::new(!entries.is_empty()),
            entries: RwLock::new(entries),
            sensors: Mutex::new(HashMap::new()),
            windows,
        })
    }

    /// The entities `filter` selects, with their quotas.
    pub fn describe(&self, filter: &QuotaFilter) -> Vec<(QuotaEntity, Quotas)> {
        self.read()
            .iter()
            .filter(|(entity, _)| filter.matches(entity))
            .map(|(e, q)| (e.clone(), q.clone()))
            .collect()
    }

    /// Validates each entity's changes (Kafka's rules: a key at most once, known keys, values
    /// above zero, whole byte rates) and, unless `validate_only`, applies the valid ones in one
    /// durable write. One result per change, in order.
    pub fn alter(
        &self,
        changes: Vec<(QuotaEntity, Vec<QuotaChange>)>,
        validate_only: bool,
    ) -> Vec<Result<(), QuotaError>> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut next = entries.clone();
        let mut results = Vec::with_capacity(changes.len());
        let mut seen = Vec::new();
        for (entity, ops) in changes {
            let result = if seen.contains(&entity) {
                Err(QuotaError::Invalid(format!(
                    "Ignoring duplicate entity {}",
                    describe_entity(&entity)
                )))
            } else {
                seen.push(entity.clone());
                validate_entity(&entity)
                    .and_then(|()| validate(&ops))
                    .map(|ops| {
                        let quotas = next.entry(entity.clone()).or_default();
                        for (key, value) in ops {
                            match value {
                                Some(v) => quotas.insert(key, v),
                                None => quotas.remove(&key),
                            };
                        }
                        if quotas.is_empty() {
                            next.remove(&entity);
                        }
                    })
            };
            results.push(result);
        }
        if validate_only || next == *entries {
            return results;
        }
        if let Err(e) = store::save(&self.path, &next) {
            let message = e.to_string();
            return results
                .into_iter()
                .map(|r| {
                    r.and(Err(QuotaError::Io {
                        path: self.path.display().to_string(),
                        source: std::io::Error::other(message.clone()),
                    }))
                })
                .collect();
        }
        self.any.store(!next.is_empty(), Ordering::Release);
        *entries = next;
        // Rates were keyed by the entities that applied before; start them afresh.
        self.lock_sensors().clear();
        results
    }

    /// Records `value` against the `key` quota of (`user`, `client_id`) at `now`, returning how
    /// long the client must be throttled (zero within its quota, or with no quota).
    pub fn record(
        &self,
        key: QuotaKey,
        user: &str,
        client_id: &str,
        value: f64,
        now: Instant,
    ) -> Duration {
        let Some((bound, sensor)) = self.applicable(key, user, client_id) else {
            return Duration::ZERO;
        };
        let mut sensors = self.lock_sensors();
        if sensors.len() >= MAX_SENSORS && !sensors.contains_key(&sensor) {
            let windows = self.windows;
            sensors.retain(|_, rate| !rate.idle(now, windows));
        }
        let rate = sensors.entry(sensor).or_insert_with(|| Rate::new(now));
        rate.record(value, now, self.windows);
        let observed = rate.measure(now, self.windows);
        if observed <= bound {
            return Duration::ZERO;
        }
        // Kafka's throttle time: how long until the rate over the window falls to the bound.
        let window = rate.window_size(now, self.windows);
        let throttle = window.mul_f64((observed - bound) / bound);
        throttle.min(self.windows.window * self.windows.samples)
    }

    /// Takes back a value recorded by [`ClientQuotas::record`] (a throttled fetch sends no data).
    pub fn unrecord(&self, key: QuotaKey, user: &str, client_id: &str, value: f64, now: Instant) {
        if let Some((_, sensor)) = self.applicable(key, user, client_id) {
            if let Some(rate) = self.lock_sensors().get_mut(&sensor) {
                rate.record(-value, now, self.windows);
            }
        }
    }

    /// The `key` quota of (`user`, `client_id`) and the rate it is measured by, from the most
    /// specific entity that sets it, in Kafka's order (KIP-55): user and client id, user and
    /// default client id, user, default user and client id, default user and default client
    /// id, default user, client id, default client id.
    fn applicable(&self, key: QuotaKey, user: &str, client_id: &str) -> Option<(f64, SensorKey)> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let named = |n: &str| Some(EntityName::Named(n.to_string()));
        let default = || Some(EntityName::Default);
        let order = [
            (named(user), named(client_id)),
            (named(user), default()),
            (named(user), None),
            (default(), named(client_id)),
            (default(), default()),
            (default(), None),
            (None, named(client_id)),
            (None, default()),
        ];
        let entries = self.read();
        order.into_iter().find_map(|(u, c)| {
            let tags = (
                if u.is_some() { user } else { "" }.to_string(),
                if c.is_some() { client_id } else { "" }.to_string(),
            );
            let entity = QuotaEntity {
                user: u,
                client_id: c,
            };
            let bound = *entries.get(&entity)?.get(&key)?;
            Some((bound, (key, tags.0, tags.1)))
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<QuotaEntity, Quotas>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sensors(&self) -> std::sync::MutexGuard<'_, HashMap<SensorKey, Rate>> {
        self.sensors.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An entity needs a user or a client id, and a name given is not empty.
fn validate_entity(entity: &QuotaEntity) -> Result<(), QuotaError> {
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err(QuotaError::Invalid(
            "Invalid empty client quota entity".to_string(),
        ));
    }
    for (kind, part) in [("user", &entity.user), ("client-id", &entity.client_id)] {
        if matches!(part, Some(EntityName::Named(n)) if n.is_empty()) {
            return Err(QuotaError::Invalid(format!("Empty {kind} not supported")));
        }
    }
    Ok(())
}

/// Checks one entity's changes by Kafka's rules.
fn validate(ops: &[QuotaChange]) -> Result<Vec<(QuotaKey, Option<f64>)>, QuotaError> {
    let mut out: Vec<(QuotaKey, Option<f64>)> = Vec::with_capacity(ops.len());
    for (name, value) in ops {
        let invalid = |m: String| Err(QuotaError::Invalid(m));
        let Some(key) = QuotaKey::parse(name) else {
            return invalid(if name == "controller_mutation_rate" {
                "Cairn does not enforce controller_mutation_rate".to_string()
            } else {
                format!("Invalid configuration key {name}")
            });
        };
        if out.iter().any(|(k, _)| *k == key) {
            return invalid(format!("Duplicate quota key {name}"));
        }
        if let Some(v) = *value {
            if v.is_nan() || v <= 0.0 {
                return invalid(format!("Quota {name} must be greater than 0"));
            }
            if key.integral() && v > i64::MAX as f64 {
                return invalid(format!(
                    "Proposed value for {name} is too large for a LONG."
                ));
            }
            if key.integral() && (v % 1.0).abs() > 1e-6 {
                return invalid(format!("{name} cannot be a fractional value."));
            }
            if !v.is_finite() {
                return invalid(format!("Quota {name} must be finite"));
            }
        }
        out.push((key, *value));
    }
    Ok(out)
}

/// An entity as Kafka prints one, e.g. `user=alice, client-id=<default>`.
pub fn describe_entity(entity: &QuotaEntity) -> String {
    let part = |kind: &str, p: &Option<EntityName>| match p {
        None => None,
        Some(EntityName::Default) => Some(format!("{kind}=<default>")),
        Some(EntityName::Named(n)) => Some(format!("{kind}={n}")),
    };
    [
        part("user", &entity.user),
        part("client-id", &entity.client_id),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

/// A connection's mute: while set, the server reads no request from the connection (Kafka's
/// muted channel), so a throttled client waits out its throttle time whatever it sends.
#[derive(Debug, Default)]
pub struct ChannelMute {
    until: Mutex<Option<Instant>>,
}

impl ChannelMute {
    /// Mutes the connection for `duration` from now (a longer mute already set stays).
    pub fn mute_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut current = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }

    /// The end of the mute, if one is still running (and clears it).
    pub fn take(&self) -> Option<Instant> {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner()).take();
        until.filter(|u| *u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: Windows = Windows {
        samples: 11,
        window: Duration::from_secs(1),
    };

    fn user(n: &str) -> Option<EntityName> {
        Some(EntityName::Named(n.to_string()))
    }

    fn set(q: &ClientQuotas, entity: QuotaEntity, key: QuotaKey, value: f64) {
        let results = q.alter(
            vec![(entity, vec![(key.name().to_string(), Some(value))])],
            false,
        );
        assert!(results[0].is_ok(), "{:?}", results[0]);
    }

    #[test]
    fn the_most_specific_entity_applies_in_kafkas_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = ClientQuotas::open(dir.path(), WINDOWS).unwrap();
        let key = QuotaKey::ProducerByteRate;
        let bound = |u: &str, c: &str| q.applicable(key, u, c).map(|(b, s)| (b, s.1, s.2));
        assert_eq!(bound("alice", "app"), None);
        let d = || Some(EntityName::Default);
        set(
            &q,
            QuotaEntity {
                user: None,
                client_id: d(),
            },
            key,
            8.0,
        );
        assert_eq!(bound("alice", "app"), Some((8.0, "".into(), "app".into())));
        set(
            &q,
            QuotaEntity {
                user: None,
                client_id: user("app"),
            },
            key,
            7.0,
        );
        assert_eq!(bound("alice", "app"), Some((7.0, "".into(), "app".into())));
        set(
            &q,
            QuotaEntity {
                user: d(),
                client_id: None,
            },
            key,
            6.0,
        );
        assert_eq!(
            bound("alice", "app"),
            Some((6.0, "alice".into(), "".into()))
        );
        set(
            &q,
            QuotaEntity {
                user: d(),
                client_id: d(),
            },
            key,
            5.0,
        );
        set(
            &q,
            QuotaEntity {
                user: d(),
                client_id: user("app"),
            },
            key,
            4.0,
        );
        assert_eq!(
            bound("alice", "app"),
            Some((4.0, "alice".into(), "app".into()))
        );
        assert_eq!(
            bound("bob", "other"),
            Some((5.0, "bob".into(), "other".into()))
        );
        set(
            &q,
            QuotaEntity {
                user: user("alice"),
                client_id: None,
            },
            key,
            3.0,
        );
        assert_eq!(
            bound("alice", "app"),
            Some((3.0, "alice".into(), "".into()))
        );
        set(
            &q,
            QuotaEntity {
                user: user("alice"),
                client_id: user("app"),
            },
            key,
            1.0,
        );
        assert_eq!(
            bound("alice", "app"),
            Some((1.0, "alice".into(), "app".into()))
        );
        // Another quota key is looked up on its own.
        assert_eq!(
            q.applicable(QuotaKey::ConsumerByteRate, "alice", "app"),
            None
        );
        // Durable.
        let again = ClientQuotas::open(dir.path(), WINDOWS).unwrap();
        assert_eq!(again.describe(&QuotaFilter::default()).len(), 7);
    }

    #[test]
    fn invalid_changes_are_refused_with_kafkas_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let q = ClientQuotas::open(dir.path(), WINDOWS).unwrap();
        let entity = QuotaEntity {
            user: user("u"),
            client_id: None,
        };
        let change = |k: &str, v: f64| (k.to_string(), Some(v));
        let results = q.alter(
            vec![
                (entity.clone(), vec![change("producer_byte_rate", 0.0)]),
                (entity.clone(), vec![change("producer_byte_rate", 1.0)]),
            ],
            false,
        );
        assert!(results[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("greater than 0"));
        assert!(results[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("duplicate entity"));
        for (ops, reason) in [
            (vec![change("producer_byte_rate", 1.5)], "fractional"),
            (vec![change("nope", 1.0)], "Invalid configuration key nope"),
            (
                vec![
                    change("request_percentage", 1.0),
                    change("request_percentage", 2.0),
                ],
                "Duplicate",
            ),
        ] {
            let r = q.alter(vec![(entity.clone(), ops)], false);
            assert!(
                r[0].as_ref().unwrap_err().to_string().contains(reason),
                "{r:?}"
            );
        }
        assert!(q.describe(&QuotaFilter::default()).is_empty());
        // validate_only checks but keeps nothing.
        let r = q.alter(
            vec![(entity, vec![change("request_percentage", 2.5)])],
            true,
        );
        assert!(r[0].is_ok());
        assert!(q.describe(&QuotaFilter::default()).is_empty());
    }

    #[test]
    fn a_client_over_its_rate_is_throttled_until_the_rate_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let q = ClientQuotas::open(dir.path(), WINDOWS).unwrap();
        let key = QuotaKey::ProducerByteRate;
        set(
            &q,
            QuotaEntity {
                user: None,
                client_id: user("app"),
            },
            key,
            1000.0,
        );
        let t0 = Instant::now();
        // 10.5 s of window: 10_500 bytes are within the quota, 21_000 twice over it.
        assert_eq!(q.record(key, "u", "app", 10_000.0, t0), Duration::ZERO);
        let throttle = q.record(key, "u", "app", 11_000.0, t0 + Duration::from_millis(500));
        assert_eq!(throttle, Duration::from_millis(10_500));
        // Another client is not throttled.
        assert_eq!(q.record(key, "u", "other", 1e9, t0), Duration::ZERO);
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let dir = tempfile::tempdir().unwrap();
        let q = ClientQuotas::open(dir.path(), WINDOWS).unwrap();
        let key = QuotaKey::RequestPercentage;
        let d = || Some(EntityName::Default);
        set(
            &q,
            QuotaEntity {
                user: user("a"),
                client_id: None,
            },
            key,
            1.0,
        );
        set(
            &q,
            QuotaEntity {
                user: user("a"),
                client_id: user("c"),
            },
            key,
            1.0,
        );
        set(
            &q,
            QuotaEntity {
                user: d(),
                client_id: None,
            },
            key,
            1.0,
        );
        set(
            &q,
            QuotaEntity {
                user: None,
                client_id: d(),
            },
            key,
            1.0,
        );
        let count = |f: QuotaFilter| q.describe(&f).len();
        assert_eq!(count(QuotaFilter::default()), 4);
        assert_eq!(
            count(QuotaFilter {
                user: Some(Some("a".into())),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            count(QuotaFilter {
                user: Some(Some("a".into())),
                strict: true,
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(QuotaFilter {
                user: Some(None),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(QuotaFilter {
                any_user: true,
                ..Default::default()
            }),
            3
        );
        assert_eq!(
            count(QuotaFilter {
                any_client_id: true,
                strict: true,
                ..Default::default()
            }),
            1
        );
    }
}
