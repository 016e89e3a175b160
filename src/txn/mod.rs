//! The transaction coordinator (Kafka's exactly-once transactions): InitProducerId with a
//! transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and the checks behind
//! transactional Produce and TxnOffsetCommit.
//!
//! [`state`] is the pure state machine of one transactional id (no I/O, no clock), [`topic`]
//! the `__transaction_state` records in Kafka's format, [`coordinator`] the async shell that
//! persists every transition before it takes effect, writes the commit/abort markers through
//! the log engine and aborts timed-out transactions. Nothing here knows Kafka request types or
//! error codes: `broker/txn.rs` translates. [`crash`] names the steps of a commit a test can
//! kill the broker at. Depends on the log engine's contract, the group coordinator (offsets
//! committed inside a transaction) and the config; in a cluster it implements the cluster's
//! `PartitionCoordinator` hook (`coordinator/election.rs`).

pub mod coordinator;
pub mod crash;
pub mod state;
pub mod topic;

pub use coordinator::TransactionCoordinator;
pub use state::TxnError;
