//! The client tools of `benches/compare/` (`rr-load`, `bulk-transfer`, `hold-conns`) and `bare-proxy`, against
//! a real `sidecar` inbound listener and each other, on loopback, for a bounded time.
//!
//! What is checked: requests, transfers and held connections are counted as the server saw them; refusals
//! (a caller the policy denies, no client certificate, a foreign CA) are errors, never successes; the JSON
//! reports keep their documented shape. Nothing here asserts a speed: the machine is shared and noisy.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration::{
    App, Mesh, SidecarProcess,
    mesh::API_ID,
    pki::{self, Identity},
    process::SidecarConfig,
};
use serde_json::Value;
use tokio::net::TcpListener;

const READY: Duration = Duration::from_secs(10);

/// Runs one of the tools with `--json`; returns its report.
fn tool(bin: &str, target: SocketAddr, args: &[String]) -> Value {
    let out = Command::new(bin).args(["--target", &target.to_string(), "--json"]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{bin} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

/// `--ca BUNDLE --server-id API_ID`, plus `--cert/--key` of `identity` when given.
fn mtls(ca_dir: &Path, identity: Option<&Identity>) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec!["--ca".into(), path(&ca_dir.join("bundle.pem")), "--server-id".into(), API_ID.into()];
    if let Some(id) = identity {
        args.extend([
            "--cert".into(),
            path(&id.dir.join("svid.pem")),
            "--key".into(),
            path(&id.dir.join("svid_key.pem")),
        ]);
    }
    args
}

fn with(mut base: Vec<String>, more: &[&str]) -> Vec<String> {
    base.extend(more.iter().map(|s| s.to_string()));
    base
}

fn n(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("{pointer} missing: {report:#}"))
}

/// A plaintext bulk-transfer backend in this process.
async fn bulk_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(benches::backend::bulk(listener));
    addr
}

/// An inbound sidecar for `api` with listeners `echo` and `bulk`, and a policy allowing `web` on both.
async fn sidecar(mesh: &Mesh, echo: SocketAddr, bulk: SocketAddr) -> SidecarProcess {
    let policy = mesh.dir().join("bench-policy.yaml");
    std::fs::write(&policy, "rules:\n  - name: web\n    allow: [spiffe://example.org/ns/web/sa/web]\n").unwrap();
    let config = SidecarConfig::new(&mesh.api.dir, &policy).inbound("echo", echo).inbound("bulk", bulk);
    let api = SidecarProcess::start("api-bench", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_transfers_and_held_connections_through_a_sidecar_are_counted() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = sidecar(&mesh, app.addr, bulk_backend().await).await;
    let web = mtls(&mesh.pki.ca_dir, Some(&mesh.web));
    let pid = api.pid().to_string();

    let kept = tool(
        env!("CARGO_BIN_EXE_rr-load"),
        api.addr("echo"),
        &with(web.clone(), &["--connections", "2", "--duration", "500ms", "--server-pid", &pid]),
    );
    assert_eq!(kept["schema"], "rr-load/1");
    assert_eq!((kept["mode"].as_str(), kept["transport"].as_str()), (Some("kept-alive"), Some("mtls")));
    assert!(n(&kept, "/requests/ok") > 0 && n(&kept, "/requests/errors") == 0, "{kept:#}");
    assert!(kept["server_cpu_per_request_us"].is_number(), "{kept:#}");
    let accepted_before = app.accepted();
    let fresh = tool(
        env!("CARGO_BIN_EXE_rr-load"),
        api.addr("echo"),
        &with(web.clone(), &["--new-connection", "--duration", "300ms"]),
    );
    let ok = n(&fresh, "/requests/ok");
    assert!(ok > 0 && n(&fresh, "/requests/errors") == 0, "{fresh:#}");
    // One app connection per request: each request really was a new connection.
    assert_eq!(app.accepted() - accepted_before, ok as usize);

    for direction in ["down", "up"] {
        let bulk = tool(
            env!("CARGO_BIN_EXE_bulk-transfer"),
            api.addr("bulk"),
            &with(web.clone(), &["--bytes", "8M", "--direction", direction, "--server-pid", &pid]),
        );
        assert_eq!((bulk["schema"].as_str(), bulk["direction"].as_str()), (Some("bulk-transfer/1"), Some(direction)));
        assert_eq!(n(&bulk, "/bytes"), 8 << 20);
        assert!(bulk["mb_per_s"].as_f64().unwrap() > 0.0 && bulk["server_cpu_s_per_gib"].is_number(), "{bulk:#}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_hold-conns"))
        .args(["--target", &api.addr("echo").to_string(), "--connections", "20", "--hold", "300ms"])
        .args(&web)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((n(&held, "/open"), n(&held, "/alive_after_hold")), (20, 20), "{held:#}");

    // A caller the policy denies completes its handshake, then the sidecar closes: an error, not a request.
    let batch = mtls(&mesh.pki.ca_dir, Some(&mesh.batch));
    let denied = tool(env!("CARGO_BIN_EXE_rr-load"), api.addr("echo"), &with(batch, &["--duration", "200ms"]));
    assert_eq!(n(&denied, "/requests/ok"), 0, "{denied:#}");
    assert!(n(&denied, "/requests/errors") > 0, "{denied:#}");
}

/// `bare-proxy` on a free port in front of `forward`; killed on drop.
struct BareProxy {
    child: Child,
    addr: SocketAddr,
}

impl BareProxy {
    fn start(mesh: &Mesh, forward: SocketAddr) -> Self {
        let dir = &mesh.api.dir;
        let mut child = Command::new(env!("CARGO_BIN_EXE_bare-proxy"))
            .arg("--cert")
            .arg(dir.join("svid.pem"))
            .arg("--key")
            .arg(dir.join("svid_key.pem"))
            .arg("--ca")
            .arg(mesh.pki.ca_dir.join("bundle.pem"))
            .args(["--route", &format!("127.0.0.1:0={forward}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "bare-proxy: 127.0.0.1:PORT -> FORWARD"
        let addr = line.split_whitespace().nth(1).unwrap_or_default().parse().unwrap_or_else(|_| panic!("{line:?}"));
        Self { child, addr }
    }
}

impl Drop for BareProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bare_proxy_forwards_only_clients_with_a_certificate_from_its_bundle() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let bare = BareProxy::start(&mesh, app.addr);
    let rr = |args: Vec<String>| tool(env!("CARGO_BIN_EXE_rr-load"), bare.addr, &with(args, &["--duration", "300ms"]));

    let allowed = rr(mtls(&mesh.pki.ca_dir, Some(&mesh.web)));
    assert!(n(&allowed, "/requests/ok") > 0 && n(&allowed, "/requests/errors") == 0, "{allowed:#}");
    // No policy: any identity the bundle vouches for gets through, even one the sidecar's policy would deny.
    let batch = rr(mtls(&mesh.pki.ca_dir, Some(&mesh.batch)));
    assert!(n(&batch, "/requests/ok") > 0, "{batch:#}");

    let anonymous = rr(mtls(&mesh.pki.ca_dir, None));
    assert_eq!(n(&anonymous, "/requests/ok"), 0, "{anonymous:#}");
    let foreign_dir = mesh.dir().join("foreign");
    let foreign_pki = pki::Pki::init(&foreign_dir, "example.org").unwrap();
    let foreign = foreign_pki.issue("/ns/web/sa/web", &foreign_dir.join("web"), "1h").unwrap();
    let mut args = mtls(&mesh.pki.ca_dir, Some(&foreign));
    args.extend(["--connect-timeout".into(), "2s".into()]);
    let refused = rr(args);
    assert_eq!(n(&refused, "/requests/ok"), 0, "{refused:#}");
    assert!(n(&refused, "/requests/errors") > 0, "{refused:#}");
}
