//! The SASL gate of a SASL_PLAINTEXT or SASL_SSL connection: until the client has
//! authenticated, only ApiVersions, SaslHandshake and SaslAuthenticate pass; the latter two are
//! answered here from the connection's [`SaslExchange`], anything else closes the connection.
//!
//! After authentication (and on other listeners) SaslHandshake and SaslAuthenticate go to the
//! broker like any request, which answers ILLEGAL_SASL_STATE.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use crate::auth::credentials::CredentialStore;
use crate::auth::sasl::{HandshakeOutcome, SaslExchange, SaslListener, Step};

/// The one message for every failed authentication, whatever the cause.
const FAILED: &str = "Authentication failed: Invalid username or password";

/// A connection before authentication completes.
pub(super) struct Gate {
    pub(super) listener: std::sync::Arc<SaslListener>,
    pub(super) exchange: SaslExchange,
}

/// What the reader does with a request on a gated connection.
pub(super) enum Verdict {
    /// Not a SASL request: ApiVersions goes to the broker, anything else closes.
    Pass,
    /// Answer, and keep reading.
    Reply(ResponseKind),
    /// Answer; the connection is now this principal, and the gate is gone.
    Authenticated(ResponseKind, String),
    /// Answer after `delay`, then close (a failed authentication or a protocol error).
    Close(ResponseKind, Duration, String),
}

/// True for the requests a gated connection may send.
pub(super) fn allowed_before_authentication(api_key: i16) -> bool {
    api_key == ApiKey::ApiVersions as i16
        || api_key == ApiKey::SaslHandshake as i16
        || api_key == ApiKey::SaslAuthenticate as i16
}

impl Gate {
    pub(super) fn check(
        &mut self,
        version: i16,
        request: &RequestKind,
        store: &CredentialStore,
        failure_delay: Duration,
        peer: std::net::SocketAddr,
    ) -> Verdict {
        match request {
            RequestKind::SaslHandshake(r) => {
                let outcome = self.exchange.handshake(&self.listener, &r.mechanism);
                let error = match outcome {
                    HandshakeOutcome::Accepted => None,
                    HandshakeOutcome::Unsupported => Some(ResponseError::UnsupportedSaslMechanism),
                    HandshakeOutcome::IllegalState => Some(ResponseError::IllegalSaslState),
                };
                let response = SaslHandshakeResponse::default()
                    .with_error_code(error.map_or(0, |e| e.code()))
                    .with_mechanisms(
                        self.listener
                            .mechanism_names()
                            .into_iter()
                            .map(StrBytes::from_static_str)
                            .collect(),
                    );
                let response = ResponseKind::SaslHandshake(response);
                match outcome {
                    HandshakeOutcome::Accepted => Verdict::Reply(response),
                    _ => Verdict::Close(
                        response,
                        Duration::ZERO,
                        format!("SaslHandshake refused: {outcome:?}"),
                    ),
                }
            }
            RequestKind::SaslAuthenticate(r) => {
                let step = self
                    .exchange
                    .authenticate(&self.listener, store, &r.auth_bytes);
                let answer = |bytes: Vec<u8>| {
                    let mut response =
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes));
                    if version >= 1 {
                        // No re-authentication (KIP-368): the session does not expire.
                        response.session_lifetime_ms = 0;
                    }
                    response
                };
                match step {
                    Step::Continue(bytes) => {
                        Verdict::Reply(ResponseKind::SaslAuthenticate(answer(bytes)))
                    }
                    Step::Authenticated {
                        response,
                        principal,
                    } => {
                        info!(%peer, %principal, "authenticated");
                        Verdict::Authenticated(
                            ResponseKind::SaslAuthenticate(answer(response)),
                            principal,
                        )
                    }
                    Step::Failed(reason) => {
                        warn!(%peer, "authentication failed: {reason}");
                        let response = answer(Vec::new())
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_static_str(FAILED)));
                        Verdict::Close(
                            ResponseKind::SaslAuthenticate(response),
                            failure_delay,
                            "authentication failed".into(),
                        )
                    }
                    Step::IllegalState => {
                        let response = answer(Vec::new())
                            .with_error_code(ResponseError::IllegalSaslState.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "SaslAuthenticate before SaslHandshake",
                            )));
                        Verdict::Close(
                            ResponseKind::SaslAuthenticate(response),
                            Duration::ZERO,
                            "SaslAuthenticate out of sequence".into(),
                        )
                    }
                }
            }
            _ => Verdict::Pass,
        }
    }
}
