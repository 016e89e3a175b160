//! Authorized operations (KIP-430): the bitfield of ACL operations a client may perform on a
//! topic, a group or the cluster, which Metadata, DescribeCluster and DescribeGroups return when
//! the client asks for it.
//!
//! The one place that decides it, so an authorizer plugs in here and nowhere else. Cairn has none
//! yet, and without one Kafka grants every operation its ACL model defines for the resource's
//! type; Cairn answers the same. Knows nothing of requests beyond "was it asked for".

/// Kafka's value of an `authorized_operations` field the client did not ask for.
const NOT_REQUESTED: i32 = i32::MIN;

/// The kinds of resource whose authorized operations a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResourceType {
    Topic,
    Group,
    Cluster,
}

/// Kafka's ACL operations, by their wire codes (the bit each sets in the bitfield).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

impl ResourceType {
    /// The operations Kafka's ACL model defines for this resource type.
    fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
        }
    }
}

/// The `authorized_operations` value for a resource of type `resource`: the bitfield of the
/// operations the client may perform when `requested`, [`NOT_REQUESTED`] otherwise.
pub(super) fn authorized_operations(resource: ResourceType, requested: bool) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    // No authorizer: every operation defined for the type is allowed.
    resource
        .operations()
        .iter()
        .fold(0, |bits, &op| bits | 1 << op as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(ops: &[u32]) -> i32 {
        ops.iter().fold(0, |b, op| b | 1 << op)
    }

    #[test]
    fn every_operation_of_the_type_without_an_authorizer() {
        assert_eq!(
            authorized_operations(ResourceType::Topic, true),
            bits(&[3, 4, 5, 6, 7, 8, 10, 11])
        );
        assert_eq!(
            authorized_operations(ResourceType::Group, true),
            bits(&[3, 6, 8, 10, 11])
        );
        assert_eq!(
            authorized_operations(ResourceType::Cluster, true),
            bits(&[5, 7, 8, 9, 10, 11, 12])
        );
    }

    #[test]
    fn not_requested_is_kafkas_marker() {
        for r in [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
        ] {
            assert_eq!(authorized_operations(r, false), i32::MIN);
        }
    }
}
