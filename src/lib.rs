//! Cairn: a Kafka-wire-protocol-compatible broker built to be a primary, long-term data store.
//!
//! The layers, top to bottom (see ARCHITECTURE.md):
//! - [`server`]: TCP accept loop, framing, per-connection ordering, limits, shutdown.
//! - [`protocol`]: frame and header decoding with the kafka-protocol crate; no I/O.
//! - [`broker`]: one handler file per API family; the only place that maps storage and group
//!   errors to Kafka error codes.
//! - [`group`]: the consumer group coordinator (a pure state machine plus the offsets topic).
//! - [`txn`]: the transaction coordinator (a pure state machine plus `__transaction_state`).
//! - [`log`]: the log engine (topics, partitions, segments, indexes, recovery, retention, cleaner).
//! - [`auth`]: TLS and client identities (principals).
//! - [`authz`]: ACLs, the one authorization decision (`authorizer.class.name`).
//! - [`listener`]: named listeners, their security protocols, and the per-connection session.
//! - [`tier`]: the object-storage tier (lease, upload, manifests, restore) beside the log.
//! - [`config`]: broker and topic configuration with Kafka's names.
//! - [`dynamic_config`]: dynamic broker configs (durable) and the live config snapshot.
//! - [`quota`]: client quotas (byte rates, request time), their store and their rates.
//! - [`resource_configs`]: configs of groups (KIP-848) and client-metrics subscriptions (KIP-714).
//! - [`metrics`]: the broker's counters; [`http`]: the operator's listener (metrics, status page).

pub mod auth;
pub mod authz;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod dynamic_config;
pub mod group;
pub mod http;
pub mod keys;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod quota;
pub mod resource_configs;
pub mod server;
pub mod tier;
pub mod txn;
