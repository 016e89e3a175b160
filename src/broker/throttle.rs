//! Client quotas applied to requests, as Kafka applies them: a Produce's bytes count against
//! `producer_byte_rate`, a Fetch's answer against `consumer_byte_rate` (a throttled Fetch
//! answers no data, so the bytes are taken back), and every request's handling time against
//! `request_percentage`. A client over any of them gets the longest throttle time in the
//! response's `throttle_time_ms` (every response that has the field, as Kafka) and its
//! connection is muted for that long.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{FetchResponse, RequestHeader, RequestKind, ResponseKind};
use tracing::debug;

use super::Broker;
use crate::listener::Session;
use crate::quota::QuotaKey;

/// The record bytes a Produce request carries (what `producer_byte_rate` counts).
pub(super) fn produced_bytes(request: &RequestKind) -> Option<usize> {
    let RequestKind::Produce(produce) = request else {
        return None;
    };
    Some(
        produce
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum(),
    )
}

/// Records the request against the client's quotas and, when it went over, sets the throttle
/// time in the response and mutes the connection. `busy` is the time spent handling it.
pub(super) fn apply(
    broker: &Broker,
    session: &Session,
    header: &RequestHeader,
    produced: Option<usize>,
    busy: Duration,
    mut response: Option<ResponseKind>,
) -> Option<ResponseKind> {
    let quotas = &broker.quotas;
    let user = session
        .principal
        .strip_prefix("User:")
        .unwrap_or(&session.principal);
    let client_id = header.client_id.as_deref().unwrap_or("");
    let now = Instant::now();
    // Kafka counts request time in percent of a second per second.
    let mut throttle = quotas.record(
        QuotaKey::RequestPercentage,
        user,
        client_id,
        busy.as_secs_f64() * 100.0,
        now,
    );
    if let Some(bytes) = produced {
        throttle = throttle.max(quotas.record(
            QuotaKey::ProducerByteRate,
            user,
            client_id,
            bytes as f64,
            now,
        ));
    }
    if let Some(ResponseKind::Fetch(fetch)) = &mut response {
        let bytes = fetched_bytes(fetch) as f64;
        let fetch_throttle = quotas.record(QuotaKey::ConsumerByteRate, user, client_id, bytes, now);
        if !fetch_throttle.is_zero() {
            // As Kafka: a throttled Fetch sends no data, so its bytes do not count.
            quotas.unrecord(QuotaKey::ConsumerByteRate, user, client_id, bytes, now);
            *fetch = FetchResponse::default();
        }
        throttle = throttle.max(fetch_throttle);
    }
    if throttle.is_zero() {
        return response;
    }
    session.mute.mute_for(throttle);
    let ms = throttle.as_millis().min(i32::MAX as u128) as i32;
    debug!(
        user,
        client_id,
        throttle_ms = ms,
        "client quota exceeded: throttled and muted"
    );
    if let Some(r) = &mut response {
        set_throttle_time(r, ms);
    }
    response
}

/// Puts `ms` in the response's `throttle_time_ms`, on every response that has one (a version
/// without the field does not send it).
fn set_throttle_time(response: &mut ResponseKind, ms: i32) {
    macro_rules! throttled {
        ($($kind:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                _ => {}
            }
        };
    }
    throttled!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        DeleteGroups,
        IncrementalAlterConfigs,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        DescribeTopicPartitions,
    );
}

fn fetched_bytes(fetch: &FetchResponse) -> usize {
    fetch
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref().map(|r| r.len()))
        .sum()
}
