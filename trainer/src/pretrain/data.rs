//! Training windows from a `pretrain` dataset. The shards are memory-mapped and their token
//! columns seen as one concatenated stream (every document already ends with EOS); a batch
//! is `micro_batch_size` windows of `seq_len + 1` tokens, inputs and targets shifted by one.
//! Which windows a batch holds depends only on (seed, step, micro-batch, row), where a
//! micro-batch is the job's (its rows on every rank together), so a resumed run sees
//! exactly the batches the interrupted one would have, also with another number of ranks
//! whose micro-batches hold as many rows together (2 ranks of 4 = 1 rank of 8).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use format::{Dataset, DatasetKind, Shard, TokenizerInfo, Tokens};
use tch::Tensor;

use crate::engine::config::DataOrder;
use crate::engine::objective::MicroBatch;
use crate::engine::seed::mix;

/// One record batch's token column: where it starts in the stream.
#[derive(Debug, Clone, Copy)]
struct Segment {
    shard: usize,
    batch: usize,
    start: u64,
    len: u64,
}

/// A dataset's tokens as one stream, read in place from the memory maps.
#[derive(Debug)]
pub struct TokenStream {
    shards: Vec<Shard>,
    segments: Vec<Segment>,
    total: u64,
    tokenizer: TokenizerInfo,
}

impl TokenStream {
    /// Opens a `pretrain` dataset and maps every shard (checking schemas and counts).
    pub fn open(dir: &Path) -> Result<Self> {
        let dataset = Dataset::open_kind(dir, DatasetKind::Pretrain)
            .with_context(|| format!("opening pretrain dataset {}", dir.display()))?;
        let mut shards = Vec::with_capacity(dataset.num_shards());
        let mut segments = Vec::new();
        let mut total = 0u64;
        for index in 0..dataset.num_shards() {
            let shard = dataset
                .shard(index)
                .with_context(|| format!("reading shard {index} of {}", dir.display()))?;
            for (b, batch) in shard.batches().iter().enumerate() {
                let len = batch.tokens("tokens")?.values_len() as u64;
                if len > 0 {
                    segments.push(Segment {
                        shard: index,
                        batch: b,
                        start: total,
                        len,
                    });
                    total += len;
                }
            }
            shards.push(shard);
        }
        Ok(Self {
            shards,
            segments,
            total,
            tokenizer: dataset.manifest().tokenizer.clone(),
        })
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn tokenizer(&self) -> &TokenizerInfo {
        &self.tokenizer
    }

    /// Copies `out.len()` tokens starting at stream position `pos` into `out`.
    pub fn read(&self, pos: u64, out: &mut [i64]) -> Result<()> {
        ensure!(
            pos + out.len() as u64 <= self.total,
            "read of {} tokens at {pos} runs past the stream's {} tokens",
            out.len(),
            self.total
        );
        let mut seg = self.segments.partition_point(|s| s.start + s.len <= pos);
        let mut pos = pos;
        let mut done = 0;
        while done < out.len() {
            let s = self.segments[seg];
            let offset = (pos - s.start) as usize;
            let n = (out.len() - done).min(s.len as usize - offset);
            let dst = &mut out[done..done + n];
            match self.shards[s.shard].batches()[s.batch].tokens("tokens")? {
                Tokens::U16(list) => {
                    for (d, &v) in dst.iter_mut().zip(&list.values()[offset..offset + n]) {
                        *d = i64::from(v);
                    }
                }
                Tokens::U32(list) => {
                    for (d, &v) in dst.iter_mut().zip(&list.values()[offset..offset + n]) {
                        *d = i64::from(v);
                    }
                }
            }
            done += n;
            pos += n as u64;
            seg += 1;
        }
        Ok(())
    }
}

impl TokenStream {
    /// Natural-log unigram probabilities of the stream's tokens (add-one smoothed over
    /// `vocab_size`): the baseline a model must beat. Counts at most `max_tokens` tokens, read
    /// as evenly spaced chunks so a large dataset costs a bounded read.
    pub fn unigram_log_probs(&self, vocab_size: usize, max_tokens: u64) -> Result<Vec<f64>> {
        const CHUNK: u64 = 4096;
        let mut counts = vec![1u64; vocab_size];
        // Every token when the stream fits the budget; else chunks spread over it, a stride
        // (>= CHUNK) apart.
        let (chunks, stride) = if self.total <= max_tokens {
            (self.total.div_ceil(CHUNK), CHUNK)
        } else {
            let chunks = (max_tokens / CHUNK).max(1);
            (chunks, self.total / chunks)
        };
        let mut buf = vec![0i64; CHUNK as usize];
        for c in 0..chunks {
            let start = c * stride;
            let n = CHUNK.min(self.total - start) as usize;
            self.read(start, &mut buf[..n])?;
            for &t in &buf[..n] {
                let slot = usize::try_from(t)
                    .ok()
                    .and_then(|t| counts.get_mut(t))
                    .with_context(|| format!("token {t} outside the vocabulary of {vocab_size}"))?;
                *slot += 1;
            }
        }
        let total: u64 = counts.iter().sum();
        Ok(counts
            .iter()
            .map(|&c| (c as f64 / total as f64).ln())
            .collect())
    }
}

/// Inputs and targets of one micro-batch, `[batch, seq_len]` int64 on the CPU.
#[derive(Debug)]
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// Targets that count in the loss (all of them for pretraining windows).
    pub target_tokens: i64,
}

/// Draws micro-batches of windows from a [`TokenStream`].
#[derive(Debug)]
pub struct WindowSampler {
    stream: TokenStream,
    seq_len: i64,
    batch_size: i64,
    order: DataOrder,
    seed: u64,
}

impl WindowSampler {
    pub fn new(
        stream: TokenStream,
        seq_len: i64,
        batch_size: i64,
        order: DataOrder,
        seed: u64,
    ) -> Result<Self> {
        let window = seq_len as u64 + 1;
        if stream.len() < window {
            bail!(
                "the dataset holds {} tokens, fewer than one window of seq_len + 1 = {window}: lower data.seq_len or add data",
                stream.len()
            );
        }
        Ok(Self {
            stream,
            seq_len,
            batch_size,
            order,
            seed,
        })
    }

    pub fn stream(&self) -> &TokenStream {
        &self.stream
    }

    /// Windows of `seq_len + 1` that fit end to end (sharing one token at each join).
    pub fn sequential_windows(&self) -> u64 {
        (self.stream.len() - 1) / self.seq_len as u64
    }

    /// Start of window `row` of the job's micro-batch `at.micro` (its rows on every rank
    /// together, `width` of them) of optimizer step `at.step`.
    fn window_start(&self, at: MicroBatch, width: u64, row: u64) -> u64 {
        match self.order {
            DataOrder::Random => {
                let starts = self.stream.len() - self.seq_len as u64;
                mix(&[self.seed, at.step, at.micro, row]) % starts
            }
            DataOrder::Sequential => {
                let index = ((at.step - 1) * at.accum + at.micro) * width + row;
                (index % self.sequential_windows()) * self.seq_len as u64
            }
        }
    }

    /// The windows of micro-batch `at`: rows `rank * micro_batch_size..` of the job's
    /// micro-batch `at.micro`, so 2 ranks of 4 rows draw what 1 rank of 8 does.
    pub fn train_batch(&self, at: MicroBatch) -> Result<Batch> {
        let per_micro = self.batch_size as u64;
        let width = per_micro * at.world;
        let first = at.rank * per_micro;
        let starts: Vec<u64> = (first..first + per_micro)
            .map(|row| self.window_start(at, width, row))
            .collect();
        self.batch_at(&starts)
    }

    /// The `index`-th batch of consecutive windows from the start of the stream (validation).
    /// None once the stream is exhausted.
    pub fn eval_batch(&self, index: u64) -> Result<Option<Batch>> {
        let first = index * self.batch_size as u64;
        let windows = self.sequential_windows();
        if first >= windows {
            return Ok(None);
        }
        let starts: Vec<u64> = (first..(first + self.batch_size as u64).min(windows))
            .map(|w| w * self.seq_len as u64)
            .collect();
        self.batch_at(&starts).map(Some)
    }

    fn batch_at(&self, starts: &[u64]) -> Result<Batch> {
        let window = self.seq_len as usize + 1;
        let mut buf = vec![0i64; starts.len() * window];
        for (chunk, &start) in buf.chunks_mut(window).zip(starts) {
            self.stream.read(start, chunk)?;
        }
        let all = Tensor::f_from_slice(&buf)?.f_view([starts.len() as i64, window as i64])?;
        Ok(Batch {
            inputs: all.f_narrow(1, 0, self.seq_len)?,
            targets: all.f_narrow(1, 1, self.seq_len)?,
            target_tokens: starts.len() as i64 * self.seq_len,
        })
    }
}
