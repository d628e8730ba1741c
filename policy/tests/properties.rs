//! Property tests for the SPIFFE ID parser, allowlist patterns and the compiled policy, against independent
//! models written here: a pattern never matches an ID of another trust domain; `**` under a prefix matches
//! exactly the IDs strictly below it and `*` exactly those one segment below; an ID's display form parses
//! back to the same ID; the indexed decision equals a linear scan of the rules.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use policy::{Pattern, Policy, SpiffeId, Verdict, decide::DEFAULT_RULE};
use proptest::{collection::vec, prelude::*, sample::select};

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,12}"
}

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,6}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn segments(max: usize) -> impl Strategy<Value = Vec<String>> {
    vec(segment(), 0..=max)
}

fn id_text(td: &str, segs: &[String]) -> String {
    let mut s = format!("spiffe://{td}");
    for seg in segs {
        s.push('/');
        s.push_str(seg);
    }
    s
}

fn id(td: &str, segs: &[String]) -> SpiffeId {
    SpiffeId::parse(&id_text(td, segs)).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Exact,
    One,
    Subtree,
}

fn pattern(td: &str, segs: &[String], kind: Kind) -> Pattern {
    let base = id_text(td, segs);
    let text = match kind {
        Kind::Exact => base,
        Kind::One => format!("{base}/*"),
        Kind::Subtree => format!("{base}/**"),
    };
    Pattern::parse(&text).unwrap()
}

/// The model: what each kind matches, by segments.
fn model_matches(kind: Kind, (ptd, psegs): (&str, &[String]), (td, segs): (&str, &[String])) -> bool {
    if ptd != td || segs.len() < psegs.len() || segs[..psegs.len()] != *psegs {
        return false;
    }
    let extra = segs.len() - psegs.len();
    match kind {
        Kind::Exact => extra == 0,
        Kind::One => extra == 1,
        Kind::Subtree => extra >= 1,
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Exact), Just(Kind::One), Just(Kind::Subtree)]
}

/// A candidate ID related to the prefix (td, segs) in the ways that break naive matchers: below it, equal,
/// a sibling sharing a string prefix (`default` vs `defaultfoo`), a shorter path, or unrelated.
fn near(td: String, segs: Vec<String>) -> impl Strategy<Value = (String, Vec<String>)> {
    let below = {
        let (td, segs) = (td.clone(), segs.clone());
        segments(3).prop_map(move |more| (td.clone(), [segs.clone(), more].concat()))
    };
    let equal = Just((td.clone(), segs.clone()));
    let sibling = {
        let (td, segs) = (td.clone(), segs.clone());
        (segment(), segments(2)).prop_map(move |(suffix, more)| {
            let mut s = segs.clone();
            match s.last_mut() {
                Some(last) => last.push_str(&suffix),
                None => s.push(suffix),
            }
            (td.clone(), [s, more].concat())
        })
    };
    let shorter = {
        let (td, segs) = (td.clone(), segs.clone());
        (0..=segs.len()).prop_map(move |n| (td.clone(), segs[..n].to_vec()))
    };
    let other = (trust_domain(), segments(4));
    prop_oneof![3 => below, 1 => equal, 2 => sibling, 1 => shorter, 1 => other]
}

/// A trust domain that differs from `td`, including the confusable ones: longer, shorter, suffixed.
fn other_trust_domain(td: String) -> impl Strategy<Value = String> {
    let longer = {
        let td = td.clone();
        "[a-z0-9._-]{1,6}".prop_map(move |s| format!("{td}{s}"))
    };
    let dotted = {
        let td = td.clone();
        "[a-z0-9-]{1,6}".prop_map(move |s| format!("{s}.{td}"))
    };
    let shorter = {
        let td = td.clone();
        (1..td.len().max(2)).prop_map(move |n| td[..n.min(td.len())].to_string())
    };
    prop_oneof![longer, dotted, shorter, trust_domain()].prop_filter("different", move |o| *o != td)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_pattern_never_matches_an_id_of_another_trust_domain(
        (td, psegs, other, more) in (trust_domain(), segments(3)).prop_flat_map(|(td, psegs)| {
            (Just(td.clone()), Just(psegs), other_trust_domain(td), segments(3))
        }),
        kind in kind(),
    ) {
        prop_assume!(kind != Kind::Exact || !psegs.is_empty());
        let p = pattern(&td, &psegs, kind);
        // Same path (and deeper paths) under the other trust domain: only the domain differs.
        for segs in [psegs.clone(), [psegs.clone(), more.clone()].concat()] {
            let candidate = id(&other, &segs);
            prop_assert!(!p.matches(&candidate), "{p:?} matched {candidate}");
        }
    }

    #[test]
    fn each_kind_matches_exactly_what_the_model_says(
        ((td, psegs), (ctd, csegs)) in (trust_domain(), segments(3))
            .prop_flat_map(|(td, segs)| (Just((td.clone(), segs.clone())), near(td, segs))),
        kind in kind(),
    ) {
        prop_assume!(kind != Kind::Exact || !psegs.is_empty());
        let p = pattern(&td, &psegs, kind);
        let candidate = id(&ctd, &csegs);
        let want = model_matches(kind, (&td, &psegs), (&ctd, &csegs));
        prop_assert_eq!(p.matches(&candidate), want, "{:?} vs {}", p, candidate);
    }

    #[test]
    fn double_star_under_a_prefix_matches_exactly_the_ids_below_it(
        ((td, psegs), (ctd, csegs)) in (trust_domain(), segments(3))
            .prop_flat_map(|(td, segs)| (Just((td.clone(), segs.clone())), near(td, segs))),
    ) {
        let p = pattern(&td, &psegs, Kind::Subtree);
        let candidate = id(&ctd, &csegs);
        let below = ctd == td && csegs.len() > psegs.len() && csegs[..psegs.len()] == psegs[..];
        prop_assert_eq!(p.matches(&candidate), below, "{:?} vs {}", p, candidate);
    }

    #[test]
    fn a_valid_id_round_trips_through_its_display_form((td, segs) in (trust_domain(), segments(6))) {
        let text = id_text(&td, &segs);
        let parsed = SpiffeId::parse(&text).unwrap();
        prop_assert_eq!(parsed.as_str(), text.as_str());
        prop_assert_eq!(parsed.trust_domain_str(), td.as_str());
        prop_assert_eq!(parsed.segments().collect::<Vec<_>>(), segs.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(SpiffeId::parse(&format!("{parsed}")).unwrap(), parsed);
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_parses_round_trips(text in "(spiffe://)?[a-zA-Z0-9./_%?#:@*-]{0,40}") {
        if let Ok(id) = SpiffeId::parse(&text) {
            prop_assert_eq!(id.as_str(), text.as_str());
            prop_assert_eq!(SpiffeId::parse(&format!("{id}")).unwrap(), id.clone());
            let rebuilt = id_text(id.trust_domain_str(), &id.segments().map(str::to_string).collect::<Vec<_>>());
            prop_assert_eq!(rebuilt, text.clone());
        }
        let _ = Pattern::parse(&text);
    }
}

// === the compiled policy against a linear scan ===

const TDS: [&str; 2] = ["a.org", "b.org"];
const SEGS: [&str; 3] = ["x", "y", "xy"];
const LISTENERS: [&str; 3] = ["api", "web", "other"];

fn small_segments(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    vec(select(SEGS.to_vec()).prop_map(str::to_string), min..=max)
}

fn small_pattern() -> impl Strategy<Value = String> {
    (select(TDS.to_vec()), small_segments(0, 2), kind()).prop_map(|(td, segs, kind)| {
        let base = id_text(td, &segs);
        match kind {
            Kind::Exact if segs.is_empty() => format!("{base}/x"),
            Kind::Exact => base,
            Kind::One => format!("{base}/*"),
            Kind::Subtree => format!("{base}/**"),
        }
    })
}

#[derive(Debug, Clone)]
struct RuleSpec {
    listeners: Option<Vec<&'static str>>,
    allow: Vec<String>,
    deny: Vec<String>,
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        proptest::option::of(proptest::sample::subsequence(LISTENERS[..2].to_vec(), 1..=2)),
        vec(small_pattern(), 0..3),
        vec(small_pattern(), 0..3),
    )
        .prop_filter("a rule has a pattern", |(_, a, d)| !a.is_empty() || !d.is_empty())
        .prop_map(|(listeners, allow, deny)| RuleSpec { listeners, allow, deny })
}

fn yaml(audit: bool, rules: &[RuleSpec]) -> String {
    let mut y = format!("mode: {}\nrules:\n", if audit { "audit" } else { "enforce" });
    if rules.is_empty() {
        return y.replace("rules:\n", "rules: []\n");
    }
    let list = |items: &[String]| items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    for (i, r) in rules.iter().enumerate() {
        y.push_str(&format!("  - name: r{i}\n"));
        if let Some(ls) = &r.listeners {
            y.push_str(&format!("    listeners: [{}]\n", ls.join(", ")));
        }
        if !r.allow.is_empty() {
            y.push_str(&format!("    allow: [{}]\n", list(&r.allow)));
        }
        if !r.deny.is_empty() {
            y.push_str(&format!("    deny: [{}]\n", list(&r.deny)));
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_indexed_decision_equals_a_linear_scan_of_the_rules(
        audit in any::<bool>(),
        rules in vec(rule(), 0..6),
        peers in vec((select(TDS.to_vec()), small_segments(0, 4)), 1..12),
    ) {
        let text = yaml(audit, &rules);
        let policy = Policy::from_yaml(&text, None).unwrap();
        let patterns = |ps: &[String]| ps.iter().map(|p| Pattern::parse(p).unwrap()).collect::<Vec<_>>();
        for listener in LISTENERS {
            for (td, segs) in &peers {
                let peer = id(td, segs);
                let applies = |r: &RuleSpec| r.listeners.as_ref().is_none_or(|ls| ls.contains(&listener));
                let first = |pick: fn(&RuleSpec) -> &Vec<String>| {
                    rules.iter().enumerate().find(|(_, r)| applies(r) && patterns(pick(r)).iter().any(|p| p.matches(&peer)))
                        .map(|(i, _)| format!("r{i}"))
                };
                let (verdict, rule) = match (first(|r| &r.deny), first(|r| &r.allow)) {
                    (Some(r), _) => (Verdict::Deny, r),
                    (None, Some(r)) => (Verdict::Allow, r),
                    (None, None) => (Verdict::Deny, DEFAULT_RULE.to_string()),
                };
                let verdict = if audit && verdict == Verdict::Deny { Verdict::AuditDeny } else { verdict };
                let got = policy.decide(listener, &peer);
                prop_assert_eq!((got.verdict, got.rule), (verdict, rule.as_str()), "{} {}\n{}", listener, peer, text);
            }
        }
    }
}
