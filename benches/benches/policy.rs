//! Policy decisions: `Policy::decide`, which the inbound sidecar runs once per connection after the
//! handshake, with 10 and with 10,000 rules.
//!
//! Why it matters: the README promises "a few hash lookups, whatever the number of rules". If that held
//! only for small files, a large mesh's allowlist would add latency to every connection; these benches show
//! the cost stays flat from 10 to 10,000 rules, for each way a decision ends: an exact allow, a wildcard
//! allow, a deny that wins, and the default deny after no rule matched (the path that visits every segment).
//!
//! The rules are generated as policy YAML (what an operator writes) and mix the pattern kinds: exact IDs,
//! `/*` (one more segment), `/**` (any depth), deny rules, and rules scoped to listeners. Compiling the
//! 10,000-rule file is measured too: that is the reload cost, paid off the data path.

#![allow(clippy::unwrap_used)] // fixture setup: a failure should stop the bench loudly

mod support;

use std::{fmt::Write, hint::black_box};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use policy::{Policy, SpiffeId, Verdict};
use support::BenchClock;

const LISTENER: &str = "api";

/// `n` rules, cycling through five shapes; rule `i` is about namespace `n{i}`.
fn policy_yaml(n: usize) -> String {
    let mut y = String::from("mode: enforce\non_revoke: close\nrules:\n");
    for i in 0..n {
        let (listeners, verb, pattern) = match i % 5 {
            0 => ("[api]", "allow", format!("spiffe://example.org/ns/n{i}/sa/s{i}")),
            1 => ("", "allow", format!("spiffe://example.org/ns/n{i}/sa/*")),
            2 => ("", "allow", format!("spiffe://example.org/ns/n{i}/**")),
            3 => ("[api, admin]", "deny", format!("spiffe://example.org/ns/n{i}/**")),
            _ => ("[other]", "allow", format!("spiffe://example.org/ns/n{i}/sa/s{i}")),
        };
        writeln!(y, "  - name: rule-{i}").unwrap();
        if !listeners.is_empty() {
            writeln!(y, "    listeners: {listeners}").unwrap();
        }
        writeln!(y, "    {verb}:\n      - {pattern}").unwrap();
    }
    y
}

/// The highest rule index below `n` with shape `shape` (the last such rule: no advantage from file order).
fn last_of(n: usize, shape: usize) -> usize {
    (0..n).rev().find(|i| i % 5 == shape).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn bench(c: &mut Criterion<BenchClock>) {
    let mut group = c.benchmark_group("policy/decide");
    for n in [10usize, 10_000] {
        let policy = Policy::from_yaml(&policy_yaml(n), None).unwrap();
        assert_eq!(policy.rule_count(), n);
        let exact = last_of(n, 0);
        let star = last_of(n, 1);
        let denied = last_of(n, 3);
        let cases = [
            ("allow-exact", id(&format!("spiffe://example.org/ns/n{exact}/sa/s{exact}")), Verdict::Allow),
            ("allow-wildcard", id(&format!("spiffe://example.org/ns/n{star}/sa/batch")), Verdict::Allow),
            ("deny-hit", id(&format!("spiffe://example.org/ns/n{denied}/sa/legacy")), Verdict::Deny),
            ("default-miss", id("spiffe://example.org/ns/unknown/sa/nobody"), Verdict::Deny),
            ("default-miss-8-segments", id("spiffe://example.org/a/b/c/d/e/f/g/h"), Verdict::Deny),
        ];
        for (name, peer, expected) in cases {
            let decision = policy.decide(LISTENER, &peer);
            assert_eq!(decision.verdict, expected, "{name} with {n} rules: {decision:?}");
            group.bench_with_input(BenchmarkId::new(name, format!("{n}-rules")), &peer, |b, peer| {
                b.iter(|| policy.decide(black_box(LISTENER), black_box(peer)))
            });
        }
    }
    group.finish();

    // Reload cost: parse and compile the large file (off the data path, but it bounds how fast a policy
    // change takes effect).
    let text = policy_yaml(10_000);
    let mut group = c.benchmark_group("policy/compile");
    group.sample_size(10);
    group.bench_function("10000-rules", |b| b.iter(|| Policy::from_yaml(black_box(&text), None).unwrap()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
