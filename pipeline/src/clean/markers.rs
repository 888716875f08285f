//! Done markers of a split run's tasks (`OUT/tasks/STAGE-0000i-of-0000N.json`): the config
//! a task ran with, the work files' layout and its summary, written last; a marker written
//! under another config is refused, naming the first field that differs, and one written by
//! a build with another work file layout too.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::summary::RunSummary;
use super::work::WORK_FORMAT;
use crate::config::PipelineConfig;
use crate::shard::TaskSlice;
use crate::storage;

/// Writes a task's done marker (its config and summary), last.
pub(crate) fn claim_marker(
    marker: &Path,
    config: &PipelineConfig,
    summary: &RunSummary,
) -> Result<()> {
    storage::write_marker(marker, &done_marker_json(config, summary)?)
}

/// The contents of a done marker.
pub(super) fn done_marker_json(config: &PipelineConfig, summary: &RunSummary) -> Result<Vec<u8>> {
    let done = TaskDone {
        config: serde_json::to_value(config)?,
        work_format: Some(WORK_FORMAT),
        summary: summary.clone(),
    };
    Ok(serde_json::to_vec_pretty(&done)?)
}

/// Checks that all `tasks` markers of `stage` are in `present` (a [`list_markers`]: one
/// listing rather than a HEAD per task) and were written under this config; returns their
/// summaries.
pub(super) fn require_markers(
    config: &PipelineConfig,
    present: &HashSet<String>,
    stage: &str,
    tasks: usize,
) -> Result<Vec<RunSummary>> {
    let out = &config.output.dir;
    let mut summaries = Vec::new();
    let mut missing = Vec::new();
    for index in 0..tasks {
        let rel = TaskSlice::new(index, tasks)?.marker(stage);
        let marker = out.join(&rel);
        if present.contains(rel.trim_start_matches("tasks/")) {
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

/// The names of the markers in `OUT/tasks/`, in one listing: whether a task is done and
/// whether the stage before it finished, without a HEAD per marker.
pub(super) fn list_markers(config: &PipelineConfig) -> Result<HashSet<String>> {
    Ok(storage::list_names(&config.output.dir.join("tasks"))?
        .into_iter()
        .collect())
}

/// The summary of task `task` of `stage` when its marker is in `present` (under this
/// config), else `None`.
pub(super) fn done_in(
    present: &HashSet<String>,
    config: &PipelineConfig,
    stage: &str,
    task: TaskSlice,
) -> Result<Option<RunSummary>> {
    let rel = task.marker(stage);
    if !present.contains(rel.trim_start_matches("tasks/")) {
        return Ok(None);
    }
    let marker = config.output.dir.join(&rel);
    tracing::info!("{} exists: this task is done", marker.display());
    read_marker(&marker, config).map(Some)
}

/// Before task `reader` of a stage: checks that all `tasks` markers of the previous `stage`
/// are in `present` (a [`list_markers`]) and reads those whose index is `reader`'s modulo
/// its count (at least one: the input count is in it), refusing one written under another
/// config. Over the whole stage every marker is read, but each task reads about one, not N
/// (N^2 reads per stage on S3). Returns
/// the input count the markers read recorded (`RunSummary::inputs_listed`), so the stage
/// need not list the inputs again.
pub(super) fn require_stage(
    config: &PipelineConfig,
    stage: &str,
    tasks: usize,
    reader: TaskSlice,
    present: &HashSet<String>,
) -> Result<Option<usize>> {
    let out = &config.output.dir;
    let mut missing = Vec::new();
    let mut listed = None;
    for index in 0..tasks {
        let rel = TaskSlice::new(index, tasks)?.marker(stage);
        if !present.contains(rel.trim_start_matches("tasks/")) {
            missing.push(index);
        } else if index % reader.count() == reader.index() || index == reader.index() % tasks {
            let marker = out.join(&rel);
            let summary = read_marker(&marker, config)?;
            match (listed, summary.inputs_listed) {
                (Some(a), Some(b)) if a != b => bail!(
                    "{} counted {b} inputs, another task of stage {stage} {a}: the inputs changed during the run; remove the output and run again",
                    marker.display()
                ),
                (None, b) => listed = b,
                _ => {}
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "tasks {missing:?} of {tasks} of stage {stage} have no done marker in {}: rerun them first",
            out.display()
        );
    }
    Ok(listed)
}

/// A task's done marker: the config it ran with, the layout of the work files it wrote
/// ([`WORK_FORMAT`]; absent in markers of builds before it was recorded) and what it did.
#[derive(Debug, Serialize, Deserialize)]
struct TaskDone {
    config: serde_json::Value,
    #[serde(default)]
    work_format: Option<u32>,
    summary: RunSummary,
}

/// Reads a task's done marker, refusing one written under another config (naming the field).
pub(super) fn read_marker(marker: &Path, config: &PipelineConfig) -> Result<RunSummary> {
    let done: TaskDone = serde_json::from_slice(&storage::read_small(marker)?)
        .with_context(|| format!("reading the done marker {}", marker.display()))?;
    if done.work_format != Some(WORK_FORMAT) {
        let was = done
            .work_format
            .map_or("an earlier build's".to_string(), |f| format!("format {f}"));
        bail!(
            "{} was written by a build whose work files have another layout ({was}, this build reads format {WORK_FORMAT}): rerun that stage and every stage after it with this build (remove their markers under tasks/), or remove the output",
            marker.display()
        );
    }
    // [run] (threads, batch size) and the components stage's memory bound do not change the
    // outputs: a rerun may change them.
    let outputs_of = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("run");
        }
        if let Some(d) = v.get_mut("dedup").and_then(|d| d.as_object_mut()) {
            d.remove("components_memory_mb");
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
pub(crate) fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    at: &str,
) -> Option<String> {
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
