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

/// `t` rounded up to the next whole second (unchanged when already whole).
pub fn ceil_seconds(t: OffsetDateTime) -> OffsetDateTime {
    let whole = whole_seconds(t);
    if whole == t { t } else { whole + time::Duration::SECOND }
}

/// `t` as seconds since the Unix epoch, with the fraction.
pub fn unix_seconds_f64(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// The last second a certificate time can name: 9999-12-31T23:59:59Z.
const LAST_UNIX_SECOND: i64 = 253_402_300_799;

/// The instant `unix` seconds after the epoch, clamped to 1970..=9999.
pub fn from_unix(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix.clamp(0, LAST_UNIX_SECOND)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
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
    fn ceil_rounds_fractions_up_only() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(7);
        assert_eq!(ceil_seconds(t), t);
        assert_eq!(ceil_seconds(t + time::Duration::nanoseconds(1)), t + time::Duration::SECOND);
        assert_eq!(ceil_seconds(t + time::Duration::milliseconds(999)), t + time::Duration::SECOND);
    }

    #[test]
    fn remaining_is_zero_after_expiry() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(remaining(t + time::Duration::seconds(5), t), Duration::ZERO);
        assert_eq!(remaining(t, t + time::Duration::seconds(5)), Duration::from_secs(5));
    }
}
