//! Writing the file ranges of a Fetch answer to a connection.
//!
//! On a plaintext TCP connection the kernel copies them from the page cache to the socket
//! (`sendfile`, through rustix's safe wrapper), so record bytes never enter the broker's
//! memory; on a TLS connection, whose bytes must be encrypted, they are read in pieces into one
//! buffer that the connection keeps and reuses. The range holds its file open, so the bytes are
//! there even if the segment was deleted or replaced meanwhile; if the file became shorter
//! (cut by a repair), writing fails and the connection is closed, as the frame's length was
//! already promised.

use std::future::Future;
use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt, Interest, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::log::io::FileSlice;

/// Size of the buffer through which a connection without `sendfile` copies file ranges.
const COPY_BUFFER: usize = 64 * 1024;

/// A connection's write side that can write a file range.
pub(super) trait WriteFile: AsyncWrite + Unpin + Send {
    /// Writes the bytes of `slice`, after everything written before (flushed by the caller).
    /// `buffer` is the connection's reusable copy buffer.
    fn write_file<'a>(
        &'a mut self,
        slice: &'a FileSlice,
        buffer: &'a mut Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
}

impl WriteFile for OwnedWriteHalf {
    async fn write_file(&mut self, slice: &FileSlice, buffer: &mut Vec<u8>) -> io::Result<()> {
        match slice.file.fd() {
            Some(fd) => send_file(self.as_ref(), fd, slice).await,
            None => copy_file(self, slice, buffer).await,
        }
    }
}

impl<T: tokio::io::AsyncRead + AsyncWrite + Send> WriteFile for WriteHalf<T> {
    async fn write_file(&mut self, slice: &FileSlice, buffer: &mut Vec<u8>) -> io::Result<()> {
        copy_file(self, slice, buffer).await
    }
}

/// `sendfile` from `fd` to the socket, waiting for room in the socket buffer as needed.
async fn send_file(
    stream: &TcpStream,
    fd: std::os::fd::BorrowedFd<'_>,
    slice: &FileSlice,
) -> io::Result<()> {
    let end = slice.position + slice.len as u64;
    let mut offset = slice.position;
    while offset < end {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let count = (end - offset) as usize;
            rustix::fs::sendfile(stream, fd, Some(&mut offset), count).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(shorter(slice)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the range piece by piece into `buffer` and writes each piece.
async fn copy_file<W: AsyncWrite + Unpin>(
    writer: &mut W,
    slice: &FileSlice,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    if buffer.len() < COPY_BUFFER {
        buffer.resize(COPY_BUFFER, 0);
    }
    let end = slice.position + slice.len as u64;
    let mut offset = slice.position;
    while offset < end {
        let want = ((end - offset) as usize).min(buffer.len());
        let n = slice.file.read_at(&mut buffer[..want], offset)?;
        if n == 0 {
            return Err(shorter(slice));
        }
        writer.write_all(&buffer[..n]).await?;
        offset += n as u64;
    }
    Ok(())
}

fn shorter(slice: &FileSlice) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the segment file ended inside records being served ({slice:?})"),
    )
}
