//! A real `sidecar run` process: its configuration file, its JSON log, its admin endpoints.
//!
//! Every listener binds port 0; the harness learns the real ports from the process's own log lines, so
//! tests never race each other for ports.

use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{bins::bins, child::LoggedChild, http};

/// A sidecar configuration, written as YAML (SPEC §2).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub identity_dir: PathBuf,
    pub policy: PathBuf,
    /// (name, forward address)
    pub inbound: Vec<(String, String)>,
    /// (name, connect address, server_id)
    pub outbound: Vec<(String, String, String)>,
    /// Extra top-level YAML appended verbatim (e.g. a `timeouts:` block).
    pub extra: String,
}

impl SidecarConfig {
    pub fn new(identity_dir: &Path, policy: &Path) -> Self {
        Self {
            identity_dir: identity_dir.to_path_buf(),
            policy: policy.to_path_buf(),
            inbound: vec![],
            outbound: vec![],
            extra: String::new(),
        }
    }

    pub fn inbound(mut self, name: &str, forward: impl ToString) -> Self {
        self.inbound.push((name.to_string(), forward.to_string()));
        self
    }

    pub fn outbound(mut self, name: &str, connect: impl ToString, server_id: &str) -> Self {
        self.outbound.push((name.to_string(), connect.to_string(), server_id.to_string()));
        self
    }

    pub fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self.extra.push('\n');
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = format!(
            "identity:\n  dir: {}\nadmin: 127.0.0.1:0\npolicy: {}\n",
            self.identity_dir.display(),
            self.policy.display()
        );
        if !self.inbound.is_empty() {
            y.push_str("inbound:\n");
            for (name, forward) in &self.inbound {
                y.push_str(&format!("  - name: {name}\n    listen: 127.0.0.1:0\n    forward: {forward}\n"));
            }
        }
        if !self.outbound.is_empty() {
            y.push_str("outbound:\n");
            for (name, connect, server_id) in &self.outbound {
                y.push_str(&format!(
                    "  - name: {name}\n    listen: 127.0.0.1:0\n    connect: {connect}\n    server_id: {server_id}\n"
                ));
            }
        }
        y.push_str(&self.extra);
        y
    }
}

/// A running sidecar. Killed on drop; its log is printed if the test is failing. The log, signals and exit
/// are those of its [`LoggedChild`] (through `Deref`).
pub struct SidecarProcess {
    child: LoggedChild,
    pub name: String,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub config_path: PathBuf,
}

impl SidecarProcess {
    /// Writes `config` to `dir/NAME.yaml` and starts `sidecar run` on it; returns once the admin server and
    /// every listener are bound (not necessarily ready: identity may still be pending).
    pub fn start(name: &str, dir: &Path, config: &SidecarConfig) -> anyhow::Result<Self> {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config.to_yaml())?;
        Self::start_file(name, &config_path, config.inbound.len() + config.outbound.len())
    }

    /// Starts `sidecar run --config PATH` on an existing file with `listeners` listeners.
    pub fn start_file(name: &str, config_path: &Path, listeners: usize) -> anyhow::Result<Self> {
        Self::start_file_with(name, config_path, listeners, &[])
    }

    /// Like [`SidecarProcess::start`], with extra `sidecar run` arguments (e.g. `--file-watch poll`).
    pub fn start_with(name: &str, dir: &Path, config: &SidecarConfig, args: &[&str]) -> anyhow::Result<Self> {
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config.to_yaml())?;
        Self::start_file_with(name, &config_path, config.inbound.len() + config.outbound.len(), args)
    }

    fn start_file_with(name: &str, config_path: &Path, listeners: usize, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(&bins().sidecar);
        command
            .args(["run", "--config"])
            .arg(config_path)
            .args(["--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info");
        let mut me = Self {
            child: LoggedChild::spawn(command, &format!("sidecar {name}"))?,
            name: name.to_string(),
            admin: "0.0.0.0:0".parse()?,
            listeners: HashMap::new(),
            config_path: config_path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = me.try_wait()? {
                bail!("{name} exited early with {status}:\n{}", me.raw_log());
            }
            let started = me
                .find_log(|v| v["message"] == "sidecar started")
                .and_then(|v| v["admin"].as_str().map(str::to_string));
            let bound: HashMap<String, SocketAddr> = me
                .log_matching(|v| v["message"] == "listener bound")
                .iter()
                .filter_map(|v| Some((v["listener"].as_str()?.to_string(), v["listen"].as_str()?.parse().ok()?)))
                .collect();
            if let Some(admin) = started
                && bound.len() >= listeners
            {
                me.admin = admin.parse()?;
                me.listeners = bound;
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("{name} did not start within 30 s:\n{}", me.raw_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self.listeners.get(listener).unwrap_or_else(|| panic!("{}: no listener {listener}", self.name))
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok((200, _)) = http::get(self.admin, "/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let body = http::get(self.admin, "/ready").await.map(|r| r.1).unwrap_or_default();
                bail!("{} not ready within {within:?}: {body}\n{}", self.name, self.raw_log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http::get(self.admin, "/metrics").await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(body)
    }

    /// Polls `/metrics` until `pred` holds and returns that scrape; fails after `within`. Counters are bumped
    /// by the sidecar's own tasks, which may finish a moment after the client saw the connection close.
    pub async fn metrics_when(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&crate::prom::Metrics) -> bool,
    ) -> anyhow::Result<crate::prom::Metrics> {
        let deadline = Instant::now() + within;
        loop {
            let m = crate::prom::Metrics::parse(&self.metrics().await?)?;
            if pred(&m) {
                return Ok(m);
            }
            if Instant::now() > deadline {
                bail!("{}: {what}: not within {within:?}\n{}", self.name, self.raw_log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Deref for SidecarProcess {
    type Target = LoggedChild;
    fn deref(&self) -> &LoggedChild {
        &self.child
    }
}

impl DerefMut for SidecarProcess {
    fn deref_mut(&mut self) -> &mut LoggedChild {
        &mut self.child
    }
}
