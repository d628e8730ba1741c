//! The latency distribution file: HdrHistogram's standard percentile-distribution text (what Java's
//! `outputPercentileDistribution`, wrk2 and the HdrHistogram online plotter use), values in milliseconds.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.412 0.000000000000          1           1.00
//!        0.655 0.100000000000        290           1.11
//!        ...
//!       12.031 1.000000000000       2876
//! #[Mean    =        0.712, StdDeviation   =        0.301]
//! #[Max     =       12.031, Total count    =         2876]
//! #[Buckets =           22, SubBuckets     =         2048]
//! ```

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Percentile steps per halving of the distance to 100 % (HdrHistogram's usual 5).
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One row of the distribution: `percentile` (0..=1) of the values are at or below `value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub value: f64,
    pub percentile: f64,
    pub total_count: u64,
}

/// Writes `hist` (recorded in units of `1/unit_per_output` output units, e.g. µs with 1000.0 for ms).
pub fn write_distribution(hist: &Histogram<u64>, unit_per_output: f64, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    let scaled = |v: u64| v as f64 / unit_per_output;
    let mut total = 0u64;
    if !hist.is_empty() {
        for step in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let value = scaled(hist.highest_equivalent(step.value_iterated_to()));
            let p = step.quantile_iterated_to();
            if p < 1.0 {
                writeln!(out, "{value:>12.3} {p:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - p))?;
            } else {
                writeln!(out, "{value:>12.3} {p:>2.12} {total:>10}")?;
            }
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean() / unit_per_output,
        hist.stdev() / unit_per_output
    )?;
    writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", scaled(hist.max()), hist.len())?;
    // HdrHistogram's sub-bucket count: the power of two that resolves `sigfig` decimal digits.
    let sub_buckets = (2 * 10u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", hist.buckets(), sub_buckets)
}

/// Reads the rows of a distribution file; headers, blank lines and `#` lines are skipped.
pub fn parse_distribution(text: &str) -> Result<Vec<Point>, ParseError> {
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let bad = || ParseError { line: index + 1, text: line.to_string() };
        let mut cols = line.split_whitespace();
        let value = cols.next().and_then(|v| v.parse::<f64>().ok()).ok_or_else(bad)?;
        let percentile = cols.next().and_then(|v| v.parse::<f64>().ok()).ok_or_else(bad)?;
        let total_count = cols.next().and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad)?;
        if !(0.0..=1.0).contains(&percentile) || !value.is_finite() {
            return Err(bad());
        }
        points.push(Point { value, percentile, total_count });
    }
    Ok(points)
}

/// A line of a distribution file that is not `VALUE PERCENTILE TOTALCOUNT [...]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected `VALUE PERCENTILE TOTALCOUNT [1/(1-PERCENTILE)]`, found {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_distribution_reads_back() {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1..=10_000u64 {
            hist.record(us * 10).unwrap(); // 10 us .. 100 ms
        }
        let mut out = Vec::new();
        write_distribution(&hist, 1000.0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
        assert!(text.contains("#[Max     =      100.031, Total count    =        10000]"), "{text}");

        let points = parse_distribution(&text).unwrap();
        let last = points.last().unwrap();
        assert_eq!(last.percentile, 1.0);
        assert_eq!(last.total_count, 10_000);
        assert!((last.value - 100.0).abs() < 0.1);
        let median = points.iter().find(|p| p.percentile >= 0.5).unwrap();
        assert!((median.value - 50.0).abs() < 0.1, "{median:?}");
        assert!(points.windows(2).all(|w| w[0].value <= w[1].value && w[0].percentile <= w[1].percentile));
    }

    #[test]
    fn an_empty_histogram_writes_no_rows() {
        let hist = Histogram::<u64>::new(3).unwrap();
        let mut out = Vec::new();
        write_distribution(&hist, 1000.0, &mut out).unwrap();
        assert!(parse_distribution(&String::from_utf8(out).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_row_names_its_line() {
        let err = parse_distribution("       Value     Percentile\n\n  1.0 0.5 10\n  abc 0.9 12\n").unwrap_err();
        assert_eq!(err.line, 4);
    }
}
