//! One read of the broker's state for the operator: every partition's offsets and size, every
//! group's members, committed offsets and lag, and the process's memory and open files. The
//! metrics, the status page and the JSON endpoints all render this one snapshot.

use std::time::Instant;

use serde::Serialize;

use crate::broker::Broker;

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub cluster_id: String,
    pub node_id: i32,
    pub uptime_seconds: u64,
    pub topics: Vec<TopicStatus>,
    pub groups: Vec<GroupStatus>,
    pub process: ProcessStatus,
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
    pub size_bytes: u64,
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
            process: ProcessStatus::read(),
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
