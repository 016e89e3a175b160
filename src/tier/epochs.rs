//! Leader epochs over the whole log of a tiered partition: the epochs the manifest records for
//! each remote segment (from its batches, see `remote_index`) below the local log, then the
//! local log's own cache. OffsetForLeaderEpoch answers from it, so an epoch whose data only the
//! bucket holds still ends where the next one begins, as it would with the data on disk; a
//! restore writes it as the restored partition's `leader-epoch-checkpoint`. Segments uploaded
//! before epochs were recorded add none. Knows no Kafka request type.

use super::manifest::Manifest;
use crate::log::partition::epochs::{EpochEntry, LeaderEpochCache};

/// The epochs of the manifest's segments that start below `below`, then `local` (the local
/// log's entries, its first one moved up to the local log start), trimmed to the tier's start.
pub fn whole_log(m: &Manifest, below: i64, local: &[EpochEntry]) -> LeaderEpochCache {
    let mut cache = LeaderEpochCache::default();
    let remote = m
        .segments
        .iter()
        .take_while(|s| s.base_offset < below)
        .flat_map(|s| &s.leader_epochs)
        .filter(|e| e.start_offset < below);
    for e in remote {
        // An epoch already recorded by an earlier segment is ignored.
        cache.assign(e.epoch, e.start_offset);
    }
    for e in local {
        cache.assign(e.epoch, e.start_offset);
    }
    cache.trim(m.log_start_offset, i64::MAX);
    cache
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::manifest::RemoteSegment;

    fn seg(base: i64, end: i64, epochs: &[(i32, i64)]) -> RemoteSegment {
        RemoteSegment::for_test(base, end, epochs)
    }

    fn entries(list: &[(i32, i64)]) -> Vec<EpochEntry> {
        list.iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn epochs_only_in_the_tier_answer_as_they_would_locally() {
        // The whole log, as one local cache: epoch 0 from 0, 3 from 25, 5 from 40, 7 from 70.
        let whole = entries(&[(0, 0), (3, 25), (5, 40), (7, 70)]);
        let mut local_cache = LeaderEpochCache::default();
        for e in &whole {
            local_cache.assign(e.epoch, e.start_offset);
        }
        // The tier holds [0, 60) (an old segment recorded no epochs); the local log starts at
        // 60, its cache trimmed there.
        let m = Manifest {
            segments: vec![
                seg(0, 20, &[]),
                seg(20, 40, &[(0, 20), (3, 25)]),
                seg(40, 60, &[(5, 40)]),
                seg(60, 80, &[(5, 60), (7, 70)]),
            ],
            ..Manifest::default()
        };
        let mut trimmed = local_cache.clone();
        trimmed.trim(60, 90);
        assert_eq!(trimmed.entries(), entries(&[(5, 60), (7, 70)]));
        let combined = whole_log(&m, 60, trimmed.entries());
        // Epoch 0 is known from the first segment that recorded it.
        assert_eq!(
            combined.entries(),
            entries(&[(0, 20), (3, 25), (5, 40), (7, 70)])
        );
        for epoch in -1..9 {
            assert_eq!(
                combined.end_offset_for(epoch, 90),
                local_cache.end_offset_for(epoch, 90),
                "epoch {epoch}"
            );
        }
        // The local cache alone answers epoch 3 at the local start: wrong.
        assert_eq!(trimmed.end_offset_for(3, 90), (3, 60));
        assert_eq!(combined.end_offset_for(3, 90), (3, 40));
        // Below the tier's start the epochs are gone, as after local retention.
        let m = Manifest {
            log_start_offset: 30,
            ..m
        };
        let combined = whole_log(&m, 60, trimmed.entries());
        assert_eq!(combined.entries(), entries(&[(3, 30), (5, 40), (7, 70)]));
    }
}
