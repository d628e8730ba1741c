//! The client side shared by `rr-load`, `bulk-transfer` and `hold-conns`: where to connect and how (plain TCP,
//! or mutual TLS with the same `ClientConfig` `handshake-load` builds), and the CPU time of a measured window.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::{Duration, Instant},
};

use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::{net::TcpStream, time::timeout};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tokio_util::either::Either;

use crate::load::{
    cpu::{CpuError, CpuTime},
    reason::ErrorReason,
    tls::{ClientTls, KeyExchange, ServerCheck, TlsOptions, TlsSetupError},
};

/// The target and the TLS options of every client tool. With `--ca` the connection is mutual TLS 1.3 (X25519,
/// no resumption), verified like `handshake-load` does; without it, plaintext TCP.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,

    /// Trusted roots for the server's certificate, PEM. Given: mutual TLS; absent: plaintext TCP.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate chain, PEM, leaf first.
    #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,

    /// Private key of --cert, PEM.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Require an X.509-SVID with exactly this SPIFFE ID (no SNI).
    #[arg(long, value_name = "SPIFFE_ID", requires = "ca", conflicts_with = "server_name")]
    pub server_id: Option<String>,

    /// Instead of --server-id: WebPKI verification for this DNS name, sent as SNI.
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,

    /// Time limit for the TCP connect.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,

    /// Time limit for the TLS handshake.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,
}

/// A connection to the target: plain TCP or mutual TLS over it.
pub type Conn = Either<TcpStream, TlsStream<TcpStream>>;

/// Why a client tool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DialSetupError {
    #[error("--target {target:?}: {reason}")]
    Target { target: String, reason: String },
    #[error("--ca needs --server-id or --server-name")]
    NoServerCheck,
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// Dials the target, with TLS when configured. Shared by every connection of a run.
pub struct Dialer {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    /// For the reports.
    pub describe: TargetReport,
}

/// What a report says about the target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// `"mtls"` or `"plaintext"`.
    pub transport: &'static str,
    pub server_id: Option<String>,
    pub server_name: Option<String>,
    pub client_cert: bool,
}

impl Dialer {
    pub fn from_args(args: &TargetArgs) -> Result<Self, DialSetupError> {
        let error = |reason: String| DialSetupError::Target { target: args.target.clone(), reason };
        let (host, _) = args.target.rsplit_once(':').ok_or_else(|| error("expected HOST:PORT".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = args
            .target
            .to_socket_addrs()
            .map_err(|e| error(e.to_string()))?
            .next()
            .ok_or_else(|| error("resolves to no address".into()))?;
        let tls = match &args.ca {
            None => None,
            Some(ca) => {
                let server = match (&args.server_id, &args.server_name) {
                    (Some(id), _) => ServerCheck::spiffe_id(id)?,
                    (None, Some(name)) => ServerCheck::name(name)?,
                    (None, None) => return Err(DialSetupError::NoServerCheck),
                };
                let options = TlsOptions {
                    identity: args.cert.clone().zip(args.key.clone()),
                    ca: ca.clone(),
                    server,
                    key_exchange: KeyExchange::X25519,
                    tls12: false,
                    resume: false,
                };
                let client = ClientTls::build(&options, host)?;
                Some((TlsConnector::from(client.config), client.server_name))
            }
        };
        let describe = TargetReport {
            target: args.target.clone(),
            transport: if tls.is_some() { "mtls" } else { "plaintext" },
            server_id: args.server_id.clone(),
            server_name: args.server_name.clone(),
            client_cert: args.cert.is_some(),
        };
        Ok(Self {
            addr,
            tls,
            connect_timeout: args.connect_timeout,
            handshake_timeout: args.handshake_timeout,
            describe,
        })
    }

    /// TCP connect (Nagle off: requests are single writes) and, with TLS, the full handshake.
    pub async fn dial(&self) -> Result<Conn, ErrorReason> {
        let tcp = match timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ErrorReason::connect(&e)),
            Err(_) => return Err(ErrorReason::ConnectTimeout),
        };
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else { return Ok(Either::Left(tcp)) };
        match timeout(self.handshake_timeout, connector.connect(name.clone(), tcp)).await {
            Ok(Ok(tls)) => Ok(Either::Right(tls)),
            Ok(Err(e)) => Err(ErrorReason::tls(&e)),
            Err(_) => Err(ErrorReason::HandshakeTimeout),
        }
    }
}

/// CPU time of this process and of the server's processes over a measured window.
#[derive(Debug)]
pub struct CpuWindow {
    pids: Vec<u32>,
    start: Instant,
    client: CpuTime,
    server: Option<CpuTime>,
}

/// What a window used.
#[derive(Debug, Clone, Copy)]
pub struct CpuSpent {
    pub elapsed: Duration,
    pub client: CpuTime,
    pub server: Option<CpuTime>,
}

/// CPU time of one side over a window, for the reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    pub user_s: f64,
    pub system_s: f64,
    pub total_s: f64,
    /// CPUs kept busy on average.
    pub utilization: f64,
}

impl CpuWindow {
    pub fn start(server_pids: &[u32]) -> Result<Self, CpuError> {
        let server = if server_pids.is_empty() { None } else { Some(CpuTime::of_pids(server_pids)?) };
        Ok(Self { pids: server_pids.to_vec(), start: Instant::now(), client: CpuTime::of_self()?, server })
    }

    pub fn finish(self) -> Result<CpuSpent, CpuError> {
        let elapsed = self.start.elapsed();
        let client = CpuTime::of_self()? - self.client;
        let server = match self.server {
            Some(before) => Some(CpuTime::of_pids(&self.pids)? - before),
            None => None,
        };
        Ok(CpuSpent { elapsed, client, server })
    }
}

impl ProcessCpu {
    pub fn new(cpu: CpuTime, elapsed: Duration, pids: &[u32]) -> Self {
        let total_s = cpu.total().as_secs_f64();
        let elapsed_s = elapsed.as_secs_f64();
        Self {
            pids: pids.to_vec(),
            user_s: cpu.user.as_secs_f64(),
            system_s: cpu.system.as_secs_f64(),
            total_s,
            utilization: if elapsed_s > 0.0 { total_s / elapsed_s } else { 0.0 },
        }
    }
}

/// The multi-thread runtime a client tool runs on, with `threads` workers.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()
}

/// The runtime and CPU-accounting options of the client tools that measure a server (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Runtime worker threads [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Also report these processes' CPU time (repeat for several).
    #[arg(long, value_name = "PID")]
    pub server_pid: Vec<u32>,
}

impl RunArgs {
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads)
    }

    /// A runtime with [`Self::threads`] workers.
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime, String> {
        runtime(self.threads()).map_err(|e| format!("starting the runtime: {e}"))
    }

    /// Starts counting the `--server-pid` processes' CPU.
    pub fn cpu_window(&self) -> Result<CpuWindow, String> {
        CpuWindow::start(&self.server_pid).map_err(|e| e.to_string())
    }
}

/// The default worker count: the CPUs this process may run on (so `taskset -c 0` gives one).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
