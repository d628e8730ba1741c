//! `certs-agent run` as a process: it publishes at once, renews with a new key and serial, and stops cleanly on
//! SIGTERM leaving the published SVID in place. (End-to-end behaviour with sidecars, CA outages, rotations and
//! SIGKILL lives in the integration crate.)
// Test helpers outside #[test] functions may unwrap too (clippy's allow-unwrap-in-tests does not reach them).
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use certs_agent::{pem, validity};
use policy::svid::leaf_details;

const ID: &str = "spiffe://example.org/ns/web/sa/frontend";

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certs-agent"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn serial_of(dir: &Path) -> Option<String> {
    let pem = fs::read(dir.join("svid.pem")).ok()?;
    Some(leaf_details(&pem::certificates(&pem).ok()?[0]).ok()?.serial_hex)
}

/// A running agent whose JSON log lines are collected.
struct Agent {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = agent().args(args).args(["--log-format", "json"]).stderr(Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
            }
        });
        Agent { child, lines }
    }

    fn messages(&self, message: &str) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().iter().filter(|v| v["message"] == message).cloned().collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn leaves_never_outlive_a_root_about_to_expire_and_each_clamp_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, out) = (tmp.path().join("ca"), tmp.path().join("out"));
    let init =
        agent().args(["ca", "init", "--trust-domain", "example.org", "--dir", p(&ca), "--ttl", "6s"]).output().unwrap();
    assert!(init.status.success());
    let pem = fs::read(ca.join("ca.pem")).unwrap();
    let ca_not_after = validity::from_unix(leaf_details(&pem::certificates(&pem).unwrap()[0]).unwrap().not_after);

    let run =
        Agent::start(&["run", "--ca-dir", p(&ca), "--id", ID, "--out", p(&out), "--ttl", "4s", "--retry-max", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while run.messages("renewal failed; the published SVID stays in place").is_empty() {
        assert!(Instant::now() < deadline, "no failure after the root expired: {:?}", run.lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let published = run.messages("published");
    let clamps = run.messages("the signing root expires sooner than --ttl: this SVID ends with it; rotate the CA");
    eprintln!("{} publications, {} clamped", published.len(), clamps.len());
    assert!(published.len() >= 2, "{published:?}");
    assert!(!clamps.is_empty(), "no clamp was logged");
    let expected = validity::rfc3339(ca_not_after);
    // The first leaf fit; every later one ended with the root, and each said so.
    for e in &published {
        let end = e["not_after"].as_str().unwrap();
        assert!(end <= expected.as_str(), "a leaf outlived its root: {e}");
    }
    // Each clamp ended a leaf with the root (a leaf may also end with it exactly without being cut short).
    let ending_with_root = published.iter().filter(|e| e["not_after"] == expected.as_str()).count();
    assert!(clamps.len() <= ending_with_root && ending_with_root <= clamps.len() + 1, "{published:?}");
    let failure = &run.messages("renewal failed; the published SVID stays in place")[0];
    assert!(failure["error"].as_str().unwrap().contains("the CA expired"), "{failure}");
    assert!(published.len() < 40, "re-issued {} times while the root ran out", published.len());
}

#[test]
fn run_renews_with_fresh_keys_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, out) = (tmp.path().join("ca"), tmp.path().join("out"));
    let init = agent().args(["ca", "init", "--trust-domain", "example.org", "--dir", p(&ca)]).output().unwrap();
    assert!(init.status.success());

    let mut child = agent()
        .args(["run", "--ca-dir", p(&ca), "--id", ID, "--out", p(&out), "--ttl", "2s", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
        }
    });
    let published =
        || lines.lock().unwrap().iter().filter(|v| v["message"] == "published").cloned().collect::<Vec<_>>();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut keys = Vec::new();
    while published().len() < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 publications: {:?}", lines.lock().unwrap());
        if let Ok(k) = fs::read(out.join("svid_key.pem"))
            && keys.last() != Some(&k)
        {
            keys.push(k);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let events = published();
    let serials: Vec<&str> = events.iter().map(|v| v["serial"].as_str().unwrap()).collect();
    assert_eq!(events[0]["reason"], "start");
    assert_eq!(events[1]["reason"], "renewal");
    assert!(serials.windows(2).all(|w| w[0] != w[1]), "{serials:?}");
    assert!(keys.len() >= 2 && keys.windows(2).all(|w| w[0] != w[1]), "a new key with every renewal");
    // Renewal at half the useful life, ±10%.
    for e in &events {
        let (life, renew) = (e["lifetime_ms"].as_f64().unwrap(), e["renew_in_ms"].as_f64().unwrap());
        assert!((0.45..=0.55).contains(&(renew / life)), "{e}");
        assert!(life >= 2000.0, "a 2 s TTL gives at least 2 s: {e}");
    }

    let before = serial_of(&out).unwrap();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    reader.join().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(lines.lock().unwrap().iter().any(|v| v["message"].as_str().is_some_and(|m| m.starts_with("stopping"))));
    // The published SVID stays, complete.
    assert_eq!(serial_of(&out).unwrap(), before);
    for name in ["svid.pem", "svid_key.pem", "svid_bundle.pem", "svid_bundle.spiffe.json"] {
        assert!(out.join(name).is_file(), "{name}");
    }
}
