//! Handlers of the consumer group APIs. PLACEHOLDER: being implemented.

use kafka_protocol::messages::ApiKey;

/// The group APIs this broker implements, with the versions it accepts (min, max).
pub const APIS: &[(ApiKey, i16, i16)] = &[];
