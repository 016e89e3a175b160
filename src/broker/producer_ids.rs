//! InitProducerId for idempotent producers (transactions are not implemented).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::{code, log_error_code, NONE};
use super::Broker;

pub(super) fn init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |e: i16| {
        InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty())
    {
        return refused(code(ResponseError::TransactionalIdAuthorizationFailed));
    }
    // KIP-360: an idempotent producer may ask to bump its epoch after an error; the bumped
    // epoch restarts its sequences at 0. An exhausted epoch gets a fresh producer id.
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return InitProducerIdResponse::default()
            .with_error_code(NONE)
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.log.allocate_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => refused(log_error_code(&e)),
    }
}
