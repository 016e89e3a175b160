//! One segment: a `<base>.log` file of record batches plus its `.index` and `.timeindex`.
//!
//! Owns appending whole batches with their sparse index entries, scanning batch headers
//! ([`BatchScanner`]), rebuilding indexes and validating a tail during recovery. Indexes of sealed
//! segments load lazily on first use, so start-up does not read them. Knows nothing of producers,
//! topics or the flusher; every file access goes through [`super::io`].

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use super::index::OffsetIndex;
use super::io::{read_exact_at, FileIo, IoFile};
use super::open_files::SegmentFile;
use super::time_index::TimeIndex;

/// `<dir>/<base:020>.<ext>`.
pub fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Sizes that shape a segment (from the topic's `LogConfig`).
#[derive(Debug, Clone, Copy)]
pub struct SegmentLimits {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_bytes: u64,
    pub index_interval_bytes: u64,
}

struct Indexes {
    offset: OffsetIndex,
    time: TimeIndex,
}

/// One segment. All mutation happens under the owning partition's lock.
pub struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    /// The `.log`, opened when used (see [`super::open_files`]).
    log: SegmentFile,
    /// Bytes of whole batches in the `.log` file.
    pub size: u64,
    indexes: Option<Indexes>,
    /// (largest timestamp, offset of the batch carrying it), once known.
    max_timestamp: Option<(i64, i64)>,
    bytes_since_index: u64,
    /// The first batch's max timestamp, or the wall-clock creation time: the `segment.ms` clock.
    rolling_timestamp: Option<i64>,
    created_ms: i64,
    /// Bytes [0, verified) of the `.log` hold whole batches whose CRCs were checked since the
    /// segment was opened (by a read, the background verification, or an append's validation),
    /// so reads within it may be served straight from the file. Only ever a batch boundary, and
    /// never above `size`: every cut of the file lowers it.
    verified: Arc<AtomicU64>,
}

/// One batch found by [`BatchScanner`].
pub struct ScannedBatch {
    pub position: u64,
    pub header: BatchHeader,
    /// The whole batch, when the scan was asked for bodies.
    pub bytes: Option<Vec<u8>>,
}

/// What a scan step found.
pub enum Scan {
    Batch(ScannedBatch),
    /// Clean end of the scanned range.
    End,
    /// A partial batch at the end (a torn write).
    Torn {
        position: u64,
        reason: String,
    },
    /// A batch that is not valid (bad length, magic or CRC).
    Corrupt {
        position: u64,
        reason: String,
    },
}

const SCAN_CHUNK: usize = 64 * 1024;

/// Walks the batches of a `.log` file from a position, reading in chunks.
pub struct BatchScanner<'a> {
    file: &'a dyn IoFile,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> BatchScanner<'a> {
    pub fn new(file: &'a dyn IoFile, from: u64, end: u64) -> Self {
        BatchScanner {
            file,
            pos: from,
            end,
            buf: Vec::new(),
            buf_start: from,
        }
    }

    /// Makes `buf` hold [at, at + need); `need` must fit before `end`.
    fn fill(&mut self, at: u64, need: usize) -> io::Result<&[u8]> {
        let have =
            at >= self.buf_start && at + need as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            let len = (need.max(SCAN_CHUNK) as u64).min(self.end - at) as usize;
            self.buf.resize(len, 0);
            read_exact_at(self.file, &mut self.buf, at)?;
            self.buf_start = at;
        }
        let from = (at - self.buf_start) as usize;
        Ok(&self.buf[from..from + need])
    }

    /// The bytes [at, at + need) of the file, through the scanner's read-ahead buffer (`at + need`
    /// must not pass the scanned end).
    pub fn bytes(&mut self, at: u64, need: usize) -> io::Result<&[u8]> {
        self.fill(at, need)
    }

    /// The next batch; with `bodies`, reads it whole and checks its CRC.
    pub fn next(&mut self, bodies: bool) -> io::Result<Scan> {
        let position = self.pos;
        let remaining = self.end.saturating_sub(position);
        if remaining == 0 {
            return Ok(Scan::End);
        }
        if remaining < LOG_OVERHEAD as u64 {
            return Ok(Scan::Torn {
                position,
                reason: format!("{remaining} trailing bytes"),
            });
        }
        let head = self.fill(position, LOG_OVERHEAD)?;
        let batch_length = i32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Ok(Scan::Corrupt {
                position,
                reason: format!("batch length {batch_length} below the minimum"),
            });
        }
        let size = batch_length as u64 + LOG_OVERHEAD as u64;
        if size > remaining {
            return Ok(Scan::Torn {
                position,
                reason: format!("batch of {size} bytes but only {remaining} left"),
            });
        }
        let header =
            BatchHeader::parse(self.fill(position, HEADER_SIZE)?).expect("61 bytes are present");
        if header.magic != 2 {
            return Ok(Scan::Corrupt {
                position,
                reason: format!("magic {}", header.magic),
            });
        }
        let bytes = if bodies {
            let mut body = vec![0u8; size as usize];
            if size as usize <= SCAN_CHUNK {
                body.copy_from_slice(self.fill(position, size as usize)?);
            } else {
                read_exact_at(self.file, &mut body, position)?;
            }
            if let Err(e) = batch::check_batch(&body) {
                return Ok(Scan::Corrupt {
                    position,
                    reason: e.to_string(),
                });
            }
            Some(body)
        } else {
            None
        };
        self.pos = position + size;
        Ok(Scan::Batch(ScannedBatch {
            position,
            header,
            bytes,
        }))
    }
}

/// Index entries buffered in memory before the segment writes them (a 4 KiB page of the offset
/// index): after a crash the files lag the log by at most this many entries, which recovery walks.
const PENDING_INDEX_ENTRIES: usize = 512;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Segment {
    /// Creates a new, empty segment (truncating any files of that name).
    pub fn create(
        io: &dyn FileIo,
        dir: &Path,
        base_offset: i64,
        limits: &SegmentLimits,
    ) -> io::Result<Segment> {
        let log = SegmentFile::open(io, segment_file(dir, base_offset, "log"), true)?;
        log.file()?.set_len(0)?;
        let offset = OffsetIndex::create(
            SegmentFile::open(io, segment_file(dir, base_offset, "index"), true)?,
            base_offset,
            limits.index_bytes,
        )?;
        let time = TimeIndex::create(
            SegmentFile::open(io, segment_file(dir, base_offset, "timeindex"), true)?,
            base_offset,
            limits.index_bytes,
        )?;
        Ok(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            size: 0,
            indexes: Some(Indexes { offset, time }),
            max_timestamp: None,
            bytes_since_index: 0,
            rolling_timestamp: None,
            created_ms: now_ms(),
            verified: Arc::default(),
        })
    }

    /// An existing segment, without opening its files (the first read or write does) or
    /// reading its indexes.
    pub fn open(io: &dyn FileIo, dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let (log, size) = SegmentFile::lazy(io, segment_file(dir, base_offset, "log"))?;
        Ok(Segment::with_file(dir, base_offset, log, size))
    }

    /// A segment over an already open `.log` file (which is, or is about to be renamed to, the
    /// segment's file), without its indexes.
    pub fn with_log(
        io: &dyn FileIo,
        dir: &Path,
        base_offset: i64,
        log: Arc<dyn IoFile>,
    ) -> io::Result<Segment> {
        let size = log.size()?;
        let (log, _) = SegmentFile::adopt(io, segment_file(dir, base_offset, "log"), log)?;
        Ok(Segment::with_file(dir, base_offset, log, size))
    }

    fn with_file(dir: &Path, base_offset: i64, log: SegmentFile, size: u64) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            size,
            indexes: None,
            max_timestamp: None,
            bytes_since_index: 0,
            rolling_timestamp: None,
            created_ms: now_ms(),
            verified: Arc::default(),
        }
    }

    /// The open `.log` (opened again if the cache closed it). Hold it only as long as a read or
    /// write needs it: each held file is a descriptor beyond the cache's cap.
    pub fn log_file(&self) -> io::Result<Arc<dyn IoFile>> {
        self.log.file()
    }

    /// The `.log` by name, to open outside the partition lock: a reopen fails, rather than read
    /// another file, once the segment was replaced or deleted.
    pub fn log_handle(&self) -> &SegmentFile {
        &self.log
    }

    /// Names this segment (not its base offset): a segment that replaced it has another id.
    pub fn id(&self) -> u64 {
        self.log.id()
    }

    /// The `.log` and, once loaded, the index files: what to fsync after a roll.
    pub fn files_to_sync(&self) -> Vec<SegmentFile> {
        let mut files = vec![self.log.clone()];
        if let Some(ix) = &self.indexes {
            files.extend([ix.offset.file().clone(), ix.time.file().clone()]);
        }
        files
    }

    /// The index files, once loaded, open (for fsync).
    pub fn index_files(&self) -> io::Result<Vec<Arc<dyn IoFile>>> {
        match &self.indexes {
            Some(ix) => Ok(vec![ix.offset.file().file()?, ix.time.file().file()?]),
            None => Ok(Vec::new()),
        }
    }

    pub fn path(&self, ext: &str) -> PathBuf {
        segment_file(&self.dir, self.base_offset, ext)
    }

    /// Loads the indexes if needed; rebuilds them from the log when missing or inconsistent.
    /// Returns true when a rebuild happened.
    pub fn ensure_indexes(&mut self, io: &dyn FileIo, limits: &SegmentLimits) -> io::Result<bool> {
        self.ensure_indexes_inner(io, limits, true)
    }

    /// Loads the indexes; when they are missing or fail the sanity check, rebuilds them if
    /// `rebuild`, else leaves them unloaded. Returns true unless valid indexes were loaded.
    fn ensure_indexes_inner(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
        rebuild: bool,
    ) -> io::Result<bool> {
        if self.indexes.is_some() {
            return Ok(false);
        }
        let index_path = self.path("index");
        let time_path = self.path("timeindex");
        let loaded = if index_path.exists() && time_path.exists() {
            let offset = OffsetIndex::load(
                SegmentFile::open(io, index_path, false)?,
                self.base_offset,
                limits.index_bytes,
                self.size.max(1),
            )?;
            let time = TimeIndex::load(
                SegmentFile::open(io, time_path, false)?,
                self.base_offset,
                limits.index_bytes,
            )?;
            match (offset, time) {
                (Ok(offset), Ok(time)) => Some(Indexes { offset, time }),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(segment = %self.path("log").display(), reason = %e, "index is inconsistent; rebuilding");
                    None
                }
            }
        } else {
            None
        };
        match loaded {
            Some(ix) => {
                self.max_timestamp = ix.time.last_entry();
                self.indexes = Some(ix);
                Ok(false)
            }
            None if rebuild => {
                self.rebuild_indexes(io, limits)?;
                Ok(true)
            }
            None => Ok(true),
        }
    }

    /// Replaces both index files with empty ones (no largest timestamp known yet).
    fn empty_indexes(&mut self, io: &dyn FileIo, limits: &SegmentLimits) -> io::Result<()> {
        let offset = OffsetIndex::create(
            SegmentFile::open(io, self.path("index"), true)?,
            self.base_offset,
            limits.index_bytes,
        )?;
        let time = TimeIndex::create(
            SegmentFile::open(io, self.path("timeindex"), true)?,
            self.base_offset,
            limits.index_bytes,
        )?;
        self.indexes = Some(Indexes { offset, time });
        self.max_timestamp = None;
        Ok(())
    }

    /// Recreates both indexes from the batches in the log, up to the first batch whose offsets do
    /// not fit (damage the verification repairs).
    fn rebuild_indexes(&mut self, io: &dyn FileIo, limits: &SegmentLimits) -> io::Result<()> {
        self.empty_indexes(io, limits)?;
        self.bytes_since_index = 0;
        let log = self.log.file()?;
        let mut scan = BatchScanner::new(log.as_ref(), 0, self.size);
        let mut next = self.base_offset;
        while let Scan::Batch(b) = scan.next(false)? {
            let h = &b.header;
            // Damage not yet verified (the background verification repairs it): index the
            // consistent prefix only; reads past it scan from the last entry.
            if h.base_offset < next
                || h.last_offset_delta < 0
                || h.last_offset() - self.base_offset > i32::MAX as i64
            {
                tracing::warn!(segment = %self.path("log").display(), position = b.position,
                    base_offset = h.base_offset, "indexing stops at a batch whose offsets do not fit");
                break;
            }
            next = h.last_offset() + 1;
            self.index_batch(h, b.position, limits)?;
        }
        self.seal_indexes()?;
        tracing::info!(segment = %self.path("log").display(), "rebuilt offset and time indexes");
        Ok(())
    }

    /// Validates the segment after an unclean stop and truncates the log at the first torn or
    /// corrupt batch. Batches entirely below `trusted_below` (the recovery point: fsynced before
    /// the crash) are walked by header only, starting from the last index entry below it when
    /// the existing indexes pass their sanity check; every later batch has its CRC checked. The
    /// indexes are rebuilt for everything that is walked. Returns (next offset, bytes truncated,
    /// reason for the truncation).
    pub fn recover(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
        trusted_below: i64,
    ) -> io::Result<(Option<i64>, u64, Option<String>)> {
        let log = self.log.file()?;
        let file_len = log.size()?;
        self.size = file_len;
        self.verified.store(0, Ordering::SeqCst);
        self.indexes = None;
        self.bytes_since_index = 0;
        self.rolling_timestamp = None;
        let mut start = 0u64;
        let reuse = trusted_below > self.base_offset
            && self.segment_index_files_exist()
            && !self.ensure_indexes_inner(io, limits, false)?;
        if reuse {
            let ix = self.indexes.as_mut().expect("loaded above");
            ix.offset.truncate_to(trusted_below)?;
            ix.time.truncate_to(trusted_below)?;
            start = ix.offset.last_entry().map_or(0, |(_, p)| p as u64);
            // The entry must point at the batch it names; otherwise rebuild from scratch.
            if let Some((offset, position)) = ix.offset.last_entry() {
                let mut head = [0u8; batch::PEEK_SIZE];
                let points_right = read_exact_at(log.as_ref(), &mut head, position as u64).is_ok()
                    && batch::peek(&head).is_some_and(|(_, _, last)| last == offset);
                if !points_right {
                    tracing::warn!(segment = %self.path("log").display(), "offset index does not match the log; rebuilding");
                    return self.recover(io, limits, self.base_offset);
                }
            }
            self.max_timestamp = ix.time.last_entry();
            if start > 0 {
                let mut head = [0u8; HEADER_SIZE];
                if read_exact_at(log.as_ref(), &mut head, 0).is_ok() {
                    self.rolling_timestamp =
                        BatchHeader::parse(&head).ok().map(|h| h.max_timestamp);
                }
            }
        } else {
            self.empty_indexes(io, limits)?;
        }
        let log = self.log.file()?;
        let mut scan = BatchScanner::new(log.as_ref(), start, file_len);
        let mut next_offset = None;
        let mut valid = start;
        let mut reason = None;
        loop {
            match scan.next(false)? {
                Scan::Batch(b) => {
                    let h = &b.header;
                    // Never written by Cairn (appends require lastOffsetDelta + 1 = count > 0):
                    // a negative delta is damage, and would corrupt the index and time index.
                    if h.last_offset_delta < 0 {
                        reason = Some(format!(
                            "batch at position {} has a negative last offset delta {}",
                            b.position, h.last_offset_delta
                        ));
                        break;
                    }
                    if next_offset.is_some_and(|n| h.base_offset < n)
                        || h.base_offset < self.base_offset
                    {
                        reason = Some(format!(
                            "batch at position {} has offset {} out of order",
                            b.position, h.base_offset
                        ));
                        break;
                    }
                    if h.last_offset() - self.base_offset > i32::MAX as i64 {
                        reason = Some("offset does not fit the segment".to_string());
                        break;
                    }
                    if h.last_offset() >= trusted_below {
                        let mut body = vec![0u8; h.size()];
                        read_exact_at(log.as_ref(), &mut body, b.position)?;
                        if let Err(e) = batch::check_batch(&body) {
                            reason = Some(format!("at position {}: {e}", b.position));
                            break;
                        }
                    }
                    self.index_batch(h, b.position, limits)?;
                    if self.rolling_timestamp.is_none() {
                        self.rolling_timestamp = Some(h.max_timestamp);
                    }
                    valid = b.position + h.size() as u64;
                    next_offset = Some(h.last_offset() + 1);
                }
                Scan::End => break,
                Scan::Torn {
                    position,
                    reason: r,
                }
                | Scan::Corrupt {
                    position,
                    reason: r,
                } => {
                    reason = Some(format!("at position {position}: {r}"));
                    break;
                }
            }
        }
        let truncated = file_len - valid;
        if truncated > 0 {
            log.set_len(valid)?;
        }
        self.size = valid;
        self.seal_indexes()?;
        Ok((next_offset, truncated, reason))
    }

    fn segment_index_files_exist(&self) -> bool {
        self.path("index").exists() && self.path("timeindex").exists()
    }

    /// Adds the sparse index entries a batch at `position` calls for (Kafka's rule: an entry when
    /// more than `index.interval.bytes` were appended since the last one, checked before adding
    /// this batch's bytes) and updates the largest timestamp.
    fn index_batch(
        &mut self,
        h: &BatchHeader,
        position: u64,
        limits: &SegmentLimits,
    ) -> io::Result<()> {
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| h.max_timestamp > ts)
        {
            self.max_timestamp = Some((h.max_timestamp, h.last_offset()));
        }
        if self.bytes_since_index > limits.index_interval_bytes {
            let (max_ts, max_off) = self.max_timestamp.expect("set above");
            let ix = self
                .indexes
                .as_mut()
                .expect("indexes are loaded while appending");
            ix.offset.append(h.last_offset(), position as u32)?;
            ix.time.maybe_append(max_ts, max_off)?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        Ok(())
    }

    /// Appends the final time index entry (largest timestamp so far) and writes every buffered
    /// entry of both indexes to their files, as at roll or close.
    pub fn seal_indexes(&mut self) -> io::Result<()> {
        if let (Some((ts, off)), Some(ix)) = (self.max_timestamp, self.indexes.as_mut()) {
            ix.time.maybe_append(ts, off)?;
        }
        self.write_indexes(0)
    }

    /// Writes the buffered index entries once more than `at_least` of either index's are
    /// pending: one positioned write per index instead of one per entry.
    pub fn write_indexes(&mut self, at_least: usize) -> io::Result<()> {
        if let Some(ix) = self.indexes.as_mut() {
            if ix.offset.pending() > at_least || ix.time.pending() > at_least {
                ix.offset.write_pending()?;
                ix.time.write_pending()?;
            }
        }
        Ok(())
    }

    /// Scans from the last index entry to the end to learn the next offset and the largest
    /// timestamp of a segment whose indexes are trusted (the active one after a clean start).
    pub fn load_tail(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
    ) -> io::Result<Option<i64>> {
        self.ensure_indexes(io, limits)?;
        let start = self
            .indexes
            .as_ref()
            .and_then(|ix| ix.offset.last_entry())
            .map_or(0, |(_, p)| p as u64);
        let log = self.log.file()?;
        let mut scan = BatchScanner::new(log.as_ref(), start, self.size);
        let mut next = None;
        let mut end = start;
        while let Scan::Batch(b) = scan.next(false)? {
            if self
                .max_timestamp
                .is_none_or(|(ts, _)| b.header.max_timestamp > ts)
            {
                self.max_timestamp = Some((b.header.max_timestamp, b.header.last_offset()));
            }
            end = b.position + b.header.size() as u64;
            next = Some(b.header.last_offset() + 1);
        }
        self.bytes_since_index = end - start;
        if self.size > 0 {
            let mut head = [0u8; HEADER_SIZE];
            if read_exact_at(log.as_ref(), &mut head, 0).is_ok() {
                self.rolling_timestamp = BatchHeader::parse(&head).ok().map(|h| h.max_timestamp);
            }
        }
        if end != self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} has invalid data at position {end}",
                    self.path("log").display()
                ),
            ));
        }
        Ok(next)
    }

    /// True when appending `incoming` bytes whose largest timestamp is `incoming_ts` and whose
    /// last offset is `last_offset` needs a new segment first.
    pub fn should_roll(
        &self,
        limits: &SegmentLimits,
        incoming: u64,
        incoming_ts: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        let waited = match self.rolling_timestamp {
            Some(ts) if ts >= 0 => incoming_ts - ts,
            _ => now_ms - self.created_ms,
        };
        let full = self
            .indexes
            .as_ref()
            .is_some_and(|ix| ix.offset.is_full() || ix.time.is_full());
        self.size + incoming > limits.segment_bytes
            || waited > limits.segment_ms
            || full
            || last_offset - self.base_offset > i32::MAX as i64
    }

    /// Writes `head` then `tail` (together, whole batches with final offsets; `batches` gives
    /// their ranges in the two joined) at the end in one positioned write, indexing each batch.
    /// On any error the log and indexes are cut back to where they were.
    pub fn append(
        &mut self,
        head: &[u8],
        tail: &[u8],
        batches: &[(Range<usize>, BatchHeader)],
        limits: &SegmentLimits,
    ) -> io::Result<()> {
        let start = self.size;
        let len = (head.len() + tail.len()) as u64;
        if start + len > u32::MAX as u64 / 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment would exceed 2 GiB",
            ));
        }
        let log = self.log.file()?;
        if let Err(e) = log.write_all_vectored_at(&[head, tail], start) {
            let _ = log.set_len(start);
            return Err(e);
        }
        let saved = (
            self.max_timestamp,
            self.bytes_since_index,
            self.rolling_timestamp,
        );
        for (i, (range, h)) in batches.iter().enumerate() {
            if self.rolling_timestamp.is_none() {
                self.rolling_timestamp = Some(h.max_timestamp);
            }
            let mut indexed = self.index_batch(h, start + range.start as u64, limits);
            if i + 1 == batches.len() {
                indexed = indexed.and_then(|()| self.write_indexes(PENDING_INDEX_ENTRIES));
            }
            if let Err(e) = indexed {
                let _ = log.set_len(start);
                let first = batches.first().map_or(0, |(_, h)| h.base_offset);
                if let Some(ix) = self.indexes.as_mut() {
                    let _ = ix.offset.truncate_to(first);
                    let _ = ix.time.truncate_to(first);
                }
                (
                    self.max_timestamp,
                    self.bytes_since_index,
                    self.rolling_timestamp,
                ) = saved;
                return Err(e);
            }
        }
        self.size = start + len;
        // Appended batches passed their CRC check on the way in: a verified prefix that reached
        // the old end now reaches the new one.
        let _ =
            self.verified
                .compare_exchange(start, self.size, Ordering::SeqCst, Ordering::SeqCst);
        Ok(())
    }

    /// The verified prefix of the `.log` (see the field), shared with reads outside the lock.
    pub fn verified(&self) -> &Arc<AtomicU64> {
        &self.verified
    }

    /// Forgets what was verified at or past `len` (the file is being cut there, or rewritten).
    pub fn unverify_from(&self, len: u64) {
        self.verified.fetch_min(len, Ordering::SeqCst);
    }

    /// A batch boundary at or after `from` and at or below `limit` from which to walk batch
    /// headers toward `limit`: the position of the last indexed batch in that range whose last
    /// offset is below `upper`, or `from`. Loads the indexes if needed.
    pub fn floor_position(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
        from: u64,
        limit: u64,
        upper: i64,
    ) -> io::Result<u64> {
        self.ensure_indexes(io, limits)?;
        let floor = self
            .indexes
            .as_ref()
            .map_or(0, |ix| ix.offset.floor_position(limit, upper)) as u64;
        Ok(floor.max(from))
    }

    /// Position from which to scan for `offset` (loads indexes if needed).
    pub fn lookup(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
        offset: i64,
    ) -> io::Result<u64> {
        self.ensure_indexes(io, limits)?;
        Ok(self
            .indexes
            .as_ref()
            .map_or(0, |ix| ix.offset.lookup(offset)) as u64)
    }

    /// Offset from which to scan for the first timestamp ≥ `timestamp`.
    pub fn lookup_time(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
        timestamp: i64,
    ) -> io::Result<i64> {
        self.ensure_indexes(io, limits)?;
        Ok(self
            .indexes
            .as_ref()
            .map_or(self.base_offset, |ix| ix.time.lookup(timestamp)))
    }

    /// (largest timestamp, offset of its batch's last record). For a sealed segment whose
    /// indexes are not loaded, only the last time index entry is read (the entry written at
    /// roll), so retention and timestamp lookups do not load every segment's indexes.
    pub fn max_timestamp(
        &mut self,
        io: &dyn FileIo,
        limits: &SegmentLimits,
    ) -> io::Result<Option<(i64, i64)>> {
        if self.indexes.is_none() && self.max_timestamp.is_none() {
            if let Some(last) = self.read_last_time_entry(io)? {
                self.max_timestamp = Some(last);
                return Ok(self.max_timestamp);
            }
        }
        self.ensure_indexes(io, limits)?;
        Ok(self.max_timestamp)
    }

    fn read_last_time_entry(&self, io: &dyn FileIo) -> io::Result<Option<(i64, i64)>> {
        let path = self.path("timeindex");
        if !path.exists() {
            return Ok(None);
        }
        let file = io.open(&path, false)?;
        let len = file.size()?;
        let entry = super::time_index::ENTRY_SIZE as u64;
        if len == 0 || len % entry != 0 {
            return Ok(None);
        }
        let mut buf = [0u8; super::time_index::ENTRY_SIZE];
        read_exact_at(file.as_ref(), &mut buf, len - entry)?;
        let ts = i64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
        let rel = u32::from_be_bytes(buf[8..].try_into().expect("4 bytes"));
        if rel > i32::MAX as u32 {
            return Ok(None);
        }
        Ok(Some((ts, self.base_offset + rel as i64)))
    }

    /// Renames the segment's files to `<name>.deleted` and then removes them.
    pub fn delete_files(&self) -> io::Result<()> {
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let path = self.path(ext);
            let mut deleted = path.clone().into_os_string();
            deleted.push(".deleted");
            match std::fs::rename(&path, &deleted) {
                Ok(()) => std::fs::remove_file(&deleted)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::batch_with;
    use crate::log::io::StdIo;

    const LIMITS: SegmentLimits = SegmentLimits {
        segment_bytes: 1 << 20,
        segment_ms: i64::MAX,
        index_bytes: 4096,
        index_interval_bytes: 150,
    };

    /// A segment at base 100 holding `n` one-record batches, sealed as at roll; returns it and
    /// each batch's end.
    fn filled(dir: &Path, n: i64) -> (Segment, Vec<u64>) {
        let (mut seg, ends) = unsealed(dir, n);
        seg.seal_indexes().unwrap();
        (seg, ends)
    }

    /// As [`filled`], but with the index entries still buffered (as when the broker crashes).
    fn unsealed(dir: &Path, n: i64) -> (Segment, Vec<u64>) {
        let mut seg = Segment::create(&StdIo, dir, 100, &LIMITS).unwrap();
        let mut ends = Vec::new();
        for i in 0..n {
            let mut b = batch_with(1, 1_000 + i, None, true);
            batch::set_base_offset(&mut b, 100 + i);
            let h = BatchHeader::parse(&b).unwrap();
            let len = b.len();
            seg.append(&b, &[], &[(0..len, h)], &LIMITS).unwrap();
            ends.push(seg.size);
        }
        (seg, ends)
    }

    #[test]
    fn scanner_tells_torn_from_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, ends) = filled(dir.path(), 3);
        let file = seg.log_file().unwrap();
        let mut scan = BatchScanner::new(file.as_ref(), 0, ends[2] - 5);
        assert!(matches!(scan.next(true).unwrap(), Scan::Batch(b) if b.header.base_offset == 100));
        assert!(matches!(scan.next(true).unwrap(), Scan::Batch(_)));
        assert!(
            matches!(scan.next(true).unwrap(), Scan::Torn { position, .. } if position == ends[1])
        );
        file.write_all_at(&[0xff], ends[0] + 40).unwrap();
        let mut scan = BatchScanner::new(file.as_ref(), 0, ends[2]);
        assert!(matches!(scan.next(true).unwrap(), Scan::Batch(_)));
        assert!(
            matches!(scan.next(true).unwrap(), Scan::Corrupt { position, .. } if position == ends[0])
        );
    }

    #[test]
    fn recovery_keeps_the_trusted_prefix_and_cuts_a_corrupt_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, ends) = filled(dir.path(), 10);
        let index_before = std::fs::read(seg.path("index")).unwrap();
        assert!(!index_before.is_empty());
        // Corrupt batch 7 (offset 107) and add a torn partial batch at the end.
        let file = seg.log_file().unwrap();
        file.write_all_at(&[0xee], ends[6] + 50).unwrap();
        file.write_all_at(&[0, 0, 0], ends[9]).unwrap();
        drop(seg);
        let mut seg = Segment::open(&StdIo, dir.path(), 100).unwrap();
        let (next, truncated, reason) = seg.recover(&StdIo, &LIMITS, 105).unwrap();
        assert_eq!(next, Some(107));
        assert_eq!(truncated, ends[9] + 3 - ends[6]);
        assert!(reason.unwrap().contains("CRC"));
        assert_eq!(seg.size, ends[6]);
        assert!(seg.lookup(&StdIo, &LIMITS, 106).unwrap() <= ends[5]);
        // The rebuilt index is the original one cut at the new end.
        let index_after = std::fs::read(seg.path("index")).unwrap();
        assert!(index_before.starts_with(&index_after));
        assert_eq!(
            seg.max_timestamp(&StdIo, &LIMITS).unwrap(),
            Some((1_006, 106))
        );
    }

    /// A crash leaves the index files behind the log (entries are written a page at a time, and
    /// at roll and close): recovery indexes the rest, as a sealed segment would have it.
    #[test]
    fn recovery_completes_index_files_that_lag_the_log() {
        let sealed_dir = tempfile::tempdir().unwrap();
        let (mut sealed, _) = filled(sealed_dir.path(), 30);
        let dir = tempfile::tempdir().unwrap();
        let (seg, ends) = unsealed(dir.path(), 30);
        assert!(seg.indexes.as_ref().unwrap().offset.len() > 5);
        assert!(std::fs::read(seg.path("index")).unwrap().is_empty());
        assert!(std::fs::read(seg.path("timeindex")).unwrap().is_empty());
        drop(seg);
        let mut seg = Segment::open(&StdIo, dir.path(), 100).unwrap();
        let (next, truncated, reason) = seg.recover(&StdIo, &LIMITS, 120).unwrap();
        assert_eq!((next, truncated, reason), (Some(130), 0, None));
        assert_eq!(seg.size, ends[29]);
        for ext in ["index", "timeindex"] {
            assert_eq!(
                std::fs::read(seg.path(ext)).unwrap(),
                std::fs::read(sealed.path(ext)).unwrap(),
                "{ext}"
            );
        }
        for offset in 100..130 {
            assert_eq!(
                seg.lookup(&StdIo, &LIMITS, offset).unwrap(),
                sealed.lookup(&StdIo, &LIMITS, offset).unwrap()
            );
        }
    }

    #[test]
    fn recovery_rebuilds_from_scratch_when_the_index_lies() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, ends) = filled(dir.path(), 10);
        // Point the last index entry one byte off its batch.
        let mut index = std::fs::read(seg.path("index")).unwrap();
        let last = index.len() - 1;
        index[last] = index[last].wrapping_add(1);
        std::fs::write(seg.path("index"), &index).unwrap();
        drop(seg);
        let mut seg = Segment::open(&StdIo, dir.path(), 100).unwrap();
        let (next, truncated, reason) = seg.recover(&StdIo, &LIMITS, 110).unwrap();
        assert_eq!((next, truncated, reason), (Some(110), 0, None));
        assert_eq!(seg.size, ends[9]);
        let mut fixed = index.clone();
        fixed[last] = fixed[last].wrapping_sub(1);
        assert_eq!(std::fs::read(seg.path("index")).unwrap(), fixed);
    }
}
