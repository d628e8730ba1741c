//! Who is refused, and how it shows: callers the policy does not allow, certificates from the wrong CA, no
//! certificate, expired certificates, leaves that break the X.509-SVID rules, and a server that is not the
//! identity the route requires. Each refusal keeps the app untouched and is counted with its own reason.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::Duration;

use integration::{
    App, Mesh,
    mesh::{API_ID, BATCH_ID, WEB_ID},
    pki::{LeafSpec, foreign_ca, write_fixture},
    prom::Metrics,
    tls_client::{self, ClientCert},
};
use rcgen::KeyUsagePurpose;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const READY: Duration = Duration::from_secs(10);

/// Connects through a plaintext listener, sends a request and half-closes; returns what came back (or the
/// error) within a few seconds.
async fn plaintext_exchange(addr: std::net::SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    s.shutdown().await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await??;
    Ok(reply)
}

/// Connects directly to an inbound listener as a TLS client presenting `identity` (or nothing) and tries to
/// exchange bytes. Returns the bytes received; a refused client gets none.
async fn tls_exchange(addr: std::net::SocketAddr, cert: ClientCert<'_>, mesh: &Mesh) -> Vec<u8> {
    let bundle = mesh.pki.bundle_pem().unwrap();
    let config = tls_client::config(cert, bundle.as_bytes(), API_ID).unwrap();
    let Ok(mut tls) = tls_client::connect(addr, config).await else { return Vec::new() };
    let _ = tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    let _ = tls.shutdown().await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply)).await;
    reply
}

/// The scrape once the sidecar has counted `handshakes` inbound handshakes (it may count a refusal a moment
/// after the client saw the close).
async fn metrics(p: &integration::SidecarProcess, handshakes: f64) -> Metrics {
    p.metrics_when(Duration::from_secs(5), "handshakes counted", |m| {
        m.value("sidecar_tls_handshakes_total", &[]) >= handshakes
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_policy_does_not_allow_is_refused_before_reaching_the_app() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    // `batch` holds a perfectly valid SVID; only the policy keeps it out.
    let batch = mesh.outbound("batch-outbound", &mesh.batch, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    batch.wait_ready(READY).await.unwrap();

    let reply = plaintext_exchange(batch.addr("api")).await.unwrap_or_default();
    assert!(reply.is_empty(), "denied caller received {reply:?}");
    assert_eq!(app.accepted(), 0, "the app accepted a connection for a denied caller");

    let m = metrics(&api, 1.0).await;
    assert_eq!(m.value("sidecar_authz_decisions_total", &[("listener", "api"), ("decision", "deny")]), 1.0);
    assert_eq!(m.value("sidecar_authz_decisions_total", &[("decision", "allow")]), 0.0);
    // The TLS handshake itself was fine: the refusal is the policy's.
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "ok")]), 1.0);

    let line = api
        .wait_log(Duration::from_secs(5), |v| v["message"] == "connection refused: caller not allowed by policy")
        .await
        .unwrap();
    assert_eq!(line["peer.id"], BATCH_ID);
    assert_eq!(line["listener"], "api");
    assert_eq!(line["reason"], "denied");
    assert_eq!(line["rule"], "default");
    assert!(line["peer.addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{line}");

    // The allowed caller still gets through the same sidecar.
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    web.wait_ready(READY).await.unwrap();
    assert_eq!(plaintext_exchange(web.addr("api")).await.unwrap(), b"app data");
    assert_eq!(app.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_no_certificate_and_expired_certificate_are_refused_each_with_its_reason() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let addr = api.addr("api");

    // web's SPIFFE ID, signed by a CA of the same trust domain name that nobody here trusts.
    let (foreign, foreign_bundle) = foreign_ca("example.org").unwrap();
    let impostor = mesh.dir().join("impostor");
    write_fixture(&foreign, &LeafSpec::svid(WEB_ID), &foreign_bundle, &impostor).unwrap();
    assert!(tls_exchange(addr, ClientCert::Dir(&impostor), &mesh).await.is_empty());

    assert!(tls_exchange(addr, ClientCert::None, &mesh).await.is_empty());

    // web's SPIFFE ID from the real CA, but expired an hour ago.
    let expired = mesh.dir().join("expired");
    let spec = LeafSpec { valid_from: -7200, valid_until: -3600, ..LeafSpec::svid(WEB_ID) };
    write_fixture(&mesh.pki.issuer().unwrap(), &spec, &mesh.pki.bundle_pem().unwrap(), &expired).unwrap();
    assert!(tls_exchange(addr, ClientCert::Dir(&expired), &mesh).await.is_empty());

    assert_eq!(app.accepted(), 0);
    let m = metrics(&api, 3.0).await;
    for reason in ["untrusted", "no_client_cert", "expired"] {
        let n = m.value(
            "sidecar_tls_handshakes_total",
            &[("direction", "inbound"), ("result", "error"), ("reason", reason)],
        );
        assert_eq!(n, 1.0, "reason {reason}");
    }
    assert_eq!(m.histogram_count("sidecar_tls_handshake_duration_seconds", &[("result", "error")]), 3.0);
    // Each refusal is logged with its reason. The impostor's ID is only claimed (no trusted chain); the
    // expired certificate is vouched for by our CA, so its ID is who it really is.
    for (reason, id, claimed) in [("untrusted", "-", WEB_ID), ("no_client_cert", "-", "-"), ("expired", WEB_ID, "-")] {
        let line = api.wait_log(Duration::from_secs(5), |v| v["reason"] == reason).await.unwrap();
        assert_eq!(line["message"], "connection refused: handshake failed");
        assert_eq!(line["peer.id"], id, "{line}");
        assert_eq!(line["peer.claimed_id"], claimed, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_that_break_the_svid_rules_are_refused() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(READY).await.unwrap();
    let issuer = mesh.pki.issuer().unwrap();
    let bundle = mesh.pki.bundle_pem().unwrap();

    let base = LeafSpec::svid(WEB_ID);
    let cases = [
        ("two URI SANs", LeafSpec { uri_sans: vec![WEB_ID.into(), BATCH_ID.into()], ..base.clone() }),
        ("DNS SAN only", LeafSpec { uri_sans: vec![], dns_sans: vec!["web.example.org".into()], ..base.clone() }),
        ("CA=true leaf", LeafSpec { is_ca: true, ..base.clone() }),
        (
            "keyCertSign",
            LeafSpec {
                key_usages: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign],
                ..base.clone()
            },
        ),
        ("SPIFFE ID without path", LeafSpec { uri_sans: vec!["spiffe://example.org".into()], ..base.clone() }),
    ];
    for (i, (what, spec)) in cases.iter().enumerate() {
        let dir = mesh.dir().join(format!("bad-{i}"));
        write_fixture(&issuer, spec, &bundle, &dir).unwrap();
        let reply = tls_exchange(api.addr("api"), ClientCert::Dir(&dir), &mesh).await;
        assert!(reply.is_empty(), "{what}: got {reply:?}");
    }
    assert_eq!(app.accepted(), 0);
    let m = metrics(&api, cases.len() as f64).await;
    assert_eq!(
        m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "bad_svid")]),
        cases.len() as f64,
        "every bad leaf is counted as bad_svid"
    );
    assert_eq!(m.value("sidecar_authz_decisions_total", &[]), 0.0, "no bad leaf reached authorization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_route_refuses_a_server_with_the_wrong_spiffe_id() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    // The route insists on a payments server, but api answers.
    let wrong = "spiffe://example.org/ns/pay/sa/payments";
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), wrong).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    let reply = plaintext_exchange(web.addr("api")).await.unwrap_or_default();
    assert!(reply.is_empty(), "local client received {reply:?}");
    assert_eq!(app.accepted(), 0);

    let m = metrics(&web, 1.0).await;
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "outbound"), ("reason", "wrong_peer_id")]), 1.0);
    let line = web.wait_log(Duration::from_secs(5), |v| v["reason"] == "wrong_peer_id").await.unwrap();
    assert_eq!(line["peer.id"], API_ID);
    assert_eq!(line["expected"], wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_sidecar_counts_a_peer_that_refuses_its_certificate() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    // web holds an SVID from a second root that web trusts but api does not: web accepts api, api refuses web.
    let other = integration::Pki::init(&mesh.dir().join("other"), "example.org").unwrap();
    let web_id = other.issue("/ns/web/sa/web", &mesh.dir().join("web-other"), "1h").unwrap();
    let both = [mesh.pki.bundle_pem().unwrap(), other.bundle_pem().unwrap()].concat();
    std::fs::write(web_id.dir.join("svid_bundle.pem.tmp"), &both).unwrap();
    std::fs::rename(web_id.dir.join("svid_bundle.pem.tmp"), web_id.dir.join("..data/svid_bundle.pem")).unwrap();
    let web = mesh.outbound("web-outbound", &web_id, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();

    // Many callers, each sending its request and half-closing at once: whichever of "our write fails" and
    // "their alert arrives" comes first, every refusal must be seen as one.
    const CALLERS: usize = 60;
    let calls = (0..CALLERS).map(|_| plaintext_exchange(web.addr("api")));
    for reply in futures_join_all(calls).await {
        assert!(reply.unwrap_or_default().is_empty());
    }
    assert_eq!(app.accepted(), 0);
    // In TLS 1.3 web's handshake completes before api checks web's certificate; the refusal arrives as an
    // alert on the first read, and web counts and logs it as the peer rejecting the connection.
    let rejected = [("direction", "outbound"), ("reason", "rejected")];
    let m = web
        .metrics_when(Duration::from_secs(5), "every rejection counted", |m| {
            m.value("sidecar_connect_errors_total", &rejected) == CALLERS as f64
        })
        .await
        .unwrap();
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "outbound"), ("reason", "ok")]), CALLERS as f64);
    let line = web.wait_log(Duration::from_secs(5), |v| v["reason"] == "rejected").await.unwrap();
    assert_eq!(line["expected"], API_ID);
    metrics(&api, CALLERS as f64).await;
    api.wait_log(Duration::from_secs(5), |v| v["reason"] == "untrusted" && v["peer.claimed_id"] == WEB_ID)
        .await
        .unwrap();
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
