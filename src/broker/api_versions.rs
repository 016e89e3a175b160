//! ApiVersions: the advertised ranges, straight from the dispatch table.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Broker;
use crate::protocol::codec::api_version_list;

pub(super) fn handle(
    broker: &Broker,
    _version: i16,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(super::errors::NONE)
        .with_api_keys(api_version_list(broker.versions()))
}
