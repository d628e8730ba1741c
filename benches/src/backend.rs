//! `bench-backend`: the plaintext app behind every server under test. An echo listener (for `handshake-load
//! --send`, `rr-load` and `hold-conns`) and a bulk listener (for `bulk-transfer`, protocol in [`crate::bulk`]).

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::bulk;

/// Echoes every connection: what comes in goes back, then a FIN once the client half-closed.
pub async fn echo(listener: TcpListener) {
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

/// Serves the bulk protocol: sends or receives the bytes each request asks for.
pub async fn bulk(listener: TcpListener) {
    let data: Arc<[u8]> = bulk::chunk();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let data = data.clone();
        tokio::spawn(async move {
            let _ = bulk::serve(stream, &data).await;
        });
    }
}
