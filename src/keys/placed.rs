//! Records read by their place in a sealed segment's log file, so a lookup reads its record's
//! batch header and the record alone instead of the whole batch. The key file builder walks the
//! segment file itself ([`index_segment`]), checking every batch's CRC as a client read does,
//! and keeps, per key, where its latest record lies with a CRC of that batch's header and the
//! record's bytes ([`Place`]). A lookup ([`record_placed`]) serves a record read this way only
//! when the log file is still the one the key file was built from (its identity: inode, size,
//! mtime) and the CRC matches; anything else, and every I/O error, sends it back to the log's
//! own read path, which checks the whole batch (and repairs a damaged segment). A compressed
//! batch is inflated whole; the last one inflated is kept for the next lookup.
//!
//! Reads the sealed segment's log file by the path [`Partition::segment_layout`] gives, read-only.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;

use super::file::{key_hash, Identity, Place};
use super::record::{decode_one, walk_keys, Record};
use super::scan::is_aborted;
use super::KeysError;
use crate::log::batch::{check_batch, BatchHeader, HEADER_SIZE};
use crate::log::cleaner::rewrite::decompress;
use crate::log::partition::{Partition, SegmentInfo};

/// A key file entry with its place: (key hash, offset, place).
pub(crate) type Placed = (u64, i64, Place);

/// Bytes read from the segment file at once while building.
const CHUNK: usize = 1 << 20;

/// The `(hash, offset, place)` of every committed keyed record of the sealed segment `seg`, read
/// from its log file, which must be the file of identity `id`. `None` when it is not, or when a
/// batch is torn or fails its CRC: the caller then builds from the log's read path.
pub(crate) fn index_segment(
    partition: &Partition,
    seg: &SegmentInfo,
    id: Identity,
) -> Result<Option<Vec<Placed>>, KeysError> {
    let Ok(file) = File::open(&seg.log_path) else {
        return Ok(None);
    };
    if Identity::of_file(&file, id.base_offset, id.end_offset)? != id {
        return Ok(None);
    }
    let (base, end) = (id.base_offset, id.end_offset);
    let aborted = partition.aborted_transactions(base, end);
    let mut window = Window::default();
    let mut entries = Vec::new();
    let mut pos = 0u64;
    while pos < id.size {
        let Some(head) = window.bytes(&file, pos, HEADER_SIZE, id.size)? else {
            return Ok(None);
        };
        let Ok(h) = BatchHeader::parse(head) else {
            return Ok(None);
        };
        let size = h.size();
        let Some(batch) = window.bytes(&file, pos, size, id.size)? else {
            return Ok(None);
        };
        if size < HEADER_SIZE || check_batch(batch).is_err() {
            return Ok(None);
        }
        if h.base_offset >= end {
            break;
        }
        if !h.is_control() && !is_aborted(&h, &aborted) {
            let inflated;
            let block: &[u8] = match h.compression() {
                0 => &batch[HEADER_SIZE..],
                codec => {
                    inflated = decompress(codec, h.base_offset, &batch[HEADER_SIZE..])
                        .map_err(|e| KeysError::Corrupt(e.to_string()))?;
                    &inflated
                }
            };
            let head_crc = crc32c::crc32c(&batch[..HEADER_SIZE]);
            let fits = pos + size as u64 <= u64::from(u32::MAX) && block.len() < u32::MAX as usize;
            walk_keys(block, &h, |offset, key, start, stop| {
                if offset < base || offset >= end {
                    return;
                }
                let place = match fits {
                    true => Place {
                        batch: pos as u32,
                        at: start as u32,
                        len: (stop - start) as u32,
                        crc: crc32c::crc32c_append(head_crc, &block[start..stop]),
                    },
                    false => Place::NONE,
                };
                entries.push((key_hash(key), offset, place));
            })
            .map_err(KeysError::Corrupt)?;
        }
        pos += size as u64;
    }
    Ok(Some(entries))
}

/// A window of the segment file read ahead, so that small batches cost no read each.
#[derive(Default)]
struct Window {
    at: u64,
    bytes: Vec<u8>,
}

impl Window {
    /// `len` bytes at `pos`, or `None` when they run past `size` (a torn batch).
    fn bytes(
        &mut self,
        file: &File,
        pos: u64,
        len: usize,
        size: u64,
    ) -> Result<Option<&[u8]>, KeysError> {
        if pos + len as u64 > size {
            return Ok(None);
        }
        let held = self.at + self.bytes.len() as u64;
        if pos < self.at || pos + len as u64 > held {
            let want = (len.max(CHUNK) as u64).min(size - pos) as usize;
            self.bytes.resize(want, 0);
            file.read_exact_at(&mut self.bytes, pos)?;
            self.at = pos;
        }
        let from = (pos - self.at) as usize;
        Ok(Some(&self.bytes[from..from + len]))
    }
}

/// The last compressed batch inflated by a lookup: the segment file's identity, the batch's
/// position, and its records inflated.
static INFLATED: Mutex<Option<(Identity, u32, Bytes)>> = Mutex::new(None);

/// The record at `offset` read at `place` in the segment log at `log_path`, when that file is
/// still the one of `id` (what the key file was built from) and the bytes read match the place's
/// CRC; `None` otherwise (the caller reads through the log).
pub(crate) fn record_placed(
    log_path: &Path,
    id: &Identity,
    place: Place,
    offset: i64,
) -> Option<Record> {
    let file = File::open(log_path).ok()?;
    if Identity::of_file(&file, id.base_offset, id.end_offset).ok()? != *id {
        return None;
    }
    let batch = u64::from(place.batch);
    let mut head = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut head, batch).ok()?;
    let h = BatchHeader::parse(&head).ok()?;
    if h.magic != 2 || h.is_control() || offset < h.base_offset || offset > h.last_offset() {
        return None;
    }
    let (at, len) = (place.at as usize, place.len as usize);
    let record = match h.compression() {
        0 => {
            if batch + (HEADER_SIZE + at + len) as u64 > id.size {
                return None;
            }
            let mut r = vec![0u8; len];
            file.read_exact_at(&mut r, batch + (HEADER_SIZE + at) as u64)
                .ok()?;
            Bytes::from(r)
        }
        codec => {
            let block = inflated(&file, id, place.batch, &h, codec)?;
            if at.checked_add(len)? > block.len() {
                return None;
            }
            block.slice(at..at + len)
        }
    };
    if crc32c::crc32c_append(crc32c::crc32c(&head), &record) != place.crc {
        tracing::debug!(path = %log_path.display(), offset, "a placed record failed its CRC; reading the batch");
        return None;
    }
    let r = decode_one(&record, &h).ok()?;
    (r.offset == offset).then_some(r)
}

/// The inflated records of the compressed batch of header `h` at `batch` in `file` (of `id`).
fn inflated(file: &File, id: &Identity, batch: u32, h: &BatchHeader, codec: i16) -> Option<Bytes> {
    {
        let last = INFLATED.lock().expect("inflated batch lock");
        if let Some((i, b, block)) = last.as_ref() {
            if i == id && *b == batch {
                return Some(block.clone());
            }
        }
    }
    let size = h.size();
    if size < HEADER_SIZE || u64::from(batch) + size as u64 > id.size {
        return None;
    }
    let mut bytes = vec![0u8; size];
    file.read_exact_at(&mut bytes, u64::from(batch)).ok()?;
    let block = decompress(codec, h.base_offset, &bytes[HEADER_SIZE..]).ok()?;
    *INFLATED.lock().expect("inflated batch lock") = Some((*id, batch, block.clone()));
    Some(block)
}
