//! The error codes a response carries (top level, per topic, per partition, per group), for
//! `cairn_errors_total`, as Kafka's `ErrorsPerSec` counts them. Reads the response only: no
//! allocation. `NONE` is not reported. The APIs clients and Kafka's tools call are covered;
//! errors of the others (transactions, ACLs, quotas, …) are not counted yet.

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
        _ => {}
    }
}
