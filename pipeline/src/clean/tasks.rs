//! One `clean` run or one task of a split run, wherever its output lives: skips a task whose
//! done marker exists, runs the stages on a local directory (the output itself, or a scratch
//! copy of a remote one), uploads a remote output (summary last), then writes the task's done
//! marker. A task killed before its marker leaves nothing a rerun takes for done.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::run::run_local;
use super::summary::RunSummary;
use super::work::write_json_atomic;
use crate::config::PipelineConfig;
use crate::shard::TaskSlice;
use crate::storage;

/// Runs the whole cleaning path for `config`.
pub fn run(config: &PipelineConfig, show_progress: bool) -> Result<RunSummary> {
    run_task(config, show_progress, None)
}

/// Runs `config`'s cleaning path, or task `task` of it.
pub fn run_task(
    config: &PipelineConfig,
    show_progress: bool,
    task: Option<TaskSlice>,
) -> Result<RunSummary> {
    let out = &config.output.dir;
    let marker = task.map(|t| out.join(t.marker("clean")));
    if let Some(marker) = &marker
        && storage::exists(marker)?
    {
        tracing::info!("{} exists: this task is done", marker.display());
        return read_marker(marker, config);
    }
    let summary = if storage::is_remote_path(out) {
        let url = out.to_string_lossy().into_owned();
        let label = task.map_or(String::new(), |t| t.marker("clean"));
        let scratch = storage::scratch_dir(&format!("{url}#{label}"));
        let mut local = config.clone();
        local.output.dir = scratch.clone();
        if let Some(tokenize) = &config.tokenize
            && storage::is_remote_path(&tokenize.output)
        {
            bail!(
                "tokenize.output {} inside a clean run must be local: run `pipeline tokenize` for an s3:// dataset",
                tokenize.output.display()
            );
        }
        let summary = run_local(&local, show_progress, task)?;
        // The config saved with the outputs is the one the user gave, not the scratch copy.
        write_json_atomic(&scratch.join("config.json"), config)?;
        storage::upload_dir(&scratch, &url, &["work"], &["summary.json"])?;
        if task.is_some() && super::dedup_tasks::dedups(config) {
            // The later dedup stages read this task's work files (not its staged inputs).
            let work = format!("{}/work", url.trim_end_matches('/'));
            storage::upload_dir(&scratch.join("work"), &work, &["inputs"], &[])?;
        }
        std::fs::remove_dir_all(&scratch).ok();
        summary
    } else {
        run_local(config, show_progress, task)?
    };
    if let Some(marker) = &marker {
        claim_marker(marker, config, &summary)?;
    }
    Ok(summary)
}

/// Writes a task's done marker (its config and summary), last.
pub(super) fn claim_marker(
    marker: &Path,
    config: &PipelineConfig,
    summary: &RunSummary,
) -> Result<()> {
    let done = TaskDone {
        config: serde_json::to_value(config)?,
        summary: summary.clone(),
    };
    storage::write_marker(marker, &serde_json::to_vec_pretty(&done)?)
}

/// The summary of a finished task (its marker exists, under this config), else `None`.
pub(super) fn done_or_check(marker: &Path, config: &PipelineConfig) -> Result<Option<RunSummary>> {
    if storage::exists(marker)? {
        tracing::info!("{} exists: this task is done", marker.display());
        return read_marker(marker, config).map(Some);
    }
    Ok(None)
}

/// Checks that all `tasks` markers of `stage` exist under this config; returns their
/// summaries.
pub(super) fn require_markers(
    config: &PipelineConfig,
    stage: &str,
    tasks: usize,
) -> Result<Vec<RunSummary>> {
    let out = &config.output.dir;
    let mut summaries = Vec::new();
    let mut missing = Vec::new();
    for index in 0..tasks {
        let marker = out.join(TaskSlice::new(index, tasks)?.marker(stage));
        if storage::exists(&marker)? {
            summaries.push(read_marker(&marker, config)?);
        } else {
            missing.push(index);
        }
    }
    if !missing.is_empty() {
        bail!(
            "tasks {missing:?} of {tasks} of stage {stage} have no done marker in {}: rerun them first",
            out.display()
        );
    }
    Ok(summaries)
}

/// The last stage of a split run: checks that every task's done marker is there, writes
/// `summary.json` over all of them and, when the config has `[tokenize]`, tokenizes the kept
/// documents of every task into one dataset.
pub fn finish(config: &PipelineConfig, tasks: usize, show_progress: bool) -> Result<RunSummary> {
    let out = &config.output.dir;
    let mut summary = RunSummary::default();
    for task in require_markers(config, "clean", tasks)? {
        add(&mut summary, task);
    }
    if super::dedup_tasks::dedups(config) {
        // The clean tasks counted what they read; the survivors tasks what they kept.
        for task in require_markers(config, "survivors", tasks)? {
            add(&mut summary, task);
        }
    }
    let summary_path = out.join("summary.json");
    if let Some(options) = &config.tokenize {
        let ext = match config.output.kept_format {
            crate::config::KeptFormat::Jsonl => "jsonl.zst",
            crate::config::KeptFormat::Parquet => "parquet",
        };
        let input = crate::readers::InputConfig {
            paths: vec![out.join(format!("kept/*.{ext}")).display().to_string()],
            reader: crate::readers::ReaderOptions::default(),
        };
        summary.tokenize = Some(crate::tokenize::remote::tokenize_anywhere(
            &input,
            options,
            show_progress,
        )?);
    }
    storage::write_small(&summary_path, &serde_json::to_vec_pretty(&summary)?)?;
    Ok(summary)
}

/// Adds one task's counts to the run's.
fn add(total: &mut RunSummary, task: RunSummary) {
    total.inputs += task.inputs;
    total.inputs_resumed += task.inputs_resumed;
    total.docs_in += task.docs_in;
    total.docs_out += task.docs_out;
    total.skipped_records += task.skipped_records;
    total.read_issues += task.read_issues;
    total.odd_markup_pages += task.odd_markup_pages;
    total.text_bytes_in += task.text_bytes_in;
    total.text_bytes_out += task.text_bytes_out;
    total.input_bytes += task.input_bytes;
    for (k, v) in task.dropped_by {
        *total.dropped_by.entry(k).or_default() += v;
    }
    for (k, v) in task.seconds {
        *total.seconds.entry(k).or_default() += v;
    }
    for (k, v) in task.stage_seconds {
        *total.stage_seconds.entry(k).or_default() += v;
    }
    total.issues.extend(task.issues);
}

/// A task's done marker: the config it ran with and what it did.
#[derive(Debug, Serialize, Deserialize)]
struct TaskDone {
    config: serde_json::Value,
    summary: RunSummary,
}

/// Reads a task's done marker, refusing one written under another config (naming the field).
fn read_marker(marker: &Path, config: &PipelineConfig) -> Result<RunSummary> {
    let done: TaskDone = serde_json::from_slice(&storage::read_small(marker)?)
        .with_context(|| format!("reading the done marker {}", marker.display()))?;
    // [run] (threads, batch size) does not change the outputs: a rerun may change it.
    let outputs_of = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("run");
        }
        v
    };
    let (was, now) = (
        outputs_of(done.config),
        outputs_of(serde_json::to_value(config)?),
    );
    if let Some(field) = first_difference(&was, &now, "") {
        bail!(
            "{} was written with a different config ({field} differs): rerun every task with one config, or remove the output",
            marker.display()
        );
    }
    Ok(done.summary)
}

/// The dotted path of the first field where `a` and `b` differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &path),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() {
            "the config".into()
        } else {
            at.to_string()
        }),
    }
}
