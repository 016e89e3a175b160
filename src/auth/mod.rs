//! Authentication: TLS ([`tls`]) for SSL and SASL_SSL listeners, SASL ([`sasl`]: PLAIN and
//! [`scram`]) for SASL_PLAINTEXT and SASL_SSL listeners, and the durable SCRAM credentials
//! ([`credentials`]).
//!
//! Owns everything that decides who a client is. Knows nothing of storage (beyond its own
//! credential file); the server calls it while setting a connection up, before any Kafka
//! request other than ApiVersions, SaslHandshake and SaslAuthenticate reaches a handler.

pub mod credentials;
pub mod sasl;
pub mod scram;
pub mod tls;
