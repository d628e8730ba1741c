//! The single place outcomes are counted: one task receives every [`Event`] and keeps the latency
//! histogram and the counters, so the connection tasks share nothing but a channel.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use hdrhistogram::{CreationError, Histogram};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    conn::{Event, Outcome},
    reason::ErrorReason,
};

/// Latencies are recorded in microseconds, up to an hour, to 3 significant figures.
pub const LATENCY_UNIT_PER_MS: f64 = 1000.0;
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Everything counted in a run.
#[derive(Debug, Clone)]
pub struct Tally {
    pub ok: u64,
    pub errors: HashMap<ErrorReason, u64>,
    pub dropped: u64,
    pub late: u64,
    pub resumed: u64,
    pub hello_retry: u64,
    /// Handshake latency of the successful handshakes, in microseconds.
    pub latency: Histogram<u64>,
}

impl Tally {
    pub fn new() -> Result<Self, CreationError> {
        let latency = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?;
        Ok(Self { ok: 0, errors: HashMap::new(), dropped: 0, late: 0, resumed: 0, hello_retry: 0, latency })
    }

    pub fn record(&mut self, event: Event) {
        self.late += u64::from(event.late);
        match event.outcome {
            Outcome::Ok(done) => {
                self.ok += 1;
                self.resumed += u64::from(done.resumed);
                self.hello_retry += u64::from(done.hello_retry);
                let us = u64::try_from(done.latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(us.max(1));
            }
            Outcome::Failed(reason) => *self.errors.entry(reason).or_insert(0) += 1,
            Outcome::Dropped => self.dropped += 1,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Connections attempted: successes and errors (not the dropped ones, which were never started).
    pub fn attempted(&self) -> u64 {
        self.ok + self.error_count()
    }
}

/// Receives events until every sender is gone. With `progress`, redraws one status line on stderr each
/// second (only when stderr is a terminal, so logs and pipes stay clean).
pub async fn collect(mut events: UnboundedReceiver<Event>, mut tally: Tally, progress: bool) -> Tally {
    if !(progress && std::io::stderr().is_terminal()) {
        while let Some(event) = events.recv().await {
            tally.record(event);
        }
        return tally;
    }
    let mut line = ProgressLine::new();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => tally.record(event),
                None => break,
            },
            _ = tick.tick() => line.draw(&tally),
        }
    }
    line.clear();
    tally
}

/// `[  12s]  34567 ok  0 err  2876/s  p50 0.91 ms  p99 2.30 ms`, carriage-return updated.
struct ProgressLine {
    started: Instant,
    last: (Instant, u64),
}

impl ProgressLine {
    fn new() -> Self {
        let now = Instant::now();
        Self { started: now, last: (now, 0) }
    }

    fn draw(&mut self, tally: &Tally) {
        let now = Instant::now();
        let window = now.duration_since(self.last.0).as_secs_f64().max(1e-9);
        let rate = tally.ok.saturating_sub(self.last.1) as f64 / window;
        self.last = (now, tally.ok);
        let ms = |q: f64| tally.latency.value_at_quantile(q) as f64 / LATENCY_UNIT_PER_MS;
        let text = format!(
            "\r[{:>5.0}s] {:>9} ok {:>7} err {:>8.0}/s  p50 {:.2} ms  p99 {:.2} ms\x1b[K",
            now.duration_since(self.started).as_secs_f64(),
            tally.ok,
            tally.error_count(),
            rate,
            ms(0.5),
            ms(0.99),
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    fn clear(&self) {
        let _ = std::io::stderr().write_all(b"\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::conn::Handshake;

    #[test]
    fn outcomes_land_in_their_counters() {
        let mut tally = Tally::new().unwrap();
        let ok = |us| Event {
            outcome: Outcome::Ok(Handshake {
                latency: Duration::from_micros(us),
                resumed: us == 900,
                hello_retry: false,
            }),
            late: false,
        };
        tally.record(ok(700));
        tally.record(ok(900));
        tally.record(Event { outcome: Outcome::Failed(ErrorReason::NoReply), late: true });
        tally.record(Event { outcome: Outcome::Dropped, late: true });
        assert_eq!((tally.ok, tally.error_count(), tally.dropped, tally.late, tally.resumed), (2, 1, 1, 2, 1));
        assert_eq!(tally.attempted(), 3);
        assert_eq!(tally.latency.len(), 2);
        assert!(tally.latency.max() >= 900 && tally.latency.max() < 901);
    }
}
