//! The per-connection count of response bytes built but not yet written, and the one type
//! through which a response reaches the writer.
//!
//! A response frame becomes an [`Answer`] only through [`Backlog::track`], which counts its
//! bytes, and an `Answer` uncounts them exactly once, when it is dropped (after being written, or
//! unwritten when the connection ends). So the count cannot drift: no call site adds or
//! subtracts by hand. (It once did: the KIP-511 answer was written without being counted, the
//! subtraction wrapped the unsigned count, and the reader stopped reading that connection.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::broker::fetch_files::Held;
use crate::protocol::fetch_encode::Chunk;

/// Bytes of one connection's responses built but not yet written.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    bytes: AtomicUsize,
    /// Set when the writer stops: nothing will be written any more.
    closed: AtomicBool,
    /// Woken when bytes are released or the writer stops.
    released: Notify,
}

/// A response frame, counted in its connection's [`Backlog`] until it is dropped: bytes, and
/// for a Fetch answer the file ranges its records are written from.
#[derive(Debug)]
pub(super) struct Answer {
    chunks: Vec<Chunk<Held>>,
    len: usize,
    backlog: Arc<Backlog>,
}

impl Backlog {
    /// Counts `frame` until the returned answer is dropped.
    pub(super) fn track(self: &Arc<Self>, frame: Bytes) -> Answer {
        self.track_chunks(vec![Chunk::Bytes(frame)])
    }

    /// Counts the frame made of `chunks` (file ranges by their length) until the returned
    /// answer is dropped.
    pub(super) fn track_chunks(self: &Arc<Self>, chunks: Vec<Chunk<Held>>) -> Answer {
        let len = chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b.len(),
                Chunk::External(held) => held.size(),
            })
            .sum();
        self.bytes.fetch_add(len, Ordering::SeqCst);
        Answer {
            chunks,
            len,
            backlog: self.clone(),
        }
    }

    /// Bytes counted now.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Waits until at most `limit` bytes wait to be written; `false` if the writer stopped.
    pub(super) async fn wait_below(&self, limit: usize) -> bool {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            if self.bytes() <= limit {
                return true;
            }
            released.await;
        }
    }
}

impl Answer {
    /// The frame to write, length prefix included, in order.
    pub(super) fn chunks(&self) -> &[Chunk<Held>] {
        &self.chunks
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.backlog.bytes.fetch_sub(self.len, Ordering::SeqCst);
        self.backlog.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_counted_until_dropped() {
        let backlog = Arc::new(Backlog::default());
        let a = backlog.track(Bytes::from_static(b"0123456789"));
        let b = backlog.track(Bytes::from_static(b"abc"));
        assert_eq!(backlog.bytes(), 13);
        drop(a);
        assert_eq!(backlog.bytes(), 3);
        drop(b);
        assert_eq!(backlog.bytes(), 0);
    }

    #[test]
    fn a_waiter_is_woken_by_a_release_and_by_close() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let backlog = Arc::new(Backlog::default());
            let big = backlog.track(Bytes::from(vec![0u8; 100]));
            let waiting = tokio::spawn({
                let backlog = backlog.clone();
                async move { backlog.wait_below(10).await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished());
            drop(big);
            assert!(waiting.await.expect("task"));

            let _big = backlog.track(Bytes::from(vec![0u8; 100]));
            let waiting = tokio::spawn({
                let backlog = backlog.clone();
                async move { backlog.wait_below(10).await }
            });
            tokio::task::yield_now().await;
            backlog.close();
            assert!(!waiting.await.expect("task"));
        });
    }
}
