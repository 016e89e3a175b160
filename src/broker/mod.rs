//! Request handlers, one file per API family, and the dispatch table.
//!
//! The one place that knows both Kafka request types and the log engine / group coordinator,
//! and the only place that maps their errors to Kafka error codes ([`errors`]). Handlers return
//! responses; only the connection code encodes and writes them.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::log::LogManager;

pub mod groups;

/// Shared state of the broker, handed to every handler.
pub struct Broker {
    pub config: BrokerConfig,
    pub log: Arc<LogManager>,
    pub groups: Arc<GroupCoordinator>,
    /// This broker's node id (also the controller id in Metadata).
    pub node_id: i32,
    /// The host and port given to clients.
    pub advertised: (String, u16),
    pub cluster_id: String,
}

impl Broker {
    /// Handles one decoded request. `None` means "send no response" (Produce with acks=0).
    pub async fn handle(
        &self,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Option<ResponseKind> {
        let _ = (header, request);
        None
    }
}

/// The versions this broker advertises and accepts, per API.
pub fn supported_apis() -> Vec<(ApiKey, i16, i16)> {
    groups::APIS.to_vec()
}
