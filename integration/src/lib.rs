//! A harness that runs the real `sidecar` and `certs-agent` binaries on loopback, with real certificates,
//! real files and real TLS clients, for the end-to-end tests in `tests/` and the mesh demo.
//!
//! A test reads like what an operator does: make a CA, issue identities, write a policy, start sidecars,
//! connect, then look at what the app saw, what `/metrics` says and what the log says.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test support: a failed step should fail the test loudly

pub mod agent;
pub mod apps;
pub mod bins;
pub mod child;
pub mod hostile;
pub mod http;
pub mod kubelet;
pub mod pki;
pub mod process;
pub mod procinfo;
pub mod prom;
pub mod svid_dir;
pub mod tls_client;
pub mod traffic;

pub use apps::App;
pub use pki::{Identity, Pki};
pub use process::{SidecarConfig, SidecarProcess};
pub mod mesh;
pub mod tap;
pub use mesh::Mesh;
