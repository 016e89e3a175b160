//! DescribeClientQuotas and AlterClientQuotas (`kafka-configs --entity-type users|clients`):
//! Kafka's filters, entity rules and errors over the [`crate::quota`] store.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    alter_client_quotas_request as alter_request, alter_client_quotas_response as alter_response,
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::{code, quota_error_code, NONE};
use super::Broker;
use crate::quota::{EntityName, QuotaEntity, QuotaError, QuotaFilter};

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

pub(super) fn describe(
    broker: &Broker,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let filter = match filter(&request) {
        Ok(filter) => filter,
        Err((error, message)) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(code(error))
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_entries(None)
        }
    };
    let entries = match filter {
        // Cairn keeps no IP quotas.
        None => vec![],
        Some(filter) => broker
            .quotas
            .describe(&filter)
            .into_iter()
            .map(|(entity, quotas)| {
                let part = |kind: &'static str, p: &EntityName| {
                    EntityData::default()
                        .with_entity_type(StrBytes::from_static_str(kind))
                        .with_entity_name(match p {
                            EntityName::Default => None,
                            EntityName::Named(n) => Some(StrBytes::from_string(n.clone())),
                        })
                };
                let mut parts = vec![];
                parts.extend(entity.user.as_ref().map(|u| part(USER, u)));
                parts.extend(entity.client_id.as_ref().map(|c| part(CLIENT_ID, c)));
                EntryData::default().with_entity(parts).with_values(
                    quotas
                        .into_iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(StrBytes::from_static_str(key.name()))
                                .with_value(value)
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    DescribeClientQuotasResponse::default()
        .with_error_code(NONE)
        .with_entries(Some(entries))
}

/// The request's filter by Kafka's rules; `None` for a filter on IP entities.
fn filter(
    request: &DescribeClientQuotasRequest,
) -> Result<Option<QuotaFilter>, (ResponseError, String)> {
    let invalid = |m: String| Err((ResponseError::InvalidRequest, m));
    let mut filter = QuotaFilter {
        strict: request.strict,
        ..QuotaFilter::default()
    };
    let mut seen: Vec<&str> = vec![];
    for component in &request.components {
        let kind = component.entity_type.as_str();
        if kind.is_empty() {
            return invalid("Invalid empty entity type.".into());
        }
        if seen.contains(&kind) {
            return invalid(format!(
                "Entity type {kind} cannot appear more than once in the filter."
            ));
        }
        seen.push(kind);
        if ![USER, CLIENT_ID, IP].contains(&kind) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {kind}"),
            ));
        }
        let name = component._match.as_ref().map(|m| m.to_string());
        let (exact, any) =
            match (component.match_type, name) {
                (0, Some(name)) => (Some(Some(name)), false),
                (0, None) => {
                    return invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                    )
                }
                (1, None) => (Some(None), false),
                (1, Some(_)) => {
                    return invalid(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                            .into(),
                    )
                }
                (2, None) => (None, true),
                (2, Some(_)) => return invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .into(),
                ),
                (other, _) => return invalid(format!("Unknown match type {other}")),
            };
        match kind {
            USER => (filter.user, filter.any_user) = (exact, any),
            CLIENT_ID => (filter.client_id, filter.any_client_id) = (exact, any),
            _ => {}
        }
    }
    if seen.contains(&IP) {
        if seen.len() > 1 {
            return invalid(
                "Invalid entity filter component combination. IP filter component should not \
                 be used with user or clientId filter component."
                    .into(),
            );
        }
        return Ok(None);
    }
    Ok(Some(filter))
}

pub(super) fn alter(
    broker: &Broker,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    // Entities that parse go to the store together; the others are answered at once.
    let mut parsed: Vec<Result<usize, QuotaError>> = Vec::with_capacity(request.entries.len());
    let mut changes = vec![];
    for entry in &request.entries {
        parsed.push(entity(&entry.entity).map(|entity| {
            let ops = entry
                .ops
                .iter()
                .map(|op| (op.key.to_string(), (!op.remove).then_some(op.value)))
                .collect();
            changes.push((entity, ops));
            changes.len() - 1
        }));
    }
    let mut results = broker
        .quotas
        .alter(changes, request.validate_only)
        .into_iter()
        .map(Some)
        .collect::<Vec<_>>();
    let entries = request
        .entries
        .into_iter()
        .zip(parsed)
        .map(|(entry, parsed)| {
            let result = match parsed {
                Ok(i) => results[i].take().expect("one result per change"),
                Err(e) => Err(e),
            };
            let (error_code, message) = match result {
                Ok(()) => (NONE, None),
                Err(e) => (
                    quota_error_code(&e),
                    Some(StrBytes::from_string(e.to_string())),
                ),
            };
            alter_response::EntryData::default()
                .with_error_code(error_code)
                .with_error_message(message)
                .with_entity(
                    entry
                        .entity
                        .into_iter()
                        .map(|e| {
                            alter_response::EntityData::default()
                                .with_entity_type(e.entity_type)
                                .with_entity_name(e.entity_name)
                        })
                        .collect(),
                )
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// An entity from its parts, by Kafka's rules (a null name is the default).
fn entity(parts: &[alter_request::EntityData]) -> Result<QuotaEntity, QuotaError> {
    let invalid = |m: String| Err(QuotaError::Invalid(m));
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    let mut seen: Vec<&str> = vec![];
    for part in parts {
        let kind = part.entity_type.as_str();
        if seen.contains(&kind) {
            return invalid(format!(
                "Invalid client quota entity, duplicate entity entry {kind}"
            ));
        }
        seen.push(kind);
        let name = match &part.entity_name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_string()),
        };
        match kind {
            USER => entity.user = Some(name),
            CLIENT_ID => entity.client_id = Some(name),
            IP => return invalid("Cairn does not implement IP connection-rate quotas".into()),
            other => return invalid(format!("Unhandled client quota entity type: {other}")),
        }
    }
    Ok(entity)
}
