//! Wire-level tests: the real `cairn` binary, requests in, responses checked.
//!
//! Every implemented API is exercised at its lowest and highest advertised version, and hostile
//! input is shown to get an error or a closed connection while other clients keep being served.

mod apis;
mod authorized_operations;
mod broker_configs;
mod client_quotas;
mod cluster;
mod cluster_coordinator;
mod consumer_groups;
mod fetch_limits;
mod fetch_sessions;
mod groups;
mod harness;
mod hostile;
mod http;
mod record_errors;
mod resource_configs;
mod topic_partitions;
mod transactions;
mod txn_admin;
mod txn_checks;
mod util;
