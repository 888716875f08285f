//! One `clean` run or one task of a split run, wherever its output lives: skips a task whose
//! done marker exists, runs the stages on a local directory (the output itself, or a scratch
//! copy of a remote one), uploads a remote output (summary last), then writes the task's done
//! marker. A task killed before its marker leaves nothing a rerun takes for done; a failing
//! task leaves a failure marker with its error (`task_state`), and `finish` a done marker
//! of its own after `summary.json`.

use anyhow::{Result, bail};

use super::markers::{claim_marker, done_marker_json, list_markers, read_marker, require_markers};
use super::run::run_local;
use super::summary::RunSummary;
use super::work::write_json_atomic;
use crate::config::PipelineConfig;
use crate::shard::TaskSlice;
use crate::storage;
use crate::task_state::{lock_task, track};

/// Runs the whole cleaning path for `config`.
pub fn run(config: &PipelineConfig, show_progress: bool) -> Result<RunSummary> {
    run_task(config, show_progress, None)
}

/// Runs `config`'s cleaning path, or task `task` of it (with its running and failure
/// markers, see `task_state`).
pub fn run_task(
    config: &PipelineConfig,
    show_progress: bool,
    task: Option<TaskSlice>,
) -> Result<RunSummary> {
    track(&config.output.dir, "clean", task, || {
        run_tracked(config, show_progress, task)
    })
}

fn run_tracked(
    config: &PipelineConfig,
    show_progress: bool,
    task: Option<TaskSlice>,
) -> Result<RunSummary> {
    let out = &config.output.dir;
    let marker = task.map(|t| out.join(t.marker("clean")));
    // Everything the task reads or writes counts, the marker lookups included.
    let transfers = storage::transfer_totals();
    // Two processes given the same index: the second waits for the first (the lock is on
    // the local directory the task works in), then finds its done marker. The marker is
    // looked up once, under the lock.
    let _lock = match task {
        Some(t) => {
            let name = t.marker("clean").replace("tasks/", "task-");
            Some(lock_task(
                &local_dir(config, task).join("work").join(name + ".lock"),
            )?)
        }
        None => None,
    };
    if let Some(marker) = &marker
        && storage::exists(marker)?
    {
        tracing::info!("{} exists: this task is done", marker.display());
        return read_marker(marker, config);
    }
    let mut summary = if storage::is_remote_path(out) {
        let url = out.to_string_lossy().into_owned();
        let scratch = local_dir(config, task);
        let mut local = config.clone();
        local.output.dir = scratch.clone();
        // A split run's tasks do not tokenize (its tokenize stage or finish step does).
        if let Some(tokenize) = &config.tokenize
            && task.is_none()
            && storage::is_remote_path(&tokenize.output)
        {
            bail!(
                "tokenize.output {} inside a clean run must be local: run `pipeline tokenize` for an s3:// dataset, or split the run (--tasks N)",
                tokenize.output.display()
            );
        }
        let summary = run_local(&local, show_progress, task)?;
        // Before the upload: the scratch copy stays, so the rerun resumes the inputs done.
        refuse_read_issues(config, task, &summary)?;
        // The config saved with the outputs is the one the user gave, not the scratch copy.
        write_json_atomic(&scratch.join("config.json"), config)?;
        storage::upload_dir(&scratch, &url, &["work"], &["summary.json"])?;
        if let Some(task) = task
            && super::stages::dedups(config)
        {
            // The later dedup stages read this task's work files (not its staged inputs).
            let work = format!("{}/work", url.trim_end_matches('/'));
            super::dedup_remote::upload_work(config, task, &scratch.join("work"), &work)?;
        }
        std::fs::remove_dir_all(&scratch).ok();
        summary
    } else {
        let summary = run_local(config, show_progress, task)?;
        refuse_read_issues(config, task, &summary)?;
        summary
    };
    summary.object_store = storage::transfer_totals().since(&transfers);
    if let Some(marker) = &marker
        && let Err(e) = claim_marker(marker, config, &summary)
    {
        // Another machine given the same index claimed it first (a conditional create): it
        // uploaded the same bytes, so its marker stands for this task too.
        if !storage::exists(marker)? {
            return Err(e);
        }
        tracing::warn!("{e:#}: taking its done marker");
        return read_marker(marker, config);
    }
    Ok(summary)
}

/// A task whose inputs could not all be read fails before its done marker (with
/// `run.fail_on_error`), so a rerun after the input is fixed redoes it. (An unsplit run
/// prints its summary first.)
fn refuse_read_issues(
    config: &PipelineConfig,
    task: Option<TaskSlice>,
    summary: &RunSummary,
) -> Result<()> {
    if task.is_some() && config.run.fail_on_error && summary.read_issues > 0 {
        bail!(
            "{} input records could not be read (run.fail_on_error): {}",
            summary.read_issues,
            summary
                .issues
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// Where a task writes before its outputs are final: the output directory, or for a remote
/// one a scratch directory of this task's (`storage::scratch_dir`).
fn local_dir(config: &PipelineConfig, task: Option<TaskSlice>) -> std::path::PathBuf {
    let out = &config.output.dir;
    if !storage::is_remote_path(out) {
        return out.clone();
    }
    let label = task.map_or(String::new(), |t| t.marker("clean"));
    storage::scratch_dir(&format!("{}#{label}", out.to_string_lossy()))
}

/// The last stage of a split run: checks that every task's done marker is there, writes
/// `summary.json` over all of them and, when the config has `[tokenize]`, writes the dataset
/// from the tokenize stage's encoded documents.
pub fn finish(config: &PipelineConfig, tasks: usize) -> Result<RunSummary> {
    let out = &config.output.dir;
    let slice = TaskSlice::new(0, 1)?;
    track(out, "finish", Some(slice), || {
        let summary = finish_tracked(config, tasks)?;
        // Written over a marker a rerun of `finish` finds (it redoes the summary).
        storage::write_small(
            &out.join(slice.marker("finish")),
            &done_marker_json(config, &summary)?,
        )?;
        Ok(summary)
    })
}

fn finish_tracked(config: &PipelineConfig, tasks: usize) -> Result<RunSummary> {
    let out = &config.output.dir;
    // The clean tasks counted what they read; the survivors tasks what they kept; the
    // stages between, and the tokenizer and tokenize stages, only their time and object
    // store traffic.
    let stages = super::stages::stages_of(config)
        .into_iter()
        .map(|s| (s.name(), if s.is_single_task() { 1 } else { tasks }));
    // One listing for every stage's markers.
    let present = list_markers(config)?;
    let mut summary = RunSummary::default();
    for (stage, n) in stages {
        for task in require_markers(config, &present, stage, n)? {
            add(&mut summary, task);
        }
    }
    if let Some(options) = &config.tokenize {
        let input = super::stages::kept_input(config);
        // The tokenize stage encoded the kept documents (with the tokenizer stage's
        // tokenizer under [tokenize.train]): the dataset is written from its files.
        summary.tokenize = Some(crate::tokenize::tasks::tokenize_finish(
            &input, options, tasks,
        )?);
    }
    storage::write_small(
        &out.join("summary.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
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
    total.object_store.add(&task.object_store);
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
