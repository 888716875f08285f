//! Small server-rendered SVG charts for the dashboard: horizontal bars, stacked bars and
//! intervals. Every piece of text is XML-escaped here, since the templates insert the SVG
//! as markup (the page has no script: the charts need none).

use std::fmt::Write;

const WIDTH: f64 = 480.0;
const LABEL: f64 = 130.0;
const ROW: f64 = 22.0;
pub const PALETTE: [&str; 8] = [
    "#2a6f97", "#e07a1f", "#3a9d5d", "#c0392b", "#8e6bbf", "#8c564b", "#d35fb7", "#7f7f7f",
];

/// Escapes text for SVG/XML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(height: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}">"#,
        esc(title)
    )
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One bar per row, scaled to `max` (the largest value when `None`).
pub fn bars(title: &str, rows: &[(String, f64)], max: Option<f64>) -> String {
    let height = ROW * rows.len().max(1) as f64 + 10.0;
    let max = max
        .unwrap_or_else(|| rows.iter().map(|r| r.1).fold(0.0, f64::max))
        .max(1e-9);
    let span = WIDTH - LABEL - 60.0;
    let mut svg = open(height, title);
    if rows.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="4" y="16" fill="#666">no data yet</text>"##
        );
    }
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * ROW;
        let w = (value.max(0.0) / max * span).max(0.0);
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text><rect x="{LABEL}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{}: {}</title></rect><text x="{}" y="{}" font-size="12">{}</text>"##,
            LABEL - 6.0,
            y + 14.0,
            esc(label),
            ROW - 6.0,
            PALETTE[0],
            esc(label),
            fmt_value(*value),
            LABEL + w + 4.0,
            y + 14.0,
            fmt_value(*value),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One stacked bar per row: `segments[i]` are the parts of row i, coloured by `series`.
pub fn stacked(title: &str, series: &[String], rows: &[(String, Vec<f64>)]) -> String {
    let legend = 18.0;
    let height = ROW * rows.len().max(1) as f64 + 10.0 + legend;
    let max = rows
        .iter()
        .map(|r| r.1.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-9);
    let span = WIDTH - LABEL - 60.0;
    let mut svg = open(height, title);
    let mut x = 4.0;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="3" width="10" height="10" fill="{color}"/><text x="{}" y="12" font-size="11">{}</text>"##,
            x + 13.0,
            esc(s)
        );
        x += 20.0 + 7.0 * s.chars().count() as f64;
    }
    if rows.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" fill="#666">no data yet</text>"##,
            legend + 16.0
        );
    }
    for (i, (label, parts)) in rows.iter().enumerate() {
        let y = legend + 5.0 + i as f64 * ROW;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>"#,
            LABEL - 6.0,
            y + 14.0,
            esc(label)
        );
        let mut x = LABEL;
        for (j, v) in parts.iter().enumerate() {
            let w = v.max(0.0) / max * span;
            let name = series.get(j).map(String::as_str).unwrap_or("");
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                ROW - 6.0,
                PALETTE[j % PALETTE.len()],
                esc(name),
                fmt_value(*v)
            );
            x += w;
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="12">{}</text>"#,
            x + 4.0,
            y + 14.0,
            fmt_value(parts.iter().sum())
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A point with its interval per row (the Bradley-Terry scores), on a shared axis.
pub fn intervals(title: &str, rows: &[(String, f64, f64, f64)]) -> String {
    let height = ROW * rows.len().max(1) as f64 + 26.0;
    let lo = rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|r| r.3).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (-1.0, 1.0)
    };
    let span = WIDTH - LABEL - 20.0;
    let sx = |v: f64| LABEL + (v - lo) / (hi - lo) * span;
    let mut svg = open(height, title);
    if rows.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="4" y="16" fill="#666">no comparisons yet</text>"##
        );
    }
    for (i, (label, score, l, h)) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * ROW + 9.0;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text><line x1="{:.1}" x2="{:.1}" y1="{y}" y2="{y}" stroke="#555" stroke-width="2"/><circle cx="{:.1}" cy="{y}" r="5" fill="{}"><title>{}: {:.3} [{:.3}, {:.3}]</title></circle>"##,
            LABEL - 6.0,
            y + 4.0,
            esc(label),
            sx(*l),
            sx(*h),
            sx(*score),
            PALETTE[1],
            esc(label),
            score,
            l,
            h
        );
    }
    let axis_y = height - 6.0;
    let _ = write!(
        svg,
        r##"<text x="{LABEL}" y="{axis_y}" font-size="11" fill="#555">{lo:.2}</text><text x="{}" y="{axis_y}" font-size="11" fill="#555" text-anchor="end">{hi:.2}</text>"##,
        LABEL + span
    );
    svg.push_str("</svg>");
    svg
}
