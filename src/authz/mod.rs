//! Authorization: Kafka's ACL model, the one place that decides whether a principal may perform
//! an operation on a resource.
//!
//! Turned on by `authorizer.class.name` naming Kafka's StandardAuthorizer (or the older
//! AclAuthorizer); without it every request is allowed, as in Kafka without an authorizer. The
//! decision follows StandardAuthorizer: a super user may do anything; otherwise the ACLs whose
//! pattern matches the resource (LITERAL by name or `*`, PREFIXED by prefix) and whose principal
//! and host match the client (or `*`) are consulted, a matching DENY wins over any ALLOW, an
//! ALLOW of READ/WRITE/DELETE/ALTER implies DESCRIBE and of ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS, ALL covers every operation, and a resource with no ACL at all is allowed
//! only when `allow.everyone.if.no.acl.found` is true. The ACLs are kept durably in
//! [`store`]. Knows nothing of Kafka requests: handlers ask [`Authorizer::authorize`] and map
//! a refusal to their API's error code.

mod store;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::config::BrokerConfig;

/// The class names of `authorizer.class.name` that turn ACLs on.
pub const AUTHORIZER_CLASSES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The wildcard resource name, principal and host.
pub const WILDCARD: &str = "*";

/// Kafka's resource types, by wire code (ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// Kafka's ACL operations, by wire code (ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    Any = 1,
    All = 2,
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
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// Pattern types, by wire code (ANY and MATCH only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Any = 1,
    Match = 2,
    Literal = 3,
    Prefixed = 4,
}

/// Permission types, by wire code (ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    Any = 1,
    Deny = 2,
    Allow = 3,
}

macro_rules! from_wire {
    ($ty:ident { $($code:literal => $variant:ident),* $(,)? }) => {
        impl $ty {
            /// The value of a wire code, `None` for UNKNOWN or a code Kafka does not define.
            pub fn from_code(code: i8) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)*
                    _ => None,
                }
            }

            pub fn code(self) -> i8 {
                self as i8
            }
        }
    };
}

from_wire!(ResourceType { 1 => Any, 2 => Topic, 3 => Group, 4 => Cluster, 5 => TransactionalId, 6 => DelegationToken, 7 => User });
from_wire!(Operation { 1 => Any, 2 => All, 3 => Read, 4 => Write, 5 => Create, 6 => Delete, 7 => Alter, 8 => Describe, 9 => ClusterAction, 10 => DescribeConfigs, 11 => AlterConfigs, 12 => IdempotentWrite, 13 => CreateTokens, 14 => DescribeTokens });
from_wire!(PatternType { 1 => Any, 2 => Match, 3 => Literal, 4 => Prefixed });
from_wire!(Permission { 1 => Any, 2 => Deny, 3 => Allow });

impl ResourceType {
    /// The operations Kafka's ACL model defines for this resource type (KIP-430's bitfield
    /// is made of these).
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
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
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Any => &[],
        }
    }
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) to which
/// resources (type, name, pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// A filter over ACLs (DescribeAcls, DeleteAcls): `None` strings match anything, as do the
/// ANY values.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why an ACL cannot be created or a filter cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot store ACLs: {0}")]
    Io(#[from] std::io::Error),
}

impl AclBinding {
    /// Kafka's checks of a new ACL: concrete types, a `Type:name` principal, a non-empty
    /// name, and the cluster resource named `kafka-cluster`.
    pub fn validate(&self) -> Result<(), AclError> {
        let invalid = |m: &str| Err(AclError::Invalid(m.to_string()));
        if self.resource_type == ResourceType::Any {
            return invalid("resource type ANY is only valid in a filter");
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return invalid("pattern type must be LITERAL or PREFIXED");
        }
        if self.operation == Operation::Any {
            return invalid("operation ANY is only valid in a filter");
        }
        if self.permission == Permission::Any {
            return invalid("permission type ANY is only valid in a filter");
        }
        if self.resource_name.is_empty() {
            return invalid("resource name must not be empty");
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return invalid("the cluster resource is named kafka-cluster");
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return invalid("principal must be of the form Type:name, e.g. User:alice"),
        }
        if self.host.is_empty() {
            return invalid("host must be an address or *");
        }
        Ok(())
    }

    /// Whether this ACL's pattern covers the resource `name` of type `resource`.
    fn covers(&self, resource: ResourceType, name: &str) -> bool {
        self.resource_type == resource
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }

    /// Whether this ACL, once it covers the resource, grants (ALLOW) or refuses (DENY)
    /// `operation` to `principal` at `host`.
    fn applies(&self, principal: &str, host: &str, operation: Operation) -> bool {
        let who = self.principal == principal || self.principal == "User:*";
        let from = self.host == host || self.host == WILDCARD;
        let what = self.operation == operation
            || self.operation == Operation::All
            || (self.permission == Permission::Allow && implies(self.operation, operation));
        who && from && what
    }
}

/// Kafka's implied operations: an ALLOW of the first grants the second too.
fn implies(granted: Operation, asked: Operation) -> bool {
    use Operation::*;
    match asked {
        Describe => matches!(granted, Read | Write | Delete | Alter),
        DescribeConfigs => granted == AlterConfigs,
        _ => false,
    }
}

impl AclFilter {
    /// Kafka's filter checks (DeleteAcls and DescribeAcls refuse unknown values).
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let type_ok =
            self.resource_type == ResourceType::Any || self.resource_type == acl.resource_type;
        let pattern_ok = match (self.pattern_type, &self.resource_name) {
            (PatternType::Any | PatternType::Match, None) => true,
            (pattern, None) => pattern == acl.pattern_type,
            (PatternType::Any, Some(name)) => *name == acl.resource_name,
            (PatternType::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
                _ => false,
            },
            (pattern, Some(name)) => pattern == acl.pattern_type && *name == acl.resource_name,
        };
        let principal_ok = self.principal.as_ref().is_none_or(|p| *p == acl.principal);
        let host_ok = self.host.as_ref().is_none_or(|h| *h == acl.host);
        let operation_ok = self.operation == Operation::Any || self.operation == acl.operation;
        let permission_ok = self.permission == Permission::Any || self.permission == acl.permission;
        type_ok && pattern_ok && principal_ok && host_ok && operation_ok && permission_ok
    }
}

/// Who is asking: Kafka's principal string and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: IpAddr,
}

/// The broker's authorizer: on or off, its super users, and the durable ACLs.
pub struct Authorizer {
    enabled: bool,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
    acls: RwLock<Vec<AclBinding>>,
    store: store::AclStore,
}

impl Authorizer {
    /// The authorizer `config` asks for, with the ACLs stored in `data_dir` (loaded even when
    /// the authorizer is off, so turning it on later finds them).
    pub fn open(config: &BrokerConfig, data_dir: &Path) -> anyhow::Result<Authorizer> {
        let class = config.get("authorizer.class.name").unwrap_or("").trim();
        let enabled = match class {
            "" => false,
            c if AUTHORIZER_CLASSES.contains(&c) => true,
            other => anyhow::bail!(
                "authorizer.class.name={other} is not supported; use {}",
                AUTHORIZER_CLASSES[0]
            ),
        };
        let super_users = config
            .get("super.users")
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let allow_if_no_acl = config.get("allow.everyone.if.no.acl.found") == Some("true");
        let store = store::AclStore::new(data_dir);
        let acls = store.load()?;
        Ok(Authorizer {
            enabled,
            super_users,
            allow_if_no_acl,
            acls: RwLock::new(acls),
            store,
        })
    }

    /// Whether ACLs are enforced (`authorizer.class.name` is set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `who` may perform `operation` on the resource `name` of type `resource`.
    /// Always true when the authorizer is off.
    pub fn authorize(
        &self,
        who: Requester<'_>,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.contains(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let acls = self.read();
        let mut covered = false;
        let mut allowed = false;
        for acl in acls.iter().filter(|a| a.covers(resource, name)) {
            covered = true;
            if acl.applies(who.principal, &host, operation) {
                match acl.permission {
                    Permission::Deny => return false,
                    _ => allowed = true,
                }
            }
        }
        allowed || (!covered && self.allow_if_no_acl)
    }

    /// Whether `who` may perform `operation` on at least one resource of type `resource`
    /// (Kafka's `authorizeByResourceType`, used by idempotent InitProducerId): some ALLOW
    /// applies and no DENY on all of that type (a literal `*` or an empty prefix) cancels it.
    pub fn authorize_any(
        &self,
        who: Requester<'_>,
        operation: Operation,
        resource: ResourceType,
    ) -> bool {
        if !self.enabled || self.super_users.contains(who.principal) {
            return true;
        }
        let host = who.host.to_string();
        let acls = self.read();
        let applying = |a: &&AclBinding| {
            a.resource_type == resource && a.applies(who.principal, &host, operation)
        };
        let denied_all = acls.iter().filter(applying).any(|a| {
            a.permission == Permission::Deny
                && (a.resource_name == WILDCARD && a.pattern_type == PatternType::Literal
                    || a.resource_name.is_empty() && a.pattern_type == PatternType::Prefixed)
        });
        let allowed_some = acls
            .iter()
            .filter(applying)
            .any(|a| a.permission == Permission::Allow);
        !denied_all && (allowed_some || self.allow_if_no_acl)
    }

    /// KIP-430's bitfield of the operations `who` may perform on the resource.
    pub fn authorized_operations(
        &self,
        who: Requester<'_>,
        resource: ResourceType,
        name: &str,
    ) -> i32 {
        resource
            .operations()
            .iter()
            .filter(|&&op| self.authorize(who, op, resource, name))
            .fold(0, |bits, &op| bits | 1 << op as i32)
    }

    /// Adds ACLs (an ACL already present is not added twice), durably. Each binding is
    /// validated first; the answer lists each binding's outcome in order.
    pub fn create(&self, bindings: Vec<AclBinding>) -> Vec<Result<(), AclError>> {
        let mut acls = self.write();
        let mut next = acls.clone();
        let mut outcomes: Vec<Result<(), AclError>> = Vec::with_capacity(bindings.len());
        for binding in bindings {
            match binding.validate() {
                Ok(()) => {
                    if !next.contains(&binding) {
                        next.push(binding);
                    }
                    outcomes.push(Ok(()));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        if next.len() != acls.len() {
            if let Err(e) = self.store.save(&next) {
                let message = e.to_string();
                return outcomes
                    .into_iter()
                    .map(|o| o.and(Err(AclError::Io(std::io::Error::other(message.clone())))))
                    .collect();
            }
            *acls = next;
        }
        outcomes
    }

    /// The ACLs that match `filter`.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.read()
            .iter()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect()
    }

    /// Removes the ACLs matching any of `filters`, durably; answers, per filter, the ACLs it
    /// matched.
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, AclError> {
        let mut acls = self.write();
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| acls.iter().filter(|a| f.matches(a)).cloned().collect())
            .collect();
        let next: Vec<AclBinding> = acls
            .iter()
            .filter(|a| !filters.iter().any(|f| f.matches(a)))
            .cloned()
            .collect();
        if next.len() != acls.len() {
            self.store.save(&next)?;
            *acls = next;
        }
        Ok(matched)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<AclBinding>> {
        self.acls.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<AclBinding>> {
        self.acls.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
