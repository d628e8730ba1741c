//! What a process holds, read from `/proc`: open file descriptors, resident memory and CPU time. Leak tests
//! compare these before and after a flood or churn; the fd-exhaustion test uses the CPU time to tell a
//! backing-off accept loop from one that spins.
//!
//! The sidecar's own view (`sidecar_runtime_tasks_alive`, `sidecar_connections_open`) comes from `/metrics`;
//! [`sample`] reads both, `/proc` first, so the scrape's own admin connection is not counted.

use std::time::{Duration, Instant};

use crate::{SidecarProcess, prom::Metrics};

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may contain spaces: count fields after its `)`.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 1000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Sets `pid`'s open-file limit (soft and hard) with `prlimit(1)`.
pub fn set_nofile(pid: u32, limit: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()?;
    anyhow::ensure!(status.success(), "prlimit --nofile={limit} failed");
    Ok(())
}

/// One look at a sidecar's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub fds: usize,
    pub rss_kib: u64,
    /// `sidecar_runtime_tasks_alive`.
    pub tasks: f64,
    /// `sidecar_connections_open`, all listeners.
    pub open: f64,
}

/// Reads `/proc` (before the scrape opens its own admin connection), then `/metrics`.
pub async fn sample(p: &SidecarProcess) -> anyhow::Result<Sample> {
    let fds = fd_count(p.pid());
    let rss_kib = rss_kib(p.pid());
    let m = Metrics::parse(&p.metrics().await?)?;
    Ok(Sample {
        fds,
        rss_kib,
        tasks: m.value("sidecar_runtime_tasks_alive", &[]),
        open: m.value("sidecar_connections_open", &[]),
    })
}

/// Waits for a sidecar to be quiet (no open connection, the task and fd counts unchanged over two looks a
/// little apart) and returns that sample: a baseline, or the state after the load for comparing with one.
pub async fn settled(p: &SidecarProcess, within: Duration) -> anyhow::Result<Sample> {
    let deadline = Instant::now() + within;
    let mut last = sample(p).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sample(p).await?;
        if now.open == 0.0 && now.fds == last.fds && now.tasks == last.tasks {
            return Ok(now);
        }
        if Instant::now() > deadline {
            anyhow::bail!("{}: not settled within {within:?}: {last:?} then {now:?}", p.name);
        }
        last = now;
    }
}

/// Waits until `pred` holds of a fresh sample; returns it, or fails with the last one after `within`.
pub async fn sample_when(
    p: &SidecarProcess,
    within: Duration,
    what: &str,
    pred: impl Fn(&Sample) -> bool,
) -> anyhow::Result<Sample> {
    let deadline = Instant::now() + within;
    loop {
        let s = sample(p).await?;
        if pred(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            anyhow::bail!("{}: {what}: not within {within:?}; last {s:?}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The open-file limit under which exactly `free` descriptor numbers are unused in `pid` right now: with it
/// set, the process can open `free` more descriptors and then gets EMFILE.
pub fn limit_leaving_free(pid: u32, free: usize) -> usize {
    let mut open: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    open.sort_unstable();
    let mut unused = 0;
    let mut limit = 0;
    while unused < free {
        if open.binary_search(&limit).is_err() {
            unused += 1;
        }
        limit += 1;
    }
    limit
}
