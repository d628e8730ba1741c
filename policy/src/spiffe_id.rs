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

/// The only scheme accepted, byte for byte (SPIFFE allows any case in theory; every implementation emits this).
pub const SCHEME: &str = "spiffe://";

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
    #[error("a trust domain is a bare name such as example.org, without spiffe://")]
    SchemeInTrustDomain,
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
        let path_start = validate(s)?;
        Ok(SpiffeId { text: Arc::from(s), path_start })
    }

    /// The whole ID, e.g. `spiffe://example.org/ns/web/sa/frontend`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain text, e.g. `example.org`.
    pub fn trust_domain_str(&self) -> &str {
        &self.text[SCHEME.len()..self.path_start]
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

    /// The path segments in order (`ns`, `web`, ...); empty when there is no path.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        // "" splits into [""] and "/a/b" into ["", "a", "b"]: the first piece is never a segment.
        self.path().split('/').skip(1)
    }
}

/// Checks `s` against SPEC §4 and returns the byte offset where its path starts (`s.len()` when none).
fn validate(s: &str) -> Result<usize, SpiffeIdError> {
    if s.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(SpiffeIdError::TooLong { len: s.len() });
    }
    let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::MissingScheme)?;
    let td_len = rest.find('/').unwrap_or(rest.len());
    let (td, path) = rest.split_at(td_len);
    validate_trust_domain(td)?;
    validate_path(path)?;
    Ok(SCHEME.len() + td_len)
}

/// Checks a bare trust domain. Characters that would make it a URI authority with more than a host
/// (userinfo, port) or end it early (query, fragment) get their own error: those are the mistakes people
/// actually make.
fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    for (i, b) in td.bytes().enumerate() {
        let err = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => continue,
            b'A'..=b'Z' => SpiffeIdError::UppercaseTrustDomain { found: char::from(b) },
            b'@' => SpiffeIdError::Userinfo,
            b':' => SpiffeIdError::Port,
            _ => uri_delimiter(b).unwrap_or_else(|| SpiffeIdError::BadTrustDomainChar { found: char_at(td, i) }),
        };
        return Err(err);
    }
    Ok(())
}

/// Checks a path: empty, or `/segment` repeated, each segment non-empty, not `.`/`..`, of allowed bytes.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `validate` splits at the first `/`, so a non-empty path starts with one; the first piece is empty.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            let last = segments.peek().is_none();
            return Err(if last { SpiffeIdError::TrailingSlash } else { SpiffeIdError::EmptySegment });
        }
        validate_segment(segment)?;
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), SpiffeIdError> {
    for (i, b) in segment.bytes().enumerate() {
        let err = match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => continue,
            _ => uri_delimiter(b).unwrap_or_else(|| SpiffeIdError::BadPathChar { found: char_at(segment, i) }),
        };
        return Err(err);
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdError::DotSegment);
    }
    Ok(())
}

/// Bytes that start a query, a fragment or a percent-escape anywhere in a URI.
fn uri_delimiter(b: u8) -> Option<SpiffeIdError> {
    match b {
        b'?' => Some(SpiffeIdError::Query),
        b'#' => Some(SpiffeIdError::Fragment),
        b'%' => Some(SpiffeIdError::PercentEncoding),
        _ => None,
    }
}

/// The character starting at byte `i` (a char boundary: every byte before it was ASCII), for messages.
fn char_at(s: &str, i: usize) -> char {
    s.get(i..).and_then(|rest| rest.chars().next()).unwrap_or(char::REPLACEMENT_CHARACTER)
}

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org` (no scheme).
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.contains("://") {
            return Err(SpiffeIdError::SchemeInTrustDomain);
        }
        validate_trust_domain(s)?;
        Ok(TrustDomain(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<td>` (used as the CA's URI SAN).
    pub fn id(&self) -> SpiffeId {
        // A validated trust domain is at most 255 bytes, so `spiffe://<td>` is always a valid, path-less ID.
        let text: Arc<str> = Arc::from(format!("{SCHEME}{}", self.0));
        let path_start = text.len();
        SpiffeId { text, path_start }
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

#[cfg(test)]
mod tests {
    use super::*;
    use SpiffeIdError as E;

    #[test]
    fn valid_ids() {
        // (id, trust domain, path)
        let cases = [
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://example.org/ns/default/sa/web", "example.org", "/ns/default/sa/web"),
            ("spiffe://td/...", "td", "/..."),
            ("spiffe://td/.a/a./-_/A.Z", "td", "/.a/a./-_/A.Z"),
            ("spiffe://1.2.3.4/x", "1.2.3.4", "/x"),
            ("spiffe://a-b_c.d/X", "a-b_c.d", "/X"),
        ];
        for (text, td, path) in cases {
            let id = SpiffeId::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(id.as_str(), text);
            assert_eq!(id.trust_domain_str(), td, "{text}");
            assert_eq!(id.trust_domain().as_str(), td, "{text}");
            assert_eq!(id.path(), path, "{text}");
            assert_eq!(id.has_path(), !path.is_empty(), "{text}");
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn invalid_ids() {
        let cases = [
            ("", E::Empty),
            ("example.org/a", E::MissingScheme),
            ("SPIFFE://example.org/a", E::MissingScheme),
            ("Spiffe://example.org/a", E::MissingScheme),
            ("spiffe:/example.org/a", E::MissingScheme),
            ("https://example.org/a", E::MissingScheme),
            ("spiffe://", E::EmptyTrustDomain),
            ("spiffe:///a", E::EmptyTrustDomain),
            ("spiffe://Example.org/a", E::UppercaseTrustDomain { found: 'E' }),
            ("spiffe://EXAMPLE.ORG", E::UppercaseTrustDomain { found: 'E' }),
            ("spiffe://exa mple/a", E::BadTrustDomainChar { found: ' ' }),
            ("spiffe://exämple/a", E::BadTrustDomainChar { found: 'ä' }),
            ("spiffe://[::1]/a", E::BadTrustDomainChar { found: '[' }),
            ("spiffe://u@td/a", E::Userinfo),
            ("spiffe://td:8080/a", E::Port),
            ("spiffe://td?x", E::Query),
            ("spiffe://td/a?x", E::Query),
            ("spiffe://td/a#x", E::Fragment),
            ("spiffe://td#x", E::Fragment),
            ("spiffe://td/a%2Fb", E::PercentEncoding),
            ("spiffe://td%41/a", E::PercentEncoding),
            ("spiffe://td/", E::TrailingSlash),
            ("spiffe://td/a/", E::TrailingSlash),
            ("spiffe://td//a", E::EmptySegment),
            ("spiffe://td/a//b", E::EmptySegment),
            ("spiffe://td/a/./b", E::DotSegment),
            ("spiffe://td/a/../b", E::DotSegment),
            ("spiffe://td/.", E::DotSegment),
            ("spiffe://td/..", E::DotSegment),
            ("spiffe://td/a b", E::BadPathChar { found: ' ' }),
            ("spiffe://td/a:b", E::BadPathChar { found: ':' }),
            ("spiffe://td/a@b", E::BadPathChar { found: '@' }),
            ("spiffe://td/*", E::BadPathChar { found: '*' }),
            ("spiffe://td/ü", E::BadPathChar { found: 'ü' }),
        ];
        for (text, want) in cases {
            assert_eq!(SpiffeId::parse(text), Err(want.clone()), "{text:?}");
        }
    }

    #[test]
    fn length_limits() {
        let prefix = "spiffe://example.org/";
        let exact = format!("{prefix}{}", "a".repeat(MAX_ID_LEN - prefix.len()));
        assert_eq!(exact.len(), 2048);
        assert_eq!(SpiffeId::parse(&exact).map(|id| id.as_str().len()), Ok(2048));
        let over = format!("{exact}b");
        assert_eq!(SpiffeId::parse(&over), Err(E::TooLong { len: 2049 }));

        let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
        assert!(SpiffeId::parse(&format!("spiffe://{td}/x")).is_ok());
        assert!(TrustDomain::parse(&td).is_ok());
        let long_td = format!("{td}a");
        assert_eq!(SpiffeId::parse(&format!("spiffe://{long_td}/x")), Err(E::TrustDomainTooLong { len: 256 }));
        assert_eq!(TrustDomain::parse(&long_td), Err(E::TrustDomainTooLong { len: 256 }));
    }

    #[test]
    fn trust_domain_parse_and_id() {
        let td = TrustDomain::parse("example.org").unwrap();
        let id = td.id();
        assert_eq!(id.as_str(), "spiffe://example.org");
        assert!(!id.has_path());
        assert_eq!(id.trust_domain(), td);
        assert_eq!(id, SpiffeId::parse("spiffe://example.org").unwrap());
        assert_eq!(TrustDomain::parse(""), Err(E::EmptyTrustDomain));
        assert_eq!(TrustDomain::parse("Example.org"), Err(E::UppercaseTrustDomain { found: 'E' }));
        assert_eq!(TrustDomain::parse("td:1"), Err(E::Port));
        assert_eq!(TrustDomain::parse("spiffe://example.org"), Err(E::SchemeInTrustDomain));
        assert_eq!(TrustDomain::parse("td/a"), Err(E::BadTrustDomainChar { found: '/' }));
    }

    #[test]
    fn comparison_is_byte_exact_and_clone_is_shared() {
        let a = SpiffeId::parse("spiffe://td/a").unwrap();
        let b = SpiffeId::parse("spiffe://td/A").unwrap();
        assert_ne!(a, b);
        let c = a.clone();
        assert!(Arc::ptr_eq(&a.text, &c.text));
    }

    #[test]
    fn segments() {
        let id = SpiffeId::parse("spiffe://td/ns/web").unwrap();
        assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "web"]);
        assert_eq!(SpiffeId::parse("spiffe://td").unwrap().segments().count(), 0);
    }
}
