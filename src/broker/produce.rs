//! Produce: validate, append, and (for acks=all) answer once the data is durable, or, for a
//! replicated partition of a cluster, once every in-sync replica has it (its high watermark
//! passed it) and the ISR is at least `min.insync.replicas`.
//!
//! A batch refused because of some of its records is answered (v8+) with those records' indexes
//! and reasons in `record_errors` (KIP-467), so the client fails exactly them and may resend the
//! others.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::errors::{code, log_error_code, NONE};
use super::Broker;
use crate::authz::{Operation, ResourceType};
use crate::cluster::AckRefusal;
use crate::listener::Session;
use crate::log::{AppendInfo, AppendOrigin, LogError, Partition};

/// The lowest Produce version served (v0–2 carry message formats removed in Kafka 4.0).
const MIN_SERVED_VERSION: i16 = 3;

struct Outcome {
    index: i32,
    result: Result<AppendInfo, Refusal>,
}

/// A partition's failed produce, as its response tells it.
struct Refusal {
    error_code: i16,
    message: Option<String>,
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

impl Refusal {
    fn code(error_code: i16) -> Refusal {
        Refusal {
            error_code,
            message: None,
            record_errors: Vec::new(),
        }
    }

    fn log(error: &LogError) -> Refusal {
        let record_errors = match error {
            LogError::RecordsRefused { records } => records
                .iter()
                .map(|r| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(r.batch_index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(
                            r.message.clone(),
                        )))
                })
                .collect(),
            _ => Vec::new(),
        };
        Refusal {
            error_code: log_error_code(error),
            message: Some(error.to_string()),
            record_errors,
        }
    }
}

pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let refuse_all = if version < MIN_SERVED_VERSION {
        Some(ResponseError::UnsupportedVersion)
    } else if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else if request.transactional_id.is_none() && has_transactional_batch(&request) {
        // Kafka's answer to transactional records without a transactional id.
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !broker.transactional_id_allowed(session, Operation::Write, id))
    {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        None
    };
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut to_await: Vec<(usize, usize, std::sync::Arc<Partition>, i64)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        // Writing needs topic WRITE; a topic refused is refused whether it exists or not.
        let refuse_topic = refuse_all.or_else(|| {
            (!broker.allowed(session, Operation::Write, ResourceType::Topic, &name))
                .then_some(ResponseError::TopicAuthorizationFailed)
        });
        let mut outcomes = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let not_served = refuse_topic
                .is_none()
                .then(|| super::leaders::check(broker, &name, data.index, -1).err())
                .flatten()
                .or_else(|| {
                    (acks == -1 && refuse_topic.is_none())
                        .then(|| insync_refusal(broker, &name, data.index))
                        .flatten()
                });
            let partition = broker
                .log
                .partition(&name, data.index)
                .filter(|_| refuse_topic.is_none() && not_served.is_none());
            let bytes = data.records.as_ref().map_or(0, |r| r.len());
            let result = match (refuse_topic, &partition) {
                (Some(e), _) => Err(Refusal::code(code(e))),
                (None, _) if not_served.is_some() => {
                    Err(Refusal::code(not_served.expect("checked")))
                }
                (None, None) => Err(Refusal::code(code(ResponseError::UnknownTopicOrPartition))),
                (None, Some(log)) => {
                    match (&request.transactional_id, transactional(&data.records)) {
                        (Some(id), Some((producer_id, epoch))) => broker
                            .txn
                            .append_transactional(
                                &id.0,
                                producer_id,
                                epoch,
                                (name.clone(), data.index),
                                || append(log, data.records),
                            )
                            .unwrap_or_else(|e| Err(Refusal::code(txn_refusal_code(e)))),
                        _ => append(log, data.records),
                    }
                }
            };
            if let Some(info) = result.as_ref().ok().filter(|info| !info.duplicate) {
                let records = (info.last_offset - info.base_offset + 1) as u64;
                broker.metrics.produced(&name, bytes, records);
            }
            if let (Ok(info), -1, Some(partition)) = (&result, acks, partition) {
                to_await.push((
                    topics.len(),
                    outcomes.len(),
                    partition,
                    info.last_offset + 1,
                ));
            }
            outcomes.push(Outcome {
                index: data.index,
                result,
            });
        }
        topics.push((topic.name, outcomes));
    }
    // acks=all: answer after fsync. Every partition was appended first, so one flush (group
    // commit) usually covers them all.
    let appended = std::time::Instant::now();
    let awaited = !to_await.is_empty();
    for (t, p, partition, end) in to_await {
        if let Some(cluster) = broker
            .cluster
            .as_ref()
            .filter(|c| c.is_replicated(partition.topic()))
        {
            let waited = cluster
                .wait_replicated(&partition, end, timeout.max(Duration::from_millis(1)))
                .await;
            if let Err(refusal) = waited {
                topics[t].1[p].result = Err(Refusal::code(ack_refusal_code(refusal)));
            }
            continue;
        }
        let waited = tokio::time::timeout(
            timeout.max(Duration::from_millis(1)),
            partition.wait_durable(end),
        )
        .await;
        let failure = match waited {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Refusal::log(&e)),
            Err(_) => Some(Refusal::code(code(ResponseError::RequestTimedOut))),
        };
        if let Some(f) = failure {
            topics[t].1[p].result = Err(f);
        }
    }
    if awaited {
        broker.metrics.produce_durable(appended.elapsed());
    }
    if acks == 0 {
        return None;
    }
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            let partition_responses = outcomes
                .into_iter()
                .map(|o| {
                    let r = PartitionProduceResponse::default().with_index(o.index);
                    match o.result {
                        Ok(info) => {
                            let mut r = r
                                .with_error_code(NONE)
                                .with_base_offset(info.base_offset)
                                .with_log_append_time_ms(info.log_append_time);
                            if version >= 5 {
                                r.log_start_offset = info.log_start_offset;
                            }
                            r
                        }
                        Err(refusal) => {
                            let mut r = r
                                .with_error_code(refusal.error_code)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1);
                            if version >= 5 {
                                r.log_start_offset = -1;
                            }
                            if version >= 8 {
                                r.error_message = refusal.message.map(StrBytes::from_string);
                                r.record_errors = refusal.record_errors;
                            }
                            r
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// NOT_ENOUGH_REPLICAS for an acks=all write to a replicated partition whose ISR is smaller
/// than `min.insync.replicas`.
fn insync_refusal(broker: &Broker, topic: &str, partition: i32) -> Option<i16> {
    let cluster = broker.cluster.as_ref().filter(|c| c.is_replicated(topic))?;
    cluster
        .check_insync(topic, partition)
        .err()
        .map(ack_refusal_code)
}

fn ack_refusal_code(refusal: AckRefusal) -> i16 {
    code(match refusal {
        AckRefusal::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        AckRefusal::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        AckRefusal::NotLeader => ResponseError::NotLeaderOrFollower,
        AckRefusal::TimedOut => ResponseError::RequestTimedOut,
    })
}

fn append(log: &Partition, records: Option<Bytes>) -> Result<AppendInfo, Refusal> {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err(Refusal {
            message: Some("no record batch in the request".into()),
            ..Refusal::code(code(ResponseError::CorruptMessage))
        });
    };
    // compression.type: batches in another codec are stored in the topic's.
    let records = crate::log::recompress::to_codec(records, log.config().compression)
        .map_err(|e| Refusal::log(&e))?;
    log.append(records, AppendOrigin::Client).map_err(|e| {
        if !matches!(e, LogError::OutOfOrderSequence { .. }) {
            debug!(topic = log.topic(), partition = log.partition_index(), error = %e, "produce refused");
        }
        Refusal::log(&e)
    })
}

/// (producer id, epoch) of a transactional batch: attributes bit 4 of its header.
fn transactional(records: &Option<Bytes>) -> Option<(i64, i16)> {
    let r = records.as_ref().filter(|r| r.len() >= 61)?;
    let attributes = i16::from_be_bytes([r[21], r[22]]);
    (attributes & (1 << 4) != 0).then(|| {
        (
            i64::from_be_bytes(r[43..51].try_into().expect("8 bytes")),
            i16::from_be_bytes([r[51], r[52]]),
        )
    })
}

fn has_transactional_batch(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .any(|p| transactional(&p.records).is_some())
}

/// A transactional write the coordinator refuses: Produce speaks of epochs, not fencing.
fn txn_refusal_code(e: crate::txn::TxnError) -> i16 {
    super::txn::txn_error_code(e, false)
}
