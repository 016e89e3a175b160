//! Reading a partition for clients: whole stored batches from the one holding the fetch offset,
//! each CRC-checked before it is served, within a byte limit. A damaged batch gets its segment
//! repaired on the spot and the read retried once. Knows nothing of Kafka requests.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use super::super::batch;
use super::super::io::{read_exact_at, IoFile};
use super::super::segment::{BatchScanner, Scan};
use super::{segment_limits, Partition};
use crate::log::{Isolation, LogError, PartitionOffsets, ReadInfo};

impl Partition {
    /// Reads whole batches starting with the one containing `offset`, at most `max_bytes` unless
    /// the first batch alone is larger (then exactly that batch).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<ReadInfo, LogError> {
        self.read_inner(offset, max_bytes, true, isolation, false)
    }

    /// Like [`Partition::read`], but never more than `max_bytes`: when the first batch alone is
    /// larger, the read is empty (the offsets are still answered).
    pub fn read_within_limit(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<ReadInfo, LogError> {
        self.read_inner(offset, max_bytes, false, isolation, false)
    }

    /// [`Partition::read`] (`first_batch_always`) or [`Partition::read_within_limit`]; a batch
    /// that fails its CRC gets its segment repaired (once: `repaired`) and the read is retried.
    fn read_inner(
        &self,
        offset: i64,
        max_bytes: usize,
        first_batch_always: bool,
        isolation: Isolation,
        repaired: bool,
    ) -> Result<ReadInfo, LogError> {
        let (offsets, upper, plan) =
            self.plan_read(offset, max_bytes, first_batch_always, isolation)?;
        for Planned {
            base,
            id,
            file,
            position,
            end,
            ..
        } in plan
        {
            match read_batches(
                file.as_ref(),
                position,
                end,
                offset,
                upper,
                max_bytes,
                first_batch_always,
            )? {
                Batches::None => continue,
                Batches::Read(records) => return Ok(ReadInfo { records, offsets }),
                Batches::Damaged {
                    position: at,
                    reason,
                } => {
                    self.repair_for_read(base, id, at, offset, &reason, repaired)?;
                    return self.read_inner(offset, max_bytes, first_batch_always, isolation, true);
                }
            }
        }
        Ok(ReadInfo {
            records: Bytes::new(),
            offsets,
        })
    }
}

impl Partition {
    /// A batch at `at` of segment `base`, read for a client at `offset`, is damaged: repairs the
    /// segment so the read can be retried, unless it was `repaired` already (then an error).
    pub(super) fn repair_for_read(
        &self,
        base: i64,
        id: u64,
        at: u64,
        offset: i64,
        reason: &str,
        repaired: bool,
    ) -> Result<(), LogError> {
        tracing::error!(topic = %self.topic, partition = self.index, base_offset = base,
            position = at, offset, %reason, "a batch read for a client fails its CRC; repairing the segment");
        if repaired {
            return Err(LogError::Io(io::Error::other(format!(
                "damaged batch at position {at} of segment {base} of {}-{}: {reason}",
                self.topic, self.index
            ))));
        }
        self.repair_segment(base, id)?;
        Ok(())
    }
}

/// A segment a read may take batches from.
pub(super) struct Planned {
    pub base: i64,
    /// The segment's [`Segment::id`](crate::log::segment::Segment::id).
    pub id: u64,
    pub file: Arc<dyn IoFile>,
    /// Where to start looking for the batch holding the offset.
    pub position: u64,
    /// The segment's size when planned.
    pub end: u64,
    /// The segment's verified prefix (see `Segment::verified`).
    pub verified: Arc<AtomicU64>,
}

impl Partition {
    /// Under the lock: the offsets, the upper bound of the read, and the segments it may take
    /// batches from (up to 8, from the one holding `offset`).
    pub(super) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        first_batch_always: bool,
        isolation: Isolation,
    ) -> Result<(PartitionOffsets, i64, Vec<Planned>), LogError> {
        let limits = segment_limits(&self.config());
        let mut st = self.lock();
        if st.deleted {
            return Err(LogError::UnknownTopicOrPartition);
        }
        let offsets = st.offsets();
        let upper = match isolation {
            Isolation::LogEnd => offsets.log_end_offset,
            Isolation::ReadUncommitted => offsets.high_watermark,
            Isolation::ReadCommitted => offsets.last_stable_offset,
        };
        if offset < offsets.log_start_offset || offset > offsets.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: offsets.log_start_offset,
                log_end_offset: offsets.log_end_offset,
            });
        }
        let mut plan = Vec::new();
        if offset < upper && (first_batch_always || max_bytes > 0) {
            let first = st.segment_for(offset);
            for i in first..st.segments.len() {
                let seg = &mut st.segments[i];
                if seg.base_offset >= upper || plan.len() >= 8 {
                    break;
                }
                let position = if i == first {
                    seg.lookup(self.io.as_ref(), &limits, offset)?
                } else {
                    0
                };
                plan.push(Planned {
                    base: seg.base_offset,
                    id: seg.id(),
                    file: seg.log_file()?,
                    position,
                    end: seg.size,
                    verified: seg.verified().clone(),
                });
            }
        }
        Ok((offsets, upper, plan))
    }
}

/// What [`read_batches`] found.
pub(super) enum Batches {
    /// No batch at or after the offset in this segment.
    None,
    /// Whole batches, each with a valid CRC (empty when the first one is at or past `upper`, or
    /// too large for a read that must stay within its limit).
    Read(Bytes),
    /// The first batch to serve fails its CRC check: the segment needs repair.
    Damaged { position: u64, reason: String },
}

/// Reads whole batches from `position` (at or before the batch holding `offset`) up to `end`:
/// the batch holding `offset` and those after it below `upper`, within `max_bytes`, except that
/// the first batch is read whole when `first_batch_always` (otherwise a first batch larger than
/// `max_bytes` makes the read empty). `None` when no batch in [position, end) reaches `offset`.
fn read_batches(
    file: &dyn IoFile,
    position: u64,
    end: u64,
    offset: i64,
    upper: i64,
    max_bytes: usize,
    first_batch_always: bool,
) -> io::Result<Batches> {
    match locate_first(
        file,
        position,
        end,
        offset,
        upper,
        max_bytes,
        first_batch_always,
    )? {
        First::Found {
            position,
            size,
            want,
        } => copy_batches(file, position, size, want, upper),
        First::None => Ok(Batches::None),
        First::Empty => Ok(Batches::Read(Bytes::new())),
        First::Damaged { position, reason } => Ok(Batches::Damaged { position, reason }),
    }
}

/// What [`locate_first`] found.
pub(super) enum First {
    /// No batch at or after the offset in [position, end).
    None,
    /// Nothing to serve: the first batch is at or past `upper`, or too large for the limit.
    Empty,
    /// The first batch to serve is damaged.
    Damaged { position: u64, reason: String },
    /// The first batch to serve is at `position`, `size` bytes long; the read may take `want`
    /// bytes from there (at least the first batch, at most to the segment's end).
    Found {
        position: u64,
        size: usize,
        want: usize,
    },
}

/// Finds the batch holding `offset` by walking headers from `position`, and how much a read
/// within `max_bytes` may take from it (see [`read_batches`]).
pub(super) fn locate_first(
    file: &dyn IoFile,
    position: u64,
    end: u64,
    offset: i64,
    upper: i64,
    max_bytes: usize,
    first_batch_always: bool,
) -> io::Result<First> {
    let mut scan = BatchScanner::new(file, position, end);
    let first = loop {
        match scan.next(false)? {
            Scan::Batch(b) if b.header.last_offset() < offset => continue,
            Scan::Batch(b) => break b,
            Scan::End => return Ok(First::None),
            // Reads stay below the segment's size, which ends on a whole batch: a damaged
            // length, not a torn write. Without repair the rest of the segment would be skipped.
            Scan::Torn { position, reason } | Scan::Corrupt { position, reason } => {
                return Ok(First::Damaged { position, reason })
            }
        }
    };
    if first.header.base_offset >= upper {
        return Ok(First::Empty);
    }
    let first_size = first.header.size();
    if !first_batch_always && first_size > max_bytes {
        return Ok(First::Empty);
    }
    let available = (end - first.position) as usize;
    Ok(First::Found {
        position: first.position,
        size: first_size,
        want: first_size.max(max_bytes.min(available)),
    })
}

/// Reads `want` bytes at `position` (where a batch of `first_size` bytes starts) and keeps the
/// whole batches below `upper` whose CRC holds.
pub(super) fn copy_batches(
    file: &dyn IoFile,
    position: u64,
    first_size: usize,
    want: usize,
    upper: i64,
) -> io::Result<Batches> {
    let mut buf = vec![0u8; want];
    read_exact_at(file, &mut buf, position)?;
    // Only whole batches whose CRC holds are served: damage that happened while Cairn runs is
    // caught here rather than handed to clients (librdkafka does not check CRCs by default).
    let mut cut = 0usize;
    while let Some((base, size, _)) = batch::peek(&buf[cut..]) {
        if base >= upper || size <= 0 || cut + size as usize > want {
            break;
        }
        if let Err(e) = batch::check_batch(&buf[cut..cut + size as usize]) {
            if cut == 0 {
                return Ok(Batches::Damaged {
                    position,
                    reason: e.to_string(),
                });
            }
            break;
        }
        cut += size as usize;
    }
    if cut == 0 {
        // The first batch's declared size did not fit what was read: a damaged length.
        return Ok(Batches::Damaged {
            position,
            reason: format!("batch of {first_size} bytes cannot be read whole"),
        });
    }
    buf.truncate(cut);
    Ok(Batches::Read(Bytes::from(buf)))
}
