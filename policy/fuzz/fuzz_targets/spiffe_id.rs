//! `SpiffeId::parse`, `TrustDomain::parse` and `Pattern::parse` on arbitrary text: never panic; every accepted
//! ID satisfies the SPEC §4 syntax (checked by an independent oracle below) and round-trips through Display;
//! every accepted pattern matches what its kind says about its own anchor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{Pattern, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = SpiffeId::parse(text);
    assert_eq!(parsed.is_ok(), oracle_accepts(text), "parser and oracle disagree on {text:?}: {parsed:?}");
    if let Ok(id) = parsed {
        check_id(text, &id);
    }
    if let Ok(td) = TrustDomain::parse(text) {
        assert_eq!(td.as_str(), text);
        let id = td.id();
        assert_eq!(id.trust_domain_str(), text);
        assert!(!id.has_path());
        assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
    }
    if let Ok(pattern) = Pattern::parse(text) {
        check_pattern(text, &pattern);
    }
});

fn check_id(text: &str, id: &SpiffeId) {
    assert_eq!(id.as_str(), text);
    let again = SpiffeId::parse(&format!("{id}")).expect("the Display form of an ID parses");
    assert_eq!(&again, id);
    assert_eq!(format!("spiffe://{}{}", id.trust_domain_str(), id.path()), text);
    assert_eq!(id.trust_domain().as_str(), id.trust_domain_str());
    let rebuilt: String = id.segments().map(|s| format!("/{s}")).collect();
    assert_eq!(rebuilt, id.path());
    assert_eq!(id.has_path(), id.segments().next().is_some());
    if id.has_path() {
        let exact = Pattern::parse(text).expect("an ID with a path is an exact pattern");
        assert!(exact.matches(id));
    }
    // A wildcard pattern never matches its own prefix.
    for suffix in ["/*", "/**"] {
        if let Ok(p) = Pattern::parse(&format!("{text}{suffix}")) {
            assert!(!p.matches(id), "{text}{suffix} matched {text}");
        }
    }
}

fn check_pattern(text: &str, pattern: &Pattern) {
    let anchor = pattern.anchor().clone();
    let child = SpiffeId::parse(&format!("{anchor}/x")).ok();
    let grandchild = SpiffeId::parse(&format!("{anchor}/x/y")).ok();
    match pattern {
        Pattern::Exact(id) => {
            assert_eq!(id.as_str(), text);
            assert!(pattern.matches(id));
            if let Some(c) = &child {
                assert!(!pattern.matches(c));
            }
        }
        Pattern::OneSegment(_) => {
            assert!(!pattern.matches(&anchor));
            if let Some(c) = &child {
                assert!(pattern.matches(c));
            }
            if let Some(g) = &grandchild {
                assert!(!pattern.matches(g));
            }
        }
        Pattern::Subtree(_) => {
            assert!(!pattern.matches(&anchor));
            for below in [&child, &grandchild].into_iter().flatten() {
                assert!(pattern.matches(below));
            }
        }
    }
    // Another trust domain never matches, even one that extends this one's name.
    if let Ok(other) = SpiffeId::parse(&format!("spiffe://{}x{}", anchor.trust_domain_str(), anchor.path())) {
        assert!(!pattern.matches(&other));
    }
}

/// SPEC §4, written independently of the parser.
fn oracle_accepts(s: &str) -> bool {
    if s.len() > 2048 {
        return false;
    }
    let Some(rest) = s.strip_prefix("spiffe://") else { return false };
    let (td, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !td_ok {
        return false;
    }
    if path.is_empty() {
        return true;
    }
    path[1..].split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}
