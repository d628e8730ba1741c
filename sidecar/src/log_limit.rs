//! Rate limiting for per-connection warning lines. A flood of bad handshakes or an app that is down would
//! otherwise write a line per connection and bury everything else; the metrics count every event, the log
//! keeps a readable sample.
//!
//! Each (listener, kind) has a token bucket: a burst of lines, then a steady trickle. Handshake failures
//! have a bucket per reason, so a flood of cheap junk (no certificate, garbage bytes) cannot crowd out the
//! lines about forged or expired certificates. A line that gets through carries the number of lines
//! suppressed before it, and [`LogLimiter::take_suppressed`] reports the rest once a flood is over, so
//! nothing disappears silently.

use crate::tls::HandshakeReason;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const BURST: f64 = 20.0;
const PER_SECOND: f64 = 2.0;

/// What kind of event a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Handshake(HandshakeReason),
    Denied,
    Connect,
    /// A connection refused at the listener's connection limit.
    Limit,
    /// An accept error (e.g. out of file descriptors).
    Accept,
    /// The peer sidecar refused us after the handshake.
    Rejected,
    /// Audit mode let in a caller the policy would deny.
    Audit,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

/// Decides which warning lines are written.
#[derive(Default)]
pub struct LogLimiter {
    buckets: Mutex<HashMap<(Arc<str>, LogKind), Bucket>>,
}

impl LogLimiter {
    /// Whether to write a line now; `Some(n)` also says how many lines were suppressed since the last one.
    pub fn admit(&self, listener: &Arc<str>, kind: LogKind) -> Option<u64> {
        self.admit_at(listener, kind, Instant::now())
    }

    fn admit_at(&self, listener: &Arc<str>, kind: LogKind, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket =
            buckets.entry((listener.clone(), kind)).or_insert(Bucket { tokens: BURST, refilled: now, suppressed: 0 });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * PER_SECOND).min(BURST);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Some(std::mem::take(&mut bucket.suppressed))
        } else {
            bucket.suppressed += 1;
            None
        }
    }
}

impl LogLimiter {
    /// Every (listener, kind) with lines suppressed since its last line got through, and how many; the counts
    /// restart from zero. For a periodic summary once a flood has stopped producing lines.
    pub fn take_suppressed(&self) -> Vec<(Arc<str>, LogKind, u64)> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .iter_mut()
            .filter(|(_, b)| b.suppressed > 0)
            .map(|((listener, kind), b)| (listener.clone(), *kind, std::mem::take(&mut b.suppressed)))
            .collect()
    }
}

/// How often suppressed lines are summarized.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Until `stop`: every [`SUMMARY_EVERY`], one line per (listener, kind) whose lines were suppressed and not yet
/// reported by a later line, so the end of a flood is never silent.
pub async fn summarize_suppressed(limiter: std::sync::Arc<LogLimiter>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SUMMARY_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        for (listener, kind, suppressed) in limiter.take_suppressed() {
            tracing::warn!(listener = %listener, kind = ?kind, suppressed, "similar warning lines suppressed in the last {}s", SUMMARY_EVERY.as_secs());
        }
    }
}

/// The interval in which a burst refills, for documentation and tests.
pub const REFILL: Duration = Duration::from_millis((1000.0 / PER_SECOND) as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_a_trickle_with_the_suppressed_count() {
        let l = LogLimiter::default();
        let key: Arc<str> = "api".into();
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert_eq!(l.admit_at(&key, LogKind::Handshake(HandshakeReason::Untrusted), t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(l.admit_at(&key, LogKind::Handshake(HandshakeReason::Untrusted), t0), None);
        }
        // Another kind and another listener have their own buckets.
        assert_eq!(l.admit_at(&key, LogKind::Connect, t0), Some(0));
        assert_eq!(l.admit_at(&"web".into(), LogKind::Handshake(HandshakeReason::Untrusted), t0), Some(0));
        // Another handshake reason has its own bucket: junk cannot crowd out forged certificates.
        assert_eq!(l.admit_at(&key, LogKind::Handshake(HandshakeReason::NoClientCert), t0), Some(0));
        // One refill interval later one line passes and reports the five it stood for.
        assert_eq!(l.admit_at(&key, LogKind::Handshake(HandshakeReason::Untrusted), t0 + REFILL), Some(5));
        assert_eq!(l.admit_at(&key, LogKind::Handshake(HandshakeReason::Untrusted), t0 + REFILL), None);
        // What a summary would report, once.
        let taken = l.take_suppressed();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].2, 1);
        assert!(l.take_suppressed().is_empty());
    }
}
