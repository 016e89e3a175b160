//! The file-I/O seam of the log engine: the few operations segment and index files need.
//!
//! Owns the [`FileIo`]/[`IoFile`] traits, the real implementation ([`StdIo`]) and a
//! fault-injecting wrapper ([`FaultyIo`]) that tests use to produce EIO, ENOSPC and short writes.
//! Only data files (`.log`, `.index`, `.timeindex`, opened through [`super::open_files`]) and
//! directory syncs go through it; small metadata files (checkpoints, topic metadata) use
//! `std::fs` directly. Depends on nothing else in the crate.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// An open data file, addressed by position (no shared cursor, so readers never block writers).
pub trait IoFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`, or fails (the file may then hold part of it).
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Writes `parts` back to back at `pos`, in one positioned write where the file allows
    /// (`pwritev`), or fails (the file may then hold part of them).
    fn write_all_vectored_at(&self, parts: &[&[u8]], mut pos: u64) -> io::Result<()> {
        for part in parts {
            self.write_all_at(part, pos)?;
            pos += part.len() as u64;
        }
        Ok(())
    }
    /// Makes the file's data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn size(&self) -> io::Result<u64>;
    /// The open file's descriptor, for copies the kernel does itself (`sendfile`); `None` when
    /// reads must go through [`IoFile::read_at`].
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// Bytes [position, position + len) of an open file, served as they are. Holding it keeps the
/// file open, so the range stays readable after the segment is deleted or replaced (its name
/// goes; the open file stays until the last holder drops it).
#[derive(Clone)]
pub struct FileSlice {
    pub file: Arc<dyn IoFile>,
    pub position: u64,
    pub len: usize,
}

impl fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileSlice({}..+{})", self.position, self.len)
    }
}

/// Opens data files and syncs directories.
pub trait FileIo: Send + Sync + fmt::Debug {
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>>;
    /// Makes a directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// This file system as a handle to keep, for files reopened later
    /// ([`super::open_files`]); faults set on `self` apply to it too.
    fn handle(&self) -> Arc<dyn FileIo>;
}

/// Reads exactly `buf.len()` bytes at `pos`, failing with `UnexpectedEof` past the end.
pub fn read_exact_at(file: &dyn IoFile, buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        done += n;
        pos += n as u64;
    }
    Ok(())
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

struct StdFile(File);

impl IoFile for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn write_all_vectored_at(&self, parts: &[&[u8]], mut pos: u64) -> io::Result<()> {
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        let mut first = 0;
        while first < parts.len() {
            let slices: Vec<IoSlice<'_>> = parts[first..].iter().map(|p| IoSlice::new(p)).collect();
            let mut written = match rustix::io::pwritev(&self.0, &slices, pos) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            pos += written as u64;
            // A short write: skip what went out and write the rest.
            while written > 0 {
                let part = parts[first];
                if written >= part.len() {
                    written -= part.len();
                    first += 1;
                } else {
                    parts[first] = &part[written..];
                    written = 0;
                }
            }
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }
}

impl FileIo for StdIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn handle(&self) -> Arc<dyn FileIo> {
        Arc::new(StdIo)
    }
}

/// Writes the fixed-size entries `entries[written..]` of an index file, encoded by `encode`, in
/// one positioned write after the `written` ones the file holds; on failure cuts the file back to
/// those, so it stays a prefix of the entries. Returns the new count written.
pub fn write_entries<T: Copy, const N: usize>(
    file: &dyn IoFile,
    entries: &[T],
    written: usize,
    encode: impl Fn(T) -> [u8; N],
) -> io::Result<usize> {
    if written >= entries.len() {
        return Ok(written);
    }
    let bytes: Vec<u8> = entries[written..].iter().flat_map(|&e| encode(e)).collect();
    let at = (written * N) as u64;
    if let Err(e) = file.write_all_at(&bytes, at) {
        let _ = file.set_len(at);
        return Err(e);
    }
    Ok(entries.len())
}

/// Which fault [`FaultyIo`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Everything works.
    None = 0,
    /// Every write fails with EIO.
    WriteEio = 1,
    /// Every write fails with ENOSPC (disk full).
    WriteNoSpace = 2,
    /// Every write stores only its first half, then fails with EIO.
    ShortWrite = 3,
    /// Every sync fails with EIO.
    SyncEio = 4,
}

/// A [`FileIo`] that delegates to [`StdIo`] and injects the configured [`Fault`], for tests of
/// storage failures. Switch faults at any time with [`FaultyIo::set`].
#[derive(Debug, Default)]
pub struct FaultyIo {
    fault: Arc<AtomicU8>,
}

impl FaultyIo {
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }

    /// Injects `fault` from now on (in files already open too).
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }
}

fn current(fault: &AtomicU8) -> Fault {
    match fault.load(Ordering::SeqCst) {
        1 => Fault::WriteEio,
        2 => Fault::WriteNoSpace,
        3 => Fault::ShortWrite,
        4 => Fault::SyncEio,
        _ => Fault::None,
    }
}

struct FaultyFile {
    inner: Arc<dyn IoFile>,
    fault: Arc<AtomicU8>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl IoFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        match current(&self.fault) {
            Fault::WriteEio => Err(eio()),
            Fault::WriteNoSpace => Err(io::Error::from_raw_os_error(28)),
            Fault::ShortWrite => {
                self.inner.write_all_at(&buf[..buf.len() / 2], pos)?;
                Err(eio())
            }
            _ => self.inner.write_all_at(buf, pos),
        }
    }
    /// One write of the joined parts, so a fault hits the append as a whole.
    fn write_all_vectored_at(&self, parts: &[&[u8]], pos: u64) -> io::Result<()> {
        self.write_all_at(&parts.concat(), pos)
    }
    fn sync(&self) -> io::Result<()> {
        match current(&self.fault) {
            Fault::SyncEio => Err(eio()),
            _ => self.inner.sync(),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.fd()
    }
}

impl FileIo for FaultyIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(FaultyFile {
            inner: StdIo.open(path, create)?,
            fault: self.fault.clone(),
        }))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match current(&self.fault) {
            Fault::SyncEio => Err(eio()),
            _ => StdIo.sync_dir(path),
        }
    }
    fn handle(&self) -> Arc<dyn FileIo> {
        Arc::new(FaultyIo {
            fault: self.fault.clone(),
        })
    }
}
