//! A latency percentile plot as a self-contained SVG, in the style of HdrHistogram's plotter: latency on a
//! linear y axis against percentile on a log x axis (`1/(1-p)`: 90 %, 99 %, 99.9 %, ... equally spaced), so
//! the tail is as wide as the body. Several series (one per distribution file) share the axes.

use std::fmt::{self, Write};

use crate::histogram::Point;

/// One curve.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// The x coordinate (decades of `1/(1-p)`) of a finite percentile.
fn decades(percentile: f64) -> Option<f64> {
    (percentile < 1.0).then(|| (1.0 / (1.0 - percentile)).log10())
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for decade `d`.
fn decade_label(d: u32) -> String {
    match d {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks up to `max`.
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| m * magnitude >= raw).unwrap_or(10.0);
    step * magnitude
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Draws `series` under `title`. Rows at 100 % (the maximum, which has no finite `1/(1-p)`) are left off
/// the curve and shown in the legend instead.
pub fn render_svg(series: &[Series], title: &str) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = draw(&mut out, series, title);
    out
}

fn draw(out: &mut String, series: &[Series], title: &str) -> fmt::Result {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all().filter_map(|p| decades(p.percentile)).fold(1.0f64, f64::max).ceil();
    let y_top = all().map(|p| p.value).fold(0.0f64, f64::max);
    let y_step = nice_step(if y_top > 0.0 { y_top } else { 1.0 }, 6.0);
    let y_max = (y_top / y_step).ceil().max(1.0) * y_step;
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let px = |d: f64| LEFT + d / x_max * plot_w;
    let py = |v: f64| TOP + plot_h - v / y_max * plot_h;

    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">"#
    )?;
    writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        out,
        r#"<text x="{}" y="32" text-anchor="middle" font-size="18" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    )?;

    // Grid and tick labels.
    let x_decades = x_max as u32;
    for d in 0..=x_decades {
        let x = px(f64::from(d));
        writeln!(out, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#dddddd"/>"##, TOP + plot_h)?;
        writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 20.0,
            decade_label(d)
        )?;
    }
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let y = py(v);
        writeln!(out, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##, LEFT + plot_w)?;
        writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            tick_text(v, y_step)
        )?;
        v += y_step;
    }
    writeln!(out, r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444444"/>"##)?;
    writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0
    )?;
    writeln!(
        out,
        r#"<text x="22" y="{:.1}" text-anchor="middle" transform="rotate(-90 22 {:.1})">Latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    )?;

    // Curves, then the legend over the empty top-left corner (curves rise to the right).
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter_map(|p| decades(p.percentile).map(|d| format!("{:.1},{:.1}", px(d), py(p.value))))
            .collect();
        writeln!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "))?;
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let y = TOP + 22.0 + 20.0 * i as f64;
        let x = LEFT + 16.0;
        writeln!(
            out,
            r#"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/>"#,
            y - 4.0,
            x + 24.0,
            y - 4.0
        )?;
        writeln!(out, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, x + 32.0, escape(&legend(s)))?;
    }
    writeln!(out, "</svg>")
}

/// `label: p50 0.912 · p90 1.23 · max 12.0 ms (28765 samples)`. Only the percentiles the file has rows for
/// exactly (its steps hit 50 % and 90 %, but not 99 %): the curve shows the rest.
fn legend(s: &Series) -> String {
    let at = |q: f64| s.points.iter().find(|p| p.percentile >= q - 1e-9).map(|p| p.value);
    let last = s.points.last();
    match (at(0.5), at(0.9), last) {
        (Some(p50), Some(p90), Some(max)) => format!(
            "{}: p50 {} · p90 {} · max {} ms ({} samples)",
            s.label,
            short(p50),
            short(p90),
            short(max.value),
            max.total_count
        ),
        _ => format!("{}: no samples", s.label),
    }
}

/// Three significant figures, without trailing zeros.
fn short(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.digits$}")
}

fn tick_text(v: f64, step: f64) -> String {
    let digits = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, values: &[(f64, f64)]) -> Series {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, &(percentile, value))| Point { value, percentile, total_count: i as u64 + 1 })
            .collect();
        Series { label: label.into(), points }
    }

    #[test]
    fn percentile_axis_labels_count_nines() {
        let labels: Vec<String> = (0..5).map(decade_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(12.0, 6.0), 2.0);
        assert_eq!(nice_step(0.9, 6.0), 0.2);
        assert_eq!(nice_step(70.0, 6.0), 20.0);
    }

    #[test]
    fn the_svg_has_a_title_axes_a_curve_and_a_legend_per_series() {
        let a = series("sidecar <1>", &[(0.0, 0.4), (0.5, 0.9), (0.9, 1.2), (0.99, 2.5), (0.999, 4.0), (1.0, 9.0)]);
        let b = series("nginx", &[(0.0, 0.5), (0.5, 1.1), (0.99, 3.0), (1.0, 5.0)]);
        let svg = render_svg(&[a, b], "Handshake latency");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">Handshake latency</text>"));
        assert!(svg.contains(">Percentile</text>") && svg.contains(">Latency (ms)</text>"));
        assert!(svg.contains(">99.9%</text>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("sidecar &lt;1&gt;: p50 0.900 · p90 1.20 · max 9.00 ms (6 samples)"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn an_empty_series_still_draws() {
        let svg = render_svg(&[series("empty", &[])], "t");
        assert!(svg.contains("empty: no samples"));
        assert!(!svg.contains("NaN"));
    }
}
