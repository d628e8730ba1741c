//! Hot reload with real files, real sidecar processes and real TLS clients: the identity and policy follow
//! every way files get updated in practice, a bad file never replaces a good one, revoked callers lose their
//! open connections within a second, and nothing leaks across thousands of reloads.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    io::Write,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use integration::{
    App, Mesh, SidecarConfig, SidecarProcess,
    kubelet::{atomic_update, read_identity},
    mesh::{API_ID, BATCH_ID, WEB_ID},
    pki::{Identity, write_identity},
    prom::Metrics,
    tls_client::{self, ClientCert},
};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: Duration = Duration::from_secs(10);

fn client_as(mesh: &Mesh, who: &Identity) -> Arc<ClientConfig> {
    tls_client::config(ClientCert::Dir(&who.dir), mesh.pki.bundle_pem().unwrap().as_bytes(), API_ID).unwrap()
}

async fn metrics(p: &SidecarProcess) -> Metrics {
    Metrics::parse(&p.metrics().await.unwrap()).unwrap()
}

/// Polls `/metrics` until `f` holds, or fails after `within`.
async fn eventually(p: &SidecarProcess, within: Duration, what: &str, f: impl Fn(&Metrics) -> bool) {
    p.metrics_when(within, what, f).await.unwrap();
}

/// Whether `who` can complete a request through api's inbound listener (the echo app answers).
async fn admitted(api: &SidecarProcess, config: Arc<ClientConfig>) -> bool {
    matches!(tls_client::round_trip(api.addr("api"), config, b"ping").await, Ok(reply) if reply == b"ping")
}

/// Writes `text` to `path` the way editors save: a temporary file renamed over the original.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn policy_allowing(ids: &[&str]) -> String {
    let mut y = String::from("rules:\n  - name: callers\n    listeners: [api]\n    allow:\n");
    for id in ids {
        y.push_str(&format!("      - {id}\n"));
    }
    y
}

fn generation(m: &Metrics) -> f64 {
    m.value("sidecar_policy_generation", &[])
}

fn reloads(m: &Metrics, what: &str, result: &str) -> f64 {
    m.value("sidecar_reloads_total", &[("what", what), ("result", result)])
}

/// Issues a fresh identity for `path` with the real certs-agent into a scratch directory and returns its
/// three files.
fn fresh_identity(mesh: &Mesh, path: &str, scratch: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = mesh.dir().join(scratch);
    mesh.pki.issue(path, &dir, "1h").unwrap();
    read_identity(&dir).unwrap()
}

fn serial_of(cert_pem: &[u8]) -> String {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_slice(cert_pem).unwrap();
    policy::svid::leaf_details(&der).unwrap().serial_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_updates_are_served_within_a_second_each() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let secret = mesh.dir().join("api-secret");
    let (c, k, b) = read_identity(&mesh.api.dir).unwrap();
    atomic_update(&secret, &[("svid.pem", &c), ("svid_key.pem", &k), ("svid_bundle.pem", &b)]).unwrap();
    let config = SidecarConfig::new(&secret, &mesh.policy).inbound("api", app.addr);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    let client = client_as(&mesh, &mesh.web);
    assert_eq!(tls_client::served_serial(api.addr("api"), client.clone()).await.unwrap(), serial_of(&c));
    let before = reloads(&metrics(&api).await, "identity", "ok");

    for round in 0..3 {
        let (c, k, b) = fresh_identity(&mesh, "/ns/api/sa/api", &format!("issue-{round}"));
        let want = serial_of(&c);
        let started = Instant::now();
        atomic_update(&secret, &[("svid.pem", &c), ("svid_key.pem", &k), ("svid_bundle.pem", &b)]).unwrap();
        loop {
            let served = tls_client::served_serial(api.addr("api"), client.clone()).await.unwrap();
            if served == want {
                eprintln!("secret update {round}: new serial served {:?} after the swap", started.elapsed());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(1), "round {round}: still serving {served} after 1 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(admitted(&api, client.clone()).await);
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    }
    assert_eq!(reloads(&metrics(&api).await, "identity", "ok") - before, 3.0);
    assert_eq!(reloads(&metrics(&api).await, "identity", "error"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_saves_by_rename_truncate_and_vim_each_reload() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let (web, batch) = (client_as(&mesh, &mesh.web), client_as(&mesh, &mesh.batch));
    assert!(admitted(&api, web.clone()).await);
    assert!(!admitted(&api, batch.clone()).await);

    // 1. Editor-style: write policy.yaml.tmp, rename over policy.yaml. Now batch is allowed.
    save_by_rename(&mesh.policy, &policy_allowing(&[WEB_ID, BATCH_ID]));
    eventually(&api, Duration::from_secs(2), "rename save", |m| generation(m) == 2.0).await;
    assert!(admitted(&api, batch.clone()).await);

    // 2. In place: truncate and rewrite the same inode. batch is out again.
    {
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&mesh.policy).unwrap();
        f.write_all(policy_allowing(&[WEB_ID]).as_bytes()).unwrap();
    }
    eventually(&api, Duration::from_secs(2), "truncate-and-rewrite save", |m| generation(m) == 3.0).await;
    assert!(!admitted(&api, batch.clone()).await);

    // 3. vim-style: rename the original to a backup, write a new file, delete the backup.
    let backup = mesh.policy.with_extension("yaml~");
    std::fs::rename(&mesh.policy, &backup).unwrap();
    std::fs::write(&mesh.policy, policy_allowing(&[BATCH_ID, WEB_ID])).unwrap();
    std::fs::remove_file(&backup).unwrap();
    eventually(&api, Duration::from_secs(2), "vim save", |m| generation(m) == 4.0).await;
    assert!(admitted(&api, batch.clone()).await);
    assert!(admitted(&api, web.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_atomic_writer_never_causes_a_failed_handshake() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let dir = mesh.dir().join("api-plain");
    let (c0, k0, b0) = read_identity(&mesh.api.dir).unwrap();
    write_identity(
        &dir,
        &String::from_utf8(c0.clone()).unwrap(),
        &String::from_utf8(k0).unwrap(),
        &String::from_utf8(b0).unwrap(),
    )
    .unwrap();
    let config = SidecarConfig::new(&dir, &mesh.policy).inbound("api", app.addr);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    let (old, (c1, k1, _)) = (serial_of(&c0), fresh_identity(&mesh, "/ns/api/sa/api", "next"));
    let new = serial_of(&c1);

    // A client handshakes (and exchanges a byte) every 10 ms throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, config, addr) = (stop.clone(), client_as(&mesh, &mesh.web), api.addr("api"));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let serial = tls_client::served_serial(addr, config.clone()).await;
                let echoed = tls_client::round_trip(addr, config.clone(), b"x").await;
                seen.push((serial.map_err(|e| e.to_string()), echoed.map_err(|e| e.to_string())));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };

    tokio::time::sleep(Duration::from_millis(200)).await;
    // The certificate is rewritten in place; the key follows 300 ms later, in small chunks.
    std::fs::write(dir.join("svid.pem"), &c1).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(dir.join("svid_key.pem")).unwrap();
        for chunk in k1.chunks(16) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = client.await.unwrap();

    assert!(seen.len() > 50, "only {} attempts", seen.len());
    for (i, (serial, echoed)) in seen.iter().enumerate() {
        let serial = serial.as_ref().unwrap_or_else(|e| panic!("attempt {i}: handshake failed: {e}"));
        assert!(serial == &old || serial == &new, "attempt {i}: served serial {serial}");
        assert_eq!(echoed.as_deref().unwrap_or_else(|e| panic!("attempt {i}: {e}")), b"x");
    }
    assert_eq!(seen.last().unwrap().0.as_ref().unwrap(), &new, "the final state is the new pair");
    let m = metrics(&api).await;
    assert!(reloads(&m, "identity", "error") >= 1.0, "the mismatched pair was not counted as a failed reload");
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("result", "error")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_never_replaces_the_good_one() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let (web, batch) = (client_as(&mesh, &mesh.web), client_as(&mesh, &mesh.batch));

    save_by_rename(&mesh.policy, "rules:\n  - name: broken\n    allow: [spiffe://example.org/ns/web/sa/web\n");
    eventually(&api, Duration::from_secs(2), "first error", |m| reloads(m, "policy", "error") == 1.0).await;
    assert!(admitted(&api, web.clone()).await);
    assert!(!admitted(&api, batch.clone()).await);

    save_by_rename(
        &mesh.policy,
        "rules:\n  - name: wildcard-mid-segment\n    allow:\n      - spiffe://example.org/ns/fo*\n",
    );
    eventually(&api, Duration::from_secs(2), "second error", |m| reloads(m, "policy", "error") == 2.0).await;
    assert!(admitted(&api, web.clone()).await);
    assert!(!admitted(&api, batch.clone()).await);

    let m = metrics(&api).await;
    assert_eq!(generation(&m), 1.0, "the good policy is still in force");
    let errors = api.log_matching(|v| v["message"].as_str().is_some_and(|s| s.starts_with("policy reload failed")));
    assert_eq!(errors.len(), 2);
    let file = mesh.policy.display().to_string();
    for e in &errors {
        let text = e["error"].as_str().unwrap();
        let rest =
            text.strip_prefix(&format!("{file}:")).unwrap_or_else(|| panic!("error does not name the file: {text}"));
        let mut parts = rest.splitn(3, ':');
        let (line, col) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok(), "no line:column in {text}");
    }
    assert!(errors[1]["error"].as_str().unwrap().contains(":4:9:"), "{}", errors[1]["error"]);

    // Reverting the file to the policy in force clears the error in /status (it is a successful load).
    save_by_rename(&mesh.policy, integration::mesh::POLICY);
    eventually(&api, Duration::from_secs(2), "revert counted", |m| reloads(m, "policy", "ok") == 2.0).await;
    let (_, body) = integration::http::get(api.admin, "/status").await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reloads"]["policy"]["ok"], true, "{status}");
    assert_eq!(status["policy"]["generation"], 1);
}

/// A caller holding an open connection: sends a numbered chunk every 10 ms and checks the echo.
struct Stream {
    sent: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<(u64, Option<Instant>)>,
    stop: Arc<AtomicBool>,
}

async fn open_stream(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Stream {
    let tls = tls_client::connect(addr, config).await.unwrap();
    let (mut r, mut w) = tokio::io::split(tls);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                if w.write_all(&n.to_be_bytes()).await.is_err() {
                    return;
                }
                n += 1;
                sent.store(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = w.shutdown().await;
        })
    };
    // Reads echoes in order; returns how many arrived intact and when the stream was cut, if it was.
    let task = tokio::spawn(async move {
        let mut expect: u64 = 0;
        let mut buf = [0u8; 8];
        loop {
            match r.read_exact(&mut buf).await {
                Ok(_) => {
                    assert_eq!(u64::from_be_bytes(buf), expect, "echo out of order or corrupted");
                    expect += 1;
                }
                Err(_) => {
                    writer.abort();
                    return (expect, Some(Instant::now()));
                }
            }
        }
    });
    Stream { sent, task, stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_caller_closes_its_open_connection_within_a_second() {
    let mesh = Mesh::new().unwrap();
    std::fs::write(&mesh.policy, policy_allowing(&[WEB_ID, BATCH_ID])).unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let (web, batch) = (client_as(&mesh, &mesh.web), client_as(&mesh, &mesh.batch));

    let web_stream = open_stream(api.addr("api"), web.clone()).await;
    let batch_stream = open_stream(api.addr("api"), batch.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let landed = Instant::now();
    save_by_rename(&mesh.policy, &policy_allowing(&[WEB_ID]));
    let (_, cut_at) = tokio::time::timeout(Duration::from_secs(3), batch_stream.task).await.unwrap().unwrap();
    let cut = cut_at.unwrap().duration_since(landed);
    assert!(cut < Duration::from_secs(1), "revoked caller's connection closed after {cut:?}");
    eprintln!("revocation: the caller's open connection closed {cut:?} after the policy landed");

    assert!(!admitted(&api, batch.clone()).await, "the revoked caller can connect again");
    let m = metrics(&api).await;
    assert_eq!(m.value("sidecar_revoked_connections_total", &[("listener", "api")]), 1.0);
    api.wait_log(Duration::from_secs(5), |v| v["reason"] == "revoked" && v["peer.id"] == BATCH_ID).await.unwrap();

    // The allowed caller never noticed: keep streaming, then close and count every echoed chunk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    web_stream.stop.store(true, Ordering::SeqCst);
    let (echoed, _) = tokio::time::timeout(Duration::from_secs(5), web_stream.task).await.unwrap().unwrap();
    assert_eq!(echoed, web_stream.sent.load(Ordering::SeqCst), "bytes lost on the allowed connection");
    assert!(echoed > 50);
}

/// Publishes `dir`'s identity with `bundle` replacing its trust bundle (atomically, kubelet-style).
fn publish(dir: &Path, cert: &[u8], key: &[u8], bundle: &[u8]) {
    atomic_update(dir, &[("svid.pem", cert), ("svid_key.pem", key), ("svid_bundle.pem", bundle)]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_keeps_every_step_working_and_finally_refuses_the_old_root() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    // A second root for the same trust domain, made by the real certs-agent.
    let root_b = integration::Pki::init(&mesh.dir().join("b"), "example.org").unwrap();
    let bundle_a = mesh.pki.bundle_pem().unwrap().into_bytes();
    let bundle_b = root_b.bundle_pem().unwrap().into_bytes();
    let bundle_ab = [bundle_a.clone(), bundle_b.clone()].concat();

    let (api_dir, web_dir) = (mesh.dir().join("api-k8s"), mesh.dir().join("web-k8s"));
    let (ac, ak, _) = read_identity(&mesh.api.dir).unwrap();
    let (wc, wk, _) = read_identity(&mesh.web.dir).unwrap();
    publish(&api_dir, &ac, &ak, &bundle_a);
    publish(&web_dir, &wc, &wk, &bundle_a);
    let api = SidecarProcess::start(
        "api-inbound",
        mesh.dir(),
        &SidecarConfig::new(&api_dir, &mesh.policy).inbound("api", app.addr),
    )
    .unwrap();
    let web = SidecarProcess::start(
        "web-outbound",
        mesh.dir(),
        &SidecarConfig::new(&web_dir, &mesh.policy).outbound("api", api.addr("api"), API_ID),
    )
    .unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    async fn through_pair(web: &SidecarProcess) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(web.addr("api")).await else { return false };
        if s.write_all(b"ping").await.is_err() || s.shutdown().await.is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
        reply == b"ping"
    }
    async fn anchors(p: &SidecarProcess, n: f64) {
        eventually(p, Duration::from_secs(2), "trust anchors", |m| m.value("sidecar_trust_anchors", &[]) == n).await;
    }
    assert!(through_pair(&web).await, "step 0: {{A}}");

    // Step 1: both sides trust A and B; leaves still from A.
    publish(&api_dir, &ac, &ak, &bundle_ab);
    publish(&web_dir, &wc, &wk, &bundle_ab);
    anchors(&api, 2.0).await;
    anchors(&web, 2.0).await;
    assert!(through_pair(&web).await, "step 1: bundle {{A,B}}, leaves from A");

    // Step 2: leaves re-issued from B, one side at a time, bundles still {A,B}.
    let b_api = root_b.issue("/ns/api/sa/api", &mesh.dir().join("b-api"), "1h").unwrap();
    let (bc, bk, _) = read_identity(&b_api.dir).unwrap();
    publish(&api_dir, &bc, &bk, &bundle_ab);
    eventually(&api, Duration::from_secs(2), "api reload", |m| reloads(m, "identity", "ok") == 3.0).await;
    assert!(through_pair(&web).await, "step 2a: api from B, web from A");
    let b_web = root_b.issue("/ns/web/sa/web", &mesh.dir().join("b-web"), "1h").unwrap();
    let (bwc, bwk, _) = read_identity(&b_web.dir).unwrap();
    publish(&web_dir, &bwc, &bwk, &bundle_ab);
    eventually(&web, Duration::from_secs(2), "web reload", |m| reloads(m, "identity", "ok") == 3.0).await;
    assert!(through_pair(&web).await, "step 2b: both from B");

    // Step 3: A is retired.
    publish(&api_dir, &bc, &bk, &bundle_b);
    publish(&web_dir, &bwc, &bwk, &bundle_b);
    anchors(&api, 1.0).await;
    anchors(&web, 1.0).await;
    assert!(through_pair(&web).await, "step 3: bundle {{B}}");

    // A peer still holding its A-signed leaf is refused.
    let stale = tls_client::config(ClientCert::Dir(&mesh.web.dir), &bundle_b, API_ID).unwrap();
    assert!(!admitted(&api, stale).await, "an A-signed leaf was accepted after A was retired");
    eventually(&api, Duration::from_secs(2), "untrusted counted", |m| {
        m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "untrusted")]) == 1.0
    })
    .await;
}

/// Resident memory (bytes) and open file descriptors of a process, from /proc.
fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (kb * 1024, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_reloads_leak_neither_memory_nor_descriptors() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let valid = |i: usize| format!("{}# revision {i}\n", policy_allowing(&[WEB_ID]));
    let invalid = |i: usize| format!("rules:\n  - name: r{i}\n    allow: [spiffe://example.org/ns/fo*]\n");

    let mut done = 0.0;
    let mut reload = |i: usize| {
        let text = if i.is_multiple_of(2) { valid(i) } else { invalid(i) };
        let api = &api;
        let policy = mesh.policy.clone();
        done += 1.0;
        let want = done;
        async move {
            save_by_rename(&policy, &text);
            api.signal("HUP").unwrap();
            eventually(api, Duration::from_secs(5), "reload", |m| {
                reloads(m, "policy", "ok") + reloads(m, "policy", "error") - 1.0 >= want
            })
            .await;
        }
    };
    // Warm up (allocator arenas, lazily built state), then measure.
    for i in 0..100 {
        reload(i).await;
    }
    // Let admin connections from the scrapes above close before counting descriptors.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, fds0) = rss_and_fds(api.pid());
    for i in 100..2100 {
        reload(i).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss1, fds1) = rss_and_fds(api.pid());
    let m = metrics(&api).await;
    assert!(reloads(&m, "policy", "ok") >= 1000.0 && reloads(&m, "policy", "error") >= 1000.0);
    let grown = rss1.saturating_sub(rss0);
    eprintln!("2000 reloads: RSS {rss0} -> {rss1} bytes (+{grown}), fds {fds0} -> {fds1}");
    assert!(grown < 5 * 1024 * 1024, "RSS grew by {grown} bytes over 2000 reloads");
    assert!(fds1 <= fds0, "file descriptors leaked: {fds0} -> {fds1}");
    assert!(admitted(&api, client_as(&mesh, &mesh.web)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_both_sides_every_five_seconds_under_load_fails_no_request() {
    // 60 s as the acceptance requires; ROTATION_SOAK_SECS shortens it for local iteration.
    let secs: u64 = std::env::var("ROTATION_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..20u8)
        .map(|c| {
            let (stop, addr) = (stop.clone(), web.addr("api"));
            tokio::spawn(async move {
                let payload = integration::apps::pattern(1024, c);
                let (mut ok, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let attempt = async {
                        let mut s = tokio::net::TcpStream::connect(addr).await?;
                        s.write_all(&payload).await?;
                        s.shutdown().await?;
                        let mut reply = Vec::new();
                        s.read_to_end(&mut reply).await?;
                        Ok::<_, std::io::Error>(reply)
                    };
                    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                        Ok(Ok(reply)) if reply == payload => ok += 1,
                        Ok(Ok(reply)) => failed.push(format!("short reply: {} bytes", reply.len())),
                        Ok(Err(e)) => failed.push(e.to_string()),
                        Err(_) => failed.push("timed out".into()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    let started = Instant::now();
    let mut rotations = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(secs).saturating_sub(started.elapsed())))
            .await;
        mesh.pki.issue("/ns/api/sa/api", &mesh.api.dir, "1h").unwrap();
        mesh.pki.issue("/ns/web/sa/web", &mesh.web.dir, "1h").unwrap();
        rotations += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!("{rotations} rotations, {ok} requests ok, {} failed", failed.len());
    assert!(failed.is_empty(), "{} requests failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(ok > 100 * secs, "only {ok} requests in {secs} s");
    // Every rotation was picked up (the last one may still be landing).
    let all = 1.0 + rotations as f64;
    eventually(&api, Duration::from_secs(2), "api reloads", |m| reloads(m, "identity", "ok") == all).await;
    eventually(&web, Duration::from_secs(2), "web reloads", |m| reloads(m, "identity", "ok") == all).await;
    let (am, wm) = (metrics(&api).await, metrics(&web).await);
    assert_eq!(am.value("sidecar_tls_handshakes_total", &[("result", "error")]), 0.0);
    assert_eq!(wm.value("sidecar_tls_handshakes_total", &[("result", "error")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_directory_itself_can_be_replaced() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    // certs/current -> v1: the directory the configuration names is a symlink that deployments repoint.
    let certs = mesh.dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (c, k, b) = read_identity(&mesh.api.dir).unwrap();
    let text = |v: &[u8]| String::from_utf8(v.to_vec()).unwrap();
    write_identity(&certs.join("v1"), &text(&c), &text(&k), &text(&b)).unwrap();
    std::os::unix::fs::symlink("v1", certs.join("current")).unwrap();
    let config = SidecarConfig::new(&certs.join("current"), &mesh.policy).inbound("api", app.addr);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    let client = client_as(&mesh, &mesh.web);

    async fn serves(api: &SidecarProcess, client: Arc<ClientConfig>, want: &str, what: &str) {
        let started = Instant::now();
        loop {
            if tls_client::served_serial(api.addr("api"), client.clone()).await.unwrap() == want {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(1), "{what}: not served within 1 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // 1. Repoint the symlink atomically: current -> v2.
    let (c2, k2, b2) = fresh_identity(&mesh, "/ns/api/sa/api", "two");
    write_identity(&certs.join("v2"), &text(&c2), &text(&k2), &text(&b2)).unwrap();
    std::os::unix::fs::symlink("v2", certs.join("current.tmp")).unwrap();
    std::fs::rename(certs.join("current.tmp"), certs.join("current")).unwrap();
    serves(&api, client.clone(), &serial_of(&c2), "symlink repointed").await;

    // 2. Delete the directory and create a new one in its place (a new inode at the same path).
    let (c3, k3, b3) = fresh_identity(&mesh, "/ns/api/sa/api", "three");
    std::fs::remove_file(certs.join("current")).unwrap();
    std::fs::remove_dir_all(certs.join("v2")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_identity(&certs.join("current"), &text(&c3), &text(&k3), &text(&b3)).unwrap();
    serves(&api, client.clone(), &serial_of(&c3), "directory recreated").await;

    // 3. And an update inside the recreated directory is still seen (the watch followed the new inode).
    let (c4, k4, b4) = fresh_identity(&mesh, "/ns/api/sa/api", "four");
    write_identity(&certs.join("current"), &text(&c4), &text(&k4), &text(&b4)).unwrap();
    serves(&api, client.clone(), &serial_of(&c4), "update in the recreated directory").await;
    assert!(admitted(&api, client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_watcher_changes_are_polled_and_status_says_so() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    // The path a sidecar takes when inotify is unavailable (limits, NFS): polling, said in the log and /status.
    let config = SidecarConfig::new(&mesh.api.dir, &mesh.policy).inbound("api", app.addr);
    let api = SidecarProcess::start_with("api-inbound", mesh.dir(), &config, &["--file-watch", "poll"]).unwrap();
    api.wait_ready(READY).await.unwrap();
    let (_, body) = integration::http::get(api.admin, "/status").await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["watcher"]["mode"], "polling", "{status}");
    assert!(status["watcher"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    api.wait_log(Duration::from_secs(5), |v| v["message"].as_str().is_some_and(|m| m.starts_with("polling")))
        .await
        .unwrap();

    // Identity and policy changes still land, within the polling period.
    let client = client_as(&mesh, &mesh.web);
    mesh.pki.issue("/ns/api/sa/api", &mesh.api.dir, "1h").unwrap();
    let want = serial_of(&read_identity(&mesh.api.dir).unwrap().0);
    let started = Instant::now();
    while tls_client::served_serial(api.addr("api"), client.clone()).await.unwrap() != want {
        assert!(started.elapsed() < Duration::from_secs(3), "polled identity not served within 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    save_by_rename(&mesh.policy, &policy_allowing(&[WEB_ID, BATCH_ID]));
    eventually(&api, Duration::from_secs(3), "polled policy", |m| generation(m) == 2.0).await;
    assert!(admitted(&api, client_as(&mesh, &mesh.batch)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_connection_is_reset_at_both_ends_not_ended_as_if_complete() {
    let mesh = Mesh::new().unwrap();
    // The app echoes, and records how its read side ended: a FIN would tell it the caller said everything.
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let app = App::spawn(move |mut s| {
        let ended_tx = ended_tx.clone();
        async move {
            let mut buf = [0u8; 1024];
            let how = loop {
                match s.read(&mut buf).await {
                    Ok(0) => break "eof".to_string(),
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break "write error".to_string();
                        }
                    }
                    Err(e) => break format!("{:?}", e.kind()),
                }
            };
            let _ = ended_tx.send(how);
            Vec::new()
        }
    })
    .await
    .unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    let mut client = tokio::net::TcpStream::connect(web.addr("api")).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).await.unwrap();

    save_by_rename(&mesh.policy, "rules: []\n");
    let mut rest = Vec::new();
    let client_end = tokio::time::timeout(Duration::from_secs(3), client.read_to_end(&mut rest)).await.unwrap();
    let client_end = client_end.map_err(|e| e.kind());
    assert_eq!(client_end, Err(std::io::ErrorKind::ConnectionReset), "the caller saw a clean end");
    let app_end = tokio::time::timeout(Duration::from_secs(3), ended_rx.recv()).await.unwrap().unwrap();
    assert_eq!(app_end, "ConnectionReset", "the app saw a clean end of a connection that was cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_in_place_write_is_read_once_finished_not_half_done() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();

    // Truncate, think for 400 ms, then write and close: an editor or a script saving in place.
    {
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&mesh.policy).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        f.write_all(policy_allowing(&[WEB_ID, BATCH_ID]).as_bytes()).unwrap();
    }
    eventually(&api, Duration::from_secs(3), "the finished file loaded", |m| generation(m) == 2.0).await;
    let m = metrics(&api).await;
    assert_eq!(reloads(&m, "policy", "error"), 0.0, "the half-written (empty) file was read and counted as an error");
}
