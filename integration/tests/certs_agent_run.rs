//! `certs-agent run` end to end, with the real binaries: renewals at half-life served by a sidecar without a
//! failed connection, SIGKILL during publication never leaving a broken set, a CA outage ridden out, a sidecar
//! that starts before its first certificate, every leaf accepted by OpenSSL, and the agent's metrics.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    path::Path,
    time::{Duration, Instant},
};

use integration::{
    App, Pki, SidecarConfig, SidecarProcess,
    agent::{AgentProcess, unix_now},
    http,
    mesh::{API_ID, POLICY, TRUST_DOMAIN, WEB_ID},
    prom::Metrics,
    svid_dir::{self, Watch},
    tls_client::{self, ClientCert},
    traffic::{self, Target, Traffic},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: Duration = Duration::from_secs(10);

/// A CA, a policy letting web call api, and web's own (long-lived, one-shot) identity for test clients.
struct Setup {
    tmp: tempfile::TempDir,
    pki: Pki,
    policy: std::path::PathBuf,
    web: integration::Identity,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("agent-").tempdir().unwrap();
        let pki = Pki::init(tmp.path(), TRUST_DOMAIN).unwrap();
        let web = pki.issue("/ns/web/sa/web", &tmp.path().join("web"), "1h").unwrap();
        let policy = tmp.path().join("policy.yaml");
        std::fs::write(&policy, POLICY).unwrap();
        Setup { tmp, pki, policy, web }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// A client that presents web's identity and requires the server to be api.
    fn web_client(&self) -> std::sync::Arc<rustls::ClientConfig> {
        tls_client::config(ClientCert::Dir(&self.web.dir), self.pki.bundle_pem().unwrap().as_bytes(), API_ID).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_fed_by_run_serves_five_successive_svids_in_twelve_seconds_without_a_failure() {
    let setup = Setup::new();
    let app = App::echo().await.unwrap();
    let out = setup.dir().join("api");
    let agent = AgentProcess::start("api-agent", &setup.pki.ca_dir, API_ID, &out, "4s", &[]).unwrap();
    let watch = Watch::start(&out);
    agent.wait_publications(1, READY).await.unwrap();
    let api = SidecarProcess::start(
        "api-inbound",
        setup.dir(),
        &SidecarConfig::new(&out, &setup.policy).inbound("api", app.addr),
    )
    .unwrap();
    api.wait_ready(READY).await.unwrap();

    let traffic = Traffic::start(Target::Tls(api.addr("api"), setup.web_client()), Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = traffic.stop().await;

    let sightings = watch.sightings();
    let failed = traffic::failures(&attempts);
    let served = traffic::served_serials(&attempts);
    eprintln!(
        "{} connections, {} failed; {} SVIDs published, {} served: {served:?}",
        attempts.len(),
        failed.len(),
        sightings.len(),
        served.len()
    );
    // Renewal times as a fraction of each SVID's useful life (first seen -> notAfter).
    let mut ratios = Vec::new();
    for pair in sightings.windows(2) {
        let published = pair[0].published.as_ref().unwrap();
        let life = published.leaf.not_after as f64 - pair[0].unix;
        ratios.push((pair[1].unix - pair[0].unix) / life);
    }
    eprintln!(
        "renewal points (fraction of lifetime): {:?}",
        ratios.iter().map(|r| format!("{:.3}", r)).collect::<Vec<_>>()
    );

    assert!(failed.is_empty(), "failed connections: {failed:?}\n{}", api.raw_log());
    assert!(attempts.len() >= 150, "only {} connections in 12 s", attempts.len());
    for s in &sightings {
        assert!(s.published.is_ok(), "inconsistent publication {}: {:?}", s.serial, s.published);
    }
    assert!(sightings.len() >= 5, "only {} SVIDs published in 12 s", sightings.len());
    assert!(ratios.iter().all(|r| (0.4..=0.6).contains(r)), "renewal outside 40-60% of the lifetime: {ratios:?}");
    // Every SVID published while traffic ran was served, in order, each with a new serial.
    assert!(served.len() >= 5, "the sidecar served only {served:?}");
    let published: Vec<&str> = sightings.iter().map(|s| s.serial.as_str()).collect();
    let mut last = 0;
    for serial in &served {
        let at =
            published.iter().position(|p| p == serial).unwrap_or_else(|| panic!("served {serial}, never published"));
        assert!(at >= last, "served out of order: {served:?} vs {published:?}");
        last = at;
    }
    // The key changes with every renewal.
    let keys: Vec<&Vec<u8>> = sightings.iter().map(|s| &s.published.as_ref().unwrap().key_pem).collect();
    assert!(keys.windows(2).all(|w| w[0] != w[1]), "a key was reused");
}

/// A small deterministic pseudo-random sequence (xorshift), seeded from the clock and printed, so a failing
/// run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_publication_never_leaves_an_inconsistent_directory() {
    const ROUNDS: usize = 60;
    let setup = Setup::new();
    let out = setup.dir().join("api");
    // A complete set exists before the first kill.
    setup.pki.issue("/ns/api/sa/api", &out, "1h").unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);

    let (mut mid_publication, mut publications, mut checked) = (0, 0, 0);
    for round in 0..ROUNDS {
        // --churn: issue and publish back to back, so that once the first publication is done, a kill lands
        // inside an issuance (which writes the CA directory) or a publication.
        let before = svid_dir::leftovers(&out);
        let mut agent = AgentProcess::spawn("churn", &setup.pki.ca_dir, API_ID, &out, "1h", &["--churn"]).unwrap();
        let deadline = Instant::now() + READY;
        while agent.publications().is_empty() {
            assert!(
                agent.running() && Instant::now() < deadline,
                "round {round}: no publication:\n{}",
                agent.raw_log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.next(40_000)));
        assert!(agent.running(), "round {round}: the agent had exited:\n{}", agent.raw_log());
        agent.kill().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // let the log reader catch up
        publications += agent.publications().len();
        drop(agent);

        // A version directory (or temporary link) that was not there before: this kill interrupted a
        // publication or the clean-up that ends it.
        if svid_dir::leftovers(&out).iter().any(|l| !before.contains(l)) {
            mid_publication += 1;
        }
        let published = svid_dir::read_checked(&out).unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        assert_eq!(published.id.as_str(), API_ID);
        checked += 1;
    }
    eprintln!(
        "{ROUNDS} SIGKILLs: {publications} publications completed in total, {mid_publication} kills interrupted a \
         publication, {checked} directories checked consistent"
    );
    assert!(mid_publication >= 5, "only {mid_publication} kills landed inside a publication");

    // A normal start afterwards cleans up and works; so does the CA directory.
    let agent = AgentProcess::start("after", &setup.pki.ca_dir, API_ID, &out, "1h", &[]).unwrap();
    agent.wait_publications(1, READY).await.unwrap();
    assert!(svid_dir::leftovers(&out).is_empty(), "{:?}", svid_dir::leftovers(&out));
    svid_dir::read_checked(&out).unwrap();
    setup.pki.issue("/ns/batch/sa/report", &setup.dir().join("batch"), "1h").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_and_an_issue_on_one_directory_never_break_what_readers_see() {
    let setup = Setup::new();
    let out = setup.dir().join("api");
    // Two agents publishing back to back into one directory (a misconfiguration, but it must stay safe).
    let a = AgentProcess::start("churn-a", &setup.pki.ca_dir, API_ID, &out, "1h", &["--churn"]).unwrap();
    let b = AgentProcess::start("churn-b", &setup.pki.ca_dir, API_ID, &out, "1h", &["--churn"]).unwrap();
    a.wait_publications(1, READY).await.unwrap();
    b.wait_publications(1, READY).await.unwrap();

    // A reader reading the way the sidecar does, as fast as it can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut consistent, mut superseded, mut broken) = (0usize, 0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match svid_dir::read_current(&out) {
                    Ok(svid_dir::Read::Consistent(p)) => {
                        assert_eq!(p.id.as_str(), API_ID);
                        consistent += 1;
                    }
                    Ok(svid_dir::Read::Superseded) => superseded += 1,
                    Err(e) => broken.push(format!("{e:#}")),
                }
            }
            (consistent, superseded, broken)
        })
    };
    // Meanwhile, one-shot `issue` into the same directory.
    let (ca, dir) = (setup.pki.ca_dir.to_str().unwrap(), out.to_str().unwrap());
    let mut issue_failures = Vec::new();
    for _ in 0..8 {
        let o =
            integration::agent::certs_agent_output(&["issue", "--ca-dir", ca, "--id", API_ID, "--out", dir]).unwrap();
        if !o.status.success() {
            issue_failures.push(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (consistent, superseded, broken) = reader.join().unwrap();

    let failed = |agent: &AgentProcess| {
        agent.log_matching(|v| v["message"] == "renewal failed; the published SVID stays in place")
    };
    let (a_pubs, b_pubs) = (a.publications().len(), b.publications().len());
    eprintln!(
        "{a_pubs} + {b_pubs} publications; reads: {consistent} consistent, {superseded} superseded while read, {} \
         broken; {} + {} failed renewals, {} failed issues",
        broken.len(),
        failed(&a).len(),
        failed(&b).len(),
        issue_failures.len()
    );
    assert!(broken.is_empty(), "{} broken reads, e.g. {:?}", broken.len(), &broken[..broken.len().min(3)]);
    assert!(failed(&a).is_empty() && failed(&b).is_empty(), "{:?} {:?}", failed(&a), failed(&b));
    assert!(issue_failures.is_empty(), "{issue_failures:?}");
    assert!(a_pubs >= 20 && b_pubs >= 20, "the publishers did not contend: {a_pubs} and {b_pubs} publications");
    assert!(consistent >= 100, "only {consistent} consistent reads");
    drop((a, b));
    svid_dir::read_checked(&out).unwrap();
}

/// Makes the CA directory unreadable: `chmod 000` when that denies us (not root), else by moving the directory
/// away (root reads through any mode). Returns how to undo it.
fn take_ca_down(ca_dir: &Path) -> Box<dyn FnOnce()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ca_dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(ca_dir.join("ca.pem")).is_err() {
        eprintln!("CA made unreadable with chmod 000");
        let dir = ca_dir.to_path_buf();
        return Box::new(move || std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap());
    }
    std::fs::set_permissions(ca_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let away = ca_dir.with_extension("away");
    std::fs::rename(ca_dir, &away).unwrap();
    eprintln!("running as root: CA made unreadable by moving it away");
    let dir = ca_dir.to_path_buf();
    Box::new(move || std::fs::rename(&away, &dir).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_outage_keeps_the_svid_until_expiry_counts_errors_and_recovers() {
    let setup = Setup::new();
    let out = setup.dir().join("api");
    let agent =
        AgentProcess::start("api-agent", &setup.pki.ca_dir, API_ID, &out, "4s", &["--retry-max", "500ms"]).unwrap();
    let first = agent.wait_publications(1, READY).await.unwrap()[0].clone();
    let serial = first["serial"].as_str().unwrap().to_owned();
    let restore = take_ca_down(&setup.pki.ca_dir);
    let published = svid_dir::read_checked(&out).unwrap();
    assert_eq!(published.leaf.serial_hex, serial);
    let not_after = published.leaf.not_after as f64;

    // Until expiry: the same complete set stays published and /ready stays 200.
    while unix_now() < not_after - 0.3 {
        let now = svid_dir::read_checked(&out).unwrap();
        assert_eq!(now.leaf.serial_hex, serial, "a new SVID appeared while the CA was down");
        assert_eq!(agent.ready().await.unwrap().0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = agent.scrape().await.unwrap();
    let errors = m.value("certs_agent_renewals_total", &[("result", "error")]);
    assert!(errors >= 3.0, "only {errors} failed attempts counted");
    assert_eq!(m.value("certs_agent_renewals_total", &[("result", "ok")]), 1.0);
    assert_eq!(m.value("certs_agent_svid_expiry_timestamp_seconds", &[]), not_after);
    let failure = agent.find_log(|v| v["message"] == "renewal failed; the published SVID stays in place").unwrap();
    let ca_dir = setup.pki.ca_dir.to_str().unwrap();
    assert!(failure["error"].as_str().unwrap().contains(ca_dir), "the log names the reason: {failure}");

    // After expiry: still published (nothing better exists), /ready says why it is not ready.
    while unix_now() < not_after + 0.2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(svid_dir::serial(&out).unwrap(), serial);
    let (status, body) = agent.ready().await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("identity") && body.contains("expired"), "{body}");

    // The CA comes back: the agent notices it at its next poll (or its next retry) and renews.
    restore();
    let back = Instant::now();
    let renewed = agent.wait_publications(2, Duration::from_secs(3)).await.unwrap();
    eprintln!("renewed {:?} after the CA came back; {errors} errors counted during the outage", back.elapsed());
    assert!(renewed[1]["reason"] == "ca back" || renewed[1]["reason"] == "retry", "{}", renewed[1]);
    let published = svid_dir::read_checked(&out).unwrap();
    assert_ne!(published.leaf.serial_hex, serial);
    let m = agent.scrape().await.unwrap();
    assert_eq!(m.value("certs_agent_renewals_total", &[("result", "ok")]), 2.0);
    assert_eq!(agent.ready().await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_svid_has_expired_renewal_follows_the_ca_back_within_a_second() {
    let setup = Setup::new();
    let out = setup.dir().join("api");
    // The default --retry-max (30 s): backing off that far is right while a valid SVID is published, not
    // once the workload has none.
    let agent = AgentProcess::start("api-agent", &setup.pki.ca_dir, API_ID, &out, "3s", &[]).unwrap();
    agent.wait_publications(1, READY).await.unwrap();
    let restore = take_ca_down(&setup.pki.ca_dir);
    let not_after = svid_dir::read_checked(&out).unwrap().leaf.not_after as f64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(unix_now() > not_after + 1.0, "the SVID should have expired during the outage");
    assert_eq!(agent.ready().await.unwrap().0, 503);

    restore();
    let back = Instant::now();
    let renewed = agent.wait_publications(2, Duration::from_millis(1500)).await;
    eprintln!("renewed {:?} after the CA came back", back.elapsed());
    renewed.unwrap();
    assert_eq!(agent.ready().await.unwrap().0, 200);
    // While it was down, it kept trying about every second, no faster than the floor.
    let failures = agent.log_matching(|v| v["message"] == "renewal failed; the published SVID stays in place");
    let after_expiry: Vec<u64> =
        failures.iter().filter(|v| v["svid_expires_in_ms"] == 0).map(|v| v["retry_in_ms"].as_u64().unwrap()).collect();
    assert!(!after_expiry.is_empty(), "{failures:?}");
    assert!(after_expiry.iter().all(|&ms| (100..=1100).contains(&ms)), "retry delays after expiry: {after_expiry:?}");
}

async fn sidecar_before_agent(identity_dir_exists: bool) {
    let setup = Setup::new();
    let app = App::echo().await.unwrap();
    let out = setup.dir().join("api");
    if identity_dir_exists {
        std::fs::create_dir(&out).unwrap();
    }
    let api = SidecarProcess::start(
        "api-inbound",
        setup.dir(),
        &SidecarConfig::new(&out, &setup.policy).inbound("api", app.addr),
    )
    .unwrap();

    // Not ready, and saying why; a caller gets nothing, not even a handshake.
    let (status, body) = http::get(api.admin, "/ready").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("identity"), "{body}");
    let mut early = tokio::net::TcpStream::connect(api.addr("api")).await.unwrap();
    early.write_all(b"hello?").await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), early.read(&mut buf)).await;
    assert!(read.is_err(), "the listener answered before identity loaded: {read:?}");
    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[]), 0.0, "a handshake was attempted");
    drop(early);

    // The agent publishes; the sidecar is ready and serving within a second of it.
    let watch = Watch::start(&out);
    let agent = AgentProcess::start("api-agent", &setup.pki.ca_dir, API_ID, &out, "1h", &[]).unwrap();
    let published = watch.wait_for(READY, "first publication", |_| true).await.unwrap();
    loop {
        if http::get(api.admin, "/ready").await.unwrap().0 == 200 {
            break;
        }
        assert!(
            published.at.elapsed() < Duration::from_secs(1),
            "not ready 1 s after the publication:\n{}",
            api.raw_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_after = published.at.elapsed();
    let reply = tls_client::round_trip(api.addr("api"), setup.web_client(), b"ping").await.unwrap();
    let served_after = published.at.elapsed();
    eprintln!("ready {ready_after:?} and serving {served_after:?} after the first publication");
    assert_eq!(reply, b"ping");
    assert!(served_after < Duration::from_secs(1), "first round trip {served_after:?} after the publication");
    assert_eq!(app.accepted(), 1, "only the authenticated round trip reached the app");
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_started_before_the_agent_with_no_identity_directory_becomes_ready_within_a_second() {
    sidecar_before_agent(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_started_before_the_agent_with_an_empty_identity_directory_becomes_ready_within_a_second() {
    sidecar_before_agent(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leaf_the_agent_publishes_passes_openssl_for_both_purposes() {
    let setup = Setup::new();
    let out = setup.dir().join("web");
    let watch = Watch::start(&out);
    let _agent = AgentProcess::start("web-agent", &setup.pki.ca_dir, WEB_ID, &out, "2s", &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while watch.sightings().len() < 3 {
        assert!(Instant::now() < deadline, "fewer than three SVIDs in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, sighting) in watch.sightings().iter().enumerate() {
        let published = sighting.published.as_ref().unwrap();
        svid_dir::openssl_accepts(published, &setup.dir().join(format!("openssl-{i}"))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_ready_describe_the_published_svid() {
    let setup = Setup::new();
    let out = setup.dir().join("web");
    let agent = AgentProcess::start("web-agent", &setup.pki.ca_dir, WEB_ID, &out, "3s", &[]).unwrap();
    agent.wait_publications(2, READY).await.unwrap();
    // Scrape between two reads of the same SVID, so the gauge and the file describe one certificate.
    let (m, published) = loop {
        let before = svid_dir::read_checked(&out).unwrap();
        let m = agent.scrape().await.unwrap();
        let after = svid_dir::read_checked(&out).unwrap();
        if before.leaf.serial_hex == after.leaf.serial_hex {
            break (m, after);
        }
    };
    assert_eq!(m.value("certs_agent_svid_expiry_timestamp_seconds", &[]), published.leaf.not_after as f64);
    assert!(m.value("certs_agent_renewals_total", &[("result", "ok")]) >= 2.0);
    assert_eq!(m.value("certs_agent_renewals_total", &[("result", "error")]), 0.0);
    assert_eq!(m.value("certs_agent_trust_anchors", &[]), 1.0);
    assert!(m.has("process_resident_memory_bytes"));
    assert_eq!(agent.ready().await.unwrap(), (200, "ready\n".to_owned()));
    assert_eq!(http::get(agent.metrics, "/live").await.unwrap().0, 200);
    assert_eq!(http::get(agent.metrics, "/nope").await.unwrap().0, 404);
}
