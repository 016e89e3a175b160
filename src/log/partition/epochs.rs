//! Leader epochs of one partition (KIP-101): the epoch its appends stamp into each batch's
//! `partitionLeaderEpoch`, and the cache of which epoch started at which offset, kept in Kafka's
//! `leader-epoch-checkpoint` file (version 0, an entry count, then `<epoch> <start_offset>`
//! lines in ascending order; written through [`checkpoint::write_atomic`]). OffsetForLeaderEpoch
//! answers from it, so a replica can find where its log diverges from a leader's.
//!
//! On a single node nothing calls [`Partition::become_leader`]: appends stamp epoch 0 as they
//! always have, and no checkpoint is written. In a cluster the membership code calls it when
//! etcd makes this broker the partition's leader. Knows no Kafka request types.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Partition, PartitionState};
use crate::log::checkpoint;
use crate::log::LogError;

/// Kafka's file name for the cache.
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epochs of a partition's log, ascending in both epoch and start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Reads `dir`'s checkpoint (empty when absent or unreadable, with a warning), trimmed to
    /// the log's offsets. A log with data and no entry was written before epochs were kept:
    /// its batches all carry epoch 0.
    pub(crate) fn open(dir: &Path, state: &PartitionState) -> LeaderEpochCache {
        let path = dir.join(LEADER_EPOCH_FILE);
        let mut cache = match std::fs::read_to_string(&path) {
            Ok(text) => LeaderEpochCache::decode(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = e, "ignoring a leader-epoch-checkpoint that does not parse");
                LeaderEpochCache::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => LeaderEpochCache::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the leader-epoch-checkpoint");
                LeaderEpochCache::default()
            }
        };
        cache.trim(state.log_start_offset, state.log_end_offset);
        if cache.entries.is_empty() && state.log_end_offset > state.log_start_offset {
            cache.assign(0, state.log_start_offset);
        }
        cache
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. An epoch not above the latest is ignored;
    /// entries at or past `start_offset` belong to epochs that wrote nothing that survives, and
    /// are replaced. Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| latest >= epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Where `requested` ends, as OffsetForLeaderEpoch answers it: `(epoch, end_offset)` with
    /// `epoch` the largest known epoch not above `requested` and `end_offset` the start of the
    /// next epoch (the log end for the latest); `(-1, -1)` when `requested` is newer than every
    /// epoch known or undefined (-1).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested < 0 {
            return (-1, -1);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().position(|e| e.epoch > requested) else {
            return (-1, -1);
        };
        match higher.checked_sub(1) {
            // Older than the first epoch kept: it ended where the first kept one starts.
            None => (requested, self.entries[higher].start_offset),
            Some(floor) => (self.entries[floor].epoch, self.entries[higher].start_offset),
        }
    }

    /// Drops entries past `log_end_offset` (their data is gone) and moves the entry covering
    /// `log_start_offset` up to it (earlier data is deleted).
    pub fn trim(&mut self, log_start_offset: i64, log_end_offset: i64) {
        self.entries.retain(|e| e.start_offset <= log_end_offset);
        let covering = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= log_start_offset);
        if let Some(i) = covering {
            self.entries.drain(..i);
            self.entries[0].start_offset = log_start_offset;
        }
    }

    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    pub fn decode(text: &str) -> Result<LeaderEpochCache, String> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some("0") {
            return Err("bad leader-epoch-checkpoint version".into());
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("bad leader-epoch-checkpoint entry count")?;
        let mut cache = LeaderEpochCache::default();
        for line in lines.by_ref().take(count) {
            let mut parts = line.split_whitespace();
            let (Some(epoch), Some(start), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("bad leader-epoch-checkpoint line {line:?}"));
            };
            let epoch: i32 = epoch
                .parse()
                .map_err(|_| format!("bad epoch in {line:?}"))?;
            let start_offset: i64 = start
                .parse()
                .map_err(|_| format!("bad offset in {line:?}"))?;
            let ascending = cache
                .entries
                .last()
                .is_none_or(|l| l.epoch < epoch && l.start_offset <= start_offset);
            if epoch < 0 || start_offset < 0 || !ascending {
                return Err(format!(
                    "out of order leader-epoch-checkpoint line {line:?}"
                ));
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if cache.entries.len() != count || lines.any(|l| !l.trim().is_empty()) {
            return Err(format!(
                "leader-epoch-checkpoint declares {count} entries, found {}",
                cache.entries.len()
            ));
        }
        Ok(cache)
    }
}

impl Partition {
    /// Makes `epoch` the leader epoch this partition's appends carry from its current log end.
    /// The checkpoint is durable before any batch carries the epoch (its one fsync under the
    /// partition lock, once per leadership change). An epoch older than the latest is ignored.
    /// Returns whether the epoch is new.
    pub fn become_leader(&self, epoch: i32) -> Result<bool, LogError> {
        let st = self.lock();
        let mut cache = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = cache.clone();
        let new = next.assign(epoch, st.log_end_offset);
        if new {
            checkpoint::write_atomic(&self.dir.join(LEADER_EPOCH_FILE), next.encode().as_bytes())?;
            *cache = next;
        }
        if cache.latest_epoch() == Some(epoch) {
            self.append_epoch.store(epoch, Ordering::SeqCst);
        }
        Ok(new)
    }

    /// The latest epoch in the cache, which appends stamp (-1 when none is recorded; a single
    /// node's appends then stamp 0).
    pub fn recorded_leader_epoch(&self) -> i32 {
        let cache = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        cache.latest_epoch().unwrap_or(-1)
    }

    /// Where `epoch` ends in this log (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.lock();
        let cache = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        cache.end_offset_for(epoch, st.log_end_offset)
    }

    /// The epoch that wrote `offset` (-1 when no epoch is known for it).
    pub fn epoch_of_offset(&self, offset: i64) -> i32 {
        let cache = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entries()
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map_or(-1, |e| e.epoch)
    }

    /// The epoch cache as it is now.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        let cache = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        cache.entries().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(
            c.end_offset_for(4, 40),
            (4, 40),
            "latest ends at the log end"
        );
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(
            c.end_offset_for(2, 40),
            (1, 10),
            "an epoch never seen: the one before"
        );
        assert_eq!(c.end_offset_for(0, 40), (0, 0), "older than the first kept");
        assert_eq!(c.end_offset_for(5, 40), (-1, -1), "newer than any known");
        assert_eq!(c.end_offset_for(-1, 40), (-1, -1));
    }

    #[test]
    fn assign_replaces_epochs_that_wrote_nothing() {
        let mut c = cache(&[(1, 0), (2, 10)]);
        assert!(!c.assign(2, 12), "not newer");
        assert!(c.assign(3, 10), "epoch 2 wrote nothing");
        assert_eq!(c.encode(), "0\n2\n1 0\n3 10\n");
    }

    #[test]
    fn trim_follows_the_log() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.trim(12, 20);
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 12
            }]
        );
    }

    #[test]
    fn the_file_format_round_trips_and_rejects_garbage() {
        let c = cache(&[(0, 0), (2, 7)]);
        assert_eq!(LeaderEpochCache::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\nx 0\n",
            "0\n2\n3 5\n2 9\n",
            "0\n1\n0 0\nextra\n",
        ] {
            assert!(LeaderEpochCache::decode(bad).is_err(), "{bad:?}");
        }
    }
}
