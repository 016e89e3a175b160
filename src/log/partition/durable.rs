//! Waiting for durability: [`Partition::wait_durable`], the group-commit wait of `acks=all`
//! under fsync-before-ack.

use std::io;

use super::Partition;
use crate::log::LogError;

impl Partition {
    /// Resolves once every offset below `offset` is durable (fsynced). Returns at once in
    /// page-cache mode. Group commit: concurrent waiters share one fsync.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        if !self.config().fsync_before_ack() {
            return Ok(());
        }
        let mut rx = self.durable.subscribe();
        let mut asked = false;
        loop {
            {
                let d = rx.borrow_and_update();
                if d.offset >= offset {
                    return Ok(());
                }
                if let Some(reason) = &d.failed {
                    return Err(LogError::Io(io::Error::other(format!(
                        "fsync of partition {}-{} failed: {reason}",
                        self.topic, self.index
                    ))));
                }
                if d.shutting_down {
                    return Err(LogError::ShuttingDown);
                }
            }
            if !asked {
                self.request_flush();
                asked = true;
            }
            if rx.changed().await.is_err() {
                return Err(LogError::ShuttingDown);
            }
        }
    }
}
