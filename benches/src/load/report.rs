//! The result of a run: one JSON object with stable keys (`--json`, schema `handshake-load/1`, documented in
//! benches/README.md) or the same facts as text.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Serialize;

use super::{
    config::{Config, Load},
    cpu::CpuTime,
    tally::{LATENCY_UNIT_PER_MS, Tally},
    tls::ServerCheck,
};

/// The `schema` value; bump it when a key changes meaning or disappears (adding keys is compatible).
pub const SCHEMA: &str = "handshake-load/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub target: String,
    pub server_id: Option<String>,
    pub server_name: Option<String>,
    /// `closed` or `open`.
    pub mode: &'static str,
    pub concurrency: Option<usize>,
    /// Open loop: the rate asked for, per second.
    pub rate: Option<f64>,
    pub max_inflight: Option<usize>,
    pub tls: TlsReport,
    /// `close`, `echo` or `none` (what a connection does after its handshake).
    pub confirm: &'static str,
    pub send_bytes: usize,
    pub threads: usize,
    pub elapsed_s: f64,
    pub handshakes: Counts,
    /// Successful handshakes per second of `elapsed_s`.
    pub handshakes_per_s: f64,
    /// `resumed / ok` (0 when nothing succeeded).
    pub resumed_fraction: f64,
    /// Error count by reason (see `ErrorReason`); empty when there were none.
    pub errors: BTreeMap<String, u64>,
    /// Handshake latency of the successful handshakes; null when there were none.
    pub latency_ms: Option<Latency>,
    pub cpu: CpuReport,
    /// With --server-pid: the server's CPU over the same interval.
    pub server_cpu: Option<ServerCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    /// `1.3`, or `1.2,1.3` with --tls12.
    pub versions: &'static str,
    pub kx: &'static str,
    pub client_cert: bool,
    pub resume: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// `ok + errors`: connections started.
    pub attempted: u64,
    pub ok: u64,
    pub errors: u64,
    /// Open loop: due but not started (--max-inflight reached).
    pub dropped: u64,
    /// Open loop: started more than 1 ms after their scheduled time.
    pub late: u64,
    pub resumed: u64,
    pub hello_retry: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuReport {
    pub user_s: f64,
    pub system_s: f64,
    pub total_s: f64,
    /// Client CPU per successful handshake, microseconds (null when none succeeded).
    pub per_handshake_us: Option<f64>,
    /// CPUs kept busy on average: `total_s / elapsed_s`.
    pub utilization: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerCpu {
    pub pids: Vec<u32>,
    pub user_s: f64,
    pub system_s: f64,
    pub total_s: f64,
    pub per_handshake_us: Option<f64>,
    pub utilization: f64,
    /// Successful handshakes per second of server CPU (the saturation figure that does not depend on the
    /// client's share of the machine).
    pub handshakes_per_cpu_s: Option<f64>,
}

/// What a run measured besides the tally.
#[derive(Debug, Clone)]
pub struct Measured {
    pub elapsed: Duration,
    pub client_cpu: CpuTime,
    pub server_cpu: Option<CpuTime>,
}

impl Report {
    pub fn new(config: &Config, tally: &Tally, measured: &Measured) -> Self {
        let elapsed_s = measured.elapsed.as_secs_f64();
        let (mode, concurrency, rate, max_inflight) = match config.load {
            Load::Closed { concurrency } => ("closed", Some(concurrency), None, None),
            Load::Open(plan) => ("open", None, Some(plan.rate), Some(plan.max_inflight)),
        };
        let (server_id, server_name) = match &config.tls.server {
            ServerCheck::SpiffeId(id) => (Some(id.to_string()), None),
            ServerCheck::Name(name) => (None, Some(name.to_str().into_owned())),
        };
        let per_handshake_us = |cpu: Duration| (tally.ok > 0).then(|| cpu.as_secs_f64() * 1e6 / tally.ok as f64);
        let client = measured.client_cpu;
        Report {
            schema: SCHEMA,
            target: config.target.clone(),
            server_id,
            server_name,
            mode,
            concurrency,
            rate,
            max_inflight,
            tls: TlsReport {
                versions: if config.tls.tls12 { "1.2,1.3" } else { "1.3" },
                kx: config.tls.key_exchange.as_str(),
                client_cert: config.tls.identity.is_some(),
                resume: config.tls.resume,
            },
            confirm: config.confirm.as_str(),
            send_bytes: match config.confirm {
                super::conn::Confirm::Echo(n) => n,
                _ => 0,
            },
            threads: config.threads,
            elapsed_s,
            handshakes: Counts {
                attempted: tally.attempted(),
                ok: tally.ok,
                errors: tally.error_count(),
                dropped: tally.dropped,
                late: tally.late,
                resumed: tally.resumed,
                hello_retry: tally.hello_retry,
            },
            handshakes_per_s: if elapsed_s > 0.0 { tally.ok as f64 / elapsed_s } else { 0.0 },
            resumed_fraction: if tally.ok > 0 { tally.resumed as f64 / tally.ok as f64 } else { 0.0 },
            errors: tally.errors.iter().map(|(reason, n)| (reason.to_string(), *n)).collect(),
            latency_ms: latency(tally),
            cpu: CpuReport {
                user_s: client.user.as_secs_f64(),
                system_s: client.system.as_secs_f64(),
                total_s: client.total().as_secs_f64(),
                per_handshake_us: per_handshake_us(client.total()),
                utilization: ratio(client.total().as_secs_f64(), elapsed_s),
            },
            server_cpu: measured.server_cpu.map(|cpu| {
                let total_s = cpu.total().as_secs_f64();
                ServerCpu {
                    pids: config.server_pids.clone(),
                    user_s: cpu.user.as_secs_f64(),
                    system_s: cpu.system.as_secs_f64(),
                    total_s,
                    per_handshake_us: per_handshake_us(cpu.total()),
                    utilization: ratio(total_s, elapsed_s),
                    handshakes_per_cpu_s: (total_s > 0.0).then(|| tally.ok as f64 / total_s),
                }
            }),
        }
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

fn latency(tally: &Tally) -> Option<Latency> {
    latency_of(&tally.latency)
}

/// The summary of a latency histogram recorded in microseconds; `None` when it is empty.
pub fn latency_of(h: &hdrhistogram::Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / LATENCY_UNIT_PER_MS;
    // hdrhistogram answers with the highest value of the bucket: no percentile is under-reported.
    let at = |q: f64| ms(h.value_at_quantile(q));
    Some(Latency {
        min: ms(h.min()),
        mean: h.mean() / LATENCY_UNIT_PER_MS,
        stdev: h.stdev() / LATENCY_UNIT_PER_MS,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p99_9: at(0.999),
        max: ms(h.max()),
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = match (self.concurrency, self.rate) {
            (Some(n), _) => format!("closed loop, concurrency {n}"),
            (_, Some(rate)) => format!("open loop, {rate}/s, max in flight {}", self.max_inflight.unwrap_or(0)),
            _ => String::new(),
        };
        let server = self.server_id.as_deref().or(self.server_name.as_deref()).unwrap_or("-");
        writeln!(f, "handshake-load -> {} ({server}): {load}, {:.1} s", self.target, self.elapsed_s)?;
        let cert = if self.tls.client_cert { "client certificate" } else { "no client certificate" };
        let confirm = match self.confirm {
            "echo" => format!("echo {} bytes", self.send_bytes),
            other => format!("confirm by {other}"),
        };
        writeln!(f, "  TLS {} {}, {cert}, {confirm}, {} threads", self.tls.versions, self.tls.kx, self.threads)?;
        let c = &self.handshakes;
        writeln!(
            f,
            "  handshakes  {:.1}/s: {} ok, {} errors of {} attempted{}",
            self.handshakes_per_s,
            c.ok,
            c.errors,
            c.attempted,
            if self.rate.is_some() { format!(", {} dropped, {} late", c.dropped, c.late) } else { String::new() }
        )?;
        for (reason, n) in &self.errors {
            writeln!(f, "    {reason:<32} {n}")?;
        }
        if self.tls.resume {
            writeln!(f, "  resumed     {} of {} ({:.1}%)", c.resumed, c.ok, self.resumed_fraction * 100.0)?;
        }
        if c.hello_retry > 0 {
            writeln!(f, "  hello retry {} (the server wanted another key exchange group than --kx)", c.hello_retry)?;
        }
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (min {:.3}, mean {:.3})",
                l.p50, l.p90, l.p99, l.p99_9, l.max, l.min, l.mean
            )?,
            None => writeln!(f, "  latency ms  - (no successful handshake)")?,
        }
        let per = |us: Option<f64>| us.map_or("-".to_string(), |us| format!("{us:.0} us"));
        writeln!(
            f,
            "  client CPU  {:.2} s (user {:.2}, system {:.2}): {} per handshake, {:.2} CPUs busy",
            self.cpu.total_s,
            self.cpu.user_s,
            self.cpu.system_s,
            per(self.cpu.per_handshake_us),
            self.cpu.utilization
        )?;
        if let Some(s) = &self.server_cpu {
            let rate = s.handshakes_per_cpu_s.map_or("-".to_string(), |r| format!("{r:.0}"));
            writeln!(
                f,
                "  server CPU  {:.2} s (user {:.2}, system {:.2}): {} per handshake, {:.2} CPUs busy, {rate} handshakes per CPU-second",
                s.total_s,
                s.user_s,
                s.system_s,
                per(s.per_handshake_us),
                s.utilization
            )?;
        }
        Ok(())
    }
}
