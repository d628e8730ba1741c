//! A child process whose stderr the harness reads: JSON log lines parsed as they arrive, every line kept as
//! text. Killed on drop; its log is printed if the test is failing. [`crate::agent::AgentProcess`] and
//! [`crate::process::SidecarProcess`] are this plus what they know about their program.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

/// A running child with its stderr collected.
pub struct LoggedChild {
    child: Child,
    /// Who it is in messages, e.g. `sidecar api-inbound`.
    label: String,
    log: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
}

impl LoggedChild {
    /// Spawns `command` with stdin and stdout on /dev/null and stderr read by a thread of its own.
    pub fn spawn(mut command: Command, label: &str) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {label}"))?;
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
        Ok(Self { child, label: label.to_owned(), log, raw })
    }

    /// Log records (JSON objects) so far that satisfy `pred`, oldest first.
    pub fn log_matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.log.lock().unwrap().iter().filter(|v| pred(v)).cloned().collect()
    }

    /// The first log record so far that satisfies `pred`.
    pub fn find_log(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.log.lock().unwrap().iter().find(|v| pred(v)).cloned()
    }

    /// Waits for a log record satisfying `pred`.
    pub async fn wait_log(&self, within: Duration, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.find_log(&pred) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{}: expected log line did not appear within {within:?}:\n{}", self.label, self.raw_log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn raw_log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` ("TERM", "HUP", "KILL", ...) with kill(1).
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

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {within:?}", self.label);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}\n--- end of log ---", self.label, self.raw_log());
        }
    }
}
