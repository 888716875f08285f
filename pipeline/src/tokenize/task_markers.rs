//! What the tasks of a split `pipeline tokenize` run share: their done markers (in the
//! dataset's `tasks/`, with the config they were written under), the checks every step
//! makes, and the scratch copies of a run with something in object storage.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use format::ShardEntry;
use serde::{Deserialize, Serialize};

use super::pretrain::{TokenizeOptions, TokenizeSummary};
use crate::readers::InputConfig;
use crate::shard::TaskSlice;
use crate::storage;

/// A tokenize or shards task's done marker.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TokenizeDone {
    pub(super) config: serde_json::Value,
    pub(super) summary: TokenizeSummary,
    /// The training shards of the parts the task wrote, in part order (a tokenize task's
    /// without a shuffle, a shards task's with one).
    #[serde(default)]
    pub(super) shards: Vec<ShardEntry>,
    /// With a shuffle, a tokenize task's: every bucket's byte range in its pack (`shuffle`).
    #[serde(default)]
    pub(super) buckets: Vec<[u64; 2]>,
}

impl TokenizeDone {
    /// Writes the marker `marker` (a conditional create on object storage: of two tasks
    /// given one index, one claims it).
    pub(super) fn claim(&self, marker: &Path) -> Result<()> {
        storage::write_marker(marker, &serde_json::to_vec_pretty(self)?)
    }
}

pub(super) fn resolved(input: &InputConfig, options: &TokenizeOptions) -> serde_json::Value {
    serde_json::json!({"input": input, "tokenize": options})
}

/// Settings that cannot work split. With `[tokenize.train]` the tasks do not train: the
/// tokenizer must be there already, trained by a split clean run's `tokenizer` stage.
pub(super) fn check(options: &TokenizeOptions) -> Result<()> {
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
pub(super) fn is_remote(input: &InputConfig, options: &TokenizeOptions) -> bool {
    input.paths.iter().any(|p| storage::is_remote(p))
        || storage::is_remote_path(&options.tokenizer)
        || storage::is_remote_path(&options.output)
}

/// Reads a task's marker, refusing one written under another config (naming the field).
pub(super) fn read_done(marker: &Path, config: &serde_json::Value) -> Result<TokenizeDone> {
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

/// The markers of every task of `stage` (`tokenize` or `shards`) in the dataset's
/// directory, checked against `config`; an error names the tasks without one.
pub(super) fn task_markers(
    options: &TokenizeOptions,
    config: &serde_json::Value,
    stage: &str,
    tasks: usize,
) -> Result<Vec<TokenizeDone>> {
    let mut done = Vec::with_capacity(tasks);
    let mut missing = Vec::new();
    for index in 0..tasks {
        let marker = options
            .output
            .join(TaskSlice::new(index, tasks)?.marker(stage));
        if storage::exists(&marker)? {
            done.push(read_done(&marker, config)?);
        } else {
            missing.push(index);
        }
    }
    ensure!(
        missing.is_empty(),
        "{stage} tasks {missing:?} of {tasks} have no done marker in {}: run them first",
        options.output.display()
    );
    Ok(done)
}

/// The options with local paths: the tokenizer fetched into `scratch`, a remote output
/// replaced by `scratch/out`.
pub(super) fn localized(options: &TokenizeOptions, scratch: &Path) -> Result<TokenizeOptions> {
    let mut local = options.clone();
    local.tokenizer = storage::fetch_input(&options.tokenizer, &scratch.join("tokenizer"))?;
    if storage::is_remote_path(&options.output) {
        local.output = scratch.join("out");
    }
    Ok(local)
}

pub(super) fn scratch(options: &TokenizeOptions, label: &str) -> PathBuf {
    storage::scratch_dir(&format!("tokenize#{}#{label}", options.output.display()))
}
