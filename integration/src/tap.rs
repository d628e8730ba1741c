//! A TCP relay that records the bytes crossing it, placed on the wire between two sidecars to look at what
//! an eavesdropper would see.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The bytes seen on one connection through the tap.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    /// Client -> server.
    pub upstream: Vec<u8>,
    /// Server -> client.
    pub downstream: Vec<u8>,
}

pub struct Tap {
    pub addr: SocketAddr,
    captures: Arc<Mutex<Vec<Arc<Mutex<Capture>>>>>,
}

impl Tap {
    /// Relays every connection to `target`, recording both directions.
    pub async fn spawn(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let tap = Self { addr: listener.local_addr()?, captures: Arc::default() };
        let captures = tap.captures.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let capture = Arc::new(Mutex::new(Capture::default()));
                captures.lock().unwrap().push(capture.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = relay(cr, sw, capture.clone(), true);
                    let down = relay(sr, cw, capture, false);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(tap)
    }

    /// Every connection's capture so far.
    pub fn captures(&self) -> Vec<Capture> {
        self.captures.lock().unwrap().iter().map(|c| c.lock().unwrap().clone()).collect()
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    capture: Arc<Mutex<Capture>>,
    upstream: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut c = capture.lock().unwrap();
                    let side = if upstream { &mut c.upstream } else { &mut c.downstream };
                    side.extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// TLS records in `bytes` as (content type, payload), until the bytes run out or stop looking like TLS.
pub fn tls_records(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let (ty, len) = (rest[0], u16::from_be_bytes([rest[3], rest[4]]) as usize);
        if !(20..=24).contains(&ty) || rest[1] != 3 || rest.len() < 5 + len {
            break;
        }
        out.push((ty, &rest[5..5 + len]));
        rest = &rest[5 + len..];
    }
    out
}
