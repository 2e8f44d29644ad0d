//! A self-contained SVG of latency distributions (the percentile spectrum HdrHistogram's
//! plotter draws): latency against percentile on a log scale that stretches the tail, one line
//! per run, so a baseline and a current run can be seen side by side.

use std::fmt::Write as _;

use crate::stats::{LatencyHistogram, percentile_us};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// The plot reaches 99.999 % (five nines).
const NINES: f64 = 5.0;
const COLOURS: [&str; 4] = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"];

/// Renders `series` (a label and a histogram in microseconds each) as an SVG document.
pub fn latency_svg(title: &str, series: &[(&str, &LatencyHistogram)]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // Sample points: quantile q = 1 - 10^-x for x in 0..=NINES, 20 steps per nine.
    let steps = (NINES * 20.0) as usize;
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, h)| {
            (0..=steps)
                .filter(|_| !h.is_empty())
                .map(|i| {
                    let x = i as f64 / 20.0;
                    let q = 1.0 - 10f64.powf(-x);
                    (x, percentile_us(h, q) as f64 / 1000.0)
                })
                .collect()
        })
        .collect();
    let y_max = nice_ceiling(points.iter().flatten().map(|p| p.1).fold(0.0, f64::max));
    let sx = |x: f64| LEFT + x / NINES * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and axes.
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = sy(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(v)
        );
    }
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = sx(i as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // Lines and legend.
    for (i, ((label, h), pts)) in series.iter().zip(&points).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 8.0 + 18.0 * i as f64;
        let summary = if h.is_empty() {
            "no data".to_owned()
        } else {
            format!(
                "p50 {} · p99 {} · max {} · n={}",
                fmt_ms(percentile_us(h, 0.5) as f64 / 1000.0),
                fmt_ms(percentile_us(h, 0.99) as f64 / 1000.0),
                fmt_ms(h.max() as f64 / 1000.0),
                h.len()
            )
        };
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            LEFT + 12.0,
            ly - 2.0,
            LEFT + 32.0,
            ly + 4.0,
            escape(label),
            escape(&summary)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for nothing).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn renders_both_series_with_labels_and_escapes_text() {
        let mut base = new_histogram();
        let mut cur = new_histogram();
        for v in 1..=1000u64 {
            base.record(v * 50).unwrap();
            cur.record(v * 60).unwrap();
        }
        let svg = latency_svg("a <b> & c", &[("baseline", &base), ("current", &cur)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains("baseline (p50 25.0 ms"), "{svg}");
        assert!(svg.contains("99.999%"));
        insta::assert_snapshot!(svg);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(61.0), 100.0);
        assert_eq!(nice_ceiling(0.15), 0.2);
    }
}
