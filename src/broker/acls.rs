//! CreateAcls, DescribeAcls and DeleteAcls (what `kafka-acls` speaks): wire values to
//! [`crate::authz`] bindings and filters and back, with Kafka's errors. Managing ACLs needs
//! cluster ALTER, listing them cluster DESCRIBE; without an authorizer all three answer
//! SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::Broker;
use crate::authz::{
    AclBinding, AclError, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::listener::Session;

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

/// The error every ACL API answers when it may not run: no authorizer, or the principal
/// lacks `operation` on the cluster.
fn refusal(broker: &Broker, session: &Session, operation: Operation) -> Option<(i16, String)> {
    if !broker.authorizer.enabled() {
        return Some((
            ResponseError::SecurityDisabled.code(),
            "no authorizer is configured on the broker (authorizer.class.name)".into(),
        ));
    }
    if !broker.cluster_allowed(session, operation) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            format!("{} may not {operation:?} the cluster", session.principal),
        ));
    }
    None
}

fn binding(c: &AclCreation) -> Result<AclBinding, AclError> {
    let invalid = |what: &str, code: i8| AclError::Invalid(format!("unknown {what} {code}"));
    Ok(AclBinding {
        resource_type: ResourceType::from_code(c.resource_type)
            .ok_or_else(|| invalid("resource type", c.resource_type))?,
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type)
            .ok_or_else(|| invalid("pattern type", c.resource_pattern_type))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation)
            .ok_or_else(|| invalid("operation", c.operation))?,
        permission: Permission::from_code(c.permission_type)
            .ok_or_else(|| invalid("permission type", c.permission_type))?,
    })
}

pub(super) fn create(
    broker: &Broker,
    session: &Session,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let fail = |code: i16, text: &str| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if let Some((code, text)) = refusal(broker, session, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| fail(code, &text))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Parse each creation; the valid ones are created together, the answer keeps the order.
    let parsed: Vec<Result<AclBinding, AclError>> = request.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    for acl in &valid {
        info!(principal = %session.principal, ?acl, "creating ACL");
    }
    let mut outcomes = broker.authorizer.create(valid).into_iter();
    let results = parsed
        .into_iter()
        .map(
            |p| match p.and_then(|_| outcomes.next().expect("one outcome per valid binding")) {
                Ok(()) => AclCreationResult::default(),
                Err(AclError::Invalid(text)) => fail(ResponseError::InvalidRequest.code(), &text),
                Err(e @ AclError::Io(_)) => {
                    fail(ResponseError::UnknownServerError.code(), &e.to_string())
                }
            },
        )
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A wire filter, or INVALID_REQUEST's text.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let unknown = |what: &str, code: i8| format!("unknown {what} {code} in the filter");
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| unknown("resource type", resource_type))?,
        resource_name: name.as_ref().map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| unknown("pattern type", pattern_type))?,
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| unknown("operation", operation))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| unknown("permission type", permission))?,
    })
}

pub(super) fn describe(
    broker: &Broker,
    session: &Session,
    r: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let error = |code: i16, text: String| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if let Some((code, text)) = refusal(broker, session, Operation::Describe) {
        return error(code, text);
    }
    let f = match filter(
        r.resource_type_filter,
        &r.resource_name_filter,
        r.pattern_type_filter,
        &r.principal_filter,
        &r.host_filter,
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(text) => return error(ResponseError::InvalidRequest.code(), text),
    };
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in broker.authorizer.describe(&f) {
        resources
            .entry((
                acl.resource_type.code(),
                acl.resource_name.clone(),
                acl.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(acl.principal))
                    .with_host(StrBytes::from_string(acl.host))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub(super) fn delete(
    broker: &Broker,
    session: &Session,
    r: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let fail = |code: i16, text: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if let Some((code, text)) = refusal(broker, session, Operation::Alter) {
        let results = r.filters.iter().map(|_| fail(code, &text)).collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = r
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let deleted = match broker.authorizer.delete(&valid) {
        Ok(deleted) => deleted,
        Err(e) => {
            let results = r
                .filters
                .iter()
                .map(|_| fail(ResponseError::UnknownServerError.code(), &e.to_string()))
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let mut deleted = deleted.into_iter();
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(text) => fail(ResponseError::InvalidRequest.code(), &text),
            Ok(_) => {
                let acls = deleted.next().expect("one answer per valid filter");
                for acl in &acls {
                    info!(principal = %session.principal, ?acl, "deleted ACL");
                }
                DeleteAclsFilterResult::default().with_matching_acls(
                    acls.into_iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(StrBytes::from_string(acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(StrBytes::from_string(acl.principal))
                                .with_host(StrBytes::from_string(acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
