//! Continuous traffic for tests that change certificates under load: a new connection every `every`, each a
//! full round trip through an echo app, every outcome recorded with its time (and, over TLS, the serial of the
//! certificate the server presented).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rustls::ClientConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

use crate::tls_client;

/// Where the traffic goes.
#[derive(Clone)]
pub enum Target {
    /// Plaintext, e.g. an outbound sidecar listener.
    Plain(SocketAddr),
    /// Mutual TLS straight to an inbound sidecar listener.
    Tls(SocketAddr, Arc<ClientConfig>),
}

/// One connection's outcome.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    pub error: Option<String>,
    /// Over TLS: the serial of the server's certificate.
    pub served_serial: Option<String>,
}

/// A running traffic generator.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Attempt>>,
}

/// How long one round trip may take before it counts as failed.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

impl Traffic {
    /// Starts connecting to `target` every `every` (one connection at a time).
    pub fn start(target: Target, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut attempts = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let at = Instant::now();
                let payload = format!("request {n}");
                let outcome = tokio::time::timeout(ROUND_TRIP_TIMEOUT, round_trip(&target, payload.as_bytes())).await;
                let attempt = match outcome {
                    Ok(Ok((reply, serial))) if reply == payload.as_bytes() => {
                        Attempt { at, error: None, served_serial: serial }
                    }
                    Ok(Ok((reply, serial))) => Attempt {
                        at,
                        error: Some(format!("wrong reply {:?}", String::from_utf8_lossy(&reply))),
                        served_serial: serial,
                    },
                    Ok(Err(e)) => Attempt { at, error: Some(e.to_string()), served_serial: None },
                    Err(_) => Attempt { at, error: Some("timed out".into()), served_serial: None },
                };
                attempts.push(attempt);
            }
            attempts
        });
        Traffic { stop, task }
    }

    /// Stops and returns every attempt.
    pub async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

async fn round_trip(target: &Target, payload: &[u8]) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    let mut reply = Vec::new();
    match target {
        Target::Plain(addr) => {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(payload).await?;
            s.shutdown().await?;
            s.read_to_end(&mut reply).await?;
            Ok((reply, None))
        }
        Target::Tls(addr, config) => {
            let mut tls = tls_client::connect(*addr, config.clone()).await?;
            let serial = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| policy::svid::leaf_details(leaf).ok())
                .map(|d| d.serial_hex);
            tls.write_all(payload).await?;
            tls.shutdown().await?;
            tls.read_to_end(&mut reply).await?;
            Ok((reply, serial))
        }
    }
}

/// The failed attempts.
pub fn failures(attempts: &[Attempt]) -> Vec<&Attempt> {
    attempts.iter().filter(|a| a.error.is_some()).collect()
}

/// The serials the server presented, in order, consecutive repeats removed.
pub fn served_serials(attempts: &[Attempt]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for serial in attempts.iter().filter_map(|a| a.served_serial.clone()) {
        if out.last() != Some(&serial) {
            out.push(serial);
        }
    }
    out
}
