//! `pipeline`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use pipeline::config::PipelineConfig;
use pipeline::inspect::{InspectOptions, inspect};
use pipeline::run::run;

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
