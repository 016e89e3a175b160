//! How many bytes a partition's log takes on local disk: the sum of its segments' `.log` files,
//! as Kafka's `Log.size` counts them (indexes excluded). Knows nothing of Kafka requests.

use super::Partition;

impl Partition {
    /// Bytes in this partition's segment files, the active one included.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size).sum()
    }
}
