//! The background copy to the tier: topic metadata, the producer-id block, and every sealed,
//! durable segment of a tiered partition, each then recorded in the partition's manifest.
//!
//! One tokio task passes over all partitions every [`PASS_INTERVAL`], copying at most
//! [`CONCURRENCY`] partitions at once. It takes a partition's lock only to copy out segment
//! handles and offsets, never across a network call, so produce and fetch never wait on the
//! store. Store errors are retried with backoff per partition and logged once per outage.
//! Tiered: topics with `remote.storage.enable=true` and every internal topic
//! (`__consumer_offsets`), so the bucket is a complete copy of record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clean;
use super::deletion;
use super::lease::Lease;
use super::local::{same_in, snapshot, upload_file, whole_log_start, Candidate, Snapshot};
use super::manifest::{self, Manifest, RemoteObject, RemoteSegment};
use super::pace::Pacer;
use super::read::RemoteLog;
use super::remote_index::{self, log_stem, BuiltIndexes, IndexBuilder};
use super::remote_txn;
use super::scrub::{self, Finding, ScrubStats};
use super::txn_rebuild;
use super::{now_ms, Bucket, TierError};
use crate::log::{checkpoint, producer_state, txn_index, LogManager, Partition, TopicInfo};

/// How often the uploader looks for work.
pub const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// Partitions copied at once.
pub const CONCURRENCY: usize = 4;
/// Segments uploaded per manifest write.
const SEGMENTS_PER_MANIFEST: usize = 16;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Every this many passes the uploader checks that the metadata it uploaded is still there.
const AUDIT_EVERY: u64 = 10;
/// How long after a failed cleaning of a partition's tiered segments the next one starts.
const CLEAN_BACKOFF: Duration = Duration::from_secs(60);

/// The running tier: lease renewal, the uploader, and reads of what only the tier holds.
pub struct Tier {
    pub bucket: Bucket,
    pub lease: Arc<Lease>,
    pub remote: Arc<RemoteLog>,
    /// What the scrub found since start-up.
    pub scrub: Arc<ScrubStats>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Tier {
    /// Reads every tiered partition's manifest (so reads of remote-only offsets work from the
    /// first request), then starts renewing `lease` and copying `log` to `bucket` in the
    /// background.
    pub async fn start(
        bucket: Bucket,
        lease: Lease,
        log: Arc<LogManager>,
        data_dir: PathBuf,
        options: TierOptions,
    ) -> Arc<Tier> {
        let lease = Arc::new(lease);
        let remote = Arc::new(RemoteLog::new(bucket.clone(), options.cache_bytes));
        let scrub = Arc::new(ScrubStats::default());
        let (stop, rx) = watch::channel(false);
        let renewer = tokio::spawn(lease.clone().keep_renewed(rx.clone()));
        let mut uploader = Uploader {
            bucket: bucket.clone(),
            pacer: Pacer::new(options.copy_bytes_per_second),
            lease: lease.clone(),
            remote: remote.clone(),
            log,
            data_dir,
            upload_interval: options.upload_interval,
            clean: options.clean,
            scrub_interval: options.scrub_interval,
            scrub: scrub.clone(),
            copies: BTreeMap::new(),
            uploaded_meta: BTreeMap::new(),
            emptied: BTreeSet::new(),
        };
        uploader.load_manifests().await;
        let uploading = tokio::spawn(uploader.run(rx));
        Arc::new(Tier {
            bucket,
            lease,
            remote,
            scrub,
            stop,
            tasks: std::sync::Mutex::new(vec![renewer, uploading]),
        })
    }

    /// Stops the background work (an upload in flight is abandoned; its objects are orphans
    /// no manifest names) and releases the lease so the next broker need not wait it out.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.lease.release().await {
            tracing::warn!(url = %self.bucket.url, error = %e, "cannot release the bucket lease");
        }
    }
}

/// Settings of the running tier.
#[derive(Debug, Clone, Copy)]
pub struct TierOptions {
    /// `cairn.remote.upload.interval.ms`.
    pub upload_interval: Duration,
    /// `cairn.remote.cache.bytes`.
    pub cache_bytes: u64,
    /// `remote.log.manager.copy.max.bytes.per.second` (`None`: unlimited).
    pub copy_bytes_per_second: Option<u64>,
    /// `log.cleaner.enable`: clean the compacted segments only the tier holds.
    pub clean: bool,
    /// `cairn.remote.scrub.interval.ms`: how often every object is read back and checked.
    pub scrub_interval: Duration,
}

/// What the uploader knows of one partition's copy.
struct Copy {
    topic_id: uuid::Uuid,
    dir: String,
    /// `None` until read from the bucket.
    manifest: Option<Manifest>,
    next_version: u64,
    /// Since when acknowledged data has been waiting for the tier.
    lagging_since: Option<Instant>,
    failing: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Objects no manifest names (left by an interrupted upload) were collected in this run.
    collected: bool,
    /// After a failed cleaning of the tier's segments, when to try again.
    clean_retry_at: Option<Instant>,
    /// The next segment (by index in the manifest) the scrub cycle checks.
    scrub_cursor: usize,
    /// When the next scrub cycle starts: `None` until the manifest's `scrubbed_ms` set it.
    scrub_at: Option<Instant>,
    /// Damaged objects without a local copy, already reported.
    unrepairable: BTreeSet<String>,
    /// DeleteRecords markers at or below this were deleted (a written manifest holds them).
    markers_cleared_to: i64,
}

struct Uploader {
    bucket: Bucket,
    pacer: Pacer,
    lease: Arc<Lease>,
    remote: Arc<RemoteLog>,
    log: Arc<LogManager>,
    data_dir: PathBuf,
    upload_interval: Duration,
    clean: bool,
    scrub_interval: Duration,
    scrub: Arc<ScrubStats>,
    copies: BTreeMap<(String, i32), Copy>,
    /// Topic metadata as last uploaded, by topic id.
    uploaded_meta: BTreeMap<uuid::Uuid, String>,
    /// Topics whose tiered data was deleted (`remote.log.delete.on.disable`) in this run.
    emptied: BTreeSet<uuid::Uuid>,
}

impl Uploader {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut meta_failing = false;
        let mut passes = 0u64;
        loop {
            passes += 1;
            tokio::select! {
                _ = tokio::time::sleep(PASS_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            if self.lease.check().is_err() {
                continue;
            }
            let audit = passes.is_multiple_of(AUDIT_EVERY);
            match self.sync_metadata(audit).await {
                Ok(()) if meta_failing => {
                    meta_failing = false;
                    tracing::info!(url = %self.bucket.url, "topic metadata copied to the tier again");
                }
                Ok(()) => {}
                Err(e) if !meta_failing => {
                    meta_failing = true;
                    tracing::warn!(url = %self.bucket.url, error = %e, "cannot copy topic metadata to the tier; retrying");
                }
                Err(_) => {}
            }
            self.copy_partitions().await;
        }
    }

    /// Forgets uploaded metadata the bucket no longer has (a store that lost objects), so it
    /// is uploaded again.
    async fn audit_metadata(&mut self) -> Result<(), TierError> {
        let listed: Vec<_> = self
            .bucket
            .store
            .list(Some(&self.bucket.key("topics")))
            .try_collect()
            .await?;
        let present: BTreeSet<String> = listed
            .iter()
            .map(|m| self.bucket.relative(&m.location))
            .collect();
        let block = match self
            .bucket
            .store
            .head(&self.bucket.key("producer-id-block"))
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let before = self.uploaded_meta.len();
        self.uploaded_meta.retain(|id, _| {
            if id.is_nil() {
                block
            } else {
                present.contains(&format!("topics/{id}.topic"))
            }
        });
        if self.uploaded_meta.len() < before {
            tracing::error!(url = %self.bucket.url, missing = before - self.uploaded_meta.len(),
                "metadata objects vanished from the tier; uploading them again");
        }
        Ok(())
    }

    /// Uploads changed topic metadata and the producer-id block; removes deleted topics. With
    /// `audit`, first checks that what was uploaded is still there.
    async fn sync_metadata(&mut self, audit: bool) -> Result<(), TierError> {
        if audit {
            self.audit_metadata().await?;
        }
        let topics = self.log.topics();
        let live: BTreeSet<uuid::Uuid> = topics.iter().map(|t| t.topic_id).collect();
        for info in &topics {
            let text = checkpoint::encode_topic(info);
            if self.uploaded_meta.get(&info.topic_id) != Some(&text) {
                self.lease.check()?;
                let key = self.bucket.key(&format!("topics/{}.topic", info.topic_id));
                self.bucket
                    .store
                    .put(&key, PutPayload::from(text.clone()))
                    .await?;
                self.uploaded_meta.insert(info.topic_id, text);
            }
            let cfg = self.log.topic_config(&info.name);
            let disabled = !info.internal
                && cfg.is_some_and(|c| !c.remote_storage_enable && c.remote_log_delete_on_disable);
            if disabled && !self.emptied.contains(&info.topic_id) {
                self.delete_topic_data(info.topic_id).await?;
                self.emptied.insert(info.topic_id);
                tracing::info!(topic = %info.name, "remote storage disabled: deleted the topic's tiered data");
            }
        }
        // Only topics seen alive in this run are deleted from the bucket: an empty data
        // directory that has not been restored never empties the bucket.
        let gone: Vec<uuid::Uuid> = self
            .uploaded_meta
            .keys()
            // The nil id stands for the producer-id block, not a topic.
            .filter(|id| !id.is_nil() && !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.lease.check()?;
            let key = self.bucket.key(&format!("topics/{id}.topic"));
            match self.bucket.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.delete_topic_data(id).await?;
            self.uploaded_meta.remove(&id);
            for ((name, _), _) in self.copies.iter().filter(|(_, c)| c.topic_id == id) {
                self.remote.forget_topic(name);
            }
            self.copies.retain(|_, c| c.topic_id != id);
            tracing::info!(topic_id = %id, "topic deleted: removed its tiered data");
        }
        let block_path = self
            .data_dir
            .join("cairn-metadata")
            .join("producer-id-block");
        if let Ok(text) = std::fs::read_to_string(&block_path) {
            let id = uuid::Uuid::nil();
            if self.uploaded_meta.get(&id) != Some(&text) {
                self.lease.check()?;
                let key = self.bucket.key("producer-id-block");
                self.bucket
                    .store
                    .put(&key, PutPayload::from(text.clone()))
                    .await?;
                self.uploaded_meta.insert(id, text);
            }
        }
        Ok(())
    }

    async fn delete_topic_data(&self, topic_id: uuid::Uuid) -> Result<(), TierError> {
        let prefix = self.bucket.key(&format!("partitions/{topic_id}"));
        let keys: Vec<_> = self.bucket.store.list(Some(&prefix)).collect().await;
        for meta in keys {
            self.lease.check()?;
            match self.bucket.store.delete(&meta?.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Every partition the tier holds data of with its copy state, taken out of `self.copies`:
    /// with `copying`, only those copied to the tier (not `remote.log.copy.disable`).
    fn work(&mut self, copying: bool) -> Vec<(String, i32, Arc<Partition>, Copy)> {
        let mut work = Vec::new();
        for info in self.log.topics() {
            if !self.readable(&info) || (copying && !self.tiered(&info)) {
                continue;
            }
            for p in 0..info.partitions {
                let Some(part) = self.log.partition(&info.name, p) else {
                    continue;
                };
                let copy = self
                    .copies
                    .remove(&(info.name.clone(), p))
                    .filter(|c| c.topic_id == info.topic_id)
                    .unwrap_or_else(|| Copy {
                        topic_id: info.topic_id,
                        dir: manifest::partition_dir(&info.topic_id, p),
                        manifest: None,
                        next_version: 1,
                        lagging_since: None,
                        failing: false,
                        backoff: Duration::from_secs(1),
                        retry_at: None,
                        collected: false,
                        clean_retry_at: None,
                        scrub_cursor: 0,
                        scrub_at: None,
                        unrepairable: BTreeSet::new(),
                        markers_cleared_to: i64::MIN,
                    });
                work.push((info.name.clone(), p, part, copy));
            }
        }
        work
    }

    /// Reads the latest manifest of every partition the tier holds data of (at start-up, before
    /// serving), those of topics with `remote.log.copy.disable` too: their data in the tier stays
    /// readable. A copied partition whose manifest cannot be read now is read again by the next
    /// pass.
    async fn load_manifests(&mut self) {
        let work = self.work(false);
        let this = &*self;
        let done: Vec<_> = futures_util::stream::iter(work)
            .map(|(name, p, part, mut copy)| async move {
                if let Err(e) = this.load_manifest(&part, &mut copy).await {
                    tracing::warn!(topic = %name, partition = p, error = %e,
                        "cannot read the partition's manifest from the tier; retrying in the background");
                }
                ((name, p), copy)
            })
            .buffer_unordered(CONCURRENCY * 4)
            .collect()
            .await;
        self.copies.extend(done);
    }

    async fn load_manifest(&self, part: &Partition, copy: &mut Copy) -> Result<(), TierError> {
        if copy.manifest.is_some() {
            return Ok(());
        }
        let (topic, index) = (part.topic().to_string(), part.partition_index());
        let (latest, top) = manifest::read_latest(&self.bucket, &copy.dir).await?;
        let m = latest.unwrap_or_else(|| Manifest {
            topic: topic.clone(),
            partition: index,
            ..Manifest::default()
        });
        if let Some(end) = m.end_offset() {
            self.log.set_tiered_end(&topic, index, end);
        }
        // A newer version that does not parse may name objects the one read does not: nothing
        // is collected as an orphan then.
        if m.version < top {
            copy.collected = true;
        }
        deletion::load(&self.bucket, &self.remote, &copy.dir, &topic, index).await?;
        self.remote.publish(&m);
        copy.next_version = top + 1;
        copy.manifest = Some(m);
        Ok(())
    }

    async fn copy_partitions(&mut self) {
        let work = self.work(true);
        let this = &*self;
        let done: Vec<_> = futures_util::stream::iter(work)
            .map(|(name, p, part, mut copy)| async move {
                this.copy_partition(&part, &mut copy).await;
                ((name, p), copy)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        self.copies.extend(done);
    }

    /// True when the tier may hold data of the topic: internal, or with remote storage (copied
    /// or not).
    fn readable(&self, info: &TopicInfo) -> bool {
        info.internal
            || self
                .log
                .topic_config(&info.name)
                .is_some_and(|c| c.remote_storage_enable)
    }

    fn tiered(&self, info: &TopicInfo) -> bool {
        info.internal
            || self
                .log
                .topic_config(&info.name)
                .is_some_and(|c| c.remote_storage_enable && !c.remote_log_copy_disable)
    }

    /// One partition's pass, with retry bookkeeping around [`Self::copy_once`].
    async fn copy_partition(&self, part: &Partition, copy: &mut Copy) {
        if copy.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.copy_once(part, copy).await {
            Ok(()) => {
                if copy.failing {
                    tracing::info!(topic = %part.topic(), partition = part.partition_index(),
                        "copying to the tier resumed");
                }
                copy.failing = false;
                copy.backoff = Duration::from_secs(1);
                copy.retry_at = None;
            }
            Err(e) => {
                if let TierError::LeaseLost { .. } = e {
                    // Another writer, or our own torn attempt: read the bucket again.
                    copy.manifest = None;
                }
                if !copy.failing {
                    tracing::warn!(topic = %part.topic(), partition = part.partition_index(),
                        error = %e, "cannot copy to the tier; retrying with backoff (local data is kept)");
                }
                copy.failing = true;
                copy.retry_at = Some(Instant::now() + copy.backoff);
                copy.backoff = (copy.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn copy_once(&self, part: &Partition, copy: &mut Copy) -> Result<(), TierError> {
        let (topic, index) = (part.topic().to_string(), part.partition_index());
        self.load_manifest(part, copy).await?;
        if !copy.collected {
            let m = copy.manifest.as_ref().expect("loaded above");
            self.collect_orphans(&copy.dir, m).await?;
            copy.collected = true;
        }
        let snap = snapshot(part)?;
        let mut m = copy.manifest.clone().expect("loaded above");
        let now = now_ms();
        let cfg = part.config();
        // A topic with remote storage keeps in the tier what local retention deleted: the
        // tier's own start follows retention.* over the whole log and DeleteRecords. Any other
        // copied topic (the internal ones) mirrors its local log.
        let start = if cfg.remote_storage_enable {
            let deleted = self.remote.deleted_before(&topic, index);
            whole_log_start(&m, &cfg, &snap, now, deleted)
        } else {
            snap.log_start_offset
        };
        let mut changed = m.trim_below(start, now);
        let mut uploaded = 0;
        for c in &snap.sealed {
            if c.end_offset <= snap.log_start_offset || same_in(&m, c) {
                continue;
            }
            if uploaded == SEGMENTS_PER_MANIFEST {
                break;
            }
            let remote = self.upload_segment(part, &copy.dir, c).await?;
            if !m.insert(remote, now_ms()) {
                tracing::warn!(
                    topic,
                    partition = index,
                    base_offset = c.base_offset,
                    "a local segment straddles segments in the tier; not copied"
                );
                continue;
            }
            changed = true;
            uploaded += 1;
        }
        changed |= self.scrub(part, copy, &mut m, &snap).await?;
        if self.clean
            && cfg.remote_storage_enable
            && copy.clean_retry_at.is_none_or(|t| Instant::now() >= t)
            && clean::due(&m, &cfg, snap.log_start_offset, now)
        {
            changed |= self
                .clean_remote(part, copy, &mut m, snap.log_start_offset)
                .await;
        }
        let delay = part.config().file_delete_delay_ms;
        let expired = m.take_expired(now, delay);
        changed |= !expired.is_empty();
        if changed {
            self.lease.check()?;
            // The version this one follows must still be there: a store that lost it lost the
            // segments too, and must get the local log again rather than a manifest naming
            // objects it no longer has.
            let previous = copy.next_version - 1;
            if previous > 0 && !manifest::exists(&self.bucket, &copy.dir, previous).await? {
                tracing::error!(
                    topic,
                    partition = index,
                    version = previous,
                    "the tier lost this partition's manifest; copying the local log again"
                );
                self.log.set_tiered_end(&topic, index, i64::MIN);
                copy.manifest = None;
                return Ok(());
            }
            m.version = copy.next_version;
            m.lease_epoch = self.lease.epoch();
            m.written_ms = now_ms();
            manifest::write(&self.bucket, &copy.dir, &m).await?;
            copy.next_version += 1;
            if let Some(end) = m.end_offset() {
                self.log.set_tiered_end(&topic, index, end);
            }
            self.remote.publish(&m);
            if uploaded > 0 {
                tracing::debug!(
                    topic,
                    partition = index,
                    segments = uploaded,
                    end_offset = m.end_offset(),
                    version = m.version,
                    "copied segments to the tier"
                );
            }
            copy.manifest = Some(m.clone());
            for key in expired {
                match self.bucket.store.delete(&self.bucket.key(&key)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => tracing::debug!(key, error = %e, "cannot delete a retired object"),
                }
            }
        }
        // DeleteRecords markers the written manifest now holds are not needed any more.
        let deleted = self
            .remote
            .deleted_before(&topic, index)
            .unwrap_or(i64::MIN);
        let written = copy
            .manifest
            .as_ref()
            .map_or(i64::MIN, |m| m.log_start_offset);
        if deleted > copy.markers_cleared_to && written >= deleted {
            deletion::clear_up_to(&self.bucket, &copy.dir, written).await?;
            copy.markers_cleared_to = deleted;
        }
        self.roll_if_lagging(part, copy, &snap, m.end_offset())
    }

    /// Checks a few of the partition's segments in the tier (the next ones of the scrub cycle,
    /// and any a remote read found damaged) and uploads a damaged one again from the local copy
    /// into `m`; true when `m` changed. A damaged segment without a local copy is reported once.
    async fn scrub(
        &self,
        part: &Partition,
        copy: &mut Copy,
        m: &mut Manifest,
        snap: &Snapshot,
    ) -> Result<bool, TierError> {
        let (topic, index) = (part.topic(), part.partition_index());
        let mut todo: Vec<usize> = (0..m.segments.len())
            .filter(|&i| {
                let key = &m.segments[i].log.key;
                (self.remote.was_found_corrupt(key) || self.remote.index_found_bad(&m.segments[i]))
                    && !copy.unrepairable.contains(key)
            })
            .collect();
        // Segments uploaded before transaction indexes were get one, a few per pass.
        todo.extend(
            (0..m.segments.len())
                .filter(|&i| m.segments[i].txn_index.is_none())
                .filter(|&i| !copy.unrepairable.contains(&m.segments[i].log.key))
                .take(scrub::SEGMENTS_PER_PASS),
        );
        // The first cycle after a start is due an interval after the last one finished.
        let since_last = Duration::from_millis((now_ms() - m.scrubbed_ms).max(0) as u64);
        let scrub_at = *copy
            .scrub_at
            .get_or_insert_with(|| Instant::now() + self.scrub_interval.saturating_sub(since_last));
        let mut changed = false;
        if Instant::now() >= scrub_at {
            for _ in 0..scrub::SEGMENTS_PER_PASS {
                if copy.scrub_cursor >= m.segments.len() {
                    copy.scrub_cursor = 0;
                    copy.scrub_at = Some(Instant::now() + self.scrub_interval);
                    m.scrubbed_ms = now_ms();
                    changed = true;
                    break;
                }
                todo.push(copy.scrub_cursor);
                copy.scrub_cursor += 1;
            }
        }
        todo.sort_unstable();
        todo.dedup();
        for i in todo {
            let seg = m.segments[i].clone();
            ScrubStats::add(&self.scrub.checked);
            let interval = part.config().index_interval_bytes;
            let reason = match scrub::check(&self.bucket, &seg, interval).await? {
                Finding::Sound => {
                    changed |= self.add_txn_index(part, copy, m, i).await?;
                    continue;
                }
                Finding::Damaged(reason) => reason,
                Finding::Reindex { reason, built } => {
                    changed |= self.reindex(part, copy, m, &seg, reason, built).await?;
                    changed |= self.add_txn_index(part, copy, m, i).await?;
                    continue;
                }
            };
            ScrubStats::add(&self.scrub.damaged);
            let local = snap
                .sealed
                .iter()
                .find(|c| c.base_offset == seg.base_offset && c.end_offset == seg.end_offset);
            match local {
                Some(c) => {
                    let fresh = self.upload_segment(part, &copy.dir, c).await?;
                    if m.insert(fresh, now_ms()) {
                        changed = true;
                        ScrubStats::add(&self.scrub.repaired);
                        tracing::warn!(
                            topic,
                            partition = index,
                            base_offset = seg.base_offset,
                            reason,
                            "damaged object in the tier uploaded again from the local copy"
                        );
                    }
                }
                None => {
                    if copy.unrepairable.insert(seg.log.key.clone()) {
                        ScrubStats::add(&self.scrub.unrepairable);
                        tracing::error!(topic, partition = index, base_offset = seg.base_offset,
                            end_offset = seg.end_offset, reason,
                            "damaged object in the tier and no local copy to repair it from: its damaged records are not served");
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Puts index objects the scrub built again from `seg`'s sound log object into `m`, in place
    /// of the missing or damaged ones (`reason`), or as the first ones of a segment uploaded
    /// before indexes were; true when `m` changed.
    async fn reindex(
        &self,
        part: &Partition,
        copy: &Copy,
        m: &mut Manifest,
        seg: &RemoteSegment,
        reason: Option<String>,
        built: BuiltIndexes,
    ) -> Result<bool, TierError> {
        self.lease.check()?;
        // A new name: the objects the manifest names now are never overwritten.
        let uid = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let stem = format!("{}/segments/{:020}-{uid}", copy.dir, seg.base_offset);
        let indexes = remote_index::upload(&self.bucket, &self.pacer, &stem, &built).await?;
        let range = (seg.base_offset, seg.end_offset);
        if !m.set_indexes(range, &seg.log.key, indexes, built.epochs, now_ms()) {
            return Ok(false);
        }
        let (topic, index) = (part.topic(), part.partition_index());
        match reason {
            Some(reason) => {
                ScrubStats::add(&self.scrub.damaged);
                ScrubStats::add(&self.scrub.repaired);
                tracing::warn!(
                    topic,
                    partition = index,
                    base_offset = seg.base_offset,
                    reason,
                    "damaged index object in the tier built again from its segment"
                );
            }
            None => tracing::debug!(
                topic,
                partition = index,
                base_offset = seg.base_offset,
                "indexes added to a segment uploaded without them"
            ),
        }
        Ok(true)
    }

    /// Gives `m.segments[i]`, a sound segment, a transaction index built again from the log
    /// objects ([`txn_rebuild`]) when it has none (uploaded before they were) or its index object
    /// is missing or damaged, uploaded under a new name; true when `m` changed. A damaged
    /// earlier segment it must read leaves it as it is (that segment's scrub reports it).
    async fn add_txn_index(
        &self,
        part: &Partition,
        copy: &Copy,
        m: &mut Manifest,
        i: usize,
    ) -> Result<bool, TierError> {
        if self.remote.txn_index(&m.segments[i]).await?.is_some() {
            return Ok(false);
        }
        let entries = match txn_rebuild::rebuild(&self.bucket, &m.segments, i).await {
            Ok(entries) => entries,
            Err(TierError::Corrupt { key, reason }) => {
                tracing::debug!(
                    key,
                    reason,
                    "cannot build a transaction index from a damaged object"
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.lease.check()?;
        let seg = &m.segments[i];
        let uid = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let stem = format!("{}/segments/{:020}-{uid}", copy.dir, seg.base_offset);
        let object = remote_txn::upload(&self.bucket, &self.pacer, &stem, &entries).await?;
        let (range, key) = ((seg.base_offset, seg.end_offset), seg.log.key.clone());
        if !m.set_txn_index(range, &key, object, now_ms()) {
            return Ok(false);
        }
        tracing::debug!(topic = %part.topic(), partition = part.partition_index(),
            base_offset = range.0, aborted = entries.len(),
            "transaction index built again for a segment without a sound one");
        Ok(true)
    }

    /// Cleans the segments only the tier holds of a compacted partition ([`clean`]) and puts the
    /// cleaned ones into `m` (the caller writes it); true when `m` changed. A failure is logged,
    /// leaves `m` as it was and is retried after [`CLEAN_BACKOFF`]; copying goes on meanwhile.
    async fn clean_remote(
        &self,
        part: &Partition,
        copy: &mut Copy,
        m: &mut Manifest,
        local_start: i64,
    ) -> bool {
        let (topic, index) = (part.topic(), part.partition_index());
        let target = clean::Target {
            bucket: &self.bucket,
            pacer: &self.pacer,
            lease: &self.lease,
            dir: &copy.dir,
            index_interval_bytes: part.config().index_interval_bytes,
        };
        let map_bytes = part.shared.cleaner_settings().config.dedupe_buffer_size;
        let cleaning = match clean::clean(&target, m, &part.config(), local_start, map_bytes).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(topic, partition = index, error = %e,
                    "cannot clean the tier's segments of a compacted partition; retrying later");
                copy.clean_retry_at = Some(Instant::now() + CLEAN_BACKOFF);
                return false;
            }
        };
        copy.clean_retry_at = None;
        let replaced = cleaning.segments.len();
        let now = now_ms();
        for s in cleaning.segments {
            // Each covers exactly the range of the segment it replaces, which this task alone
            // changes: the insert cannot straddle.
            m.insert(s, now);
        }
        m.cleaned_to = cleaning.cleaned_to;
        m.tombstone_horizon = cleaning.tombstone_horizon;
        tracing::info!(
            topic,
            partition = index,
            segments = replaced,
            cleaned_to = cleaning.cleaned_to,
            records_read = cleaning.stats.records_read,
            records_kept = cleaning.stats.records_kept,
            tombstones_removed = cleaning.stats.tombstones_removed,
            "cleaned the tier's segments"
        );
        true
    }

    /// Deletes the partition's segment objects that the manifest neither names nor retired:
    /// uploads a crash (or a failed manifest write) left behind. Runs once per partition per
    /// start, between this partition's uploads, so no upload of it is in flight.
    async fn collect_orphans(&self, dir: &str, m: &Manifest) -> Result<(), TierError> {
        let named: BTreeSet<&str> = m
            .segments
            .iter()
            .flat_map(|s| s.objects())
            .map(|o| o.key.as_str())
            .chain(m.retired.iter().map(|r| r.key.as_str()))
            .collect();
        let listed: Vec<_> = self
            .bucket
            .store
            .list(Some(&self.bucket.key(&format!("{dir}/segments"))))
            .try_collect()
            .await?;
        let mut collected = 0;
        for meta in listed {
            let rel = self.bucket.relative(&meta.location);
            if named.contains(rel.as_str()) {
                continue;
            }
            self.lease.check()?;
            match self.bucket.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => collected += 1,
                Err(e) => return Err(e.into()),
            }
        }
        if collected > 0 {
            tracing::info!(
                dir,
                objects = collected,
                "collected orphan objects in the tier"
            );
        }
        Ok(())
    }

    /// Rolls the active segment when acknowledged data has waited longer than
    /// `cairn.remote.upload.interval.ms` for the tier, so it is sealed and copied next.
    fn roll_if_lagging(
        &self,
        part: &Partition,
        copy: &mut Copy,
        snap: &Snapshot,
        tiered_end: Option<i64>,
    ) -> Result<(), TierError> {
        let lagging = snap.durable_offset > tiered_end.unwrap_or(snap.log_start_offset);
        if !lagging {
            copy.lagging_since = None;
            return Ok(());
        }
        let since = *copy.lagging_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.upload_interval && snap.active_size > 0 {
            part.roll()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            copy.lagging_since = Some(Instant::now());
        }
        Ok(())
    }

    async fn upload_segment(
        &self,
        part: &Partition,
        dir: &str,
        c: &Candidate,
    ) -> Result<RemoteSegment, TierError> {
        self.lease.check()?;
        let uid = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let log_key = format!("{dir}/segments/{:020}-{uid}.log", c.base_offset);
        let interval = part.config().index_interval_bytes;
        let mut index = IndexBuilder::new(c.base_offset, interval);
        let log = upload_file(
            &self.bucket,
            &self.pacer,
            &log_key,
            c.log.file()?,
            c.size,
            &mut index,
        )
        .await?;
        // A segment whose bytes build no index (not whole batches) is still uploaded: its reads
        // walk batch headers, as for segments uploaded before indexes were.
        let built = index.finish(c.size);
        let indexes = match &built {
            Some(built) => Some(
                remote_index::upload(&self.bucket, &self.pacer, log_stem(&log_key), built).await?,
            ),
            None => None,
        };
        let aborted = txn_index::load(part.dir(), c.base_offset)?;
        let txn_index =
            remote_txn::upload(&self.bucket, &self.pacer, log_stem(&log_key), &aborted).await?;
        let snapshot_path = producer_state::snapshot_path(part.dir(), c.end_offset);
        let producer_snapshot = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let key = format!("{dir}/segments/{:020}-{uid}.snapshot", c.end_offset);
                let object = RemoteObject {
                    key: key.clone(),
                    size: bytes.len() as u64,
                    crc32c: crc32c::crc32c(&bytes),
                };
                self.bucket
                    .store
                    .put(&self.bucket.key(&key), PutPayload::from(bytes))
                    .await?;
                Some(object)
            }
            Err(_) => None,
        };
        Ok(RemoteSegment {
            base_offset: c.base_offset,
            end_offset: c.end_offset,
            log,
            producer_snapshot,
            max_timestamp: c.max_timestamp,
            uploaded_ms: now_ms(),
            indexes,
            leader_epochs: built.map(|b| b.epochs).unwrap_or_default(),
            txn_index: Some(txn_index),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::batch::{self, tests::batch_with};
    use crate::log::segment::segment_file;
    use crate::log::{AppendOrigin, LogManagerOptions};
    use crate::tier::read;
    use bytes::Bytes;
    use object_store::memory::InMemory;

    /// The tier over `bucket` with uploads on a ten-minute interval (the tests roll and wait),
    /// no cleaning, and a daily scrub.
    async fn start_tier(
        bucket: &Bucket,
        log: &Arc<LogManager>,
        dir: &std::path::Path,
    ) -> Arc<Tier> {
        let lease = Lease::acquire(bucket, "test").await.unwrap();
        let options = TierOptions {
            upload_interval: Duration::from_secs(600),
            cache_bytes: 1 << 20,
            copy_bytes_per_second: None,
            clean: false,
            scrub_interval: Duration::from_secs(86_400),
        };
        Tier::start(
            bucket.clone(),
            lease,
            log.clone(),
            dir.to_path_buf(),
            options,
        )
        .await
    }

    #[tokio::test]
    async fn the_uploaded_indexes_are_the_local_segments_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = BrokerConfig::default();
        broker
            .set("remote.log.storage.system.enable", "true")
            .unwrap();
        let tier_dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tier_dir.path().display());
        broker.set("cairn.remote.storage.url", &url).unwrap();
        let log = LogManager::open(LogManagerOptions {
            data_dir: dir.path().to_path_buf(),
            broker,
        })
        .unwrap();
        let overrides = [
            ("remote.storage.enable", "true"),
            ("index.interval.bytes", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        log.create_topic("t", 1, overrides, false).unwrap();
        let part = log.partition("t", 0).unwrap();
        for o in 0..200 {
            let mut one = batch_with(1 + (o % 3) as usize, 1_000 + 10 * o, None, true);
            batch::set_partition_leader_epoch(&mut one, 0);
            part.append(Bytes::from(one), AppendOrigin::Client).unwrap();
        }
        part.roll().unwrap();
        let bucket = Bucket::new(Arc::new(InMemory::new()), "", "memory://");
        let tier = start_tier(&bucket, &log, dir.path()).await;
        let end = part.lock().log_end_offset;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tier.remote.end_offset("t", 0) != Some(end) {
            assert!(Instant::now() < deadline, "the segment was not uploaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let info = log.topic("t").unwrap();
        let dir_key = manifest::partition_dir(&info.topic_id, 0);
        let m = manifest::read_latest(&bucket, &dir_key)
            .await
            .unwrap()
            .0
            .unwrap();
        let seg = &m.segments[0];
        let ix = seg.indexes.as_ref().expect("uploaded with its indexes");
        assert_eq!(ix.interval_bytes, 100);
        // Byte for byte the files the log wrote for the segment, which Kafka's tools read.
        for (object, ext) in [(&ix.offset_index, "index"), (&ix.time_index, "timeindex")] {
            let stored = read::fetch(&bucket, object).await.unwrap();
            let local = std::fs::read(segment_file(&part.dir, seg.base_offset, ext)).unwrap();
            assert!(!local.is_empty(), "{ext}");
            assert_eq!(stored[..], local[..], "{ext}");
        }
        assert_eq!(
            seg.leader_epochs,
            vec![manifest::EpochStart {
                epoch: 0,
                start_offset: 0
            }]
        );

        // The producer-id block is uploaded once, not again on every pass (it is kept under the
        // nil id among the uploaded metadata, which once passed for a deleted topic).
        let block = dir.path().join("cairn-metadata").join("producer-id-block");
        std::fs::create_dir_all(block.parent().unwrap()).unwrap();
        std::fs::write(&block, "1000\n").unwrap();
        let key = bucket.key("producer-id-block");
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Ok(meta) = bucket.store.head(&key).await {
                break meta.e_tag;
            }
            assert!(
                Instant::now() < deadline,
                "the producer-id block was not uploaded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(PASS_INTERVAL * 4).await;
        let later = bucket.store.head(&key).await.unwrap().e_tag;
        assert_eq!(first, later, "the producer-id block was uploaded again");
        tier.shutdown().await;

        // A manifest from before transaction indexes were uploaded: the scrub adds them.
        let (latest, top) = manifest::read_latest(&bucket, &dir_key).await.unwrap();
        let mut old = latest.unwrap();
        for s in &mut old.segments {
            s.txn_index = None;
        }
        old.version = top + 1;
        manifest::write(&bucket, &dir_key, &old).await.unwrap();
        let tier = start_tier(&bucket, &log, dir.path()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = manifest::read_latest(&bucket, &dir_key).await.unwrap().0;
            let m = m.unwrap();
            if m.segments.iter().all(|s| s.txn_index.is_some()) {
                // No transaction in these segments: an empty index, never fetched.
                assert!(m
                    .segments
                    .iter()
                    .all(|s| s.txn_index.as_ref().unwrap().size == 0));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the scrub added no transaction index"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tier.shutdown().await;

        // A damaged transaction index (here its object is missing), found by a read_committed
        // read (answered from the log objects meanwhile), is built again by the scrub and the
        // manifest names the new one; the old key is retired.
        let (latest, top) = manifest::read_latest(&bucket, &dir_key).await.unwrap();
        let mut damaged = latest.unwrap();
        damaged.segments[0].txn_index = Some(RemoteObject {
            key: format!("{dir_key}/segments/lost.txnindex"),
            size: 12,
            crc32c: 1,
        });
        damaged.version = top + 1;
        manifest::write(&bucket, &dir_key, &damaged).await.unwrap();
        let tier = start_tier(&bucket, &log, dir.path()).await;
        let (aborted, _) = tier
            .remote
            .aborted_transactions("t", 0, (0, 1), i64::MAX)
            .await
            .unwrap();
        assert!(aborted.is_empty());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = manifest::read_latest(&bucket, &dir_key).await.unwrap().0;
            let m = m.unwrap();
            if m.segments[0].txn_index.as_ref().unwrap().size == 0 {
                assert!(m.retired.iter().any(|r| r.key.ends_with("lost.txnindex")));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the scrub did not replace the damaged transaction index"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A finished scrub cycle is remembered in the manifest: a restart does not read the
        // partition back again before the scrub interval (a day here) is up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = manifest::read_latest(&bucket, &dir_key).await.unwrap().0;
            if m.unwrap().scrubbed_ms > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no scrub cycle finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tier.shutdown().await;
        let tier = start_tier(&bucket, &log, dir.path()).await;
        tokio::time::sleep(PASS_INTERVAL * 4).await;
        let checked = tier.scrub.checked.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(checked, 0, "the restart began a scrub cycle");
        tier.shutdown().await;

        // Copying stopped (`remote.log.copy.disable`): the data in the tier stays readable
        // after a restart, its manifest read at start-up like a copied partition's.
        let mut overrides = info.overrides.clone();
        overrides.insert("remote.log.copy.disable".into(), "true".into());
        log.alter_topic_config("t", overrides).unwrap();
        let tier = start_tier(&bucket, &log, dir.path()).await;
        assert_eq!(tier.remote.end_offset("t", 0), Some(end));
        let first = tier.remote.read("t", 0, 0, 1).await.unwrap().unwrap();
        assert_eq!(batch::BatchHeader::parse(&first).unwrap().base_offset, 0);
        tier.shutdown().await;
        log.shutdown().unwrap();
    }
}
