//! The binaries under test, built once per test process with the same profile as the tests.
//!
//! Cargo does not build other packages' binaries for an integration test, so we ask it to, and take the
//! paths from its JSON messages (this honours `CARGO_TARGET_DIR` and any profile).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    pub sidecar: PathBuf,
    pub certs_agent: PathBuf,
}

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."))
}

/// Builds (if needed) and returns the binaries. Panics with cargo's output if the build fails.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| build().unwrap_or_else(|e| panic!("building the binaries failed: {e}")))
}

fn build() -> anyhow::Result<Bins> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--message-format=json-render-diagnostics",
        "-p",
        "sidecar",
        "-p",
        "certs-agent",
        "--bins",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!("cargo build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut sidecar = None;
    let mut certs_agent = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) else {
            continue;
        };
        match name {
            "sidecar" => sidecar = Some(PathBuf::from(exe)),
            "certs-agent" => certs_agent = Some(PathBuf::from(exe)),
            _ => {}
        }
    }
    match (sidecar, certs_agent) {
        (Some(sidecar), Some(certs_agent)) => Ok(Bins { sidecar, certs_agent }),
        _ => anyhow::bail!("cargo did not report both executables"),
    }
}
