//! Sequences for post-training: `sft`, `preference` and `unpaired` datasets read into memory (labeler
//! sets are thousands of rows, not corpora), the order examples are drawn in, and packing.
//!
//! Packing puts several sequences back to back in one row so no compute goes to padding.
//! Positions restart at 0 where each sequence starts and a block-diagonal causal mask lets a
//! token see only earlier tokens of its own sequence, so a packed sequence computes exactly
//! what it would alone. Rows are filled first-fit up to `seq_len` tokens (a longer sequence
//! gets a row of its own); the batch is padded to its longest row, and each padding token
//! sees only itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use format::{Dataset, DatasetKind, TokenizerInfo};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, TchError, Tensor};

use crate::engine::config::{DataConfig, DataOrder};
use crate::engine::objective::MicroBatch;
use crate::engine::seed::mix;
use crate::model::llama::Packing;

/// Token ids with, for each, whether predicting it is trained on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    /// `target[i]` is 1 when the prediction of `ids[i]` (from `ids[..i]`) counts.
    pub target: Vec<u8>,
}

impl Sequence {
    /// `prompt` followed by `answer`, where only the answer's tokens are targets.
    pub fn prompt_answer(prompt: &[u32], answer: &[u32]) -> Self {
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(answer);
        let mut target = vec![0u8; prompt.len()];
        target.resize(ids.len(), 1);
        Self { ids, target }
    }
}

/// A preference pair as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub pair_id: String,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl Pair {
    /// Prompt + chosen and prompt + rejected, answers as targets.
    pub fn sequences(&self) -> [Sequence; 2] {
        [
            Sequence::prompt_answer(&self.prompt, &self.chosen),
            Sequence::prompt_answer(&self.prompt, &self.rejected),
        ]
    }
}

/// A dataset's rows in memory, with what identifies the dataset.
#[derive(Debug, Clone)]
pub struct Rows<T> {
    pub rows: Vec<T>,
    pub dir: PathBuf,
    pub tokenizer: TokenizerInfo,
    pub tokenizer_path: PathBuf,
    /// sha256 over the kind, the tokenizer's hash and every shard's hash (from the manifest).
    pub hash: String,
}

fn open(dir: &Path, kind: DatasetKind) -> Result<(Dataset, String)> {
    let dataset = Dataset::open_kind(dir, kind)
        .with_context(|| format!("opening {kind} dataset {}", dir.display()))?;
    let manifest = dataset.manifest();
    let mut hasher = Sha256::new();
    hasher.update(kind.as_str());
    hasher.update(&manifest.tokenizer.sha256);
    for shard in &manifest.shards {
        hasher.update(&shard.file);
        hasher.update(&shard.sha256);
    }
    Ok((dataset, hex::encode(hasher.finalize())))
}

fn rows<T>(dir: &Path, dataset: &Dataset, hash: String, rows: Vec<T>) -> Result<Rows<T>> {
    ensure!(!rows.is_empty(), "dataset {} holds no rows", dir.display());
    Ok(Rows {
        rows,
        dir: dir.to_path_buf(),
        tokenizer: dataset.manifest().tokenizer.clone(),
        tokenizer_path: dataset.tokenizer_path(),
        hash,
    })
}

/// Reads an `sft` dataset: `input_ids` with `loss_mask` as targets.
pub fn read_sft(dir: &Path) -> Result<Rows<Sequence>> {
    let (dataset, hash) = open(dir, DatasetKind::Sft)?;
    let mut out = Vec::new();
    for index in 0..dataset.num_shards() {
        let shard = dataset.shard(index)?;
        for batch in shard.batches() {
            let (ids, mask, names) = (
                batch.u32_lists("input_ids")?,
                batch.loss_mask()?,
                batch.strings("example_id")?,
            );
            for row in 0..batch.num_rows() {
                let (ids, target) = (ids.get(row), mask.get(row));
                ensure!(
                    ids.len() == target.len() && !ids.is_empty(),
                    "{}: example {:?} has {} ids and {} mask values",
                    dir.display(),
                    names.value(row),
                    ids.len(),
                    target.len()
                );
                out.push(Sequence {
                    ids: ids.to_vec(),
                    target: target.to_vec(),
                });
            }
        }
    }
    rows(dir, &dataset, hash, out)
}

/// Reads a `preference` dataset.
pub fn read_preferences(dir: &Path) -> Result<Rows<Pair>> {
    let (dataset, hash) = open(dir, DatasetKind::Preference)?;
    let mut out = Vec::new();
    for index in 0..dataset.num_shards() {
        let shard = dataset.shard(index)?;
        for batch in shard.batches() {
            let ids = batch.strings("pair_id")?;
            let prompt = batch.u32_lists("prompt_ids")?;
            let chosen = batch.u32_lists("chosen_ids")?;
            let rejected = batch.u32_lists("rejected_ids")?;
            for row in 0..batch.num_rows() {
                let pair = Pair {
                    pair_id: ids.value(row).to_string(),
                    prompt: prompt.get(row).to_vec(),
                    chosen: chosen.get(row).to_vec(),
                    rejected: rejected.get(row).to_vec(),
                };
                ensure!(
                    !pair.prompt.is_empty() && !pair.chosen.is_empty() && !pair.rejected.is_empty(),
                    "{}: pair {:?} has an empty prompt or answer",
                    dir.display(),
                    pair.pair_id
                );
                out.push(pair);
            }
        }
    }
    rows(dir, &dataset, hash, out)
}

/// An `unpaired` dataset (thumbs up / down) for KTO, each example as a [`Pair`] whose
/// `chosen` is its own completion and whose `rejected` is a mismatched one (another
/// example's completion, after a different prompt) for the KL estimate, with its labels.
#[derive(Debug, Clone)]
pub struct Thumbs {
    pub rows: Rows<Pair>,
    /// `labels[i]`: example `i` was liked (desirable).
    pub labels: Vec<bool>,
}

/// The example whose completion is paired with example `i`'s prompt for the KL estimate:
/// half the dataset away, moving on while the prompt is the same (a rating project may hold
/// several answers to one prompt). Fixed by the dataset alone, so the reference
/// log-probabilities of the mismatched pairs can be cached like the matched ones.
pub fn mismatched(prompts: &[&[u32]], i: usize) -> usize {
    let n = prompts.len();
    (0..n)
        .map(|k| (i + n / 2 + k) % n)
        .find(|&j| prompts[j] != prompts[i])
        .unwrap_or((i + 1) % n)
}

/// Reads an `unpaired` dataset.
pub fn read_unpaired(dir: &Path) -> Result<Thumbs> {
    let (dataset, hash) = open(dir, DatasetKind::Unpaired)?;
    let mut examples: Vec<(String, Vec<u32>, Vec<u32>)> = Vec::new();
    let mut labels = Vec::new();
    for index in 0..dataset.num_shards() {
        let shard = dataset.shard(index)?;
        for batch in shard.batches() {
            let ids = batch.strings("example_id")?;
            let prompt = batch.u32_lists("prompt_ids")?;
            let completion = batch.u32_lists("completion_ids")?;
            let label = batch.labels()?;
            for row in 0..batch.num_rows() {
                let (p, c) = (prompt.get(row), completion.get(row));
                ensure!(
                    !p.is_empty() && !c.is_empty(),
                    "{}: example {:?} has an empty prompt or completion",
                    dir.display(),
                    ids.value(row)
                );
                examples.push((ids.value(row).to_string(), p.to_vec(), c.to_vec()));
                labels.push(label.value(row));
            }
        }
    }
    let prompts: Vec<&[u32]> = examples.iter().map(|(_, p, _)| p.as_slice()).collect();
    let pairs = (0..examples.len())
        .map(|i| {
            let (id, prompt, completion) = &examples[i];
            Pair {
                pair_id: id.clone(),
                prompt: prompt.clone(),
                chosen: completion.clone(),
                rejected: examples[mismatched(&prompts, i)].2.clone(),
            }
        })
        .collect();
    Ok(Thumbs {
        rows: rows(dir, &dataset, hash, pairs)?,
        labels,
    })
}

/// Which row is the `n`-th drawn: a fresh permutation per epoch from (seed, epoch), or the
/// dataset order. Depends on (seed, n) only, so resumed runs draw the same rows.
#[derive(Debug)]
pub struct DrawOrder {
    len: usize,
    order: DataOrder,
    seed: u64,
    epoch: Option<(u64, Vec<usize>)>,
}

impl DrawOrder {
    pub fn new(len: usize, order: DataOrder, seed: u64) -> Self {
        Self {
            len,
            order,
            seed,
            epoch: None,
        }
    }

    /// The row drawn `n`-th (0-based) since the start of training.
    pub fn row(&mut self, n: u64) -> usize {
        let (epoch, within) = (n / self.len as u64, (n % self.len as u64) as usize);
        match self.order {
            DataOrder::Sequential => within,
            DataOrder::Random => {
                if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    let mut perm: Vec<usize> = (0..self.len).collect();
                    perm.sort_by_key(|&i| mix(&[self.seed, epoch, i as u64]));
                    self.epoch = Some((epoch, perm));
                }
                self.epoch.as_ref().map_or(within, |(_, perm)| perm[within])
            }
        }
    }

    /// Rows of micro-batch `at` with `per_micro` rows each.
    pub fn micro_batch(&mut self, at: MicroBatch, per_micro: i64) -> Vec<usize> {
        let first = at.first_row_overall(per_micro as u64);
        (first..first + per_micro as u64)
            .map(|n| self.row(n))
            .collect()
    }
}

/// Packed sequences on a device.
#[derive(Debug)]
pub struct PackedBatch {
    /// `[rows, len]` int64.
    pub ids: Tensor,
    /// `[rows, len]` int64, restarting at each sequence.
    pub positions: Tensor,
    /// `[rows, 1, len, len]` bool: block-diagonal causal.
    pub mask: Tensor,
    /// `[rows, len]` int64: the next token of the same sequence, -100 where there is none.
    pub labels: Tensor,
    /// `[rows, len]` bool: whether the label at this position is a target.
    pub label_target: Tensor,
    /// `[rows, len]` int64: the sequence each position belongs to; padding: `sequences`.
    pub sequence_of: Tensor,
    /// `[sequences]` int64: flat index (`row * len + col`) of each sequence's last token.
    pub last: Tensor,
    pub sequences: i64,
    /// Real (non-padding) tokens.
    pub tokens: i64,
    /// Target labels.
    pub targets: i64,
}

impl PackedBatch {
    /// Where the rows' tokens sit, for [`crate::model::language_model::LanguageModel::packed_hidden`].
    pub fn packing(&self) -> Packing<'_> {
        Packing {
            positions: &self.positions,
            mask: &self.mask,
        }
    }

    /// The labels with those that are not targets replaced by the ignore index (-100), so
    /// their values cannot matter to a loss.
    pub fn target_labels(&self) -> Result<Tensor, TchError> {
        self.labels.f_where_scalarother(&self.label_target, -100)
    }

    /// The target cells: their flat indices (`row * len + col`, ascending) and their
    /// labels, both `[targets]` int64. The losses take logits at these cells only
    /// ([`crate::model::language_model::LanguageModel::logits_at`]).
    pub fn target_cells(&self) -> Result<(Tensor, Tensor), TchError> {
        crate::model::loss::labelled_cells(&self.target_labels()?)
    }
}

/// Packs `seqs` (in this order, first-fit) into rows of at most `row_len` tokens.
pub fn pack(seqs: &[&Sequence], row_len: usize, device: Device) -> Result<PackedBatch> {
    ensure!(!seqs.is_empty(), "no sequences to pack");
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        let n = seq.ids.len();
        ensure!(n > 0, "an empty sequence cannot be packed");
        match rows.iter_mut().find(|(used, _)| used + n <= row_len) {
            Some((used, members)) => {
                *used += n;
                members.push(s);
            }
            None => rows.push((n, vec![s])),
        }
    }
    let len = rows.iter().map(|(used, _)| *used).max().unwrap_or(0);
    let cells = rows.len() * len;
    let mut ids = vec![0i64; cells];
    let mut positions = vec![0i64; cells];
    // Sequence id per token for the mask; each padding token is its own "sequence".
    let mut group = vec![0i64; cells];
    let mut labels = vec![-100i64; cells];
    let mut label_target = vec![false; cells];
    let mut sequence_of = vec![seqs.len() as i64; cells];
    let mut last = vec![0i64; seqs.len()];
    let (mut tokens, mut targets) = (0i64, 0i64);
    for (r, (used, members)) in rows.iter().enumerate() {
        let mut col = 0;
        for &s in members {
            let seq = seqs[s];
            for (o, &id) in seq.ids.iter().enumerate() {
                let cell = r * len + col + o;
                ids[cell] = i64::from(id);
                positions[cell] = o as i64;
                group[cell] = s as i64;
                sequence_of[cell] = s as i64;
                if let Some(&next) = seq.ids.get(o + 1) {
                    labels[cell] = i64::from(next);
                    label_target[cell] = seq.target[o + 1] == 1;
                    targets += i64::from(seq.target[o + 1] == 1);
                }
            }
            col += seq.ids.len();
            last[s] = (r * len + col - 1) as i64;
            tokens += seq.ids.len() as i64;
        }
        for c in *used..len {
            group[r * len + c] = -1 - c as i64;
        }
    }
    let shape = [rows.len() as i64, len as i64];
    let tensor = |v: &[i64]| -> Result<Tensor> {
        Ok(Tensor::f_from_slice(v)?
            .f_view(shape)?
            .f_to_device(device)?)
    };
    let group = tensor(&group)?;
    let same = group.f_unsqueeze(2)?.f_eq_tensor(&group.f_unsqueeze(1)?)?;
    let causal = Tensor::f_ones([len as i64, len as i64], (Kind::Bool, device))?.f_tril(0)?;
    let mask = same.f_logical_and(&causal)?.f_unsqueeze(1)?;
    Ok(PackedBatch {
        ids: tensor(&ids)?,
        positions: tensor(&positions)?,
        mask,
        labels: tensor(&labels)?,
        label_target: Tensor::f_from_slice(&label_target)?
            .f_view(shape)?
            .f_to_device(device)?,
        sequence_of: tensor(&sequence_of)?,
        last: Tensor::f_from_slice(&last)?.f_to_device(device)?,
        sequences: seqs.len() as i64,
        tokens,
        targets,
    })
}

/// What a row occupies of a packed batch at most: its longest sequence, in tokens.
pub trait PackedLength {
    fn packed_len(&self) -> usize;
}

impl PackedLength for Sequence {
    fn packed_len(&self) -> usize {
        self.ids.len()
    }
}

impl PackedLength for Pair {
    fn packed_len(&self) -> usize {
        self.prompt.len() + self.chosen.len().max(self.rejected.len())
    }
}

/// Checks that no row of `dataset` is longer than the model's context (positions restart
/// per sequence, so only each sequence's own length matters).
pub fn check_lengths<'a, T: PackedLength + 'a>(
    rows: impl IntoIterator<Item = &'a T>,
    max_positions: i64,
    dataset: &Path,
) -> Result<()> {
    let longest = rows.into_iter().map(T::packed_len).max().unwrap_or(0);
    ensure!(
        longest as i64 <= max_positions,
        "{} holds a sequence of {longest} tokens; the model's context is {max_positions}: re-tokenize with a lower max_seq_len",
        dataset.display()
    );
    Ok(())
}

impl<T: PackedLength> Rows<T> {
    /// [`check_lengths`] over every row.
    pub fn check_lengths(&self, max_positions: i64) -> Result<()> {
        check_lengths(&self.rows, max_positions, &self.dir)
    }
}

/// A training dataset and its optional validation dataset, read with `read` (`read_sft`,
/// `read_preferences`, `read_unpaired`) from `config.train` and `config.valid`.
pub fn read_datasets<D>(
    config: &DataConfig,
    read: impl Fn(&Path) -> Result<D>,
) -> Result<(D, Option<D>)> {
    let train = read(&config.train)?;
    let valid = config.valid.as_deref().map(read).transpose()?;
    Ok((train, valid))
}
