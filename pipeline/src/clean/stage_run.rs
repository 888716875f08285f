//! Runs one task of one stage of a split `clean` run: skips it when its done marker exists
//! (refusing one written under another config), checks that the stage before it finished,
//! runs it on a local or an `s3://` output, and writes its marker last; its running and
//! failure markers (`task_state`) let `pipeline status` show it.

use anyhow::{Context, Result, bail, ensure};

use super::dedup_checks::{check, forwarded_groups, read_groups, ship};
use super::dedup_tasks::{components, numbering, pairs, survivors_local};
use super::markers::{claim_marker, done_in, done_marker_json, list_markers, require_stage};
use super::stages::{Stage, dedups, kept_input, trains_tokenizer};
use super::summary::RunSummary;
use crate::config::PipelineConfig;
use crate::readers::expand_inputs;
use crate::shard::TaskSlice;
use crate::task_state::track;
use crate::tokenize::shuffle::shards_task;
use crate::tokenize::tasks::tokenize_task;
use crate::tokenize::train::train_tokenizer;

/// Runs task `task` of `stage` (`clean` is [`super::run_task`]; the components and tokenizer
/// stages are one task whatever the index, and read the N of the stages around it from
/// `task`).
pub fn run_stage(
    config: &PipelineConfig,
    stage: Stage,
    task: Option<TaskSlice>,
    show_progress: bool,
) -> Result<RunSummary> {
    if stage == Stage::Clean {
        return super::run_task(config, show_progress, task);
    }
    let Some(task) = task else {
        bail!(
            "--stage {} needs --tasks N (the split of the clean stage) and --task i or a scheduler's task index",
            stage.name()
        );
    };
    // The components and tokenizer stages are one task whatever the index.
    let slice = if stage.is_single_task() {
        TaskSlice::new(0, 1)?
    } else {
        task
    };
    track(&config.output.dir, stage.name(), Some(slice), || {
        run_tracked(config, stage, task, slice)
    })
}

/// One task of a stage after `clean`, between its running marker and its done (or failure)
/// marker; `slice` names its marker, `task` gives the N of the stages around it.
fn run_tracked(
    config: &PipelineConfig,
    stage: Stage,
    task: TaskSlice,
    slice: TaskSlice,
) -> Result<RunSummary> {
    let out = &config.output.dir;
    let marker = out.join(slice.marker(stage.name()));
    // Everything the task reads or writes counts, the marker lookups included.
    let transfers = crate::storage::transfer_totals();
    // One listing says whether this task is done and whether the stage before finished.
    let present = list_markers(config)?;
    // A tokenize or shards task goes by its own marker in the dataset's directory.
    if !matches!(stage, Stage::Tokenize | Stage::Shards)
        && let Some(summary) = done_in(&present, config, stage.name(), slice)?
    {
        return Ok(summary);
    }
    let n = task.count();
    let started = std::time::Instant::now();
    let mut listed = None;
    // The stage whose tasks wrote the kept documents.
    let kept_by = if dedups(config) { "survivors" } else { "clean" };
    let mut summary = if stage == Stage::Tokenizer {
        let train = config
            .tokenize
            .as_ref()
            .and_then(|t| t.train.as_ref().map(|train| (t, train)));
        let (options, train) = train.context("--stage tokenizer needs [tokenize.train]")?;
        require_stage(config, kept_by, n, slice, &present)?;
        // Every kept document (local or in the bucket), as the one-process run trains on;
        // the tokenizer goes to tokenize.tokenizer, where the tokenize tasks read it.
        train_tokenizer(
            &train.config(&kept_input(config), &options.tokenizer),
            false,
        )?;
        RunSummary::default()
    } else if stage == Stage::Tokenize {
        let options = config
            .tokenize
            .as_ref()
            .context("--stage tokenize needs [tokenize]")?;
        if trains_tokenizer(config) {
            require_stage(config, "tokenizer", 1, slice, &present)?;
        } else {
            require_stage(config, kept_by, n, slice, &present)?;
        }
        // Its own marker goes to the dataset's directory (for `tokenize --finish`); the one
        // below, in the run's, is what `status` and the next stage read.
        let encoded = tokenize_task(&kept_input(config), options, task)?;
        RunSummary {
            tokenize: Some(encoded),
            ..RunSummary::default()
        }
    } else if stage == Stage::Shards {
        let options = config
            .tokenize
            .as_ref()
            .context("--stage shards needs [tokenize]")?;
        require_stage(config, "tokenize", n, slice, &present)?;
        shards_task(&kept_input(config), options, task)?;
        RunSummary::default()
    } else {
        ensure!(
            dedups(config),
            "--stage {} is a dedup stage, and the config has dedup off",
            stage.name()
        );
        let (before, tasks_before) = super::stages::before(config, stage, n).with_context(|| {
            let names: Vec<&str> = super::stages::stages_of(config)
                .iter()
                .map(|s| s.name())
                .collect();
            format!(
                "--stage {}: not a stage of this config (its stages: {}; `ship` and `check` need [dedup.minhash] min_similarity > 0)",
                stage.name(),
                names.join(", ")
            )
        })?;
        let before = before.name();
        // The input count the clean stage listed, passed on by every stage's markers (an
        // output from before they recorded it is listed again).
        let inputs = match require_stage(config, before, tasks_before, slice, &present)? {
            Some(inputs) => inputs,
            None => expand_inputs(&config.input.paths, config.input.reader.format)?.len(),
        };
        listed = Some(inputs);
        if crate::storage::is_remote_path(out) {
            super::dedup_remote::run_remote(config, stage, task, inputs)?
        } else {
            match stage {
                Stage::Pairs => pairs(config, task, &numbering(config, inputs)?)?,
                Stage::Ship => {
                    ship(config, task, &read_groups(config, task)?)?;
                    RunSummary::default()
                }
                Stage::Check => {
                    check(config, task, &forwarded_groups(config, task)?)?;
                    RunSummary::default()
                }
                Stage::Components => components(config, n, &numbering(config, inputs)?)?,
                _ => survivors_local(config, task, inputs)?,
            }
        }
    };
    summary.inputs_listed = listed;
    summary
        .seconds
        .insert(stage.name().into(), started.elapsed().as_secs_f64());
    summary.object_store = crate::storage::transfer_totals().since(&transfers);
    if matches!(stage, Stage::Tokenize | Stage::Shards) {
        crate::storage::write_small(&marker, &done_marker_json(config, &summary)?)?;
    } else {
        claim_marker(&marker, config, &summary)?;
    }
    Ok(summary)
}
