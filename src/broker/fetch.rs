//! Fetch: whole stored batches, with long polling until MinBytes or MaxWaitMs.
//!
//! Size limits follow KIP-74 as Kafka applies them: partitions are read in request order, each
//! within the smaller of its `partition_max_bytes` and what is left of the request's `max_bytes`;
//! only until the first partition that yields data may a read exceed those limits, and then only
//! by its first batch (so a consumer whose limits are below a batch's size still progresses).
//! Nothing else ever makes a response carry more record bytes than `max_bytes`.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::time::Instant;

use super::errors::{code, log_error_code, NONE};
use super::Broker;
use crate::log::{Isolation, LogError};

/// READ_COMMITTED in the request's isolation_level.
const READ_COMMITTED: i8 = 1;

pub(super) async fn handle(broker: &Broker, version: i16, request: FetchRequest) -> FetchResponse {
    // Sessions are not kept: a client that asks to resume one is told it is gone, and session
    // id 0 in every answer makes clients send full fetches.
    if version >= 7 && request.session_id != 0 && request.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(code(ResponseError::FetchSessionIdNotFound))
            .with_session_id(0);
    }
    let isolation = if request.isolation_level == READ_COMMITTED {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = request.max_bytes.max(0) as usize;
    loop {
        // Registered before reading, so an append between the read and the wait still wakes us.
        let arrived = broker.log.data_arrived();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let (responses, gathered, any_error) = gather(broker, &request, isolation, max_bytes);
        if gathered >= min_bytes || any_error || Instant::now() >= deadline {
            for topic in &responses {
                let bytes = topic
                    .partitions
                    .iter()
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                broker.metrics.fetched(&topic.topic.0, bytes);
            }
            return FetchResponse::default()
                .with_error_code(NONE)
                .with_session_id(0)
                .with_responses(responses);
        }
        tokio::select! {
            _ = arrived => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn gather(
    broker: &Broker,
    request: &FetchRequest,
    isolation: Isolation,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let read_committed = isolation == Isolation::ReadCommitted;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut data = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_aborted_transactions(read_committed.then(Vec::new))
                        .with_records(Some(Bytes::new()));
                    let Some(log) = broker.log.partition(&name, p.partition) else {
                        any_error = true;
                        data.error_code = code(ResponseError::UnknownTopicOrPartition);
                        return data;
                    };
                    let limit = (p.partition_max_bytes.max(0) as usize)
                        .min(max_bytes.saturating_sub(total));
                    let result = if total == 0 {
                        log.read(p.fetch_offset, limit, isolation)
                    } else {
                        log.read_within_limit(p.fetch_offset, limit, isolation)
                    };
                    match result {
                        Ok(read) => {
                            total += read.records.len();
                            data.error_code = NONE;
                            data.high_watermark = read.offsets.high_watermark;
                            data.last_stable_offset = read.offsets.last_stable_offset;
                            data.log_start_offset = read.offsets.log_start_offset;
                            data.records = Some(read.records);
                        }
                        Err(e) => {
                            any_error = true;
                            let offsets = log.offsets();
                            data.high_watermark = offsets.high_watermark;
                            data.last_stable_offset = offsets.last_stable_offset;
                            data.log_start_offset = offsets.log_start_offset;
                            data.error_code = match e {
                                LogError::OffsetOutOfRange { .. } => {
                                    code(ResponseError::OffsetOutOfRange)
                                }
                                other => log_error_code(&other),
                            };
                        }
                    }
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (topics, total, any_error)
}
