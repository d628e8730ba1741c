//! Certificate validity arithmetic: X.509 times have whole seconds, and a clock step of a few seconds
//! between hosts must not make a fresh certificate "not yet valid", hence the back-dating.

use std::time::Duration;

use time::OffsetDateTime;

/// How far notBefore is set before "now" (SPIRE's `NotBeforeCushion`).
pub const BACKDATE: time::Duration = time::Duration::seconds(10);

/// The latest notAfter we write: the end of GeneralizedTime's four-digit years.
const LAST_YEAR: i32 = 9999;

/// `t` with its sub-second part dropped, as it will read back from a certificate.
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `t + d`, or None when the result does not fit in a certificate.
pub fn add(t: OffsetDateTime, d: Duration) -> Option<OffsetDateTime> {
    let d = time::Duration::try_from(d).ok()?;
    t.checked_add(d).filter(|end| end.year() <= LAST_YEAR)
}

/// Time left from `now` until `not_after`, zero once passed.
pub fn remaining(now: OffsetDateTime, not_after: OffsetDateTime) -> Duration {
    Duration::try_from(not_after - now).unwrap_or(Duration::ZERO)
}

/// `t` as RFC 3339 text, e.g. `2026-01-01T12:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `t` as seconds since the Unix epoch for rustls-webpki (times before 1970 clamp to zero).
pub fn unix_time(t: OffsetDateTime) -> rustls_pki_types::UnixTime {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_refuses_years_past_9999() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert!(add(now, Duration::from_secs(3600)).is_some());
        assert!(add(now, Duration::from_secs(10_000 * 366 * 86_400)).is_none());
        assert!(add(now, Duration::MAX).is_none());
    }

    #[test]
    fn remaining_is_zero_after_expiry() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(remaining(t + time::Duration::seconds(5), t), Duration::ZERO);
        assert_eq!(remaining(t, t + time::Duration::seconds(5)), Duration::from_secs(5));
    }
}
