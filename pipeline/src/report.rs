//! `pipeline report RUN`: an HTML page with charts of a clean run (documents kept and
//! dropped per stage, language mix, document lengths, duplicate-cluster sizes) and, given a
//! tokenized dataset, its token-length distribution. Numbers come from the run's docs tables
//! through polars; charts are SVG drawn with plotters and inlined, so the page is one file
//! that works offline.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use format::Dataset;
use plotters::prelude::*;
use polars::prelude::{DataType, LazyFrame, PlRefPath, ScanArgsParquet, col, len};

/// One chart: a title and its SVG.
#[derive(Debug, Clone, serde::Serialize)]
struct Chart {
    title: String,
    svg: minijinja::Value,
}

/// Counts by key from a group-by on the docs tables.
fn counts_by(frame: LazyFrame, key: &str) -> Result<Vec<(String, u64)>> {
    let grouped = frame
        .group_by([col(key)])
        .agg([len().alias("n")])
        .collect()
        .with_context(|| format!("counting by {key}"))?;
    let keys = grouped.column(key)?.cast(&DataType::String)?;
    let keys = keys.str()?;
    let n = grouped.column("n")?.cast(&DataType::UInt64)?;
    let n = n.u64()?;
    let mut out: Vec<(String, u64)> = (0..grouped.height())
        .map(|i| {
            (
                keys.get(i).unwrap_or("(none)").to_string(),
                n.get(i).unwrap_or(0),
            )
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Power-of-two buckets: label "≤2^k" -> count.
fn log2_histogram(values: impl Iterator<Item = u64>) -> Vec<(String, u64)> {
    let mut buckets: BTreeMap<u32, u64> = BTreeMap::new();
    for v in values {
        let b = if v <= 1 {
            0
        } else {
            64 - (v - 1).leading_zeros()
        };
        *buckets.entry(b).or_default() += 1;
    }
    buckets
        .into_iter()
        .map(|(b, n)| (format!("≤{}", 1u64 << b), n))
        .collect()
}

fn bar_chart(title: &str, data: &[(String, u64)]) -> Result<Chart> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let max = data.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d((0..data.len()).into_segmented(), 0u64..max + max / 8 + 1)
            .map_err(|e| anyhow!("{e}"))?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => data.get(*i).map(|(l, _)| l.clone()).unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(data.len().max(1))
            .x_label_formatter(&label)
            .x_label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(RGBColor(52, 101, 164).filled())
                    .margin(6)
                    .data(data.iter().enumerate().map(|(i, (_, v))| (i, *v))),
            )
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(Chart {
        title: title.to_string(),
        svg: minijinja::Value::from_safe_string(svg),
    })
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jielong report: {{ run }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 820px; color: #222; }
table { border-collapse: collapse; } td, th { padding: .25rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
</style></head><body>
<h1>Pipeline report</h1>
<p>Run <code>{{ run }}</code>{% if dataset %}, dataset <code>{{ dataset }}</code>{% endif %}.</p>
<table>{% for row in summary %}<tr><th>{{ row[0] }}</th><td class="n">{{ row[1] }}</td></tr>{% endfor %}</table>
{% for chart in charts %}<figure><figcaption>{{ chart.title }}</figcaption>{{ chart.svg }}</figure>{% endfor %}
</body></html>
"#;

/// Writes `out` (HTML) for the clean run in `run_dir` and, optionally, a tokenized dataset.
pub fn report(run_dir: &Path, dataset: Option<&Path>, out: &Path) -> Result<()> {
    let pattern = run_dir.join("docs-*.parquet").display().to_string();
    let scan = || {
        LazyFrame::scan_parquet(PlRefPath::new(pattern.as_str()), ScanArgsParquet::default())
            .with_context(|| format!("reading {pattern} (is {} a clean run?)", run_dir.display()))
    };
    let by_stage: Vec<(String, u64)> = counts_by(scan()?, "dropped_by")?
        .into_iter()
        .map(|(k, n)| (if k == "(none)" { "kept".to_string() } else { k }, n))
        .collect();
    let total: u64 = by_stage.iter().map(|(_, n)| n).sum();
    let kept = by_stage
        .iter()
        .find(|(k, _)| k == "kept")
        .map_or(0, |(_, n)| *n);
    let mut langs = counts_by(scan()?, "lang")?;
    if langs.len() > 12 {
        let rest: u64 = langs[11..].iter().map(|(_, n)| n).sum();
        langs.truncate(11);
        langs.push(("other".into(), rest));
    }
    let frame = scan()?
        .select([col("chars"), col("dropped_by"), col("minhash_cluster_size")])
        .collect()
        .context("reading lengths")?;
    let chars = frame.column("chars")?.u64()?;
    let dropped = frame.column("dropped_by")?.str()?;
    let sizes = frame.column("minhash_cluster_size")?.u64()?;
    let all_lengths = log2_histogram((0..frame.height()).filter_map(|i| chars.get(i)));
    let kept_lengths = log2_histogram(
        (0..frame.height())
            .filter(|&i| dropped.get(i).is_none())
            .filter_map(|i| chars.get(i)),
    );
    let cluster_sizes = log2_histogram(
        (0..frame.height())
            .filter(|&i| dropped.get(i).is_none())
            .filter_map(|i| sizes.get(i)),
    );

    let mut summary = vec![
        ("documents in".to_string(), total.to_string()),
        (
            "documents kept".to_string(),
            format!("{kept} ({:.1}%)", 100.0 * kept as f64 / total.max(1) as f64),
        ),
    ];
    for (stage, n) in by_stage.iter().filter(|(k, _)| k != "kept") {
        summary.push((format!("dropped by {stage}"), n.to_string()));
    }
    let mut charts = vec![
        bar_chart(
            "Documents by outcome (kept, or the stage that dropped them)",
            &by_stage,
        )?,
        bar_chart("Language mix (all input documents)", &langs)?,
        bar_chart(
            "Document length in characters (all documents)",
            &all_lengths,
        )?,
        bar_chart(
            "Document length in characters (kept documents)",
            &kept_lengths,
        )?,
        bar_chart(
            "Near-duplicate cluster size of kept documents",
            &cluster_sizes,
        )?,
    ];
    if let Some(dir) = dataset {
        let data = Dataset::open(dir)?;
        let mut lengths = Vec::new();
        for s in 0..data.num_shards() {
            let shard = data.shard(s)?;
            for batch in shard.batches() {
                for &column in data.kind().token_columns() {
                    let tokens = batch.tokens(column)?;
                    let offsets = match tokens {
                        format::Tokens::U16(v) => v.offsets(),
                        format::Tokens::U32(v) => v.offsets(),
                    };
                    lengths.extend(offsets.windows(2).map(|w| (w[1] - w[0]) as u64));
                }
            }
        }
        let m = data.manifest();
        summary.push(("dataset rows".into(), m.totals.rows.to_string()));
        summary.push(("dataset tokens".into(), m.totals.tokens.to_string()));
        charts.push(bar_chart(
            "Tokens per row (dataset)",
            &log2_histogram(lengths.into_iter()),
        )?);
    }
    let env = minijinja::Environment::new();
    let html = env
        .render_str(
            PAGE,
            minijinja::context! {
                run => run_dir.display().to_string(),
                dataset => dataset.map(|d| d.display().to_string()),
                summary => summary,
                charts => charts,
            },
        )
        .context("rendering the report")?;
    std::fs::write(out, html).with_context(|| format!("writing {}", out.display()))
}
