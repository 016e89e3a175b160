//! Consumer group coordinator (classic protocol) and the `__consumer_offsets` topic.
//!
//! PLACEHOLDER: being implemented. `GroupCoordinator::start` is the entry the broker calls.

pub mod offsets;
pub mod state;

use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::log::LogManager;

/// Coordinates every consumer group of this broker.
pub struct GroupCoordinator {
    _private: (),
}

impl GroupCoordinator {
    /// Loads committed offsets from `__consumer_offsets` and starts the timers.
    pub async fn start(
        _config: &BrokerConfig,
        _log: Arc<LogManager>,
    ) -> anyhow::Result<Arc<GroupCoordinator>> {
        Ok(Arc::new(GroupCoordinator { _private: () }))
    }

    /// Stops timers and flushes what must be flushed.
    pub async fn shutdown(&self) {}
}
