//! The files that carry a partition's producer state across restarts, and the partition's own
//! list of them.
//!
//! `<offset:20>.snapshot` is Kafka's file (disk-format.md §5, encoded by
//! [`ProducerStateManager::encode_snapshot`]): per producer only its last batch. Alone, it
//! would make a restart forget the earlier retained batches, so a producer retrying one of
//! them (several requests in flight at a kill) would be refused as out of order, which is
//! fatal to it; Kafka, which rebuilds from its newest snapshot forward, has that gap. Beside
//! each snapshot Cairn therefore writes `<offset:20>.producers`, its own companion file with
//! every producer's retained batches (up to [`RETAINED_BATCHES`]), and start-up takes them back
//! where they agree with the snapshot. Kafka ignores the companion (its loader reads only
//! segment, index and snapshot names); without one (a directory from Kafka, or a file lost or
//! torn) the snapshot alone is used.
//!
//! Companion format (big-endian): version i16 = 1, CRC-32C u32 over the bytes after it, entry
//! count i32, then per producer: producer id i64, epoch i16, batch count i8 (1..=5), and per
//! batch, oldest first: first sequence i32, last sequence i32, first offset i64, last offset i64.
//!
//! [`SnapshotFiles`] is the list of a partition's snapshot offsets, read from the directory
//! listing start-up makes anyway, so that each roll prunes old snapshots by name instead of
//! listing the directory. Knows producer state and file names; nothing of segments or requests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::checkpoint::write_atomic;
use super::producer_state::{snapshot_path, BatchMeta, ProducerStateManager, RETAINED_BATCHES};

const COMPANION_VERSION: i16 = 1;
const BATCH_BYTES: usize = 24;

/// `<offset:20>.producers` in `dir`: the companion of the snapshot at `offset`.
pub fn companion_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.producers"))
}

/// Every producer's retained batches, in the companion format.
pub fn encode_companion(state: &ProducerStateManager) -> Vec<u8> {
    let entries: Vec<_> = state
        .entries()
        .into_iter()
        .filter(|(_, e)| !e.batches.is_empty())
        .collect();
    let mut body = Vec::with_capacity(4 + entries.len() * (11 + 2 * BATCH_BYTES));
    body.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for (id, e) in entries {
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.push(e.batches.len() as u8);
        for b in &e.batches {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.first_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&COMPANION_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// One producer's batches as a companion file keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: Vec<BatchMeta>,
}

/// Reads a companion file; any inconsistency (version, CRC, counts, length) is an error.
pub fn decode_companion(bytes: &[u8]) -> Result<Vec<CompanionEntry>, String> {
    if bytes.len() < 10 {
        return Err("companion shorter than its header".into());
    }
    if i16::from_be_bytes([bytes[0], bytes[1]]) != COMPANION_VERSION {
        return Err("unknown companion version".into());
    }
    let crc = u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[6..]) != crc {
        return Err("companion CRC mismatch".into());
    }
    let count = i32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes"));
    if count < 0 {
        return Err("negative entry count".into());
    }
    let mut rest = &bytes[10..];
    let i64_of = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
    let i32_of = |b: &[u8]| i32::from_be_bytes(b.try_into().expect("4 bytes"));
    // Bounded by the file's length, not by the count it claims.
    let mut entries = Vec::new();
    for _ in 0..count {
        let head = take(&mut rest, 11)?;
        let n = head[10] as usize;
        if n == 0 || n > RETAINED_BATCHES {
            return Err(format!("{n} batches in one entry"));
        }
        let mut batches = Vec::with_capacity(n);
        for _ in 0..n {
            let b = take(&mut rest, BATCH_BYTES)?;
            batches.push(BatchMeta {
                first_seq: i32_of(&b[0..4]),
                last_seq: i32_of(&b[4..8]),
                first_offset: i64_of(&b[8..16]),
                last_offset: i64_of(&b[16..24]),
            });
        }
        entries.push(CompanionEntry {
            producer_id: i64_of(&head[0..8]),
            epoch: i16::from_be_bytes([head[8], head[9]]),
            batches,
        });
    }
    if !rest.is_empty() {
        return Err("bytes after the last entry".into());
    }
    Ok(entries)
}

/// The first `n` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err("companion ends inside an entry".into());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// The snapshot offsets of one partition directory, ascending, as this process wrote, found or
/// deleted them (nothing else writes snapshots into a served partition's directory).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotFiles {
    offsets: Vec<i64>,
}

impl SnapshotFiles {
    /// The offsets known, ascending.
    pub fn offsets(&self) -> &[i64] {
        &self.offsets
    }

    /// Writes the state as of `offset` (exclusive): the companion, then the snapshot (so a
    /// snapshot is never newer than its companion), and deletes older snapshots but the
    /// previous one. With `durable` both are fsynced; without (at roll, under the partition
    /// lock) a lost or torn file is detected by its CRC at start-up: a snapshot is then replaced
    /// by the previous one, a companion by the snapshot alone.
    pub fn write(
        &mut self,
        dir: &Path,
        offset: i64,
        state: &ProducerStateManager,
        durable: bool,
    ) -> io::Result<()> {
        let files = [
            (companion_path(dir, offset), encode_companion(state)),
            (snapshot_path(dir, offset), state.encode_snapshot()),
        ];
        for (path, bytes) in files {
            if durable {
                write_atomic(&path, &bytes)?;
            } else {
                let mut tmp = path.clone().into_os_string();
                tmp.push(".tmp");
                fs::write(&tmp, bytes)?;
                fs::rename(&tmp, &path)?;
            }
        }
        if let Err(at) = self.offsets.binary_search(&offset) {
            self.offsets.insert(at, offset);
        }
        let older = self.offsets.partition_point(|&o| o < offset);
        if older > 1 {
            for o in self.offsets.drain(..older - 1) {
                remove(dir, o);
            }
        }
        Ok(())
    }

    /// Deletes the snapshots above `offset` (the log was cut there): they describe batches the
    /// log no longer has.
    pub fn truncate_to(&mut self, dir: &Path, offset: i64) {
        let keep = self.offsets.partition_point(|&o| o <= offset);
        for o in self.offsets.drain(keep..) {
            remove(dir, o);
        }
    }
}

/// Deletes the snapshot at `offset` and its companion; a file already gone is no error.
fn remove(dir: &Path, offset: i64) {
    for path in [snapshot_path(dir, offset), companion_path(dir, offset)] {
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete an old producer snapshot");
            }
        }
    }
}

/// Loads the newest valid snapshot at or below `max_offset` with the earlier batches its
/// companion keeps, given the offsets of the directory's `.snapshot` and `.producers` files.
/// Deletes the snapshots above `max_offset`, unreadable ones, and companions without a
/// snapshot. Returns the snapshots left and, when one was read, (its offset, the state).
pub fn load_latest(
    dir: &Path,
    mut snapshots: Vec<i64>,
    companions: &[i64],
    max_offset: i64,
) -> io::Result<(SnapshotFiles, Option<(i64, ProducerStateManager)>)> {
    snapshots.sort_unstable();
    snapshots.dedup();
    let mut loaded = None;
    while let Some(&offset) = snapshots.last() {
        let path = snapshot_path(dir, offset);
        if offset > max_offset {
            fs::remove_file(&path)?;
            snapshots.pop();
            continue;
        }
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| ProducerStateManager::decode_snapshot(&b))
        {
            Ok(mut state) => {
                if companions.contains(&offset) {
                    restore_companion(dir, offset, &mut state)?;
                }
                loaded = Some((offset, state));
                break;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "deleting unreadable producer snapshot");
                fs::remove_file(&path)?;
                snapshots.pop();
            }
        }
    }
    for &o in companions {
        if snapshots.binary_search(&o).is_err() {
            fs::remove_file(companion_path(dir, o))?;
        }
    }
    Ok((SnapshotFiles { offsets: snapshots }, loaded))
}

/// Gives the producers of `state` (read from the snapshot at `offset`) their earlier batches
/// from its companion. An unreadable companion is deleted: the snapshot alone is used.
fn restore_companion(dir: &Path, offset: i64, state: &mut ProducerStateManager) -> io::Result<()> {
    let path = companion_path(dir, offset);
    let entries = match fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| decode_companion(&b))
    {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e,
                "deleting an unreadable producer companion file; only each producer's last batch is known");
            return fs::remove_file(&path);
        }
    };
    let mut disagreeing = 0;
    for e in &entries {
        if !state.restore_batches(e.producer_id, e.epoch, &e.batches) {
            disagreeing += 1;
        }
    }
    if disagreeing > 0 {
        tracing::warn!(file = %path.display(), producers = disagreeing,
            "producer companion disagrees with its snapshot for some producers; their last batch alone is known");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::producer_state::tests::header;
    use crate::log::producer_state::PendingUpdates;

    fn append(state: &mut ProducerStateManager, pid: i64, seq: i32, count: i32, offset: i64) {
        let h = header(pid, 0, seq, count, offset);
        let mut pending = PendingUpdates::default();
        state.check(&pending, &h).unwrap();
        state.record(&mut pending, &h, 1_000);
        state.commit(pending);
    }

    fn listing(dir: &Path) -> (Vec<i64>, Vec<i64>) {
        let mut snapshots = Vec::new();
        let mut companions = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some((stem, ext)) = name.split_once('.') {
                match ext {
                    "snapshot" => snapshots.push(stem.parse().unwrap()),
                    "producers" => companions.push(stem.parse().unwrap()),
                    _ => panic!("unexpected file {name}"),
                }
            }
        }
        snapshots.sort_unstable();
        companions.sort_unstable();
        (snapshots, companions)
    }

    #[test]
    fn the_companion_brings_back_every_retained_batch() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            append(&mut s, 1, i * 2, 2, i as i64 * 10);
        }
        append(&mut s, 2, 0, 1, 100);
        let dir = tempfile::tempdir().unwrap();
        let mut files = SnapshotFiles::default();
        files.write(dir.path(), 101, &s, false).unwrap();
        let (snapshots, companions) = listing(dir.path());
        let (files, loaded) = load_latest(dir.path(), snapshots, &companions, 101).unwrap();
        assert_eq!(files.offsets(), &[101]);
        let (offset, back) = loaded.unwrap();
        assert_eq!(offset, 101);
        assert_eq!(back, s);
        assert_eq!(back.get(1).unwrap().batches.len(), RETAINED_BATCHES);
        // Kafka's file alone still holds only the last batch.
        let kafka = ProducerStateManager::decode_snapshot(&s.encode_snapshot()).unwrap();
        assert_eq!(kafka.get(1).unwrap().batches.len(), 1);
    }

    #[test]
    fn a_damaged_or_disagreeing_companion_leaves_the_snapshot_alone() {
        let mut s = ProducerStateManager::new();
        for i in 0..3 {
            append(&mut s, 1, i, 1, i as i64);
        }
        let bytes = encode_companion(&s);
        for cut in [0, 9, 10, bytes.len() - 1] {
            assert!(decode_companion(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert!(decode_companion(&flipped).is_err());
        // A hostile count is bounded by the file's length.
        let mut huge = bytes[..10].to_vec();
        huge[6..10].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&huge[6..]);
        huge[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_companion(&huge).is_err());

        let dir = tempfile::tempdir().unwrap();
        let mut files = SnapshotFiles::default();
        files.write(dir.path(), 3, &s, true).unwrap();
        fs::write(companion_path(dir.path(), 3), &flipped).unwrap();
        let (snapshots, companions) = listing(dir.path());
        let (_, loaded) = load_latest(dir.path(), snapshots, &companions, 3).unwrap();
        assert_eq!(loaded.unwrap().1.get(1).unwrap().batches.len(), 1);
        assert!(!companion_path(dir.path(), 3).exists());

        // A companion whose last batch is not the snapshot's is not taken.
        let mut other = s.clone();
        append(&mut other, 1, 3, 1, 3);
        let newer = decode_companion(&encode_companion(&other)).unwrap();
        let mut alone = ProducerStateManager::decode_snapshot(&s.encode_snapshot()).unwrap();
        assert!(!alone.restore_batches(1, 0, &newer[0].batches));
        assert!(!alone.restore_batches(1, 1, &decode_companion(&bytes).unwrap()[0].batches));
        assert!(alone.restore_batches(1, 0, &decode_companion(&bytes).unwrap()[0].batches));
    }

    #[test]
    fn newest_valid_snapshot_wins_and_pruning_needs_no_listing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new();
        append(&mut s, 5, 0, 1, 0);
        let mut files = SnapshotFiles::default();
        files.write(dir.path(), 10, &s, true).unwrap();
        files
            .write(dir.path(), 20, &ProducerStateManager::new(), false)
            .unwrap();
        files.write(dir.path(), 30, &s, true).unwrap();
        assert_eq!(files.offsets(), &[20, 30]);
        assert_eq!(listing(dir.path()), (vec![20, 30], vec![20, 30]));
        // A companion without its snapshot (a kill between the two writes) is deleted.
        fs::write(companion_path(dir.path(), 40), encode_companion(&s)).unwrap();
        let (snapshots, companions) = listing(dir.path());
        let (files, loaded) = load_latest(dir.path(), snapshots, &companions, 25).unwrap();
        let (offset, loaded) = loaded.unwrap();
        assert_eq!((offset, loaded.len()), (20, 0));
        assert_eq!(files.offsets(), &[20]);
        assert_eq!(listing(dir.path()), (vec![20], vec![20]));
        // Truncation below a snapshot deletes it.
        let mut files = files;
        files.truncate_to(dir.path(), 19);
        assert_eq!(files.offsets(), &[] as &[i64]);
        assert_eq!(listing(dir.path()), (vec![], vec![]));
    }
}
