//! The operator's HTTP listener (`cairn.http.listen`, default 127.0.0.1:9644): Prometheus metrics
//! at `/metrics`, a status page at `/`, and the same data as JSON at `/v1/status`. Read-only.
//!
//! It runs on the broker's runtime but cannot hurt the Kafka listeners: at most
//! [`MAX_CONNECTIONS`] connections (more are closed at once), headers bounded in size and count
//! and due within [`HEADER_TIMEOUT`], and each request's connection cut [`CONNECTION_TIMEOUT`]
//! after the request began, whatever it is doing. Connections are kept alive between requests
//! (one at a time, HTTP/1.1) for at most [`HEADER_TIMEOUT`] idle: hyper's header timer runs from
//! the moment a connection waits for its next request, so an idle connection holds its slot no
//! longer than a slow request line would. Everything it shows is one [`status::Status`]
//! snapshot plus the broker's [`crate::metrics::Metrics`]; a background sampler keeps the last
//! minutes of throughput and group progress for the page's charts and time-to-catch-up.
//! `keys.rs` serves compacted topics as a key-value store (lookups and snapshots); a snapshot's
//! connection lives as long as its reader keeps reading (its deadline moves on with each chunk).
//! With `cairn.http.ssl.enable` it serves https, through the same rustls acceptor the Kafka
//! listeners use (`crate::auth::tls`), its handshake held to [`HEADER_TIMEOUT`].

mod basic_auth;
mod exposition;
mod history;
mod keys;
mod page;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::auth::tls::TlsListener;
use crate::broker::Broker;
use history::History;
use status::Status;

/// Most HTTP connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this, finished or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of request line and headers (hyper's read buffer; larger requests are refused).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in a request.
const MAX_HEADERS: usize = 32;

#[derive(Clone)]
struct AppState {
    broker: Arc<Broker>,
    started: Instant,
    history: Arc<History>,
    keys: Arc<crate::keys::KeyIndex>,
    /// A SASL listener is configured: the key endpoints answer 403 until they can authorize.
    authentication_on: bool,
}

/// A bound HTTP listener, not yet serving.
pub struct HttpServer {
    listener: TcpListener,
    state: AppState,
    /// HTTP Basic authentication against the broker's users and ACLs, when configured.
    gate: Option<Arc<basic_auth::Gate>>,
    /// TLS (`cairn.http.ssl.enable`): every connection's handshake first.
    tls: Option<Arc<TlsListener>>,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr, broker: Arc<Broker>) -> std::io::Result<HttpServer> {
        let gate = basic_auth::Gate::from_config(&broker).map_err(std::io::Error::other)?;
        let tls = if broker.config.http_tls() {
            let name = crate::config::HTTP_TLS_NAME;
            let tls = TlsListener::load(&broker.config, name).map_err(std::io::Error::other)?;
            Some(Arc::new(tls))
        } else {
            None
        };
        let listener = TcpListener::bind(addr).await?;
        let mut keys = crate::keys::KeyIndex::new(broker.config.key_index_memory_bytes());
        if let Some(tier) = &broker.tier {
            let disk = broker.config.key_index_remote_cache_bytes();
            keys = keys.with_tier(tier.remote.clone(), disk);
        }
        let authentication_on = crate::listener::listeners(&broker.config)
            .map(|l| l.iter().any(|s| s.protocol.sasl()))
            .unwrap_or(true);
        Ok(HttpServer {
            gate,
            tls,
            listener,
            state: AppState {
                broker,
                started: Instant::now(),
                history: Arc::new(History::default()),
                keys: Arc::new(keys),
                authentication_on,
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listener's TLS acceptor when it serves https, to re-read its certificates on SIGHUP.
    pub fn tls(&self) -> Option<Arc<TlsListener>> {
        self.tls.clone()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let router = Router::new()
            .route("/", get(status_page))
            .route("/metrics", get(metrics))
            .route("/v1/status", get(status_json))
            .route("/v1/topics/{topic}/keys", get(keys::get_key))
            .route("/v1/topics/{topic}/keys/{*key}", get(keys::get_key))
            .route(
                "/v1/topics/{topic}/keys:batchGet",
                axum::routing::post(keys::batch_get),
            )
            .route("/v1/topics/{topic}/snapshot", get(keys::snapshot))
            .fallback(not_found)
            .with_state(self.state.clone());
        let router = match &self.gate {
            Some(gate) => router.layer(axum::middleware::from_fn_with_state(
                gate.clone(),
                basic_auth::require,
            )),
            None => router,
        };
        let sampler = tokio::spawn(history::sample(
            self.state.broker.clone(),
            self.state.history.clone(),
        ));
        // Key files of indexed topics are built in the background, and stale ones swept.
        let key_builder = tokio::spawn(crate::keys::builder::run(
            self.state.keys.clone(),
            self.state.broker.log.clone(),
            self.state.broker.config.data_dir(),
        ));
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "http: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                debug!(%peer, "http: too many connections; closing this one");
                continue;
            };
            let deadline = keys::Deadline::after(CONNECTION_TIMEOUT);
            let each_request = deadline.clone();
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .layer(axum::middleware::from_fn(
                        move |req: axum::extract::Request, next: axum::middleware::Next| {
                            // A kept-alive connection's next request gets its own time limit.
                            each_request.extend(CONNECTION_TIMEOUT);
                            next.run(req)
                        },
                    ))
                    .layer(axum::Extension(deadline.clone()))
                    .layer(axum::Extension(basic_auth::Peer(peer))),
            );
            let tls = self.tls.as_ref().map(|t| t.acceptor());
            tokio::spawn(async move {
                let _permit = permit;
                let Some(acceptor) = tls else {
                    return serve(stream, service, deadline, peer).await;
                };
                match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(stream, service, deadline, peer).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "http: TLS handshake failed"),
                    Err(_) => debug!(%peer, "http: TLS handshake not done in time"),
                }
            });
        }
        sampler.abort();
        key_builder.abort();
        info!("http listener stopped");
    }
}

/// Serves the requests of `io` (plain TCP or TLS), cutting the connection at its deadline.
async fn serve<S>(
    io: S,
    service: TowerToHyperService<Router>,
    deadline: keys::Deadline,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let at = deadline.at();
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    debug!(%peer, error = %e, "http: connection ended with an error");
                }
                break;
            }
            _ = tokio::time::sleep_until(at.into()) => {
                if deadline.at() <= Instant::now() {
                    debug!(%peer, "http: connection cut after the time limit");
                    break;
                }
            }
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let status = match gather(&state).await {
        Ok(status) => status,
        Err(unavailable) => return unavailable,
    };
    let text = exposition::render(&state.broker.metrics, state.broker.log.stats(), &status);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn status_json(State(state): State<AppState>) -> Response {
    let status = match gather(&state).await {
        Ok(status) => status,
        Err(unavailable) => return unavailable,
    };
    match serde_json::to_string_pretty(&status) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn status_page(State(state): State<AppState>) -> Response {
    match gather(&state).await {
        Ok(status) => Html(page::render(&status, &state.history.snapshot())).into_response(),
        Err(unavailable) => unavailable,
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: try /, /metrics, /v1/status or /v1/topics/TOPIC/keys/KEY\n",
    )
}

/// Reads the state off the async workers (it takes partition and group locks and reads /proc);
/// a 503 when that cannot run (the runtime is shutting down).
async fn gather(state: &AppState) -> Result<Status, Response> {
    let broker = state.broker.clone();
    let started = state.started;
    tokio::task::spawn_blocking(move || Status::gather(&broker, started))
        .await
        .map_err(|e| {
            warn!(error = %e, "http: cannot read the broker's state");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
        })
}
