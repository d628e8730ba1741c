//! A plaintext TCP echo server: the app behind a sidecar (or stunnel, HAProxy, nginx) when measuring
//! handshakes with `handshake-load --send BYTES`. Every connection gets back what it sent, then a FIN
//! once it half-closed.
//!
//! ```sh
//! cargo run --release -p benches --example echo -- 127.0.0.1:8080
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("echo: binding {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        // Echoed chunks go out as they come: Nagle plus the peer's delayed ACK would stall the tail ~40 ms.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
    }
}
