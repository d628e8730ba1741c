//! What the benches measure with: the benchmarking thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall time.
//!
//! Why: the project's machines have 2 vCPUs shared with builds, tests and hypervisor steal. Wall time counts
//! every moment the thread was preempted, which on a busy machine inflates a 70 us signature check to 250 us
//! and varies from run to run; the thread's CPU time does not include time spent off the CPU. On an idle
//! machine the two agree. Set `BENCH_CLOCK=wall` to measure wall time instead (criterion's default).

use std::time::Duration;

use criterion::{
    Criterion,
    measurement::{Measurement, ValueFormatter, WallTime},
};
use rustix::time::{ClockId, clock_gettime};

/// The calling thread's CPU time, or wall time when `BENCH_CLOCK=wall`.
pub struct BenchClock {
    wall: bool,
}

/// criterion with [`BenchClock`].
pub fn criterion() -> Criterion<BenchClock> {
    let wall = std::env::var("BENCH_CLOCK").is_ok_and(|v| v == "wall");
    Criterion::default().with_measurement(BenchClock { wall })
}

/// Durations print as criterion prints wall time.
static FORMAT: WallTime = WallTime;

impl BenchClock {
    fn now(&self) -> Duration {
        let clock = if self.wall { ClockId::Monotonic } else { ClockId::ThreadCPUTime };
        let t = clock_gettime(clock);
        Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
    }
}

impl Measurement for BenchClock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }

    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        FORMAT.formatter()
    }
}
