//! Authorized operations (KIP-430): the bitfield of ACL operations a client may perform on a
//! topic, a group or the cluster, which Metadata, DescribeCluster and DescribeGroups return when
//! the client asks for it.
//!
//! Answers from the authorizer ([`crate::authz`]); without one, Kafka grants every operation
//! its ACL model defines for the resource's type, and Cairn answers the same. Knows nothing of
//! requests beyond "was it asked for".

use super::{requester, Broker};
pub(super) use crate::authz::ResourceType;
use crate::listener::Session;

/// Kafka's value of an `authorized_operations` field the client did not ask for.
const NOT_REQUESTED: i32 = i32::MIN;

/// The `authorized_operations` value for the resource `name` of type `resource`: the bitfield
/// of the operations `session` may perform when `requested`, [`NOT_REQUESTED`] otherwise.
pub(super) fn authorized_operations(
    broker: &Broker,
    session: &Session,
    resource: ResourceType,
    name: &str,
    requested: bool,
) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    broker
        .authorizer
        .authorized_operations(requester(session), resource, name)
}
