//! The command line (SPEC §1), parsed with clap derive.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Issue one X.509-SVID and publish svid.pem, svid_key.pem and svid_bundle.pem atomically into DIR.
    Issue(IssueArgs),
    /// Print what a certificate says and whether it is a valid X.509-SVID (and why not).
    #[command(after_help = "Exit status: 0 when the certificate is a valid X.509-SVID, 1 when it is not, \
                            2 on usage errors or unreadable input.")]
    Inspect(InspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed root for a trust domain: CA_DIR/ca.pem, ca_key.pem (0600) and bundle.pem.
    /// Refuses to overwrite an existing CA.
    Init(CaInitArgs),
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

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// CA directory made by `certs-agent ca init`.
    #[arg(long, value_name = "CA_DIR")]
    pub ca_dir: PathBuf,
    /// SPIFFE ID of the workload, in the CA's trust domain, with a path.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub id: String,
    /// Identity directory to publish into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Lifetime of the SVID (ms, s, m, h); must end before the CA does.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A PEM file (leaf first) or an identity directory (svid.pem, and svid_bundle.pem when present).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Trust bundle (PEM) to verify the chain against; overrides the directory's svid_bundle.pem.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}
