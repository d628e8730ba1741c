//! The command line (SPEC §1), parsed with clap derive.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "certs-agent",
    version,
    about = "Issues X.509-SVIDs from a trust domain's root CA and publishes them atomically"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the trust domain's root CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue one X.509-SVID and publish svid.pem, svid_key.pem and svid_bundle.pem (and
    /// svid_bundle.spiffe.json) atomically into DIR.
    Issue(IssueArgs),
    /// Issue, then keep renewing at half the lifetime (±10% jitter); follow CA rotations; retry with backoff.
    #[command(after_help = "Stops on SIGTERM/SIGINT (exit 0), leaving the published SVID in place. \
                            Exit status 1 when it cannot start (CA, TTL, output directory, --metrics address), \
                            2 on usage errors.")]
    Run(RunArgs),
    /// Print what a certificate says and whether it is a valid X.509-SVID (and why not).
    #[command(after_help = "Exit status: 0 only when the chain verified against a trust bundle and every rule \
                            holds; 1 when the certificate is not a valid X.509-SVID, or when there is no bundle \
                            to verify its chain (no --bundle and no svid_bundle.pem beside the certificate: the \
                            leaf rules are still checked and printed, and the verdict says the chain was NOT \
                            verified); 2 on usage errors or unreadable input.")]
    Inspect(InspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed root for a trust domain: CA_DIR/ca.pem, ca_key.pem (0600) and bundle.pem.
    /// Refuses to overwrite an existing CA.
    Init(CaInitArgs),
    /// Add a new root: trusted (in bundle.pem) at once, signing from --activate-after on.
    Rotate(CaRotateArgs),
    /// Drop the roots that no longer sign from bundle.pem and delete their keys, once every SVID they signed
    /// has expired.
    #[command(after_help = "Exit status: 0 retired, 3 not yet (SVIDs of the old root are still valid, or the \
                            new root is still pending: retry later), 1 on other errors.")]
    Retire(CaRetireArgs),
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Trust domain name, e.g. example.org (no scheme).
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// Directory for the CA files (created with mode 0700 if missing).
    #[arg(long, value_name = "CA_DIR")]
    pub dir: PathBuf,
    /// Lifetime of the root (ms, s, m, h).
    #[arg(long, value_name = "DURATION", default_value = "8760h")]
    pub ttl: String,
}

/// What to issue and where to publish it: shared by `issue` and `run`.
#[derive(Debug, Args)]
pub struct SvidArgs {
    /// CA directory made by `certs-agent ca init` (may be shared by several agents and commands).
    #[arg(long, value_name = "CA_DIR")]
    pub ca_dir: PathBuf,
    /// SPIFFE ID of the workload, in the CA's trust domain, with a path.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub id: String,
    /// Identity directory to publish into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Lifetime of each SVID (ms, s, m, h); must end before the signing root does.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub svid: SvidArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A PEM file (leaf first) or an identity directory (its svid.pem). The chain is verified against the
    /// svid_bundle.pem in the certificate's directory when present.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Trust bundle (PEM, or a SPIFFE bundle in JSON) to verify the chain against; overrides the
    /// svid_bundle.pem beside the certificate.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CaRotateArgs {
    /// CA directory made by `certs-agent ca init`.
    #[arg(long, value_name = "CA_DIR")]
    pub dir: PathBuf,
    /// Lifetime of the new root (ms, s, m, h).
    #[arg(long, value_name = "DURATION", default_value = "8760h")]
    pub ttl: String,
    /// When the new root starts signing. Default: when the last SVID issued so far expires, so every workload
    /// renews, and receives the new bundle, before any SVID signed by the new root exists.
    #[arg(long, value_name = "DURATION")]
    pub activate_after: Option<String>,
}

#[derive(Debug, Args)]
pub struct CaRetireArgs {
    /// CA directory made by `certs-agent ca init`.
    #[arg(long, value_name = "CA_DIR")]
    pub dir: PathBuf,
    /// Retire even though SVIDs signed by the old roots are still valid (they stop verifying at once).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub svid: SvidArgs,
    /// Serve /metrics, /ready and /live on this address (HOST:PORT; port 0 picks one, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Longest wait between two attempts after a failure (ms, s, m, h).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub retry_max: String,
    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Test hook: renew back to back instead of at half-life.
    #[arg(long, hide = true)]
    pub churn: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
