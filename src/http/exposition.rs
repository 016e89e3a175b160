//! `/metrics`: the broker's counters ([`crate::metrics`]) and gauges read from one [`Status`]
//! snapshot, in the Prometheus/OpenMetrics text format. A scrape builds a registry of its own,
//! so gauges of deleted topics and groups disappear with them.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;

use super::status::Status;
use crate::log::stats::LogStats;
use crate::metrics::{HistogramFamily, Histograms, Metrics};

type FloatGauge = Gauge<f64, AtomicU64>;

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
pub(crate) fn render(metrics: &Metrics, log: &LogStats, status: &Status) -> String {
    let mut registry = Registry::default();
    let live: HashSet<&str> = status.topics.iter().map(|t| t.name.as_str()).collect();
    metrics.register(&mut registry, |topic| live.contains(topic));
    register_log(&mut registry, log, status);

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

/// The log engine's group commits, the cleaner, tiered sizes and the start-up report.
fn register_log(registry: &mut Registry, log: &LogStats, status: &Status) {
    registry.register_collector(Box::new(Histograms(vec![
        HistogramFamily {
            name: "cairn_fsync_duration",
            help: "Duration of each group commit (the fsyncs of every partition flushed together)",
            unit: Some(Unit::Seconds),
            series: vec![(Vec::new(), log.fsync_seconds.snapshot())],
        },
        HistogramFamily {
            name: "cairn_group_commit_appends",
            help: "Appends covered by each group commit",
            unit: None,
            series: vec![(Vec::new(), log.appends_per_commit.snapshot())],
        },
    ])));

    let remote: Family<PartitionLabels, Gauge> = Family::default();
    let dirty: Family<PartitionLabels, FloatGauge> = Family::default();
    let since_clean: Family<PartitionLabels, FloatGauge> = Family::default();
    let cleaning: Family<PartitionLabels, Gauge> = Family::default();
    for topic in &status.topics {
        for p in &topic.partitions {
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: p.partition,
            };
            if let Some(bytes) = p.remote_size_bytes {
                remote.get_or_create(&labels).set(bytes as i64);
            }
            if let Some(c) = &p.cleaner {
                dirty.get_or_create(&labels).set(c.state.dirty_ratio);
                cleaning
                    .get_or_create(&labels)
                    .set(i64::from(c.state.cleaning));
                if let Some(secs) = c.seconds_since_last_clean {
                    since_clean.get_or_create(&labels).set(secs);
                }
            }
        }
    }
    registry.register_with_unit(
        "cairn_partition_remote_size",
        "Bytes of the partition's segments in the object-storage tier",
        Unit::Bytes,
        remote,
    );
    registry.register(
        "cairn_cleaner_dirty_ratio",
        "Dirty bytes over cleanable bytes of a compacted partition, at the cleaner's last look",
        dirty,
    );
    registry.register(
        "cairn_cleaner_cleaning",
        "1 while a cleaner thread is cleaning the partition",
        cleaning,
    );
    registry.register_with_unit(
        "cairn_cleaner_since_last_clean",
        "Time since the partition's last cleaning ended",
        Unit::Seconds,
        since_clean,
    );

    if let Some(s) = &status.scrub {
        let scrub = [
            (
                "cairn_tier_scrubbed_segments",
                "Segments of the tier read back and checked",
                s.checked,
            ),
            (
                "cairn_tier_damaged_segments",
                "Segments of the tier found with a missing or damaged object",
                s.damaged,
            ),
            (
                "cairn_tier_repaired_segments",
                "Damaged segments of the tier uploaded again from the local copy",
                s.repaired,
            ),
            (
                "cairn_tier_unrepairable_segments",
                "Damaged segments of the tier with no local copy to repair them from",
                s.unrepairable,
            ),
        ];
        for (name, help, value) in scrub {
            let counter: Counter = Counter::default();
            counter.inc_by(value);
            registry.register(name, help, counter);
        }
    }
    let c = &status.cleaner;
    let counters = [
        (
            "cairn_cleaner_runs",
            "Cleaning passes completed",
            None,
            c.runs,
        ),
        (
            "cairn_cleaner_cleaned",
            "Segment bytes read and rewritten by cleaning passes",
            Some(Unit::Bytes),
            c.bytes_cleaned,
        ),
        (
            "cairn_cleaner_removed",
            "Bytes cleaning passes removed from the log",
            Some(Unit::Bytes),
            c.bytes_removed,
        ),
    ];
    for (name, help, unit, value) in counters {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, counter),
            None => registry.register(name, help, counter),
        }
    }
    let uncleanable: Gauge = Gauge::default();
    uncleanable.set(c.uncleanable_partitions as i64);
    registry.register(
        "cairn_cleaner_uncleanable_partitions",
        "Compacted partitions whose last cleaning failed (skipped for a while)",
        uncleanable,
    );
    if let Some(secs) = c.seconds_since_last_run {
        let since: FloatGauge = Gauge::default();
        since.set(secs);
        registry.register_with_unit(
            "cairn_cleaner_since_last_run",
            "Time since the last cleaning pass ended",
            Unit::Seconds,
            since,
        );
    }

    let s = &status.startup;
    let v = &s.verification;
    let startup = [
        (
            "cairn_startup_unclean",
            "1 when the last start-up followed an unclean shutdown (crash, kill -9)",
            i64::from(s.shutdown == "unclean"),
        ),
        (
            "cairn_recovery_recovered_partitions",
            "Partitions recovered at the last start-up",
            s.recovered_partitions as i64,
        ),
        (
            "cairn_recovery_recovered_segments",
            "Segments re-validated by recovery at the last start-up",
            s.recovered_segments as i64,
        ),
        (
            "cairn_recovery_truncated_bytes",
            "Bytes of torn writes cut by recovery at the last start-up",
            s.truncated_bytes as i64,
        ),
        (
            "cairn_verification_damaged_ranges",
            "Damaged byte ranges found and moved aside by verification at the last start-up",
            s.damaged_ranges as i64,
        ),
        (
            "cairn_verification_segments",
            "Segments verified by background verification since start-up",
            v.segments as i64,
        ),
        (
            "cairn_verification_repaired_segments",
            "Segments repaired by background verification since start-up",
            v.repaired_segments as i64,
        ),
        (
            "cairn_verification_finished",
            "1 once background verification of the whole log has finished",
            i64::from(v.finished),
        ),
    ];
    for (name, help, value) in startup {
        let gauge: Gauge = Gauge::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }
}
