//! Fetch records served from segment files: which partitions of the Fetch response being built
//! the connection writes straight from a file (`sendfile` on plaintext connections, reads into
//! one reused buffer on TLS ones) instead of carrying bytes in the response.
//!
//! The server runs a Fetch handler inside [`collect`]; reads made there through [`read`] may
//! come back as file ranges (`Partition::read_served`: only ranges whose CRCs were checked
//! since the segment was opened), which are recorded here by topic and partition and handed to
//! the server beside the response, whose `records` for those partitions stay empty. Outside
//! [`collect`] every read comes back as bytes. Holding a range holds its file open, so a
//! segment deleted by retention or replaced by the cleaner while the answer is written stays
//! readable until it is written. Records read from the object-storage tier are handed over the
//! same way, as the slices of the remote cache's chunks they lie in, so they are written from
//! there rather than copied into the response and again into one buffer. Owns no Kafka error
//! mapping: errors go back to the handler.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;

use crate::log::io::FileSlice;
use crate::log::{Isolation, LogError, Partition, PartitionOffsets, Served};
use crate::tier::read::RemoteRecords;

tokio::task_local! {
    static FILES: RefCell<Files>;
}

/// Records of one partition that the connection writes outside the encoded response.
#[derive(Debug)]
pub enum Held {
    /// A range of a segment file.
    File(FileSlice),
    /// Slices of the remote cache's chunks, in order.
    Remote(Vec<Bytes>),
}

impl Held {
    /// Record bytes held.
    pub fn size(&self) -> usize {
        match self {
            Held::File(slice) => slice.len,
            Held::Remote(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }
}

/// The records held outside one Fetch response, by topic and partition.
#[derive(Debug, Default)]
pub struct Files(HashMap<String, HashMap<i32, Held>>);

impl Files {
    /// Takes the records serving `partition` of `topic`, if they are held outside the response.
    pub fn take(&mut self, topic: &str, partition: i32) -> Option<Held> {
        self.0.get_mut(topic)?.remove(&partition)
    }

    fn len_of(&self, topic: &str, partition: i32) -> Option<usize> {
        Some(self.0.get(topic)?.get(&partition)?.size())
    }

    fn hold(&mut self, topic: &str, partition: i32, records: Held) {
        match self.0.get_mut(topic) {
            Some(t) => {
                t.insert(partition, records);
            }
            None => {
                self.0
                    .insert(topic.to_string(), HashMap::from([(partition, records)]));
            }
        }
    }
}

/// Runs a Fetch handler so that its reads may be served from files; returns its output and the
/// ranges its response refers to.
pub async fn collect<F: Future>(handler: F) -> (F::Output, Files) {
    FILES
        .scope(RefCell::default(), async move {
            let output = handler.await;
            let files = FILES.with(|f| f.take());
            (output, files)
        })
        .await
}

/// Forgets the ranges of an earlier attempt at the response (a long poll gathers again).
pub(super) fn clear() {
    let _ = FILES.try_with(|f| f.borrow_mut().0.clear());
}

/// One partition's read for a Fetch response.
pub(super) struct Read {
    /// The records, or empty when they are served from a file.
    pub records: Bytes,
    /// Record bytes served, in `records` or in the file.
    pub len: usize,
    pub offsets: PartitionOffsets,
}

/// Reads `log` from `offset` within `limit` bytes (exceeding it by the first batch when
/// `may_exceed`), as [`Partition::read`] and [`Partition::read_within_limit`] do.
pub(super) fn read(
    log: &Partition,
    offset: i64,
    limit: usize,
    isolation: Isolation,
    may_exceed: bool,
) -> Result<Read, LogError> {
    if FILES.try_with(|_| ()).is_err() {
        let read = if may_exceed {
            log.read(offset, limit, isolation)?
        } else {
            log.read_within_limit(offset, limit, isolation)?
        };
        return Ok(Read {
            len: read.records.len(),
            records: read.records,
            offsets: read.offsets,
        });
    }
    let read = log.read_served(offset, limit, may_exceed, isolation)?;
    let len = read.records.len();
    let topic = log.topic();
    let partition = log.partition_index();
    let records = FILES.with(|files| {
        let mut files = files.borrow_mut();
        match read.records {
            Served::Bytes(bytes) => {
                if let Some(t) = files.0.get_mut(topic) {
                    t.remove(&partition);
                }
                bytes
            }
            Served::File(slice) => {
                files.hold(topic, partition, Held::File(slice));
                Bytes::new()
            }
        }
    });
    Ok(Read {
        records,
        len,
        offsets: read.offsets,
    })
}

/// The records a partition of the response carries, read from the tier: held for the connection
/// to write from the cache's chunks (empty `records` returned), or gathered into one buffer
/// outside [`collect`].
pub(super) fn serve_remote(topic: &str, partition: i32, records: RemoteRecords) -> Bytes {
    if FILES.try_with(|_| ()).is_err() {
        return records.into_bytes();
    }
    FILES.with(|files| {
        let held = Held::Remote(records.pieces);
        files.borrow_mut().hold(topic, partition, held);
    });
    Bytes::new()
}

/// Record bytes a partition of the response carries, in its `records` or in a file.
pub(super) fn records_len(topic: &str, partition: &PartitionData) -> usize {
    FILES
        .try_with(|f| f.borrow().len_of(topic, partition.partition_index))
        .ok()
        .flatten()
        .unwrap_or_else(|| partition.records.as_ref().map_or(0, Bytes::len))
}
