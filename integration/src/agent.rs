//! A real `certs-agent run` process (its JSON log, its `/metrics` and `/ready`), the CA commands around it
//! (`ca rotate`, `ca retire` with their exit statuses), and readers that check what it publishes the way a
//! consumer would.

use std::{
    net::SocketAddr,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{bins::bins, child::LoggedChild, http, prom::Metrics};

/// A running `certs-agent run --log-format json --metrics 127.0.0.1:0`. Killed on drop; its log is printed if
/// the test is failing. The log, signals and exit are those of its [`LoggedChild`] (through `Deref`).
pub struct AgentProcess {
    child: LoggedChild,
    pub name: String,
    pub out: PathBuf,
    /// The metrics address, learned from the log.
    pub metrics: SocketAddr,
}

impl AgentProcess {
    /// Starts `certs-agent run --ca-dir CA --id ID --out OUT --ttl TTL` plus `extra` arguments; returns once its
    /// metrics server listens (the first SVID may not be published yet).
    pub fn start(name: &str, ca_dir: &Path, id: &str, out: &Path, ttl: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut me = Self::spawn(name, ca_dir, id, out, ttl, extra)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = me.try_wait()? {
                bail!("{name} exited early with {status}:\n{}", me.raw_log());
            }
            if let Some(addr) =
                me.find_log(|v| v["message"] == "metrics listening").and_then(|v| v["addr"].as_str().map(str::to_owned))
            {
                me.metrics = addr.parse()?;
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("{name} did not start within 30 s:\n{}", me.raw_log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Spawns the agent and returns at once (for tests that kill it at arbitrary moments).
    pub fn spawn(name: &str, ca_dir: &Path, id: &str, out: &Path, ttl: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(&bins().certs_agent);
        command
            .arg("run")
            .arg("--ca-dir")
            .arg(ca_dir)
            .args(["--id", id, "--ttl", ttl, "--log-format", "json", "--metrics", "127.0.0.1:0"])
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("RUST_LOG", "info");
        let child = LoggedChild::spawn(command, &format!("certs-agent {name}"))?;
        Ok(Self { child, name: name.to_owned(), out: out.to_path_buf(), metrics: "0.0.0.0:0".parse()? })
    }

    /// The `published` log records so far, oldest first (fields: `serial`, `not_after`, `lifetime_ms`,
    /// `renew_in_ms`, `root`, `bundle_roots`, `bundle_sequence`, `reason`).
    pub fn publications(&self) -> Vec<Value> {
        self.log_matching(|v| v["message"] == "published")
    }

    /// Waits until at least `n` publications happened; returns them all.
    pub async fn wait_publications(&self, n: usize, within: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + within;
        loop {
            let published = self.publications();
            if published.len() >= n {
                return Ok(published);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {} publications within {within:?}, expected {n}:\n{}",
                    self.name,
                    published.len(),
                    self.raw_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The parsed `/metrics`.
    pub async fn scrape(&self) -> anyhow::Result<Metrics> {
        let (status, body) = http::get(self.metrics, "/metrics").await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Metrics::parse(&body)
    }

    /// `GET /ready`: status and body.
    pub async fn ready(&self) -> anyhow::Result<(u16, String)> {
        http::get(self.metrics, "/ready").await
    }
}

impl Deref for AgentProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.child
    }
}

impl DerefMut for AgentProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.child
    }
}

/// Runs `certs-agent` with `args` and returns its whole output, whatever the exit status.
pub fn certs_agent_output(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(&bins().certs_agent).args(args).output().context("running certs-agent")
}

/// `certs-agent ca rotate --dir CA_DIR --activate-after DELAY`; returns the new root's serial and its
/// activation time (Unix seconds) from `roots.json`.
pub fn rotate(ca_dir: &Path, activate_after: &str) -> anyhow::Result<(String, i64)> {
    let dir = ca_dir.to_str().context("non-UTF-8 path")?;
    let out = certs_agent_output(&["ca", "rotate", "--dir", dir, "--activate-after", activate_after])?;
    anyhow::ensure!(out.status.success(), "ca rotate failed: {}", String::from_utf8_lossy(&out.stderr));
    let roots = roots_json(ca_dir)?;
    let last = roots["roots"].as_array().and_then(|r| r.last()).context("no roots")?;
    Ok((last["serial"].as_str().context("serial")?.to_owned(), last["activate_at"].as_i64().context("activate_at")?))
}

/// `certs-agent ca retire --dir CA_DIR`: the exit code and the stderr text.
pub fn retire(ca_dir: &Path, force: bool) -> anyhow::Result<(i32, String)> {
    let dir = ca_dir.to_str().context("non-UTF-8 path")?;
    let mut args = vec!["ca", "retire", "--dir", dir];
    if force {
        args.push("--force");
    }
    let out = certs_agent_output(&args)?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// The CA directory's `roots.json`.
pub fn roots_json(ca_dir: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(ca_dir.join("roots.json"))?)?)
}

/// Seconds since the Unix epoch, with the fraction.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
