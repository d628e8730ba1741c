//! The decision index: patterns keyed by the literal ID text they are anchored on.

use std::collections::HashMap;

use crate::{file::Rule, pattern::Pattern, spiffe_id::SpiffeId};

/// Position of a rule in the file.
pub(super) type RuleIndex = u32;
pub(super) const NO_RULE: RuleIndex = RuleIndex::MAX;

/// The first deny and first allow rule found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Firsts {
    pub deny: RuleIndex,
    pub allow: RuleIndex,
}

impl Firsts {
    pub const NONE: Firsts = Firsts { deny: NO_RULE, allow: NO_RULE };

    fn merge(&mut self, other: Firsts) {
        self.deny = self.deny.min(other.deny);
        self.allow = self.allow.min(other.allow);
    }
}

impl Default for Firsts {
    fn default() -> Self {
        Firsts::NONE
    }
}

/// What the patterns anchored on one ID text say, by pattern kind.
#[derive(Debug, Clone, Copy, Default)]
struct Anchored {
    /// Exact patterns naming this ID.
    exact: Firsts,
    /// `<this>/*` patterns.
    one_segment: Firsts,
    /// `<this>/**` patterns.
    subtree: Firsts,
}

/// Patterns keyed by the literal text they are anchored on ([`Pattern::anchor`]). A peer ID can only match
/// patterns anchored on itself or on one of its ancestors, and those are found by slicing its text at each
/// `/` of its path: one hash lookup per segment, plus one for the whole ID.
#[derive(Debug, Default)]
pub(super) struct Index {
    anchors: HashMap<Box<str>, Anchored>,
}

#[derive(Clone, Copy)]
enum Action {
    Allow,
    Deny,
}

impl Index {
    fn insert(&mut self, pattern: &Pattern, action: Action, rule: RuleIndex) {
        let anchored = self.anchors.entry(Box::from(pattern.anchor().as_str())).or_default();
        let firsts = match pattern {
            Pattern::Exact(_) => &mut anchored.exact,
            Pattern::OneSegment(_) => &mut anchored.one_segment,
            Pattern::Subtree(_) => &mut anchored.subtree,
        };
        let slot = match action {
            Action::Allow => &mut firsts.allow,
            Action::Deny => &mut firsts.deny,
        };
        *slot = (*slot).min(rule);
    }

    /// Merges into `found` the first deny and allow rules of this index that match `peer`. Allocates nothing.
    pub fn lookup(&self, peer: &SpiffeId, found: &mut Firsts) {
        // Every pattern has a path, so a path-less ID matches nothing.
        if self.anchors.is_empty() || !peer.has_path() {
            return;
        }
        let text = peer.as_str();
        let path_start = text.len() - peer.path().len();
        let last_slash = text.rfind('/').unwrap_or(path_start);
        for (at, byte) in text.bytes().enumerate().skip(path_start) {
            if byte != b'/' {
                continue;
            }
            let Some(anchored) = text.get(..at).and_then(|ancestor| self.anchors.get(ancestor)) else {
                continue;
            };
            found.merge(anchored.subtree);
            if at == last_slash {
                found.merge(anchored.one_segment);
            }
        }
        if let Some(anchored) = self.anchors.get(text) {
            found.merge(anchored.exact);
        }
    }

    pub fn add_rule(&mut self, rule: &Rule, index: RuleIndex) {
        for pattern in &rule.deny {
            self.insert(pattern, Action::Deny, index);
        }
        for pattern in &rule.allow {
            self.insert(pattern, Action::Allow, index);
        }
    }
}
