//! `cargo run -p integration --bin mesh-demo`: a complete service mesh on this machine, with real `sidecar`
//! and `certs-agent` processes and real certificates, narrated step by step for an operator.
//!
//! Every outcome line starts with a marker (`ALLOWED`, `REFUSED`, `OK`, or `FAIL` with what was expected and
//! what was seen). The process exits 0 only if every check passed. The work directory (`target/mesh-demo/`
//! under the workspace root, or `$MESH_DEMO_DIR`) keeps the CA, identities, policy, sidecar configurations
//! and logs. Sidecars are killed when their handles drop, so every way out of [`run`] (success, error,
//! Ctrl-C) stops them.
#![forbid(unsafe_code)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use integration::{
    Identity, Pki, SidecarConfig, SidecarProcess, bins, http,
    mesh::{API_ID, BATCH_ID, POLICY, TRUST_DOMAIN, WEB_ID},
    pki::{LeafSpec, foreign_ca, write_fixture},
    prom::Metrics,
    tls_client::{self, ClientCert},
};
use policy::LeafDetails;
use prometheus_parse::Value as Sample;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Overrides the work directory (the end-to-end test points it at a temporary directory).
const DIR_ENV: &str = "MESH_DEMO_DIR";
/// Marks a directory as made by this demo, so a rerun may wipe it and nothing else.
const MARKER: &str = ".mesh-demo";
/// How long any single step may wait (readiness, a response, a log line, an exit).
const WAIT: Duration = Duration::from_secs(10);
/// The inbound listener on api's sidecar, and the outbound route name on the callers' sidecars.
const LISTENER: &str = "api";
const DENIED_LOG: &str = "connection refused: caller not allowed by policy";
const HANDSHAKE_LOG: &str = "connection refused: handshake failed";
/// What web's app sends through its sidecar.
const WEB_REQUESTS: &[(&str, &str, &str)] = &[("GET", "/orders/42", ""), ("POST", "/orders", "{\"item\":\"book\"}")];
const BATCH_REQUEST: (&str, &str, &str) = ("GET", "/reports/daily", "");

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("demo: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run() => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); the sidecars were stopped")),
        }
    });
    // Whichever way `run` ended, its sidecars have been dropped (and so stopped) by now.
    match outcome {
        Ok(checks) => checks.finish(),
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<Checks> {
    let mut checks = Checks::default();
    let dir = prepare_work_dir()?;
    println!("mesh-demo: a service mesh on this machine, with real sidecar processes and real certificates");
    println!("(building sidecar and certs-agent with cargo, if needed)");
    build_binaries()?;

    step(1, "Certificates: a CA for example.org, then one identity per workload (certs-agent)");
    let cast = Cast::issue(&dir)?;

    step(2, "Policy: only web may call the listener api");
    let policy = write_policy(&dir)?;
    check_policy(&policy, &mut checks)?;

    step(3, "Start api's app and one sidecar per workload (sidecar run)");
    let app = ApiApp::start().await?;
    let mut fleet = Fleet::start(&dir, &cast, &policy, app.addr)?;
    fleet.wait_ready(&mut checks).await?;

    step(4, "Traffic: plaintext HTTP from each app into its own outbound sidecar");
    send_traffic(&fleet, &app, &mut checks).await?;

    step(5, "Impostor: web's SPIFFE ID on a certificate from a CA nobody here trusts");
    send_impostor(&dir, &cast, &fleet, &app, &mut checks).await?;

    step(6, "What the sidecars report (/metrics, /ready, /status)");
    report(&fleet.api, &cast.api, &mut checks).await?;
    report(&fleet.web, &cast.web, &mut checks).await?;
    check_counters(&fleet, &mut checks).await?;

    step(7, "Graceful shutdown (POST /shutdown on each admin port)");
    fleet.shutdown(&mut checks).await?;
    drop(fleet); // saves the logs
    println!("\nThe certificates, policy, sidecar configs and logs are kept in {} for inspection.", dir.display());
    Ok(checks)
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// The outcomes seen so far; each is printed as it is recorded.
#[derive(Default)]
struct Checks {
    passed: usize,
    failures: Vec<String>,
}

impl Checks {
    /// Prints `marker what: seen` when `ok`, else `FAIL what: expected ..., saw ...`.
    fn record(&mut self, marker: &str, what: &str, ok: bool, expected: &str, seen: &str) {
        if ok {
            self.passed += 1;
            println!("   {marker:<8} {what}: {seen}");
        } else {
            println!("   {:<8} {what}: expected {expected}, saw {seen}", "FAIL");
            self.failures.push(format!("{what}: expected {expected}, saw {seen}"));
        }
    }

    fn finish(self) -> ExitCode {
        let total = self.passed + self.failures.len();
        if self.failures.is_empty() {
            println!("demo: all {total} checks passed");
            return ExitCode::SUCCESS;
        }
        println!("demo: {} of {total} checks FAILED:", self.failures.len());
        for failure in &self.failures {
            println!("  - {failure}");
        }
        ExitCode::FAILURE
    }
}

/// `target/mesh-demo` under the workspace root (or `$MESH_DEMO_DIR`), emptied: a previous run's directory is
/// wiped, anything else is refused.
fn prepare_work_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os(DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => bins::workspace_root().join("target").join("mesh-demo"),
    };
    if dir.exists() {
        let empty = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.next().is_none();
        ensure!(
            empty || dir.join(MARKER).exists(),
            "{} exists and was not made by mesh-demo (no {MARKER} file): remove it or set {DIR_ENV}",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by mesh-demo; wiped by its next run\n")?;
    dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))
}

/// Builds (or finds up to date) the `sidecar` and `certs-agent` binaries.
fn build_binaries() -> anyhow::Result<()> {
    // `bins()` panics with cargo's output when the build fails: turn that into an error.
    std::panic::catch_unwind(bins::bins)
        .map(|_| ())
        .map_err(|_| anyhow!("building sidecar and certs-agent failed (cargo's output is above)"))
}

/// The trust domain's CA and the three workload identities.
struct Cast {
    pki: Pki,
    web: Identity,
    api: Identity,
    batch: Identity,
}

impl Cast {
    fn issue(dir: &Path) -> anyhow::Result<Self> {
        let pki = Pki::init(dir, TRUST_DOMAIN).context("certs-agent ca init")?;
        print_cert("CA", "trust domain example.org", &pki.ca_dir.join("ca.pem"))?;
        let issue = |name: &str, id: &str| -> anyhow::Result<Identity> {
            let path = id
                .strip_prefix(&format!("spiffe://{TRUST_DOMAIN}"))
                .with_context(|| format!("{id} is not in {TRUST_DOMAIN}"))?;
            let identity = pki.issue(path, &dir.join(name), "1h").with_context(|| format!("certs-agent issue {id}"))?;
            print_cert(name, id, &identity.dir.join("svid.pem"))?;
            Ok(identity)
        };
        let web = issue("web", WEB_ID)?;
        let api = issue("api", API_ID)?;
        let batch = issue("batch", BATCH_ID)?;
        println!("   (for everything a certificate says: certs-agent inspect {})", web.dir.join("svid.pem").display());
        Ok(Self { pki, web, api, batch })
    }
}

fn print_cert(name: &str, subject: &str, path: &Path) -> anyhow::Result<()> {
    let cert = cert_details(path)?;
    println!("   {name:<6} {subject:<39}  serial {}  expires {}", short(&cert.serial_hex), utc(cert.not_after));
    Ok(())
}

/// The display facts of the first certificate in a PEM file.
fn cert_details(path: &Path) -> anyhow::Result<LeafDetails> {
    let cert = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", path.display()))?
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    policy::svid::leaf_details(&cert).with_context(|| format!("parsing {}", path.display()))
}

/// A long hex string cut to its first 16 digits.
fn short(hex: &str) -> String {
    match hex.get(..16) {
        Some(head) if hex.len() > 16 => format!("{head}…"),
        _ => hex.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("unix {unix}"),
    }
}

fn write_policy(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).with_context(|| format!("writing {}", path.display()))?;
    println!("   policy.yaml:");
    for line in POLICY.lines() {
        println!("   | {line}");
    }
    Ok(path)
}

/// Asks the real `sidecar policy check` what it decides for web and for batch.
fn check_policy(policy: &Path, checks: &mut Checks) -> anyhow::Result<()> {
    println!("   $ sidecar policy check policy.yaml --listener {LISTENER} --peer <SPIFFE ID>");
    for (name, id, expected) in [("web", WEB_ID, "allow"), ("batch", BATCH_ID, "deny")] {
        let decision = policy_decision(policy, id)?;
        let ok = decision.starts_with(&format!("{expected} by rule"));
        checks.record("OK", &format!("{name:<5} ({id})"), ok, expected, &decision);
    }
    Ok(())
}

/// The decision `sidecar policy check` prints for `peer`, without the peer's ID in front.
fn policy_decision(policy: &Path, peer: &str) -> anyhow::Result<String> {
    let out = Command::new(&bins::bins().sidecar)
        .args(["policy", "check"])
        .arg(policy)
        .args(["--listener", LISTENER, "--peer", peer])
        .output()
        .context("running sidecar policy check")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "sidecar policy check --peer {peer}: expected exit 0, saw {}: {}{}",
        out.status,
        stdout.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let last = stdout.lines().last().unwrap_or_default();
    Ok(last.strip_prefix(&format!("{peer}: ")).unwrap_or(last).to_string())
}

/// api's plaintext HTTP app, which records every request that reaches it.
struct ApiApp {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ApiApp {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding api's app")?;
        let app = Self { addr: listener.local_addr()?, connections: Arc::default(), requests: Arc::default() };
        let (connections, requests) = (app.connections.clone(), app.requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_http(stream, requests.clone()));
            }
        });
        println!("   app             listens {:<15}  api's plaintext HTTP app", app.addr);
        Ok(app)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `METHOD PATH` of every request so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Answers `hello from api, you sent METHOD PATH` to each request on one connection.
async fn serve_http(stream: TcpStream, requests: Arc<Mutex<Vec<String>>>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let line = format!("{} {}", req.method(), req.uri().path());
        requests.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
        let body = Full::new(Bytes::from(format!("hello from api, you sent {line}")));
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// The three sidecars. On drop (however the demo ends) their logs are saved, then they are killed.
struct Fleet {
    dir: PathBuf,
    api: SidecarProcess,
    web: SidecarProcess,
    batch: SidecarProcess,
}

impl Fleet {
    fn start(dir: &Path, cast: &Cast, policy: &Path, app: SocketAddr) -> anyhow::Result<Self> {
        let config = |identity: &Identity| SidecarConfig::new(&identity.dir, policy).extra("timeouts: { drain: 5s }");
        let api = SidecarProcess::start("api-inbound", dir, &config(&cast.api).inbound(LISTENER, app))
            .context("starting api's inbound sidecar")?;
        let api_addr = listener(&api)?;
        println!("   api-inbound     listens {api_addr:<15}  mTLS in -> app {app:<15}    admin {}", api.admin);
        let outbound = |name: &str, identity: &Identity| -> anyhow::Result<SidecarProcess> {
            let config = config(identity).outbound(LISTENER, api_addr, API_ID);
            let sidecar = SidecarProcess::start(name, dir, &config).with_context(|| format!("starting {name}"))?;
            println!(
                "   {name:<15} listens {:<15}  -> mTLS {api_addr:<15} as api   admin {}",
                listener(&sidecar)?.to_string(),
                sidecar.admin
            );
            Ok(sidecar)
        };
        let web = outbound("web-outbound", &cast.web)?;
        let batch = outbound("batch-outbound", &cast.batch)?;
        println!(
            "   (\"as api\": an outbound sidecar completes a handshake only if the peer proves server_id {API_ID})"
        );
        Ok(Self { dir: dir.to_path_buf(), api, web, batch })
    }

    fn all(&self) -> [&SidecarProcess; 3] {
        [&self.api, &self.web, &self.batch]
    }

    async fn wait_ready(&self, checks: &mut Checks) -> anyhow::Result<()> {
        for sidecar in self.all() {
            wait_ready(sidecar).await?;
        }
        checks.record(
            "OK",
            "/ready",
            true,
            "200",
            "all three sidecars answer 200 (identity loaded, policy loaded, listeners bound)",
        );
        Ok(())
    }

    /// Asks every sidecar to drain and exit, then waits for each to exit 0.
    async fn shutdown(&mut self, checks: &mut Checks) -> anyhow::Result<()> {
        for sidecar in self.all() {
            // A sidecar with nothing to drain can exit before its 202 reaches us (the connection then closes
            // without a response), so only another status is an error: the exit status below is the check.
            if let Ok((status, body)) = http::post(sidecar.admin, "/shutdown").await {
                ensure!(status == 202, "{}: POST /shutdown: expected 202, saw {status} {}", sidecar.name, body.trim());
            }
        }
        for sidecar in [&mut self.web, &mut self.batch, &mut self.api] {
            let what = format!("{} drained and exited", sidecar.name);
            match sidecar.wait_exit(WAIT) {
                Ok(status) => checks.record("OK", &what, status.success(), "exit status 0", &status.to_string()),
                Err(e) => checks.record("OK", &what, false, "exit status 0", &format!("{e:#}")),
            }
        }
        Ok(())
    }

    fn save_logs(&self) -> std::io::Result<()> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        for sidecar in self.all() {
            let path = logs.join(format!("{}.log", sidecar.name));
            std::fs::write(path, sidecar.raw_log() + "\n")?;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Err(e) = self.save_logs() {
            eprintln!("demo: could not save the sidecar logs: {e}");
        }
    }
}

/// The bound address of a sidecar's one listener.
fn listener(sidecar: &SidecarProcess) -> anyhow::Result<SocketAddr> {
    sidecar
        .listeners
        .get(LISTENER)
        .copied()
        .with_context(|| format!("{} reported no listener {LISTENER}", sidecar.name))
}

async fn wait_ready(sidecar: &SidecarProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = http::get(sidecar.admin, "/ready").await;
        if let Ok((200, _)) = seen {
            return Ok(());
        }
        if Instant::now() > deadline {
            let seen = match seen {
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => format!("{e:#}"),
            };
            bail!("{}: expected /ready to answer 200 within {WAIT:?}, saw {seen}", sidecar.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// web's requests (allowed), batch's request (refused by api's policy), and what reached the app.
async fn send_traffic(fleet: &Fleet, app: &ApiApp, checks: &mut Checks) -> anyhow::Result<()> {
    let web = listener(&fleet.web)?;
    for &(method, path, body) in WEB_REQUESTS {
        let (ok, seen) = match send(web, method, path, body).await {
            Ok((status, text)) => (status == 200 && text.starts_with("hello from api"), format!("{status} \"{text}\"")),
            Err(e) => (false, format!("no response ({e:#})")),
        };
        let what = format!("web   -> api  {method} {path}");
        checks.record("ALLOWED", &what, ok, "200 from the app", &seen);
    }

    let (method, path, body) = BATCH_REQUEST;
    let (refused, seen) = match send(listener(&fleet.batch)?, method, path, body).await {
        Ok((status, text)) => (false, format!("{status} \"{text}\"")),
        Err(e) => (true, format!("no response ({e:#})")),
    };
    let what = format!("batch -> api  {method} {path}");
    checks.record("REFUSED", &what, refused, "the connection closed without a response", &seen);
    let log = fleet.api.wait_log(WAIT, |v| v["message"] == DENIED_LOG).await.ok();
    let ok = log.as_ref().is_some_and(|v| v["peer.id"] == BATCH_ID);
    checks.record(
        "OK",
        "api-inbound logged",
        ok,
        &format!("\"{DENIED_LOG}\" for {BATCH_ID}"),
        &describe_log(log.as_ref(), &["peer.id", "rule", "reason"]),
    );

    let expected: Vec<String> = WEB_REQUESTS.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    let seen = app.requests();
    checks.record("OK", "the app saw only web's requests", seen == expected, &expected.join(", "), &seen.join(", "));
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection, as a local app would send it; the status and body text.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &'static str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(WAIT, exchange(addr, method, path, body))
        .await
        .map_err(|_| anyhow!("no answer within {WAIT:?}"))?
}

async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &'static str) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let text = response.into_body().collect().await?.to_bytes();
    // Close the connection (it ends once the sender is gone) so the sidecars have nothing left to drain.
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

/// `"message" key=value ...` for the given keys of a JSON log record.
fn describe_log(record: Option<&Value>, keys: &[&str]) -> String {
    let Some(record) = record else {
        return format!("no such log line within {WAIT:?} (see logs/)");
    };
    let mut text = format!("\"{}\"", record["message"].as_str().unwrap_or("?"));
    for key in keys {
        let value = match &record[*key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(" {key}={value}"));
    }
    text
}

/// Connects straight to api's inbound listener with a certificate from a foreign CA.
async fn send_impostor(
    dir: &Path,
    cast: &Cast,
    fleet: &Fleet,
    app: &ApiApp,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let (issuer, ca_pem) = foreign_ca(TRUST_DOMAIN).context("making the foreign CA")?;
    let impostor = write_fixture(&issuer, &LeafSpec::svid(WEB_ID), &ca_pem, &dir.join("impostor"))
        .context("signing the impostor's certificate")?;
    println!("   {} is for {WEB_ID}, but signed by a foreign CA", impostor.dir.join("svid.pem").display());
    let target = listener(&fleet.api)?;
    let bundle = cast.pki.bundle_pem()?;
    let config = tls_client::config(ClientCert::Dir(&impostor.dir), bundle.as_bytes(), API_ID)?;
    let connections_before = app.connections();

    let (refused, seen) = match tokio::time::timeout(WAIT, impostor_request(target, config)).await {
        Err(_) => (false, format!("no answer within {WAIT:?}")),
        Ok(Ok(0)) => (true, "no response (connection closed)".to_string()),
        Ok(Ok(n)) => (false, format!("{n} bytes of response")),
        Ok(Err(e)) => (true, format!("no response ({e:#})")),
    };
    checks.record("REFUSED", &format!("impostor -> api-inbound {target}"), refused, "no response", &seen);
    let log = fleet.api.wait_log(WAIT, |v| v["message"] == HANDSHAKE_LOG).await.ok();
    let ok = log.as_ref().is_some_and(|v| v["reason"] == "untrusted");
    checks.record(
        "OK",
        "api-inbound logged",
        ok,
        &format!("\"{HANDSHAKE_LOG}\" with reason untrusted"),
        &describe_log(log.as_ref(), &["peer.claimed_id", "reason"]),
    );
    let reached = app.connections() - connections_before;
    checks.record(
        "OK",
        "the app was not reached",
        reached == 0,
        "0 new connections",
        &format!("{reached} new connections"),
    );
    Ok(())
}

/// TLS to `addr`, one HTTP request, one read: the bytes read (0 on EOF).
async fn impostor_request(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> anyhow::Result<usize> {
    let mut tls = tls_client::connect(addr, config).await.context("TLS handshake")?;
    tls.write_all(b"GET /orders HTTP/1.1\r\nhost: api\r\n\r\n").await.context("write")?;
    let mut buf = [0u8; 512];
    tls.read(&mut buf).await.context("read")
}

/// Prints one sidecar's handshake and authorization metrics, readiness and status.
async fn report(sidecar: &SidecarProcess, identity: &Identity, checks: &mut Checks) -> anyhow::Result<()> {
    let metrics = scrape(sidecar).await?;
    println!("   {}:", sidecar.name);
    print_counters(&metrics, "sidecar_tls_handshakes_total", &["direction", "result", "reason"]);
    print_counters(&metrics, "sidecar_authz_decisions_total", &["listener", "decision", "rule"]);
    print_latency(&metrics, "sidecar_tls_handshake_duration_seconds");
    let expiry = metrics.value("sidecar_identity_cert_expiry_timestamp_seconds", &[]) as i64;
    println!("      sidecar_identity_cert_expiry_timestamp_seconds {expiry} ({})", utc(expiry));

    let (ready, ready_body) = http::get(sidecar.admin, "/ready").await?;
    let (_, status) = http::get(sidecar.admin, "/status").await?;
    let status: Value = serde_json::from_str(&status).context("/status is not JSON")?;
    let serial = status["identity"]["serial"].as_str().unwrap_or("-");
    let generation = &status["policy"]["generation"];
    println!(
        "      /ready {ready} {}; /status: identity serial {}, policy generation {generation}",
        ready_body.trim(),
        short(serial)
    );
    let cert = cert_details(&identity.dir.join("svid.pem"))?;
    checks.record(
        "OK",
        &format!("{} serves the certificate certs-agent issued", sidecar.name),
        serial == cert.serial_hex && expiry == cert.not_after,
        &format!("serial {} expiring {}", short(&cert.serial_hex), utc(cert.not_after)),
        &format!("serial {} expiring {}", short(serial), utc(expiry)),
    );
    Ok(())
}

async fn scrape(sidecar: &SidecarProcess) -> anyhow::Result<Metrics> {
    let text = sidecar.metrics().await.with_context(|| format!("GET /metrics on {}", sidecar.name))?;
    Metrics::parse(&text)
}

/// `name{k="v",...} value` for every non-zero series of a counter.
fn print_counters(metrics: &Metrics, name: &str, keys: &[&str]) {
    for sample in metrics.samples(name, &[]) {
        let (Sample::Counter(v) | Sample::Untyped(v)) = sample.value else {
            continue;
        };
        if v > 0.0 {
            println!("      {name}{{{}}} {v}", labels(sample, keys));
        }
    }
}

/// Count, sum, mean and approximate p50/p99 (interpolated within buckets) of each non-empty series.
fn print_latency(metrics: &Metrics, name: &str) {
    // Histogram series come out of the parser in hash order: show ok before error.
    let mut series: Vec<_> = metrics.samples(name, &[]).collect();
    series.sort_by_key(|s| (s.labels.get("direction"), s.labels.get("result") != Some("ok")));
    for sample in series {
        let Sample::Histogram(buckets) = &sample.value else {
            continue;
        };
        let mut buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = buckets.last().map_or(0.0, |b| b.1);
        if count == 0.0 {
            continue;
        }
        let series: Vec<(&str, &str)> =
            ["direction", "result"].iter().filter_map(|k| Some((*k, sample.labels.get(k)?))).collect();
        let sum_ms = metrics.value(&format!("{name}_sum"), &series) * 1000.0;
        let ms = |q| quantile(&buckets, q).map_or("-".into(), |s| format!("{:.2}", s * 1000.0));
        println!(
            "      handshake latency {{{}}}: count {count}, sum {sum_ms:.2} ms, mean {:.2} ms, p50 ~{} ms, p99 ~{} ms",
            labels(sample, &["direction", "result"]),
            sum_ms / count,
            ms(0.5),
            ms(0.99)
        );
    }
}

/// The `q` quantile of a cumulative histogram (sorted `(le, count)` pairs), interpolated linearly within its
/// bucket as Prometheus' `histogram_quantile` does.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank && count > 0.0 {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = count - below;
            let fraction = if within > 0.0 { (rank - below) / within } else { 1.0 };
            return Some(lower + (le - lower) * fraction);
        }
        (lower, below) = (le, count);
    }
    None
}

fn labels(sample: &prometheus_parse::Sample, keys: &[&str]) -> String {
    keys.iter().map(|k| format!("{k}=\"{}\"", sample.labels.get(k).unwrap_or(""))).collect::<Vec<_>>().join(",")
}

/// The counters that prove what the demo did: allowed, denied and untrusted callers, counted where expected.
async fn check_counters(fleet: &Fleet, checks: &mut Checks) -> anyhow::Result<()> {
    let api = scrape(&fleet.api).await?;
    let web = scrape(&fleet.web).await?;
    let allowed = WEB_REQUESTS.len() as f64;
    let counted = [
        (
            "api-inbound: allow decisions (web)",
            api.value("sidecar_authz_decisions_total", &[("decision", "allow"), ("rule", "web-can-call-api")]),
            allowed,
        ),
        (
            "api-inbound: deny decisions (batch)",
            api.value("sidecar_authz_decisions_total", &[("decision", "deny"), ("rule", "default")]),
            1.0,
        ),
        (
            "api-inbound: untrusted handshakes (impostor)",
            api.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "untrusted")]),
            1.0,
        ),
        (
            "web-outbound: ok handshakes",
            web.value("sidecar_tls_handshakes_total", &[("direction", "outbound"), ("reason", "ok")]),
            allowed,
        ),
    ];
    for (what, seen, expected) in counted {
        checks.record("OK", what, seen == expected, &expected.to_string(), &seen.to_string());
    }
    Ok(())
}
