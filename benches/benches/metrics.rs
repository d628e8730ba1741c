//! Metrics on the handshake path: what the inbound sidecar records for every connection. It resolves each
//! listener's metric handles once at start (`Metrics::listener`), then per connection observes the handshake
//! duration and bumps its reason counter (`handshakes.record`) and counts the authorization decision
//! (`authz_decision`, the one lookup by label values, because the rule name changes with the policy).
//!
//! Why it matters: this runs on every connection, on the same worker threads as the handshakes. It should
//! cost well under a microsecond (a few atomics, and one label hash for the decision), i.e. noise next to a
//! ~0.44 ms handshake; the resolve-at-start bench shows what the per-connection path avoids by
//! resolving handles once.

#![allow(clippy::unwrap_used)] // fixture setup: a failure should stop the bench loudly

mod support;

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use sidecar::{
    metrics::{Direction, Metrics},
    tls::HandshakeReason,
};
use support::BenchClock;

fn bench(c: &mut Criterion<BenchClock>) {
    let metrics = Metrics::new().unwrap();
    let listener = metrics.listener(Direction::Inbound, "api");
    let elapsed = Duration::from_micros(440);
    let mut group = c.benchmark_group("metrics");

    // A successful handshake: one histogram observation, one counter.
    group.bench_function("handshake-record-ok", |b| {
        b.iter(|| listener.handshakes.record(black_box(elapsed), black_box(HandshakeReason::Ok)))
    });
    // A refused one: the error histogram and the reason's counter.
    group.bench_function("handshake-record-error", |b| {
        b.iter(|| listener.handshakes.record(black_box(elapsed), black_box(HandshakeReason::Untrusted)))
    });
    // The authorization decision, counted by listener, decision and rule.
    group.bench_function("authz-decision", |b| {
        b.iter(|| listener.authz_decision(black_box("allow"), black_box("web-can-call-api")))
    });
    // Everything one allowed connection records between accept and forwarding.
    group.bench_function("per-connection", |b| {
        b.iter(|| {
            listener.handshakes.record(black_box(elapsed), HandshakeReason::Ok);
            listener.authz_decision(black_box("allow"), black_box("web-can-call-api"));
        })
    });
    // For contrast, the start-up work: resolving every handle of a listener by label values.
    group.bench_function("listener-resolve-at-start", |b| {
        b.iter(|| metrics.listener(black_box(Direction::Inbound), black_box("api")))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
