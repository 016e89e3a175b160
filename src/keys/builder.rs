//! The background key-file builder and sweeper. After a restart (and then once a minute) it
//! walks the indexed partitions one at a time and builds the key file of every sealed segment
//! below the last stable offset that has none, so the first lookup of a large topic finds them
//! built instead of building them all inline. It runs on one blocking thread and rests after
//! each file as long as building it took, so it uses at most half of one core. Lookups meanwhile
//! stay correct: a file is built outside the partition's index and written under a name of its
//! own, then renamed into place; a lookup that needs a file not built yet builds it itself.
//!
//! The same pass sweeps `cairn-key-index/`: directories of partitions that no longer exist or
//! are no longer indexed (topic deleted, `cleanup.policy` changed), files of segments that no
//! longer exist (merged by the cleaner, deleted by retention), and temporary files a crash left.
//! Knows the log through [`LogManager`]'s topic list and [`Partition`]'s read path only.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{cached, indexed, load_or_build, remember, KeyIndex, KeysError, Layout, KEY_INDEX_DIR};
use crate::log::partition::Partition;
use crate::log::LogManager;

/// Time between passes once the first (at start-up) is done.
pub const PASS_INTERVAL: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Key files built, or checked on disk and taken into memory.
    pub ready: usize,
    /// Files and directories removed.
    pub removed: usize,
}

/// Every partition of every indexed topic, at this moment.
fn indexed_partitions(log: &LogManager) -> Vec<Arc<Partition>> {
    let mut out = Vec::new();
    for topic in log.topics() {
        if !log.topic_config(&topic.name).is_some_and(|c| indexed(&c)) {
            continue;
        }
        out.extend((0..topic.partitions).filter_map(|p| log.partition(&topic.name, p)));
    }
    out
}

/// One pass over `data_dir`'s key index: sweep, then build what is missing, one partition at a
/// time. `rest` is called after each file built with the time building it took.
pub fn pass(
    index: &KeyIndex,
    log: &LogManager,
    data_dir: &Path,
    mut rest: impl FnMut(Duration),
) -> PassReport {
    let mut report = PassReport {
        removed: index.sweep_directories(data_dir, || indexed_partitions(log)),
        ..PassReport::default()
    };
    for p in indexed_partitions(log) {
        match index.build_missing(&p, &mut rest) {
            Ok(r) => {
                report.ready += r.ready;
                report.removed += r.removed;
            }
            // A partition deleted meanwhile, or a read error that a lookup will report.
            Err(e) => tracing::debug!(topic = p.topic(), partition = p.partition_index(),
                error = %e, "key index: background build skipped a partition"),
        }
    }
    report
}

/// Runs passes until the task is aborted: the first at once, then every [`PASS_INTERVAL`].
pub async fn run(index: Arc<KeyIndex>, log: Arc<LogManager>, data_dir: std::path::PathBuf) {
    loop {
        let (i, l, d) = (index.clone(), log.clone(), data_dir.clone());
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || pass(&i, &l, &d, std::thread::sleep)).await;
        match done {
            Ok(r) if r != PassReport::default() => tracing::info!(
                ready = r.ready,
                removed = r.removed,
                seconds = started.elapsed().as_secs_f64(),
                "key index: background pass"
            ),
            Ok(_) => {}
            Err(_) => return,
        }
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

impl KeyIndex {
    /// Removes the key directories of partitions not in `live()` (taken after the directory is
    /// listed, so a partition created meanwhile keeps its directory) and forgets the in-memory
    /// state of partitions that are gone. Returns how many directories were removed.
    pub fn sweep_directories(
        &self,
        data_dir: &Path,
        live: impl FnOnce() -> Vec<Arc<Partition>>,
    ) -> usize {
        let root = data_dir.join(KEY_INDEX_DIR);
        let listed: Vec<OsString> = match std::fs::read_dir(&root) {
            Ok(d) => d.flatten().map(|e| e.file_name()).collect(),
            Err(_) => Vec::new(),
        };
        let live = live();
        let names: HashSet<OsString> = live
            .iter()
            .filter_map(|p| p.dir().file_name().map(|n| n.to_os_string()))
            .collect();
        let mut removed = 0;
        for name in listed.iter().filter(|n| !names.contains(*n)) {
            super::file::forget_dir(&root.join(name));
            match std::fs::remove_dir_all(root.join(name)) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = ?name, error = %e, "key index: cannot remove a stale directory")
                }
            }
        }
        // The in-memory part of partitions deleted, or no longer indexed, goes too (their files
        // are gone, and a partition indexed again starts afresh).
        let live_ptrs: HashSet<*const Partition> = live.iter().map(Arc::as_ptr).collect();
        self.partitions
            .lock()
            .expect("key index map lock")
            .retain(|_, (owner, _)| live_ptrs.contains(&owner.as_ptr()));
        removed
    }

    /// Removes the partition's files of segments that no longer exist and temporary files, then
    /// builds the file of every sealed segment below the last stable offset that has none.
    pub fn build_missing(
        &self,
        partition: &Arc<Partition>,
        mut rest: impl FnMut(Duration),
    ) -> Result<PassReport, KeysError> {
        let keys = self.keys_of(partition);
        let mut report = PassReport::default();
        let layout = {
            // Under the index lock no lookup writes a file, so whatever is not a current
            // segment's file is stale.
            let mut k = keys.lock().expect("partition key index lock");
            let layout = Layout::of(partition)?;
            let bases: HashSet<i64> = layout.segments.iter().map(|(s, _)| s.base_offset).collect();
            k.sealed.retain(|b, _| bases.contains(b));
            let dir = super::key_file_path(partition, 0);
            let files = dir.parent().and_then(|d| std::fs::read_dir(d).ok());
            for f in files.into_iter().flatten().flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                let current = name
                    .strip_suffix(".keys")
                    .and_then(|b| b.parse::<i64>().ok())
                    .is_some_and(|b| bases.contains(&b));
                if !current && super::file::KeyFile::remove(&f.path()).is_ok() {
                    report.removed += 1;
                }
            }
            layout
        };
        let bound = layout.offsets.last_stable_offset;
        let start = layout.offsets.log_start_offset;
        let sealed = &layout.segments[..layout.segments.len().saturating_sub(1)];
        for (seg, end) in sealed {
            if *end > bound || *end <= start {
                continue;
            }
            if cached(
                &keys.lock().expect("partition key index lock").sealed,
                seg,
                *end,
            )
            .is_some()
            {
                continue;
            }
            let took = Instant::now();
            let Some(file) = load_or_build(partition, seg, *end, bound)? else {
                continue;
            };
            remember(
                &mut keys.lock().expect("partition key index lock").sealed,
                file,
            );
            report.ready += 1;
            rest(took.elapsed());
        }
        Ok(report)
    }
}
