//! The TCP server: accept loop, connection limit, per-connection tasks, ordered responses,
//! graceful shutdown.
//!
//! Each connection has a reader and a writer. The reader checks each length prefix before it
//! allocates, decodes the frame, and runs the handler up to its first suspension point, so
//! every handler's synchronous work (a Produce's appends) happens in arrival order; what is left
//! (an fsync wait, a long poll, a rebalance) is spawned, and its join handle goes, in arrival
//! order, into a bounded queue that the writer drains one by one. So waiting requests overlap
//! (a Fetch parked in a long poll does not stop the next request from being read) while
//! responses leave strictly in request order, and a client that never reads its responses
//! stops being read once the queue is full (back-pressure, not a growing queue).
//!
//! Responses are bounded per connection too: while more than [`MAX_UNWRITTEN_RESPONSE_BYTES`] of
//! a connection's responses are built but not yet written, its reader reads no new request, so a
//! client that pipelines Fetch requests and never reads holds one response, not 64 of them (and
//! is closed after `connections.max.idle.ms`). And a connection has one Fetch handled at a time
//! (Kafka's clients keep one in flight per connection; Kafka itself reads one request at a time):
//! a later Fetch is read but waits, in order, for the earlier one's answer, so 64 Fetches parked
//! in a long poll cannot all wake and build an answer of up to max_bytes each at once.
//!
//! Every response reaches the writer as a [`backlog::Answer`], counted from the moment it is
//! built until it is dropped after being written (`backlog.rs`), so the count is kept in one
//! place whatever kind of answer it is (immediate, spawned, KIP-511).
//!
//! Request memory is bounded broker-wide by `queued.max.request.bytes` ([`RequestBudget`],
//! `budget.rs`):
//! before a reader allocates a frame body of n bytes it takes min(n, budget) bytes from the
//! budget, waiting for room if there is none (the connection just stops reading its socket), and
//! gives them back when the handler has finished with the request (decoded requests share the
//! frame's buffer, so it lives as long as the handler), or when the frame fails or the
//! connection closes. Budget is taken for a whole frame at once, never piecemeal, so no reader
//! sits on part of a frame's budget while waiting for the rest; what a connection's earlier,
//! still-running requests hold is given back when they end, which never waits for budget. Free
//! bytes go to the first waiter they fit (no queue), so small requests go on beside big frames
//! waiting for room.
//! Knows nothing of storage: it calls [`Broker::handle`] and writes what comes back. A Fetch
//! handler runs inside [`fetch_files::collect`], and its answer is encoded by
//! [`fetch_encode`] with the records of the partitions it served from segment files left out as
//! file ranges, which the writer sends from the files (`sendfile.rs`) in their place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::auth::sasl::{SaslConfigError, SaslListener};
use crate::auth::tls::{certificate_principal, TlsError, TlsListener};
use crate::broker::fetch_files::{self, Held};
use crate::broker::Broker;
use crate::listener::{ListenerSpec, Session};
use crate::protocol::codec::{self, Decoded};
use crate::protocol::fetch_encode::{self, Chunk};
use crate::protocol::frame;

mod backlog;
mod budget;
mod sasl_gate;
mod sendfile;

use backlog::{Answer, Backlog};
use budget::RequestBudget;
use sasl_gate::{Gate, Verdict};
use sendfile::WriteFile;

/// Most requests of one connection in flight at once (Kafka clients pipeline at most 5 by
/// default); beyond this the reader waits for the writer.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// A connection's reader reads no new request while more than this many bytes of its responses
/// wait to be written (one response may exceed it: a Fetch answer is up to the client's
/// max_bytes).
const MAX_UNWRITTEN_RESPONSE_BYTES: usize = 4 << 20;

/// What the writer sends for one request.
enum Outgoing {
    /// A handler still running; its result is written when it completes.
    Pending(JoinHandle<Option<Answer>>),
    /// An answer known at once.
    Ready(Answer),
    /// No answer (Produce with acks=0).
    Nothing,
}

/// A running server.
pub struct Server {
    listeners: Vec<Bound>,
    broker: Arc<Broker>,
}

impl Server {
    /// Binds one PLAINTEXT listener on `addr` (tests and embedders).
    pub async fn bind(addr: SocketAddr, broker: Arc<Broker>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let mut spec = ListenerSpec::plaintext(addr);
        spec.advertised.port = listener.local_addr()?.port();
        Ok(Server {
            listeners: vec![Bound {
                spec: Arc::new(spec),
                listener,
                tls: None,
                sasl: None,
            }],
            broker,
        })
    }

    /// Binds every listener in `specs`. A listener bound to port 0 advertises the port it got.
    pub async fn bind_listeners(
        specs: Vec<ListenerSpec>,
        broker: Arc<Broker>,
    ) -> Result<Server, ServerError> {
        let mut listeners = Vec::with_capacity(specs.len());
        for mut spec in specs {
            let sasl = if spec.protocol.sasl() {
                Some(Arc::new(SaslListener::from_config(
                    &broker.config,
                    &spec.name,
                )?))
            } else {
                None
            };
            let tls = if spec.protocol.tls() {
                Some(Arc::new(TlsListener::load(&broker.config, &spec.name)?))
            } else {
                None
            };
            let listener = TcpListener::bind(spec.bind)
                .await
                .map_err(|e| ServerError::Bind(spec.name.clone(), spec.bind, e))?;
            if spec.advertised.port == 0 {
                spec.advertised.port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            }
            listeners.push(Bound {
                spec: Arc::new(spec),
                listener,
                tls,
                sasl,
            });
        }
        Ok(Server { listeners, broker })
    }

    /// The address of the first listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].listener.local_addr()
    }

    /// Every listener's name and bound address.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|b| Some((b.spec.name.clone(), b.listener.local_addr().ok()?)))
            .collect()
    }

    /// The TLS listeners, whose certificates [`TlsListener::reload`] re-reads.
    pub fn tls_listeners(&self) -> Vec<Arc<TlsListener>> {
        self.listeners
            .iter()
            .filter_map(|b| b.tls.clone())
            .collect()
    }

    /// Serves until `shutdown` becomes true, then stops accepting, lets every connection finish
    /// its in-flight requests, and returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let max_connections = self.broker.dynamic.current().max_connections();
        let limit = Arc::new(Semaphore::new(max_connections));
        let follow = tokio::spawn(follow_max_connections(
            limit.clone(),
            max_connections,
            self.broker.dynamic.live().subscribe(),
        ));
        let budget_bytes = self.broker.config.queued_max_request_bytes();
        let max_frame = self.broker.config.socket_request_max_bytes();
        if budget_bytes.is_some_and(|b| b < max_frame) {
            warn!(
                "queued.max.request.bytes ({}) is below socket.request.max.bytes ({max_frame}): \
                 one large frame can take the whole budget and hold up every other request \
                 while it arrives",
                budget_bytes.unwrap_or_default()
            );
        }
        let budget = RequestBudget::reporting(budget_bytes, Some(self.broker.metrics.clone()));
        let shared = Shared {
            broker: self.broker,
            limit,
            budget,
        };
        // Every connection task holds a clone of `done_tx`; when all are dropped, `done_rx` ends.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let accepting: Vec<_> = self
            .listeners
            .into_iter()
            .map(|bound| {
                let shared = shared.clone();
                let done = done_tx.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(accept_loop(bound, shared, done, shutdown))
            })
            .collect();
        drop(done_tx);
        for task in accepting {
            let _ = task.await;
        }
        // Wait for every connection to finish its in-flight requests.
        let _ = done_rx.recv().await;
        follow.abort();
    }
}

/// Resizes the connection limit when `max.connections` changes dynamically. As in Kafka, a
/// lower limit refuses new connections until enough have closed; open ones are not cut.
async fn follow_max_connections(
    limit: Arc<Semaphore>,
    mut current: usize,
    mut changes: watch::Receiver<Arc<crate::config::BrokerConfig>>,
) {
    while changes.changed().await.is_ok() {
        let wanted = changes.borrow_and_update().max_connections();
        if wanted == current {
            continue;
        }
        if wanted > current {
            limit.add_permits(wanted - current);
        } else if wanted < current {
            let excess = current - wanted;
            let left = excess - limit.forget_permits(excess);
            if left > 0 {
                // Permits held by open connections are taken back as those close.
                let limit = limit.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = limit.acquire_many_owned(left as u32).await {
                        permits.forget();
                    }
                });
            }
        }
        current = wanted;
        info!(max_connections = wanted, "connection limit changed");
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {1} (listener {0}): {2}")]
    Bind(String, SocketAddr, std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Sasl(#[from] SaslConfigError),
}

/// A bound listener.
struct Bound {
    spec: Arc<ListenerSpec>,
    listener: TcpListener,
    /// Set for SSL and SASL_SSL listeners.
    tls: Option<Arc<TlsListener>>,
    /// Set for SASL_PLAINTEXT and SASL_SSL listeners.
    sasl: Option<Arc<SaslListener>>,
}

/// What every accept loop shares.
#[derive(Clone)]
struct Shared {
    broker: Arc<Broker>,
    limit: Arc<Semaphore>,
    budget: Arc<RequestBudget>,
}

/// Accepts connections on one listener until shutdown.
async fn accept_loop(
    bound: Bound,
    shared: Shared,
    done: mpsc::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Bound {
        spec,
        listener,
        tls,
        sasl,
    } = bound;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(listener = %spec.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.limit.clone().try_acquire_owned() else {
            warn!(%peer, "connection refused: max.connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection_gauge = shared.broker.metrics.connection();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        let mut session = Session::new(&spec, peer);
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let gate = sasl
            .clone()
            .map(|listener| Gate::new(listener, &shared.broker.config, peer));
        tokio::spawn(async move {
            let _connection_gauge = connection_gauge;
            let mut connection = Connection {
                broker: shared.broker,
                budget: shared.budget,
                backlog: Arc::new(Backlog::default()),
                session: Arc::new(session.clone()),
                gate,
            };
            match acceptor {
                None => {
                    let (reader, writer) = stream.into_split();
                    serve_connection(reader, writer, connection, shutdown).await;
                }
                Some(acceptor) => {
                    // The handshake runs in the connection's own task, bounded in time (and
                    // by rustls in size), so a stalled client holds only its own slot.
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            if let Some(principal) = tls_principal(&stream) {
                                session.principal = principal;
                                connection.session = Arc::new(session);
                            }
                            let (reader, writer) = tokio::io::split(stream);
                            serve_connection(reader, writer, connection, shutdown).await;
                        }
                        Ok(Err(e)) => warn!(%peer, "closing connection: TLS handshake failed: {e}"),
                        Err(_) => {
                            warn!(%peer, "closing connection: TLS handshake not completed within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs())
                        }
                    }
                }
            }
            drop(permit);
            drop(done);
        });
    }
}

/// A TLS handshake must complete within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The principal of a TLS client that presented a certificate.
fn tls_principal<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    certificate_principal(certs.first()?.as_ref())
}

/// One connection's state, as the reader sees it.
struct Connection {
    broker: Arc<Broker>,
    budget: Arc<RequestBudget>,
    backlog: Arc<Backlog>,
    session: Arc<Session>,
    /// Present on a SASL listener: authentication and re-authentication.
    gate: Option<Gate>,
}

async fn serve_connection<R, W>(
    reader: R,
    writer: W,
    connection: Connection,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: WriteFile + 'static,
{
    let peer = connection.session.peer;
    debug!(%peer, listener = %connection.session.listener, "connection opened");
    let (queue_tx, queue_rx) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
    let backlog = connection.backlog.clone();
    let mut writer_task = tokio::spawn(write_responses(writer, queue_rx, backlog, peer));
    let idle = idle_limit(&connection.broker);
    if let Err(reason) = read_requests(reader, connection, queue_tx, shutdown).await {
        warn!(%peer, "closing connection: {reason}");
    }
    // The reader dropped its sender: the writer finishes what is queued, then ends; a client
    // that does not take its last responses within the idle limit is cut off.
    if tokio::time::timeout(idle, &mut writer_task).await.is_err() {
        writer_task.abort();
        warn!(%peer, "closing connection: responses not read within connections.max.idle.ms");
    }
    debug!(%peer, "connection closed");
}

/// `connections.max.idle.ms` as a duration (-1: no limit).
fn idle_limit(broker: &Broker) -> Duration {
    let idle_ms = broker.config.connections_max_idle_ms();
    if idle_ms < 0 {
        Duration::MAX
    } else {
        Duration::from_millis(idle_ms as u64)
    }
}

/// Reads frames until EOF, shutdown, or a frame that must close the connection.
async fn read_requests<R: AsyncRead + Unpin>(
    mut reader: R,
    connection: Connection,
    queue: mpsc::Sender<Outgoing>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let Connection {
        broker,
        budget,
        backlog,
        session,
        gate,
    } = connection;
    let mut session = session;
    let mut gate = gate;
    let peer = session.peer;
    let max = broker.config.socket_request_max_bytes();
    let idle_ms = broker.config.connections_max_idle_ms();
    let idle = idle_limit(&broker);
    // One Fetch of this connection handled at a time (see the module docs).
    let fetch_slot = Arc::new(Semaphore::new(1));
    loop {
        // Responses piling up unread: stop reading requests until the client reads them.
        let drained = tokio::select! {
            drained = tokio::time::timeout(idle, backlog.wait_below(MAX_UNWRITTEN_RESPONSE_BYTES)) => drained,
            _ = shutdown.changed() => return Ok(()),
        };
        match drained {
            Err(_) => return Err(format!("responses not read for more than {idle_ms} ms")),
            Ok(false) => return Err("writer stopped".into()),
            Ok(true) => {}
        }
        // A client quota throttled this connection: read nothing from it until the throttle
        // time has passed (Kafka's muted channel); its responses are still written.
        if let Some(until) = session.mute.take() {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            read = tokio::time::timeout(idle, reader.read_exact(&mut prefix)) => read,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Err(_) => return Err(format!("idle for more than {idle_ms} ms")),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(_)) => {}
        }
        // Before SASL authentication completes, frames are held to sasl.server.max.receive.size.
        let limit = match &gate {
            Some(g) if !g.open() => max.min(broker.config.sasl_server_max_receive_size()),
            _ => max,
        };
        let length = frame::check_length(prefix, limit).map_err(|e| e.to_string())?;
        // Room in the broker-wide budget before allocating; until then this connection is not
        // read (back-pressure). Given back when `permit` drops, on every path out of here.
        let mut permit = tokio::select! {
            permit = budget.acquire(length) => Some(permit),
            _ = shutdown.changed() => return Ok(()),
        };
        let mut body = BytesMut::zeroed(length);
        // A frame must arrive whole within the idle timeout too, so a client sending a byte a
        // second cannot hold a buffer forever.
        match tokio::time::timeout(idle, reader.read_exact(&mut body)).await {
            Err(_) => return Err("frame not completed within connections.max.idle.ms".into()),
            Ok(Err(e)) => return Err(format!("frame truncated: {e}")),
            Ok(Ok(_)) => {}
        }
        let outgoing = match codec::decode_request(body.freeze(), broker.versions()) {
            Ok(Decoded::ApiVersionsTooNew { correlation_id }) => Outgoing::Ready(backlog.track(
                codec::api_versions_too_new(correlation_id, broker.versions()),
            )),
            Ok(Decoded::Request { header, body }) => {
                if let Some(g) = gate.as_mut() {
                    let reply = |response: &ResponseKind| {
                        let api_key =
                            ApiKey::try_from(header.request_api_key).expect("a SASL api key");
                        let version = header.request_api_version;
                        codec::encode_response(header.correlation_id, api_key, version, response)
                            .map(|frame| backlog.track(frame))
                            .map_err(|e| e.to_string())
                    };
                    let answer = match g.screen(&header, &body, &broker.credentials, Instant::now())
                    {
                        Verdict::Pass => None,
                        Verdict::Refuse(reason) => return Err(reason),
                        Verdict::Reply(response) => Some(reply(&response)?),
                        Verdict::Authenticated(response, principal) => {
                            if session.principal != principal {
                                let mut authenticated = Session::clone(&session);
                                authenticated.principal = principal;
                                session = Arc::new(authenticated);
                            }
                            Some(reply(&response)?)
                        }
                        Verdict::Close(response, delay, reason) => {
                            // Answered after the delay, in the background, so a client that
                            // hammers wrong passwords slows only itself; then closed.
                            let answer = reply(&response)?;
                            let delayed = tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                Some(answer)
                            });
                            let _ = queue.send(Outgoing::Pending(delayed)).await;
                            return Err(reason);
                        }
                    };
                    if let Some(answer) = answer {
                        drop(permit);
                        if queue.send(Outgoing::Ready(answer)).await.is_err() {
                            return Err("writer stopped".into());
                        }
                        continue;
                    }
                }
                // A Fetch waits, in arrival order, for this connection's previous Fetch to be
                // answered (its answer then counts in the backlog above).
                let fetch_turn = if header.request_api_key == ApiKey::Fetch as i16 {
                    let turn = tokio::select! {
                        turn = tokio::time::timeout(idle, fetch_slot.clone().acquire_owned()) => turn,
                        _ = shutdown.changed() => return Ok(()),
                    };
                    match turn {
                        Ok(Ok(turn)) => Some(turn),
                        Ok(Err(_)) => return Err("fetch slot closed".into()),
                        Err(_) => {
                            return Err(format!(
                                "a Fetch waited for the previous one for more than {idle_ms} ms"
                            ))
                        }
                    }
                } else {
                    None
                };
                let broker = broker.clone();
                let session = session.clone();
                let answers = backlog.clone();
                let mut handling = Box::pin(async move {
                    let api_key = ApiKey::try_from(header.request_api_key).ok()?;
                    let version = header.request_api_version;
                    let correlation_id = header.correlation_id;
                    // JoinGroup and ConsumerGroupHeartbeat record the member's host, as Kafka
                    // shows it in DescribeGroups and ConsumerGroupDescribe.
                    if api_key == ApiKey::Fetch {
                        // Records the handler served from segment files stay there until the
                        // writer sends them.
                        let handled = fetch_files::collect(broker.handle(&session, &header, body));
                        let (response, mut files) = handled.await;
                        let ResponseKind::Fetch(response) = response? else {
                            warn!("a Fetch request got a response of another kind");
                            return None;
                        };
                        let encoded = fetch_encode::encode_fetch_response(
                            correlation_id,
                            version,
                            &response,
                            |topic, partition| files.take(topic, partition).map(|f| (f.size(), f)),
                        );
                        return match encoded {
                            Ok(chunks) => Some(answers.track_chunks(chunks)),
                            Err(e) => {
                                warn!("{e}");
                                None
                            }
                        };
                    }
                    let response =
                        if matches!(api_key, ApiKey::JoinGroup | ApiKey::ConsumerGroupHeartbeat) {
                            let host = format!("/{}", peer.ip());
                            crate::broker::groups::CLIENT_HOST
                                .scope(host, broker.handle(&session, &header, body))
                                .await?
                        } else {
                            broker.handle(&session, &header, body).await?
                        };
                    match codec::encode_response(correlation_id, api_key, version, &response) {
                        Ok(frame) => Some(answers.track(frame)),
                        Err(e) => {
                            warn!("{e}");
                            None
                        }
                    }
                });
                // Run the handler here, in arrival order, up to its first suspension point:
                // everything a handler does before it first waits (a Produce's appends, for
                // one) happens in the order the requests came, as if they were served one by
                // one. Only what waits (fsync, long poll, rebalance) goes on concurrently.
                match std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await {
                    Poll::Ready(Some(answer)) => Outgoing::Ready(answer),
                    Poll::Ready(None) => Outgoing::Nothing,
                    Poll::Pending => {
                        // The request's bytes live until the handler ends: so does its budget.
                        let permit = permit.take();
                        Outgoing::Pending(tokio::spawn(async move {
                            let answer = handling.await;
                            drop((permit, fetch_turn));
                            answer
                        }))
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        };
        // Answered at once (or refused): the request's bytes are gone, give back their budget
        // before waiting for the writer or the next frame.
        drop(permit);
        if queue.send(outgoing).await.is_err() {
            return Err("writer stopped".into());
        }
    }
}

/// Writes responses strictly in request order.
async fn write_responses<W: WriteFile>(
    writer: W,
    mut queue: mpsc::Receiver<Outgoing>,
    backlog: Arc<Backlog>,
    peer: SocketAddr,
) {
    let mut writer = BufWriter::new(writer);
    // The connection's buffer for file ranges that cannot be sent with `sendfile`.
    let mut copy_buffer = Vec::new();
    while let Some(outgoing) = queue.recv().await {
        let answer = match outgoing {
            Outgoing::Ready(answer) => Some(answer),
            Outgoing::Nothing => None,
            Outgoing::Pending(handle) => match handle.await {
                Ok(answer) => answer,
                Err(e) => {
                    warn!(%peer, "request handler failed: {e}");
                    // The client would wait forever for this response: close instead.
                    break;
                }
            },
        };
        if let Some(answer) = answer {
            if let Err(e) = write_answer(&mut writer, &answer, &mut copy_buffer).await {
                // A file range that could not be sent whole leaves the client a broken frame.
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    warn!(%peer, "closing connection: {e}");
                } else {
                    debug!(%peer, "write failed: {e}");
                }
                break;
            }
            // Uncounted before the flush, so the count is right by the time the client can
            // read the answer.
            drop(answer);
        }
        // Flush when nothing else is ready, so pipelined responses share a syscall.
        if queue.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    backlog.close();
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Writes one answer: its bytes through the buffer, its file ranges from their files (after
/// flushing what precedes them).
async fn write_answer<W: WriteFile>(
    writer: &mut BufWriter<W>,
    answer: &Answer,
    copy_buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    for chunk in answer.chunks() {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(bytes).await?,
            Chunk::External(Held::File(slice)) => {
                writer.flush().await?;
                writer.get_mut().write_file(slice, copy_buffer).await?;
            }
            // Records from the tier, written from the remote cache's chunks.
            Chunk::External(Held::Remote(pieces)) => {
                for piece in pieces {
                    writer.write_all(piece).await?;
                }
            }
        }
    }
    Ok(())
}

/// Logs the startup line.
pub fn log_startup(listeners: &[(String, SocketAddr)], data_dir: &std::path::Path) {
    let listen = listeners
        .iter()
        .map(|(name, addr)| format!("{name}://{addr}"))
        .collect::<Vec<_>>()
        .join(",");
    info!(
        %listen,
        data_dir = %data_dir.display(),
        "cairn serving on {listen}, data in {}",
        data_dir.display()
    );
}

#[cfg(test)]
mod tests;
