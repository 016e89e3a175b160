//! Kafka framing, request headers and the version table; no I/O, no storage.
//!
//! [`frame`] checks a length prefix before anything is allocated; [`codec`] decodes a frame into
//! a typed request (or a reason to refuse it) and encodes responses; [`versions`] is the one
//! table of advertised API versions, built from the broker's dispatch table; [`fetch_encode`]
//! encodes Fetch responses as chunks that share the record bytes instead of copying them.

pub mod codec;
pub mod fetch_encode;
pub mod frame;
pub mod versions;
