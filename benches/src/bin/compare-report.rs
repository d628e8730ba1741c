//! `compare-report`: medians, ratios and PASS/FAIL per target from the runs `benches/compare/run.sh`
//! recorded. See [`benches::compare`].
//!
//! ```sh
//! compare-report RUN_DIR --json benches/results/compare.json --markdown benches/results/compare.md
//! ```
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use benches::compare::{Input, Summary, markdown};
use clap::Parser;

/// Summarizes a comparison run directory (meta.json, runs.jsonl) as JSON and markdown; prints the markdown.
#[derive(Parser)]
#[command(name = "compare-report", version)]
struct Args {
    /// The directory run.sh wrote its runs to.
    dir: PathBuf,
    /// Write the JSON summary (schema compare/1) here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the markdown tables here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

fn main() -> ExitCode {
    benches::cli::exit_status("compare-report", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), String> {
    let input = Input::read(&args.dir).map_err(|e| e.to_string())?;
    let summary = Summary::build(&input);
    let text = markdown::render(&summary);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())? + "\n";
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    print!("{text}");
    Ok(())
}
