//! Who starts handshakes, and when.
//!
//! - Closed loop (`--concurrency N`): N workers, each making handshakes back to back. The load adapts to the
//!   server, which is how to find its saturation throughput; but a stalled server also stalls the load, so
//!   the latencies are service times, not what clients arriving at a fixed rate would see.
//! - Open loop (`--rate R`): a dedicated thread starts handshake `i` at `start + i/R`, whatever happened to
//!   the others, and each handshake's latency counts from that scheduled time. When the server (or this
//!   client) falls behind, the queueing shows up as latency instead of silently lowering the rate (no
//!   coordinated omission). A thread with `std::thread::sleep` keeps the schedule to tens of microseconds;
//!   tokio's timer wheel would round every start to a millisecond.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::Semaphore, sync::mpsc::UnboundedSender};

use super::conn::{Connector, Event, Outcome};

/// An open-loop handshake that starts this long after its scheduled time is counted as `late`: the
/// scheduler or the client's CPUs could not keep up (its latency still counts from the schedule).
pub const LATE: Duration = Duration::from_millis(1);

/// When to stop starting handshakes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// `--duration`: start none scheduled (open loop) or begun (closed loop) after this long.
    After(Duration),
    /// `--handshakes N`: start exactly N (in open loop, dropped ones count toward N).
    Count(u64),
}

/// The shared budget of handshakes still to start; Ctrl-C empties it.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    remaining: AtomicU64,
    cancelled: AtomicBool,
}

impl Budget {
    pub fn new(stop: Stop, start: Instant) -> Self {
        let (deadline, remaining) = match stop {
            Stop::After(d) => (Some(start + d), u64::MAX),
            Stop::Count(n) => (None, n),
        };
        Self { deadline, remaining: AtomicU64::new(remaining), cancelled: AtomicBool::new(false) }
    }

    /// Claims one handshake starting at `at`; false once the budget is spent.
    pub fn take(&self, at: Instant) -> bool {
        if self.cancelled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| at >= d) {
            return false;
        }
        self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    /// Starts nothing more; handshakes in flight finish.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Starts `concurrency` workers on the current runtime. Every event goes to `events`; the workers (and so
/// their senders) end when the budget is spent.
pub fn closed_loop(connector: Arc<Connector>, concurrency: usize, budget: Arc<Budget>, events: UnboundedSender<Event>) {
    for _ in 0..concurrency {
        let (connector, budget, events) = (connector.clone(), budget.clone(), events.clone());
        tokio::spawn(async move {
            loop {
                let start = Instant::now();
                if !budget.take(start) {
                    break;
                }
                let outcome = connector.run(start).await;
                if events.send(Event { outcome, late: false }).is_err() {
                    break;
                }
            }
        });
    }
}

/// The open-loop plan.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Handshakes started per second.
    pub rate: f64,
    /// At most this many in flight; a handshake due when the cap is reached is not started (`dropped`).
    pub max_inflight: usize,
}

/// Starts the scheduler thread, which spawns each handshake on `runtime` at its time and returns once the
/// budget is spent (the handshakes it started may still be running; each holds a sender of `events`).
pub fn open_loop(
    plan: OpenLoop,
    connector: Arc<Connector>,
    budget: Arc<Budget>,
    events: UnboundedSender<Event>,
    runtime: Handle,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("scheduler".into()).spawn(move || {
        let inflight = Arc::new(Semaphore::new(plan.max_inflight));
        let start = Instant::now();
        for i in 0u64.. {
            // From `start` each time, so rounding does not accumulate over a long run.
            let scheduled = start + Duration::from_secs_f64(i as f64 / plan.rate);
            if !budget.take(scheduled) {
                break;
            }
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            let late = scheduled.elapsed() > LATE;
            match inflight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (connector, events) = (connector.clone(), events.clone());
                    runtime.spawn(async move {
                        let outcome = connector.run(scheduled).await;
                        drop(permit);
                        let _ = events.send(Event { outcome, late });
                    });
                }
                Err(_) => {
                    let _ = events.send(Event { outcome: Outcome::Dropped, late });
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_budget_hands_out_exactly_n() {
        let start = Instant::now();
        let budget = Budget::new(Stop::Count(3), start);
        let taken = (0..10).filter(|_| budget.take(start)).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_duration_budget_ends_at_the_deadline_and_cancel_ends_it_early() {
        let start = Instant::now();
        let budget = Budget::new(Stop::After(Duration::from_secs(1)), start);
        assert!(budget.take(start + Duration::from_millis(999)));
        assert!(!budget.take(start + Duration::from_secs(1)));
        budget.cancel();
        assert!(!budget.take(start));
    }
}
