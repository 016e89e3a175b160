//! DescribeLogDirs: the one data directory, each partition's size in it, and (v4) the size and
//! free space of the file system holding it, which is what `kafka-log-dirs --describe` shows.

use std::collections::BTreeSet;
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use super::errors::NONE;
use super::Broker;

/// Kafka's value for a volume size it cannot tell.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub(super) fn describe_log_dirs(
    broker: &Broker,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // A null topic list asks for every partition; a list asks for those of its partitions that
    // exist here (Kafka leaves unknown ones out rather than failing the request).
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        None => broker
            .log
            .topics()
            .into_iter()
            .map(|t| (t.name, (0..t.partitions).collect()))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .map(|t| {
                let distinct: BTreeSet<i32> = t.partitions.into_iter().collect();
                (t.topic.0.to_string(), distinct.into_iter().collect())
            })
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .filter_map(|(name, partitions)| {
            let partitions: Vec<_> = partitions
                .into_iter()
                .filter_map(|p| {
                    let log = broker.log.partition(&name, p)?;
                    Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p)
                            .with_partition_size(log.size_bytes() as i64)
                            .with_offset_lag(0)
                            .with_is_future_key(false),
                    )
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
        })
        .collect();
    let dir = broker.config.data_dir();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let (total_bytes, usable_bytes) = volume_bytes(&dir);
    let result = DescribeLogDirsResult::default()
        .with_error_code(NONE)
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default()
        .with_error_code(NONE)
        .with_results(vec![result])
}

/// The size of the file system holding `dir` and the bytes an unprivileged writer may still use.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let block = st.f_frsize as i64;
            (
                (st.f_blocks as i64).saturating_mul(block),
                (st.f_bavail as i64).saturating_mul(block),
            )
        }
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot read the data directory's volume size");
            (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        }
    }
}
