//! The admin endpoints an orchestrator and a Prometheus server rely on: readiness released by identity,
//! a metrics exposition that parses and carries the SPEC §7 names, `/status`, and a clean shutdown.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::{Duration, Instant};

use integration::{
    App, Mesh, SidecarConfig, SidecarProcess, http,
    mesh::{API_ID, WEB_ID},
    prom::Metrics,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const READY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_until_identity_loads_and_nothing_is_served_before() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    // api's sidecar starts before its identity directory exists.
    let pending_dir = mesh.dir().join("api-late");
    let config = SidecarConfig::new(&pending_dir, &mesh.policy).inbound("api", app.addr);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();

    let (status, body) = http::get(api.admin, "/ready").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("identity"), "503 body should name what is pending: {body:?}");
    assert_eq!(http::get(api.admin, "/live").await.unwrap().0, 200);

    // A caller that connects now sits in the backlog: no handshake, no bytes, the app untouched.
    let mut early = TcpStream::connect(api.addr("api")).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(500), early.read(&mut buf)).await;
    assert!(read.is_err(), "the listener answered before identity loaded: {read:?}");
    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[]), 0.0);
    assert_eq!(m.value("sidecar_identity_cert_expiry_timestamp_seconds", &[]), 0.0);
    // Waiting for a first identity is a supported start-up order, not a failing reload: nothing to alert on.
    assert_eq!(m.value("sidecar_reloads_total", &[("what", "identity"), ("result", "error")]), 0.0);

    // The identity arrives; readiness follows.
    mesh.pki.issue("/ns/api/sa/api", &pending_dir, "1h").unwrap();
    api.wait_ready(READY).await.unwrap();
    assert_eq!(http::get(api.admin, "/ready").await.unwrap().0, 200);

    // The early caller is served now, with a real handshake (it sent no ClientHello, so it times out or
    // fails; what matters is that nothing reached the app before identity).
    drop(early);
    assert_eq!(app.accepted(), 0);
    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    assert!(m.value("sidecar_identity_cert_expiry_timestamp_seconds", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_carry_the_spec_names() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    let mut s = TcpStream::connect(web.addr("api")).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    s.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"hello");

    let text = api.metrics().await.unwrap();
    let m = Metrics::parse(&text).unwrap();
    for name in [
        "sidecar_tls_handshake_duration_seconds",
        "sidecar_tls_handshakes_total",
        "sidecar_authz_decisions_total",
        "sidecar_connections_open",
        "sidecar_connections_total",
        "sidecar_connection_duration_seconds",
        "sidecar_bytes_total",
        "sidecar_connect_errors_total",
        "sidecar_revoked_connections_total",
        "sidecar_identity_cert_expiry_timestamp_seconds",
        "sidecar_trust_anchors",
        "sidecar_reloads_total",
        "sidecar_last_reload_success_timestamp_seconds",
        "sidecar_policy_generation",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(m.has(name), "/metrics lacks {name}");
    }
    // No peer identity, address or port in any label.
    for forbidden in [WEB_ID, "127.0.0.1"] {
        assert!(!text.contains(forbidden), "/metrics exposes {forbidden}");
    }
    // The SPEC §7 handshake buckets, and four more where handshakes are (0.3, 0.4, 0.75, 1.5 ms).
    let bounds: Vec<f64> = m
        .buckets("sidecar_tls_handshake_duration_seconds", &[("direction", "inbound"), ("result", "ok")])
        .iter()
        .map(|b| b.0)
        .collect();
    let spec = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let extra = [0.0003, 0.0004, 0.00075, 0.0015];
    let mut expected: Vec<f64> = spec.iter().chain(&extra).copied().collect();
    expected.sort_by(f64::total_cmp);
    let finite: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
    assert_eq!(finite, expected);

    let inbound = [("direction", "inbound")];
    assert_eq!(m.histogram_count("sidecar_tls_handshake_duration_seconds", &inbound), 1.0);
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("result", "ok")]), 1.0);
    assert_eq!(m.value("sidecar_connections_total", &[("direction", "inbound"), ("listener", "api")]), 1.0);
    assert_eq!(m.value("sidecar_authz_decisions_total", &[("decision", "allow"), ("rule", "web-can-call-api")]), 1.0);
    assert_eq!(m.value("sidecar_trust_anchors", &[]), 1.0);
    assert_eq!(m.value("sidecar_policy_generation", &[]), 1.0);
    assert_eq!(m.value("sidecar_reloads_total", &[("what", "identity"), ("result", "ok")]), 1.0);

    let wm = Metrics::parse(&web.metrics().await.unwrap()).unwrap();
    assert_eq!(wm.value("sidecar_tls_handshakes_total", &[("direction", "outbound"), ("result", "ok")]), 1.0);
    assert_eq!(wm.value("sidecar_bytes_total", &[("direction", "outbound"), ("flow", "to_peer")]), 5.0);
    assert_eq!(wm.value("sidecar_bytes_total", &[("direction", "outbound"), ("flow", "from_peer")]), 5.0);

    // The gauge returns to zero once the connection is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
        if m.value("sidecar_connections_open", &[]) == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "sidecar_connections_open did not return to 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_identity_policy_and_listeners() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();

    let (code, body) = http::get(api.admin, "/status").await.unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["identity"]["spiffe_id"], API_ID);
    assert!(status["identity"]["serial"].as_str().is_some_and(|s| s.len() >= 16));
    assert!(status["identity"]["expires_in_seconds"].as_i64().is_some_and(|s| s > 3000));
    assert_eq!(status["identity"]["trust_anchors_sha256"].as_array().map(Vec::len), Some(1));
    assert_eq!(status["policy"]["generation"], 1);
    assert_eq!(status["policy"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(status["reloads"]["identity"]["ok"], true);
    assert_eq!(status["listeners"][0]["name"], "api");
    assert_eq!(status["listeners"][0]["listen"], api.addr("api").to_string());
    assert_eq!(status["listeners"][0]["open_connections"], 0);

    assert_eq!(http::get(api.admin, "/nope").await.unwrap().0, 404);
    assert_eq!(http::get(api.admin, "/shutdown").await.unwrap().0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_from_loopback_drains_and_exits_zero() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let mut api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();

    let (code, body) = http::post(api.admin, "/shutdown").await.unwrap();
    assert_eq!(code, 202, "{body}");
    let status = tokio::task::spawn_blocking(move || {
        let s = api.wait_exit(Duration::from_secs(10));
        (s, api)
    })
    .await
    .unwrap();
    assert!(status.0.unwrap().success());
    // Listeners are closed: a new connection is refused.
    assert!(TcpStream::connect(status.1.addr("api")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_scoped_to_a_listener_this_sidecar_lacks_is_warned_about() {
    let mesh = Mesh::new().unwrap();
    // A typo in `listeners:` would make a deny rule silently never apply.
    std::fs::write(
        &mesh.policy,
        "rules:\n  - name: allow-web\n    listeners: [api]\n    allow: [spiffe://example.org/ns/web/sa/web]\n  \
         - name: block-batch\n    listeners: [apii]\n    deny: [spiffe://example.org/ns/batch/sa/report]\n",
    )
    .unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let line = api.wait_log(Duration::from_secs(5), |v| v["listener"] == "apii").await.unwrap();
    assert_eq!(line["level"], "WARN");
    assert!(
        api.find_log(|v| v["level"] == "WARN" && v["listener"] == "api").is_none(),
        "the real listener was flagged"
    );
}
