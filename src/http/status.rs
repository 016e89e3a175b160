//! One read of the broker's state for the operator: every partition's offsets and size (local
//! and in the tier), the cleaner's state per compacted partition, every group's members,
//! committed offsets and lag, the last start-up's recovery and verification report, and the
//! process's memory and open files. The metrics, the status page and the JSON endpoints all
//! render this one snapshot.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde::Serialize;

use crate::broker::Broker;
use crate::log::stats::{CleanerPartition, StartupReport};

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub cluster_id: String,
    pub node_id: i32,
    pub uptime_seconds: u64,
    pub topics: Vec<TopicStatus>,
    pub groups: Vec<GroupStatus>,
    pub cleaner: CleanerStatus,
    pub startup: StartupReport,
    pub process: ProcessStatus,
    /// The tier's scrub since start-up (`None` without a tier).
    pub scrub: Option<ScrubStatus>,
}

/// What the tier's scrub found since start-up.
#[derive(Debug, Serialize)]
pub(crate) struct ScrubStatus {
    pub checked: u64,
    pub damaged: u64,
    pub repaired: u64,
    pub unrepairable: u64,
}

/// The cleaner's totals since start-up.
#[derive(Debug, Serialize)]
pub(crate) struct CleanerStatus {
    pub runs: u64,
    pub bytes_cleaned: u64,
    pub bytes_removed: u64,
    /// Seconds since the last cleaning pass ended (`None` before the first).
    pub seconds_since_last_run: Option<f64>,
    /// Compacted partitions whose last cleaning failed.
    pub uncleanable_partitions: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct TopicStatus {
    pub name: String,
    pub topic_id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PartitionStatus {
    pub partition: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// Bytes of its segment files on local disk.
    pub size_bytes: u64,
    /// Bytes of its segments in the object-storage tier (`None` without a tier, or before the
    /// tier has a manifest for it).
    pub remote_size_bytes: Option<u64>,
    /// The cleaner's view of a compacted partition (`None` for other partitions, and before
    /// the cleaner first looked at it).
    pub cleaner: Option<CleanerState>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CleanerState {
    #[serde(flatten)]
    pub state: CleanerPartition,
    /// Seconds since its last cleaning ended (`None` since start-up).
    pub seconds_since_last_clean: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GroupStatus {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub members: usize,
    /// The sum of `lag` over the partitions the group has committed offsets for.
    pub lag: i64,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The partition's high watermark, -1 when the partition no longer exists.
    pub high_watermark: i64,
    /// Records between the committed offset and the high watermark (as `kafka-consumer-groups
    /// --describe` computes it); 0 when the partition no longer exists.
    pub lag: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ProcessStatus {
    /// Resident set size, from /proc (0 where /proc is unavailable).
    pub resident_memory_bytes: u64,
    /// Open file descriptors, from /proc (0 where /proc is unavailable).
    pub open_fds: u64,
}

impl Status {
    pub(crate) fn gather(broker: &Broker, started: Instant) -> Status {
        let stats = broker.log.stats();
        let now_ms = crate::log::now_ms();
        let since = |ms: i64| ((now_ms - ms).max(0) as f64) / 1000.0;
        let mut cleaning = stats.cleaner.snapshot();
        let uncleanable_partitions = cleaning.values().filter(|c| c.uncleanable).count();
        let topics = broker
            .log
            .topics()
            .into_iter()
            .map(|info| {
                let partitions = (0..info.partitions)
                    .filter_map(|p| {
                        let log = broker.log.partition(&info.name, p)?;
                        let offsets = log.offsets();
                        Some(PartitionStatus {
                            partition: p,
                            log_start_offset: offsets.log_start_offset,
                            high_watermark: offsets.high_watermark,
                            log_end_offset: offsets.log_end_offset,
                            size_bytes: log.size_bytes(),
                            remote_size_bytes: broker
                                .tier
                                .as_ref()
                                .and_then(|t| t.remote.size_bytes(&info.name, p)),
                            cleaner: cleaning.remove(&(info.name.clone(), p)).map(|state| {
                                CleanerState {
                                    seconds_since_last_clean: state.last_cleaned_ms.map(since),
                                    state,
                                }
                            }),
                        })
                    })
                    .collect();
                TopicStatus {
                    topic_id: info.topic_id.to_string(),
                    internal: info.internal,
                    name: info.name,
                    partitions,
                }
            })
            .collect();
        let groups = broker
            .groups
            .list()
            .into_iter()
            .map(|listing| {
                let members = broker
                    .groups
                    .describe(&listing.group_id)
                    .map_or(0, |d| d.members.len());
                let mut offsets: Vec<GroupOffset> = broker
                    .groups
                    .fetch(&listing.group_id, None)
                    .into_iter()
                    .filter_map(|(tp, committed)| {
                        let committed = committed?.offset;
                        let high_watermark = broker
                            .log
                            .partition(&tp.topic, tp.partition)
                            .map_or(-1, |log| log.offsets().high_watermark);
                        Some(GroupOffset {
                            lag: if high_watermark < 0 {
                                0
                            } else {
                                (high_watermark - committed).max(0)
                            },
                            topic: tp.topic,
                            partition: tp.partition,
                            committed_offset: committed,
                            high_watermark,
                        })
                    })
                    .collect();
                offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                GroupStatus {
                    lag: offsets.iter().map(|o| o.lag).sum(),
                    state: listing.state,
                    protocol_type: listing.protocol_type,
                    group_id: listing.group_id,
                    members,
                    offsets,
                }
            })
            .collect();
        Status {
            cluster_id: broker.cluster_id.clone(),
            node_id: broker.node_id,
            uptime_seconds: started.elapsed().as_secs(),
            topics,
            groups,
            cleaner: CleanerStatus {
                runs: stats.cleaner.runs.load(Relaxed),
                bytes_cleaned: stats.cleaner.bytes_cleaned.load(Relaxed),
                bytes_removed: stats.cleaner.bytes_removed.load(Relaxed),
                seconds_since_last_run: Some(stats.cleaner.last_run_ms.load(Relaxed))
                    .filter(|ms| *ms > 0)
                    .map(since),
                uncleanable_partitions,
            },
            startup: stats.startup(),
            process: ProcessStatus::read(),
            scrub: broker.tier.as_ref().map(|t| {
                let (checked, damaged, repaired, unrepairable) = t.scrub.snapshot();
                ScrubStatus {
                    checked,
                    damaged,
                    repaired,
                    unrepairable,
                }
            }),
        }
    }
}

impl ProcessStatus {
    fn read() -> ProcessStatus {
        let resident_memory_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        ProcessStatus {
            resident_memory_bytes,
            open_fds,
        }
    }
}
