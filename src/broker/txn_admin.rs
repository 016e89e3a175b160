//! Handlers of the transaction admin APIs that `kafka-transactions` uses: ListTransactions
//! (v0–1, with KIP-994's duration filter), DescribeTransactions and DescribeProducers read the
//! transaction coordinator's metadata and the partitions' producer state, filtered by the
//! requester's ACLs as Kafka does (DESCRIBE on a transactional id to see it, DESCRIBE on a
//! topic to see its partitions in a transaction, READ on a topic for its producers);
//! WriteTxnMarkers (v1, cluster CLUSTER_ACTION) writes the marker that `kafka-transactions
//! abort` sends for a hanging transaction, through the coordinator's marker path. Maps what
//! is missing or refused to Kafka's error codes.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::log_error_code;
use super::txn::txn_error_code;
use super::Broker;
use crate::authz::{Operation, ResourceType};
use crate::group::offsets::OFFSETS_TOPIC;
use crate::listener::Session;
use crate::txn::state::TxnMetadata;

/// The APIs served here, with (min, max) versions. ListTransactions v2 (KIP-1152's
/// transactional id pattern) is not served.
pub(super) const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::WriteTxnMarkers, 1, 1),
];

/// Kafka's names of the states a ListTransactions filter may name ("Dead" is known but no
/// transaction is ever listed in it here).
const STATE_NAMES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "PrepareEpochFence",
    "Dead",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn list_transactions(
    broker: &Broker,
    session: &Session,
    r: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let unknown: Vec<StrBytes> = r
        .state_filters
        .iter()
        .filter(|s| !STATE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    let listed = broker
        .txn
        .list()
        .into_iter()
        .filter(|t| {
            let m = &t.metadata;
            (r.state_filters.is_empty()
                || r.state_filters.iter().any(|s| s.as_str() == m.state.name()))
                && (r.producer_id_filters.is_empty()
                    || r.producer_id_filters.contains(&ProducerId(m.producer_id)))
                // KIP-994: only transactions running longer than the filter (-1: no filter).
                && (r.duration_filter < 0 || now - m.start_ms > r.duration_filter)
        })
        .filter(|t| {
            broker.transactional_id_allowed(session, Operation::Describe, &t.transactional_id)
        })
        .map(|t| {
            ListedTxn::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(t.transactional_id)))
                .with_producer_id(ProducerId(t.metadata.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.metadata.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}

pub(super) fn describe_transactions(
    broker: &Broker,
    session: &Session,
    r: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let all: HashMap<String, TxnMetadata> = broker
        .txn
        .list()
        .into_iter()
        .map(|t| (t.transactional_id, t.metadata))
        .collect();
    let states = r
        .transactional_ids
        .into_iter()
        .map(|id| {
            let described = DescribedTxn::default().with_transactional_id(id.clone());
            if !broker.transactional_id_allowed(session, Operation::Describe, &id) {
                return described
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            let Some(m) = all.get(id.0.as_str()) else {
                return described.with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            // As in Kafka, the partitions of topics the requester may not describe are left out.
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, p) in &m.partitions {
                if broker.allowed(session, Operation::Describe, ResourceType::Topic, topic) {
                    topics.entry(topic).or_default().push(*p);
                }
            }
            described
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(super) fn describe_producers(
    broker: &Broker,
    session: &Session,
    r: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|topic| {
            let readable =
                broker.allowed(session, Operation::Read, ResourceType::Topic, &topic.name);
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    if !readable {
                        return answer
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.log.partition(&topic.name, index) else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let producers = partition
                        .producers()
                        .into_iter()
                        .map(|(id, e)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(e.epoch.into())
                                .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(e.last_timestamp)
                                .with_coordinator_epoch(e.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    e.current_txn_first_offset.unwrap_or(-1),
                                )
                        })
                        .collect();
                    answer.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

pub(super) async fn write_txn_markers(
    broker: &Broker,
    session: &Session,
    r: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = broker.cluster_allowed(session, Operation::ClusterAction);
    let mut markers = Vec::with_capacity(r.markers.len());
    for marker in r.markers {
        let (pid, epoch, commit) = (
            marker.producer_id.0,
            marker.producer_epoch,
            marker.transaction_result,
        );
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in marker.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for &index in &topic.partition_indexes {
                let code = if !allowed {
                    ResponseError::ClusterAuthorizationFailed.code()
                } else if let Some(partition) = broker.log.partition(&topic.name, index) {
                    match broker.txn.write_marker(
                        &partition,
                        pid,
                        epoch,
                        commit,
                        marker.coordinator_epoch,
                    ) {
                        Err(e) => txn_error_code(e, true),
                        Ok(Err(e)) => log_error_code(&e),
                        Ok(Ok(end)) => {
                            if topic.name.0.as_str() == OFFSETS_TOPIC {
                                broker.groups.complete_txn(pid, commit);
                            }
                            match partition.wait_durable(end).await {
                                Ok(()) => 0,
                                Err(e) => log_error_code(&e),
                            }
                        }
                    }
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
