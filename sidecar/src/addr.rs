//! Address newtypes. A function's signature says which address it wants: where we listen, where we connect,
//! and who connected to us are different roles and never mix.
//!
//! Addresses in the configuration are `HOST:PORT` or `unix:/path` (SPEC §2).

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

/// A `HOST:PORT` or `unix:/path` address as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IP address and port: no name resolution needed.
    Socket(SocketAddr),
    /// A host name and port, resolved when used.
    Name { host: String, port: u16 },
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// Why an address string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0:?} is not HOST:PORT or unix:/path")]
    Syntax(String),
    #[error("{0:?}: the port is not a number from 0 to 65535")]
    Port(String),
    #[error("{0:?}: empty unix socket path")]
    UnixPath(String),
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddrError::UnixPath(s.to_string()));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Addr::Socket(sa));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| AddrError::Syntax(s.to_string()))?;
        if host.is_empty() || host.contains(['/', ' ', '[', ']', ':']) {
            return Err(AddrError::Syntax(s.to_string()));
        }
        let port = port.parse::<u16>().map_err(|_| AddrError::Port(s.to_string()))?;
        // `localhost` is loopback by definition (RFC 6761): no lookup at every connection, and no /etc/hosts
        // entry can send plaintext elsewhere.
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(Addr::Socket(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port)));
        }
        Ok(Addr::Name { host: host.to_string(), port })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Socket(sa) => write!(f, "{sa}"),
            Addr::Name { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Addr {
    /// Whether traffic to or from this address stays on this host: a loopback IP, `localhost`, or a Unix
    /// socket. Plaintext only ever travels to such addresses.
    pub fn is_local(&self) -> bool {
        match self {
            Addr::Socket(sa) => sa.ip().is_loopback(),
            Addr::Name { .. } => false,
            Addr::Unix(_) => true,
        }
    }

    /// The IP, when the address is an IP literal (used as the TLS server name for outbound dials).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Addr::Socket(sa) => Some(sa.ip()),
            _ => None,
        }
    }
}

/// Where a listener accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr(pub Addr);

/// Where a connection is forwarded to: the local app (inbound) or the peer sidecar (outbound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAddr(pub Addr);

/// The remote end of an accepted connection, for logs. Unix peers are usually unnamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Tcp(SocketAddr),
    Unix,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ConnectAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Tcp(sa) => write!(f, "{sa}"),
            ClientAddr::Unix => f.write_str("unix"),
        }
    }
}

impl ClientAddr {
    /// Whether the peer connected from this host (loopback IP or a Unix socket).
    pub fn is_local(&self) -> bool {
        match self {
            ClientAddr::Tcp(sa) => sa.ip().is_loopback(),
            ClientAddr::Unix => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let cases = [
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("0.0.0.0:15006", false),
            ("api.internal:15006", false),
            ("unix:/run/app.sock", true),
        ];
        for (text, local) in cases {
            let addr: Addr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(addr.is_local(), local, "{text}");
            assert_eq!(addr.to_string(), text);
        }
    }

    #[test]
    fn localhost_is_loopback_without_a_lookup() {
        assert_eq!("localhost:8080".parse::<Addr>().unwrap(), Addr::Socket("127.0.0.1:8080".parse().unwrap()));
        assert!("localhost:8080".parse::<Addr>().unwrap().is_local());
        // Any other name is resolved when used, and is never assumed local.
        assert!(!"localhost.example.org:80".parse::<Addr>().unwrap().is_local());
    }

    #[test]
    fn rejects_malformed() {
        for text in ["", "8080", "host:", "host:99999", ":80", "unix:", "a b:80", "http://x:80"] {
            assert!(text.parse::<Addr>().is_err(), "{text:?} should not parse");
        }
    }
}
