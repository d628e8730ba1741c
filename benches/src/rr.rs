//! `rr-load`: small request/response pairs against an echo server behind the server under test, over kept-alive
//! connections or with a new connection per request, closed loop.
//!
//! Each of `--connections` workers keeps one request outstanding: it writes `--size` bytes and reads until the
//! same count came back, then starts the next. Kept-alive, the connection (and its TLS handshake) is made once,
//! before timing starts, and a request's latency is its write-to-last-byte time; with `--new-connection`, every
//! request is a TCP connect (and handshake, with TLS), the exchange and a close, timed from the connect. Latencies
//! are service times (a closed loop): with one connection on an idle machine that is the unloaded latency.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::timeout,
};

use crate::{
    client::{Conn, CpuSpent, Dialer, ProcessCpu, TargetReport},
    load::report::{Latency, latency_of},
};

/// The `schema` value of the JSON report.
pub const SCHEMA: &str = "rr-load/1";

/// How to load the server.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub connections: usize,
    /// Bytes per request, and per response (the echo returns them).
    pub size: usize,
    pub new_connection: bool,
    pub duration: Duration,
    /// Bounds each request (and each dial).
    pub request_timeout: Duration,
}

/// What the workers counted.
#[derive(Debug, Clone)]
pub struct Tally {
    pub ok: u64,
    pub errors: HashMap<String, u64>,
    /// Request latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        // 1 µs to an hour, 3 significant figures: the bounds are constants, so this cannot fail.
        #[allow(clippy::unwrap_used)]
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        Self { ok: 0, errors: HashMap::new(), latency }
    }

    fn error(&mut self, reason: impl ToString) {
        *self.errors.entry(reason.to_string()).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (reason, n) in other.errors {
            *self.errors.entry(reason).or_insert(0) += n;
        }
        self.latency.add(other.latency).ok();
    }
}

/// Runs `plan` on the current runtime; returns the merged tally and how long the run took.
pub async fn run(dialer: Arc<Dialer>, plan: Plan) -> (Tally, Duration) {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let payload: Arc<[u8]> = (0..plan.size).map(|i| (i % 251) as u8).collect();
    let workers: Vec<_> =
        (0..plan.connections).map(|_| tokio::spawn(worker(dialer.clone(), plan, payload.clone(), deadline))).collect();
    let mut tally = Tally::new();
    for worker in workers {
        match worker.await {
            Ok(t) => tally.merge(t),
            Err(_) => tally.error("worker_panicked"),
        }
    }
    (tally, start.elapsed())
}

async fn worker(dialer: Arc<Dialer>, plan: Plan, payload: Arc<[u8]>, deadline: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut reply = vec![0u8; plan.size];
    let mut kept: Option<Conn> = None;
    while Instant::now() < deadline {
        let dialed = Instant::now();
        let mut conn = match kept.take() {
            Some(conn) => conn,
            None => match timeout(plan.request_timeout, dialer.dial()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(reason)) => {
                    tally.error(reason);
                    backoff(plan).await;
                    continue;
                }
                Err(_) => {
                    tally.error("timeout");
                    continue;
                }
            },
        };
        // A new connection per request is timed from its connect; a kept-alive one from the write.
        let start = if plan.new_connection { dialed } else { Instant::now() };
        match timeout(plan.request_timeout, exchange(&mut conn, &payload, &mut reply)).await {
            Ok(Ok(())) => {
                tally.ok += 1;
                let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latency.saturating_record(us.max(1));
                if plan.new_connection {
                    let _ = conn.shutdown().await;
                } else {
                    kept = Some(conn);
                }
            }
            Ok(Err(reason)) => tally.error(reason),
            Err(_) => tally.error("timeout"),
        }
    }
    if let Some(mut conn) = kept {
        let _ = conn.shutdown().await;
    }
    tally
}

/// After a failed dial on a kept-alive worker: do not spin against a server that is down.
async fn backoff(plan: Plan) {
    if !plan.new_connection {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request: write the payload, read the same number of bytes back.
pub(crate) async fn exchange(conn: &mut Conn, payload: &[u8], reply: &mut [u8]) -> Result<(), String> {
    let io = |e: std::io::Error| crate::load::reason::ErrorReason::tls(&e).to_string();
    conn.write_all(payload).await.map_err(io)?;
    conn.flush().await.map_err(io)?;
    let mut got = 0;
    while got < reply.len() {
        match conn.read(&mut reply[got..]).await {
            Ok(0) => return Err("closed".into()),
            Ok(n) => got += n,
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

/// The `--json` report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    #[serde(flatten)]
    pub target: TargetReport,
    /// `"kept-alive"` or `"new-connection"`.
    pub mode: &'static str,
    pub connections: usize,
    pub size_bytes: usize,
    pub threads: usize,
    pub elapsed_s: f64,
    pub requests: Counts,
    pub requests_per_s: f64,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Option<Latency>,
    pub cpu: ProcessCpu,
    pub server_cpu: Option<ProcessCpu>,
    /// Server CPU per successful request, µs (with --server-pid).
    pub server_cpu_per_request_us: Option<f64>,
    /// Successful requests per second of server CPU (with --server-pid).
    pub requests_per_server_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    pub ok: u64,
    pub errors: u64,
}

impl Report {
    pub fn new(target: TargetReport, plan: Plan, threads: usize, tally: &Tally, cpu: &CpuSpent, pids: &[u32]) -> Self {
        let elapsed_s = cpu.elapsed.as_secs_f64();
        let server_s = cpu.server.map(|s| s.total().as_secs_f64());
        let ok = tally.ok as f64;
        Self {
            schema: SCHEMA,
            target,
            mode: if plan.new_connection { "new-connection" } else { "kept-alive" },
            connections: plan.connections,
            size_bytes: plan.size,
            threads,
            elapsed_s,
            requests: Counts { ok: tally.ok, errors: tally.errors.values().sum() },
            requests_per_s: if elapsed_s > 0.0 { ok / elapsed_s } else { 0.0 },
            errors: tally.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            latency_ms: latency_of(&tally.latency),
            cpu: ProcessCpu::new(cpu.client, cpu.elapsed, &[]),
            server_cpu: cpu.server.map(|s| ProcessCpu::new(s, cpu.elapsed, pids)),
            server_cpu_per_request_us: server_s.filter(|_| tally.ok > 0).map(|s| s * 1e6 / ok),
            requests_per_server_cpu_s: server_s.filter(|s| *s > 0.0).map(|s| ok / s),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rr-load -> {} ({}): {}, {} connection(s), {} bytes each way, {:.1} s",
            self.target.target, self.target.transport, self.mode, self.connections, self.size_bytes, self.elapsed_s
        )?;
        writeln!(
            f,
            "  requests    {:.1}/s: {} ok, {} errors",
            self.requests_per_s, self.requests.ok, self.requests.errors
        )?;
        for (reason, n) in &self.errors {
            writeln!(f, "    {reason:<32} {n}")?;
        }
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.p50, l.p90, l.p99, l.p99_9, l.max
            )?,
            None => writeln!(f, "  latency ms  - (no successful request)")?,
        }
        writeln!(f, "  client CPU  {:.2} s, {:.2} CPUs busy", self.cpu.total_s, self.cpu.utilization)?;
        if let (Some(s), Some(per)) = (&self.server_cpu, self.server_cpu_per_request_us) {
            writeln!(f, "  server CPU  {:.2} s, {:.2} CPUs busy, {per:.1} us per request", s.total_s, s.utilization)?;
        }
        Ok(())
    }
}
