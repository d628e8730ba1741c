//! Connection churn through a real outbound + inbound sidecar pair: 20,000 short connections, each a full
//! mutual TLS handshake and an echo. Afterwards both sidecars hold what they held before (descriptors, tasks,
//! resident memory within 10%), every connection is accounted for, and none failed.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use integration::{
    App, Mesh, SidecarProcess,
    mesh::API_ID,
    procinfo::{self, Sample},
    prom::Metrics,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const READY: Duration = Duration::from_secs(10);
const WARM_UP: usize = 500;
const CHURN: usize = 20_000;
const CONCURRENCY: usize = 32;

/// Opens `n` connections to `addr`, `CONCURRENCY` at a time, each sending 16 bytes, half-closing and reading
/// the echo to the end. Returns the number that failed.
async fn churn(addr: SocketAddr, n: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, failed) = (next.clone(), failed.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    if !one(addr).await {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    failed.load(Ordering::Relaxed)
}

async fn one(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"0123456789abcdef").await?;
        s.shutdown().await?;
        let mut echoed = Vec::new();
        s.read_to_end(&mut echoed).await?;
        Ok::<_, std::io::Error>(echoed == b"0123456789abcdef")
    };
    matches!(tokio::time::timeout(Duration::from_secs(10), attempt).await, Ok(Ok(true)))
}

/// Whether `after` is within 10% of `before` (at least one unit of slack for small counts).
fn within_10_percent(before: f64, after: f64) -> bool {
    (after - before).abs() <= (before * 0.1).max(1.0)
}

fn assert_back_to_baseline(p: &SidecarProcess, before: Sample, after: Sample) {
    assert!(within_10_percent(before.fds as f64, after.fds as f64), "{}: fds {before:?} -> {after:?}", p.name);
    assert!(within_10_percent(before.tasks, after.tasks), "{}: tasks {before:?} -> {after:?}", p.name);
    assert!(
        within_10_percent(before.rss_kib as f64, after.rss_kib as f64),
        "{}: RSS {} KiB -> {} KiB",
        p.name,
        before.rss_kib,
        after.rss_kib
    );
    assert_eq!(after.open, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_short_connections_leave_descriptors_tasks_and_memory_where_they_were() {
    let mesh = Mesh::new().unwrap();
    let app = App::echo().await.unwrap();
    let api = mesh.api_inbound(app.addr).unwrap();
    let web = mesh.outbound("web-outbound", &mesh.web, api.addr("api"), API_ID).unwrap();
    api.wait_ready(READY).await.unwrap();
    web.wait_ready(READY).await.unwrap();
    let addr = web.addr("api");

    // The baseline is taken after a warm-up: the first connections grow the allocator's arenas and the
    // runtime's pools once; what must not happen is growth with every connection.
    assert_eq!(churn(addr, WARM_UP).await, 0, "warm-up connections failed");
    let settle = Duration::from_secs(20);
    let (api_before, web_before) =
        (procinfo::settled(&api, settle).await.unwrap(), procinfo::settled(&web, settle).await.unwrap());

    let started = Instant::now();
    let failed = churn(addr, CHURN).await;
    let took = started.elapsed();
    assert_eq!(failed, 0, "{failed} of {CHURN} connections failed");

    let (api_after, web_after) =
        (procinfo::settled(&api, settle).await.unwrap(), procinfo::settled(&web, settle).await.unwrap());
    eprintln!(
        "churn: {CHURN} connections in {took:?} ({:.0}/s); api {api_before:?} -> {api_after:?}; \
         web {web_before:?} -> {web_after:?}",
        CHURN as f64 / took.as_secs_f64()
    );
    assert_back_to_baseline(&api, api_before, api_after);
    assert_back_to_baseline(&web, web_before, web_after);

    // Every connection accounted for, on both sides, and every handshake succeeded.
    let total = (WARM_UP + CHURN) as f64;
    for (p, direction) in [(&api, "inbound"), (&web, "outbound")] {
        let m = Metrics::parse(&p.metrics().await.unwrap()).unwrap();
        let d = [("direction", direction)];
        assert_eq!(m.value("sidecar_connections_total", &d), total, "{}", p.name);
        assert_eq!(m.value("sidecar_tls_handshakes_total", &[("direction", direction), ("result", "ok")]), total);
        assert_eq!(m.value("sidecar_tls_handshakes_total", &[("result", "error")]), 0.0, "{}", p.name);
        assert_eq!(m.value("sidecar_connect_errors_total", &[]), 0.0, "{}", p.name);
        assert_eq!(m.value("sidecar_connections_refused_total", &[]), 0.0, "{}", p.name);
        assert_eq!(m.value("sidecar_bytes_total", &[("flow", "to_peer")]), total * 16.0, "{}", p.name);
    }
    assert_eq!(app.accepted(), WARM_UP + CHURN);
}
