//! `compare-report`: turns the runs `benches/compare/run.sh` recorded into medians over the interleaved rounds,
//! ratios to the sidecar, the targets with PASS/FAIL, and a markdown table.
//!
//! Input: a directory with `meta.json` (what was run, where, on which commit) and `runs.jsonl`, one line per
//! run: `{"suite", "test", "peer", "round", "result"}`, where `result` is the JSON report of the tool that
//! made the run (`handshake-load`, `rr-load`, `bulk-transfer`) or what the script measured itself (memory),
//! and, for the histogram check, the names of the scrape files beside it. [`rows`] says which number of which
//! report each table row shows; [`targets`] checks the targets against the medians; [`markdown`]
//! renders both.

pub mod markdown;
pub mod prom;
pub mod rows;
pub mod targets;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::{rows::Row, targets::Target};

/// The `schema` of the JSON summary.
pub const SCHEMA: &str = "compare/1";

/// One run of one tool against one peer in one round.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    /// `inbound` (one proxy in front of the backend), `pair` (outbound -> inbound, against direct) or
    /// `metrics` (the sidecar's histogram against handshake-load's).
    pub suite: String,
    pub test: String,
    pub peer: String,
    pub round: u32,
    pub result: Value,
}

/// Everything read from a run directory.
#[derive(Debug, Clone)]
pub struct Input {
    pub dir: PathBuf,
    pub meta: Value,
    pub records: Vec<Record>,
}

/// Why the runs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {source}")]
    Json { path: PathBuf, line: usize, source: serde_json::Error },
}

impl Input {
    pub fn read(dir: &Path) -> Result<Self, InputError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| InputError::Read { path, source })
        };
        let meta_path = dir.join("meta.json");
        let meta = serde_json::from_str(&read("meta.json")?).map_err(|source| InputError::Json {
            path: meta_path,
            line: 1,
            source,
        })?;
        let runs = dir.join("runs.jsonl");
        let records = read("runs.jsonl")?
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|source| InputError::Json {
                    path: runs.clone(),
                    line: i + 1,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { dir: dir.to_path_buf(), meta, records })
    }

    /// The runs of one test against one peer, by round.
    pub fn results(&self, suite: &str, test: &str, peer: &str) -> Vec<&Record> {
        let mut found: Vec<_> =
            self.records.iter().filter(|r| r.suite == suite && r.test == test && r.peer == peer).collect();
        found.sort_by_key(|r| r.round);
        found
    }

    /// The peers of a suite, in the order `meta.json` lists them.
    pub fn peers(&self, suite: &str) -> Vec<String> {
        self.meta
            .pointer(&format!("/peers/{suite}"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

/// The summary: what `compare-report` writes as JSON, and what the markdown shows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub meta: Value,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    pub histogram_check: Option<targets::HistogramCheck>,
    /// Errors, unsustained rates, connections that did not open: whatever makes a figure suspect.
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn build(input: &Input) -> Self {
        let rows = rows::build(input);
        let histogram_check = targets::histogram_check(input);
        let targets = targets::check(input, &rows, histogram_check.as_ref());
        Self { schema: SCHEMA, meta: input.meta.clone(), rows, targets, histogram_check, warnings: warnings(input) }
    }
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

fn warnings(input: &Input) -> Vec<String> {
    let mut out = Vec::new();
    for r in &input.records {
        let at = format!("{}/{} {} round {}", r.suite, r.test, r.peer, r.round);
        let result = r.result.get("handshake_load").unwrap_or(&r.result);
        let errors = result
            .pointer("/handshakes/errors")
            .or_else(|| result.pointer("/requests/errors"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if errors > 0 {
            let reasons: BTreeMap<String, Value> = result
                .get("errors")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            out.push(format!("{at}: {errors} errors {}", Value::from(serde_json::Map::from_iter(reasons))));
        }
        if let (Some(rate), Some(achieved)) =
            (result.get("rate").and_then(Value::as_f64), result.get("handshakes_per_s").and_then(Value::as_f64))
        {
            let dropped = result.pointer("/handshakes/dropped").and_then(Value::as_u64).unwrap_or(0);
            if achieved < 0.97 * rate || dropped > 0 {
                out.push(format!("{at}: did not sustain {rate}/s (achieved {achieved:.1}/s, {dropped} dropped)"));
            }
        }
        if let Some(hold) = r.result.get("hold") {
            let n = |k: &str| hold.get(k).and_then(Value::as_u64);
            if let (Some(requested), Some(open)) = (n("requested"), n("open"))
                && open < requested
            {
                out.push(format!("{at}: only {open} of {requested} connections opened ({})", hold["errors"]));
            }
            if let (Some(open), Some(alive)) = (n("open"), n("alive_after_hold"))
                && alive < open
            {
                out.push(format!("{at}: {alive} of {open} connections still open after the hold"));
            }
        }
        if let Some(error) = r.result.get("error").and_then(Value::as_str) {
            out.push(format!("{at}: {error}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(suite: &str, test: &str, peer: &str, round: u32, result: Value) -> Record {
        Record { suite: suite.into(), test: test.into(), peer: peer.into(), round, result }
    }

    /// Three rounds of (a) for the sidecar, the bare proxy and nginx, and one memory run.
    fn input() -> Input {
        let meta = json!({
            "mode": "test", "commit": "abc1234", "rounds": 3, "idle_small": 1000,
            "peers": {"inbound": ["sidecar", "bare", "nginx"], "pair": ["direct", "sidecar", "nginx"]},
            "peer_names": {"inbound": {"nginx": "nginx stream"}},
        });
        let saturation =
            |per_cpu: f64| json!({"handshakes_per_s": 1.0, "server_cpu": {"handshakes_per_cpu_s": per_cpu}});
        let mut records = Vec::new();
        for (round, (ours, bare, nginx)) in
            [(3000.0, 3100.0, 1000.0), (3300.0, 3200.0, 1500.0), (2900.0, 3000.0, 1100.0)].into_iter().enumerate()
        {
            let round = round as u32 + 1;
            records.push(record("inbound", "hs_saturation", "sidecar", round, saturation(ours)));
            records.push(record("inbound", "hs_saturation", "bare", round, saturation(bare)));
            records.push(record("inbound", "hs_saturation", "nginx", round, saturation(nginx)));
        }
        let idle = json!({"connections": 1000, "idle_kib": 9000, "held_kib": 27000,
            "hold": {"requested": 1000, "open": 1000, "alive_after_hold": 990, "errors": {}}});
        records.push(record("inbound", "idle_small", "sidecar", 1, idle));
        Input { dir: PathBuf::from("."), meta, records }
    }

    #[test]
    fn rows_are_medians_over_rounds_with_ratios_to_the_sidecar() {
        let summary = Summary::build(&input());
        let row = summary.rows.iter().find(|r| r.key == "handshakes_per_cpu_s").unwrap();
        assert_eq!(row.median("sidecar"), Some(3000.0));
        let nginx = row.cells.iter().find(|c| c.peer == "nginx").unwrap();
        assert_eq!((nginx.rounds.clone(), nginx.median), (vec![1000.0, 1500.0, 1100.0], Some(1100.0)));
        assert!((nginx.vs_sidecar.unwrap() - 1100.0 / 3000.0).abs() < 1e-12);
        let per_conn = summary.rows.iter().find(|r| r.key == "kib_per_connection").unwrap();
        assert_eq!(per_conn.median("sidecar"), Some(18.0));
    }

    #[test]
    fn targets_pass_fail_or_say_not_measured() {
        let summary = Summary::build(&input());
        let target = |id: &str| summary.targets.iter().find(|t| t.id == id).unwrap();
        assert_eq!(target("handshakes_per_cpu_vs_bare").pass, Some(true)); // 3000 / 3100 = 0.968
        assert_eq!(target("handshakes_per_cpu_vs_nginx").pass, Some(true)); // 3000 / 1100 = 2.73
        assert_eq!(target("idle_rss").pass, Some(true)); // 8.8 MiB
        assert_eq!(target("rss_per_connection_small").pass, Some(true)); // 18 KiB
        assert_eq!(target("keepalive_1_vs_nginx").pass, None);
        assert!(
            summary.warnings.iter().any(|w| w.contains("990 of 1000 connections still open")),
            "{:?}",
            summary.warnings
        );
        let text = markdown::render(&summary);
        assert!(text.contains("| **PASS** |") && text.contains("| not measured |"), "{text}");
        assert!(text.contains("| sidecar | bare | nginx stream |"), "{text}");
        assert!(text.contains("| 1100 (0.367x) |"), "{text}");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
