//! The transaction coordinator's async shell: the transactional ids' metadata in memory, every
//! transition persisted to `__transaction_state` before it takes effect, the markers written to
//! the transaction's partitions (and the group coordinator told about its offsets), and a timer
//! that aborts timed-out transactions, finishes interrupted ones and expires idle ids.
//!
//! Crash analysis of a commit: (1) PrepareCommit is appended and made durable before any
//! marker, so a marker never exists without a durable decision; (2) markers go to every
//! partition; (3) CompleteCommit is appended. A crash before (1) is durable leaves the
//! transaction Ongoing, and its timeout aborts it; a crash after (1) leaves PrepareCommit, and
//! start-up writes the markers again (a repeated marker is harmless: it finds no ongoing
//! transaction). Aborts take the same path.

mod election;

use crate::cluster::coordination::Ownership;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tracing::{info, warn};

use super::crash;
use super::state::{bumped_epoch, TxnError, TxnMetadata, TxnState};
use super::topic::{StateTopic, TopicError};
use crate::config::BrokerConfig;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::group::GroupCoordinator;
use crate::log::partition::txn::{ABORT, COMMIT};
use crate::log::{AppendOrigin, LogError, LogManager, Partition};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A transaction as DescribeTransactions / ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnListing {
    pub transactional_id: String,
    pub metadata: TxnMetadata,
}

/// Coordinates every transactional id of this broker.
pub struct TransactionCoordinator {
    log: Arc<LogManager>,
    groups: Arc<GroupCoordinator>,
    topic: StateTopic,
    txns: Mutex<HashMap<String, TxnMetadata>>,
    /// Serializes transitions: each is persisted (and waited for) before the next begins.
    transitions: tokio::sync::Mutex<()>,
    max_timeout_ms: i32,
    expiration_ms: i64,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// In a cluster, the `__transaction_state` partitions this broker coordinates (it leads
    /// them; `election.rs`); `None` on a single node, which coordinates every id.
    owned: Option<Mutex<HashMap<i32, Ownership>>>,
}

impl From<TopicError> for TxnError {
    fn from(e: TopicError) -> TxnError {
        warn!(error = %e, "transaction coordinator storage error");
        TxnError::CoordinatorNotAvailable
    }
}

impl From<LogError> for TxnError {
    fn from(e: LogError) -> TxnError {
        warn!(error = %e, "transaction coordinator storage error");
        TxnError::CoordinatorNotAvailable
    }
}

impl TransactionCoordinator {
    /// Rebuilds every transactional id from `__transaction_state`, finishes transactions that
    /// a crash left prepared, and starts the timer. Must be called inside a tokio runtime.
    pub async fn start(
        config: &BrokerConfig,
        log: Arc<LogManager>,
        groups: Arc<GroupCoordinator>,
    ) -> Result<Arc<TransactionCoordinator>, TopicError> {
        crash::init();
        let topic = StateTopic::open(config, log.clone());
        // In a cluster an id is loaded when this broker is elected leader of its partition.
        let clustered = !config.cluster_etcd_endpoints().is_empty();
        let loaded = if clustered {
            HashMap::new()
        } else {
            topic.load()?
        };
        if !clustered {
            info!(
                transactional_ids = loaded.len(),
                "loaded transactions from __transaction_state"
            );
        }
        let coordinator = Arc::new(TransactionCoordinator {
            log,
            groups,
            topic,
            txns: Mutex::new(loaded),
            transitions: tokio::sync::Mutex::new(()),
            max_timeout_ms: config.transaction_max_timeout_ms(),
            expiration_ms: config.transactional_id_expiration_ms(),
            timer: Mutex::new(None),
            owned: clustered.then(|| Mutex::new(HashMap::new())),
        });
        coordinator.finish_prepared().await;
        let interval = Duration::from_millis(config.transaction_abort_interval_ms().max(1) as u64);
        let handle = tokio::spawn(timer_loop(Arc::downgrade(&coordinator), interval));
        *coordinator.timer.lock().expect("timer lock") = Some(handle);
        Ok(coordinator)
    }

    /// Stops the timer.
    pub async fn shutdown(&self) {
        let handle = self.timer.lock().expect("timer lock").take();
        if let Some(handle) = handle {
            handle.abort();
            let _ = handle.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TxnMetadata>> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `__transaction_state` unless it exists (FindCoordinator for a transaction).
    pub fn ensure_topic(&self) -> Result<(), TxnError> {
        self.topic.ensure()?;
        Ok(())
    }

    /// Appends `next` as `id`'s record and makes it the current metadata, under the lock (so
    /// a produce verified against the old state cannot interleave); then waits for durability.
    async fn persist(&self, id: &str, next: TxnMetadata) -> Result<(), TxnError> {
        let epoch = self.owner(id)?;
        let (partition, end) = {
            let mut txns = self.lock();
            let appended = self.topic.append(id, Some(&next), now_ms())?;
            txns.insert(id.to_string(), next);
            appended
        };
        partition.wait_durable(end).await?;
        self.wait_replicated(id, epoch, &partition, end).await
    }

    /// InitProducerId with a transactional id: a new or bumped epoch, after finishing (or
    /// fencing by abort) any transaction in progress.
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        self.ensure_topic()?;
        self.owner(id)?;
        let _transition = self.transitions.lock().await;
        let now = now_ms();
        let existing = self.lock().get(id).cloned();
        let mut current = match existing {
            Some(m) => {
                m.check_recovery(expected)?;
                m
            }
            None => TxnMetadata::new(self.log.allocate_producer_id()?, timeout_ms, now),
        };
        if current.state == TxnState::Ongoing {
            let fenced = current.prepare_fence(now).unwrap_or_else(|| {
                let mut m = current.clone();
                m.state = TxnState::PrepareAbort;
                m
            });
            self.persist(id, fenced.clone()).await?;
            current = self.complete(id, fenced).await?;
        } else if matches!(
            current.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        ) {
            current = self.complete(id, current).await?;
        }
        let mut next = current.clone();
        match bumped_epoch(current.producer_epoch) {
            Some(epoch) => {
                next.last_producer_epoch = current.producer_epoch;
                next.producer_epoch = epoch;
            }
            None => {
                next.producer_id = self.log.allocate_producer_id()?;
                next.producer_epoch = 0;
                next.last_producer_epoch = -1;
            }
        }
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.timeout_ms = timeout_ms;
        next.last_update_ms = now;
        let answer = (next.producer_id, next.producer_epoch);
        self.persist(id, next).await?;
        Ok(answer)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        self.owner(id)?;
        let _transition = self.transitions.lock().await;
        let next = {
            let txns = self.lock();
            let m = txns.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
            m.add_partitions(producer_id, epoch, partitions, now_ms())?
        };
        match next {
            Some(next) => self.persist(id, next).await,
            None => Ok(()),
        }
    }

    /// EndTxn: prepare (durably), then markers and completion.
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.owner(id)?;
        let _transition = self.transitions.lock().await;
        let prepared = {
            let txns = self.lock();
            let m = txns.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
            m.prepare_end(producer_id, epoch, commit, now_ms())?
        };
        let Some(prepared) = prepared else {
            return Ok(());
        };
        crash::point("before-prepare");
        self.persist(id, prepared.clone()).await?;
        crash::point("after-prepare");
        self.complete(id, prepared).await?;
        crash::point("after-complete");
        Ok(())
    }

    /// Writes the markers of a prepared transaction and its completion record; tells the group
    /// coordinator when the transaction wrote offsets. Returns the completed metadata. On an
    /// error the transaction stays prepared and the timer retries.
    async fn complete(&self, id: &str, prepared: TxnMetadata) -> Result<TxnMetadata, TxnError> {
        let commit = prepared.state == TxnState::PrepareCommit;
        let mut wrote_offsets = false;
        let mut markers = Vec::with_capacity(prepared.partitions.len());
        let (done, partition, end) = {
            let mut txns = self.lock();
            for (topic, index) in &prepared.partitions {
                let Some(marked) = self.log.partition(topic, *index) else {
                    warn!(topic = %topic, partition = index, "no marker for a partition that no longer exists");
                    continue;
                };
                wrote_offsets |= topic == OFFSETS_TOPIC;
                let end = write_marker(
                    &marked,
                    prepared.producer_id,
                    prepared.producer_epoch,
                    commit,
                )?;
                markers.push((marked, end));
                if markers.len() == 1 && prepared.partitions.len() > 1 {
                    crash::point("between-markers");
                }
            }
            crash::point("before-complete");
            let done = prepared.complete(now_ms());
            let (partition, end) = self.topic.append(id, Some(&done), now_ms())?;
            txns.insert(id.to_string(), done.clone());
            (done, partition, end)
        };
        if wrote_offsets {
            self.groups.complete_txn(prepared.producer_id, commit);
        }
        // Answered once the markers are durable, so what the client was told is what a
        // read_committed consumer sees, before and after a crash.
        for (marked, end) in markers {
            marked.wait_durable(end).await?;
        }
        partition.wait_durable(end).await?;
        Ok(done)
    }

    /// Appends a transactional batch through `append` only if the write belongs to the
    /// ongoing transaction of `id` (KIP-890's verification, local to this broker); under the
    /// coordinator's lock, so no marker can be written between the check and the append.
    pub fn append_transactional<T>(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partition: (String, i32),
        append: impl FnOnce() -> T,
    ) -> Result<T, TxnError> {
        let txns = self.lock();
        let m = txns.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        m.verify_write(producer_id, epoch, &partition)?;
        Ok(append())
    }

    /// TxnOffsetCommit's check: the transaction is ongoing and includes the group's offsets
    /// partition (AddOffsetsToTxn came first).
    pub fn verify_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
    ) -> Result<(), TxnError> {
        let partition = self
            .groups
            .offsets_partition(group_id)
            .map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let txns = self.lock();
        let m = txns.get(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        m.verify_write(producer_id, epoch, &partition)
    }

    /// WriteTxnMarkers from an operator (`kafka-transactions abort` of a hanging transaction):
    /// appends a marker of `producer_id`/`epoch` to `partition` under the coordinator's lock,
    /// as its own markers are, so no transactional batch interleaves. The log refuses an epoch
    /// older than the producer's; a coordinator epoch older than the one of the producer's
    /// last marker here is refused as Kafka refuses it (TRANSACTION_COORDINATOR_FENCED), and
    /// nothing is written. Returns the offset just past the marker.
    pub fn write_marker(
        &self,
        partition: &Partition,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Result<i64, LogError>, TxnError> {
        let batch = marker_batch(producer_id, epoch, commit, coordinator_epoch)?;
        // Under the coordinator's lock no other marker lands between this check and the append.
        let _txns = self.lock();
        let recorded = partition.coordinator_epoch(producer_id);
        if coordinator_epoch < recorded {
            warn!(
                producer_id,
                coordinator_epoch, recorded, "refused a marker from an older coordinator epoch"
            );
            return Err(TxnError::CoordinatorFenced);
        }
        Ok(partition
            .append(batch, AppendOrigin::Internal)
            .map(|info| info.last_offset + 1))
    }

    /// Every transactional id, by id.
    pub fn list(&self) -> Vec<TxnListing> {
        let mut out: Vec<TxnListing> = self
            .lock()
            .iter()
            .map(|(id, m)| TxnListing {
                transactional_id: id.clone(),
                metadata: m.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Completes every prepared transaction (after a crash, or a failed completion).
    async fn finish_prepared(&self) {
        let _transition = self.transitions.lock().await;
        let prepared: Vec<(String, TxnMetadata)> = self
            .lock()
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
                )
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, m) in prepared {
            match self.complete(&id, m).await {
                Ok(done) => {
                    info!(transactional_id = %id, state = done.state.name(), "completed a prepared transaction")
                }
                Err(e) => {
                    warn!(transactional_id = %id, error = %e, "cannot complete a prepared transaction yet")
                }
            }
        }
    }

    /// One timer tick: fences and aborts transactions past their timeout, retries prepared
    /// ones, and forgets ids idle past `transactional.id.expiration.ms`.
    async fn tick(&self) {
        self.finish_prepared().await;
        let now = now_ms();
        let (timed_out, expired) = {
            let txns = self.lock();
            let timed_out: Vec<String> = txns
                .iter()
                .filter(|(_, m)| {
                    m.state == TxnState::Ongoing
                        && now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let expired: Vec<String> = txns
                .iter()
                .filter(|(_, m)| {
                    matches!(
                        m.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    ) && now.saturating_sub(m.last_update_ms) > self.expiration_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            (timed_out, expired)
        };
        for id in timed_out {
            let _transition = self.transitions.lock().await;
            let Some(m) = self.lock().get(&id).cloned() else {
                continue;
            };
            if m.state != TxnState::Ongoing {
                continue;
            }
            let Some(fenced) = m.prepare_fence(now_ms()) else {
                continue;
            };
            info!(transactional_id = %id, producer_id = m.producer_id, "aborting a transaction past its timeout");
            let result = match self.persist(&id, fenced.clone()).await {
                Ok(()) => self.complete(&id, fenced).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                warn!(transactional_id = %id, error = %e, "cannot abort a timed-out transaction yet");
            }
        }
        for id in expired {
            let _transition = self.transitions.lock().await;
            let mut txns = self.lock();
            if txns.get(&id).is_some_and(|m| {
                !matches!(m.state, TxnState::Ongoing)
                    && !matches!(
                        m.state,
                        TxnState::PrepareCommit
                            | TxnState::PrepareAbort
                            | TxnState::PrepareEpochFence
                    )
            }) {
                match self.topic.append(&id, None, now) {
                    Ok(_) => {
                        txns.remove(&id);
                        info!(transactional_id = %id, "expired an idle transactional id");
                    }
                    Err(e) => {
                        warn!(transactional_id = %id, error = %e, "cannot expire a transactional id yet")
                    }
                }
            }
        }
    }
}

async fn timer_loop(coordinator: std::sync::Weak<TransactionCoordinator>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        c.tick().await;
    }
}

/// Appends a COMMIT or ABORT marker of `producer_id`/`epoch` to `partition`; returns the
/// offset just past it.
fn write_marker(
    partition: &Partition,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<i64, TxnError> {
    // One coordinator, at epoch 0, or at the epoch of an operator's marker (WriteTxnMarkers)
    // written since: the epoch recorded for the producer never goes back.
    let coordinator_epoch = partition.coordinator_epoch(producer_id).max(0);
    let batch = marker_batch(producer_id, epoch, commit, coordinator_epoch)?;
    let info = partition.append(batch, AppendOrigin::Internal)?;
    Ok(info.last_offset + 1)
}

/// The control batch of a COMMIT or ABORT marker of `producer_id`/`epoch`, written by a
/// coordinator at `coordinator_epoch`.
fn marker_batch(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<bytes::Bytes, TxnError> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(if commit { COMMIT } else { ABORT }).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon_ms: None,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: Some(key.into()),
        value: Some(value.into()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        warn!(error = %e, "cannot encode a transaction marker");
        TxnError::CoordinatorNotAvailable
    })?;
    Ok(buf.freeze())
}
