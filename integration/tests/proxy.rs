//! The data path through a real outbound + inbound sidecar pair: bytes arrive intact, the wire carries only
//! TLS 1.3, half-close works, and a client no one here wrote (openssl s_client) interoperates.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{process::Stdio, time::Duration};

use integration::{
    App, Mesh,
    apps::{pattern, sha256},
    mesh::API_ID,
    prom::Metrics,
    tap::{Tap, tls_records},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const MIB: usize = 1024 * 1024;

/// Sends `request` through `addr`, half-closes, and reads the whole reply.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut reply)).await.unwrap().unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_each_way_crosses_intact_as_plaintext_at_the_app_and_tls13_on_the_wire() {
    let mesh = Mesh::new().unwrap();
    let response = pattern(MIB, 2);
    let reply = response.clone();
    let app = App::request_reply(move |_| reply.clone()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let tap = Tap::spawn(api.addr("api")).await.unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, tap.addr, API_ID).unwrap();
    api.wait_ready(Duration::from_secs(10)).await.unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();

    let request = pattern(MIB, 1);
    let got = exchange(web.addr("api"), &request).await;
    assert_eq!(sha256(&got), sha256(&response), "response corrupted ({} bytes)", got.len());

    // The app saw exactly the plaintext request, no TLS.
    let received = app.received();
    assert_eq!(received.len(), 1);
    assert_eq!(sha256(&received[0]), sha256(&request));
    assert_ne!(received[0].first(), Some(&0x16), "the app received a TLS record");

    // The wire between the sidecars: TLS records only, TLS 1.3 negotiated, no plaintext visible.
    let captures = tap.captures();
    assert_eq!(captures.len(), 1);
    let wire = &captures[0];
    for (dir, bytes) in [("upstream", &wire.upstream), ("downstream", &wire.downstream)] {
        let records = tls_records(bytes);
        let covered: usize = records.iter().map(|(_, p)| p.len() + 5).sum();
        assert_eq!(covered, bytes.len(), "{dir}: bytes outside TLS records");
        assert!(records.len() > 10, "{dir}: expected a TLS stream, got {} records", records.len());
        // Look for a 64-byte window of either payload anywhere in the capture.
        for payload in [&request, &response] {
            let probe = &payload[MIB / 2..MIB / 2 + 64];
            assert!(!bytes.windows(64).any(|w| w == probe), "{dir}: plaintext visible on the wire");
        }
    }
    let server_hello = tls_records(&wire.downstream)[0];
    assert_eq!(server_hello.0, 22, "first server record is a handshake");
    // supported_versions extension (0x002b) selecting TLS 1.3 (0x0304).
    assert!(server_hello.1.windows(6).any(|w| w == [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]), "not TLS 1.3");
    // After the ServerHello everything in TLS 1.3 is application_data (and change_cipher_spec compat).
    assert!(tls_records(&wire.downstream)[1..].iter().all(|(ty, _)| *ty == 23 || *ty == 20));

    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    assert_eq!(m.value("sidecar_bytes_total", &[("listener", "api"), ("flow", "from_peer")]), MIB as f64);
    assert_eq!(m.value("sidecar_bytes_total", &[("listener", "api"), ("flow", "to_peer")]), MIB as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_at_the_inbound_port_gets_no_app_data() {
    let mesh = Mesh::new().unwrap();
    let app = App::request_reply(|_| b"HTTP/1.0 200 OK\r\n\r\nsecret app data".to_vec()).await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(Duration::from_secs(10)).await.unwrap();

    let reply = exchange(api.addr("api"), b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(!String::from_utf8_lossy(&reply).contains("secret"), "plaintext client got app data: {reply:?}");
    // At most a TLS alert comes back.
    assert!(reply.is_empty() || reply[0] == 21, "unexpected reply {reply:?}");
    assert_eq!(app.accepted(), 0, "the app was reached");

    let protocol_errors = [("direction", "inbound"), ("reason", "protocol_error")];
    api.metrics_when(Duration::from_secs(5), "protocol_error counted", |m| {
        m.value("sidecar_tls_handshakes_total", &protocol_errors) == 1.0
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_lets_the_reply_flow_after_the_request_side_is_shut() {
    let mesh = Mesh::new().unwrap();
    let reply = pattern(4 * MIB, 3);
    let expected = sha256(&reply);
    let app = App::spawn(move |mut s| {
        let reply = reply.clone();
        async move {
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            s.write_all(&reply).await.unwrap();
            s.shutdown().await.unwrap();
            req
        }
    })
    .await
    .unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(Duration::from_secs(10)).await.unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();

    let got = exchange(web.addr("api"), b"request, then FIN").await;
    assert_eq!(got.len(), 4 * MIB);
    assert_eq!(sha256(&got), expected);
    assert_eq!(app.received(), vec![b"request, then FIN".to_vec()]);
}

/// `openssl s_client` as the caller, with and without a client certificate.
fn s_client(
    addr: std::net::SocketAddr,
    identity: Option<&std::path::Path>,
    bundle: &std::path::Path,
    input: &[u8],
) -> String {
    use std::io::Write;
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), "-quiet", "-verify_return_error", "-CAfile"]).arg(bundle);
    if let Some(dir) = identity {
        cmd.arg("-cert").arg(dir.join("svid.pem")).arg("-key").arg(dir.join("svid_key.pem"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is needed for the interop test (.ci/run installs it)");
    // A refused s_client may have read the alert and exited before we write: its stdin is then closed.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_interoperates_and_is_refused_without_a_certificate() {
    let mesh = Mesh::new().unwrap();
    // s_client never half-closes, so this app answers the first line rather than waiting for EOF.
    let app = App::spawn(|s| async move {
        use tokio::io::AsyncBufReadExt;
        let mut s = tokio::io::BufReader::new(s);
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        s.get_mut().write_all(format!("app says hello to: {line}").as_bytes()).await.unwrap();
        s.get_mut().shutdown().await.unwrap();
        line.into_bytes()
    })
    .await
    .unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    api.wait_ready(Duration::from_secs(10)).await.unwrap();
    let addr = api.addr("api");
    let bundle = mesh.web.dir.join("svid_bundle.pem");

    let web_dir = mesh.web.dir.clone();
    let b = bundle.clone();
    let out = tokio::task::spawn_blocking(move || s_client(addr, Some(&web_dir), &b, b"ping\n")).await.unwrap();
    assert!(out.contains("app says hello to: ping"), "s_client output: {out:?}");

    let out = tokio::task::spawn_blocking(move || s_client(addr, None, &bundle, b"ping\n")).await.unwrap();
    assert!(!out.contains("app says"), "a client without a certificate reached the app: {out:?}");
    assert_eq!(app.accepted(), 1);

    let m = api
        .metrics_when(Duration::from_secs(5), "both handshakes counted", |m| {
            m.value("sidecar_tls_handshakes_total", &[("direction", "inbound")]) == 2.0
        })
        .await
        .unwrap();
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "ok")]), 1.0);
    assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", "no_client_cert")]), 1.0);
}
