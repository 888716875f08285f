//! `pipeline inspect DATASET`: what a dataset holds, from its manifest and a few rows, and
//! optionally a full check of checksums and token ranges.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use format::{Dataset, DatasetKind, Tokens};

use crate::tokenize::LoadedTokenizer;

/// What to show besides the manifest summary.
#[derive(Debug, Clone, Copy)]
pub struct InspectOptions {
    /// Rows to print from the first shard.
    pub samples: usize,
    /// Token ids to print per sample row.
    pub ids_per_row: usize,
    /// Hash every file and check every token id (reads the whole dataset).
    pub verify: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            samples: 3,
            ids_per_row: 16,
            verify: false,
        }
    }
}

/// Writes a human-readable description of the dataset in `dir` to `out`.
pub fn inspect(dir: &Path, options: InspectOptions, out: &mut impl Write) -> Result<()> {
    let dataset = Dataset::open(dir)?;
    let m = dataset.manifest();
    writeln!(out, "dataset    {}", dir.display())?;
    writeln!(
        out,
        "kind       {} (format_version {}, created {})",
        m.kind, m.format_version, m.created_at
    )?;
    let specials: Vec<String> = m
        .tokenizer
        .special_tokens
        .iter()
        .map(|(name, id)| format!("{name}={id}"))
        .collect();
    writeln!(
        out,
        "tokenizer  {} (vocab_size {}, sha256 {}…)",
        m.tokenizer.file,
        m.tokenizer.vocab_size,
        m.tokenizer.sha256.get(..12).unwrap_or(&m.tokenizer.sha256)
    )?;
    writeln!(out, "specials   {}", specials.join(" "))?;
    writeln!(out, "token ids  {}", m.token_dtype.as_str())?;
    writeln!(
        out,
        "totals     {} shards, {} rows, {} tokens, {}",
        m.shards.len(),
        m.totals.rows,
        m.totals.tokens,
        human_bytes(m.totals.bytes)
    )?;
    for shard in &m.shards {
        writeln!(
            out,
            "  {}  {:>10} rows {:>14} tokens {:>10}",
            shard.file,
            shard.rows,
            shard.tokens,
            human_bytes(shard.bytes)
        )?;
    }
    if options.verify {
        dataset.verify_checksums()?;
        dataset.verify_tokens()?;
        writeln!(
            out,
            "verified   sha256 of every file, every token id < vocab_size"
        )?;
    }
    if options.samples > 0 && dataset.num_shards() > 0 {
        writeln!(out, "samples (first rows of {}):", m.shards[0].file)?;
        let shard = dataset.shard(0)?;
        let batch = shard
            .batches()
            .first()
            .context("first shard has no record batch")?;
        // Decoded text when the dataset's tokenizer loads; ids alone otherwise.
        let tokenizer = LoadedTokenizer::load(&dataset.tokenizer_path()).ok();
        for row in 0..options.samples.min(batch.num_rows()) {
            write_sample(out, dataset.kind(), batch, row, options.ids_per_row)?;
            if let Some(tokenizer) = &tokenizer {
                write_decoded(out, tokenizer, dataset.kind(), batch, row)?;
            }
        }
    }
    Ok(())
}

fn write_sample(
    out: &mut impl Write,
    kind: DatasetKind,
    batch: &format::ShardBatch,
    row: usize,
    limit: usize,
) -> Result<()> {
    let ids = |tokens: Tokens<'_>| preview(&tokens.row_u32(row), limit);
    match kind {
        DatasetKind::Pretrain => {
            let tokens = batch.tokens("tokens")?;
            writeln!(
                out,
                "  {} [{}] {} tokens: {}",
                batch.strings("doc_id")?.value(row),
                batch.source(row)?,
                tokens.row_u32(row).len(),
                ids(tokens)
            )?;
        }
        DatasetKind::Sft => {
            let input = batch.u32_lists("input_ids")?.get(row);
            let mask = batch.loss_mask()?.get(row);
            let trained = mask.iter().filter(|&&m| m == 1).count();
            // Supervised ids are marked with '*'.
            let marked: Vec<String> = input
                .iter()
                .zip(mask)
                .take(limit)
                .map(|(id, m)| {
                    if *m == 1 {
                        format!("{id}*")
                    } else {
                        id.to_string()
                    }
                })
                .collect();
            writeln!(
                out,
                "  {} ({}) {} ids, {} supervised: {}{}",
                batch.strings("example_id")?.value(row),
                batch.strings("source_record")?.value(row),
                input.len(),
                trained,
                marked.join(" "),
                if input.len() > limit { " …" } else { "" }
            )?;
        }
        DatasetKind::Preference => {
            writeln!(
                out,
                "  {} ({}) prompt {} | chosen {} | rejected {}",
                batch.strings("pair_id")?.value(row),
                batch.strings("source_record")?.value(row),
                ids(batch.tokens("prompt_ids")?),
                ids(batch.tokens("chosen_ids")?),
                ids(batch.tokens("rejected_ids")?)
            )?;
        }
        DatasetKind::Unpaired => {
            let liked = batch.labels()?.value(row);
            writeln!(
                out,
                "  {} ({}) {} prompt {} | completion {}",
                batch.strings("example_id")?.value(row),
                batch.strings("source_record")?.value(row),
                if liked { "👍" } else { "👎" },
                ids(batch.tokens("prompt_ids")?),
                ids(batch.tokens("completion_ids")?)
            )?;
        }
    }
    Ok(())
}

/// Characters of decoded text shown per sample.
const DECODED_CHARS: usize = 300;

fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(DECODED_CHARS).collect();
    if text.chars().count() > DECODED_CHARS {
        s.push('…');
    }
    format!("{s:?}")
}

/// The sample as text; for SFT the supervised spans are wrapped in ⟦ ⟧.
fn write_decoded(
    out: &mut impl Write,
    tokenizer: &LoadedTokenizer,
    kind: DatasetKind,
    batch: &format::ShardBatch,
    row: usize,
) -> Result<()> {
    match kind {
        DatasetKind::Pretrain => {
            let ids = batch.tokens("tokens")?.row_u32(row);
            writeln!(out, "    text: {}", shorten(&tokenizer.decode(&ids)?))?;
        }
        DatasetKind::Sft => {
            let ids = batch.u32_lists("input_ids")?.get(row);
            let mask = batch.loss_mask()?.get(row);
            let mut text = String::new();
            let mut start = 0;
            while start < ids.len() {
                let trained = mask[start] == 1;
                let end = (start..ids.len())
                    .find(|&i| (mask[i] == 1) != trained)
                    .unwrap_or(ids.len());
                let piece = tokenizer.decode(&ids[start..end])?;
                if trained {
                    text.push_str(&format!("⟦{piece}⟧"));
                } else {
                    text.push_str(&piece);
                }
                start = end;
            }
            writeln!(out, "    text (⟦trained⟧): {}", shorten(&text))?;
        }
        DatasetKind::Unpaired => {
            for column in ["prompt_ids", "completion_ids"] {
                let ids = batch.u32_lists(column)?.get(row);
                writeln!(out, "    {column}: {}", shorten(&tokenizer.decode(ids)?))?;
            }
        }
        DatasetKind::Preference => {
            for column in ["prompt_ids", "chosen_ids", "rejected_ids"] {
                let ids = batch.u32_lists(column)?.get(row);
                writeln!(out, "    {column}: {}", shorten(&tokenizer.decode(ids)?))?;
            }
        }
    }
    Ok(())
}

fn preview(ids: &[u32], limit: usize) -> String {
    let mut s: Vec<String> = ids.iter().take(limit).map(u32::to_string).collect();
    if ids.len() > limit {
        s.push("…".into());
    }
    format!("[{}]", s.join(" "))
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
