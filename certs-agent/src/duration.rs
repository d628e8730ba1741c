//! Durations given on the command line (`--ttl 1h`, `--retry-max 30s`, `--activate-after 0s`), and durations
//! shown to people.
//!
//! Parsed with `humantime`, so `ms`, `s`, `m` and `h` (SPEC §2) and a few longer units are accepted. A zero
//! lifetime is refused ([`Zero::Refused`]) rather than producing a certificate that is already expired; a zero
//! delay may mean "at once" ([`Zero::Allowed`]).

use std::time::Duration;

/// Whether zero is a meaningful value for the flag being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// A delay: zero means at once (`--activate-after 0s`).
    Allowed,
    /// A lifetime or an interval: zero is a mistake (`--ttl 0s`).
    Refused,
}

/// Why a command-line value is not a usable duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {text:?}: {reason} (use e.g. 90s, 30m, 1h, 8760h)")]
    Syntax { text: String, reason: String },
    #[error("invalid duration {text:?}: must be longer than zero")]
    Zero { text: String },
}

/// Parses a duration such as `250ms`, `1h` or `8760h`.
pub fn parse(text: &str, zero: Zero) -> Result<Duration, DurationError> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| DurationError::Syntax { text: text.to_owned(), reason: e.to_string() })?;
    if duration.is_zero() && zero == Zero::Refused {
        return Err(DurationError::Zero { text: text.to_owned() });
    }
    Ok(duration)
}

/// Formats a duration for people in the units `--ttl` takes, rounded down to whole seconds (`8759h 59m 50s`).
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let parts = [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
    let text: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if text.is_empty() { "0s".to_owned() } else { text.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_units() {
        assert_eq!(parse("250ms", Zero::Refused).unwrap(), Duration::from_millis(250));
        assert_eq!(parse("90s", Zero::Refused).unwrap(), Duration::from_secs(90));
        assert_eq!(parse(" 30m ", Zero::Refused).unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("8760h", Zero::Refused).unwrap(), Duration::from_secs(8760 * 3600));
    }

    #[test]
    fn refuses_garbage_and_zero_where_zero_means_nothing() {
        for zero in [Zero::Allowed, Zero::Refused] {
            assert!(matches!(parse("5x", zero), Err(DurationError::Syntax { .. })));
            assert!(matches!(parse("", zero), Err(DurationError::Syntax { .. })));
            assert!(matches!(parse("-1h", zero), Err(DurationError::Syntax { .. })));
        }
        assert_eq!(parse("0s", Zero::Refused), Err(DurationError::Zero { text: "0s".into() }));
        assert_eq!(parse("0s", Zero::Allowed), Ok(Duration::ZERO));
    }

    #[test]
    fn human_rounds_to_seconds() {
        assert_eq!(human(Duration::from_millis(3_599_999)), "59m 59s");
        assert_eq!(human(Duration::from_secs(9000 * 3600)), "9000h");
        assert_eq!(human(Duration::from_secs(8760 * 3600 - 10)), "8759h 59m 50s");
        assert_eq!(human(Duration::from_millis(999)), "0s");
    }
}
