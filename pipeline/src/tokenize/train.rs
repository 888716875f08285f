//! `pipeline tokenizer train`: a byte-level BPE tokenizer (GPT-2 style: every byte is in the
//! alphabet, so nothing is ever unknown) trained with the `tokenizers` crate's BPE trainer.
//! Texts stream in from the readers and only word counts are kept, in a table of at most
//! `max_word_bytes` bytes of distinct words: when it fills, the rarest words are dropped (see
//! [`WordCounts`]). Chinese has no spaces, so every clause is a "word" and most are unique;
//! without the bound the table (and the trainer's per-character symbols for each entry)
//! grows with the corpus. `max_bytes` caps how much text is read at all.
//!
//! Inputs and output may be `s3://` (a split run's `tokenizer` stage trains on the kept
//! documents in the bucket and writes the tokenizer there for the `tokenize` pods): remote
//! inputs are fetched one at a time into a scratch directory, read and removed, so no more
//! than `max_bytes` of text is fetched beyond one file; a remote output is written in scratch
//! and uploaded whole (one object, never a partial one).

use std::path::{Path, PathBuf};

use ahash::AHashMap;
use anyhow::{Context, Result, anyhow, ensure};
use compact_str::CompactString;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::fast::ByteLevelSplitter;
use crate::readers::{ReadEvent, ReaderOptions, expand_inputs, read_file};
use crate::storage::{self, RemoteObject};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerTrainConfig {
    /// Files, directories or globs (e.g. a clean run's `kept/*.jsonl.zst`).
    pub inputs: Vec<String>,
    #[serde(default)]
    pub reader: ReaderOptions,
    /// Where to write `tokenizer.json` (local or `s3://`).
    pub output: PathBuf,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Stop feeding text after this many bytes (0 = no limit).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Bound on the total length (bytes) of the distinct words kept for training; the BPE
    /// trainer needs roughly 100 bytes of memory per byte of distinct words.
    #[serde(default = "default_max_word_bytes")]
    pub max_word_bytes: u64,
}

fn default_vocab_size() -> usize {
    32_000
}
fn default_min_frequency() -> u64 {
    2
}
fn default_max_bytes() -> u64 {
    1 << 30
}
pub fn default_max_word_bytes() -> u64 {
    20_000_000
}

/// Counts of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainSummary {
    pub documents: u64,
    pub bytes: u64,
    pub vocab_size: usize,
    /// Distinct words the merges were learned from.
    pub distinct_words: usize,
    /// Their total length in bytes (what the trainer's memory follows).
    pub word_bytes: u64,
    /// Words seen at most this often were dropped to keep the table bounded (0: none).
    pub pruned_up_to: u64,
}

impl TrainSummary {
    /// One line for the terminal, naming the tokenizer file written to `output`.
    pub fn render(&self, output: &Path) -> String {
        let pruned = if self.pruned_up_to > 0 {
            format!(
                "; words seen at most {} times were dropped to stay under --max-word-bytes",
                self.pruned_up_to
            )
        } else {
            String::new()
        };
        format!(
            "trained on {} documents ({:.1} MB, {} distinct words, {:.1} MB of them{pruned}); vocabulary {} -> {}\n",
            self.documents,
            self.bytes as f64 / 1e6,
            self.distinct_words,
            self.word_bytes as f64 / 1e6,
            self.vocab_size,
            output.display()
        )
    }
}

/// Word frequencies (keys in the byte-level alphabet, as the BPE trainer wants them) in a
/// bounded table. The bound is on the words' total length in bytes, because the trainer
/// holds a symbol per byte of every distinct word: when the table holds more than `max`
/// bytes, the words counted at most `floor` times are dropped, `floor` rising until at most
/// half is left. Only rare words lose counts (a dropped word that comes back is counted from
/// then on); in Chinese, where most clauses are unique "words", this keeps a sample of them.
#[derive(Debug)]
struct WordCounts {
    counts: AHashMap<CompactString, u64>,
    /// Total length of the keys in original bytes (= byte-level characters).
    bytes: u64,
    max: u64,
    floor: u64,
}

impl WordCounts {
    fn add(&mut self, batch: AHashMap<CompactString, u64>) {
        for (word, n) in batch {
            let symbols = word.chars().count() as u64;
            let count = self.counts.entry(word).or_insert_with(|| {
                self.bytes += symbols;
                0
            });
            *count += n;
        }
        while self.bytes > self.max {
            self.floor += 1;
            let floor = self.floor;
            let mut bytes = 0;
            self.counts.retain(|word, n| {
                let keep = *n > floor;
                if keep {
                    bytes += word.chars().count() as u64;
                }
                keep
            });
            self.bytes = bytes;
            if self.bytes <= self.max / 2 {
                break;
            }
        }
    }
}

pub fn train_tokenizer(config: &TokenizerTrainConfig, show_progress: bool) -> Result<TrainSummary> {
    ensure!(
        config.vocab_size > 256 + format::SPECIAL_TOKENS.len(),
        "vocab_size {} is too small for a byte-level BPE (needs > {})",
        config.vocab_size,
        256 + format::SPECIAL_TOKENS.len()
    );
    let files = expand_inputs(&config.inputs, config.reader.format)?;
    let specials: Vec<AddedToken> = format::SPECIAL_TOKENS
        .iter()
        .map(|(_, text)| AddedToken::from(*text, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(show_progress)
        .build();
    let splitter = ByteLevelSplitter::new()?;

    let limit = if config.max_bytes == 0 {
        u64::MAX
    } else {
        config.max_bytes
    };
    // Documents go to the counting threads in batches over a bounded channel.
    const BATCH: usize = 512;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<String>>(4);
    let reader_options = config.reader.clone();
    let scratch = storage::scratch_dir(&format!("tokenizer#{}", config.output.display()));
    let fetch_to = scratch.join("inputs");
    let reader = std::thread::spawn(move || -> Result<(u64, u64)> {
        let (mut documents, mut bytes) = (0u64, 0u64);
        let mut batch = Vec::with_capacity(BATCH);
        // A remote input is fetched while the one before is read: one ahead, as reading may
        // stop at `max_bytes` (the copy of one fetched for nothing is removed when dropped).
        let files: Vec<(usize, PathBuf)> = files.into_iter().enumerate().collect();
        storage::each_staged(&files, &fetch_to, 1, |_, file| {
            read_file(file, &reader_options, &mut |event| {
                if let ReadEvent::Document(doc) = event
                    && bytes < limit
                {
                    bytes += doc.text.len() as u64;
                    documents += 1;
                    batch.push(doc.text);
                    if batch.len() == BATCH {
                        let _ = sender.send(std::mem::take(&mut batch));
                    }
                }
            })?;
            Ok(if bytes >= limit {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            })
        })?;
        let _ = sender.send(batch);
        Ok((documents, bytes))
    });
    let mut words = WordCounts {
        counts: AHashMap::new(),
        bytes: 0,
        max: config.max_word_bytes.max(10_000),
        floor: 0,
    };
    for batch in receiver {
        let counted = batch
            .par_iter()
            .fold(AHashMap::<CompactString, u64>::new, |mut counts, text| {
                let mut mapped = String::new();
                for word in splitter.words(text) {
                    mapped.clear();
                    splitter.map_bytes(word, &mut mapped);
                    *counts.entry(CompactString::from(&mapped)).or_default() += 1;
                }
                counts
            })
            .reduce(AHashMap::new, |a, b| {
                let (small, mut big) = if a.len() < b.len() { (a, b) } else { (b, a) };
                for (word, n) in small {
                    *big.entry(word).or_default() += n;
                }
                big
            });
        words.add(counted);
    }
    let (documents, bytes) = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))??;
    ensure!(documents > 0, "no documents in {:?}", config.inputs);
    let mut bpe = BPE::default();
    trainer
        .do_train(&words.counts, &mut bpe)
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    let distinct_words = words.counts.len();
    let word_bytes = words.bytes;
    drop(words.counts);
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, true, true)));
    tokenizer.add_special_tokens(&specials);
    let remote = storage::is_remote_path(&config.output);
    let output = if remote {
        scratch.join("tokenizer.json")
    } else {
        config.output.clone()
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    save_atomic(&tokenizer, &output)?;
    if remote {
        RemoteObject::parse(&config.output.to_string_lossy())?.upload(&output)?;
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(TrainSummary {
        documents,
        bytes,
        vocab_size: tokenizer.get_vocab_size(true),
        distinct_words,
        word_bytes,
        pruned_up_to: words.floor,
    })
}

fn save_atomic(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    tokenizer
        .save(&tmp, false)
        .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
