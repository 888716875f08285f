//! `pipeline tokenize`: documents to a pretraining dataset through `format::ShardWriter`,
//! with EOS appended, a held-out validation split chosen by a hash of the document id (so a
//! document is in exactly one split, whatever the order or the thread count), and an
//! optional global shuffle done with bounded memory (documents go to hash buckets on disk,
//! then each bucket is shuffled and written).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use format::{DatasetKind, PretrainDoc, ShardWriter};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::LoadedTokenizer;
use super::encoded::{Encoded, encode, read_records, write_record};
use crate::document::Document;
use crate::readers::{InputConfig, expand_inputs, read_in_batches};
use crate::storage;

/// How to tokenize; the `[tokenize]` table of a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeOptions {
    /// The tokenizer.json to encode with (trained first when `[tokenize.train]` is set).
    pub tokenizer: PathBuf,
    /// Writes `OUT/train` and, with a validation fraction, `OUT/val`.
    pub output: PathBuf,
    #[serde(default)]
    pub train: Option<TrainTokenizerOptions>,
    #[serde(default = "default_shard_tokens")]
    pub max_shard_tokens: u64,
    #[serde(default)]
    pub overwrite: bool,
    /// Fraction of documents (by id hash) held out for validation.
    #[serde(default = "default_validation")]
    pub validation_fraction: f64,
    #[serde(default)]
    pub split_seed: u64,
    #[serde(default)]
    pub shuffle: Option<ShuffleOptions>,
    /// Without a shuffle: the inputs are cut into parts of consecutive inputs holding at
    /// least this many bytes, each part's training documents shards of their own
    /// (`train/shard-PPPPP-IIIII.arrow`), so a split run's tasks write them (see `parts`).
    #[serde(default = "default_part_bytes")]
    pub part_bytes: u64,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Documents are encoded in pieces of at most this many bytes.
    #[serde(default = "default_piece")]
    pub max_piece_bytes: usize,
}

/// Train the tokenizer on the same inputs before encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTokenizerOptions {
    pub vocab_size: usize,
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    #[serde(default = "default_train_bytes")]
    pub max_bytes: u64,
    #[serde(default = "super::train::default_max_word_bytes")]
    pub max_word_bytes: u64,
}

impl TrainTokenizerOptions {
    /// What `pipeline tokenizer train` is given for these settings: train on `input`, write
    /// to `output` (local or `s3://`).
    pub fn config(&self, input: &InputConfig, output: &Path) -> super::train::TokenizerTrainConfig {
        super::train::TokenizerTrainConfig {
            inputs: input.paths.clone(),
            reader: input.reader.clone(),
            output: output.to_path_buf(),
            vocab_size: self.vocab_size,
            min_frequency: self.min_frequency,
            max_bytes: self.max_bytes,
            max_word_bytes: self.max_word_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShuffleOptions {
    pub seed: u64,
    /// On-disk buckets; memory holds one bucket at a time.
    #[serde(default = "default_buckets")]
    pub buckets: usize,
}

fn default_shard_tokens() -> u64 {
    format::ShardWriterBuilder::DEFAULT_MAX_SHARD_TOKENS
}
fn default_validation() -> f64 {
    0.01
}
fn default_batch() -> usize {
    512
}
fn default_piece() -> usize {
    100_000
}
fn default_min_frequency() -> u64 {
    2
}
fn default_train_bytes() -> u64 {
    1 << 30
}
fn default_buckets() -> usize {
    64
}
fn default_part_bytes() -> u64 {
    super::parts::DEFAULT_PART_BYTES
}

/// A `pipeline tokenize` config: inputs plus `[tokenize]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    pub input: InputConfig,
    pub tokenize: TokenizeOptions,
}

impl TokenizeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: Self =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        config
            .tokenize
            .check()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }
}

impl TokenizeOptions {
    pub fn check(&self) -> Result<()> {
        ensure!(
            (0.0..1.0).contains(&self.validation_fraction),
            "tokenize.validation_fraction must be in [0, 1), got {}",
            self.validation_fraction
        );
        ensure!(self.batch_size > 0, "tokenize.batch_size must be > 0");
        ensure!(self.part_bytes > 0, "tokenize.part_bytes must be > 0");
        if let Some(s) = &self.shuffle {
            ensure!(s.buckets > 0, "tokenize.shuffle.buckets must be > 0");
        }
        Ok(())
    }
}

/// What `tokenize` wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizeSummary {
    pub documents: u64,
    pub train_documents: u64,
    pub validation_documents: u64,
    pub tokens: u64,
    pub input_bytes: u64,
    /// Wall time of the whole run (reading, encoding, and writing alongside).
    pub encode_seconds: f64,
    /// Time the writer thread was busy, and its CPU time.
    pub write_seconds: f64,
    pub write_cpu_seconds: f64,
    pub issues: Vec<String>,
}

impl TokenizeSummary {
    pub fn render(&self) -> String {
        format!(
            "documents {} (train {}, validation {}), tokens {}, {:.1} MB of text\n\
             read + encode {:.1} s ({:.0} tokens/s, {:.2} MB/s); shard writing alongside: busy {:.1} s, \
             {:.2} s CPU ({:.0} tokens per CPU-second)\n",
            self.documents,
            self.train_documents,
            self.validation_documents,
            self.tokens,
            self.input_bytes as f64 / 1e6,
            self.encode_seconds,
            self.tokens as f64 / self.encode_seconds.max(1e-9),
            self.input_bytes as f64 / 1e6 / self.encode_seconds.max(1e-9),
            self.write_seconds,
            self.write_cpu_seconds,
            self.tokens as f64 / self.write_cpu_seconds.max(1e-9)
        )
    }
}

/// Whether document `id` belongs to the validation split.
pub fn is_validation(id: &str, fraction: f64, seed: u64) -> bool {
    let unit = (xxh3_64_with_seed(id.as_bytes(), seed) >> 11) as f64 / (1u64 << 53) as f64;
    unit < fraction
}

/// Where encoded documents go: straight into the writer, into shuffle buckets, or (the
/// training split without a shuffle) into one part writer after another.
pub(super) enum Sink {
    Direct(ShardWriter),
    Parts {
        parts: super::parts::PartSink,
        config: serde_json::Value,
    },
    /// The shuffle: buckets on disk, each written as its part (`shuffle`).
    Buckets {
        files: Vec<BufWriter<File>>,
        paths: Vec<PathBuf>,
        seed: u64,
        parts: super::parts::PartSink,
        config: serde_json::Value,
    },
}

impl Sink {
    pub(super) fn new(
        dir: &Path,
        tokenizer: &LoadedTokenizer,
        options: &TokenizeOptions,
        config: &serde_json::Value,
        name: &str,
    ) -> Result<Self> {
        let Some(shuffle) = &options.shuffle else {
            if name == "train" {
                // Checked and cleared as a whole writer would; then the parts write into it.
                format::prepare_dataset_dir(dir, options.overwrite)?;
                return Ok(Self::Parts {
                    parts: super::parts::PartSink::new(
                        dir,
                        tokenizer.spec.clone(),
                        options.max_shard_tokens,
                    ),
                    config: config.clone(),
                });
            }
            return Ok(Self::Direct(
                ShardWriter::builder(dir, DatasetKind::Pretrain, tokenizer.spec.clone())
                    .max_shard_tokens(options.max_shard_tokens)
                    .overwrite(options.overwrite)
                    .config(config.clone())
                    .build()?,
            ));
        };
        format::prepare_dataset_dir(dir, options.overwrite)?;
        super::shuffle::allow_open_files(shuffle.buckets)?;
        let tmp = dir.join(".shuffle");
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let paths: Vec<PathBuf> = (0..shuffle.buckets)
            .map(|b| tmp.join(format!("{name}-{b:05}.bin")))
            .collect();
        let files = paths
            .iter()
            .map(|p| File::create(p).map(|f| BufWriter::with_capacity(1 << 16, f)))
            .collect::<std::io::Result<_>>()
            .context("creating shuffle buckets")?;
        Ok(Self::Buckets {
            files,
            paths,
            seed: shuffle.seed,
            parts: super::parts::PartSink::new(
                dir,
                tokenizer.spec.clone(),
                options.max_shard_tokens,
            ),
            config: config.clone(),
        })
    }

    /// The next documents are part `part`'s (see `parts`); only the part writer cares.
    pub(super) fn start_part(&mut self, part: usize) -> Result<()> {
        match self {
            Sink::Parts { parts, .. } => parts.start(part),
            _ => Ok(()),
        }
    }

    fn push(&mut self, doc: &Encoded) -> Result<()> {
        match self {
            Sink::Parts { parts, .. } => parts.push(doc),
            Sink::Direct(writer) => writer
                .write(PretrainDoc {
                    doc_id: &doc.id,
                    source: &doc.source,
                    tokens: &doc.tokens,
                })
                .map_err(Into::into),
            Sink::Buckets { files, seed, .. } => {
                let b = super::shuffle::bucket_of(&doc.id, *seed, files.len());
                write_record(&mut files[b], doc)
            }
        }
    }

    fn finish(self) -> Result<format::Manifest> {
        match self {
            Sink::Direct(writer) => Ok(writer.finish()?),
            Sink::Parts { parts, config } => parts.finish_dataset(config),
            Sink::Buckets {
                files,
                paths,
                seed,
                mut parts,
                config,
            } => {
                for mut f in files {
                    f.flush()?;
                }
                for (b, path) in paths.iter().enumerate() {
                    // Already in input order, which the stable sort keeps for ties (a
                    // split run's shards tasks tag documents with their inputs instead).
                    let mut docs: Vec<(u32, Encoded)> =
                        read_records(path)?.into_iter().map(|d| (0, d)).collect();
                    super::shuffle::shuffle_bucket(&mut docs, seed);
                    parts.start(b)?;
                    for (_, d) in &docs {
                        parts.push(d)?;
                    }
                    std::fs::remove_file(path).ok();
                }
                if let Some(dir) = paths.first().and_then(|p| p.parent()) {
                    std::fs::remove_dir(dir).ok();
                }
                parts.finish_dataset(config)
            }
        }
    }
}

/// What the encoding side sends the writer thread.
pub(super) enum ToWriter {
    /// The documents after this are part `n`'s (see `parts`).
    Part(usize),
    Batch(Vec<Encoded>),
    /// The input is complete: finish the datasets.
    Done,
}

/// The writer thread: every encoded batch into the train or validation sink, then both
/// finished (last shards, manifests) once the input is complete; if the input failed, the
/// channel closes without `Done` and no manifest is written. Returns the summary's document
/// and token counts and the writing times; the reading side fills in the rest.
pub(super) fn write_all(
    batches: std::sync::mpsc::Receiver<ToWriter>,
    mut train: Option<Sink>,
    mut val: Option<Sink>,
    options: &TokenizeOptions,
) -> Result<TokenizeSummary> {
    let cpu_start = crate::thread_cpu::thread_cpu().as_secs_f64();
    let mut written = TokenizeSummary::default();
    let mut complete = false;
    for message in batches {
        let batch = match message {
            ToWriter::Part(part) => {
                if let Some(train) = train.as_mut() {
                    train.start_part(part)?;
                }
                continue;
            }
            ToWriter::Batch(batch) => batch,
            ToWriter::Done => {
                complete = true;
                break;
            }
        };
        let t = Instant::now();
        for doc in &batch {
            written.documents += 1;
            written.tokens += doc.tokens.len() as u64;
            match val
                .as_mut()
                .filter(|_| is_validation(&doc.id, options.validation_fraction, options.split_seed))
            {
                Some(sink) => {
                    written.validation_documents += 1;
                    sink.push(doc)?;
                }
                None => {
                    written.train_documents += 1;
                    train
                        .as_mut()
                        .context("a training document where the tasks wrote the training split")?
                        .push(doc)?;
                }
            }
        }
        drop(batch);
        written.write_seconds += t.elapsed().as_secs_f64();
    }
    if !complete {
        bail!("the input was not read to the end; no dataset written");
    }
    let t = Instant::now();
    if let Some(train) = train {
        train.finish()?;
    }
    if let Some(val) = val {
        val.finish()?;
    }
    written.write_seconds += t.elapsed().as_secs_f64();
    written.write_cpu_seconds = crate::thread_cpu::thread_cpu().as_secs_f64() - cpu_start;
    Ok(written)
}

/// Encodes every document of `input` into `OUT/train` (and `OUT/val`).
pub fn tokenize(
    input: &InputConfig,
    options: &TokenizeOptions,
    show_progress: bool,
) -> Result<TokenizeSummary> {
    options.check()?;
    if let Some(train) = &options.train {
        super::train::train_tokenizer(&train.config(input, &options.tokenizer), show_progress)?;
    }
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let eos = tokenizer.eos()?;
    let files = expand_inputs(&input.paths, input.reader.format)?;
    // Where remote inputs are fetched to, a few at a time.
    let staging = storage::scratch_dir(&format!("tokenize-inputs#{}", options.output.display()));
    let resolved = serde_json::json!({"input": input, "tokenize": options});
    // Without a shuffle the training split is written in parts: each input's part.
    let part_of = match options.shuffle {
        None => Some(super::parts::part_of_files(&files, options.part_bytes)?),
        Some(_) => None,
    };
    let train = Sink::new(
        &options.output.join("train"),
        &tokenizer,
        options,
        &resolved,
        "train",
    )?;
    let val = if options.validation_fraction > 0.0 {
        Some(Sink::new(
            &options.output.join("val"),
            &tokenizer,
            options,
            &resolved,
            "val",
        )?)
    } else {
        None
    };
    let bar = if show_progress {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut issues: Vec<String> = Vec::new();
    let mut input_bytes = 0u64;
    // Encoded batches go to a writer thread over a bounded channel, so the encoders never
    // wait while a shard is assembled, hashed and written.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<ToWriter>(2);
    let mut summary = std::thread::scope(|scope| -> Result<TokenizeSummary> {
        let writer = scope.spawn(move || write_all(receiver, Some(train), val, options));
        let mut writer_gone = false;
        let mut encode_batch = |batch: Vec<Document>| -> Result<()> {
            let encoded = batch
                .par_iter()
                .map(|doc| encode(&tokenizer, eos, doc, options.max_piece_bytes))
                .collect::<Result<Vec<Encoded>>>()?;
            input_bytes += batch.iter().map(|d| d.text.len() as u64).sum::<u64>();
            bar.set_message(format!("{:.0} MB of text", input_bytes as f64 / 1e6));
            // A closed channel means the writer stopped on an error; join() reports it.
            sender.send(ToWriter::Batch(encoded)).map_err(|_| {
                writer_gone = true;
                anyhow!("the shard writer stopped")
            })
        };
        // Remote inputs are fetched up to FETCH_AHEAD past the one being read, each copy
        // removed once read: the download overlaps the encoding.
        let numbered: Vec<(usize, &PathBuf)> = files.iter().enumerate().collect();
        let mut read = || -> Result<()> {
            storage::each_staged(&numbered, &staging, storage::FETCH_AHEAD, |index, file| {
                if let Some(part_of) = &part_of {
                    sender
                        .send(ToWriter::Part(part_of[index]))
                        .map_err(|_| anyhow!("the shard writer stopped"))?;
                }
                let seen =
                    read_in_batches(file, &input.reader, options.batch_size, &mut encode_batch)?;
                issues.extend(seen.issues.iter().map(ToString::to_string));
                bar.inc(1);
                Ok(std::ops::ControlFlow::Continue(()))
            })
        };
        let read_result = read();
        if read_result.is_ok() {
            // Only a complete input is finished into shards and manifests.
            let _ = sender.send(ToWriter::Done);
        }
        drop(sender);
        let written = writer
            .join()
            .map_err(|_| anyhow!("the shard writer panicked"))?;
        // Report the first cause: the writer's error if it stopped first, else the input's.
        match read_result {
            Ok(()) => written,
            Err(e) if writer_gone => Err(written.err().unwrap_or(e)),
            Err(e) => Err(e),
        }
    })?;
    bar.finish_and_clear();
    std::fs::remove_dir_all(&staging).ok();
    summary.issues = issues;
    summary.input_bytes = input_bytes;
    summary.encode_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
