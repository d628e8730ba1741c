//! The plan of a run, checked once from the command line: a resolved address, TLS options, the load shape,
//! when to stop and what each connection does after its handshake.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use super::{
    cli::Args,
    conn::{Confirm, Timeouts},
    scheduler::{OpenLoop, Stop},
    tls::{ServerCheck, TlsOptions, TlsSetupError},
};

/// The default run length when neither --duration nor --handshakes is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The default closed-loop concurrency: enough to keep a one-CPU server busy while its clients wait on the
/// network, few enough not to measure a queue.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How handshakes are started.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    Closed { concurrency: usize },
    Open(OpenLoop),
}

/// A checked plan.
#[derive(Debug, Clone)]
pub struct Config {
    /// As given (`HOST:PORT`), for the report.
    pub target: String,
    /// Resolved once at start: no name lookup per connection.
    pub addr: SocketAddr,
    /// The host part of `target`.
    pub host: String,
    pub tls: TlsOptions,
    pub load: Load,
    pub stop: Stop,
    pub confirm: Confirm,
    pub timeouts: Timeouts,
    pub threads: usize,
    pub server_pids: Vec<u32>,
    pub json: bool,
    pub histogram_out: Option<PathBuf>,
}

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--target {target:?}: {reason}")]
    Target { target: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("one of --server-id or --server-name is required")]
    NoServerCheck,
    #[error("--send 0: send at least one byte (or leave --send out)")]
    EmptySend,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let (host, addr) = resolve(&args.target)?;
        let server = match (&args.server_id, &args.server_name) {
            (Some(id), _) => ServerCheck::spiffe_id(id)?,
            (None, Some(name)) => ServerCheck::name(name)?,
            (None, None) => return Err(ConfigError::NoServerCheck),
        };
        let tls = TlsOptions {
            identity: args.cert.zip(args.key),
            ca: args.ca,
            server,
            key_exchange: args.kx,
            tls12: args.tls12,
            resume: args.resume,
        };
        let load = match args.rate {
            Some(rate) => Load::Open(OpenLoop { rate, max_inflight: widen(args.max_inflight) }),
            None => Load::Closed { concurrency: args.concurrency.map_or(DEFAULT_CONCURRENCY, widen) },
        };
        let stop = match (args.handshakes, args.duration) {
            (Some(n), _) => Stop::Count(n),
            (None, d) => Stop::After(d.unwrap_or(DEFAULT_DURATION)),
        };
        let confirm = match (args.send, args.no_confirm) {
            (Some(0), _) => return Err(ConfigError::EmptySend),
            (Some(n), _) => Confirm::Echo(n),
            (None, true) => Confirm::None,
            (None, false) => Confirm::Close,
        };
        let threads = args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), widen);
        Ok(Self {
            target: args.target,
            addr,
            host,
            tls,
            load,
            stop,
            confirm,
            timeouts: Timeouts { connect: args.connect_timeout, handshake: args.handshake_timeout },
            threads,
            server_pids: args.server_pid,
            json: args.json,
            histogram_out: args.histogram_out,
        })
    }
}

fn widen(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Splits `HOST:PORT` (`[V6]:PORT` too) and resolves it to its first address.
fn resolve(target: &str) -> Result<(String, SocketAddr), ConfigError> {
    let error = |reason: String| ConfigError::Target { target: target.to_string(), reason };
    let (host, _) = target.rsplit_once(':').ok_or_else(|| error("expected HOST:PORT".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addr = target
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("resolves to no address".into()))?;
    Ok((host, addr))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(extra: &[&str]) -> Result<Config, ConfigError> {
        let base = ["handshake-load", "--target", "127.0.0.1:4433", "--ca", "ca.pem"];
        Config::from_args(Args::try_parse_from(base.iter().chain(extra)).unwrap())
    }

    #[test]
    fn defaults_are_a_ten_second_closed_loop_confirmed_by_close() {
        let c = config(&["--server-id", "spiffe://example.org/ns/api/sa/api"]).unwrap();
        assert!(matches!(c.load, Load::Closed { concurrency: DEFAULT_CONCURRENCY }));
        assert_eq!(c.stop, Stop::After(DEFAULT_DURATION));
        assert_eq!(c.confirm, Confirm::Close);
        assert_eq!(c.addr, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(c.host, "127.0.0.1");
        assert!(c.tls.identity.is_none());
    }

    #[test]
    fn the_load_shape_and_the_confirmation_follow_the_flags() {
        let c =
            config(&["--server-name", "localhost", "--rate", "250/s", "--handshakes", "100", "--send", "64"]).unwrap();
        assert!(matches!(c.load, Load::Open(OpenLoop { rate: 250.0, max_inflight: 1000 })));
        assert_eq!(c.stop, Stop::Count(100));
        assert_eq!(c.confirm, Confirm::Echo(64));
        assert_eq!(config(&["--server-name", "x", "--no-confirm"]).unwrap().confirm, Confirm::None);
    }

    #[test]
    fn unusable_values_are_named() {
        let err = config(&["--server-id", "spiffe://example.org"]).unwrap_err().to_string();
        assert!(err.contains("--server-id"), "{err}");
        let err = config(&["--server-id", "https://example.org/x"]).unwrap_err().to_string();
        assert!(err.contains("--server-id"), "{err}");
        assert!(matches!(config(&["--server-name", "x", "--send", "0"]), Err(ConfigError::EmptySend)));
        let err = Config::from_args(
            Args::try_parse_from(["handshake-load", "--target", "nocolon", "--ca", "c", "--server-name", "x"]).unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--target"), "{err}");
    }
}
