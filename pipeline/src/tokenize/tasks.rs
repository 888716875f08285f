//! `pipeline tokenize CONFIG --tasks N`: the dataset written by tasks, then a finish step.
//! Task i encodes its inputs: without a shuffle the inputs of the parts p with p mod N = i
//! (`parts`), their training documents written as those parts' shards; with one the inputs
//! whose number in the sorted listing is i mod N, their training documents packed by shuffle
//! bucket for the shards tasks (`shuffle`). Either way its validation documents go to
//! `OUT/work/encoded-NNNNN.bin` (ids, sources and token ids, EOS appended; zstd level 1), and
//! its marker `OUT/tasks/tokenize-0000i-of-0000N.json` comes last. `--finish` checks every
//! marker, writes the validation split through the one-process run's writer and the
//! training split's manifest over the shards the markers list: the shards and manifests are
//! the local `pipeline tokenize` bytes whatever N.
//!
//! With inputs, tokenizer or output in object storage, a task fetches its own inputs and
//! the tokenizer into a scratch directory, encodes there, uploads its shards, encoded files
//! and pack, and then writes its marker (a conditional create: of two tasks given one
//! index, one claims it); `--finish` fetches the encoded files, writes the validation split
//! in scratch and uploads it with every `manifest.json` last, then removes the work files:
//! the same bytes, only where the files live changes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use format::ShardEntry;
use rayon::prelude::*;

use super::LoadedTokenizer;
use super::encoded::{Encoded, encode, read_compressed_records, write_record};
use super::pretrain::{Sink, ToWriter, TokenizeOptions, TokenizeSummary, is_validation, write_all};
use super::shuffle::{TaskBuckets, pack_path};
use super::task_markers::{
    TokenizeDone, check, is_remote, localized, read_done, resolved, scratch, task_markers,
};
use crate::readers::{InputConfig, expand_inputs, read_in_batches};
use crate::shard::TaskSlice;
use crate::storage::{self, RemoteObject};

fn encoded_path(options: &TokenizeOptions, index: usize) -> PathBuf {
    options.output.join(format!("work/encoded-{index:05}.bin"))
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
    // Every input is local here (`remote_task` takes the others).
    let staging = options.output.join("work");
    let (summary, train) =
        encode_files(input, &owned.files, options, task, &owned.part_of, &staging)?;
    write_done(options, task, config, &summary, train)?;
    Ok(summary)
}

/// The tasks (or, with a shuffle, the shards tasks after them) write training shards before
/// anything else would notice an old dataset there: its manifest is refused unless
/// `overwrite`, else removed first (it names shards a part is about to replace; the finish
/// removes shards no task wrote).
fn clear_old_dataset(options: &TokenizeOptions) -> Result<()> {
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
    train: TrainWritten,
) -> Result<()> {
    let done = TokenizeDone {
        config,
        summary: summary.clone(),
        shards: train.shards,
        buckets: train.buckets,
    };
    done.claim(&options.output.join(task.marker("tokenize")))
}

/// Where a task's training documents go: without a shuffle its parts' shards, with one its
/// pack's buckets (`shuffle`).
enum TrainTo<'a> {
    Parts {
        sink: Box<super::parts::PartSink>,
        part_of: &'a [usize],
    },
    Buckets(TaskBuckets),
}

/// What a task wrote of the training split: shards, or a pack's bucket ranges.
#[derive(Default)]
struct TrainWritten {
    shards: Vec<ShardEntry>,
    buckets: Vec<[u64; 2]>,
}

/// Encodes `files` (number, path; remote ones fetched into `staging`): their validation
/// documents into
/// `encoded_path(options, number)`, their training documents into their parts' shards under
/// `options.output/train` (no shuffle: `part_of` holds every input's part) or into task
/// `task`'s shuffle pack. Returns the counts (documents and tokens of the training split)
/// and what was written of it.
fn encode_files(
    input: &InputConfig,
    files: &[(usize, PathBuf)],
    options: &TokenizeOptions,
    task: TaskSlice,
    part_of: &Option<Vec<usize>>,
    staging: &Path,
) -> Result<(TokenizeSummary, TrainWritten)> {
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let eos = tokenizer.eos()?;
    let mut summary = TokenizeSummary::default();
    let started = std::time::Instant::now();
    let mut train = match (&options.shuffle, part_of) {
        (Some(shuffle), _) => TrainTo::Buckets(TaskBuckets::create(
            &options
                .output
                .join(format!("work/buckets-task-{:05}", task.index())),
            shuffle.buckets,
            shuffle.seed,
        )?),
        (None, Some(part_of)) => TrainTo::Parts {
            sink: Box::new(super::parts::PartSink::new(
                &options.output.join("train"),
                tokenizer.spec.clone(),
                options.max_shard_tokens,
            )),
            part_of,
        },
        (None, None) => bail!("a task without a shuffle needs its inputs' parts"),
    };
    // Remote inputs are fetched up to FETCH_AHEAD past the one being encoded, each copy
    // removed once encoded: the download overlaps the encoding, and the scratch disk holds a
    // few inputs, not the task's share.
    storage::each_staged(files, staging, storage::FETCH_AHEAD, |index, file| {
        if let TrainTo::Parts { sink, part_of } = &mut train {
            sink.start(part_of[index])?;
        }
        let path = encoded_path(options, index);
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
                if is_validation(&doc.id, options.validation_fraction, options.split_seed) {
                    write_record(&mut out, doc)?;
                    continue;
                }
                summary.documents += 1;
                summary.train_documents += 1;
                summary.tokens += doc.tokens.len() as u64;
                match &mut train {
                    TrainTo::Parts { sink, .. } => sink.push(doc)?,
                    TrainTo::Buckets(buckets) => buckets.push(index, doc)?,
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
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    summary.encode_seconds = started.elapsed().as_secs_f64();
    let written = match train {
        TrainTo::Parts { sink, .. } => TrainWritten {
            shards: sink.finish()?,
            ..TrainWritten::default()
        },
        TrainTo::Buckets(buckets) => TrainWritten {
            buckets: buckets.pack(&pack_path(&options.output, task), task.count())?,
            ..TrainWritten::default()
        },
    };
    Ok((summary, written))
}

/// The finish step: every task's marker, then the validation split from every input's
/// encoded documents in input order and the manifests, as the one-process run writes them;
/// then its own marker (`tasks/finish-00000-of-00001.json`), and the work files are removed.
pub fn tokenize_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
) -> Result<TokenizeSummary> {
    check(options)?;
    let config = resolved(input, options);
    // Written once the dataset is complete, before the work files go: a finish stopped
    // while removing them (or run again) finds the dataset written and only removes them.
    let marker = options.output.join(TaskSlice::new(0, 1)?.marker("finish"));
    if storage::exists(&marker)? {
        tracing::info!("{} exists: the dataset is written", marker.display());
        let done = read_done(&marker, &config)?;
        let files = expand_inputs(&input.paths, input.reader.format)?.len();
        remove_work(options, files, tasks)?;
        return Ok(done.summary);
    }
    let (summary, files) = if is_remote(input, options) {
        remote_finish(input, options, tasks, &config)?
    } else {
        local_finish(input, options, tasks, &config)?
    };
    let done = TokenizeDone {
        config,
        summary,
        shards: Vec::new(),
        buckets: Vec::new(),
    };
    storage::write_small(&marker, &serde_json::to_vec_pretty(&done)?)?;
    remove_work(options, files, tasks)?;
    Ok(done.summary)
}

/// The finish of a local run: the dataset written, with `config` (the resolved one) in its
/// manifests; returns its summary and the number of inputs.
fn local_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
    config: &serde_json::Value,
) -> Result<(TokenizeSummary, usize)> {
    let tasks_done = read_markers(input, options, tasks)?;
    let files = expand_inputs(&input.paths, input.reader.format)?.len();
    let feed = |send: &mut dyn FnMut(Vec<Encoded>) -> Result<()>| {
        (0..files)
            .try_for_each(|index| send(read_compressed_records(&encoded_path(options, index))?))
    };
    let tokenizer = LoadedTokenizer::load(&options.tokenizer)?;
    let summary = write_dataset(options, &tokenizer, config, feed)?;
    write_train_manifest(
        options,
        &tokenizer.spec,
        &options.output,
        config,
        &tasks_done,
    )?;
    Ok((tasks_done.add_to(summary), files))
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

/// The training split's manifest over the shards the (shards) tasks wrote (in
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
/// issues they sum to, and the training shards the tokenize tasks (without a shuffle) or the
/// shards tasks (with one) wrote.
fn read_markers(input: &InputConfig, options: &TokenizeOptions, tasks: usize) -> Result<TasksDone> {
    let config = resolved(input, options);
    let mut done = TasksDone {
        input_bytes: 0,
        issues: Vec::new(),
        shards: Vec::new(),
        written: TokenizeSummary::default(),
    };
    for task in task_markers(options, &config, "tokenize", tasks)? {
        done.input_bytes += task.summary.input_bytes;
        done.issues.extend(task.summary.issues);
        done.written.documents += task.summary.documents;
        done.written.train_documents += task.summary.train_documents;
        done.written.tokens += task.summary.tokens;
        done.shards.extend(task.shards);
    }
    if options.shuffle.is_some() {
        for task in task_markers(options, &config, "shards", tasks)? {
            done.shards.extend(task.shards);
        }
    }
    // Part by part, as the one-process run lists them (`shard-PPPPP-IIIII.arrow`).
    done.shards.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(done)
}

/// Removes what the tasks of `files` inputs left for the finish (encoded files and shuffle
/// packs).
fn remove_work(options: &TokenizeOptions, files: usize, tasks: usize) -> Result<()> {
    for index in 0..files {
        storage::remove(&encoded_path(options, index))?;
    }
    if options.shuffle.is_some() {
        for task in 0..tasks {
            storage::remove(&pack_path(&options.output, TaskSlice::new(task, tasks)?))?;
        }
    }
    if !storage::is_remote_path(&options.output) {
        std::fs::remove_dir(options.output.join("work")).ok();
    }
    Ok(())
}

/// Writes the dataset under `options.output` (local) from the encoded documents `feed`
/// sends, every input's in input order, with `config` (the user's) in its manifests.
fn write_dataset(
    options: &TokenizeOptions,
    tokenizer: &LoadedTokenizer,
    config: &serde_json::Value,
    feed: impl FnOnce(&mut dyn FnMut(Vec<Encoded>) -> Result<()>) -> Result<()>,
) -> Result<TokenizeSummary> {
    // The tasks (or the shards tasks) wrote the training split (`write_train_manifest`).
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
        let writer = scope.spawn(move || write_all(receiver, None, val, options));
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

/// Which step of a split `pipeline tokenize` run a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A tokenize task (`--task i --tasks N`), or the one-process run without `--tasks`.
    Encode,
    /// A shards task (`--shards`): with `[tokenize.shuffle]`, its buckets as shards.
    Shards,
    /// The finish (`--finish --tasks N`): the validation split and the manifests.
    Finish,
}

/// `pipeline tokenize`: the one-process run (local or `s3://`), a task of a split run's
/// tokenize or shards step (from `--task`/`--tasks` or the scheduler's environment), or
/// the finish step.
pub fn run_command(
    config: &super::pretrain::TokenizeConfig,
    task: Option<usize>,
    tasks: Option<usize>,
    step: Step,
    show_progress: bool,
) -> Result<TokenizeSummary> {
    let slice = match step {
        Step::Finish => None,
        _ => TaskSlice::from_args_or_env(task, tasks)?,
    };
    ensure!(
        (step == Step::Encode && slice.is_none()) || config.tokenize.train.is_none(),
        "tokenize --tasks needs a trained tokenizer: train it first (`pipeline tokenizer train`) and remove [tokenize.train] (a split `pipeline clean` run trains it in its tokenizer stage)"
    );
    match (step, slice) {
        (Step::Finish, _) => {
            let tasks = tasks.context("--finish needs --tasks N")?;
            tokenize_finish(&config.input, &config.tokenize, tasks)
        }
        (Step::Shards, Some(task)) => {
            super::shuffle::shards_task(&config.input, &config.tokenize, task)
        }
        (Step::Shards, None) => {
            bail!("--shards needs --tasks N and --task i (or a scheduler's task index)")
        }
        (Step::Encode, Some(task)) => tokenize_task(&config.input, &config.tokenize, task),
        (Step::Encode, None) => {
            super::remote::tokenize_anywhere(&config.input, &config.tokenize, show_progress)
        }
    }
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
    let (summary, train) = encode_files(
        input,
        &owned.files,
        &local,
        task,
        &owned.part_of,
        &scratch.join("inputs"),
    )?;
    if storage::is_remote_path(&options.output) {
        for (index, _) in &owned.files {
            let url = encoded_path(options, *index);
            RemoteObject::parse(&url.to_string_lossy())?.upload(&encoded_path(&local, *index))?;
        }
        if options.shuffle.is_some() {
            let url = pack_path(&options.output, task);
            RemoteObject::parse(&url.to_string_lossy())?.upload(&pack_path(&local.output, task))?;
        }
        for shard in &train.shards {
            let url = options.output.join("train").join(&shard.file);
            RemoteObject::parse(&url.to_string_lossy())?
                .upload(&local.output.join("train").join(&shard.file))?;
        }
    }
    write_done(options, task, config, &summary, train)?;
    std::fs::remove_dir_all(&scratch).ok();
    Ok(summary)
}

/// The finish step of a split tokenize run with something remote (`config` as in
/// `local_finish`).
fn remote_finish(
    input: &InputConfig,
    options: &TokenizeOptions,
    tasks: usize,
    config: &serde_json::Value,
) -> Result<(TokenizeSummary, usize)> {
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
    let tokenizer = LoadedTokenizer::load(&local.tokenizer)?;
    let summary = write_dataset(&local, &tokenizer, config, feed)?;
    write_train_manifest(options, &tokenizer.spec, &local.output, config, &tasks_done)?;
    if remote_output {
        let url = options.output.to_string_lossy();
        storage::upload_dir(&local.output, &url, &["work", "tasks"], &["manifest.json"])?;
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok((tasks_done.add_to(summary), files))
}
