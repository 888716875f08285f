//! Training windows from a `pretrain` dataset. The shards are memory-mapped and their token
//! columns seen as one concatenated stream (every document already ends with EOS); a batch
//! is `micro_batch_size` windows of `seq_len + 1` tokens, inputs and targets shifted by one.
//! Which windows a batch holds depends only on (seed, step, micro-batch, row), where a
//! micro-batch is the job's (its rows on every rank together), so a resumed run sees
//! exactly the batches the interrupted one would have, also with another number of ranks
//! whose micro-batches hold as many rows together (2 ranks of 4 = 1 rank of 8).
//!
//! Random windows start anywhere, except a `doc_start_fraction` of them that start at a
//! document's first token (its BOS when the dataset has one): without those, a window
//! almost never begins where a document does, and a model asked to continue a prompt with
//! nothing before it meets a situation it never trained on. Document starts are read from
//! the shards' list offsets in place; nothing is indexed in memory.

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
    /// Index of the batch's first document among all documents, and how many it holds.
    first_doc: u64,
    docs: u64,
}

/// A dataset's tokens as one stream, read in place from the memory maps.
#[derive(Debug)]
pub struct TokenStream {
    shards: Vec<Shard>,
    segments: Vec<Segment>,
    total: u64,
    docs: u64,
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
        let mut docs = 0u64;
        let bos = dataset.manifest().tokenizer.bos();
        for index in 0..dataset.num_shards() {
            let shard = dataset
                .shard(index)
                .with_context(|| format!("reading shard {index} of {}", dir.display()))?;
            for (b, batch) in shard.batches().iter().enumerate() {
                let tokens = batch.tokens("tokens")?;
                let len = tokens.values_len() as u64;
                if len > 0 {
                    // The writer checked every row; one look per batch catches shards that
                    // do not match their manifest (`pipeline verify` checks every row).
                    if let Some(bos) = bos {
                        ensure!(
                            tokens.first(0) == Some(bos),
                            "{}: record batch {b} starts without the BOS id {bos} its manifest records; re-tokenize the dataset",
                            shard.path().display()
                        );
                    }
                    segments.push(Segment {
                        shard: index,
                        batch: b,
                        start: total,
                        len,
                        first_doc: docs,
                        docs: tokens.len() as u64,
                    });
                    total += len;
                    docs += tokens.len() as u64;
                }
            }
            shards.push(shard);
        }
        Ok(Self {
            shards,
            segments,
            total,
            docs,
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

    /// Number of documents in the stream.
    pub fn documents(&self) -> u64 {
        self.docs
    }

    /// Stream position of document `doc`'s first token.
    pub fn document_start(&self, doc: u64) -> Result<u64> {
        ensure!(
            doc < self.docs,
            "document {doc} is past the stream's {} documents",
            self.docs
        );
        let s = self.segments[self
            .segments
            .partition_point(|s| s.first_doc + s.docs <= doc)];
        let offsets = match self.shards[s.shard].batches()[s.batch].tokens("tokens")? {
            Tokens::U16(list) => list.offsets(),
            Tokens::U32(list) => list.offsets(),
        };
        let i = (doc - s.first_doc) as usize;
        Ok(s.start + (offsets[i] - offsets[0]) as u64)
    }

    /// How many documents start at or before `pos` (positions only grow with the index).
    fn documents_starting_by(&self, pos: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0, self.docs);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.document_start(mid)? <= pos {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
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
    /// Random windows that start at a document start, as a fraction.
    doc_start_fraction: f64,
    /// Documents whose start leaves room for a whole window.
    aligned_docs: u64,
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
        let aligned_docs = stream.documents_starting_by(stream.len() - window)?;
        Ok(Self {
            stream,
            seq_len,
            batch_size,
            order,
            seed,
            doc_start_fraction: 0.0,
            aligned_docs,
        })
    }

    /// Makes `fraction` of the random windows start at a document start (see the module
    /// docs); 0 (the default here) keeps every window uniformly placed.
    pub fn with_doc_starts(mut self, fraction: f64) -> Self {
        self.doc_start_fraction = fraction;
        self
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
    fn window_start(&self, at: MicroBatch, width: u64, row: u64) -> Result<u64> {
        Ok(match self.order {
            DataOrder::Random => {
                let starts = self.stream.len() - self.seq_len as u64;
                let draw = mix(&[self.seed, at.step, at.micro, row]);
                // A second, independent draw from the same key picks aligned or not, so
                // with a fraction of 0 the windows are exactly the unaligned ones.
                let coin = (mix(&[draw, 1]) >> 11) as f64 / (1u64 << 53) as f64;
                if coin < self.doc_start_fraction {
                    self.stream.document_start(draw % self.aligned_docs)?
                } else {
                    draw % starts
                }
            }
            DataOrder::Sequential => {
                let index = ((at.step - 1) * at.accum + at.micro) * width + row;
                (index % self.sequential_windows()) * self.seq_len as u64
            }
        })
    }

    /// The windows of micro-batch `at`: rows `rank * micro_batch_size..` of the job's
    /// micro-batch `at.micro`, so 2 ranks of 4 rows draw what 1 rank of 8 does.
    pub fn train_batch(&self, at: MicroBatch) -> Result<Batch> {
        let per_micro = self.batch_size as u64;
        let width = per_micro * at.world;
        let first = at.rank * per_micro;
        let starts: Vec<u64> = (first..first + per_micro)
            .map(|row| self.window_start(at, width, row))
            .collect::<Result<_>>()?;
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
