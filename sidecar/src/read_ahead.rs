//! Read-ahead under TLS, so that a bulk transfer costs one `read(2)` per 64 KiB rather than per 4 KiB.
//!
//! rustls asks its transport for at most ~4 KiB at a time (the read size of its record deframer), so a
//! connection that decrypts a stream of full 16 KiB records makes four or five syscalls per record. Below
//! rustls, [`ReadAhead`] passes small reads straight through to the socket while traffic is light; once a read
//! fills what rustls asked for (more is waiting in the kernel), it reads up to [`CHUNK`] at once and serves
//! rustls from that. The buffer is freed as soon as it is drained and the socket has nothing more, so an idle
//! connection holds none, and request/response traffic never allocates one.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket may take while a peer is streaming.
pub const CHUNK: usize = 64 * 1024;

/// A transport with a read-ahead buffer that exists only while data is streaming in.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
    /// The last read filled the caller's buffer: more is probably waiting, so read ahead.
    streaming: bool,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, buf: Vec::new(), pos: 0, streaming: false }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The transport, and whatever was read ahead but not yet consumed is dropped: only for closing.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn release(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.streaming = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            if !this.streaming || out.remaining() >= CHUNK {
                let wanted = out.remaining();
                let before = out.filled().len();
                let read = ready!(Pin::new(&mut this.inner).poll_read(cx, out));
                if read.is_ok() {
                    this.streaming = wanted > 0 && out.filled().len() - before == wanted;
                }
                return Poll::Ready(read);
            }
            this.buf.clear();
            this.pos = 0;
            if this.buf.capacity() < CHUNK {
                this.buf.reserve_exact(CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(n)) if n > 0 => {}
                // EOF, an error or nothing yet: give the buffer back.
                Poll::Ready(Ok(_)) => {
                    this.release();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => {
                    this.release();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.release();
                    return Poll::Pending;
                }
            }
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Every byte arrives once and in order, whatever the mix of small and large reads, and the buffer is gone
    /// once the stream is drained.
    #[tokio::test]
    async fn streams_every_byte_in_order_and_frees_its_buffer_when_drained() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(70_001) {
                tx.write_all(chunk).await.unwrap();
            }
            tx
        });
        let mut reader = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        let mut large = vec![0u8; CHUNK];
        while got.len() < data.len() {
            // rustls' pattern (4 KiB reads), with a large read now and then.
            let large_read = got.len() % 7 == 3;
            let buf: &mut [u8] = if large_read { &mut large } else { &mut small };
            let n = reader.read(buf).await.unwrap();
            assert!(n > 0, "early EOF at {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        let _tx = writer.await.unwrap();
        // Nothing more to read: the next read is pending, and the buffer has been released.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), reader.read(&mut small)).await;
        assert!(pending.is_err());
        assert_eq!(reader.buf.capacity(), 0);
    }

    /// Request/response traffic (reads smaller than what the caller asks for) never allocates a buffer.
    #[tokio::test]
    async fn small_messages_are_passed_through() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(rx);
        let mut buf = [0u8; 4096];
        for i in 0..100u8 {
            tx.write_all(&[i; 64]).await.unwrap();
            assert_eq!(reader.read(&mut buf).await.unwrap(), 64);
            assert_eq!(buf[..64], [i; 64]);
            assert_eq!(reader.buf.capacity(), 0);
        }
        drop(tx);
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0, "EOF passes through");
    }
}
