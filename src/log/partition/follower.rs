//! A partition as a replica of another broker's log, and the high watermark of a replicated one.
//!
//! A follower appends the leader's batches unchanged ([`Partition::append_as_follower`]: same
//! offsets, leader epochs, producer ids and sequences, so producer state and the
//! leader-epoch-checkpoint follow from them), takes its high watermark from the leader's answers
//! ([`Partition::follow_high_watermark`]) and cuts its log back where it diverges from the
//! leader's ([`Partition::truncate_to`]). A leader's high watermark is capped at what its
//! in-sync followers have ([`Partition::cap_high_watermark`]); a single node never sets a cap
//! and its appends move the high watermark as they always have. Knows no Kafka request types.

use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::epochs::LEADER_EPOCH_FILE;
use super::{delete_segment_files, segment_limits, txn, Partition};
use crate::log::batch::{self, BatchHeader};
use crate::log::producer_state::PendingUpdates;
use crate::log::{checkpoint, now_ms, LogError};

/// Splits `records` into whole batches, each CRC-checked; a partial batch at the end (a leader
/// may cut its answer short) is left out.
fn whole_batches(records: &[u8]) -> Result<Vec<(Range<usize>, BatchHeader)>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while records.len() - pos >= batch::HEADER_SIZE {
        let length = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let size = 12usize.saturating_add(length.max(0) as usize);
        if records.len() - pos < size {
            break;
        }
        let header = batch::check_batch(&records[pos..pos + size])
            .map_err(|e| LogError::CorruptBatch(format!("from the leader: {e:?}")))?;
        out.push((pos..pos + size, header));
        pos += size;
    }
    Ok(out)
}

impl Partition {
    /// Appends batches fetched from the leader at this log's end, unchanged. The first batch
    /// must start at the log end offset and each the next offset. Leader epochs new to this log
    /// are recorded in its checkpoint (durably, before the batches). Does not move the high
    /// watermark. Returns the new log end offset.
    pub fn append_as_follower(&self, records: &Bytes) -> Result<i64, LogError> {
        let batches = whole_batches(records)?;
        let Some(last) = batches.last() else {
            return Ok(self.offsets().log_end_offset);
        };
        let used = last.0.end;
        let records = records.slice(..used);
        let cfg = self.config();
        let seg_limits = segment_limits(&cfg);
        let now = now_ms();
        let mut st = self.lock_for_append()?;
        let mut next = st.log_end_offset;
        let mut pending = PendingUpdates::default();
        let mut aborts = Vec::new();
        let mut epochs = self
            .epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut epochs_changed = false;
        let mut count = 0i64;
        for (range, h) in &batches {
            if h.base_offset != next {
                return Err(LogError::InvalidRecord(format!(
                    "the leader's batch starts at offset {}, this replica's log ends at {next}",
                    h.base_offset
                )));
            }
            epochs_changed |= epochs.assign(h.partition_leader_epoch, h.base_offset);
            st.producers.record(&mut pending, h, now);
            aborts.extend(txn::record_marker(
                &st.producers,
                &mut pending,
                h,
                &records[range.clone()],
            ));
            next = h.last_offset() + 1;
            count += h.records_count as i64;
        }
        if epochs_changed {
            checkpoint::write_atomic(
                &self.dir.join(LEADER_EPOCH_FILE),
                epochs.encode().as_bytes(),
            )?;
            self.append_epoch
                .store(epochs.latest_epoch().unwrap_or(0), Ordering::SeqCst);
            *self.epochs.lock().unwrap_or_else(|e| e.into_inner()) = epochs;
        }
        self.roll_for(&mut st, &seg_limits, &batches, records.len(), next - 1, now)?;
        st.active().append(&records, &[], &batches, &seg_limits)?;
        st.producers.commit(pending);
        self.complete_aborts(&mut st, &aborts);
        st.log_end_offset = next;
        st.unflushed_messages += count;
        let flush_now = cfg.fsync_before_ack() || st.unflushed_messages >= cfg.flush_messages;
        drop(st);
        if flush_now {
            self.request_flush();
        }
        Ok(next)
    }

    /// A follower's high watermark: the leader's, but never past this log's end. Wakes readers
    /// when it moves.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        self.hw_cap.store(leader_high_watermark, Ordering::SeqCst);
        let mut st = self.lock();
        let hw = leader_high_watermark
            .min(st.log_end_offset)
            .max(st.log_start_offset);
        let moved = st.high_watermark != hw;
        st.high_watermark = hw;
        drop(st);
        if moved {
            self.shared.data_arrived.notify_waiters();
        }
    }

    /// A leader's high watermark: at most `floor` (the least log end of the in-sync
    /// followers; `i64::MAX` when it has none), this log's end, and (under fsync-before-ack) its
    /// durable end. It never moves back. Wakes readers and `acks=all` waiters when it moves.
    pub fn cap_high_watermark(&self, floor: i64) {
        self.hw_cap.store(floor, Ordering::SeqCst);
        let fsync_mode = self.config().fsync_before_ack();
        let mut st = self.lock();
        let own = if fsync_mode {
            st.durable_offset
        } else {
            st.log_end_offset
        };
        let hw = floor.min(own);
        let moved = hw > st.high_watermark;
        if moved {
            st.high_watermark = hw;
        }
        drop(st);
        if moved {
            self.shared.data_arrived.notify_waiters();
        }
    }

    /// Cuts the log back to `offset` (a batch boundary at or above the log start): segments
    /// starting at or past it are deleted, the one holding it is cut and its indexes rebuilt,
    /// producer state, aborted transactions and leader epochs past it are forgotten, and the
    /// high watermark and durable end come down with it. A no-op at or past the log end.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let limits = segment_limits(&self.config());
        let mut st = self.lock();
        if st.deleted {
            return Err(LogError::UnknownTopicOrPartition);
        }
        if offset >= st.log_end_offset {
            return Ok(());
        }
        if offset < st.log_start_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.log_end_offset,
            });
        }
        let keep = st.segment_for(offset) + 1;
        let removed: Vec<_> = st.segments.drain(keep..).collect();
        let seg = st.active();
        let mut position = seg.size;
        {
            let file = seg.log_file()?;
            let mut scan = crate::log::segment::BatchScanner::new(file.as_ref(), 0, seg.size);
            loop {
                match scan.next(false)? {
                    crate::log::segment::Scan::Batch(b) if b.header.base_offset >= offset => {
                        position = b.position;
                        break;
                    }
                    crate::log::segment::Scan::Batch(_) => {}
                    _ => break,
                }
            }
        }
        seg.unverify_from(position);
        seg.log_file()?.set_len(position)?;
        seg.recover(self.io.as_ref(), &limits, offset)?;
        st.log_end_offset = offset;
        st.high_watermark = st.high_watermark.min(offset);
        st.durable_offset = st.durable_offset.min(offset);
        st.producers.truncate_to(offset);
        st.snapshots.truncate_to(&self.dir, offset);
        st.aborted.retain(|a| a.last_offset < offset);
        st.dir_dirty = true;
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = epochs.clone();
        kept.trim(st.log_start_offset, offset);
        // An epoch starting at the new end wrote nothing that is left.
        let mut kept_entries = kept.entries().to_vec();
        kept_entries.retain(|e| e.start_offset < offset);
        let mut kept = super::epochs::LeaderEpochCache::default();
        for e in kept_entries {
            kept.assign(e.epoch, e.start_offset);
        }
        if kept != *epochs {
            checkpoint::write_atomic(&self.dir.join(LEADER_EPOCH_FILE), kept.encode().as_bytes())?;
            self.append_epoch
                .store(kept.latest_epoch().unwrap_or(0), Ordering::SeqCst);
            *epochs = kept;
        }
        drop(epochs);
        let (topic, index) = (self.topic.clone(), self.index);
        drop(st);
        delete_segment_files(&topic, index, removed);
        tracing::info!(
            topic,
            partition = index,
            offset,
            "truncated the log to the leader's"
        );
        self.request_flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::batch::tests::batch_with;
    use crate::log::{AppendOrigin, Isolation, LogManager, LogManagerOptions};

    #[test]
    fn a_cut_short_answer_yields_only_whole_batches() {
        let full = batch_with(3, 1000, None, false);
        let mut two = full.clone();
        two.extend_from_slice(&full[..full.len() - 5]);
        let batches = whole_batches(&two).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0, 0..full.len());
        assert!(whole_batches(&full[..10]).unwrap().is_empty());
    }

    /// A leader's log copied batch by batch into a follower's keeps offsets, epochs and
    /// producer state; a truncation cuts it back and new data continues from there.
    #[tokio::test]
    async fn a_follower_copies_the_leaders_batches_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogManager::open(LogManagerOptions {
            data_dir: dir.path().to_path_buf(),
            broker: BrokerConfig::default(),
        })
        .unwrap();
        log.create_topic("leader", 1, BTreeMap::new(), false)
            .unwrap();
        log.create_topic("follower", 1, BTreeMap::new(), false)
            .unwrap();
        let leader = log.partition("leader", 0).unwrap();
        let follower = log.partition("follower", 0).unwrap();
        leader.become_leader(3).unwrap();
        leader.cap_high_watermark(0);
        for seq in [0, 2, 4] {
            let b = batch_with(2, 1000, Some((7, 0, seq)), false);
            leader.append(Bytes::from(b), AppendOrigin::Client).unwrap();
        }
        leader.become_leader(5).unwrap();
        let b = batch_with(2, 1000, Some((7, 0, 6)), false);
        leader.append(Bytes::from(b), AppendOrigin::Client).unwrap();
        assert_eq!(
            leader.offsets().high_watermark,
            0,
            "capped until followers have it"
        );
        let copied = leader.read(0, 1 << 20, Isolation::LogEnd).unwrap().records;
        assert_eq!(follower.append_as_follower(&copied).unwrap(), 8);
        assert_eq!(follower.offsets().high_watermark, 0);
        follower.follow_high_watermark(6);
        assert_eq!(follower.offsets().high_watermark, 6);
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        assert_eq!(follower.end_offset_for_epoch(3), (3, 6));
        leader.cap_high_watermark(8);
        assert_eq!(leader.offsets().high_watermark, 8);
        // A retry of the last batch is a duplicate on the follower too.
        let retry = batch_with(2, 1000, Some((7, 0, 6)), false);
        let info = follower
            .append(Bytes::from(retry), AppendOrigin::Client)
            .unwrap();
        assert!(info.duplicate);
        assert_eq!(info.base_offset, 6);
        // A batch that does not start at the log end is refused.
        assert!(follower.append_as_follower(&copied).is_err());

        follower.truncate_to(6).unwrap();
        let o = follower.offsets();
        assert_eq!((o.log_end_offset, o.high_watermark), (6, 6));
        assert_eq!(
            follower.recorded_leader_epoch(),
            3,
            "epoch 5 wrote nothing left"
        );
        assert_eq!(
            follower
                .read(0, 1 << 20, Isolation::LogEnd)
                .unwrap()
                .records,
            copied.slice(..copied.len() * 3 / 4)
        );
        follower.become_leader(6).unwrap();
        let b = batch_with(1, 1000, None, false);
        let info = follower
            .append(Bytes::from(b), AppendOrigin::Client)
            .unwrap();
        assert_eq!(info.base_offset, 6);
        assert_eq!(follower.epoch_of_offset(6), 6);
        log.shutdown().unwrap();
    }
}
