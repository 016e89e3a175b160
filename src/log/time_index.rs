//! The time index of one segment (`<base>.timeindex`): 12-byte big-endian entries (timestamp i64,
//! offset relative to the segment base i32), byte-compatible with Kafka's.
//!
//! An entry (T, o) means: the largest timestamp among records up to offset `o` is T. Timestamps
//! strictly increase. Entries live in memory; new ones are buffered and written together by
//! [`TimeIndex::write_pending`], as the offset index's are (see [`super::index`]), so the file is
//! always a prefix of them. Knows nothing of batches or partitions.

use std::io;

use super::io::{read_exact_at, write_entries};
use super::open_files::SegmentFile;

/// Bytes per time index entry.
pub const ENTRY_SIZE: usize = 12;

/// Encodes one entry.
pub fn encode_entry(timestamp: i64, relative_offset: u32) -> [u8; ENTRY_SIZE] {
    let mut out = [0u8; ENTRY_SIZE];
    out[..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..].copy_from_slice(&relative_offset.to_be_bytes());
    out
}

/// Decodes a time index file; fails unless timestamps strictly increase and offsets do not
/// decrease.
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<(i64, u32)>, String> {
    if !bytes.len().is_multiple_of(ENTRY_SIZE) {
        return Err(format!(
            "time index length {} is not a multiple of 12",
            bytes.len()
        ));
    }
    let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / ENTRY_SIZE);
    for chunk in bytes.chunks_exact(ENTRY_SIZE) {
        let ts = i64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"));
        let rel = u32::from_be_bytes(chunk[8..].try_into().expect("4 bytes"));
        if rel > i32::MAX as u32 {
            return Err(format!("time index offset {rel} is negative"));
        }
        if let Some(&(prev_ts, prev_rel)) = entries.last() {
            if ts <= prev_ts || rel < prev_rel {
                return Err(format!(
                    "time index entry ({ts}, {rel}) does not follow ({prev_ts}, {prev_rel})"
                ));
            }
        }
        entries.push((ts, rel));
    }
    Ok(entries)
}

/// One segment's time index.
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
    /// How many of `entries` the file holds; the rest await [`TimeIndex::write_pending`].
    written: usize,
    file: SegmentFile,
    max_entries: usize,
}

impl TimeIndex {
    /// An index over `file`, emptied.
    pub fn create(file: SegmentFile, base_offset: i64, max_bytes: u64) -> io::Result<Self> {
        file.file()?.set_len(0)?;
        Ok(TimeIndex {
            base_offset,
            entries: Vec::new(),
            written: 0,
            file,
            max_entries: (max_bytes as usize / ENTRY_SIZE).max(2),
        })
    }

    /// Loads `file`; `Ok(Err(reason))` when it fails the sanity check and must be rebuilt.
    pub fn load(
        file: SegmentFile,
        base_offset: i64,
        max_bytes: u64,
    ) -> io::Result<Result<Self, String>> {
        let open = file.file()?;
        let len = open.size()? as usize;
        let mut bytes = vec![0u8; len];
        read_exact_at(open.as_ref(), &mut bytes, 0)?;
        drop(open);
        Ok(decode_entries(&bytes).map(|entries| TimeIndex {
            base_offset,
            written: entries.len(),
            entries,
            file,
            max_entries: (max_bytes as usize / ENTRY_SIZE).max(2),
        }))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Full one entry early, as Kafka keeps a slot for the entry written at roll.
    pub fn is_full(&self) -> bool {
        self.entries.len() + 1 >= self.max_entries
    }
    pub fn file(&self) -> &SegmentFile {
        &self.file
    }

    /// The last entry as (timestamp, absolute offset).
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(ts, rel)| (ts, self.base_offset + rel as i64))
    }

    /// Entries appended but not yet written to the file.
    pub fn pending(&self) -> usize {
        self.entries.len() - self.written
    }

    /// Writes the pending entries to the file in one positioned write. On failure the file is
    /// cut back to the entries written before, and they stay pending.
    pub fn write_pending(&mut self) -> io::Result<()> {
        if self.written >= self.entries.len() {
            return Ok(());
        }
        self.written = write_entries(
            self.file.file()?.as_ref(),
            &self.entries,
            self.written,
            |(ts, rel)| encode_entry(ts, rel),
        )?;
        Ok(())
    }

    /// Appends (timestamp, offset) in memory when the timestamp exceeds the last entry's (and is
    /// not -1); [`TimeIndex::write_pending`] writes it out.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        if timestamp < 0 || self.entries.last().is_some_and(|&(ts, _)| ts >= timestamp) {
            return Ok(());
        }
        let rel = offset - self.base_offset;
        if !(0..=i32::MAX as i64).contains(&rel)
            || self.entries.last().is_some_and(|&(_, r)| r as i64 > rel)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "offset {offset} does not fit the time index of segment {}",
                    self.base_offset
                ),
            ));
        }
        self.entries.push((timestamp, rel as u32));
        Ok(())
    }

    /// The offset to start scanning from for the first record with timestamp ≥ `timestamp`:
    /// that of the last entry whose timestamp is below it (all records up to that offset are
    /// older), or the segment base.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        if idx == 0 {
            self.base_offset
        } else {
            self.base_offset + self.entries[idx - 1].1 as i64
        }
    }

    /// Drops entries whose offset is ≥ `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(_, r)| (r as i64) < rel);
        self.entries.truncate(keep);
        self.written = self.written.min(keep);
        self.file
            .file()?
            .set_len((self.written * ENTRY_SIZE) as u64)
    }

    /// Drops every entry.
    pub fn reset(&mut self) -> io::Result<()> {
        self.entries.clear();
        self.written = 0;
        self.file.file()?.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::io::StdIo;

    #[test]
    fn appends_only_increasing_timestamps_and_looks_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.timeindex");
        let file = SegmentFile::open(&StdIo, path.clone(), true).unwrap();
        let mut idx = TimeIndex::create(file.clone(), 50, 1200).unwrap();
        idx.maybe_append(-1, 50).unwrap();
        assert!(idx.is_empty());
        idx.maybe_append(1_000, 52).unwrap();
        idx.maybe_append(900, 55).unwrap(); // older: ignored
        idx.maybe_append(2_000, 60).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(500), 50);
        assert_eq!(idx.lookup(1_000), 50);
        assert_eq!(idx.lookup(1_001), 52);
        assert_eq!(idx.lookup(5_000), 60);
        assert_eq!(idx.last_entry(), Some((2_000, 60)));
        assert!(
            std::fs::read(&path).unwrap().is_empty(),
            "buffered until written"
        );
        idx.write_pending().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 24);
        assert_eq!(&raw[..12], &encode_entry(1_000, 2));
        let loaded = TimeIndex::load(file, 50, 1200).unwrap().unwrap();
        assert_eq!(loaded.last_entry(), Some((2_000, 60)));
    }

    #[test]
    fn rejects_decreasing_files_and_truncates() {
        let mut bad = encode_entry(10, 1).to_vec();
        bad.extend_from_slice(&encode_entry(5, 2));
        assert!(decode_entries(&bad).is_err());
        assert!(decode_entries(&[0; 13]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = SegmentFile::open(&StdIo, dir.path().join("b.timeindex"), true).unwrap();
        let mut idx = TimeIndex::create(file, 0, 36).unwrap();
        idx.maybe_append(10, 1).unwrap();
        assert!(!idx.is_full());
        idx.maybe_append(20, 5).unwrap();
        assert!(idx.is_full());
        idx.write_pending().unwrap();
        idx.truncate_to(5).unwrap();
        assert_eq!(idx.last_entry(), Some((10, 1)));
    }
}
