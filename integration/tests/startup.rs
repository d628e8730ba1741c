//! Bad input at start: every malformed configuration (unknown key, bad duration, bad address, missing file,
//! duplicate listener name, port in use) makes `sidecar run` exit non-zero at once with one line that names
//! the file and the key (or its position), in either log format, and without a panic.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration::bins::bins;

/// A valid configuration in `dir` (the identity need not exist: a sidecar may start before it).
fn good(dir: &Path) -> String {
    std::fs::write(dir.join("policy.yaml"), "rules: []\n").unwrap();
    "identity:\n  dir: ./id\nadmin: 127.0.0.1:0\npolicy: ./policy.yaml\ninbound:\n  - name: api\n    listen: \
     127.0.0.1:0\n    forward: 127.0.0.1:8080\n"
        .to_string()
}

/// Runs `sidecar run --config PATH` with `format`; returns the exit code and stderr. Fails if it keeps running.
fn run(config: &Path, format: &str) -> (Option<i32>, String) {
    let mut child = Command::new(&bins().sidecar)
        .args(["run", "--config"])
        .arg(config)
        .args(["--log-format", format])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sidecar kept running on a bad configuration: {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Whether `message` points at a place in the file: `LINE:COLUMN:`.
fn has_position(message: &str) -> bool {
    message.split(": ").any(|part| {
        let mut it = part.split(':');
        matches!((it.next(), it.next(), it.next()), (Some(l), Some(c), None)
            if !l.is_empty() && !c.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[test]
fn each_malformed_configuration_exits_non_zero_with_one_line_naming_the_key_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = good(dir);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();

    // (case, configuration text, what the line must name)
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        ("unknown key", format!("{good}limitz: {{ max_connections: 3 }}\n"), vec!["limitz".into()]),
        ("unknown nested key", format!("{good}timeouts: {{ handshake: 1s, handshak: 2s }}\n"), vec!["handshak".into()]),
        ("bad duration", format!("{good}timeouts: {{ handshake: 10 parsecs }}\n"), vec!["10 parsecs".into()]),
        ("zero duration", format!("{good}timeouts: {{ connect: 0s }}\n"), vec!["timeouts.connect".into()]),
        (
            "bad address",
            good.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1"),
            vec!["inbound[0].listen".into(), "127.0.0.1".into()],
        ),
        ("bad admin address", good.replace("admin: 127.0.0.1:0", "admin: localhost"), vec!["admin".into()]),
        (
            "missing policy file",
            good.replace("./policy.yaml", "./no-such-policy.yaml"),
            vec!["no-such-policy.yaml".into()],
        ),
        (
            "duplicate listener name",
            format!(
                "{good}outbound:\n  - name: api\n    listen: 127.0.0.1:0\n    connect: 127.0.0.1:9\n    \
                 server_id: spiffe://example.org/ns/x/sa/x\n"
            ),
            vec!["outbound[0].name".into(), "unique".into()],
        ),
        (
            "port in use",
            good.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{taken_port}")),
            vec!["api".into(), format!("127.0.0.1:{taken_port}")],
        ),
        (
            "admin port in use",
            good.replace("admin: 127.0.0.1:0", &format!("admin: 127.0.0.1:{taken_port}")),
            vec!["admin".into(), format!("127.0.0.1:{taken_port}")],
        ),
        (
            "max_connections zero",
            format!("{good}limits: {{ max_connections: 0 }}\n"),
            vec!["limits.max_connections".into()],
        ),
        ("not YAML", "identity: [unclosed\n".to_string(), vec![]),
    ];

    for (i, (case, text, needles)) in cases.iter().enumerate() {
        let name = format!("config-{i}.yaml");
        let path = dir.join(&name);
        std::fs::write(&path, text).unwrap();

        // Text format: one line, `sidecar: error: ...`, last (info lines about what did start may precede it).
        let (code, stderr) = run(&path, "text");
        assert_eq!(code, Some(1), "{case}: exit {code:?}\n{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sidecar: error: ")).collect();
        assert_eq!(errors.len(), 1, "{case}: expected one error line, got:\n{stderr}");
        let line = errors[0];
        assert_eq!(stderr.lines().rfind(|l| !l.trim().is_empty()), Some(line), "{case}: {stderr}");
        for needle in needles {
            assert!(line.contains(needle.as_str()), "{case}: {line:?} should name {needle:?}");
        }
        // The file is named: the configuration, or the file it points to that cannot be used.
        let names_file = line.contains(&name) || needles.iter().any(|n| n.ends_with(".yaml"));
        assert!(names_file || line.contains("listener") || line.contains("admin:"), "{case}: {line:?}");
        if *case == "bad duration" || *case == "not YAML" || case.starts_with("unknown") {
            assert!(has_position(line), "{case}: {line:?} should give LINE:COLUMN");
        }
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");

        // JSON format: one JSON record at error level carrying the same reason.
        let (code, stderr) = run(&path, "json");
        assert_eq!(code, Some(1), "{case} (json): exit {code:?}\n{stderr}");
        let records: Vec<serde_json::Value> =
            stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        let errors: Vec<_> = records.iter().filter(|r| r["level"] == "ERROR").collect();
        assert_eq!(errors.len(), 1, "{case} (json): {stderr}");
        let reason = line.trim_start_matches("sidecar: error: ");
        assert_eq!(errors[0]["error"].as_str(), Some(reason), "{case} (json): {stderr}");
    }
    drop(taken);
}
