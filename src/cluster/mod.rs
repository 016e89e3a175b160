//! Membership and metadata of a Cairn cluster, coordinated by etcd (opt-in with
//! `cairn.cluster.etcd.endpoints`; without it this module is never started and Cairn is a
//! single node).
//!
//! Owns: this broker's registration under an etcd lease (a broker whose lease is gone is not
//! live), the controller election (a lease-bound key created by a compare-and-swap txn), the
//! controller's leader assignment, topic creation, growth and deletion in etcd, a watched
//! in-memory [`ClusterView`] of everything under `/cairn/`, and the local mirror: every topic in
//! etcd exists in the local log, and this broker serves the partitions it leads once their logs
//! have recorded the leader epoch etcd gave them. Every write of
//! topic or partition metadata is a txn that compares the key's mod revision (or its absence).
//! No consensus of Cairn's own: etcd decides. Knows no Kafka request types or error codes; the
//! handlers map [`ClusterError`] and [`NotServed`].
//!
//! Replication is `replica.rs` (the leader's side: followers' log ends, the high watermark,
//! `acks=all`, ISR changes) and `fetcher.rs` (the follower's side: replica Fetch, truncation by
//! OffsetForLeaderEpoch). A partition whose leader's lease is gone gets a new leader from its
//! ISR ([`model::leader_changes`]); a broker that cannot renew its lease within its TTL stops
//! serving as leader before etcd lets another take over.
//! Controlled shutdown (leadership moved away before a broker stops) is `shutdown.rs`;
//! ElectLeaders and automatic preferred-leader rebalancing are `election.rs`.

pub mod access;
pub mod coordination;
mod election;
pub mod etcd;
mod fetcher;
pub mod model;
mod replica;
mod shutdown;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::log::LogManager;
use access::EtcdAccess;
pub use election::{ElectionRefusal, ElectionType};
use etcd::{Compare, Etcd, EtcdError, Op};
pub use model::{BrokerRecord, ClusterView, PartitionView, TopicRecord, NO_LEADER};
use model::{ControllerRecord, ListenerRecord};
pub use replica::AckRefusal;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("node.id {node_id} is already registered in etcd by a live broker (listeners {listeners}); every broker needs its own node.id")]
    DuplicateNodeId { node_id: i32, listeners: String },
    #[error("{0}")]
    Config(String),
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("no live broker to place partitions on")]
    NoLiveBrokers,
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("topic '{0}' changed concurrently; retry")]
    Conflict(String),
}

/// Why this broker does not serve a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServed {
    UnknownTopicOrPartition,
    /// Another broker leads it, or none does, or this broker's lease is gone.
    NotLeader,
    /// The request's leader epoch is older than the partition's.
    FencedLeaderEpoch,
    /// The request's leader epoch is newer than this broker knows.
    UnknownLeaderEpoch,
}

/// The broker configs replication reads (fixed at start).
struct Settings {
    default_replication_factor: usize,
    min_insync_replicas: usize,
    unclean_leader_election: bool,
    replica_lag_time_max_ms: i64,
    inter_broker_listener: Option<String>,
}

/// Wall-clock milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This broker's membership of the cluster.
pub struct Cluster {
    etcd: Etcd,
    node_id: i32,
    registration: BrokerRecord,
    ttl_seconds: i64,
    lease: AtomicI64,
    /// Until when (ms) the lease is surely live: the last successful grant or renewal's send
    /// time plus the TTL.
    lease_valid_until: AtomicI64,
    settings: Settings,
    followers: replica::Followers,
    view: RwLock<Arc<ClusterView>>,
    /// The view the local log was last made to match; held while mirroring, so mirrors run one
    /// at a time and only ever forward.
    mirrored: tokio::sync::Mutex<Arc<ClusterView>>,
    changed: tokio::sync::Notify,
    log: Arc<LogManager>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Joins the cluster named by `cairn.cluster.etcd.endpoints`: registers this broker (refused
    /// when another live broker holds its node.id), reads the cluster's metadata, mirrors its
    /// topics into `log`, and starts watching. `local_cluster_id` becomes the cluster's id when
    /// this is the first broker.
    pub async fn join(
        config: &BrokerConfig,
        data_dir: &Path,
        local_cluster_id: &str,
        log: Arc<LogManager>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let endpoints = etcd::normalize(&config.cluster_etcd_endpoints());
        let access = EtcdAccess::from_config(config, &endpoints).map_err(ClusterError::Config)?;
        let etcd = Etcd::new(endpoints.clone(), access)?;
        let listeners =
            crate::listener::listeners(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        // Producer ids carry the node id above bit 44 (see `BrokerConfig::producer_id_base`).
        if config.node_id() >= 1 << (63 - crate::config::PRODUCER_ID_NODE_SHIFT) {
            return Err(ClusterError::Config(format!(
                "node.id {} is too large for a cluster; use one below {}",
                config.node_id(),
                1 << (63 - crate::config::PRODUCER_ID_NODE_SHIFT)
            )));
        }
        if let Some(l) = listeners.iter().find(|l| l.advertised.port == 0) {
            return Err(ClusterError::Config(format!(
                "listener {} has port 0; in a cluster every listener needs a fixed port",
                l.name
            )));
        }
        let registration = BrokerRecord {
            node_id: config.node_id(),
            rack: config.broker_rack(),
            listeners: listeners
                .iter()
                .map(|l| ListenerRecord {
                    name: l.name.clone(),
                    host: l.advertised.host.clone(),
                    port: l.advertised.port,
                })
                .collect(),
            directory_id: directory_id(data_dir),
        };
        let ttl_seconds = (config.broker_session_timeout_ms() as i64 + 999) / 1000;
        let cluster = Arc::new(Cluster {
            etcd,
            node_id: registration.node_id,
            registration,
            ttl_seconds: ttl_seconds.max(2),
            lease: AtomicI64::new(0),
            lease_valid_until: AtomicI64::new(0),
            settings: Settings {
                default_replication_factor: config.default_replication_factor().max(1) as usize,
                min_insync_replicas: config.min_insync_replicas().max(1) as usize,
                unclean_leader_election: config.unclean_leader_election(),
                replica_lag_time_max_ms: config.replica_lag_time_max_ms(),
                inter_broker_listener: config
                    .get("inter.broker.listener.name")
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            },
            followers: replica::Followers::default(),
            view: RwLock::new(Arc::new(ClusterView::default())),
            mirrored: tokio::sync::Mutex::new(Arc::new(ClusterView::default())),
            changed: tokio::sync::Notify::new(),
            log,
            tasks: Mutex::new(Vec::new()),
        });
        cluster.register().await?;
        cluster
            .etcd
            .txn(
                &[Compare::Absent(model::CLUSTER_ID_KEY.into())],
                &[Op::Put {
                    key: model::CLUSTER_ID_KEY.into(),
                    value: local_cluster_id.as_bytes().to_vec(),
                    lease: None,
                }],
            )
            .await?;
        cluster.refresh().await?;
        info!(
            node_id = cluster.node_id,
            endpoints = endpoints.join(","),
            "joined the cluster"
        );
        let tasks = vec![
            tokio::spawn(cluster.clone().keep_alive()),
            tokio::spawn(cluster.clone().watch()),
            tokio::spawn(cluster.clone().refresh_loop()),
            tokio::spawn(fetcher::supervise(cluster.clone())),
            tokio::spawn(cluster.clone().isr_loop()),
            tokio::spawn(
                cluster
                    .clone()
                    .rebalance_loop(election::Rebalancing::from_config(config)),
            ),
        ];
        *cluster.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(cluster)
    }

    /// Puts `/cairn/brokers/<id>` under a new lease: created if absent, replaced if it is this
    /// data directory's earlier registration (a restart before the old lease expired), refused
    /// otherwise.
    async fn register(&self) -> Result<(), ClusterError> {
        let asked = now_ms();
        let lease = self.etcd.lease_grant(self.ttl_seconds).await?;
        let key = model::broker_key(self.node_id);
        let value = serde_json::to_vec(&self.registration).expect("a record serializes");
        let put = Op::Put {
            key: key.clone(),
            value,
            lease: Some(lease),
        };
        for _ in 0..10 {
            let (kvs, _) = self.etcd.range_prefix(model::BROKERS).await?;
            let compare = match kvs.iter().find(|kv| kv.key == key) {
                None => Compare::Absent(key.clone()),
                Some(kv) => {
                    let other: Option<BrokerRecord> = serde_json::from_slice(&kv.value).ok();
                    match other {
                        Some(o)
                            if !o.directory_id.is_empty()
                                && o.directory_id == self.registration.directory_id =>
                        {
                            Compare::ModRevision(key.clone(), kv.mod_revision)
                        }
                        other => {
                            let _ = self.etcd.lease_revoke(lease).await;
                            let listeners = other.map_or_else(String::new, |o| {
                                o.listeners
                                    .iter()
                                    .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            });
                            return Err(ClusterError::DuplicateNodeId {
                                node_id: self.node_id,
                                listeners,
                            });
                        }
                    }
                }
            };
            if self
                .etcd
                .txn(&[compare], std::slice::from_ref(&put))
                .await?
            {
                self.lease.store(lease, Ordering::SeqCst);
                self.lease_valid_until
                    .store(asked + self.ttl_seconds * 1000, Ordering::SeqCst);
                info!(
                    node_id = self.node_id,
                    lease,
                    ttl_seconds = self.ttl_seconds,
                    "registered in etcd"
                );
                return Ok(());
            }
        }
        Err(ClusterError::Conflict(key))
    }

    /// Renews the lease a third of its TTL; when it has expired (etcd unreachable too long),
    /// registers again under a new one.
    async fn keep_alive(self: Arc<Self>) {
        let period = Duration::from_millis((self.ttl_seconds * 1000 / 3) as u64);
        loop {
            tokio::time::sleep(period).await;
            let lease = self.lease.load(Ordering::SeqCst);
            let asked = now_ms();
            match self.etcd.lease_keep_alive(lease).await {
                Ok(true) => {
                    self.lease_valid_until
                        .store(asked + self.ttl_seconds * 1000, Ordering::SeqCst);
                }
                Ok(false) => {
                    warn!(
                        lease,
                        "this broker's etcd lease expired: it was not live; registering again"
                    );
                    if let Err(e) = self.register().await {
                        warn!(error = %e, "cannot register again in etcd");
                    }
                    self.changed.notify_one();
                }
                Err(e) => warn!(error = %e, "cannot renew the etcd lease"),
            }
        }
    }

    /// Watches `/cairn/`; every change wakes the refresh loop.
    async fn watch(self: Arc<Self>) {
        loop {
            let from = self.view().revision + 1;
            if let Err(e) = self
                .etcd
                .watch_prefix(model::ROOT, from, || self.changed.notify_one())
                .await
            {
                warn!(error = %e, "etcd watch ended");
            }
            self.changed.notify_one();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Re-reads the view on every change (and every few seconds, should a watch event be
    /// missed), then acts as controller if elected.
    async fn refresh_loop(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(3), self.changed.notified()).await;
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "cannot read the cluster's metadata from etcd");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if let Err(e) = self.control().await {
                warn!(error = %e, "controller: cannot update partition leaders");
            }
        }
    }

    /// Reads everything under `/cairn/`, installs the new view, and mirrors topics locally.
    async fn refresh(&self) -> Result<(), ClusterError> {
        let (kvs, revision) = self.etcd.range_prefix(model::ROOT).await?;
        let view = Arc::new(ClusterView::from_keys(
            revision,
            kvs.iter()
                .map(|kv| (kv.key.as_str(), kv.value.as_slice(), kv.mod_revision)),
        ));
        {
            let mut current = self.view.write().unwrap_or_else(|e| e.into_inner());
            if current.revision <= view.revision {
                *current = view;
            }
        }
        // Until `take_leadership` has recorded a partition's new epoch, `check_leader` refuses
        // it: no batch is written under an epoch its checkpoint does not hold.
        let mut mirrored = self.mirrored.lock().await;
        let latest = self.view();
        if latest.revision > mirrored.revision {
            self.mirror(&mirrored, &latest);
            self.take_leadership(&latest);
            *mirrored = latest;
        }
        Ok(())
    }

    /// Gives every local partition this broker leads in `view` the view's leader epoch (a new
    /// entry in its leader-epoch-checkpoint when the epoch is new).
    fn take_leadership(&self, view: &ClusterView) {
        for ((topic, index), state) in &view.partitions {
            if state.record.leader != self.node_id {
                continue;
            }
            let Some(partition) = self.log.partition(topic, *index) else {
                continue;
            };
            let led = partition.become_leader(state.record.leader_epoch);
            let replicated = view
                .partition(topic, *index)
                .is_some_and(|p| p.replicas.len() > 1);
            if led.is_ok() && replicated {
                self.start_leading(view, topic, *index, &partition);
            }
            match led {
                Ok(false) => {}
                Ok(true) => info!(
                    topic,
                    partition = index,
                    leader_epoch = state.record.leader_epoch,
                    "leading partition"
                ),
                Err(e) => {
                    warn!(topic, partition = index, error = %e, "cannot record the new leader epoch")
                }
            }
        }
    }

    /// Makes the local log hold every topic of the cluster: created with etcd's configs,
    /// grown to etcd's partition count, deleted when a deletion is seen. A local topic that etcd
    /// never had is left alone (and not served).
    fn mirror(&self, previous: &ClusterView, view: &ClusterView) {
        for (name, topic) in &view.topics {
            let wanted = topic.record.replicas.len() as i32;
            let result = match self.log.topic(name) {
                None => self
                    .log
                    .create_topic(
                        name,
                        wanted,
                        topic.record.configs.clone(),
                        topic.record.internal,
                    )
                    .map(|_| ()),
                Some(local) if local.partitions < wanted => {
                    self.log.create_partitions(name, wanted)
                }
                Some(_) => Ok(()),
            };
            if let Err(e) = result {
                warn!(topic = name, error = %e, "cannot mirror the cluster's topic locally");
            }
        }
        for name in previous.topics.keys() {
            if !view.topics.contains_key(name) && self.log.topic(name).is_some() {
                if let Err(e) = self.log.delete_topic(name) {
                    warn!(topic = name, error = %e, "cannot delete the local copy of a deleted topic");
                }
            }
        }
    }

    /// Runs for election when there is no controller; as controller, writes every leader
    /// change [`model::leader_changes`] asks for, each a compare-and-swap on its key.
    async fn control(&self) -> Result<(), ClusterError> {
        let view = self.view();
        if !view.brokers.contains_key(&self.node_id) {
            return Ok(());
        }
        if view.controller.is_none() {
            let won = self
                .etcd
                .txn(
                    &[Compare::Absent(model::CONTROLLER_KEY.into())],
                    &[Op::Put {
                        key: model::CONTROLLER_KEY.into(),
                        value: serde_json::to_vec(&ControllerRecord {
                            node_id: self.node_id,
                        })
                        .expect("a record serializes"),
                        lease: Some(self.lease.load(Ordering::SeqCst)),
                    }],
                )
                .await?;
            if won {
                info!(node_id = self.node_id, "elected controller");
            }
            return Ok(());
        }
        if view.controller != Some(self.node_id) {
            return Ok(());
        }
        let changes = model::leader_changes(&view, self.settings.unclean_leader_election);
        for change in shutdown::with_moves(&view, changes) {
            self.write_leader_change(&view, &change, "partition leader set")
                .await?;
        }
        Ok(())
    }

    /// Revokes the lease: this broker (and its controllership) leaves at once, rather than
    /// when the lease would expire.
    pub async fn shutdown(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let lease = self.lease.load(Ordering::SeqCst);
        match self.etcd.lease_revoke(lease).await {
            Ok(()) => info!(
                node_id = self.node_id,
                "left the cluster (etcd lease revoked)"
            ),
            Err(e) => warn!(error = %e, "cannot revoke the etcd lease; it expires on its own"),
        }
    }

    /// The latest view of the cluster.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Whether this broker serves `topic`/`partition` now: it leads it, its lease is live, and
    /// `current_leader_epoch` (when the request carries one, i.e. not -1) is the current one.
    pub fn check_leader(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<(), NotServed> {
        let view = self.view();
        let p = view
            .partition(topic, partition)
            .ok_or(NotServed::UnknownTopicOrPartition)?;
        if p.leader() != self.node_id
            || !view.brokers.contains_key(&self.node_id)
            || self.lease_expired()
        {
            return Err(NotServed::NotLeader);
        }
        // The local log must have recorded the view's epoch (it has, unless this broker has
        // only just seen it, or recording it failed).
        let local_epoch = self
            .log
            .partition(topic, partition)
            .map(|l| l.recorded_leader_epoch());
        if local_epoch.is_some_and(|e| e != p.leader_epoch()) {
            return Err(NotServed::NotLeader);
        }
        match current_leader_epoch {
            -1 => Ok(()),
            e if e < p.leader_epoch() => Err(NotServed::FencedLeaderEpoch),
            e if e > p.leader_epoch() => Err(NotServed::UnknownLeaderEpoch),
            _ => Ok(()),
        }
    }

    /// The replication factor of topics created without one (`default.replication.factor`).
    pub fn default_replication_factor(&self) -> i32 {
        self.settings.default_replication_factor as i32
    }

    /// Creates a topic in etcd with `partitions` partitions of `replication_factor` replicas
    /// spread over the live brokers, then waits briefly for the controller to give them
    /// leaders.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<TopicRecord, ClusterError> {
        let view = self.view();
        if view.topics.contains_key(name) {
            return Err(ClusterError::TopicExists(name.into()));
        }
        let live = view.brokers.len();
        if replication_factor < 1 || replication_factor as usize > live {
            return Err(ClusterError::InvalidReplicationFactor(format!(
                "Replication factor: {replication_factor} larger than available brokers: {live}."
            )));
        }
        let replicas = model::place(
            &live_racks(&view),
            0,
            partitions.max(0) as usize,
            replication_factor as usize,
        );
        if replicas.is_empty() {
            return Err(ClusterError::NoLiveBrokers);
        }
        let record = TopicRecord {
            topic_id: uuid::Uuid::new_v4(),
            internal,
            configs,
            replicas,
        };
        let key = model::topic_key(name);
        let created = self
            .etcd
            .txn(
                &[Compare::Absent(key.clone())],
                &[Op::Put {
                    key,
                    value: serde_json::to_vec(&record).expect("a record serializes"),
                    lease: None,
                }],
            )
            .await?;
        if !created {
            return Err(ClusterError::TopicExists(name.into()));
        }
        info!(topic = name, partitions, "created topic in the cluster");
        self.wait_for_leaders(name).await;
        Ok(record)
    }

    /// Waits (a few seconds at most) until every partition of `name` has a leader state, so a
    /// client that creates a topic then describes it sees its leaders.
    async fn wait_for_leaders(&self, name: &str) {
        for _ in 0..50 {
            if self.refresh().await.is_ok() {
                let view = self.view();
                let ready = view.topics.get(name).is_some_and(|t| {
                    (0..t.record.replicas.len() as i32)
                        .all(|i| view.partitions.contains_key(&(name.to_string(), i)))
                });
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the internal topic `name` in etcd unless it is there, with
    /// `replication_factor` replicas (`offsets.topic.replication.factor` for
    /// `__consumer_offsets`), or as many as there are live brokers when there are fewer.
    pub async fn ensure_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        if self.view().topics.contains_key(name) {
            return Ok(());
        }
        let live = self.view().brokers.len() as i32;
        let replication_factor = replication_factor.min(live).max(1);
        match self
            .create_topic(name, partitions, replication_factor, configs, true)
            .await
        {
            Ok(_) | Err(ClusterError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic and its partition states in one txn; every broker deletes its local
    /// copy when it sees the deletion.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        let view = self.view();
        let topic = view
            .topics
            .get(name)
            .ok_or_else(|| ClusterError::UnknownTopic(name.into()))?;
        let key = model::topic_key(name);
        let deleted = self
            .etcd
            .txn(
                &[Compare::ModRevision(key.clone(), topic.mod_revision)],
                &[
                    Op::Delete(key),
                    Op::DeletePrefix(model::partitions_prefix(name)),
                ],
            )
            .await?;
        if !deleted {
            return Err(ClusterError::Conflict(name.into()));
        }
        info!(topic = name, "deleted topic from the cluster");
        self.refresh().await
    }

    /// Grows a topic to `new_total` partitions, the new ones placed on live brokers.
    pub async fn create_partitions(&self, name: &str, new_total: i32) -> Result<(), ClusterError> {
        let view = self.view();
        let topic = view
            .topics
            .get(name)
            .ok_or_else(|| ClusterError::UnknownTopic(name.into()))?;
        let have = topic.record.replicas.len();
        if new_total as i64 <= have as i64 {
            return Err(ClusterError::InvalidPartitions(format!(
                "Topic currently has {have} partitions, which is higher than the requested {new_total}."
            )));
        }
        let replication_factor = topic.record.replicas.first().map_or(1, Vec::len);
        let added = model::place(
            &live_racks(&view),
            have,
            new_total as usize - have,
            replication_factor,
        );
        if added.is_empty() {
            return Err(ClusterError::NoLiveBrokers);
        }
        let mut record = topic.record.clone();
        record.replicas.extend(added);
        let key = model::topic_key(name);
        let written = self
            .etcd
            .txn(
                &[Compare::ModRevision(key.clone(), topic.mod_revision)],
                &[Op::Put {
                    key,
                    value: serde_json::to_vec(&record).expect("a record serializes"),
                    lease: None,
                }],
            )
            .await?;
        if !written {
            return Err(ClusterError::Conflict(name.into()));
        }
        self.wait_for_leaders(name).await;
        Ok(())
    }
}

/// Live brokers and their racks.
fn live_racks(view: &ClusterView) -> BTreeMap<i32, Option<String>> {
    view.brokers
        .iter()
        .map(|(&id, b)| (id, b.rack.clone()))
        .collect()
}

/// The data directory's `directory.id` (from `meta.properties`), empty when unknown.
fn directory_id(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("meta.properties"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("directory.id="))
                .map(|id| id.trim().to_string())
        })
        .unwrap_or_default()
}
