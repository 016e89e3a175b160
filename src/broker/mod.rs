//! Request handlers, one file per API family, and the dispatch table.
//!
//! The one place that knows both Kafka request types and the log engine / group coordinator,
//! and the only place that maps their errors to Kafka error codes ([`errors`]). Handlers return
//! responses; only the connection code encodes and writes them.

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use crate::auth::credentials::CredentialStore;
use crate::authz::{Authorizer, Operation, Requester, ResourceType};
use crate::config::BrokerConfig;
use crate::dynamic_config::DynamicConfigs;
use crate::group::GroupCoordinator;
use crate::listener::Session;
use crate::log::io::{FileIo, StdIo};
use crate::log::{LogManager, LogManagerOptions};
use crate::metrics::Metrics;
use crate::protocol::versions::{VersionEntry, VersionTable};
use crate::quota::rate::Windows;
use crate::quota::ClientQuotas;
use crate::resource_configs::ResourceConfigs;
use crate::tier::lease::Lease;
use crate::tier::upload::{Tier, TierOptions};

mod acls;
mod api_versions;
mod broker_configs;
mod client_quotas;
mod configs;
mod consumer_groups;
mod elect_leaders;
mod errors;
mod fetch;
pub mod fetch_files;
mod fetch_sessions;
mod group_acls;
pub mod groups;
mod leaders;
mod list_offsets;
mod log_dirs;
mod metadata;
mod operations;
mod produce;
mod producer_ids;
mod records;
mod request_acls;
mod resource_configs;
mod scram_users;
mod throttle;
mod tiered;
mod topic_partitions;
mod topics;
mod txn;
mod txn_admin;

pub use topics::valid_topic_name;

/// Shared state of the broker, handed to every handler.
pub struct Broker {
    /// The config as the broker started: static, with the dynamic configs stored then. Keys that
    /// can change at runtime are read from `dynamic` instead.
    pub config: BrokerConfig,
    /// Dynamic broker configs (durable) and the live config snapshot.
    pub dynamic: DynamicConfigs,
    pub log: Arc<LogManager>,
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator (`__transaction_state`, markers, timeouts).
    pub txn: Arc<crate::txn::TransactionCoordinator>,
    /// Configs of groups (KIP-848) and client-metrics subscriptions (KIP-714), durable in the
    /// data directory.
    pub resource_configs: ResourceConfigs,
    /// Client quotas (durable in the data directory) and the rates measured against them.
    pub quotas: ClientQuotas,
    /// This broker's node id (also the controller id in Metadata).
    pub node_id: i32,
    pub cluster_id: String,
    /// SCRAM credentials (`cairn-security/scram-credentials`).
    pub credentials: CredentialStore,
    /// The ACLs and the decision (`authorizer.class.name`; off: everything allowed).
    pub authorizer: Authorizer,
    /// Counters of requests and traffic, read by the HTTP listener's `/metrics`.
    pub metrics: Metrics,
    versions: VersionTable,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: fetch_sessions::FetchSessions,
    /// The object-storage tier, when `remote.log.storage.system.enable` is set.
    pub tier: Option<Arc<Tier>>,
    /// Membership of an etcd-coordinated cluster, when `cairn.cluster.etcd.endpoints` is set.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Held for the broker's lifetime: an exclusive lock on `<data dir>/.lock`, so two processes
    /// never open one data directory.
    _lock: std::fs::File,
}

/// The APIs handled in this module, with (advertised min, served min, max) versions.
/// Kept beside [`Broker::handle`]'s match so the two are read together.
const APIS: &[(ApiKey, i16, i16, i16)] = &[
    // Produce advertises 0 (older librdkafka disables compression if min > 0, KAFKA-18659) but
    // serves 3+: v0-2 carry message formats 0 and 1, removed in Kafka 4.0.
    (ApiKey::Produce, 0, 3, 12),
    (ApiKey::Fetch, 4, 4, 12),
    (ApiKey::ListOffsets, 1, 1, 10),
    (ApiKey::Metadata, 0, 0, 12),
    (ApiKey::OffsetForLeaderEpoch, 2, 2, 4),
    (ApiKey::ApiVersions, 0, 0, 4),
    (ApiKey::CreateTopics, 2, 2, 7),
    (ApiKey::DeleteTopics, 1, 1, 6),
    (ApiKey::DeleteRecords, 0, 0, 2),
    (ApiKey::InitProducerId, 0, 0, 5),
    (ApiKey::DescribeConfigs, 1, 1, 4),
    (ApiKey::AlterConfigs, 0, 0, 2),
    (ApiKey::CreatePartitions, 0, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 0, 1),
    (ApiKey::DescribeCluster, 0, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 1, 4),
    (ApiKey::ListConfigResources, 0, 0, 1),
    // SaslHandshake advertises 0 (librdkafka before 2.10 finds no SASL support unless the
    // range includes v0) but serves 1: v0 means unframed SASL tokens after the handshake,
    // which Cairn does not speak (a v0 handshake is answered UNSUPPORTED_VERSION). While a
    // SASL connection authenticates, the server answers these itself (`server/sasl_gate.rs`);
    // what reaches `handle` comes at the wrong time and gets ILLEGAL_SASL_STATE.
    (ApiKey::SaslHandshake, 0, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 0, 1),
    (ApiKey::DescribeAcls, 1, 1, 3),
    (ApiKey::CreateAcls, 1, 1, 3),
    (ApiKey::DeleteAcls, 1, 1, 3),
    (ApiKey::ElectLeaders, 0, 0, 2),
];

/// The full version table: this module's APIs plus the group APIs, and the KIP-848 ones when
/// the consumer group protocol is enabled (`group.coordinator.rebalance.protocols`).
pub fn version_table(consumer_group_protocol: bool) -> VersionTable {
    let own = APIS
        .iter()
        .map(|&(api_key, advertised_min, served_min, max)| VersionEntry {
            api_key,
            advertised_min,
            served_min,
            max,
        });
    let group = groups::APIS
        .iter()
        .chain(txn::APIS.iter())
        .chain(txn_admin::APIS.iter())
        .chain(
            consumer_groups::APIS
                .iter()
                .filter(|_| consumer_group_protocol),
        )
        .map(|&(api_key, min, max)| VersionEntry {
            api_key,
            advertised_min: min,
            served_min: min,
            max,
        });
    VersionTable::new(own.chain(group).collect())
}

impl Broker {
    /// Opens the log (running recovery), starts the group coordinator, and returns the broker.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        Self::start_with_io(config, Arc::new(StdIo)).await
    }

    /// [`Broker::start`] with a chosen file-I/O implementation for the log's data files (tests
    /// run the whole broker on a faulty disk with [`crate::log::io::FaultyIo`]).
    pub async fn start_with_io(
        config: BrokerConfig,
        io: Arc<dyn FileIo>,
    ) -> anyhow::Result<Arc<Broker>> {
        config.check_group_consumer_timeouts()?;
        let data_dir = config.data_dir();
        std::fs::create_dir_all(&data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let cluster_id = load_or_create_cluster_id(&data_dir, config.node_id())?;
        let resource_configs = ResourceConfigs::open(&data_dir)?;
        // Dynamic configs stored by an earlier run apply from the start.
        let dynamic = DynamicConfigs::open(config, &data_dir)?;
        let config = BrokerConfig::clone(&dynamic.current());
        let quotas = ClientQuotas::open(
            &data_dir,
            Windows {
                samples: config.quota_window_num(),
                window: std::time::Duration::from_secs(config.quota_window_size_seconds()),
            },
        )?;
        // The tier comes first: its lease decides whether this broker may start at all, and an
        // empty data directory is restored from the bucket before the log opens it.
        let bucket = crate::tier::bucket_from_config(&config)?;
        let lease = match &bucket {
            Some(bucket) => {
                let timeout = std::time::Duration::from_millis(
                    config.remote_lease_timeout_ms().max(1000) as u64,
                );
                let lease = Lease::acquire_with_timeout(bucket, &cluster_id, timeout).await?;
                crate::tier::restore::restore_if_empty(bucket, &data_dir).await?;
                Some(lease)
            }
            None => None,
        };
        let log = LogManager::open_with_io(
            LogManagerOptions {
                data_dir: data_dir.clone(),
                broker: config.clone(),
            },
            io,
        )?;
        let cluster = if config.cluster_etcd_endpoints().is_empty() {
            None
        } else {
            Some(crate::cluster::Cluster::join(&config, &data_dir, &cluster_id, log.clone()).await?)
        };
        let cluster_id = cluster
            .as_ref()
            .and_then(|c| c.view().cluster_id.clone())
            .unwrap_or(cluster_id);
        let credentials = CredentialStore::open(&config.data_dir())?;
        let authorizer = Authorizer::open(&config, &config.data_dir())?;
        let tier = match bucket.zip(lease) {
            Some((bucket, lease)) => {
                let options = TierOptions {
                    upload_interval: std::time::Duration::from_millis(
                        config.remote_upload_interval_ms().max(1) as u64,
                    ),
                    cache_bytes: config.remote_cache_bytes().max(0) as u64,
                    copy_bytes_per_second: config.remote_copy_bytes_per_second(),
                    clean: config.cleaner_enable(),
                    scrub_interval: std::time::Duration::from_millis(
                        config.remote_scrub_interval_ms().max(1) as u64,
                    ),
                };
                Some(Tier::start(bucket, lease, log.clone(), data_dir, options).await)
            }
            None => None,
        };
        let group_session_timeout = |group_id: &str| {
            crate::resource_configs::group::consumer_timeouts(
                &resource_configs.overrides(crate::resource_configs::ResourceKind::Group, group_id),
            )
            .0
        };
        let groups = GroupCoordinator::start(&config, log.clone(), &group_session_timeout).await?;
        let txn =
            crate::txn::TransactionCoordinator::start(&config, log.clone(), groups.clone()).await?;
        // In a cluster the groups move with the leadership of `__consumer_offsets`.
        if let Some(cluster) = &cluster {
            crate::cluster::coordination::follow_leadership(cluster.clone(), &groups);
            crate::cluster::coordination::follow_leadership(cluster.clone(), &txn);
        }
        let versions = version_table(config.consumer_group_protocol_enabled());
        let fetch_sessions =
            fetch_sessions::FetchSessions::new(config.max_incremental_fetch_session_cache_slots());
        Ok(Arc::new(Broker {
            node_id: config.node_id(),
            cluster_id,
            credentials,
            authorizer,
            log,
            groups,
            txn,
            resource_configs,
            quotas,
            config,
            dynamic,
            versions,
            tier,
            cluster,
            fetch_sessions,
            metrics: Metrics::default(),
            _lock: lock,
        }))
    }

    /// Whether `session`'s principal may perform `operation` on the resource (always, when no
    /// authorizer is configured). Handlers ask this and map a refusal to their API's error.
    pub fn allowed(
        &self,
        session: &Session,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        self.authorizer
            .authorize(requester(session), operation, resource, name)
    }

    /// Whether `session` may perform `operation` on the cluster resource.
    pub fn cluster_allowed(&self, session: &Session, operation: Operation) -> bool {
        self.allowed(
            session,
            operation,
            ResourceType::Cluster,
            crate::authz::CLUSTER_NAME,
        )
    }

    /// Whether `session` may use the transactional id `id` for `operation`: WRITE to start,
    /// produce in and end transactions, DESCRIBE to find their coordinator, as Kafka checks
    /// on InitProducerId, Produce, AddPartitionsToTxn, EndTxn and TxnOffsetCommit.
    pub fn transactional_id_allowed(
        &self,
        session: &Session,
        operation: Operation,
        id: &str,
    ) -> bool {
        self.allowed(session, operation, ResourceType::TransactionalId, id)
    }

    /// The version table this broker serves.
    pub fn versions(&self) -> &VersionTable {
        &self.versions
    }

    /// Stops the group coordinator and the tier (uploads stop, the lease is released), then
    /// closes the log cleanly.
    pub async fn shutdown(&self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        self.txn.shutdown().await;
        self.groups.shutdown().await;
        if let Some(tier) = &self.tier {
            tier.shutdown().await;
        }
        self.log.shutdown()?;
        Ok(())
    }

    /// Handles one decoded request from `session`'s connection. `None` means "send no
    /// response" (Produce with acks=0).
    ///
    /// Ordering contract with the server: the server polls this future once, in request
    /// arrival order, before reading the next request. So every effect that must follow the
    /// request order (appends, commits) happens before a handler's first `.await` that can
    /// suspend; only waiting (fsync, long poll, rebalance) may come after it.
    pub async fn handle(
        &self,
        session: &Session,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Option<ResponseKind> {
        let started = std::time::Instant::now();
        let produced = throttle::produced_bytes(&request);
        // The time spent handling the request (polling it), not waiting: what
        // `request_percentage` counts, as Kafka counts request-handler thread time.
        let mut dispatch = std::pin::pin!(self.dispatch(session, header, request));
        let mut busy = std::time::Duration::ZERO;
        let response = std::future::poll_fn(|cx| {
            let polled = std::time::Instant::now();
            let poll = std::future::Future::poll(dispatch.as_mut(), cx);
            busy += polled.elapsed();
            poll
        })
        .await;
        self.metrics
            .request(header.request_api_key, started.elapsed(), response.as_ref());
        throttle::apply(self, session, header, produced, busy, response)
    }

    async fn dispatch(
        &self,
        session: &Session,
        header: &RequestHeader,
        request: RequestKind,
    ) -> Option<ResponseKind> {
        let version = header.request_api_version;
        let (request, patch) = match request_acls::authorize(self, session, version, request) {
            Ok(allowed) => allowed,
            Err(refused) => return Some(refused),
        };
        let mut response = match request {
            RequestKind::ApiVersions(r) => {
                ResponseKind::ApiVersions(api_versions::handle(self, version, r))
            }
            RequestKind::Metadata(r) => {
                ResponseKind::Metadata(metadata::handle(self, session, version, r).await)
            }
            RequestKind::Produce(r) => {
                return produce::handle(self, session, version, r)
                    .await
                    .map(ResponseKind::Produce)
            }
            RequestKind::Fetch(r) => {
                ResponseKind::Fetch(fetch_sessions::handle(self, session, version, r).await)
            }
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(list_offsets::handle(self, version, r).await)
            }
            RequestKind::OffsetForLeaderEpoch(r) => {
                ResponseKind::OffsetForLeaderEpoch(list_offsets::offset_for_leader_epoch(self, r))
            }
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(topics::create_topics(self, session, version, r).await)
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(topics::delete_topics(self, session, version, r).await)
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(topics::create_partitions(self, session, r).await)
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(records::delete_records(self, r).await)
            }
            RequestKind::InitProducerId(r) => {
                ResponseKind::InitProducerId(producer_ids::init_producer_id(self, version, r).await)
            }
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(metadata::describe_cluster(self, session, r))
            }
            RequestKind::ElectLeaders(r) => {
                ResponseKind::ElectLeaders(elect_leaders::handle(self, session, version, r).await)
            }
            RequestKind::DescribeLogDirs(r) => {
                ResponseKind::DescribeLogDirs(log_dirs::describe_log_dirs(self, r))
            }
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(configs::describe_configs(self, version, r))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(configs::alter_configs(self, r))
            }
            RequestKind::ListConfigResources(r) => {
                ResponseKind::ListConfigResources(resource_configs::list(self, version, r))
            }
            RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code()),
            ),
            RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "no SASL authentication on this connection now",
                    ))),
            ),
            RequestKind::DescribeUserScramCredentials(r) => {
                ResponseKind::DescribeUserScramCredentials(scram_users::describe(self, r))
            }
            RequestKind::AlterUserScramCredentials(r) => {
                ResponseKind::AlterUserScramCredentials(scram_users::alter(self, r))
            }
            RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(self, session, r)),
            RequestKind::DescribeAcls(r) => {
                ResponseKind::DescribeAcls(acls::describe(self, session, r))
            }
            RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(self, session, r)),
            RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
                txn::add_partitions_to_txn(self, session, version, r).await,
            ),
            RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(
                txn::add_offsets_to_txn(self, session, version, r).await,
            ),
            RequestKind::EndTxn(r) => {
                ResponseKind::EndTxn(txn::end_txn(self, session, version, r).await)
            }
            RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
                txn::txn_offset_commit(self, session, version, r).await,
            ),
            RequestKind::ListTransactions(r) => {
                ResponseKind::ListTransactions(txn_admin::list_transactions(self, session, r))
            }
            RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
                txn_admin::describe_transactions(self, session, r),
            ),
            RequestKind::WriteTxnMarkers(r) => {
                ResponseKind::WriteTxnMarkers(txn_admin::write_txn_markers(self, session, r).await)
            }
            RequestKind::DescribeProducers(r) => {
                ResponseKind::DescribeProducers(txn_admin::describe_producers(self, session, r))
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                ResponseKind::IncrementalAlterConfigs(configs::incremental_alter_configs(self, r))
            }
            RequestKind::DescribeClientQuotas(r) => {
                ResponseKind::DescribeClientQuotas(client_quotas::describe(self, r))
            }
            RequestKind::AlterClientQuotas(r) => {
                ResponseKind::AlterClientQuotas(client_quotas::alter(self, r))
            }
            RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
                topic_partitions::describe_topic_partitions(self, session, r),
            ),
            other => {
                let api_key = ApiKey::try_from(header.request_api_key).ok()?;
                if groups::APIS.iter().any(|&(key, _, _)| key == api_key) {
                    groups::handle(self, session, header, other).await
                } else if consumer_groups::APIS
                    .iter()
                    .any(|&(key, _, _)| key == api_key)
                {
                    let client_id = header.client_id.as_deref().unwrap_or("").to_string();
                    consumer_groups::handle(self, session, version, client_id, other).await
                } else {
                    // The version table only lets through what is dispatched above.
                    warn!(?api_key, "request for an API with no handler");
                    return None;
                }
            }
        };
        patch.apply(&mut response);
        Some(response)
    }
}

/// The authorizer's view of a connection: its principal and the client's address.
pub fn requester(session: &Session) -> Requester<'_> {
    Requester {
        principal: &session.principal,
        host: session.peer.ip(),
    }
}

/// Takes an exclusive lock on `<data dir>/.lock` (as Kafka does), failing if another process
/// holds it. The `cairn add-scram` subcommand takes it too, so it never writes beside a
/// running broker.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "data directory {} is in use by another process (lock {} is held)",
            data_dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Reads `cluster.id` from `meta.properties` in the data directory, writing a new one (with
/// Kafka's KRaft keys) the first time.
fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> std::io::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            return Ok(id.to_string());
        }
    }
    let cluster_id = base64_uuid(uuid::Uuid::new_v4());
    let directory_id = base64_uuid(uuid::Uuid::new_v4());
    let text = format!(
        "#\n#Written by cairn\nversion=1\nnode.id={node_id}\ncluster.id={cluster_id}\ndirectory.id={directory_id}\n"
    );
    let tmp = data_dir.join("meta.properties.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(cluster_id)
}

/// A UUID in Kafka's text form: URL-safe base64 without padding (22 characters).
fn base64_uuid(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_uuid_is_22_url_safe_chars() {
        let s = base64_uuid(uuid::Uuid::from_bytes([0xff; 16]));
        assert_eq!(s.len(), 22);
        assert_eq!(s, "_____________________w");
        assert_eq!(base64_uuid(uuid::Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn version_table_has_every_dispatched_api_once() {
        let table = version_table(true);
        for &(key, ..) in APIS {
            assert!(table.get(key).is_some(), "{key:?} missing");
        }
        for &(key, ..) in consumer_groups::APIS {
            assert!(table.get(key).is_some(), "{key:?} missing");
            assert!(version_table(false).get(key).is_none(), "{key:?} present");
        }
        let mut keys: Vec<i16> = table.entries().iter().map(|e| e.api_key as i16).collect();
        keys.dedup();
        assert_eq!(keys.len(), table.entries().len());
    }
}
