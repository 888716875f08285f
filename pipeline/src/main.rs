//! `pipeline`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use pipeline::config::PipelineConfig;
use pipeline::inspect::{InspectOptions, inspect};
use pipeline::readers::ReaderOptions;
use pipeline::run::run;
use pipeline::tokenize::chat::{ChatTokenizeOptions, Truncation, tokenize_chat};
use pipeline::tokenize::pretrain::{TokenizeConfig, tokenize};
use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};

/// Tokenization and the per-document stages allocate many small strings from several threads;
/// mimalloc's thread-local free lists make that much cheaper than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The jielong data pipeline: web corpora to tokenized Arrow datasets for the trainer.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read corpora (WARC/WET/JSONL/Parquet/text), extract, normalize, identify the language,
    /// filter, redact PII and deduplicate. Writes OUT/kept/ (the kept documents),
    /// OUT/docs-*.parquet (one row per input document with every score and why it was dropped)
    /// and OUT/summary.json. Rerunning with the same config skips finished inputs.
    Clean {
        /// The TOML config (see configs/pipeline/).
        config: PathBuf,
        /// Print the resolved config (every default filled in) and exit.
        #[arg(long)]
        dry_run: bool,
        /// Worker threads (overrides run.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Train a tokenizer.
    Tokenizer {
        #[command(subcommand)]
        command: TokenizerCommand,
    },
    /// Encode documents into a pretraining dataset (OUT/train, OUT/val) with the [input] and
    /// [tokenize] tables of a config; see configs/pipeline/tokenize.toml.
    Tokenize { config: PathBuf },
    /// Render labeler exports (JSONL in the TRL shapes) into an sft or preference dataset.
    TokenizeChat {
        /// sft ({"id","messages","meta"} records) or preference ({"id","prompt","chosen","rejected","meta"}).
        #[arg(long)]
        kind: ChatKind,
        /// The tokenizer.json (must have the chat special tokens, e.g. one from `pipeline tokenizer train`).
        #[arg(long)]
        tokenizer: PathBuf,
        /// The dataset directory to write.
        #[arg(long)]
        output: PathBuf,
        /// Longest example in tokens.
        #[arg(long, default_value_t = 2048)]
        max_seq_len: usize,
        /// What to do with longer examples.
        #[arg(long, value_enum, default_value_t = Truncation::Drop)]
        truncation: Truncation,
        /// Replace an existing dataset in OUTPUT.
        #[arg(long)]
        overwrite: bool,
        /// Export files (JSONL, .jsonl.gz, .jsonl.zst, or the labeler's Parquet), directories or globs.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Write an HTML report with charts of a clean run (and optionally its tokenized dataset).
    Report {
        /// The clean run directory (output.dir of the config).
        run: PathBuf,
        /// A tokenized dataset to include (token-length distribution).
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Output file.
        #[arg(long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Describe a dataset directory: manifest, tokenizer, shards, a few rows. Opening reads
    /// only metadata; --verify reads everything.
    Inspect {
        /// The dataset directory (the one holding manifest.json).
        dataset: PathBuf,
        /// Rows to show from the first shard.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Check every file's sha256 and every token id against the vocabulary.
        #[arg(long)]
        verify: bool,
        /// Print manifest.json as JSON instead.
        #[arg(long, conflicts_with_all = ["samples", "verify"])]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (with jielong's special tokens) on documents.
    Train {
        /// Output tokenizer.json.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 32_000)]
        vocab_size: usize,
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Stop after this many bytes of text (0 = all).
        #[arg(long, default_value_t = 1 << 30)]
        max_bytes: u64,
        /// Bound on the total bytes of distinct words kept for training; when the table fills,
        /// the rarest words are dropped. Peak memory is roughly 100x this (2 GB by default).
        #[arg(long, default_value_t = pipeline::tokenize::train::default_max_word_bytes())]
        max_word_bytes: u64,
        /// JSONL / Parquet field holding the text.
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Input files, directories or globs (any format `clean` reads).
        #[arg(required = true)]
        inputs: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ChatKind {
    Sft,
    Preference,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Clean {
            config,
            dry_run,
            threads,
        } => {
            let mut config = PipelineConfig::load(&config)?;
            if let Some(threads) = threads {
                config.run.threads = threads;
            }
            if dry_run {
                println!("{}", toml::to_string_pretty(&config)?);
                return Ok(());
            }
            let summary = run(&config, std::io::stderr().is_terminal())?;
            print!("{}", summary.render());
            println!("outputs in {}", config.output.dir.display());
            if config.run.fail_on_error && summary.read_issues > 0 {
                anyhow::bail!(
                    "{} input records could not be read (run.fail_on_error)",
                    summary.read_issues
                );
            }
        }
        Command::Tokenizer {
            command:
                TokenizerCommand::Train {
                    output,
                    vocab_size,
                    min_frequency,
                    max_bytes,
                    max_word_bytes,
                    text_field,
                    inputs,
                },
        } => {
            let config = TokenizerTrainConfig {
                inputs,
                reader: ReaderOptions {
                    text_field,
                    ..ReaderOptions::default()
                },
                output: output.clone(),
                vocab_size,
                min_frequency,
                max_bytes,
                max_word_bytes,
            };
            let summary = train_tokenizer(&config, std::io::stderr().is_terminal())?;
            println!(
                "trained on {} documents ({:.1} MB, {} distinct words, {:.1} MB of them{}); vocabulary {} -> {}",
                summary.documents,
                summary.bytes as f64 / 1e6,
                summary.distinct_words,
                summary.word_bytes as f64 / 1e6,
                if summary.pruned_up_to > 0 {
                    format!(
                        "; words seen at most {} times were dropped to stay under --max-word-bytes",
                        summary.pruned_up_to
                    )
                } else {
                    String::new()
                },
                summary.vocab_size,
                output.display()
            );
        }
        Command::Tokenize { config } => {
            let config = TokenizeConfig::load(&config)?;
            let summary = tokenize(
                &config.input,
                &config.tokenize,
                std::io::stderr().is_terminal(),
            )?;
            print!("{}", summary.render());
            println!("datasets in {}", config.tokenize.output.display());
        }
        Command::TokenizeChat {
            kind,
            tokenizer,
            output,
            max_seq_len,
            truncation,
            overwrite,
            inputs,
        } => {
            let options = ChatTokenizeOptions {
                kind: match kind {
                    ChatKind::Sft => format::DatasetKind::Sft,
                    ChatKind::Preference => format::DatasetKind::Preference,
                },
                inputs,
                tokenizer,
                output: output.clone(),
                max_seq_len,
                truncation,
                overwrite,
            };
            let summary = tokenize_chat(&options)?;
            print!("{}", summary.render());
            println!("dataset in {}", output.display());
            if !summary.errors.is_empty() {
                anyhow::bail!(
                    "{} records could not be used (listed above)",
                    summary.errors.len()
                );
            }
        }
        Command::Report {
            run,
            dataset,
            output,
        } => {
            pipeline::report::report(&run, dataset.as_deref(), &output)?;
            println!("report written to {}", output.display());
        }
        Command::Inspect {
            dataset,
            samples,
            verify,
            json,
        } => {
            if json {
                let opened = format::Dataset::open(&dataset)?;
                println!("{}", serde_json::to_string_pretty(opened.manifest())?);
            } else {
                let options = InspectOptions {
                    samples,
                    verify,
                    ..InspectOptions::default()
                };
                inspect(&dataset, options, &mut std::io::stdout().lock())?;
            }
        }
    }
    Ok(())
}
