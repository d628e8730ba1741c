//! Sockets: binding listeners, accepting, and dialing with a timeout, over TCP or Unix domain sockets.
//!
//! Everything above this module sees one [`Stream`] type whatever the address family.

use std::{io, net::SocketAddr, path::Path, time::Duration};

use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio_util::either::Either;

use crate::addr::{Addr, ClientAddr, ConnectAddr, ListenAddr};

/// A connected byte stream (TCP or Unix).
pub type Stream = Either<TcpStream, UnixStream>;

/// What TLS runs over: the connection, with a read-ahead buffer while a peer streams.
pub type TlsTransport = crate::read_ahead::ReadAhead<Stream>;

/// How many not-yet-accepted connections the kernel queues per listener.
const BACKLOG: u32 = 1024;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Why binding a listener failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("{addr} resolves to no address")]
    NoAddress { addr: String },
    #[error("cannot listen on {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("cannot listen on {addr}: a file that is not a socket is in the way")]
    NotASocket { addr: String },
    #[error("cannot listen on {addr}: another process is listening there")]
    InUse { addr: String },
}

/// Why a dial failed. The reason is a metric label (`sidecar_connect_errors_total{reason}`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection refused")]
    Refused,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("network unreachable: {0}")]
    Unreachable(io::Error),
    /// The other end accepted, then reset the connection before the dial completed on our side.
    #[error("reset while connecting: {0}")]
    Reset(io::Error),
    #[error("{0}")]
    Io(io::Error),
}

impl ConnectError {
    /// Every value [`ConnectError::reason`] returns.
    pub const REASONS: [&'static str; 6] = ["refused", "timeout", "resolve", "unreachable", "reset", "io"];

    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::Refused => "refused",
            ConnectError::Timeout(_) => "timeout",
            ConnectError::Resolve { .. } => "resolve",
            ConnectError::Unreachable(_) => "unreachable",
            ConnectError::Reset(_) => "reset",
            ConnectError::Io(_) => "io",
        }
    }

    fn from_io(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectError::Refused,
            io::ErrorKind::NotFound => ConnectError::Refused, // unix socket path absent: nobody listens
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable | io::ErrorKind::AddrNotAvailable => {
                ConnectError::Unreachable(e)
            }
            // An app that accepts and resets at once can beat us to the end of the dial: tokio reports the
            // connection's pending error (the reset) instead of the connection.
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => ConnectError::Reset(e),
            _ => ConnectError::Io(e),
        }
    }
}

impl Listener {
    /// Binds `addr`. Host names are resolved once, here.
    pub async fn bind(addr: &ListenAddr) -> Result<Self, BindError> {
        let text = addr.to_string();
        match &addr.0 {
            Addr::Socket(sa) => bind_tcp(*sa).map_err(|source| BindError::Io { addr: text, source }),
            Addr::Name { host, port } => {
                let mut addrs = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| BindError::Resolve { addr: text.clone(), source })?;
                let sa = addrs.next().ok_or_else(|| BindError::NoAddress { addr: text.clone() })?;
                bind_tcp(sa).map_err(|source| BindError::Io { addr: text, source })
            }
            Addr::Unix(path) => bind_unix(path, &text).await,
        }
    }

    /// Accepts one connection. TCP connections have `TCP_NODELAY` and keepalive already: Linux copies them
    /// from the listening socket (set once in [`bind_tcp`]), which saves five `setsockopt` calls per connection.
    pub async fn accept(&self) -> io::Result<(Stream, ClientAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Either::Left(s), ClientAddr::Tcp(peer)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Either::Right(s), ClientAddr::Unix))
            }
        }
    }

    /// The bound address, with the real port when the configuration asked for port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }
}

fn bind_tcp(sa: SocketAddr) -> io::Result<Listener> {
    let socket = if sa.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive())?;
    socket.bind(sa)?;
    Ok(Listener::Tcp(socket.listen(BACKLOG)?))
}

/// Binds a Unix socket, replacing a stale socket file left by a process that died, but never a live one or
/// a file that is not a socket.
async fn bind_unix(path: &Path, text: &str) -> Result<Listener, BindError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket { addr: text.to_string() });
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse { addr: text.to_string() });
        }
        std::fs::remove_file(path).map_err(|source| BindError::Io { addr: text.to_string(), source })?;
    }
    UnixListener::bind(path).map(Listener::Unix).map_err(|source| BindError::Io { addr: text.to_string(), source })
}

/// Makes the next close of `stream` abortive (a TCP RST instead of a FIN). The proxy passes an abortive end on
/// as one: a FIN would tell the other end that everything was said, and a truncated reply would look whole.
/// Unix sockets have no such thing and close normally.
pub fn abort(stream: &Stream) {
    if let Either::Left(tcp) = stream {
        let _ = tcp.set_zero_linger();
    }
}

/// How long a refused connection is kept to let our last words (a TLS alert) reach the peer.
const LINGER: Duration = Duration::from_millis(500);
/// How much a lingering close reads and discards at most.
const LINGER_DRAIN_BYTES: usize = 64 * 1024;

/// Closes gracefully after a refusal: FIN, then read and discard what the peer still sends for a moment, so
/// that the close is not turned into a reset by unread data (a reset can make the peer drop the alert we
/// sent before it). Bounded in time and bytes.
pub async fn linger_close(mut stream: Stream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_DRAIN_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Dials `addr` within `timeout`, trying each resolved address in turn.
pub async fn connect(addr: &ConnectAddr, timeout: Duration) -> Result<Stream, ConnectError> {
    match tokio::time::timeout(timeout, dial(&addr.0)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

async fn dial(addr: &Addr) -> Result<Stream, ConnectError> {
    match addr {
        Addr::Socket(sa) => dial_tcp(*sa).await,
        Addr::Name { host, port } => {
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| ConnectError::Resolve { host: host.clone(), reason: e.to_string() })?;
            let mut last = None;
            for sa in addrs {
                match dial_tcp(sa).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| ConnectError::Resolve { host: host.clone(), reason: "no addresses".into() }))
        }
        Addr::Unix(path) => UnixStream::connect(path).await.map(Either::Right).map_err(ConnectError::from_io),
    }
}

async fn dial_tcp(sa: SocketAddr) -> Result<Stream, ConnectError> {
    let s = TcpStream::connect(sa).await.map_err(ConnectError::from_io)?;
    let _ = s.set_nodelay(true);
    // A loopback peer is this host, whose kernel answers keepalive probes whatever the app does: no use.
    if !sa.ip().is_loopback() {
        let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive());
    }
    Ok(Either::Left(s))
}

/// TCP keepalive: a peer host that vanished without a FIN or RST (power loss, a dropped network path) is
/// detected after about 90 s of silence, instead of holding a connection slot and two sockets forever.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Every proxied TCP connection has no Nagle delay (a proxy must not add latency to small writes), and those
/// with another host keepalive.
fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_keepalive(sock: &socket2::SockRef<'_>) {
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
    }

    /// Accepted connections inherit no-delay and keepalive from the listening socket (Linux); dialed ones get
    /// no-delay, and keepalive unless the peer is on this host.
    #[tokio::test]
    async fn accepted_connections_inherit_keepalive_and_no_delay_dialed_ones_get_no_delay() {
        let listener = Listener::bind(&ListenAddr("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dialed = connect(&ConnectAddr(Addr::Socket(addr)), Duration::from_secs(5)).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let (Either::Left(dialed), Either::Left(accepted)) = (&dialed, &accepted) else { panic!("tcp expected") };
        assert_keepalive(&socket2::SockRef::from(accepted));
        assert!(accepted.nodelay().unwrap());
        assert!(dialed.nodelay().unwrap());
        assert!(!socket2::SockRef::from(dialed).keepalive().unwrap(), "loopback: no keepalive");
        // The keepalive settings themselves, as a dial to another host gets them.
        let plain = TcpStream::connect(addr).await.unwrap();
        let sock = socket2::SockRef::from(&plain);
        sock.set_tcp_keepalive(&keepalive()).unwrap();
        assert_keepalive(&sock);
    }

    #[test]
    fn a_reset_during_the_dial_is_its_own_reason() {
        for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::ConnectionAborted] {
            let e = ConnectError::from_io(kind.into());
            assert_eq!(e.reason(), "reset", "{kind:?}");
            assert!(ConnectError::REASONS.contains(&e.reason()));
        }
        assert_eq!(ConnectError::from_io(io::ErrorKind::ConnectionRefused.into()).reason(), "refused");
    }
}
