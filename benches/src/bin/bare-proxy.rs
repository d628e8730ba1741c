//! `bare-proxy`: a bare tokio-rustls mutual TLS terminator, the floor for the sidecar's own overhead in
//! `benches/compare/`. See [`benches::bare_proxy`].
//!
//! ```sh
//! bare-proxy --cert api/svid.pem --key api/svid_key.pem --ca ca/bundle.pem --route 127.0.0.1:19120=127.0.0.1:19100
//! ```
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use benches::bare_proxy;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Terminates mutual TLS 1.3 (client certificate verified against --ca, nothing else checked) and copies the
/// bytes to a plaintext address. No policy, no metrics, no logs.
#[derive(Parser)]
#[command(name = "bare-proxy", version)]
struct Args {
    /// Server certificate chain, PEM, leaf first.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its private key, PEM.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Roots that client certificates must chain to, PEM.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// LISTEN=FORWARD, both HOST:PORT; repeat for several listeners. Each bound address is printed on stdout
    /// (`bare-proxy: LISTEN -> FORWARD`), so port 0 works.
    #[arg(long, value_name = "LISTEN=FORWARD", required = true, value_parser = parse_route)]
    route: Vec<(SocketAddr, SocketAddr)>,
}

fn parse_route(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (listen, forward) = text.split_once('=').ok_or("expected LISTEN=FORWARD")?;
    let addr = |a: &str| a.parse::<SocketAddr>().map_err(|e| format!("{a:?}: {e}"));
    Ok((addr(listen)?, addr(forward)?))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match bare_proxy::server_config(&args.cert, &args.key, &args.ca) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bare-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bare-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let acceptor = TlsAcceptor::from(config);
        for (listen, forward) in args.route {
            match TcpListener::bind(listen).await {
                Ok(listener) => {
                    // The bound address (port 0 picks one): what a test or a script connects to.
                    if let Ok(bound) = listener.local_addr() {
                        println!("bare-proxy: {bound} -> {forward}");
                    }
                    tokio::spawn(bare_proxy::serve(listener, forward, acceptor.clone()));
                }
                Err(e) => {
                    eprintln!("bare-proxy: binding {listen}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
