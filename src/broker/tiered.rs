//! What the handlers ask of the object-storage tier: the start of the whole log (tier and local
//! disk), and records, timestamps and DeleteRecords below the local log start. Maps the tier's
//! errors to Kafka codes (all retriable: a store that is down or a corrupt object must not make
//! a consumer skip data). Without a tier every answer is the local one.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::errors::{code, tier_error_code};
use super::Broker;
use crate::log::txn_index::AbortedTxn;
use crate::log::Partition;
use crate::tier::manifest::partition_dir;
use crate::tier::read::RemoteRecords;

/// The log start offset a client sees: the tier's start when it holds offsets below the local
/// log start.
pub(super) fn log_start_offset(broker: &Broker, topic: &str, partition: i32, local: i64) -> i64 {
    match &broker.tier {
        Some(tier) => tier.remote.log_start_offset(topic, partition, local),
        None => local,
    }
}

/// Records at `offset`, below the local log start, from the tier. OFFSET_OUT_OF_RANGE when the
/// tier does not hold it; a retriable KAFKA_STORAGE_ERROR while the partition's manifest is not
/// read yet or the store fails.
pub(super) async fn read(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: usize,
) -> Result<RemoteRecords, i16> {
    let Some(tier) = &broker.tier else {
        return Err(code(ResponseError::OffsetOutOfRange));
    };
    match tier
        .remote
        .read_pieces(topic, partition, offset, max_bytes)
        .await
    {
        Ok(Some(records)) => Ok(records),
        Ok(None) if tier.remote.knows(topic, partition) || !tiered_topic(broker, topic) => {
            Err(code(ResponseError::OffsetOutOfRange))
        }
        Ok(None) => Err(code(ResponseError::KafkaStorageError)),
        Err(e) => {
            // Logged where it is found (a corrupt object once, by its key; a store outage by
            // the uploader), not per request.
            tracing::debug!(topic, partition, offset, error = %e, "cannot read from the tier");
            Err(tier_error_code(&e))
        }
    }
}

/// The aborted transactions a `read_committed` consumer must skip in records read from the tier
/// at `from` up to `last_offset`: the tier's transaction indexes, then the local log's (no
/// partition lock is held across the store's answer). An error when the tier cannot answer
/// (a damaged log object, an outage): the records are not served rather than served unfiltered.
pub(super) async fn aborted_transactions(
    broker: &Broker,
    log: &Partition,
    from: i64,
    last_offset: i64,
) -> Result<Vec<AbortedTxn>, i16> {
    let Some(tier) = &broker.tier else {
        return Ok(Vec::new());
    };
    let upper = from.max(last_offset + 1);
    let (topic, partition) = (log.topic(), log.partition_index());
    let local_start = log.offsets().log_start_offset;
    let found = tier
        .remote
        .aborted_transactions(topic, partition, (from, upper), local_start)
        .await;
    let (mut aborted, complete) = match found {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(topic, partition, from, error = %e, "cannot read the tier's transaction index");
            return Err(tier_error_code(&e));
        }
    };
    if !complete {
        aborted.extend(log.aborted_transactions(from, upper));
    }
    aborted.sort_by_key(|a| (a.last_offset, a.producer_id));
    aborted.dedup_by_key(|a| (a.last_offset, a.producer_id));
    Ok(aborted)
}

/// The first offset at or after `timestamp` among what only the tier holds (below
/// `local_start`), with its timestamp; `Ok(None)` when the answer lies in the local log.
pub(super) async fn offset_for_timestamp(
    broker: &Broker,
    topic: &str,
    partition: i32,
    timestamp: i64,
    local_start: i64,
) -> Result<Option<(i64, i64)>, i16> {
    let Some(tier) = &broker.tier else {
        return Ok(None);
    };
    match tier
        .remote
        .offset_for_timestamp(topic, partition, timestamp, local_start)
        .await
    {
        Ok(found) => Ok(found),
        Err(e) => {
            tracing::debug!(topic, partition, timestamp, error = %e, "cannot search the tier by time");
            Err(tier_error_code(&e))
        }
    }
}

/// The record with the largest timestamp among what only the tier holds (below
/// `local_start`), as (offset, timestamp).
pub(super) async fn max_timestamp(
    broker: &Broker,
    topic: &str,
    partition: i32,
    local_start: i64,
) -> Result<Option<(i64, i64)>, i16> {
    let Some(tier) = &broker.tier else {
        return Ok(None);
    };
    tier.remote
        .max_timestamp(topic, partition, local_start)
        .await
        .map_err(|e| {
            tracing::debug!(topic, partition, error = %e, "cannot search the tier by time");
            tier_error_code(&e)
        })
}

/// The end (exclusive) of what the tier holds, for ListOffsets' latest-tiered (-5).
pub(super) fn tiered_end(broker: &Broker, topic: &str, partition: i32) -> Option<i64> {
    broker.tier.as_ref()?.remote.end_offset(topic, partition)
}

/// Moves the tier's start of a topic with remote storage, or of an internal topic (copied to the
/// tier too), to `offset` (DeleteRecords), durably in the bucket before it returns, so a restore
/// never brings the deleted records back; a retriable KAFKA_STORAGE_ERROR (nothing deleted) when
/// the store fails or does not answer within `timeout`.
pub(super) async fn delete_records_before(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<(), i16> {
    let (Some(tier), Some(info)) = (&broker.tier, broker.log.topic(topic)) else {
        return Ok(());
    };
    if !info.internal && !tiered_topic(broker, topic) {
        return Ok(());
    }
    let dir = partition_dir(&info.topic_id, partition);
    tier.delete_records_before(&dir, topic, partition, offset, timeout)
        .await
        .map_err(|e| {
            tracing::warn!(topic, partition, offset, error = %e,
                "cannot record DeleteRecords in the tier; nothing deleted");
            tier_error_code(&e)
        })
}

fn tiered_topic(broker: &Broker, topic: &str) -> bool {
    broker
        .log
        .topic_config(topic)
        .is_some_and(|c| c.remote_storage_enable)
}

/// Where `epoch` ends in the partition's whole log (see `LeaderEpochCache::end_offset_for`):
/// the tier's epochs below the local log start, then the local cache's, so an epoch only the
/// tier holds answers as it would on disk.
pub(super) fn end_offset_for_epoch(broker: &Broker, log: &Partition, epoch: i32) -> (i32, i64) {
    let manifest = broker
        .tier
        .as_ref()
        .and_then(|tier| tier.remote.manifest_of(log.topic(), log.partition_index()));
    let offsets = log.offsets();
    match manifest {
        Some(m)
            if m.segments
                .first()
                .is_some_and(|s| s.base_offset < offsets.log_start_offset) =>
        {
            crate::tier::epochs::whole_log(&m, offsets.log_start_offset, &log.leader_epochs())
                .end_offset_for(epoch, offsets.log_end_offset)
        }
        _ => log.end_offset_for_epoch(epoch),
    }
}
