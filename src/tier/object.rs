//! Reading one segment object of the bucket front to back, a batch at a time, with ranged GETs
//! (memory bounded by the chunk and the largest batch): each batch's CRC is checked as it is
//! handed out, and the whole object's size and CRC-32C against the manifest at its end. Used by
//! the cleaning of the tier ([`super::clean`]) and its scrub ([`super::scrub`]); the caller logs
//! what it found. Knows no Kafka request type.

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;

use super::manifest::RemoteObject;
use super::{Bucket, TierError};
use crate::log::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};

/// Objects are read in ranged GETs of this size.
const READ_CHUNK: u64 = 1 << 20;

/// One segment object read front to back, a batch at a time, with ranged GETs.
pub(super) struct BatchReader<'a> {
    bucket: &'a Bucket,
    object: &'a RemoteObject,
    /// Bytes fetched so far (the object's prefix [0, fetched)).
    fetched: u64,
    /// Fetched bytes not handed out yet.
    buf: BytesMut,
    crc: u32,
}

impl<'a> BatchReader<'a> {
    pub(super) fn new(bucket: &'a Bucket, object: &'a RemoteObject) -> BatchReader<'a> {
        BatchReader {
            bucket,
            object,
            fetched: 0,
            buf: BytesMut::new(),
            crc: 0,
        }
    }

    fn corrupt(&self, reason: String) -> TierError {
        TierError::Corrupt {
            key: self.object.key.clone(),
            reason,
        }
    }

    /// Fetches until `n` bytes are buffered; false when the object ends first.
    async fn fill(&mut self, n: usize) -> Result<bool, TierError> {
        while self.buf.len() < n {
            if self.fetched >= self.object.size {
                return Ok(false);
            }
            let want = READ_CHUNK.max((n - self.buf.len()) as u64);
            let hi = (self.fetched + want).min(self.object.size);
            let path = self.bucket.key(&self.object.key);
            let got = self.bucket.store.get_range(&path, self.fetched..hi).await?;
            if got.len() as u64 != hi - self.fetched {
                return Err(self.corrupt(format!(
                    "short read: {} bytes at {}, expected {}",
                    got.len(),
                    self.fetched,
                    hi - self.fetched
                )));
            }
            self.crc = crc32c::crc32c_append(self.crc, &got);
            self.buf.extend_from_slice(&got);
            self.fetched = hi;
        }
        Ok(true)
    }

    /// The next batch, its CRC checked; `None` at the end, once the whole object's CRC-32C
    /// matched the manifest's.
    pub(super) async fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, TierError> {
        if !self.fill(HEADER_SIZE).await? {
            if !self.buf.is_empty() {
                return Err(self.corrupt("a truncated batch at its end".into()));
            }
            if self.crc != self.object.crc32c {
                return Err(self.corrupt(format!(
                    "CRC-32C {:#010x}, the manifest says {:#010x}",
                    self.crc, self.object.crc32c
                )));
            }
            return Ok(None);
        }
        let length = i32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
        let size = (length.max(0) as usize).saturating_add(LOG_OVERHEAD);
        if size < HEADER_SIZE || !self.fill(size).await? {
            return Err(self.corrupt(format!("a bad batch length {length}")));
        }
        let bytes = self.buf.split_to(size).freeze();
        let header = batch::check_batch(&bytes).map_err(|e| self.corrupt(e.to_string()))?;
        Ok(Some((header, bytes)))
    }
}
