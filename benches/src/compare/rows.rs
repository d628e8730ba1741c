//! The rows of the comparison tables: which number of which run each shows, its median per peer over the
//! rounds, and its ratio to the sidecar.

use serde::Serialize;
use serde_json::Value;

use super::{Input, median};
use Better::{Higher, Lower};

/// Whether a larger number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One row: a number taken from each run of `suite/test`.
pub struct Spec {
    pub suite: &'static str,
    pub test: &'static str,
    /// Stable name of the number, for targets and the JSON.
    pub key: &'static str,
    /// `{rate}`, `{small}` and `{large}` are replaced from `meta.json`.
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub value: fn(&Value) -> Option<f64>,
    /// Pair suite: also show the difference to the `direct` peer (added latency).
    pub added_over_direct: bool,
}

fn at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer)?.as_f64()
}

/// Memory runs: `(RSS held - RSS idle) / connections held`, KiB.
fn kib_per_connection(v: &Value) -> Option<f64> {
    let (open, held, idle) = (at(v, "/hold/open")?, at(v, "/held_kib")?, at(v, "/idle_kib")?);
    (open > 0.0).then(|| (held - idle) / open)
}

/// A row without the added-latency companion.
const fn spec(
    suite: &'static str,
    test: &'static str,
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    value: fn(&Value) -> Option<f64>,
) -> Spec {
    Spec { suite, test, key, label, unit, better, value, added_over_direct: false }
}

impl Spec {
    /// Also shows the difference to the `direct` peer.
    const fn added(self) -> Spec {
        Spec { added_over_direct: true, ..self }
    }
}

/// The rows, in table order. (a)-(e) follow the list.
pub const SPECS: &[Spec] = &[
    spec(
        "inbound",
        "hs_saturation",
        "handshakes_per_s",
        "(a) full mTLS handshakes/s, server alone on one vCPU",
        "/s",
        Higher,
        |v| at(v, "/handshakes_per_s"),
    ),
    spec("inbound", "hs_saturation", "handshakes_per_cpu_s", "(a) handshakes per server CPU-second", "", Higher, |v| {
        at(v, "/server_cpu/handshakes_per_cpu_s")
    }),
    spec(
        "inbound",
        "hs_saturation",
        "server_cpu_per_handshake_us",
        "(a) server CPU per handshake",
        "µs",
        Lower,
        |v| at(v, "/server_cpu/per_handshake_us"),
    ),
    spec(
        "inbound",
        "hs_unloaded",
        "p50_ms",
        "(b) new-connection latency p50, one client, all on one vCPU",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p50"),
    ),
    spec(
        "inbound",
        "hs_unloaded",
        "p99_ms",
        "(b) new-connection latency p99, one client, all on one vCPU",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    ),
    spec(
        "inbound",
        "hs_rate",
        "p50_ms",
        "(b) handshake latency p50 at {rate}/s open loop, all on one vCPU",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p50"),
    ),
    spec(
        "inbound",
        "hs_rate",
        "p99_ms",
        "(b) handshake latency p99 at {rate}/s open loop, all on one vCPU",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    ),
    spec(
        "inbound",
        "rr_keepalive_1",
        "requests_per_s",
        "(c) kept-alive request/response, 1 connection: requests/s",
        "/s",
        Higher,
        |v| at(v, "/requests_per_s"),
    ),
    spec(
        "inbound",
        "rr_keepalive_1",
        "p99_ms",
        "(c) kept-alive request/response, 1 connection: p99",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    ),
    spec(
        "inbound",
        "rr_keepalive_8",
        "requests_per_s",
        "(c) kept-alive request/response, 8 connections: requests/s",
        "/s",
        Higher,
        |v| at(v, "/requests_per_s"),
    ),
    spec(
        "inbound",
        "rr_keepalive_8",
        "p99_ms",
        "(c) kept-alive request/response, 8 connections: p99",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    ),
    spec(
        "inbound",
        "rr_keepalive_8",
        "server_cpu_per_request_us",
        "(c) kept-alive request/response, 8 connections: server CPU per request",
        "µs",
        Lower,
        |v| at(v, "/server_cpu_per_request_us"),
    ),
    spec(
        "inbound",
        "bulk_down",
        "mb_per_s",
        "(d) bulk {bulk}, backend to client (proxy encrypts)",
        "MB/s",
        Higher,
        |v| at(v, "/mb_per_s"),
    ),
    spec(
        "inbound",
        "bulk_down",
        "server_cpu_s_per_gib",
        "(d) server CPU per GiB, backend to client",
        "s",
        Lower,
        |v| at(v, "/server_cpu_s_per_gib"),
    ),
    spec(
        "inbound",
        "bulk_up",
        "mb_per_s",
        "(d) bulk {bulk}, client to backend (proxy decrypts)",
        "MB/s",
        Higher,
        |v| at(v, "/mb_per_s"),
    ),
    spec("inbound", "bulk_up", "server_cpu_s_per_gib", "(d) server CPU per GiB, client to backend", "s", Lower, |v| {
        at(v, "/server_cpu_s_per_gib")
    }),
    spec("inbound", "idle_small", "idle_mib", "(e) RSS idle", "MiB", Lower, |v| Some(at(v, "/idle_kib")? / 1024.0)),
    spec("inbound", "idle_small", "held_mib", "(e) RSS with {small} idle mTLS connections", "MiB", Lower, |v| {
        Some(at(v, "/held_kib")? / 1024.0)
    }),
    spec("inbound", "idle_large", "held_mib", "(e) RSS with {large} idle mTLS connections", "MiB", Lower, |v| {
        Some(at(v, "/held_kib")? / 1024.0)
    }),
    spec(
        "inbound",
        "idle_small",
        "kib_per_connection",
        "(e) RSS per idle connection, {small} open",
        "KiB",
        Lower,
        kib_per_connection,
    ),
    spec(
        "inbound",
        "idle_large",
        "kib_per_connection",
        "(e) RSS per idle connection, {large} open",
        "KiB",
        Lower,
        kib_per_connection,
    ),
    spec(
        "pair",
        "new_conn_1",
        "p50_ms",
        "new connection per request, 1 client, all on one vCPU: p50",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p50"),
    )
    .added(),
    spec(
        "pair",
        "new_conn_1",
        "p99_ms",
        "new connection per request, 1 client, all on one vCPU: p99",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    )
    .added(),
    spec(
        "pair",
        "new_conn_1",
        "requests_per_s",
        "new connection per request, 1 client, all on one vCPU: requests/s",
        "/s",
        Higher,
        |v| at(v, "/requests_per_s"),
    ),
    spec(
        "pair",
        "new_conn_8",
        "requests_per_s",
        "new connection per request, 8 clients, proxies on one vCPU: requests/s",
        "/s",
        Higher,
        |v| at(v, "/requests_per_s"),
    ),
    spec(
        "pair",
        "new_conn_8",
        "requests_per_server_cpu_s",
        "new connection per request, 8 clients: requests per proxy CPU-second (both proxies)",
        "",
        Higher,
        |v| at(v, "/requests_per_server_cpu_s"),
    ),
    spec(
        "pair",
        "rr_keepalive_1",
        "p50_ms",
        "kept-alive request/response, 1 connection, all on one vCPU: p50",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p50"),
    )
    .added(),
    spec(
        "pair",
        "rr_keepalive_1",
        "p99_ms",
        "kept-alive request/response, 1 connection, all on one vCPU: p99",
        "ms",
        Lower,
        |v| at(v, "/latency_ms/p99"),
    )
    .added(),
    spec("pair", "bulk_down", "mb_per_s", "bulk {bulk}, backend to client, proxies on one vCPU", "MB/s", Higher, |v| {
        at(v, "/mb_per_s")
    }),
];

/// One table row as computed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub suite: String,
    pub test: String,
    pub key: String,
    pub label: String,
    pub unit: String,
    pub better: Better,
    /// A difference to the `direct` peer, not a measured value (no ratio to the sidecar).
    pub added: bool,
    pub cells: Vec<Cell>,
}

/// One peer's value in a row.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub peer: String,
    /// One value per round, in round order.
    pub rounds: Vec<f64>,
    pub median: Option<f64>,
    /// `median / the sidecar's median`.
    pub vs_sidecar: Option<f64>,
}

impl Row {
    pub fn median(&self, peer: &str) -> Option<f64> {
        self.cells.iter().find(|c| c.peer == peer)?.median
    }
}

/// Every row with data, in [`SPECS`] order; an `added` row follows each pair-suite latency row.
pub fn build(input: &Input) -> Vec<Row> {
    let mut rows = Vec::new();
    for spec in SPECS {
        let cells: Vec<Cell> = input
            .peers(spec.suite)
            .into_iter()
            .map(|peer| {
                let rounds: Vec<f64> = input
                    .results(spec.suite, spec.test, &peer)
                    .iter()
                    .filter_map(|r| (spec.value)(&r.result))
                    .collect();
                Cell { median: median(&rounds), peer, rounds, vs_sidecar: None }
            })
            .collect();
        if cells.iter().all(|c| c.median.is_none()) {
            continue;
        }
        let sidecar = cells.iter().find(|c| c.peer == "sidecar").and_then(|c| c.median);
        let cells = cells
            .into_iter()
            .map(|c| Cell { vs_sidecar: c.median.zip(sidecar).filter(|(_, s)| *s != 0.0).map(|(m, s)| m / s), ..c })
            .collect();
        let row = Row {
            suite: spec.suite.into(),
            test: spec.test.into(),
            key: spec.key.into(),
            label: label(spec.label, &input.meta),
            unit: spec.unit.into(),
            better: spec.better,
            added: false,
            cells,
        };
        let added = spec.added_over_direct.then(|| added_over_direct(&row));
        rows.push(row);
        rows.extend(added.flatten());
    }
    rows
}

/// `peer - direct` for each proxied peer: the latency the proxies add.
fn added_over_direct(row: &Row) -> Option<Row> {
    let direct = row.median("direct")?;
    let cells = row
        .cells
        .iter()
        .filter(|c| c.peer != "direct")
        .map(|c| Cell {
            peer: c.peer.clone(),
            rounds: Vec::new(),
            median: c.median.map(|m| m - direct),
            vs_sidecar: None,
        })
        .collect();
    Some(Row {
        key: format!("added_{}", row.key),
        label: format!("added over direct: {}", row.label),
        added: true,
        cells,
        ..row.clone()
    })
}

fn label(template: &str, meta: &Value) -> String {
    let get = |key: &str| meta.get(key).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    let mut out = template.to_string();
    for (name, key) in [("{rate}", "rate"), ("{small}", "idle_small"), ("{large}", "idle_large"), ("{bulk}", "bulk")] {
        if let Some(value) = get(key) {
            out = out.replace(name, &value);
        }
    }
    out
}
