//! TCP server.
