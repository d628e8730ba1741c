//! One connection's life: TCP connect and TLS handshake (the measured part), then a confirmation exchange
//! that tells an accepted client from a refused one.
//!
//! Why confirm: in TLS 1.3 the client's handshake is complete once it has sent its Finished, before the server
//! has even looked at the client certificate. A server that refuses the certificate says so with an alert the
//! client only sees on its next read; counting at handshake completion alone would count refusals as
//! successes.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{reason::ErrorReason, tls::ClientTls};

/// What a connection does after its handshake before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The default: send close_notify and read until the server closes. An alert (the server refused our
    /// certificate) is an error; a close, with or without close_notify, is a success. Any TLS server does
    /// this without application data, but a refusal that comes as a plain close (the sidecar's policy deny)
    /// looks like a success: use `Echo` to see it.
    Close,
    /// `--send N`: write N bytes and read until N bytes came back (an echo server) or the server closed
    /// after replying. Closing without a byte of reply is `no_reply`.
    Echo(usize),
    /// `--no-confirm`: count at handshake completion and drop the connection, as `openssl s_time` does.
    /// Fastest; a server that refuses the client certificate is counted as a success.
    None,
}

impl Confirm {
    pub fn as_str(self) -> &'static str {
        match self {
            Confirm::Close => "close",
            Confirm::Echo(_) => "echo",
            Confirm::None => "none",
        }
    }
}

/// The per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Bounds the handshake, and the confirmation exchange again.
    pub handshake: Duration,
}

/// A completed handshake.
#[derive(Debug, Clone, Copy)]
pub struct Handshake {
    /// From the start (closed loop) or the scheduled start (open loop) to handshake completion.
    pub latency: Duration,
    pub resumed: bool,
    /// The server asked for another key share.
    pub hello_retry: bool,
}

/// What happened to one handshake the load generator meant to make.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok(Handshake),
    Failed(ErrorReason),
    /// Open loop: never started, because `--max-inflight` handshakes were already in flight.
    Dropped,
}

/// An outcome, and whether its start lagged its schedule.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub outcome: Outcome,
    /// Open loop: started more than [`super::scheduler::LATE`] after its scheduled time.
    pub late: bool,
}

/// Everything a connection needs, shared by all of them.
pub struct Connector {
    addr: SocketAddr,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    timeouts: Timeouts,
    confirm: Confirm,
    payload: Arc<[u8]>,
}

/// Bytes read per call while confirming (on the connection task's stack: no allocation per connection).
const READ_CHUNK: usize = 4096;

impl Connector {
    pub fn new(addr: SocketAddr, tls: &ClientTls, timeouts: Timeouts, confirm: Confirm) -> Self {
        let payload = match confirm {
            Confirm::Echo(n) => payload(n),
            Confirm::Close | Confirm::None => Arc::from(Vec::new()),
        };
        Self {
            addr,
            tls: TlsConnector::from(tls.config.clone()),
            server_name: tls.server_name.clone(),
            timeouts,
            confirm,
            payload,
        }
    }

    /// Makes one connection; its latency counts from `start`.
    pub async fn run(&self, start: Instant) -> Outcome {
        match self.handshake(start).await {
            Ok(done) => Outcome::Ok(done),
            Err(reason) => Outcome::Failed(reason),
        }
    }

    async fn handshake(&self, start: Instant) -> Result<Handshake, ErrorReason> {
        let tcp = match timeout(self.timeouts.connect, TcpStream::connect(self.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ErrorReason::connect(&e)),
            Err(_) => return Err(ErrorReason::ConnectTimeout),
        };
        // Handshake flights are single writes; Nagle could only delay them.
        let _ = tcp.set_nodelay(true);
        let mut tls = match timeout(self.timeouts.handshake, self.tls.connect(self.server_name.clone(), tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(ErrorReason::tls(&e)),
            Err(_) => return Err(ErrorReason::HandshakeTimeout),
        };
        let latency = start.elapsed();
        let kind = tls.get_ref().1.handshake_kind();
        match timeout(self.timeouts.handshake, self.confirm(&mut tls)).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(reason),
            Err(_) => return Err(ErrorReason::ConfirmTimeout),
        }
        Ok(Handshake {
            latency,
            resumed: kind == Some(HandshakeKind::Resumed),
            hello_retry: kind == Some(HandshakeKind::FullWithHelloRetryRequest),
        })
    }

    async fn confirm(&self, tls: &mut TlsStream<TcpStream>) -> Result<(), ErrorReason> {
        match self.confirm {
            Confirm::None => Ok(()),
            Confirm::Close => {
                // A failed close_notify means the server is gone; the read below says how it left.
                let _ = tls.shutdown().await;
                read_reply(tls, usize::MAX).await.map(|_| ())
            }
            Confirm::Echo(want) => {
                // Write and read at once: a payload larger than the socket buffers would otherwise deadlock
                // against an echo server that is blocked writing it back.
                let (mut reader, mut writer) = tokio::io::split(&mut *tls);
                let (written, got) = tokio::join!(writer.write_all(&self.payload), read_reply(&mut reader, want));
                if got? == 0 {
                    // A write that failed without an alert to read explains the silence best.
                    return Err(written.err().map_or(ErrorReason::NoReply, |e| ErrorReason::tls(&e)));
                }
                let _ = tls.shutdown().await;
                Ok(())
            }
        }
    }
}

/// Reads until `want` bytes came or the server closed; returns the count. An alert is an error; a close
/// without close_notify is a close.
async fn read_reply(tls: &mut (impl AsyncRead + Unpin), want: usize) -> Result<usize, ErrorReason> {
    let mut buf = [0u8; READ_CHUNK];
    let mut got = 0usize;
    while got < want {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(ErrorReason::tls(&e)),
        }
    }
    Ok(got)
}

/// A deterministic, non-compressible payload of `len` bytes (xorshift).
fn payload(len: usize) -> Arc<[u8]> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}
