//! The key-value endpoints over the key index (`src/keys/`): one key's latest value
//! (`GET /v1/topics/{topic}/keys/{key}` or `…/keys?key_base64=`), many keys
//! (`POST /v1/topics/{topic}/keys:batchGet`) and a consistent snapshot as NDJSON
//! (`GET /v1/topics/{topic}/snapshot`). The one place that maps the index's answers and errors to
//! HTTP statuses. Lookups and snapshots run on blocking threads; a snapshot streams through a
//! small channel, so memory stays bounded and a reader that stops is cut after [`IDLE_LIMIT`].

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use serde_json::{json, Value};
use tracing::warn;

use super::basic_auth::Authenticated;
use super::AppState;
use crate::authz::{Operation, ResourceType};
use crate::keys::snapshot::partition_snapshot;
use crate::keys::{indexed, KeyIndex, KeysError, Record};
use crate::log::partition::Partition;

/// Longest key accepted.
pub(crate) const MAX_KEY_BYTES: usize = 4096;
/// Most keys in one batchGet.
pub(crate) const MAX_BATCH_KEYS: usize = 1000;
/// A snapshot reader that takes nothing for this long is cut.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of NDJSON gathered before a chunk is handed to the connection.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the snapshot thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// When the connection is cut; a streaming response pushes it on as the reader keeps up.
#[derive(Clone)]
pub(crate) struct Deadline(Arc<Mutex<Instant>>);

impl Deadline {
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline(Arc::new(Mutex::new(Instant::now() + d)))
    }
    pub(crate) fn at(&self) -> Instant {
        *self.0.lock().expect("deadline lock")
    }
    pub(crate) fn extend(&self, d: Duration) {
        let mut at = self.0.lock().expect("deadline lock");
        *at = (*at).max(Instant::now() + d);
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// `%XX`-decoded bytes; in a query (`plus_is_space`) `+` is a space, in a path it is itself.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The query's `name=value` pairs, decoded.
fn query(uri: &Uri) -> Result<Vec<(String, Vec<u8>)>, Response> {
    let mut out = Vec::new();
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k, true), percent_decode(v, true)) {
            (Some(k), Some(v)) => out.push((String::from_utf8_lossy(&k).into_owned(), v)),
            _ => return Err(error(StatusCode::BAD_REQUEST, "malformed percent-encoding")),
        }
    }
    Ok(out)
}

fn param<'a>(q: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
}

/// JSON for bytes: the string when UTF-8, else base64, with which it is.
fn bytes_json(b: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(b) {
        Ok(s) => (Value::String(s.to_string()), "utf8"),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            "base64",
        ),
    }
}

fn record_json(partition: i32, r: &Record) -> Value {
    let mut v = json!({ "partition": partition, "offset": r.offset, "timestamp": r.timestamp });
    if let Some(k) = &r.key {
        let (key, enc) = bytes_json(k);
        v["key"] = key;
        v["key_encoding"] = enc.into();
    }
    match &r.value {
        Some(val) => {
            let (value, enc) = bytes_json(val);
            v["value"] = value;
            v["value_encoding"] = enc.into();
        }
        None => v["value"] = Value::Null,
    }
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, val)| {
            let mut h = json!({ "key": String::from_utf8_lossy(k) });
            if let Some(val) = val {
                let (value, enc) = bytes_json(val);
                h["value"] = value;
                h["value_encoding"] = enc.into();
            }
            h
        })
        .collect();
    v["headers"] = headers.into();
    v
}

/// The partitions of an indexed topic to consult (`?partition=N` narrows), or the error answer.
///
/// With a SASL listener, only a principal authenticated by `cairn.http.authentication=basic`
/// with READ on the topic may read it: without HTTP authentication the topics' data is not
/// served at all.
fn partitions(
    state: &AppState,
    who: Option<&Authenticated>,
    topic: &str,
    q: &[(String, Vec<u8>)],
) -> Result<Vec<Arc<Partition>>, Response> {
    match who {
        Some(who) => {
            let authorizer = &state.broker.authorizer;
            if !authorizer.authorize(who.requester(), Operation::Read, ResourceType::Topic, topic) {
                // As Kafka does for a topic the principal may not describe: no hint that it
                // exists unless DESCRIBE is granted.
                let status = if authorizer.authorize(
                    who.requester(),
                    Operation::Describe,
                    ResourceType::Topic,
                    topic,
                ) {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::NOT_FOUND
                };
                return Err(error(status, format!("READ on topic '{topic}' is needed")));
            }
        }
        None if state.authentication_on => {
            return Err(error(
                StatusCode::FORBIDDEN,
                "authentication is on (a SASL listener): set cairn.http.authentication=basic so key lookups can check READ on the topic",
            ));
        }
        None => {}
    }
    let log = &state.broker.log;
    let (Some(info), Some(config)) = (log.topic(topic), log.topic_config(topic)) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("unknown topic '{topic}'"),
        ));
    };
    if !indexed(&config) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("topic '{topic}' has no key index: its cleanup.policy has no 'compact' and cairn.key.index.enable is not true"),
        ));
    }
    let wanted = match param(q, "partition") {
        None => None,
        Some(p) => match std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
        {
            Some(p) if p >= 0 && p < info.partitions => Some(p),
            _ => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "topic '{topic}' has no partition {}",
                        String::from_utf8_lossy(p)
                    ),
                ))
            }
        },
    };
    let mut out = Vec::new();
    for p in 0..info.partitions {
        if wanted.is_some_and(|w| w != p) {
            continue;
        }
        match log.partition(topic, p) {
            Some(part) => out.push(part),
            None => {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("unknown topic '{topic}'"),
                ))
            }
        }
    }
    Ok(out)
}

fn keys_error(e: &KeysError) -> Response {
    match e {
        KeysError::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        // A store that is down: retriable, as a consumer's fetch of tiered data is.
        KeysError::Tier(_) => {
            warn!(error = %e, "http: key lookup could not read the tier");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        KeysError::Log(crate::log::LogError::UnknownTopicOrPartition) => {
            error(StatusCode::NOT_FOUND, "the topic was deleted")
        }
        _ => {
            warn!(error = %e, "http: key lookup failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The latest record of `key` over `parts`: the newest by timestamp when several partitions
/// hold the key (then partition order breaks ties). Tombstones count, and answer "absent".
fn lookup_all(
    index: &KeyIndex,
    parts: &[Arc<Partition>],
    key: &[u8],
) -> Result<Option<(i32, Record)>, KeysError> {
    let mut best: Option<(i32, Record)> = None;
    for p in parts {
        if let Some(r) = index.lookup(p, key)? {
            if best
                .as_ref()
                .is_none_or(|(_, b)| r.timestamp >= b.timestamp)
            {
                best = Some((p.partition_index(), r));
            }
        }
    }
    Ok(best.filter(|(_, r)| r.value.is_some()))
}

fn check_key(key: &[u8]) -> Result<(), Response> {
    if key.len() > MAX_KEY_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "key of {} bytes exceeds the limit of {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    Ok(())
}

fn b64(v: &[u8]) -> Result<Vec<u8>, Response> {
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(v))
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("malformed base64 key: {e}"),
            )
        })
}

/// `(topic, rest)` from `/v1/topics/{topic}/{rest}`.
fn topic_and_rest(uri: &Uri) -> Option<(String, &str)> {
    let rest = uri.path().strip_prefix("/v1/topics/")?;
    let (topic, rest) = rest.split_once('/')?;
    let topic = String::from_utf8(percent_decode(topic, false)?).ok()?;
    Some((topic, rest))
}

/// `GET /v1/topics/{topic}/keys/{key}` and `GET /v1/topics/{topic}/keys?key_base64=`.
pub(crate) async fn get_key(
    State(state): State<AppState>,
    who: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let q = match query(&uri) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let Some((topic, rest)) = topic_and_rest(&uri) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let key = match (rest.strip_prefix("keys/"), param(&q, "key_base64")) {
        (_, Some(v)) => match b64(v) {
            Ok(k) => k,
            Err(r) => return r,
        },
        (Some(k), None) => match percent_decode(k, false) {
            Some(k) => k,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed percent-encoding in the key",
                )
            }
        },
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give the key in the path or as ?key_base64=",
            )
        }
    };
    if let Err(r) = check_key(&key) {
        return r;
    }
    let parts = match partitions(&state, who.as_deref(), &topic, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let index = state.keys.clone();
    let lookup = tokio::task::spawn_blocking(move || lookup_all(&index, &parts, &key)).await;
    let found = match lookup {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return keys_error(&e),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    };
    let Some((partition, r)) = found else {
        return error(StatusCode::NOT_FOUND, "no live record with this key");
    };
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/octet-stream"));
    if raw {
        let value = r.value.clone().unwrap_or_default();
        return (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-cairn-partition"),
                    partition.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-cairn-offset"),
                    r.offset.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-cairn-timestamp"),
                    r.timestamp.to_string(),
                ),
            ],
            value,
        )
            .into_response();
    }
    json_response(StatusCode::OK, &record_json(partition, &r))
}

/// `POST /v1/topics/{topic}/keys:batchGet` with `{"keys": [...]}` and/or `{"keys_base64": [...]}`.
pub(crate) async fn batch_get(
    State(state): State<AppState>,
    who: Option<Extension<Authenticated>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let q = match query(&uri) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let Some((topic, _)) = topic_and_rest(&uri) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"keys\": [\"k\", ...]}",
        );
    };
    let mut keys = Vec::new();
    for (field, base64) in [("keys", false), ("keys_base64", true)] {
        let Some(list) = req.get(field) else { continue };
        let Some(list) = list.as_array() else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("'{field}' must be an array of strings"),
            );
        };
        if keys.len() + list.len() > MAX_BATCH_KEYS {
            return error(
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_BATCH_KEYS} keys in one batchGet"),
            );
        }
        for k in list {
            let Some(s) = k.as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("'{field}' must be an array of strings"),
                );
            };
            let key = if base64 {
                match b64(s.as_bytes()) {
                    Ok(k) => k,
                    Err(r) => return r,
                }
            } else {
                s.as_bytes().to_vec()
            };
            if let Err(r) = check_key(&key) {
                return r;
            }
            keys.push(key);
        }
    }
    let parts = match partitions(&state, who.as_deref(), &topic, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let index = state.keys.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, KeysError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (k, enc) = bytes_json(&key);
            out.push(match lookup_all(&index, &parts, &key)? {
                Some((p, r)) => {
                    let mut v = record_json(p, &r);
                    v["found"] = true.into();
                    v
                }
                None => json!({ "key": k, "key_encoding": enc, "found": false }),
            });
        }
        Ok(out)
    })
    .await;
    match answer {
        Ok(Ok(results)) => json_response(StatusCode::OK, &json!({ "results": results })),
        Ok(Err(e)) => keys_error(&e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// `GET /v1/topics/{topic}/snapshot[?as_of=P:O,...][&partition=N]`.
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    who: Option<Extension<Authenticated>>,
    Extension(deadline): Extension<Deadline>,
    uri: Uri,
) -> Response {
    let q = match query(&uri) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let Some((topic, _)) = topic_and_rest(&uri) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let parts = match partitions(&state, who.as_deref(), &topic, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut plan: Vec<(Arc<Partition>, i64)> = parts
        .into_iter()
        .map(|p| {
            // Only committed records: the hand-off is the last stable offset, where a
            // `read_committed` consumer continues.
            let lso = p.offsets().last_stable_offset;
            (p, lso)
        })
        .collect();
    if let Some(as_of) = param(&q, "as_of") {
        let as_of = String::from_utf8_lossy(as_of).into_owned();
        for item in as_of.split(',').filter(|s| !s.is_empty()) {
            let parsed = item
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)));
            let Some((p, o)) = parsed else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("as_of takes PARTITION:OFFSET,..., not '{item}'"),
                );
            };
            let Some(slot) = plan
                .iter_mut()
                .find(|(part, _)| part.partition_index() == p)
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("as_of names partition {p}, not in this snapshot"),
                );
            };
            let offsets = slot.0.offsets();
            if o > offsets.last_stable_offset || o < offsets.log_start_offset {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "as_of {p}:{o} is outside [{}, {}] (log start, last stable offset)",
                        offsets.log_start_offset, offsets.last_stable_offset
                    ),
                );
            }
            slot.1 = o;
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let index = state.keys.clone();
    let working = deadline.clone();
    tokio::task::spawn_blocking(move || write_snapshot(&index, &plan, &tx, &working));
    let stream = futures_util::stream::poll_fn(move |cx| {
        deadline.extend(IDLE_LIMIT);
        rx.poll_recv(cx)
            .map(|c| c.map(Ok::<_, std::convert::Infallible>))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Runs the snapshot on a blocking thread, sending NDJSON chunks; ends with the offsets to
/// continue from, or with an error line (and no offsets) when it could not finish.
fn write_snapshot(
    index: &KeyIndex,
    plan: &[(Arc<Partition>, i64)],
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    deadline: &Deadline,
) {
    let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut gone = false;
    for (p, as_of) in plan {
        let id = p.partition_index();
        let done = partition_snapshot(index, p, *as_of, |r| {
            // Progress while the reader keeps up; a full channel (a reader that stopped) blocks
            // below and stops this, so the deadline passes and the connection is cut.
            deadline.extend(IDLE_LIMIT);
            if serde_json::to_writer(&mut buf, &record_json(id, &r)).is_err() {
                return ControlFlow::Break(());
            }
            buf.push(b'\n');
            if buf.len() >= CHUNK_BYTES
                && tx
                    .blocking_send(Bytes::from(std::mem::take(&mut buf)))
                    .is_err()
            {
                gone = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        match done {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(partition = id, error = %e, "http: snapshot failed");
                let line = json!({ "error": e.to_string() });
                buf.extend_from_slice(format!("{line}\n").as_bytes());
                let _ = tx.blocking_send(Bytes::from(buf));
                return;
            }
        }
        if gone {
            return;
        }
    }
    let offsets: Vec<Value> = plan
        .iter()
        .map(|(p, o)| json!({ "partition": p.partition_index(), "offset": o }))
        .collect();
    let line = json!({ "end": true, "offsets": offsets });
    buf.extend_from_slice(format!("{line}\n").as_bytes());
    let _ = tx.blocking_send(Bytes::from(buf));
}
