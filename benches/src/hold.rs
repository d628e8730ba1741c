//! `hold-conns`: opens N connections (mutual TLS, through the server under test, to an echo server), makes sure
//! each one reaches the backend with a small echo, and holds them idle so the server's memory can be read. When
//! the hold ends (its time, Ctrl-C or SIGTERM) it probes every connection again and reports how many were
//! still open.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::time::timeout;

use crate::client::{Conn, Dialer, TargetReport};

/// The `schema` value of the JSON report.
pub const SCHEMA: &str = "hold-conns/1";
/// Bytes echoed on each connection to know it reached the backend.
const PROBE: &[u8] = b"hold-conns probe";

/// The connections and what opening them took.
pub struct Opened {
    pub conns: Vec<Conn>,
    pub errors: HashMap<String, u64>,
    pub elapsed: Duration,
}

/// Opens `count` connections, `concurrency` at a time; each counts once its echo came back.
pub async fn open(dialer: Arc<Dialer>, count: usize, concurrency: usize, limit: Duration) -> Opened {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (dialer, next) = (dialer.clone(), next.clone());
            tokio::spawn(async move {
                let (mut conns, mut errors) = (Vec::new(), HashMap::<String, u64>::new());
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let opened = async {
                        let mut conn = dialer.dial().await.map_err(|r| r.to_string())?;
                        probe(&mut conn).await.map(|()| conn)
                    };
                    match timeout(limit, opened).await {
                        Ok(Ok(conn)) => conns.push(conn),
                        Ok(Err(reason)) => *errors.entry(reason).or_insert(0) += 1,
                        Err(_) => *errors.entry("timeout".into()).or_insert(0) += 1,
                    }
                }
                (conns, errors)
            })
        })
        .collect();
    let mut opened = Opened { conns: Vec::with_capacity(count), errors: HashMap::new(), elapsed: Duration::ZERO };
    for worker in workers {
        let Ok((conns, errors)) = worker.await else { continue };
        opened.conns.extend(conns);
        for (reason, n) in errors {
            *opened.errors.entry(reason).or_insert(0) += n;
        }
    }
    opened.elapsed = start.elapsed();
    opened
}

/// How many of `conns` still echo, `concurrency` probes at a time.
pub async fn still_open(conns: Vec<Conn>, concurrency: usize, limit: Duration) -> usize {
    let per_task = conns.len().div_ceil(concurrency.max(1)).max(1);
    let mut conns = conns;
    let mut tasks = Vec::new();
    while !conns.is_empty() {
        let batch: Vec<Conn> = conns.drain(..per_task.min(conns.len())).collect();
        tasks.push(tokio::spawn(async move {
            let mut alive = 0;
            for mut conn in batch {
                if matches!(timeout(limit, probe(&mut conn)).await, Ok(Ok(()))) {
                    alive += 1;
                }
            }
            alive
        }));
    }
    let mut alive = 0;
    for task in tasks {
        alive += task.await.unwrap_or(0);
    }
    alive
}

async fn probe(conn: &mut Conn) -> Result<(), String> {
    let mut reply = [0u8; PROBE.len()];
    crate::rr::exchange(conn, PROBE, &mut reply).await
}

/// The report, written once the connections are open (`alive_after_hold` still null) and again at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    #[serde(flatten)]
    pub target: TargetReport,
    pub requested: usize,
    pub open: usize,
    pub errors: BTreeMap<String, u64>,
    /// Time to open them all.
    pub open_s: f64,
    /// How many still echoed when the hold ended.
    pub alive_after_hold: Option<usize>,
    pub held_s: Option<f64>,
}

impl Report {
    pub fn new(target: TargetReport, requested: usize, opened: &Opened) -> Self {
        Self {
            schema: SCHEMA,
            target,
            requested,
            open: opened.conns.len(),
            errors: opened.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            open_s: opened.elapsed.as_secs_f64(),
            alive_after_hold: None,
            held_s: None,
        }
    }
}
