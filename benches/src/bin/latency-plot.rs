//! `latency-plot`: draws latency distribution files (`handshake-load --histogram-out`, or any HdrHistogram
//! percentile-distribution text) as one SVG percentile plot, one curve per file.
//!
//! ```sh
//! latency-plot sidecar.hgrm nginx.hgrm --label sidecar --label nginx --out latency.svg
//! ```
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use benches::{
    histogram,
    plot::{self, Series},
};
use clap::Parser;

/// Draws latency distribution files as an SVG percentile plot (latency against percentile, log scale).
#[derive(Debug, Parser)]
#[command(name = "latency-plot", version)]
struct Args {
    /// Distribution files (HdrHistogram percentile text, values in ms).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// A curve's name in the legend, in the order of the files [default: the file name].
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,

    /// The plot's title.
    #[arg(long, default_value = "TLS handshake latency by percentile")]
    title: String,

    /// Where to write the SVG.
    #[arg(long, value_name = "FILE.svg")]
    out: PathBuf,
}

fn main() -> ExitCode {
    benches::cli::exit_status("latency-plot", run(Args::parse()))
}

fn run(args: Args) -> Result<(), String> {
    let mut series = Vec::with_capacity(args.files.len());
    for (i, file) in args.files.iter().enumerate() {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let points = histogram::parse_distribution(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let label = args.label.get(i).cloned().unwrap_or_else(|| {
            file.file_stem().map_or_else(|| file.display().to_string(), |s| s.to_string_lossy().into_owned())
        });
        series.push(Series { label, points });
    }
    std::fs::write(&args.out, plot::render_svg(&series, &args.title))
        .map_err(|e| format!("{}: {e}", args.out.display()))
}
