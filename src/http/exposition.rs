//! `/metrics`: the broker's counters ([`crate::metrics`]) and gauges read from one [`Status`]
//! snapshot, in the Prometheus/OpenMetrics text format. A scrape builds a registry of its own,
//! so gauges of deleted topics and groups disappear with them.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::status::Status;
use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// The text a scrape receives.
pub(crate) fn render(metrics: &Metrics, status: &Status) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    let partition_gauges = [
        (
            "cairn_partition_log_start_offset",
            "The partition's log start offset",
        ),
        (
            "cairn_partition_high_watermark",
            "The partition's high watermark",
        ),
        (
            "cairn_partition_log_end_offset",
            "The partition's log end offset",
        ),
    ];
    let families: Vec<Family<PartitionLabels, Gauge>> =
        partition_gauges.iter().map(|_| Family::default()).collect();
    let size: Family<PartitionLabels, Gauge> = Family::default();
    for topic in &status.topics {
        for p in &topic.partitions {
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: p.partition,
            };
            let values = [p.log_start_offset, p.high_watermark, p.log_end_offset];
            for (family, value) in families.iter().zip(values) {
                family.get_or_create(&labels).set(value);
            }
            size.get_or_create(&labels).set(p.size_bytes as i64);
        }
    }
    for ((name, help), family) in partition_gauges.iter().zip(families) {
        registry.register(*name, *help, family);
    }
    registry.register_with_unit(
        "cairn_partition_size",
        "Bytes of the partition's segment files on local disk",
        Unit::Bytes,
        size,
    );

    let members: Family<GroupLabels, Gauge> = Family::default();
    let state: Family<GroupStateLabels, Gauge> = Family::default();
    let committed: Family<GroupPartitionLabels, Gauge> = Family::default();
    let lag: Family<GroupPartitionLabels, Gauge> = Family::default();
    for g in &status.groups {
        let group = GroupLabels {
            group: g.group_id.clone(),
        };
        members.get_or_create(&group).set(g.members as i64);
        state
            .get_or_create(&GroupStateLabels {
                group: g.group_id.clone(),
                state: g.state,
            })
            .set(1);
        for o in &g.offsets {
            let labels = GroupPartitionLabels {
                group: g.group_id.clone(),
                topic: o.topic.clone(),
                partition: o.partition,
            };
            committed.get_or_create(&labels).set(o.committed_offset);
            lag.get_or_create(&labels).set(o.lag);
        }
    }
    registry.register(
        "cairn_group_members",
        "Members of the consumer group",
        members,
    );
    registry.register(
        "cairn_group_state",
        "1 for the consumer group's current state",
        state,
    );
    registry.register(
        "cairn_group_committed_offset",
        "The group's committed offset for the partition",
        committed,
    );
    registry.register(
        "cairn_group_lag",
        "Records between the group's committed offset and the partition's high watermark",
        lag,
    );

    let rss: Gauge = Gauge::default();
    rss.set(status.process.resident_memory_bytes as i64);
    registry.register_with_unit(
        "cairn_process_resident_memory",
        "Resident memory of the broker process",
        Unit::Bytes,
        rss,
    );
    let fds: Gauge = Gauge::default();
    fds.set(status.process.open_fds as i64);
    registry.register("cairn_process_open_fds", "Open file descriptors", fds);
    let uptime: Gauge = Gauge::default();
    uptime.set(status.uptime_seconds as i64);
    registry.register_with_unit(
        "cairn_uptime",
        "Time since the broker started",
        Unit::Seconds,
        uptime,
    );

    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}
