//! Handlers of the transaction APIs: AddPartitionsToTxn (v0–3, the client's path),
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, and InitProducerId's transactional branch. Turns
//! requests into calls on [`crate::txn::TransactionCoordinator`] and maps its errors to Kafka
//! error codes (the only place that does).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use super::Broker;
use crate::authz::{Operation, ResourceType};
use crate::group::coordinator::TxnCommitMember;
use crate::group::state::{CommittedOffset, TopicPartition};
use crate::listener::Session;
use crate::txn::TxnError;

/// The transaction APIs served, with (min, max) versions. AddPartitionsToTxn v4+ (brokers'
/// batched verification) and the transaction-version-2 bumps (EndTxn v5, TxnOffsetCommit v5)
/// are not served.
pub(super) const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
];

/// The Kafka error code of a coordinator refusal. PRODUCER_FENCED exists from KIP-588's
/// versions on (`fenced_known`); older clients are told INVALID_PRODUCER_EPOCH.
pub(super) fn txn_error_code(e: TxnError, fenced_known: bool) -> i16 {
    let e = match e {
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::ProducerFenced if fenced_known => ResponseError::ProducerFenced,
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::CoordinatorFenced => ResponseError::TransactionCoordinatorFenced,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
    };
    e.code()
}

pub(super) async fn add_partitions_to_txn(
    broker: &Broker,
    session: &Session,
    version: i16,
    r: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    // With ACLs: WRITE on the transactional id, then WRITE on each topic; as in Kafka, one
    // refused topic means nothing is added.
    let id_refused = !broker.transactional_id_allowed(
        session,
        Operation::Write,
        &r.v3_and_below_transactional_id,
    );
    let refused_topics: Vec<String> = r
        .v3_and_below_topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !broker.allowed(session, Operation::Write, ResourceType::Topic, name))
        .collect();
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for topic in &r.v3_and_below_topics {
        for &p in &topic.partitions {
            let tp = (topic.name.0.to_string(), p);
            if broker.log.partition(&tp.0, p).is_some() {
                partitions.push(tp);
            } else {
                unknown.push(tp);
            }
        }
    }
    // Kafka adds nothing when some partition is unknown: those are named, the rest are told
    // OPERATION_NOT_ATTEMPTED.
    let outcome = if id_refused {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if unknown.is_empty() && refused_topics.is_empty() {
        broker
            .txn
            .add_partitions(
                &r.v3_and_below_transactional_id.0,
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
                &partitions,
            )
            .await
            .err()
            .map_or(0, |e| txn_error_code(e, version >= 2))
    } else {
        ResponseError::OperationNotAttempted.code()
    };
    let results = r
        .v3_and_below_topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let results_by_partition = topic
                .partitions
                .iter()
                .map(|&p| {
                    let code = if !id_refused && refused_topics.contains(&name) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else if !id_refused && unknown.contains(&(name.clone(), p)) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        outcome
                    };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name)
                .with_results_by_partition(results_by_partition)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(super) async fn add_offsets_to_txn(
    broker: &Broker,
    session: &Session,
    version: i16,
    r: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    if !broker.transactional_id_allowed(session, Operation::Write, &r.transactional_id) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !broker.allowed(session, Operation::Read, ResourceType::Group, &r.group_id) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let result = match broker.groups.offsets_partition(&r.group_id.0) {
        Ok(partition) => {
            broker
                .txn
                .add_partitions(
                    &r.transactional_id.0,
                    r.producer_id.0,
                    r.producer_epoch,
                    &[partition],
                )
                .await
        }
        Err(_) => Err(TxnError::CoordinatorNotAvailable),
    };
    AddOffsetsToTxnResponse::default()
        .with_error_code(result.err().map_or(0, |e| txn_error_code(e, version >= 2)))
}

pub(super) async fn end_txn(
    broker: &Broker,
    session: &Session,
    version: i16,
    r: EndTxnRequest,
) -> EndTxnResponse {
    if !broker.transactional_id_allowed(session, Operation::Write, &r.transactional_id) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let result = broker
        .txn
        .end_txn(
            &r.transactional_id.0,
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
        )
        .await;
    EndTxnResponse::default()
        .with_error_code(result.err().map_or(0, |e| txn_error_code(e, version >= 2)))
}

pub(super) async fn txn_offset_commit(
    broker: &Broker,
    session: &Session,
    version: i16,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = r.group_id.0.to_string();
    // With ACLs: group READ, WRITE on the transactional id and READ on every topic, or
    // nothing is committed.
    let refused = if !broker.allowed(session, Operation::Read, ResourceType::Group, &group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else if !broker.transactional_id_allowed(session, Operation::Write, &r.transactional_id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if r
        .topics
        .iter()
        .any(|t| !broker.allowed(session, Operation::Read, ResourceType::Topic, &t.name))
    {
        Some(ResponseError::TopicAuthorizationFailed)
    } else {
        None
    };
    let checked = match refused {
        Some(e) => Err(e.code()),
        None => broker
            .txn
            .verify_offsets(
                &r.transactional_id.0,
                r.producer_id.0,
                r.producer_epoch,
                &group_id,
            )
            .map_err(|e| txn_error_code(e, version >= 3)),
    };
    let error = match checked {
        Err(code) => code,
        Ok(()) => {
            let now = crate::log::now_ms();
            let offsets: Vec<(TopicPartition, CommittedOffset)> = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            TopicPartition {
                                topic: t.name.0.to_string(),
                                partition: p.partition_index,
                            },
                            CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: if version >= 2 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata: p
                                    .committed_metadata
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default(),
                                commit_timestamp_ms: now,
                                expire_timestamp_ms: None,
                            },
                        )
                    })
                })
                .collect();
            // Before v3 the request names no member: Kafka's defaults ("" and -1) stand.
            let member = TxnCommitMember {
                member_id: &r.member_id,
                instance_id: r.group_instance_id.as_deref(),
                generation_id: r.generation_id,
            };
            match broker
                .groups
                .txn_commit(
                    &group_id,
                    member,
                    (r.producer_id.0, r.producer_epoch),
                    offsets,
                )
                .await
            {
                Ok(()) => {
                    crate::txn::crash::point("txn-offset-commit");
                    0
                }
                Err(e) => super::groups::coordinator_error_code(&e),
            }
        }
    };
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
