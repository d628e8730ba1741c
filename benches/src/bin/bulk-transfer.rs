//! `bulk-transfer`: one connection moves --bytes one way through the server under test to `bench-backend
//! --bulk`, and reports MB/s and CPU. See [`benches::bulk`].
#![forbid(unsafe_code)]

use std::{io::Write, process::ExitCode, sync::Arc};

use benches::{
    bulk::{self, Direction, Report},
    client::{Dialer, RunArgs, TargetArgs},
};
use clap::Parser;

/// Moves --bytes over one connection (the connection and its handshake are made first, untimed) and reports
/// the throughput and the CPU it took.
#[derive(Parser)]
#[command(name = "bulk-transfer", version)]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Bytes to move: a number with an optional K, M or G (powers of 1024), e.g. 1G.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    bytes: u64,
    /// down: backend to client (the server under test encrypts); up: client to backend (it decrypts).
    #[arg(long, value_enum, default_value_t = Direction::Down)]
    direction: Direction,
    #[command(flatten)]
    run: RunArgs,
    /// Print one JSON object (schema bulk-transfer/1) instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (number, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => n.checked_shl(shift).filter(|v| v >> shift == n).ok_or_else(|| format!("{text}: too large")),
        _ => Err(format!("{text:?} is not a positive size (e.g. 1G, 256M, 4096)")),
    }
}

fn main() -> ExitCode {
    benches::cli::exit_status("bulk-transfer", run(Args::parse()))
}

fn run(args: Args) -> Result<(), String> {
    let dialer = Arc::new(Dialer::from_args(&args.target).map_err(|e| e.to_string())?);
    let runtime = args.run.runtime()?;
    let (report, _) = runtime.block_on(async {
        let mut conn = dialer.dial().await.map_err(|reason| format!("connecting: {reason}"))?;
        let window = args.run.cpu_window()?;
        bulk::transfer(&mut conn, args.direction, args.bytes).await.map_err(|e| format!("transfer: {e}"))?;
        let spent = window.finish().map_err(|e| e.to_string())?;
        let report = Report::new(dialer.describe.clone(), args.direction, args.bytes, &spent, &args.run.server_pid);
        Ok::<_, String>((report, conn))
    })?;
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from).and_then(|()| writeln!(out))
    } else {
        write!(out, "{report}")
    };
    printed.and_then(|()| out.flush()).map_err(|e| format!("writing the report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
