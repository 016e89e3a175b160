//! DeleteRecords: move a partition's log start offset forward.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::info;

use super::errors::{code, log_error_code, NONE};
use super::{tiered, Broker};
use crate::tier::read::READ_TIMEOUT;

/// Offset -1 means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(super) async fn delete_records(
    broker: &Broker,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    // The tier's part of a deletion is made durable in the bucket before the answer; a store
    // that does not answer by then fails the partition with a retriable error.
    let budget = match request.timeout_ms {
        t if t > 0 => Duration::from_millis(t as u64).min(READ_TIMEOUT),
        _ => READ_TIMEOUT,
    };
    let deadline = Instant::now() + budget;
    let mut topics = Vec::new();
    for t in request.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(log) = broker.log.partition(&name, p.partition_index) else {
                partitions.push(r.with_error_code(code(ResponseError::UnknownTopicOrPartition)));
                continue;
            };
            let offsets = log.offsets();
            let target = if p.offset == HIGH_WATERMARK {
                offsets.high_watermark
            } else {
                p.offset
            };
            if target < 0 || target > offsets.high_watermark {
                partitions.push(r.with_error_code(code(ResponseError::OffsetOutOfRange)));
                continue;
            }
            // Below the local log start only the tier holds the records.
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(error_code) =
                tiered::delete_records_before(broker, &name, p.partition_index, target, left).await
            {
                partitions.push(r.with_error_code(error_code));
                continue;
            }
            let r = match log.delete_records_before(target) {
                Ok(local_start) => {
                    let low_watermark =
                        tiered::log_start_offset(broker, &name, p.partition_index, local_start);
                    info!(topic = %name, partition = p.partition_index, low_watermark, "deleted records");
                    r.with_error_code(NONE).with_low_watermark(low_watermark)
                }
                Err(e) => r.with_error_code(log_error_code(&e)),
            };
            partitions.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
