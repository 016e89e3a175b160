//! ElectLeaders (API 43, KIP-460; `kafka-leader-election`): PREFERRED and UNCLEAN elections,
//! run by [`crate::cluster`] in a cluster. On a single node every partition already has its
//! one replica as leader, so each election is ELECTION_NOT_NEEDED. Needs ALTER on the cluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors::NONE;
use super::{leaders, Broker};
use crate::authz::Operation;
use crate::cluster::{ElectionRefusal, ElectionType};
use crate::listener::Session;

pub(super) async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let refused = if !broker.cluster_allowed(session, Operation::Alter) {
        Some(ResponseError::ClusterAuthorizationFailed)
    } else if version >= 1 && !(0..=1).contains(&request.election_type) {
        Some(ResponseError::InvalidRequest)
    } else {
        None
    };
    let requested: Option<Vec<(String, i32)>> = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    if let Some(error) = refused {
        // v0 has no top-level error: every partition asked for carries it.
        let results = requested
            .unwrap_or_default()
            .into_iter()
            .map(|tp| (tp, Err(error)))
            .collect();
        return response(version, error.code(), results);
    }
    let kind = if request.election_type == 1 {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let results = match &broker.cluster {
        Some(cluster) => cluster
            .elect_leaders(kind, requested)
            .await
            .into_iter()
            .map(|(tp, r)| (tp, r.map_err(refusal)))
            .collect(),
        None => requested
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, index)| {
                let exists = leaders::topic(broker, &topic)
                    .is_some_and(|t| t.partitions.iter().any(|p| p.index == index));
                let error = if exists {
                    ResponseError::ElectionNotNeeded
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                ((topic, index), Err(error))
            })
            .collect(),
    };
    response(version, NONE, results)
}

/// The Kafka error of a refused election.
fn refusal(r: ElectionRefusal) -> ResponseError {
    match r {
        ElectionRefusal::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ElectionRefusal::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        ElectionRefusal::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
        ElectionRefusal::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
        ElectionRefusal::NotWritten => ResponseError::RequestTimedOut,
    }
}

/// The response: results grouped by topic, in the order asked.
fn response(
    version: i16,
    error_code: i16,
    results: Vec<((String, i32), Result<(), ResponseError>)>,
) -> ElectLeadersResponse {
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, index), result) in results {
        let (code, message) = match result {
            Ok(()) => (NONE, None),
            Err(e) => (e.code(), Some(StrBytes::from_string(e.to_string()))),
        };
        let partition = PartitionResult::default()
            .with_partition_id(index)
            .with_error_code(code)
            .with_error_message(message);
        match by_topic.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partition_result.push(partition),
            _ => by_topic.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(vec![partition]),
            ),
        }
    }
    let response = ElectLeadersResponse::default().with_replica_election_results(by_topic);
    if version >= 1 {
        response.with_error_code(error_code)
    } else {
        response
    }
}
