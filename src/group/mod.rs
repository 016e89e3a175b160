//! Consumer group coordinator (classic protocol) and the `__consumer_offsets` topic.
//!
//! [`state`] is the pure state machine (no I/O, no clock), [`offsets`] the record schemas and
//! the offsets topic, [`coordinator`] the async shell that parks requests, runs the timers and
//! persists. Nothing here knows Kafka request types or error codes: the handlers in
//! `broker/groups.rs` translate. Depends on the log engine's contract and the config only.

pub mod consumer;
pub mod coordinator;
pub mod offsets;
pub mod state;

pub use coordinator::{CoordinatorError, GroupCoordinator};
