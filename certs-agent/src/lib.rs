//! certs-agent: the trust domain's root CA, X.509-SVID issuance and atomic publication (SPEC §1, §3, §4).
//!
//! - [`ca`]: the CA directory (`ca.pem`, `ca_key.pem`, `bundle.pem`): create a root, load and check one.
//! - [`issuer`]: sign an [`IssuedSvid`] for a SPIFFE ID under a [`Ca`].
//! - [`publish`]: write an identity directory atomically (kubelet `AtomicWriter` layout).
//! - [`inspect`]: describe a certificate and judge it as an X.509-SVID.
//! - [`cert_facts`]: what a certificate says, parsed once.
//! - [`files`], [`pem`], [`serial`], [`ttl`], [`validity`]: small helpers with one job each.
//!
//! The renewal daemon (`certs-agent run`) and CA rotation build on [`Ca::load`], [`Issuer::issue`] and
//! [`publish::publish`], which are safe to call repeatedly and to interrupt at any point.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod ca;
pub mod cert_facts;
pub mod files;
pub mod inspect;
pub mod issuer;
pub mod pem;
pub mod publish;
pub mod serial;
pub mod ttl;
pub mod validity;

pub use ca::{Ca, CaError};
pub use issuer::{IssueError, IssuedSvid, Issuer};
pub use publish::{Payload, PublishError, Published};
