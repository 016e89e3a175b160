//! DeleteRecords: move a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::info;

use super::errors::{code, log_error_code, NONE};
use super::{tiered, Broker};

/// Offset -1 means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(super) fn delete_records(
    broker: &Broker,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(log) = broker.log.partition(&name, p.partition_index) else {
                        return r.with_error_code(code(ResponseError::UnknownTopicOrPartition));
                    };
                    let offsets = log.offsets();
                    let target = if p.offset == HIGH_WATERMARK {
                        offsets.high_watermark
                    } else {
                        p.offset
                    };
                    if target < 0 || target > offsets.high_watermark {
                        return r.with_error_code(code(ResponseError::OffsetOutOfRange));
                    }
                    // Below the local log start only the tier holds the records.
                    tiered::delete_records_before(broker, &name, p.partition_index, target);
                    match log.delete_records_before(target) {
                        Ok(local_start) => {
                            let low_watermark = tiered::log_start_offset(
                                broker,
                                &name,
                                p.partition_index,
                                local_start,
                            );
                            info!(topic = %name, partition = p.partition_index, low_watermark, "deleted records");
                            r.with_error_code(NONE).with_low_watermark(low_watermark)
                        }
                        Err(e) => r.with_error_code(log_error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
