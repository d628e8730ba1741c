//! The README's first command, end to end: build `mesh-demo` as `cargo run` would, run it against a fresh
//! work directory, and require exit 0, the allowed and refused outcomes, and the final line.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration::bins::{bins, mesh_demo};

/// Once built, the demo finishes in about a second; this only bounds a hang.
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `exe` with `MESH_DEMO_DIR=dir`; returns (success, stdout, stderr). Kills it after [`DEMO_TIMEOUT`].
fn run_demo(exe: &Path, dir: &Path) -> (bool, String, String) {
    let mut child = Command::new(exe)
        .env("MESH_DEMO_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mesh-demo");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + DEMO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for mesh-demo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mesh-demo did not finish within {DEMO_TIMEOUT:?}; output so far:\n{}",
                stdout.join().expect("stdout reader")
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    (status.success(), stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"))
}

#[test]
fn mesh_demo_runs_the_whole_mesh_and_every_check_passes() {
    // Build the binaries the demo runs first, so its own nested build is a no-op inside the timeout.
    bins();
    let exe = mesh_demo();
    let dir = tempfile::Builder::new().prefix("mesh-demo-").tempdir().unwrap();

    let (ok, stdout, stderr) = run_demo(exe, dir.path());

    assert!(ok, "mesh-demo failed:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    let outcome = |marker: &str| stdout.lines().filter(|line| line.trim_start().starts_with(marker)).count();
    assert_eq!(outcome("ALLOWED"), 2, "web's two requests:\n{stdout}");
    assert_eq!(outcome("REFUSED"), 2, "batch and the impostor:\n{stdout}");
    assert!(outcome("OK") > 0, "{stdout}");
    assert_eq!(outcome("FAIL"), 0, "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("demo: all ") && last.ends_with(" checks passed"), "final line: {last:?}");
    assert!(stdout.lines().count() < 100, "the narrative should stay short:\n{stdout}");
    // What the demo says it keeps for inspection is there.
    for kept in ["ca-example.org/ca.pem", "api/svid.pem", "policy.yaml", "api-inbound.yaml", "logs/api-inbound.log"] {
        assert!(dir.path().join(kept).exists(), "{kept} was not kept");
    }
}
