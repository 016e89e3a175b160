//! The SASL gate of a SASL_PLAINTEXT or SASL_SSL connection. Until the client has
//! authenticated, only ApiVersions, SaslHandshake and SaslAuthenticate pass: the latter two are
//! answered here from the connection's [`SaslExchange`], anything else closes the connection
//! unanswered.
//!
//! Re-authentication (KIP-368): with `connections.max.reauth.ms` > 0, a session lasts that
//! long; a client that authenticated with SaslAuthenticate v1+ is told so, and before the end
//! authenticates again on the same connection (SaslHandshake, SaslAuthenticate), as the same
//! principal, for a new lifetime. A request other than a re-authentication after the session
//! ended closes the connection (older clients, which cannot re-authenticate, included). Without a lifetime, SaslHandshake and
//! SaslAuthenticate after authentication go to the broker, which answers ILLEGAL_SASL_STATE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use crate::auth::credentials::CredentialStore;
use crate::auth::sasl::{HandshakeOutcome, SaslExchange, SaslListener, Step};
use crate::config::BrokerConfig;

/// The one message for every failed authentication, whatever the cause.
const FAILED: &str = "Authentication failed: Invalid username or password";

/// One SASL connection's authentication state.
pub(super) struct Gate {
    listener: Arc<SaslListener>,
    /// Present while the client (re-)authenticates.
    exchange: Option<SaslExchange>,
    /// The principal, once authenticated.
    principal: Option<String>,
    /// When the session ends (only with a session lifetime).
    expires: Option<Instant>,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    reauth_ms: u64,
    failure_delay: Duration,
    peer: SocketAddr,
}

/// What the reader does with a request on a SASL connection.
pub(super) enum Verdict {
    /// Serve it as any request (ApiVersions, or anything once authenticated).
    Pass,
    /// Answer, and keep reading.
    Reply(ResponseKind),
    /// Answer; the connection is now this principal.
    Authenticated(ResponseKind, String),
    /// Answer after the delay, then close (a failed authentication or a protocol error).
    Close(ResponseKind, Duration, String),
    /// Close without an answer; the reason is for the log.
    Refuse(String),
}

impl Gate {
    pub(super) fn new(
        listener: Arc<SaslListener>,
        config: &BrokerConfig,
        peer: SocketAddr,
    ) -> Gate {
        Gate {
            listener,
            exchange: Some(SaslExchange::default()),
            principal: None,
            expires: None,
            reauth_ms: config.connections_max_reauth_ms(),
            failure_delay: Duration::from_millis(config.failed_authentication_delay_ms()),
            peer,
        }
    }

    /// True once the client has authenticated (and is not re-authenticating).
    pub(super) fn open(&self) -> bool {
        self.exchange.is_none()
    }

    pub(super) fn screen(
        &mut self,
        header: &RequestHeader,
        request: &RequestKind,
        store: &CredentialStore,
        now: Instant,
    ) -> Verdict {
        let key = header.request_api_key;
        let sasl_request =
            key == ApiKey::SaslHandshake as i16 || key == ApiKey::SaslAuthenticate as i16;
        if self.exchange.is_none() {
            // A new handshake on an authenticated connection with a session lifetime begins a
            // re-authentication; anything else passes while the session lasts.
            if key == ApiKey::SaslHandshake as i16 && self.expires.is_some() {
                self.exchange = Some(SaslExchange::default());
            } else if self.expires.is_some_and(|end| now >= end) {
                return Verdict::Refuse(format!(
                    "request (api key {key}) after the SASL session expired"
                ));
            } else {
                return Verdict::Pass;
            }
        } else if !sasl_request {
            // The architecture invariant: on a SASL listener no handler runs before
            // authentication, except ApiVersions.
            return if key == ApiKey::ApiVersions as i16 {
                Verdict::Pass
            } else {
                Verdict::Refuse(format!(
                    "request (api key {key}) before SASL authentication completed"
                ))
            };
        }
        let exchange = self.exchange.as_mut().expect("set above");
        match request {
            RequestKind::SaslHandshake(r) => {
                let mechanisms = self
                    .listener
                    .mechanism_names()
                    .into_iter()
                    .map(StrBytes::from_static_str)
                    .collect();
                let answer = |error: Option<ResponseError>| {
                    ResponseKind::SaslHandshake(
                        SaslHandshakeResponse::default()
                            .with_error_code(error.map_or(0, |e| e.code()))
                            .with_mechanisms(mechanisms),
                    )
                };
                // v0 is advertised for old clients' sake but not served (see broker's APIS).
                if header.request_api_version < 1 {
                    return Verdict::Close(
                        answer(Some(ResponseError::UnsupportedVersion)),
                        Duration::ZERO,
                        "SaslHandshake v0 (unframed SASL tokens) is not supported".into(),
                    );
                }
                let outcome = exchange.handshake(&self.listener, &r.mechanism);
                let error = match outcome {
                    HandshakeOutcome::Accepted => None,
                    HandshakeOutcome::Unsupported => Some(ResponseError::UnsupportedSaslMechanism),
                    HandshakeOutcome::IllegalState => Some(ResponseError::IllegalSaslState),
                };
                let response = answer(error);
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
                let version = header.request_api_version;
                let step = exchange.authenticate(&self.listener, store, &r.auth_bytes);
                self.authenticate_step(step, version, now)
            }
            // A decoded request always matches its api key.
            _ => Verdict::Refuse(format!("request (api key {key}) does not match its body")),
        }
    }

    fn authenticate_step(&mut self, step: Step, version: i16, now: Instant) -> Verdict {
        let answer = |bytes: Vec<u8>| {
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
        };
        let fail = |response: SaslAuthenticateResponse, delay, reason: String| {
            Verdict::Close(ResponseKind::SaslAuthenticate(response), delay, reason)
        };
        match step {
            Step::Continue(bytes) => Verdict::Reply(ResponseKind::SaslAuthenticate(answer(bytes))),
            Step::Authenticated {
                response,
                principal,
            } => {
                if self.principal.as_ref().is_some_and(|p| *p != principal) {
                    warn!(peer = %self.peer, "re-authentication as another principal refused");
                    let response = answer(Vec::new())
                        .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Re-authentication must keep the same principal",
                        )));
                    return fail(
                        response,
                        self.failure_delay,
                        "re-authentication as another principal".into(),
                    );
                }
                let mut response = answer(response);
                if self.reauth_ms > 0 {
                    self.expires = Some(now + Duration::from_millis(self.reauth_ms));
                    // SaslAuthenticate v0 has no field for it: such a client cannot
                    // re-authenticate, and its connection closes when the session ends.
                    if version >= 1 {
                        response.session_lifetime_ms = self.reauth_ms.min(i64::MAX as u64) as i64;
                    }
                }
                if self.principal.is_some() {
                    info!(peer = %self.peer, %principal, "re-authenticated");
                } else {
                    info!(peer = %self.peer, %principal, "authenticated");
                }
                self.principal = Some(principal.clone());
                self.exchange = None;
                Verdict::Authenticated(ResponseKind::SaslAuthenticate(response), principal)
            }
            Step::Failed(reason) => {
                warn!(peer = %self.peer, "authentication failed: {reason}");
                let response = answer(Vec::new())
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(FAILED)));
                fail(response, self.failure_delay, "authentication failed".into())
            }
            Step::IllegalState => {
                let response = answer(Vec::new())
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate before SaslHandshake",
                    )));
                fail(
                    response,
                    Duration::ZERO,
                    "SaslAuthenticate out of sequence".into(),
                )
            }
        }
    }
}
