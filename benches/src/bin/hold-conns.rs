//! `hold-conns`: opens N mutual TLS connections through the server under test to an echo server and holds them
//! idle, so the server's memory per open connection can be read. See [`benches::hold`].
#![forbid(unsafe_code)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use benches::{
    client::{self, Dialer, TargetArgs},
    hold::{self, Report},
};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Opens --connections connections (each confirmed by a 16-byte echo), writes the report to --ready-file,
/// holds them until --hold has passed or SIGTERM/SIGINT, probes them all again and prints the final report.
#[derive(Parser)]
#[command(name = "hold-conns", version)]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// How many connections to open.
    #[arg(long, value_name = "N")]
    connections: usize,
    /// How many to open at a time.
    #[arg(long, value_name = "N", default_value_t = 32)]
    concurrency: usize,
    /// Hold them this long at most.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    hold: Duration,
    /// Once they are open, write the report (JSON) here (atomically: a temporary file, then a rename).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Runtime worker threads [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// Bounds opening or probing one connection.
const PER_CONNECTION: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    benches::cli::exit_status("hold-conns", run(Args::parse()))
}

fn run(args: Args) -> Result<(), String> {
    let dialer = Arc::new(Dialer::from_args(&args.target).map_err(|e| e.to_string())?);
    let runtime = client::runtime(args.threads.unwrap_or_else(client::default_threads))
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let report = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
        let opened = hold::open(dialer.clone(), args.connections, args.concurrency, PER_CONNECTION).await;
        let mut report = Report::new(dialer.describe.clone(), args.connections, &opened);
        if let Some(path) = &args.ready_file {
            write_atomically(path, &report).map_err(|e| format!("--ready-file {}: {e}", path.display()))?;
        }
        let held = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(args.hold) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        report.held_s = Some(held.elapsed().as_secs_f64());
        report.alive_after_hold = Some(hold::still_open(opened.conns, args.concurrency, PER_CONNECTION).await);
        Ok::<_, String>(report)
    })?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the report: {e}"))
}

fn write_atomically(path: &Path, report: &Report) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(report).map_err(std::io::Error::from)?)?;
    std::fs::rename(tmp, path)
}
