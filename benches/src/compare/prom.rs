//! The sidecar's handshake histogram from two `/metrics` scrapes, its p50 the way Prometheus'
//! `histogram_quantile` estimates it, and the same estimate applied to `handshake-load`'s own latencies
//! bucketed alike, so the two can be compared at equal resolution.

use crate::histogram::Point;

/// Cumulative counts per upper bound (`le`, seconds), ascending; the last bound is `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(pub Vec<(f64, f64)>);

/// The `_bucket` series of histogram `name` whose labels include all of `labels`, from Prometheus text.
pub fn buckets(text: &str, name: &str, labels: &[(&str, &str)]) -> Buckets {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (inner, value) = rest.split_once('}')?;
            let pairs = parse_labels(inner);
            let has = |k: &str, v: &str| pairs.iter().any(|(pk, pv)| pk == k && pv == v);
            if !labels.iter().all(|(k, v)| has(k, v)) {
                return None;
            }
            let le = pairs.iter().find(|(k, _)| k == "le")?.1.as_str();
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Buckets(out)
}

/// `k="v",k2="v2"` (values without escaped quotes, as the sidecar writes them).
fn parse_labels(inner: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = inner;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else { break };
        pairs.push((key.trim_start_matches(',').trim().to_string(), value.to_string()));
        rest = tail;
    }
    pairs
}

impl Buckets {
    /// `after - before`, bucket by bucket (the observations made between two scrapes).
    pub fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let earlier = before.0.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m);
                    (le, n - earlier)
                })
                .collect(),
        )
    }

    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, n)| *n)
    }

    /// Prometheus' `histogram_quantile(q, ...)`: find the bucket holding rank `q * count` and interpolate
    /// linearly inside it (from 0 for the first bucket); a rank in the `+Inf` bucket gives the highest finite
    /// bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || self.0.len() < 2 {
            return None;
        }
        let rank = q * total;
        let i = self.0.iter().position(|(_, n)| *n >= rank)?;
        let (upper, count) = self.0[i];
        let (lower, below) = if i == 0 { (0.0, 0.0) } else { self.0[i - 1] };
        if upper.is_infinite() {
            return Some(lower);
        }
        if count == below {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / (count - below))
    }

    /// The bucket `(lower, upper]` holding rank `q * count`.
    pub fn bucket_of(&self, q: f64) -> Option<(f64, f64)> {
        let rank = q * self.count();
        let i = self.0.iter().position(|(_, n)| *n >= rank)?;
        Some((if i == 0 { 0.0 } else { self.0[i - 1].0 }, self.0[i].0))
    }

    /// The same bounds filled from a latency distribution (`handshake-load --histogram-out`, values in ms):
    /// the count at or below each bound, interpolated between the distribution's rows.
    pub fn from_distribution(bounds: &[f64], points: &[Point]) -> Buckets {
        let total = points.last().map_or(0.0, |p| p.total_count as f64);
        Buckets(bounds.iter().map(|&le| (le, total * fraction_at_or_below(points, le * 1000.0))).collect())
    }

    pub fn bounds(&self) -> Vec<f64> {
        self.0.iter().map(|(le, _)| *le).collect()
    }
}

/// The fraction of a distribution at or below `value`, interpolated linearly between its rows.
pub fn fraction_at_or_below(points: &[Point], value: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return 0.0 };
    let total = last.total_count as f64;
    if total == 0.0 || value < first.value {
        return 0.0;
    }
    if value >= last.value {
        return 1.0;
    }
    let i = points.iter().rposition(|p| p.value <= value).unwrap_or(0);
    let (a, b) = (points[i], points[(i + 1).min(points.len() - 1)]);
    let share = if b.value > a.value { (value - a.value) / (b.value - a.value) } else { 0.0 };
    (a.total_count as f64 + share * (b.total_count as f64 - a.total_count as f64)) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP sidecar_tls_handshake_duration_seconds x
# TYPE sidecar_tls_handshake_duration_seconds histogram
sidecar_tls_handshake_duration_seconds_bucket{direction="inbound",result="ok",le="0.00025"} 0
sidecar_tls_handshake_duration_seconds_bucket{direction="inbound",result="ok",le="0.0005"} 10
sidecar_tls_handshake_duration_seconds_bucket{direction="inbound",result="ok",le="0.001"} 90
sidecar_tls_handshake_duration_seconds_bucket{direction="inbound",result="ok",le="+Inf"} 100
sidecar_tls_handshake_duration_seconds_bucket{direction="outbound",result="ok",le="0.0005"} 7
sidecar_tls_handshake_duration_seconds_count{direction="inbound",result="ok"} 100
"#;

    fn inbound(text: &str) -> Buckets {
        buckets(text, "sidecar_tls_handshake_duration_seconds", &[("direction", "inbound"), ("result", "ok")])
    }

    #[test]
    fn the_quantile_interpolates_inside_the_bucket_like_prometheus() {
        let b = inbound(SCRAPE);
        assert_eq!(b.0.len(), 4);
        assert_eq!(b.count(), 100.0);
        // Rank 50 lies in (0.5 ms, 1 ms], 40 of its 80 observations in: half way.
        assert!((b.quantile(0.5).unwrap() - 0.00075).abs() < 1e-12);
        assert_eq!(b.bucket_of(0.5), Some((0.0005, 0.001)));
        // Rank 95 is in +Inf: the highest finite bound.
        assert_eq!(b.quantile(0.95), Some(0.001));
        assert_eq!(Buckets(vec![]).quantile(0.5), None);
    }

    #[test]
    fn a_delta_keeps_only_what_happened_between_scrapes() {
        let before = inbound(&SCRAPE.replace("} 90", "} 50").replace("} 100", "} 60"));
        let delta = inbound(SCRAPE).since(&before);
        assert_eq!(delta.count(), 40.0);
        assert_eq!(delta.0[2], (0.001, 40.0));
    }

    #[test]
    fn a_distribution_fills_the_same_buckets() {
        let p = |value, percentile, total_count| Point { value, percentile, total_count };
        let points = [p(0.4, 0.0, 1), p(0.6, 0.5, 50), p(0.8, 0.9, 90), p(2.0, 1.0, 100)];
        assert_eq!(fraction_at_or_below(&points, 0.3), 0.0);
        assert!((fraction_at_or_below(&points, 0.7) - 0.7).abs() < 1e-9);
        assert_eq!(fraction_at_or_below(&points, 5.0), 1.0);
        let b = Buckets::from_distribution(&[0.0005, 0.001, f64::INFINITY], &points);
        assert_eq!(b.count(), 100.0);
        assert!((b.0[0].1 - 25.5).abs() < 1e-9, "{b:?}");
    }
}
