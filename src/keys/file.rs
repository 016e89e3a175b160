//! One sealed segment's key file, `<base:020>.keys` in `cairn-key-index/<topic>-<p>/`: the
//! 64-bit FNV-1a hash of every key in the segment with the offset of its latest record there and
//! where that record lies in the segment's log file ([`Place`]), sorted by hash, so a lookup is a
//! binary search of 32-byte entries read with `pread`, then a read of the record alone.
//!
//! Layout (big-endian): magic `CAIRNKEY`, version u32 (3: FNV-1a 64, committed records only,
//! with places; version 1 files also indexed records of aborted transactions, version 2 files
//! had no places: both are rebuilt), the identity of the
//! segment it was built from (base offset, end offset, log file size, inode, mtime in ns),
//! entry count u64, the entries (hash u64, offset i64, batch position u32, record position u32,
//! record length u32, record CRC u32; see [`Place`]), and a CRC-32C of everything before it.
//! A file whose identity differs from the segment's, or whose CRC fails, is rebuilt: key files
//! are a cache of the log, never fsynced, never the source of truth.
//!
//! Lookups read through a small cache of open files ([`OPEN_FILES`] at most, least recently used
//! out), each checked once against the identity it serves; writing or removing a file drops its
//! entry, and an entry never serves another identity than the one it was checked against.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"CAIRNKEY";
const VERSION: u32 = 3;
const HEADER: usize = 8 + 4 + 5 * 8 + 8;
const ENTRY: usize = 32;

/// The 64-bit FNV-1a hash of a key: stable across releases and platforms, as the files need.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What a key file was built from: a segment's range and its log file as the file system
/// shows it. A cleaner swap or a repair changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub base_offset: i64,
    pub end_offset: i64,
    pub size: u64,
    pub inode: u64,
    pub mtime_ns: i64,
}

impl Identity {
    /// The identity of the segment log at `log_path` covering `[base_offset, end_offset)`.
    pub fn of(log_path: &Path, base_offset: i64, end_offset: i64) -> io::Result<Identity> {
        Ok(Identity::of_metadata(
            &fs::metadata(log_path)?,
            base_offset,
            end_offset,
        ))
    }

    /// The identity of the open segment log `file` covering `[base_offset, end_offset)`.
    pub fn of_file(file: &File, base_offset: i64, end_offset: i64) -> io::Result<Identity> {
        Ok(Identity::of_metadata(
            &file.metadata()?,
            base_offset,
            end_offset,
        ))
    }

    fn of_metadata(m: &fs::Metadata, base_offset: i64, end_offset: i64) -> Identity {
        Identity {
            base_offset,
            end_offset,
            size: m.len(),
            inode: m.ino(),
            mtime_ns: m
                .mtime()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(m.mtime_nsec()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.end_offset.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.inode.to_be_bytes());
        out.extend_from_slice(&self.mtime_ns.to_be_bytes());
    }
}

/// Where an entry's record lies, so a lookup reads its batch header and the record alone:
/// `batch`, the byte position of its batch in the segment's log file; `at` and `len`, the
/// record's bytes (after its length prefix) in the batch's records (inflated for a compressed
/// batch); `crc`, the CRC-32C of the batch's 61-byte header followed by those bytes. The builder
/// takes them from batches whose CRC it checked, so the record CRC carries that check to every
/// later read of the record. [`Place::NONE`] (`batch` u32::MAX): no place (a remote segment's
/// file, or a position past 4 GiB); the record is read through the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub batch: u32,
    pub at: u32,
    pub len: u32,
    pub crc: u32,
}

impl Place {
    pub const NONE: Place = Place {
        batch: u32::MAX,
        at: 0,
        len: 0,
        crc: 0,
    };

    fn get(self) -> Option<Place> {
        (self.batch != u32::MAX).then_some(self)
    }
}

/// A checked key file on disk.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub identity: Identity,
    pub count: u64,
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The offset and place of the entry at the start of `e`.
fn entry_at(e: &[u8]) -> (i64, Option<Place>) {
    let place = Place {
        batch: be_u32(e, 16),
        at: be_u32(e, 20),
        len: be_u32(e, 24),
        crc: be_u32(e, 28),
    };
    (be_u64(e, 8) as i64, place.get())
}

impl KeyFile {
    /// Writes the file for `identity` from `(hash, offset)` pairs of every keyed record of the
    /// segment (any order, duplicates allowed): one entry per hash, the highest offset. No
    /// places (see [`KeyFile::write_placed`]).
    pub fn write(path: &Path, identity: Identity, entries: Vec<(u64, i64)>) -> io::Result<KeyFile> {
        let placed = entries
            .into_iter()
            .map(|(h, o)| (h, o, Place::NONE))
            .collect();
        KeyFile::write_placed(path, identity, placed)
    }

    /// [`KeyFile::write`] with each record's place in the segment.
    pub fn write_placed(
        path: &Path,
        identity: Identity,
        mut entries: Vec<(u64, i64, Place)>,
    ) -> io::Result<KeyFile> {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by_key(|e| e.0);
        let mut out = Vec::with_capacity(HEADER + entries.len() * ENTRY + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        identity.encode(&mut out);
        out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        for (h, o, p) in &entries {
            out.extend_from_slice(&h.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
            for f in [p.batch, p.at, p.len, p.crc] {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // A name of its own per write: the background builder and a lookup may build the same
        // segment's file at once, and must not write into one temporary file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("keys.tmp{}-{n}", std::process::id()));
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        drop(f);
        fs::rename(&tmp, path)?;
        forget(path);
        Ok(KeyFile {
            path: path.to_path_buf(),
            identity,
            count: entries.len() as u64,
        })
    }

    /// The file's size on disk.
    pub fn disk_bytes(&self) -> u64 {
        (HEADER + 4) as u64 + self.count * ENTRY as u64
    }

    /// Opens and checks the file at `path`: `None` when it is missing, torn, damaged or was
    /// built from another version of the segment than `expected`.
    pub fn open(path: &Path, expected: Identity) -> Option<KeyFile> {
        let bytes = fs::read(path).ok()?;
        if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        if u32::from_be_bytes(body[8..12].try_into().expect("4 bytes")) != VERSION {
            return None;
        }
        let mut id = Vec::new();
        expected.encode(&mut id);
        if body[12..52] != id[..] {
            return None;
        }
        let count = be_u64(body, 52);
        if (body.len() - HEADER) as u64 != count * ENTRY as u64 {
            return None;
        }
        Some(KeyFile {
            path: path.to_path_buf(),
            identity: expected,
            count,
        })
    }

    /// Reads the entries in hash order, 16 KiB at a time; fails when the file on disk no
    /// longer describes this file's segment (rebuilt after a cleaner swap, or removed). The CRC
    /// is checked by [`Entries::finish`] once every entry is read.
    pub fn entries(&self) -> io::Result<Entries> {
        let mut file = File::open(&self.path)?;
        let mut head = [0u8; HEADER];
        file.read_exact(&mut head)?;
        let mut id = Vec::new();
        self.identity.encode(&mut id);
        if &head[..8] != MAGIC
            || head[8..12] != VERSION.to_be_bytes()
            || head[12..52] != id[..]
            || be_u64(&head, 52) != self.count
        {
            return Err(io::Error::other("the key file changed"));
        }
        Ok(Entries {
            file,
            block: Vec::with_capacity(BLOCK_ENTRIES * ENTRY),
            at: 0,
            left: self.count,
            crc: crc32c::crc32c(&head),
        })
    }

    /// The offset recorded for `hash`. Hashes are spread evenly over `u64`, so the entry of a
    /// hash lies near `hash / 2^64 · count`, within about `√count / 2` entries (one standard
    /// deviation): one positioned read of `±(√count + 16)` entries around that guess usually
    /// holds it, and a binary search with positioned reads of the side it fell outside does
    /// the rest. The window only saves reads: the answer is the binary search's either way.
    pub fn find(&self, hash: u64) -> io::Result<Option<i64>> {
        Ok(self.find_placed(hash)?.map(|(o, _)| o))
    }

    /// [`KeyFile::find`] with the record's place, when the file has one.
    pub fn find_placed(&self, hash: u64) -> io::Result<Option<(i64, Option<Place>)>> {
        let n = self.count;
        if n == 0 {
            return Ok(None);
        }
        let f = self.handle()?;
        let guess = ((u128::from(hash) * u128::from(n)) >> 64) as u64;
        let half = (n as f64).sqrt() as u64 + 16;
        let (lo, hi) = (guess.saturating_sub(half), (guess + half + 1).min(n));
        let mut window = vec![0u8; ((hi - lo) as usize) * ENTRY];
        f.read_exact_at(&mut window, HEADER as u64 + lo * ENTRY as u64)?;
        let at = |i: usize| be_u64(&window, i * ENTRY);
        let (first, last) = (at(0), at((hi - lo) as usize - 1));
        if (lo == 0 || first <= hash) && (hi == n || hash <= last) {
            let found = window
                .chunks_exact(ENTRY)
                .collect::<Vec<_>>()
                .binary_search_by(|e| be_u64(e, 0).cmp(&hash));
            return Ok(found.ok().map(|i| entry_at(&window[i * ENTRY..])));
        }
        let (mut lo, mut hi) = if hash < first { (0, lo) } else { (hi, n) };
        let mut buf = [0u8; ENTRY];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            f.read_exact_at(&mut buf, HEADER as u64 + mid * ENTRY as u64)?;
            let h = be_u64(&buf, 0);
            match h.cmp(&hash) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(entry_at(&buf))),
            }
        }
        Ok(None)
    }
}

impl KeyFile {
    /// This file open, from the cache or opened now and checked to be the file of this identity
    /// and entry count (one built later for another version of the segment is refused).
    fn handle(&self) -> io::Result<Arc<File>> {
        let tick = TICKS.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = OPEN
            .lock()
            .expect("open key files lock")
            .get_mut(&self.path)
        {
            if e.identity == self.identity && e.count == self.count {
                e.used = tick;
                return Ok(e.file.clone());
            }
        }
        let file = File::open(&self.path)?;
        let mut head = [0u8; HEADER];
        file.read_exact_at(&mut head, 0)?;
        let mut id = Vec::new();
        self.identity.encode(&mut id);
        if &head[..8] != MAGIC
            || head[8..12] != VERSION.to_be_bytes()
            || head[12..52] != id[..]
            || be_u64(&head, 52) != self.count
        {
            return Err(io::Error::other("the key file changed"));
        }
        let file = Arc::new(file);
        let mut open = OPEN.lock().expect("open key files lock");
        if open.len() >= OPEN_FILES && !open.contains_key(&self.path) {
            let oldest = open
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                open.remove(&p);
            }
        }
        open.insert(
            self.path.clone(),
            OpenFile {
                identity: self.identity,
                count: self.count,
                file: file.clone(),
                used: tick,
            },
        );
        Ok(file)
    }

    /// Removes the file at `path` from disk and from the cache of open files.
    pub fn remove(path: &Path) -> io::Result<()> {
        forget(path);
        fs::remove_file(path)
    }
}

/// Open key files kept for lookups, at most this many.
pub const OPEN_FILES: usize = 64;

/// A cached open key file and the identity it was checked against.
struct OpenFile {
    identity: Identity,
    count: u64,
    file: Arc<File>,
    used: u64,
}

static OPEN: std::sync::LazyLock<Mutex<HashMap<PathBuf, OpenFile>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Drops the cached handle of the file at `path` (written again, or removed).
fn forget(path: &Path) {
    OPEN.lock().expect("open key files lock").remove(path);
}

/// Drops the cached handles of every file under `dir` (a partition's directory, removed).
pub fn forget_dir(dir: &Path) {
    OPEN.lock()
        .expect("open key files lock")
        .retain(|p, _| !p.starts_with(dir));
}

/// The entries of a key file in hash order, read sequentially a block at a time (see
/// [`KeyFile::entries`]).
pub struct Entries {
    file: File,
    block: Vec<u8>,
    at: usize,
    left: u64,
    crc: u32,
}

/// Entries read at once.
const BLOCK_ENTRIES: usize = 1024;

impl Entries {
    /// The next `(hash, offset)`, or `None` past the last.
    pub fn read_next(&mut self) -> io::Result<Option<(u64, i64)>> {
        if self.at == self.block.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min(BLOCK_ENTRIES as u64) as usize;
            self.block.resize(n * ENTRY, 0);
            self.file.read_exact(&mut self.block)?;
            self.crc = crc32c::crc32c_append(self.crc, &self.block);
            self.left -= n as u64;
            self.at = 0;
        }
        let e = (
            be_u64(&self.block, self.at),
            be_u64(&self.block, self.at + 8) as i64,
        );
        self.at += ENTRY;
        Ok(Some(e))
    }

    /// After the last entry: whether the file's CRC matches what was read.
    pub fn finish(mut self) -> io::Result<bool> {
        if self.left != 0 || self.at != self.block.len() {
            return Ok(false);
        }
        let mut crc = [0u8; 4];
        self.file.read_exact(&mut crc)?;
        Ok(u32::from_be_bytes(crc) == self.crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_per_hash_is_found_and_a_changed_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x").join("00000000000000000000.keys");
        let id = Identity {
            base_offset: 0,
            end_offset: 10,
            size: 100,
            inode: 7,
            mtime_ns: 1,
        };
        let f = KeyFile::write(&path, id, vec![(5, 1), (3, 2), (5, 9), (1, 0)]).unwrap();
        assert_eq!(f.count, 3);
        let f = KeyFile::open(&path, id).unwrap();
        assert_eq!(f.find(5).unwrap(), Some(9));
        assert_eq!(f.find(3).unwrap(), Some(2));
        assert_eq!(f.find(4).unwrap(), None);
        assert!(KeyFile::open(&path, Identity { size: 99, ..id }).is_none());
        // Places come back with their entry; an entry without one has none.
        let place = Place {
            batch: 4096,
            at: 17,
            len: 120,
            crc: 0xdead_beef,
        };
        let placed =
            KeyFile::write_placed(&path, id, vec![(5, 9, place), (3, 2, Place::NONE)]).unwrap();
        assert_eq!(placed.find_placed(5).unwrap(), Some((9, Some(place))));
        assert_eq!(placed.find_placed(3).unwrap(), Some((2, None)));
        KeyFile::write(&path, id, vec![(5, 1), (3, 2), (5, 9), (1, 0)]).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(KeyFile::open(&path, id).is_none());
    }

    #[test]
    fn open_files_are_bounded_and_a_rewritten_file_is_not_read_for_the_old_segment() {
        let dir = tempfile::tempdir().unwrap();
        let id = |end| Identity {
            base_offset: 0,
            end_offset: end,
            size: 1,
            inode: 1,
            mtime_ns: 1,
        };
        let path = dir.path().join("00000000000000000000.keys");
        let old = KeyFile::write(&path, id(10), vec![(7, 3)]).unwrap();
        assert_eq!(old.find(7).unwrap(), Some(3));
        // The cleaner's swap: the same path, another version of the segment.
        let new = KeyFile::write(&path, id(20), vec![(7, 15), (8, 16)]).unwrap();
        assert_eq!(new.find(7).unwrap(), Some(15));
        assert!(
            old.find(7).is_err(),
            "the old segment's file must not answer from the new one"
        );
        // More files than the cache holds: every one still answers, and the cache stays bounded.
        let files: Vec<KeyFile> = (0..OPEN_FILES as i64 + 10)
            .map(|i| {
                let p = dir.path().join(format!("{i:020}.keys"));
                KeyFile::write(&p, id(i + 1), vec![(i as u64, i)]).unwrap()
            })
            .collect();
        for (i, f) in files.iter().enumerate() {
            assert_eq!(f.find(i as u64).unwrap(), Some(i as i64));
            assert!(OPEN.lock().unwrap().len() <= OPEN_FILES);
        }
        KeyFile::remove(&files[0].path).unwrap();
        assert!(files[0].find(0).is_err());
    }

    #[test]
    fn every_hash_is_found_through_the_window_or_the_search_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.keys");
        let id = Identity {
            base_offset: 0,
            end_offset: 1,
            size: 1,
            inode: 1,
            mtime_ns: 1,
        };
        // Real key hashes, plus hashes at both ends and clustered ones the window misses.
        let mut entries: Vec<(u64, i64)> = (0..20_000i64)
            .map(|i| (key_hash(format!("key-{i:010}").as_bytes()), i))
            .collect();
        entries.extend((0..300).map(|i| (i as u64, 100_000 + i)));
        entries.extend((0..300).map(|i| (u64::MAX - i as u64, 200_000 + i)));
        let f = KeyFile::write(&path, id, entries.clone()).unwrap();
        for (h, o) in &entries {
            assert_eq!(f.find(*h).unwrap(), Some(*o), "hash {h:x}");
        }
        let present: std::collections::HashSet<u64> = entries.iter().map(|e| e.0).collect();
        for i in 0..2000u64 {
            let h = key_hash(format!("absent-{i}").as_bytes());
            if !present.contains(&h) {
                assert_eq!(f.find(h).unwrap(), None);
            }
        }
        for h in [300u64, u64::MAX - 300, 1 << 63] {
            if !present.contains(&h) {
                assert_eq!(f.find(h).unwrap(), None);
            }
        }
    }
}
