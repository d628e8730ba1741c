//! The targets, checked against the medians, and the agreement of the sidecar's handshake histogram
//! (`/metrics`) with `handshake-load`'s own measurement.

use serde::Serialize;
use serde_json::Value;

use super::{
    Input, median,
    prom::{self, Buckets},
    rows::Row,
};
use crate::histogram;

/// One target line.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub id: &'static str,
    pub text: &'static str,
    /// The numbers it was decided on, in words.
    pub measured: String,
    /// The ratio or value compared with the threshold.
    pub value: Option<f64>,
    pub threshold: String,
    /// `None`: not measured in this run.
    pub pass: Option<bool>,
}

/// "10 MB" of RSS, read as ps and /proc report memory: 10 MiB (10,240 KiB).
const IDLE_RSS_LIMIT_MIB: f64 = 10.0;

pub fn check(input: &Input, rows: &[Row], histogram: Option<&HistogramCheck>) -> Vec<Target> {
    let find =
        |suite: &str, test: &str, key: &str| rows.iter().find(|r| r.suite == suite && r.test == test && r.key == key);
    let ratio = |suite, test, key, other: &str, unit: &str| {
        let row = find(suite, test, key)?;
        let (ours, theirs) = (row.median("sidecar")?, row.median(other)?);
        (theirs != 0.0).then(|| (ours / theirs, format!("{} vs {} {unit}", num(ours), num(theirs))))
    };
    let at_least =
        |id, text, found: Option<(f64, String)>, min: f64| target(id, text, found, format!(">= {min}x"), |v| v >= min);
    let at_most =
        |id, text, found: Option<(f64, String)>, max: f64| target(id, text, found, format!("<= {max}x"), |v| v <= max);

    let mut out = vec![
        at_least(
            "handshakes_per_cpu_vs_bare",
            "Inbound full mTLS handshakes per server CPU-second >= 0.95x the bare tokio-rustls proxy",
            ratio("inbound", "hs_saturation", "handshakes_per_cpu_s", "bare", "per CPU-s"),
            0.95,
        ),
        at_least(
            "handshakes_per_cpu_vs_nginx",
            "Inbound full mTLS handshakes per server CPU-second >= 2.5x nginx stream",
            ratio("inbound", "hs_saturation", "handshakes_per_cpu_s", "nginx", "per CPU-s"),
            2.5,
        ),
        at_most(
            "unloaded_latency_vs_nginx",
            "Unloaded new-connection latency p50 (one client, all on one vCPU) <= 0.5x nginx stream",
            ratio("inbound", "hs_unloaded", "p50_ms", "nginx", "ms"),
            0.5,
        ),
        at_least(
            "keepalive_1_vs_nginx",
            "Kept-alive request/response through one inbound sidecar, 1 connection: requests/s >= 1.0x nginx stream",
            ratio("inbound", "rr_keepalive_1", "requests_per_s", "nginx", "/s"),
            1.0,
        ),
        at_least(
            "keepalive_8_vs_nginx",
            "Kept-alive request/response through one inbound sidecar, 8 connections: requests/s >= 1.0x nginx stream",
            ratio("inbound", "rr_keepalive_8", "requests_per_s", "nginx", "/s"),
            1.0,
        ),
        at_least(
            "pair_new_connection_vs_nginx_pair",
            "Sidecar pair, a new mTLS connection per request: requests/s >= 2.5x an nginx stream pair",
            ratio("pair", "new_conn_8", "requests_per_s", "nginx", "/s"),
            2.5,
        ),
    ];
    for (test, text) in [
        ("bulk_down", "Bulk throughput through one inbound sidecar, backend to client: >= the best peer"),
        ("bulk_up", "Bulk throughput through one inbound sidecar, client to backend: >= the best peer"),
    ] {
        let found = find("inbound", test, "mb_per_s").and_then(|row| {
            let ours = row.median("sidecar")?;
            let (best, peer) = ["nginx", "haproxy", "stunnel"]
                .iter()
                .filter_map(|p| Some((row.median(p)?, *p)))
                .max_by(|a, b| a.0.total_cmp(&b.0))?;
            Some((ours / best, format!("{} vs {} MB/s ({peer})", num(ours), num(best))))
        });
        out.push(target(test, text, found, ">= 1.0x".into(), |v| v >= 1.0));
    }
    let value = |test: &str, key: &str, unit: &str| {
        let v = find("inbound", test, key)?.median("sidecar")?;
        Some((v, format!("{} {unit}", num(v))))
    };
    let idle = value("idle_small", "idle_mib", "MiB").map(|(v, s)| (v, format!("{s} ({:.1} MB)", v * 1.048576)));
    out.push(target("idle_rss", "Sidecar RSS idle <= 10 MB", idle, format!("<= {IDLE_RSS_LIMIT_MIB} MiB"), |v| {
        v <= IDLE_RSS_LIMIT_MIB
    }));
    for (id, test, text) in [
        (
            "rss_per_connection_small",
            "idle_small",
            "Sidecar RSS per idle open mTLS connection <= 20 KiB (fewer connections)",
        ),
        (
            "rss_per_connection_large",
            "idle_large",
            "Sidecar RSS per idle open mTLS connection <= 20 KiB (more connections)",
        ),
    ] {
        let found = value(test, "kib_per_connection", "KiB").map(|(v, s)| {
            let n = input.meta.get(test);
            (v, format!("{s} at {} connections", n.map_or_else(|| "?".into(), Value::to_string)))
        });
        out.push(target(id, text, found, "<= 20 KiB".into(), |v| v <= 20.0));
    }
    let agreement = histogram.and_then(|h| {
        let (ours, theirs) = (h.metrics_p50_ms?, h.handshake_load_p50_ms?);
        Some((
            (ours / theirs - 1.0).abs(),
            format!("/metrics p50 {} ms vs handshake-load p50 {} ms", num(ours), num(theirs)),
        ))
    });
    out.push(target(
        "histogram_p50_agreement",
        "Handshake histogram on /metrics agrees with handshake-load at p50 within 10%",
        agreement,
        "|difference| <= 10%".into(),
        |v| v <= 0.10,
    ));
    out
}

fn target(
    id: &'static str,
    text: &'static str,
    found: Option<(f64, String)>,
    threshold: String,
    passes: impl Fn(f64) -> bool,
) -> Target {
    match found {
        Some((value, measured)) => {
            Target { id, text, measured, value: Some(value), threshold, pass: Some(passes(value)) }
        }
        None => Target { id, text, measured: "not measured".into(), value: None, threshold, pass: None },
    }
}

/// A number with as many decimals as its size deserves.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The sidecar's histogram against handshake-load's measurement of the same handshakes.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramCheck {
    pub rounds: Vec<HistogramRound>,
    /// Medians over the rounds.
    pub handshake_load_p50_ms: Option<f64>,
    pub metrics_p50_ms: Option<f64>,
    /// handshake-load's latencies put in the sidecar's buckets and estimated the same way.
    pub handshake_load_bucketed_p50_ms: Option<f64>,
}

/// One round of the histogram check.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramRound {
    pub round: u32,
    pub handshakes: Option<u64>,
    /// Inbound ok observations between the two scrapes.
    pub observations: f64,
    pub handshake_load_p50_ms: Option<f64>,
    pub metrics_p50_ms: Option<f64>,
    pub handshake_load_bucketed_p50_ms: Option<f64>,
    /// The bucket `(lower, upper]` holding the sidecar's median, ms.
    pub metrics_p50_bucket_ms: Option<(f64, f64)>,
    /// `(le ms, fraction at or below in handshake-load, fraction at or below on /metrics)` for the bounds where
    /// either distribution is neither empty nor complete.
    pub cdf: Vec<(f64, f64, f64)>,
    pub error: Option<String>,
}

const HISTOGRAM: &str = "sidecar_tls_handshake_duration_seconds";

/// `None` when the run had no histogram check.
pub fn histogram_check(input: &Input) -> Option<HistogramCheck> {
    let records = input.results("metrics", "handshake_p50", "sidecar");
    if records.is_empty() {
        return None;
    }
    let rounds: Vec<HistogramRound> = records.iter().map(|r| histogram_round(input, r.round, &r.result)).collect();
    let med = |f: fn(&HistogramRound) -> Option<f64>| median(&rounds.iter().filter_map(f).collect::<Vec<_>>());
    Some(HistogramCheck {
        handshake_load_p50_ms: med(|r| r.handshake_load_p50_ms),
        metrics_p50_ms: med(|r| r.metrics_p50_ms),
        handshake_load_bucketed_p50_ms: med(|r| r.handshake_load_bucketed_p50_ms),
        rounds,
    })
}

fn histogram_round(input: &Input, round: u32, result: &Value) -> HistogramRound {
    let hl = &result["handshake_load"];
    let mut out = HistogramRound {
        round,
        handshakes: hl.pointer("/handshakes/ok").and_then(Value::as_u64),
        observations: 0.0,
        handshake_load_p50_ms: hl.pointer("/latency_ms/p50").and_then(Value::as_f64),
        metrics_p50_ms: None,
        handshake_load_bucketed_p50_ms: None,
        metrics_p50_bucket_ms: None,
        cdf: Vec::new(),
        error: None,
    };
    let read = |key: &str| {
        let name = result.get(key).and_then(Value::as_str).ok_or_else(|| format!("no {key} file named"))?;
        std::fs::read_to_string(input.dir.join(name)).map_err(|e| format!("{name}: {e}"))
    };
    let files = (|| Ok::<_, String>((read("before")?, read("after")?, read("histogram_out")?)))();
    let (before, after, hgrm) = match files {
        Ok(files) => files,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let labels = [("direction", "inbound"), ("result", "ok")];
    let sidecar = prom::buckets(&after, HISTOGRAM, &labels).since(&prom::buckets(&before, HISTOGRAM, &labels));
    let points = match histogram::parse_distribution(&hgrm) {
        Ok(points) => points,
        Err(e) => {
            out.error = Some(format!("histogram_out: {e}"));
            return out;
        }
    };
    let ours = Buckets::from_distribution(&sidecar.bounds(), &points);
    out.observations = sidecar.count();
    out.metrics_p50_ms = sidecar.quantile(0.5).map(|s| s * 1000.0);
    out.metrics_p50_bucket_ms = sidecar.bucket_of(0.5).map(|(a, b)| (a * 1000.0, b * 1000.0));
    out.handshake_load_bucketed_p50_ms = ours.quantile(0.5).map(|s| s * 1000.0);
    let (n_ours, n_sidecar) = (ours.count(), sidecar.count());
    out.cdf = ours
        .0
        .iter()
        .zip(&sidecar.0)
        .filter(|((le, _), _)| le.is_finite())
        .map(|((le, a), (_, b))| (le * 1000.0, a / n_ours.max(1.0), b / n_sidecar.max(1.0)))
        .filter(|(_, a, b)| (0.0005..0.9995).contains(a) || (0.0005..0.9995).contains(b))
        .collect();
    out
}
