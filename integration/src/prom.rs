//! Reading `/metrics`: parsed with `prometheus-parse` (so a malformed exposition fails the test), then looked
//! up by name and labels.

use prometheus_parse::{Sample, Scrape, Value};

/// A parsed scrape.
pub struct Metrics {
    pub scrape: Scrape,
}

impl Metrics {
    /// Parses the Prometheus text format; fails if it does not parse.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = Scrape::parse(lines).map_err(|e| anyhow::anyhow!("/metrics does not parse: {e}"))?;
        Ok(Self { scrape })
    }

    /// Samples of `name` whose labels include every (key, value) in `labels`.
    pub fn samples<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape
            .samples
            .iter()
            .filter(move |s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The sum of matching counter/gauge samples (0 when none match).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
                Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// The observation count of a histogram: its `_count` series, summed over those matching `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(&format!("{name}_count"), labels)
    }

    /// The `le` buckets of one histogram series (cumulative counts, ascending bounds).
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        self.samples(name, labels)
            .find_map(|s| match &s.value {
                Value::Histogram(h) => Some(h.iter().map(|b| (b.less_than, b.count)).collect()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Whether any sample of `name` (or its histogram series) exists.
    pub fn has(&self, name: &str) -> bool {
        self.scrape.samples.iter().any(|s| {
            s.metric == name
                || s.metric.strip_prefix(name).is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        })
    }
}
