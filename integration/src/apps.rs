//! Plaintext "apps" behind an inbound sidecar: real TCP servers on loopback that record what reached them.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A running app: its address, how many connections it accepted, and the requests it received.
#[derive(Clone)]
pub struct App {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl App {
    /// Starts an app that runs `handler` on each connection; `handler` gets the stream and returns what it
    /// read (recorded in [`App::received`]).
    pub async fn spawn<F, Fut>(handler: F) -> anyhow::Result<Self>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let app = Self {
            addr: listener.local_addr()?,
            accepted: Arc::new(AtomicUsize::new(0)),
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let (accepted, received) = (app.accepted.clone(), app.received.clone());
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (handler, received) = (handler.clone(), received.clone());
                tokio::spawn(async move {
                    let got = handler(stream).await;
                    received.lock().unwrap_or_else(|e| e.into_inner()).push(got);
                });
            }
        });
        Ok(app)
    }

    /// Reads until EOF, then answers `reply(request)` and closes.
    pub async fn request_reply(reply: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> anyhow::Result<Self> {
        let reply = Arc::new(reply);
        Self::spawn(move |mut s| {
            let reply = reply.clone();
            async move {
                let mut req = Vec::new();
                let _ = s.read_to_end(&mut req).await;
                let _ = s.write_all(&reply(&req)).await;
                let _ = s.shutdown().await;
                req
            }
        })
        .await
    }

    /// Echoes every byte back until EOF.
    pub async fn echo() -> anyhow::Result<Self> {
        Self::spawn(|mut s| async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
            Vec::new()
        })
        .await
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every request recorded so far (one per finished connection).
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Deterministic pseudo-random bytes (so a corrupted or reordered byte is detected).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Lowercase hex sha256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
