//! `certs-agent`: the command-line front of the certs-agent library. Errors print as one line,
//! `certs-agent: error: <reason>`.
#![forbid(unsafe_code)]

mod cli;

use std::{process::ExitCode, time::Duration};

use certs_agent::{
    Ca, CaStore, TtlBeyondCa,
    duration::{self, Zero},
    inspect, publish,
    run::{self, RunConfig},
    validity::rfc3339,
};
use clap::Parser;
use policy::TrustDomain;
use time::OffsetDateTime;

use cli::{
    CaCommand, CaInitArgs, CaRetireArgs, CaRotateArgs, Cli, Command, InspectArgs, IssueArgs, LogFormat, RunArgs,
};

/// A failure and the exit status it maps to.
struct Failure {
    message: String,
    status: u8,
}

/// Operational failures exit 1; usage errors and (for inspect) unreadable input exit 2, like clap's own; a
/// retirement that must wait exits 3.
const STATUS_FAILED: u8 = 1;
const STATUS_USAGE: u8 = 2;
const STATUS_NOT_YET: u8 = 3;

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
        Command::Ca { command: CaCommand::Rotate(args) } => ca_rotate(&args),
        Command::Ca { command: CaCommand::Retire(args) } => ca_retire(&args),
        Command::Issue(args) => issue(&args),
        Command::Run(args) => run(&args),
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

fn parse_duration(flag: &str, text: &str, zero: Zero) -> Result<Duration, Failure> {
    duration::parse(text, zero).map_err(|e| Failure::usage(format!("{flag}: {e}")))
}

fn ca_init(args: &CaInitArgs) -> Result<u8, Failure> {
    let trust_domain = TrustDomain::parse(&args.trust_domain)
        .map_err(|e| Failure::usage(format!("invalid trust domain {:?}: {e}", args.trust_domain)))?;
    let ttl = parse_duration("--ttl", &args.ttl, Zero::Refused)?;
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

fn ca_rotate(args: &CaRotateArgs) -> Result<u8, Failure> {
    let ttl = parse_duration("--ttl", &args.ttl, Zero::Refused)?;
    // Zero is a valid activation delay (sign at once), unlike a zero lifetime.
    let activate_after = args
        .activate_after
        .as_deref()
        .map(|text| parse_duration("--activate-after", text, Zero::Allowed))
        .transpose()?;
    let mut store = CaStore::open(&args.dir).map_err(Failure::failed)?;
    let now = OffsetDateTime::now_utc();
    let rotation = store.rotate(ttl, activate_after, now).map_err(Failure::failed)?;
    println!(
        "added root {} ({}, expires {}); {} now trusts {} roots; it signs new SVIDs from {}",
        rotation.serial,
        rotation.subject,
        rfc3339(rotation.not_after),
        store.dir().bundle().display(),
        rotation.bundle_len,
        rfc3339(rotation.activate_at),
    );
    Ok(0)
}

fn ca_retire(args: &CaRetireArgs) -> Result<u8, Failure> {
    let mut store = CaStore::open(&args.dir).map_err(Failure::failed)?;
    let retirement = match store.retire(args.force, OffsetDateTime::now_utc()) {
        Ok(r) => r,
        Err(e) if e.is_temporary() => return Err(Failure { message: e.to_string(), status: STATUS_NOT_YET }),
        Err(e) => return Err(Failure::failed(e)),
    };
    for (serial, until) in &retirement.forced_live {
        eprintln!(
            "certs-agent: warning: --force: SVIDs signed by root {serial} were valid until {} and no longer verify",
            rfc3339(*until)
        );
    }
    for (serial, subject) in &retirement.retired {
        println!("retired root {serial} ({subject}); its key is deleted");
    }
    println!("{} now trusts {} root(s)", store.dir().bundle().display(), retirement.bundle_len);
    Ok(0)
}

fn issue(IssueArgs { svid: args }: &IssueArgs) -> Result<u8, Failure> {
    let ttl = parse_duration("--ttl", &args.ttl, Zero::Refused)?;
    let mut store = CaStore::open(&args.ca_dir).map_err(Failure::failed)?;
    let now = OffsetDateTime::now_utc();
    let id = certs_agent::Issuer::new(store.snapshot(now).map_err(Failure::failed)?)
        .workload_id(&args.id)
        .map_err(Failure::usage)?;
    let svid = store.issue(&id, ttl, now, TtlBeyondCa::Refuse).map_err(Failure::failed)?;
    drop(store);
    svid.verify(OffsetDateTime::now_utc()).map_err(Failure::failed)?;
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

fn run(args: &RunArgs) -> Result<u8, Failure> {
    let svid = &args.svid;
    let ttl = parse_duration("--ttl", &svid.ttl, Zero::Refused)?;
    let retry_max = parse_duration("--retry-max", &args.retry_max, Zero::Refused)?;
    let id = run::preflight(&svid.ca_dir, &svid.id, ttl, &svid.out)
        .map_err(|e| if e.is_usage() { Failure::usage(e) } else { Failure::failed(e) })?;
    init_logging(args.log_format);
    let config = RunConfig {
        ca_dir: svid.ca_dir.clone(),
        id,
        out: svid.out.clone(),
        ttl,
        retry_max,
        metrics: args.metrics,
        churn: args.churn,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run::run(config)).map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        if e.is_usage() { Failure::usage(e) } else { Failure::failed(e) }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn inspect(args: &InspectArgs) -> Result<u8, Failure> {
    let report =
        inspect::inspect(&args.path, args.bundle.as_deref(), OffsetDateTime::now_utc()).map_err(Failure::usage)?;
    print!("{report}");
    Ok(if report.is_valid() { 0 } else { STATUS_FAILED })
}
