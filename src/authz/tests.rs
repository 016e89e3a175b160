//! The decision table of [`Authorizer::authorize`], one row per rule of Kafka's model.

use super::*;

fn acl(
    resource: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: resource,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: principal.into(),
        host: host.into(),
        operation,
        permission,
    }
}

fn topic_acl(
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
    p: Permission,
) -> AclBinding {
    acl(ResourceType::Topic, name, pattern, principal, "*", op, p)
}

fn authorizer(dir: &Path, extra: &[(&str, &str)]) -> Authorizer {
    let mut config = BrokerConfig::default();
    config
        .set("authorizer.class.name", AUTHORIZER_CLASSES[0])
        .unwrap();
    for (k, v) in extra {
        config.set(k, v).unwrap();
    }
    Authorizer::open(&config, dir).unwrap()
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn who(principal: &str) -> Requester<'_> {
    Requester {
        principal,
        host: LOCAL,
    }
}

fn may(a: &Authorizer, principal: &str, op: Operation, topic: &str) -> bool {
    a.authorize(who(principal), op, ResourceType::Topic, topic)
}

use Operation::*;
use PatternType::*;
use Permission::*;

#[test]
fn decision_table() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[("super.users", "User:root;User:admin")]);
    let created = a.create(vec![
        topic_acl("orders", Literal, "User:alice", Read, Allow),
        topic_acl("orders", Literal, "User:mallory", All, Allow),
        topic_acl("orders", Literal, "User:mallory", Write, Deny),
        topic_acl("logs-", Prefixed, "User:bob", Write, Allow),
        topic_acl("*", Literal, "User:carol", AlterConfigs, Allow),
        topic_acl("public", Literal, "User:*", Read, Allow),
        acl(
            ResourceType::Topic,
            "pinned",
            Literal,
            "User:dave",
            "10.0.0.1",
            Read,
            Allow,
        ),
    ]);
    assert!(created.iter().all(Result::is_ok));
    let rows: &[(&str, Operation, &str, bool)] = &[
        ("User:alice", Read, "orders", true),
        ("User:alice", Describe, "orders", true), // READ implies DESCRIBE
        ("User:alice", Write, "orders", false),
        ("User:alice", Read, "orders2", false), // literal is exact
        ("User:mallory", Read, "orders", true), // ALL
        ("User:mallory", Write, "orders", false), // DENY before ALLOW
        ("User:bob", Write, "logs-app", true),  // prefixed
        ("User:bob", Describe, "logs-app", true),
        ("User:bob", Write, "log", false),
        ("User:carol", AlterConfigs, "anything", true), // wildcard name
        ("User:carol", DescribeConfigs, "anything", true), // ALTER_CONFIGS implies it
        ("User:carol", Read, "anything", false),
        ("User:eve", Read, "public", true), // wildcard principal
        ("User:ANONYMOUS", Read, "public", true),
        ("User:dave", Read, "pinned", false), // host does not match
        ("User:root", Delete, "orders", true), // super user
        ("User:eve", Read, "nothing-here", false), // no ACL: denied by default
    ];
    for &(principal, op, topic, expected) in rows {
        assert_eq!(
            may(&a, principal, op, topic),
            expected,
            "{principal} {op:?} {topic}"
        );
    }
    // Authorized operations are the same decisions as a bitfield.
    let bits = a.authorized_operations(who("User:alice"), ResourceType::Topic, "orders");
    assert_eq!(bits, 1 << 3 | 1 << 8);
}

#[test]
fn deny_of_read_does_not_deny_describe_and_hosts_match_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[]);
    a.create(vec![
        topic_acl("t", Literal, "User:x", All, Allow),
        topic_acl("t", Literal, "User:x", Read, Deny),
        acl(
            ResourceType::Topic,
            "h",
            Literal,
            "User:x",
            "127.0.0.1",
            Write,
            Allow,
        ),
    ]);
    assert!(!may(&a, "User:x", Read, "t"));
    assert!(may(&a, "User:x", Describe, "t"));
    assert!(may(&a, "User:x", Write, "h"));
}

#[test]
fn allow_everyone_if_no_acl_found_only_for_resources_without_acls() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[("allow.everyone.if.no.acl.found", "true")]);
    a.create(vec![topic_acl(
        "secret",
        Literal,
        "User:alice",
        Read,
        Allow,
    )]);
    assert!(may(&a, "User:bob", Write, "open"));
    assert!(!may(&a, "User:bob", Read, "secret"));
    assert!(may(&a, "User:alice", Read, "secret"));
}

#[test]
fn off_allows_everything_and_an_unknown_class_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Authorizer::open(&BrokerConfig::default(), dir.path()).unwrap();
    assert!(!a.enabled());
    assert!(may(&a, "User:ANONYMOUS", Delete, "t"));
    // The config table refuses another class before the authorizer would.
    let mut config = BrokerConfig::default();
    assert!(config
        .set("authorizer.class.name", "com.example.Mine")
        .is_err());
}

#[test]
fn acls_survive_reopen_and_delete_by_filter() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[]);
    a.create(vec![
        topic_acl("a", Literal, "User:alice", Read, Allow),
        topic_acl("b-", Prefixed, "User:alice", Write, Allow),
        acl(
            ResourceType::Group,
            "g",
            Literal,
            "User:alice",
            "*",
            Read,
            Allow,
        ),
        acl(
            ResourceType::TransactionalId,
            "tx",
            Literal,
            "User:alice",
            "*",
            Write,
            Allow,
        ),
    ]);
    drop(a);
    let a = authorizer(dir.path(), &[]);
    assert!(may(&a, "User:alice", Read, "a"));
    assert!(a.authorize(
        who("User:alice"),
        Write,
        ResourceType::TransactionalId,
        "tx"
    ));
    assert!(!a.authorize(
        who("User:alice"),
        Write,
        ResourceType::TransactionalId,
        "ty"
    ));
    let every = AclFilter {
        resource_type: ResourceType::Any,
        resource_name: None,
        pattern_type: PatternType::Any,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };
    assert_eq!(a.describe(&every).len(), 4);
    let matching_b1 = AclFilter {
        resource_type: ResourceType::Topic,
        resource_name: Some("b-1".into()),
        pattern_type: Match,
        ..every.clone()
    };
    assert_eq!(a.describe(&matching_b1).len(), 1);
    let topics = AclFilter {
        resource_type: ResourceType::Topic,
        ..every.clone()
    };
    let deleted = a.delete(&[topics]).unwrap();
    assert_eq!(deleted[0].len(), 2);
    drop(a);
    let a = authorizer(dir.path(), &[]);
    assert_eq!(a.describe(&every).len(), 2);
    assert!(!may(&a, "User:alice", Read, "a"));
}

#[test]
fn invalid_acls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[]);
    let bad = [
        topic_acl("t", Literal, "alice", Read, Allow),
        topic_acl("t", Match, "User:alice", Read, Allow),
        topic_acl("t", Literal, "User:alice", Operation::Any, Allow),
        topic_acl("", Literal, "User:alice", Read, Allow),
        acl(
            ResourceType::Cluster,
            "c",
            Literal,
            "User:alice",
            "*",
            Alter,
            Allow,
        ),
    ];
    let outcomes = a.create(bad.to_vec());
    assert!(outcomes.iter().all(Result::is_err));
}

#[test]
fn idempotent_write_by_resource_type() {
    let dir = tempfile::tempdir().unwrap();
    let a = authorizer(dir.path(), &[]);
    a.create(vec![topic_acl("p-", Prefixed, "User:alice", Write, Allow)]);
    assert!(a.authorize_any(who("User:alice"), Write, ResourceType::Topic));
    assert!(!a.authorize_any(who("User:bob"), Write, ResourceType::Topic));
}

#[test]
fn without_an_authorizer_every_operation_of_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let a = Authorizer::open(&BrokerConfig::default(), dir.path()).unwrap();
    let bits = |ops: &[u32]| ops.iter().fold(0, |b, op| b | 1 << op);
    let anyone = who("User:ANONYMOUS");
    assert_eq!(
        a.authorized_operations(anyone, ResourceType::Topic, "t"),
        bits(&[3, 4, 5, 6, 7, 8, 10, 11])
    );
    assert_eq!(
        a.authorized_operations(anyone, ResourceType::Group, "g"),
        bits(&[3, 6, 8, 10, 11])
    );
    assert_eq!(
        a.authorized_operations(anyone, ResourceType::Cluster, CLUSTER_NAME),
        bits(&[5, 7, 8, 9, 10, 11, 12])
    );
}
