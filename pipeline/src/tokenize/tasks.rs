//! `pipeline tokenize CONFIG --tasks N`: encoding split into tasks, then one finish step that
//! writes the dataset. Task i encodes the inputs whose number in the sorted listing is
//! i mod N into `OUT/work/encoded-NNNNN.bin` (documents with their ids, sources and token
//! ids, EOS appended; zstd level 1, 2.4x smaller than raw ids), then writes its marker `OUT/tasks/tokenize-0000i-of-0000N.json`.
//! `--finish` checks every marker and sends the encoded documents, in input order, through
//! the one-process run's writer (validation split, shuffle buckets, shards, manifests): the
//! shards and manifests are the local `pipeline tokenize` bytes whatever N, while the
//! encoding, nearly all of the CPU time, is spread over the tasks.
//!
//! With inputs, tokenizer or output in object storage, a task fetches its own inputs and
//! the tokenizer into a scratch directory, encodes there, uploads its encoded files to
//! `OUT/work/` and then writes its marker (a conditional create: of two tasks given one
//! index, one claims it); `--finish` fetches the encoded files, writes the dataset in
//! scratch through the same writer and uploads it with every `manifest.json` last, then
//! removes the encoded files: the same bytes, only where the files live changes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use format::ShardEntry;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::LoadedTokenizer;
use super::encoded::{Encoded, encode, read_compressed_records, write_record};
use super::pretrain::{Sink, ToWriter, TokenizeOptions, TokenizeSummary, is_validation, write_all};
use crate::readers::{InputConfig, expand_inputs, read_in_batches};
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

/// A tokenize task's done marker.
#[derive(Debug, Serialize, Deserialize)]
struct TokenizeDone {
    config: serde_json::Value,
    summary: TokenizeSummary,
    /// Without a shuffle: the training shards of the parts the task wrote, in part order.
    #[serde(default)]
    shards: Vec<ShardEntry>,
}

fn resolved(input: &InputConfig, options: &TokenizeOptions) -> serde_json::Value {
    serde_json::json!({"input": input, "tokenize": options})
}

fn encoded_path(options: &TokenizeOptions, index: usize) -> PathBuf {
    options.output.join(format!("work/encoded-{index:05}.bin"))
}

/// Settings that cannot work split. With `[tokenize.train]` the tasks do not train: the
/// tokenizer must be there already, trained by a split clean run's `tokenizer` stage.
fn check(options: &TokenizeOptions) -> Result<()> {
    options.check()?;
    if options.train.is_some() {
        ensure!(
            storage::exists(&options.tokenizer)?,
            "tokenize.tokenizer {} does not exist: with [tokenize.train], a split run trains it first in its tokenizer stage (`pipeline clean CONFIG --stage tokenizer --tasks N`)",
            options.tokenizer.display()
        );
    }
    Ok(())
}

/// Whether inputs, tokenizer or output are in object storage (see `remote_task`).
fn is_remote(input: &InputConfig, options: &TokenizeOptions) -> bool {
    input.paths.iter().any(|p| storage::is_remote(p))
        || storage::is_remote_path(&options.tokenizer)
        || storage::is_remote_path(&options.output)
}

/// Reads a task's marker, refusing one written under another config (naming the field).
fn read_done(marker: &Path, config: &serde_json::Value) -> Result<TokenizeDone> {
    let done: TokenizeDone = serde_json::from_slice(&storage::read_small(marker)?)
        .with_context(|| format!("reading the done marker {}", marker.display()))?;
    if let Some(field) = crate::clean::first_difference(&done.config, config, "") {
        bail!(
            "{} was written with a different config ({field} differs): rerun every task with one config, or remove the output",
            marker.display()
        );
    }
    Ok(done)
}

/// Task `task`: encodes its inputs (an input already encoded is kept), then writes its
/// marker. Returns the task's counts (documents, tokens, input bytes).
pub fn tokenize_task(
    input: &InputConfig,
    options: &TokenizeOptions,
    task: TaskSlice,
) -> Result<TokenizeSummary> {
    check(options)?;
    if is_remote(input, options) {
        return remote_task(input, options, task);
    }
    let config = resolved(input, options);
    let marker = options.output.join(task.marker("tokenize"));
    if marker.exists() {
        tracing::info!("{} exists: this task is done", marker.display());
        return Ok(read_done(&marker, &config)?.summary);
    }
    let owned = owned_files(input, options, task)?;
    clear_old_dataset(options)?;
    let (summary, shards) = encode_files(input, &owned.files, options, owned.part_of.as_deref())?;
    write_done(options, task, config, &summary, shards)?;
    Ok(summary)
}

/// Without a shuffle the tasks write training shards before anything else would notice an
/// old dataset there: its manifest is refused unless `overwrite`, else removed first (it
/// names shards a part is about to replace; the finish removes shards no task wrote).
fn clear_old_dataset(options: &TokenizeOptions) -> Result<()> {
    if options.shuffle.is_some() {
        return Ok(());
    }
    let manifest = options.output.join("train/manifest.json");
    if storage::exists(&manifest)? {
        ensure!(
            options.overwrite,
            "{} exists: set tokenize.overwrite = true to replace the dataset",
            manifest.display()
        );
        storage::remove(&manifest)?;
    }
    Ok(())
}

/// A task's inputs (number in the sorted listing, path) and, without a shuffle, every
/// input's part (`parts`).
struct Owned {
    files: Vec<(usize, PathBuf)>,
    part_of: Option<Vec<usize>>,
}

/// The inputs of task `task`, with their numbers in the sorted listing; without a shuffle,
/// also every input's part (`parts`), a task owning the inputs of parts p with p mod N its
/// index, else the inputs i with i mod N its index.
fn owned_files(input: &InputConfig, options: &TokenizeOptions, task: TaskSlice) -> Result<Owned> {
    let files = expand_inputs(&input.paths, input.reader.format)?;
    let part_of = match options.shuffle {
        Some(_) => None,
        None => Some(super::parts::part_of_files(&files, options.part_bytes)?),
    };
    let owned = files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| task.owns(part_of.as_ref().map_or(*i, |parts| parts[*i])))
        .collect();
    Ok(Owned {
        files: owned,
        part_of,
    })
}

/// Writes a task's marker (`options.output` local or remote).
fn write_done(
    options: &TokenizeOptions,
    task: TaskSlice,
    config: serde_json::Value,
    summary: &TokenizeSummary,
    shards: Vec<ShardEntry>,
) -> Result<()> {
    let done = TokenizeDone {
        config,
        summary: summary.clone(),
        shards,
    };
    let marker = options.output.join(task.marker("tokenize"));
    storage::write_marker(&marker, &serde_json::to_vec_pretty(&done)?)
}

/// Encodes local `files` (number, path) into `encoded_path(options, number)`; with the
/// inputs' parts (no shuffle), their training documents go into their parts' shards under
/// `options.output/train` instead, and only the validation ones into the encoded files.
/// Returns the counts (documents and tokens of the shards written) and the shards.
fn encode_files(
    input: &InputConfig,
    files: &[(usize, PathBuf)],
    options: &TokenizeOptions,
    part_of: Option<&[usize]>,
) -> Result<(TokenizeSummary, Vec<ShardEntry>)> {
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let eos = tokenizer.eos()?;
    let mut summary = TokenizeSummary::default();
    let started = std::time::Instant::now();
    let mut parts = part_of.map(|_| {
        super::parts::PartSink::new(
            &options.output.join("train"),
            tokenizer.spec.clone(),
            options.max_shard_tokens,
        )
    });
    for (index, file) in files {
        if let (Some(sink), Some(part_of)) = (parts.as_mut(), part_of) {
            sink.start(part_of[*index])?;
        }
        let path = encoded_path(options, *index);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = path.with_extension("partial");
        let created = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut out = std::io::BufWriter::new(zstd::stream::write::Encoder::new(created, 1)?);
        let seen = read_in_batches(file, &input.reader, options.batch_size, &mut |batch| {
            let encoded = batch
                .par_iter()
                .map(|doc| encode(&tokenizer, eos, doc, options.max_piece_bytes))
                .collect::<Result<Vec<Encoded>>>()?;
            summary.input_bytes += batch.iter().map(|d| d.text.len() as u64).sum::<u64>();
            for doc in &encoded {
                match parts.as_mut() {
                    Some(sink)
                        if !is_validation(
                            &doc.id,
                            options.validation_fraction,
                            options.split_seed,
                        ) =>
                    {
                        summary.documents += 1;
                        summary.train_documents += 1;
                        summary.tokens += doc.tokens.len() as u64;
                        sink.push(doc)?;
                    }
                    _ => write_record(&mut out, doc)?,
                }
            }
            Ok(())
        })?;
        summary
            .issues
            .extend(seen.issues.iter().map(ToString::to_string));
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|encoder| encoder.finish())
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {}", partial.display()))?;
    }
    summary.encode_seconds = started.elapsed().as_secs_f64();
    let shards = match parts {
        Some(sink) => sink.finish()?,
        None => Vec::new(),
    };
    Ok((summary, shards))
}

/// The finish step: every task's marker, then the dataset from every input's encoded
/// documents in input order, as the one-process run writes it; the encoded files are removed.
pub fn tokenize_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
) -> Result<TokenizeSummary> {
    check(options)?;
    if is_remote(input, options) {
        return remote_finish(input, options, tasks);
    }
    let tasks_done = read_markers(input, options, tasks)?;
    let files = expand_inputs(&input.paths, input.reader.format)?.len();
    let feed = |send: &mut dyn FnMut(Vec<Encoded>) -> Result<()>| {
        (0..files)
            .try_for_each(|index| send(read_compressed_records(&encoded_path(options, index))?))
    };
    let config = resolved(input, options);
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let summary = write_dataset(options, &tokenizer, &config, feed)?;
    write_train_manifest(
        options,
        &tokenizer.spec,
        &options.output,
        &config,
        &tasks_done,
    )?;
    for index in 0..files {
        std::fs::remove_file(encoded_path(options, index)).ok();
    }
    std::fs::remove_dir(options.output.join("work")).ok();
    Ok(tasks_done.add_to(summary))
}

/// What the tasks' markers say together.
struct TasksDone {
    input_bytes: u64,
    issues: Vec<String>,
    /// The training shards the tasks wrote (without a shuffle), in part order, and their
    /// documents and tokens.
    shards: Vec<ShardEntry>,
    written: TokenizeSummary,
}

impl TasksDone {
    /// The finish's summary of what it wrote, with what the tasks read and wrote.
    fn add_to(self, summary: TokenizeSummary) -> TokenizeSummary {
        TokenizeSummary {
            input_bytes: self.input_bytes,
            issues: self.issues,
            documents: summary.documents + self.written.documents,
            train_documents: summary.train_documents + self.written.train_documents,
            tokens: summary.tokens + self.written.tokens,
            ..summary
        }
    }
}

/// Without a shuffle: the training split's manifest over the shards the tasks wrote (in
/// `out/train`, where the tokenizer is copied; `options.output/train` holds the shards,
/// in the bucket when it is remote), after removing shards there that no task wrote (an
/// earlier run's).
fn write_train_manifest(
    options: &TokenizeOptions,
    tokenizer: &format::TokenizerSpec,
    out: &Path,
    config: &serde_json::Value,
    done: &TasksDone,
) -> Result<()> {
    if options.shuffle.is_some() {
        return Ok(());
    }
    let shards_dir = options.output.join("train");
    let listed: std::collections::HashSet<&str> =
        done.shards.iter().map(|s| s.file.as_str()).collect();
    for name in storage::list_names(&shards_dir)? {
        if name.starts_with("shard-") && name.ends_with(".arrow") && !listed.contains(name.as_str())
        {
            storage::remove(&shards_dir.join(&name))?;
        }
    }
    format::write_parts_manifest(
        &out.join("train"),
        format::DatasetKind::Pretrain,
        tokenizer.clone(),
        config.clone(),
        done.shards.clone(),
    )?;
    Ok(())
}

/// Every task's marker (local or remote), checked against the config: the input bytes and
/// issues they sum to.
fn read_markers(input: &InputConfig, options: &TokenizeOptions, tasks: usize) -> Result<TasksDone> {
    let config = resolved(input, options);
    let mut done = TasksDone {
        input_bytes: 0,
        issues: Vec::new(),
        shards: Vec::new(),
        written: TokenizeSummary::default(),
    };
    let mut missing = Vec::new();
    for index in 0..tasks {
        let marker = options
            .output
            .join(TaskSlice::new(index, tasks)?.marker("tokenize"));
        if !storage::exists(&marker)? {
            missing.push(index);
            continue;
        }
        let task = read_done(&marker, &config)?;
        done.input_bytes += task.summary.input_bytes;
        done.issues.extend(task.summary.issues);
        done.written.documents += task.summary.documents;
        done.written.train_documents += task.summary.train_documents;
        done.written.tokens += task.summary.tokens;
        done.shards.extend(task.shards);
    }
    // Part by part, as the one-process run lists them (`shard-PPPPP-IIIII.arrow`).
    done.shards.sort_by(|a, b| a.file.cmp(&b.file));
    if !missing.is_empty() {
        bail!(
            "tokenize tasks {missing:?} of {tasks} have no done marker in {}: rerun them first",
            options.output.display()
        );
    }
    Ok(done)
}

/// Writes the dataset under `options.output` (local) from the encoded documents `feed`
/// sends, every input's in input order, with `config` (the user's) in its manifests.
fn write_dataset(
    options: &TokenizeOptions,
    tokenizer: &LoadedTokenizer,
    config: &serde_json::Value,
    feed: impl FnOnce(&mut dyn FnMut(Vec<Encoded>) -> Result<()>) -> Result<()>,
) -> Result<TokenizeSummary> {
    // Without a shuffle the tasks wrote the training split (`write_train_manifest`).
    let train = match options.shuffle {
        Some(_) => Some(Sink::new(
            &options.output.join("train"),
            tokenizer,
            options,
            config,
            "train",
        )?),
        None => None,
    };
    let val = if options.validation_fraction > 0.0 {
        Some(Sink::new(
            &options.output.join("val"),
            tokenizer,
            options,
            config,
            "val",
        )?)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<ToWriter>(2);
    let mut summary = std::thread::scope(|scope| -> Result<TokenizeSummary> {
        let writer = scope.spawn(move || write_all(receiver, train, val, options));
        let sent = feed(&mut |docs| {
            sender
                .send(ToWriter::Batch(docs))
                .map_err(|_| anyhow!("the shard writer stopped"))
        });
        if sent.is_ok() {
            let _ = sender.send(ToWriter::Done);
        }
        drop(sender);
        let written = writer
            .join()
            .map_err(|_| anyhow!("the shard writer panicked"))?;
        sent.and(written)
    })?;
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
    let slice = if finish {
        None
    } else {
        TaskSlice::from_args_or_env(task, tasks)?
    };
    ensure!(
        !(finish || slice.is_some()) || config.tokenize.train.is_none(),
        "tokenize --tasks needs a trained tokenizer: train it first (`pipeline tokenizer train`) and remove [tokenize.train] (a split `pipeline clean` run trains it in its tokenizer stage)"
    );
    if finish {
        let tasks = tasks.context("--finish needs --tasks N")?;
        return tokenize_finish(&config.input, &config.tokenize, tasks);
    }
    match slice {
        Some(task) => tokenize_task(&config.input, &config.tokenize, task),
        None => super::remote::tokenize_anywhere(&config.input, &config.tokenize, show_progress),
    }
}

/// The options with local paths: the tokenizer fetched into `scratch`, a remote output
/// replaced by `scratch/out`.
fn localized(options: &TokenizeOptions, scratch: &Path) -> Result<TokenizeOptions> {
    let mut local = options.clone();
    local.tokenizer = storage::fetch_input(&options.tokenizer, &scratch.join("tokenizer"))?;
    if storage::is_remote_path(&options.output) {
        local.output = scratch.join("out");
    }
    Ok(local)
}

fn scratch(options: &TokenizeOptions, label: &str) -> PathBuf {
    storage::scratch_dir(&format!("tokenize#{}#{label}", options.output.display()))
}

/// Task `task` of a split tokenize run with something remote.
fn remote_task(
    input: &InputConfig,
    options: &TokenizeOptions,
    task: TaskSlice,
) -> Result<TokenizeSummary> {
    let config = resolved(input, options);
    let marker = options.output.join(task.marker("tokenize"));
    if storage::exists(&marker)? {
        tracing::info!("{} exists: this task is done", marker.display());
        return Ok(read_done(&marker, &config)?.summary);
    }
    let scratch = scratch(options, &task.marker("tokenize"));
    let local = localized(options, &scratch)?;
    let owned = owned_files(input, options, task)?;
    clear_old_dataset(options)?;
    let staged = storage::fetch_all(&owned.files, &scratch.join("inputs"))?;
    let files: Vec<(usize, PathBuf)> = owned.files.iter().map(|(i, _)| *i).zip(staged).collect();
    let (summary, shards) = encode_files(input, &files, &local, owned.part_of.as_deref())?;
    if storage::is_remote_path(&options.output) {
        for (index, _) in &files {
            let url = encoded_path(options, *index);
            RemoteObject::parse(&url.to_string_lossy())?.upload(&encoded_path(&local, *index))?;
        }
        for shard in &shards {
            let url = options.output.join("train").join(&shard.file);
            RemoteObject::parse(&url.to_string_lossy())?
                .upload(&local.output.join("train").join(&shard.file))?;
        }
    }
    write_done(options, task, config, &summary, shards)?;
    std::fs::remove_dir_all(&scratch).ok();
    Ok(summary)
}

/// The finish step of a split tokenize run with something remote.
fn remote_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
) -> Result<TokenizeSummary> {
    let remote_output = storage::is_remote_path(&options.output);
    let manifest = options.output.join("train/manifest.json");
    if remote_output && !options.overwrite && storage::exists(&manifest)? {
        bail!(
            "{} exists: set tokenize.overwrite = true to replace the dataset",
            manifest.display()
        );
    }
    let tasks_done = read_markers(input, options, tasks)?;
    let files = expand_inputs(&input.paths, input.reader.format)?.len();
    let scratch = scratch(options, "finish");
    // A scratch copy left by a failed attempt is not trusted.
    std::fs::remove_dir_all(&scratch).ok();
    let local = localized(options, &scratch)?;
    // Each input's encoded documents: fetched up to FETCH_AHEAD past the one being written
    // (a GET each, at the same time), and each copy removed once sent to the writer, so the
    // scratch disk holds a few of them, not all.
    let indices: Vec<usize> = (0..files).collect();
    let staging = scratch.join("encoded");
    let fetch = |&index: &usize| {
        if remote_output {
            storage::stage_input(&encoded_path(options, index), &staging)
        } else {
            storage::stage_input(&encoded_path(&local, index), &staging)
        }
    };
    let feed = |send: &mut dyn FnMut(Vec<Encoded>) -> Result<()>| {
        storage::in_order_ahead(&indices, storage::FETCH_AHEAD, fetch, |_, staged| {
            send(read_compressed_records(staged?.path())?)?;
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .map(drop)
    };
    let config = resolved(input, options);
    let tokenizer = LoadedTokenizer::load(&local.tokenizer)?;
    let summary = write_dataset(&local, &tokenizer, &config, feed)?;
    write_train_manifest(
        options,
        &tokenizer.spec,
        &local.output,
        &config,
        &tasks_done,
    )?;
    if remote_output {
        let url = options.output.to_string_lossy();
        storage::upload_dir(&local.output, &url, &["work", "tasks"], &["manifest.json"])?;
    }
    for index in 0..files {
        storage::remove(&encoded_path(options, index))?;
    }
    if !remote_output {
        std::fs::remove_dir(options.output.join("work")).ok();
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(tasks_done.add_to(summary))
}
