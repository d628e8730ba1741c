//! `bench-backend`: the plaintext app behind the servers `benches/compare/` measures: an echo listener and a
//! bulk-transfer listener. See [`benches::backend`].
//!
//! ```sh
//! bench-backend --echo 127.0.0.1:19100 --bulk 127.0.0.1:19101
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;

use benches::backend;
use clap::Parser;
use tokio::net::TcpListener;

/// Plaintext echo and bulk-transfer servers, on one thread.
#[derive(Parser)]
#[command(name = "bench-backend", version)]
struct Args {
    /// Echo every connection's bytes back.
    #[arg(long, value_name = "HOST:PORT")]
    echo: Option<String>,
    /// Serve `bulk-transfer` requests.
    #[arg(long, value_name = "HOST:PORT")]
    bulk: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.echo.is_none() && args.bulk.is_none() {
        eprintln!("bench-backend: give --echo, --bulk or both");
        return ExitCode::from(2);
    }
    let bind = |addr: String| async move {
        TcpListener::bind(&addr).await.map_err(|e| format!("bench-backend: binding {addr}: {e}"))
    };
    if let Some(addr) = args.echo {
        match bind(addr).await {
            Ok(listener) => drop(tokio::spawn(backend::echo(listener))),
            Err(e) => return fail(&e),
        }
    }
    if let Some(addr) = args.bulk {
        match bind(addr).await {
            Ok(listener) => drop(tokio::spawn(backend::bulk(listener))),
            Err(e) => return fail(&e),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}
