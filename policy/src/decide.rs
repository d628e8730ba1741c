//! The compiled policy and its decision function: any matching `deny` -> deny; else any matching `allow` ->
//! allow; else deny. The decision names the rule that made it (`default` when none did).
//!
//! Compilation indexes patterns by the literal text they match on, so a decision costs a few hash lookups
//! (one per path segment of the peer ID) whatever the number of rules, and allocates nothing.

use std::path::Path;

use crate::{
    file::{LoadError, Mode, OnRevoke},
    spiffe_id::SpiffeId,
};

/// The name recorded when no rule matched.
pub const DEFAULT_RULE: &str = "default";

/// An immutable, compiled policy. Build it off the data path; share it with `Arc`.
#[derive(Debug)]
pub struct Policy {
    _todo: (),
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Audit mode: the policy would deny, but the connection is allowed (logged and counted).
    AuditDeny,
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub verdict: Verdict,
    /// The deciding rule's name, or [`DEFAULT_RULE`].
    pub rule: &'p str,
}

impl Verdict {
    /// Whether the connection may proceed (allow, or deny in audit mode).
    pub fn permits(self) -> bool {
        !matches!(self, Verdict::Deny)
    }

    /// The metric label: `allow`, `deny` or `audit_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::AuditDeny => "audit_deny",
        }
    }
}

impl Policy {
    /// Parses and compiles policy text. `path` only labels errors.
    pub fn from_yaml(text: &str, path: Option<&Path>) -> Result<Self, LoadError> {
        let _ = (text, path);
        todo!("policy helper")
    }

    /// Reads, parses and compiles a policy file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = crate::file::read(path)?;
        Self::from_yaml(&text, Some(path))
    }

    /// A policy with no rules: denies everyone.
    pub fn deny_all() -> Self {
        todo!("policy helper")
    }

    /// Decides whether `peer` may call the inbound listener named `listener`.
    pub fn decide(&self, listener: &str, peer: &SpiffeId) -> Decision<'_> {
        let _ = (listener, peer);
        todo!("policy helper")
    }

    pub fn mode(&self) -> Mode {
        todo!("policy helper")
    }

    pub fn on_revoke(&self) -> OnRevoke {
        todo!("policy helper")
    }

    /// Rule names in file order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        std::iter::empty()
    }

    /// Lowercase hex sha256 of the source text (empty text for [`Policy::deny_all`]).
    pub fn sha256(&self) -> &str {
        todo!("policy helper")
    }
}
