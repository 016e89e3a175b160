//! Authentication and authorization: TLS ([`tls`]) for SSL and SASL_SSL listeners.
//!
//! Owns everything that decides who a client is. Knows nothing of storage; the server calls
//! it while setting a connection up, before any Kafka request reaches a handler.

pub mod tls;
