//! The live broker config: one immutable snapshot ([`BrokerConfig`] with its dynamic layers),
//! replaced whole when a dynamic config changes.
//!
//! Readers take an `Arc` of the current snapshot, or subscribe to be woken by the next one (the
//! accept loops do, for `max.connections`). No produce or fetch path reads it: the log manager
//! turns each new snapshot into per-partition `LogConfig`s once, when it arrives. Owns no file
//! and knows no Kafka request; [`super::DynamicConfigs`] publishes.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::BrokerConfig;

/// A cheap-to-clone handle on the current broker config.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    sender: Arc<watch::Sender<Arc<BrokerConfig>>>,
}

impl LiveConfig {
    pub fn new(config: BrokerConfig) -> LiveConfig {
        LiveConfig {
            sender: Arc::new(watch::Sender::new(Arc::new(config))),
        }
    }

    /// The config in force now.
    pub fn current(&self) -> Arc<BrokerConfig> {
        self.sender.borrow().clone()
    }

    /// A receiver woken by every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<BrokerConfig>> {
        self.sender.subscribe()
    }

    /// Makes `config` the current snapshot and wakes the subscribers.
    pub(super) fn publish(&self, config: Arc<BrokerConfig>) {
        self.sender.send_replace(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_each_published_snapshot() {
        let live = LiveConfig::new(BrokerConfig::default());
        let mut changes = live.subscribe();
        let mut next = BrokerConfig::default();
        next.set("max.connections", "7").unwrap();
        live.publish(Arc::new(next));
        changes.changed().await.unwrap();
        assert_eq!(changes.borrow_and_update().max_connections(), 7);
        assert_eq!(live.current().max_connections(), 7);
    }
}
