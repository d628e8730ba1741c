//! The rows of the comparison tables: which number of which run each shows, its median per peer over the
//! rounds, and its ratio to the sidecar.

use serde::Serialize;
use serde_json::Value;

use super::{Input, median};

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

/// The rows, in table order. (a)-(e) follow the list.
pub const SPECS: &[Spec] = &[
    Spec {
        suite: "inbound",
        test: "hs_saturation",
        key: "handshakes_per_s",
        label: "(a) full mTLS handshakes/s, server alone on one vCPU",
        unit: "/s",
        better: Better::Higher,
        value: |v| at(v, "/handshakes_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_saturation",
        key: "handshakes_per_cpu_s",
        label: "(a) handshakes per server CPU-second",
        unit: "",
        better: Better::Higher,
        value: |v| at(v, "/server_cpu/handshakes_per_cpu_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_saturation",
        key: "server_cpu_per_handshake_us",
        label: "(a) server CPU per handshake",
        unit: "µs",
        better: Better::Lower,
        value: |v| at(v, "/server_cpu/per_handshake_us"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_unloaded",
        key: "p50_ms",
        label: "(b) new-connection latency p50, one client, all on one vCPU",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p50"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_unloaded",
        key: "p99_ms",
        label: "(b) new-connection latency p99, one client, all on one vCPU",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_rate",
        key: "p50_ms",
        label: "(b) handshake latency p50 at {rate}/s open loop, all on one vCPU",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p50"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "hs_rate",
        key: "p99_ms",
        label: "(b) handshake latency p99 at {rate}/s open loop, all on one vCPU",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "rr_keepalive_1",
        key: "requests_per_s",
        label: "(c) kept-alive request/response, 1 connection: requests/s",
        unit: "/s",
        better: Better::Higher,
        value: |v| at(v, "/requests_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "rr_keepalive_1",
        key: "p99_ms",
        label: "(c) kept-alive request/response, 1 connection: p99",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "rr_keepalive_8",
        key: "requests_per_s",
        label: "(c) kept-alive request/response, 8 connections: requests/s",
        unit: "/s",
        better: Better::Higher,
        value: |v| at(v, "/requests_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "rr_keepalive_8",
        key: "p99_ms",
        label: "(c) kept-alive request/response, 8 connections: p99",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "rr_keepalive_8",
        key: "server_cpu_per_request_us",
        label: "(c) kept-alive request/response, 8 connections: server CPU per request",
        unit: "µs",
        better: Better::Lower,
        value: |v| at(v, "/server_cpu_per_request_us"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "bulk_down",
        key: "mb_per_s",
        label: "(d) bulk {bulk}, backend to client (proxy encrypts)",
        unit: "MB/s",
        better: Better::Higher,
        value: |v| at(v, "/mb_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "bulk_down",
        key: "server_cpu_s_per_gib",
        label: "(d) server CPU per GiB, backend to client",
        unit: "s",
        better: Better::Lower,
        value: |v| at(v, "/server_cpu_s_per_gib"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "bulk_up",
        key: "mb_per_s",
        label: "(d) bulk {bulk}, client to backend (proxy decrypts)",
        unit: "MB/s",
        better: Better::Higher,
        value: |v| at(v, "/mb_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "bulk_up",
        key: "server_cpu_s_per_gib",
        label: "(d) server CPU per GiB, client to backend",
        unit: "s",
        better: Better::Lower,
        value: |v| at(v, "/server_cpu_s_per_gib"),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "idle_small",
        key: "idle_mib",
        label: "(e) RSS idle",
        unit: "MiB",
        better: Better::Lower,
        value: |v| Some(at(v, "/idle_kib")? / 1024.0),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "idle_small",
        key: "held_mib",
        label: "(e) RSS with {small} idle mTLS connections",
        unit: "MiB",
        better: Better::Lower,
        value: |v| Some(at(v, "/held_kib")? / 1024.0),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "idle_large",
        key: "held_mib",
        label: "(e) RSS with {large} idle mTLS connections",
        unit: "MiB",
        better: Better::Lower,
        value: |v| Some(at(v, "/held_kib")? / 1024.0),
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "idle_small",
        key: "kib_per_connection",
        label: "(e) RSS per idle connection, {small} open",
        unit: "KiB",
        better: Better::Lower,
        value: kib_per_connection,
        added_over_direct: false,
    },
    Spec {
        suite: "inbound",
        test: "idle_large",
        key: "kib_per_connection",
        label: "(e) RSS per idle connection, {large} open",
        unit: "KiB",
        better: Better::Lower,
        value: kib_per_connection,
        added_over_direct: false,
    },
    Spec {
        suite: "pair",
        test: "new_conn_1",
        key: "p50_ms",
        label: "new connection per request, 1 client, all on one vCPU: p50",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p50"),
        added_over_direct: true,
    },
    Spec {
        suite: "pair",
        test: "new_conn_1",
        key: "p99_ms",
        label: "new connection per request, 1 client, all on one vCPU: p99",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: true,
    },
    Spec {
        suite: "pair",
        test: "new_conn_1",
        key: "requests_per_s",
        label: "new connection per request, 1 client, all on one vCPU: requests/s",
        unit: "/s",
        better: Better::Higher,
        value: |v| at(v, "/requests_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "pair",
        test: "new_conn_8",
        key: "requests_per_s",
        label: "new connection per request, 8 clients, proxies on one vCPU: requests/s",
        unit: "/s",
        better: Better::Higher,
        value: |v| at(v, "/requests_per_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "pair",
        test: "new_conn_8",
        key: "requests_per_server_cpu_s",
        label: "new connection per request, 8 clients: requests per proxy CPU-second (both proxies)",
        unit: "",
        better: Better::Higher,
        value: |v| at(v, "/requests_per_server_cpu_s"),
        added_over_direct: false,
    },
    Spec {
        suite: "pair",
        test: "rr_keepalive_1",
        key: "p50_ms",
        label: "kept-alive request/response, 1 connection, all on one vCPU: p50",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p50"),
        added_over_direct: true,
    },
    Spec {
        suite: "pair",
        test: "rr_keepalive_1",
        key: "p99_ms",
        label: "kept-alive request/response, 1 connection, all on one vCPU: p99",
        unit: "ms",
        better: Better::Lower,
        value: |v| at(v, "/latency_ms/p99"),
        added_over_direct: true,
    },
    Spec {
        suite: "pair",
        test: "bulk_down",
        key: "mb_per_s",
        label: "bulk {bulk}, backend to client, proxies on one vCPU",
        unit: "MB/s",
        better: Better::Higher,
        value: |v| at(v, "/mb_per_s"),
        added_over_direct: false,
    },
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
