//! HTTP Basic authentication for the operator's listener (`cairn.http.authentication=basic`):
//! the same users as the Kafka listeners (PLAIN users of any SASL listener's JAAS config, and
//! SCRAM users checked against their stored keys) and the same authorizer: the principal
//! `User:<name>` needs DESCRIBE on the cluster, as `kafka-log-dirs` and DescribeCluster's
//! operations do in Kafka. A missing or wrong password gets 401 with a `WWW-Authenticate`
//! challenge, a known user without the ACL 403. With `none` (the default) every request is
//! served, as before.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tracing::{info, warn};

use crate::auth::sasl::SaslListener;
use crate::auth::scram::{constant_time_eq, salted_password, ScramCredential, ScramMechanism};
use crate::authz::{Operation, Requester, ResourceType, CLUSTER_NAME};
use crate::broker::Broker;

/// Who may read the HTTP listener, built once at bind.
pub(super) struct Gate {
    broker: Arc<Broker>,
    /// The SASL listeners (for their PLAIN users); empty when none is configured.
    sasl: Vec<SaslListener>,
}

impl Gate {
    /// `None` when `cairn.http.authentication` is `none`.
    pub(super) fn from_config(broker: &Arc<Broker>) -> anyhow::Result<Option<Arc<Gate>>> {
        if broker.config.get("cairn.http.authentication") != Some("basic") {
            return Ok(None);
        }
        let mut sasl = Vec::new();
        for spec in crate::listener::listeners(&broker.config)? {
            if spec.protocol.sasl() {
                sasl.push(SaslListener::from_config(&broker.config, &spec.name)?);
            }
        }
        Ok(Some(Arc::new(Gate {
            broker: broker.clone(),
            sasl,
        })))
    }

    /// Whether `user`/`password` is a PLAIN or SCRAM user of this broker.
    fn authenticates(&self, user: &str, password: &str) -> bool {
        if self
            .sasl
            .iter()
            .any(|l| l.plain_user_matches(user, password))
        {
            return true;
        }
        [ScramMechanism::Sha512, ScramMechanism::Sha256]
            .into_iter()
            .filter_map(|m| Some((m, self.broker.credentials.lookup(user, m)?)))
            .any(|(m, stored)| {
                let salted =
                    salted_password(m, password.as_bytes(), &stored.salt, stored.iterations);
                let derived = ScramCredential::from_salted_password(
                    m,
                    stored.salt.clone(),
                    &salted,
                    stored.iterations,
                );
                constant_time_eq(&derived.stored_key, &stored.stored_key)
            })
    }
}

/// The principal a request authenticated as, handed to the handlers that check a
/// per-resource ACL themselves (key lookups and snapshots need READ on their topic).
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub(crate) principal: String,
    pub(crate) host: std::net::IpAddr,
}

impl Authenticated {
    pub(crate) fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: self.host,
        }
    }
}

/// The client's address, set on each connection's requests (ACLs may name hosts).
#[derive(Clone, Copy)]
pub(super) struct Peer(pub(super) std::net::SocketAddr);

/// (user, password) of an `Authorization: Basic` header.
fn credentials(request: &Request) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"cairn\", charset=\"UTF-8\"",
        )],
        "authentication required\n",
    )
        .into_response()
}

/// The middleware: lets a request through only for an authenticated user with cluster
/// DESCRIBE, except under `/v1/topics/`, whose handlers check READ on their topic with the
/// principal this passes on. Password checks (PBKDF2 for SCRAM users) run off the async
/// workers.
pub(super) async fn require(
    State(gate): State<Arc<Gate>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some((user, password)) = credentials(&request) else {
        return challenge();
    };
    let checked = {
        let gate = gate.clone();
        let user = user.clone();
        tokio::task::spawn_blocking(move || gate.authenticates(&user, &password)).await
    };
    if !matches!(checked, Ok(true)) {
        info!(%user, "http: authentication failed");
        return challenge();
    }
    let principal = format!("User:{user}");
    if request.uri().path().starts_with("/v1/topics/") {
        request.extensions_mut().insert(Authenticated {
            principal,
            host: peer.ip(),
        });
        return next.run(request).await;
    }
    let who = Requester {
        principal: &principal,
        host: peer.ip(),
    };
    if !gate.broker.authorizer.authorize(
        who,
        Operation::Describe,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        warn!(%principal, "http: refused (no cluster DESCRIBE)");
        return (StatusCode::FORBIDDEN, "cluster DESCRIBE is needed\n").into_response();
    }
    next.run(request).await
}
