//! `certs-agent`: the command-line front of the certs-agent library. Errors print as one line,
//! `certs-agent: error: <reason>`.
#![forbid(unsafe_code)]

mod cli;

use std::{process::ExitCode, time::Duration};

use certs_agent::{Ca, Issuer, inspect, publish, ttl, validity::rfc3339};
use clap::Parser;
use policy::TrustDomain;
use time::OffsetDateTime;

use cli::{CaCommand, CaInitArgs, Cli, Command, InspectArgs, IssueArgs};

/// A failure and the exit status it maps to.
struct Failure {
    message: String,
    status: u8,
}

/// Operational failures exit 1; usage errors and (for inspect) unreadable input exit 2, like clap's own.
const STATUS_FAILED: u8 = 1;
const STATUS_USAGE: u8 = 2;

impl Failure {
    fn failed(e: impl std::fmt::Display) -> Self {
        Failure { message: e.to_string(), status: STATUS_FAILED }
    }
    fn usage(e: impl std::fmt::Display) -> Self {
        Failure { message: e.to_string(), status: STATUS_USAGE }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca { command: CaCommand::Init(args) } => ca_init(&args),
        Command::Issue(args) => issue(&args),
        Command::Inspect(args) => inspect(&args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("certs-agent: error: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn parse_ttl(text: &str) -> Result<Duration, Failure> {
    ttl::parse_ttl(text).map_err(|e| Failure::usage(format!("--ttl: {e}")))
}

fn ca_init(args: &CaInitArgs) -> Result<u8, Failure> {
    let trust_domain = TrustDomain::parse(&args.trust_domain)
        .map_err(|e| Failure::usage(format!("invalid trust domain {:?}: {e}", args.trust_domain)))?;
    let ttl = parse_ttl(&args.ttl)?;
    let ca = Ca::init(&args.dir, &trust_domain, ttl, OffsetDateTime::now_utc()).map_err(Failure::failed)?;
    println!(
        "created root CA for spiffe://{} in {} (serial {}, expires {})",
        ca.trust_domain(),
        args.dir.display(),
        ca.serial(),
        rfc3339(ca.not_after())
    );
    Ok(0)
}

fn issue(args: &IssueArgs) -> Result<u8, Failure> {
    let ttl = parse_ttl(&args.ttl)?;
    let issuer = Issuer::new(Ca::load(&args.ca_dir).map_err(Failure::failed)?);
    let id = issuer.workload_id(&args.id).map_err(Failure::usage)?;
    let now = OffsetDateTime::now_utc();
    let svid = issuer.issue(&id, ttl, now).map_err(Failure::failed)?;
    svid.verify(now).map_err(Failure::failed)?;
    let published = publish::publish(&args.out, &svid.payload()).map_err(Failure::failed)?;
    for e in &published.cleanup_errors {
        eprintln!("certs-agent: warning: {e}");
    }
    println!(
        "issued {} (serial {}, expires {}) into {}",
        svid.id,
        svid.serial,
        rfc3339(svid.not_after),
        args.out.display()
    );
    Ok(0)
}

fn inspect(args: &InspectArgs) -> Result<u8, Failure> {
    let report =
        inspect::inspect(&args.path, args.bundle.as_deref(), OffsetDateTime::now_utc()).map_err(Failure::usage)?;
    print!("{report}");
    Ok(if report.is_valid() { 0 } else { STATUS_FAILED })
}
