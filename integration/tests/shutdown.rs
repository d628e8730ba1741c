//! Graceful shutdown with real processes and real transfers: SIGTERM and `POST /shutdown` take `/ready` to
//! 503 at once and stop the listeners, transfers in flight complete, and the process exits 0; connections
//! still open when `timeouts.drain` ends are closed and the exit status says so (3); SIGHUP during the drain
//! reloads instead of killing; shutdown requests arriving together neither panic nor cut transfers short.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    net::SocketAddr,
    process::ExitStatus,
    sync::Arc,
    time::{Duration, Instant},
};

use integration::{
    App, Mesh, SidecarConfig, SidecarProcess,
    apps::{pattern, sha256},
    hostile, http,
    mesh::API_ID,
    tls_client::{self, ClientCert},
};
use rustls::ClientConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

const READY: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 48;

fn web_client(mesh: &Mesh) -> Arc<ClientConfig> {
    tls_client::config(ClientCert::Dir(&mesh.web.dir), mesh.pki.bundle_pem().unwrap().as_bytes(), API_ID).unwrap()
}

/// An app that, once asked, streams 3 MiB in 64 KiB chunks 25 ms apart (over a second), then closes.
async fn slow_stream_app() -> App {
    App::spawn(|mut s| async move {
        let mut ask = [0u8; 2];
        s.read_exact(&mut ask).await.unwrap();
        let body = pattern(CHUNK * CHUNKS, 9);
        for chunk in body.chunks(CHUNK) {
            if s.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = s.shutdown().await;
        ask.to_vec()
    })
    .await
    .unwrap()
}

async fn start(mesh: &Mesh, app: &App, timeouts: &str) -> SidecarProcess {
    let config = SidecarConfig::new(&mesh.api.dir, &mesh.policy).inbound("api", app.addr).extra(timeouts);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    api
}

/// Starts a transfer; reports on `started` once the first bytes arrived; returns everything received.
async fn transfer(addr: SocketAddr, client: Arc<ClientConfig>, started: mpsc::UnboundedSender<()>) -> Vec<u8> {
    let mut tls = tls_client::connect(addr, client).await.unwrap();
    tls.write_all(b"go").await.unwrap();
    tls.shutdown().await.unwrap();
    let mut got = vec![0u8; 1];
    tls.read_exact(&mut got).await.unwrap();
    started.send(()).unwrap();
    let _ = tls.read_to_end(&mut got).await;
    got
}

/// Waits for the process to exit, without holding up the runtime's other tasks.
fn exit_within(p: &mut SidecarProcess, within: Duration) -> ExitStatus {
    tokio::task::block_in_place(|| p.wait_exit(within)).unwrap()
}

/// Polls `/ready` until it answers 503; returns how long that took.
async fn not_ready_after(p: &SidecarProcess, since: Instant) -> Duration {
    loop {
        if let Ok((503, _)) = http::get(p.admin, "/ready").await {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(5), "/ready did not go 503");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until a new connection to `addr` is refused; returns how long that took.
async fn refused_after(addr: SocketAddr, since: Instant) -> Duration {
    loop {
        if TcpStream::connect(addr).await.is_err() {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(5), "the listener kept accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Sigterm,
    PostShutdown,
    /// `POST /shutdown` and SIGTERM together, as a Kubernetes preStop hook followed by the kubelet's signal.
    PostAndSigterm,
}

async fn trigger(p: &SidecarProcess, how: Trigger) {
    match how {
        Trigger::Sigterm => p.signal("TERM").unwrap(),
        Trigger::PostShutdown => assert_eq!(http::post(p.admin, "/shutdown").await.unwrap().0, 202),
        Trigger::PostAndSigterm => {
            let post = http::post(p.admin, "/shutdown");
            p.signal("TERM").unwrap();
            assert_eq!(post.await.unwrap().0, 202);
        }
    }
}

async fn in_flight_transfers_complete(how: Trigger) {
    let mesh = Mesh::new().unwrap();
    let app = slow_stream_app().await;
    let mut api = start(&mesh, &app, "timeouts: { drain: 20s }").await;
    let addr = api.addr("api");
    let client = web_client(&mesh);

    let (started_tx, mut started) = mpsc::unbounded_channel();
    let transfers: Vec<_> = (0..3).map(|_| tokio::spawn(transfer(addr, client.clone(), started_tx.clone()))).collect();
    for _ in 0..3 {
        started.recv().await.unwrap();
    }
    let since = Instant::now();
    trigger(&api, how).await;
    let ready_503 = not_ready_after(&api, since).await;
    let refused = refused_after(addr, since).await;
    assert!(ready_503 < Duration::from_millis(500), "{how:?}: /ready went 503 only after {ready_503:?}");
    assert!(refused < Duration::from_secs(1), "{how:?}: the listener accepted for {refused:?}");
    // Nothing new gets in during the drain: not over TLS either.
    assert!(tls_client::connect(addr, client.clone()).await.is_err());

    let expected = sha256(&pattern(CHUNK * CHUNKS, 9));
    for t in transfers {
        let got = t.await.unwrap();
        assert_eq!(got.len(), CHUNK * CHUNKS, "{how:?}: a transfer was cut short");
        assert_eq!(sha256(&got), expected);
    }
    let status = exit_within(&mut api, Duration::from_secs(10));
    let drained_in = since.elapsed();
    assert_eq!(status.code(), Some(0), "{how:?}: {status}\n{}", api.raw_log());
    let draining = api.find_log(|v| v["message"] == "draining").unwrap();
    assert_eq!(draining["open_connections"], 3);
    assert!(api.find_log(|v| v["message"] == "drained; exiting").is_some());
    assert!(!api.raw_log().contains("panicked"));
    eprintln!(
        "{how:?}: /ready 503 after {ready_503:?}, listener closed after {refused:?}, exit 0 after {drained_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_transfers_in_flight_and_exits_zero() {
    in_flight_transfers_complete(Trigger::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_drains_transfers_in_flight_and_exits_zero() {
    in_flight_transfers_complete(Trigger::PostShutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_and_sigterm_together_still_drain_transfers_in_flight() {
    in_flight_transfers_complete(Trigger::PostAndSigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_at_the_end_of_the_drain_are_closed_and_the_exit_status_is_3() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let mut api = start(&mesh, &app, "timeouts: { drain: 1s }").await;
    let client = web_client(&mesh);
    // An idle keep-alive connection that never ends by itself.
    let mut held = tls_client::connect(api.addr("api"), client).await.unwrap();
    held.write_all(b"hi").await.unwrap();
    let mut b = [0u8; 2];
    held.read_exact(&mut b).await.unwrap();

    let since = Instant::now();
    api.signal("TERM").unwrap();
    let closed = hostile::wait_closed(&mut held, since, Duration::from_secs(5)).await;
    let status = exit_within(&mut api, Duration::from_secs(5));
    let exited = since.elapsed();
    assert_eq!(status.code(), Some(3), "{status}");
    let after = closed.after().expect("the held connection was not closed");
    assert!(after >= Duration::from_millis(950) && after < Duration::from_secs(4), "closed after {after:?}");
    assert!(exited < Duration::from_secs(5), "exited after {exited:?}");
    let line = api.find_log(|v| v["level"] == "ERROR").expect("the forced close is logged");
    assert_eq!(line["closed_connections"], 1, "{line}");
    assert!(!api.raw_log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_the_drain_closes_open_connections_at_once() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let mut api = start(&mesh, &app, "timeouts: { drain: 30s }").await;
    let mut held = tls_client::connect(api.addr("api"), web_client(&mesh)).await.unwrap();
    held.write_all(b"1").await.unwrap();
    let mut b = [0u8; 1];
    held.read_exact(&mut b).await.unwrap();

    api.signal("TERM").unwrap();
    api.wait_log(Duration::from_secs(5), |v| v["message"] == "draining").await.unwrap();
    let since = Instant::now();
    api.signal("TERM").unwrap();
    let closed = hostile::wait_closed(&mut held, since, Duration::from_secs(5)).await;
    let status = exit_within(&mut api, Duration::from_secs(5));
    assert_eq!(status.code(), Some(3), "{status}");
    assert!(closed.after().is_some_and(|a| a < Duration::from_secs(3)), "{closed:?}");
    assert!(since.elapsed() < Duration::from_secs(5), "the second SIGTERM did not cut the 30 s drain short");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_the_drain_reloads_and_does_not_kill_the_process() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let mut api = start(&mesh, &app, "timeouts: { drain: 20s }").await;
    let mut held = tls_client::connect(api.addr("api"), web_client(&mesh)).await.unwrap();
    held.write_all(b"1").await.unwrap();
    let mut b = [0u8; 1];
    held.read_exact(&mut b).await.unwrap();

    api.signal("TERM").unwrap();
    api.wait_log(Duration::from_secs(5), |v| v["message"] == "draining").await.unwrap();
    for _ in 0..3 {
        api.signal("HUP").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.wait_log(Duration::from_secs(5), |v| v["message"] == "SIGHUP: reloading identity and policy").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still alive, still draining, and the open connection still works.
    assert_eq!(http::get(api.admin, "/live").await.unwrap().0, 200);
    assert_eq!(http::get(api.admin, "/ready").await.unwrap().0, 503);
    held.write_all(b"2").await.unwrap();
    held.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"2");

    // The last connection ends: the drain completes normally.
    held.shutdown().await.unwrap();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).await.unwrap();
    let status = exit_within(&mut api, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!api.raw_log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_requests_arriving_together_neither_panic_nor_change_the_exit_status() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    // Several rounds: the requests race each other differently each time.
    for round in 0..4 {
        let mut api = start(&mesh, &app, "timeouts: { drain: 5s }").await;
        let admin = api.admin;
        let posts: Vec<_> = (0..8).map(|_| tokio::spawn(http::post(admin, "/shutdown"))).collect();
        api.signal("TERM").unwrap();
        api.signal("TERM").unwrap();
        for p in posts {
            // Answered 202, or (once the drain finished and the admin server stopped) not answered at all.
            if let Ok((code, body)) = p.await.unwrap() {
                assert_eq!(code, 202, "round {round}: {body}");
            }
        }
        let status = exit_within(&mut api, Duration::from_secs(5));
        // No connection was open, so nothing had to be closed: 0, however many requests arrived.
        assert_eq!(status.code(), Some(0), "round {round}: {status}\n{}", api.raw_log());
        assert!(!api.raw_log().contains("panicked"), "round {round}");
    }
}
