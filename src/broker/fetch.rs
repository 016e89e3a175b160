//! Fetch: whole stored batches, with long polling until MinBytes or MaxWaitMs.
//!
//! Size limits follow KIP-74 as Kafka applies them: partitions are read in request order, each
//! within the smaller of its `partition_max_bytes` and what is left of the request's `max_bytes`;
//! only until the first partition that yields data may a read exceed those limits, and then only
//! by its first batch (so a consumer whose limits are below a batch's size still progresses).
//! Nothing else ever makes a response carry more record bytes than `max_bytes`.
//!
//! In a cluster, a Fetch carrying a `replica_id` is a follower's (Kafka's replica Fetch; it needs
//! CLUSTER_ACTION): it reads up to the log end rather than the high watermark, its fetch offset
//! is the follower's log end for the leader's high watermark ([`crate::cluster`]'s
//! `follower_fetched`), and its long poll also ends when a high watermark it asked about moves.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::time::Instant;

use super::errors::{code, log_error_code, NONE};
use super::{fetch_files, tiered, Broker};
use crate::authz::{Operation, ResourceType};
use crate::listener::Session;
use crate::log::{Isolation, LogError};

/// READ_COMMITTED in the request's isolation_level.
const READ_COMMITTED: i8 = 1;

/// Answers `request` in full (sessions are `fetch_sessions.rs`'s: it hands over the partitions
/// to read and sets the session id of the answer).
pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    _version: i16,
    request: FetchRequest,
) -> FetchResponse {
    let isolation = if request.isolation_level == READ_COMMITTED {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = request.max_bytes.max(0) as usize;
    let replica = replica_of(broker, &request);
    if replica.is_some() && !broker.cluster_allowed(session, Operation::ClusterAction) {
        return FetchResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed))
            .with_session_id(0);
    }
    let mut first_hws: Option<Vec<i64>> = None;
    // A consumer's fetch needs topic READ; decided once, not at every long-poll wake-up.
    let denied: std::collections::HashSet<String> = request
        .topics
        .iter()
        .map(|t| t.topic.0.to_string())
        .filter(|name| !broker.allowed(session, Operation::Read, ResourceType::Topic, name))
        .collect();
    loop {
        // Registered before reading, so an append between the read and the wait still wakes us.
        let arrived = broker.log.data_arrived();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let (responses, gathered, any_error) =
            gather(broker, &request, &denied, isolation, max_bytes).await;
        // A follower learns of a new high watermark without waiting for new data.
        let hws: Vec<i64> = responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.high_watermark))
            .collect();
        let hw_moved = replica.is_some() && first_hws.get_or_insert_with(|| hws.clone()) != &hws;
        if gathered >= min_bytes || any_error || hw_moved || Instant::now() >= deadline {
            for topic in &responses {
                let bytes = topic
                    .partitions
                    .iter()
                    .map(|p| fetch_files::records_len(&topic.topic.0, p))
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

async fn gather(
    broker: &Broker,
    request: &FetchRequest,
    denied: &std::collections::HashSet<String>,
    isolation: Isolation,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let read_committed = isolation == Isolation::ReadCommitted;
    let replica = replica_of(broker, request);
    // A follower reads up to the log end: the high watermark waits for it.
    let isolation = if replica.is_some() {
        Isolation::LogEnd
    } else {
        isolation
    };
    fetch_files::clear();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            if denied.contains(&name) {
                any_error = true;
                data.error_code = code(ResponseError::TopicAuthorizationFailed);
                partitions.push(data);
                continue;
            }
            if let Err(error_code) =
                super::leaders::check(broker, &name, p.partition, p.current_leader_epoch)
            {
                any_error = true;
                data.error_code = error_code;
                partitions.push(data);
                continue;
            }
            let Some(log) = broker.log.partition(&name, p.partition) else {
                any_error = true;
                data.error_code = code(ResponseError::UnknownTopicOrPartition);
                partitions.push(data);
                continue;
            };
            if let (Some(replica), Some(cluster)) = (replica, &broker.cluster) {
                cluster.follower_fetched(&name, p.partition, replica, p.fetch_offset);
            }
            let limit =
                (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
            // Only until some partition has yielded data may a read exceed its limit (by its
            // first batch).
            let may_exceed = total == 0;
            let result = fetch_files::read(&log, p.fetch_offset, limit, isolation, may_exceed);
            let offsets = match &result {
                Ok(read) => read.offsets,
                Err(_) => log.offsets(),
            };
            data.high_watermark = offsets.high_watermark;
            data.last_stable_offset = offsets.last_stable_offset;
            data.log_start_offset =
                tiered::log_start_offset(broker, &name, p.partition, offsets.log_start_offset);
            match result {
                Ok(read) => {
                    total += read.len;
                    data.error_code = NONE;
                    if read_committed && read.len > 0 {
                        data.aborted_transactions = Some(aborted_transactions(
                            log.aborted_transactions(p.fetch_offset, offsets.last_stable_offset),
                        ));
                    }
                    data.records = Some(read.records);
                }
                // Below the local log start: the tier may still hold it.
                Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset,
                    ..
                }) if offset < log_start_offset => {
                    match tiered::read(broker, &name, p.partition, offset, limit).await {
                        // The tier, too, answers at least one batch: kept only where the limit
                        // may be exceeded.
                        Ok(records) if may_exceed || records.len <= limit => {
                            if read_committed {
                                let found = tiered::aborted_transactions(
                                    broker,
                                    &log,
                                    offset,
                                    records.last_offset,
                                )
                                .await;
                                match found {
                                    Ok(aborted) => {
                                        data.aborted_transactions =
                                            Some(aborted_transactions(aborted))
                                    }
                                    Err(error_code) => {
                                        any_error = true;
                                        data.error_code = error_code;
                                        partitions.push(data);
                                        continue;
                                    }
                                }
                            }
                            total += records.len;
                            data.error_code = NONE;
                            data.records =
                                Some(fetch_files::serve_remote(&name, p.partition, records));
                        }
                        Ok(_) => data.error_code = NONE,
                        Err(error_code) => {
                            any_error = true;
                            data.error_code = error_code;
                        }
                    }
                }
                Err(e) => {
                    any_error = true;
                    data.error_code = match e {
                        LogError::OffsetOutOfRange { .. } => code(ResponseError::OffsetOutOfRange),
                        other => log_error_code(&other),
                    };
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (topics, total, any_error)
}

/// The broker id of a follower's replica Fetch (in a cluster only; a consumer's is -1).
fn replica_of(broker: &Broker, request: &FetchRequest) -> Option<i32> {
    let id = request.replica_id.0.max(request.replica_state.replica_id.0);
    (broker.cluster.is_some() && id >= 0).then_some(id)
}

/// The aborted transactions a `read_committed` consumer must skip, as the response lists them.
fn aborted_transactions(
    aborted: Vec<crate::log::txn_index::AbortedTxn>,
) -> Vec<kafka_protocol::messages::fetch_response::AbortedTransaction> {
    aborted
        .into_iter()
        .map(|a| {
            kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}
