//! Abuse at the front door of an inbound listener: handshake floods (silent sockets and garbage), the
//! connection limit, running out of file descriptors, and handshakes built to be too big. Each is refused
//! with a counted reason, a legitimate caller still gets in, and nothing is left behind.
//!
//! The tests in this file load the machine; they take a lock so they do not run at the same time as each
//! other (their timing bounds are about the sidecar, not about a neighbour's flood).

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use integration::{
    App, Mesh, SidecarConfig, SidecarProcess,
    hostile::{self, Closed},
    mesh::{API_ID, WEB_ID},
    pki::Identity,
    procinfo,
    prom::Metrics,
    tls_client::{self, ClientCert},
};
use rustls::ClientConfig;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const READY: Duration = Duration::from_secs(10);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client_as(mesh: &Mesh, who: &Identity) -> Arc<ClientConfig> {
    tls_client::config(ClientCert::Dir(&who.dir), mesh.pki.bundle_pem().unwrap().as_bytes(), API_ID).unwrap()
}

/// An inbound sidecar for `api` in front of an echo app, with `extra` YAML (timeouts, limits).
async fn echo_api(mesh: &Mesh, extra: &str) -> (App, SidecarProcess) {
    let app = App::echo().await.unwrap();
    let config = SidecarConfig::new(&mesh.api.dir, &mesh.policy).inbound("api", app.addr).extra(extra);
    let api = SidecarProcess::start("api-inbound", mesh.dir(), &config).unwrap();
    api.wait_ready(READY).await.unwrap();
    (app, api)
}

async fn echoes(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> bool {
    let attempt = tls_client::round_trip(addr, config, b"ping");
    matches!(tokio::time::timeout(Duration::from_secs(5), attempt).await, Ok(Ok(reply)) if reply == b"ping")
}

fn handshakes(m: &Metrics, reason: &str) -> f64 {
    m.value("sidecar_tls_handshakes_total", &[("direction", "inbound"), ("reason", reason)])
}

fn no_panic(p: &SidecarProcess) {
    let log = p.raw_log();
    assert!(!log.contains("panicked"), "{} panicked:\n{log}", p.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_is_reaped_by_reason_while_a_real_caller_gets_in_and_nothing_leaks() {
    let _serial = SERIAL.lock().await;
    const SILENT: usize = 300;
    const GARBAGE: usize = 50;
    let handshake_timeout = Duration::from_secs(2);
    let mesh = Mesh::new().unwrap();
    let (_app, api) = echo_api(&mesh, "timeouts: { handshake: 2s }").await;
    let addr = api.addr("api");
    let web = client_as(&mesh, &mesh.web);
    assert!(echoes(addr, web.clone()).await, "warm-up round trip");
    let before = procinfo::settled(&api, Duration::from_secs(10)).await.unwrap();

    // 300 sockets that connect and say nothing; each reports when the sidecar closed it.
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        let mut s = TcpStream::connect(addr).await.unwrap();
        silent.push(tokio::spawn(async move {
            let since = Instant::now();
            hostile::wait_closed(&mut s, since, Duration::from_secs(10)).await
        }));
    }
    api.metrics_when(Duration::from_secs(5), "the silent flood accepted", |m| {
        m.value("sidecar_connections_open", &[]) >= SILENT as f64
    })
    .await
    .unwrap();
    // 50 that send garbage.
    let garbage: Vec<_> = (0..GARBAGE)
        .map(|i| {
            let bytes = hostile::garbage(512, i as u8);
            tokio::spawn(async move { hostile::send_and_wait_closed(addr, &bytes, Duration::from_secs(10)).await })
        })
        .collect();

    // Meanwhile a real caller: its handshake completes within a second, and its bytes go through.
    let started = Instant::now();
    let mut tls = tls_client::connect(addr, web.clone()).await.unwrap();
    let handshake = started.elapsed();
    tls.write_all(b"during the flood").await.unwrap();
    let mut echoed = [0u8; 16];
    tls.read_exact(&mut echoed).await.unwrap();
    let round_trip = started.elapsed();
    assert_eq!(&echoed, b"during the flood");
    drop(tls);
    assert!(handshake < Duration::from_secs(1), "the real caller's handshake took {handshake:?} during the flood");
    assert!(round_trip < Duration::from_secs(1), "the real caller's first echo took {round_trip:?}");

    // Garbage is dropped at the first bad record, long before the handshake timeout.
    let mut garbage_closed = Vec::new();
    for g in garbage {
        match g.await.unwrap().unwrap() {
            Closed::StillOpen => panic!("a garbage sender was left open"),
            c => garbage_closed.push(c.after().unwrap()),
        }
    }
    let slowest_garbage = garbage_closed.iter().max().copied().unwrap();
    assert!(slowest_garbage < handshake_timeout / 2, "a garbage sender was dropped only after {slowest_garbage:?}");
    // Silent sockets are dropped at the handshake timeout: not before, not much after.
    let mut silent_closed = Vec::new();
    for s in silent {
        let closed = s.await.unwrap();
        assert_eq!(closed.bytes(), 0, "a silent socket received bytes");
        silent_closed.push(closed.after().expect("a silent socket was left open"));
    }
    let (first, last) = (silent_closed.iter().min().unwrap(), silent_closed.iter().max().unwrap());
    assert!(*first >= handshake_timeout - Duration::from_millis(50), "a silent socket was dropped after {first:?}");
    assert!(*last < handshake_timeout + Duration::from_secs(3), "a silent socket was dropped only after {last:?}");

    // Every one counted by its reason.
    let m = api
        .metrics_when(Duration::from_secs(5), "every flood connection counted", |m| {
            handshakes(m, "timeout") == SILENT as f64 && handshakes(m, "protocol_error") == GARBAGE as f64
        })
        .await
        .unwrap();
    assert_eq!(handshakes(&m, "ok"), 2.0);
    assert_eq!(m.value("sidecar_connections_total", &[("listener", "api")]), (SILENT + GARBAGE + 2) as f64);
    // 350 refusals are a sample of log lines, not 350: the rest are in the suppressed counts.
    let lines = api.log_matching(|v| v["message"] == "connection refused: handshake failed");
    assert!(!lines.is_empty() && lines.len() <= 40, "{} refusal lines for a flood", lines.len());

    // Afterwards: no open connection, and the fd and task counts are back to the baseline.
    let after = procinfo::sample_when(&api, Duration::from_secs(10), "back to the baseline", |s| {
        s.open == 0.0 && s.fds <= before.fds && s.tasks <= before.tasks
    })
    .await
    .unwrap();
    eprintln!(
        "flood: handshake {handshake:?}, first echo {round_trip:?}; garbage dropped within {slowest_garbage:?}; \
         silent dropped between {first:?} and {last:?}; before {before:?}, after {after:?}"
    );
    assert!(echoes(addr, web).await);
    no_panic(&api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_connections_are_refused_at_once_and_counted() {
    let _serial = SERIAL.lock().await;
    let mesh = Mesh::new().unwrap();
    let (app, api) = echo_api(&mesh, "timeouts: { handshake: 30s }\nlimits: { max_connections: 3 }").await;
    let addr = api.addr("api");
    let web = client_as(&mesh, &mesh.web);

    // Two established connections hold two slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tls = tls_client::connect(addr, web.clone()).await.unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        held.push(tls);
    }
    // Below the limit everything works.
    assert!(echoes(addr, web.clone()).await, "a third connection below the limit");
    let open = |n: f64| move |m: &Metrics| m.value("sidecar_connections_open", &[]) == n;
    api.metrics_when(Duration::from_secs(5), "two open", open(2.0)).await.unwrap();
    // A socket sitting in its handshake takes the last slot.
    let stalled = TcpStream::connect(addr).await.unwrap();
    api.metrics_when(Duration::from_secs(5), "three open", open(3.0)).await.unwrap();

    // Full: five more are closed at once, not left in the backlog.
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let closed = hostile::wait_closed(&mut s, Instant::now(), Duration::from_secs(3)).await;
        let after = closed.after().expect("a connection over the limit was left hanging");
        assert!(after < Duration::from_millis(500), "refused only after {after:?}");
    }
    // A TLS caller over the limit fails promptly too.
    let attempt = tokio::time::timeout(Duration::from_secs(2), tls_client::round_trip(addr, web.clone(), b"ping"));
    assert!(!matches!(attempt.await, Ok(Ok(r)) if r == b"ping"), "served over the limit");

    let m = api
        .metrics_when(Duration::from_secs(5), "refusals counted", |m| {
            m.value("sidecar_connections_refused_total", &[("reason", "limit")]) == 6.0
        })
        .await
        .unwrap();
    assert_eq!(m.value("sidecar_connections_refused_total", &[("listener", "api"), ("reason", "limit")]), 6.0);
    assert_eq!(m.value("sidecar_connections_total", &[("listener", "api")]), 10.0);
    assert_eq!(m.value("sidecar_connections_open", &[]), 3.0);
    assert_eq!(app.accepted(), 3, "only connections within the limit reached the app");

    // A slot frees up: service resumes, and the held connections never noticed.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !echoes(addr, web.clone()).await {
        assert!(Instant::now() < deadline, "no service after a slot freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for tls in &mut held {
        tls.write_all(b"y").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"y");
    }
    no_panic(&api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_counts_and_recovers() {
    let _serial = SERIAL.lock().await;
    let mesh = Mesh::new().unwrap();
    let (_app, api) = echo_api(&mesh, "timeouts: { handshake: 30s }").await;
    let addr = api.addr("api");
    let web = client_as(&mesh, &mesh.web);
    assert!(echoes(addr, web.clone()).await);
    procinfo::settled(&api, Duration::from_secs(10)).await.unwrap();
    let pid = api.pid();

    // Lower the limit so that exactly three descriptor numbers are free below it (descriptors already open
    // above a lowered limit stay usable; only new ones must fit under it), then fill those with sockets that
    // sit in their handshake.
    let limit = procinfo::limit_leaving_free(pid, 3);
    procinfo::set_nofile(pid, limit).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..3 {
        let before = procinfo::fd_count(pid);
        fillers.push(TcpStream::connect(addr).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(2);
        while procinfo::fd_count(pid) == before {
            assert!(Instant::now() < deadline, "a filler connection was not accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // One more waits in the backlog: every accept of it fails with EMFILE.
    let waiting = TcpStream::connect(addr).await.unwrap();

    let window = Duration::from_secs(3);
    let cpu_before = procinfo::cpu_time(pid);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let cpu = procinfo::cpu_time(pid) - cpu_before;
    let share = cpu.as_secs_f64() / started.elapsed().as_secs_f64();
    assert!(share < 0.3, "the sidecar used {:.0}% of a core while out of descriptors", share * 100.0);
    let logged = api.log_matching(|v| v["message"] == "accept failed; backing off");
    assert!(!logged.is_empty(), "no accept failure logged while out of descriptors");
    assert!(logged.iter().any(|v| v["error"].as_str().is_some_and(|e| e.contains("Too many open files"))));

    // Descriptors free up: service resumes within the backoff.
    drop(fillers);
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !echoes(addr, web.clone()).await {
        assert!(Instant::now() < deadline, "no service after descriptors freed up");
    }
    let m = Metrics::parse(&api.metrics().await.unwrap()).unwrap();
    let counted = m.value("sidecar_connections_refused_total", &[("listener", "api"), ("reason", "accept_error")]);
    // Backing off from 5 ms to 1 s, a few seconds out of descriptors cost a dozen attempts, not thousands.
    assert!((1.0..=30.0).contains(&counted), "{counted} accept failures: not backing off");
    // Every failure is counted; the log shows each one or says how many it left out.
    let logged = api.log_matching(|v| v["message"] == "accept failed; backing off");
    let accounted: f64 = logged.iter().map(|v| 1.0 + v["suppressed"].as_f64().unwrap_or(0.0)).sum();
    assert!(accounted <= counted, "the log accounts for {accounted} failures, the metric for {counted}");
    eprintln!(
        "fd exhaustion: limit {limit}, {counted} accept failures, {:.1}% of a core over {window:?}",
        share * 100.0
    );
    no_panic(&api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_handshakes_are_refused_cleanly_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let mesh = Mesh::new().unwrap();
    let (app, api) = echo_api(&mesh, "timeouts: { handshake: 5s }").await;
    let addr = api.addr("api");
    let web = client_as(&mesh, &mesh.web);
    assert!(echoes(addr, web.clone()).await);
    let before = procinfo::settled(&api, Duration::from_secs(10)).await.unwrap();
    let issuer = mesh.pki.issuer().unwrap();
    let bundle = mesh.pki.bundle_pem().unwrap();

    // A client chain of 40 certificates: web's ID, under 39 intermediates chained to the real root.
    let deep = mesh.dir().join("deep-chain");
    hostile::deep_chain_identity(&issuer, 39, WEB_ID, &bundle, &deep).unwrap();
    let chain = std::fs::read_to_string(deep.join("svid.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 40);
    // A leaf whose URI SAN is a 10,000-byte SPIFFE ID.
    let long = mesh.dir().join("long-uri");
    let long_id = format!("spiffe://example.org/{}", "a".repeat(10_000 - "spiffe://example.org/".len()));
    hostile::leaf_with_uri(&issuer, &long_id, &bundle, &long).unwrap();

    const ROUNDS: usize = 10;
    for _ in 0..ROUNDS {
        let deep_client = client_as(&mesh, &Identity { id: WEB_ID.into(), dir: deep.clone() });
        let long_client = client_as(&mesh, &Identity { id: long_id.clone(), dir: long.clone() });
        let (a, b) = tokio::join!(echoes(addr, deep_client), echoes(addr, long_client));
        assert!(!a && !b, "an oversized identity was served");
        // A ClientHello of 64 KiB + 46 bytes, and one that announces 16 MiB and sends 80 KiB of it.
        let big = hostile::oversized_client_hello(u16::MAX);
        assert!(big.len() > 64 * 1024);
        let huge = hostile::huge_declared_handshake(0xFF_FFFF, 80 * 1024);
        let within = Duration::from_secs(3);
        let (c, d) = tokio::join!(
            hostile::send_and_wait_closed(addr, &big, within),
            hostile::send_and_wait_closed(addr, &huge, within)
        );
        assert!(c.unwrap().is_closed() && d.unwrap().is_closed(), "an oversized ClientHello was left open");
    }

    let m = api
        .metrics_when(Duration::from_secs(5), "every oversized handshake counted", |m| {
            m.value("sidecar_tls_handshakes_total", &[("result", "error")]) == (4 * ROUNDS) as f64
        })
        .await
        .unwrap();
    let reasons: Vec<(String, f64)> = m
        .samples("sidecar_tls_handshakes_total", &[("result", "error")])
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) if v > 0.0 => Some((s.labels.get("reason")?.to_string(), v)),
            _ => None,
        })
        .collect();
    eprintln!("oversized handshakes refused by reason: {reasons:?}");
    // The long URI is not a SPIFFE ID: bad_svid. The 40-deep chain exceeds the path length webpki allows:
    // untrusted. The oversized ClientHellos break the record layer's limits: protocol_error.
    assert_eq!(handshakes(&m, "bad_svid"), ROUNDS as f64, "{reasons:?}");
    assert_eq!(handshakes(&m, "untrusted"), ROUNDS as f64, "{reasons:?}");
    assert_eq!(handshakes(&m, "protocol_error"), (2 * ROUNDS) as f64, "{reasons:?}");
    assert_eq!(app.accepted(), 1, "only the warm-up round trip reached the app");
    let line = api.find_log(|v| v["reason"] == "bad_svid").unwrap();
    assert!(
        line.to_string().len() < 4096,
        "a refusal line carries the 10,000-byte ID: {} bytes",
        line.to_string().len()
    );

    // Still serving, memory bounded, nothing left open.
    assert!(echoes(addr, web).await);
    let after = procinfo::sample_when(&api, Duration::from_secs(10), "no connection left open", |s| s.open == 0.0)
        .await
        .unwrap();
    let grown = after.rss_kib.saturating_sub(before.rss_kib);
    eprintln!("oversized handshakes: RSS {} KiB -> {} KiB", before.rss_kib, after.rss_kib);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB over {ROUNDS} rounds of oversized handshakes");
    no_panic(&api);
}
