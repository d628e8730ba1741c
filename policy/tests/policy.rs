//! The policy file and decisions, through the public API.
#![allow(clippy::unwrap_used)] // Test fixtures: a failure to build one should panic loudly.

use std::{io::Write, path::Path, time::Instant};

use policy::{
    LoadError, Mode, OnRevoke, Policy, SpiffeId, Verdict,
    decide::DEFAULT_RULE,
    file::{self, MAX_POLICY_BYTES},
};

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn policy(text: &str) -> Policy {
    Policy::from_yaml(text, None).unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> LoadError {
    let err = Policy::from_yaml(text, Some(Path::new("policy.yaml"))).unwrap_err();
    assert!(!err.to_string().contains('\n'), "multi-line error: {err}");
    err
}

/// (verdict, rule) for `peer` on `listener`.
fn decide<'p>(p: &'p Policy, listener: &str, peer: &str) -> (Verdict, &'p str) {
    let d = p.decide(listener, &id(peer));
    (d.verdict, d.rule)
}

const EXAMPLE: &str = "\
mode: enforce        # enforce | audit
on_revoke: close
rules:
  - name: web-can-call-api
    listeners: [api]
    allow:
      - spiffe://example.org/ns/web/sa/frontend
      - spiffe://example.org/ns/batch/*
  - name: no-legacy
    deny:
      - spiffe://example.org/ns/legacy/**
";

#[test]
fn spec_example() {
    let p = policy(EXAMPLE);
    assert_eq!(p.mode(), Mode::Enforce);
    assert_eq!(p.on_revoke(), OnRevoke::Close);
    assert_eq!(p.rule_names().collect::<Vec<_>>(), ["web-can-call-api", "no-legacy"]);
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/web/sa/frontend"), (Verdict::Allow, "web-can-call-api"));
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/batch/job1"), (Verdict::Allow, "web-can-call-api"));
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/batch/job1/x"), (Verdict::Deny, DEFAULT_RULE));
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/legacy/sa/x"), (Verdict::Deny, "no-legacy"));
    assert_eq!(decide(&p, "admin", "spiffe://example.org/ns/web/sa/frontend"), (Verdict::Deny, DEFAULT_RULE));
    assert_eq!(decide(&p, "admin", "spiffe://example.org/ns/legacy/a"), (Verdict::Deny, "no-legacy"));
}

#[test]
fn deny_wins_over_an_earlier_allow() {
    let p = policy(
        "rules:
  - name: allow-all
    allow: [spiffe://example.org/**]
  - name: deny-legacy
    deny: [spiffe://example.org/ns/legacy/**]
",
    );
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/legacy/a"), (Verdict::Deny, "deny-legacy"));
    assert_eq!(decide(&p, "api", "spiffe://example.org/ns/web/a"), (Verdict::Allow, "allow-all"));
    assert_eq!(decide(&p, "api", "spiffe://other.org/ns/web/a"), (Verdict::Deny, DEFAULT_RULE));
}

#[test]
fn first_matching_rule_is_recorded() {
    let p = policy(
        "rules:
  - name: exact
    allow: [spiffe://td/ns/a/sa/x]
  - name: one
    allow: [spiffe://td/ns/a/sa/*]
  - name: subtree
    allow: [spiffe://td/**]
    deny: [spiffe://td/ns/b/**]
  - name: deny-again
    deny: [spiffe://td/ns/b/sa/y, spiffe://td/ns/c/*]
",
    );
    assert_eq!(decide(&p, "l", "spiffe://td/ns/a/sa/x"), (Verdict::Allow, "exact"));
    assert_eq!(decide(&p, "l", "spiffe://td/ns/a/sa/z"), (Verdict::Allow, "one"));
    assert_eq!(decide(&p, "l", "spiffe://td/ns/a/other"), (Verdict::Allow, "subtree"));
    assert_eq!(decide(&p, "l", "spiffe://td/ns/b/sa/y"), (Verdict::Deny, "subtree"));
    assert_eq!(decide(&p, "l", "spiffe://td/ns/c/q"), (Verdict::Deny, "deny-again"));
    assert_eq!(decide(&p, "l", "spiffe://td"), (Verdict::Deny, DEFAULT_RULE));
}

#[test]
fn same_rule_allowing_and_denying_denies() {
    let p = policy("rules:\n  - name: r\n    allow: [spiffe://td/a]\n    deny: [spiffe://td/a]\n");
    assert_eq!(decide(&p, "l", "spiffe://td/a"), (Verdict::Deny, "r"));
}

#[test]
fn listeners_scope_rules() {
    let p = policy(
        "rules:
  - name: api-only
    listeners: [api, grpc]
    allow: [spiffe://td/web]
  - name: admin-deny
    listeners: [admin]
    deny: [spiffe://td/**]
  - name: everywhere
    allow: [spiffe://td/**]
",
    );
    assert_eq!(decide(&p, "api", "spiffe://td/web"), (Verdict::Allow, "api-only"));
    assert_eq!(decide(&p, "grpc", "spiffe://td/web"), (Verdict::Allow, "api-only"));
    assert_eq!(decide(&p, "other", "spiffe://td/web"), (Verdict::Allow, "everywhere"));
    assert_eq!(decide(&p, "admin", "spiffe://td/web"), (Verdict::Deny, "admin-deny"));
    let mut scoped: Vec<_> = p.scoped_listeners().collect();
    scoped.sort_unstable();
    assert_eq!(scoped, ["admin", "api", "grpc"]);
}

#[test]
fn audit_mode_turns_deny_into_audit_deny() {
    let p = policy(
        "mode: audit
on_revoke: keep
rules:
  - name: a
    allow: [spiffe://td/ok]
  - name: d
    deny: [spiffe://td/bad]
",
    );
    assert_eq!(p.mode(), Mode::Audit);
    assert_eq!(p.on_revoke(), OnRevoke::Keep);
    assert_eq!(decide(&p, "l", "spiffe://td/ok"), (Verdict::Allow, "a"));
    assert_eq!(decide(&p, "l", "spiffe://td/bad"), (Verdict::AuditDeny, "d"));
    assert_eq!(decide(&p, "l", "spiffe://td/other"), (Verdict::AuditDeny, DEFAULT_RULE));
    assert!(Verdict::AuditDeny.permits());
    assert!(!Verdict::Deny.permits());
    assert_eq!(Verdict::AuditDeny.as_str(), "audit_deny");
}

#[test]
fn no_rules_denies_everyone() {
    for text in ["rules: []\n", "mode: enforce\n", "on_revoke: keep\n"] {
        let p = policy(text);
        assert_eq!(p.rule_names().count(), 0);
        assert_eq!(decide(&p, "l", "spiffe://td/a"), (Verdict::Deny, DEFAULT_RULE), "{text}");
    }
    let p = Policy::deny_all();
    assert_eq!(decide(&p, "l", "spiffe://td/a"), (Verdict::Deny, DEFAULT_RULE));
    assert_eq!(p.sha256(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(p.mode(), Mode::Enforce);
}

#[test]
fn sha256_is_of_the_source_text() {
    let p = policy("rules: []\n");
    // printf 'rules: []\n' | sha256sum
    assert_eq!(p.sha256(), "e0dfa70eb69d47fe9cb2be8a4fcd53e74cf7fe26fcbb1f06912b57a9c028e4e0");
    assert_ne!(policy("rules: [] \n").sha256(), p.sha256());
}

fn assert_error(text: &str, position: (u64, u64), reason_contains: &str) {
    let err = error(text);
    assert_eq!(err.position(), Some(position), "{err}");
    assert!(err.reason().contains(reason_contains), "{err}");
    let (line, col) = position;
    assert!(err.to_string().starts_with(&format!("policy.yaml:{line}:{col}: ")), "{err}");
}

#[test]
fn unknown_key_has_line_and_column() {
    assert_error("rules:\n  - name: a\n    allow: [spiffe://td/a]\n    alow: []\n", (4, 5), "unknown field `alow`");
    assert_error("mode: enforce\nrule: []\n", (2, 1), "unknown field `rule`");
}

#[test]
fn bad_pattern_points_at_the_pattern() {
    assert_error(
        "rules:\n  - name: a\n    allow:\n      - spiffe://td/ok\n      - spiffe://example.org/ns/fo*\n",
        (5, 9),
        "spiffe://example.org/ns/fo*",
    );
    assert_error("rules:\n  - name: a\n    deny: [spiffe://td/ok, spiffe://td/**/x]\n", (3, 28), "last segment");
    assert_error("rules:\n  - name: a\n    deny: [example.org/a]\n", (3, 12), "scheme");
    assert_error("rules:\n  - name: a\n    deny: [spiffe://Example.org/a]\n", (3, 12), "lowercase");
    assert_error("rules:\n  - name: a\n    deny: [spiffe://td/a/]\n", (3, 12), "trailing");
    assert_error("rules:\n  - name: a\n    deny: [spiffe://td]\n", (3, 12), "must name a path");
}

#[test]
fn duplicate_rule_names_are_refused() {
    assert_error(
        "rules:\n  - name: a\n    allow: [spiffe://td/a]\n  - name: b\n    allow: [spiffe://td/b]\n  - name: a\n    deny: [spiffe://td/c]\n",
        (6, 11),
        "duplicate rule name \"a\" (first used at line 2, column 11)",
    );
}

#[test]
fn rule_shape_errors() {
    assert_error("rules:\n  - name: default\n    allow: [spiffe://td/a]\n", (2, 11), "reserved");
    assert_error("rules:\n  - name: \"\"\n    allow: [spiffe://td/a]\n", (2, 11), "must not be empty");
    assert_error("rules:\n  - name: a\n", (2, 11), "no `allow` or `deny`");
    assert_error("rules:\n  - name: a\n    allow: []\n    deny: []\n", (2, 11), "no `allow` or `deny`");
    assert_error(
        "rules:\n  - name: a\n    listeners: []\n    allow: [spiffe://td/a]\n",
        (3, 16),
        "`listeners` is empty",
    );
    assert_error("rules:\n  - allow: [spiffe://td/a]\n", (2, 5), "missing field `name`");
    assert_error("mode: strict\n", (1, 7), "unknown variant `strict`");
    assert_error("on_revoke: drop\n", (1, 12), "unknown variant `drop`");
}

#[test]
fn empty_file_is_an_error() {
    for text in ["", "\n\n", "   \n\t\n", "# comment only\n# another\n", "---\n"] {
        let err = error(text);
        assert_eq!(err.reason(), "policy file is empty; write `rules: []` to deny everyone", "{text:?}");
        assert_eq!(err.to_string(), "policy.yaml:1:1: policy file is empty; write `rules: []` to deny everyone");
    }
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let err = error("rules:\n  - name: a\n    allow: [spiffe://td/a\n");
    assert!(err.position().is_some(), "{err}");
    let err = error("rules:\n  - name: a\n   bad indent: x\n");
    assert!(err.position().is_some(), "{err}");
    let err = error("mode: enforce\nmode: audit\n");
    assert_eq!(err.position(), Some((2, 1)), "{err}");
}

#[test]
fn error_without_a_path_says_policy() {
    let err = Policy::from_yaml("nope: 1\n", None).unwrap_err();
    assert_eq!(err.to_string(), format!("<policy>:1:1: {}", err.reason()));
}

#[test]
fn oversized_input_is_refused() {
    let mut text = String::from("rules: []\n");
    text.push_str(&"#".repeat(MAX_POLICY_BYTES));
    let err = error(&text);
    assert_eq!(err.position(), None);
    assert!(err.reason().contains("larger than 4 MiB"), "{err}");
}

#[test]
fn alias_bomb_is_bounded() {
    // Billion laughs: each level lists ten references to the previous one. Refused before it expands.
    let mut text = String::from("rules:\n  - name: a\n    allow: &l0 [spiffe://td/a, spiffe://td/b]\n");
    text.push_str("  - name: b\n    x0: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n");
    for level in 2..=9 {
        let prev = level - 1;
        let refs = vec![format!("*l{prev}"); 10].join(", ");
        text.push_str(&format!("    x{prev}: &l{level} [{refs}]\n"));
    }
    let start = Instant::now();
    let err = error(&text);
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
    assert!(err.position().is_some(), "{err}");

    // Fan-out that fits the schema: a 1000-pattern list shared by 300 rules is 300k replayed nodes.
    let mut text = String::from("rules:\n  - name: r0\n    allow: &p\n");
    for i in 0..1000 {
        text.push_str(&format!("      - spiffe://td/p{i}\n"));
    }
    for r in 1..300 {
        text.push_str(&format!("  - name: r{r}\n    allow: *p\n"));
    }
    let start = Instant::now();
    let err = error(&text);
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    assert!(err.reason().contains("too large or too complex"), "{err}");
    assert!(err.position().is_some(), "{err}");
}

#[test]
fn aliases_within_limits_work() {
    let p = policy(
        "rules:
  - name: a
    listeners: [api]
    allow: &shared [spiffe://td/web, spiffe://td/batch/*]
  - name: b
    listeners: [admin]
    allow: *shared
",
    );
    assert_eq!(decide(&p, "admin", "spiffe://td/batch/x"), (Verdict::Allow, "b"));
}

#[test]
fn load_reads_the_file_and_labels_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.rule_names().count(), 2);

    std::fs::write(&path, "rules:\n  - name: x\n    allow: [spiffe://td/a*]\n").unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert_eq!(err.to_string(), format!("{}:3:13: {}", path.display(), err.reason()));

    let missing = dir.path().join("missing.yaml");
    let err = Policy::load(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    assert_eq!(err.position(), None);

    let mut big = std::fs::File::create(&path).unwrap();
    big.write_all("#".repeat(MAX_POLICY_BYTES + 1).as_bytes()).unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert!(err.reason().contains("larger than"), "{err}");
}

#[test]
fn file_model_is_exposed() {
    let model = file::parse(EXAMPLE, None).unwrap();
    assert_eq!(model.rules.len(), 2);
    assert_eq!(model.rules[0].listeners.as_deref(), Some(&["api".to_owned()][..]));
    assert!(model.rules[0].applies_to("api"));
    assert!(!model.rules[0].applies_to("other"));
    assert!(model.rules[1].applies_to("other"));
    assert_eq!(model.rules[1].deny[0].to_string(), "spiffe://example.org/ns/legacy/**");
}

/// Rule `r{i}` allows `spiffe://td/ns/n{i}/sa/*`; every 7th also denies `spiffe://td/ns/n{i}/sa/blocked`, every
/// 100th denies its whole namespace, and every 13th is scoped to listener `api`.
fn large_policy(n: usize) -> String {
    let mut text = String::from("rules:\n");
    for i in 0..n {
        text.push_str(&format!("  - name: r{i}\n    allow: [spiffe://td/ns/n{i}/sa/*]\n"));
        let mut deny = Vec::new();
        if i % 7 == 0 {
            deny.push(format!("spiffe://td/ns/n{i}/sa/blocked"));
        }
        if i % 100 == 0 {
            deny.push(format!("spiffe://td/ns/n{i}/**"));
        }
        if !deny.is_empty() {
            text.push_str(&format!("    deny: [{}]\n", deny.join(", ")));
        }
        if i % 13 == 0 {
            text.push_str("    listeners: [api]\n");
        }
    }
    text
}

#[test]
fn ten_thousand_rules_decide_correctly_and_fast() {
    let text = large_policy(10_000);
    let p = policy(&text);
    assert_eq!(p.rule_names().count(), 10_000);

    let check = |listener: &str, i: usize, sa: &str| {
        let peer = id(&format!("spiffe://td/ns/n{i}/sa/{sa}"));
        let d = p.decide(listener, &peer);
        let name = format!("r{i}");
        let applies = !i.is_multiple_of(13) || listener == "api";
        let want = if !applies {
            (Verdict::Deny, DEFAULT_RULE)
        } else if i.is_multiple_of(100) || (i.is_multiple_of(7) && sa == "blocked") {
            (Verdict::Deny, name.as_str())
        } else {
            (Verdict::Allow, name.as_str())
        };
        assert_eq!((d.verdict, d.rule), want, "{listener} {peer}");
    };
    for i in (0..10_000).step_by(37).chain([1, 7, 13, 100, 9_999]) {
        for listener in ["api", "web"] {
            check(listener, i, "app");
            check(listener, i, "blocked");
        }
    }
    assert_eq!(decide(&p, "api", "spiffe://td/ns/n10000/sa/app"), (Verdict::Deny, DEFAULT_RULE));
    assert_eq!(decide(&p, "api", "spiffe://td/ns/n1/sa/app/x"), (Verdict::Deny, DEFAULT_RULE));

    // Cost must not grow with the rule count: 100k decisions on 10k rules in well under a second even in a
    // debug build (a linear scan would be 10^9 pattern checks).
    let peer = id("spiffe://td/ns/n5001/sa/app");
    let start = Instant::now();
    for _ in 0..100_000 {
        assert_eq!(p.decide("web", &peer).verdict, Verdict::Allow);
    }
    assert!(start.elapsed().as_secs() < 2, "100k decisions took {:?}", start.elapsed());
}

/// The index must agree with the obvious definition: first matching deny, else first matching allow.
#[test]
fn index_agrees_with_a_linear_scan() {
    let text = "rules:
  - name: r0
    allow: [spiffe://td/a/**, spiffe://td/b/c]
  - name: r1
    listeners: [x]
    deny: [spiffe://td/a/b/*, spiffe://td/**]
  - name: r2
    deny: [spiffe://td/a/b/c]
    allow: [spiffe://td/*, spiffe://other/**]
  - name: r3
    listeners: [x, y]
    allow: [spiffe://td/a/b/**, spiffe://td/b/*]
  - name: r4
    deny: [spiffe://other/q/*]
";
    let p = policy(text);
    let model = file::parse(text, None).unwrap();
    let peers = [
        "spiffe://td",
        "spiffe://td/a",
        "spiffe://td/b",
        "spiffe://td/a/b",
        "spiffe://td/a/b/c",
        "spiffe://td/a/b/c/d",
        "spiffe://td/b/c",
        "spiffe://td/b/d",
        "spiffe://td/b/c/d",
        "spiffe://other/q",
        "spiffe://other/q/r",
        "spiffe://other/q/r/s",
        "spiffe://tdx/a/b",
    ];
    for listener in ["x", "y", "z"] {
        for peer in peers {
            let peer = id(peer);
            let applicable = || model.rules.iter().filter(|r| r.applies_to(listener));
            let deny = applicable().find(|r| r.deny.iter().any(|pat| pat.matches(&peer)));
            let allow = applicable().find(|r| r.allow.iter().any(|pat| pat.matches(&peer)));
            let want = match (deny, allow) {
                (Some(r), _) => (Verdict::Deny, r.name.as_str()),
                (None, Some(r)) => (Verdict::Allow, r.name.as_str()),
                (None, None) => (Verdict::Deny, DEFAULT_RULE),
            };
            let got = p.decide(listener, &peer);
            assert_eq!((got.verdict, got.rule), want, "{listener} {peer}");
        }
    }
}
