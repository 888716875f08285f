//! `pipeline tokenizer train`: a byte-level BPE tokenizer (GPT-2 style: every byte is in the
//! alphabet, so nothing is ever unknown) trained with the `tokenizers` crate. Texts stream in
//! from the readers; the trainer keeps word counts, not the corpus, and `max_bytes` caps how
//! much text it sees, so a large corpus trains in bounded memory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use serde::{Deserialize, Serialize};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::readers::{ReadEvent, ReaderOptions, expand_inputs, read_file};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerTrainConfig {
    /// Files, directories or globs (e.g. a clean run's `kept/*.jsonl.zst`).
    pub inputs: Vec<String>,
    #[serde(default)]
    pub reader: ReaderOptions,
    /// Where to write `tokenizer.json`.
    pub output: PathBuf,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Stop feeding text after this many bytes (0 = no limit).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
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

/// Counts of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainSummary {
    pub documents: u64,
    pub bytes: u64,
    pub vocab_size: usize,
}

/// Trains and saves the tokenizer; special tokens (`<|endoftext|>` and the chat markers) get
/// the first ids.
pub fn train_tokenizer(config: &TokenizerTrainConfig, show_progress: bool) -> Result<TrainSummary> {
    ensure!(
        config.vocab_size > 256 + format::SPECIAL_TOKENS.len(),
        "vocab_size {} is too small for a byte-level BPE (needs > 261)",
        config.vocab_size
    );
    let files = expand_inputs(&config.inputs, config.reader.format)?;
    let specials: Vec<AddedToken> = format::SPECIAL_TOKENS
        .iter()
        .map(|(_, text)| AddedToken::from(*text, true))
        .collect();
    let bpe_trainer = BpeTrainerBuilder::new()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(show_progress)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(bpe_trainer);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, true, true)));

    // A reader thread streams texts through a bounded channel: the trainer counts words as
    // they arrive and the corpus is never held in memory.
    let limit = if config.max_bytes == 0 {
        u64::MAX
    } else {
        config.max_bytes
    };
    let (sender, receiver) = std::sync::mpsc::sync_channel::<String>(4096);
    let reader_options = config.reader.clone();
    let reader = std::thread::spawn(move || -> Result<(u64, u64)> {
        let (mut documents, mut bytes) = (0u64, 0u64);
        for file in &files {
            if bytes >= limit {
                break;
            }
            read_file(file, &reader_options, &mut |event| {
                if let ReadEvent::Document(doc) = event
                    && bytes < limit
                {
                    bytes += doc.text.len() as u64;
                    documents += 1;
                    // A send error means the trainer stopped; the join below reports why.
                    let _ = sender.send(doc.text);
                }
            })?;
        }
        Ok((documents, bytes))
    });
    let trained = tokenizer
        .train(&mut trainer, receiver.into_iter())
        .map(|_| ())
        .map_err(|e| anyhow!("training the tokenizer: {e}"));
    let (documents, bytes) = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))??;
    trained?;
    ensure!(documents > 0, "no documents in {:?}", config.inputs);
    tokenizer.add_special_tokens(&specials);
    if let Some(dir) = config.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    save_atomic(&tokenizer, &config.output)?;
    Ok(TrainSummary {
        documents,
        bytes,
        vocab_size: tokenizer.get_vocab_size(true),
    })
}

fn save_atomic(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    tokenizer
        .save(&tmp, false)
        .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
