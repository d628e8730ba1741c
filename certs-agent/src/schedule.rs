//! When `certs-agent run` renews, and how long it waits after a failure.
//!
//! - Renewal at half the SVID's useful life (issuance to notAfter), ±10 % jitter, as SPIRE's agent does
//!   (`rotationutil`): early enough that a CA outage of up to half a lifetime costs nothing, late enough not to
//!   load the CA; the jitter spreads agents started together.
//! - Retries: 250 ms doubling up to `--retry-max` (30 s by default), ±10 % jitter, and never more than half
//!   the time the SVID in force has left, so that several attempts land before it expires however long the
//!   cap. Once it has expired (or there is none) the workload is down, and no backoff saves anything worth
//!   that: retries come at least every [`RETRY_WITHOUT_SVID`].

use std::time::Duration;

/// Renew at this fraction of the useful life.
pub const RENEW_FRACTION: f64 = 0.5;
/// ± this fraction of the renewal point (and of each retry delay).
pub const JITTER: f64 = 0.1;
/// The first retry delay.
pub const RETRY_INITIAL: Duration = Duration::from_millis(250);
/// The default cap on retry delays.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The shortest retry delay, even right before expiry.
pub const RETRY_FLOOR: Duration = Duration::from_millis(100);
/// The longest retry delay while no valid SVID is published.
pub const RETRY_WITHOUT_SVID: Duration = Duration::from_secs(1);

/// A uniform sample in [-1, 1] from the OS random source (0 if it fails: no jitter is better than no renewal).
pub fn jitter_sample() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0
}

/// How long after issuance to renew an SVID useful for `lifetime`: `lifetime × 0.5 × (1 + 0.1 × jitter)`,
/// `jitter` in [-1, 1], but not sooner than [`RETRY_FLOOR`] (leaves clamped to a root about to expire get
/// shorter and shorter; the floor bounds how often they are re-issued).
pub fn renew_after(lifetime: Duration, jitter: f64) -> Duration {
    lifetime.mul_f64(RENEW_FRACTION * (1.0 + JITTER * jitter.clamp(-1.0, 1.0))).max(RETRY_FLOOR)
}

/// The wait before retry `attempt` (0 after the first failure): [`RETRY_INITIAL`] doubling, jittered, capped by
/// `max` and by half of `time_left` (the SVID in force's remaining validity), or by [`RETRY_WITHOUT_SVID`]
/// when `time_left` is zero (none, or expired); never below [`RETRY_FLOOR`].
pub fn retry_after(attempt: u32, max: Duration, time_left: Duration, jitter: f64) -> Duration {
    let doubled = RETRY_INITIAL.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let wait = doubled.min(max).mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0)).min(max);
    let cap = if time_left.is_zero() { RETRY_WITHOUT_SVID } else { time_left / 2 };
    wait.min(cap).max(RETRY_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn renewal_is_at_half_life_within_ten_percent() {
        let life = 4 * S;
        assert_eq!(renew_after(life, 0.0), 2 * S);
        assert_eq!(renew_after(life, -1.0), Duration::from_millis(1800));
        assert_eq!(renew_after(life, 1.0), Duration::from_millis(2200));
        assert_eq!(renew_after(life, 7.0), Duration::from_millis(2200), "out-of-range jitter is clamped");
        assert_eq!(renew_after(Duration::from_millis(10), 0.0), RETRY_FLOOR);
        for _ in 0..1000 {
            let at = renew_after(life, jitter_sample());
            assert!(at >= Duration::from_millis(1800) && at <= Duration::from_millis(2200), "{at:?}");
        }
    }

    #[test]
    fn jitter_samples_cover_the_range() {
        let samples: Vec<f64> = (0..2000).map(|_| jitter_sample()).collect();
        assert!(samples.iter().all(|j| (-1.0..=1.0).contains(j)));
        assert!(samples.iter().any(|&j| j < -0.5) && samples.iter().any(|&j| j > 0.5));
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let day = 86_400 * S;
        let waits: Vec<Duration> = (0..10).map(|n| retry_after(n, 30 * S, day, 0.0)).collect();
        assert_eq!(waits[0], Duration::from_millis(250));
        assert_eq!(waits[1], Duration::from_millis(500));
        assert_eq!(waits[2], Duration::from_secs(1));
        assert_eq!(waits[6], Duration::from_secs(16));
        assert_eq!(waits[7], 30 * S);
        assert_eq!(waits[9], 30 * S);
        assert_eq!(retry_after(u32::MAX, 30 * S, day, 1.0), 30 * S, "no overflow, jitter stays under the cap");
        assert_eq!(retry_after(3, S, day, 0.0), S);
    }

    #[test]
    fn without_a_valid_svid_retries_come_every_second_at_most() {
        for attempt in [3, 7, 20, u32::MAX] {
            for jitter in [-1.0, 0.0, 1.0] {
                let wait = retry_after(attempt, 30 * S, Duration::ZERO, jitter);
                assert!(wait <= RETRY_WITHOUT_SVID && wait >= Duration::from_millis(900), "{attempt}: {wait:?}");
            }
        }
        // The first attempts still start small, and a smaller --retry-max still applies.
        assert_eq!(retry_after(0, 30 * S, Duration::ZERO, 0.0), Duration::from_millis(250));
        assert_eq!(retry_after(9, Duration::from_millis(400), Duration::ZERO, 0.0), Duration::from_millis(400));
    }

    #[test]
    fn retries_never_wait_past_half_the_time_left() {
        assert_eq!(retry_after(9, 30 * S, 10 * S, 0.0), 5 * S);
        assert_eq!(retry_after(0, 30 * S, 10 * S, 0.0), Duration::from_millis(250));
        assert_eq!(retry_after(9, 30 * S, Duration::from_millis(50), 0.0), RETRY_FLOOR);
        // Halving converges on expiry in a few attempts: from 10 s left, at most ~7 attempts reach the floor.
        let mut left = 10 * S;
        let mut attempts = 0;
        while left > RETRY_FLOOR {
            left = left.saturating_sub(retry_after(20, 30 * S, left, 0.0));
            attempts += 1;
        }
        assert!(attempts <= 8, "{attempts}");
    }
}
