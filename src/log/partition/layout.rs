//! A partition's segment layout for readers that index the log beside it (the key index in
//! `src/keys/`): every segment's base offset and size, the active one last, taken together with
//! the offsets under one lock so the two agree. Read-only.

use super::{Partition, SegmentInfo};
use crate::log::{LogError, PartitionOffsets};

impl Partition {
    /// Every segment, oldest first, the active segment last, and the offsets at the same instant.
    pub fn segment_layout(&self) -> Result<(Vec<SegmentInfo>, PartitionOffsets), LogError> {
        let st = self.lock();
        if st.deleted {
            return Err(LogError::UnknownTopicOrPartition);
        }
        let segments = st
            .segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                size: s.size,
                log_path: s.path("log"),
            })
            .collect();
        Ok((segments, st.offsets()))
    }
}
