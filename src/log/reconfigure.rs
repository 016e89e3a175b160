//! A new broker config for a running log manager: topic defaults changed by a dynamic broker
//! config reach every partition at once.
//!
//! Each topic's `LogConfig` is resolved again from the new broker config and its own overrides,
//! and swapped into its partitions, as a topic's own config change is; appends and reads keep
//! reading their partition's config snapshot and take no new lock. The cleaner threads get their
//! new settings (thread count, I/O rate, dedupe buffer, backoff) the same way, between passes.

use std::sync::Arc;

use super::cleaner::CleanerSettings;
use super::LogManager;
use crate::config::{BrokerConfig, LogConfig};

impl LogManager {
    /// The broker config topic defaults come from now.
    pub(super) fn broker(&self) -> Arc<BrokerConfig> {
        self.broker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `broker` the source of topic defaults, and gives every partition whose effective
    /// config changes its new config. Returns how many topics changed.
    pub fn reconfigure(&self, broker: Arc<BrokerConfig>) -> usize {
        // Topic administration resolves configs under this lock too, so none is created with
        // the old defaults after the swap.
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        *self.broker.write().unwrap_or_else(|e| e.into_inner()) = broker.clone();
        let cleaner = CleanerSettings::from_broker(&broker);
        if *self.shared.cleaner_settings() != cleaner {
            // The cleaner threads read it before each pass; a sleeping one wakes for it.
            *self
                .shared
                .cleaner_settings
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Arc::new(cleaner);
        }
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut changed = 0;
        for entry in topics.values() {
            let config = Arc::new(LogConfig::resolve(&broker, &entry.info.overrides));
            let Some(first) = entry.partitions.first() else {
                continue;
            };
            if *first.config() == *config {
                continue;
            }
            changed += 1;
            for p in &entry.partitions {
                p.set_config(config.clone());
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::log::LogManagerOptions;

    #[tokio::test]
    async fn topics_without_an_override_follow_the_new_default() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogManager::open(LogManagerOptions {
            data_dir: dir.path().to_path_buf(),
            broker: BrokerConfig::default(),
        })
        .unwrap();
        log.create_topic("plain", 1, BTreeMap::new(), false)
            .unwrap();
        let own: BTreeMap<String, String> = [("retention.ms".to_string(), "5000".to_string())]
            .into_iter()
            .collect();
        log.create_topic("own", 1, own, false).unwrap();

        let mut next = BrokerConfig::default();
        next.set("log.retention.ms", "60000").unwrap();
        assert_eq!(log.reconfigure(Arc::new(next)), 1);
        assert_eq!(
            log.partition("plain", 0).unwrap().config().retention_ms,
            60000
        );
        assert_eq!(log.partition("own", 0).unwrap().config().retention_ms, 5000);
        assert_eq!(log.shared.cleaner_settings().threads, 1);
        let mut more = BrokerConfig::default();
        more.set("log.retention.ms", "60000").unwrap();
        more.set("log.cleaner.threads", "3").unwrap();
        more.set("log.cleaner.io.max.bytes.per.second", "1048576")
            .unwrap();
        assert_eq!(log.reconfigure(Arc::new(more)), 0);
        let settings = log.shared.cleaner_settings();
        assert_eq!(settings.threads, 3);
        assert_eq!(settings.config.io_max_bytes_per_second, 1048576.0);
        // A topic created afterwards starts with the new default.
        log.create_topic("later", 1, BTreeMap::new(), false)
            .unwrap();
        assert_eq!(log.topic_config("later").unwrap().retention_ms, 60000);
        log.shutdown().unwrap();
    }
}
