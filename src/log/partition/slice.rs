//! Reading a partition for a Fetch response that is written straight from the segment files.
//!
//! A range of a segment that was CRC-checked since the segment was opened (its verified prefix,
//! see `Segment::verified`) is served as a [`FileSlice`]: the caller copies it from the file to
//! the socket without reading it (`sendfile`). Anything else is read, checked and served as
//! bytes, as [`Partition::read`] does, and a checked range that continues the verified prefix
//! extends it; so a damaged batch is never served, and each byte is checked about once. The
//! batch boundary that ends a file range is found from the offset index and a short walk of
//! batch headers, never by reading the records. Knows nothing of Kafka requests or sockets.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::super::io::FileSlice;
use super::super::segment::{BatchScanner, Scan};
use super::read::{copy_batches, locate_first, Batches, First, Planned};
use super::{segment_limits, Partition};
use crate::log::{Isolation, LogError, PartitionOffsets};

/// Records served for one partition: bytes in memory, or a range of a segment file.
#[derive(Debug, Clone)]
pub enum Served {
    Bytes(Bytes),
    File(FileSlice),
}

impl Served {
    /// Record bytes served.
    pub fn len(&self) -> usize {
        match self {
            Served::Bytes(b) => b.len(),
            Served::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Partition::read_served`] returns.
#[derive(Debug, Clone)]
pub struct ServedRead {
    pub records: Served,
    pub offsets: PartitionOffsets,
}

impl Partition {
    /// Like [`Partition::read`] (`first_batch_always`) or [`Partition::read_within_limit`], with
    /// the same batches, but verified ranges come back as file ranges instead of bytes.
    pub fn read_served(
        &self,
        offset: i64,
        max_bytes: usize,
        first_batch_always: bool,
        isolation: Isolation,
    ) -> Result<ServedRead, LogError> {
        self.read_served_inner(offset, max_bytes, first_batch_always, isolation, false)
    }

    fn read_served_inner(
        &self,
        offset: i64,
        max_bytes: usize,
        first_batch_always: bool,
        isolation: Isolation,
        repaired: bool,
    ) -> Result<ServedRead, LogError> {
        let (offsets, upper, plan) =
            self.plan_read(offset, max_bytes, first_batch_always, isolation)?;
        let served = |records| Ok(ServedRead { records, offsets });
        for seg in plan {
            let file = seg.file.as_ref();
            let found = locate_first(
                file,
                seg.position,
                seg.end,
                offset,
                upper,
                max_bytes,
                first_batch_always,
            )?;
            let (position, size, want) = match found {
                First::None => continue,
                First::Empty => break,
                First::Damaged { position, reason } => {
                    self.repair_for_read(seg.base, seg.id, position, offset, &reason, repaired)?;
                    return self.read_served_inner(
                        offset,
                        max_bytes,
                        first_batch_always,
                        isolation,
                        true,
                    );
                }
                First::Found {
                    position,
                    size,
                    want,
                } => (position, size, want),
            };
            let verified = seg.verified.load(Ordering::SeqCst);
            // Only a range checked whole goes out unread; a partly checked one is read and
            // checked (which extends the prefix), so both give the same batches.
            let limit = position + want as u64;
            // Lent descriptors are bounded (an answer for thousands of partitions would hold one
            // each): past the bound the bytes are copied.
            let lent = (file.fd().is_some() && limit <= verified)
                .then(|| crate::log::open_files::lend(seg.file.clone()))
                .flatten();
            if let Some(lent) = lent {
                let end = self.batches_end(&seg, position + size as u64, limit, upper)?;
                return served(Served::File(FileSlice {
                    file: lent,
                    position,
                    len: (end - position) as usize,
                }));
            }
            match copy_batches(file, position, size, want, upper)? {
                Batches::Read(records) => {
                    // Checked just now: a range that continues the verified prefix extends it
                    // (unless the segment changed meanwhile, which moves the prefix).
                    let checked_end = position + records.len() as u64;
                    if position <= verified && checked_end > verified {
                        let _ = seg.verified.compare_exchange(
                            verified,
                            checked_end,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                    return served(Served::Bytes(records));
                }
                Batches::None => continue,
                Batches::Damaged {
                    position: at,
                    reason,
                } => {
                    self.repair_for_read(seg.base, seg.id, at, offset, &reason, repaired)?;
                    return self.read_served_inner(
                        offset,
                        max_bytes,
                        first_batch_always,
                        isolation,
                        true,
                    );
                }
            }
        }
        served(Served::Bytes(Bytes::new()))
    }

    /// The end of the last whole batch of `seg` that starts at or after `from` (a batch
    /// boundary), ends at or below `limit` and starts below offset `upper`; `from` when none does.
    fn batches_end(
        &self,
        seg: &Planned,
        from: u64,
        limit: u64,
        upper: i64,
    ) -> Result<u64, LogError> {
        if limit <= from {
            return Ok(from);
        }
        let floor = {
            let limits = segment_limits(&self.config());
            let mut st = self.lock();
            let same = |s: &&mut super::super::segment::Segment| {
                s.base_offset == seg.base && s.id() == seg.id
            };
            match st.segments.iter_mut().find(|s| same(s)) {
                Some(s) => s.floor_position(self.io.as_ref(), &limits, from, limit, upper)?,
                // Replaced or deleted since the plan: serve what is known to be whole.
                None => return Ok(from),
            }
        };
        let mut end = floor;
        let mut scan = BatchScanner::new(seg.file.as_ref(), floor, limit);
        // Stops at the limit (a batch crossing it reads as torn) or at upper.
        while let Scan::Batch(b) = scan.next(false)? {
            if b.header.base_offset >= upper {
                break;
            }
            end = b.position + b.header.size() as u64;
        }
        Ok(end)
    }
}
