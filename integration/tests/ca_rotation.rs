//! CA rotation (SPEC §1) with real `certs-agent run` processes sharing one CA directory: `ca rotate` puts the new
//! root in every published bundle at once, the new root signs only from its activation on, `ca retire` waits
//! for the old root's last SVID to expire, and a sidecar pair under continuous traffic never fails a
//! connection through it all, then refuses a leaf of the retired root.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    path::Path,
    time::{Duration, Instant},
};

use integration::{
    App, Pki, SidecarConfig, SidecarProcess,
    agent::{AgentProcess, retire, roots_json, rotate, unix_now},
    mesh::{API_ID, POLICY, TRUST_DOMAIN, WEB_ID},
    pki::{LeafSpec, write_fixture},
    prom::Metrics,
    svid_dir::{self, Sighting, Watch, root_pem, signed_by},
    tls_client::{self, ClientCert},
    traffic::{self, Target, Traffic},
};

const READY: Duration = Duration::from_secs(10);
const SECOND: Duration = Duration::from_secs(1);

fn roots_in(s: &Sighting) -> usize {
    s.published.as_ref().map(|p| p.roots).unwrap_or(0)
}

fn sequence_in(s: &Sighting) -> u64 {
    s.published.as_ref().ok().and_then(|p| p.bundle_json["spiffe_sequence"].as_u64()).unwrap_or(0)
}

fn chain(s: &Sighting) -> &[u8] {
    &s.published.as_ref().unwrap().chain_pem
}

/// The latest notAfter any SVID of `root` had, among those seen.
fn latest_not_after(sightings: &[Sighting], root_pem: &[u8]) -> i64 {
    sightings
        .iter()
        .filter(|s| signed_by(chain(s), root_pem))
        .map(|s| s.published.as_ref().unwrap().leaf.not_after)
        .max()
        .unwrap_or(0)
}

/// Calls `ca retire` until it succeeds; every refusal before must be the "not yet" exit status 3. Returns when
/// the successful call started (monotonic) and ended (wall clock), and how many refusals came before.
async fn retire_when_allowed(ca_dir: &Path, within: Duration) -> (Instant, f64, usize) {
    let deadline = Instant::now() + within;
    let mut refusals = 0;
    loop {
        let at = Instant::now();
        let (code, stderr) = retire(ca_dir, false).unwrap();
        match code {
            0 => return (at, unix_now(), refusals),
            3 => refusals += 1,
            _ => panic!("ca retire failed with {code}: {stderr}"),
        }
        assert!(Instant::now() < deadline, "ca retire still refused after {within:?}: {stderr}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_running_agents_within_a_second_and_retire_waits_for_the_old_roots_last_svid() {
    let tmp = tempfile::Builder::new().prefix("rotation-").tempdir().unwrap();
    let pki = Pki::init(tmp.path(), TRUST_DOMAIN).unwrap();
    let ca = pki.ca_dir.clone();
    let a = roots_json(&ca).unwrap()["roots"][0]["serial"].as_str().unwrap().to_owned();
    let a_pem = root_pem(&ca, &a).unwrap();
    let dirs = [tmp.path().join("web"), tmp.path().join("api")];
    let watches = [Watch::start(&dirs[0]), Watch::start(&dirs[1])];
    let agents = [
        AgentProcess::start("web-agent", &ca, WEB_ID, &dirs[0], "4s", &[]).unwrap(),
        AgentProcess::start("api-agent", &ca, API_ID, &dirs[1], "4s", &[]).unwrap(),
    ];
    for agent in &agents {
        agent.wait_publications(1, READY).await.unwrap();
    }

    // 1. Rotate: A+B reaches both directories within a second; A still signs.
    let rotated = Instant::now();
    let (b, activate_at) = rotate(&ca, "3s").unwrap();
    let b_pem = root_pem(&ca, &b).unwrap();
    for watch in &watches {
        let s = watch.wait_for(2 * SECOND, "bundle A+B", |s| s.at > rotated && roots_in(s) == 2).await.unwrap();
        eprintln!("bundle A+B published {:?} after ca rotate", s.at - rotated);
        assert!(s.at - rotated < SECOND);
        assert!(signed_by(chain(&s), &a_pem), "B signed before its activation");
        assert_eq!(sequence_in(&s), 2);
    }

    // 2. Activation: every agent switches to B within a second of it.
    for watch in &watches {
        let s = watch.wait_for(5 * SECOND, "a leaf signed by B", |s| signed_by(chain(s), &b_pem)).await.unwrap();
        let delay = s.unix - activate_at as f64;
        eprintln!("first B-signed leaf {delay:.3} s after activation");
        assert!((0.0..1.0).contains(&delay), "B-signed leaf {delay} s from activation");
        assert_eq!(roots_in(&s), 2);
    }

    // 3. Retire: refused while A's last SVID lives, then accepted the moment it has expired.
    let a_until = roots_json(&ca).unwrap()["roots"][0]["signed_until"].as_i64().unwrap();
    let (code, stderr) = retire(&ca, false).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(&a) && stderr.contains("stay valid until"), "{stderr}");
    let (retired, retired_by, refusals) = retire_when_allowed(&ca, 8 * SECOND).await;
    let seen_a_until = watches.iter().map(|w| latest_not_after(&w.sightings(), &a_pem)).max().unwrap();
    // notAfter is inclusive: A's last SVID is valid through second `a_until`.
    let expired_at = a_until as f64 + 1.0;
    eprintln!("retired by {:.3} s after A's last SVID expired ({refusals} refusals before)", retired_by - expired_at);
    assert_eq!(seen_a_until, a_until, "the issuance record must cover every A-signed SVID published");
    assert!(retired_by >= expired_at, "retired while an A-signed SVID was valid");

    // 4. The bundle without A reaches both directories within a second.
    for watch in &watches {
        let s = watch.wait_for(2 * SECOND, "bundle B only", |s| s.at > retired && roots_in(s) == 1).await.unwrap();
        eprintln!("bundle B-only published {:?} after ca retire", s.at - retired);
        assert!(s.at - retired < SECOND);
        assert!(signed_by(chain(&s), &b_pem));
        assert_eq!(sequence_in(&s), 3);
        svid_dir::openssl_accepts(s.published.as_ref().unwrap(), &tmp.path().join(format!("openssl-{}", s.serial)))
            .unwrap();
    }
    assert_eq!(std::fs::read(ca.join("bundle.pem")).unwrap(), b_pem);
    assert_eq!(std::fs::read(ca.join("ca.pem")).unwrap(), b_pem);
    assert!(!ca.join("roots").join(format!("{a}_key.pem")).exists(), "A's key survived its retirement");
    let (code, stderr) = retire(&ca, false).unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing to retire"), "{stderr}");

    // Every publication along the way was a complete, consistent set.
    for watch in &watches {
        for s in watch.sightings() {
            assert!(s.published.is_ok(), "{}: {:?}", s.serial, s.published);
        }
    }
    for agent in &agents {
        let m = agent.scrape().await.unwrap();
        assert_eq!(m.value("certs_agent_renewals_total", &[("result", "error")]), 0.0);
        assert_eq!(m.value("certs_agent_trust_anchors", &[]), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rotation_under_traffic_through_a_sidecar_pair_fails_no_connection_then_refuses_the_old_root() {
    let tmp = tempfile::Builder::new().prefix("rotation-").tempdir().unwrap();
    let pki = Pki::init(tmp.path(), TRUST_DOMAIN).unwrap();
    let ca = pki.ca_dir.clone();
    let policy = tmp.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let a = roots_json(&ca).unwrap()["roots"][0]["serial"].as_str().unwrap().to_owned();
    let a_pem = root_pem(&ca, &a).unwrap();
    // A caller certificate signed by A outside certs-agent (so nothing records it): web's ID, valid for an hour.
    let a_signed = write_fixture(
        &pki.issuer().unwrap(),
        &LeafSpec::svid(WEB_ID),
        &String::from_utf8(a_pem.clone()).unwrap(),
        &tmp.path().join("web-signed-by-a"),
    )
    .unwrap();

    let (web_dir, api_dir) = (tmp.path().join("web"), tmp.path().join("api"));
    let agents = [
        AgentProcess::start("web-agent", &ca, WEB_ID, &web_dir, "4s", &[]).unwrap(),
        AgentProcess::start("api-agent", &ca, API_ID, &api_dir, "4s", &[]).unwrap(),
    ];
    for agent in &agents {
        agent.wait_publications(1, READY).await.unwrap();
    }
    let watches = [Watch::start(&web_dir), Watch::start(&api_dir)];
    let app = App::echo().await.unwrap();
    let api = SidecarProcess::start(
        "api-inbound",
        tmp.path(),
        &SidecarConfig::new(&api_dir, &policy).inbound("api", app.addr),
    )
    .unwrap();
    let web = SidecarProcess::start(
        "web-outbound",
        tmp.path(),
        &SidecarConfig::new(&web_dir, &policy).outbound("api", api.addr("api"), API_ID),
    )
    .unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();
    // The A-signed caller is accepted while A is trusted (so its refusal at the end means something).
    let a_client = |bundle: &[u8]| tls_client::config(ClientCert::Dir(&a_signed.dir), bundle, API_ID).unwrap();
    let reply = tls_client::round_trip(api.addr("api"), a_client(&a_pem), b"ping").await.unwrap();
    assert_eq!(reply, b"ping");

    let traffic = Traffic::start(Target::Plain(web.addr("api")), Duration::from_millis(50));
    tokio::time::sleep(2 * SECOND).await;

    // Rotate; B signs 3 s later; both sidecars must trust A+B before any B-signed leaf exists.
    let rotated = unix_now();
    let (b, activate_at) = rotate(&ca, "3s").unwrap();
    let b_pem = root_pem(&ca, &b).unwrap();
    for watch in &watches {
        watch.wait_for(6 * SECOND, "a leaf signed by B", |s| signed_by(chain(s), &b_pem)).await.unwrap();
    }
    eprintln!("both workloads hold B-signed SVIDs {:.3} s after activation", unix_now() - activate_at as f64);
    let (_, _, refusals) = retire_when_allowed(&ca, 8 * SECOND).await;
    eprintln!("A retired ({refusals} refusals while its SVIDs were valid)");
    for watch in &watches {
        // After the rotation, a one-root bundle can only be the B-only one.
        watch.wait_for(2 * SECOND, "bundle B only", |s| s.unix > rotated && roots_in(s) == 1).await.unwrap();
    }
    // The sidecars follow: one trust anchor left.
    let deadline = Instant::now() + 2 * SECOND;
    for sidecar in [&api, &web] {
        loop {
            let m = Metrics::parse(&sidecar.metrics().await.unwrap()).unwrap();
            if m.value("sidecar_trust_anchors", &[]) == 1.0 {
                break;
            }
            assert!(Instant::now() < deadline, "{} still trusts A:\n{}", sidecar.name, sidecar.raw_log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(2 * SECOND).await;
    let attempts = traffic.stop().await;
    let failed = traffic::failures(&attempts);
    eprintln!("{} connections through the pair during the rotation, {} failed", attempts.len(), failed.len());
    assert!(failed.is_empty(), "failed connections: {failed:?}\n{}\n{}", web.raw_log(), api.raw_log());
    assert!(attempts.len() >= 150, "only {} connections", attempts.len());

    // After retirement, a leaf signed by A is refused, and counted as untrusted.
    let b_bundle = std::fs::read(api_dir.join("svid_bundle.pem")).unwrap();
    let reached_app = app.accepted();
    let refused = tls_client::round_trip(api.addr("api"), a_client(&b_bundle), b"ping").await;
    assert!(!matches!(&refused, Ok(reply) if reply == b"ping"), "an A-signed caller got through: {refused:?}");
    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "untrusted")]), 1.0);
    assert_eq!(app.accepted(), reached_app, "the refused caller reached the app");
}
