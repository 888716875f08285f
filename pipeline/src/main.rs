//! `pipeline`: command-line entry point; parses arguments (see `cli`) and calls the library.

mod cli;
mod cluster_cli;

use std::io::IsTerminal;

use anyhow::{Result, bail};
use clap::Parser;

use cli::{Cli, Command, TokenizerCommand};
use pipeline::clean::{self, run_stage};
use pipeline::config::PipelineConfig;
use pipeline::extract_command;
use pipeline::inspect::{InspectOptions, inspect};
use pipeline::readers::ReaderOptions;
use pipeline::shard::TaskSlice;
use pipeline::tokenize::chat::{ChatTokenizeOptions, tokenize_chat};
use pipeline::tokenize::pretrain::TokenizeConfig;
use pipeline::tokenize::tasks as tokenize_tasks;
use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};

/// Tokenization and the per-document stages allocate many small strings from several threads;
/// mimalloc's thread-local free lists make that much cheaper than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let progress = std::io::stderr().is_terminal();
    match Cli::parse().command {
        Command::Clean {
            config,
            dry_run,
            threads,
            task,
            stage,
            finish,
        } => {
            if finish {
                let (config, tasks) = (PipelineConfig::load(&config)?, task.tasks.unwrap_or(1));
                print!("{}", clean::finish(&config, tasks)?.render());
                return Ok(());
            }
            let task = TaskSlice::from_args_or_env(task.task, task.tasks)?;
            let mut config = PipelineConfig::load(&config)?;
            if let Some(threads) = threads {
                config.run.threads = threads;
            }
            if dry_run {
                println!("{}", toml::to_string_pretty(&config)?);
                return Ok(());
            }
            let summary = run_stage(&config, stage, task, progress)?;
            print!("{}", summary.render());
            println!("outputs in {}", config.output.dir.display());
            if config.run.fail_on_error && summary.read_issues > 0 {
                bail!(
                    "{} input records could not be read (run.fail_on_error)",
                    summary.read_issues
                );
            }
        }
        Command::Extract {
            file,
            url,
            explain,
            jsonl_out,
        } => extract_command::run(&file, url.as_deref(), explain, jsonl_out.as_deref())?,
        Command::Launch { scheduler } => cluster_cli::launch(scheduler)?,
        Command::Status {
            config,
            tasks,
            json,
            wait,
            poll_seconds,
            timeout,
            failed_grace,
        } => cluster_cli::status(
            &config,
            cluster_cli::StatusArgs {
                tasks,
                json,
                wait: wait.as_deref(),
                poll_seconds,
                timeout,
                failed_grace,
            },
        )?,
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
                output,
                vocab_size,
                min_frequency,
                max_bytes,
                max_word_bytes,
            };
            let summary = train_tokenizer(&config, progress)?;
            print!("{}", summary.render(&config.output));
        }
        Command::Tokenize(args) => {
            let config = TokenizeConfig::load(&args.config)?;
            let (task, tasks) = (args.task.task, args.task.tasks);
            let step = match (args.shards, args.finish) {
                (true, _) => tokenize_tasks::Step::Shards,
                (_, true) => tokenize_tasks::Step::Finish,
                _ => tokenize_tasks::Step::Encode,
            };
            let summary = tokenize_tasks::run_command(&config, task, tasks, step, progress)?;
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
                kind: kind.into(),
                inputs,
                tokenizer,
                output,
                max_seq_len,
                truncation,
                overwrite,
            };
            let summary = tokenize_chat(&options)?;
            print!("{}", summary.render());
            println!("dataset in {}", options.output.display());
            if !summary.errors.is_empty() {
                bail!(
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
