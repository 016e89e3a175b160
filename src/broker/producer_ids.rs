//! InitProducerId: idempotent producers here; a transactional id goes to the transaction
//! coordinator (epoch bump, fencing, KIP-360 recovery).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::{log_error_code, NONE};
use super::Broker;

pub(super) async fn init_producer_id(
    broker: &Broker,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |e: i16| {
        InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.0.is_empty())
    {
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        return match broker
            .txn
            .init_producer_id(&id.0, request.transaction_timeout_ms, expected)
            .await
        {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_error_code(NONE)
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(e) => refused(super::txn::txn_error_code(e, version >= 4)),
        };
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
