//! Consumer group coordinator (classic and KIP-848 protocols) and the `__consumer_offsets` topic.
//!
//! [`state`] is the classic pure state machine (no I/O, no clock), [`consumer`] the KIP-848
//! one, [`offsets`] the record schemas and the offsets topic, [`coordinator`] the async shell that parks requests, runs the timers and
//! persists. Nothing here knows Kafka request types or error codes: the handlers in
//! `broker/groups.rs` translate. Depends on the log engine's contract and the config only, and, in
//! a cluster, implements the cluster's `PartitionCoordinator` hook (`coordinator/election.rs`).

pub mod consumer;
mod consumer_coordinator;
mod consumer_records;
pub mod coordinator;
pub mod offsets;
pub mod state;
mod wire;

pub use coordinator::{CoordinatorError, GroupCoordinator};
