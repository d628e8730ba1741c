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
    BINS.get_or_init(|| {
        let built = build(&["-p", "sidecar", "-p", "certs-agent", "--bins"], &["sidecar", "certs-agent"])
            .unwrap_or_else(|e| panic!("building the binaries failed: {e}"));
        Bins { sidecar: built[0].clone(), certs_agent: built[1].clone() }
    })
}

/// Builds (if needed) and returns the `mesh-demo` binary, as `cargo run -p integration --bin mesh-demo` would.
pub fn mesh_demo() -> &'static Path {
    static DEMO: OnceLock<PathBuf> = OnceLock::new();
    DEMO.get_or_init(|| {
        let built = build(&["-p", "integration", "--bin", "mesh-demo"], &["mesh-demo"])
            .unwrap_or_else(|e| panic!("building mesh-demo failed: {e}"));
        built[0].clone()
    })
}

/// Runs `cargo build ARGS` in the tests' profile and returns the executables named `wanted`, in order.
fn build(args: &[&str], wanted: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--message-format=json-render-diagnostics"]).args(args);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!("cargo build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let messages: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    wanted
        .iter()
        .map(|name| {
            messages
                .iter()
                .filter(|msg| msg["target"]["name"] == *name)
                .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
                .ok_or_else(|| anyhow::anyhow!("cargo did not report the {name} executable"))
        })
        .collect()
}
