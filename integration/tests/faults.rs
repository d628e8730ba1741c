//! Faults behind and in front of the sidecar: an app that is down, one that never accepts, one that accepts
//! and resets; peers that half-close and go quiet; abortive closes (RST) from either end. Each failure is
//! counted with its own reason, the caller's connection closes promptly, and nothing stays open.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use integration::{
    App, Mesh, SidecarConfig, SidecarProcess,
    hostile::{self, Closed},
    mesh::{API_ID, WEB_ID},
    procinfo,
    prom::Metrics,
    tls_client::{self, ClientCert},
};
use rustls::ClientConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
};

const READY: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

fn web_client(mesh: &Mesh) -> Arc<ClientConfig> {
    tls_client::config(ClientCert::Dir(&mesh.web.dir), mesh.pki.bundle_pem().unwrap().as_bytes(), API_ID).unwrap()
}

/// A policy that lets web call every listener.
fn allow_web_everywhere(mesh: &Mesh) -> std::path::PathBuf {
    let path = mesh.dir().join("allow-web.yaml");
    std::fs::write(&path, format!("rules:\n  - name: web\n    allow: [{WEB_ID}]\n")).unwrap();
    path
}

/// A loopback port nobody listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full and that never accepts: new connections hang in SYN retries. The
/// returned sockets keep the queue full; drop them to let go.
async fn stuck_app() -> (SocketAddr, Vec<TcpStream>, tokio::net::TcpListener) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => queued.push(s),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => return (addr, queued, listener),
        }
    }
    panic!("the accept queue of a listener with backlog 1 never filled");
}

/// An app that accepts every connection and resets it at once.
async fn resetting_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            hostile::reset(s);
        }
    });
    addr
}

/// One request over mutual TLS to an inbound listener: the reply and how the connection ended.
async fn request(addr: SocketAddr, config: Arc<ClientConfig>) -> (Vec<u8>, Closed) {
    let mut tls = tls_client::connect(addr, config).await.unwrap();
    let since = Instant::now();
    let _ = tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    let _ = tls.shutdown().await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply)).await;
    let closed = match read {
        Ok(Ok(_)) => Closed::Eof { after: since.elapsed(), bytes: reply.len() },
        Ok(Err(_)) => Closed::Error { after: since.elapsed(), bytes: reply.len() },
        Err(_) => Closed::StillOpen,
    };
    (reply, closed)
}

fn connect_errors(m: &Metrics, listener: &str) -> f64 {
    m.value("sidecar_connect_errors_total", &[("listener", listener)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_down_stuck_or_resetting_each_counts_its_reason_and_closes_the_caller_promptly() {
    let mesh = Mesh::new().unwrap();
    let policy = allow_web_everywhere(&mesh);
    let ok = App::request_reply(|_| b"fine".to_vec()).await.unwrap();
    let down = closed_port().await;
    let (stuck, _queued, _listener) = stuck_app().await;
    let reset = resetting_app().await;
    let config = SidecarConfig::new(&mesh.api.dir, &policy)
        .inbound("ok", ok.addr)
        .inbound("down", down)
        .inbound("stuck", stuck)
        .inbound("reset", reset)
        .extra("timeouts: { connect: 500ms }");
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    // An outbound route to a peer sidecar that is down.
    let web = mesh.outbound("web-outbound", &mesh.web, closed_port().await, API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();
    let client = web_client(&mesh);

    // (listener, connections, reason, how soon the caller must be closed)
    let cases = [
        ("down", 30, "refused", Duration::from_secs(1)),
        ("stuck", 4, "timeout", CONNECT_TIMEOUT + Duration::from_secs(1)),
        ("reset", 10, "reset", Duration::from_secs(1)),
    ];
    for (listener, n, reason, promptly) in cases {
        for _ in 0..n {
            let (reply, closed) = request(api.addr(listener), client.clone()).await;
            assert!(reply.is_empty(), "{listener}: the caller received {reply:?}");
            let after = closed.after().unwrap_or_else(|| panic!("{listener}: the caller was left open"));
            assert!(after < promptly, "{listener} ({reason}): the caller was closed after {after:?}");
            if reason == "timeout" {
                assert!(after >= CONNECT_TIMEOUT - Duration::from_millis(50), "{listener}: closed after {after:?}");
            }
        }
    }
    for _ in 0..3 {
        let (reply, _) = request(api.addr("ok"), client.clone()).await;
        assert_eq!(reply, b"fine");
    }
    // Outbound: the local caller is closed without a byte.
    let mut local = TcpStream::connect(web.addr("api")).await.unwrap();
    let closed = hostile::wait_closed(&mut local, Instant::now(), Duration::from_secs(3)).await;
    assert!(closed.after().is_some_and(|a| a < Duration::from_secs(1)) && closed.bytes() == 0, "{closed:?}");

    // A line admitted after the burst reports how many were suppressed.
    tokio::time::sleep(sidecar::log_limit::REFILL + Duration::from_millis(100)).await;
    let (reply, _) = request(api.addr("down"), client.clone()).await;
    assert!(reply.is_empty());

    let m = api
        .metrics_when(Duration::from_secs(5), "every failure counted", |m| {
            connect_errors(m, "down") == 31.0 && connect_errors(m, "stuck") == 4.0 && connect_errors(m, "reset") == 10.0
        })
        .await
        .unwrap();
    for (listener, _, reason, _) in cases {
        let by_reason = |r: &str| m.value("sidecar_connect_errors_total", &[("listener", listener), ("reason", r)]);
        assert_eq!(by_reason(reason), connect_errors(&m, listener), "{listener}: every failure is {reason}");
    }
    // Connections accepted = successes + counted failures, listener by listener.
    let successes = [("ok", 3.0), ("down", 0.0), ("stuck", 0.0), ("reset", 0.0)];
    for (listener, ok) in successes {
        let total = m.value("sidecar_connections_total", &[("listener", listener)]);
        assert_eq!(total, ok + connect_errors(&m, listener), "{listener}: {total} accepted");
    }
    let wm = web
        .metrics_when(Duration::from_secs(5), "outbound failure counted", |m| {
            m.value("sidecar_connect_errors_total", &[("direction", "outbound"), ("reason", "refused")]) == 1.0
        })
        .await
        .unwrap();
    assert_eq!(wm.value("sidecar_connections_total", &[("direction", "outbound")]), 1.0);

    // The log: no error-level lines, a sample of warnings, and with the suppressed counts it accounts for
    // every failure.
    let errors = api.log_matching(|v| v["level"] == "ERROR");
    assert!(errors.is_empty(), "error-level lines: {errors:?}");
    let lines = api.log_matching(|v| v["message"] == "cannot reach the local app" && v["listener"] == "down");
    assert!(lines.len() < 31, "one line per failure: the log is not rate-limited");
    assert!(lines.iter().all(|v| v["level"] == "WARN" && v["reason"] == "refused"));
    let accounted: f64 = lines.iter().map(|v| 1.0 + v["suppressed"].as_f64().unwrap()).sum();
    assert_eq!(accounted, 31.0, "lines plus suppressed counts");
    let reset_lines = api.log_matching(|v| v["listener"] == "reset" && v["reason"] == "reset");
    assert!(!reset_lines.is_empty(), "the reset is logged with its reason");

    // Nothing left open.
    procinfo::sample_when(&api, Duration::from_secs(5), "no connection open", |s| s.open == 0.0).await.unwrap();
}

/// The inbound `api` sidecar in front of `app`, with a short half-close idle timeout.
async fn half_close_api(mesh: &Mesh, app: &App) -> SidecarProcess {
    let config = SidecarConfig::new(&mesh.api.dir, &mesh.policy)
        .inbound("api", app.addr)
        .extra("timeouts: { half_close_idle: 1s }");
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_half_close_bytes_keep_flowing_as_long_as_they_move() {
    let mesh = Mesh::new().unwrap();
    // Answers the request slowly: one byte every 300 ms for 3 s, well past the 1 s idle timeout.
    let app = App::spawn(|mut s| async move {
        let mut req = Vec::new();
        s.read_to_end(&mut req).await.unwrap();
        for i in 0..10u8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.write_all(&[b'0' + i]).await.unwrap();
        }
        s.shutdown().await.unwrap();
        req
    })
    .await
    .unwrap();
    let api = half_close_api(&mesh, &app).await;

    let started = Instant::now();
    let (reply, closed) = request(api.addr("api"), web_client(&mesh)).await;
    assert_eq!(reply, b"0123456789", "the trickle was cut after {:?}", started.elapsed());
    assert!(matches!(closed, Closed::Eof { .. }), "{closed:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(app.received(), vec![b"GET / HTTP/1.0\r\n\r\n".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_where_nothing_moves_is_closed_and_both_sockets_released() {
    let mesh = Mesh::new().unwrap();
    // Case 1: the caller half-closes; the app reads the request and then neither answers nor closes.
    // Case 2: the app answers and half-closes; the caller reads the answer and then neither sends nor closes;
    // the app reports when the sidecar closed its socket.
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let app = App::spawn(move |mut s| {
        let ended_tx = ended_tx.clone();
        async move {
            let mut first = [0u8; 5];
            s.read_exact(&mut first).await.unwrap();
            if &first == b"quiet" {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await; // the caller's FIN
                // Silence, without closing: the sidecar must give up on this connection by itself.
                tokio::time::sleep(Duration::from_secs(4)).await;
            } else {
                s.write_all(b"answer").await.unwrap();
                s.shutdown().await.unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await; // returns when the sidecar closes the connection
                let _ = ended_tx.send(Instant::now());
            }
            Vec::new()
        }
    })
    .await
    .unwrap();
    let api = half_close_api(&mesh, &app).await;
    let client = web_client(&mesh);
    assert_eq!(request(api.addr("api"), client.clone()).await.0, b"answer", "warm-up");
    ended.recv().await.unwrap();
    let before = procinfo::settled(&api, Duration::from_secs(10)).await.unwrap();

    // Case 1.
    let mut tls = tls_client::connect(api.addr("api"), client.clone()).await.unwrap();
    tls.write_all(b"quiet").await.unwrap();
    tls.shutdown().await.unwrap();
    let half_closed = Instant::now();
    let closed = hostile::wait_closed(&mut tls, half_closed, Duration::from_secs(5)).await;
    let after = closed.after().expect("a silent half-open connection was kept");
    assert!(after >= Duration::from_millis(950) && after < Duration::from_secs(3), "closed after {after:?}");
    assert_eq!(closed.bytes(), 0);

    // Case 2.
    let mut tls = tls_client::connect(api.addr("api"), client.clone()).await.unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap(); // the app's half-close arrives as close_notify
    let half_closed = Instant::now();
    assert_eq!(answer, b"answer");
    let at = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await.unwrap().unwrap();
    let after = at - half_closed;
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(3), "app released after {after:?}");

    // Both sockets of both connections released.
    let after = procinfo::sample_when(&api, Duration::from_secs(5), "sockets released", |s| {
        s.open == 0.0 && s.fds <= before.fds && s.tasks <= before.tasks
    })
    .await
    .unwrap();
    eprintln!("half-close idle: before {before:?}, after {after:?}");
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abortive_close_from_either_end_closes_the_other_and_nothing_stays_open() {
    let mesh = Mesh::new().unwrap();
    // Echoes the first message; then either waits for the caller to go away, or resets if asked to.
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let app = App::spawn(move |mut s| {
        let ended_tx = ended_tx.clone();
        async move {
            let mut first = [0u8; 5];
            s.read_exact(&mut first).await.unwrap();
            s.write_all(&first).await.unwrap();
            if &first == b"reset" {
                hostile::reset(s);
            } else {
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = ended_tx.send(Instant::now());
            }
            first.to_vec()
        }
    })
    .await
    .unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();
    let open = |m: &Metrics| m.value("sidecar_connections_open", &[]) == 0.0;

    // The caller resets: the app's connection ends promptly, both sidecars let go.
    let mut s = TcpStream::connect(web.addr("api")).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    s.read_exact(&mut echoed).await.unwrap();
    let reset_at = Instant::now();
    hostile::reset(s);
    let app_ended = tokio::time::timeout(Duration::from_secs(3), ended.recv()).await.unwrap().unwrap();
    assert!(app_ended - reset_at < Duration::from_secs(1), "the app saw the end after {:?}", app_ended - reset_at);
    web.metrics_when(Duration::from_secs(3), "outbound gauge back to 0", open).await.unwrap();
    api.metrics_when(Duration::from_secs(3), "inbound gauge back to 0", open).await.unwrap();

    // The app resets: the caller's connection ends promptly, both sidecars let go.
    let mut s = TcpStream::connect(web.addr("api")).await.unwrap();
    s.write_all(b"reset").await.unwrap();
    let since = Instant::now();
    let closed = hostile::wait_closed(&mut s, since, Duration::from_secs(3)).await;
    let after = closed.after().expect("the caller was left open after the app reset");
    assert!(after < Duration::from_secs(1), "the caller saw the end after {after:?}");
    web.metrics_when(Duration::from_secs(3), "outbound gauge back to 0", open).await.unwrap();
    api.metrics_when(Duration::from_secs(3), "inbound gauge back to 0", open).await.unwrap();
    assert_eq!(app.received(), vec![b"hello".to_vec(), b"reset".to_vec()]);
}
