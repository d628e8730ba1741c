//! SPIFFE identity and caller authorization, with no I/O beyond reading a file.
//!
//! - [`spiffe_id`]: the SPIFFE ID syntax of SPEC §4 ([`SpiffeId`], [`TrustDomain`]).
//! - [`svid`]: X.509-SVID validation: chain to the trust bundle plus the SPIFFE leaf rules.
//! - [`pattern`]: allowlist patterns (`*` and `**` as a whole last segment).
//! - [`mod@file`]: the policy file model (SPEC §5), parsed with line:column errors.
//! - [`decide`]: the compiled [`Policy`] and its decision function.
//! - [`yaml`]: strict YAML parsing with one-line, positioned errors (shared with the sidecar configuration).
#![forbid(unsafe_code)]

pub mod decide;
pub mod file;
pub mod pattern;
pub mod spiffe_id;
pub mod svid;
pub mod yaml;

pub use decide::{Decision, Policy, Verdict};
pub use file::{LoadError, Mode, OnRevoke};
pub use pattern::{Pattern, PatternError};
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{BundleError, LeafDetails, Role, SvidError, SvidErrorKind, SvidRule, TrustBundle};
