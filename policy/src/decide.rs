//! The compiled policy and its decision function: any matching `deny` -> deny; else any matching `allow` ->
//! allow; else deny. The decision names the rule that made it (`default` when none did).
//!
//! Compilation indexes patterns by the literal text they match on, so a decision costs a few hash lookups
//! (one per path segment of the peer ID) whatever the number of rules, and allocates nothing.

mod index;

use std::{collections::HashMap, fmt, path::Path};

use sha2::{Digest, Sha256};

use self::index::{Firsts, Index, NO_RULE, RuleIndex};
use crate::{
    file::{LoadError, Mode, OnRevoke, PolicyFile},
    spiffe_id::SpiffeId,
};

/// The name recorded when no rule matched.
pub const DEFAULT_RULE: &str = "default";

/// An immutable, compiled policy. Build it off the data path; share it with `Arc`.
pub struct Policy {
    mode: Mode,
    on_revoke: OnRevoke,
    /// Rule names in file order; an index into this is a rule's identity, and a lower one wins.
    names: Vec<Box<str>>,
    /// Rules without `listeners`.
    every_listener: Index,
    /// Rules with `listeners`, indexed once per listener they name.
    by_listener: HashMap<Box<str>, Index>,
    sha256: String,
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
        let file = crate::file::parse(text, path)?;
        Ok(Self::compile(&file, hex_sha256(text)))
    }

    /// Reads, parses and compiles a policy file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = crate::file::read(path)?;
        Self::from_yaml(&text, Some(path))
    }

    /// A policy with no rules: denies everyone.
    pub fn deny_all() -> Self {
        let empty = PolicyFile { mode: Mode::Enforce, on_revoke: OnRevoke::Close, rules: Vec::new() };
        Self::compile(&empty, hex_sha256(""))
    }

    /// Compiles a validated file; `sha256` identifies the text it came from.
    fn compile(file: &PolicyFile, sha256: String) -> Self {
        let mut every_listener = Index::default();
        let mut by_listener: HashMap<Box<str>, Index> = HashMap::new();
        // The file size cap keeps the rule count far below `NO_RULE`; saturating keeps that an invariant.
        for (index, rule) in file.rules.iter().enumerate() {
            let index = RuleIndex::try_from(index).unwrap_or(NO_RULE - 1);
            match &rule.listeners {
                None => every_listener.add_rule(rule, index),
                Some(listeners) => {
                    for listener in listeners {
                        by_listener.entry(Box::from(listener.as_str())).or_default().add_rule(rule, index);
                    }
                }
            }
        }
        Policy {
            mode: file.mode,
            on_revoke: file.on_revoke,
            names: file.rules.iter().map(|rule| Box::from(rule.name.as_str())).collect(),
            every_listener,
            by_listener,
            sha256,
        }
    }

    /// Decides whether `peer` may call the inbound listener named `listener`.
    ///
    /// Costs one hash lookup per path segment of `peer` (twice when rules name this listener) whatever the
    /// number of rules, and allocates nothing.
    pub fn decide(&self, listener: &str, peer: &SpiffeId) -> Decision<'_> {
        let mut found = Firsts::NONE;
        self.every_listener.lookup(peer, &mut found);
        if let Some(index) = self.by_listener.get(listener) {
            index.lookup(peer, &mut found);
        }
        let (verdict, rule) = if found.deny != NO_RULE {
            (Verdict::Deny, self.rule_name(found.deny))
        } else if found.allow != NO_RULE {
            (Verdict::Allow, self.rule_name(found.allow))
        } else {
            (Verdict::Deny, DEFAULT_RULE)
        };
        let verdict = match (verdict, self.mode) {
            (Verdict::Deny, Mode::Audit) => Verdict::AuditDeny,
            (verdict, _) => verdict,
        };
        Decision { verdict, rule }
    }

    fn rule_name(&self, index: RuleIndex) -> &str {
        usize::try_from(index).ok().and_then(|i| self.names.get(i)).map_or(DEFAULT_RULE, |name| name)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn on_revoke(&self) -> OnRevoke {
        self.on_revoke
    }

    /// Rule names in file order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// The number of rules.
    pub fn rule_count(&self) -> usize {
        self.names.len()
    }

    /// The listener names that some rule's `listeners` mentions, in no particular order. A name that matches
    /// no configured inbound listener is probably a typo worth a warning.
    pub fn scoped_listeners(&self) -> impl Iterator<Item = &str> {
        self.by_listener.keys().map(|name| &**name)
    }

    /// Lowercase hex sha256 of the source text (empty text for [`Policy::deny_all`]).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl fmt::Debug for Policy {
    /// A summary: the index of a large policy is not worth printing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("mode", &self.mode)
            .field("on_revoke", &self.on_revoke)
            .field("rules", &self.names.len())
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

fn hex_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
