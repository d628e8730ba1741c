//! `handshake-load` against a real `sidecar` inbound listener (started by the integration harness, with
//! certificates from the real `certs-agent`), on loopback, for a bounded number of handshakes.
//!
//! What is checked: every handshake the tool counts as ok is one the sidecar counted as ok; refusals are
//! errors with a reason, never successes; the JSON report keeps its documented shape; the histogram file
//! reads back and plots. Nothing here asserts a speed: the machine is shared and noisy.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{path::Path, process::Command, time::Duration};

use integration::{
    App, Mesh, SidecarProcess,
    mesh::{API_ID, WEB_ID},
    prom::Metrics,
};
use serde_json::Value;

const READY: Duration = Duration::from_secs(10);

/// Runs `handshake-load --json` against `target` with `args`; returns the report. Bounded: each connection
/// has short timeouts and the handshake count is fixed.
fn handshake_load(target: std::net::SocketAddr, mesh: &Mesh, args: &[&str]) -> Value {
    let bundle = mesh.pki.ca_dir.join("bundle.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_handshake-load"))
        .args(["--target", &target.to_string(), "--ca", bundle.to_str().unwrap(), "--server-id", API_ID])
        .args(["--connect-timeout", "2s", "--handshake-timeout", "5s", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "handshake-load failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

/// `--cert DIR/svid.pem --key DIR/svid_key.pem`.
fn identity(dir: &Path) -> [String; 4] {
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    ["--cert".into(), path("svid.pem"), "--key".into(), path("svid_key.pem")]
}

fn args<'a>(identity: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    identity.iter().map(String::as_str).chain(rest.iter().copied()).collect()
}

async fn api_behind_sidecar(mesh: &Mesh) -> (App, SidecarProcess) {
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    (app, api)
}

/// The sidecar's inbound handshake count for `reason`, once it reaches `expected` (it counts a refusal just
/// after sending the alert the client reads, so allow it a moment), or whatever it is after 5 s.
async fn sidecar_handshakes(api: &SidecarProcess, reason: &str, expected: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
        let value = m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", reason)]);
        if value == expected || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(report: &Value, key: &str) -> u64 {
    report["handshakes"][key].as_u64().unwrap_or_else(|| panic!("handshakes.{key} missing: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_caller_completes_every_handshake_and_the_sidecar_agrees() {
    let mesh = Mesh::new().unwrap();
    assert_eq!(mesh.web.id, WEB_ID);
    let (app, api) = api_behind_sidecar(&mesh).await;
    let web = identity(&mesh.web.dir);

    let report = handshake_load(api.addr("api"), &mesh, &args(&web, &["--handshakes", "40", "--concurrency", "4"]));
    assert_eq!(count(&report, "ok"), 40, "{report:#}");
    assert_eq!(count(&report, "errors"), 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}));
    // The default confirmation closes without data: the sidecar forwarded each connection to the app.
    assert_eq!(report["confirm"], "close");
    assert_eq!(sidecar_handshakes(&api, "ok", 40.0).await, 40.0);

    // With a payload, each connection is an echo round trip through the sidecar.
    let report = handshake_load(api.addr("api"), &mesh, &args(&web, &["--handshakes", "20", "--send", "100"]));
    assert_eq!((count(&report, "ok"), count(&report, "errors")), (20, 0), "{report:#}");
    assert_eq!((report["confirm"].as_str(), report["send_bytes"].as_u64()), (Some("echo"), Some(100)));
    assert_eq!(sidecar_handshakes(&api, "ok", 60.0).await, 60.0);
    assert_eq!(app.accepted(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_has_its_documented_shape() {
    let mesh = Mesh::new().unwrap();
    let (_app, api) = api_behind_sidecar(&mesh).await;
    let web = identity(&mesh.web.dir);
    let pid = api.pid().to_string();

    let report = handshake_load(
        api.addr("api"),
        &mesh,
        &args(&web, &["--rate", "200/s", "--handshakes", "30", "--resume", "--server-pid", &pid]),
    );
    assert_eq!(report["schema"], "handshake-load/1");
    assert_eq!(report["target"], api.addr("api").to_string());
    assert_eq!(report["server_id"], API_ID);
    assert_eq!(report["server_name"], Value::Null);
    assert_eq!((report["mode"].as_str(), report["rate"].as_f64()), (Some("open"), Some(200.0)));
    assert_eq!(report["concurrency"], Value::Null);
    assert_eq!(report["max_inflight"], 1000);
    assert_eq!(
        report["tls"],
        serde_json::json!({"versions": "1.3", "kx": "x25519", "client_cert": true, "resume": true})
    );
    for key in ["attempted", "ok", "errors", "dropped", "late", "resumed", "hello_retry"] {
        count(&report, key);
    }
    assert_eq!((count(&report, "ok"), count(&report, "attempted"), count(&report, "dropped")), (30, 30, 0));
    // The sidecar never resumes: every handshake is full.
    assert_eq!((count(&report, "resumed"), report["resumed_fraction"].as_f64()), (0, Some(0.0)));
    assert!(report["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(report["handshakes_per_s"].as_f64().unwrap() > 0.0);

    let latency = &report["latency_ms"];
    let ms = |key: &str| latency[key].as_f64().unwrap_or_else(|| panic!("latency_ms.{key} missing: {latency}"));
    let ordered = [ms("min"), ms("p50"), ms("p90"), ms("p99"), ms("p99_9"), ms("max")];
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{latency}");
    assert!(ms("mean") > 0.0 && ms("stdev") >= 0.0);

    for key in ["user_s", "system_s", "total_s", "per_handshake_us", "utilization"] {
        assert!(report["cpu"][key].is_number(), "cpu.{key}: {report:#}");
    }
    let server = &report["server_cpu"];
    assert_eq!(server["pids"], serde_json::json!([api.pid()]));
    for key in ["user_s", "system_s", "total_s", "utilization"] {
        assert!(server[key].is_number(), "server_cpu.{key}: {server}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_a_certificate_is_counted_as_refused_with_the_alert() {
    let mesh = Mesh::new().unwrap();
    let (app, api) = api_behind_sidecar(&mesh).await;

    // TLS 1.3: the client's handshake completes before the server checks for a certificate; the default
    // confirmation read is what sees the refusal.
    let report = handshake_load(api.addr("api"), &mesh, &["--handshakes", "10", "--concurrency", "2"]);
    assert_eq!(count(&report, "ok"), 0, "{report:#}");
    assert_eq!(count(&report, "errors"), 10);
    assert_eq!(report["errors"], serde_json::json!({"tls_alert:certificate_required": 10}));
    assert_eq!(report["latency_ms"], Value::Null);
    assert_eq!(report["tls"]["client_cert"], false);
    assert_eq!(sidecar_handshakes(&api, "no_client_cert", 10.0).await, 10.0);
    assert_eq!(app.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_policy_denies_is_counted_as_no_reply() {
    let mesh = Mesh::new().unwrap();
    let (app, api) = api_behind_sidecar(&mesh).await;
    let batch = identity(&mesh.batch.dir);

    // The handshake succeeds (a valid SVID); the sidecar then closes without forwarding. Only a payload
    // that expects a reply tells that apart from a graceful close.
    let report = handshake_load(api.addr("api"), &mesh, &args(&batch, &["--handshakes", "10", "--send", "16"]));
    assert_eq!(count(&report, "ok"), 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({"no_reply": 10}));
    assert_eq!(app.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_histogram_file_reads_back_and_plots() {
    let mesh = Mesh::new().unwrap();
    let (_app, api) = api_behind_sidecar(&mesh).await;
    let web = identity(&mesh.web.dir);
    let hgrm = mesh.dir().join("latency.hgrm");
    let svg = mesh.dir().join("latency.svg");

    let report = handshake_load(
        api.addr("api"),
        &mesh,
        &args(&web, &["--handshakes", "25", "--histogram-out", hgrm.to_str().unwrap()]),
    );
    let points = benches::histogram::parse_distribution(&std::fs::read_to_string(&hgrm).unwrap()).unwrap();
    let last = points.last().unwrap();
    assert_eq!((last.percentile, last.total_count), (1.0, 25));
    assert_eq!(last.value, report["latency_ms"]["max"].as_f64().unwrap());

    let plotted = Command::new(env!("CARGO_BIN_EXE_latency-plot"))
        .arg(&hgrm)
        .args(["--label", "sidecar", "--out", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(plotted.status.success(), "{}", String::from_utf8_lossy(&plotted.stderr));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("sidecar: p50"), "{svg}");
}
