//! A small client of etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`,
//! `/v3/watch`) over HTTP.
//!
//! Why not the `etcd-client` crate: it generates its gRPC code with `protoc` at build time, and a
//! fresh machine must build Cairn with cargo alone. The gateway speaks the same API as JSON
//! (keys and values base64, 64-bit numbers as strings), and reqwest is already in the tree
//! through the object-storage tier. Knows nothing of Cairn's keys: it moves bytes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoint}: {error}")]
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
}

impl Etcd {
    /// `endpoints`: `http://host:port` URLs (a bare `host:port` means http).
    pub fn new(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        let endpoints: Vec<String> = endpoints
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
            .collect();
        if endpoints.is_empty() {
            return Err(EtcdError::Unavailable("no endpoints".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|error| EtcdError::Http {
                endpoint: endpoints[0].clone(),
                error,
            })?;
        Ok(Etcd { http, endpoints })
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            let sent = self
                .http
                .post(format!("{endpoint}{path}"))
                .timeout(std::time::Duration::from_secs(5))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
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
        let mut response = self
            .http
            .post(format!("{endpoint}/v3/watch"))
            .header("content-type", "application/json")
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
    fn numbers_are_strings_or_absent() {
        assert_eq!(number(&json!("42")), 42);
        assert_eq!(number(&Value::Null), 0);
        assert_eq!(number(&json!(7)), 7);
    }
}
