//! The sparse offset index of one segment (`<base>.index`): 8-byte big-endian entries
//! (offset relative to the segment base as i32, `.log` position of a batch start as i32),
//! byte-compatible with Kafka's so `kafka-dump-log` reads it.
//!
//! Entries live in memory; new ones are buffered there and written to the file together, in one
//! positioned write, by [`OffsetIndex::write_pending`] (the segment calls it when a page's worth
//! is pending, and at roll and close). So the file is always a prefix of the entries, exactly
//! `written × 8` bytes (no preallocation, nothing to trim); after a crash it may end before the
//! log does, which recovery and a clean start both handle (they walk the log from the last entry).
//! Knows nothing of batches or the partition; file access goes through [`super::io`].

use std::io;

use super::io::{read_exact_at, write_entries};
use super::open_files::SegmentFile;

/// Bytes per offset index entry.
pub const ENTRY_SIZE: usize = 8;

/// Encodes one entry.
pub fn encode_entry(relative_offset: u32, position: u32) -> [u8; ENTRY_SIZE] {
    let mut out = [0u8; ENTRY_SIZE];
    out[..4].copy_from_slice(&relative_offset.to_be_bytes());
    out[4..].copy_from_slice(&position.to_be_bytes());
    out
}

/// Decodes an index file and runs Kafka's sanity check plus ours: whole entries, strictly
/// increasing offsets, non-decreasing positions below `log_size`.
pub fn decode_entries(bytes: &[u8], log_size: u64) -> Result<Vec<(u32, u32)>, String> {
    if !bytes.len().is_multiple_of(ENTRY_SIZE) {
        return Err(format!(
            "index length {} is not a multiple of 8",
            bytes.len()
        ));
    }
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_SIZE);
    for chunk in bytes.chunks_exact(ENTRY_SIZE) {
        let rel = u32::from_be_bytes(chunk[..4].try_into().expect("4 bytes"));
        let pos = u32::from_be_bytes(chunk[4..].try_into().expect("4 bytes"));
        if rel > i32::MAX as u32 || pos > i32::MAX as u32 {
            return Err(format!("index entry ({rel}, {pos}) is negative"));
        }
        if let Some(&(prev_rel, prev_pos)) = entries.last() {
            if rel <= prev_rel || pos < prev_pos {
                return Err(format!(
                    "index entry ({rel}, {pos}) does not follow ({prev_rel}, {prev_pos})"
                ));
            }
        }
        if pos as u64 >= log_size {
            return Err(format!(
                "index position {pos} is past the log end {log_size}"
            ));
        }
        entries.push((rel, pos));
    }
    Ok(entries)
}

/// One segment's offset index.
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
    /// How many of `entries` the file holds; the rest await [`OffsetIndex::write_pending`].
    written: usize,
    file: SegmentFile,
    max_entries: usize,
}

impl OffsetIndex {
    /// An index over `file`, emptied.
    pub fn create(file: SegmentFile, base_offset: i64, max_bytes: u64) -> io::Result<Self> {
        file.file()?.set_len(0)?;
        Ok(OffsetIndex {
            base_offset,
            entries: Vec::new(),
            written: 0,
            file,
            max_entries: (max_bytes as usize / ENTRY_SIZE).max(1),
        })
    }

    /// Loads `file`; `Ok(Err(reason))` when it fails the sanity check and must be rebuilt.
    pub fn load(
        file: SegmentFile,
        base_offset: i64,
        max_bytes: u64,
        log_size: u64,
    ) -> io::Result<Result<Self, String>> {
        let open = file.file()?;
        let len = open.size()? as usize;
        let mut bytes = vec![0u8; len];
        read_exact_at(open.as_ref(), &mut bytes, 0)?;
        drop(open);
        Ok(decode_entries(&bytes, log_size).map(|entries| OffsetIndex {
            base_offset,
            written: entries.len(),
            entries,
            file,
            max_entries: (max_bytes as usize / ENTRY_SIZE).max(1),
        }))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }
    pub fn file(&self) -> &SegmentFile {
        &self.file
    }

    /// The last entry as (absolute offset, position).
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries
            .last()
            .map(|&(rel, pos)| (self.base_offset + rel as i64, pos))
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
            |(rel, pos)| encode_entry(rel, pos),
        )?;
        Ok(())
    }

    /// Appends (offset, position) in memory (see [`OffsetIndex::write_pending`]). The offset
    /// must exceed the last entry's.
    pub fn append(&mut self, offset: i64, position: u32) -> io::Result<()> {
        let rel = offset - self.base_offset;
        if !(0..=i32::MAX as i64).contains(&rel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "offset {offset} does not fit the index of segment {}",
                    self.base_offset
                ),
            ));
        }
        if self
            .entries
            .last()
            .is_some_and(|&(last, _)| last as i64 >= rel)
        {
            return Ok(());
        }
        self.entries.push((rel as u32, position));
        Ok(())
    }

    /// The position to start scanning from to find `offset`: that of the largest entry whose
    /// offset is ≤ `offset` (each entry's batch ends at or before it), or 0.
    pub fn lookup(&self, offset: i64) -> u32 {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return 0;
        }
        let idx = self.entries.partition_point(|&(r, _)| (r as i64) <= rel);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// The position of the last entry at or below position `limit` whose offset is below
    /// `upper`, or 0: a batch boundary from which to walk toward `limit`.
    pub fn floor_position(&self, limit: u64, upper: i64) -> u32 {
        let idx = self.entries.partition_point(|&(rel, pos)| {
            (pos as u64) <= limit && self.base_offset + (rel as i64) < upper
        });
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// Drops entries whose offset is ≥ `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(r, _)| (r as i64) < rel);
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

    fn open(dir: &tempfile::TempDir, name: &str) -> SegmentFile {
        SegmentFile::open(&StdIo, dir.path().join(name), true).unwrap()
    }

    #[test]
    fn lookup_finds_the_largest_entry_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(open(&dir, "a.index"), 100, 1024).unwrap();
        assert_eq!(idx.lookup(150), 0);
        idx.append(110, 4096).unwrap();
        idx.append(130, 8200).unwrap();
        idx.append(130, 9000).unwrap(); // not increasing: ignored
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(99), 0);
        assert_eq!(idx.lookup(109), 0);
        assert_eq!(idx.lookup(110), 4096);
        assert_eq!(idx.lookup(129), 4096);
        assert_eq!(idx.lookup(500), 8200);
        assert_eq!(idx.last_entry(), Some((130, 8200)));
    }

    #[test]
    fn file_is_kafka_format_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir, "b.index");
        let mut idx = OffsetIndex::create(file.clone(), 1000, 1024).unwrap();
        idx.append(1005, 300).unwrap();
        idx.append(1010, 700).unwrap();
        assert_eq!(idx.pending(), 2);
        let raw = std::fs::read(dir.path().join("b.index")).unwrap();
        assert!(raw.is_empty(), "entries are buffered until written");
        idx.write_pending().unwrap();
        assert_eq!(idx.pending(), 0);
        let raw = std::fs::read(dir.path().join("b.index")).unwrap();
        assert_eq!(raw, [0, 0, 0, 5, 0, 0, 1, 44, 0, 0, 0, 10, 0, 0, 2, 188]);
        let loaded = OffsetIndex::load(file.clone(), 1000, 1024, 800)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.last_entry(), Some((1010, 700)));
        // A log shorter than an indexed position makes the index stale.
        assert!(OffsetIndex::load(file, 1000, 1024, 500).unwrap().is_err());
    }

    #[test]
    fn truncation_and_fullness() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(open(&dir, "c.index"), 0, 16).unwrap();
        idx.append(5, 10).unwrap();
        assert!(!idx.is_full());
        idx.append(9, 20).unwrap();
        assert!(idx.is_full());
        idx.write_pending().unwrap();
        idx.truncate_to(9).unwrap();
        assert_eq!(idx.last_entry(), Some((5, 10)));
        assert_eq!(
            std::fs::metadata(dir.path().join("c.index")).unwrap().len(),
            8
        );
        assert!(idx.append(1 << 40, 30).is_err());
    }

    #[test]
    fn sanity_check_rejects_bad_files() {
        assert!(decode_entries(&[0; 7], 100).is_err());
        let mut bad = Vec::new();
        bad.extend_from_slice(&encode_entry(5, 10));
        bad.extend_from_slice(&encode_entry(5, 20));
        assert!(decode_entries(&bad, 100).is_err());
        // Trailing zeros from a preallocated Kafka index look like a non-increasing entry.
        let mut zeros = encode_entry(5, 10).to_vec();
        zeros.extend_from_slice(&[0; 8]);
        assert!(decode_entries(&zeros, 100).is_err());
        assert_eq!(decode_entries(&encode_entry(5, 10), 100), Ok(vec![(5, 10)]));
    }
}
