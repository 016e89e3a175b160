//! The process-wide cache of open segment files: every `.log`, `.index` and `.timeindex` the
//! log engine reads or writes is a [`SegmentFile`], a name that is opened on demand through the
//! [`super::io`] seam and closed again when it is the least recently used of more than
//! `cairn.log.open.files.max` open ones. So the number of descriptors segments hold is bounded
//! whatever the number of partitions and segments (10,000 partitions, or one partition of
//! 100,000 segments, under a `ulimit -n` of 1024), and start-up opens nothing but the files it
//! reads. The cache is per process because the open-files limit is.
//!
//! Invariants: a file handed out ([`SegmentFile::file`]) is an `Arc`: eviction only drops the
//! cache's reference, so a read, write or fsync that holds it keeps a valid descriptor until it
//! is done (descriptors in use may briefly exceed the cap by those in flight). A reopen checks
//! that the name still names the file first opened (device and inode): a segment whose file was
//! replaced (by the cleaner or a repair) or deleted under a holder fails with an error, never
//! reads another file's bytes. The active segment is evicted like any other: a partition with
//! no recent writes pins no descriptor. Writes and fsyncs through different descriptors of one
//! file reach the same inode; Linux reports a writeback error to every descriptor opened before
//! it and, once, to a later one (errseq), so an fsync after a reopen still sees a failed
//! writeback. Knows nothing of segments' contents; depends only on [`super::io`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::io::{FileIo, IoFile};

/// Device and inode of a file: what a name must still name when it is reopened.
type Identity = (u64, u64);

/// One segment file, opened when used. Clones share the name and the cache entry; the entry is
/// dropped with the last clone.
#[derive(Clone)]
pub struct SegmentFile {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    path: PathBuf,
    io: Arc<dyn FileIo>,
    /// Set from the first open (or the stat at a lazy open); `None` when the file exposes no
    /// descriptor to check.
    identity: Mutex<Option<Identity>>,
}

impl fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentFile({})", self.inner.path.display())
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn identity_of(file: &dyn IoFile) -> io::Result<Option<Identity>> {
    match file.fd() {
        Some(fd) => {
            let st = rustix::fs::fstat(fd)?;
            Ok(Some((st.st_dev as u64, st.st_ino as u64)))
        }
        None => Ok(None),
    }
}

impl SegmentFile {
    fn new(io: &dyn FileIo, path: PathBuf, identity: Option<Identity>) -> SegmentFile {
        SegmentFile {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                path,
                io: io.handle(),
                identity: Mutex::new(identity),
            }),
        }
    }

    /// Opens (creating it when `create` is set) the file now, and keeps it in the cache.
    pub fn open(io: &dyn FileIo, path: PathBuf, create: bool) -> io::Result<SegmentFile> {
        let file = io.open(&path, create)?;
        Ok(SegmentFile::adopt(io, path, file)?.0)
    }

    /// An existing file, not opened until first used; returns it and its length.
    pub fn lazy(io: &dyn FileIo, path: PathBuf) -> io::Result<(SegmentFile, u64)> {
        let meta = std::fs::metadata(&path)?;
        let identity = Some((meta.dev(), meta.ino()));
        Ok((SegmentFile::new(io, path, identity), meta.len()))
    }

    /// `file`, already open, as the file at `path` (it may still be under a temporary name that
    /// is about to be renamed to `path`: a reopen before the rename fails the identity check).
    pub fn adopt(
        io: &dyn FileIo,
        path: PathBuf,
        file: Arc<dyn IoFile>,
    ) -> io::Result<(SegmentFile, Arc<dyn IoFile>)> {
        let identity = identity_of(file.as_ref())?;
        let handle = SegmentFile::new(io, path, identity);
        let file = CACHE.insert(handle.inner.id, file, capacity());
        Ok((handle, file))
    }

    /// The open file: from the cache, or reopened by name.
    pub fn file(&self) -> io::Result<Arc<dyn IoFile>> {
        if let Some(file) = CACHE.hit(self.inner.id) {
            return Ok(file);
        }
        let file = self.inner.io.open(&self.inner.path, false)?;
        let found = identity_of(file.as_ref())?;
        let mut expected = self
            .inner
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (*expected, found) {
            (Some(want), Some(got)) if want != got => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} was replaced since it was opened",
                        self.inner.path.display()
                    ),
                ));
            }
            (None, got) => *expected = got,
            _ => {}
        }
        drop(expected);
        REOPENS.fetch_add(1, Ordering::Relaxed);
        Ok(CACHE.insert(self.inner.id, file, capacity()))
    }

    /// The open file, or `None` when the name is gone or names another file (the segment was
    /// deleted or replaced since this handle was taken).
    pub fn file_if_present(&self) -> io::Result<Option<Arc<dyn IoFile>>> {
        match self.file() {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the file's data durable; a file deleted or replaced since has nothing left to make
    /// durable.
    pub fn sync(&self) -> io::Result<()> {
        match self.file_if_present()? {
            Some(file) => file.sync(),
            None => Ok(()),
        }
    }

    /// A number naming this segment file for as long as it lives (clones share it): a segment
    /// replaced by another of the same name has another id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        CACHE.remove(self.id);
    }
}

/// Sets the most files the cache keeps open (`cairn.log.open.files.max`; 0: derived from the
/// open-files limit, see [`default_capacity`]). Takes effect at the next open.
pub fn set_capacity(max: usize) {
    let max = if max == 0 { default_capacity() } else { max };
    CAPACITY.store(max, Ordering::Relaxed);
}

/// The cap in force.
pub fn capacity() -> usize {
    match CAPACITY.load(Ordering::Relaxed) {
        0 => {
            let derived = default_capacity();
            CAPACITY.store(derived, Ordering::Relaxed);
            derived
        }
        n => n,
    }
}

/// Half the process's soft open-files limit (at least 16): the other half is left for client
/// connections, the tier, checkpoints and the transaction indexes opened for an append.
pub fn default_capacity() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    (soft / 2).clamp(16, 1 << 24) as usize
}

/// Segment files open in the cache now.
pub fn open_count() -> usize {
    CACHE.lock().open.len()
}

/// Files opened again after being closed by the cache, since the process started.
pub fn reopens() -> u64 {
    REOPENS.load(Ordering::Relaxed)
}

/// A file lent out for longer than one read (a Fetch answer sent with `sendfile` after the
/// read returns), counted so that lent descriptors stay within half the cap; `None` when that
/// many are out, and the caller copies the bytes instead. The count drops with the last clone.
pub fn lend(file: Arc<dyn IoFile>) -> Option<Arc<dyn IoFile>> {
    let most = (capacity() / 2).max(1);
    LENT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < most).then_some(n + 1)
    })
    .ok()?;
    Some(Arc::new(Lent(file)))
}

static LENT: AtomicUsize = AtomicUsize::new(0);

struct Lent(Arc<dyn IoFile>);

impl Drop for Lent {
    fn drop(&mut self) {
        LENT.fetch_sub(1, Ordering::AcqRel);
    }
}

impl IoFile for Lent {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.0.fd()
    }
}

static CAPACITY: AtomicUsize = AtomicUsize::new(0);
static REOPENS: AtomicU64 = AtomicU64::new(0);
static CACHE: LazyLock<Cache> = LazyLock::new(Cache::default);

#[derive(Default)]
struct Cache {
    state: Mutex<State>,
}

/// Open files by id, with their last use; `by_use` orders them, least recent first.
#[derive(Default)]
struct State {
    clock: u64,
    open: HashMap<u64, (u64, Arc<dyn IoFile>)>,
    by_use: BTreeMap<u64, u64>,
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hit(&self, id: u64) -> Option<Arc<dyn IoFile>> {
        let mut st = self.lock();
        st.clock += 1;
        let now = st.clock;
        let (used, file) = st.open.get_mut(&id)?;
        let before = std::mem::replace(used, now);
        let file = file.clone();
        st.by_use.remove(&before);
        st.by_use.insert(now, id);
        Some(file)
    }

    /// Keeps `file` open as `id` (or the file another thread put there first, which it returns)
    /// and closes the least recently used files beyond the cap, outside the lock.
    fn insert(&self, id: u64, file: Arc<dyn IoFile>, cap: usize) -> Arc<dyn IoFile> {
        let mut evicted = Vec::new();
        let kept = {
            let mut st = self.lock();
            match st.open.get(&id) {
                Some((_, existing)) => existing.clone(),
                None => {
                    st.clock += 1;
                    let now = st.clock;
                    st.open.insert(id, (now, file.clone()));
                    st.by_use.insert(now, id);
                    while st.open.len() > cap {
                        let Some((_, victim)) = st.by_use.pop_first() else {
                            break;
                        };
                        if let Some((_, f)) = st.open.remove(&victim) {
                            evicted.push(f);
                        }
                    }
                    file
                }
            }
        };
        drop(evicted);
        kept
    }

    fn remove(&self, id: u64) {
        let closed = {
            let mut st = self.lock();
            let closed = st.open.remove(&id);
            if let Some((used, _)) = &closed {
                let used = *used;
                st.by_use.remove(&used);
            }
            closed
        };
        drop(closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::io::{read_exact_at, StdIo};

    /// The cap is process-wide, so one test drives every case (others in this binary keep the
    /// derived default, far above what they open).
    #[test]
    fn files_reopen_on_demand_and_eviction_never_breaks_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<SegmentFile> = (0..20)
            .map(|i| {
                let f =
                    SegmentFile::open(&StdIo, dir.path().join(format!("{i}.log")), true).unwrap();
                f.file().unwrap().write_all_at(&[i as u8; 4], 0).unwrap();
                f
            })
            .collect();
        // Every file reads back, however many the cache keeps open.
        for f in files.iter().rev().chain(files.iter()) {
            let mut buf = [0u8; 4];
            read_exact_at(f.file().unwrap().as_ref(), &mut buf, 0).unwrap();
            let i: u8 = f
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(buf, [i; 4]);
        }
        // A held file stays readable after its entry is evicted and the name deleted.
        let held = files[0].file().unwrap();
        std::fs::remove_file(files[0].path()).unwrap();
        CACHE.remove(files[0].id());
        let mut buf = [0u8; 4];
        read_exact_at(held.as_ref(), &mut buf, 0).unwrap();
        assert_eq!(buf, [0; 4]);
        assert!(matches!(files[0].file(), Err(e) if e.kind() == io::ErrorKind::NotFound));
        // A name that now holds another file is refused, not read.
        std::fs::write(files[0].path(), [9u8; 4]).unwrap();
        assert!(files[0].file().is_err());
        // Dropping the last clone closes the file.
        let id = files[1].id();
        files[1].file().unwrap();
        assert!(CACHE.lock().open.contains_key(&id));
        drop(files);
        assert!(!CACHE.lock().open.contains_key(&id));
    }

    #[test]
    fn the_least_recently_used_file_is_closed_first() {
        let cache = Cache::default();
        let dir = tempfile::tempdir().unwrap();
        let open = |i: u64| StdIo.open(&dir.path().join(format!("{i}")), true).unwrap();
        let cap = 3;
        for i in 0..cap as u64 {
            cache.insert(i, open(i), cap);
        }
        assert!(cache.hit(0).is_some());
        cache.insert(u64::MAX, open(5), cap);
        assert!(cache.hit(0).is_some(), "recently used");
        assert!(cache.hit(1).is_none(), "least recently used");
        assert_eq!(cache.lock().open.len(), cap);
    }
}
