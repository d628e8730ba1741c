//! The standard cast of the end-to-end tests: one trust domain, three workloads and a policy that lets
//! `web` call `api` and nobody else.
//!
//! - `web`  (`spiffe://example.org/ns/web/sa/web`): allowed to call `api`.
//! - `api`  (`spiffe://example.org/ns/api/sa/api`): serves an app behind an inbound sidecar.
//! - `batch` (`spiffe://example.org/ns/batch/sa/report`): a valid identity the policy does not allow.

use std::path::PathBuf;

use tempfile::TempDir;

use crate::{
    pki::{Identity, Pki},
    process::{SidecarConfig, SidecarProcess},
};

pub const TRUST_DOMAIN: &str = "example.org";
pub const WEB_ID: &str = "spiffe://example.org/ns/web/sa/web";
pub const API_ID: &str = "spiffe://example.org/ns/api/sa/api";
pub const BATCH_ID: &str = "spiffe://example.org/ns/batch/sa/report";

/// The policy the mesh starts with.
pub const POLICY: &str = "\
mode: enforce
on_revoke: close
rules:
  - name: web-can-call-api
    listeners: [api]
    allow:
      - spiffe://example.org/ns/web/sa/web
";

pub struct Mesh {
    pub tmp: TempDir,
    pub pki: Pki,
    pub web: Identity,
    pub api: Identity,
    pub batch: Identity,
    pub policy: PathBuf,
}

impl Mesh {
    /// Makes the CA, issues the three identities with certs-agent, writes the policy.
    pub fn new() -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("mesh-").tempdir()?;
        let pki = Pki::init(tmp.path(), TRUST_DOMAIN)?;
        let web = pki.issue("/ns/web/sa/web", &tmp.path().join("web"), "1h")?;
        let api = pki.issue("/ns/api/sa/api", &tmp.path().join("api"), "1h")?;
        let batch = pki.issue("/ns/batch/sa/report", &tmp.path().join("batch"), "1h")?;
        let policy = tmp.path().join("policy.yaml");
        std::fs::write(&policy, POLICY)?;
        Ok(Self { tmp, pki, web, api, batch, policy })
    }

    pub fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// `api`'s inbound sidecar (listener `api`) forwarding to `app`.
    pub fn api_inbound(&self, app: std::net::SocketAddr) -> anyhow::Result<SidecarProcess> {
        let config = SidecarConfig::new(&self.api.dir, &self.policy).inbound("api", app);
        SidecarProcess::start("api-inbound", self.dir(), &config)
    }

    /// An outbound sidecar for `caller` with one route (listener `api`) to `connect`, requiring `server_id`.
    pub fn outbound(
        &self,
        name: &str,
        caller: &Identity,
        connect: std::net::SocketAddr,
        server_id: &str,
    ) -> anyhow::Result<SidecarProcess> {
        let config = SidecarConfig::new(&caller.dir, &self.policy).outbound("api", connect, server_id);
        SidecarProcess::start(name, self.dir(), &config)
    }
}
