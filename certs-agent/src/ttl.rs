//! Certificate lifetimes given on the command line (`--ttl 1h`, `90m`, `8760h`).
//!
//! Parsed with `humantime`, so `ms`, `s`, `m` and `h` (SPEC §2) and a few longer units are accepted. A zero
//! lifetime is refused here rather than producing a certificate that is already expired.

use std::time::Duration;

/// Why a `--ttl` value is not a usable lifetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("invalid duration {text:?}: {reason} (use e.g. 90s, 30m, 1h, 8760h)")]
    Syntax { text: String, reason: String },
    #[error("invalid duration {text:?}: a certificate lifetime must be longer than zero")]
    Zero { text: String },
}

/// Parses a lifetime such as `1h` or `8760h`.
pub fn parse_ttl(text: &str) -> Result<Duration, TtlError> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|e| TtlError::Syntax { text: text.to_owned(), reason: e.to_string() })?;
    if ttl.is_zero() {
        return Err(TtlError::Zero { text: text.to_owned() });
    }
    Ok(ttl)
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
        assert_eq!(parse_ttl("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("8760h").unwrap(), Duration::from_secs(8760 * 3600));
    }

    #[test]
    fn refuses_garbage_and_zero() {
        assert!(matches!(parse_ttl("5x"), Err(TtlError::Syntax { .. })));
        assert!(matches!(parse_ttl(""), Err(TtlError::Syntax { .. })));
        assert!(matches!(parse_ttl("-1h"), Err(TtlError::Syntax { .. })));
        assert_eq!(parse_ttl("0s"), Err(TtlError::Zero { text: "0s".into() }));
    }

    #[test]
    fn human_rounds_to_seconds() {
        assert_eq!(human(Duration::from_millis(3_599_999)), "59m 59s");
        assert_eq!(human(Duration::from_secs(9000 * 3600)), "9000h");
        assert_eq!(human(Duration::from_secs(8760 * 3600 - 10)), "8759h 59m 50s");
        assert_eq!(human(Duration::from_millis(999)), "0s");
    }
}
