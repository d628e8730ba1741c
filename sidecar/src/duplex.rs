//! Bidirectional copy with explicit half-close.
//!
//! Each direction reads until EOF, then shuts down the write side of the other stream (a FIN, or a TLS
//! close_notify followed by a FIN), while the other direction keeps flowing. Once one direction has
//! finished, the connection may stay half-open only as long as bytes keep moving: `half_close_idle` of
//! silence closes it, so a peer that never sends its FIN cannot pin sockets forever.
//!
//! Buffers start small, grow when reads fill them, and are released while a direction waits for data, so an
//! idle connection holds no copy buffer at all. Bytes are counted as they move, not at the end.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use prometheus::IntCounter;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

const INITIAL_BUFFER: usize = 8 * 1024;
const MAX_BUFFER: usize = 64 * 1024;

/// Which way bytes were going when something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    AToB,
    BToA,
}

/// Which end of a direction failed: reading from its source or writing to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Read,
    Write,
}

/// Why a proxied connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DuplexError {
    #[error("{flow:?} {side:?}: {source}")]
    Io {
        flow: Flow,
        side: Side,
        source: io::Error,
        /// Bytes moved before the failure.
        moved: Transferred,
    },
    #[error("half-closed and idle for {0:?}")]
    HalfCloseIdle(Duration),
}

/// How a proxied connection ended: by itself, or cut off from outside.
#[derive(Debug)]
pub enum Ended {
    /// The copy finished (both directions ended) or failed.
    Copied(Result<Transferred, DuplexError>),
    /// A policy reload no longer allows the caller (inbound).
    Revoked,
    /// Still open at the end of the drain period.
    DrainOver,
}

/// Bytes moved in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

/// One direction's state.
struct Half<'c> {
    buf: Vec<u8>,
    pos: usize,
    /// Capacity to allocate for the next read; grows when reads fill the buffer.
    size: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    moved: u64,
    counter: &'c IntCounter,
}

impl<'c> Half<'c> {
    fn new(counter: &'c IntCounter) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            size: INITIAL_BUFFER,
            read_done: false,
            need_flush: false,
            done: false,
            moved: 0,
            counter,
        }
    }

    /// Ready(Ok) once the reader hit EOF and everything was written and the writer shut down.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<Result<(), (Side, io::Error)>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        let write_err = |e| (Side::Write, e);
        loop {
            while self.pos < self.buf.len() {
                let n = ready!(writer.as_mut().poll_write(cx, &self.buf[self.pos..])).map_err(write_err)?;
                if n == 0 {
                    return Poll::Ready(Err((Side::Write, io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                self.need_flush = true;
            }
            self.buf.clear();
            self.pos = 0;

            if self.read_done {
                if self.need_flush {
                    ready!(writer.as_mut().poll_flush(cx)).map_err(write_err)?;
                    self.need_flush = false;
                }
                ready!(writer.as_mut().poll_shutdown(cx)).map_err(write_err)?;
                return Poll::Ready(Ok(()));
            }

            if self.buf.capacity() < self.size {
                self.buf.reserve_exact(self.size);
            }
            match tokio_util::io::poll_read_buf(reader.as_mut(), cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(n)) => {
                    self.moved += n as u64;
                    self.counter.inc_by(n as u64);
                    if n == self.buf.capacity() && self.size < MAX_BUFFER {
                        self.size *= 2;
                    }
                }
                // A peer that closes TCP without a TLS close_notify ends its stream all the same: the
                // application protocol above detects truncation, as it would behind a plain TCP proxy.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => self.read_done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Read, e))),
                Poll::Pending => {
                    // Waiting for the peer: give the buffer back while idle.
                    self.buf = Vec::new();
                    if self.need_flush {
                        ready!(writer.as_mut().poll_flush(cx)).map_err(write_err)?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Copies `a` -> `b` and `b` -> `a` until both directions have ended, counting bytes into the counters.
pub async fn proxy<A, B>(
    a: &mut A,
    b: &mut B,
    a_to_b: &IntCounter,
    b_to_a: &IntCounter,
    half_close_idle: Duration,
) -> Result<Transferred, DuplexError>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut ab = Half::new(a_to_b);
    let mut ba = Half::new(b_to_a);
    let idle = tokio::time::sleep(half_close_idle);
    tokio::pin!(idle);
    let mut last_moved: Option<u64> = None;

    poll_fn(|cx| {
        if !ab.done
            && let Poll::Ready(r) = ab.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))
        {
            let moved = Transferred { a_to_b: ab.moved, b_to_a: ba.moved };
            r.map_err(|(side, source)| DuplexError::Io { flow: Flow::AToB, side, source, moved })?;
            ab.done = true;
        }
        if !ba.done
            && let Poll::Ready(r) = ba.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))
        {
            let moved = Transferred { a_to_b: ab.moved, b_to_a: ba.moved };
            r.map_err(|(side, source)| DuplexError::Io { flow: Flow::BToA, side, source, moved })?;
            ba.done = true;
        }
        if ab.done && ba.done {
            return Poll::Ready(Ok(Transferred { a_to_b: ab.moved, b_to_a: ba.moved }));
        }
        // The idle clock starts at the first half-close and restarts whenever bytes move.
        if ab.done || ba.done {
            let moved = ab.moved + ba.moved;
            if last_moved != Some(moved) {
                idle.as_mut().reset(Instant::now() + half_close_idle);
                last_moved = Some(moved);
            }
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(DuplexError::HalfCloseIdle(half_close_idle)));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counters() -> (IntCounter, IntCounter) {
        (IntCounter::new("a", "a").unwrap(), IntCounter::new("b", "b").unwrap())
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_flowing() {
        let (mut client, mut proxy_a) = tokio::io::duplex(1024);
        let (mut proxy_b, mut server) = tokio::io::duplex(1024);
        let (c1, c2) = counters();
        let task =
            tokio::spawn(async move { proxy(&mut proxy_a, &mut proxy_b, &c1, &c2, Duration::from_secs(5)).await });

        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");

        let reply = vec![7u8; 300_000];
        let write = async {
            server.write_all(&reply).await.unwrap();
            server.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let ((), read) = tokio::join!(write, client.read_to_end(&mut back));
        read.unwrap();
        assert_eq!(back, reply);

        let t = task.await.unwrap().expect("proxy");
        assert_eq!(t, Transferred { a_to_b: 7, b_to_a: 300_000 });
    }

    #[tokio::test(start_paused = true)]
    async fn silent_half_open_connection_is_closed() {
        let (mut client, mut proxy_a) = tokio::io::duplex(1024);
        let (mut proxy_b, _server) = tokio::io::duplex(1024);
        let (c1, c2) = counters();
        client.shutdown().await.unwrap();
        let r = proxy(&mut proxy_a, &mut proxy_b, &c1, &c2, Duration::from_secs(60)).await;
        assert!(matches!(r, Err(DuplexError::HalfCloseIdle(_))), "{r:?}");
    }
}
