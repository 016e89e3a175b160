//! A small client of etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`,
//! `/v3/watch`, `/v3/auth/authenticate`) over HTTP or HTTPS.
//!
//! When etcd has authentication on, the client authenticates with its credentials before its
//! first call, sends the token with every call, and authenticates again (once per call) when
//! etcd says the token is invalid or stale (tokens expire after etcd's `--auth-token-ttl`).
//!
//! Why not the `etcd-client` crate: it generates its gRPC code with `protoc` at build time, and a
//! fresh machine must build Cairn with cargo alone. The gateway speaks the same API as JSON
//! (keys and values base64, 64-bit numbers as strings), and reqwest is already in the tree
//! through the object-storage tier. Knows nothing of Cairn's keys: it moves bytes.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::access::{Credentials, EtcdAccess};

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoint}: {}", with_causes(.error))]
    Http {
        endpoint: String,
        error: reqwest::Error,
    },
    #[error("etcd at {endpoint} answered {status}: {body}")]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("etcd answered something unexpected: {0}")]
    Malformed(String),
    #[error("no etcd endpoint answered (tried {0})")]
    Unavailable(String),
    #[error("etcd at {endpoint} refused the credentials of user '{user}' (cairn.cluster.etcd.username / cairn.cluster.etcd.password): {reason}")]
    Credentials {
        endpoint: String,
        user: String,
        reason: String,
    },
}

/// One key as read from etcd.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A comparison in a transaction: the txn's success branch runs only if every one holds.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last written at this revision.
    ModRevision(String, i64),
}

/// An operation in a transaction's success branch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a value, bound to a lease when given (the key dies with the lease).
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete(String),
    /// Delete every key that starts with this prefix.
    DeletePrefix(String),
}

/// The etcd client: a list of endpoints tried in turn.
#[derive(Clone)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    credentials: Option<Credentials>,
    /// The token of the last authentication, sent with every call.
    token: Arc<Mutex<Option<String>>>,
}

impl Etcd {
    /// `endpoints` as [`normalize`] leaves them; `access` from [`EtcdAccess::from_config`].
    pub fn new(endpoints: Vec<String>, access: EtcdAccess) -> Result<Etcd, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Unavailable("no endpoints".into()));
        }
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(2));
        if !access.roots.is_empty() {
            builder = builder.tls_certs_only(access.roots);
        }
        if let Some(identity) = access.identity {
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|error| EtcdError::Http {
            endpoint: endpoints[0].clone(),
            error,
        })?;
        Ok(Etcd {
            http,
            endpoints,
            credentials: access.credentials,
            token: Arc::default(),
        })
    }

    /// The token to send, authenticating first when credentials are set and none is held.
    async fn token(&self, endpoint: &str) -> Result<Option<String>, EtcdError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        if let Some(token) = self.token.lock().unwrap().clone() {
            return Ok(Some(token));
        }
        let body = json!({"name": credentials.user, "password": credentials.password()});
        let response = self
            .http
            .post(format!("{endpoint}/v3/auth/authenticate"))
            .timeout(std::time::Duration::from_secs(5))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| EtcdError::Http {
                endpoint: endpoint.to_string(),
                error,
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let token = reply["token"].as_str().filter(|t| !t.is_empty());
        match (status, token) {
            (200, Some(token)) => {
                *self.token.lock().unwrap() = Some(token.to_string());
                Ok(Some(token.to_string()))
            }
            _ => Err(EtcdError::Credentials {
                endpoint: endpoint.to_string(),
                user: credentials.user.clone(),
                reason: error_text(&reply, status),
            }),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers, authenticating again once
    /// when etcd refuses the token.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        match self.call_once(path, &body).await {
            Err(EtcdError::Status {
                body: ref reply, ..
            }) if self.credentials.is_some() && token_refused(reply) => {
                tracing::info!(%reply, "etcd refused this broker's token; authenticating again");
                self.token.lock().unwrap().take();
                self.call_once(path, &body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            let token = match self.token(endpoint).await {
                Ok(token) => token,
                Err(e @ EtcdError::Http { .. }) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut request = self
                .http
                .post(format!("{endpoint}{path}"))
                .timeout(std::time::Duration::from_secs(5))
                .header("content-type", "application/json");
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            let sent = request.body(body.to_string()).send().await;
            let response = match sent {
                Ok(r) => r,
                Err(error) => {
                    last = Some(EtcdError::Http {
                        endpoint: endpoint.clone(),
                        error,
                    });
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|error| EtcdError::Http {
                endpoint: endpoint.clone(),
                error,
            })?;
            if status != 200 {
                return Err(EtcdError::Status {
                    endpoint: endpoint.clone(),
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            return serde_json::from_str(&text)
                .map_err(|e| EtcdError::Malformed(format!("{path}: {e}")));
        }
        Err(last.unwrap_or_else(|| EtcdError::Unavailable(self.endpoints.join(","))))
    }

    /// Every key under `prefix`, and the store's revision at the time of the read.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let reply = self
            .call(
                "/v3/kv/range",
                json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
            )
            .await?;
        let revision = number(&reply["header"]["revision"]);
        let kvs = reply["kvs"]
            .as_array()
            .map(|kvs| kvs.iter().map(key_value).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default();
        Ok((kvs, revision))
    }

    /// Runs a transaction: `ops` if every comparison holds. Returns whether they held.
    pub async fn txn(&self, compare: &[Compare], ops: &[Op]) -> Result<bool, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Absent(key) => json!({
                    "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL",
                    "create_revision": "0"
                }),
                Compare::ModRevision(key, revision) => json!({
                    "key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL",
                    "mod_revision": revision.to_string()
                }),
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let mut put = json!({"key": b64(key.as_bytes()), "value": b64(value)});
                    if let Some(lease) = lease {
                        put["lease"] = json!(lease.to_string());
                    }
                    json!({ "request_put": put })
                }
                Op::Delete(key) => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
                Op::DeletePrefix(prefix) => json!({"request_delete_range": {
                    "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))
                }}),
            })
            .collect();
        let reply = self
            .call(
                "/v3/kv/txn",
                json!({"compare": compare, "success": success}),
            )
            .await?;
        // Proto3 JSON leaves out false fields.
        Ok(reply["succeeded"].as_bool().unwrap_or(false))
    }

    /// A new lease of `ttl_seconds`; its id.
    pub async fn lease_grant(&self, ttl_seconds: i64) -> Result<i64, EtcdError> {
        let reply = self
            .call("/v3/lease/grant", json!({"TTL": ttl_seconds.to_string()}))
            .await?;
        match number(&reply["ID"]) {
            0 => Err(EtcdError::Malformed(format!("lease grant: {reply}"))),
            id => Ok(id),
        }
    }

    /// Renews a lease; `false` when it has expired (or never existed).
    pub async fn lease_keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let reply = self
            .call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(number(&reply["result"]["TTL"]) > 0)
    }

    /// Ends a lease now: every key bound to it is deleted.
    pub async fn lease_revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await?;
        Ok(())
    }

    /// Watches `prefix` from `start_revision`; `changed` is called once per batch of events.
    /// Returns when the stream ends (etcd restarted, connection lost): the caller re-reads and
    /// watches again.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
        mut changed: impl FnMut(),
    ) -> Result<(), EtcdError> {
        let endpoint = &self.endpoints[0];
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string()
        }});
        let mut request = self
            .http
            .post(format!("{endpoint}/v3/watch"))
            .header("content-type", "application/json");
        if let Some(token) = self.token(endpoint).await? {
            request = request.header("authorization", token);
        }
        let mut response = request
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| EtcdError::Http {
                endpoint: endpoint.clone(),
                error,
            })?;
        // Each event batch arrives as one JSON object on its own line; which chunk holds
        // which line does not matter, only that something changed.
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| EtcdError::Http {
            endpoint: endpoint.clone(),
            error,
        })? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if message["result"]["events"].is_array() {
                    changed();
                }
            }
        }
        Ok(())
    }
}

/// `endpoints` as URLs: trimmed, without a trailing `/`, a bare `host:port` meaning http.
pub fn normalize(endpoints: &[String]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| e.trim().trim_end_matches('/'))
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            }
        })
        .collect()
}

/// Whether an error reply says the token is missing, invalid or from an older auth store:
/// authenticating again fixes each.
fn token_refused(reply: &str) -> bool {
    [
        "invalid auth token",
        "user name is empty",
        "revision of auth store is old",
    ]
    .iter()
    .any(|m| reply.contains(m))
}

/// etcd's message in an error reply (`{"error": ..., "code": ...}`), else the HTTP status.
fn error_text(reply: &Value, status: u16) -> String {
    reply["error"]
        .as_str()
        .or_else(|| reply["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP status {status}"))
}

/// An error and its causes (reqwest's own message leaves out why a TLS handshake failed).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of the range of keys that start with `prefix` (the prefix with its last byte + 1).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A proto3 JSON int64: a string, or absent for zero.
fn number(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn key_value(kv: &Value) -> Result<KeyValue, EtcdError> {
    let decode = |field: &str| -> Result<Vec<u8>, EtcdError> {
        match kv[field].as_str() {
            None => Ok(Vec::new()),
            Some(s) => B64
                .decode(s)
                .map_err(|e| EtcdError::Malformed(format!("{field} is not base64: {e}"))),
        }
    };
    let key = String::from_utf8(decode("key")?)
        .map_err(|_| EtcdError::Malformed("a key is not UTF-8".into()))?;
    Ok(KeyValue {
        key,
        value: decode("value")?,
        mod_revision: number(&kv["mod_revision"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("/cairn/"), b"/cairn0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }

    #[test]
    fn endpoints_are_urls_and_token_errors_are_recognised() {
        let got = normalize(&[
            " 127.0.0.1:2379/".into(),
            "https://e:2379".into(),
            "".into(),
        ]);
        assert_eq!(got, vec!["http://127.0.0.1:2379", "https://e:2379"]);
        assert!(token_refused(
            r#"{"error":"etcdserver: invalid auth token","code":16}"#
        ));
        assert!(!token_refused(
            r#"{"error":"etcdserver: permission denied","code":7}"#
        ));
    }

    #[test]
    fn numbers_are_strings_or_absent() {
        assert_eq!(number(&json!("42")), 42);
        assert_eq!(number(&Value::Null), 0);
        assert_eq!(number(&json!(7)), 7);
    }
}
