//! The error codes a response carries (top level, per topic, per partition, per group), for
//! `cairn_errors_total`, as Kafka's `ErrorsPerSec` counts them. Reads the response only: no
//! allocation. `NONE` is not reported. The APIs clients and Kafka's tools call are covered,
//! transactions, ACLs, quotas and SCRAM credentials included.

use kafka_protocol::messages::ResponseKind;

/// Calls `f` with every non-zero error code in `response`.
pub(super) fn for_each_error(response: &ResponseKind, mut f: impl FnMut(i16)) {
    let mut code = |c: i16| {
        if c != 0 {
            f(c)
        }
    };
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| code(p.error_code)),
        ResponseKind::Fetch(r) => {
            code(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                code(t.error_code);
                t.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            code(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| code(p.error_code));
            for g in &r.groups {
                code(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            code(r.error_code);
            r.coordinators.iter().for_each(|c| code(c.error_code));
        }
        ResponseKind::JoinGroup(r) => code(r.error_code),
        ResponseKind::SyncGroup(r) => code(r.error_code),
        ResponseKind::Heartbeat(r) => code(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            code(r.error_code);
            r.members.iter().for_each(|m| code(m.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| code(g.error_code)),
        ResponseKind::ListGroups(r) => code(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| code(g.error_code)),
        ResponseKind::ConsumerGroupHeartbeat(r) => code(r.error_code),
        ResponseKind::ApiVersions(r) => code(r.error_code),
        ResponseKind::SaslHandshake(r) => code(r.error_code),
        ResponseKind::SaslAuthenticate(r) => code(r.error_code),
        ResponseKind::InitProducerId(r) => code(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| code(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| code(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| code(c.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| code(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| code(c.error_code))
        }
        ResponseKind::DescribeCluster(r) => code(r.error_code),
        ResponseKind::AddPartitionsToTxn(r) => {
            code(r.error_code);
            r.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .chain(&r.results_by_topic_v3_and_below)
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| code(p.partition_error_code));
        }
        ResponseKind::AddOffsetsToTxn(r) => code(r.error_code),
        ResponseKind::EndTxn(r) => code(r.error_code),
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::WriteTxnMarkers(r) => r
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::DescribeTransactions(r) => {
            r.transaction_states.iter().for_each(|t| code(t.error_code))
        }
        ResponseKind::ListTransactions(r) => code(r.error_code),
        ResponseKind::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| code(p.error_code)),
        ResponseKind::DescribeAcls(r) => code(r.error_code),
        ResponseKind::CreateAcls(r) => r.results.iter().for_each(|a| code(a.error_code)),
        ResponseKind::DeleteAcls(r) => {
            for f in &r.filter_results {
                code(f.error_code);
                f.matching_acls.iter().for_each(|a| code(a.error_code));
            }
        }
        ResponseKind::DescribeClientQuotas(r) => code(r.error_code),
        ResponseKind::AlterClientQuotas(r) => r.entries.iter().for_each(|e| code(e.error_code)),
        ResponseKind::DescribeUserScramCredentials(r) => {
            code(r.error_code);
            r.results.iter().for_each(|u| code(u.error_code));
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().for_each(|u| code(u.error_code))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::alter_client_quotas_response::EntryData;
    use kafka_protocol::messages::create_acls_response::AclCreationResult;
    use kafka_protocol::messages::delete_acls_response::{
        DeleteAclsFilterResult, DeleteAclsMatchingAcl,
    };
    use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
    use kafka_protocol::messages::*;

    use super::*;

    fn codes(response: ResponseKind) -> Vec<i16> {
        let mut seen = Vec::new();
        for_each_error(&response, |c| seen.push(c));
        seen
    }

    #[test]
    fn transaction_acl_quota_and_credential_errors_are_found_where_they_sit() {
        let partition =
            |c| AddPartitionsToTxnPartitionResult::default().with_partition_error_code(c);
        let topic = |cs: &[i16]| {
            AddPartitionsToTxnTopicResult::default()
                .with_results_by_partition(cs.iter().map(|c| partition(*c)).collect())
        };
        let cases = [
            (
                ResponseKind::AddPartitionsToTxn(
                    AddPartitionsToTxnResponse::default()
                        .with_results_by_transaction(vec![AddPartitionsToTxnResult::default()
                            .with_topic_results(vec![topic(&[0, 53])])])
                        .with_results_by_topic_v3_and_below(vec![topic(&[48])]),
                ),
                vec![53, 48],
            ),
            (
                ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(47)),
                vec![47],
            ),
            (
                ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(vec![
                    AclCreationResult::default(),
                    AclCreationResult::default().with_error_code(31),
                ])),
                vec![31],
            ),
            (
                ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(vec![
                    DeleteAclsFilterResult::default().with_matching_acls(vec![
                        DeleteAclsMatchingAcl::default().with_error_code(87),
                    ]),
                ])),
                vec![87],
            ),
            (
                ResponseKind::AlterClientQuotas(
                    AlterClientQuotasResponse::default()
                        .with_entries(vec![EntryData::default().with_error_code(42)]),
                ),
                vec![42],
            ),
            (
                ResponseKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsResponse::default().with_results(vec![
                        DescribeUserScramCredentialsResult::default().with_error_code(91),
                    ]),
                ),
                vec![91],
            ),
            (
                ResponseKind::ListTransactions(ListTransactionsResponse::default()),
                vec![],
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(codes(response), expected);
        }
    }
}
