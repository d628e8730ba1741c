//! A real `certs-agent run` process (its JSON log, its `/metrics` and `/ready`), the CA commands around it
//! (`ca rotate`, `ca retire` with their exit statuses), and readers that check what it publishes the way a
//! consumer would.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{bins::bins, http, prom::Metrics};

/// A running `certs-agent run --log-format json --metrics 127.0.0.1:0`. Killed on drop; its log is printed if
/// the test is failing.
pub struct AgentProcess {
    child: Child,
    pub name: String,
    pub out: PathBuf,
    /// The metrics address, learned from the log.
    pub metrics: SocketAddr,
    log: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    /// Starts `certs-agent run --ca-dir CA --id ID --out OUT --ttl TTL` plus `extra` arguments; returns once its
    /// metrics server listens (the first SVID may not be published yet).
    pub fn start(name: &str, ca_dir: &Path, id: &str, out: &Path, ttl: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut me = Self::spawn(name, ca_dir, id, out, ttl, extra)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = me.child.try_wait()? {
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
        let mut child = Command::new(&bins().certs_agent)
            .arg("run")
            .arg("--ca-dir")
            .arg(ca_dir)
            .args(["--id", id, "--ttl", ttl, "--log-format", "json", "--metrics", "127.0.0.1:0"])
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning certs-agent run")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        {
            let (log, raw) = (log.clone(), raw.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        log.lock().unwrap().push(v);
                    }
                    raw.lock().unwrap().push(line);
                }
            });
        }
        Ok(Self { child, name: name.to_owned(), out: out.to_path_buf(), metrics: "0.0.0.0:0".parse()?, log, raw })
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

    pub fn log_matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.log.lock().unwrap().iter().filter(|v| pred(v)).cloned().collect()
    }

    pub fn find_log(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.log.lock().unwrap().iter().find(|v| pred(v)).cloned()
    }

    pub fn raw_log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` ("TERM", "KILL", ...) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status()?.success();
        anyhow::ensure!(ok, "kill -{signal} failed");
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of certs-agent {} ---\n{}\n--- end of log ---", self.name, self.raw_log());
        }
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
