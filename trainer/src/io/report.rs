//! `trainer report RUN [RUN...]`: one self-contained HTML page comparing training runs from
//! their files: the curves of metrics.jsonl (SVG drawn with plotters, inlined), the final
//! figures, the samples the runs wrote, and the config fields that differ between them (from
//! the newest checkpoint's trainer_state.json).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::dist::consistency::flatten;
use crate::engine::METRICS_FILE;
use crate::io::checkpoint::{self, CHECKPOINTS_DIR};

/// The curves drawn, as (metrics kind, field, title).
const CURVES: [(&str, &str, &str); 7] = [
    ("train", "loss", "Training loss"),
    ("eval", "val_loss", "Validation loss"),
    ("train", "lr", "Learning rate"),
    ("train", "grad_norm", "Gradient norm (before clipping)"),
    ("train", "tokens_per_s", "Tokens per second (whole job)"),
    ("train", "mfu", "MFU"),
    ("train", "comm_s", "Seconds per step in collectives"),
];

/// One run's files.
struct Run {
    name: String,
    lines: Vec<Value>,
    config: Vec<(String, String)>,
}

impl Run {
    fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(METRICS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is {} a run?)", path.display(), dir.display()))?;
        let lines = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let mut config = Vec::new();
        if let Some(ckpt) = checkpoint::latest(&dir.join(CHECKPOINTS_DIR))? {
            let state = ckpt.join(checkpoint::STATE_FILE);
            let text = std::fs::read_to_string(&state)
                .with_context(|| format!("reading {}", state.display()))?;
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", state.display()))?;
            for key in ["config", "post", "world_size"] {
                flatten(&value[key], key, &mut config);
            }
        }
        Ok(Self {
            name: dir.display().to_string(),
            lines,
            config,
        })
    }

    fn series(&self, kind: &str, field: &str) -> Vec<(f64, f64)> {
        self.lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .filter_map(|l| Some((l["step"].as_f64()?, l[field].as_f64()?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }

    fn last(&self, kind: &str, field: &str) -> Option<f64> {
        self.series(kind, field).last().map(|(_, v)| *v)
    }
}

#[derive(Serialize)]
struct Chart {
    title: String,
    svg: minijinja::Value,
}

#[derive(Serialize)]
struct Sample {
    run: String,
    step: u64,
    text: String,
}

fn line_chart(title: &str, runs: &[(String, Vec<(f64, f64)>)]) -> Result<Chart> {
    let points = runs.iter().flat_map(|(_, s)| s.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points {
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, (name, series)) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    series.clone(),
                    color.stroke_width(2),
                )))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(Chart {
        title: title.to_string(),
        svg: minijinja::Value::from_safe_string(svg),
    })
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jielong training report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 900px; color: #222; }
table { border-collapse: collapse; } td, th { padding: .25rem .8rem; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .4rem; margin: 0; }
</style></head><body>
<h1>Training report</h1>
<h2>Final figures</h2>
<table><tr><th>run</th>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in finals %}<tr><td><code>{{ row[0] }}</code></td>{% for v in row[1] %}<td class="n">{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
<h2>Config differences</h2>
{% if diffs %}<table><tr><th>field</th>{% for r in runs %}<th><code>{{ r }}</code></th>{% endfor %}</tr>
{% for d in diffs %}<tr><td><code>{{ d[0] }}</code></td>{% for v in d[1] %}<td><code>{{ v }}</code></td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>None: the runs' newest checkpoints record the same config (or have none).</p>{% endif %}
<h2>Curves</h2>
{% for chart in charts %}<figure><figcaption>{{ chart.title }}</figcaption>{{ chart.svg }}</figure>{% endfor %}
<h2>Samples</h2>
{% if samples %}<table><tr><th>run</th><th>step</th><th>text</th></tr>
{% for s in samples %}<tr><td><code>{{ s.run }}</code></td><td class="n">{{ s.step }}</td><td><pre>{{ s.text }}</pre></td></tr>{% endfor %}</table>
{% else %}<p>No samples (sample.every = 0).</p>{% endif %}
</body></html>
"#;

fn figure(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// Writes the page comparing `runs` (run directories) to `out`.
pub fn report(runs: &[PathBuf], out: &Path) -> Result<()> {
    anyhow::ensure!(!runs.is_empty(), "no run to report on");
    let runs: Vec<Run> = runs.iter().map(|d| Run::load(d)).collect::<Result<_>>()?;
    let headers = [
        "steps", "loss", "val_loss", "tokens", "tokens/s", "MFU", "ranks",
    ];
    let finals: Vec<(String, Vec<String>)> = runs
        .iter()
        .map(|r| {
            let ranks = r
                .config
                .iter()
                .find(|(k, _)| k == "world_size")
                .map_or("1".to_string(), |(_, v)| v.clone());
            (
                r.name.clone(),
                vec![
                    r.last("train", "step")
                        .map_or("-".into(), |s| format!("{s:.0}")),
                    figure(r.last("train", "loss")),
                    figure(r.last("eval", "val_loss")),
                    figure(r.last("train", "tokens")),
                    figure(r.last("train", "tokens_per_s")),
                    figure(r.last("train", "mfu")),
                    ranks,
                ],
            )
        })
        .collect();
    let mut fields: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        for (k, v) in &run.config {
            fields
                .entry(k.as_str())
                .or_insert_with(|| vec!["-".to_string(); runs.len()])[i] = v.clone();
        }
    }
    let diffs: Vec<(&str, Vec<String>)> = fields
        .into_iter()
        .filter(|(_, vs)| vs.iter().any(|v| v != &vs[0]))
        .collect();
    let mut charts = Vec::new();
    for (kind, field, title) in CURVES {
        let series: Vec<(String, Vec<(f64, f64)>)> = runs
            .iter()
            .map(|r| (r.name.clone(), r.series(kind, field)))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if !series.is_empty() {
            charts.push(line_chart(title, &series)?);
        }
    }
    let samples: Vec<Sample> = runs
        .iter()
        .flat_map(|r| {
            r.lines
                .iter()
                .filter(|l| l["kind"] == "sample")
                .map(|l| Sample {
                    run: r.name.clone(),
                    step: l["step"].as_u64().unwrap_or(0),
                    text: l["text"].as_str().unwrap_or_default().to_string(),
                })
        })
        .collect();
    let mut env = minijinja::Environment::new();
    // A name ending in .html turns on HTML escaping: sample text is model output.
    env.add_template("report.html", PAGE)?;
    let html = env
        .get_template("report.html")?
        .render(minijinja::context! {
            headers => headers,
            finals => finals,
            runs => runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            diffs => diffs,
            charts => charts,
            samples => samples,
        })
        .context("rendering the report")?;
    std::fs::write(out, html).with_context(|| format!("writing {}", out.display()))
}
