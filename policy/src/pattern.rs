//! Allowlist patterns (SPEC §5): a full SPIFFE ID, or one whose last segment is `*` (exactly one more
//! segment) or `**` (one or more more segments). Wildcards stand only as a whole last segment and the trust
//! domain is always literal, so a pattern never matches an ID of another trust domain.

use std::fmt;

use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Matches exactly this ID.
    Exact(SpiffeId),
    /// `<prefix>/*`: the prefix followed by exactly one more segment.
    OneSegment(SpiffeId),
    /// `<prefix>/**`: the prefix followed by one or more segments.
    Subtree(SpiffeId),
}

/// Why a string is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0}")]
    Id(#[from] SpiffeIdError),
    #[error("wildcards must be a whole last segment (`*` or `**`), found {segment:?}")]
    PartialWildcard { segment: String },
    #[error("`**` may only be the last segment")]
    WildcardNotLast,
    #[error("a pattern must name a path: a bare trust domain never matches a workload")]
    NoPath,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let _ = s;
        todo!("policy helper")
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        let _ = id;
        todo!("policy helper")
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(id) => write!(f, "{id}"),
            Pattern::OneSegment(p) => write!(f, "{p}/*"),
            Pattern::Subtree(p) => write!(f, "{p}/**"),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({self})")
    }
}
