//! `rr-load`: small request/response pairs over kept-alive connections, or a new connection per request, against
//! an echo server behind the server under test. See [`benches::rr`] and `benches/README.md`.
#![forbid(unsafe_code)]

use std::{io::Write, process::ExitCode, sync::Arc, time::Duration};

use benches::{
    client::{Dialer, RunArgs, TargetArgs},
    rr::{self, Plan, Report},
};
use clap::Parser;

/// Closed-loop request/response load: each connection keeps one request of --size bytes outstanding and
/// reads the same count back. Reports requests/s, latency percentiles and CPU.
#[derive(Parser)]
#[command(name = "rr-load", version)]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Connections, each with one request outstanding.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Bytes per request (and per response).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    size: u32,
    /// A new connection (and TLS handshake, with --ca) per request, timed from the connect.
    #[arg(long)]
    new_connection: bool,
    /// Run this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Time limit per request.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    request_timeout: Duration,
    #[command(flatten)]
    run: RunArgs,
    /// Print one JSON object (schema rr-load/1) instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    benches::cli::exit_status("rr-load", run(Args::parse()))
}

fn run(args: Args) -> Result<(), String> {
    let dialer = Arc::new(Dialer::from_args(&args.target).map_err(|e| e.to_string())?);
    let plan = Plan {
        connections: args.connections as usize,
        size: args.size as usize,
        new_connection: args.new_connection,
        duration: args.duration,
        request_timeout: args.request_timeout,
    };
    let runtime = args.run.runtime()?;
    let window = args.run.cpu_window()?;
    let (tally, _) = runtime.block_on(rr::run(dialer.clone(), plan));
    let spent = window.finish().map_err(|e| e.to_string())?;
    let report = Report::new(dialer.describe.clone(), plan, args.run.threads(), &tally, &spent, &args.run.server_pid);
    print(&report, args.json)
}

fn print(report: &Report, json: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let printed = if json {
        serde_json::to_writer_pretty(&mut out, report).map_err(std::io::Error::from).and_then(|()| writeln!(out))
    } else {
        write!(out, "{report}")
    };
    printed.and_then(|()| out.flush()).map_err(|e| format!("writing the report: {e}"))
}
