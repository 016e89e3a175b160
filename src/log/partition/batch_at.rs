//! Reading the one stored batch that holds an offset into a buffer the caller keeps, for readers
//! that want one record (the key index's lookups): the offset index finds the batch, its header
//! gives its length, and only that many bytes are read, CRC-checked like any client read. A
//! damaged batch goes through [`Partition::read`], which repairs the segment. Read-only.

use bytes::Bytes;

use super::super::batch;
use super::super::io::read_exact_at;
use super::read::{locate_first, First};
use super::Partition;
use crate::log::{Isolation, LogError};

impl Partition {
    /// Reads the batch holding `offset`, or the first one after it when the cleaner removed
    /// `offset`, into `buf` (replacing its contents), when that batch starts below the high
    /// watermark. Returns false, with `buf` empty, when there is no such batch.
    pub fn read_batch_into(&self, offset: i64, buf: &mut Vec<u8>) -> Result<bool, LogError> {
        buf.clear();
        let (_, upper, plan) = self.plan_read(offset, 0, true, Isolation::ReadUncommitted)?;
        for p in plan {
            match locate_first(p.file.as_ref(), p.position, p.end, offset, upper, 0, true)? {
                First::None => continue,
                First::Empty => return Ok(false),
                First::Found { position, size, .. } => {
                    buf.resize(size, 0);
                    read_exact_at(p.file.as_ref(), buf, position)?;
                    if batch::check_batch(buf).is_ok() {
                        return Ok(true);
                    }
                    return self.read_batch_repaired(offset, buf);
                }
                First::Damaged { .. } => return self.read_batch_repaired(offset, buf),
            }
        }
        Ok(false)
    }

    /// The slow path of [`Partition::read_batch_into`]: a client read, which repairs a damaged
    /// segment once and then serves what is left.
    fn read_batch_repaired(&self, offset: i64, buf: &mut Vec<u8>) -> Result<bool, LogError> {
        let read = self.read(offset, 0, Isolation::ReadUncommitted)?;
        let first: &Bytes = &read.records;
        let size = match batch::peek(first) {
            Some((_, size, _)) if size > 0 && size as usize <= first.len() => size as usize,
            _ => {
                buf.clear();
                return Ok(false);
            }
        };
        buf.clear();
        buf.extend_from_slice(&first[..size]);
        Ok(true)
    }
}
