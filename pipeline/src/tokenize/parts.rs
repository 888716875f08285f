//! The training split of a dataset without a shuffle, written in parts: the sorted inputs
//! are cut into parts of consecutive inputs holding at least `tokenize.part_bytes` each, and
//! a part's training documents, in input order, are shards of their own
//! (`train/shard-PPPPP-IIIII.arrow`). A split run's task writes the parts it owns (part p
//! on task p mod N) and `--finish` only writes the manifest over them; the one-process run
//! cuts the same parts, so the shards are the same bytes whatever N. Parts group inputs so
//! that a crawl's 10^5 inputs do not become 10^5 shards (the trainer maps every shard).

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use format::{DatasetKind, PretrainDoc, ShardEntry, ShardWriter, TokenizerSpec};

use super::encoded::Encoded;

/// Input bytes a part holds at least unless it is the last: ~250M tokens of JSONL text, a
/// few shards of the default 64M tokens.
pub const DEFAULT_PART_BYTES: u64 = 1 << 30;

/// The parts of inputs of `sizes` (in listing order): consecutive inputs, a part closing
/// with the input that brings it to `part_bytes` or more.
pub fn parts(sizes: &[u64], part_bytes: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut held) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        held += size;
        if held >= part_bytes {
            out.push(start..i + 1);
            (start, held) = (i + 1, 0);
        }
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The part of each of `files` (the sorted inputs), from their sizes (local ones' from the
/// file system, remote ones' from the listing that found them).
pub fn part_of_files(files: &[PathBuf], part_bytes: u64) -> Result<Vec<usize>> {
    let sizes = files
        .iter()
        .map(|f| {
            crate::storage::input_size(f)?.with_context(|| format!("input {} is gone", f.display()))
        })
        .collect::<Result<Vec<u64>>>()?;
    Ok(part_of_inputs(&parts(&sizes, part_bytes)))
}

/// The part of each input, from [`parts`].
fn part_of_inputs(parts: &[Range<usize>]) -> Vec<usize> {
    parts
        .iter()
        .enumerate()
        .flat_map(|(p, r)| r.clone().map(move |_| p))
        .collect()
}

/// Training documents into one part writer after another (parts in increasing order).
#[derive(Debug)]
pub(super) struct PartSink {
    dir: PathBuf,
    tokenizer: TokenizerSpec,
    max_shard_tokens: u64,
    current: Option<(usize, ShardWriter)>,
    shards: Vec<ShardEntry>,
}

impl PartSink {
    pub(super) fn new(dir: &Path, tokenizer: TokenizerSpec, max_shard_tokens: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            tokenizer,
            max_shard_tokens,
            current: None,
            shards: Vec::new(),
        }
    }

    /// The next documents are part `part`'s: the part being written goes on, a later one
    /// ends it and starts `part`.
    pub(super) fn start(&mut self, part: usize) -> Result<()> {
        if let Some((p, _)) = &self.current {
            if part == *p {
                return Ok(());
            }
            ensure!(part > *p, "part {part} started after part {p}");
        }
        self.end_part()?;
        let writer = ShardWriter::builder(&self.dir, DatasetKind::Pretrain, self.tokenizer.clone())
            .max_shard_tokens(self.max_shard_tokens)
            .part(part)
            .build()?;
        self.current = Some((part, writer));
        Ok(())
    }

    pub(super) fn push(&mut self, doc: &Encoded) -> Result<()> {
        let (_, writer) = self
            .current
            .as_mut()
            .context("a training document before its part started")?;
        writer.write(PretrainDoc {
            doc_id: &doc.id,
            source: &doc.source,
            tokens: &doc.tokens,
        })?;
        Ok(())
    }

    fn end_part(&mut self) -> Result<()> {
        if let Some((_, writer)) = self.current.take() {
            self.shards.extend(writer.finish_part()?);
        }
        Ok(())
    }

    /// Every part's shards, in part order, once the last part is written.
    pub(super) fn finish(mut self) -> Result<Vec<ShardEntry>> {
        self.end_part()?;
        Ok(self.shards)
    }

    /// Ends the last part and makes the directory a dataset of every part written here:
    /// its manifest, with `config` (the one-process run, which writes every part).
    pub(super) fn finish_dataset(self, config: serde_json::Value) -> Result<format::Manifest> {
        let (dir, tokenizer) = (self.dir.clone(), self.tokenizer.clone());
        let shards = self.finish()?;
        Ok(format::write_parts_manifest(
            &dir,
            DatasetKind::Pretrain,
            tokenizer,
            config,
            shards,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_close_at_their_size_and_keep_the_rest_in_the_last() {
        assert_eq!(parts(&[5, 5, 5, 5, 5], 10), vec![0..2, 2..4, 4..5]);
        assert_eq!(parts(&[30, 1, 1], 10), vec![0..1, 1..3]);
        assert_eq!(parts(&[1, 1], 1), vec![0..1, 1..2]);
        assert_eq!(parts(&[], 10), Vec::<Range<usize>>::new());
        assert_eq!(part_of_inputs(&parts(&[5, 5, 5], 10)), vec![0, 0, 1]);
    }
}
