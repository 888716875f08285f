//! `pipeline tokenize CONFIG --tasks N`: encoding split into tasks, then one finish step that
//! writes the dataset. Task i encodes the inputs whose number in the sorted listing is
//! i mod N into `OUT/work/encoded-NNNNN.bin` (documents with their ids, sources and token
//! ids, EOS appended), then writes its marker `OUT/tasks/tokenize-0000i-of-0000N.json`.
//! `--finish` checks every marker and sends the encoded documents, in input order, through
//! the one-process run's writer (validation split, shuffle buckets, shards, manifests): the
//! shards and manifests are the local `pipeline tokenize` bytes whatever N, while the
//! encoding, nearly all of the CPU time, is spread over the tasks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::LoadedTokenizer;
use super::pretrain::{
    Encoded, Sink, ToWriter, TokenizeOptions, TokenizeSummary, encode, read_records, write_all,
    write_record,
};
use crate::readers::{InputConfig, expand_inputs, read_in_batches};
use crate::shard::TaskSlice;
use crate::storage;

/// A tokenize task's done marker.
#[derive(Debug, Serialize, Deserialize)]
struct TokenizeDone {
    config: serde_json::Value,
    summary: TokenizeSummary,
}

fn resolved(input: &InputConfig, options: &TokenizeOptions) -> serde_json::Value {
    serde_json::json!({"input": input, "tokenize": options})
}

fn encoded_path(options: &TokenizeOptions, index: usize) -> PathBuf {
    options.output.join(format!("work/encoded-{index:05}.bin"))
}

fn check(input: &InputConfig, options: &TokenizeOptions) -> Result<()> {
    options.check()?;
    ensure!(
        options.train.is_none(),
        "tokenize --tasks needs a trained tokenizer: train it first (`pipeline tokenizer train`) and remove [tokenize.train]"
    );
    let remote = input.paths.iter().any(|p| storage::is_remote(p))
        || storage::is_remote_path(&options.tokenizer)
        || storage::is_remote_path(&options.output);
    ensure!(
        !remote,
        "tokenize --tasks reads and writes local paths only for now (run `pipeline tokenize` for s3://)"
    );
    Ok(())
}

/// Reads a task's marker, refusing one written under another config (naming the field).
fn read_done(marker: &Path, config: &serde_json::Value) -> Result<TokenizeSummary> {
    let done: TokenizeDone = serde_json::from_slice(&storage::read_small(marker)?)
        .with_context(|| format!("reading the done marker {}", marker.display()))?;
    if let Some(field) = crate::clean::first_difference(&done.config, config, "") {
        bail!(
            "{} was written with a different config ({field} differs): rerun every task with one config, or remove the output",
            marker.display()
        );
    }
    Ok(done.summary)
}

/// Task `task`: encodes its inputs (an input already encoded is kept), then writes its
/// marker. Returns the task's counts (documents, tokens, input bytes).
pub fn tokenize_task(
    input: &InputConfig,
    options: &TokenizeOptions,
    task: TaskSlice,
) -> Result<TokenizeSummary> {
    check(input, options)?;
    let config = resolved(input, options);
    let marker = options.output.join(task.marker("tokenize"));
    if marker.exists() {
        tracing::info!("{} exists: this task is done", marker.display());
        return read_done(&marker, &config);
    }
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let eos = tokenizer.eos()?;
    let files = expand_inputs(&input.paths, input.reader.format)?;
    let mut summary = TokenizeSummary::default();
    let started = std::time::Instant::now();
    for (index, file) in files.iter().enumerate().filter(|(i, _)| task.owns(*i)) {
        let path = encoded_path(options, index);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = path.with_extension("partial");
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?,
        );
        let seen = read_in_batches(file, &input.reader, options.batch_size, &mut |batch| {
            let encoded = batch
                .par_iter()
                .map(|doc| encode(&tokenizer, eos, doc, options))
                .collect::<Result<Vec<Encoded>>>()?;
            summary.input_bytes += batch.iter().map(|d| d.text.len() as u64).sum::<u64>();
            for doc in &encoded {
                write_record(&mut out, doc)?;
            }
            Ok(())
        })?;
        summary
            .issues
            .extend(seen.issues.iter().map(ToString::to_string));
        std::io::Write::flush(&mut out)
            .with_context(|| format!("writing {}", partial.display()))?;
        drop(out);
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {}", partial.display()))?;
    }
    summary.encode_seconds = started.elapsed().as_secs_f64();
    let done = TokenizeDone {
        config,
        summary: summary.clone(),
    };
    storage::write_marker(&marker, &serde_json::to_vec_pretty(&done)?)?;
    Ok(summary)
}

/// The finish step: every task's marker, then the dataset from every input's encoded
/// documents in input order, as the one-process run writes it; the encoded files are removed.
pub fn tokenize_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
) -> Result<TokenizeSummary> {
    check(input, options)?;
    let config = resolved(input, options);
    let mut input_bytes = 0;
    let mut issues = Vec::new();
    let mut missing = Vec::new();
    for index in 0..tasks {
        let marker = options
            .output
            .join(TaskSlice::new(index, tasks)?.marker("tokenize"));
        if !marker.exists() {
            missing.push(index);
            continue;
        }
        let task = read_done(&marker, &config)?;
        input_bytes += task.input_bytes;
        issues.extend(task.issues);
    }
    if !missing.is_empty() {
        bail!(
            "tokenize tasks {missing:?} of {tasks} have no done marker in {}: rerun them first",
            options.output.display()
        );
    }
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let files = expand_inputs(&input.paths, input.reader.format)?.len();
    let train = Sink::new(
        &options.output.join("train"),
        &tokenizer,
        options,
        &config,
        "train",
    )?;
    let val = if options.validation_fraction > 0.0 {
        Some(Sink::new(
            &options.output.join("val"),
            &tokenizer,
            options,
            &config,
            "val",
        )?)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<ToWriter>(2);
    let mut summary = std::thread::scope(|scope| -> Result<TokenizeSummary> {
        let writer = scope.spawn(move || write_all(receiver, train, val, options));
        let send = || -> Result<()> {
            for index in 0..files {
                let docs = read_records(&encoded_path(options, index))?;
                sender
                    .send(ToWriter::Batch(docs))
                    .map_err(|_| anyhow!("the shard writer stopped"))?;
            }
            Ok(())
        };
        let sent = send();
        if sent.is_ok() {
            let _ = sender.send(ToWriter::Done);
        }
        drop(sender);
        let written = writer
            .join()
            .map_err(|_| anyhow!("the shard writer panicked"))?;
        sent.and(written)
    })?;
    for index in 0..files {
        std::fs::remove_file(encoded_path(options, index)).ok();
    }
    std::fs::remove_dir(options.output.join("work")).ok();
    summary.input_bytes = input_bytes;
    summary.issues = issues;
    summary.encode_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `pipeline tokenize`: the one-process run (local or `s3://`), a task of a split run (from
/// `--task`/`--tasks` or the scheduler's environment), or with `finish` the finish step.
pub fn run_command(
    config: &super::pretrain::TokenizeConfig,
    task: Option<usize>,
    tasks: Option<usize>,
    finish: bool,
    show_progress: bool,
) -> Result<TokenizeSummary> {
    if finish {
        let tasks = tasks.context("--finish needs --tasks N")?;
        return tokenize_finish(&config.input, &config.tokenize, tasks);
    }
    match TaskSlice::from_args_or_env(task, tasks)? {
        Some(task) => tokenize_task(&config.input, &config.tokenize, task),
        None => super::remote::tokenize_anywhere(&config.input, &config.tokenize, show_progress),
    }
}
