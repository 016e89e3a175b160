//! Kafka framing and headers; no I/O.
