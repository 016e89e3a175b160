//! DescribeGroups' authorized operations (v3+): every GROUP operation when asked, Kafka's
//! "not requested" value otherwise.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::Cairn;

fn describe(cairn: &Cairn, version: i16, group: &str, include: bool) -> i32 {
    let mut client = cairn.client();
    let response = client.call(
        version,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))])
            .with_include_authorized_operations(include),
    );
    assert_eq!(response.groups.len(), 1);
    assert_eq!(response.groups[0].error_code, 0);
    response.groups[0].authorized_operations
}

#[test]
fn describe_groups_authorized_operations() {
    let cairn = Cairn::start(&[]);
    // READ 3, DELETE 6, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
    let all = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);
    for version in 3..=5 {
        assert_eq!(describe(&cairn, version, "g", true), all, "v{version}");
        assert_eq!(
            describe(&cairn, version, "g", false),
            i32::MIN,
            "v{version}"
        );
    }
    // Before v3 the field exists in neither direction.
    assert_eq!(describe(&cairn, 2, "g", false), i32::MIN);
}
