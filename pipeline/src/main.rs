//! `pipeline`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pipeline::inspect::{InspectOptions, inspect};

/// The jielong data pipeline: web corpora to tokenized Arrow datasets for the trainer.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
