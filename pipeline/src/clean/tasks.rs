//! One `clean` run or one task of a split run, wherever its output lives: skips a task whose
//! done marker exists, runs the stages on a local directory (the output itself, or a scratch
//! copy of a remote one), uploads a remote output (summary last), then writes the task's done
//! marker. A task killed before its marker leaves nothing a rerun takes for done.

use anyhow::{Context, Result, bail};

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
        let bytes = storage::read_small(marker)?;
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("reading the done marker {}", marker.display()));
    }
    if let Some(t) = task
        && t.count() > 1
        && (config.dedup.exact || config.dedup.minhash.enabled)
    {
        bail!(
            "clean split into {} tasks needs dedup off ([dedup] exact = false, minhash.enabled = false): distributed dedup is not implemented yet",
            t.count()
        );
    }
    if let Some(t) = task
        && t.count() > 1
        && config.tokenize.is_some()
    {
        bail!(
            "a split clean run does not tokenize: remove [tokenize] and run `pipeline tokenize` after it"
        );
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
        std::fs::remove_dir_all(&scratch).ok();
        summary
    } else {
        run_local(config, show_progress, task)?
    };
    if let Some(marker) = &marker {
        storage::write_marker(marker, &serde_json::to_vec_pretty(&summary)?)?;
    }
    Ok(summary)
}
