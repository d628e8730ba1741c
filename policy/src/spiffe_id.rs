//! SPIFFE ID syntax (SPEC §4): `spiffe://<trust-domain>[/<segment>...]`.
//!
//! Strict by design: lowercase trust domain of `[a-z0-9._-]`, path segments of `[A-Za-z0-9._-]`, no empty,
//! `.` or `..` segments, no trailing `/`, no userinfo, port, query, fragment or percent-encoding, at most
//! 2048 bytes in all (trust domain at most 255). Comparison is byte-exact.

use std::{fmt, str::FromStr, sync::Arc};

/// The longest SPIFFE ID we accept, in bytes.
pub const MAX_ID_LEN: usize = 2048;
/// The longest trust domain we accept, in bytes (the RFC 3986 host limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validated SPIFFE ID. Cheap to clone (the text is shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    text: Arc<str>,
    /// Byte offset in `text` where the path starts (== text.len() when there is no path).
    path_start: usize,
}

/// A validated trust domain name (the authority of a SPIFFE ID), e.g. `example.org`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(Arc<str>);

/// Why a string is not a SPIFFE ID. Each variant names one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("empty SPIFFE ID")]
    Empty,
    #[error("SPIFFE ID is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("missing the `spiffe://` scheme")]
    MissingScheme,
    #[error("empty trust domain")]
    EmptyTrustDomain,
    #[error("trust domain is {len} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed")]
    TrustDomainTooLong { len: usize },
    #[error("trust domain must be lowercase (found {found:?})")]
    UppercaseTrustDomain { found: char },
    #[error("trust domain has a character outside [a-z0-9._-]: {found:?}")]
    BadTrustDomainChar { found: char },
    #[error("userinfo (`@`) is not allowed in a SPIFFE ID")]
    Userinfo,
    #[error("a port is not allowed in a SPIFFE ID")]
    Port,
    #[error("a query (`?`) is not allowed in a SPIFFE ID")]
    Query,
    #[error("a fragment (`#`) is not allowed in a SPIFFE ID")]
    Fragment,
    #[error("percent-encoding is not allowed in a SPIFFE ID")]
    PercentEncoding,
    #[error("empty path segment (`//`)")]
    EmptySegment,
    #[error("`.` and `..` path segments are not allowed")]
    DotSegment,
    #[error("trailing `/` is not allowed")]
    TrailingSlash,
    #[error("path has a character outside [A-Za-z0-9._-]: {found:?}")]
    BadPathChar { found: char },
}

impl SpiffeId {
    /// Parses and validates `s` (SPEC §4).
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let _ = s;
        todo!("policy helper")
    }

    /// The whole ID, e.g. `spiffe://example.org/ns/web/sa/frontend`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain text, e.g. `example.org`.
    pub fn trust_domain_str(&self) -> &str {
        &self.text["spiffe://".len()..self.path_start]
    }

    /// The trust domain as a value.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(Arc::from(self.trust_domain_str()))
    }

    /// The path including its leading `/`, or `""` when the ID names only a trust domain.
    pub fn path(&self) -> &str {
        &self.text[self.path_start..]
    }

    /// Whether the ID has a non-empty path (required of every leaf SVID).
    pub fn has_path(&self) -> bool {
        self.path_start < self.text.len()
    }
}

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org` (no scheme).
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let _ = s;
        todo!("policy helper")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<td>` (used as the CA's URI SAN).
    pub fn id(&self) -> SpiffeId {
        todo!("policy helper")
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.text)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid SPIFFE ID {s:?}: {e}")))
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
