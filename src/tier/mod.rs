//! The object-storage tier: a copy of record of the log in a bucket (S3 or a local directory,
//! through the `object_store` crate).
//!
//! Owns the bucket: the writer's lease ([`lease`]), the per-partition manifests
//! ([`manifest`]), the background copy of sealed, durable segments and of topic metadata
//! ([`upload`], its local side in `local`, paced by [`pace`]), each segment's offset and time
//! indexes built from its uploaded bytes (`remote_index`), reads of the offsets only the bucket
//! still holds ([`read`]), the cleaning of compacted segments only the bucket holds
//! (`clean`), the scrub that reads every object back and has damaged ones uploaded again
//! ([`scrub`]), DeleteRecords into the tier's data made durable before the answer (`deletion`),
//! and the restore of an empty data directory from the bucket ([`restore`]).
//! It reads the log through `log/`'s crate-internal view of a partition (segment handles, durable
//! offset) and tells the log how far the tier holds each partition, so local retention never
//! deletes what the bucket lacks. `log/` does not depend on this module; nothing here sees a
//! Kafka request type. Bucket layout (ARCHITECTURE.md has the crash analysis):
//!
//! ```text
//! <prefix>/lease/<epoch:020>.claim         who writes (created only if absent)
//! <prefix>/lease/<epoch:020>.heartbeat     renewed by the holder; .released on a clean stop
//! <prefix>/producer-id-block               the producer-id reservation
//! <prefix>/topics/<topic_id>.topic         topic metadata (name, partitions, configs)
//! <prefix>/partitions/<topic_id>/<p>/manifest/<version:020>.json      (created only if absent)
//! <prefix>/partitions/<topic_id>/<p>/segments/<base:020>-<uid>.log|.snapshot
//! <prefix>/partitions/<topic_id>/<p>/segments/<base:020>-<uid>.index|.timeindex  (remote_index)
//! <prefix>/partitions/<topic_id>/<p>/delete-before/<offset:020>    a DeleteRecords not yet in a manifest
//! ```

mod clean;
mod deletion;
pub mod epochs;
pub mod lease;
mod local;
pub mod manifest;
mod object;
pub mod pace;
pub mod read;
mod remote_index;
mod remote_txn;
pub mod restore;
pub mod scrub;
mod txn_rebuild;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::config::{BrokerConfig, ConfigError, RemoteUrl};

/// Errors of the tier.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the bucket prefix {url} is held by another broker (owner {owner}, epoch {epoch}, \
         heartbeat {age_ms} ms ago); one writer per prefix: stop it or wait for its lease to \
         expire ({timeout_ms} ms)"
    )]
    LeaseHeld {
        url: String,
        owner: String,
        epoch: u64,
        age_ms: i64,
        timeout_ms: i64,
    },
    #[error("this broker lost its lease on the bucket (epoch {epoch} was superseded)")]
    LeaseLost { epoch: u64 },
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A bucket (or directory) and the key prefix Cairn owns in it.
#[derive(Clone)]
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    root: String,
    /// The configured URL, for messages.
    pub url: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl Bucket {
    /// A bucket over any store (tests use object_store's in-memory store).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str, url: &str) -> Bucket {
        Bucket {
            store,
            root: root.trim_matches('/').to_string(),
            url: url.to_string(),
        }
    }

    /// The full key of `rel` under the prefix.
    pub fn key(&self, rel: &str) -> Path {
        if self.root.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.root))
        }
    }

    /// `key` with the prefix removed (for listings).
    pub fn relative(&self, key: &Path) -> String {
        let s = key.as_ref();
        match self.root.is_empty() {
            true => s.to_string(),
            false => s
                .strip_prefix(&self.root)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string()),
        }
    }
}

fn bad(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// The tier's bucket as configured, or `None` when `remote.log.storage.system.enable` is false.
/// S3 settings come from the `cairn.remote.storage.s3.*` keys, else from the standard AWS
/// variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_ALLOW_HTTP`). An error names the key at fault.
pub fn bucket_from_config(config: &BrokerConfig) -> Result<Option<Bucket>, ConfigError> {
    if !config.remote_storage_enabled() {
        return Ok(None);
    }
    const URL_KEY: &str = "cairn.remote.storage.url";
    let Some(url) = config.get(URL_KEY) else {
        return Err(bad(
            URL_KEY,
            "",
            "must be set when remote.log.storage.system.enable=true".into(),
        ));
    };
    let parsed = RemoteUrl::parse(url).map_err(|r| bad(URL_KEY, url, r))?;
    match parsed {
        RemoteUrl::File { dir } => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| bad(URL_KEY, url, format!("cannot create the directory: {e}")))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(URL_KEY, url, e.to_string()))?;
            Ok(Some(Bucket::new(Arc::new(store), "", url)))
        }
        RemoteUrl::S3 { bucket, prefix } => {
            // Client options first: they carry allow_http, which a later call must not reset.
            // Short client-side retries: the uploader retries with its own backoff, and a read
            // must fail in seconds (a retriable error) rather than hang while the store is down.
            let mut builder = AmazonS3Builder::from_env()
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(60)),
                )
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                })
                .with_bucket_name(bucket);
            let setting = |key: &str, env: &str| {
                config
                    .get(key)
                    .map(str::to_string)
                    .or_else(|| std::env::var(env).ok())
            };
            if let Some(v) = setting("cairn.remote.storage.s3.endpoint", "AWS_ENDPOINT_URL") {
                builder = builder.with_endpoint(v);
            }
            if let Some(v) = setting("cairn.remote.storage.s3.region", "AWS_REGION") {
                builder = builder.with_region(v);
            }
            if let Some(v) = config.get("cairn.remote.storage.s3.access.key.id") {
                builder = builder.with_access_key_id(v);
            }
            if let Some(v) = config.get("cairn.remote.storage.s3.secret.access.key") {
                builder = builder.with_secret_access_key(v);
            }
            if let Some(v) = setting("cairn.remote.storage.s3.allow.http", "AWS_ALLOW_HTTP") {
                builder = builder.with_allow_http(v.trim().eq_ignore_ascii_case("true"));
            }
            let store = builder
                .build()
                .map_err(|e| bad(URL_KEY, url, e.to_string()))?;
            Ok(Some(Bucket::new(Arc::new(store), &prefix, url)))
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let mut config = BrokerConfig::default();
        assert!(bucket_from_config(&config).unwrap().is_none());
        config
            .set("remote.log.storage.system.enable", "true")
            .unwrap();
        let e = bucket_from_config(&config).unwrap_err().to_string();
        assert!(e.contains("cairn.remote.storage.url"), "{e}");
        assert!(config.set("cairn.remote.storage.url", "http://x").is_err());
        assert!(config
            .set("cairn.remote.storage.url", "file://rel")
            .is_err());
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        config.set("cairn.remote.storage.url", &url).unwrap();
        assert!(bucket_from_config(&config).unwrap().is_some());
        config
            .set("cairn.remote.storage.url", "s3://bucket/some/prefix")
            .unwrap();
        let b = bucket_from_config(&config).unwrap().unwrap();
        assert_eq!(b.key("lease/x").as_ref(), "some/prefix/lease/x");
        assert_eq!(b.relative(&b.key("topics/a")), "topics/a");
    }
}
