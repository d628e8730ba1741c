//! `handshake-load`: see `benches/README.md` and `handshake-load --help`.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    process::ExitCode,
};

use benches::{
    histogram,
    load::{
        self,
        cli::Args,
        config::Config,
        tally::{LATENCY_UNIT_PER_MS, Tally},
    },
};
use clap::Parser;

fn main() -> ExitCode {
    benches::cli::exit_status("handshake-load", run(Args::parse()))
}

/// Exit 0 once the run completed, whatever it counted (errors are results, in the report); 1 when it could
/// not run; 2 for a usage error (clap).
fn run(args: Args) -> Result<(), String> {
    let config = Config::from_args(args).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (report, tally) = runtime.block_on(load::run(&config, true)).map_err(|e| e.to_string())?;
    if let Some(path) = &config.histogram_out {
        write_histogram(path, &tally).map_err(|e| format!("--histogram-out {}: {e}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let printed = if config.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from).and_then(|()| writeln!(out))
    } else {
        write!(out, "{report}")
    };
    printed.and_then(|()| out.flush()).map_err(|e| format!("writing the report: {e}"))
}

fn write_histogram(path: &Path, tally: &Tally) -> std::io::Result<()> {
    let mut file = BufWriter::new(File::create(path)?);
    histogram::write_distribution(&tally.latency, LATENCY_UNIT_PER_MS, &mut file)?;
    file.flush()
}
