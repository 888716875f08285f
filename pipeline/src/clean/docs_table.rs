//! `docs-NNNNN.parquet`: one row per input document with every score, the stage that dropped
//! it, and its duplicate cluster. Built with polars (the one place the pipeline converts its
//! rows to a polars frame).

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, ParquetWriter};

use super::work::DocRow;

/// Dedup columns of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupInfo {
    /// Global number of the cluster's surviving document.
    pub cluster: Option<u64>,
    pub exact_cluster_size: Option<u64>,
    pub minhash_cluster_size: Option<u64>,
}

/// Writes the docs table of one input.
pub fn write_docs_table(
    path: &Path,
    score_names: &[&str],
    rows: &[(DocRow, DedupInfo)],
) -> Result<()> {
    let strings = |f: &dyn Fn(&DocRow) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(r, _)| f(r)).collect()
    };
    let mut columns: Vec<Column> = vec![
        Column::new(
            "id".into(),
            rows.iter().map(|(r, _)| r.id.clone()).collect::<Vec<_>>(),
        ),
        Column::new("url".into(), strings(&|r| r.url.clone())),
        Column::new(
            "source".into(),
            rows.iter()
                .map(|(r, _)| r.source.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new("lang".into(), strings(&|r| r.lang.clone())),
        Column::new(
            "lang_score".into(),
            rows.iter().map(|(r, _)| r.lang_score).collect::<Vec<_>>(),
        ),
    ];
    for (i, name) in score_names.iter().enumerate() {
        columns.push(Column::new(
            (*name).into(),
            rows.iter()
                .map(|(r, _)| r.scores.get(i).copied().flatten())
                .collect::<Vec<_>>(),
        ));
    }
    columns.extend([
        Column::new("dropped_by".into(), strings(&|r| r.dropped_by.clone())),
        Column::new("drop_reason".into(), strings(&|r| r.drop_reason.clone())),
        Column::new(
            "chars".into(),
            rows.iter().map(|(r, _)| r.chars).collect::<Vec<_>>(),
        ),
        Column::new(
            "pii_redactions".into(),
            rows.iter()
                .map(|(r, _)| r.pii_redactions)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "dup_cluster".into(),
            rows.iter().map(|(_, d)| d.cluster).collect::<Vec<_>>(),
        ),
        Column::new(
            "exact_cluster_size".into(),
            rows.iter()
                .map(|(_, d)| d.exact_cluster_size)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "minhash_cluster_size".into(),
            rows.iter()
                .map(|(_, d)| d.minhash_cluster_size)
                .collect::<Vec<_>>(),
        ),
    ]);
    let mut frame = DataFrame::new(rows.len(), columns).context("building the docs table")?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(file)
        .finish(&mut frame)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes kept documents as Parquet (`id, url, source, lang, text`).
pub fn write_kept_parquet(path: &Path, docs: &[super::work::KeptDoc]) -> Result<()> {
    let mut frame = DataFrame::new(
        docs.len(),
        vec![
            Column::new(
                "id".into(),
                docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "url".into(),
                docs.iter().map(|d| d.url.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "source".into(),
                docs.iter().map(|d| d.source.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "lang".into(),
                docs.iter().map(|d| d.lang.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "text".into(),
                docs.iter().map(|d| d.text.clone()).collect::<Vec<_>>(),
            ),
        ],
    )
    .context("building the kept table")?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(file)
        .finish(&mut frame)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
