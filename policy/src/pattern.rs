//! Allowlist patterns (SPEC §5): a full SPIFFE ID, or one whose last segment is `*` (exactly one more
//! segment) or `**` (one or more more segments). Wildcards stand only as a whole last segment and the trust
//! domain is always literal, so a pattern never matches an ID of another trust domain.

use std::fmt;

use crate::spiffe_id::{MAX_ID_LEN, SCHEME, SpiffeId, SpiffeIdError};

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
    #[error("`*` and `**` may only stand as the last segment")]
    WildcardNotLast,
    #[error("a pattern must name a path: a bare trust domain never matches a workload")]
    NoPath,
}

impl Pattern {
    /// Parses `s`: a SPIFFE ID with a path, or a SPIFFE ID (possibly a bare trust domain) followed by `/*` or
    /// `/**`. Any other use of `*` is an error rather than a literal, so a typo can never widen or narrow a
    /// rule silently.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty.into());
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: s.len() }.into());
        }
        let Some(rest) = s.strip_prefix(SCHEME) else {
            return Err(SpiffeIdError::MissingScheme.into());
        };
        // Wildcards live only in the path; a `*` in the trust domain is left to the ID parser to reject.
        let segments = rest.split('/').skip(1);
        let count = segments.clone().count();
        for (i, segment) in segments.enumerate() {
            if !segment.contains('*') {
                continue;
            }
            let kind = match segment {
                "*" => Pattern::OneSegment,
                "**" => Pattern::Subtree,
                _ => {
                    return Err(PatternError::PartialWildcard { segment: segment.to_owned() });
                }
            };
            if i + 1 != count {
                return Err(PatternError::WildcardNotLast);
            }
            let prefix = &s[..s.len() - segment.len() - 1];
            return Ok(kind(SpiffeId::parse(prefix)?));
        }
        let id = SpiffeId::parse(s)?;
        if !id.has_path() {
            return Err(PatternError::NoPath);
        }
        Ok(Pattern::Exact(id))
    }

    /// Whether `id` matches. Segment-aware: `spiffe://td/ns/a/**` does not match `spiffe://td/ns/ab/x`, and a
    /// prefix always ends at a `/`, so a trust domain can never match a longer one (`td` vs `td.evil`).
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Pattern::Exact(want) => want.as_str() == id.as_str(),
            Pattern::OneSegment(prefix) => {
                below(prefix, id).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            }
            Pattern::Subtree(prefix) => below(prefix, id).is_some_and(|rest| !rest.is_empty()),
        }
    }

    /// The literal ID this pattern is anchored on: the whole ID for an exact pattern, the prefix before the
    /// wildcard otherwise. The decision index is keyed by this text.
    pub fn anchor(&self) -> &SpiffeId {
        match self {
            Pattern::Exact(id) | Pattern::OneSegment(id) | Pattern::Subtree(id) => id,
        }
    }
}

/// The part of `id` after `prefix` and a `/`, when `id` lies strictly below `prefix`.
fn below<'a>(prefix: &SpiffeId, id: &'a SpiffeId) -> Option<&'a str> {
    id.as_str().strip_prefix(prefix.as_str())?.strip_prefix('/')
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid pattern {s:?}: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn matching_table() {
        // (pattern, id, matches)
        #[rustfmt::skip]
        let cases = [
            ("spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/default/sa/a", true),
            ("spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/default/sa/a/extra", false),
            ("spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/other/sa/x", false),
            ("spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/default/sa", false),
            ("spiffe://example.org/ns/default/sa/*", "spiffe://example.org/ns/default/sax/a", false),
            ("spiffe://example.org/ns/default/**", "spiffe://example.org/ns/default/sa/a", true),
            ("spiffe://example.org/ns/default/**", "spiffe://example.org/ns/default/x", true),
            ("spiffe://example.org/ns/default/**", "spiffe://example.org/ns/defaultfoo/sa/a", false),
            ("spiffe://example.org/ns/default/**", "spiffe://example.org/ns/default", false),
            ("spiffe://example.org/ns/default/**", "spiffe://example.org/ns", false),
            ("spiffe://example.org/*", "spiffe://example.org/a", true),
            ("spiffe://example.org/*", "spiffe://example.org/a/b", false),
            ("spiffe://example.org/*", "spiffe://example.org", false),
            ("spiffe://example.org/**", "spiffe://example.org/a/b/c", true),
            ("spiffe://example.org/**", "spiffe://example.org", false),
            ("spiffe://example.org/**", "spiffe://example.org.evil/a", false),
            ("spiffe://example.org/**", "spiffe://other.org/a", false),
            ("spiffe://example.org/a", "spiffe://example.org/a", true),
            ("spiffe://example.org/a", "spiffe://example.org/A", false),
            ("spiffe://example.org/a", "spiffe://example.org/a/b", false),
            ("spiffe://example.org/a", "spiffe://example.org.evil/a", false),
        ];
        for (pattern, peer, want) in cases {
            let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(p.matches(&id(peer)), want, "{pattern} vs {peer}");
            assert_eq!(p.to_string(), pattern);
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(Pattern::parse("spiffe://td/a"), Ok(Pattern::Exact(id("spiffe://td/a"))));
        assert_eq!(Pattern::parse("spiffe://td/a/*"), Ok(Pattern::OneSegment(id("spiffe://td/a"))));
        assert_eq!(Pattern::parse("spiffe://td/a/**"), Ok(Pattern::Subtree(id("spiffe://td/a"))));
        assert_eq!(Pattern::parse("spiffe://td/*"), Ok(Pattern::OneSegment(id("spiffe://td"))));
        assert_eq!(Pattern::parse("spiffe://td/**"), Ok(Pattern::Subtree(id("spiffe://td"))));
    }

    #[test]
    fn invalid_patterns() {
        use PatternError as P;
        use SpiffeIdError as E;
        let partial = |s: &str| P::PartialWildcard { segment: s.to_owned() };
        let cases = [
            ("spiffe://example.org/ns/fo*", partial("fo*")),
            ("spiffe://example.org/ns/*x", partial("*x")),
            ("spiffe://example.org/ns/a**", partial("a**")),
            ("spiffe://example.org/ns/***", partial("***")),
            ("spiffe://example.org/fo*/**", partial("fo*")),
            ("spiffe://td/**/x", P::WildcardNotLast),
            ("spiffe://td/*/x", P::WildcardNotLast),
            ("spiffe://td/a/**/**", P::WildcardNotLast),
            ("spiffe://td", P::NoPath),
            ("example.org/ns/*", P::Id(E::MissingScheme)),
            ("", P::Id(E::Empty)),
            ("spiffe://Example.org/a", P::Id(E::UppercaseTrustDomain { found: 'E' })),
            ("spiffe://Example.org/**", P::Id(E::UppercaseTrustDomain { found: 'E' })),
            ("spiffe://example.org/ns/", P::Id(E::TrailingSlash)),
            ("spiffe://td//*", P::Id(E::TrailingSlash)),
            ("spiffe://td/a/./*", P::Id(E::DotSegment)),
            ("spiffe://*/a", P::Id(E::BadTrustDomainChar { found: '*' })),
            ("spiffe://*.org/**", P::Id(E::BadTrustDomainChar { found: '*' })),
            ("spiffe://td:1/**", P::Id(E::Port)),
        ];
        for (text, want) in cases {
            assert_eq!(Pattern::parse(text), Err(want.clone()), "{text:?}");
        }
    }
}
