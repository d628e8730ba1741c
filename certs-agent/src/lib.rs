//! certs-agent: the trust domain's root CAs, X.509-SVID issuance, renewal and atomic publication (SPEC §1, §3,
//! §4).
//!
//! - [`ca`]: the CA directory's layout and the rotation design (read this first), creating a root, and [`Ca`],
//!   the CA at one instant.
//! - [`store`]: the CA directory opened under its lock: adoption, views, the issuance record, rotate, retire.
//! - [`roots`]: the root set (`roots.json`) and its rules: which root signs, which may be retired.
//! - [`issuer`]: sign an [`IssuedSvid`] for a SPIFFE ID under a [`Ca`].
//! - [`publish`]: write an identity directory atomically (kubelet `AtomicWriter` layout).
//! - [`run`]: the renewal daemon (`certs-agent run`), with [`schedule`] (when to renew, how to back off),
//!   [`metrics`] (`--metrics`: `/metrics`, `/ready`, `/live`).
//! - [`spiffe_bundle`]: the trust bundle as a SPIFFE bundle (JWKS).
//! - [`inspect`]: describe a certificate and judge it as an X.509-SVID, naming the field and the rule.
//! - [`duration`], [`files`], [`lock`], [`pem`], [`serial`], [`validity`]: small helpers with one job each.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod ca;
pub mod duration;
pub mod files;
pub mod inspect;
pub mod issuer;
pub mod lock;
pub mod metrics;
pub mod pem;
pub mod publish;
pub mod roots;
pub mod run;
pub mod schedule;
pub mod serial;
pub mod spiffe_bundle;
pub mod store;
pub mod validity;

pub use ca::{Ca, CaError};
pub use issuer::{IssueError, IssuedSvid, Issuer, TtlBeyondCa};
pub use publish::{Payload, PublishError, Published};
pub use store::{CaStore, RetireError};
