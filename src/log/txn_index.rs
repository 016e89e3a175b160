//! Kafka's aborted-transaction index: `<base>.txnindex` beside a segment lists the transactions
//! whose ABORT marker lies in that segment, as 34-byte entries (version 0, producer id, first
//! offset, last offset = the marker's, last stable offset after the abort), appended without
//! preallocation, so `kafka-dump-log` reads Cairn's files. A partial trailing entry (a torn
//! append) is ignored. Knows nothing of Kafka requests; the partition keeps the entries in
//! memory and this module only reads and writes the files.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::segment::segment_file;

/// Size of one entry on disk.
pub const ENTRY_SIZE: usize = 34;

/// One aborted transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the abort completed.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The entry's bytes in Kafka's layout.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut out = [0u8; ENTRY_SIZE];
        out[0..2].copy_from_slice(&0i16.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// Every whole entry of a file's bytes; an entry of another version ends the list.
    pub fn decode_all(bytes: &[u8]) -> Vec<AbortedTxn> {
        let at = |e: &[u8], i: usize| i64::from_be_bytes(e[i..i + 8].try_into().expect("8"));
        bytes
            .chunks_exact(ENTRY_SIZE)
            .take_while(|e| i16::from_be_bytes([e[0], e[1]]) == 0)
            .map(|e| AbortedTxn {
                producer_id: at(e, 2),
                first_offset: at(e, 10),
                last_offset: at(e, 18),
                last_stable_offset: at(e, 26),
            })
            .collect()
    }
}

/// Appends one entry to the index of the segment based at `base` (created on first use).
pub fn append(dir: &Path, base: i64, entry: &AbortedTxn) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_file(dir, base, "txnindex"))?;
    file.write_all(&entry.encode())
}

/// The entries of the segment based at `base` (none when it has no index file).
pub fn load(dir: &Path, base: i64) -> io::Result<Vec<AbortedTxn>> {
    match fs::read(segment_file(dir, base, "txnindex")) {
        Ok(bytes) => Ok(AbortedTxn::decode_all(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the index of the segment based at `base` with `entries` (removing it when empty).
pub fn rewrite(dir: &Path, base: i64, entries: &[AbortedTxn]) -> io::Result<()> {
    let path = segment_file(dir, base, "txnindex");
    if entries.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
    super::checkpoint::write_atomic(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_layout_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 15,
            last_stable_offset: 16,
        };
        let bytes = a.encode();
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(i64::from_be_bytes(bytes[18..26].try_into().unwrap()), 15);
        append(dir.path(), 0, &a).unwrap();
        append(
            dir.path(),
            0,
            &AbortedTxn {
                last_offset: 20,
                ..a
            },
        )
        .unwrap();
        let path = segment_file(dir.path(), 0, "txnindex");
        let mut raw = fs::read(&path).unwrap();
        assert_eq!(raw.len(), 2 * ENTRY_SIZE);
        raw.extend_from_slice(&[0, 0, 1]);
        fs::write(&path, &raw).unwrap();
        let loaded = load(dir.path(), 0).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], a);
        rewrite(dir.path(), 0, &loaded[..1]).unwrap();
        assert_eq!(load(dir.path(), 0).unwrap(), vec![a]);
        rewrite(dir.path(), 0, &[]).unwrap();
        assert!(!path.exists());
        assert!(load(dir.path(), 5).unwrap().is_empty());
    }
}
