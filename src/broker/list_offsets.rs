//! ListOffsets (by special value or timestamp) and OffsetForLeaderEpoch.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use super::errors::{code, log_error_code, NONE};
use super::{tiered, Broker};
use crate::log::{LogError, Partition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const READ_COMMITTED: i8 = 1;

/// The only leader epoch this single node has had.
pub(super) const LEADER_EPOCH: i32 = 0;

pub(super) async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = version >= 2 && request.isolation_level == READ_COMMITTED;
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if let Err(error_code) =
                super::leaders::check(broker, &name, p.partition_index, p.current_leader_epoch)
            {
                partitions.push(
                    r.with_error_code(error_code)
                        .with_timestamp(-1)
                        .with_offset(-1),
                );
                continue;
            }
            let Some(log) = broker.log.partition(&name, p.partition_index) else {
                partitions.push(
                    r.with_error_code(code(ResponseError::UnknownTopicOrPartition))
                        .with_timestamp(-1)
                        .with_offset(-1),
                );
                continue;
            };
            let query = Query {
                broker,
                topic: &name,
                log: &log,
                read_committed,
                version,
            };
            partitions.push(match query.lookup(p.timestamp).await {
                Ok((offset, timestamp)) => {
                    let mut r = r
                        .with_error_code(NONE)
                        .with_offset(offset)
                        .with_timestamp(timestamp);
                    if version >= 4 {
                        r.leader_epoch = match offset {
                            o if o < 0 => -1,
                            o if broker.cluster.is_some() => log.epoch_of_offset(o),
                            _ => LEADER_EPOCH,
                        };
                    }
                    r
                }
                Err(error_code) => r
                    .with_error_code(error_code)
                    .with_timestamp(-1)
                    .with_offset(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// One partition's ListOffsets query.
struct Query<'a> {
    broker: &'a Broker,
    topic: &'a str,
    log: &'a Partition,
    read_committed: bool,
    version: i16,
}

impl Query<'_> {
    /// (offset, timestamp) for one ListOffsets query. The earliest offset and timestamp
    /// lookups cover the whole log, tier included.
    async fn lookup(&self, timestamp: i64) -> Result<(i64, i64), i16> {
        let (log, version) = (self.log, self.version);
        let offsets = log.offsets();
        let index = log.partition_index();
        let local_start = offsets.log_start_offset;
        let found = |r: Result<Option<(i64, i64)>, LogError>| match r {
            Ok(Some((offset, ts))) => Ok((offset, ts)),
            Ok(None) => Ok((-1, -1)),
            Err(e) => Err(log_error_code(&e)),
        };
        match timestamp {
            LATEST if self.read_committed => Ok((offsets.last_stable_offset, -1)),
            LATEST => Ok((offsets.high_watermark, -1)),
            EARLIEST => Ok((
                tiered::log_start_offset(self.broker, self.topic, index, local_start),
                -1,
            )),
            EARLIEST_LOCAL if version >= 8 => Ok((local_start, -1)),
            // KIP-1005: the last offset the tier holds, -1 when it holds none.
            LATEST_TIERED if version >= 9 => Ok((
                tiered::tiered_end(self.broker, self.topic, index).map_or(-1, |end| end - 1),
                -1,
            )),
            MAX_TIMESTAMP if version >= 7 => {
                let remote =
                    tiered::max_timestamp(self.broker, self.topic, index, local_start).await?;
                match (remote, found(log.max_timestamp())?) {
                    // On a tie the earlier record, which is the remote one, wins.
                    (Some(r), local) if r.1 >= local.1 => Ok(r),
                    (_, local) => Ok(local),
                }
            }
            ts if ts >= 0 => {
                let remote =
                    tiered::offset_for_timestamp(self.broker, self.topic, index, ts, local_start)
                        .await?;
                match remote {
                    Some(hit) => Ok(hit),
                    None => found(log.offset_for_timestamp(ts)),
                }
            }
            _ => Err(code(ResponseError::InvalidRequest)),
        }
    }
}

/// A single node has had one leader epoch (0) for every partition, so the end offset of epoch 0
/// is the log end offset, and any later epoch is unknown; a cluster answers from each
/// partition's epoch cache.
pub(super) fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(log) = broker.log.partition(&name, p.partition) else {
                        return r.with_error_code(code(ResponseError::UnknownTopicOrPartition));
                    };
                    // In a cluster the partition's epochs are etcd's, stamped in its batches
                    // and kept in its leader-epoch-checkpoint (and, below the local log, in
                    // the tier's manifest).
                    if broker.cluster.is_some() {
                        if let Err(error_code) = super::leaders::check(
                            broker,
                            &name,
                            p.partition,
                            p.current_leader_epoch,
                        ) {
                            return r.with_error_code(error_code);
                        }
                        let (epoch, end_offset) =
                            super::tiered::end_offset_for_epoch(broker, &log, p.leader_epoch);
                        return r
                            .with_error_code(NONE)
                            .with_leader_epoch(epoch)
                            .with_end_offset(end_offset);
                    } else if p.current_leader_epoch > LEADER_EPOCH {
                        return r.with_error_code(code(ResponseError::UnknownLeaderEpoch));
                    }
                    if p.leader_epoch > LEADER_EPOCH {
                        return r.with_error_code(NONE);
                    }
                    r.with_error_code(NONE)
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_end_offset(log.offsets().log_end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
